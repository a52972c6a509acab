//! Diagnostic counters published retained on `SPIN/stat/<module>/<name>` (reference §1.5).

use std::collections::BTreeMap;

/// `type` 0: a running total; 1: a maximum.
#[derive(Clone, Copy, Debug, Default)]
struct Counter {
    kind: u8,
    value: u64,
    count: u64,
    published_count: u64,
}

#[derive(Default, Debug)]
pub struct Stats {
    counters: BTreeMap<(&'static str, &'static str), Counter>,
}

impl Stats {
    /// Adds `value` to a running total and counts the event.
    pub fn add(&mut self, module: &'static str, name: &'static str, value: u64) {
        let c = self.counters.entry((module, name)).or_default();
        c.value += value;
        c.count += 1;
    }

    /// Records a sample of a maximum.
    pub fn set_max(&mut self, module: &'static str, name: &'static str, value: u64) {
        let c = self.counters.entry((module, name)).or_insert(Counter { kind: 1, ..Default::default() });
        c.value = c.value.max(value);
        c.count += 1;
    }

    /// Counters that changed since the last call: (module, name, type, value, count).
    pub fn take_changed(&mut self) -> Vec<(&'static str, &'static str, u8, u64, u64)> {
        let mut out = Vec::new();
        for (&(m, n), c) in self.counters.iter_mut() {
            if c.count != c.published_count {
                c.published_count = c.count;
                out.push((m, n, c.kind, c.value, c.count));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_counters_are_reported() {
        let mut s = Stats::default();
        s.add("dns", "queries", 1);
        s.add("dns", "queries", 1);
        s.set_max("node_cache", "nodes", 5);
        s.set_max("node_cache", "nodes", 3);
        assert_eq!(s.take_changed(), vec![("dns", "queries", 0, 2, 2), ("node_cache", "nodes", 1, 5, 2)]);
        assert!(s.take_changed().is_empty());
        s.add("dns", "queries", 4);
        assert_eq!(s.take_changed(), vec![("dns", "queries", 0, 6, 3)]);
    }
}
