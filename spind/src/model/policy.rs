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
use std::sync::Arc;

use crate::model::addr::IpNet;
use crate::model::blocklist::NameSet;
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

/// The name rules that hold now, compiled for lookups that allocate nothing: a name (lowercase,
/// without the trailing dot) matches itself and every name below it; the most specific matching
/// name decides, and at one name an allow beats a block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameMatcher {
    names: HashMap<Box<[u8]>, Vec<NameEntry>>,
    /// Addresses of the devices the rules name (from the neighbour table), for a query that
    /// carries no link-layer address.
    device_ips: HashMap<IpAddr, [u8; 6]>,
    /// The blocklists' names, blocked for every device: shared, not copied, by every compile.
    lists: Arc<NameSet>,
}

impl NameMatcher {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.lists.is_empty()
    }

    /// Blocks the names of the blocklists for every device (below a rule of the user's at a
    /// more specific name, and beaten by the user's allow at the same name).
    pub fn set_lists(&mut self, lists: Arc<NameSet>) {
        self.lists = lists;
    }

    /// Adds a rule for `name` (already normalised).
    pub fn add(&mut self, name: &str, devices: Option<Vec<[u8; 6]>>, allow: bool) {
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
                    return Some(if allow { NameVerdict::Allow } else { NameVerdict::Block });
                }
            }
            if self.lists.contains(rest) {
                return Some(NameVerdict::Block);
            }
            match rest.iter().position(|&b| b == b'.') {
                Some(i) => rest = &rest[i + 1..],
                None => return None,
            }
        }
    }

    /// Every device some rule names.
    pub fn devices(&self) -> Vec<[u8; 6]> {
        let mut out: Vec<[u8; 6]> =
            self.names.values().flatten().filter_map(|e| e.devices.as_deref()).flatten().copied().collect();
        out.sort();
        out.dedup();
        out
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

/// The addresses of names blocked by rules with one schedule: kept in the kernel all the time
/// (so a cached address is cut when a window opens) and matched only inside `spans`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduledNames {
    pub spans: Vec<WeekSpan>,
    pub blocks: Vec<NameBlock>,
    /// Whether a window holds now (for deciding blocks without a kernel).
    pub holds_now: bool,
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
        let lists: NameSet = ["ads.example", "x.example"].iter().map(|n| n.as_bytes().into()).collect();
        m.set_lists(Arc::new(lists));
        assert!(!m.is_empty());
        m.add("ok.ads.example", None, true);
        m.add("x.example", Some(vec![A]), true);
        assert_eq!(m.decide(b"www.ads.example", Some(B)), Some(NameVerdict::Block));
        assert_eq!(m.decide(b"ok.ads.example", None), Some(NameVerdict::Allow), "a more specific allow");
        assert_eq!(m.decide(b"x.example", Some(A)), Some(NameVerdict::Allow), "the user's allow at the same name");
        assert_eq!(m.decide(b"x.example", Some(B)), Some(NameVerdict::Block));
        assert_eq!(m.decide(b"example", None), None);
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
