//! The real `spind` binary under test: its own free ports (MQTT, MQTT over WebSocket, web), a
//! temporary state directory and config file, its log kept for the failure report; killed on drop.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use runner::{cmd, Stream};
use serde_json::Value;

use crate::free_ports;
use crate::http::{call_http, rpc_http};

/// A running spind with its own ports and state directory; killed on drop.
pub struct Spind {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub mqtt_port: u16,
    pub ws_port: u16,
    pub http_port: u16,
    pub log: PathBuf,
    /// Waited for outside std (`wait_rusage`): nothing left to kill.
    reaped: bool,
}

pub struct SpindBuilder {
    /// The binary (`env!("CARGO_BIN_EXE_spind")` in spind's own tests).
    pub binary: PathBuf,
    pub config: String,
    pub args: Vec<String>,
    pub state_dir: Option<PathBuf>,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// `log_loglevel` (7, debug, unless set: tests want the whole story in a failure report;
    /// benchmarks measure at the production level).
    pub log_level: u8,
    /// Extra environment variables of the spind process (e.g. `TZ`).
    pub env: Vec<(String, String)>,
}

impl SpindBuilder {
    /// Runs `binary` with a config of its own (free ports, a temporary state directory, log
    /// level 7 to `spind.log`) and `-j` on a socket in that directory.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        SpindBuilder {
            binary: binary.into(),
            config: String::new(),
            args: Vec::new(),
            state_dir: None,
            netns: None,
            log_level: 7,
            env: Vec::new(),
        }
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

    /// Sets an environment variable of the spind process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn log_level(mut self, level: u8) -> Self {
        self.log_level = level;
        self
    }

    pub fn state_dir(mut self, p: &Path) -> Self {
        self.state_dir = Some(p.to_path_buf());
        self
    }

    /// Starts spind and waits until its web server answers (in its namespace, if it has one).
    pub fn start(self) -> Spind {
        let netns = self.netns.clone();
        let s = self.spawn();
        let port = s.http_port;
        let wait = move || {
            crate::wait_for("spind's HTTP port", Duration::from_secs(20), || {
                TcpStream::connect(("127.0.0.1", port)).ok()
            });
        };
        match netns {
            Some(ns) => crate::netns::in_netns(&ns, wait),
            None => wait(),
        }
        s
    }

    /// Starts spind without waiting (for tests of start-up failures).
    pub fn spawn(self) -> Spind {
        let dir = tempfile::tempdir().unwrap();
        let [mqtt_port, ws_port, http_port] = free_ports();
        let state = self.state_dir.clone().unwrap_or_else(|| dir.path().join("state"));
        let conf = dir.path().join("spind.conf");
        std::fs::write(
            &conf,
            format!(
                "log_usesyslog = 0\nlog_loglevel = {}\npubsub_port = {mqtt_port}\npubsub_websocket_port = {ws_port}\n\
                 spinweb_port = {http_port}\nstate_dir = {}\n{}",
                self.log_level,
                state.display(),
                self.config
            ),
        )
        .unwrap();
        let log = dir.path().join("spind.log");
        let shell = crate::netns::shell();
        let (binary, rpc, args) = (&self.binary, dir.path().join("rpc.sock"), &self.args);
        let mut cmd = match &self.netns {
            // `ip netns exec` execs spind in place: the child's pid is spind's.
            Some(ns) => cmd!(shell, "ip netns exec {ns} {binary} -c {conf} -j {rpc} {args...}"),
            None => cmd!(shell, "{binary} -c {conf} -j {rpc} {args...}"),
        };
        for (k, v) in &self.env {
            cmd = cmd.env(k, v);
        }
        let stdout = std::fs::File::create(dir.path().join("stdout")).unwrap();
        let child = cmd
            .spawn(Stream::File(stdout), Stream::File(std::fs::File::create(&log).unwrap()))
            .unwrap_or_else(|e| panic!("start spind: {e}"));
        Spind { child, dir, mqtt_port, ws_port, http_port, log, reaped: false }
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
        crate::wait_for("spind to exit", timeout, || child.try_wait().unwrap()).code().unwrap_or(-1)
    }

    /// SIGTERM, as a service manager stops it.
    pub fn terminate(&mut self) {
        kill(self.child.id(), 15);
        let _ = self.wait_exit(Duration::from_secs(10));
    }

    /// Waits for spind to exit by itself: its exit code (128 + the signal if one ended it) and
    /// its peak RSS in KiB (wait4's rusage: every thread, the broker included).
    pub fn wait_rusage(&mut self) -> std::io::Result<(i32, i64)> {
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid value of the plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child with valid out-pointers.
        let r = unsafe { libc::wait4(self.child.id() as i32, &mut status, 0, &mut usage) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        self.reaped = true;
        let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
        Ok((code, usage.ru_maxrss))
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`; never panics (for clean-up
    /// paths). Whether it exited by itself.
    pub fn stop(&mut self, grace: Duration) -> bool {
        kill(self.child.id(), 15);
        let end = std::time::Instant::now() + grace;
        while std::time::Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
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
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- spind log ----\n{}", self.log_text());
        }
    }
}

/// Sends signal `sig` to `pid`.
pub fn kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory preconditions; callers name their own child.
    unsafe { libc::kill(pid as i32, sig) };
}
