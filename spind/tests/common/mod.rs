//! Harness for tests that run the real `spind` binary: free ports, a temporary state
//! directory, real MQTT clients (TCP and WebSocket), and the three JSON-RPC transports.
#![allow(dead_code)]

pub mod netns;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS, Transport};
use serde_json::Value;

pub const SPIND: &str = env!("CARGO_BIN_EXE_spind");

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `f` until it returns `Some`, or panics naming what it waited for.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A running spind with its own ports and state directory; killed on drop.
pub struct Spind {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub mqtt_port: u16,
    pub ws_port: u16,
    pub http_port: u16,
    pub log: PathBuf,
}

pub struct SpindBuilder {
    pub config: String,
    pub args: Vec<String>,
    pub state_dir: Option<PathBuf>,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
}

impl SpindBuilder {
    pub fn new() -> Self {
        SpindBuilder { config: String::new(), args: Vec::new(), state_dir: None, netns: None }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn config_line(mut self, line: &str) -> Self {
        self.config.push_str(line);
        self.config.push('\n');
        self
    }

    pub fn netns(mut self, ns: &str) -> Self {
        self.netns = Some(ns.to_string());
        self
    }

    pub fn state_dir(mut self, p: &Path) -> Self {
        self.state_dir = Some(p.to_path_buf());
        self
    }

    /// Starts spind and waits until its web server answers.
    pub fn start(self) -> Spind {
        let s = self.spawn();
        let port = s.http_port;
        wait_for("spind's HTTP port", Duration::from_secs(20), || TcpStream::connect(("127.0.0.1", port)).ok());
        s
    }

    /// Starts spind without waiting (for tests of start-up failures).
    pub fn spawn(self) -> Spind {
        let dir = tempfile::tempdir().unwrap();
        let (mqtt_port, ws_port, http_port) = (free_port(), free_port(), free_port());
        let state = self.state_dir.clone().unwrap_or_else(|| dir.path().join("state"));
        let conf = dir.path().join("spind.conf");
        std::fs::write(
            &conf,
            format!(
                "log_usesyslog = 0\nlog_loglevel = 7\npubsub_port = {mqtt_port}\npubsub_websocket_port = {ws_port}\n\
                 spinweb_port = {http_port}\nstate_dir = {}\n{}",
                state.display(),
                self.config
            ),
        )
        .unwrap();
        let log = dir.path().join("spind.log");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, SPIND]);
                c
            }
            None => Command::new(SPIND),
        };
        let child = cmd
            .arg("-c")
            .arg(&conf)
            .arg("-j")
            .arg(dir.path().join("rpc.sock"))
            .args(&self.args)
            .stdout(Stdio::from(std::fs::File::create(dir.path().join("stdout")).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("start spind");
        Spind { child, dir, mqtt_port, ws_port, http_port, log }
    }
}

impl Spind {
    pub fn rpc_socket(&self) -> PathBuf {
        self.dir.path().join("rpc.sock")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for spind to exit by itself and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let child = &mut self.child;
        wait_for("spind to exit", timeout, || child.try_wait().unwrap()).code().unwrap_or(-1)
    }

    /// SIGTERM, as a service manager stops it.
    pub fn terminate(&mut self) {
        unsafe_kill(self.child.id(), 15);
        let _ = self.wait_exit(Duration::from_secs(10));
    }

    /// A JSON-RPC call over HTTP POST; returns the parsed reply.
    pub fn rpc(&self, method: &str, params: Value) -> Value {
        rpc_http(self.http_port, method, params)
    }

    /// The `result` of a successful call.
    pub fn call(&self, method: &str, params: Value) -> Value {
        call_http(self.http_port, method, params)
    }
}

impl Drop for Spind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- spind log ----\n{}", self.log_text());
        }
    }
}

/// A JSON-RPC call over HTTP POST to spind's web port; returns the parsed reply.
pub fn rpc_http(port: u16, method: &str, params: Value) -> Value {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let (status, text) = http_request(port, "POST", "/spin_api/jsonrpc", body.as_bytes());
    assert_eq!(status, 200, "HTTP status for {method}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("reply to {method} is not JSON ({e}): {text:?}"))
}

/// The `result` of a successful call.
pub fn call_http(port: u16, method: &str, params: Value) -> Value {
    let r = rpc_http(port, method, params);
    assert!(r.get("error").is_none(), "{method} failed: {r}");
    r.get("result").cloned().unwrap_or(Value::Null)
}

pub fn unsafe_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// A raw HTTP/1.1 request; returns (status, body).
pub fn http_request(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let (status, _, body) = http_exchange(port, method, path, &[], body);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A raw HTTP/1.1 request with extra headers; returns (status, header block, body bytes).
pub fn http_exchange(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").expect("HTTP response header");
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let mut payload = resp[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        payload = dechunk(&payload);
    }
    (status, head, payload)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else { return out };
        let len = usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if len == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + len]);
        data = &data[eol + 4 + len..];
    }
}

/// A JSON-RPC request over the unix socket; returns the raw answer (without the newline).
pub fn rpc_unix(path: &Path, request: &[u8]) -> String {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.trim_end_matches('\n').to_string()
}

/// One received MQTT message.
#[derive(Clone, Debug)]
pub struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Msg {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }

    pub fn command(&self) -> String {
        self.json()["command"].as_str().unwrap_or("").to_string()
    }
}

/// A real MQTT client subscribed to a filter; messages arrive on `msgs`.
pub struct Subscriber {
    pub client: Client,
    pub msgs: Receiver<Msg>,
}

impl Subscriber {
    /// Connects (TCP, or WebSocket at `/mqtt`) and returns once the subscription is acknowledged.
    pub fn connect(port: u16, websocket: bool, filter: &str) -> Subscriber {
        let id = format!("test-{}-{}", std::process::id(), free_port());
        let mut opts = if websocket {
            let mut o = MqttOptions::new(id, format!("ws://127.0.0.1:{port}/mqtt"), port);
            o.set_transport(Transport::Ws);
            o
        } else {
            MqttOptions::new(id, "127.0.0.1", port)
        };
        opts.set_max_packet_size(8 << 20, 8 << 20);
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut conn) = Client::new(opts, 1000);
        client.subscribe(filter, QoS::AtMostOnce).unwrap();
        let (tx, msgs) = mpsc::channel();
        let (acked_tx, acked) = mpsc::channel();
        thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send(Msg { topic: p.topic.clone(), payload: p.payload.to_vec(), retain: p.retain }).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = acked_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        acked.recv_timeout(Duration::from_secs(20)).expect("MQTT subscription acknowledged");
        Subscriber { client, msgs }
    }

    /// Everything received until `done` says the stream is complete (or the timeout).
    pub fn collect_until(&self, what: &str, timeout: Duration, done: impl Fn(&[Msg]) -> bool) -> Vec<Msg> {
        let mut got = Vec::new();
        let end = Instant::now() + timeout;
        while !done(&got) {
            let left = end.saturating_duration_since(Instant::now());
            match self.msgs.recv_timeout(left) {
                Ok(m) => got.push(m),
                Err(_) => panic!(
                    "timed out waiting for {what}; got {} messages: {:#?}",
                    got.len(),
                    got.iter().map(|m| format!("{} {}", m.topic, String::from_utf8_lossy(&m.payload))).collect::<Vec<_>>()
                ),
            }
        }
        got
    }
}

/// A real external broker (Debian's mosquitto) on a free port; killed on drop.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("this test needs Debian's mosquitto broker: apt-get install mosquitto (scripts/setup-host.sh does)");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")).unwrap();
        let child = Command::new(bin).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        wait_for("mosquitto to listen", Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", port)).ok());
        Mosquitto { child, port, _dir: dir }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
