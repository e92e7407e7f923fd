//! Learning and training: a host learns for the learning period, then gets a
//! model (its hop threshold); models are retrained every retrain interval.
//! Hop thresholds are calibrated so the fleet stays within its alert budget.
//! Hops inside confirmed true positives are left out of training.

use super::{Detector, HostPhase, HostState, ModelStatus, NS_PER_DAY};
use crate::model::{quantile, HostModel, ModelMetrics};
use vigil_proto::HostId;

impl Detector {
    /// `Some(true)`: full retrain due; `Some(false)`: only hosts that just
    /// finished learning need a first model; `None`: nothing to do.
    pub(super) fn retrain_due(&self, now_ns: u64) -> Option<bool> {
        let learned = self.hosts.iter().any(|(id, s)| {
            s.phase == HostPhase::Learning
                && self.registry.get(*id).is_none_or(|i| i.managed)
                && now_ns.saturating_sub(s.first_seen_ns) >= self.cfg.learning_period_ns
        });
        match self.last_train_ns {
            None => learned.then_some(true),
            Some(t) if now_ns.saturating_sub(t) >= self.cfg.retrain_interval_ns => Some(true),
            Some(_) => learned.then_some(false),
        }
    }

    /// Whether `ts` on `host` lies in a confirmed true positive's span.
    fn is_excluded(&self, host: HostId, ts: u64) -> bool {
        self.excluded
            .iter()
            .any(|(h, from, to)| *h == host && ts >= *from && ts < *to)
    }

    /// Trains every host whose learning period is over (and retrains active
    /// ones), then calibrates hop thresholds to the fleet alert budget.
    /// Hops inside confirmed true positives are left out.
    pub fn train(&mut self, now_ns: u64) {
        self.train_hosts(now_ns, false);
        self.refit_reranker();
        self.last_train_ns = Some(now_ns);
    }

    /// Trains eligible hosts; with `only_new`, only hosts still learning
    /// (their first model), keeping the fleet threshold of the last full run.
    pub(super) fn train_hosts(&mut self, now_ns: u64, only_new: bool) {
        if self.cfg.learning_period_ns == 0 {
            // cold start: registered hosts become active before their first event
            let ids: Vec<HostId> = self.registry.managed().collect();
            for id in ids {
                self.hosts
                    .entry(id)
                    .or_insert_with(|| HostState::new(now_ns));
            }
        }
        let eligible: Vec<HostId> = self
            .hosts
            .iter()
            .filter(|(id, s)| {
                self.registry.get(**id).is_none_or(|i| i.managed)
                    && now_ns.saturating_sub(s.first_seen_ns) >= self.cfg.learning_period_ns
                    && (!only_new || s.phase == HostPhase::Learning)
            })
            .map(|(id, _)| *id)
            .collect();
        let mut fleet_thr = self.fleet_threshold(&eligible, now_ns);
        match (only_new, self.fleet_hop_threshold) {
            (true, Some(known)) => fleet_thr = known,
            _ => self.fleet_hop_threshold = Some(fleet_thr),
        }
        for id in eligible {
            let Some(model) = self.fit_host(id, fleet_thr, now_ns) else {
                continue;
            };
            if let Some(st) = self.hosts.get_mut(&id) {
                st.model = Some(model);
                st.phase = HostPhase::Active;
            }
        }
    }

    /// The hop threshold that keeps the fleet within its alert budget: the
    /// score above which the budget's worth of hops a day fall, judged by
    /// the kept hop scores of the `eligible` hosts.
    fn fleet_threshold(&self, eligible: &[HostId], now_ns: u64) -> f64 {
        // Pool (score, weight) over the fleet: weight = hops represented by
        // one kept sample per day of history.
        let mut pool: Vec<(f32, f64)> = Vec::new();
        for id in eligible {
            let st = &self.hosts[id];
            let days =
                (now_ns.saturating_sub(st.first_seen_ns) as f64 / NS_PER_DAY as f64).max(1.0);
            let kept: Vec<f32> = st
                .hop_scores
                .iter()
                .filter(|(t, _)| !self.is_excluded(*id, *t))
                .map(|(_, s)| *s)
                .collect();
            if kept.is_empty() {
                continue;
            }
            let w = st.hops_seen as f64 / kept.len() as f64 / days;
            // Hops whose alert a suppression hid do not spend the budget:
            // an analyst's "not again" must not tighten everyone else's
            // threshold.
            let kept: Vec<f32> = st
                .hop_scores
                .iter()
                .filter(|(t, _)| !self.is_excluded(*id, *t) && !self.is_budget_excluded(*id, *t))
                .map(|(_, s)| *s)
                .collect();
            pool.extend(kept.into_iter().map(|s| (s, w)));
        }
        pool.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut acc = 0.0;
        let mut fleet_thr = self.cfg.min_hop_threshold;
        for (s, w) in &pool {
            acc += w;
            if acc > self.cfg.alert_budget_per_day {
                fleet_thr = f64::from(*s).max(self.cfg.min_hop_threshold);
                break;
            }
        }
        if pool.is_empty() {
            fleet_thr = self.cfg.cold_start_hop_threshold;
        }
        fleet_thr
    }

    /// Fits the next model version of one host from its kept hop scores
    /// (true-positive spans left out); its hop threshold is the
    /// higher of the fleet's and the host's own 99.5th percentile. None when
    /// the model cannot be sealed.
    fn fit_host(&self, id: HostId, fleet_thr: f64, now_ns: u64) -> Option<HostModel> {
        let st = &self.hosts[&id];
        let excluded_hops = st
            .hop_scores
            .iter()
            .filter(|(t, _)| self.is_excluded(id, *t))
            .count();
        let scores: Vec<f32> = st
            .hop_scores
            .iter()
            .filter(|(t, _)| !self.is_excluded(id, *t) && !self.is_budget_excluded(id, *t))
            .map(|(_, s)| *s)
            .collect();
        let (first_seen, hops_seen) = (st.first_seen_ns, st.hops_seen);
        let old_version = st.model.as_ref().map(|m| m.version).unwrap_or(0);
        let own_p = if scores.is_empty() {
            self.cfg.cold_start_hop_threshold
        } else {
            f64::from(quantile(&scores, 0.995))
        };
        let hop_threshold = if scores.is_empty() {
            fleet_thr.max(self.cfg.cold_start_hop_threshold)
        } else {
            fleet_thr.max(own_p)
        };
        let days = (now_ns.saturating_sub(first_seen) as f64 / NS_PER_DAY as f64).max(1.0);
        let above = scores
            .iter()
            .filter(|s| f64::from(**s) >= hop_threshold)
            .count();
        let expected = if scores.is_empty() {
            0.0
        } else {
            above as f64 * hops_seen as f64 / scores.len() as f64 / days
        };
        let mut model = HostModel {
            version: old_version + 1,
            sha256: String::new(),
            trained_from_ns: first_seen,
            trained_to_ns: now_ns,
            hop_threshold,
            metrics: ModelMetrics {
                train_hops: scores.len() as u32,
                hop_score_p99: f64::from(quantile(&scores, 0.99)),
                excluded_hops: excluded_hops as u32,
                expected_alerts_per_day: expected,
            },
        };
        model.seal().ok()?;
        Some(model)
    }

    /// Each host's phase, model version, hash, training window and metrics.
    pub fn model_status(&self) -> Vec<ModelStatus> {
        self.hosts
            .iter()
            .filter(|(id, _)| self.registry.get(**id).is_none_or(|i| i.managed))
            .map(|(id, st)| ModelStatus {
                host: *id,
                hostname: self.registry.name(*id),
                phase: st.phase,
                first_seen_ns: st.first_seen_ns,
                version: st.model.as_ref().map(HostModel::version_tag),
                sha256: st.model.as_ref().map(|m| m.sha256.clone()),
                trained_window_ns: st
                    .model
                    .as_ref()
                    .map(|m| (m.trained_from_ns, m.trained_to_ns)),
                hop_threshold: st.model.as_ref().map(|m| m.hop_threshold),
                metrics: st.model.as_ref().map(|m| m.metrics.clone()),
                model_bytes: st.model.as_ref().map(HostModel::encoded_len).unwrap_or(0),
            })
            .collect()
    }
}
