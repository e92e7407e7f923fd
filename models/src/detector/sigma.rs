//! Sigma rules beside the behavioural detector: a rule that fires on an
//! event is an alert of kind [`AlertKind::Sigma`] on that event's host,
//! explained by the fields that matched, tagged with the rule's ATT&CK
//! techniques, and passed through the same suppressions as every other
//! alert. Rules are configuration (like suppressions): set by the
//! appliance, never saved in the snapshot.

use super::Detector;
use crate::alert::{Alert, AlertKind};
use crate::sigma::{Level, RuleSet, SigmaHit};
use vigil_proto::query::{FeatureDeviation, Severity};
use vigil_proto::{Event, HostId};

/// The same rule on the same host alerts at most once per this span.
pub const SIGMA_DEDUPE_NS: u64 = 3_600 * 1_000_000_000;
/// Most (rule, host) pairs remembered for deduplication.
const MAX_SEEN: usize = 100_000;

impl Detector {
    /// Evaluate these Sigma rules on every event from now on.
    pub fn set_sigma_rules(&mut self, rules: RuleSet) {
        self.sigma = rules;
    }

    /// The Sigma rules in force.
    pub fn sigma_rules(&self) -> &RuleSet {
        &self.sigma
    }

    /// Alerts for the rules `ev` fires (at most one per rule and host per
    /// [`SIGMA_DEDUPE_NS`]).
    pub(super) fn sigma_alerts(&mut self, ev: &Event) -> Vec<Alert> {
        if self.sigma.is_empty() || !self.sigma.wants(ev.payload.kind()) {
            return Vec::new();
        }
        let (host, ts) = (ev.header.host, ev.header.ts_ns);
        let hits = self.sigma.matches(ev);
        let mut out = Vec::new();
        for hit in hits {
            let key = (hit.rule_id.clone(), host);
            if let Some(&last) = self.sigma_seen.get(&key) {
                if ts.saturating_sub(last) < SIGMA_DEDUPE_NS {
                    continue;
                }
            }
            if self.sigma_seen.len() >= MAX_SEEN {
                self.sigma_seen
                    .retain(|_, t| ts.saturating_sub(*t) < SIGMA_DEDUPE_NS);
            }
            self.sigma_seen.insert(key, ts);
            out.push(self.sigma_alert(ev, host, hit));
        }
        out
    }

    fn sigma_alert(&mut self, ev: &Event, host: HostId, hit: SigmaHit) -> Alert {
        let id = self.alloc_id();
        let name = self.registry.name(host);
        let matched: Vec<String> = hit
            .matched
            .iter()
            .map(|(field, value)| format!("{field} = {value}"))
            .collect();
        let sentence = format!(
            "Sigma rule \"{}\" ({}) matched on {name}: {}",
            hit.title,
            hit.rule_id,
            matched.join("; ")
        );
        let deviations = hit
            .matched
            .iter()
            .map(|(field, value)| FeatureDeviation {
                feature: format!("sigma:{field}"),
                observed: 1.0,
                baseline: 0.0,
                score: 0.0,
                sentence: format!("{field} = {value}"),
            })
            .collect();
        Alert {
            id,
            created_ns: ev.header.ts_ns,
            kind: AlertKind::Sigma,
            severity: severity(hit.level),
            score: 0.0,
            title: format!("Sigma: {} on {name}", hit.title),
            host,
            path: vec![host],
            path_names: vec![name],
            users: Vec::new(),
            processes: Vec::new(),
            ports: Vec::new(),
            techniques: hit.techniques,
            summary: sentence,
            deviations,
            evidence: vec![(host, ev.header.seq)],
            incident_id: None,
            model_version: Some(format!("sigma:{}", hit.rule_id)),
        }
    }
}

fn severity(level: Level) -> Severity {
    match level {
        Level::Informational | Level::Low => Severity::Low,
        Level::Medium => Severity::Medium,
        Level::High => Severity::High,
        Level::Critical => Severity::Critical,
    }
}
