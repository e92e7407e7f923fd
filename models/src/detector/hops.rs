//! One hop (src → dst, maybe a user and a port): its rarity in the fleet
//! graph plus any chain bonus is its score; the graph then learns it. Remote
//! hops are kept a while (indexed per destination and per pair) for dedupe,
//! trace linking and chaining, and alert when their score passes the
//! destination's threshold.

use super::logons::Signal;
use super::{Detector, HopRecord, HopRef, HostPhase};
use crate::alert::{push_unique, severity_for, Alert, AlertKind};
use crate::graph::{key, HopKeys, HopRarity};
use vigil_proto::query::FeatureDeviation;
use vigil_proto::HostId;

/// Most hop scores kept per host for threshold calibration.
const HOP_SAMPLES: usize = 256;
/// Most anomalous hops kept for chaining beyond the recent-hop window.
const MAX_CHAIN_HEADS: usize = 1024;
/// Most incidents kept open.
const MAX_INCIDENTS: usize = 1024;

/// One observed hop before scoring.
pub(super) struct HopObs {
    pub(super) src: HostId,
    pub(super) dst: HostId,
    pub(super) user: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) technique: Option<&'static str>,
    pub(super) alertable: bool,
    /// A failed logon: scored, never learned, never a hop alert.
    pub(super) failure: bool,
}

/// What scoring made of one hop, handed to [`Detector::record_hop`].
struct ScoredHop {
    keys: HopKeys,
    rarity: HopRarity,
    score: f64,
    chain_bonus: f64,
    chain_age_ns: Option<u64>,
    signals: Vec<Signal>,
    novel: bool,
}

/// A local event's score: its rarity squashed into [0, 1), below any hop.
fn local_score(base: f64) -> f64 {
    base / (base + 5.0)
}

impl Detector {
    /// Scores, learns and maybe alerts one hop. Returns (score, new edge,
    /// alerts).
    ///
    /// A local event (source = destination) is squashed below one nat and
    /// never chained: a host's own logons must not outrank any hop. A
    /// remote hop scores its graph rarity, the logon signals
    /// ([`Detector::logon_signals`]) and, when the hop is itself novel, a
    /// decaying share of the anomalous hop that reached its source. A failed
    /// logon is scored but never teaches the graph or the calibration.
    pub(super) fn hop(
        &mut self,
        obs: HopObs,
        ts: u64,
        ev_id: (HostId, u64),
        learn: bool,
    ) -> (f64, bool, Vec<Alert>) {
        let keys = HopKeys {
            src: obs.src.0,
            dst: obs.dst.0,
            user: obs.user.as_deref().map(|u| key(&format!("u:{u}"))),
            port: obs.port,
        };
        let rarity = self.graph.rarity(&keys, self.cfg.prior_mass);
        let remote = obs.src != obs.dst;
        let sig = self.cfg.signals;
        let host_w = self.cfg.host_relation_weight;
        let base: f64 = rarity
            .parts
            .iter()
            .map(|(k, r)| sig.relation_weight(*k, host_w, obs.user.is_some()) * r.surprise)
            .sum();
        let signals = if remote && obs.user.is_some() {
            self.logon_signals(obs.src, obs.dst, rarity.new_triple, obs.failure, ts)
        } else {
            Vec::new()
        };
        // Baseline-normal hops (known edge, known user on it) neither take
        // nor pass on a chain: a landing host's routine outbound traffic
        // must not join the attacker's path.
        let first_logon = obs.user.is_some() && self.logons.edge(obs.src, obs.dst).logons == 0;
        let novel = remote && (rarity.new_edge || rarity.new_triple || first_logon);
        let chain = if novel && sig.chain {
            self.chain_predecessor(obs.src, obs.dst, ts)
        } else {
            None
        };
        let chain_bonus = chain.map(|p| self.chain_bonus(p, ts)).unwrap_or(0.0);
        let score = if remote {
            base + chain_bonus + signals.iter().map(|s| s.2).sum::<f64>()
        } else {
            local_score(base)
        };
        // Failures never teach (unless an ablation run switches that off).
        if learn && (!obs.failure || !sig.failures) {
            self.graph.observe(&keys);
            if remote && obs.user.is_some() {
                self.logons.learn(obs.src, obs.dst, ts);
            }
        }
        let new_edge = rarity.new_edge;
        if !remote || !learn || obs.failure {
            return (score, new_edge, Vec::new());
        }
        if let Some(st) = self.hosts.get_mut(&obs.dst) {
            st.hops_seen += 1;
            if st.hop_scores.len() >= HOP_SAMPLES {
                st.hop_scores.pop_front();
            }
            st.hop_scores.push_back((ts, score as f32));
        }
        let alerts = if obs.alertable {
            let scored = ScoredHop {
                keys,
                rarity,
                score,
                chain_bonus,
                chain_age_ns: chain.map(|p| ts.saturating_sub(self.hop_at(p).first_ns)),
                signals,
                novel,
            };
            self.record_hop(obs, scored, ts, ev_id)
        } else {
            Vec::new()
        };
        (score, new_edge, alerts)
    }

    /// Whether hop `h` was first seen while its target learnt.
    pub(super) fn scored_while_learning(&self, h: &HopRecord) -> bool {
        self.learning_at(h.dst, h.first_ns)
    }

    /// Whether `host` was in its learning period at `ts` — the one rule for
    /// hop records and Sigma hits alike. A period lengthened after the host
    /// became active (it applies to hosts still learning) ends at its latest
    /// training at the latest; with no learning period nothing learns (a
    /// cold start makes its hosts active at training time, before events
    /// dated earlier arrive).
    pub(super) fn learning_at(&self, host: HostId, ts: u64) -> bool {
        if self.cfg.learning_period_ns == 0 {
            return false;
        }
        self.hosts.get(&host).is_some_and(|st| {
            let mut end = st.first_seen_ns.saturating_add(self.cfg.learning_period_ns);
            if let Some(m) = &st.model {
                end = end.min(m.trained_to_ns);
            }
            ts < end
        })
    }

    /// The hop threshold of `dst`: its model's once active, none while it
    /// learns, the fleet's for a host never seen.
    pub(super) fn hop_threshold(&self, dst: HostId) -> Option<f64> {
        match self.hosts.get(&dst) {
            Some(st) if st.phase == HostPhase::Active => st.model.as_ref().map(|m| m.hop_threshold),
            Some(_) => None,
            None => self.fleet_hop_threshold,
        }
    }

    /// Positions in `hops` of the recent hops into `dst`, oldest first.
    pub(super) fn positions_into(&self, dst: HostId) -> Vec<usize> {
        let (lo, hi) = (self.hop_base, self.hop_base + self.hops.len() as u64);
        self.by_dst
            .get(&dst)
            .map(|v| {
                v.iter()
                    .filter(|g| **g >= lo && **g < hi)
                    .map(|g| (g - lo) as usize)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Appends a recent hop and indexes it; returns its position.
    fn push_hop(&mut self, h: HopRecord) -> usize {
        let g = self.hop_base + self.hops.len() as u64;
        self.by_dst.entry(h.dst).or_default().push(g);
        self.by_pair.insert((h.src, h.dst), g);
        self.hops.push_back(h);
        self.hops.len() - 1
    }

    /// Drops the oldest recent hop and its index entries.
    fn pop_hop(&mut self) {
        let Some(h) = self.hops.pop_front() else {
            return;
        };
        let g = self.hop_base;
        self.hop_base += 1;
        if h.chain_head && h.first_ns.saturating_add(self.cfg.chain_window_ns) >= self.last_ns {
            if self.chain_heads.len() >= MAX_CHAIN_HEADS {
                self.chain_heads.pop_front();
            }
            self.chain_heads.push_back(h.clone());
        }
        if let Some(v) = self.by_dst.get_mut(&h.dst) {
            v.retain(|x| *x > g);
            if v.is_empty() {
                self.by_dst.remove(&h.dst);
            }
        }
        if self.by_pair.get(&(h.src, h.dst)) == Some(&g) {
            self.by_pair.remove(&(h.src, h.dst));
        }
    }

    fn record_hop(
        &mut self,
        obs: HopObs,
        sh: ScoredHop,
        ts: u64,
        ev_id: (HostId, u64),
    ) -> Vec<Alert> {
        let overdue = self.correlate_overdue(self.last_ns.max(ts));
        self.prune_hops(ts);
        let dedupe_from = ts.saturating_sub(self.cfg.hop_dedupe_ns);
        let latest = self
            .by_pair
            .get(&(obs.src, obs.dst))
            .and_then(|g| g.checked_sub(self.hop_base))
            .map(|p| p as usize)
            .filter(|p| *p < self.hops.len());
        let existing = latest.filter(|&p| {
            let h = &self.hops[p];
            h.src == obs.src
                && h.dst == obs.dst
                && h.last_ns >= dedupe_from
                && (h.user == obs.user || h.user.is_none() || obs.user.is_none())
                // Once its target is active, a hop first seen while it
                // learnt starts afresh, scored on everything learnt since.
                && !(self.scored_while_learning(h) && self.hop_threshold(h.dst).is_some())
        });
        let mut new_technique = false;
        let idx = match existing {
            Some(i) => {
                let h = &mut self.hops[i];
                new_technique = obs
                    .technique
                    .is_some_and(|t| !h.techniques.iter().any(|x| x == t));
                h.last_ns = ts;
                if h.evidence.len() < 16 {
                    h.evidence.push(ev_id);
                }
                if h.keys.len() < 8 && !h.keys.contains(&sh.keys) {
                    h.keys.push(sh.keys);
                }
                if let Some(p) = obs.port {
                    push_unique(&mut h.ports, p);
                }
                if let Some(t) = obs.technique {
                    push_unique(&mut h.techniques, t.to_string());
                }
                if h.user.is_none() && obs.user.is_some() {
                    h.user = obs.user.clone();
                }
                h.novel |= sh.novel;
                // A logon after a connection (or the reverse) is the same
                // move; keep the stronger reading of it (traces already
                // added stay added).
                let traced: f64 = h.boosts.iter().map(|b| b.2).sum();
                if sh.score + traced > h.score {
                    h.score = sh.score + traced;
                    h.rarity = sh.rarity;
                    h.chain_bonus = sh.chain_bonus;
                    h.chain_age_ns = sh.chain_age_ns;
                    h.signals = sh.signals;
                }
                i
            }
            None => {
                let idx = self.push_hop(HopRecord {
                    src: obs.src,
                    dst: obs.dst,
                    user: obs.user.clone(),
                    ports: obs.port.into_iter().collect(),
                    keys: vec![sh.keys],
                    first_ns: ts,
                    last_ns: ts,
                    score: sh.score,
                    rarity: sh.rarity,
                    techniques: obs
                        .technique
                        .map(|t| vec![t.to_string()])
                        .unwrap_or_default(),
                    processes: Vec::new(),
                    evidence: vec![ev_id],
                    alert_id: None,
                    incident_id: None,
                    chain_bonus: sh.chain_bonus,
                    boosts: Vec::new(),
                    signals: sh.signals,
                    chain_age_ns: sh.chain_age_ns,
                    novel: sh.novel,
                    chain_head: false,
                });
                self.apply_pending(idx, ts);
                idx
            }
        };
        let mut alerts = self.maybe_alert_hop(idx, ts);
        // An alerted hop seen again with another technique (a logon, then
        // SMB on the same pair) is re-emitted under its id, like a growing
        // incident, so the alert names every technique of the move.
        if new_technique && !alerts.iter().any(|a| a.kind == AlertKind::Hop) {
            let h = &self.hops[idx];
            if let (Some(id), Some(thr)) = (h.alert_id, self.hop_threshold(h.dst)) {
                alerts.insert(0, self.hop_alert(idx, id, thr, ts));
            }
        }
        if overdue.is_empty() {
            alerts
        } else {
            overdue.into_iter().chain(alerts).collect()
        }
    }

    /// Forgets recent hops past twice the dedupe window (anomalous ones
    /// move to the chain heads for the whole chain window) and incidents
    /// past twice the chain window.
    pub(super) fn prune_hops(&mut self, ts: u64) {
        let keep = self.cfg.hop_dedupe_ns * 2;
        while self
            .hops
            .front()
            .is_some_and(|h| h.last_ns.saturating_add(keep) < ts)
        {
            self.pop_hop();
        }
        while self.hops.len() > 4096 {
            self.pop_hop();
        }
        let window = self.cfg.chain_window_ns;
        while self
            .chain_heads
            .front()
            .is_some_and(|h| h.first_ns.saturating_add(window) < ts)
        {
            self.chain_heads.pop_front();
        }
        while self
            .incidents
            .front()
            .is_some_and(|i| i.last_ns.saturating_add(window.saturating_mul(2)) < ts)
            || self.incidents.len() > MAX_INCIDENTS
        {
            self.incidents.pop_front();
        }
    }

    /// The hop a reference points to.
    pub(super) fn hop_at(&self, r: HopRef) -> &HopRecord {
        match r {
            HopRef::Recent(i) => &self.hops[i],
            HopRef::Kept(i) => &self.chain_heads[i],
        }
    }

    /// The hop a reference points to, mutably.
    pub(super) fn hop_at_mut(&mut self, r: HopRef) -> &mut HopRecord {
        match r {
            HopRef::Recent(i) => &mut self.hops[i],
            HopRef::Kept(i) => &mut self.chain_heads[i],
        }
    }

    /// Alerts hop `idx` once it reaches its threshold, and correlates it
    /// into an incident from `chain_factor × threshold` on.
    pub(super) fn maybe_alert_hop(&mut self, idx: usize, ts: u64) -> Vec<Alert> {
        // Its score was read against a model still learning (a routine
        // edge's very first sighting): it never alerts, however long
        // repeats keep it alive.
        if self.scored_while_learning(&self.hops[idx]) {
            return Vec::new();
        }
        let (dst, score) = (self.hops[idx].dst, self.hops[idx].score);
        let Some(thr) = self.hop_threshold(dst) else {
            return Vec::new();
        };
        let mut alerts = Vec::new();
        if score >= self.cfg.chain_factor * thr {
            self.hops[idx].chain_head = true;
            if self.hops[idx].novel {
                alerts.extend(self.correlate_or_defer(idx, ts));
            }
        }
        if score >= thr && self.hops[idx].alert_id.is_none() {
            let id = self.alloc_id();
            self.hops[idx].alert_id = Some(id);
            alerts.insert(0, self.hop_alert(idx, id, thr, ts));
        }
        alerts
    }

    /// The hop alert with its explanation (rarity parts, traces, chain bonus).
    pub(super) fn hop_alert(&self, idx: usize, id: u64, thr: f64, ts: u64) -> Alert {
        let h = &self.hops[idx];
        let (src_name, dst_name) = (self.registry.name(h.src), self.registry.name(h.dst));
        let mut deviations: Vec<FeatureDeviation> = h
            .rarity
            .parts
            .iter()
            .filter(|(_, r)| r.surprise >= 0.5)
            .map(|(k, r)| FeatureDeviation {
                feature: k.name().to_string(),
                observed: f64::from(r.count),
                baseline: f64::from(r.ctx.n),
                score: self.cfg.signals.relation_weight(
                    *k,
                    self.cfg.host_relation_weight,
                    h.user.is_some(),
                ) * r.surprise,
                sentence: relation_sentence(*k, r, &src_name, &dst_name, h.user.as_deref()),
            })
            .collect();
        for (t, what, bonus) in &h.boosts {
            deviations.push(FeatureDeviation {
                feature: "remote_session_trace".into(),
                observed: 1.0,
                baseline: 0.0,
                score: *bonus,
                sentence: format!(
                    "right after the hop, {dst_name} ran {what} from a remote session ({t})"
                ),
            });
        }
        if h.chain_bonus > 0.0 {
            deviations.push(FeatureDeviation {
                feature: "chained_hop".into(),
                observed: 1.0,
                baseline: 0.0,
                score: h.chain_bonus,
                sentence: format!(
                    "{src_name} had itself been reached by an anomalous hop {} before",
                    human_span(h.chain_age_ns.unwrap_or(0))
                ),
            });
        }
        for (feature, sentence, bonus) in &h.signals {
            deviations.push(FeatureDeviation {
                feature: feature.clone(),
                observed: 1.0,
                baseline: 0.0,
                score: *bonus,
                sentence: sentence.clone(),
            });
        }
        deviations.sort_by(|a, b| b.score.total_cmp(&a.score));
        let who = h
            .user
            .as_deref()
            .map(|u| format!(" as {u}"))
            .unwrap_or_default();
        let mut techniques = h.techniques.clone();
        if h.rarity.new_triple {
            push_unique(&mut techniques, "T1078".to_string());
        }
        Alert {
            id,
            created_ns: ts,
            kind: AlertKind::Hop,
            severity: severity_for(h.score, thr, 2),
            score: h.score,
            title: format!("Unusual hop {src_name} → {dst_name}{who}"),
            host: h.dst,
            path: vec![h.src, h.dst],
            path_names: vec![src_name.clone(), dst_name.clone()],
            users: h.user.iter().cloned().collect(),
            ports: h.ports.clone(),
            processes: h.processes.clone(),
            techniques,
            summary: format!(
                "{src_name} → {dst_name}{who}: surprise {:.1} nats against a threshold of {thr:.1}; {}",
                h.score,
                deviations.first().map(|d| d.sentence.as_str()).unwrap_or("")
            ),
            deviations,
            evidence: h.evidence.clone(),
            incident_id: h.incident_id,
            model_version: self.model_tag(h.dst),
        }
    }

    /// Version tag of the model that judged `host` (`fleet` when it has none).
    pub(super) fn model_tag(&self, host: HostId) -> Option<String> {
        match self.hosts.get(&host).and_then(|s| s.model.as_ref()) {
            Some(m) => Some(m.version_tag()),
            None => Some("fleet".into()),
        }
    }
}

/// A span for a sentence: seconds, minutes, hours or days.
pub(super) fn human_span(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7_199 => format!("{} min", s / 60),
        7_200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// One sentence saying how rare one relation of a hop was.
fn relation_sentence(
    k: crate::graph::RelationKind,
    r: &crate::graph::Rarity,
    src: &str,
    dst: &str,
    user: Option<&str>,
) -> String {
    use crate::graph::RelationKind as K;
    let u = user.unwrap_or("?");
    let seen = if r.count == 0 {
        "never before".to_string()
    } else {
        format!("{} times before", r.count)
    };
    let ctx = if r.ctx.n == 0 {
        format!("no history yet, prior p = {:.4}", r.p)
    } else {
        format!(
            "{} of {} past events were novel (p = {:.4})",
            r.ctx.distinct, r.ctx.n, r.p
        )
    };
    match k {
        K::DstFromSrc => format!("{dst} was reached from {src} {seen}; {ctx}"),
        K::SrcToDst => format!("{src} went to {dst} {seen}; {ctx}"),
        K::UserToDst => format!("user {u} logged on to {dst} {seen}; {ctx}"),
        K::UserFromSrc => format!("user {u} came from {src} {seen}; {ctx}"),
        K::DstUser => format!("{dst} saw user {u} {seen}; {ctx}"),
        K::SrcPort => format!("{src} used this admin service {seen}; {ctx}"),
    }
}
