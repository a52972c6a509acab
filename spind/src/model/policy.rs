//! What the firewall must enforce, and the interface of whatever enforces it.
//!
//! The core computes the whole desired [`Policy`] after every change and hands it to the
//! [`Enforcer`], which makes the kernel match it in one atomic step (nftables on a router).
//! Without a kernel (replay, passive mode) there is no enforcer and the core decides blocks
//! itself, so the UI and tools still see `blocked` traffic.
//!
//! Name rules reach the enforcer twice: as a [`NameMatcher`] of the rules that hold *now* (the
//! core re-evaluates schedules and expiry every second), which the DNS verdict thread applies
//! to each query without allocating, and as [`NameBlock`]s, the addresses that blocked names
//! resolved to, which go into kernel sets with a timeout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::model::addr::IpNet;
// Re-exported: the matcher's lists are what the enforcer's DNS path reads.
pub use crate::model::blocklist::NameSet;
use crate::model::nodes::NodeId;

/// All traffic between the addresses of two nodes is blocked (a flow block).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairBlock {
    pub node1: NodeId,
    pub node2: NodeId,
    pub ips1: Vec<IpAddr>,
    pub ips2: Vec<IpAddr>,
}

/// An address a blocked name resolved to: traffic to it is cut, from one device (by MAC) or
/// from every device, until `expires` (unix time).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NameBlock {
    pub device: Option<[u8; 6]>,
    pub ip: IpAddr,
    pub expires: i64,
}

/// What a name rule says about a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameVerdict {
    Block,
    Allow,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct NameEntry {
    /// `None`: every device.
    devices: Option<Box<[[u8; 6]]>>,
    allow: bool,
}

/// A counter of blocked queries that the DNS verdict thread adds to and the core reads and
/// resets (at local midnight). Shared, so it outlives the matchers compiled every second; two
/// counters are equal only when they are the same one. `AtomicUsize`: 32-bit MIPS has no 64-bit
/// atomics.
#[derive(Clone, Debug, Default)]
pub struct BlockCounter(Arc<AtomicUsize>);

impl BlockCounter {
    pub fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    pub fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

impl PartialEq for BlockCounter {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for BlockCounter {}

/// One blocklist as the matcher applies it: its names (shared with the core, never copied by a
/// compile), the devices it is for (`None`: every device) and the counter of what it blocked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MatchList {
    pub names: Arc<NameSet>,
    pub devices: Option<Box<[[u8; 6]]>>,
    pub blocked: BlockCounter,
}

impl MatchList {
    fn applies(&self, device: Option<[u8; 6]>) -> bool {
        match &self.devices {
            None => true,
            Some(ds) => device.is_some_and(|d| ds.contains(&d)),
        }
    }
}

/// What decided a query: a name rule (the user's, or a shipped name), or the blocklist at this
/// index of [`NameMatcher::set_lists`]'s lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decider {
    Rule,
    List(usize),
}

/// The name rules that hold now, compiled for lookups that allocate nothing: a name (lowercase,
/// without the trailing dot) matches itself and every name below it; the most specific matching
/// name decides, and at one name an allow beats a block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameMatcher {
    names: HashMap<Box<[u8]>, Vec<NameEntry>>,
    /// Addresses of the devices the rules name (from the neighbour table), for a query that
    /// carries no link-layer address.
    device_ips: HashMap<IpAddr, [u8; 6]>,
    /// The blocklists, network-wide or per device: shared, not copied, by every compile.
    lists: Arc<[MatchList]>,
    /// Every query the verdict path blocked (rules and lists).
    blocked: BlockCounter,
    /// Every device a rule or a per-device list names, sorted (kept by `add` and `set_lists`:
    /// the core asks for it per DNS answer).
    devices: Vec<[u8; 6]>,
}

impl NameMatcher {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.lists.iter().all(|l| l.names.is_empty())
    }

    /// Blocks the names of the blocklists for their devices (below a rule of the user's at a
    /// more specific name, and beaten by the user's allow at the same name); `blocked` counts
    /// every query [`NameMatcher::decide_counted`] blocks.
    pub fn set_lists(&mut self, lists: Arc<[MatchList]>, blocked: BlockCounter) {
        self.lists = lists;
        self.blocked = blocked;
        let listed: Vec<[u8; 6]> = self.lists.iter().filter_map(|l| l.devices.as_deref()).flatten().copied().collect();
        self.name_devices(&listed);
    }

    fn name_devices(&mut self, devices: &[[u8; 6]]) {
        self.devices.extend_from_slice(devices);
        self.devices.sort();
        self.devices.dedup();
    }

    /// Adds a rule for `name` (already normalised).
    pub fn add(&mut self, name: &str, devices: Option<Vec<[u8; 6]>>, allow: bool) {
        if let Some(ds) = &devices {
            self.name_devices(ds);
        }
        let entry = NameEntry { devices: devices.map(Vec::into_boxed_slice), allow };
        self.names.entry(name.as_bytes().into()).or_default().push(entry);
    }

    pub fn add_device_ip(&mut self, ip: IpAddr, mac: [u8; 6]) {
        self.device_ips.insert(ip, mac);
    }

    /// The device a packet came from: its link-layer source, or what its address says.
    pub fn device_of(&self, mac: Option<[u8; 6]>, src: Option<IpAddr>) -> Option<[u8; 6]> {
        mac.or_else(|| src.and_then(|ip| self.device_ips.get(&ip).copied()))
    }

    /// The verdict for `qname` (lowercase ASCII, no trailing dot) asked by `device` (`None`:
    /// only rules for every device apply). `None`: no rule matches.
    pub fn decide(&self, qname: &[u8], device: Option<[u8; 6]>) -> Option<NameVerdict> {
        self.decide_why(qname, device).map(|(v, _)| v)
    }

    /// [`NameMatcher::decide`] for the verdict path: a block is counted, in all and for the list
    /// that decided it. Allocates nothing.
    pub fn decide_counted(&self, qname: &[u8], device: Option<[u8; 6]>) -> Option<NameVerdict> {
        let d = self.decide_why(qname, device);
        if let Some((NameVerdict::Block, why)) = d {
            self.blocked.add();
            if let Decider::List(i) = why {
                self.lists[i].blocked.add();
            }
        }
        d.map(|(v, _)| v)
    }

    /// The verdict and what decided it.
    pub fn decide_why(&self, qname: &[u8], device: Option<[u8; 6]>) -> Option<(NameVerdict, Decider)> {
        let mut rest = qname;
        loop {
            if let Some(entries) = self.names.get(rest) {
                let applies = |e: &&NameEntry| match &e.devices {
                    None => true,
                    Some(ds) => device.is_some_and(|d| ds.contains(&d)),
                };
                let mut any = false;
                let mut allow = false;
                for e in entries.iter().filter(applies) {
                    any = true;
                    allow |= e.allow;
                }
                if any {
                    return Some((if allow { NameVerdict::Allow } else { NameVerdict::Block }, Decider::Rule));
                }
            }
            if let Some(i) = self.lists.iter().position(|l| l.applies(device) && l.names.contains(rest)) {
                return Some((NameVerdict::Block, Decider::List(i)));
            }
            match rest.iter().position(|&b| b == b'.') {
                Some(i) => rest = &rest[i + 1..],
                None => return None,
            }
        }
    }

    /// Every device some rule or per-device list names, sorted.
    pub fn devices(&self) -> &[[u8; 6]] {
        &self.devices
    }
}

/// What keeps a plain device from going around the router's resolver (issue 13): DNS to any
/// other resolver redirected to the router's own, DoT to the internet refused. Each a config
/// key; `wan` is which interfaces face the internet (from the neighbour source; `None` until it
/// said, and then neither rule is written: a redirect must never catch queries from outside).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Guard {
    pub redirect_dns: bool,
    pub refuse_dot: bool,
    pub wan: Option<Vec<String>>,
}

/// A device whose internet (not the LAN) is cut until `until` (unix time): `pause_device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pause {
    pub device: [u8; 6],
    pub until: i64,
}

/// A span of the week in UTC: from `start` (minutes since Monday 00:00 UTC) for `len` minutes
/// (at most a day; it may run past the end of the week into Monday).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WeekSpan {
    pub start: u16,
    pub len: u16,
}

/// Addresses that the rules of one schedule act on, kept in the kernel all the time and matched
/// only inside `spans`: for block rules the addresses they cut (so a cached address is cut when
/// a window opens), for allow rules the unscheduled blocks they except (so a window opens with
/// spind down too).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduledNames {
    pub spans: Vec<WeekSpan>,
    pub blocks: Vec<NameBlock>,
}

/// A device whose internet (not the LAN) is cut inside `spans`: `set_device_schedule`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bedtime {
    pub device: [u8; 6],
    pub spans: Vec<WeekSpan>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub block: Vec<IpNet>,
    /// Never blocked, even when the peer is.
    pub allow: Vec<IpNet>,
    pub pairs: Vec<PairBlock>,
    /// The name rules that hold now, for the DNS verdict path.
    pub names: Arc<NameMatcher>,
    /// Addresses of blocked names, for the flow path.
    pub name_blocks: Vec<NameBlock>,
    pub guard: Guard,
    /// Paused devices, sorted.
    pub paused: Vec<Pause>,
    /// The addresses of names that scheduled block rules block, one entry per schedule.
    pub scheduled_names: Vec<ScheduledNames>,
    /// The entries of `name_blocks` that scheduled allow rules except, one entry per schedule.
    pub scheduled_allows: Vec<ScheduledNames>,
    /// Device bedtimes, sorted.
    pub bedtimes: Vec<Bedtime>,
}

pub trait Enforcer: Send {
    /// Make the enforced rules equal `policy`, atomically.
    fn apply(&mut self, policy: &Policy) -> anyhow::Result<()>;

    /// Checks that the kernel still enforces what was applied last and restores it if not
    /// (someone flushed the ruleset); what was wrong, if anything. Called every second.
    fn heal(&mut self) -> anyhow::Result<Option<&'static str>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    #[test]
    fn a_name_matches_itself_and_below_the_most_specific_decides() {
        let mut m = NameMatcher::default();
        m.add("video.example", None, false);
        m.add("ok.video.example", None, true);
        m.add("kids.example", Some(vec![A]), false);
        let d = |q: &str, dev| m.decide(q.as_bytes(), dev);
        assert_eq!(d("video.example", None), Some(NameVerdict::Block));
        assert_eq!(d("www.video.example", Some(B)), Some(NameVerdict::Block));
        assert_eq!(d("xvideo.example", None), None, "a label boundary, not a string suffix");
        assert_eq!(d("example", None), None);
        assert_eq!(d("ok.video.example", None), Some(NameVerdict::Allow), "allow beats the parent's block");
        assert_eq!(d("a.ok.video.example", None), Some(NameVerdict::Allow));
        assert_eq!(d("kids.example", Some(A)), Some(NameVerdict::Block));
        assert_eq!(d("www.kids.example", Some(B)), None, "another device");
        assert_eq!(d("kids.example", None), None, "an unknown device gets only the rules for all");
        assert_eq!(m.devices(), [A]);
    }

    #[test]
    fn blocklist_names_block_below_themselves_and_the_users_rules_come_first() {
        let mut m = NameMatcher::default();
        assert!(m.is_empty());
        m.set_lists(Arc::new([list(&["ads.example", "x.example"], None)]), BlockCounter::default());
        assert!(!m.is_empty());
        m.add("ok.ads.example", None, true);
        m.add("x.example", Some(vec![A]), true);
        assert_eq!(m.decide(b"www.ads.example", Some(B)), Some(NameVerdict::Block));
        assert_eq!(m.decide(b"ok.ads.example", None), Some(NameVerdict::Allow), "a more specific allow");
        assert_eq!(m.decide(b"x.example", Some(A)), Some(NameVerdict::Allow), "the user's allow at the same name");
        assert_eq!(m.decide(b"x.example", Some(B)), Some(NameVerdict::Block));
        assert_eq!(m.decide(b"example", None), None);
    }

    fn list(names: &[&str], devices: Option<&[[u8; 6]]>) -> MatchList {
        MatchList {
            names: Arc::new(names.iter().map(|n| n.as_bytes().into()).collect()),
            devices: devices.map(|d| d.into()),
            blocked: BlockCounter::default(),
        }
    }

    #[test]
    fn per_device_lists_block_only_for_their_devices_and_each_block_is_counted_once() {
        let mut m = NameMatcher::default();
        let kids = list(&["games.example", "both.example"], Some(&[A]));
        let all = list(&["ads.example", "both.example"], None);
        let total = BlockCounter::default();
        m.set_lists(Arc::new([kids.clone(), all.clone()]), total.clone());
        m.add("ok.games.example", Some(vec![A]), true);
        assert_eq!(m.devices(), [A], "a per-device list's device is named");
        assert_eq!(m.decide_why(b"www.games.example", Some(A)), Some((NameVerdict::Block, Decider::List(0))));
        assert_eq!(m.decide(b"www.games.example", Some(B)), None, "another device");
        assert_eq!(m.decide(b"games.example", None), None, "an unknown device gets only the lists for all");
        assert_eq!(m.decide_why(b"ads.example", Some(A)), Some((NameVerdict::Block, Decider::List(1))));
        assert_eq!(m.decide_why(b"ok.games.example", Some(A)), Some((NameVerdict::Allow, Decider::Rule)));
        for (q, dev) in [("a.games.example", Some(A)), ("games.example", Some(B)), ("x.ads.example", Some(B))] {
            m.decide_counted(q.as_bytes(), dev);
        }
        m.decide_counted(b"both.example", Some(A));
        m.decide_counted(b"ok.games.example", Some(A));
        assert_eq!((kids.blocked.get(), all.blocked.get(), total.get()), (2, 1, 3), "the first list that matches");
        // A compile with the same lists and counters is the same matcher; the counter survives.
        let mut again = NameMatcher::default();
        again.set_lists(Arc::new([kids.clone(), all.clone()]), total.clone());
        again.add("ok.games.example", Some(vec![A]), true);
        assert_eq!(again, m);
        total.reset();
        assert_eq!((total.get(), kids.blocked.get()), (0, 2));
        let mut other = again.clone();
        other.set_lists(Arc::new([kids, all]), BlockCounter::default());
        assert_ne!(other, m, "another counter is another matcher");
    }

    #[test]
    fn at_one_name_allow_beats_block() {
        let mut m = NameMatcher::default();
        m.add("x.example", None, false);
        m.add("x.example", Some(vec![B]), true);
        assert_eq!(m.decide(b"x.example", Some(A)), Some(NameVerdict::Block));
        assert_eq!(m.decide(b"x.example", Some(B)), Some(NameVerdict::Allow));
        m.add_device_ip("192.0.2.9".parse().unwrap(), B);
        assert_eq!(m.device_of(None, Some("192.0.2.9".parse().unwrap())), Some(B));
        assert_eq!(m.device_of(Some(A), Some("192.0.2.9".parse().unwrap())), Some(A));
    }
}
