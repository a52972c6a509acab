//! The embedded broker on a LAN address (in a network namespace) belongs to the admin: before
//! first-run setup nobody gets in; after it, anonymous and wrong CONNECTs are refused with
//! CONNACK 5 / 4 on TCP and WebSocket, the admin's password and a login session's MQTT password
//! (what the web UI fetches, also through `/mqtt` on the web port) get in, RPCs over MQTT work
//! for the admin, nobody publishes on spind's own topics (nor leaves a will there), guessing is
//! locked out together with the web's limit; and the opt-in anonymous read-only mode.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use testbed::http;

use crate::common::{http_request, lan_namespace, lan_spind, set_admin_password};
use crate::mqtt_clients::{packet, string, subscribe};

/// A raw MQTT 3.1.1 client over TCP or over a WebSocket (binary frames, zero mask).
struct Mqtt {
    s: TcpStream,
    ws: bool,
    buf: Vec<u8>,
}

impl Mqtt {
    fn tcp(addr: SocketAddr) -> Mqtt {
        let s = TcpStream::connect(addr).unwrap();
        Mqtt { s, ws: false, buf: Vec::new() }
    }

    /// A WebSocket to `addr`'s `/mqtt`; Err(the response head) if it is not a 101.
    fn ws(addr: SocketAddr, headers: &[&str]) -> Result<Mqtt, String> {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let up = http::ws_upgrade(headers).replace("Host: 127.0.0.1", &format!("Host: {addr}"));
        s.write_all(up.as_bytes()).unwrap();
        let head = http::read_head(&mut s);
        if head.starts_with("HTTP/1.1 101") {
            Ok(Mqtt { s, ws: true, buf: Vec::new() })
        } else {
            Err(head)
        }
    }

    fn send(&mut self, p: &[u8]) {
        if !self.ws {
            let _ = self.s.write_all(p);
            return;
        }
        let mut f = vec![0x82];
        match p.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&[0, 0, 0, 0]); // a zero mask leaves the payload as it is
        f.extend_from_slice(p);
        let _ = self.s.write_all(&f);
    }

    /// Bytes of the MQTT stream (WebSocket frames unwrapped); false when closed or quiet.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        if !self.ws {
            return match self.s.read(&mut chunk) {
                Ok(n) if n > 0 => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    true
                }
                _ => false,
            };
        }
        let mut h = [0u8; 2];
        if self.s.read_exact(&mut h).is_err() {
            return false;
        }
        let len = match h[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                if self.s.read_exact(&mut l).is_err() {
                    return false;
                }
                u16::from_be_bytes(l) as usize
            }
            127 => {
                let mut l = [0u8; 8];
                if self.s.read_exact(&mut l).is_err() {
                    return false;
                }
                u64::from_be_bytes(l) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        if self.s.read_exact(&mut payload).is_err() || h[0] & 0x0f == 0x8 {
            return false; // closed, or a close frame
        }
        self.buf.extend_from_slice(&payload);
        true
    }

    /// The next packet (first byte, body) within `wait`; None when closed or quiet.
    fn next(&mut self, wait: Duration) -> Option<(u8, Vec<u8>)> {
        self.s.set_read_timeout(Some(wait)).unwrap();
        loop {
            if self.buf.len() >= 2 {
                let (mut len, mut mul, mut i) = (0usize, 1usize, 1);
                while i < self.buf.len() {
                    len += (self.buf[i] & 0x7f) as usize * mul;
                    mul *= 128;
                    i += 1;
                    if self.buf[i - 1] & 0x80 == 0 {
                        break;
                    }
                }
                if self.buf[i - 1] & 0x80 == 0 && self.buf.len() >= i + len {
                    let first = self.buf[0];
                    let body = self.buf[i..i + len].to_vec();
                    self.buf.drain(..i + len);
                    return Some((first, body));
                }
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// CONNECT (clean session, keepalive 30 s); the CONNACK's return code, None if the broker
    /// closed without one.
    fn connect(&mut self, id: &str, login: Option<(&str, &str)>, will: Option<&str>) -> Option<u8> {
        let mut b = Vec::new();
        string("MQTT", &mut b);
        let flags = 0x02 | login.map_or(0, |_| 0xc0) | will.map_or(0, |_| 0x04);
        b.extend_from_slice(&[4, flags, 0, 30]);
        string(id, &mut b);
        if let Some(t) = will {
            string(t, &mut b);
            string("gone", &mut b);
        }
        if let Some((u, p)) = login {
            string(u, &mut b);
            string(p, &mut b);
        }
        self.send(&packet(0x10, &b));
        match self.next(Duration::from_secs(20)) {
            Some((0x20, body)) if body.len() == 2 => Some(body[1]),
            _ => None,
        }
    }

    fn subscribe(&mut self, filters: &[&str]) {
        self.send(&subscribe(1, filters));
        let (first, body) = self.next(Duration::from_secs(10)).expect("SUBACK");
        assert_eq!(first, 0x90, "SUBACK");
        assert!(body[2..].iter().all(|c| *c == 0), "every filter granted: {body:?}");
    }

    /// PUBLISH with QoS 1 (and wait for its PUBACK) or 0.
    fn publish(&mut self, topic: &str, payload: &str, qos1: bool) {
        let mut b = Vec::new();
        string(topic, &mut b);
        if qos1 {
            b.extend_from_slice(&7u16.to_be_bytes());
        }
        b.extend_from_slice(payload.as_bytes());
        self.send(&packet(if qos1 { 0x32 } else { 0x30 }, &b));
        if qos1 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                match self.next(Duration::from_secs(10)) {
                    Some((0x40, body)) => {
                        assert_eq!(&body[..2], &7u16.to_be_bytes(), "PUBACK of our publish");
                        return;
                    }
                    Some(_) => continue,
                    None => panic!("no PUBACK for {topic}"),
                }
            }
        }
    }

    /// The payloads published on `topic` that arrive within `wait`.
    fn received(&mut self, topic: &str, wait: Duration) -> Vec<String> {
        self.messages(wait).into_iter().filter(|(t, _)| t == topic).map(|(_, p)| p).collect()
    }

    /// Every (topic, payload) published to us within `wait`.
    fn messages(&mut self, wait: Duration) -> Vec<(String, String)> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Some((first, body)) = self.next(left.max(Duration::from_millis(1))) else { break };
            if first >> 4 != 3 {
                continue;
            }
            let tlen = u16::from_be_bytes([body[0], body[1]]) as usize;
            let mut p = 2 + tlen;
            if (first >> 1) & 3 > 0 {
                p += 2;
            }
            let topic = String::from_utf8_lossy(&body[2..2 + tlen]).into_owned();
            out.push((topic, String::from_utf8_lossy(&body[p..]).into_owned()));
        }
        out
    }
}

const ADMIN: (&str, &str) = ("admin", "m9tt-secret");
const RPC_BLOCK: &str =
    r#"{"jsonrpc":"2.0","id":77,"method":"add_iplist_ip","params":{"list":"block","ip":"203.0.113.77"}}"#;
const RPC_LIST: &[u8] = br#"{"jsonrpc":"2.0","id":2,"method":"list_iplist","params":{"list":"block"}}"#;

#[test]
fn the_broker_on_the_lan_belongs_to_the_admin() {
    if !testbed::gate::root_or_skip("the_broker_on_the_lan_belongs_to_the_admin") {
        return;
    }
    const ADDR: &str = "10.78.0.1";
    let ns = lan_namespace("mqttauth", ADDR);
    let dir = tempfile::tempdir().unwrap();
    let first_run = dir.path().join("first-run-password");
    std::fs::write(&first_run, "first-run-7\n").unwrap();
    let pwfile = dir.path().join("passwd");
    let s = lan_spind(&ns, ADDR, &pwfile)
        .arg("-P")
        .config_line(&format!("spinweb_first_run_password_file = {}", first_run.display()))
        .spawn();
    let web: SocketAddr = format!("{ADDR}:{}", s.http_port).parse().unwrap();
    let tcp: SocketAddr = format!("{ADDR}:{}", s.mqtt_port).parse().unwrap();
    let ws: SocketAddr = format!("{ADDR}:{}", s.ws_port).parse().unwrap();
    let rpc_sock = s.rpc_socket();
    let blocked = move || http::rpc_unix(&rpc_sock, RPC_LIST).contains("203.0.113.77");
    let origin = format!("Origin: http://{web}");
    ns.run(move || {
        testbed::wait_for("spind's web port in the namespace", Duration::from_secs(20), || {
            TcpStream::connect(web).ok()
        });
        // Before setup: nobody, with or without credentials.
        assert_eq!(Mqtt::tcp(tcp).connect("early", None, None), Some(5));
        assert_eq!(Mqtt::tcp(tcp).connect("early", Some(ADMIN), None), Some(5));
        assert_eq!(Mqtt::ws(ws, &[]).unwrap().connect("early-ws", None, None), Some(5));

        let form = format!("first_run=first-run-7&user={}&password={}&password2={}", ADMIN.0, ADMIN.1, ADMIN.1);
        let r = setup(web, &origin, &form);
        assert_eq!(r.status, 303, "setup: {}", r.head);
        let cookie = format!("Cookie: {}", r.header("set-cookie").unwrap().split(';').next().unwrap());

        // Anonymous and wrong: refused, on both listeners.
        for (what, mut c) in [("tcp", Mqtt::tcp(tcp)), ("ws", Mqtt::ws(ws, &[]).unwrap())] {
            assert_eq!(c.connect("anon", None, None), Some(5), "{what}: anonymous");
        }
        assert_eq!(Mqtt::tcp(tcp).connect("wrong", Some((ADMIN.0, "nope")), None), Some(4));
        assert_eq!(Mqtt::tcp(tcp).connect("who", Some(("root", ADMIN.1)), None), Some(4));
        assert_eq!(Mqtt::ws(ws, &[]).unwrap().connect("wrong", Some((ADMIN.0, "nope")), None), Some(4));

        // The admin gets in; RPCs over MQTT work for the admin.
        let mut admin = Mqtt::tcp(tcp);
        assert_eq!(admin.connect("admin-tcp", Some(ADMIN), None), Some(0));
        admin.subscribe(&["SPIN/jsonrpc/a", "test/#", "SPIN/traffic"]);
        admin.publish("SPIN/jsonrpc/q", RPC_BLOCK, true);
        let answers = admin.received("SPIN/jsonrpc/a", Duration::from_secs(3));
        assert!(answers.iter().any(|a| a.contains("\"id\":77")), "{answers:?}");
        assert!(blocked(), "the admin's MQTT RPC was applied");

        // Nobody but spind publishes on spind's topics; other topics pass (so the check is real).
        let mut ws_admin = Mqtt::ws(ws, &[]).unwrap();
        assert_eq!(ws_admin.connect("admin-ws", Some(ADMIN), None), Some(0));
        ws_admin.publish("SPIN/traffic", r#"{"command":"forged-qos1"}"#, true);
        ws_admin.publish("SPIN/traffic", r#"{"command":"forged-qos0"}"#, false);
        ws_admin.publish("test/x", "allowed", true);
        let got = admin.messages(Duration::from_secs(3));
        assert!(got.contains(&("test/x".into(), "allowed".into())), "{got:?}");
        assert!(got.iter().all(|(_, m)| !m.contains("forged")), "{got:?}");
        // A will on spind's topic is refused at CONNECT.
        assert_eq!(Mqtt::tcp(tcp).connect("will", Some(ADMIN), Some("SPIN/traffic")), Some(5));
        assert_eq!(Mqtt::tcp(tcp).connect("will-ok", Some(ADMIN), Some("clients/will-ok")), Some(0));

        // The web UI's way: its session's MQTT password, through /mqtt on the web port.
        let r = get(web, "/spin_api/mqtt_login", &[&cookie]);
        assert_eq!(r.status, 200, "{}", r.head);
        let creds: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
        let (user, pass) = (creds["username"].as_str().unwrap(), creds["password"].as_str().unwrap());
        assert_eq!(user, ADMIN.0);
        assert!(!r.text().contains(ADMIN.1) && !cookie.contains(pass), "neither the password nor the cookie");
        assert_eq!(get(web, "/spin_api/mqtt_login", &[]).status, 401, "no session, no MQTT password");
        let mut ui = Mqtt::ws(web, &[&cookie, &origin]).unwrap();
        assert_eq!(ui.connect("ui", Some((user, pass)), None), Some(0));
        ui.subscribe(&["SPIN/traffic/#"]);
        let mut anon_ui = Mqtt::ws(web, &[&cookie, &origin]).unwrap();
        assert_eq!(anon_ui.connect("ui-anon", None, None), Some(5), "the proxy is no way around the broker");
        assert_eq!(Mqtt::tcp(tcp).connect("session", Some((user, pass)), None), Some(0));
        // Logout ends the session's MQTT password.
        let r = post(web, "/logout", &[&cookie, &origin], "");
        assert_eq!(r.status, 303);
        assert_eq!(Mqtt::tcp(tcp).connect("session-after", Some((user, pass)), None), Some(4));

        // Guessing: from the 5th failure on, the address is refused unchecked for a time that
        // doubles (1 s, 2 s, ...), on the web too. Eight checked failures: locked for 8 s.
        let (mut failures, mut locked) = (0, 0);
        while failures < 8 {
            match Mqtt::tcp(tcp).connect("guess", Some((ADMIN.0, "guess")), None) {
                Some(4) => failures += 1,
                Some(5) => {
                    locked += 1;
                    std::thread::sleep(Duration::from_millis(300));
                }
                other => panic!("a guess got {other:?}"),
            }
            assert!(failures + locked < 200, "stuck");
        }
        assert!(locked > 0, "never locked out");
        assert_eq!(Mqtt::tcp(tcp).connect("right", Some(ADMIN), None), Some(5), "locked out");
        let basic = format!(
            "Authorization: Basic {}",
            <base64ct::Base64 as base64ct::Encoding>::encode_string(format!("{}:{}", ADMIN.0, ADMIN.1).as_bytes())
        );
        assert_eq!(get(web, "/spin_api/tcpdump_status?device=02:00:00:00:00:01", &[&basic]).status, 429);
        // The connected admin stayed connected throughout.
        admin.publish("test/x", "still here", true);
    });
    let log = s.log_text();
    assert!(log.contains("MQTT: refused"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn anonymous_read_only_is_an_opt_in_that_changes_nothing() {
    if !testbed::gate::root_or_skip("anonymous_read_only_is_an_opt_in_that_changes_nothing") {
        return;
    }
    const ADDR: &str = "10.78.1.1";
    let ns = lan_namespace("mqttanon", ADDR);
    let dir = tempfile::tempdir().unwrap();
    let pwfile = dir.path().join("passwd");
    set_admin_password(&pwfile, ADMIN.1);
    let s = lan_spind(&ns, ADDR, &pwfile).arg("-P").config_line("pubsub_anonymous_read = 1").spawn();
    let web: SocketAddr = format!("{ADDR}:{}", s.http_port).parse().unwrap();
    let tcp: SocketAddr = format!("{ADDR}:{}", s.mqtt_port).parse().unwrap();
    let rpc_sock = s.rpc_socket();
    let blocked = move || http::rpc_unix(&rpc_sock, RPC_LIST).contains("203.0.113.77");
    ns.run(move || {
        testbed::wait_for("spind's web port in the namespace", Duration::from_secs(20), || {
            TcpStream::connect(web).ok()
        });
        let mut admin = Mqtt::tcp(tcp);
        assert_eq!(admin.connect("admin", Some(ADMIN), None), Some(0));
        admin.subscribe(&["test/#", "SPIN/jsonrpc/a"]);
        let mut anon = Mqtt::tcp(tcp);
        assert_eq!(anon.connect("bubble-app", None, None), Some(0), "anonymous may read");
        anon.subscribe(&["SPIN/traffic/#", "test/#"]);
        // It reads what the admin's clients publish ...
        admin.publish("test/seen", "by everyone", true);
        assert_eq!(anon.received("test/seen", Duration::from_secs(3)), vec!["by everyone".to_string()]);
        // ... and can publish nothing: no RPC, no other topic.
        anon.publish("SPIN/jsonrpc/q", RPC_BLOCK, true);
        anon.publish("test/anon", "from anon", true);
        assert!(admin.received("SPIN/jsonrpc/a", Duration::from_secs(3)).is_empty(), "an anonymous RPC was answered");
        admin.publish("test/done", "x", true);
        assert!(admin.received("test/anon", Duration::from_secs(1)).is_empty());
        assert!(!blocked(), "an anonymous RPC changed nothing");
        // Wrong credentials are refused, not downgraded to anonymous.
        assert_eq!(Mqtt::tcp(tcp).connect("wrong", Some((ADMIN.0, "nope")), None), Some(4));
    });
    assert!(s.log_text().contains("pubsub_anonymous_read is on"), "{}", s.log_text());
}

fn get(addr: SocketAddr, target: &str, headers: &[&str]) -> http::Resp {
    http_request(addr, "GET", target, headers, "")
}

fn post(addr: SocketAddr, target: &str, headers: &[&str], body: &str) -> http::Resp {
    http_request(addr, "POST", target, headers, body)
}

fn setup(addr: SocketAddr, origin: &str, form: &str) -> http::Resp {
    post(addr, "/setup", &[origin, "Content-Type: application/x-www-form-urlencoded"], form)
}
