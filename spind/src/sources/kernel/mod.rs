//! Live kernel sources for a real router: conntrack counters (dumped and zeroed every second),
//! NFLOG packet copies (DNS and blocked packets, mDNS announcements) and the neighbour table
//! (rtnetlink), whose thread also keeps the router in the mDNS groups of its LAN
//! ([`mdns_groups`]).
//!
//! Everything talks netlink through neli ([`netlink`]: neli's socket, typed requests and
//! replies, the nfnetlink header neli lacks); the other system calls go through nix. Each
//! message kind has a pure parser, `&[u8]` to typed values, collected in [`parsers`] (the path
//! fuzz targets use). Netlink sockets belong to the network namespace of the thread that
//! creates them.
//!
//! Nothing here panics on kernel input: malformed messages are logged and skipped.

pub mod conntrack;
mod mdns_groups;
pub mod neigh;
mod netlink;
pub mod nflog;
pub mod nftables;
pub mod route;

#[cfg(test)]
mod tests;

/// The pure parsers of kernel messages, `&[u8]` (a netlink message's payload) to typed values:
/// what fuzz targets call (`spind::kernel_parsers`). None of them panics on any input.
pub mod parsers {
    pub use super::conntrack::conntrack_entry;
    pub use super::neigh::{neighbour, Neighbour};
    pub use super::nflog::{blocked_sample, nflog_packet};
    pub use super::nftables::generation as nftables_generation;
    pub use super::route::{default_route_oifs, link};
    pub use crate::model::event::{FlowSample, MacAddr};

    #[cfg(test)]
    mod tests {
        use super::*;

        /// What the fuzz targets will do at scale: random bytes, with a plausible length in the
        /// place of the first attribute's so the walkers go deeper than noise would; no parser
        /// panics (the unit tests run with overflow checks).
        #[test]
        fn no_parser_panics_on_random_input() {
            let mut x = 0x2545_f491_4f6c_dd1du64;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            for _ in 0..20_000 {
                let len = (next() % 160) as usize;
                let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                for at in [4, 12, 16] {
                    if len > at + 1 {
                        buf[at] = (next() % 48) as u8;
                        buf[at + 1] = 0;
                    }
                }
                let _ = conntrack_entry(&buf);
                let _ = neighbour(&buf);
                let _ = default_route_oifs(&buf);
                let _ = link(&buf);
                let _ = nflog_packet(&buf);
                let _ = blocked_sample(&buf);
            }
        }
    }
}

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::model::event::{Event, Input, Timestamp};

pub use conntrack::Conntrack;
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

/// This host's own addresses (what SPIN's `spin_list_ips` put on a fresh ignore list).
pub fn host_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    let mut out: Vec<IpAddr> = addrs
        .filter_map(|ifa| {
            let a = ifa.address?;
            match (a.as_sockaddr_in(), a.as_sockaddr_in6()) {
                (Some(v4), _) => Some(IpAddr::V4(v4.ip())),
                (_, Some(v6)) => Some(IpAddr::V6(v6.ip())),
                _ => None,
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
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
/// a second); [`Sources::stop`] also waits for them. The daemon keeps it for its lifetime and
/// lets the process exit end the threads; the counters and `stop` serve the tests (no
/// statistics message carries the counters yet).
#[cfg_attr(not(test), allow(dead_code))]
pub struct Sources {
    pub counters: Arc<SourceCounters>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Sources {
    #[cfg(test)]
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
