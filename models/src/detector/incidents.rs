//! Campaign correlation: a hop S → D that follows an anomalous X → S hop
//! within the chain window joins (or opens) that hop's incident; each growth
//! of an incident re-emits it as an incident alert.

use super::hops::human_span;
use super::{Detector, HopRef, Incident};
use crate::alert::{push_unique, severity_for, Alert, AlertKind};
use vigil_proto::query::{FeatureDeviation, Severity};
use vigil_proto::HostId;

/// Half-life of a chain bonus: a hop a day after the one that reached its
/// source still chains, with a sixteenth of the bonus it had at once.
const CHAIN_HALF_LIFE_NS: u64 = 6 * 3_600_000_000_000;

/// How long a user-less hop (a connection) waits for its logon before it
/// is correlated without knowing the account: the target's log line
/// reaches the appliance within a second or two of the source's connect.
pub(super) const USERLESS_GRACE_NS: u64 = 5_000_000_000;

/// Deferred hops kept at most (a connection storm must not grow memory).
const MAX_DEFERRED: usize = 1024;

impl Detector {
    /// The strongest (after decay) anomalous hop X → `src` (not from `dst`)
    /// inside the chain window that scored at least `chain_factor ×
    /// threshold`, among recent hops and the kept chain heads.
    pub(super) fn chain_predecessor(&self, src: HostId, dst: HostId, ts: u64) -> Option<HopRef> {
        self.strongest_predecessor(src, dst, ts, None)
    }

    /// Like [`Detector::chain_predecessor`], but among the candidates made
    /// by `user`, when there are any: the hop an incident grows from. An
    /// account moving on from where it just arrived is the stronger link
    /// than whichever other anomalous logon reached `src` at about the
    /// same time (a landing host's own benign visitors, say). Scores do
    /// not use this, so it changes which incident a hop joins, never its
    /// score.
    pub(super) fn incident_predecessor(
        &self,
        src: HostId,
        dst: HostId,
        ts: u64,
        user: Option<&str>,
    ) -> Option<HopRef> {
        user.and_then(|u| self.strongest_predecessor(src, dst, ts, Some(u)))
            .or_else(|| self.strongest_predecessor(src, dst, ts, None))
    }

    fn strongest_predecessor(
        &self,
        src: HostId,
        dst: HostId,
        ts: u64,
        user: Option<&str>,
    ) -> Option<HopRef> {
        let from = ts.saturating_sub(self.cfg.chain_window_ns);
        let recent = self.positions_into(src).into_iter().map(HopRef::Recent);
        let kept = (0..self.chain_heads.len())
            .filter(|i| self.chain_heads[*i].dst == src)
            .map(HopRef::Kept);
        let mut best: Option<(HopRef, f64)> = None;
        for r in recent.chain(kept) {
            let h = self.hop_at(r);
            if h.dst != src || h.src == dst || h.first_ns < from || h.first_ns > ts {
                continue;
            }
            if user.is_some_and(|u| h.user.as_deref() != Some(u)) {
                continue;
            }
            // Read against a model still learning: no evidence of a move.
            if self.scored_while_learning(h) {
                continue;
            }
            let thr = self
                .hop_threshold(h.dst)
                .unwrap_or(self.cfg.cold_start_hop_threshold);
            let weight = self.chain_bonus(r, ts);
            if h.score >= self.cfg.chain_factor * thr && best.is_none_or(|(_, w)| w < weight) {
                best = Some((r, weight));
            }
        }
        best.map(|(r, _)| r)
    }

    /// The chain bonus a hop at `ts` takes from predecessor `r`: a share of
    /// its score, halved every [`CHAIN_HALF_LIFE_NS`] since it happened.
    pub(super) fn chain_bonus(&self, r: HopRef, ts: u64) -> f64 {
        let h = self.hop_at(r);
        let age = ts.saturating_sub(h.first_ns) as f64 / CHAIN_HALF_LIFE_NS as f64;
        self.cfg.chain_weight * h.score.min(20.0) * 0.5f64.powf(age)
    }

    /// Correlates hop `idx` now, or — when it has no user yet — once its
    /// logon has had [`USERLESS_GRACE_NS`] to merge into it. A connection
    /// to an admin port is usually seen (on the source) a moment before
    /// the target logs the logon that says who moved; correlated at once
    /// it would join whichever anomalous hop reached the source most
    /// strongly, not the one its own account arrived by.
    pub(super) fn correlate_or_defer(&mut self, idx: usize, ts: u64) -> Vec<Alert> {
        let h = &self.hops[idx];
        let g = self.hop_base + idx as u64;
        if h.incident_id.is_some() {
            return Vec::new();
        }
        if h.user.is_some() {
            return match self.deferred.iter().position(|x| *x == g) {
                Some(at) => {
                    // Its logon merged within the grace.
                    self.deferred.remove(at);
                    self.correlate_deferred(idx, ts, ts)
                }
                None => self.correlate(idx, ts),
            };
        }
        if !self.deferred.contains(&g) {
            if self.deferred.len() >= MAX_DEFERRED {
                self.deferred.pop_front();
            }
            self.deferred.push_back(g);
        }
        Vec::new()
    }

    /// Correlates the deferred user-less hops whose grace has passed by
    /// `now` (those whose logon merged meanwhile were correlated then, and
    /// are skipped by [`Detector::correlate`] itself).
    pub(super) fn correlate_overdue(&mut self, now: u64) -> Vec<Alert> {
        let mut alerts = Vec::new();
        while let Some(&g) = self.deferred.front() {
            let Some(idx) = g
                .checked_sub(self.hop_base)
                .map(|p| p as usize)
                .filter(|p| *p < self.hops.len())
            else {
                // Pruned meanwhile: too old to open an incident now.
                self.deferred.pop_front();
                continue;
            };
            if self.hops[idx].first_ns.saturating_add(USERLESS_GRACE_NS) > now {
                break;
            }
            self.deferred.pop_front();
            let when = self.hops[idx].last_ns;
            alerts.extend(self.correlate_deferred(idx, now, when));
        }
        alerts
    }

    /// Correlates a hop whose correlation was deferred. Its hop alert
    /// went out before its incident existed, so when it joins one the
    /// hop alert is re-emitted under its id, naming the incident.
    fn correlate_deferred(&mut self, idx: usize, ts: u64, when: u64) -> Vec<Alert> {
        let mut grown = self.correlate_at(idx, ts, when);
        if !grown.is_empty() {
            let h = &self.hops[idx];
            if let (Some(id), Some(thr)) = (h.alert_id, self.hop_threshold(h.dst)) {
                grown.insert(0, self.hop_alert(idx, id, thr, ts));
            }
        }
        grown
    }

    /// Chains hop `idx` (S → D) onto an anomalous X → S hop, if any.
    pub(super) fn correlate(&mut self, idx: usize, ts: u64) -> Vec<Alert> {
        self.correlate_at(idx, ts, ts)
    }

    /// [`Detector::correlate`] raised at `ts` for a hop last seen at
    /// `when` (earlier when its correlation was deferred): the incident's
    /// span ends at `when`, its alert is created at `ts`.
    fn correlate_at(&mut self, idx: usize, ts: u64, when: u64) -> Vec<Alert> {
        let (src, dst, first) = (
            self.hops[idx].src,
            self.hops[idx].dst,
            self.hops[idx].first_ns,
        );
        let user = self.hops[idx].user.clone();
        let Some(pred) = self.incident_predecessor(src, dst, first, user.as_deref()) else {
            return Vec::new();
        };
        if pred == HopRef::Recent(idx) {
            return Vec::new();
        }
        let inc_pos = self
            .hop_at(pred)
            .incident_id
            .and_then(|iid| self.incidents.iter().position(|i| i.id == iid));
        let inc_pos = match inc_pos {
            Some(p) => p,
            None => {
                let id = self.alloc_id();
                let p = self.hop_at(pred);
                self.incidents.push_back(Incident {
                    id,
                    first_ns: p.first_ns,
                    path: vec![p.src, p.dst],
                    users: p.user.iter().cloned().collect(),
                    ports: p.ports.clone(),
                    processes: p.processes.clone(),
                    techniques: p.techniques.clone(),
                    evidence: p.evidence.clone(),
                    hop_scores: vec![p.score],
                    last_ns: p.last_ns,
                });
                self.hop_at_mut(pred).incident_id = Some(id);
                self.incidents.len() - 1
            }
        };
        if self.hops[idx].incident_id.is_some() {
            return Vec::new();
        }
        let iid = self.incidents[inc_pos].id;
        self.hops[idx].incident_id = Some(iid);
        let h = self.hops[idx].clone();
        let inc = &mut self.incidents[inc_pos];
        if !inc.path.contains(&h.dst) {
            inc.path.push(h.dst);
        }
        if let Some(u) = &h.user {
            push_unique(&mut inc.users, u.clone());
        }
        for t in &h.techniques {
            push_unique(&mut inc.techniques, t.clone());
        }
        for p in &h.ports {
            push_unique(&mut inc.ports, *p);
        }
        for e in &h.evidence {
            if inc.evidence.len() < 64 {
                push_unique(&mut inc.evidence, *e);
            }
        }
        inc.hop_scores.push(h.score);
        inc.last_ns = inc.last_ns.max(when);
        vec![self.incident_alert(inc_pos, ts)]
    }

    /// The incident alert for incident `pos`: its path, users and summed score.
    fn incident_alert(&self, pos: usize, ts: u64) -> Alert {
        let inc = &self.incidents[pos];
        let names: Vec<String> = inc.path.iter().map(|h| self.registry.name(*h)).collect();
        let score: f64 = inc.hop_scores.iter().sum();
        let last = *inc.path.last().unwrap_or(&HostId(0));
        let thr = self
            .hop_threshold(last)
            .unwrap_or(self.cfg.cold_start_hop_threshold);
        let mut techniques = inc.techniques.clone();
        techniques.sort();
        let deviations = vec![FeatureDeviation {
            feature: "chain_length".into(),
            observed: inc.path.len() as f64,
            baseline: 1.0,
            score,
            sentence: format!(
                "{} anomalous hops chained over {}: {}",
                inc.hop_scores.len(),
                human_span(inc.last_ns.saturating_sub(inc.first_ns)),
                names.join(" → ")
            ),
        }];
        Alert {
            id: inc.id,
            created_ns: ts,
            kind: AlertKind::Incident,
            severity: severity_for(score, thr, inc.path.len()).max(Severity::High),
            score,
            title: format!("Lateral movement {}", names.join(" → ")),
            host: last,
            path: inc.path.clone(),
            path_names: names.clone(),
            users: inc.users.clone(),
            ports: inc.ports.clone(),
            processes: inc.processes.clone(),
            techniques,
            summary: format!(
                "Chain of {} anomalous hops across {} hosts ({}); users {}",
                inc.hop_scores.len(),
                inc.path.len(),
                names.join(" → "),
                inc.users.join(", ")
            ),
            deviations,
            evidence: inc.evidence.clone(),
            incident_id: Some(inc.id),
            model_version: self.model_tag(last),
        }
    }
}
