//! Detection metrics as pure functions: average precision, ROC-AUC, TPR at
//! a fixed FPR, false positives at a given recall. Ties are handled as one
//! threshold step (a tied group is either all above or all below it).
//!
//! [`ScoreHistogram`] holds scores quantised to 1e-4 so that millions of
//! scored events evaluate in memory bounded by the number of distinct scores.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Positives and negatives sharing one score, groups sorted by score descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Group {
    /// Labelled positives at this score.
    pub pos: u64,
    /// Negatives at this score.
    pub neg: u64,
}

/// Scores grouped by quantised value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScoreHistogram {
    groups: BTreeMap<i64, Group>,
}

const QUANTUM: f64 = 1e4;

impl ScoreHistogram {
    /// Adds one scored item.
    pub fn add(&mut self, score: f64, positive: bool) {
        let q = if score.is_finite() {
            (score * QUANTUM).round() as i64
        } else if score > 0.0 {
            i64::MAX
        } else {
            i64::MIN
        };
        let g = self.groups.entry(q).or_default();
        if positive {
            g.pos += 1;
        } else {
            g.neg += 1;
        }
    }

    /// Groups, highest score first.
    pub fn groups(&self) -> Vec<Group> {
        self.groups.values().rev().copied().collect()
    }

    /// Total positives.
    pub fn positives(&self) -> u64 {
        self.groups.values().map(|g| g.pos).sum()
    }

    /// Total items.
    pub fn len(&self) -> u64 {
        self.groups.values().map(|g| g.pos + g.neg).sum()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// All metrics at once.
    pub fn metrics(&self, days: f64) -> Metrics {
        Metrics::from_groups(&self.groups(), days)
    }
}

/// Groups exact scores (no quantisation), highest first.
pub fn group_scores(items: &[(f64, bool)]) -> Vec<Group> {
    let mut v: Vec<(f64, bool)> = items.to_vec();
    v.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out: Vec<Group> = Vec::new();
    let mut last: Option<f64> = None;
    for (s, p) in v {
        if last != Some(s) {
            out.push(Group::default());
            last = Some(s);
        }
        let g = out.last_mut().expect("pushed above");
        if p {
            g.pos += 1;
        } else {
            g.neg += 1;
        }
    }
    out
}

fn totals(groups: &[Group]) -> (f64, f64) {
    let p: u64 = groups.iter().map(|g| g.pos).sum();
    let n: u64 = groups.iter().map(|g| g.neg).sum();
    (p as f64, n as f64)
}

/// Average precision: Σ (R_k − R_{k−1}) · P_k over threshold steps. None
/// without positives.
pub fn average_precision(groups: &[Group]) -> Option<f64> {
    let (p, _) = totals(groups);
    if p == 0.0 {
        return None;
    }
    let (mut tp, mut fp, mut ap) = (0.0, 0.0, 0.0);
    for g in groups {
        tp += g.pos as f64;
        fp += g.neg as f64;
        if g.pos > 0 {
            ap += (g.pos as f64 / p) * (tp / (tp + fp));
        }
    }
    Some(ap)
}

/// Area under the ROC curve (trapezoids; ties count one half). None unless
/// both classes are present.
pub fn roc_auc(groups: &[Group]) -> Option<f64> {
    let (p, n) = totals(groups);
    if p == 0.0 || n == 0.0 {
        return None;
    }
    let (mut tp, mut auc) = (0.0, 0.0);
    for g in groups {
        // each negative in this group ranks below `tp` positives and ties
        // with `g.pos` of them
        auc += g.neg as f64 * (tp + g.pos as f64 / 2.0);
        tp += g.pos as f64;
    }
    Some(auc / (p * n))
}

/// Highest TPR reachable with FPR ≤ `max_fpr`. None unless both classes exist.
pub fn tpr_at_fpr(groups: &[Group], max_fpr: f64) -> Option<f64> {
    let (p, n) = totals(groups);
    if p == 0.0 || n == 0.0 {
        return None;
    }
    let (mut tp, mut fp, mut best) = (0.0, 0.0, 0.0);
    for g in groups {
        tp += g.pos as f64;
        fp += g.neg as f64;
        if fp / n <= max_fpr {
            best = tp / p;
        } else {
            break;
        }
    }
    Some(best)
}

/// False positives at the highest threshold whose recall reaches `recall`.
pub fn fp_at_recall(groups: &[Group], recall: f64) -> Option<u64> {
    let (p, _) = totals(groups);
    if p == 0.0 {
        return None;
    }
    let (mut tp, mut fp) = (0u64, 0u64);
    for g in groups {
        tp += g.pos;
        fp += g.neg;
        if tp as f64 / p >= recall - 1e-12 {
            return Some(fp);
        }
    }
    Some(fp)
}

/// The metrics `vigil eval` prints.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Metrics {
    /// Items scored.
    pub n: u64,
    /// Labelled positives among them.
    pub positives: u64,
    /// Average precision (main metric).
    pub ap: Option<f64>,
    /// ROC-AUC.
    pub roc_auc: Option<f64>,
    /// TPR at FPR ≤ 0.1 %.
    pub tpr_at_fpr_0_1pct: Option<f64>,
    /// TPR at FPR ≤ 1 %.
    pub tpr_at_fpr_1pct: Option<f64>,
    /// False positives per day at 80 % recall.
    pub fp_per_day_at_80_recall: Option<f64>,
}

impl Metrics {
    /// Computes every metric; `days` scales false positives to per day.
    pub fn from_groups(groups: &[Group], days: f64) -> Metrics {
        let (p, n) = totals(groups);
        Metrics {
            n: (p + n) as u64,
            positives: p as u64,
            ap: average_precision(groups),
            roc_auc: roc_auc(groups),
            tpr_at_fpr_0_1pct: tpr_at_fpr(groups, 0.001),
            tpr_at_fpr_1pct: tpr_at_fpr(groups, 0.01),
            fp_per_day_at_80_recall: fp_at_recall(groups, 0.8).map(|fp| fp as f64 / days.max(1e-9)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(items: &[(f64, bool)]) -> Vec<Group> {
        group_scores(items)
    }

    #[test]
    fn perfect_ranking() {
        let gs = g(&[(0.9, true), (0.8, true), (0.1, false), (0.0, false)]);
        assert_eq!(average_precision(&gs), Some(1.0));
        assert_eq!(roc_auc(&gs), Some(1.0));
        assert_eq!(tpr_at_fpr(&gs, 0.0), Some(1.0));
        assert_eq!(fp_at_recall(&gs, 0.8), Some(0));
    }

    #[test]
    fn hand_computed_mixed_ranking() {
        // ranking: + - + - -   (P=2, N=3)
        // AP = 1/2 * 1/1 + 1/2 * 2/3 = 0.8333…
        // AUC: pos1 beats 3 negs, pos2 beats 2 → 5/6
        let gs = g(&[
            (5.0, true),
            (4.0, false),
            (3.0, true),
            (2.0, false),
            (1.0, false),
        ]);
        assert!((average_precision(&gs).unwrap() - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
        assert!((roc_auc(&gs).unwrap() - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(tpr_at_fpr(&gs, 0.0), Some(0.5));
        assert_eq!(tpr_at_fpr(&gs, 1.0 / 3.0), Some(1.0));
        assert_eq!(fp_at_recall(&gs, 0.8), Some(1));
        assert_eq!(fp_at_recall(&gs, 0.5), Some(0));
    }

    #[test]
    fn ties_are_one_step() {
        // binary scores like the first-time baseline: 1 for (+,+,-), 0 for (+,-,-,-)
        // AP = (2/3)·(2/3) + (1/3)·(3/7) = 4/9 + 1/7
        // AUC = [neg at 1: ties with 2 pos → 1; negs at 0: beat by 2, tie 1 → 2.5 each ×3]
        //     = (1 + 7.5) / (3·4) = 8.5/12
        let gs = g(&[
            (1.0, true),
            (1.0, true),
            (1.0, false),
            (0.0, true),
            (0.0, false),
            (0.0, false),
            (0.0, false),
        ]);
        assert!((average_precision(&gs).unwrap() - (4.0 / 9.0 + 1.0 / 7.0)).abs() < 1e-12);
        assert!((roc_auc(&gs).unwrap() - 8.5 / 12.0).abs() < 1e-12);
        assert_eq!(fp_at_recall(&gs, 0.8), Some(4));
        assert_eq!(tpr_at_fpr(&gs, 0.2), Some(0.0));
        assert_eq!(tpr_at_fpr(&gs, 0.25), Some(2.0 / 3.0));
    }

    #[test]
    fn histogram_matches_exact_grouping() {
        let items = [
            (0.5, true),
            (0.25, false),
            (0.5, false),
            (0.75, true),
            (0.1, false),
        ];
        let mut h = ScoreHistogram::default();
        for (s, p) in items {
            h.add(s, p);
        }
        assert_eq!(h.groups(), g(&items));
        let m = h.metrics(2.0);
        assert_eq!(m.n, 5);
        assert_eq!(m.positives, 2);
        // fp at 80% recall: need both positives → threshold 0.5 → 1 FP / 2 days
        assert_eq!(m.fp_per_day_at_80_recall, Some(0.5));
    }

    proptest::proptest! {
        #[test]
        fn metrics_are_bounded_and_rank_invariant(
            items in proptest::collection::vec((0u32..50, proptest::bool::ANY), 1..200)
        ) {
            let exact: Vec<(f64, bool)> = items.iter().map(|(s, l)| (f64::from(*s), *l)).collect();
            // a strictly increasing transform of the scores changes nothing
            let moved: Vec<(f64, bool)> = exact.iter().map(|(s, l)| (s.exp() + 3.0, *l)).collect();
            let (a, b) = (g(&exact), g(&moved));
            proptest::prop_assert_eq!(a.clone(), b.clone());
            if let Some(ap) = average_precision(&a) {
                proptest::prop_assert!((0.0..=1.0 + 1e-12).contains(&ap));
            }
            if let Some(auc) = roc_auc(&a) {
                proptest::prop_assert!((0.0..=1.0 + 1e-12).contains(&auc));
                // reversing every score mirrors the AUC
                let rev: Vec<(f64, bool)> = exact.iter().map(|(s, l)| (-s, *l)).collect();
                let mirrored = roc_auc(&g(&rev)).unwrap();
                proptest::prop_assert!((auc + mirrored - 1.0).abs() < 1e-9);
            }
            let mut h = ScoreHistogram::default();
            for (s, l) in &exact {
                h.add(*s, *l);
            }
            proptest::prop_assert_eq!(h.groups(), a);
        }
    }

    #[test]
    fn no_positives_gives_none() {
        let gs = g(&[(1.0, false)]);
        assert_eq!(average_precision(&gs), None);
        assert_eq!(roc_auc(&gs), None);
    }
}
