//! The set of sequence numbers stored for one host, as sorted disjoint
//! inclusive ranges. Sensors send gap-free seqs in order, so this is almost
//! always a single range: dedupe costs no read and a few bytes per host.

use serde::{Deserialize, Serialize};

/// Sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqSet {
    ranges: Vec<(u64, u64)>,
}

impl SeqSet {
    /// Whether `seq` is in the set.
    pub fn contains(&self, seq: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.1 < seq);
        self.ranges.get(i).is_some_and(|r| r.0 <= seq)
    }

    /// Add one seq; returns false if it was already present.
    pub fn insert(&mut self, seq: u64) -> bool {
        if let Some(last) = self.ranges.last_mut() {
            if last.1.checked_add(1) == Some(seq) {
                last.1 = seq;
                return true;
            }
        }
        if self.contains(seq) {
            return false;
        }
        self.insert_range(seq, seq);
        true
    }

    /// Add `from..=to` (merging with neighbours).
    pub fn insert_range(&mut self, from: u64, to: u64) {
        if from > to {
            return;
        }
        let (mut lo, mut hi) = (from, to);
        let mut kept = Vec::with_capacity(self.ranges.len() + 1);
        let mut placed = false;
        for &(a, b) in &self.ranges {
            if b.saturating_add(1) < lo {
                kept.push((a, b));
            } else if hi.saturating_add(1) < a {
                if !placed {
                    kept.push((lo, hi));
                    placed = true;
                }
                kept.push((a, b));
            } else {
                lo = lo.min(a);
                hi = hi.max(b);
            }
        }
        if !placed {
            kept.push((lo, hi));
        }
        self.ranges = kept;
    }

    /// Highest `n` such that every seq in `1..=n` is in the set (0 if seq 1 is missing).
    pub fn contiguous_from_one(&self) -> u64 {
        match self.ranges.first() {
            Some(&(a, b)) if a <= 1 => b,
            _ => 0,
        }
    }

    /// How many seqs the set holds.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(a, b)| b - a + 1).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges, ascending.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_inserts_stay_one_range() {
        let mut s = SeqSet::default();
        for seq in 1..=1000 {
            assert!(s.insert(seq));
        }
        assert!(!s.insert(500));
        assert_eq!(s.ranges(), &[(1, 1000)]);
        assert_eq!(s.contiguous_from_one(), 1000);
    }

    #[test]
    fn gaps_are_kept_and_closed() {
        let mut s = SeqSet::default();
        s.insert_range(1, 10);
        s.insert_range(20, 30);
        assert_eq!(s.contiguous_from_one(), 10);
        assert!(!s.contains(15));
        s.insert_range(11, 19);
        assert_eq!(s.ranges(), &[(1, 30)]);
    }

    proptest! {
        #[test]
        fn behaves_like_a_hash_set(seqs in proptest::collection::vec(1u64..200, 0..300)) {
            let mut s = SeqSet::default();
            let mut model = std::collections::BTreeSet::new();
            for q in seqs {
                prop_assert_eq!(s.insert(q), model.insert(q));
            }
            for q in 0..210 {
                prop_assert_eq!(s.contains(q), model.contains(&q));
            }
            prop_assert_eq!(s.len(), model.len() as u64);
            for w in s.ranges().windows(2) {
                prop_assert!(w[0].1 + 1 < w[1].0);
            }
        }
    }
}
