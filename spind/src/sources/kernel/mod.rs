//! Live kernel sources for a real router: conntrack counters (dumped and zeroed every second),
//! NFLOG packet copies (DNS and blocked packets) and the neighbour table (rtnetlink).
//!
//! Everything talks netlink through the small raw-socket helper in this module: requests are
//! built by hand and replies are parsed in place from one reused receive buffer, so a conntrack
//! dump costs no allocation per entry beyond the [`FlowSample`](crate::model::event::FlowSample) it
//! produces. Netlink sockets belong to the network namespace of the thread that creates them.
//!
//! Nothing here panics on kernel input: malformed messages are logged and skipped.

pub mod conntrack;
pub mod neigh;
pub mod nflog;
pub mod route;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::model::event::{Event, Input, Timestamp};

pub use conntrack::{Conntrack, DumpStats};
pub use nflog::{Nflog, NflogKind};
pub use route::WanInterfaces;

/// What went wrong talking to the kernel, phrased so that an operator knows what to fix.
#[derive(Debug)]
pub enum KernelError {
    /// A netlink socket could not be opened/bound, or a request was refused, for lack of
    /// privilege.
    Permission { what: &'static str, err: io::Error },
    /// The kernel lacks a feature (netlink family, subsystem).
    Missing { what: &'static str, fix: &'static str, err: io::Error },
    /// An NFLOG group is already bound by another process (another spind, ulogd, ...).
    GroupBusy { group: u16 },
    /// Any other error from a netlink operation.
    Io { what: &'static str, err: io::Error },
}

impl KernelError {
    /// Classifies an OS error from `what` (e.g. "open conntrack netlink").
    pub(crate) fn from_io(what: &'static str, missing_fix: &'static str, err: io::Error) -> KernelError {
        match err.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => KernelError::Permission { what, err },
            Some(libc::EPROTONOSUPPORT) | Some(libc::EAFNOSUPPORT) | Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) => {
                KernelError::Missing { what, fix: missing_fix, err }
            }
            _ => KernelError::Io { what, err },
        }
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::Permission { what, err } => write!(
                f,
                "cannot {what}: {err} — spind needs CAP_NET_ADMIN (run as root or with \
                 AmbientCapabilities=CAP_NET_ADMIN)"
            ),
            KernelError::Missing { what, fix, err } => write!(f, "cannot {what}: {err} — {fix}"),
            KernelError::GroupBusy { group } => write!(
                f,
                "cannot bind NFLOG group {group}: another program (another spind, ulogd?) already \
                 listens on it — stop it or choose other groups (iptable_queue_dns / iptable_queue_block)"
            ),
            KernelError::Io { what, err } => write!(f, "cannot {what}: {err}"),
        }
    }
}

impl std::error::Error for KernelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KernelError::Permission { err, .. } | KernelError::Missing { err, .. } | KernelError::Io { err, .. } => {
                Some(err)
            }
            KernelError::GroupBusy { .. } => None,
        }
    }
}

pub(crate) const FIX_CONNTRACK: &str = "the kernel has no conntrack netlink interface: it needs \
    CONFIG_NF_CONNTRACK and CONFIG_NF_CT_NETLINK (module nf_conntrack_netlink: `modprobe nf_conntrack_netlink`)";
pub(crate) const FIX_NFLOG: &str = "the kernel has no NFLOG netlink interface: it needs \
    CONFIG_NETFILTER_NETLINK_LOG (module nfnetlink_log: `modprobe nfnetlink_log`)";
pub(crate) const FIX_RTNL: &str = "the kernel's rtnetlink (NETLINK_ROUTE) is unavailable";

/// Whether this thread has CAP_NET_ADMIN in its effective set (bit 12 of `CapEff`).
pub(crate) fn has_cap_net_admin() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    let Ok(status) = std::fs::read_to_string("/proc/thread-self/status") else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// Wall-clock Unix seconds.
pub fn now() -> Timestamp {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as Timestamp).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Raw netlink helper
// ---------------------------------------------------------------------------------------------

pub(crate) const NLMSG_HDRLEN: usize = 16;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLMSG_OVERRUN: u16 = 4;
pub(crate) const NLM_F_REQUEST: u16 = 1;
pub(crate) const NLM_F_ACK: u16 = 4;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLA_F_NESTED: u16 = 1 << 15;
pub(crate) const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;

pub(crate) const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A raw netlink socket (blocking, close-on-exec).
pub(crate) struct NlSocket {
    fd: libc::c_int,
    seq: u32,
}

impl Drop for NlSocket {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.fd) };
    }
}

impl NlSocket {
    pub fn open(protocol: libc::c_int) -> io::Result<NlSocket> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = NlSocket { fd, seq: 1 };
        // SAFETY: zeroed sockaddr_nl is valid (pid 0 = kernel assigns one).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: addr is a valid sockaddr_nl of the given size.
        let r = unsafe {
            libc::bind(
                fd,
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sock)
    }

    fn setsockopt_int(&self, level: libc::c_int, name: libc::c_int, val: libc::c_int) -> io::Result<()> {
        // SAFETY: val is a valid c_int for the duration of the call.
        let r = unsafe {
            libc::setsockopt(
                self.fd,
                level,
                name,
                &val as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Sets the receive buffer: `SO_RCVBUFFORCE` (root may exceed `rmem_max`), else `SO_RCVBUF`.
    pub fn set_rcvbuf(&self, bytes: usize) {
        let b = bytes.min(i32::MAX as usize) as libc::c_int;
        if self.setsockopt_int(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, b).is_err() {
            if let Err(e) = self.setsockopt_int(libc::SOL_SOCKET, libc::SO_RCVBUF, b) {
                log::warn!("cannot set netlink receive buffer to {bytes} bytes: {e}");
            }
        }
    }

    pub fn add_membership(&self, group: u32) -> io::Result<()> {
        self.setsockopt_int(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group as libc::c_int)
    }

    /// Makes `recv` return `WouldBlock`/`TimedOut` after `timeout` without data.
    pub fn set_recv_timeout(&self, timeout: Duration) -> io::Result<()> {
        // `as _`: libc's time_t and suseconds_t aliases are deprecated on musl.
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as _,
            tv_usec: timeout.subsec_micros() as _,
        };
        // SAFETY: tv is valid for the call.
        let r = unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends one complete message (header included) to the kernel.
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: zeroed sockaddr_nl = the kernel (pid 0).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: msg and addr are valid for the call.
            let r = unsafe {
                libc::sendto(
                    self.fd,
                    msg.as_ptr() as *const libc::c_void,
                    msg.len(),
                    0,
                    &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receives one datagram into `buf`; returns its length. A datagram larger than `buf` is
    /// reported as an `InvalidData` error (and dropped by the kernel).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: buf is valid for writes of buf.len() bytes.
            let r = unsafe {
                libc::recv(self.fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), libc::MSG_TRUNC)
            };
            if r >= 0 {
                let n = r as usize;
                if n > buf.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("netlink message of {n} bytes truncated to {}", buf.len()),
                    ));
                }
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Sends a request with `NLM_F_ACK` and waits for its acknowledgement (error 0).
    pub fn request_ack(&mut self, msg: &mut [u8], buf: &mut [u8]) -> io::Result<()> {
        let seq = self.next_seq();
        msg[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.send(msg)?;
        loop {
            let n = self.recv(buf)?;
            for m in NlMsgs::new(&buf[..n]) {
                if m.seq != seq {
                    continue;
                }
                if m.kind == NLMSG_ERROR {
                    return match m.error_code() {
                        Some(0) => Ok(()),
                        Some(e) => Err(io::Error::from_raw_os_error(e)),
                        None => Err(io::Error::new(io::ErrorKind::InvalidData, "short netlink error message")),
                    };
                }
            }
        }
    }
}

/// Builds a netlink message in a reusable buffer: header, fixed family header, attributes.
pub(crate) struct MsgBuilder {
    buf: Vec<u8>,
}

impl MsgBuilder {
    pub fn new(kind: u16, flags: u16) -> MsgBuilder {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // seq
        buf.extend_from_slice(&0u32.to_ne_bytes()); // pid
        MsgBuilder { buf }
    }

    /// Appends the nfgenmsg header (family, version 0, res_id big-endian).
    pub fn nfgen(mut self, family: u8, res_id: u16) -> MsgBuilder {
        self.buf.push(family);
        self.buf.push(0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        self
    }

    pub fn raw(mut self, bytes: &[u8]) -> MsgBuilder {
        self.buf.extend_from_slice(bytes);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self
    }

    pub fn attr(mut self, kind: u16, data: &[u8]) -> MsgBuilder {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// One netlink message (header fields and payload after the 16-byte header).
#[derive(Clone, Copy)]
pub(crate) struct NlMsg<'a> {
    pub kind: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

impl<'a> NlMsg<'a> {
    /// For `NLMSG_ERROR`: the (positive) errno, 0 for an acknowledgement.
    pub fn error_code(&self) -> Option<i32> {
        let b = self.payload.get(..4)?;
        Some(-i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Iterates over the messages of one datagram; stops at the first malformed header.
pub(crate) struct NlMsgs<'a> {
    data: &'a [u8],
}

impl<'a> NlMsgs<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        NlMsgs { data }
    }
}

impl<'a> Iterator for NlMsgs<'a> {
    type Item = NlMsg<'a>;
    fn next(&mut self) -> Option<NlMsg<'a>> {
        let d = self.data;
        if d.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]) as usize;
        if len < NLMSG_HDRLEN || len > d.len() {
            if !d.is_empty() {
                log::debug!("malformed netlink message header (length {len} of {} bytes)", d.len());
            }
            self.data = &[];
            return None;
        }
        let msg = NlMsg {
            kind: u16::from_ne_bytes([d[4], d[5]]),
            seq: u32::from_ne_bytes([d[8], d[9], d[10], d[11]]),
            payload: &d[NLMSG_HDRLEN..len],
        };
        self.data = d.get(align4(len)..).unwrap_or(&[]);
        Some(msg)
    }
}

/// Iterates over netlink attributes `(type without flags, data)`; stops at the first malformed one.
#[derive(Clone, Copy)]
pub(crate) struct Attrs<'a> {
    data: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Attrs { data }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<(u16, &'a [u8])> {
        let d = self.data;
        if d.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([d[0], d[1]]) as usize;
        if len < 4 || len > d.len() {
            self.data = &[];
            return None;
        }
        let kind = u16::from_ne_bytes([d[2], d[3]]) & NLA_TYPE_MASK;
        self.data = d.get(align4(len)..).unwrap_or(&[]);
        Some((kind, &d[4..len]))
    }
}

pub(crate) fn be_u16(b: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(..2)?.try_into().ok()?))
}

pub(crate) fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

// ---------------------------------------------------------------------------------------------
// Start-up checks and the source threads
// ---------------------------------------------------------------------------------------------

/// Settings from the configuration: NFLOG groups (`iptable_queue_dns`, `iptable_queue_block`)
/// and the WAN interfaces whose neighbours are not devices (`wan_interfaces`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSettings {
    pub dns_group: u16,
    pub block_group: u16,
    pub wan_interfaces: WanInterfaces,
}

impl Default for KernelSettings {
    fn default() -> Self {
        KernelSettings { dns_group: 1, block_group: 2, wan_interfaces: WanInterfaces::Auto }
    }
}

/// Checks that spind can use the kernel interfaces it needs: conntrack netlink (open and dump),
/// NFLOG (bind a group: the free group 0xfffe is used and released again) and rtnetlink.
pub fn check() -> Result<(), KernelError> {
    let mut ct = Conntrack::open()?;
    let mut flows = Vec::new();
    ct.probe(&mut flows)?;
    nflog::check()?;
    neigh::check()?;
    Ok(())
}

/// Counters of the running sources, for statistics. `AtomicUsize`, not `AtomicU64`: 32-bit MIPS
/// (GL.iNet AR150) has no 64-bit atomics. On such targets a counter wraps after 2^32; readers
/// that want a rate take differences with `wrapping_sub`.
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Conntrack dumps that overran the receive buffer and were restarted.
    pub conntrack_enobufs: AtomicUsize,
    /// Conntrack entries with traffic reported so far.
    pub conntrack_entries: AtomicUsize,
    /// Conntrack dumps done.
    pub conntrack_dumps: AtomicUsize,
    /// Conntrack dumps that failed for another reason.
    pub conntrack_errors: AtomicUsize,
    /// NFLOG receive buffer overruns (packets lost).
    pub nflog_enobufs: AtomicUsize,
    /// NFLOG packets received.
    pub nflog_packets: AtomicUsize,
    /// NFLOG messages that could not be parsed.
    pub nflog_malformed: AtomicUsize,
    /// Neighbour notification overruns (the table is dumped again).
    pub neigh_enobufs: AtomicUsize,
}

/// The running kernel sources. Dropping it asks the threads to stop (they notice within about
/// a second); [`Sources::stop`] also waits for them.
pub struct Sources {
    pub counters: Arc<SourceCounters>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Sources {
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Opens all sockets (errors are reported before any thread starts) and spawns:
/// - the conntrack thread: every wall-clock second dumps and zeroes both families and sends
///   `Event::Flows` (when there was traffic) and `Event::Tick`;
/// - the NFLOG thread for the DNS and block groups;
/// - the neighbour thread (initial dump, then notifications; not from WAN interfaces).
///
/// Conntrack accounting is switched on first (`nf_conntrack_acct`).
pub fn start_sources(settings: &KernelSettings, tx: Sender<Input>) -> Result<Sources, KernelError> {
    match conntrack::enable_accounting() {
        Ok(true) => log::info!("switched on conntrack accounting (net.netfilter.nf_conntrack_acct=1)"),
        Ok(false) => {}
        Err(e) => log::warn!(
            "cannot switch on conntrack accounting (net.netfilter.nf_conntrack_acct): {e}; \
             flows will have no byte counts"
        ),
    }
    let counters = Arc::new(SourceCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let ct = Conntrack::open()?;
    let mut groups = vec![(settings.dns_group, NflogKind::Dns)];
    if settings.block_group != settings.dns_group {
        groups.push((settings.block_group, NflogKind::Blocked));
    }
    let nflog = Nflog::open(&groups)?;
    let neigh = neigh::Neigh::open(&settings.wan_interfaces)?;

    let mut threads = Vec::new();
    {
        let (tx, counters, stop) = (tx.clone(), counters.clone(), stop.clone());
        threads.push(spawn("spind-conntrack", move || conntrack_loop(ct, tx, &counters, &stop))?);
    }
    {
        let (tx, counters, stop) = (tx.clone(), counters.clone(), stop.clone());
        threads.push(spawn("spind-nflog", move || nflog.run_until(tx, &counters, &stop))?);
    }
    {
        let (counters, stop) = (counters.clone(), stop.clone());
        threads.push(spawn("spind-neigh", move || neigh.run_until(tx, &counters, &stop))?);
    }
    Ok(Sources { counters, stop, threads })
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, KernelError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(|err| KernelError::Io { what: "start a thread", err })
}

fn conntrack_loop(mut ct: Conntrack, tx: Sender<Input>, counters: &SourceCounters, stop: &AtomicBool) {
    let mut next = Instant::now() + Duration::from_secs(1);
    let mut flows = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let now_i = Instant::now();
        if now_i < next {
            std::thread::sleep((next - now_i).min(Duration::from_millis(500)));
            continue;
        }
        next += Duration::from_secs(1);
        if next < Instant::now() {
            // We fell behind (suspend, overload): do not try to catch up.
            next = Instant::now() + Duration::from_secs(1);
        }
        let time = now();
        match ct.dump_and_zero(&mut flows) {
            Ok(st) => {
                counters.conntrack_dumps.fetch_add(1, Ordering::Relaxed);
                counters.conntrack_entries.fetch_add(st.entries as usize, Ordering::Relaxed);
                if st.enobufs > 0 {
                    counters.conntrack_enobufs.fetch_add(st.enobufs as usize, Ordering::Relaxed);
                    log::warn!("conntrack dump overran the receive buffer {} time(s); resynced", st.enobufs);
                }
            }
            Err(e) => {
                counters.conntrack_errors.fetch_add(1, Ordering::Relaxed);
                log::warn!("conntrack dump failed: {e}");
            }
        }
        if !flows.is_empty() {
            let cap = flows.capacity();
            let batch = std::mem::replace(&mut flows, Vec::with_capacity(cap));
            if tx.send(Input::Event(Event::Flows { time, flows: batch, local: false })).is_err() {
                return;
            }
        }
        if tx.send(Input::Event(Event::Tick { time })).is_err() {
            return;
        }
    }
}
