//! SPIN's "external source" input (reference §7.2): binary messages from a traffic sensor such
//! as `spin-pcap-reader`, over a unix datagram socket (one message per datagram) or TCP (a
//! stream of messages, SPIN's port is 20867).
//!
//! A message is a header `{u32 type; u32 length}` in host byte order followed by `length`
//! payload bytes, the C structs of the SPIN sources as laid out on x86_64:
//!
//! | type | payload | size |
//! |------|---------|------|
//! | 1 | `pkt_info_t`: family u8 @0, protocol u8 @1, src[16] @2, dst[16] @18, src_port u16 @34, dst_port u16 @36, icmp_type u8 @38, payload_size u64 @40, packet_count u64 @48, payload_offset u16 @56 | 64 |
//! | 2 | `{i32 family; u8 src_addr[16]}` + `dns_pkt_info_t` | 300 |
//! | 3 | `dns_pkt_info_t`: family u8 @0, ip[16] @1, ttl u32 @20, dname[256] (wire format) @24 | 280 |
//! | 4 | `{char mac[18]; ip_t ip}`, ip_t = family u8, netmask u8, addr[16] | 36 |
//!
//! IPv4 addresses are stored in the last 4 of the 16 address bytes. Families are accepted both
//! as 4/6 and as Linux AF_INET/AF_INET6 (2/10): SPIN's own tools send either, depending on the
//! version. Extsrc flows always behave as local mode (`local: true`), and carry spind's clock.

use std::fmt;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::event::{DnsData, DnsRecord, Event, FlowSample, Input, MacAddr, Timestamp};
use crate::packet::name_to_string;

/// SPIN's extsrc TCP port.
pub const DEFAULT_TCP_PORT: u16 = 20867;
pub const HEADER_LEN: usize = 8;
pub const MAX_PAYLOAD: usize = 1024;

pub const MSG_PKT_INFO: u32 = 1;
pub const MSG_DNS_QUERY: u32 = 2;
pub const MSG_DNS_ANSWER: u32 = 3;
pub const MSG_ARP_UPDATE: u32 = 4;

pub const PKT_INFO_LEN: usize = 64;
pub const DNS_PKT_INFO_LEN: usize = 280;
pub const DNS_QUERY_LEN: usize = 20 + DNS_PKT_INFO_LEN;
pub const ARP_UPDATE_LEN: usize = 36;

/// At most this many TCP clients at once (each has a thread).
const MAX_TCP_CLIENTS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtsrcError {
    /// The buffer holds only part of a message (wait for more on a stream).
    Incomplete,
    UnknownType(u32),
    BadLength { msg_type: u32, length: u32 },
    BadFamily(i64),
    BadMac(String),
    BadName,
    /// A datagram with bytes after its message.
    TrailingBytes(usize),
}

impl fmt::Display for ExtsrcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtsrcError::Incomplete => f.write_str("incomplete message"),
            ExtsrcError::UnknownType(t) => write!(f, "unknown message type {t}"),
            ExtsrcError::BadLength { msg_type, length } => {
                write!(f, "bad payload length {length} for message type {msg_type}")
            }
            ExtsrcError::BadFamily(v) => write!(f, "bad address family {v}"),
            ExtsrcError::BadMac(s) => write!(f, "bad MAC address {s:?}"),
            ExtsrcError::BadName => f.write_str("bad DNS name"),
            ExtsrcError::TrailingBytes(n) => write!(f, "{n} bytes after the message"),
        }
    }
}

impl std::error::Error for ExtsrcError {}

fn now_secs() -> Timestamp {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Parses the message at the start of `buf`, timestamped with the wall clock. Returns the event
/// and the number of bytes it took.
pub fn parse_message(buf: &[u8]) -> Result<(Event, usize), ExtsrcError> {
    parse_message_at(buf, now_secs())
}

/// [`parse_message`] with an explicit timestamp.
pub fn parse_message_at(buf: &[u8], now: Timestamp) -> Result<(Event, usize), ExtsrcError> {
    if buf.len() < HEADER_LEN {
        return Err(ExtsrcError::Incomplete);
    }
    let msg_type = u32::from_ne_bytes(buf[0..4].try_into().unwrap());
    let length = u32::from_ne_bytes(buf[4..8].try_into().unwrap());
    let expected = match msg_type {
        MSG_PKT_INFO => PKT_INFO_LEN,
        MSG_DNS_QUERY => DNS_QUERY_LEN,
        MSG_DNS_ANSWER => DNS_PKT_INFO_LEN,
        MSG_ARP_UPDATE => ARP_UPDATE_LEN,
        t => return Err(ExtsrcError::UnknownType(t)),
    };
    // The C structs have fixed sizes; anything else is a different protocol version or garbage.
    if length as usize != expected {
        return Err(ExtsrcError::BadLength { msg_type, length });
    }
    let total = HEADER_LEN + expected;
    let Some(p) = buf.get(HEADER_LEN..total) else { return Err(ExtsrcError::Incomplete) };
    let ev = match msg_type {
        MSG_PKT_INFO => pkt_info(p, now)?,
        MSG_DNS_QUERY => {
            let family = i32::from_ne_bytes(p[0..4].try_into().unwrap());
            let client = addr(family as i64, p[4..20].try_into().unwrap())?;
            let (_, qname, _) = dns_pkt_info(&p[20..])?;
            Event::DnsQuery { time: now, client, qname }
        }
        MSG_DNS_ANSWER => {
            let (ip, qname, ttl) = dns_pkt_info(p)?;
            let records = vec![DnsRecord { owner: qname.clone(), ttl, data: DnsData::Addr(ip) }];
            Event::DnsAnswer { time: now, qname, records }
        }
        MSG_ARP_UPDATE => {
            let text = &p[..18];
            let end = text.iter().position(|&b| b == 0);
            let mac = end
                .and_then(|e| std::str::from_utf8(&text[..e]).ok())
                .and_then(|s| s.parse::<MacAddr>().ok())
                .ok_or_else(|| ExtsrcError::BadMac(String::from_utf8_lossy(&text[..end.unwrap_or(18)]).into_owned()))?;
            let ip = addr(p[18] as i64, p[20..36].try_into().unwrap())?;
            Event::Neighbour { time: now, ip, mac }
        }
        _ => unreachable!("type checked above"),
    };
    Ok((ev, total))
}

/// A family value (4/6 or AF_INET/AF_INET6) and 16 address bytes (IPv4 in the last 4).
fn addr(family: i64, a: [u8; 16]) -> Result<IpAddr, ExtsrcError> {
    match family {
        4 | 2 => Ok(IpAddr::V4(Ipv4Addr::new(a[12], a[13], a[14], a[15]))),
        6 | 10 => Ok(IpAddr::V6(Ipv6Addr::from(a))),
        f => Err(ExtsrcError::BadFamily(f)),
    }
}

fn pkt_info(p: &[u8], now: Timestamp) -> Result<Event, ExtsrcError> {
    let u16_at = |i: usize| u16::from_ne_bytes([p[i], p[i + 1]]);
    let u64_at = |i: usize| u64::from_ne_bytes(p[i..i + 8].try_into().unwrap());
    let family = p[0] as i64;
    let sample = FlowSample {
        protocol: p[1],
        src: addr(family, p[2..18].try_into().unwrap())?,
        dst: addr(family, p[18..34].try_into().unwrap())?,
        src_port: u16_at(34),
        dst_port: u16_at(36),
        icmp_type: p[38],
        bytes: u64_at(40),
        packets: u64_at(48),
    };
    Ok(Event::Flows { time: now, flows: vec![sample], local: true })
}

/// `dns_pkt_info_t` -> (address, name, ttl).
fn dns_pkt_info(p: &[u8]) -> Result<(IpAddr, String, u32), ExtsrcError> {
    let ip = addr(p[0] as i64, p[1..17].try_into().unwrap())?;
    let ttl = u32::from_ne_bytes(p[20..24].try_into().unwrap());
    // The name is copied from the packet without compression; what follows it is undefined.
    let mut dec = BinDecoder::new(&p[24..280]);
    let name = Name::read(&mut dec).map_err(|_| ExtsrcError::BadName)?;
    Ok((ip, name_to_string(&name), ttl))
}

/// Listens on a unix datagram socket at `path` (a stale socket file is replaced; mode 0600).
/// Each datagram holds one message; bad ones are logged and dropped. The thread ends when the
/// receiver of `tx` is gone (noticed at the next datagram).
pub fn serve_unix(path: &Path, tx: Sender<Input>) -> io::Result<JoinHandle<()>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(_) => {}
    }
    let sock = UnixDatagram::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let name = path.display().to_string();
    std::thread::Builder::new().name("extsrc-unix".into()).spawn(move || {
        // Larger than any valid message, so oversized datagrams are seen as such.
        let mut buf = vec![0u8; HEADER_LEN + MAX_PAYLOAD + 1];
        loop {
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::error!("extsrc {name}: receive failed: {e}");
                    return;
                }
            };
            match parse_message(&buf[..n]).and_then(|(ev, used)| {
                if used == n {
                    Ok(ev)
                } else {
                    Err(ExtsrcError::TrailingBytes(n - used))
                }
            }) {
                Ok(ev) => {
                    if tx.send(Input::Event(ev)).is_err() {
                        return;
                    }
                }
                Err(e) => log::warn!("extsrc {name}: dropping bad datagram ({n} bytes): {e}"),
            }
        }
    })
}

/// Listens on TCP `addr` for extsrc clients (see [`serve_tcp_listener`]).
pub fn serve_tcp(addr: SocketAddr, tx: Sender<Input>) -> io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(addr)?;
    serve_tcp_listener(listener, tx)
}

/// Accepts extsrc clients on `listener`, a thread per client reading a stream of messages.
/// A bad message, or a message cut off by the end of the stream, closes that client only.
pub fn serve_tcp_listener(listener: TcpListener, tx: Sender<Input>) -> io::Result<JoinHandle<()>> {
    let clients = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("extsrc-tcp".into()).spawn(move || {
        for conn in listener.incoming() {
            let stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("extsrc: accept failed: {e}");
                    continue;
                }
            };
            let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
            if clients.load(Ordering::SeqCst) >= MAX_TCP_CLIENTS {
                log::warn!("extsrc: too many clients, refusing {peer}");
                continue;
            }
            clients.fetch_add(1, Ordering::SeqCst);
            let (tx, clients) = (tx.clone(), clients.clone());
            let spawned = std::thread::Builder::new().name("extsrc-client".into()).spawn(move || {
                serve_client(stream, &peer, &tx);
                clients.fetch_sub(1, Ordering::SeqCst);
            });
            if let Err(e) = spawned {
                log::error!("extsrc: cannot start client thread: {e}");
            }
        }
    })
}

fn serve_client(mut stream: TcpStream, peer: &str, tx: &Sender<Input>) {
    log::info!("extsrc: client {peer} connected");
    let mut pending: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) => {
                if !pending.is_empty() {
                    log::warn!("extsrc: client {peer} closed inside a message ({} bytes pending)", pending.len());
                } else {
                    log::info!("extsrc: client {peer} disconnected");
                }
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("extsrc: client {peer}: read failed: {e}");
                return;
            }
        };
        pending.extend_from_slice(&chunk[..n]);
        let mut pos = 0;
        loop {
            match parse_message(&pending[pos..]) {
                Ok((ev, used)) => {
                    pos += used;
                    if tx.send(Input::Event(ev)).is_err() {
                        return;
                    }
                }
                Err(ExtsrcError::Incomplete) => break,
                Err(e) => {
                    log::warn!("extsrc: client {peer}: {e}; closing the connection");
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
        pending.drain(..pos);
    }
}

