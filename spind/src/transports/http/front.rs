//! The listening side of the web server: accepts connections on the web port, does TLS when
//! configured, and looks at the first request of each connection. A WebSocket upgrade to
//! `/mqtt` is proxied to the MQTT broker's WebSocket listener (so an HTTPS page can use
//! `wss://host:webport/mqtt`, SIDN/spin#71); everything else goes to the tiny_http server on an
//! internal (abstract unix) socket.
//!
//! tiny_http cannot do either itself: its TLS is rustls 0.20 (unmaintained, with known
//! advisories) and an upgraded tiny_http stream cannot be read and written from two threads,
//! which a WebSocket proxy needs. So this side is tokio's: a task per connection on the
//! transports' runtime (`transports::net`; TLS through tokio-rustls, the bytes moved both ways
//! by `tokio::io::copy`), instead of a thread per connection polling two sockets. Dead
//! clients are noticed by TCP keepalive (about two minutes), not by an idle timeout, so a long
//! packet capture of a quiet device is not cut off.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use super::access::{self, Hosts, PEER_HEADER, TLS_HEADER};
use crate::transports::auth::{Auth, Verdict, REALM};
use crate::transports::net;

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

/// Serves every listener on the transports' runtime ([`net`]): each connection is a task.
pub fn spawn(listeners: Vec<TcpListener>, front: Arc<Front>) -> io::Result<()> {
    let rt = net::handle()?;
    let _in_runtime = rt.enter();
    for l in listeners {
        l.set_nonblocking(true)?;
        rt.spawn(accept_loop(tokio::net::TcpListener::from_std(l)?, front.clone()));
    }
    Ok(())
}

/// Accepts connections for as long as spind runs.
async fn accept_loop(listener: tokio::net::TcpListener, front: Arc<Front>) {
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                log::debug!("accept: {e}");
                // EMFILE and friends: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if front.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            front.active.fetch_sub(1, Ordering::SeqCst);
            log::warn!("too many web connections; closing one from {peer}");
            continue;
        }
        let f = front.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(conn, &f).await {
                log::debug!("web connection from {peer}: {e}");
            }
            f.active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// A byte stream of either side: the client (plain or TLS), the broker, tiny_http.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The client side of a connection, with or without TLS.
type Client = Box<dyn Stream>;

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what}: no answer within {HEAD_TIMEOUT:?}"))
}

async fn connection(sock: tokio::net::TcpStream, front: &Front) -> io::Result<()> {
    sock.set_nodelay(true)?;
    set_keepalive(&sock);
    let peer = sock.peer_addr().ok().map(|a| a.ip());
    let mut client: Client = match &front.tls {
        None => Box::new(sock),
        #[cfg(not(feature = "tls"))]
        Some(never) => match *never {},
        #[cfg(feature = "tls")]
        Some(cfg) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg.clone());
            Box::new(timeout(HEAD_TIMEOUT, acceptor.accept(sock)).await.map_err(|_| timed_out("TLS handshake"))??)
        }
    };
    let tls = front.tls.is_some();
    let head = timeout(HEAD_TIMEOUT, read_head(&mut client)).await.map_err(|_| timed_out("request head"))??;
    if head.is_empty() {
        return Ok(());
    }
    if !head.windows(4).any(|w| w == b"\r\n\r\n") {
        return raw_reply(
            &mut client,
            "431 Request Header Fields Too Large",
            "",
            "<html><body>Request head too large.</body></html>",
        )
        .await;
    }
    if is_mqtt_upgrade(&head) {
        return mqtt_proxy(client, &head, front, peer).await;
    }
    // An abstract unix socket (tokio connects only to paths): connected at once, then handed over.
    let inner = std::os::unix::net::UnixStream::connect_addr(&front.internal)?;
    inner.set_nonblocking(true)?;
    let mut inner = tokio::net::UnixStream::from_std(inner)?;
    inner.write_all(&one_request_only(&head, peer, tls)).await?;
    pump(client, inner).await
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
async fn read_head(c: &mut Client) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut buf).await?;
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

async fn raw_reply(c: &mut Client, status: &str, extra: &str, body: &str) -> io::Result<()> {
    let security: String = access::SECURITY_HEADERS.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n{security}{extra}\r\n{body}",
        body.len()
    );
    let send = async {
        c.write_all(msg.as_bytes()).await?;
        c.shutdown().await
    };
    timeout(HEAD_TIMEOUT, send).await.map_err(|_| timed_out("reply"))?
}

/// Forwards a WebSocket upgrade to the broker as it came and then copies bytes both ways; the
/// broker's `101` goes back to the client, so the handshake is the broker's own.
/// The upgrade needs the router's `Host`, a same-origin `Origin` (browsers always send one on
/// WebSocket requests) and, with a password file, the admin's session cookie or Basic auth.
async fn mqtt_proxy(mut client: Client, head: &[u8], front: &Front, peer: Option<std::net::IpAddr>) -> io::Result<()> {
    let text = String::from_utf8_lossy(head);
    let h = |n| head_header(&text, n);
    if let Some(r) = access::browser_checks(&front.hosts, h("Host"), h("Origin"), None, true) {
        let status = if r.status == 421 { "421 Misdirected Request" } else { "403 Forbidden" };
        return raw_reply(&mut client, status, "", &String::from_utf8_lossy(&r.body)).await;
    }
    if let Some(auth) = &front.auth {
        if !auth.has_users() {
            return raw_reply(
                &mut client,
                "503 Service Unavailable",
                "",
                "<html><body>This router has no admin password yet: open /setup.</body></html>",
            )
            .await;
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
                .await
            }
            Verdict::Missing | Verdict::Refused => {
                return raw_reply(
                    &mut client,
                    "401 Unauthorized",
                    &format!("WWW-Authenticate: Basic realm=\"{REALM}\"\r\n"),
                    "<html><body>Log in first.</body></html>",
                )
                .await
            }
        }
    }
    let Some(addr) = front.mqtt_ws else {
        return raw_reply(&mut client, "404 Not Found", "", "<html><body>No MQTT WebSocket here.</body></html>").await;
    };
    let connected = timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no answer within 5 s")));
    let mut up = match connected {
        Ok(s) => s,
        Err(e) => {
            log::warn!("MQTT WebSocket proxy: cannot reach the broker at {addr}: {e}");
            return raw_reply(
                &mut client,
                "502 Bad Gateway",
                "",
                "<html><body>MQTT broker not reachable.</body></html>",
            )
            .await;
        }
    };
    up.set_nodelay(true)?;
    up.write_all(head).await?;
    pump(client, up).await
}

/// TCP keepalive after a minute of silence, then every 10 s, six times: a dead client is
/// noticed in about two minutes.
fn set_keepalive(s: &tokio::net::TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(6);
    if let Err(e) = socket2::SockRef::from(s).set_tcp_keepalive(&keepalive) {
        log::debug!("TCP keepalive: {e}");
    }
}

/// Copies bytes both ways. The client's end of sending (a half close) is passed on and the
/// answer still read; when the upstream closes, the client's side is closed (TLS: close_notify)
/// and the connection ends.
async fn pump(client: Client, up: impl Stream) -> io::Result<()> {
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut up_read, mut up_write) = tokio::io::split(up);
    let to_client = async {
        tokio::io::copy(&mut up_read, &mut client_write).await?;
        client_write.shutdown().await
    };
    let to_up = async {
        tokio::io::copy(&mut client_read, &mut up_write).await?;
        up_write.shutdown().await
    };
    tokio::pin!(to_client, to_up);
    tokio::select! {
        done = &mut to_client => done,
        sent = &mut to_up => {
            sent?;
            to_client.await
        }
    }
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
