//! Analyst feedback: suppressions (with a preview over the kept alert
//! history), the bounded alert history itself, and verdicts — a true positive
//! is excluded from training and its hops are taken out of the fleet graph.

use super::{Detector, Verdict, NS_PER_HOUR};
use crate::alert::{Alert, AlertKind};
use crate::error::ModelError;
use crate::graph::HopKeys;
use crate::suppress::{preview, Suppression, SuppressionError, SuppressionScope};

/// Most past alerts kept for suppression previews.
const MAX_HISTORY: usize = 2000;
/// Most suppressed hops remembered to keep out of budget calibration.
const MAX_BUDGET_EXCLUDED: usize = 4096;

impl Detector {
    /// Records alerts in the history and drops those a suppression hides.
    pub(super) fn apply_suppressions(&mut self, alerts: Vec<Alert>, now_ns: u64) -> Vec<Alert> {
        let mut kept = Vec::with_capacity(alerts.len());
        for a in alerts {
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
