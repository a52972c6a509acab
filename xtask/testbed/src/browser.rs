//! Real-browser test support: Debian's chromium driven through chromedriver (W3C WebDriver over
//! HTTP) by a tiny hand-written client on std `TcpStream` + serde_json, and a stand-in broker
//! for the UI's login flow.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use runner::{cmd, Stream};
use serde_json::{json, Value};

use crate::http::http_exchange;
use crate::{free_port, wait_for};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether browser tests should run. Missing chromium/chromedriver is a failure naming the
/// packages; `SPIND_SKIP_BROWSER_TESTS=1` skips them (loudly), except under CI, where a skip is a
/// failure (see [`crate::gate`]).
pub fn browser_available(test: &str) -> bool {
    if crate::gate::opted_out("SPIND_SKIP_BROWSER_TESTS") {
        crate::gate::skip(test, "browser tests need chromium and chromedriver", "SPIND_SKIP_BROWSER_TESTS=1");
        return false;
    }
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER].into_iter().filter(|p| !Path::new(p).exists()).collect();
    if !missing.is_empty() {
        panic!(
            "{test} needs Debian's chromium and chromedriver, missing: {}. Install them with \
             `apt-get install chromium chromium-driver`, or set SPIND_SKIP_BROWSER_TESTS=1 to skip.",
            missing.join(", ")
        );
    }
    true
}

/// Where test artifacts go: `<target>/test-artifacts/`.
pub fn artifacts_dir() -> PathBuf {
    // This crate lives in xtask/testbed: the workspace's target directory is two levels up.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One chromedriver process with one headless chromium session; both end on drop.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

/// The W3C web element identifier key.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    pub fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("chromedriver-{port}.log"));
        let shell = crate::netns::shell();
        let (port_arg, log_arg) = (format!("--port={port}"), format!("--log-path={}", log.display()));
        let driver = cmd!(shell, "{CHROMEDRIVER} {port_arg} {log_arg}")
            .spawn(Stream::Null, Stream::Null)
            .unwrap_or_else(|e| panic!("start chromedriver: {e}"));
        wait_for("chromedriver to listen", Duration::from_secs(20), || TcpStream::connect(("127.0.0.1", port)).ok());
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // Navigation returns at once; every test then waits on the app's own state with a
            // timeout that names what it waited for (a slow machine delays the load event, and
            // WebDriver's own wait would fail without saying what was missing).
            "pageLoadStrategy": "none",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let mut b = Browser { driver, port, session: String::new(), _profile: profile };
        let v = b.raw("POST", "/session", Some(caps));
        b.session = v["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {v}")).to_string();
        b
    }

    /// One WebDriver command; returns `value`, panics with the driver's error.
    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers: &[(&str, &str)] = if body.is_empty() { &[] } else { &[("Content-Type", "application/json")] };
        let (status, resp) = http_call(self.port, method, path, headers, body.as_bytes());
        let v: Value =
            serde_json::from_slice(&resp).unwrap_or_else(|e| panic!("WebDriver {method} {path}: bad JSON ({e})"));
        if status != 200 {
            panic!("WebDriver {method} {path} failed ({status}): {}", v["value"]);
        }
        v["value"].clone()
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.raw(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn refresh(&self) {
        self.cmd("POST", "/refresh", Some(json!({})));
    }

    pub fn set_window(&self, width: u32, height: u32) {
        self.cmd("POST", "/window/rect", Some(json!({"width": width, "height": height})));
    }

    /// Runs `body` (a function body; `arguments` holds `args`) in the page; returns its value.
    pub fn js(&self, body: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({ "script": body, "args": args })))
    }

    /// Polls a JS expression until it is truthy; returns its value.
    pub fn wait_js(&self, what: &str, timeout: Duration, expr: &str) -> Value {
        let end = Instant::now() + timeout;
        let mut last = Value::Null;
        loop {
            last = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.js(&format!("return ({expr});"), json!([]))
            })) {
                Ok(v) => v,
                Err(_) => last,
            };
            let truthy = !matches!(&last, Value::Null | Value::Bool(false)) && last != json!(0) && last != json!("");
            if truthy {
                eprintln!("[{:>6.1?}] {what}", Instant::now() - (end - timeout));
                return last;
            }
            if Instant::now() > end {
                panic!(
                    "timed out after {timeout:?} waiting for {what} (`{expr}` was {last}); browser log:\n{}",
                    self.console_log()
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// A real mouse click at viewport CSS coordinates (pointer events, as a user's click).
    pub fn click_at(&self, x: f64, y: f64) {
        let actions = json!({"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [
                {"type": "pointerMove", "duration": 0, "origin": "viewport", "x": x.round() as i64, "y": y.round() as i64},
                {"type": "pointerDown", "button": 0},
                {"type": "pause", "duration": 50},
                {"type": "pointerUp", "button": 0},
            ],
        }]});
        self.cmd("POST", "/actions", Some(actions));
        self.cmd("DELETE", "/actions", None);
    }

    pub fn find(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        v[ELEMENT_KEY].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_string()
    }

    /// Clicks an element (WebDriver element click: scrolls into view, real pointer events).
    /// Retries when the page re-rendered the element between finding and clicking it.
    pub fn click(&self, css: &str) {
        for attempt in 0.. {
            let id = self.find(css);
            let (status, resp) = self.try_cmd("POST", &format!("/element/{id}/click"), json!({}));
            if status == 200 {
                return;
            }
            if attempt < 5 && resp.contains("stale element") {
                thread::sleep(Duration::from_millis(100));
                continue;
            }
            panic!("clicking {css} failed ({status}): {resp}");
        }
    }

    fn try_cmd(&self, method: &str, path: &str, body: Value) -> (u16, String) {
        let body = body.to_string();
        let (status, resp) = http_call(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        (status, String::from_utf8_lossy(&resp).into_owned())
    }

    /// Clears an input and types `text` into it.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.cmd("POST", &format!("/element/{id}/value"), Some(json!({ "text": text })));
    }

    pub fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.cmd("GET", &format!("/element/{id}/text"), None).as_str().unwrap_or("").to_string()
    }

    /// A PNG screenshot of the viewport, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().expect("screenshot data"));
        std::fs::write(path, png).unwrap();
    }

    /// The page's console messages so far (for failure reports).
    pub fn console_log(&self) -> String {
        let v = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.cmd("POST", "/se/log", Some(json!({"type": "browser"})))
        }))
        .unwrap_or(Value::Null);
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| format!("{} {}", e["level"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.raw("DELETE", &format!("/session/{}", self.session), None);
            }));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One HTTP/1.1 exchange that reads exactly `Content-Length` bytes (chromedriver keeps
/// connections open, so reading to the end would wait for its idle timeout).
fn http_call(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    let mut need: Option<usize> = None;
    loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if need.is_none() {
                let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)));
                need = Some(len.map_or(usize::MAX, |l| p + 4 + l));
            }
            if buf.len() >= need.unwrap() {
                break;
            }
        }
        let n = s.read(&mut tmp).unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let p = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("HTTP response header");
    let head = String::from_utf8_lossy(&buf[..p]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status code");
    (status, buf[p + 4..].to_vec())
}

fn base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        } as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Where the browser loads the UI from: spind's own web port, which must serve its embedded UI
/// (`GET /js/app.js` answers 200). Returns the base URL (`http://127.0.0.1:PORT`).
pub fn spind_ui_origin(spind_http_port: u16) -> String {
    let (status, _, _) = http_exchange(spind_http_port, "GET", "/js/app.js", &[], b"");
    assert_eq!(status, 200, "spind on port {spind_http_port} does not serve its embedded UI (GET /js/app.js)");
    format!("http://127.0.0.1:{spind_http_port}")
}

/// A stand-in MQTT-over-WebSocket broker that refuses connections without the right
/// credentials (CONNACK 5, "not authorized") and accepts them with: for the UI's login flow.
/// Each CONNECT's (username, password) is sent on `connects`.
pub struct FakeBroker {
    pub port: u16,
    pub connects: std::sync::mpsc::Receiver<(Option<String>, Option<String>)>,
}

impl FakeBroker {
    pub fn start(user: &'static str, pass: &'static str) -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, connects) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let tx = tx.clone();
                thread::spawn(move || {
                    let _ = fake_broker_conn(conn, user, pass, tx);
                });
            }
        });
        FakeBroker { port, connects }
    }
}

fn fake_broker_conn(
    mut c: TcpStream,
    user: &str,
    pass: &str,
    tx: std::sync::mpsc::Sender<(Option<String>, Option<String>)>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut tmp)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let key = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("sec-websocket-key:").then(|| l[18..].trim().to_string()))
        .unwrap_or_default();
    let accept = base64_encode(&sha1(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes()));
    write!(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n")?;
    // One client frame (masked): the CONNECT packet.
    let mut h = [0u8; 2];
    c.read_exact(&mut h)?;
    let mut len = (h[1] & 0x7f) as usize;
    if len == 126 {
        let mut l = [0u8; 2];
        c.read_exact(&mut l)?;
        len = u16::from_be_bytes(l) as usize;
    }
    let mut mask = [0u8; 4];
    c.read_exact(&mut mask)?;
    let mut p = vec![0u8; len];
    c.read_exact(&mut p)?;
    for (i, b) in p.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    // CONNECT: type, remaining length (1 byte here), "MQTT", level, flags, keepalive, strings.
    fn field(p: &[u8], i: &mut usize) -> String {
        let l = u16::from_be_bytes([p[*i], p[*i + 1]]) as usize;
        let s = String::from_utf8_lossy(&p[*i + 2..*i + 2 + l]).into_owned();
        *i += 2 + l;
        s
    }
    let mut i = 2;
    let _proto = field(&p, &mut i);
    let flags = p[i + 1];
    i += 4;
    let _client_id = field(&p, &mut i);
    let u = (flags & 0x80 != 0).then(|| field(&p, &mut i));
    let pw = (flags & 0x40 != 0).then(|| field(&p, &mut i));
    let ok = u.as_deref() == Some(user) && pw.as_deref() == Some(pass);
    let _ = tx.send((u, pw));
    c.write_all(&[0x82, 4, 0x20, 2, 0, if ok { 0 } else { 5 }])?;
    if ok {
        // Stay connected (answer nothing else) until the browser goes away.
        while c.read(&mut tmp)? > 0 {}
    }
    Ok(())
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for ch in data.chunks(3) {
        let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= ch.len() {
                out.push(T[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// SHA-1 (for the WebSocket handshake of the fake broker only).
fn sha1(msg: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut m = msg.to_vec();
    m.push(0x80);
    while m.len() % 64 != 56 {
        m.push(0);
    }
    m.extend_from_slice(&((msg.len() as u64) * 8).to_be_bytes());
    for block in m.chunks(64) {
        let mut w = [0u32; 80];
        for t in 0..16 {
            w[t] = u32::from_be_bytes([block[4 * t], block[4 * t + 1], block[4 * t + 2], block[4 * t + 3]]);
        }
        for t in 16..80 {
            w[t] = (w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (t, wt) in w.iter().enumerate() {
            let (f, k) = match t {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let tmp = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*wt);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = tmp;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_and_base64_match_the_websocket_rfc_example() {
        // RFC 6455 §1.3.
        let accept = base64_encode(&sha1(b"dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11"));
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
