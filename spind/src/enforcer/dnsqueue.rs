//! The DNS verdict path (issue 13): queries from LAN devices to the router's resolver are
//! queued by `table inet spin` (NFQUEUE, `bypass`: with spind stopped the kernel accepts them)
//! and judged here against the [`NameMatcher`] of the name rules that hold now, which the core
//! computed. Nothing is decided here beyond looking the name up.
//!
//! A query for a blocked name is answered by spind itself, as Pi-hole does by default, with
//! `0.0.0.0` (A) or `::` (AAAA) and a TTL of [`BLOCKED_TTL`] seconds (other types: an empty
//! NOERROR answer), and the query is dropped, so it never goes upstream. Why not NXDOMAIN: a
//! client that gets NXDOMAIN from one resolver may ask the next one it knows (a second DNS
//! server, a search domain appended), and some apps retry it in a loop, while a connection to
//! `0.0.0.0`/`::` fails at once and is not retried. The answer is sent from the router's
//! address and port 53 through a raw socket (the resolver holds port 53). Over TCP a blocked
//! query is dropped (the client times out; the flow path still cuts the addresses).
//!
//! Everything else, including packets that are not a well-formed query, is accepted unchanged
//! and counted. The path allocates nothing per packet: the question is parsed into a stack
//! buffer and the answer built in a buffer made once (the unit test
//! `the_verdict_path_allocates_nothing_per_packet` counts the allocations with a counting
//! global allocator, against a 100,000-name blocklist and rules of every kind).
//!
//! Each blocked query is reported ([`BlockedQuery`], so the graph can show the blocked name) on
//! a bounded channel with `try_send`: the verdict never waits for the core, and a report that
//! finds the channel full is dropped and counted (`reports_dropped`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, RwLock};

use log::{info, warn};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::model::policy::{NameMatcher, NameVerdict};

/// TTL of spind's answers for blocked names: short, so that lifting a rule works at once.
pub const BLOCKED_TTL: u32 = 10;
/// Packets the kernel holds for spind at most; beyond that they are accepted (`fail-open`).
pub const QUEUE_MAX_LEN: u32 = 1024;
/// Reports of blocked queries waiting for the core at most (its slots are allocated once, when
/// the channel is made); a burst beyond that is counted, not reported.
pub const REPORTS_MAX: usize = 64;

/// The rules the verdict thread applies, swapped whole by the enforcer.
pub type SharedMatcher = Arc<RwLock<Arc<NameMatcher>>>;

/// What the verdict thread did. `AtomicUsize`, not `AtomicU64`: 32-bit MIPS (GL.iNet AR150) has
/// no 64-bit atomics.
#[derive(Debug, Default)]
pub struct DnsCounters {
    pub queries: AtomicUsize,
    pub blocked: AtomicUsize,
    /// Not a well-formed DNS query (accepted unchanged).
    pub malformed: AtomicUsize,
    pub send_errors: AtomicUsize,
    /// Reports of blocked queries dropped because the channel to the core was full.
    pub reports_dropped: AtomicUsize,
    /// Errors the kernel reported on the queue socket that the thread lives through.
    pub queue_errors: AtomicUsize,
}

/// A query the verdict thread answered for a blocked name: who asked, and for what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockedQuery {
    /// The name, lowercase, without the trailing dot, in `name[..len]` (a copy, not a `String`:
    /// made on the verdict path).
    name: [u8; 255],
    len: usize,
    pub client: SocketAddr,
    pub udp: bool,
}

impl BlockedQuery {
    pub fn name(&self) -> &[u8] {
        &self.name[..self.len]
    }
}

/// Reports the blocked query of `pkt` (located as `d`) without waiting: a full or closed
/// channel counts the report as dropped.
fn report(reports: &SyncSender<BlockedQuery>, c: &DnsCounters, pkt: &[u8], d: &Datagram) {
    let Some(q) = pkt.get(d.dns..).and_then(parse_query) else { return };
    let b = BlockedQuery { name: q.name, len: q.len, client: d.src, udp: d.udp };
    if reports.try_send(b).is_err() {
        c.reports_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether the verdict thread carries on after this error from the queue socket. `ENOENT`: a
/// verdict for a packet the kernel no longer holds, because any hook unregistered in the
/// namespace (an nftables table replaced) flushes every queue; `ENOBUFS`: the socket overflowed
/// and the kernel accepted what did not fit (fail-open). Measured by `cargo xtask bench names`:
/// before, the first such error ended the thread and every later query passed unjudged.
fn survivable(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOBUFS))
}

/// A DNS question parsed out of a packet, without allocating.
#[derive(Debug, PartialEq, Eq)]
pub struct Question {
    /// The name, lowercase, without the trailing dot, in `name[..len]`.
    name: [u8; 255],
    len: usize,
    pub qtype: u16,
    pub qclass: u16,
    /// Where the question ends in the DNS message.
    end: usize,
}

impl Question {
    pub fn name(&self) -> &[u8] {
        &self.name[..self.len]
    }
}

/// The question of a standard query (QR 0, opcode 0, one question, no compression in it).
/// `None` for anything else.
pub fn parse_query(msg: &[u8]) -> Option<Question> {
    if msg.len() < 12 {
        return None;
    }
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 || qdcount != 1 {
        return None;
    }
    let mut q = Question { name: [0; 255], len: 0, qtype: 0, qclass: 0, end: 0 };
    let mut i = 12;
    loop {
        let l = *msg.get(i)? as usize;
        i += 1;
        if l == 0 {
            break;
        }
        if l > 63 {
            return None; // a pointer or a reserved label type: not in a question we judge
        }
        let label = msg.get(i..i + l)?;
        let need = if q.len == 0 { l } else { l + 1 };
        if q.len + need > 253 {
            return None;
        }
        if q.len > 0 {
            q.name[q.len] = b'.';
            q.len += 1;
        }
        for &b in label {
            q.name[q.len] = b.to_ascii_lowercase();
            q.len += 1;
        }
        i += l;
    }
    let tail = msg.get(i..i + 4)?;
    q.qtype = u16::from_be_bytes([tail[0], tail[1]]);
    q.qclass = u16::from_be_bytes([tail[2], tail[3]]);
    q.end = i + 4;
    (q.len > 0).then_some(q)
}

/// Where a queued packet's DNS message is: addresses, ports, and whether it is UDP.
#[derive(Debug, PartialEq, Eq)]
pub struct Datagram {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub udp: bool,
    /// Offset of the DNS message (after the two-byte length prefix over TCP).
    pub dns: usize,
}

/// Finds the DNS message in an IPv4/IPv6 packet carrying UDP or TCP (no IPv6 extension
/// headers, no IPv4 fragments). `None` for anything else.
pub fn locate(pkt: &[u8]) -> Option<Datagram> {
    let (src, dst, proto, l4) = match pkt.first()? >> 4 {
        4 => {
            let ihl = usize::from(pkt[0] & 0xf) * 4;
            let frag = u16::from_be_bytes([*pkt.get(6)?, *pkt.get(7)?]);
            if ihl < 20 || pkt.len() < ihl || frag & 0x3fff != 0 {
                return None;
            }
            let a = |o: usize| IpAddr::V4(Ipv4Addr::new(pkt[o], pkt[o + 1], pkt[o + 2], pkt[o + 3]));
            (a(12), a(16), pkt[9], ihl)
        }
        6 => {
            if pkt.len() < 40 {
                return None;
            }
            let a = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&pkt[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            (a(8), a(24), pkt[6], 40)
        }
        _ => return None,
    };
    let port = |o: usize| Some(u16::from_be_bytes([*pkt.get(l4 + o)?, *pkt.get(l4 + o + 1)?]));
    let (sport, dport) = (port(0)?, port(2)?);
    let (udp, dns) = match proto {
        17 => (true, l4 + 8),
        6 => {
            let off = usize::from(*pkt.get(l4 + 12)? >> 4) * 4;
            if off < 20 {
                return None;
            }
            (false, l4 + off + 2)
        }
        _ => return None,
    };
    if dns > pkt.len() {
        return None;
    }
    Some(Datagram { src: SocketAddr::new(src, sport), dst: SocketAddr::new(dst, dport), udp, dns })
}

fn checksum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    sum
}

fn checksum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes into `out` the IP packet that answers the query `msg` (carried in `d`) for a blocked
/// name; returns its length, or `None` if it does not fit.
pub fn blocked_answer(d: &Datagram, msg: &[u8], q: &Question, out: &mut [u8]) -> Option<usize> {
    let ip_len = if d.src.is_ipv4() { 20 } else { 40 };
    let dns_start = ip_len + 8;
    let question = msg.get(12..q.end)?;
    let addr_len = match (q.qtype, q.qclass) {
        (1, 1) => Some(4),
        (28, 1) => Some(16),
        _ => None,
    };
    let answer_len = addr_len.map_or(0, |l| 12 + l);
    let dns_len = 12 + question.len() + answer_len;
    let total = dns_start + dns_len;
    if total > out.len() {
        return None;
    }
    let o = &mut out[..total];
    // DNS header: same id, QR=1, opcode 0, RD copied, RA=1, NOERROR.
    let dns = &mut o[dns_start..];
    dns[0..2].copy_from_slice(&msg[0..2]);
    dns[2] = 0x80 | (msg[2] & 0x01);
    dns[3] = 0x80;
    dns[4..6].copy_from_slice(&1u16.to_be_bytes());
    dns[6..8].copy_from_slice(&u16::from(addr_len.is_some()).to_be_bytes());
    dns[8..12].fill(0);
    dns[12..12 + question.len()].copy_from_slice(question);
    if let Some(l) = addr_len {
        let a = &mut dns[12 + question.len()..];
        a[0..2].copy_from_slice(&0xc00cu16.to_be_bytes()); // the name of the question
        a[2..4].copy_from_slice(&q.qtype.to_be_bytes());
        a[4..6].copy_from_slice(&1u16.to_be_bytes());
        a[6..10].copy_from_slice(&BLOCKED_TTL.to_be_bytes());
        a[10..12].copy_from_slice(&(l as u16).to_be_bytes());
        a[12..12 + l].fill(0); // 0.0.0.0 or ::
    }
    // UDP header, from the query's destination back to its source.
    let udp_len = (8 + dns_len) as u16;
    {
        let u = &mut o[ip_len..ip_len + 8];
        u[0..2].copy_from_slice(&d.dst.port().to_be_bytes());
        u[2..4].copy_from_slice(&d.src.port().to_be_bytes());
        u[4..6].copy_from_slice(&udp_len.to_be_bytes());
        u[6..8].fill(0);
    }
    let mut pseudo = 17u32 + u32::from(udp_len);
    match (d.dst.ip(), d.src.ip()) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            let h = &mut o[..20];
            h[0] = 0x45;
            h[1] = 0;
            h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            h[4..8].fill(0);
            h[8] = 64;
            h[9] = 17;
            h[10..12].fill(0);
            h[12..16].copy_from_slice(&from.octets());
            h[16..20].copy_from_slice(&to.octets());
            let c = checksum_fold(checksum_add(0, h));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            pseudo = checksum_add(checksum_add(pseudo, &from.octets()), &to.octets());
        }
        (IpAddr::V6(from), IpAddr::V6(to)) => {
            let h = &mut o[..40];
            h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
            h[4..6].copy_from_slice(&udp_len.to_be_bytes());
            h[6] = 17;
            h[7] = 64;
            h[8..24].copy_from_slice(&from.octets());
            h[24..40].copy_from_slice(&to.octets());
            pseudo = checksum_add(checksum_add(pseudo, &from.octets()), &to.octets());
        }
        _ => return None,
    }
    let mut c = checksum_fold(checksum_add(pseudo, &o[ip_len..]));
    if c == 0 {
        c = 0xffff;
    }
    o[ip_len + 6..ip_len + 8].copy_from_slice(&c.to_be_bytes());
    Some(total)
}

/// What to do with one queued packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Accept,
    /// Not a DNS query we can read: accepted unchanged, counted.
    Malformed,
    /// Dropped; `answer` bytes of the buffer are the IP packet to send back (0 over TCP).
    Block {
        answer: usize,
    },
}

/// Judges one packet (`hwaddr`: its link-layer source, if the kernel gave one).
pub fn judge(pkt: &[u8], hwaddr: Option<[u8; 6]>, m: &NameMatcher, out: &mut [u8]) -> (Decision, Option<Datagram>) {
    let Some(d) = locate(pkt) else { return (Decision::Malformed, None) };
    let msg = &pkt[d.dns..];
    let Some(q) = parse_query(msg) else {
        // A TCP segment without a whole query (the handshake, an ack) is not malformed.
        let empty_tcp = !d.udp && msg.is_empty();
        return (if empty_tcp { Decision::Accept } else { Decision::Malformed }, Some(d));
    };
    let device = m.device_of(hwaddr, Some(d.src.ip()));
    if m.decide_counted(q.name(), device) != Some(NameVerdict::Block) {
        return (Decision::Accept, Some(d));
    }
    let answer = if d.udp { blocked_answer(&d, msg, &q, out).unwrap_or(0) } else { 0 };
    (Decision::Block { answer }, Some(d))
}

/// The running verdict thread's handle: its counters, and the blocked queries it reports
/// (bounded, [`REPORTS_MAX`]) until someone takes them.
pub struct DnsQueue {
    pub counters: Arc<DnsCounters>,
    reports: Option<Receiver<BlockedQuery>>,
}

impl DnsQueue {
    /// The blocked queries, for whoever hands them to the core (once).
    pub fn take_reports(&mut self) -> Option<Receiver<BlockedQuery>> {
        self.reports.take()
    }
}

/// Binds NFQUEUE `queue_num` (fail-open, at most [`QUEUE_MAX_LEN`] packets waiting) in this
/// network namespace and starts the verdict thread `spind-dnsq`.
pub fn start(queue_num: u16, rules: SharedMatcher) -> io::Result<DnsQueue> {
    let mut q = nfq::Queue::open()?;
    q.bind(queue_num)?;
    q.set_fail_open(queue_num, true)?;
    q.set_queue_max_len(queue_num, QUEUE_MAX_LEN)?;
    q.set_copy_range(queue_num, 4096)?;
    let raw4 = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))?;
    let raw6 = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))?;
    let counters = Arc::new(DnsCounters::default());
    let c = counters.clone();
    let (reports_tx, reports) = mpsc::sync_channel(REPORTS_MAX);
    std::thread::Builder::new().name("spind-dnsq".into()).spawn(move || {
        let mut buf = vec![0u8; 2048];
        let mut last_log = std::time::Instant::now();
        loop {
            let mut msg = match q.recv() {
                Ok(m) => m,
                Err(e) if survivable(&e) => {
                    c.queue_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => {
                    warn!("DNS queue {queue_num}: {e}; queries pass unjudged");
                    return;
                }
            };
            let hw = msg.get_hw_addr().and_then(|h| <[u8; 6]>::try_from(h.get(..6)?).ok());
            let matcher = rules.read().map(|r| r.clone()).unwrap_or_default();
            let (decision, d) = judge(msg.get_payload(), hw, &matcher, &mut buf);
            c.queries.fetch_add(1, Ordering::Relaxed);
            let verdict = match decision {
                Decision::Accept => nfq::Verdict::Accept,
                Decision::Malformed => {
                    c.malformed.fetch_add(1, Ordering::Relaxed);
                    nfq::Verdict::Accept
                }
                Decision::Block { answer } => {
                    c.blocked.fetch_add(1, Ordering::Relaxed);
                    if let Some(d) = &d {
                        report(&reports_tx, &c, msg.get_payload(), d);
                    }
                    if let (Some(d), true) = (d, answer > 0) {
                        let (sock, to) = match d.src.ip() {
                            IpAddr::V4(a) => (&raw4, SocketAddr::new(IpAddr::V4(a), 0)),
                            IpAddr::V6(a) => (&raw6, SocketAddr::new(IpAddr::V6(a), 0)),
                        };
                        if sock.send_to(&buf[..answer], &SockAddr::from(to)).is_err() {
                            c.send_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    nfq::Verdict::Drop
                }
            };
            msg.set_verdict(verdict);
            if let Err(e) = q.verdict(msg) {
                warn!("DNS queue {queue_num}: verdict failed: {e}");
            }
            if last_log.elapsed().as_secs() >= 300 {
                last_log = std::time::Instant::now();
                info!(
                    "DNS queue: {} queries, {} blocked, {} not a query (passed), {} answers not sent, \
                     {} reports of blocked queries dropped, {} queue errors",
                    c.queries.load(Ordering::Relaxed),
                    c.blocked.load(Ordering::Relaxed),
                    c.malformed.load(Ordering::Relaxed),
                    c.send_errors.load(Ordering::Relaxed),
                    c.reports_dropped.load(Ordering::Relaxed),
                    c.queue_errors.load(Ordering::Relaxed)
                );
            }
        }
    })?;
    Ok(DnsQueue { counters, reports: Some(reports) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::NameSet;

    /// A DNS query for `name`/`qtype` with id 0x1234 and RD set.
    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    fn udp4(payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 168, 8, 100, 192, 168, 8, 1];
        let len = (8 + payload.len()) as u16;
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&53u16.to_be_bytes());
        p.extend_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(payload);
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p
    }

    fn matcher() -> NameMatcher {
        let mut m = NameMatcher::default();
        m.add("video.example", None, false);
        m
    }

    #[test]
    fn questions_are_parsed_lowercase_without_allocating() {
        let q = parse_query(&query("WWW.Video.Example", 28)).unwrap();
        assert_eq!((q.name(), q.qtype, q.qclass), (&b"www.video.example"[..], 28, 1));
        let mut answer = query("a.example", 1);
        answer[2] |= 0x80;
        assert_eq!(parse_query(&answer), None, "a response is not a query");
        let mut two = query("a.example", 1);
        two[5] = 2;
        assert_eq!(parse_query(&two), None);
        let mut pointer = query("a.example", 1);
        pointer[12] = 0xc0;
        assert_eq!(parse_query(&pointer), None);
        for cut in 0..query("a.example", 1).len() {
            assert_eq!(parse_query(&query("a.example", 1)[..cut]), None, "cut at {cut}");
        }
        let long = format!("{}.example", vec!["a".repeat(63); 4].join("."));
        assert_eq!(parse_query(&query(&long, 1)), None, "longer than 253");
    }

    #[test]
    fn a_blocked_a_query_gets_0_0_0_0_from_the_resolver_address() {
        let pkt = udp4(&query("www.video.example", 1));
        let mut out = [0u8; 2048];
        let (d, dg) = judge(&pkt, None, &matcher(), &mut out);
        let Decision::Block { answer } = d else { panic!("{d:?}") };
        let a = &out[..answer];
        assert_eq!(&a[12..16], &[192, 168, 8, 1], "from the router");
        assert_eq!(&a[16..20], &[192, 168, 8, 100]);
        assert_eq!(checksum_fold(checksum_add(0, &a[..20])), 0, "IPv4 header checksum");
        assert_eq!(u16::from_be_bytes([a[20], a[21]]), 53);
        assert_eq!(u16::from_be_bytes([a[22], a[23]]), 40000);
        let dns = &a[28..];
        assert_eq!(&dns[..4], &[0x12, 0x34, 0x81, 0x80], "same id, a response, RD, RA, NOERROR");
        assert_eq!(&dns[4..8], &[0, 1, 0, 1]);
        assert_eq!(&dns[dns.len() - 4..], &[0, 0, 0, 0], "0.0.0.0");
        assert!(dg.unwrap().udp);
        let mut sum = 17u32 + (a.len() as u32 - 20);
        sum = checksum_add(checksum_add(sum, &a[12..16]), &a[16..20]);
        assert_eq!(checksum_fold(checksum_add(sum, &a[20..])), 0, "UDP checksum");
    }

    #[test]
    fn other_names_and_garbage_pass() {
        let mut out = [0u8; 2048];
        let m = matcher();
        assert_eq!(judge(&udp4(&query("video.example.org", 1)), None, &m, &mut out).0, Decision::Accept);
        assert_eq!(judge(&udp4(b"\x00\x01garbage"), None, &m, &mut out).0, Decision::Malformed);
        assert_eq!(judge(b"", None, &m, &mut out).0, Decision::Malformed);
        assert_eq!(judge(&[0x45; 30], None, &m, &mut out).0, Decision::Malformed);
        let mut mx = query("video.example", 15);
        mx[2] = 0;
        let (d, _) = judge(&udp4(&mx), None, &m, &mut out);
        let Decision::Block { answer } = d else { panic!() };
        assert_eq!(&out[28 + 6..28 + 8], &[0, 0], "MX: an empty NOERROR answer");
        assert_eq!(answer, 28 + mx.len());
    }

    /// Counts the heap allocations (and reallocations) of the thread that has counting on: the
    /// test binary's allocator, so that "the verdict path allocates nothing per packet" is
    /// measured, not promised. Other threads (parallel tests) are not counted.
    mod counting {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        pub struct Counting;

        thread_local! {
            // Const-initialised, no destructor: reading it never allocates.
            static ON: Cell<bool> = const { Cell::new(false) };
            static COUNT: Cell<usize> = const { Cell::new(0) };
        }

        fn count() {
            let _ = ON.try_with(|on| {
                if on.get() {
                    let _ = COUNT.try_with(|c| c.set(c.get() + 1));
                }
            });
        }

        // SAFETY: every call is passed on to the system allocator unchanged.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                count();
                System.alloc(layout)
            }
            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                count();
                System.alloc_zeroed(layout)
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                count();
                System.realloc(ptr, layout, new_size)
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                System.dealloc(ptr, layout)
            }
        }

        #[global_allocator]
        static ALLOCATOR: Counting = Counting;

        /// How many allocations `f` made on this thread.
        pub fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
            COUNT.with(|c| c.set(0));
            ON.with(|on| on.set(true));
            let r = f();
            ON.with(|on| on.set(false));
            (COUNT.with(Cell::get), r)
        }
    }

    fn udp6(payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[17, 64]);
        p.extend_from_slice(&"fd00:8::100".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"fd00:8::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&53u16.to_be_bytes());
        p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn the_verdict_path_allocates_nothing_per_packet() {
        use counting::allocations;
        // The counter sees an allocation on this thread (else the zeros below would prove nothing).
        assert_eq!(allocations(|| std::hint::black_box(Vec::<u8>::with_capacity(8))).0, 1);

        // What the verdict thread holds: a 100,000-name blocklist and rules of every kind.
        const KID: [u8; 6] = [2, 0, 0, 0, 0, 0x64];
        let lists: NameSet =
            (0..100_000).map(|i| format!("ad{i}.track{}.test", i % 1000).into_bytes().into()).collect();
        let mut m = NameMatcher::default();
        let list = |devices: Option<Box<[[u8; 6]]>>| crate::model::policy::MatchList {
            names: Arc::new(lists.clone()),
            devices,
            blocked: crate::model::policy::BlockCounter::default(),
        };
        let (all, kids) = (list(None), list(Some(Box::new([KID]))));
        m.set_lists(Arc::new([all, kids]), crate::model::policy::BlockCounter::default());
        m.add("video.example", None, false);
        m.add("ok.video.example", None, true);
        m.add("kids.example", Some(vec![KID]), false);
        m.add_device_ip("192.168.8.100".parse().unwrap(), KID);
        let shared = SharedMatcher::default();
        *shared.write().unwrap() = Arc::new(m);

        // (what, packet, link-layer source, blocked)
        type Case = (&'static str, Vec<u8>, Option<[u8; 6]>, bool);
        let cases: [Case; 9] = [
            ("a listed name", udp4(&query("ad77.track77.test", 1)), None, true),
            ("below a listed name", udp4(&query("cdn.ad77.track77.test", 1)), None, true),
            ("a rule's name, AAAA over IPv6", udp6(&query("www.video.example", 28)), None, true),
            ("a per-device rule, by MAC", udp4(&query("kids.example", 1)), Some(KID), true),
            ("a per-device rule, by address", udp4(&query("www.kids.example", 1)), None, true),
            ("an MX for a blocked name", udp4(&query("video.example", 15)), None, true),
            ("an allowed name", udp4(&query("www.shop1.test", 1)), None, false),
            ("an allow below a block", udp4(&query("ok.video.example", 28)), Some(KID), false),
            ("not DNS", udp4(b"\x00\x01garbage"), None, false),
        ];
        let mut out = vec![0u8; 2048];
        for (what, pkt, hw, blocked) in &cases {
            // Warm-up: the first call may touch lazily made things (none today).
            let _ = judge(pkt, *hw, &shared.read().unwrap(), &mut out);
            let (n, decision) = allocations(|| {
                // As the verdict thread does per packet: take the rules in force, judge.
                let matcher = shared.read().map(|r| r.clone()).unwrap_or_default();
                judge(pkt, *hw, &matcher, &mut out).0
            });
            assert_eq!(matches!(decision, Decision::Block { .. }), *blocked, "{what}: {decision:?}");
            assert_eq!(n, 0, "{what}: {n} allocations per packet");
        }
    }

    #[test]
    fn the_verdict_thread_lives_through_flushed_packets_and_overflows_only() {
        for errno in [libc::ENOENT, libc::ENOBUFS] {
            assert!(survivable(&io::Error::from_raw_os_error(errno)), "{errno}");
        }
        for errno in [libc::EBADF, libc::EPERM, libc::ENOSPC] {
            assert!(!survivable(&io::Error::from_raw_os_error(errno)), "{errno}");
        }
        assert!(!survivable(&io::Error::other("not from the kernel")));
    }

    #[test]
    fn blocked_queries_are_reported_without_waiting_and_a_full_channel_counts_drops() {
        let (tx, rx) = mpsc::sync_channel(1);
        let c = DnsCounters::default();
        let pkt = udp4(&query("WWW.Video.Example", 1));
        let d = locate(&pkt).unwrap();
        report(&tx, &c, &pkt, &d);
        report(&tx, &c, &pkt, &d);
        assert_eq!(c.reports_dropped.load(Ordering::Relaxed), 1, "the second found the channel full");
        let b = rx.try_recv().unwrap();
        assert_eq!(
            (b.name(), b.client, b.udp),
            (&b"www.video.example"[..], "192.168.8.100:40000".parse().unwrap(), true)
        );
        assert!(rx.try_recv().is_err());
        drop(rx);
        report(&tx, &c, &pkt, &d);
        assert_eq!(c.reports_dropped.load(Ordering::Relaxed), 2, "nobody listening: dropped, never blocking");
        report(&tx, &c, b"\x45garbage", &Datagram { dns: 1, ..d });
        assert_eq!(c.reports_dropped.load(Ordering::Relaxed), 2, "no question, no report");
    }

    #[test]
    fn per_device_rules_use_the_link_layer_address() {
        let mut m = NameMatcher::default();
        m.add("kids.example", Some(vec![[2, 0, 0, 0, 0, 1]]), false);
        let mut out = [0u8; 2048];
        let pkt = udp4(&query("kids.example", 1));
        assert!(matches!(judge(&pkt, Some([2, 0, 0, 0, 0, 1]), &m, &mut out).0, Decision::Block { .. }));
        assert_eq!(judge(&pkt, Some([2, 0, 0, 0, 0, 2]), &m, &mut out).0, Decision::Accept);
    }
}
