//! The household's flow-block decisions (`set_flow_block`): the node pairs it blocked, and the
//! pairs it unblocked again, each with the order in which it was decided.
//!
//! Node ids change when nodes merge. A merge can make two decisions about the same pair meet
//! (the pair A–C was blocked, B–C unblocked, and A merges into B): the later decision wins, so
//! a merge never brings back a block the user lifted after it, nor lifts a block the user set
//! after an unblock. An unblock is remembered only where it undid a block, and forgotten with its
//! nodes.

use std::collections::BTreeMap;

use crate::model::nodes::NodeId;
use crate::model::persist::StoredPair;

/// A pair of nodes, smaller id first.
pub type Pair = (NodeId, NodeId);

/// A pair in canonical order.
pub fn pair(a: NodeId, b: NodeId) -> Pair {
    (a.min(b), a.max(b))
}

/// Blocked and unblocked pairs, each with the sequence number of its decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowDecisions {
    blocked: BTreeMap<Pair, u64>,
    unblocked: BTreeMap<Pair, u64>,
    last: u64,
}

impl FlowDecisions {
    pub fn is_blocked(&self, p: &Pair) -> bool {
        self.blocked.contains_key(p)
    }

    /// The blocked pairs in id order.
    pub fn blocked(&self) -> impl Iterator<Item = Pair> + '_ {
        self.blocked.keys().copied()
    }

    /// Whether node `id` takes part in any decision (so it must survive a restart).
    pub fn involves(&self, id: NodeId) -> bool {
        self.blocked.keys().chain(self.unblocked.keys()).any(|&(a, b)| a == id || b == id)
    }

    /// Whether node `id` is in a blocked pair.
    pub fn blocks(&self, id: NodeId) -> bool {
        self.blocked.keys().any(|&(a, b)| a == id || b == id)
    }

    /// The user blocks (`true`) or unblocks a pair. False if that changes nothing.
    pub fn decide(&mut self, p: Pair, block: bool) -> bool {
        let changed = if block { !self.blocked.contains_key(&p) } else { self.blocked.contains_key(&p) };
        if !changed {
            return false;
        }
        self.last += 1;
        if block {
            self.unblocked.remove(&p);
            self.blocked.insert(p, self.last);
        } else {
            self.blocked.remove(&p);
            self.unblocked.insert(p, self.last);
        }
        true
    }

    /// Node `from` was merged into `into`: its decisions become `into`'s; where a pair now has
    /// two, the later one wins. True if anything changed.
    pub fn renumber(&mut self, from: NodeId, into: NodeId) -> bool {
        let moved = |m: &mut BTreeMap<Pair, u64>| -> Vec<(Pair, u64)> {
            let keys: Vec<Pair> = m.keys().filter(|(a, b)| *a == from || *b == from).copied().collect();
            keys.into_iter().map(|k| (k, m.remove(&k).unwrap_or(0))).collect()
        };
        let blocks = moved(&mut self.blocked);
        let unblocks = moved(&mut self.unblocked);
        if blocks.is_empty() && unblocks.is_empty() {
            return false;
        }
        let remap = |id: NodeId| if id == from { into } else { id };
        for ((a, b), seq, block) in
            blocks.into_iter().map(|(p, s)| (p, s, true)).chain(unblocks.into_iter().map(|(p, s)| (p, s, false)))
        {
            let (a, b) = (remap(a), remap(b));
            if a != b {
                self.place(pair(a, b), seq, block);
            }
        }
        true
    }

    /// Puts a decision on a pair unless a later opposite one is there.
    fn place(&mut self, p: Pair, seq: u64, block: bool) {
        let (mine, other) =
            if block { (&mut self.blocked, &mut self.unblocked) } else { (&mut self.unblocked, &mut self.blocked) };
        if other.get(&p).is_some_and(|&o| o > seq) {
            return;
        }
        other.remove(&p);
        let e = mine.entry(p).or_insert(seq);
        *e = (*e).max(seq);
    }

    /// Node `id` is gone: its unblocks are forgotten (blocks keep their nodes alive).
    pub fn forget(&mut self, id: NodeId) -> bool {
        let before = self.blocked.len() + self.unblocked.len();
        self.blocked.retain(|(a, b), _| *a != id && *b != id);
        self.unblocked.retain(|(a, b), _| *a != id && *b != id);
        before != self.blocked.len() + self.unblocked.len()
    }

    /// The decisions as stored (`nodepair.list`, `nodeunpair.list`), in the order they were taken.
    pub fn stored(&self) -> (Vec<StoredPair>, Vec<StoredPair>) {
        let list = |m: &BTreeMap<Pair, u64>| {
            let mut v: Vec<StoredPair> = m.iter().map(|(&(a, b), &seq)| StoredPair { a, b, seq }).collect();
            v.sort_by_key(|p| (p.seq, p.a, p.b));
            v
        };
        (list(&self.blocked), list(&self.unblocked))
    }

    /// Decisions read back at start, with the nodes' new ids (`remap` gives `None` for a node
    /// that was not restored: its decisions are dropped).
    pub fn restore(
        pairs: &[StoredPair],
        unpairs: &[StoredPair],
        remap: impl Fn(NodeId) -> Option<NodeId>,
    ) -> FlowDecisions {
        let mut d = FlowDecisions::default();
        for (list, block) in [(unpairs, false), (pairs, true)] {
            for sp in list {
                if let (Some(a), Some(b)) = (remap(sp.a), remap(sp.b)) {
                    if a != b {
                        d.place(pair(a, b), sp.seq, block);
                        d.last = d.last.max(sp.seq);
                    }
                }
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_keeps_the_later_of_two_decisions_on_a_pair() {
        // Block 1-3, then block 2-3 and unblock it again: 2-3 was decided last.
        let mut d = FlowDecisions::default();
        assert!(d.decide(pair(1, 3), true));
        assert!(d.decide(pair(3, 2), true));
        assert!(d.decide(pair(2, 3), false));
        assert!(!d.decide(pair(2, 3), false), "nothing to unblock");
        // 1 merges into 2: the older block 1-3 does not undo the later unblock of 2-3.
        assert!(d.renumber(1, 2));
        assert!(!d.is_blocked(&pair(2, 3)));
        assert_eq!(d.blocked().count(), 0);

        // The other way round: an unblock older than a block does not lift the block.
        let mut d = FlowDecisions::default();
        d.decide(pair(1, 3), true);
        d.decide(pair(1, 3), false);
        d.decide(pair(2, 3), true);
        d.renumber(1, 2);
        assert!(d.is_blocked(&pair(2, 3)));
        // A pair whose two nodes merge is no pair any more.
        d.renumber(3, 2);
        assert_eq!(d, FlowDecisions { last: 3, ..Default::default() });
    }

    #[test]
    fn decisions_round_trip_through_their_files_in_order() {
        let mut d = FlowDecisions::default();
        d.decide(pair(5, 9), true);
        d.decide(pair(1, 2), true);
        d.decide(pair(1, 2), false);
        let (pairs, unpairs) = d.stored();
        assert_eq!(pairs, [StoredPair { a: 5, b: 9, seq: 1 }]);
        assert_eq!(unpairs, [StoredPair { a: 1, b: 2, seq: 3 }]);
        let back = FlowDecisions::restore(&pairs, &unpairs, |id| Some(id + 100));
        assert!(back.is_blocked(&pair(105, 109)));
        assert!(back.involves(101) && !back.blocks(101));
        // A node that did not come back takes its decisions with it; so does one that goes.
        let mut dropped = FlowDecisions::restore(&pairs, &unpairs, |id| (id != 9).then_some(id));
        assert_eq!(dropped.blocked().count(), 0);
        assert!(dropped.involves(2));
        assert!(dropped.forget(1));
        assert!(!dropped.involves(2));
    }
}
