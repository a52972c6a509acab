//! The block, ignore and allow lists: sets of addresses and prefixes, persisted as
//! `<state_dir>/<list>.list` (one entry per line, SPIN's format; a prefix keeps its `/len`).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use crate::model::addr::IpNet;
use crate::model::nodes::ListKind;
use crate::model::persist::atomic_write;

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

    /// Reads a list file; a missing file is an empty list. Bad lines are reported, not fatal.
    /// As SPIN, a last line without its newline is ignored (it may be a torn write by an
    /// older tool).
    pub fn load(path: &Path) -> (IpList, Vec<String>) {
        let mut list = IpList::default();
        let mut warnings = Vec::new();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (list, warnings),
            Err(e) => {
                warnings.push(format!("{}: cannot read: {e}", path.display()));
                return (list, warnings);
            }
        };
        let complete = match text.rfind('\n') {
            Some(i) => &text[..i],
            None => "",
        };
        for (no, line) in complete.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.parse::<IpNet>() {
                Ok(net) => {
                    list.add(net);
                }
                Err(e) => warnings.push(format!("{}:{}: {e}", path.display(), no + 1)),
            }
        }
        (list, warnings)
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut text = String::new();
        for e in &self.entries {
            text.push_str(&e.to_string());
            text.push('\n');
        }
        atomic_write(path, text.as_bytes())
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

    #[test]
    fn files_round_trip_and_skip_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("block.list");
        std::fs::write(&p, "192.0.2.1\nnonsense\n2001:DB8::1:2\n10.0.0.0/8\n192.0.2.9").unwrap();
        let (l, warnings) = IpList::load(&p);
        assert_eq!(l.to_strings(), ["10.0.0.0/8", "192.0.2.1", "2001:db8::1:2"]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains(":2:"), "{warnings:?}");
        l.save(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "10.0.0.0/8\n192.0.2.1\n2001:db8::1:2\n");
    }
}
