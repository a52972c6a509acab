//! The listening side of the web server: accepts connections on the web port, does TLS when
//! configured, and looks at the first request of each connection. A WebSocket upgrade to
//! `/mqtt` is proxied to the MQTT broker's WebSocket listener (so an HTTPS page can use
//! `wss://host:webport/mqtt`, SIDN/spin#71); everything else goes to the tiny_http server on an
//! internal (abstract unix) socket.
//!
//! tiny_http cannot do either itself: its TLS is rustls 0.20 (unmaintained, with known
//! advisories) and an upgraded tiny_http stream cannot be read and written from two threads,
//! which a WebSocket proxy needs. Each connection here is one thread that moves bytes both ways
//! with `poll` (nix). Dead clients are noticed by TCP keepalive (about two minutes), not by an idle
//! timeout, so a long packet capture of a quiet device is not cut off.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Context;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::access::{self, Hosts, PEER_HEADER, TLS_HEADER};
use crate::transports::auth::{Auth, Verdict, REALM};

/// Connections served at once (per server, all addresses); more are closed right away.
const MAX_CONNECTIONS: usize = 256;
/// The first request head must arrive within this time and fit in this size.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_HEAD: usize = 16 * 1024;

/// What the accept threads share.
pub struct Front {
    /// tiny_http's internal socket.
    pub internal: std::os::unix::net::SocketAddr,
    pub tls: Option<TlsConfig>,
    pub auth: Option<Arc<Auth>>,
    /// The names the router answers to (`Host` check for `/mqtt`).
    pub hosts: Hosts,
    /// The broker's MQTT-over-WebSocket listener.
    pub mqtt_ws: Option<SocketAddr>,
    pub active: AtomicUsize,
}

/// A TLS server configuration (nothing can be one when built without the `tls` feature).
#[cfg(feature = "tls")]
pub type TlsConfig = Arc<rustls::ServerConfig>;
#[cfg(not(feature = "tls"))]
pub type TlsConfig = std::convert::Infallible;

#[cfg(not(feature = "tls"))]
pub fn tls_config(_cert: &Path, _key: &Path) -> anyhow::Result<TlsConfig> {
    anyhow::bail!("this spind was built without TLS support: rebuild it with `cargo build --release -p spind --features tls`, or unset spinweb_tls_certificate_file and spinweb_tls_key_file")
}

/// Reads a PEM certificate chain and private key into a TLS server configuration.
#[cfg(feature = "tls")]
pub fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("spinweb_tls_certificate_file {}: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("spinweb_tls_certificate_file {}: no certificate in it", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("spinweb_tls_key_file {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS set-up")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not go together")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepts connections until the listener fails.
pub fn accept_loop(listener: TcpListener, front: Arc<Front>) {
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                log::debug!("accept: {e}");
                // EMFILE and friends: do not spin.
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if front.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            front.active.fetch_sub(1, Ordering::SeqCst);
            log::warn!("too many web connections; closing one from {:?}", conn.peer_addr());
            continue;
        }
        let f = front.clone();
        let spawned = thread::Builder::new().name("http-conn".into()).spawn(move || {
            let peer = conn.peer_addr().ok();
            if let Err(e) = connection(conn, &f) {
                log::debug!("web connection from {peer:?}: {e}");
            }
            f.active.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = spawned {
            log::warn!("cannot start a thread for a web connection: {e}");
            front.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The client side of a connection, with or without TLS.
enum Client {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Client {
    fn sock(&self) -> &TcpStream {
        match self {
            Client::Plain(s) => s,
            #[cfg(feature = "tls")]
            Client::Tls(s) => &s.sock,
        }
    }
}

impl Read for Client {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Client::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Client::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Client {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Client::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Client::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Client::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            Client::Tls(s) => s.flush(),
        }
    }
}

/// Where a connection's bytes go.
trait Upstream: Read + Write + AsFd {
    fn shutdown_write(&self);
}

impl Upstream for UnixStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl Upstream for TcpStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

fn connection(sock: TcpStream, front: &Front) -> io::Result<()> {
    sock.set_nodelay(true)?;
    set_keepalive(&sock);
    sock.set_read_timeout(Some(HEAD_TIMEOUT))?;
    sock.set_write_timeout(Some(HEAD_TIMEOUT))?;
    let mut client = match &front.tls {
        None => Client::Plain(sock),
        #[cfg(not(feature = "tls"))]
        Some(never) => match *never {},
        #[cfg(feature = "tls")]
        Some(cfg) => {
            let conn = rustls::ServerConnection::new(cfg.clone()).map_err(io::Error::other)?;
            Client::Tls(Box::new(rustls::StreamOwned::new(conn, sock)))
        }
    };
    let peer = client.sock().peer_addr().ok().map(|a| a.ip());
    let head = read_head(&mut client)?;
    if head.is_empty() {
        return Ok(());
    }
    if !head.windows(4).any(|w| w == b"\r\n\r\n") {
        return raw_reply(
            &mut client,
            "431 Request Header Fields Too Large",
            "",
            "<html><body>Request head too large.</body></html>",
        );
    }
    if is_mqtt_upgrade(&head) {
        return mqtt_proxy(client, &head, front, peer);
    }
    let mut inner = UnixStream::connect_addr(&front.internal)?;
    let tls = !matches!(client, Client::Plain(_));
    inner.write_all(&one_request_only(&head, peer, tls))?;
    client.sock().set_read_timeout(None)?;
    client.sock().set_write_timeout(None)?;
    pump(client, &mut inner)
}

/// The request head with `Connection: close` and the client's address and transport in
/// [`PEER_HEADER`] and [`TLS_HEADER`] (a client's own headers of those names are dropped):
/// tiny_http serves each keep-alive connection on one
/// of its pool threads for as long as the connection lives, and its check for a free thread
/// races when several connections arrive at once (a browser opens six), so a request could wait
/// forever behind idle keep-alive connections. One request per connection never holds a thread.
pub(crate) fn one_request_only(head: &[u8], peer: Option<std::net::IpAddr>, tls: bool) -> Vec<u8> {
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else { return head.to_vec() };
    let mut out = Vec::with_capacity(head.len() + 20);
    for (i, line) in head[..end].split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let named = |n: &str| {
            line.len() > n.len() && line[..n.len()].eq_ignore_ascii_case(n.as_bytes()) && line[n.len()] == b':'
        };
        if i > 0 && (named("connection") || named(PEER_HEADER) || named(TLS_HEADER)) {
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(p) = peer {
        out.extend_from_slice(format!("{PEER_HEADER}: {p}\r\n").as_bytes());
    }
    if tls {
        out.extend_from_slice(format!("{TLS_HEADER}: 1\r\n").as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&head[end + 4..]);
    out
}

/// Reads until the end of the first request head (or `MAX_HEAD` bytes, or EOF); returns all
/// bytes read, which may include the start of a body.
fn read_head(c: &mut Client) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

/// The value of a header in a raw request head (first match, case-insensitive name).
pub fn head_header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub(crate) fn is_mqtt_upgrade(head: &[u8]) -> bool {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(head.len());
    let Ok(text) = std::str::from_utf8(&head[..end]) else {
        return false;
    };
    let mut first = text.split("\r\n").next().unwrap_or("").split(' ');
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = target.split(['?', '#']).next().unwrap_or("");
    method == "GET"
        && path == "/mqtt"
        && head_header(text, "Upgrade").is_some_and(|v| v.to_ascii_lowercase().contains("websocket"))
}

fn raw_reply(c: &mut Client, status: &str, extra: &str, body: &str) -> io::Result<()> {
    let security: String = access::SECURITY_HEADERS.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n{security}{extra}\r\n{body}",
        body.len()
    );
    c.write_all(msg.as_bytes())?;
    c.flush()
}

/// Forwards a WebSocket upgrade to the broker as it came and then copies bytes both ways; the
/// broker's `101` goes back to the client, so the handshake is the broker's own.
/// The upgrade needs the router's `Host`, a same-origin `Origin` (browsers always send one on
/// WebSocket requests) and, with a password file, the admin's session cookie or Basic auth.
fn mqtt_proxy(mut client: Client, head: &[u8], front: &Front, peer: Option<std::net::IpAddr>) -> io::Result<()> {
    let text = String::from_utf8_lossy(head);
    let h = |n| head_header(&text, n);
    if let Some(r) = access::browser_checks(&front.hosts, h("Host"), h("Origin"), None, true) {
        let status = if r.status == 421 { "421 Misdirected Request" } else { "403 Forbidden" };
        return raw_reply(&mut client, status, "", &String::from_utf8_lossy(&r.body));
    }
    if let Some(auth) = &front.auth {
        if !auth.has_users() {
            return raw_reply(
                &mut client,
                "503 Service Unavailable",
                "",
                "<html><body>This router has no admin password yet: open /setup.</body></html>",
            );
        }
        match auth.verdict(h("Authorization"), h("Cookie"), peer) {
            Verdict::Admin(_) => {}
            Verdict::Limited(secs) => {
                return raw_reply(
                    &mut client,
                    "429 Too Many Requests",
                    &format!("Retry-After: {secs}\r\n"),
                    "<html><body>Too many failed logins.</body></html>",
                )
            }
            Verdict::Missing | Verdict::Refused => {
                return raw_reply(
                    &mut client,
                    "401 Unauthorized",
                    &format!("WWW-Authenticate: Basic realm=\"{REALM}\"\r\n"),
                    "<html><body>Log in first.</body></html>",
                )
            }
        }
    }
    let Some(addr) = front.mqtt_ws else {
        return raw_reply(&mut client, "404 Not Found", "", "<html><body>No MQTT WebSocket here.</body></html>");
    };
    let mut up = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("MQTT WebSocket proxy: cannot reach the broker at {addr}: {e}");
            return raw_reply(
                &mut client,
                "502 Bad Gateway",
                "",
                "<html><body>MQTT broker not reachable.</body></html>",
            );
        }
    };
    up.set_nodelay(true)?;
    up.write_all(head)?;
    client.sock().set_read_timeout(None)?;
    client.sock().set_write_timeout(None)?;
    pump(client, &mut up)
}

/// TCP keepalive after a minute of silence, then every 10 s, six times: a dead client is
/// noticed in about two minutes.
fn set_keepalive(s: &TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(6);
    if let Err(e) = socket2::SockRef::from(s).set_tcp_keepalive(&keepalive) {
        log::debug!("TCP keepalive: {e}");
    }
}

/// Copies bytes both ways until either side closes.
fn pump(mut client: Client, up: &mut dyn Upstream) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        #[cfg(feature = "tls")]
        if let Client::Tls(s) = &mut client {
            // Plain text rustls already has (e.g. read together with the head).
            loop {
                match s.conn.reader().read(&mut buf) {
                    Ok(0) => return close_tls(s, up),
                    Ok(n) => up.write_all(&buf[..n])?,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            while s.conn.wants_write() {
                s.conn.write_tls(&mut s.sock)?;
            }
        }
        let (client_ready, up_ready) = {
            let mut fds =
                [PollFd::new(client.sock().as_fd(), PollFlags::POLLIN), PollFd::new(up.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let wake = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
            let ready = |f: &PollFd| f.revents().is_some_and(|r| r.intersects(wake));
            (ready(&fds[0]), ready(&fds[1]))
        };
        if client_ready {
            match &mut client {
                Client::Plain(s) => {
                    let n = s.read(&mut buf)?;
                    if n == 0 {
                        up.shutdown_write();
                        return Ok(());
                    }
                    up.write_all(&buf[..n])?;
                }
                #[cfg(feature = "tls")]
                Client::Tls(s) => {
                    let n = s.conn.read_tls(&mut s.sock)?;
                    if n == 0 {
                        up.shutdown_write();
                        return Ok(());
                    }
                    if let Err(e) = s.conn.process_new_packets() {
                        // Send the alert, then give up.
                        let _ = s.conn.write_tls(&mut s.sock);
                        return Err(io::Error::other(e));
                    }
                }
            }
        }
        if up_ready {
            let n = up.read(&mut buf)?;
            if n == 0 {
                match &mut client {
                    Client::Plain(s) => {
                        let _ = s.shutdown(Shutdown::Write);
                    }
                    #[cfg(feature = "tls")]
                    Client::Tls(s) => {
                        s.conn.send_close_notify();
                        while s.conn.wants_write() {
                            s.conn.write_tls(&mut s.sock)?;
                        }
                    }
                }
                return Ok(());
            }
            client.write_all(&buf[..n])?;
            client.flush()?;
        }
    }
}

#[cfg(feature = "tls")]
fn close_tls(
    s: &mut rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    up: &mut dyn Upstream,
) -> io::Result<()> {
    up.shutdown_write();
    s.conn.send_close_notify();
    while s.conn.wants_write() {
        s.conn.write_tls(&mut s.sock)?;
    }
    Ok(())
}

/// Binds every address first, so a failure leaves nothing listening; the error names it.
pub fn bind_all(addrs: &[SocketAddr], tls: bool) -> anyhow::Result<Vec<TcpListener>> {
    addrs
        .iter()
        .map(|a| {
            TcpListener::bind(a)
                .with_context(|| format!("cannot listen for {} on {a}", if tls { "HTTPS" } else { "HTTP" }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::one_request_only;

    #[test]
    fn forwarded_requests_ask_for_close_and_keep_their_body() {
        let head = b"POST /spin_api/jsonrpc HTTP/1.1\r\nHost: x\r\nconnection: keep-alive\r\n\
                     X-Spind-Peer: 10.0.0.1\r\nx-spind-tls: 1\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(
            String::from_utf8_lossy(&one_request_only(head, Some("192.0.2.1".parse().unwrap()), false)),
            "POST /spin_api/jsonrpc HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-Spind-Peer: 192.0.2.1\r\n\
             Connection: close\r\n\r\n{}"
        );
    }
}
