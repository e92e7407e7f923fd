//! Sigma rules beside the behavioural detector: a rule that fires on an
//! event is an alert of kind [`AlertKind::Sigma`] on that event's host,
//! explained by the fields that matched, tagged with the rule's ATT&CK
//! techniques, and passed through the same suppressions as every other
//! alert. Rules are configuration (like suppressions): set by the
//! appliance, never saved in the snapshot.
//!
//! Hits are learned per host like the behavioural baseline: while a host
//! is in its learning period a hit raises nothing and is counted per
//! (rule, host); after it, a hit of a pair that was routine in learning
//! ([`ROUTINE_MIN_HITS`] on [`ROUTINE_MIN_DAYS`] distinct days) still
//! alerts, one severity lower, saying so; a pair never routine keeps the
//! rule's level. Counting stops when learning ends, so nothing an attacker
//! repeats afterwards becomes routine. The counts are in the snapshot.
//! Logon traces (`traces.rs`, e.g. pass-the-hash's `seclogo` logon) go
//! through the same gate ([`Detector::learned_gate`]), keyed by technique
//! and user.

use super::{Detector, NS_PER_DAY};
use crate::alert::{Alert, AlertKind};
use crate::sigma::{Level, RuleSet, SigmaHit};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use vigil_proto::query::{FeatureDeviation, Severity};
use vigil_proto::{Event, HostId};

/// The same rule on the same host alerts at most once per this span.
pub const SIGMA_DEDUPE_NS: u64 = 3_600 * 1_000_000_000;
/// Most (rule, host) pairs remembered for deduplication.
const MAX_SEEN: usize = 100_000;
/// A (rule, host) pair with at least this many hits during learning…
pub const ROUTINE_MIN_HITS: u32 = 3;
/// …on at least this many distinct UTC days is routine on that host.
pub const ROUTINE_MIN_DAYS: usize = 2;
/// Most (rule, host) pairs counted during learning; a pair beyond it is
/// never routine (it keeps the rule's severity: never blind by overflow).
const MAX_ROUTINE_PAIRS: usize = 100_000;
/// Distinct days kept per pair (enough to say "on N days").
const MAX_DAYS: usize = 32;

/// Sigma hits counted per (rule id, host) during the hosts' learning.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct SigmaLearning {
    pairs: BTreeMap<(String, HostId), PairCount>,
}

/// One (rule, host) pair's hits during learning.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PairCount {
    hits: u32,
    /// Distinct UTC day numbers with a hit, sorted, at most [`MAX_DAYS`].
    days: Vec<u32>,
}

impl PairCount {
    fn routine(&self) -> bool {
        self.hits >= ROUTINE_MIN_HITS && self.days.len() >= ROUTINE_MIN_DAYS
    }
}

impl SigmaLearning {
    fn count(&mut self, rule: &str, host: HostId, ts: u64) {
        let key = (rule.to_string(), host);
        if !self.pairs.contains_key(&key) && self.pairs.len() >= MAX_ROUTINE_PAIRS {
            return;
        }
        let c = self.pairs.entry(key).or_default();
        c.hits = c.hits.saturating_add(1);
        let day = (ts / NS_PER_DAY) as u32;
        if let Err(i) = c.days.binary_search(&day) {
            if c.days.len() < MAX_DAYS {
                c.days.insert(i, day);
            }
        }
    }

    /// (hits, distinct days) of a pair that was routine in learning.
    fn routine(&self, rule: &str, host: HostId) -> Option<(u32, usize)> {
        self.pairs
            .get(&(rule.to_string(), host))
            .filter(|c| c.routine())
            .map(|c| (c.hits, c.days.len()))
    }
}

impl Detector {
    /// Evaluate these Sigma rules on every event from now on.
    pub fn set_sigma_rules(&mut self, rules: RuleSet) {
        self.sigma = rules;
    }

    /// The Sigma rules in force.
    pub fn sigma_rules(&self) -> &RuleSet {
        &self.sigma
    }

    /// (hits, distinct days) during learning of a (rule id, host) pair
    /// that is routine on that host; `None` for a pair that is not.
    pub fn sigma_routine(&self, rule_id: &str, host: HostId) -> Option<(u32, usize)> {
        self.sigma_learning.routine(rule_id, host)
    }

    /// Alerts for the rules `ev` fires (at most one per rule and host per
    /// [`SIGMA_DEDUPE_NS`]); while its host learns, hits are only counted.
    pub(super) fn sigma_alerts(&mut self, ev: &Event) -> Vec<Alert> {
        if self.sigma.is_empty() || !self.sigma.wants(ev.payload.kind()) {
            return Vec::new();
        }
        let (host, ts) = (ev.header.host, ev.header.ts_ns);
        let mut out = Vec::new();
        for hit in self.sigma.matches(ev) {
            if let Gate::Alert(routine) = self.learned_gate(&hit.rule_id, host, ts) {
                out.push(self.sigma_alert(ev, host, hit, routine));
            }
        }
        out
    }

    /// The per-host learning every repeatable single-host signal goes
    /// through (a Sigma rule by its id, a logon trace by
    /// `logon:TECHNIQUE:USER`): while `host` learns the hit is counted;
    /// after it, the same key on the same host alerts at most once per
    /// [`SIGMA_DEDUPE_NS`], with its routine counts when it was routine.
    pub(super) fn learned_gate(&mut self, key: &str, host: HostId, ts: u64) -> Gate {
        if self.learning_at(host, ts) {
            self.sigma_learning.count(key, host, ts);
            return Gate::Learning;
        }
        let seen_key = (key.to_string(), host);
        if let Some(&last) = self.sigma_seen.get(&seen_key) {
            if ts.saturating_sub(last) < SIGMA_DEDUPE_NS {
                return Gate::Repeat;
            }
        }
        if self.sigma_seen.len() >= MAX_SEEN {
            self.sigma_seen
                .retain(|_, t| ts.saturating_sub(*t) < SIGMA_DEDUPE_NS);
        }
        self.sigma_seen.insert(seen_key, ts);
        Gate::Alert(self.sigma_learning.routine(key, host))
    }

    fn sigma_alert(
        &mut self,
        ev: &Event,
        host: HostId,
        hit: SigmaHit,
        routine: Option<(u32, usize)>,
    ) -> Alert {
        let id = self.alloc_id();
        let name = self.registry.name(host);
        let matched: Vec<String> = hit
            .matched
            .iter()
            .map(|(field, value)| format!("{field} = {value}"))
            .collect();
        let mut sentence = format!(
            "Sigma rule \"{}\" ({}) matched on {name}: {}",
            hit.title,
            hit.rule_id,
            matched.join("; ")
        );
        let mut deviations = Vec::new();
        let mut level = severity(hit.level);
        if let Some(routine) = routine {
            level = routine_lowered(&name, routine, level, &mut sentence, &mut deviations);
        }
        deviations.extend(hit.matched.iter().map(|(field, value)| FeatureDeviation {
            feature: format!("sigma:{field}"),
            observed: 1.0,
            baseline: 0.0,
            score: 0.0,
            sentence: format!("{field} = {value}"),
        }));
        Alert {
            id,
            created_ns: ev.header.ts_ns,
            kind: AlertKind::Sigma,
            severity: level,
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

/// What [`Detector::learned_gate`] lets through.
pub(super) enum Gate {
    /// The host is learning: counted, no alert.
    Learning,
    /// The same key alerted on this host within [`SIGMA_DEDUPE_NS`].
    Repeat,
    /// Alert; with (hits, distinct days) when the key was routine on the
    /// host during learning.
    Alert(Option<(u32, usize)>),
}

/// Lowers `level` one step for a signal routine on host `name` during
/// learning, saying so in `sentence` and as a `sigma_routine` deviation
/// (the re-ranker's feature for "known routine here"); returns the level.
pub(super) fn routine_lowered(
    name: &str,
    (hits, days): (u32, usize),
    level: Severity,
    sentence: &mut String,
    deviations: &mut Vec<FeatureDeviation>,
) -> Severity {
    let routine_line = format!(
        "routine on {name}: {hits} hits during learning (on {days} days); severity lowered from {}",
        level.name()
    );
    sentence.push_str("; ");
    sentence.push_str(&routine_line);
    deviations.push(FeatureDeviation {
        feature: "sigma_routine".into(),
        observed: f64::from(hits),
        baseline: days as f64,
        score: 0.0,
        sentence: routine_line,
    });
    lower(level)
}

/// One step down (low stays low: a routine hit is still an alert).
fn lower(s: Severity) -> Severity {
    match s {
        Severity::Critical => Severity::High,
        Severity::High => Severity::Medium,
        Severity::Medium | Severity::Low => Severity::Low,
    }
}

#[cfg(test)]
#[path = "sigma_tests.rs"]
mod tests;
