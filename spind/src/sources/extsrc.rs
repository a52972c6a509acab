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
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::model::event::{DnsData, DnsRecord, Event, FlowSample, Input, MacAddr, Timestamp};
use crate::sources::packet::name_to_string;
use crate::transports::net;

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
    BadLength {
        msg_type: u32,
        length: u32,
    },
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
        // SPIN's pkt_info has one byte count: its direction is the sample's.
        reply_bytes: 0,
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
/// Each datagram holds one message; bad ones are logged and dropped. The task (on the
/// transports' runtime) ends when the receiver of `tx` is gone (noticed at the next datagram).
pub fn serve_unix(path: &Path, tx: Sender<Input>) -> io::Result<()> {
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
    sock.set_nonblocking(true)?;
    let rt = net::handle()?;
    let _in_runtime = rt.enter();
    let sock = tokio::net::UnixDatagram::from_std(sock)?;
    let name = path.display().to_string();
    rt.spawn(async move {
        // Larger than any valid message, so oversized datagrams are seen as such.
        let mut buf = vec![0u8; HEADER_LEN + MAX_PAYLOAD + 1];
        let mut bad = BadInputLog::default();
        loop {
            let n = match sock.recv(&mut buf).await {
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
                Err(e) => bad.note(|| format!("extsrc {name}: dropping bad datagram ({n} bytes): {e}")),
            }
        }
    });
    Ok(())
}

/// Logs bad input without letting a flood of it flood the log: the first few cases in full,
/// then one line a minute with how many more were dropped.
#[derive(Default)]
struct BadInputLog {
    logged: u32,
    suppressed: u64,
    last_summary: Option<std::time::Instant>,
}

impl BadInputLog {
    const FULL: u32 = 10;
    const SUMMARY_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

    fn note(&mut self, what: impl FnOnce() -> String) {
        if self.logged < Self::FULL {
            self.logged += 1;
            log::warn!("{}", what());
            if self.logged == Self::FULL {
                log::warn!("extsrc: more bad input is counted, and logged once a minute");
            }
            return;
        }
        self.suppressed += 1;
        let now = std::time::Instant::now();
        if self.last_summary.is_none_or(|t| now.duration_since(t) >= Self::SUMMARY_EVERY) {
            self.last_summary = Some(now);
            log::warn!("extsrc: {} more bad messages dropped; the latest: {}", self.suppressed, what());
            self.suppressed = 0;
        }
    }
}

/// Listens on TCP `addr` for extsrc clients (see [`serve_tcp_listener`]).
pub fn serve_tcp(addr: SocketAddr, tx: Sender<Input>) -> io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    serve_tcp_listener(listener, tx)
}

/// Accepts extsrc clients on `listener`, a task per client (on the transports' runtime)
/// reading a stream of messages. A bad message, or a message cut off by the end of the stream,
/// closes that client only.
pub fn serve_tcp_listener(listener: TcpListener, tx: Sender<Input>) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let rt = net::handle()?;
    let _in_runtime = rt.enter();
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let clients = Arc::new(AtomicUsize::new(0));
    rt.spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("extsrc: accept failed: {e}");
                    // E.g. out of file descriptors: do not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            if clients.load(Ordering::SeqCst) >= MAX_TCP_CLIENTS {
                log::warn!("extsrc: too many clients, refusing {peer}");
                continue;
            }
            clients.fetch_add(1, Ordering::SeqCst);
            let (tx, clients) = (tx.clone(), clients.clone());
            tokio::spawn(async move {
                serve_client(stream, &peer.to_string(), &tx).await;
                clients.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Ok(())
}

async fn serve_client(mut stream: tokio::net::TcpStream, peer: &str, tx: &Sender<Input>) {
    log::info!("extsrc: client {peer} connected");
    let mut pending: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk).await {
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
                    let _ = stream.shutdown().await;
                    return;
                }
            }
        }
        pending.drain(..pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::mpsc;
    use std::time::Duration;

    fn msg(msg_type: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = msg_type.to_ne_bytes().to_vec();
        v.extend_from_slice(&(payload.len() as u32).to_ne_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut r = [0u8; 16];
        r[12..].copy_from_slice(&a);
        r
    }

    fn pkt_info(family: u8) -> Vec<u8> {
        let mut p = vec![0xeeu8; PKT_INFO_LEN]; // padding bytes are garbage in C
        p[0] = family;
        p[1] = 6;
        p[2..18].copy_from_slice(&v4([192, 168, 1, 10]));
        p[18..34].copy_from_slice(&v4([8, 8, 8, 8]));
        p[34..36].copy_from_slice(&40000u16.to_ne_bytes());
        p[36..38].copy_from_slice(&443u16.to_ne_bytes());
        p[38] = 0;
        p[40..48].copy_from_slice(&1500u64.to_ne_bytes());
        p[48..56].copy_from_slice(&3u64.to_ne_bytes());
        p[56..58].copy_from_slice(&0u16.to_ne_bytes());
        msg(MSG_PKT_INFO, &p)
    }

    /// www.Example.com in wire format, followed by junk (the C code copies only the name).
    fn dns_pkt_info(family: u8, ip: [u8; 16], ttl: u32) -> Vec<u8> {
        let mut p = vec![0u8; DNS_PKT_INFO_LEN];
        p[0] = family;
        p[1..17].copy_from_slice(&ip);
        p[20..24].copy_from_slice(&ttl.to_ne_bytes());
        let wire = b"\x03www\x07Example\x03com\x00";
        p[24..24 + wire.len()].copy_from_slice(wire);
        p[24 + wire.len()..].fill(0xab);
        p
    }

    fn arp_update(mac: &[u8], family: u8, ip: [u8; 16]) -> Vec<u8> {
        let mut p = vec![0u8; ARP_UPDATE_LEN];
        p[..mac.len()].copy_from_slice(mac);
        p[18] = family;
        p[19] = 0;
        p[20..36].copy_from_slice(&ip);
        msg(MSG_ARP_UPDATE, &p)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn pkt_info_message() {
        for family in [4, 2] {
            let m = pkt_info(family);
            let (ev, used) = parse_message_at(&m, 99).unwrap();
            assert_eq!(used, 72);
            let sample = FlowSample {
                protocol: 6,
                src: ip("192.168.1.10"),
                dst: ip("8.8.8.8"),
                src_port: 40000,
                dst_port: 443,
                icmp_type: 0,
                bytes: 1500,
                packets: 3,
                reply_bytes: 0,
            };
            assert_eq!(ev, Event::Flows { time: 99, flows: vec![sample], local: true });
        }
        let mut m = pkt_info(6);
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        m[8 + 2..8 + 18].copy_from_slice(&v6.octets());
        let (Event::Flows { flows, .. }, _) = parse_message_at(&m, 1).unwrap() else { panic!() };
        assert_eq!(flows[0].src, IpAddr::V6(v6));
    }

    #[test]
    fn dns_messages() {
        let mut q = 2i32.to_ne_bytes().to_vec();
        q.extend_from_slice(&v4([192, 168, 1, 10]));
        q.extend_from_slice(&dns_pkt_info(2, v4([192, 168, 1, 10]), 0));
        let (ev, used) = parse_message_at(&msg(MSG_DNS_QUERY, &q), 5).unwrap();
        assert_eq!(used, 8 + 300);
        assert_eq!(ev, Event::DnsQuery { time: 5, client: ip("192.168.1.10"), qname: "www.Example.com.".into() });

        let a = dns_pkt_info(10, "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets(), 1234);
        let (ev, used) = parse_message_at(&msg(MSG_DNS_ANSWER, &a), 6).unwrap();
        assert_eq!(used, 8 + 280);
        let rec = DnsRecord { owner: "www.Example.com.".into(), ttl: 1234, data: DnsData::Addr(ip("2001:db8::7")) };
        assert_eq!(ev, Event::DnsAnswer { time: 6, qname: "www.Example.com.".into(), records: vec![rec] });

        // A name without its terminating root label within the 256 bytes.
        let mut bad = dns_pkt_info(4, v4([1, 2, 3, 4]), 1);
        bad[24..].fill(3);
        assert_eq!(parse_message_at(&msg(MSG_DNS_ANSWER, &bad), 0).unwrap_err(), ExtsrcError::BadName);
        // A compression pointer cannot be resolved here.
        let mut bad = dns_pkt_info(4, v4([1, 2, 3, 4]), 1);
        bad[24..26].copy_from_slice(&[0xc0, 0x0c]);
        assert_eq!(parse_message_at(&msg(MSG_DNS_ANSWER, &bad), 0).unwrap_err(), ExtsrcError::BadName);
    }

    #[test]
    fn arp_message() {
        let m = arp_update(b"aa:BB:cc:dd:ee:01\0", 2, v4([192, 168, 1, 5]));
        let (ev, used) = parse_message_at(&m, 3).unwrap();
        assert_eq!(used, 8 + 36);
        assert_eq!(ev, Event::Neighbour { time: 3, ip: ip("192.168.1.5"), mac: "aa:bb:cc:dd:ee:01".parse().unwrap() });
        let m = arp_update(b"aa:bb:cc:dd:ee:01\0", 10, "fe80::5".parse::<Ipv6Addr>().unwrap().octets());
        assert!(
            matches!(parse_message_at(&m, 3), Ok((Event::Neighbour { ip, .. }, _)) if ip == "fe80::5".parse::<IpAddr>().unwrap())
        );

        // Not NUL-terminated, not a MAC, bad family.
        let m = arp_update(b"aa:bb:cc:dd:ee:01xx", 2, [0; 16]);
        assert!(matches!(parse_message_at(&m, 0), Err(ExtsrcError::BadMac(_))));
        let m = arp_update(b"aa:bb:cc:dd:ee\0", 2, [0; 16]);
        assert!(matches!(parse_message_at(&m, 0), Err(ExtsrcError::BadMac(_))));
        let m = arp_update(b"aa:bb:cc:dd:ee:01\0", 7, [0; 16]);
        assert_eq!(parse_message_at(&m, 0).unwrap_err(), ExtsrcError::BadFamily(7));
    }

    #[test]
    fn bad_messages() {
        let good = pkt_info(4);
        for cut in 0..good.len() {
            assert_eq!(parse_message_at(&good[..cut], 0).unwrap_err(), ExtsrcError::Incomplete, "cut {cut}");
        }
        assert_eq!(parse_message_at(&msg(9, &[0; 10]), 0).unwrap_err(), ExtsrcError::UnknownType(9));
        assert_eq!(parse_message_at(&msg(0, &[]), 0).unwrap_err(), ExtsrcError::UnknownType(0));
        assert_eq!(
            parse_message_at(&msg(MSG_PKT_INFO, &[0; 63]), 0).unwrap_err(),
            ExtsrcError::BadLength { msg_type: 1, length: 63 }
        );
        // A huge length is refused from the header alone (no waiting for 4 GB on a stream).
        let mut huge = MSG_DNS_ANSWER.to_ne_bytes().to_vec();
        huge.extend_from_slice(&u32::MAX.to_ne_bytes());
        assert!(matches!(parse_message_at(&huge, 0), Err(ExtsrcError::BadLength { .. })));
        let mut m = pkt_info(4);
        m[8] = 5;
        assert_eq!(parse_message_at(&m, 0).unwrap_err(), ExtsrcError::BadFamily(5));
        // Two messages back to back: the first one's length is reported.
        let mut two = pkt_info(4);
        two.extend_from_slice(&pkt_info(4));
        assert_eq!(parse_message_at(&two, 0).unwrap().1, 72);
    }

    fn recv_event(rx: &mpsc::Receiver<Input>) -> Event {
        match rx.recv_timeout(Duration::from_secs(5)).expect("no event") {
            Input::Event(ev) => ev,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tcp_bad_client_is_dropped_others_continue() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        serve_tcp_listener(listener, tx).unwrap();

        let mut good = TcpStream::connect(addr).unwrap();
        let mut bad = TcpStream::connect(addr).unwrap();
        // The good client sends one message split in two writes.
        let m = pkt_info(4);
        good.write_all(&m[..30]).unwrap();
        good.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        good.write_all(&m[30..]).unwrap();
        assert!(matches!(recv_event(&rx), Event::Flows { local: true, .. }));

        // The bad client: a valid message, then garbage -> its connection is closed.
        bad.write_all(&arp_update(b"aa:bb:cc:dd:ee:01\0", 2, v4([10, 0, 0, 1]))).unwrap();
        bad.write_all(&msg(77, &[1, 2, 3])).unwrap();
        assert!(matches!(recv_event(&rx), Event::Neighbour { .. }));
        bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        let closed = match bad.read(&mut buf) {
            Ok(0) => true,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        };
        assert!(closed, "bad client still connected");

        // The good client goes on; a third client can connect too.
        good.write_all(&pkt_info(4)).unwrap();
        assert!(matches!(recv_event(&rx), Event::Flows { .. }));
        let mut third = TcpStream::connect(addr).unwrap();
        third.write_all(&pkt_info(2)).unwrap();
        assert!(matches!(recv_event(&rx), Event::Flows { .. }));
        // A client that hangs up mid-message produces nothing.
        third.write_all(&pkt_info(4)[..20]).unwrap();
        drop(third);
        good.write_all(&pkt_info(4)).unwrap();
        assert!(matches!(recv_event(&rx), Event::Flows { .. }));
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    }

    #[test]
    fn unix_datagrams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("extsrc.sock");
        // A stale socket file from an earlier run is replaced.
        drop(UnixDatagram::bind(&path).unwrap());
        let (tx, rx) = mpsc::channel();
        serve_unix(&path, tx).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let client = UnixDatagram::unbound().unwrap();
        client.send_to(&msg(42, &[0; 4]), &path).unwrap(); // unknown type: dropped
        let mut trailing = pkt_info(4);
        trailing.push(0);
        client.send_to(&trailing, &path).unwrap(); // trailing byte: dropped
        client.send_to(&pkt_info(4)[..40], &path).unwrap(); // short: dropped
        client.send_to(&pkt_info(4), &path).unwrap();
        assert!(matches!(recv_event(&rx), Event::Flows { local: true, .. }));
        client.send_to(&arp_update(b"02:00:00:00:00:01\0", 4, v4([10, 0, 0, 2])), &path).unwrap();
        assert!(matches!(recv_event(&rx), Event::Neighbour { .. }));
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());

        // A regular file in the way is not removed.
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let (tx, _rx) = mpsc::channel();
        assert!(serve_unix(&file, tx).is_err());
        assert!(file.exists());
    }
}
