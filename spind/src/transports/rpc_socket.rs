//! JSON-RPC over a unix stream socket (SPIN: `/var/run/spin_rpc.sock`, option `-j`).
//!
//! One request per connection, as in SPIN: the client writes a JSON-RPC request, we pass it to
//! the core, write the answer followed by `"\n"` and close; for a notification without a result
//! nothing is written. Unlike SPIN (a single `recv()` of at most 4096 bytes) we read until the
//! request is a complete JSON text, the client closes its write side, the 64 KiB limit is hit or
//! the 5 s deadline passes, so requests written in pieces work. The socket is mode 0660 (SPIN
//! made it world-writable, letting any local user change the firewall).

use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::model::event::Input;
use crate::transports::rpc_link::{self, MAX_REQUEST, TOO_LARGE_REPLY};

/// Time a client has to deliver its whole request.
pub const READ_DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once; more are refused (each holds a thread).
const MAX_CONNECTIONS: usize = 64;

/// Bind `path` (replacing a stale socket file), make it mode 0660 and serve connections on a
/// background thread.
pub fn serve(path: &Path, core: Sender<Input>) -> io::Result<JoinHandle<()>> {
    remove_stale(path)?;
    let listener = UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind JSON-RPC socket {}: {e}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o660))?;
    let shown = path.display().to_string();
    thread::Builder::new().name("rpc-unix".into()).spawn(move || accept_loop(listener, core, shown))
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

fn accept_loop(listener: UnixListener, core: Sender<Input>, path: String) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log::warn!("JSON-RPC socket {path}: accept failed: {e}");
                // E.g. out of file descriptors: do not spin.
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            log::warn!("JSON-RPC socket {path}: too many connections, refusing one");
            continue;
        }
        active.fetch_add(1, Ordering::Relaxed);
        let (core, active2) = (core.clone(), active.clone());
        let spawned = thread::Builder::new().name("rpc-unix-conn".into()).spawn(move || {
            if let Err(e) = handle(stream, &core) {
                log::debug!("JSON-RPC connection: {e}");
            }
            active2.fetch_sub(1, Ordering::Relaxed);
        });
        if let Err(e) = spawned {
            log::warn!("JSON-RPC socket {path}: cannot start a thread: {e}");
            active.fetch_sub(1, Ordering::Relaxed);
        }
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
pub(crate) fn read_request<R: Read>(
    stream: &mut R,
    mut set_timeout: impl FnMut(Duration) -> io::Result<()>,
    deadline: Instant,
) -> io::Result<ReadOutcome> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        set_timeout(left)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => return Err(e),
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

fn handle(mut stream: UnixStream, core: &Sender<Input>) -> io::Result<()> {
    let deadline = Instant::now() + READ_DEADLINE;
    let timeout_stream = stream.try_clone()?;
    let outcome = read_request(&mut stream, |d| timeout_stream.set_read_timeout(Some(d)), deadline)?;
    stream.set_write_timeout(Some(READ_DEADLINE))?;
    match outcome {
        ReadOutcome::Empty => Ok(()),
        ReadOutcome::TooLarge => {
            stream.write_all(TOO_LARGE_REPLY.as_bytes())?;
            stream.write_all(b"\n")
        }
        ReadOutcome::Request(bytes) => {
            let request = String::from_utf8_lossy(&bytes).into_owned();
            match rpc_link::ask(core, request) {
                Ok(Some(answer)) => {
                    // One buffer, one write: the client sees the whole answer at once.
                    let mut out = answer.into_bytes();
                    out.push(b'\n');
                    stream.write_all(&out)
                }
                Ok(None) => Ok(()),
                Err(e) => {
                    log::warn!("JSON-RPC request over unix socket not answered: {e}");
                    Ok(())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::Shutdown;

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
        let (mut a, _b) = UnixStream::pair().unwrap();
        let a2 = a.try_clone().unwrap();
        let out = read_request(&mut a, |d| a2.set_read_timeout(Some(d)), Instant::now() + Duration::from_millis(300))
            .unwrap();
        assert_eq!(out, ReadOutcome::Empty);
    }
}
