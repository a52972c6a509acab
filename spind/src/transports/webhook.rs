//! The alert webhook (`alert_webhook_url`): each alert the core publishes on `SPIN/alerts` is
//! POSTed as JSON to an `http://` URL by a thread of its own, with bounded retries and backoff.
//! The daemon hands alerts over with [`Webhook::send`], which never waits: when the queue is
//! full (the receiver hangs or refuses for long), the alert is dropped and counted in the log.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::thread;
use std::time::Duration;

/// Alerts waiting for delivery; more are dropped.
const QUEUE: usize = 64;
/// Tries per alert, and the wait before each retry (doubling).
pub const TRIES: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Connect, write and read timeouts of one try.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A parsed `http://host[:port]/path` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Why `alert_webhook_url` is not usable.
#[derive(Debug, PartialEq, Eq)]
pub struct BadUrl(pub String);

impl std::fmt::Display for BadUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "alert_webhook_url {:?}: expected http://host[:port]/path (https is not supported)", self.0)
    }
}

impl std::error::Error for BadUrl {}

impl Url {
    pub fn parse(url: &str) -> Result<Url, BadUrl> {
        let bad = || BadUrl(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().map_err(|_| bad())?),
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || path.contains(['\r', '\n', ' ']) || host.contains(['\r', '\n', ' ', '@']) {
            return Err(bad());
        }
        Ok(Url { host: host.to_string(), port, path: path.to_string() })
    }
}

/// The sending side of the webhook thread.
pub struct Webhook {
    tx: SyncSender<String>,
    /// `AtomicUsize`, not `AtomicU64`: 32-bit MIPS (GL.iNet AR150) has no 64-bit atomics.
    dropped: std::sync::atomic::AtomicUsize,
}

impl Webhook {
    /// Starts the delivery thread.
    pub fn start(url: Url) -> std::io::Result<Webhook> {
        let (tx, rx) = sync_channel(QUEUE);
        thread::Builder::new().name("alert-webhook".into()).spawn(move || deliver_all(&url, &rx))?;
        Ok(Webhook { tx, dropped: Default::default() })
    }

    /// Queues one alert (JSON) without waiting; a full queue drops it.
    pub fn send(&self, alert: String) {
        use std::sync::atomic::Ordering;
        match self.tx.try_send(alert) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    log::warn!("alert webhook: {n} alerts dropped, its receiver is not keeping up");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

fn deliver_all(url: &Url, rx: &Receiver<String>) {
    while let Ok(alert) = rx.recv() {
        let mut wait = FIRST_BACKOFF;
        for attempt in 1..=TRIES {
            match post(url, &alert) {
                Ok(()) => break,
                Err(e) if attempt == TRIES => {
                    log::warn!(
                        "alert webhook http://{}:{}{}: {e}; gave up after {TRIES} tries",
                        url.host,
                        url.port,
                        url.path
                    )
                }
                Err(e) => {
                    log::debug!("alert webhook: {e}; trying again in {wait:?}");
                    thread::sleep(wait);
                    wait *= 2;
                }
            }
        }
    }
}

/// One POST; success is a 2xx status.
pub fn post(url: &Url, body: &str) -> std::io::Result<()> {
    let other = |m: String| std::io::Error::other(m);
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| other(format!("{} has no address", url.host)))?;
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    let host = if url.host.contains(':') { format!("[{}]", url.host) } else { url.host.clone() };
    let req = format!(
        "POST {} HTTP/1.1\r\nHost: {host}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\nUser-Agent: spind\r\n\r\n{body}",
        url.path,
        url.port,
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok());
    match status {
        Some(200..=299) => Ok(()),
        Some(code) => Err(other(format!("answered {code}"))),
        None => Err(other("no HTTP status line".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use testbed::http::answer_one;

    #[test]
    fn urls_are_parsed_and_bad_ones_refused() {
        assert_eq!(
            Url::parse("http://127.0.0.1:8123/api/webhook/x").unwrap(),
            Url { host: "127.0.0.1".into(), port: 8123, path: "/api/webhook/x".into() }
        );
        assert_eq!(Url::parse("http://ha.lan").unwrap().port, 80);
        assert_eq!(Url::parse("http://[::1]:9/x").unwrap().host, "::1");
        for bad in ["https://x/", "ftp://x", "http://", "http://x:port/", "http://a b/"] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_alert_reaches_a_local_http_server_after_a_refusal() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://127.0.0.1:{}/hook", l.local_addr().unwrap().port())).unwrap();
        let hook = Webhook::start(url).unwrap();
        hook.send(r#"{"id":1,"kind":"new_device"}"#.into());
        // The first try is refused with a 503: the thread tries again.
        let (first, _) = answer_one(&l, "503 Service Unavailable");
        assert_eq!(first, "POST /hook HTTP/1.1\r\n");
        let (_, body) = answer_one(&l, "204 No Content");
        assert_eq!(body, r#"{"id":1,"kind":"new_device"}"#);
    }

    #[test]
    fn a_hanging_receiver_never_makes_the_sender_wait() {
        // A listener that never accepts: connections queue in the backlog and nobody answers.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://127.0.0.1:{}/", l.local_addr().unwrap().port())).unwrap();
        let hook = Webhook::start(url).unwrap();
        for i in 0..10 * QUEUE {
            hook.send(format!("{{\"id\":{i}}}"));
        }
        // Every send returned at once (they are over the queue's bound), and some were dropped.
        assert!(hook.dropped.load(std::sync::atomic::Ordering::Relaxed) > 0);
    }
}
