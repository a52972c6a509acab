//! HTTP/1.1 by hand, for tests that need full control over what goes on the wire: raw requests
//! (request line, headers, pipelining), JSON-RPC over HTTP POST and over the unix socket, and
//! the WebSocket handshake plus a bare MQTT CONNECT on `/mqtt`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

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

/// A raw HTTP/1.1 request; returns (status, body).
pub fn http_request(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let (status, _, body) = http_exchange(port, method, path, &[], body);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A raw HTTP/1.1 request with extra headers; returns (status, header block, body bytes).
pub fn http_exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
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

/// A JSON-RPC request over the unix socket; returns the raw answer (without the newline).
pub fn rpc_unix(path: &Path, request: &[u8]) -> String {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.trim_end_matches('\n').to_string()
}

/// Status, lowercased header block and body of a response.
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim().to_ascii_lowercase() == name).then(|| v.trim().to_string())
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `raw` as is (it must ask for `Connection: close`) and parses the answer.
pub fn raw(port: u16, raw: &[u8]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(raw).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    parse(&resp)
}

pub fn parse(resp: &[u8]) -> Resp {
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response header in {:?}", String::from_utf8_lossy(resp)));
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let mut body = resp[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Resp { status, head, body }
}

pub fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else { return out };
        let len = usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if len == 0 || data.len() < eol + 2 + len {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + len]);
        data = &data[(eol + 4 + len).min(data.len())..];
    }
}

/// `METHOD target` with extra header lines.
pub fn req(port: u16, method: &str, target: &str, headers: &[&str]) -> Resp {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    raw(port, r.as_bytes())
}

pub fn get(port: u16, target: &str) -> Resp {
    req(port, "GET", target, &[])
}

/// A WebSocket upgrade request for `/mqtt`.
pub fn ws_upgrade(extra: &[&str]) -> String {
    let mut r = String::from(
        "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n",
    );
    for h in extra {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r
}

/// Reads a response head (up to the blank line) byte by byte.
pub fn read_head(s: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// After a `101`, sends MQTT CONNECT in a masked WebSocket frame and returns the CONNACK bytes.
pub fn mqtt_connect_over_ws(s: &mut (impl Read + Write)) -> Vec<u8> {
    let connect: [u8; 16] = [0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 2, b't', b'1'];
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let mut frame = vec![0x82, 0x80 | connect.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(connect.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).unwrap();
    s.flush().unwrap();
    let mut hdr = [0u8; 2];
    s.read_exact(&mut hdr).unwrap();
    assert_eq!(hdr[0] & 0x0f, 2, "binary frame");
    let mut payload = vec![0u8; (hdr[1] & 0x7f) as usize];
    s.read_exact(&mut payload).unwrap();
    payload
}

/// Accepts one HTTP/1.1 request on `l`, answers it with `status` (for example `"204 No
/// Content"`) and an empty body, and returns its request line and body: a stand-in receiver
/// for what spind sends out (the alert webhook).
pub fn answer_one(l: &std::net::TcpListener, status: &str) -> (String, String) {
    use std::io::BufRead;
    let (s, _) = l.accept().unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let mut first = String::new();
    r.read_line(&mut first).unwrap();
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    (&s).write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    (first, String::from_utf8(body).unwrap())
}
