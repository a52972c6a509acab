//! JSON-RPC over a unix stream socket (SPIN: `/var/run/spin_rpc.sock`, option `-j`).
//!
//! One request per connection, as in SPIN: the client writes a JSON-RPC request, we pass it to
//! the core, write the answer followed by `"\n"` and close; for a notification without a result
//! nothing is written. Unlike SPIN (a single `recv()` of at most 4096 bytes) we read until the
//! request is a complete JSON text, the client closes its write side, the 64 KiB limit is hit or
//! the 5 s deadline passes, so requests written in pieces work. The socket is mode 0660 (SPIN
//! made it world-writable, letting any local user change the firewall).

use std::fs;
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, timeout_at, Instant};

use crate::model::event::Input;
use crate::transports::net;
use crate::transports::rpc_link::{self, MAX_REQUEST, TOO_LARGE_REPLY};

/// Time a client has to deliver its whole request (and to take the answer).
pub const READ_DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once; more are refused.
const MAX_CONNECTIONS: usize = 64;

/// Bind `path` (replacing a stale socket file), make it mode 0660 and serve connections on the
/// transports' runtime ([`net`]), a task per connection.
pub fn serve(path: &Path, core: Sender<Input>) -> io::Result<()> {
    remove_stale(path)?;
    let listener = UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind JSON-RPC socket {}: {e}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o660))?;
    listener.set_nonblocking(true)?;
    let rt = net::handle()?;
    let _in_runtime = rt.enter();
    let listener = tokio::net::UnixListener::from_std(listener)?;
    rt.spawn(accept_loop(listener, core, path.display().to_string()));
    Ok(())
}

/// Remove a socket file left by a previous run, but never a live socket or a non-socket file.
fn remove_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(ErrorKind::AlreadyExists, format!("{} exists and is not a socket", path.display())));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(ErrorKind::AddrInUse, format!("{} is in use by another process", path.display())));
    }
    fs::remove_file(path)
}

async fn accept_loop(listener: tokio::net::UnixListener, core: Sender<Input>, path: String) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                log::warn!("JSON-RPC socket {path}: accept failed: {e}");
                // E.g. out of file descriptors: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            log::warn!("JSON-RPC socket {path}: too many connections, refusing one");
            continue;
        }
        active.fetch_add(1, Ordering::Relaxed);
        let (core, active) = (core.clone(), active.clone());
        tokio::spawn(async move {
            if let Err(e) = handle(stream, core).await {
                log::debug!("JSON-RPC connection: {e}");
            }
            active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// What reading a request produced.
#[derive(Debug, PartialEq)]
pub(crate) enum ReadOutcome {
    /// A request to hand to the core (complete JSON, or whatever came before EOF/deadline).
    Request(Vec<u8>),
    /// The client sent nothing.
    Empty,
    /// More than [`MAX_REQUEST`] bytes without a complete JSON text.
    TooLarge,
}

/// Read one request: stop as soon as the bytes form a complete JSON text (or definitely are not
/// JSON), at EOF, at the deadline or at the size limit.
pub(crate) async fn read_request(stream: &mut (impl AsyncRead + Unpin), deadline: Instant) -> io::Result<ReadOutcome> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => continue,
            Ok(Err(e)) => return Err(e),
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST {
            return Ok(ReadOutcome::TooLarge);
        }
        match serde_json::from_slice::<serde_json::Value>(&buf) {
            // Incomplete: the client is still writing.
            Err(e) if e.is_eof() => continue,
            // Complete, or not JSON at all: the core answers the latter with error code 1.
            _ => return Ok(ReadOutcome::Request(buf)),
        }
    }
    // EOF or deadline with an incomplete text: let the core reject what we have.
    Ok(if buf.is_empty() { ReadOutcome::Empty } else { ReadOutcome::Request(buf) })
}

async fn handle(mut stream: tokio::net::UnixStream, core: Sender<Input>) -> io::Result<()> {
    let outcome = read_request(&mut stream, Instant::now() + READ_DEADLINE).await?;
    let reply = match outcome {
        ReadOutcome::Empty => return Ok(()),
        ReadOutcome::TooLarge => TOO_LARGE_REPLY.to_string(),
        ReadOutcome::Request(bytes) => {
            let request = String::from_utf8_lossy(&bytes).into_owned();
            // The core answers through a blocking channel: wait for it off the runtime's thread.
            let answer =
                tokio::task::spawn_blocking(move || rpc_link::ask(&core, request)).await.map_err(io::Error::other)?;
            match answer {
                Ok(Some(answer)) => answer,
                Ok(None) => return Ok(()),
                Err(e) => {
                    log::warn!("JSON-RPC request over unix socket not answered: {e}");
                    return Ok(());
                }
            }
        }
    };
    // One buffer, one write: the client sees the whole answer at once.
    let mut out = reply.into_bytes();
    out.push(b'\n');
    let send = async {
        stream.write_all(&out).await?;
        stream.shutdown().await
    };
    timeout(READ_DEADLINE, send)
        .await
        .map_err(|_| io::Error::new(ErrorKind::TimedOut, "the client does not take the answer"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Read, Write};
    use std::net::Shutdown;
    use std::thread;

    use crate::transports::rpc_link::fake_core;

    fn socket() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spin_rpc.sock");
        (dir, path)
    }

    fn read_all(s: &mut UnixStream) -> String {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn request_in_pieces_with_write_side_open() {
        let (_d, path) = socket();
        serve(&path, fake_core()).unwrap();
        let mut s = UnixStream::connect(&path).unwrap();
        let req = r#"{"jsonrpc":"2.0","id":1,"method":"list_devices"}"#;
        let (a, rest) = req.split_at(10);
        let (b, c) = rest.split_at(15);
        for piece in [a, b, c] {
            s.write_all(piece.as_bytes()).unwrap();
            thread::sleep(Duration::from_millis(150));
        }
        // No shutdown of our write side: completeness is detected from the JSON itself.
        let mut line = String::new();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        io::BufReader::new(&s).read_line(&mut line).unwrap();
        assert_eq!(line, format!("echo:{req}\n"));
        assert_eq!(read_all(&mut s), "", "connection closes after the answer");
    }

    #[test]
    fn non_json_is_passed_as_is_and_notification_gets_nothing() {
        let (_d, path) = socket();
        serve(&path, fake_core()).unwrap();
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"not json").unwrap();
        assert_eq!(read_all(&mut s), "echo:not json\n");

        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"notify").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_all(&mut s), "");

        // Incomplete JSON then EOF: handed over as it is.
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{\"a\":").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_all(&mut s), "echo:{\"a\":\n");
    }

    #[test]
    fn oversize_request_gets_an_error_and_the_connection_closes() {
        let (_d, path) = socket();
        serve(&path, fake_core()).unwrap();
        let mut s = UnixStream::connect(&path).unwrap();
        let mut big = b"{\"params\":\"".to_vec();
        big.resize(MAX_REQUEST + 5000, b'x');
        // The server may close before we finish writing: ignore EPIPE.
        let _ = s.write_all(&big);
        assert_eq!(read_all(&mut s), format!("{TOO_LARGE_REPLY}\n"));
    }

    #[test]
    fn socket_mode_is_0660_and_stale_socket_is_replaced() {
        let (_d, path) = socket();
        drop(UnixListener::bind(&path).unwrap()); // a stale socket file
        serve(&path, fake_core()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        // A live socket is not taken over, and a regular file is not deleted.
        assert_eq!(serve(&path, fake_core()).unwrap_err().kind(), ErrorKind::AddrInUse);
        let file = path.with_file_name("plain");
        fs::write(&file, "x").unwrap();
        assert!(serve(&file, fake_core()).is_err());
        assert!(file.exists());
    }

    #[test]
    fn concurrent_clients_each_get_their_answer() {
        let (_d, path) = socket();
        serve(&path, fake_core()).unwrap();
        let clients: Vec<_> = (0..16)
            .map(|i| {
                let path = path.clone();
                thread::spawn(move || {
                    let mut s = UnixStream::connect(&path).unwrap();
                    let req = format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"m"}}"#);
                    s.write_all(req.as_bytes()).unwrap();
                    assert_eq!(read_all(&mut s), format!("echo:{req}\n"));
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
    }

    #[test]
    fn silent_client_times_out() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let out = rt.block_on(async {
            let (mut a, _b) = tokio::net::UnixStream::pair().unwrap();
            read_request(&mut a, Instant::now() + Duration::from_millis(300)).await.unwrap()
        });
        assert_eq!(out, ReadOutcome::Empty);
    }
}
