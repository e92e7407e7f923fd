//! Analyst feedback: suppressions (with a preview over the kept alert
//! history), the bounded alert history itself, and verdicts — a true positive
//! is excluded from training and its hops are taken out of the fleet graph;
//! every verdict also trains the fleet's re-ranker ([`Learning`]).

use super::{Detector, Verdict, NS_PER_HOUR};
use crate::alert::{Alert, AlertKind};
use crate::error::ModelError;
use crate::graph::HopKeys;
use crate::rerank::{Features, Reranker, RERANK_WEIGHT, VERDICT_FEATURE};
use crate::suppress::{preview, Suppression, SuppressionError, SuppressionScope};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use vigil_proto::query::FeatureDeviation;

/// Most past alerts kept for suppression previews.
const MAX_HISTORY: usize = 2000;
/// Most suppressed hops remembered to keep out of budget calibration.
const MAX_BUDGET_EXCLUDED: usize = 4096;
/// Most verdicts kept as re-ranker training data (the latest win).
pub const MAX_VERDICTS: usize = 10_000;

impl Detector {
    /// Records alerts in the history and drops those a suppression hides.
    pub(super) fn apply_suppressions(&mut self, alerts: Vec<Alert>, now_ns: u64) -> Vec<Alert> {
        let mut kept = Vec::with_capacity(alerts.len());
        for mut a in alerts {
            self.learning.explain(&mut a);
            let keys = self.alert_keys(&a);
            if self.history.len() >= MAX_HISTORY {
                self.history.pop_front();
                self.history_keys.pop_front();
            }
            self.history.push_back(a.clone());
            self.history_keys.push_back((a.id, keys));
            if self
                .suppressions
                .iter()
                .any(|s| s.hides(&a.scope_view(), now_ns))
            {
                self.suppressed_total += 1;
                // A hidden hop must not spend the alert budget either: its
                // score leaves the calibration pool (see `fleet_threshold`).
                if a.kind == AlertKind::Hop {
                    if self.budget_excluded.len() >= MAX_BUDGET_EXCLUDED {
                        self.budget_excluded.remove(0);
                    }
                    self.budget_excluded.push((a.host, a.created_ns));
                }
                if self.hidden.len() < MAX_HISTORY {
                    self.hidden.push(a);
                }
            } else {
                kept.push(a);
            }
        }
        kept
    }

    /// The graph keys of the hops behind a hop or incident alert (for verdicts).
    fn alert_keys(&self, a: &Alert) -> Vec<HopKeys> {
        self.hops
            .iter()
            .chain(self.chain_heads.iter())
            .filter(|h| {
                h.alert_id == Some(a.id)
                    || (a.kind == AlertKind::Incident && h.incident_id == Some(a.id))
            })
            .flat_map(|h| h.keys.iter().copied())
            .collect()
    }

    /// How many past alerts (kept history) a scope would have hidden.
    pub fn preview_suppression(&self, scope: &SuppressionScope) -> usize {
        let past: Vec<Alert> = self.history.iter().cloned().collect();
        preview(scope, &past)
    }

    /// Saves a suppression; returns its id.
    pub fn add_suppression(&mut self, mut s: Suppression) -> Result<u64, SuppressionError> {
        if s.scope.is_empty() {
            return Err(SuppressionError::EmptyScope);
        }
        s.id = self.alloc_id();
        let id = s.id;
        self.suppressions.push(s);
        Ok(id)
    }

    /// Replaces every suppression with the store's current list (the
    /// appliance's console owns them; ids are the store's). True when
    /// anything changed.
    pub fn set_suppressions(&mut self, rules: Vec<Suppression>) -> bool {
        if self.suppressions == rules {
            return false;
        }
        self.suppressions = rules;
        true
    }

    /// Whether a hop on `host` at `ts_ns` raised an alert a suppression hid
    /// (such hops do not count against the alert budget).
    pub(super) fn is_budget_excluded(&self, host: vigil_proto::HostId, ts_ns: u64) -> bool {
        self.budget_excluded.contains(&(host, ts_ns))
    }

    /// Removes a suppression; true if it existed.
    pub fn remove_suppression(&mut self, id: u64) -> bool {
        let before = self.suppressions.len();
        self.suppressions.retain(|s| s.id != id);
        before != self.suppressions.len()
    }

    /// Saved suppressions.
    pub fn suppressions(&self) -> &[Suppression] {
        &self.suppressions
    }

    /// The alerts suppressions hid since the last call (bounded), for the
    /// caller to store as hidden records: a suppression hides, it never
    /// erases what was detected.
    pub fn take_hidden(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.hidden)
    }

    /// Alerts hidden by suppressions so far.
    pub fn suppressed_total(&self) -> u64 {
        self.suppressed_total
    }

    /// Past alerts (most recent last), bounded.
    pub fn history(&self) -> impl Iterator<Item = &Alert> {
        self.history.iter()
    }

    /// Records an analyst verdict. A true positive is excluded from the next
    /// training (its hour on every host of its path) and its hops are taken
    /// back out of the fleet graph.
    pub fn record_verdict(&mut self, alert_id: u64, verdict: Verdict) -> Result<(), ModelError> {
        let pos = self
            .history
            .iter()
            .position(|a| a.id == alert_id)
            .ok_or(ModelError::UnknownAlert(alert_id))?;
        self.learning
            .record(&self.history[pos], verdict == Verdict::TruePositive);
        if verdict == Verdict::FalsePositive {
            return Ok(());
        }
        let a = self.history[pos].clone();
        let from = a.created_ns.saturating_sub(NS_PER_HOUR);
        let to = a.created_ns + NS_PER_HOUR;
        for h in &a.path {
            if self.excluded.len() < 4096 {
                self.excluded.push((*h, from, to));
            }
        }
        let keys = self.history_keys[pos].1.clone();
        for k in &keys {
            self.graph.forget(k);
        }
        self.history_keys[pos].1.clear();
        Ok(())
    }
}

/// One verdict as training data: the alert's explanation, its pattern
/// (which features moved, and its kind) and what the analyst said.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VerdictSample {
    features: Features,
    pattern: u64,
    true_positive: bool,
}

/// What the fleet's analysts taught the detector: their latest verdicts
/// and the re-ranker fitted on them (by [`Detector::train`]). Saved in
/// the snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Learning {
    verdicts: VecDeque<VerdictSample>,
    reranker: Option<Reranker>,
    fits: u32,
}

/// Which features are non-zero: alerts with the same pattern are
/// "similar" in the explanation line.
fn pattern(f: &Features) -> u64 {
    f.0.iter()
        .enumerate()
        .skip(1) // the score itself is always there
        .filter(|(_, x)| **x != 0.0)
        .fold(0, |acc, (i, _)| acc | (1 << i))
}

impl Learning {
    fn record(&mut self, a: &Alert, true_positive: bool) {
        if self.verdicts.len() >= MAX_VERDICTS {
            self.verdicts.pop_front();
        }
        let features = Features::from_alert(a);
        self.verdicts.push_back(VerdictSample {
            pattern: pattern(&features),
            features,
            true_positive,
        });
    }

    /// Refits on the kept verdicts; keeps the identity ranking (no model)
    /// until both classes have enough verdicts.
    fn refit(&mut self) {
        let samples: Vec<(Features, bool)> = self
            .verdicts
            .iter()
            .map(|v| (v.features, v.true_positive))
            .collect();
        self.reranker = Reranker::fit(&samples).ok().map(|r| {
            self.fits += 1;
            r.with_version(self.fits)
        });
    }

    /// Adds the re-ranker's line to an alert's explanation: the
    /// probability that analysts confirm it (`observed`), its weighted
    /// log-odds (`score`, what re-ranking adds) and how similar alerts
    /// were closed.
    fn explain(&self, a: &mut Alert) {
        let Some(r) = &self.reranker else {
            return;
        };
        let f = Features::from_alert(a);
        let p = pattern(&f);
        let (tp, fp) = self
            .verdicts
            .iter()
            .filter(|v| v.pattern == p)
            .fold((0, 0), |(t, f), v| {
                if v.true_positive {
                    (t + 1, f)
                } else {
                    (t, f + 1)
                }
            });
        let prob = r.score(&f);
        a.deviations.push(FeatureDeviation {
            feature: VERDICT_FEATURE.into(),
            observed: prob,
            baseline: 0.5,
            score: RERANK_WEIGHT * r.logit(&f),
            sentence: format!(
                "analysts closed {fp} similar alert{} as false positive and {tp} as true positive; the re-ranker ({}) gives {:.0} % that this one is real",
                if fp == 1 { "" } else { "s" },
                r.version_tag(),
                prob * 100.0
            ),
        });
    }
}

impl Detector {
    /// Refits the analysts' re-ranker on the kept verdicts (from `train`).
    pub(super) fn refit_reranker(&mut self) {
        self.learning.refit();
    }

    /// The fleet's re-ranker, once verdicts of both classes sufficed.
    pub fn reranker(&self) -> Option<&Reranker> {
        self.learning.reranker.as_ref()
    }

    /// Verdicts kept as re-ranker training data.
    pub fn verdicts_kept(&self) -> usize {
        self.learning.verdicts.len()
    }
}
