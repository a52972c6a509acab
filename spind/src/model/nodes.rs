//! The node cache (reference §3.2): nodes are devices on the LAN (they have a MAC) and the
//! things they talk to (addresses, and the DNS names that resolved to them).
//!
//! Any observation becomes a [`Candidate`]; adding it either creates a node or merges it with
//! every existing node that shares its MAC, one of its addresses, or one of its (still valid)
//! DNS names. Merges keep the device first, then the lowest id, as SPIN does. Where SPIN glued
//! nodes together forever, here a DNS name only glues while its TTL lasts (a CDN name that moves
//! to another address does not merge unrelated servers), and two devices are never merged: an
//! address that shows up with another MAC moves to that device (DHCP gave it to someone else).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use crate::model::event::{MacAddr, Timestamp};

pub type NodeId = u64;

/// The three IP lists; a node's flags say it was put on a list as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListKind {
    Block,
    Ignore,
    Allow,
}

impl ListKind {
    pub const ALL: [ListKind; 3] = [ListKind::Block, ListKind::Ignore, ListKind::Allow];

    pub fn name(self) -> &'static str {
        match self {
            ListKind::Block => "block",
            ListKind::Ignore => "ignore",
            ListKind::Allow => "allow",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A DNS name carried by a node: kept for display, the original spelling of its first sighting.
pub type DomainKey = String;

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub id: NodeId,
    pub name: Option<String>,
    pub mac: Option<MacAddr>,
    pub ips: BTreeSet<IpAddr>,
    /// lowercase name -> name as first seen (with trailing dot).
    pub domains: BTreeMap<DomainKey, String>,
    on_list: [bool; 3],
    pub last_seen: Timestamp,
}

impl Node {
    pub fn is_device(&self) -> bool {
        self.mac.is_some()
    }

    pub fn on_list(&self, list: ListKind) -> bool {
        self.on_list[list.index()]
    }

    /// Domains in SPIN's order: by length, then case-insensitively.
    pub fn sorted_domains(&self) -> Vec<&str> {
        let mut d: Vec<(&String, &String)> = self.domains.iter().collect();
        d.sort_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| a.0.cmp(b.0)));
        d.into_iter().map(|(_, v)| v.as_str()).collect()
    }
}

/// What an observation says about one node-to-be.
#[derive(Clone, Debug, Default)]
pub struct Candidate {
    pub mac: Option<MacAddr>,
    pub ips: Vec<IpAddr>,
    /// Names (trailing dot) and until when they may glue nodes together (`None` = no expiry,
    /// e.g. a name that was only queried).
    pub domains: Vec<(String, Option<Timestamp>)>,
    pub name: Option<String>,
    pub last_seen: Timestamp,
}

/// What the household decided about a node: its list flags and its name. A control operation
/// whose change cannot be saved puts these back ([`NodeCache::restore_marks`]).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeMarks {
    id: NodeId,
    on_list: [bool; 3],
    name: Option<String>,
}

/// Something that happened to the cache that clients must be told about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Merged { from: NodeId, into: NodeId },
    Deleted(NodeId),
}

#[derive(Clone, Copy, Debug)]
struct DomainEntry {
    node: NodeId,
    expires: Option<Timestamp>,
}

#[derive(Default)]
pub struct NodeCache {
    nodes: BTreeMap<NodeId, Node>,
    last_id: NodeId,
    by_ip: HashMap<IpAddr, NodeId>,
    by_mac: HashMap<MacAddr, NodeId>,
    by_domain: HashMap<DomainKey, DomainEntry>,
    /// Nodes whose nodeInfo must be (re)published.
    modified: BTreeSet<NodeId>,
    /// Merges and deletions not yet announced.
    changes: Vec<Change>,
}

fn domain_key(name: &str) -> DomainKey {
    name.to_ascii_lowercase()
}

impl NodeCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(&id)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    pub fn by_ip(&self, ip: &IpAddr) -> Option<NodeId> {
        self.by_ip.get(ip).copied()
    }

    pub fn by_mac(&self, mac: &MacAddr) -> Option<NodeId> {
        self.by_mac.get(mac).copied()
    }

    /// The node carrying `name`, whether or not its TTL is still running.
    pub fn by_domain(&self, name: &str) -> Option<NodeId> {
        self.by_domain.get(&domain_key(name)).map(|e| e.node)
    }

    /// Devices ordered by MAC string (the order of `list_devices`).
    pub fn devices(&self) -> Vec<&Node> {
        let mut d: Vec<&Node> = self.by_mac.values().filter_map(|id| self.nodes.get(id)).collect();
        d.sort_by_key(|n| n.mac.map(|m| m.to_string()));
        d
    }

    /// Ids of nodes whose nodeInfo must be published, clearing the set.
    pub fn take_modified(&mut self) -> Vec<NodeId> {
        std::mem::take(&mut self.modified).into_iter().collect()
    }

    /// Ids of nodes whose nodeInfo must be published, leaving the set as it is.
    pub fn modified(&self) -> BTreeSet<NodeId> {
        self.modified.clone()
    }

    /// Puts back a set returned by [`NodeCache::modified`] (undoing a failed operation).
    pub fn restore_modified(&mut self, modified: BTreeSet<NodeId>) {
        self.modified = modified;
    }

    /// The flags and names of every node that has any.
    pub fn marks(&self) -> Vec<NodeMarks> {
        self.nodes
            .values()
            .filter(|n| n.name.is_some() || n.on_list.iter().any(|&f| f))
            .map(|n| NodeMarks { id: n.id, on_list: n.on_list, name: n.name.clone() })
            .collect()
    }

    /// Gives every node the flags and name `marks` says (none for a node it does not list),
    /// without marking anything modified: the state before an operation that could not be saved.
    pub fn restore_marks(&mut self, marks: &[NodeMarks]) {
        let by_id: HashMap<NodeId, &NodeMarks> = marks.iter().map(|m| (m.id, m)).collect();
        for n in self.nodes.values_mut() {
            match by_id.get(&n.id) {
                Some(m) => {
                    n.on_list = m.on_list;
                    n.name.clone_from(&m.name);
                }
                None => {
                    n.on_list = [false; 3];
                    n.name = None;
                }
            }
        }
    }

    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Refresh `last_seen` of the node with address `ip`, if any.
    pub fn touch_ip(&mut self, ip: &IpAddr, now: Timestamp) -> Option<NodeId> {
        let id = *self.by_ip.get(ip)?;
        if let Some(n) = self.nodes.get_mut(&id) {
            n.last_seen = n.last_seen.max(now);
        }
        Some(id)
    }

    /// Gives node `id` an address no node has yet. False if the node does not exist or the
    /// address is taken.
    pub fn add_ip(&mut self, id: NodeId, ip: IpAddr) -> bool {
        if self.by_ip.contains_key(&ip) {
            return false;
        }
        let Some(n) = self.nodes.get_mut(&id) else { return false };
        n.ips.insert(ip);
        self.by_ip.insert(ip, id);
        self.modified.insert(id);
        true
    }

    /// Refresh `last_seen` of node `id`.
    pub fn touch(&mut self, id: NodeId, now: Timestamp) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.last_seen = n.last_seen.max(now);
        }
    }

    pub fn set_name(&mut self, id: NodeId, name: Option<String>) -> bool {
        match self.nodes.get_mut(&id) {
            Some(n) if n.name != name => {
                n.name = name;
                self.modified.insert(id);
                true
            }
            _ => false,
        }
    }

    pub fn set_on_list(&mut self, id: NodeId, list: ListKind, on: bool) {
        if let Some(n) = self.nodes.get_mut(&id) {
            if n.on_list[list.index()] != on {
                n.on_list[list.index()] = on;
                self.modified.insert(id);
            }
        }
    }

    /// Clear a list flag on every node (used when a whole list is reset).
    pub fn clear_list_flags(&mut self, list: ListKind) {
        let ids: Vec<NodeId> = self.nodes.values().filter(|n| n.on_list(list)).map(|n| n.id).collect();
        for id in ids {
            self.set_on_list(id, list, false);
        }
    }

    /// Add an observation: create a node or merge it into the nodes it shares something with.
    /// Returns the id of the node that now holds everything. `now` decides which DNS names
    /// still glue.
    pub fn add(&mut self, cand: Candidate, now: Timestamp) -> NodeId {
        // An address claimed with a MAC other than its current device's moved to another device.
        if let Some(mac) = cand.mac {
            for ip in &cand.ips {
                if let Some(&holder) = self.by_ip.get(ip) {
                    let other_mac = self.nodes.get(&holder).and_then(|n| n.mac);
                    if other_mac.is_some_and(|m| m != mac) {
                        self.remove_ip(holder, ip);
                    }
                }
            }
        }

        let mut related: BTreeSet<NodeId> = BTreeSet::new();
        if let Some(id) = cand.mac.and_then(|m| self.by_mac.get(&m)) {
            related.insert(*id);
        }
        for ip in &cand.ips {
            if let Some(id) = self.by_ip.get(ip) {
                related.insert(*id);
            }
        }
        for (d, _) in &cand.domains {
            if let Some(e) = self.by_domain.get(&domain_key(d)) {
                if e.expires.is_none_or(|t| t >= now) {
                    related.insert(e.node);
                }
            }
        }

        let dest = match self.merge_target(&related, cand.mac) {
            Some(dest) => dest,
            None => {
                self.last_id += 1;
                let id = self.last_id;
                self.nodes.insert(
                    id,
                    Node {
                        id,
                        name: None,
                        mac: None,
                        ips: BTreeSet::new(),
                        domains: BTreeMap::new(),
                        on_list: [false; 3],
                        last_seen: cand.last_seen,
                    },
                );
                self.modified.insert(id);
                id
            }
        };

        // Merge every other related node into dest, except other devices (never merged).
        for other in related {
            if other == dest || self.nodes.get(&other).is_some_and(|n| n.is_device()) {
                continue;
            }
            self.merge_into(other, dest);
        }
        self.absorb(dest, cand);
        dest
    }

    /// The node everything merges into: devices first, then the lowest id. A candidate with a
    /// MAC is that device: its own node, else a non-device node to promote, never another device.
    fn merge_target(&self, related: &BTreeSet<NodeId>, cand_mac: Option<MacAddr>) -> Option<NodeId> {
        let is_device = |id: &NodeId| self.nodes[id].is_device();
        if let Some(m) = cand_mac {
            return self.by_mac.get(&m).copied().or_else(|| related.iter().copied().find(|id| !is_device(id)));
        }
        related.iter().copied().find(is_device).or_else(|| related.iter().copied().next())
    }

    /// Move everything of node `from` into `into` and forget `from`.
    fn merge_into(&mut self, from: NodeId, into: NodeId) {
        let Some(src) = self.nodes.remove(&from) else { return };
        self.modified.remove(&from);
        for ip in &src.ips {
            self.by_ip.insert(*ip, into);
        }
        if let Some(m) = src.mac {
            self.by_mac.insert(m, into);
        }
        for e in self.by_domain.values_mut() {
            if e.node == from {
                e.node = into;
            }
        }
        let dst = self.nodes.get_mut(&into).expect("merge target exists");
        if dst.name.is_none() {
            dst.name = src.name;
        }
        if dst.mac.is_none() {
            dst.mac = src.mac;
        }
        dst.last_seen = dst.last_seen.max(src.last_seen);
        for i in 0..3 {
            dst.on_list[i] |= src.on_list[i];
        }
        dst.ips.extend(src.ips);
        for (k, v) in src.domains {
            dst.domains.entry(k).or_insert(v);
        }
        self.modified.insert(into);
        self.changes.push(Change::Merged { from, into });
    }

    /// Put a candidate's facts into node `id`, indexing them; marks the node modified if it
    /// learned anything.
    fn absorb(&mut self, id: NodeId, cand: Candidate) {
        let mut changed = false;
        let node = self.nodes.get_mut(&id).expect("absorb into existing node");
        node.last_seen = node.last_seen.max(cand.last_seen);
        if node.mac.is_none() {
            if let Some(m) = cand.mac {
                node.mac = Some(m);
                self.by_mac.insert(m, id);
                changed = true;
            }
        }
        if node.name.is_none() && cand.name.is_some() {
            node.name = cand.name;
            changed = true;
        }
        for ip in cand.ips {
            if node.ips.insert(ip) {
                changed = true;
            }
            self.by_ip.insert(ip, id);
        }
        for (d, expires) in cand.domains {
            let key = domain_key(&d);
            if !node.domains.contains_key(&key) {
                node.domains.insert(key.clone(), d);
                changed = true;
            }
            let e = self.by_domain.entry(key).or_insert(DomainEntry { node: id, expires });
            if e.node == id {
                // A TTL-bound answer outranks a bare query binding (`None`); answers extend.
                e.expires = match (e.expires, expires) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (old, new) => old.or(new),
                };
            } else {
                *e = DomainEntry { node: id, expires };
            }
        }
        if changed {
            self.modified.insert(id);
        }
    }

    /// Takes `ip` away from node `id` (an address that moved to another device, or an
    /// operation undone).
    pub fn remove_ip(&mut self, id: NodeId, ip: &IpAddr) {
        if let Some(n) = self.nodes.get_mut(&id) {
            if n.ips.remove(ip) {
                self.modified.insert(id);
            }
        }
        if self.by_ip.get(ip) == Some(&id) {
            self.by_ip.remove(ip);
        }
    }

    /// Delete a node and its index entries (announced as `nodeDeleted`).
    pub fn delete(&mut self, id: NodeId) {
        let Some(n) = self.nodes.remove(&id) else { return };
        for ip in &n.ips {
            if self.by_ip.get(ip) == Some(&id) {
                self.by_ip.remove(ip);
            }
        }
        if let Some(m) = n.mac {
            if self.by_mac.get(&m) == Some(&id) {
                self.by_mac.remove(&m);
            }
        }
        self.by_domain.retain(|_, e| e.node != id);
        self.modified.remove(&id);
        self.changes.push(Change::Deleted(id));
    }

    /// Delete nodes not seen since `cutoff`, except devices and those `keep` protects
    /// (nodes in device flows or flow blocks). Also forgets expired DNS name bindings.
    pub fn expire(&mut self, cutoff: Timestamp, now: Timestamp, keep: &dyn Fn(NodeId) -> bool) {
        let old: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| n.last_seen < cutoff && !n.is_device() && !keep(n.id))
            .map(|n| n.id)
            .collect();
        for id in old {
            self.delete(id);
        }
        // Expired bindings no longer glue; dropping them bounds memory. The names stay on
        // their nodes for display.
        self.by_domain.retain(|_, e| e.expires.is_none_or(|t| t >= now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    fn flow_node(c: &mut NodeCache, a: &str, m: Option<&str>, t: Timestamp) -> NodeId {
        if let Some(id) = c.touch_ip(&ip(a), t) {
            return id;
        }
        c.add(Candidate { mac: m.map(mac), ips: vec![ip(a)], last_seen: t, ..Default::default() }, t)
    }

    fn answer(c: &mut NodeCache, name: &str, a: &str, t: Timestamp) -> NodeId {
        c.add(
            Candidate {
                ips: vec![ip(a)],
                domains: vec![(name.to_string(), Some(t + 1234))],
                last_seen: t,
                ..Default::default()
            },
            t,
        )
    }

    fn ips(c: &NodeCache, id: NodeId) -> Vec<String> {
        c.get(id).unwrap().ips.iter().map(|i| i.to_string()).collect()
    }

    /// Reference §3.2's verified walkthrough of the original node cache.
    #[test]
    fn merge_walkthrough_of_the_reference() {
        let mut c = NodeCache::new();
        // step 1: flow 192.168.1.10 -> 8.8.8.8; the device has an ARP entry.
        let dev = flow_node(&mut c, "192.168.1.10", Some("aa:bb:cc:dd:ee:ff"), 1000);
        let remote = flow_node(&mut c, "8.8.8.8", None, 1000);
        assert_eq!((dev, remote), (1, 2));
        assert_eq!(c.get(1).unwrap().mac, Some(mac("aa:bb:cc:dd:ee:ff")));
        assert_eq!(c.take_modified(), vec![1, 2]);

        // step 2: answer www.Example.com -> 8.8.8.8 at 2000 adds the name to node 2.
        assert_eq!(answer(&mut c, "www.Example.com.", "8.8.8.8", 2000), 2);
        assert_eq!(c.get(2).unwrap().sorted_domains(), ["www.Example.com."]);
        assert_eq!(c.get(2).unwrap().last_seen, 2000);

        // step 3: query other.example from the device: a domain-only node 3.
        let q = c.add(
            Candidate { domains: vec![("other.example.".into(), None)], last_seen: 3000, ..Default::default() },
            3000,
        );
        assert_eq!(q, 3);
        assert!(c.get(3).unwrap().ips.is_empty());

        // step 4: answers other.example -> 8.8.4.4 and 2001:db8::1 go to node 3.
        assert_eq!(answer(&mut c, "other.example.", "8.8.4.4", 3000), 3);
        assert_eq!(answer(&mut c, "other.example.", "2001:db8::1", 3000), 3);
        assert_eq!(ips(&c, 3), ["8.8.4.4", "2001:db8::1"]);

        // step 5: a.b -> 8.8.8.8 then a.b -> 8.8.4.4 glues 3 into 2.
        c.take_changes();
        assert_eq!(answer(&mut c, "a.b.", "8.8.8.8", 3000), 2);
        assert_eq!(answer(&mut c, "a.b.", "8.8.4.4", 3000), 2);
        assert_eq!(c.take_changes(), vec![Change::Merged { from: 3, into: 2 }]);
        let n2 = c.get(2).unwrap();
        assert_eq!(ips(&c, 2), ["8.8.4.4", "8.8.8.8", "2001:db8::1"]);
        assert_eq!(n2.sorted_domains(), ["a.b.", "other.example.", "www.Example.com."]);
        assert_eq!(n2.last_seen, 3000);
        assert!(c.get(3).is_none());
        assert_eq!(c.by_ip(&ip("2001:db8::1")), Some(2));
        assert_eq!(c.by_domain("OTHER.example."), Some(2));

        // step 6: flow 10.0.0.5 (no MAC) -> 8.8.4.4: new node 4.
        assert_eq!(flow_node(&mut c, "10.0.0.5", None, 1000), 4);
        assert_eq!(flow_node(&mut c, "8.8.4.4", None, 1000), 2);

        // step 7: expire everything older than 2500 (our last_seen is the max, so node 2 at
        // 3000 survives where SPIN's overwritten 1000 did not; node 4 goes, the device stays).
        c.expire(2500, 3000, &|_| false);
        assert_eq!(c.take_changes(), vec![Change::Deleted(4)]);
        c.expire(3500, 3500, &|_| false);
        assert_eq!(c.take_changes(), vec![Change::Deleted(2)]);
        assert!(c.get(1).is_some(), "devices are never expired");
        assert_eq!(c.by_ip(&ip("8.8.8.8")), None);
    }

    #[test]
    fn devices_survive_merges_with_lower_ids() {
        let mut c = NodeCache::new();
        let remote = flow_node(&mut c, "192.168.1.20", None, 10);
        let dev = c.add(
            Candidate {
                mac: Some(mac("02:00:00:00:00:01")),
                ips: vec![ip("fe80::1")],
                last_seen: 11,
                ..Default::default()
            },
            11,
        );
        // The neighbour table now tells 192.168.1.20 belongs to that MAC.
        let merged = c.add(
            Candidate {
                mac: Some(mac("02:00:00:00:00:01")),
                ips: vec![ip("192.168.1.20")],
                last_seen: 12,
                ..Default::default()
            },
            12,
        );
        assert_eq!(merged, dev);
        assert_eq!(c.take_changes(), vec![Change::Merged { from: remote, into: dev }]);
        assert_eq!(ips(&c, dev), ["192.168.1.20", "fe80::1"]);
    }

    #[test]
    fn an_address_that_moves_to_another_device_is_not_a_merge() {
        let mut c = NodeCache::new();
        let a = flow_node(&mut c, "192.168.1.50", Some("02:00:00:00:00:0a"), 1);
        let b = c.add(
            Candidate {
                mac: Some(mac("02:00:00:00:00:0b")),
                ips: vec![ip("192.168.1.50")],
                last_seen: 2,
                ..Default::default()
            },
            2,
        );
        assert_ne!(a, b);
        assert!(c.take_changes().is_empty());
        assert!(c.get(a).unwrap().ips.is_empty());
        assert_eq!(c.by_ip(&ip("192.168.1.50")), Some(b));
    }

    #[test]
    fn expired_dns_names_no_longer_glue_nodes() {
        let mut c = NodeCache::new();
        let first = c.add(
            Candidate {
                ips: vec![ip("192.0.2.1")],
                domains: vec![("cdn.test.".into(), Some(100))],
                last_seen: 40,
                ..Default::default()
            },
            40,
        );
        // Within the TTL the same name on another address is the same service.
        let same = c.add(
            Candidate {
                ips: vec![ip("192.0.2.2")],
                domains: vec![("cdn.test.".into(), Some(150))],
                last_seen: 90,
                ..Default::default()
            },
            90,
        );
        assert_eq!(first, same);
        // After the (extended) TTL, a new address for the name is a different server.
        let later = c.add(
            Candidate {
                ips: vec![ip("192.0.2.3")],
                domains: vec![("cdn.test.".into(), Some(500))],
                last_seen: 200,
                ..Default::default()
            },
            200,
        );
        assert_ne!(later, first);
        assert!(c.take_changes().is_empty());
        assert_eq!(c.get(first).unwrap().sorted_domains(), ["cdn.test."]);
        assert_eq!(c.by_domain("cdn.test."), Some(later));
    }

    #[test]
    fn devices_are_listed_by_mac_and_domains_sort_by_length_then_case_insensitively() {
        let mut c = NodeCache::new();
        flow_node(&mut c, "192.168.1.3", Some("bb:00:00:00:00:01"), 1);
        flow_node(&mut c, "192.168.1.4", Some("aa:00:00:00:00:01"), 1);
        let macs: Vec<String> = c.devices().iter().map(|n| n.mac.unwrap().to_string()).collect();
        assert_eq!(macs, ["aa:00:00:00:00:01", "bb:00:00:00:00:01"]);

        let id = answer(&mut c, "b.example.", "192.0.2.9", 1);
        answer(&mut c, "A.example.", "192.0.2.9", 1);
        answer(&mut c, "zz.", "192.0.2.9", 1);
        answer(&mut c, "a.EXAMPLE.", "192.0.2.9", 1);
        assert_eq!(c.get(id).unwrap().sorted_domains(), ["zz.", "A.example.", "b.example."]);
    }
}
