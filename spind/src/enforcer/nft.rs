//! Kernel enforcement in nftables (design decision 5).
//!
//! spind owns exactly one table, `table inet spin`, and never touches anything else. Every change
//! regenerates the whole table from the [`Policy`] and applies it as **one** `nft -f -` batch:
//!
//! ```text
//! table inet spin {}          # create it if missing, so the delete cannot fail
//! delete table inet spin
//! table inet spin { ... }     # the full new definition
//! ```
//!
//! `nft -f` sends the file as a single netlink batch, which the kernel commits atomically: packets
//! see either the old table or the new one, never a window without rules, and a batch that fails
//! anywhere leaves the old table untouched. (`flush table` + redefine would also be atomic, but
//! cannot change a base chain's hook or priority and leaves stale sets and chains behind.)
//!
//! When only set elements differ from the table in force (a list entry, an address a blocked
//! name resolved to, a pause), the batch instead flushes and refills just those sets
//! ([`set_update`]), also one transaction: the table and its hooks stay, because unregistering
//! a hook makes the kernel drop every packet waiting in an NFQUEUE (DNS queries waiting for
//! spind's verdict). If that batch fails (the table was removed or altered), the whole table is
//! replaced as above.
//!
//! Layout of the table (see [`script`]):
//! - sets `block4`/`block6` and `allow4`/`allow6` (`flags interval`, so prefixes work), holding
//!   the block and allow lists, normalised (duplicates and entries inside a wider entry dropped);
//! - sets `pairs4`/`pairs6` (`ipv4_addr . ipv4_addr`) holding every (source, destination)
//!   combination of a node-pair block, both directions. One concatenated set costs one hash lookup
//!   per packet however many pairs are blocked; SPIN 1.0's per-node ipsets needed two rules per
//!   pair, evaluated one after another;
//! - base chains `forward`, `input`, `output` at priority `filter - 10` (before the distribution's
//!   firewall, policy accept) that first copy DNS (UDP and TCP port 53, either direction) to the
//!   NFLOG group `dns_group` with `queue-threshold 1` (immediate delivery; a copy, never a
//!   verdict), `input` also mDNS announcements from the LAN (UDP 5353 to 224.0.0.251 /
//!   ff02::fb, not from a WAN interface, rate limited), then jump to `check`;
//! - `check`: packets from or to a blocked address, or between a blocked pair, go to
//!   `block_verdict`;
//! - `block_verdict` (the only place that drops): addresses on the allow list are accepted (allow
//!   wins, even when the peer is blocked), everything else is logged to NFLOG group `block_group`
//!   (rate limited) and dropped.
//!
//! Every logging/dropping rule has a `counter` and a `comment`, so [`Nft::rule_counters`] shows
//! what matched. There is no `ct state established accept` anywhere: a new block also cuts
//! connections that are already open.
//!
//! The table is deliberately left in place when spind stops (blocks hold while it restarts; it is
//! rebuilt from the persisted lists at start); [`remove_table`] (`spind --remove-firewall`)
//! removes it.
//!
//! `nft` runs as a child process with arguments and stdin only, never through a shell, and the
//! script is built only from parsed [`IpAddr`]/[`IpNet`] values and numbers.

use std::collections::BTreeSet;
use std::fmt;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::model::addr::{valid_ifname, IpNet};
use crate::model::policy::{Bedtime, Enforcer, Guard, NameBlock, Pause, Policy, ScheduledNames, WeekSpan};

/// The table spind owns: `table inet spin`.
pub const TABLE_FAMILY: &str = "inet";
pub const TABLE_NAME: &str = "spin";
/// Hook priority of the base chains: before the distribution's firewall (`filter` = 0).
pub const PRIORITY: &str = "filter - 10";
/// Blocked packets copied to NFLOG at most this often (drops are not limited). A device retrying
/// a blocked service must not flood spind; the `block-log` counter still counts every packet.
pub const BLOCK_LOG_LIMIT: &str = "limit rate 200/second burst 400 packets";
/// mDNS announcements copied to NFLOG at most this often (devices repeat them).
pub const MDNS_LOG_LIMIT: &str = "limit rate 50/second burst 100 packets";
/// NFLOG prefixes, so both kinds stay distinguishable when the two groups are the same.
pub const DNS_LOG_PREFIX: &str = "spin-dns";
pub const BLOCK_LOG_PREFIX: &str = "spin-block";

#[derive(Debug)]
pub enum NftError {
    /// The `nft` program could not be found.
    NotInstalled { program: PathBuf },
    /// The kernel refused: no CAP_NET_ADMIN.
    NoPermission { stderr: String },
    /// The kernel has no nf_tables (or lacks a feature the table uses).
    NoKernelSupport { stderr: String },
    /// The network namespace to run `nft` in could not be opened.
    Netns { path: PathBuf, error: std::io::Error },
    /// Running `nft` failed for another reason.
    Io { what: String, error: std::io::Error },
    /// `nft` ran and failed; its stderr is included.
    Failed { what: String, status: String, stderr: String },
}

impl fmt::Display for NftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NftError::NotInstalled { program } => write!(
                f,
                "the nft program ({}) was not found: install nftables \
                 (apt-get install nftables / opkg install nftables)",
                program.display()
            ),
            NftError::NoPermission { stderr } => write!(
                f,
                "not allowed to change nftables (needs CAP_NET_ADMIN): run spind as root or grant \
                 it CAP_NET_ADMIN (systemd: AmbientCapabilities=CAP_NET_ADMIN); nft said: {}",
                stderr.trim()
            ),
            NftError::NoKernelSupport { stderr } => write!(
                f,
                "the kernel does not support nftables (nf_tables with sets, concatenations and \
                 NFLOG): enable CONFIG_NF_TABLES, CONFIG_NF_TABLES_INET, CONFIG_NFT_LOG, \
                 CONFIG_NFT_LIMIT, CONFIG_NFT_REJECT, CONFIG_NETFILTER_NETLINK_LOG or load \
                 nf_tables/nft_log/nft_reject_inet/nfnetlink_log; \
                 nft said: {}",
                stderr.trim()
            ),
            NftError::Netns { path, error } => {
                write!(f, "cannot open network namespace {}: {error}", path.display())
            }
            NftError::Io { what, error } => write!(f, "{what}: {error}"),
            NftError::Failed { what, status, stderr } => {
                write!(f, "{what} failed ({status}): {}", stderr.trim())
            }
        }
    }
}

impl std::error::Error for NftError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NftError::Netns { error, .. } | NftError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Sort a failed `nft` run into the errors a user can act on.
pub fn classify(what: &str, status: String, stderr: String) -> NftError {
    if stderr.contains("Operation not permitted") || stderr.contains("Permission denied") {
        NftError::NoPermission { stderr }
    } else if stderr.contains("Protocol not supported")
        || stderr.contains("Operation not supported")
        || stderr.contains("Address family not supported")
    {
        NftError::NoKernelSupport { stderr }
    } else {
        NftError::Failed { what: what.to_string(), status, stderr }
    }
}

/// How to run `nft`: which program, in which network namespace.
#[derive(Clone, Debug)]
pub struct Nft {
    program: PathBuf,
    netns: Option<PathBuf>,
}

impl Default for Nft {
    fn default() -> Self {
        Nft::host()
    }
}

impl Nft {
    /// `nft` from `PATH`, in spind's own network namespace.
    pub fn host() -> Nft {
        Nft { program: PathBuf::from("nft"), netns: None }
    }

    /// `nft` run inside a network namespace: a name under `/run/netns` (as `ip netns` makes) or
    /// a path such as `/proc/PID/ns/net`. The child enters it with `setns` before `exec`.
    pub fn in_netns(name_or_path: &str) -> Nft {
        let path = if name_or_path.contains('/') {
            PathBuf::from(name_or_path)
        } else {
            Path::new("/run/netns").join(name_or_path)
        };
        Nft { program: PathBuf::from("nft"), netns: Some(path) }
    }

    /// Use another `nft` binary (a path, or a name looked up in `PATH`).
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Nft {
        self.program = program.into();
        self
    }

    /// Runs `f` in this `Nft`'s network namespace. A child process or a socket belongs to the
    /// namespace of the thread that creates it: enter the namespace on a short-lived thread and
    /// run `f` there (for a child: no code between fork and exec). The outer error is the
    /// namespace's; the inner one is `f`'s.
    fn in_netns_thread<T: Send>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send,
    ) -> Result<std::io::Result<T>, NftError> {
        let Some(path) = &self.netns else { return Ok(f()) };
        let file = std::fs::File::open(path).map_err(|error| NftError::Netns { path: path.clone(), error })?;
        Ok(std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)
                    .and_then(|()| f())
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the thread in the network namespace panicked")))
        }))
    }

    /// The kernel's ruleset generation: it changes with every committed ruleset change.
    pub fn generation(&self) -> Result<u32, NftError> {
        self.in_netns_thread(crate::sources::kernel::nftables::ruleset_generation)?
            .map_err(|error| NftError::Io { what: "reading the nftables generation".into(), error })
    }

    /// `nft -s list table inet spin`: the table without counters, to compare with what was
    /// applied. `None` when the table does not exist.
    pub fn stateless_table(&self) -> Result<Option<String>, NftError> {
        match self.run("nft -s list table", &["-s", "list", "table", TABLE_FAMILY, TABLE_NAME], None) {
            Ok(text) => Ok(Some(text)),
            // One process, not a `list tables` first: nft runs with LC_ALL=C, so its message for
            // a missing table is known.
            Err(NftError::Failed { stderr, .. }) if stderr.contains("No such file or directory") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Run `nft ARGS`, with `stdin` fed to it; stdout on success.
    fn run(&self, what: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // A fixed locale: errors are classified by nft's messages, which a translation would change.
        cmd.env("LC_ALL", "C");
        // `meta hour` values are UTC in the kernel, and nft converts the ones it reads and
        // prints with its own time zone: spind writes UTC (see `time_matches`), so nft must not
        // convert.
        cmd.env("TZ", "UTC");
        let spawned = self.in_netns_thread(|| cmd.spawn())?;
        let mut child = spawned.map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                NftError::NotInstalled { program: self.program.clone() }
            } else {
                NftError::Io { what: format!("cannot run {}", self.program.display()), error }
            }
        })?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("piped stdin");
            // nft reads the whole script before it writes anything, so this cannot deadlock. A
            // write error (nft exited early) shows up as nft's exit status and stderr below.
            let _ = pipe.write_all(input.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|error| NftError::Io { what: format!("waiting for {}", self.program.display()), error })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            Err(classify(what, out.status.to_string(), stderr))
        }
    }

    /// `nft --version`: is the program there at all.
    pub fn version(&self) -> Result<String, NftError> {
        self.run("nft --version", &["--version"], None).map(|s| s.trim().to_string())
    }

    /// Start-up check: `nft` exists, we may change rules, and the kernel accepts a full table
    /// (with an element in every set) in check mode (`nft -c`: the kernel validates the batch and
    /// then aborts it, so nothing changes).
    pub fn check(&self, dns_group: u16, block_group: u16) -> Result<(), NftError> {
        self.version()?;
        let probe = script(&probe_policy(), dns_group, block_group);
        self.run("nft -c (start-up check)", &["-c", "-f", "-"], Some(&probe)).map(|_| ())
    }

    /// Apply a script (one atomic batch).
    pub fn apply_script(&self, script: &str) -> Result<(), NftError> {
        self.run("nft -f (apply table inet spin)", &["-f", "-"], Some(script)).map(|_| ())
    }

    /// Whether `table inet spin` exists.
    pub fn table_exists(&self) -> Result<bool, NftError> {
        let out = self.run("nft list tables", &["list", "tables", TABLE_FAMILY], None)?;
        let want = format!("table {TABLE_FAMILY} {TABLE_NAME}");
        Ok(out.lines().any(|l| l.trim() == want))
    }

    /// `nft -j list table inet spin`: the table as nftables JSON.
    pub fn list_table(&self) -> Result<String, NftError> {
        self.run("nft -j list table", &["-j", "list", "table", TABLE_FAMILY, TABLE_NAME], None)
    }

    /// `nft list table inet spin`: the table as text, with counters.
    pub fn list_table_text(&self) -> Result<String, NftError> {
        self.run("nft list table", &["list", "table", TABLE_FAMILY, TABLE_NAME], None)
    }

    /// Remove `table inet spin` (atomically: create-if-missing + delete); whether it existed.
    pub fn remove_table(&self) -> Result<bool, NftError> {
        let existed = self.table_exists()?;
        let s = format!("table {TABLE_FAMILY} {TABLE_NAME} {{}}\ndelete table {TABLE_FAMILY} {TABLE_NAME}\n");
        self.run("nft -f (remove table inet spin)", &["-f", "-"], Some(&s))?;
        Ok(existed)
    }

    /// Packet counters of the table's commented rules, keyed `chain/comment` (for example
    /// `forward/dns-dport`, `block_verdict/block-drop`). Empty if the table does not exist.
    pub fn rule_counters(&self) -> Result<Vec<(String, u64)>, NftError> {
        if !self.table_exists()? {
            return Ok(Vec::new());
        }
        let json = self.list_table()?;
        Ok(parse_rule_counters(&json))
    }
}

/// Parse `nft -j list table` output into `chain/comment` → packets.
pub fn parse_rule_counters(json: &str) -> Vec<(String, u64)> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else { return Vec::new() };
    let mut out = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let rule = &item["rule"];
        let (Some(chain), Some(comment)) = (rule["chain"].as_str(), rule["comment"].as_str()) else {
            continue;
        };
        let packets = rule["expr"].as_array().into_iter().flatten().find_map(|e| e["counter"]["packets"].as_u64());
        if let Some(p) = packets {
            out.push((format!("{chain}/{comment}"), p));
        }
    }
    out
}

/// A policy with one entry of every kind, so the start-up check exercises every set type.
fn probe_policy() -> Policy {
    let ip = |s: &str| s.parse::<IpAddr>().expect("literal");
    let net = |s: &str| s.parse::<IpNet>().expect("literal");
    Policy {
        block: vec![net("192.0.2.1"), net("2001:db8::/64")],
        allow: vec![net("198.51.100.0/24"), net("2001:db8:1::1")],
        pairs: vec![crate::model::policy::PairBlock {
            node1: Default::default(),
            node2: Default::default(),
            ips1: vec![ip("192.0.2.2"), ip("2001:db8:2::1")],
            ips2: vec![ip("203.0.113.1"), ip("2001:db8:3::1")],
        }],
        name_blocks: vec![
            NameBlock { device: None, ip: ip("192.0.2.3"), expires: i64::MAX },
            NameBlock { device: Some([2, 0, 0, 0, 0, 1]), ip: ip("2001:db8:4::1"), expires: i64::MAX },
        ],
        paused: vec![Pause { device: [2, 0, 0, 0, 0, 2], until: i64::MAX }],
        scheduled_names: vec![ScheduledNames {
            spans: vec![WeekSpan { start: 1380, len: 120 }],
            blocks: vec![NameBlock { device: Some([2, 0, 0, 0, 0, 3]), ip: ip("192.0.2.4"), expires: i64::MAX }],
        }],
        bedtimes: vec![Bedtime { device: [2, 0, 0, 0, 0, 4], spans: vec![WeekSpan { start: 0, len: 60 }] }],
        ..Default::default()
    }
}

/// [`probe_policy`] with the DNS redirect and the DoT refusal (which need nft_nat, nft_redir,
/// nft_fib and nft_reject).
fn probe_guard_policy() -> Policy {
    Policy { guard: Guard { redirect_dns: true, refuse_dot: true, wan: Some(vec!["probe0".into()]) }, ..probe_policy() }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as IPv4: the kernel sees such traffic as IPv4.
fn canonical_net(n: IpNet) -> IpNet {
    match n.addr() {
        IpAddr::V6(a) if n.prefix_len() >= 96 => match a.to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), n.prefix_len() - 96).unwrap_or(n),
            None => n,
        },
        _ => n,
    }
}

/// The entries of one family, sorted, without duplicates and without entries that lie inside
/// another entry (an interval set rejects overlapping elements).
fn normalise(nets: &[IpNet], v4: bool) -> Vec<IpNet> {
    let mut all: Vec<IpNet> = nets.iter().map(|n| canonical_net(*n)).filter(|n| n.addr().is_ipv4() == v4).collect();
    all.sort();
    all.dedup();
    let mut kept: Vec<IpNet> = Vec::with_capacity(all.len());
    for n in all {
        // Sorted by address then length, and prefixes either nest or are disjoint: if `n` lies
        // inside a kept entry, it lies inside the last one.
        if let Some(last) = kept.last() {
            if last.contains(&n.addr()) && n.prefix_len() >= last.prefix_len() {
                continue;
            }
        }
        kept.push(n);
    }
    kept
}

/// Every (source, destination) of the pair blocks, both directions, one family.
fn pair_elements(policy: &Policy, v4: bool) -> BTreeSet<(IpAddr, IpAddr)> {
    let mut out = BTreeSet::new();
    for p in &policy.pairs {
        for a in p.ips1.iter().map(IpAddr::to_canonical).filter(|a| a.is_ipv4() == v4) {
            for b in p.ips2.iter().map(IpAddr::to_canonical).filter(|b| b.is_ipv4() == v4) {
                out.insert((a, b));
                out.insert((b, a));
            }
        }
    }
    out
}

fn write_set(s: &mut String, name: &str, decl: &str, elements: &[String]) {
    let _ = writeln!(s, "\tset {name} {{");
    let _ = writeln!(s, "\t\t{decl}");
    if !elements.is_empty() {
        let _ = writeln!(s, "\t\telements = {{");
        for (i, e) in elements.iter().enumerate() {
            let sep = if i + 1 < elements.len() { "," } else { "" };
            let _ = writeln!(s, "\t\t\t{e}{sep}");
        }
        let _ = writeln!(s, "\t\t}}");
    }
    let _ = writeln!(s, "\t}}");
}

/// A script as its skeleton (every line but set elements) and each set's elements, in order.
fn split_sets(script: &str) -> (String, Vec<(&str, Vec<&str>)>) {
    let (mut skeleton, mut sets) = (String::new(), Vec::new());
    let mut lines = script.lines();
    while let Some(line) = lines.next() {
        if let Some(name) = line.strip_prefix("\tset ").and_then(|l| l.strip_suffix(" {")) {
            sets.push((name, Vec::new()));
        }
        if let (true, Some((_, elements))) = (line == "\t\telements = {", sets.last_mut()) {
            for e in lines.by_ref().take_while(|l| *l != "\t\t}") {
                elements.push(e.trim().trim_end_matches(','));
            }
            continue;
        }
        skeleton.push_str(line);
        skeleton.push('\n');
    }
    (skeleton, sets)
}

/// The batch that turns table `old` into `new` by flushing and refilling the sets whose
/// elements differ (one transaction, like the whole table), when nothing but set elements
/// differs; None when chains, rules or set declarations changed.
fn set_update(old: &str, new: &str) -> Option<String> {
    let ((old_skeleton, old_sets), (new_skeleton, new_sets)) = (split_sets(old), split_sets(new));
    if old_skeleton != new_skeleton {
        return None;
    }
    let (t, n) = (TABLE_FAMILY, TABLE_NAME);
    let mut s = String::new();
    for ((name, old_elements), (_, new_elements)) in old_sets.iter().zip(&new_sets) {
        if old_elements == new_elements {
            continue;
        }
        let _ = writeln!(s, "flush set {t} {n} {name}");
        if !new_elements.is_empty() {
            let _ = writeln!(s, "add element {t} {n} {name} {{ {} }}", new_elements.join(", "));
        }
    }
    Some(s)
}

/// The complete `nft -f` script for `policy`: one transaction that replaces `table inet spin`.
/// Deterministic: equal policies (in any order) give byte-equal scripts.
pub fn script(policy: &Policy, dns_group: u16, block_group: u16) -> String {
    script_at(policy, dns_group, block_group, None, wall_clock())
}

fn wall_clock() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The elements of a name-block set: one family, for every device (`per_device` false) or per
/// device, each with the seconds left until it expires at `now` (expired ones left out).
fn name_block_elements(blocks: &[NameBlock], v4: bool, per_device: bool, now: i64) -> Vec<String> {
    let mut out: Vec<(String, i64)> = Vec::new();
    for b in blocks {
        let ip = b.ip.to_canonical();
        if ip.is_ipv4() != v4 || b.device.is_some() != per_device || b.expires <= now {
            continue;
        }
        let key = match b.device {
            None => ip.to_string(),
            Some(m) => {
                format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} . {ip}", m[0], m[1], m[2], m[3], m[4], m[5])
            }
        };
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(e) => e.1 = e.1.max(b.expires),
            None => out.push((key, b.expires)),
        }
    }
    out.sort();
    out.into_iter().map(|(k, exp)| format!("{k} timeout {}s", (exp - now).clamp(1, 7 * 86_400))).collect()
}

/// The four sets of name-block addresses (`{prefix}names4/6` for every device,
/// `{prefix}dev_names4/6` per device), each element with its time left at `now`.
fn write_name_block_sets(s: &mut String, prefix: &str, blocks: &[NameBlock], now: i64) {
    for (name, ty, v4, per_device) in [
        ("names4", "ipv4_addr", true, false),
        ("names6", "ipv6_addr", false, false),
        ("dev_names4", "ether_addr . ipv4_addr", true, true),
        ("dev_names6", "ether_addr . ipv6_addr", false, true),
    ] {
        let elems = name_block_elements(blocks, v4, per_device, now);
        write_set(s, &format!("{prefix}{name}"), &format!("type {ty}; flags timeout;"), &elems);
    }
}

/// The elements of the `paused` set: each device with the seconds left (ended ones left out).
fn paused_elements(paused: &[Pause], now: i64) -> Vec<String> {
    let mut out: Vec<String> = paused
        .iter()
        .filter(|p| p.until > now)
        .map(|p| {
            let m = p.device;
            format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} timeout {}s",
                m[0],
                m[1],
                m[2],
                m[3],
                m[4],
                m[5],
                (p.until - now).clamp(1, 400 * 86_400)
            )
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// nft's names of the kernel's weekdays (`meta day`: 0 = Sunday).
const NFT_DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// The kernel's time zone, `sys_tz` (minutes west of UTC), as `settimeofday` last set it: 0
/// unless something set it (systemd does only for an RTC in local time). Read with the raw
/// system call: the C library's `gettimeofday` may no longer report it.
pub fn kernel_minutes_west() -> i32 {
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    // `struct timezone` is two ints (minutes west, DST type); libc leaves it opaque.
    let mut tz: [libc::c_int; 2] = [0; 2];
    // SAFETY: both pointers point to live, writable memory of the size the call fills in.
    let rc = unsafe { libc::syscall(libc::SYS_gettimeofday, &mut tv as *mut libc::timeval, tz.as_mut_ptr()) };
    if rc == 0 {
        tz[0]
    } else {
        0
    }
}

/// The nftables matches (`meta day D meta hour "A"-"B"`) that hold exactly inside `spans`.
///
/// How the kernel sees time (checked with nft 1.0.6 and counters in a namespace): `meta hour`
/// compares the seconds since midnight **UTC** (nft converts the `"HH:MM"` it reads from local
/// time with its own `TZ`, so `TZ=Asia/Kolkata nft` stores "10:00" as 04:30 and lists it back as
/// "10:00"; spind runs nft with `TZ=UTC` and writes UTC itself); `meta day` is taken as written
/// and compared with the weekday the kernel computes from UTC minus `sys_tz` (`tz_west`, 0 on
/// most systems). So a span, in UTC, is cut at every UTC midnight (an hour range cannot cross
/// it) and at every kernel midnight (where the kernel's day changes), and each piece is one
/// match with its kernel weekday. A window crossing midnight is thus two rules (day D from its
/// start to 24:00, day D+1 from 00:00 to its end) when local time is UTC, and wherever the
/// pieces fall otherwise.
fn time_matches(spans: &[WeekSpan], tz_west: i32) -> Vec<String> {
    const WEEK: i32 = 7 * 1440;
    let tz_west = tz_west.clamp(-1440, 1440);
    let mut pieces: Vec<(usize, i32, i32)> = Vec::new();
    for span in spans {
        let (mut cur, end) = (i32::from(span.start), i32::from(span.start) + i32::from(span.len).clamp(0, 1440));
        while cur < end {
            let utc_midnight = (cur.div_euclid(1440) + 1) * 1440;
            let kernel_midnight = ((cur - tz_west).div_euclid(1440) + 1) * 1440 + tz_west;
            let piece_end = end.min(utc_midnight).min(kernel_midnight);
            // Week minute 0 is Monday 00:00 UTC: Monday-based index, to the kernel's Sunday-based.
            let monday_based = (cur - tz_west).div_euclid(1440).rem_euclid(7) as usize;
            let from = cur.rem_euclid(WEEK) % 1440;
            pieces.push(((monday_based + 1) % 7, from, from + (piece_end - cur)));
            cur = piece_end;
        }
    }
    pieces.sort_unstable();
    pieces.dedup();
    let hms = |secs: i32| format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    pieces
        .into_iter()
        .map(|(day, from, to)| {
            // nft's hour range includes both ends: the last second of the piece.
            format!("meta day \"{}\" meta hour \"{}\"-\"{}\"", NFT_DAYS[day], hms(from * 60), hms(to * 60 - 1))
        })
        .collect()
}

/// A MAC as nft writes it.
fn nft_mac(m: [u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

/// The bedtimes grouped by their spans (one set per distinct schedule), sorted.
fn bedtime_groups(bedtimes: &[Bedtime]) -> Vec<(Vec<WeekSpan>, Vec<String>)> {
    let mut groups: Vec<(Vec<WeekSpan>, Vec<String>)> = Vec::new();
    for b in bedtimes.iter().filter(|b| !b.spans.is_empty()) {
        let mut spans = b.spans.clone();
        spans.sort_unstable();
        match groups.iter_mut().find(|(s, _)| *s == spans) {
            Some((_, macs)) => macs.push(nft_mac(b.device)),
            None => groups.push((spans, vec![nft_mac(b.device)])),
        }
    }
    for (_, macs) in &mut groups {
        macs.sort();
        macs.dedup();
    }
    groups.sort();
    groups
}

/// An interface name that can go into the script between quotes.
fn nft_ifname(n: &str) -> bool {
    valid_ifname(n) && n.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// Whether the DNS redirect is written: switched on, and the WAN interfaces known (never
/// before: a redirect must not catch queries from the internet).
fn dns_redirected(g: &Guard) -> bool {
    g.redirect_dns && g.wan.as_ref().is_some_and(|w| w.iter().any(|n| nft_ifname(n)))
}

/// Whether DoT is refused: switched on and the WAN known (`none`: everything forwarded).
fn dot_refused(g: &Guard) -> bool {
    g.refuse_dot && g.wan.is_some()
}

/// [`script`] at a given unix time `now` (name blocks carry the time left), queueing DNS
/// queries to the router to NFQUEUE `dns_queue` if given (`bypass`: accepted while nobody
/// listens).
pub fn script_at(policy: &Policy, dns_group: u16, block_group: u16, dns_queue: Option<u16>, now: i64) -> String {
    script_in_zone(policy, dns_group, block_group, dns_queue, now, 0)
}

/// [`script_at`] for a kernel whose `sys_tz` is `tz_west` minutes west of UTC
/// ([`kernel_minutes_west`]), which moves where `meta day` changes.
pub fn script_in_zone(
    policy: &Policy,
    dns_group: u16,
    block_group: u16,
    dns_queue: Option<u16>,
    now: i64,
    tz_west: i32,
) -> String {
    let (t, n) = (TABLE_FAMILY, TABLE_NAME);
    let mut s = String::new();
    let _ = writeln!(s, "# generated by spind: the whole table, replaced in one transaction");
    let _ = writeln!(s, "table {t} {n} {{}}");
    let _ = writeln!(s, "delete table {t} {n}");
    let _ = writeln!(s, "table {t} {n} {{");

    let interval = |ty: &str| format!("type {ty}; flags interval; auto-merge;");
    let nets = |list: &[IpNet], v4| -> Vec<String> { normalise(list, v4).iter().map(|n| n.to_string()).collect() };
    write_set(&mut s, "block4", &interval("ipv4_addr"), &nets(&policy.block, true));
    write_set(&mut s, "block6", &interval("ipv6_addr"), &nets(&policy.block, false));
    write_set(&mut s, "allow4", &interval("ipv4_addr"), &nets(&policy.allow, true));
    write_set(&mut s, "allow6", &interval("ipv6_addr"), &nets(&policy.allow, false));
    for (name, ty, v4) in [("pairs4", "ipv4_addr", true), ("pairs6", "ipv6_addr", false)] {
        let elems: Vec<String> = pair_elements(policy, v4).iter().map(|(a, b)| format!("{a} . {b}")).collect();
        write_set(&mut s, name, &format!("type {ty} . {ty};"), &elems);
    }
    write_name_block_sets(&mut s, "", &policy.name_blocks, now);
    // Scheduled name rules: their addresses are kept all the time (a cached address is cut
    // when a window opens), matched only inside the windows (chain `names`).
    let scheduled: Vec<(usize, &ScheduledNames)> =
        policy.scheduled_names.iter().filter(|g| !g.spans.is_empty()).enumerate().collect();
    for (i, g) in &scheduled {
        write_name_block_sets(&mut s, &format!("sched{i}_"), &g.blocks, now);
    }
    // Scheduled allow rules: the blocks they except, let through (`return`) inside the windows.
    let excepted: Vec<(usize, &ScheduledNames)> =
        policy.scheduled_allows.iter().filter(|g| !g.spans.is_empty()).enumerate().collect();
    for (i, g) in &excepted {
        write_name_block_sets(&mut s, &format!("asched{i}_"), &g.blocks, now);
    }
    let bedtimes = bedtime_groups(&policy.bedtimes);
    for (i, (_, macs)) in bedtimes.iter().enumerate() {
        write_set(&mut s, &format!("bedtime{i}"), "type ether_addr;", macs);
    }
    write_set(&mut s, "paused", "type ether_addr; flags timeout;", &paused_elements(&policy.paused, now));
    let wan = policy.guard.wan.as_deref();
    let wan_names: Vec<String> =
        wan.unwrap_or_default().iter().filter(|n| nft_ifname(n)).map(|n| format!("\"{n}\"")).collect();
    write_set(&mut s, "wan", "type ifname;", &wan_names);
    s.push('\n');
    // "To the internet": out of a WAN interface; with no WAN interface (`wan_interfaces = none`,
    // or not known yet) every forwarded packet.
    let to_internet = if wan_names.is_empty() { "" } else { "oifname @wan " };

    // Addresses of blocked names, for every device or for one (by its MAC): only forwarded
    // traffic (a device reaching out), so the router's own services stay reachable.
    let _ = writeln!(s, "\tchain names {{");
    for (i, g) in &excepted {
        for m in time_matches(&g.spans, tz_west) {
            let _ = writeln!(s, "\t\t{m} ip daddr @asched{i}_names4 return");
            let _ = writeln!(s, "\t\t{m} ip6 daddr @asched{i}_names6 return");
            let _ = writeln!(s, "\t\t{m} ether saddr . ip daddr @asched{i}_dev_names4 return");
            let _ = writeln!(s, "\t\t{m} ether saddr . ip6 daddr @asched{i}_dev_names6 return");
        }
    }
    let _ = writeln!(s, "\t\tip daddr @names4 goto block_verdict");
    let _ = writeln!(s, "\t\tip6 daddr @names6 goto block_verdict");
    let _ = writeln!(s, "\t\tether saddr . ip daddr @dev_names4 goto block_verdict");
    let _ = writeln!(s, "\t\tether saddr . ip6 daddr @dev_names6 goto block_verdict");
    for (i, g) in &scheduled {
        for m in time_matches(&g.spans, tz_west) {
            let _ = writeln!(s, "\t\t{m} jump sched{i}");
        }
    }
    let _ = writeln!(s, "\t}}\n");
    for (i, _) in &scheduled {
        let _ = writeln!(s, "\tchain sched{i} {{");
        let _ = writeln!(s, "\t\tip daddr @sched{i}_names4 goto block_verdict");
        let _ = writeln!(s, "\t\tip6 daddr @sched{i}_names6 goto block_verdict");
        let _ = writeln!(s, "\t\tether saddr . ip daddr @sched{i}_dev_names4 goto block_verdict");
        let _ = writeln!(s, "\t\tether saddr . ip6 daddr @sched{i}_dev_names6 goto block_verdict");
        let _ = writeln!(s, "\t}}\n");
    }

    // The only place that drops. Allow wins: an allowed address on either side is accepted
    // (for this table; the distribution's firewall still sees the packet afterwards).
    let _ = writeln!(s, "\tchain block_verdict {{");
    for (fam, set) in [("ip", "allow4"), ("ip6", "allow6")] {
        let _ = writeln!(s, "\t\t{fam} saddr @{set} accept");
        let _ = writeln!(s, "\t\t{fam} daddr @{set} accept");
    }
    let _ = writeln!(
        s,
        "\t\tcounter {BLOCK_LOG_LIMIT} log prefix \"{BLOCK_LOG_PREFIX}\" group {block_group} \
         queue-threshold 1 comment \"block-log\""
    );
    let _ = writeln!(s, "\t\tcounter drop comment \"block-drop\"");
    let _ = writeln!(s, "\t}}\n");

    let _ = writeln!(s, "\tchain check {{");
    // A conntrack match in an inet table makes the kernel track both families in this network
    // namespace; without one (e.g. IPv6 routed without NAT) there would be no flows to report.
    let _ = writeln!(s, "\t\tct state new counter comment \"track\"");
    for (fam, set) in [("ip", "block4"), ("ip6", "block6")] {
        let _ = writeln!(s, "\t\t{fam} saddr @{set} goto block_verdict");
        let _ = writeln!(s, "\t\t{fam} daddr @{set} goto block_verdict");
    }
    let _ = writeln!(s, "\t\tip saddr . ip daddr @pairs4 goto block_verdict");
    let _ = writeln!(s, "\t\tip6 saddr . ip6 daddr @pairs6 goto block_verdict");
    let _ = writeln!(s, "\t}}");

    // Base chains: DNS copies first (before anything that accepts or drops; no ct state
    // shortcut), then the block check. Which copies each hook takes is SPIN's choice: forward
    // sees clients talking to outside resolvers both ways; input the queries to a resolver on
    // the router and output its answers, so each lookup is seen once and the router's own
    // upstream queries are not mistaken for a client's. A packet with both ports 53 is logged once.
    for hook in ["forward", "input", "output"] {
        let log = format!("log prefix \"{DNS_LOG_PREFIX}\" group {dns_group} queue-threshold 1");
        let _ = writeln!(s, "\n\tchain {hook} {{");
        let _ = writeln!(s, "\t\ttype filter hook {hook} priority {PRIORITY}; policy accept;");
        if hook != "input" {
            let _ = writeln!(s, "\t\tmeta l4proto {{ tcp, udp }} th sport 53 counter {log} comment \"dns-sport\"");
        }
        if hook != "output" {
            let _ = writeln!(
                s,
                "\t\tmeta l4proto {{ tcp, udp }} th dport 53 th sport != 53 counter {log} \
                 comment \"dns-dport\""
            );
        }
        if hook == "input" {
            // mDNS announcements of LAN devices (their names and services, issue 14): only
            // multicast 5353 -> 5353 arriving from the LAN side, rate limited (a chatty LAN
            // repeats itself; a lost copy is announced again).
            for (fam, group_addr) in [("ip", "224.0.0.251"), ("ip6", "ff02::fb")] {
                let _ = writeln!(
                    s,
                    "\t\t{fam} daddr {group_addr} udp sport 5353 udp dport 5353 iifname != @wan \
                     {MDNS_LOG_LIMIT} counter {log} comment \"mdns\""
                );
            }
        }
        if hook == "forward" {
            // A paused device reaches nothing outside (the LAN stays: bridged, not forwarded).
            // Rejected, not dropped, so apps give up at once.
            let _ = writeln!(
                s,
                "\t\tether saddr @paused {to_internet}counter reject with icmpx admin-prohibited comment \"paused\""
            );
            // A bedtime is a pause inside the schedule's windows.
            for (i, (spans, _)) in bedtimes.iter().enumerate() {
                for m in time_matches(spans, tz_west) {
                    let _ = writeln!(
                        s,
                        "\t\t{m} ether saddr @bedtime{i} {to_internet}counter reject with icmpx admin-prohibited \
                         comment \"bedtime\""
                    );
                }
            }
            if dot_refused(&policy.guard) {
                let _ =
                    writeln!(s, "\t\t{to_internet}tcp dport 853 counter reject with tcp reset comment \"dot-refuse\"");
            }
            let _ = writeln!(s, "\t\tjump names");
        }
        let _ = writeln!(s, "\t\tjump check");
        let _ = writeln!(s, "\t}}");
    }

    let redirect = dns_redirected(&policy.guard);
    if dns_queue.is_some() || redirect {
        // Before the redirect (`dstnat`): the queue sees where a query was going, so that
        // spind's answer to a blocked name comes from the address the device asked.
        let dns = "meta l4proto { tcp, udp } th dport 53 th sport != 53";
        let _ = writeln!(s, "\n\tchain dns_prerouting {{");
        let _ = writeln!(s, "\t\ttype filter hook prerouting priority dstnat - 10; policy accept;");
        if let Some(q) = dns_queue {
            // Queries of LAN devices to the router's resolver (and, redirected, to any
            // resolver) get their verdict from spind; with spind stopped (or its queue full)
            // the kernel accepts them.
            let _ = writeln!(
                s,
                "\t\tiifname != \"lo\" {dns} fib daddr type local counter queue num {q} bypass comment \"dns-queue\""
            );
            if redirect {
                let _ = writeln!(
                    s,
                    "\t\tiifname != @wan {dns} fib daddr type != local counter queue num {q} bypass \
                     comment \"dns-queue-redirected\""
                );
            }
        }
        let _ = writeln!(s, "\t}}");
    }
    if redirect {
        // DNS from the LAN to any other resolver goes to the router's own (`redirect`: the
        // address of the interface it came in on, port 53); the answer goes back from the
        // address the device asked (conntrack), so a hard-coded resolver gets the router's
        // answers and its name rules.
        let _ = writeln!(s, "\n\tchain dns_redirect {{");
        let _ = writeln!(s, "\t\ttype nat hook prerouting priority dstnat - 5; policy accept;");
        let _ = writeln!(
            s,
            "\t\tiifname != @wan meta l4proto {{ tcp, udp }} th dport 53 fib daddr type != local counter \
             redirect comment \"dns-redirect\""
        );
        let _ = writeln!(s, "\t}}");
    }
    let _ = writeln!(s, "}}");
    s
}

/// Enforces a [`Policy`] with `table inet spin`. Dropping it leaves the table in force.
pub struct NftEnforcer {
    nft: Nft,
    dns_group: u16,
    block_group: u16,
    /// The NFQUEUE of DNS queries and the name rules its verdict thread applies.
    dns_queue: Option<(u16, bool, crate::enforcer::dnsqueue::SharedMatcher)>,
    /// Whether the kernel can redirect DNS and refuse DoT (checked at start); without, the
    /// policy's guard is left out and the rest still enforced.
    guard_ok: bool,
    /// What was applied last, successfully: an identical script is not applied again, and
    /// [`Enforcer::heal`] restores it when the kernel's table no longer matches.
    last: Option<Applied>,
}

/// A script in force and how the kernel showed it right after it was applied.
struct Applied {
    script: String,
    /// The ruleset generation after the apply: unchanged means nobody touched any table.
    generation: u32,
    /// `nft -s list table` after the apply.
    table: Option<String>,
}

impl NftEnforcer {
    /// Check that `nft` works here (installed, permitted, kernel support) and return an enforcer
    /// that copies DNS to NFLOG group `dns_group` and logs blocked packets to `block_group`.
    /// Does not change anything yet: the first [`Enforcer::apply`] installs the table.
    pub fn new(dns_group: u16, block_group: u16) -> Result<NftEnforcer, NftError> {
        NftEnforcer::with_nft(Nft::host(), dns_group, block_group)
    }

    /// As [`NftEnforcer::new`], running `nft` as `nft` says (another namespace or binary).
    pub fn with_nft(nft: Nft, dns_group: u16, block_group: u16) -> Result<NftEnforcer, NftError> {
        nft.check(dns_group, block_group)?;
        let probe = script(&probe_guard_policy(), dns_group, block_group);
        let guard_ok = match nft.run("nft -c (DNS redirect check)", &["-c", "-f", "-"], Some(&probe)) {
            Ok(_) => true,
            Err(e) => {
                log::warn!(
                    "the kernel cannot redirect DNS or refuse DoT from nftables (modules nft_nat, nft_redir, \
                     nft_fib_inet, nft_reject_inet): devices with their own resolver go around the name rules; {e}"
                );
                false
            }
        };
        Ok(NftEnforcer { nft, dns_group, block_group, dns_queue: None, guard_ok, last: None })
    }

    /// Judges DNS queries to the router by the name rules: binds NFQUEUE `queue_num` in this
    /// network namespace and starts the verdict thread; the table queues queries to it from the
    /// next [`Enforcer::apply`] on.
    pub fn start_dns_queue(&mut self, queue_num: u16) -> std::io::Result<crate::enforcer::dnsqueue::DnsQueue> {
        let probe = script_at(&probe_policy(), self.dns_group, self.block_group, Some(queue_num), wall_clock());
        // Without nft_queue in the kernel the table cannot queue; the thread still serves the
        // queue (another ruleset may feed it) and the flow path still holds.
        let queue_rule = match self.nft.run("nft -c (DNS queue check)", &["-c", "-f", "-"], Some(&probe)) {
            Ok(_) => true,
            Err(e) => {
                log::warn!(
                    "the kernel cannot queue DNS from nftables (module nft_queue, OpenWrt: kmod-nft-queue): \
                     name rules cut only the addresses of blocked names; {e}"
                );
                false
            }
        };
        let shared = crate::enforcer::dnsqueue::SharedMatcher::default();
        let q = crate::enforcer::dnsqueue::start(queue_num, shared.clone())?;
        self.dns_queue = Some((queue_num, queue_rule, shared));
        self.last = None;
        Ok(q)
    }

    pub fn nft(&self) -> &Nft {
        &self.nft
    }

    /// Apply the policy even if the script is unchanged (after someone else removed the table).
    pub fn force_apply(&mut self, policy: &Policy) -> Result<(), NftError> {
        self.last = None;
        self.apply_policy(policy)
    }

    fn apply_policy(&mut self, policy: &Policy) -> Result<(), NftError> {
        if let Some((_, _, shared)) = &self.dns_queue {
            if let Ok(mut m) = shared.write() {
                *m = policy.names.clone();
            }
        }
        let queue = self.dns_queue.as_ref().filter(|(_, rule, _)| *rule).map(|(q, _, _)| *q);
        let tz_west = kernel_minutes_west();
        let s = if self.guard_ok {
            script_in_zone(policy, self.dns_group, self.block_group, queue, wall_clock(), tz_west)
        } else {
            let unguarded = Policy { guard: Guard::default(), ..policy.clone() };
            script_in_zone(&unguarded, self.dns_group, self.block_group, queue, wall_clock(), tz_west)
        };
        if self.last.as_ref().is_some_and(|a| a.script == s) {
            return Ok(());
        }
        // Only set elements changed (the usual case: a list entry, a resolved address of a
        // blocked name): update those sets in place. Replacing the table unregisters its hooks,
        // and the kernel then drops every packet waiting in an NFQUEUE (DNS queries waiting for
        // a verdict: lost, not failed open; measured by `cargo xtask bench names`).
        if let Some(update) = self.last.as_ref().and_then(|a| set_update(&a.script, &s)) {
            match self.nft.apply_script(&update) {
                Ok(()) => return self.record(s),
                // The table went away or was altered under us: replace it whole.
                Err(e) => log::debug!("set update failed, replacing the table: {e}"),
            }
        }
        self.last = None;
        self.apply_and_record(s)
    }

    /// Applies `script` and records how the kernel shows it. The table is in force once `nft`
    /// succeeded: failing to read the generation or the listing afterwards is logged, not an
    /// error of the change (the next heal then compares the listing and re-applies if needed).
    fn apply_and_record(&mut self, script: String) -> Result<(), NftError> {
        self.nft.apply_script(&script)?;
        self.record(script)
    }

    /// Records `script` as the one in force, with the generation and listing it left.
    fn record(&mut self, script: String) -> Result<(), NftError> {
        let generation = self.nft.generation().unwrap_or_else(|e| {
            log::warn!("{e}");
            0
        });
        let table = self.nft.stateless_table().unwrap_or_else(|e| {
            log::warn!("{e}");
            None
        });
        self.last = Some(Applied { script, generation, table });
        Ok(())
    }

    /// Restores the last applied table if the kernel's differs from it; what was wrong, if
    /// anything. Costs one netlink round trip while no table changed anywhere. A restore that
    /// fails is tried again on the next call.
    pub fn heal_table(&mut self) -> Result<Option<&'static str>, NftError> {
        let Some(applied) = self.last.as_mut() else { return Ok(None) };
        let generation = self.nft.generation()?;
        if generation == applied.generation {
            return Ok(None);
        }
        let table = self.nft.stateless_table()?;
        if table.is_some() && table == applied.table {
            // Another table changed, or ours was changed and changed back.
            applied.generation = generation;
            return Ok(None);
        }
        let what = if table.is_none() { "table inet spin was removed" } else { "table inet spin was changed" };
        let script = applied.script.clone();
        self.apply_and_record(script)?;
        Ok(Some(what))
    }
}

impl Enforcer for NftEnforcer {
    fn apply(&mut self, policy: &Policy) -> anyhow::Result<()> {
        Ok(self.apply_policy(policy)?)
    }

    fn heal(&mut self) -> anyhow::Result<Option<&'static str>> {
        Ok(self.heal_table()?)
    }
}

/// `spind --remove-firewall`: remove `table inet spin` from this namespace; whether it existed.
pub fn remove_table() -> Result<bool, NftError> {
    Nft::host().remove_table()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::PairBlock;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pair(a: &[&str], b: &[&str]) -> PairBlock {
        PairBlock {
            node1: Default::default(),
            node2: Default::default(),
            ips1: a.iter().map(|s| ip(s)).collect(),
            ips2: b.iter().map(|s| ip(s)).collect(),
        }
    }

    /// The lines of the named set's elements.
    fn elements(script: &str, set: &str) -> Vec<String> {
        let start = script.find(&format!("\tset {set} {{")).unwrap();
        let body = &script[start..];
        let body = &body[..body.find("\n\t}").unwrap()];
        match body.find("elements = {") {
            None => Vec::new(),
            Some(i) => body[i + "elements = {".len()..]
                .lines()
                .map(|l| l.trim().trim_end_matches(',').to_string())
                .filter(|l| !l.is_empty() && l != "}")
                .collect(),
        }
    }

    fn chain<'a>(script: &'a str, name: &str) -> Vec<&'a str> {
        let start = script.find(&format!("\tchain {name} {{")).unwrap();
        let body = &script[start..];
        let body = &body[..body.find("\n\t}").unwrap()];
        body.lines().skip(1).map(str::trim).collect()
    }

    #[test]
    fn a_change_of_set_elements_only_is_an_in_place_update_and_any_other_change_is_not() {
        let at = |block: &[&str], pause: bool| {
            let p = Policy {
                block: block.iter().map(|b| b.parse().unwrap()).collect(),
                paused: if pause { vec![Pause { device: [2, 0, 0, 0, 0, 1], until: 2_000 }] } else { vec![] },
                ..Default::default()
            };
            script_at(&p, 1, 2, Some(7), 1_000)
        };
        let (a, b) = (at(&["10.0.0.1"], false), at(&["10.0.0.1", "10.0.0.0/30", "fd00::9"], true));
        assert_eq!(
            set_update(&a, &b).unwrap(),
            "flush set inet spin block4\nadd element inet spin block4 { 10.0.0.0/30 }\n\
             flush set inet spin block6\nadd element inet spin block6 { fd00::9 }\n\
             flush set inet spin paused\nadd element inet spin paused { 02:00:00:00:00:01 timeout 1000s }\n"
        );
        // Emptied sets are flushed and left empty.
        assert_eq!(set_update(&b, &at(&[], false)).unwrap().lines().filter(|l| l.starts_with("add")).count(), 0);
        assert_eq!(set_update(&b, &at(&[], false)).unwrap().matches("flush set").count(), 3);
        // Another rule (the DNS queue switched off) is a new table.
        let p = Policy::default();
        assert_eq!(set_update(&script_at(&p, 1, 2, Some(7), 0), &script_at(&p, 1, 2, None, 0)), None);
    }

    #[test]
    fn empty_policy_has_all_sets_and_chains() {
        let s = script(&Policy::default(), 5, 6);
        assert!(s.starts_with("# generated"));
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[1..4], ["table inet spin {}", "delete table inet spin", "table inet spin {"]);
        for set in ["block4", "block6", "allow4", "allow6", "pairs4", "pairs6"] {
            assert!(elements(&s, set).is_empty(), "{set}");
        }
        assert!(!s.contains("elements"), "no empty element lists (a syntax error)");
        for hook in ["forward", "input", "output"] {
            let c = chain(&s, hook);
            assert_eq!(c[0], format!("type filter hook {hook} priority filter - 10; policy accept;"));
            let dns: Vec<&str> = c[1..c.len() - 1]
                .iter()
                .copied()
                .filter(|l| *l != "jump names" && !l.contains("comment \"paused\"") && !l.contains("comment \"mdns\""))
                .collect();
            for rule in &dns {
                assert!(rule.starts_with("meta l4proto { tcp, udp }"), "{rule}");
                assert!(rule.contains("log prefix \"spin-dns\" group 5 queue-threshold 1"), "{rule}");
            }
            let has = |what: &str| dns.iter().any(|r| r.contains(what));
            // forward: both ways; input: queries to the router; output: the router's answers.
            assert_eq!(has("th sport 53 counter"), hook != "input", "{hook}: {dns:?}");
            assert_eq!(has("th dport 53 th sport != 53"), hook != "output", "{hook}: {dns:?}");
            assert_eq!(*c.last().unwrap(), "jump check");
        }
        assert_eq!(chain(&s, "forward").iter().filter(|l| **l == "jump names").count(), 1);
        // input also copies LAN mDNS (the group addresses, 5353 both ways, not from the WAN).
        let mdns: Vec<&str> = chain(&s, "input").into_iter().filter(|l| l.contains("comment \"mdns\"")).collect();
        assert_eq!(mdns.len(), 2, "{mdns:?}");
        for (rule, group) in mdns.iter().zip(["ip daddr 224.0.0.251", "ip6 daddr ff02::fb"]) {
            assert!(
                rule.starts_with(group) && rule.contains("udp sport 5353 udp dport 5353 iifname != @wan"),
                "{rule}"
            );
            assert!(rule.contains(MDNS_LOG_LIMIT) && rule.contains("log prefix \"spin-dns\" group 5"), "{rule}");
        }
        assert!(!s.contains("ct state established"), "no shortcut past the DNS copies and blocks");
    }

    #[test]
    fn block_and_allow_lists_with_prefixes_both_families() {
        let p = Policy {
            block: vec![net("198.51.100.0/24"), net("192.0.2.7"), net("2001:db8::/32"), net("2001:db8:1::1")],
            allow: vec![net("10.0.0.2"), net("fd00::/8"), net("10.0.0.0/30"), net("10.0.0.5")],
            ..Default::default()
        };
        let s = script(&p, 1, 2);
        assert_eq!(elements(&s, "block4"), ["192.0.2.7", "198.51.100.0/24"]);
        // 2001:db8:1::1 lies inside 2001:db8::/32: an interval set would reject the overlap.
        assert_eq!(elements(&s, "block6"), ["2001:db8::/32"]);
        assert_eq!(elements(&s, "allow4"), ["10.0.0.0/30", "10.0.0.5"]);
        assert_eq!(elements(&s, "allow6"), ["fd00::/8"]);
        for set in ["block4", "allow4"] {
            assert!(s.contains(&format!("set {set} {{\n\t\ttype ipv4_addr; flags interval; auto-merge;")));
        }
        for set in ["block6", "allow6"] {
            assert!(s.contains(&format!("set {set} {{\n\t\ttype ipv6_addr; flags interval; auto-merge;")));
        }
    }

    #[test]
    fn allow_is_checked_before_the_block_log_and_drop() {
        let s = script(&Policy::default(), 1, 2);
        let v = chain(&s, "block_verdict");
        assert_eq!(
            v[..4],
            [
                "ip saddr @allow4 accept",
                "ip daddr @allow4 accept",
                "ip6 saddr @allow6 accept",
                "ip6 daddr @allow6 accept"
            ]
        );
        assert!(
            v[4].starts_with("counter limit rate")
                && v[4].contains("log prefix \"spin-block\" group 2 queue-threshold 1")
        );
        assert_eq!(v[5], "counter drop comment \"block-drop\"");
        assert_eq!(v.len(), 6);
        // Block and pair matches only ever go to block_verdict; nothing else drops.
        let c = chain(&s, "check");
        assert_eq!(
            c,
            [
                "ct state new counter comment \"track\"",
                "ip saddr @block4 goto block_verdict",
                "ip daddr @block4 goto block_verdict",
                "ip6 saddr @block6 goto block_verdict",
                "ip6 daddr @block6 goto block_verdict",
                "ip saddr . ip daddr @pairs4 goto block_verdict",
                "ip6 saddr . ip6 daddr @pairs6 goto block_verdict",
            ]
        );
        assert_eq!(s.matches(" drop ").count(), 1);
    }

    #[test]
    fn pairs_hold_both_directions_of_every_same_family_combination() {
        let p = Policy {
            pairs: vec![
                pair(&["10.0.0.2", "fd00::2"], &["192.0.2.1", "192.0.2.2", "2001:db8::1"]),
                // Duplicate pair, listed the other way round: no duplicate elements.
                pair(&["192.0.2.1"], &["10.0.0.2"]),
            ],
            ..Default::default()
        };
        let s = script(&p, 1, 2);
        assert_eq!(
            elements(&s, "pairs4"),
            ["10.0.0.2 . 192.0.2.1", "10.0.0.2 . 192.0.2.2", "192.0.2.1 . 10.0.0.2", "192.0.2.2 . 10.0.0.2"]
        );
        assert_eq!(elements(&s, "pairs6"), ["2001:db8::1 . fd00::2", "fd00::2 . 2001:db8::1"]);
        assert!(s.contains("set pairs4 {\n\t\ttype ipv4_addr . ipv4_addr;"));
        assert!(s.contains("set pairs6 {\n\t\ttype ipv6_addr . ipv6_addr;"));
    }

    #[test]
    fn deterministic_whatever_the_input_order() {
        let a = Policy {
            block: vec![net("192.0.2.7"), net("2001:db8::1"), net("192.0.2.3")],
            allow: vec![net("10.0.0.1"), net("10.0.0.1")],
            pairs: vec![pair(&["10.0.0.2"], &["192.0.2.9"]), pair(&["10.0.0.3"], &["192.0.2.9"])],
            ..Default::default()
        };
        let mut b = a.clone();
        b.block.reverse();
        b.pairs.reverse();
        assert_eq!(script(&a, 1, 2), script(&b, 1, 2));
        assert_eq!(elements(&script(&a, 1, 2), "allow4"), ["10.0.0.1"]);
        assert_ne!(script(&a, 1, 2), script(&a, 1, 3));
    }

    #[test]
    fn ipv4_mapped_addresses_are_enforced_as_ipv4() {
        let p = Policy {
            block: vec![net("::ffff:192.0.2.1"), net("::ffff:198.51.100.0/120")],
            pairs: vec![pair(&["::ffff:10.0.0.2"], &["192.0.2.5"])],
            ..Default::default()
        };
        let s = script(&p, 1, 2);
        assert_eq!(elements(&s, "block4"), ["192.0.2.1", "198.51.100.0/24"]);
        assert!(elements(&s, "block6").is_empty());
        assert_eq!(elements(&s, "pairs4"), ["10.0.0.2 . 192.0.2.5", "192.0.2.5 . 10.0.0.2"]);
    }

    #[test]
    fn name_blocks_carry_the_time_left_and_the_queue_has_bypass() {
        let p = Policy {
            name_blocks: vec![
                NameBlock { device: None, ip: ip("198.51.100.10"), expires: 1300 },
                NameBlock { device: None, ip: ip("198.51.100.10"), expires: 1600 },
                NameBlock { device: None, ip: ip("198.51.100.20"), expires: 999 },
                NameBlock { device: Some([2, 0, 0, 0, 0, 0x0a]), ip: ip("2001:db8::1"), expires: 1010 },
            ],
            ..Default::default()
        };
        let s = script_at(&p, 1, 2, Some(7), 1000);
        assert_eq!(elements(&s, "names4"), ["198.51.100.10 timeout 600s"], "the later expiry; expired left out");
        assert_eq!(elements(&s, "dev_names6"), ["02:00:00:00:00:0a . 2001:db8::1 timeout 10s"]);
        assert!(s.contains("set dev_names4 {\n\t\ttype ether_addr . ipv4_addr; flags timeout;"));
        let pre = chain(&s, "dns_prerouting");
        assert_eq!(pre[0], "type filter hook prerouting priority dstnat - 10; policy accept;");
        assert_eq!(
            pre[1..],
            ["iifname != \"lo\" meta l4proto { tcp, udp } th dport 53 th sport != 53 fib daddr type local counter \
              queue num 7 bypass comment \"dns-queue\""],
            "without the redirect only queries to the router are queued"
        );
        assert!(!script_at(&p, 1, 2, None, 1000).contains("queue num"));
        assert_eq!(chain(&s, "names").len(), 4);
    }

    fn guarded(wan: Option<&[&str]>) -> Policy {
        Policy {
            guard: Guard {
                redirect_dns: true,
                refuse_dot: true,
                wan: wan.map(|w| w.iter().map(|s| s.to_string()).collect()),
            },
            ..Default::default()
        }
    }

    #[test]
    fn dns_to_other_resolvers_is_redirected_and_queued_first_and_dot_refused_to_the_wan() {
        let s = script_at(&guarded(Some(&["wan0", "pppoe-wan"])), 1, 2, Some(53), 1000);
        assert!(s.contains("\tset wan {\n\t\ttype ifname;\n\t\telements = {\n\t\t\t\"wan0\",\n\t\t\t\"pppoe-wan\"\n"));
        let r = chain(&s, "dns_redirect");
        assert_eq!(r[0], "type nat hook prerouting priority dstnat - 5; policy accept;");
        assert_eq!(
            r[1],
            "iifname != @wan meta l4proto { tcp, udp } th dport 53 fib daddr type != local counter redirect \
             comment \"dns-redirect\""
        );
        // The queue (priority dstnat - 10) sees the query before the redirect (dstnat - 5).
        let pre = chain(&s, "dns_prerouting");
        assert_eq!(pre.len(), 3);
        assert!(
            pre[2].starts_with("iifname != @wan ")
                && pre[2].contains("fib daddr type != local counter queue num 53 bypass")
        );
        let fwd = chain(&s, "forward");
        assert!(
            fwd.contains(&"oifname @wan tcp dport 853 counter reject with tcp reset comment \"dot-refuse\""),
            "{fwd:?}"
        );
        assert!(fwd.iter().position(|l| l.contains("dot-refuse")) < fwd.iter().position(|l| *l == "jump names"));
    }

    #[test]
    fn no_redirect_before_the_wan_is_known_or_without_one_and_each_switch_holds() {
        for wan in [None, Some(&[][..])] {
            let s = script_at(&guarded(wan), 1, 2, Some(53), 1000);
            assert!(!s.contains("dns-redirect") && !s.contains("dns-queue-redirected"), "{wan:?}");
        }
        assert!(!script_at(&guarded(None), 1, 2, None, 1000).contains("dot-refuse"));
        let s = script_at(&guarded(Some(&[])), 1, 2, None, 1000);
        assert!(chain(&s, "forward").contains(&"tcp dport 853 counter reject with tcp reset comment \"dot-refuse\""));
        let mut p = guarded(Some(&["wan0"]));
        p.guard.redirect_dns = false;
        p.guard.refuse_dot = false;
        let s = script_at(&p, 1, 2, None, 1000);
        assert!(!s.contains("dns-redirect") && !s.contains("dot-refuse") && !s.contains("dns_prerouting"));
        // A name that could break out of its quotes never reaches the script.
        let s = script_at(&guarded(Some(&["a\"b", "wan0"])), 1, 2, None, 1000);
        assert_eq!(elements(&s, "wan"), ["\"wan0\""]);
    }

    #[test]
    fn paused_devices_are_rejected_towards_the_internet_with_the_time_left() {
        let mut p = guarded(Some(&["wan0"]));
        p.paused = vec![
            Pause { device: [2, 0, 0, 0, 0, 0x64], until: 1600 },
            Pause { device: [2, 0, 0, 0, 0, 0x65], until: 900 },
        ];
        let s = script_at(&p, 1, 2, None, 1000);
        assert_eq!(elements(&s, "paused"), ["02:00:00:00:00:64 timeout 600s"], "an ended pause is left out");
        assert!(s.contains("set paused {\n\t\ttype ether_addr; flags timeout;"));
        let fwd = chain(&s, "forward");
        assert!(fwd.contains(
            &"ether saddr @paused oifname @wan counter reject with icmpx admin-prohibited comment \"paused\""
        ));
        // Not known yet: everything forwarded from the device (a pause holds from the start).
        let s = script_at(&Policy { paused: p.paused.clone(), ..Default::default() }, 1, 2, None, 1000);
        assert!(chain(&s, "forward")
            .contains(&"ether saddr @paused counter reject with icmpx admin-prohibited comment \"paused\""));
        assert_eq!(s.matches(" drop ").count(), 1, "block_verdict still the only drop");
    }

    fn span(day: u16, h: u16, m: u16, len: u16) -> WeekSpan {
        WeekSpan { start: day * 1440 + h * 60 + m, len }
    }

    #[test]
    fn time_matches_cut_windows_at_midnight_in_utc_and_at_the_kernels_day() {
        // Monday 21:00-07:00 UTC: Monday to 24:00, then Tuesday from 00:00.
        assert_eq!(
            time_matches(&[span(0, 21, 0, 600)], 0),
            [
                "meta day \"Monday\" meta hour \"21:00:00\"-\"23:59:59\"",
                "meta day \"Tuesday\" meta hour \"00:00:00\"-\"06:59:59\""
            ]
        );
        // Sunday night runs into Monday (the start of the week again).
        assert_eq!(
            time_matches(&[span(6, 22, 0, 540)], 0),
            [
                "meta day \"Sunday\" meta hour \"22:00:00\"-\"23:59:59\"",
                "meta day \"Monday\" meta hour \"00:00:00\"-\"06:59:59\""
            ]
        );
        assert_eq!(
            time_matches(&[span(2, 10, 0, 60)], 0),
            ["meta day \"Wednesday\" meta hour \"10:00:00\"-\"10:59:59\""]
        );
        // A kernel whose sys_tz is an hour east (-60 west): its day changes at 23:00 UTC.
        assert_eq!(
            time_matches(&[span(0, 22, 0, 180)], -60),
            [
                "meta day \"Monday\" meta hour \"22:00:00\"-\"22:59:59\"",
                "meta day \"Tuesday\" meta hour \"00:00:00\"-\"00:59:59\"",
                "meta day \"Tuesday\" meta hour \"23:00:00\"-\"23:59:59\""
            ]
        );
    }

    #[test]
    fn scheduled_name_blocks_have_their_own_sets_matched_only_inside_the_windows() {
        let dev = [2, 0, 0, 0, 0, 0x0b];
        let p = Policy {
            name_blocks: vec![NameBlock { device: None, ip: ip("198.51.100.1"), expires: 2000 }],
            scheduled_names: vec![
                ScheduledNames {
                    spans: vec![span(4, 21, 0, 600)],
                    blocks: vec![
                        NameBlock { device: None, ip: ip("198.51.100.10"), expires: 1600 },
                        NameBlock { device: Some(dev), ip: ip("2001:db8::10"), expires: 1100 },
                    ],
                },
                ScheduledNames {
                    spans: vec![span(5, 9, 0, 60)],
                    blocks: vec![NameBlock { device: None, ip: ip("192.0.2.20"), expires: 1300 }],
                },
            ],
            ..Default::default()
        };
        let s = script_at(&p, 1, 2, None, 1000);
        assert_eq!(elements(&s, "names4"), ["198.51.100.1 timeout 1000s"], "the unscheduled sets as before");
        assert_eq!(elements(&s, "sched0_names4"), ["198.51.100.10 timeout 600s"]);
        assert_eq!(elements(&s, "sched0_dev_names6"), ["02:00:00:00:00:0b . 2001:db8::10 timeout 100s"]);
        assert!(elements(&s, "sched0_names6").is_empty() && elements(&s, "sched0_dev_names4").is_empty());
        assert_eq!(elements(&s, "sched1_names4"), ["192.0.2.20 timeout 300s"]);
        assert!(s.contains("set sched0_dev_names4 {\n\t\ttype ether_addr . ipv4_addr; flags timeout;"));
        let names = chain(&s, "names");
        assert_eq!(
            names[4..],
            [
                "meta day \"Friday\" meta hour \"21:00:00\"-\"23:59:59\" jump sched0",
                "meta day \"Saturday\" meta hour \"00:00:00\"-\"06:59:59\" jump sched0",
                "meta day \"Saturday\" meta hour \"09:00:00\"-\"09:59:59\" jump sched1",
            ]
        );
        assert_eq!(
            chain(&s, "sched0"),
            [
                "ip daddr @sched0_names4 goto block_verdict",
                "ip6 daddr @sched0_names6 goto block_verdict",
                "ether saddr . ip daddr @sched0_dev_names4 goto block_verdict",
                "ether saddr . ip6 daddr @sched0_dev_names6 goto block_verdict",
            ]
        );
        assert_eq!(s.matches(" drop ").count(), 1, "block_verdict still the only drop");
        // With sys_tz an hour west, the kernel's Saturday starts at 01:00 UTC.
        let west = script_in_zone(&p, 1, 2, None, 1000, 60);
        assert!(chain(&west, "names").contains(&"meta day \"Friday\" meta hour \"00:00:00\"-\"00:59:59\" jump sched0"));
    }

    #[test]
    fn scheduled_allows_let_their_exceptions_through_before_any_name_block_inside_the_windows() {
        let dev = [2, 0, 0, 0, 0, 0x0b];
        let p = Policy {
            name_blocks: vec![
                NameBlock { device: None, ip: ip("198.51.100.1"), expires: 2000 },
                NameBlock { device: None, ip: ip("198.51.100.2"), expires: 2000 },
            ],
            scheduled_allows: vec![ScheduledNames {
                spans: vec![span(0, 16, 0, 120)],
                blocks: vec![
                    NameBlock { device: None, ip: ip("198.51.100.2"), expires: 2000 },
                    NameBlock { device: Some(dev), ip: ip("198.51.100.1"), expires: 1500 },
                ],
            }],
            ..Default::default()
        };
        let s = script_at(&p, 1, 2, None, 1000);
        assert_eq!(
            elements(&s, "names4"),
            ["198.51.100.1 timeout 1000s", "198.51.100.2 timeout 1000s"],
            "still blocked"
        );
        assert_eq!(elements(&s, "asched0_names4"), ["198.51.100.2 timeout 1000s"]);
        assert_eq!(elements(&s, "asched0_dev_names4"), ["02:00:00:00:00:0b . 198.51.100.1 timeout 500s"]);
        let names = chain(&s, "names");
        let window = "meta day \"Monday\" meta hour \"16:00:00\"-\"17:59:59\"";
        assert_eq!(
            names[..4],
            [
                format!("{window} ip daddr @asched0_names4 return"),
                format!("{window} ip6 daddr @asched0_names6 return"),
                format!("{window} ether saddr . ip daddr @asched0_dev_names4 return"),
                format!("{window} ether saddr . ip6 daddr @asched0_dev_names6 return"),
            ],
            "the exceptions come first, so they beat every name block; the IP lists (chain check) still apply"
        );
        assert_eq!(names[4], "ip daddr @names4 goto block_verdict");
        assert_eq!(
            s.matches(" accept").count(),
            script_at(&Policy::default(), 1, 2, None, 1000).matches(" accept").count()
        );
    }

    #[test]
    fn bedtimes_reject_the_devices_towards_the_internet_inside_the_windows_only() {
        let (a, b, c) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3]);
        let school = vec![span(0, 21, 0, 600), span(6, 21, 0, 600)];
        let mut p = guarded(Some(&["wan0"]));
        p.bedtimes = vec![
            Bedtime { device: a, spans: school.clone() },
            Bedtime { device: b, spans: vec![span(2, 12, 0, 30)] },
            Bedtime { device: c, spans: school },
        ];
        let s = script_at(&p, 1, 2, None, 1000);
        let sets = [elements(&s, "bedtime0"), elements(&s, "bedtime1")];
        assert!(sets.contains(&vec!["02:00:00:00:00:01".to_string(), "02:00:00:00:00:03".to_string()]), "{sets:?}");
        assert!(sets.contains(&vec!["02:00:00:00:00:02".to_string()]), "{sets:?}");
        let school_set = if sets[0].len() == 2 { 0 } else { 1 };
        let fwd = chain(&s, "forward");
        let rules: Vec<&&str> = fwd.iter().filter(|l| l.contains("comment \"bedtime\"")).collect();
        assert_eq!(rules.len(), 5, "{rules:?}");
        for (day, hours) in [
            ("Monday", "\"21:00:00\"-\"23:59:59\""),
            ("Tuesday", "\"00:00:00\"-\"06:59:59\""),
            ("Sunday", "\"21:00:00\"-\"23:59:59\""),
            ("Monday", "\"00:00:00\"-\"06:59:59\""),
        ] {
            let want = format!(
                "meta day \"{day}\" meta hour {hours} ether saddr @bedtime{school_set} oifname @wan counter reject \
                 with icmpx admin-prohibited comment \"bedtime\""
            );
            assert!(rules.iter().any(|r| **r == want), "{want} in {rules:?}");
        }
        // Before the jump to the name rules, as a pause; none without bedtimes.
        assert!(fwd.iter().position(|l| l.contains("bedtime")) < fwd.iter().position(|l| *l == "jump names"));
        assert!(!script_at(&guarded(Some(&["wan0"])), 1, 2, None, 1000).contains("bedtime"));
    }

    #[test]
    fn whole_internet_prefix_swallows_the_rest() {
        let p = Policy { block: vec![net("192.0.2.1"), net("0.0.0.0/0"), net("10.0.0.0/8")], ..Default::default() };
        assert_eq!(elements(&script(&p, 1, 2), "block4"), ["0.0.0.0/0"]);
    }

    #[test]
    fn errors_are_sorted_into_what_the_user_can_fix() {
        let e =
            classify("x", "exit status: 1".into(), "Error: Could not process rule: Operation not permitted\n".into());
        assert!(matches!(e, NftError::NoPermission { .. }));
        assert!(e.to_string().contains("CAP_NET_ADMIN"));
        let e = classify(
            "x",
            "exit status: 1".into(),
            "netlink: Error: cache initialization failed: Protocol not supported".into(),
        );
        assert!(matches!(e, NftError::NoKernelSupport { .. }));
        assert!(e.to_string().contains("CONFIG_NF_TABLES"));
        let e = classify("nft -f", "exit status: 1".into(), "Error: syntax error".into());
        assert!(matches!(e, NftError::Failed { .. }));
        assert!(e.to_string().contains("syntax error"));
    }

    #[test]
    fn missing_nft_binary_says_how_to_install_it() {
        let nft = Nft::host().with_program("/nonexistent/spind-test/nft");
        let e = nft.check(1, 2).unwrap_err();
        assert!(matches!(e, NftError::NotInstalled { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("apt-get install nftables") && msg.contains("opkg install nftables"), "{msg}");
        let e = NftEnforcer::with_nft(nft, 1, 2).err().unwrap();
        assert!(matches!(e, NftError::NotInstalled { .. }));
    }

    #[test]
    fn missing_namespace_is_reported() {
        let e = Nft::in_netns("spind-test-no-such-namespace").version().unwrap_err();
        assert!(matches!(e, NftError::Netns { .. }), "{e}");
        assert!(e.to_string().contains("/run/netns/spind-test-no-such-namespace"));
    }

    #[test]
    fn counters_are_read_from_nft_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "spin", "handle": 1}},
            {"rule": {"family": "inet", "table": "spin", "chain": "forward", "handle": 3,
              "comment": "dns-sport", "expr": [{"match": {}}, {"counter": {"packets": 7, "bytes": 420}}, {"log": {}}]}},
            {"rule": {"family": "inet", "table": "spin", "chain": "check", "handle": 4, "expr": []}}]}"#;
        assert_eq!(parse_rule_counters(json), [("forward/dns-sport".to_string(), 7)]);
        assert!(parse_rule_counters("not json").is_empty());
    }
}
