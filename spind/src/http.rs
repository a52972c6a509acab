//! The HTTP side of spind (what SPIN's separate `spinweb` did): JSON-RPC over `POST`, and the
//! web UI's pages.
//!
//! One tiny_http server per listen address (`spinweb_interfaces` x `spinweb_port`), each served
//! by a few worker threads so one slow request does not hold up the others. Requests are routed
//! through [`routes`], a table the UI work extends with its static files.
//!
//! JSON-RPC replies are sent as `application/json`. The bubble app (`mqtt_client.js`,
//! `sendRPCCommand`) uses a plain `XMLHttpRequest` with the default `responseType`, so
//! `xhttp.response` is always text and it calls `JSON.parse` on it itself: the content type does
//! not matter to it (SPIN sent `text/html`), and no jQuery auto-parsing is involved.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use anyhow::anyhow;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::event::Input;
use crate::rpc_unix::{ask_core, MAX_REQUEST, TOO_LARGE_REPLY};

/// Worker threads per listen address.
const WORKERS: usize = 4;

/// Where to listen (SPIN: every `spinweb_interfaces` address on `spinweb_port`, 13026).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    pub addrs: Vec<SocketAddr>,
}

/// What handlers get besides the request.
pub struct Ctx {
    /// The core's input channel (for JSON-RPC).
    pub core: Sender<Input>,
}

/// A response: status, content type and body. Extra headers (e.g. `Allow`) in `headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    pub fn html(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply::new(status, "text/html; charset=utf-8", body)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

/// Which requests a route takes.
#[derive(Clone, Copy, Debug)]
pub enum PathMatch {
    /// Any path.
    Any,
    /// Exactly this path (query string ignored).
    Exact(&'static str),
    /// Any path starting with this.
    Prefix(&'static str),
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Exact(p) => path == *p,
            PathMatch::Prefix(p) => path.starts_with(p),
        }
    }
}

/// A request handler. `path` is the URL path without the query string.
pub type Handler = fn(req: &mut Request, path: &str, ctx: &Ctx) -> Reply;

/// One row of the routing table; the first matching row wins. `Method::Get` rows also take
/// `HEAD` (tiny_http leaves out the body).
#[derive(Clone)]
pub struct Route {
    pub method: Method,
    pub path: PathMatch,
    pub handler: Handler,
}

/// The routing table (SPIN §2.5). Unmatched `GET`s get 404, other unmatched methods 400.
pub fn routes() -> Vec<Route> {
    vec![
        // Any POST is JSON-RPC, whatever the path (as spinweb did).
        Route {
            method: Method::Post,
            path: PathMatch::Any,
            handler: rpc_post,
        },
        Route {
            method: Method::Get,
            path: PathMatch::Exact("/spin_api/jsonrpc"),
            handler: rpc_get,
        },
        Route {
            method: Method::Get,
            path: PathMatch::Exact("/spin_api/jsonrpc/"),
            handler: rpc_get,
        },
        Route {
            method: Method::Get,
            path: PathMatch::Exact("/"),
            handler: index,
        },
    ]
}

/// Start one server per address. A bind error names the address.
pub fn serve(s: &HttpSettings, core: Sender<Input>) -> anyhow::Result<Vec<JoinHandle<()>>> {
    // Bind everything first so a failure leaves nothing half-started.
    let servers = s
        .addrs
        .iter()
        .map(|addr| {
            Server::http(addr)
                .map(Arc::new)
                .map_err(|e| anyhow!("cannot listen for HTTP on {addr}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ctx = Arc::new(Ctx { core });
    let table: Arc<[Route]> = routes().into();
    let mut handles = Vec::new();
    for (server, addr) in servers.into_iter().zip(&s.addrs) {
        log::info!("HTTP server listening on {addr}");
        for i in 0..WORKERS {
            let (server, ctx, table) = (server.clone(), ctx.clone(), table.clone());
            handles.push(
                thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn(move || worker(&server, &table, &ctx))?,
            );
        }
    }
    Ok(handles)
}

fn worker(server: &Server, table: &[Route], ctx: &Ctx) {
    loop {
        let mut req = match server.recv() {
            Ok(r) => r,
            Err(e) => {
                log::warn!("HTTP server stopped: {e}");
                return;
            }
        };
        let reply = dispatch(&mut req, table, ctx);
        if let Err(e) = req.respond(to_response(reply)) {
            log::debug!("HTTP response not sent: {e}");
        }
    }
}

fn dispatch(req: &mut Request, table: &[Route], ctx: &Ctx) -> Reply {
    let url = req.url().to_string();
    let path = url.split(['?', '#']).next().unwrap_or("");
    let method = req.method().clone();
    let route = table.iter().find(|r| {
        let method_ok = r.method == method || (r.method == Method::Get && method == Method::Head);
        method_ok && r.path.matches(path)
    });
    match route {
        Some(r) => (r.handler)(req, path, ctx),
        None if matches!(method, Method::Get | Method::Head) => not_found(),
        None => Reply::html(400, "<html><body>Bad request.</body></html>"),
    }
}

fn to_response(r: Reply) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut resp = Response::from_data(r.body).with_status_code(r.status);
    let headers = std::iter::once(("Content-Type", r.content_type.to_string())).chain(r.headers);
    for (name, value) in headers {
        match Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            Ok(h) => resp.add_header(h),
            Err(()) => log::warn!("invalid HTTP header {name}: {value:?}"),
        }
    }
    resp
}

/// The 404 page.
pub fn not_found() -> Reply {
    Reply::html(404, "<html><body>Not found.</body></html>")
}

/// `POST` (any path): the body is a JSON-RPC request for the core.
fn rpc_post(req: &mut Request, _path: &str, ctx: &Ctx) -> Reply {
    let too_large = || Reply::new(413, "application/json", TOO_LARGE_REPLY);
    if req.body_length().is_some_and(|n| n > MAX_REQUEST) {
        return too_large();
    }
    // The length may be unknown (chunked): read at most one byte past the limit.
    let mut body = Vec::new();
    if let Err(e) = req
        .as_reader()
        .take(MAX_REQUEST as u64 + 1)
        .read_to_end(&mut body)
    {
        log::debug!("HTTP request body not read: {e}");
        return Reply::html(400, "<html><body>Bad request body.</body></html>");
    }
    if body.len() > MAX_REQUEST {
        return too_large();
    }
    match ask_core(&ctx.core, String::from_utf8_lossy(&body).into_owned()) {
        Ok(Some(answer)) => Reply::new(200, "application/json", answer),
        Ok(None) => Reply::new(200, "application/json", Vec::new()),
        Err(e) => {
            log::warn!("JSON-RPC request over HTTP not answered: {e}");
            // 502 makes the web app retry (it does so up to 10 times).
            Reply::new(
                502,
                "application/json",
                format!(r#"{{"jsonrpc":"2.0","error":{{"code":-32603,"message":"{e}"}}}}"#),
            )
        }
    }
}

fn rpc_get(_req: &mut Request, _path: &str, _ctx: &Ctx) -> Reply {
    Reply::html(
        405,
        "<html><body>Method not allowed: send JSON-RPC requests with POST.</body></html>",
    )
    .with_header("Allow", "POST")
}

/// Placeholder start page until the web UI is served; replace this handler (or its route).
pub const INDEX_HTML: &str = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
<title>SPIN</title></head><body><h1>SPIN</h1>\
<p>spind is running. JSON-RPC: <code>POST /spin_api/jsonrpc</code>.</p></body></html>\n";

fn index(_req: &mut Request, _path: &str, _ctx: &Ctx) -> Reply {
    Reply::html(200, INDEX_HTML)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RpcReply;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;
    use std::time::Duration;

    /// Answers `echo:<request>`, or nothing for the request `notify`.
    fn fake_core() -> Sender<Input> {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for input in rx {
                if let Input::Rpc {
                    request,
                    reply: RpcReply::Channel(r),
                } = input
                {
                    let answer = (request != "notify").then(|| format!("echo:{request}"));
                    let _ = r.send(answer);
                }
            }
        });
        tx
    }

    fn start() -> SocketAddr {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        serve(&HttpSettings { addrs: vec![addr] }, fake_core()).unwrap();
        addr
    }

    /// Raw HTTP/1.1 exchange; returns (status, headers, body).
    fn exchange(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let _ = s.write_all(body); // may fail if the server answers early (413)
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("no header end");
        let headers = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = headers[9..12].parse().unwrap();
        (status, headers, raw[split + 4..].to_vec())
    }

    fn post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        exchange(addr, &head, body)
    }

    fn get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
        exchange(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            b"",
        )
    }

    #[test]
    fn post_round_trip() {
        let addr = start();
        let req = br#"{"jsonrpc":"2.0","id":4,"method":"list_iplist","params":{"list":"block"}}"#;
        let (status, headers, body) = post(addr, "/spin_api/jsonrpc", req);
        assert_eq!(status, 200);
        assert!(
            headers
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{headers}"
        );
        assert_eq!(body, [b"echo:".as_slice(), req].concat());
        // Any path works for POST; a notification without result gives an empty 200.
        let (status, _, body) = post(addr, "/whatever", b"notify");
        assert_eq!((status, body.len()), (200, 0));
    }

    #[test]
    fn get_on_rpc_path_is_405_and_routing() {
        let addr = start();
        for p in [
            "/spin_api/jsonrpc",
            "/spin_api/jsonrpc/",
            "/spin_api/jsonrpc?x=1",
        ] {
            let (status, headers, body) = get(addr, p);
            assert_eq!(status, 405, "{p}");
            assert!(headers.contains("Allow: POST"));
            assert!(String::from_utf8_lossy(&body).contains("<html>"));
        }
        let (status, _, body) = get(addr, "/");
        assert_eq!(status, 200);
        assert_eq!(body, INDEX_HTML.as_bytes());
        assert_eq!(get(addr, "/nope.html").0, 404);
        let (status, _, _) = exchange(
            addr,
            "DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"",
        );
        assert_eq!(status, 400);
    }

    #[test]
    fn oversize_post_is_413() {
        let addr = start();
        let big = vec![b'x'; MAX_REQUEST + 1];
        let (status, _, body) = post(addr, "/spin_api/jsonrpc", &big);
        assert_eq!(status, 413);
        assert_eq!(body, TOO_LARGE_REPLY.as_bytes());
        // Chunked (length unknown up front) is limited too.
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = "POST /spin_api/jsonrpc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
                    Connection: close\r\n\r\n";
        s.write_all(head.as_bytes()).unwrap();
        for _ in 0..20 {
            let chunk = vec![b'y'; 4096];
            if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .is_err()
                || s.write_all(&chunk).is_err()
                || s.write_all(b"\r\n").is_err()
            {
                break;
            }
        }
        let _ = s.write_all(b"0\r\n\r\n");
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        assert!(raw.starts_with("HTTP/1.1 413"), "{raw:.100}");
        // A small request afterwards still works.
        assert_eq!(post(addr, "/spin_api/jsonrpc", b"{}").0, 200);
    }

    #[test]
    fn bind_error_names_the_address() {
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = busy.local_addr().unwrap();
        let err = serve(&HttpSettings { addrs: vec![addr] }, fake_core()).unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
