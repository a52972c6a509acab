//! The block, ignore and allow lists: sets of addresses and prefixes. They are persisted as
//! `<state_dir>/<list>.list` by [`persist`](crate::model::persist) (one entry per line, SPIN's
//! format; a prefix keeps its `/len`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::model::addr::IpNet;
use crate::model::nodes::ListKind;

#[derive(Default, Debug, Clone)]
pub struct IpList {
    entries: BTreeSet<IpNet>,
    /// Entries that are not single addresses, checked one by one (usually none).
    prefixes: Vec<IpNet>,
}

impl IpList {
    pub fn add(&mut self, net: IpNet) -> bool {
        let added = self.entries.insert(net);
        if added && !net.is_host() {
            self.prefixes.push(net);
        }
        added
    }

    pub fn remove(&mut self, net: &IpNet) -> bool {
        let removed = self.entries.remove(net);
        self.prefixes.retain(|p| p != net);
        removed
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.prefixes.clear();
    }

    /// Whether `ip` is on the list, as an address or inside a prefix.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.entries.contains(&IpNet::host(*ip)) || self.prefixes.iter().any(|p| p.contains(ip))
    }

    pub fn entries(&self) -> impl Iterator<Item = &IpNet> {
        self.entries.iter()
    }

    /// Entries as printed in messages and files, sorted IPv4 first.
    pub fn to_strings(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.to_string()).collect()
    }
}

/// The three lists together.
#[derive(Default, Debug, Clone)]
pub struct Lists {
    lists: [IpList; 3],
}

impl Lists {
    pub fn get(&self, kind: ListKind) -> &IpList {
        &self.lists[kind as usize]
    }

    pub fn get_mut(&mut self, kind: ListKind) -> &mut IpList {
        &mut self.lists[kind as usize]
    }
}

/// SPIN matches list names by prefix (`"b"`, even `""`, means block); kept for compatibility.
pub fn list_by_prefix(name: &str) -> Option<ListKind> {
    ListKind::ALL.into_iter().find(|k| k.name().starts_with(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn order_membership_and_prefixes() {
        let mut l = IpList::default();
        for s in ["2001:db8::1", "192.0.2.3", "::1", "192.0.2.1"] {
            assert!(l.add(net(s)));
        }
        assert!(!l.add(net("192.0.2.1")), "no duplicates");
        assert_eq!(l.to_strings(), ["192.0.2.1", "192.0.2.3", "::1", "2001:db8::1"]);
        l.add(net("198.51.100.0/24"));
        assert!(l.contains(&"198.51.100.77".parse().unwrap()));
        assert!(!l.contains(&"198.51.101.1".parse().unwrap()));
        assert!(l.remove(&net("198.51.100.0/24")));
        assert!(!l.contains(&"198.51.100.77".parse().unwrap()));
    }

    #[test]
    fn list_names_match_by_prefix_like_spin() {
        assert_eq!(list_by_prefix("block"), Some(ListKind::Block));
        assert_eq!(list_by_prefix("b"), Some(ListKind::Block));
        assert_eq!(list_by_prefix(""), Some(ListKind::Block));
        assert_eq!(list_by_prefix("ign"), Some(ListKind::Ignore));
        assert_eq!(list_by_prefix("allow"), Some(ListKind::Allow));
        assert_eq!(list_by_prefix("blocks"), None);
        assert_eq!(list_by_prefix("x"), None);
    }
}
