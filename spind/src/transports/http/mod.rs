//! The HTTP side of spind (what SPIN's separate `spinweb` did): JSON-RPC over `POST`, the web
//! UI, SPIN 1.0's web paths, per-device packet capture, Basic auth, TLS, and the MQTT WebSocket
//! on the web port (`/mqtt`).
//!
//! Connections are accepted by [`front`] (one listener per `spinweb_interfaces` address on
//! `spinweb_port`, TLS if configured, `/mqtt` WebSocket upgrades proxied to the broker) and
//! handed to one tiny_http server on an internal socket, served by a few worker threads. Requests
//! are routed through [`routes`]; streaming handlers (packet capture) get their own thread.
//!
//! Every request first passes [`access::gate`] (`Host`, origin, the admin's credentials), and
//! every response carries [`access::SECURITY_HEADERS`].
//!
//! Routes (GET also takes HEAD; SPIN §2.5):
//! * any `POST`: JSON-RPC; `GET /spin_api/jsonrpc[/]`: 405;
//! * `/spin_api/tcpdump_start?device=MAC`: pcap stream of the device's frames, until
//!   `/spin_api/tcpdump_stop?device=MAC`; `/spin_api/tcpdump_status?device=MAC`: JSON status;
//!   `/spin_api/capture?device=MAC` and `/spin_api/tcpdump?device=MAC`: a small capture page;
//! * `/spin_api/export?device=MAC&from=T1&to=T2&format=csv|json`: the device's hourly history
//!   (`get_history`) as a download;
//! * `/login`, `/logout`, `/setup`, `/password`: the admin account ([`access`]);
//! * everything else: static files (the built-in UI, then `spinweb_static_dir`); not found: 404
//!   for paths ending in `/`, otherwise `302 Location: ./` (as SPIN);
//! * other methods: 400.
//!
//! JSON-RPC replies are sent as `application/json`. The bubble app (`mqtt_client.js`,
//! `sendRPCCommand`) uses a plain `XMLHttpRequest` with the default `responseType`, so
//! `xhttp.response` is always text and it calls `JSON.parse` on it itself: the content type does
//! not matter to it (SPIN sent `text/html`), and no jQuery auto-parsing is involved.

pub mod access;
pub mod front;
pub mod statics;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::linux::net::SocketAddrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use anyhow::anyhow;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::model::event::{Input, MacAddr};
use crate::transports::auth::Auth;
use crate::transports::capture::{CaptureError, Captures};
use crate::transports::rpc_link::{self, MAX_REQUEST, TOO_LARGE_REPLY};
use statics::{Lookup, StaticRequest, Statics};

/// Worker threads of the tiny_http server.
const WORKERS: usize = 4;

/// PEM files for HTTPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// What the web server does (SPIN: every `spinweb_interfaces` address on `spinweb_port`, 13026).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HttpSettings {
    pub addrs: Vec<SocketAddr>,
    /// `spinweb_static_dir`: extra files (e.g. SPIN's original `static/` directory).
    pub static_dir: Option<PathBuf>,
    /// `spinweb_first_run_password_file`: what proves physical access at first-run setup.
    pub first_run_password_file: Option<PathBuf>,
    /// `spinweb_hostnames`: extra names the router answers to.
    pub hostnames: Vec<String>,
    /// HTTPS instead of HTTP.
    pub tls: Option<TlsFiles>,
    /// The broker's MQTT-over-WebSocket listener, for `/mqtt` on the web port.
    pub mqtt_websocket: Option<SocketAddr>,
}

impl HttpSettings {
    /// Plain HTTP on these addresses, nothing else.
    #[cfg(test)]
    pub fn plain(addrs: Vec<SocketAddr>) -> HttpSettings {
        HttpSettings { addrs, ..HttpSettings::default() }
    }
}

/// What handlers get besides the request.
pub struct Ctx {
    /// The core's input channel (for JSON-RPC).
    pub core: Sender<Input>,
    pub statics: Statics,
    pub access: access::Access,
    pub captures: Captures,
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
        Reply { status, content_type, body: body.into(), headers: Vec::new() }
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
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Exact(p) => path == *p,
        }
    }
}

/// A request handler. `path` is the URL path without the query string.
#[derive(Clone, Copy)]
pub enum Handler {
    /// Returns a reply, which the worker sends.
    Reply(fn(req: &mut Request, path: &str, ctx: &Ctx) -> Reply),
    /// Takes the request over and answers it itself, on its own thread (long streams).
    Stream(fn(req: Request, ctx: Arc<Ctx>)),
}

/// One row of the routing table; the first matching row wins. `Method::Get` rows also take
/// `HEAD` (tiny_http leaves out the body).
#[derive(Clone)]
pub struct Route {
    pub method: Method,
    pub path: PathMatch,
    pub handler: Handler,
}

fn get(path: &'static str, handler: Handler) -> Route {
    Route { method: Method::Get, path: PathMatch::Exact(path), handler }
}

/// The routing table (SPIN §2.5). Unmatched methods get 400.
pub fn routes() -> Vec<Route> {
    use Handler::{Reply as R, Stream as S};
    vec![
        get("/password", R(access::password_page)),
        Route { method: Method::Post, path: PathMatch::Exact("/password"), handler: R(access::password_page) },
        // Any POST is JSON-RPC, whatever the path (as spinweb did).
        Route { method: Method::Post, path: PathMatch::Any, handler: R(rpc_post) },
        get("/spin_api/jsonrpc", R(rpc_get)),
        get("/spin_api/jsonrpc/", R(rpc_get)),
        get("/spin_api/tcpdump_start", S(tcpdump_start)),
        get("/spin_api/tcpdump_stop", R(tcpdump_stop)),
        get("/spin_api/tcpdump_status", R(tcpdump_status)),
        get("/spin_api/capture", R(capture_page)),
        get("/spin_api/capture.js", R(capture_js)),
        get("/spin_api/tcpdump", R(capture_page)),
        get("/spin_api/capture_start", R(mqtt_capture)),
        get("/spin_api/capture_stop", R(mqtt_capture)),
        get("/spin_api/mqtt_login", R(mqtt_login)),
        get("/spin_api/export", R(export)),
        get("/mqtt", R(mqtt_plain_get)),
        Route { method: Method::Get, path: PathMatch::Any, handler: R(static_file) },
    ]
}

/// Numbers the web servers started by this process (their internal socket names).
/// `AtomicUsize`, not `AtomicU64`: 32-bit MIPS (GL.iNet AR150) has no 64-bit atomics.
static INTERNAL_ID: AtomicUsize = AtomicUsize::new(0);

/// Starts the web server. Everything is checked and bound before anything runs, so a failure
/// (a busy address, unreadable TLS or password files) leaves nothing half-started.
/// `auth` is the admin account (login, Basic auth; shared with the MQTT broker); `None`: open.
pub fn serve(s: &HttpSettings, auth: Option<Arc<Auth>>, core: Sender<Input>) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let tls = match &s.tls {
        Some(t) => Some(front::tls_config(&t.certificate, &t.key)?),
        None => None,
    };
    let statics = Statics::new(s.static_dir.as_deref())?;
    let listeners = front::bind_all(&s.addrs, tls.is_some())?;

    let name = format!("spind-http-{}-{}", std::process::id(), INTERNAL_ID.fetch_add(1, Ordering::SeqCst));
    let internal = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let unix = std::os::unix::net::UnixListener::bind_addr(&internal)
        .map_err(|e| anyhow!("cannot create the web server's internal socket: {e}"))?;
    let server = Arc::new(Server::from_listener(unix, None).map_err(|e| anyhow!("cannot start the web server: {e}"))?);

    let hosts = access::Hosts::new(&s.addrs, &s.hostnames);
    let access =
        access::Access { auth: auth.clone(), first_run_file: s.first_run_password_file.clone(), hosts: hosts.clone() };
    let ctx = Arc::new(Ctx { core, statics, access, captures: Captures::default() });
    let table: Arc<[Route]> = routes().into();
    let mut handles = Vec::new();
    for i in 0..WORKERS {
        let (server, ctx, table) = (server.clone(), ctx.clone(), table.clone());
        handles.push(thread::Builder::new().name(format!("http-{i}")).spawn(move || worker(&server, &table, &ctx))?);
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let front =
        Arc::new(front::Front { internal, tls, auth, hosts, mqtt_ws: s.mqtt_websocket, active: AtomicUsize::new(0) });
    for addr in &s.addrs {
        log::info!("web server listening on {scheme}://{addr}/");
    }
    front::spawn(listeners, front)?;
    Ok(handles)
}

fn worker(server: &Server, table: &[Route], ctx: &Arc<Ctx>) {
    loop {
        let mut req = match server.recv() {
            Ok(r) => r,
            Err(e) => {
                log::warn!("HTTP server stopped: {e}");
                return;
            }
        };
        let reply = match route(&mut req, table, ctx) {
            Ok(Handler::Stream(h)) => {
                let ctx = ctx.clone();
                if let Err(e) = thread::Builder::new().name("http-stream".into()).spawn(move || h(req, ctx)) {
                    log::warn!("cannot start a thread for a streaming request: {e}");
                }
                continue;
            }
            Ok(Handler::Reply(h)) => {
                let url = req.url().to_string();
                h(&mut req, url_path(&url), ctx)
            }
            Err(reply) => reply,
        };
        if let Err(e) = req.respond(to_response(reply)) {
            log::debug!("HTTP response not sent: {e}");
        }
    }
}

/// The path part of a request target.
pub fn url_path(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or("")
}

/// The value of a request header.
pub fn header<'a>(req: &'a Request, name: &'static str) -> Option<&'a str> {
    req.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str())
}

/// Access, then the routing table: the handler to run, or the reply when none runs.
fn route(req: &mut Request, table: &[Route], ctx: &Ctx) -> Result<Handler, Reply> {
    access::gate(req, &ctx.access)?;
    let url = req.url().to_string();
    let path = url_path(&url);
    let method = req.method().clone();
    let route = table.iter().find(|r| {
        let method_ok = r.method == method || (r.method == Method::Get && method == Method::Head);
        method_ok && r.path.matches(path)
    });
    match route {
        Some(r) => Ok(r.handler),
        None if matches!(method, Method::Get | Method::Head) => Err(not_found()),
        None => Err(Reply::html(400, "<html><body>Bad request.</body></html>")),
    }
}

fn to_response(r: Reply) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut resp = Response::from_data(r.body).with_status_code(r.status);
    let security = access::SECURITY_HEADERS.iter().map(|(k, v)| (*k, v.to_string()));
    let headers = std::iter::once(("Content-Type", r.content_type.to_string())).chain(r.headers).chain(security);
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

/// How much of an oversize body is read and dropped before the 413 goes out.
const DRAIN_ON_REFUSAL: u64 = 1 << 20;

/// `POST` (any path): the body is a JSON-RPC request for the core.
fn rpc_post(req: &mut Request, _path: &str, ctx: &Ctx) -> Reply {
    // Before refusing, read (and drop) what the client still sends, up to a bound: closing
    // a socket with unread input makes the kernel send a reset, which can destroy the 413 in
    // the client's receive buffer before it reads it (seen in CI on a busy machine).
    let too_large = |req: &mut Request| {
        let _ = std::io::copy(&mut req.as_reader().take(DRAIN_ON_REFUSAL), &mut std::io::sink());
        Reply::new(413, "application/json", TOO_LARGE_REPLY)
    };
    if req.body_length().is_some_and(|n| n > MAX_REQUEST) {
        return too_large(req);
    }
    // The length may be unknown (chunked): read at most one byte past the limit.
    let mut body = Vec::new();
    if let Err(e) = req.as_reader().take(MAX_REQUEST as u64 + 1).read_to_end(&mut body) {
        log::debug!("HTTP request body not read: {e}");
        return Reply::html(400, "<html><body>Bad request body.</body></html>");
    }
    if body.len() > MAX_REQUEST {
        return too_large(req);
    }
    match rpc_link::ask(&ctx.core, String::from_utf8_lossy(&body).into_owned()) {
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
    Reply::html(405, "<html><body>Method not allowed: send JSON-RPC requests with POST.</body></html>")
        .with_header("Allow", "POST")
}

/// Static files; not found as SPIN: 404 for `.../`, otherwise `302 Location: ./`.
fn static_file(req: &mut Request, path: &str, ctx: &Ctx) -> Reply {
    let accept_gzip = header(req, "Accept-Encoding").is_some_and(accepts_gzip);
    let sreq = StaticRequest { path, accept_gzip, if_none_match: header(req, "If-None-Match") };
    match ctx.statics.lookup(&sreq) {
        Lookup::Found(r) => r,
        Lookup::Refused => Reply::html(403, "<html><body>Forbidden.</body></html>"),
        Lookup::NotFound if path.ends_with('/') => not_found(),
        Lookup::NotFound => Reply::html(302, "<html><body>Moved.</body></html>").with_header("Location", "./"),
    }
}

/// Whether an `Accept-Encoding` value allows gzip (`gzip` or `*`, without `q=0`).
pub fn accepts_gzip(value: &str) -> bool {
    value.split(',').any(|item| {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q_zero = parts.any(|p| {
            let p = p.trim().to_ascii_lowercase();
            p.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().map(|q| q == 0.0).unwrap_or(false))
        });
        (coding == "gzip" || coding == "x-gzip" || coding == "*") && !q_zero
    })
}

/// The `device` query parameter as a MAC address.
fn device_param(url: &str) -> Option<MacAddr> {
    let query = url.split_once('?')?.1.split('#').next()?;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        if k != "device" {
            return None;
        }
        let v = v.replace("%3A", ":").replace("%3a", ":");
        v.parse::<MacAddr>().ok()
    })
}

/// A query parameter's value (`%3A`/`%3a` decoded: MACs).
fn query_param<'a>(url: &'a str, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    let query = url.split_once('?')?.1.split('#').next()?;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| if v.contains('%') { v.replace("%3A", ":").replace("%3a", ":").into() } else { v.into() })
    })
}

/// `GET /spin_api/export?device=MAC&from=T1&to=T2&format=csv|json`: the device's hourly history
/// (what `get_history` answers), as CSV or JSON to download.
fn export(req: &mut Request, _path: &str, ctx: &Ctx) -> Reply {
    let url = req.url().to_string();
    let bad = |why: &str| Reply::new(400, "text/plain; charset=utf-8", format!("Bad request: {why}\n"));
    let Some(device) = device_param(&url) else { return bad("give the device as ?device=xx:xx:xx:xx:xx:xx") };
    let time = |name| query_param(&url, name).and_then(|v| v.parse::<i64>().ok());
    let (Some(from), Some(to)) = (time("from"), time("to")) else {
        return bad("give 'from' and 'to' as unix times in seconds");
    };
    let format = query_param(&url, "format").unwrap_or("json".into()).into_owned();
    if format != "csv" && format != "json" {
        return bad("'format' is csv or json");
    }
    let request = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "get_history",
        "params": {"device": device.to_string(), "from": from, "to": to, "resolution": "hour"}});
    let answer = match rpc_link::ask(&ctx.core, request.to_string()) {
        Ok(Some(a)) => a,
        Ok(None) => return Reply::new(502, "text/plain; charset=utf-8", "no answer from the core\n"),
        Err(e) => return Reply::new(502, "text/plain; charset=utf-8", format!("{e}\n")),
    };
    let value: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
    let Some(rows) = value.get("result").and_then(|r| r.as_array()) else {
        let why = value.pointer("/error/message").and_then(|m| m.as_str()).unwrap_or("no result");
        return bad(why);
    };
    let file = format!("spin-history-{}-{from}-{to}", device.to_string().replace(':', ""));
    if format == "json" {
        return Reply::new(200, "application/json", serde_json::Value::Array(rows.clone()).to_string())
            .with_header("Content-Disposition", format!("attachment; filename=\"{file}.json\""));
    }
    const COLUMNS: [&str; 6] = ["time", "bytes_in", "bytes_out", "packets", "connections", "blocked"];
    let mut csv = COLUMNS.join(",");
    csv.push('\n');
    for r in rows {
        let cells: Vec<String> = COLUMNS.iter().map(|c| r.get(*c).map(|v| v.to_string()).unwrap_or_default()).collect();
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    Reply::new(200, "text/csv; charset=utf-8", csv)
        .with_header("Content-Disposition", format!("attachment; filename=\"{file}.csv\""))
}

fn bad_device() -> Reply {
    Reply::html(
        400,
        "<html><body>Bad request: give the device as <code>?device=xx:xx:xx:xx:xx:xx</code>.</body></html>",
    )
}

const PCAP_TYPE: &str = "application/vnd.tcpdump.pcap";

/// `GET /spin_api/tcpdump_start?device=MAC`: streams the device's frames as pcap until
/// `tcpdump_stop` (or the client goes away). A new start for the same device ends the old one.
fn tcpdump_start(req: Request, ctx: Arc<Ctx>) {
    let url = req.url().to_string();
    let respond = |req: Request, r: Reply| {
        let _ = req.respond(to_response(r));
    };
    let Some(mac) = device_param(&url) else {
        return respond(req, bad_device());
    };
    if *req.method() == Method::Head {
        return respond(req, Reply::new(200, PCAP_TYPE, Vec::new()));
    }
    let (state, sock) = match ctx.captures.start(mac) {
        Ok(x) => x,
        Err(e) => {
            log::warn!("capture for {mac} not started: {e}");
            let status = match e {
                CaptureError::NoPermission | CaptureError::Busy => 503,
                CaptureError::Io(_) => 500,
            };
            return respond(req, Reply::new(status, "text/plain; charset=utf-8", format!("{e}\n")));
        }
    };
    log::info!("packet capture for {mac} started");
    let chunked = req.http_version() >= &tiny_http::HTTPVersion(1, 1);
    let mut w = req.into_writer();
    let file = format!("spin-{}.pcap", mac.to_string().replace(':', "-"));
    let head = format!(
        "HTTP/1.{} 200 OK\r\nContent-Type: {PCAP_TYPE}\r\n\
         Content-Disposition: attachment; filename=\"{file}\"\r\nCache-Control: no-store\r\n\
         {}{}Connection: close\r\n\r\n",
        if chunked { 1 } else { 0 },
        if chunked { "Transfer-Encoding: chunked\r\n" } else { "" },
        access::SECURITY_HEADERS.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect::<String>(),
    );
    let result = (|| {
        w.write_all(head.as_bytes())?;
        if chunked {
            let mut c = Chunked(&mut w);
            crate::transports::capture::run(&state, sock, &mut c)?;
            w.write_all(b"0\r\n\r\n")?;
        } else {
            crate::transports::capture::run(&state, sock, &mut w)?;
        }
        w.flush()
    })();
    log::info!(
        "packet capture for {mac} ended ({} bytes){}",
        state.bytes(),
        result.err().map(|e| format!(": {e}")).unwrap_or_default()
    );
}

/// Each write is one HTTP chunk.
struct Chunked<'a>(&'a mut Box<dyn Write + Send>);

impl Write for Chunked<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut out = format!("{:x}\r\n", buf.len()).into_bytes();
        out.extend_from_slice(buf);
        out.extend_from_slice(b"\r\n");
        self.0.write_all(&out)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn tcpdump_stop(req: &mut Request, _path: &str, ctx: &Ctx) -> Reply {
    let Some(mac) = device_param(req.url()) else {
        return bad_device();
    };
    if ctx.captures.stop(&mac) {
        log::info!("packet capture for {mac} stopped");
    }
    Reply::html(200, "")
}

fn tcpdump_status(req: &mut Request, _path: &str, ctx: &Ctx) -> Reply {
    let Some(mac) = device_param(req.url()) else {
        return bad_device();
    };
    let st = ctx.captures.status(&mac);
    let body = serde_json::json!({
        "device": mac.to_string(),
        "running": st.running,
        "bytes": st.bytes.map(|b| b as i64).unwrap_or(-1),
    });
    Reply::new(200, "application/json", body.to_string()).with_header("Cache-Control", "no-store")
}

/// `/spin_api/mqtt_login`: the MQTT user name and password of the caller's login session, for
/// the web UI's broker connection (its cookie is `HttpOnly`). `{}` when there is nothing to
/// give: no admin account (the broker needs no credentials) or Basic auth (use those).
fn mqtt_login(req: &mut Request, _path: &str, ctx: &Ctx) -> Reply {
    let creds = ctx.access.auth.as_ref().and_then(|a| a.mqtt_credentials(header(req, "Cookie")));
    let body = match creds {
        Some((user, password)) => serde_json::json!({"username": user, "password": password}),
        None => serde_json::json!({}),
    };
    Reply::new(200, "application/json", body.to_string()).with_header("Cache-Control", "no-store")
}

/// SPIN's "new style" capture published hex over MQTT for its capture page; not done here.
fn mqtt_capture(_req: &mut Request, _path: &str, _ctx: &Ctx) -> Reply {
    Reply::html(
        501,
        "<html><body>Capture over MQTT is not supported; use /spin_api/tcpdump_start?device=MAC \
         for a pcap download.</body></html>",
    )
}

fn mqtt_plain_get(_req: &mut Request, _path: &str, _ctx: &Ctx) -> Reply {
    Reply::html(
        400,
        "<html><body>/mqtt is the MQTT WebSocket endpoint: connect with a WebSocket client \
         (a fresh connection).</body></html>",
    )
}

/// `/spin_api/capture?device=MAC` (what the bubble app opens) and `/spin_api/tcpdump`: a small
/// page to download a capture and stop it.
fn capture_page(req: &mut Request, _path: &str, _ctx: &Ctx) -> Reply {
    let Some(mac) = device_param(req.url()) else {
        return bad_device();
    };
    // The MAC is validated, so it is safe to put in the page as is.
    Reply::html(200, CAPTURE_PAGE.replace("_MAC_", &mac.to_string())).with_header("Cache-Control", "no-store")
}

const CAPTURE_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SPIN capture _MAC_</title>
<style>body{font-family:sans-serif;margin:2em}button,a.b{font-size:1em;margin-right:1em}</style>
</head><body>
<h1>Capture traffic of _MAC_</h1>
<p>Start downloads a pcap file (open it with Wireshark) that grows until you press Stop.</p>
<p><a class="b" id="start" href="tcpdump_start?device=_MAC_" download>Start</a>
<button id="stop">Stop</button></p>
<p id="status">&nbsp;</p>
<script src="capture.js" data-device="_MAC_" id="capture-js"></script>
</body></html>
"#;

/// The capture page's script (a file of its own: the CSP allows no inline script).
const CAPTURE_JS: &str = r#"const dev = document.getElementById("capture-js").dataset.device;
document.getElementById("stop").onclick = () => fetch("tcpdump_stop?device=" + dev).then(poll);
function poll() {
  fetch("tcpdump_status?device=" + dev).then(r => r.json()).then(s => {
    document.getElementById("status").textContent =
      (s.running ? "Capturing: " : "Not capturing. Last capture: ") + Math.max(s.bytes, 0) + " bytes";
  }).catch(() => {});
}
poll();
setInterval(poll, 2000);
"#;

fn capture_js(_req: &mut Request, _path: &str, _ctx: &Ctx) -> Reply {
    Reply::new(200, "text/javascript; charset=utf-8", CAPTURE_JS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    use crate::transports::rpc_link::fake_core;

    fn start() -> SocketAddr {
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        serve(&HttpSettings::plain(vec![addr]), None, fake_core()).unwrap();
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
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("no header end");
        let headers = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = headers[9..12].parse().unwrap();
        (status, headers, raw[split + 4..].to_vec())
    }

    fn post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        exchange(addr, &head, body)
    }

    fn get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
        exchange(addr, &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"), b"")
    }

    #[test]
    fn post_round_trip() {
        let addr = start();
        let req = br#"{"jsonrpc":"2.0","id":4,"method":"list_iplist","params":{"list":"block"}}"#;
        let (status, headers, body) = post(addr, "/spin_api/jsonrpc", req);
        assert_eq!(status, 200);
        assert!(headers.to_ascii_lowercase().contains("content-type: application/json"), "{headers}");
        assert_eq!(body, [b"echo:".as_slice(), req].concat());
        // Any path works for POST; a notification without result gives an empty 200.
        let (status, _, body) = post(addr, "/whatever", b"notify");
        assert_eq!((status, body.len()), (200, 0));
    }

    #[test]
    fn get_on_rpc_path_is_405_and_routing() {
        let addr = start();
        for p in ["/spin_api/jsonrpc", "/spin_api/jsonrpc/", "/spin_api/jsonrpc?x=1"] {
            let (status, headers, body) = get(addr, p);
            assert_eq!(status, 405, "{p}");
            assert!(headers.contains("Allow: POST"));
            assert!(String::from_utf8_lossy(&body).contains("<html>"));
        }
        let (status, headers, body) = get(addr, "/");
        assert_eq!(status, 200);
        assert!(headers.contains("text/html"), "{headers}");
        assert!(String::from_utf8_lossy(&body).contains("<html"));
        let (status, headers, _) = get(addr, "/nope.html");
        assert_eq!(status, 302);
        assert!(headers.contains("Location: ./"), "{headers}");
        assert_eq!(get(addr, "/nope/").0, 404);
        let (status, _, _) = exchange(addr, "DELETE / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", b"");
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
        let head = "POST /spin_api/jsonrpc HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\
                    Connection: close\r\n\r\n";
        s.write_all(head.as_bytes()).unwrap();
        for _ in 0..20 {
            let chunk = vec![b'y'; 4096];
            if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).is_err()
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
        let err = serve(&HttpSettings::plain(vec![addr]), None, fake_core()).unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
