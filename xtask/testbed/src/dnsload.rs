//! DNS load for the benchmarks: A queries for a list of names, sent at a fixed rate over UDP
//! from one namespace to a resolver, each reply matched to its query by socket and id and
//! checked against the question it answers; per query the round trip and whether the answer
//! was `0.0.0.0` (spind's answer for a blocked name).
//!
//! Receive times are the kernel's (`SO_TIMESTAMPNS`), so a receiving thread that the busy
//! machine schedules late does not add to the latency it measures; send times are taken just
//! before `sendto`.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::netns::spawn_in_netns;

/// One load run: `rate` queries a second for `duration`, for `names[i % names.len()]`.
#[derive(Clone, Debug)]
pub struct DnsLoad {
    pub src: Ipv4Addr,
    pub resolver: SocketAddrV4,
    pub rate: u32,
    pub duration: Duration,
    pub names: Arc<Vec<String>>,
    /// How long after the last query a reply still counts.
    pub grace: Duration,
}

/// What became of each query, in the order sent.
#[derive(Clone, Debug, Default)]
pub struct DnsLoadResult {
    /// Round trip in ns; 0 = no reply (lost).
    pub rtt_ns: Vec<u64>,
    /// The reply's first answer was the A record `0.0.0.0`.
    pub zero: Vec<bool>,
    /// Replies whose question did not match the query of their socket and id (never expected).
    pub mismatched: u64,
    pub send_errors: u64,
}

/// Latency figures of a set of queries, in ms.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    pub sent: usize,
    pub answered: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    pub fn lost(&self) -> usize {
        self.sent - self.answered
    }
}

impl DnsLoadResult {
    /// Latency of the queries `keep` selects (by index).
    pub fn latency(&self, keep: impl Fn(usize) -> bool) -> Latency {
        let picked: Vec<u64> = (0..self.rtt_ns.len()).filter(|&i| keep(i)).map(|i| self.rtt_ns[i]).collect();
        let mut answered: Vec<u64> = picked.iter().copied().filter(|&r| r != 0).collect();
        answered.sort_unstable();
        let pct = |p: f64| {
            if answered.is_empty() {
                return 0.0;
            }
            let i = ((p / 100.0) * (answered.len() - 1) as f64).round() as usize;
            answered[i] as f64 / 1e6
        };
        Latency {
            sent: picked.len(),
            answered: answered.len(),
            p50: pct(50.0),
            p99: pct(99.0),
            max: answered.last().map_or(0.0, |&m| m as f64 / 1e6),
        }
    }
}

/// An A query for `name` with `id` (RD set).
pub fn a_query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(18 + name.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m
}

/// Whether `reply` answers `query` (same id, a response, the same question), and whether its
/// first answer is the A record `0.0.0.0`.
pub fn check_reply(query: &[u8], reply: &[u8]) -> Option<bool> {
    if reply.len() < query.len() || reply[..2] != query[..2] || reply[2] & 0x80 == 0 {
        return None;
    }
    // The question, compared case-insensitively (a resolver may echo 0x20-randomised case).
    if !reply[12..query.len()].eq_ignore_ascii_case(&query[12..]) {
        return None;
    }
    let ancount = u16::from_be_bytes([reply[6], reply[7]]);
    let rest = &reply[query.len()..];
    // A compressed owner name (2 bytes) or the question's name again, then type, class, TTL, length.
    let owner = if rest.first().is_some_and(|b| b & 0xc0 == 0xc0) { 2 } else { query.len() - 12 - 4 };
    let zero = ancount > 0
        && rest.get(owner..owner + 2) == Some(&[0, 1])
        && rest.get(owner + 8..owner + 10) == Some(&[0, 4])
        && rest.get(owner + 10..owner + 14) == Some(&[0, 0, 0, 0]);
    Some(zero)
}

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// A 4 MB receive buffer (as DNS servers set): the load's own scheduling on a busy machine
/// must not turn into loss (it still shows in the latency). Shared with `bench router`.
pub fn big_rcvbuf(sock: &UdpSocket) {
    let size: libc::c_int = 4 << 20;
    // SAFETY: setsockopt on an open socket with a valid int option.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// Receives one datagram into `buf` with the kernel's receive time (Unix ns).
fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> Option<(usize, u64)> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = [0u64; 16];
    // SAFETY: a zeroed msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: valid socket and msghdr.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return None;
    }
    let mut stamp = None;
    // SAFETY: walking the control messages the kernel wrote into `control`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Some((n as usize, stamp.unwrap_or_else(unix_ns)))
}

/// Runs `load` from namespace `ns` and waits for it (its duration plus the grace).
pub fn run(ns: &str, load: DnsLoad) -> Result<DnsLoadResult, String> {
    let total = (u64::from(load.rate) * load.duration.as_millis() as u64 / 1000) as usize;
    // Query i goes out on socket i % sockets with id i / sockets: unique over the run.
    let sockets = total.div_ceil(65_536).max(4);
    let queries: Arc<Vec<Vec<u8>>> =
        Arc::new((0..total).map(|i| a_query((i / sockets) as u16, &load.names[i % load.names.len()])).collect());
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let recv: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let zero: Arc<Vec<AtomicBool>> = Arc::new((0..total).map(|_| AtomicBool::new(false)).collect());
    let mismatched = Arc::new(AtomicU64::new(0));
    let (s2, r2, z2, q2, m2) = (sent.clone(), recv.clone(), zero.clone(), queries.clone(), mismatched.clone());
    let worker = spawn_in_netns(ns, move || -> Result<u64, String> {
        let socks: Vec<Arc<UdpSocket>> = (0..sockets)
            .map(|_| UdpSocket::bind((load.src, 0)).map(Arc::new))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("DNS load socket: {e}"))?;
        let done = Arc::new(AtomicBool::new(false));
        let mut receivers = Vec::new();
        for (k, s) in socks.iter().enumerate() {
            let (s, r2, z2, q2, m2, done) = (s.clone(), r2.clone(), z2.clone(), q2.clone(), m2.clone(), done.clone());
            s.set_read_timeout(Some(Duration::from_millis(100))).map_err(|e| e.to_string())?;
            big_rcvbuf(&s);
            let on: libc::c_int = 1;
            // SAFETY: setsockopt with a valid int option on an open socket.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_TIMESTAMPNS,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            receivers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 1500];
                while !done.load(Ordering::Relaxed) {
                    let Some((len, at)) = recv_stamped(&s, &mut buf) else { continue };
                    if len < 12 {
                        m2.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let i = usize::from(u16::from_be_bytes([buf[0], buf[1]])) * sockets + k;
                    match q2.get(i).and_then(|q| check_reply(q, &buf[..len])) {
                        Some(is_zero) => {
                            if r2[i].compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                                z2[i].store(is_zero, Ordering::Relaxed);
                            }
                        }
                        None => {
                            m2.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        let start = Instant::now();
        let step = Duration::from_secs(1) / load.rate;
        let mut errors = 0;
        for (i, q) in q2.iter().enumerate() {
            let due = start + step * i as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            s2[i].store(unix_ns(), Ordering::Relaxed);
            if socks[i % sockets].send_to(q, load.resolver).is_err() {
                errors += 1;
            }
        }
        std::thread::sleep(load.grace);
        done.store(true, Ordering::Relaxed);
        for r in receivers {
            let _ = r.join();
        }
        Ok(errors)
    });
    let send_errors = worker.join().map_err(|_| "DNS load panicked")??;
    let rtt_ns = sent
        .iter()
        .zip(recv.iter())
        .map(|(s, r)| match (s.load(Ordering::Relaxed), r.load(Ordering::Relaxed)) {
            (_, 0) => 0,
            (s, r) => r.saturating_sub(s).max(1),
        })
        .collect();
    Ok(DnsLoadResult {
        rtt_ns,
        zero: zero.iter().map(|z| z.load(Ordering::Relaxed)).collect(),
        mismatched: mismatched.load(Ordering::Relaxed),
        send_errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(query: &[u8], answer: [u8; 4]) -> Vec<u8> {
        let mut r = query.to_vec();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 10, 0, 4]);
        r.extend_from_slice(&answer);
        r
    }

    #[test]
    fn replies_match_their_query_and_tell_a_blocked_answer() {
        let q = a_query(7, "www.Shop1.test");
        assert_eq!(check_reply(&q, &reply(&q, [0, 0, 0, 0])), Some(true));
        assert_eq!(check_reply(&q, &reply(&q, [198, 18, 0, 1])), Some(false));
        let mut lower = reply(&q, [0, 0, 0, 0]);
        lower.make_ascii_lowercase();
        lower[..12].copy_from_slice(&reply(&q, [0, 0, 0, 0])[..12]);
        assert_eq!(check_reply(&q, &lower), Some(true), "the question's case may differ");
        assert_eq!(check_reply(&a_query(8, "www.shop1.test"), &reply(&q, [0; 4])), None, "another id");
        assert_eq!(check_reply(&a_query(7, "www.shop2.test"), &reply(&q, [0; 4])), None, "another name");
        assert_eq!(check_reply(&q, &q), None, "the query itself is no reply");
        let mut nx = q.clone();
        nx[2] = 0x81;
        nx[3] = 0x83;
        assert_eq!(check_reply(&q, &nx), Some(false), "no answer");
    }

    #[test]
    fn latency_counts_losses_and_takes_percentiles_of_the_answered() {
        let r = DnsLoadResult {
            rtt_ns: vec![1_000_000, 0, 3_000_000, 2_000_000],
            zero: vec![false; 4],
            ..Default::default()
        };
        let all = r.latency(|_| true);
        assert_eq!((all.sent, all.answered, all.lost()), (4, 3, 1));
        assert_eq!((all.p50, all.max), (2.0, 3.0));
        let even = r.latency(|i| i % 2 == 0);
        assert_eq!((even.sent, even.answered, even.p50), (2, 2, 3.0));
    }
}
