//! The streaming detector: events in, alerts out. A state machine in the
//! style of `quinn-proto` — no I/O, no clock; the caller passes every event
//! and the current time, and persists [`Detector::snapshot`] as it likes.
//!
//! Path of one event: [`Detector::observe`] → resolve peer → graph rarity
//! (score, then learn) → host windows → hop alert / incident; window closes
//! (on later events or [`Detector::tick`]) → multivariate score → window alert.

use crate::alert::{push_unique, severity_for, Alert, AlertKind};
use crate::classify::{
    auth_technique, basename, is_admin_port, is_authorized_keys, port_technique, remote_spawn,
    service_port,
};
use crate::error::ModelError;
use crate::features::{
    Facts, FeatureVector, HourOfWeekProfile, WindowAccum, WindowLen, FEATURE_NAMES, FEATURE_WORDS,
};
use crate::graph::{key, FleetGraph, HopKeys, HopRarity};
use crate::model::{quantile, HostModel, ModelMetrics, WindowModel};
use crate::registry::{is_internal, is_local_only, Registry};
use crate::suppress::{preview, Suppression, SuppressionError, SuppressionScope};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use vigil_proto::query::{FeatureDeviation, Severity};
use vigil_proto::{Event, HostId, LoginInfo, Payload};

const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;
const NS_PER_HOUR: u64 = 3_600 * 1_000_000_000;
/// Snapshot format version.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// Tunables. Defaults are the values frozen on the generator's dev seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorConfig {
    /// How long a host only learns before it may alert.
    pub learning_period_ns: u64,
    /// How often models are retrained (tick triggers it).
    pub retrain_interval_ns: u64,
    /// A → B then B → C within this window chains into one incident.
    pub chain_window_ns: u64,
    /// The same (src, dst, user) hop alerts at most once per this span.
    pub hop_dedupe_ns: u64,
    /// Fleet-wide alert budget the hop thresholds are calibrated to.
    pub alert_budget_per_day: f64,
    /// No host's hop threshold goes below this (nats).
    pub min_hop_threshold: f64,
    /// Hop threshold of a host trained with no hop history (cold start).
    pub cold_start_hop_threshold: f64,
    /// Beta-prior pseudo-observations of "nothing new" per context.
    pub prior_mass: f64,
    /// Added to a hop when its destination then runs a remote-spawned process.
    pub spawn_bonus: f64,
    /// Share of a chained predecessor hop's score added to a hop.
    pub chain_weight: f64,
    /// A hop at or above `chain_factor × threshold` may link into a chain.
    pub chain_factor: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            learning_period_ns: 7 * NS_PER_DAY,
            retrain_interval_ns: NS_PER_DAY,
            chain_window_ns: NS_PER_HOUR,
            hop_dedupe_ns: NS_PER_HOUR,
            alert_budget_per_day: 20.0,
            min_hop_threshold: 6.0,
            cold_start_hop_threshold: 10.0,
            prior_mass: 20.0,
            spawn_bonus: 5.0,
            chain_weight: 0.5,
            chain_factor: 0.6,
        }
    }
}

/// Whether a host is still learning or already scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostPhase {
    /// Collecting baseline; no alerts from this host.
    Learning,
    /// Has a trained model; alerts.
    Active,
}

/// Most 5-minute window vectors kept per host for training (one day).
const RING_5M: usize = 288;
/// Most 1-hour window vectors kept per host for training (one week).
const RING_1H: usize = 168;
/// Most hop scores kept per host for threshold calibration.
const HOP_SAMPLES: usize = 256;
/// Most parent→child pairs / binaries remembered per host.
const MAX_PAIRS: usize = 1024;
/// Indices of the features that speak of lateral movement (new peers,
/// admin-port peers, new logon triples, failed logons, remote-spawned
/// processes, new parent→child pairs, rare binaries).
const LATERAL_FEATURES: [usize; 7] = [1, 2, 4, 5, 6, 7, 8];
/// Most past alerts kept for suppression previews.
const MAX_HISTORY: usize = 2000;

/// Per-host state (survives restarts through the snapshot).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostState {
    phase: HostPhase,
    first_seen_ns: u64,
    w5: Option<WindowAccum>,
    w1h: Option<WindowAccum>,
    ring5: VecDeque<(u64, FeatureVector)>,
    ring1h: VecDeque<(u64, FeatureVector)>,
    how: HourOfWeekProfile,
    pairs: HashSet<u64>,
    binaries: HashSet<u64>,
    hop_scores: VecDeque<(u64, f32)>,
    hops_seen: u64,
    model: Option<HostModel>,
}

impl HostState {
    fn new(now_ns: u64) -> Self {
        HostState {
            phase: HostPhase::Learning,
            first_seen_ns: now_ns,
            w5: None,
            w1h: None,
            ring5: VecDeque::new(),
            ring1h: VecDeque::new(),
            how: HourOfWeekProfile::default(),
            pairs: HashSet::new(),
            binaries: HashSet::new(),
            hop_scores: VecDeque::new(),
            hops_seen: 0,
            model: None,
        }
    }
}

/// A recent hop, kept for dedupe, spawn linking and chaining.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HopRecord {
    src: HostId,
    dst: HostId,
    user: Option<String>,
    ports: Vec<u16>,
    keys: Vec<HopKeys>,
    first_ns: u64,
    last_ns: u64,
    score: f64,
    rarity: HopRarity,
    techniques: Vec<String>,
    processes: Vec<String>,
    evidence: Vec<(HostId, u64)>,
    alert_id: Option<u64>,
    incident_id: Option<u64>,
    chain_bonus: f64,
    /// Remote-session traces already added to the score: (technique,
    /// process or trace, bonus).
    boosts: Vec<(String, String, f64)>,
}

/// A remote-session trace (spawn, key write) seen before its hop arrived
/// (Windows channels reach the collector in a different order).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingTrace {
    host: HostId,
    ts: u64,
    technique: String,
    process: Option<String>,
    ev_id: (HostId, u64),
    bonus: f64,
}

/// A lateral-movement incident under construction.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Incident {
    id: u64,
    path: Vec<HostId>,
    users: Vec<String>,
    ports: Vec<u16>,
    processes: Vec<String>,
    techniques: Vec<String>,
    evidence: Vec<(HostId, u64)>,
    hop_scores: Vec<f64>,
    last_ns: u64,
}

/// An analyst's verdict on an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Real attack: excluded from training, its edges taken out of the graph.
    TruePositive,
    /// Benign: may become a suppression (see [`Detector::add_suppression`]).
    FalsePositive,
}

/// One host's model status, for `vigil model status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelStatus {
    /// Host.
    pub host: HostId,
    /// Registered name.
    pub hostname: String,
    /// Learning or active.
    pub phase: HostPhase,
    /// First event seen, ns.
    pub first_seen_ns: u64,
    /// `v<n>-<hash prefix>` when trained.
    pub version: Option<String>,
    /// Full SHA-256 of the parameters.
    pub sha256: Option<String>,
    /// Training data span, ns.
    pub trained_window_ns: Option<(u64, u64)>,
    /// Current hop threshold.
    pub hop_threshold: Option<f64>,
    /// Training metrics.
    pub metrics: Option<ModelMetrics>,
    /// Serialised model size, bytes.
    pub model_bytes: usize,
}

/// What observing one event produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Suspicion score of the event when it is a logon-like hop (higher is
    /// more suspicious); the evaluation scores auth events with it.
    pub score: Option<f64>,
    /// Whether the hop's src → dst edge was new (the first-time baseline).
    pub new_edge: Option<bool>,
    /// Alerts raised (suppressed ones already removed).
    pub alerts: Vec<Alert>,
}

/// The streaming detector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Detector {
    cfg: DetectorConfig,
    registry: Registry,
    graph: FleetGraph,
    hosts: BTreeMap<HostId, HostState>,
    binary_hosts: BTreeMap<u64, u32>,
    hops: VecDeque<HopRecord>,
    /// Global index of `hops[0]`; indices below are kept per destination
    /// and per pair so lookups never scan every recent hop.
    hop_base: u64,
    by_dst: HashMap<HostId, Vec<u64>>,
    by_pair: HashMap<(HostId, HostId), u64>,
    pending: VecDeque<PendingTrace>,
    incidents: VecDeque<Incident>,
    history: VecDeque<Alert>,
    history_keys: VecDeque<(u64, Vec<HopKeys>)>,
    excluded: Vec<(HostId, u64, u64)>,
    suppressions: Vec<Suppression>,
    suppressed_total: u64,
    next_id: u64,
    last_train_ns: Option<u64>,
    fleet_hop_threshold: Option<f64>,
    last_ns: u64,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    format: u32,
    detector: Detector,
}

/// One observed hop before scoring.
struct HopObs {
    src: HostId,
    dst: HostId,
    user: Option<String>,
    port: Option<u16>,
    technique: Option<&'static str>,
    alertable: bool,
}

impl Detector {
    /// A detector with this configuration and no hosts.
    pub fn new(cfg: DetectorConfig) -> Self {
        Detector {
            cfg,
            registry: Registry::default(),
            graph: FleetGraph::default(),
            hosts: BTreeMap::new(),
            binary_hosts: BTreeMap::new(),
            hops: VecDeque::new(),
            hop_base: 0,
            by_dst: HashMap::new(),
            by_pair: HashMap::new(),
            pending: VecDeque::new(),
            incidents: VecDeque::new(),
            history: VecDeque::new(),
            history_keys: VecDeque::new(),
            excluded: Vec::new(),
            suppressions: Vec::new(),
            suppressed_total: 0,
            next_id: 1,
            last_train_ns: None,
            fleet_hop_threshold: None,
            last_ns: 0,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Change the operator-facing tunables (the console's settings): the
    /// learning period applies to hosts still learning at the next tick,
    /// the alert budget at the next (re)training. True when anything changed.
    pub fn set_tuning(&mut self, learning_period_ns: u64, alert_budget_per_day: f64) -> bool {
        let changed = self.cfg.learning_period_ns != learning_period_ns
            || self.cfg.alert_budget_per_day != alert_budget_per_day;
        self.cfg.learning_period_ns = learning_period_ns;
        self.cfg.alert_budget_per_day = alert_budget_per_day;
        changed
    }

    /// Tells the detector which names and addresses belong to a host, so a
    /// peer address or a source workstation name resolves to it.
    pub fn register_host(&mut self, id: HostId, hostname: &str, addrs: &[IpAddr]) {
        self.registry.register(id, hostname, addrs);
    }

    /// Display name of a host.
    pub fn host_name(&self, id: HostId) -> String {
        self.registry.name(id)
    }

    /// Host by name (full or short), if registered or seen.
    pub fn host_by_name(&self, name: &str) -> Option<HostId> {
        self.registry.by_name(name)
    }

    /// Host by address, if registered or seen.
    pub fn host_by_addr(&self, ip: IpAddr) -> Option<HostId> {
        self.registry.by_addr(ip)
    }

    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn resolve_peer(
        &mut self,
        me: HostId,
        addr: Option<IpAddr>,
        name: Option<&str>,
    ) -> Option<HostId> {
        if let Some(ip) = addr {
            if !is_local_only(ip) {
                if let Some(h) = self.registry.by_addr(ip) {
                    return (h != me).then_some(h);
                }
                if is_internal(ip) {
                    return Some(self.registry.unmanaged(&ip.to_string(), Some(ip)));
                }
            }
        }
        let name = name.map(str::trim).filter(|n| !n.is_empty() && *n != "-")?;
        if let Some(h) = self.registry.by_name(name) {
            return (h != me).then_some(h);
        }
        Some(self.registry.unmanaged(name, None))
    }

    /// Observes one event; returns the alerts it raised.
    pub fn observe(&mut self, ev: &Event) -> Vec<Alert> {
        self.observe_scored(ev).alerts
    }

    /// Observes one event; returns its score (for logon-like events) and
    /// the alerts it raised.
    pub fn observe_scored(&mut self, ev: &Event) -> Observed {
        let host = ev.header.host;
        let ts = ev.header.ts_ns;
        self.last_ns = self.last_ns.max(ts);
        let mut out = Observed::default();
        self.hosts.entry(host).or_insert_with(|| HostState::new(ts));
        if self.registry.get(host).is_none() {
            self.registry.register(host, "", &[]);
        }
        out.alerts.extend(self.roll_windows(host, ts));
        let ev_id = (host, ev.header.seq);
        let mut facts = Facts::default();
        match &ev.payload {
            Payload::Login(l) | Payload::AuthFailure(l) | Payload::Logout(l) => {
                let failure = matches!(ev.payload, Payload::AuthFailure(_));
                let logout = matches!(ev.payload, Payload::Logout(_));
                let user = normalise_user(&l.user);
                facts.user = Some(key(&format!("u:{user}")));
                facts.auth_failure = failure;
                let peer = self.resolve_peer(host, l.src_addr, l.src_host.as_deref());
                let obs = HopObs {
                    src: peer.unwrap_or(host),
                    dst: host,
                    user: Some(user),
                    port: service_port(&l.service),
                    technique: remote_logon_technique(l),
                    alertable: peer.is_some() && !failure && !logout,
                };
                let (score, new_edge, new_triple, alerts) =
                    self.hop(obs, ts, ev_id, !logout, &mut facts);
                facts.new_triple = new_triple && peer.is_some() && !logout;
                out.score = Some(score);
                out.new_edge = Some(new_edge);
                out.alerts.extend(alerts);
            }
            Payload::NetConnect(f) | Payload::NetAccept(f) => {
                let outbound = matches!(ev.payload, Payload::NetConnect(_));
                let remote_ip = f.remote.ip();
                let to_self = remote_ip == f.local.ip();
                if !to_self
                    && (is_internal(remote_ip) || self.registry.by_addr(remote_ip).is_some())
                {
                    if let Some(peer) = self.resolve_peer(host, Some(remote_ip), None) {
                        let port = if outbound {
                            f.remote.port()
                        } else {
                            f.local.port()
                        };
                        let admin = is_admin_port(port);
                        let (src, dst) = if outbound { (host, peer) } else { (peer, host) };
                        facts.peer = Some(key(&format!("p:{}", peer.0)));
                        facts.admin_port = admin;
                        if admin {
                            let obs = HopObs {
                                src,
                                dst,
                                user: None,
                                port: Some(port),
                                technique: Some(port_technique(port)),
                                alertable: true,
                            };
                            let mut tmp = Facts::default();
                            let (_, _, _, alerts) = self.hop(obs, ts, ev_id, true, &mut tmp);
                            facts.new_peer = tmp.new_peer;
                            out.alerts.extend(alerts);
                        } else {
                            facts.new_peer = self.note_plain_peer(src, dst);
                        }
                    }
                }
            }
            Payload::ProcessStart(p) => {
                let child = p.exe.as_deref().map(basename).unwrap_or_default();
                let parent = p.parent_exe.as_deref().map(basename).unwrap_or_default();
                if let Some(u) = &p.user {
                    facts.user = Some(key(&format!("u:{}", normalise_user(u))));
                }
                out.alerts
                    .extend(self.process(host, ts, ev_id, &parent, &child, &mut facts));
            }
            Payload::FileChange(f) if is_authorized_keys(&f.path) => {
                facts.new_parent_child = false;
                out.alerts
                    .extend(self.link_to_hop(host, ts, ev_id, "T1098.004", None, 2.0));
            }
            _ => {}
        }
        if let Some(st) = self.hosts.get_mut(&host) {
            for w in [st.w5.as_mut(), st.w1h.as_mut()].into_iter().flatten() {
                w.add(&facts, ev_id);
            }
        }
        out.alerts = self.apply_suppressions(out.alerts, ts);
        out
    }

    fn note_plain_peer(&mut self, src: HostId, dst: HostId) -> bool {
        let keys = HopKeys {
            src: src.0,
            dst: dst.0,
            user: None,
            port: None,
        };
        let new = self.graph.rarity(&keys, self.cfg.prior_mass).new_edge;
        self.graph.observe(&keys);
        new
    }

    /// Scores, learns and maybe alerts one hop. Returns (score, new edge,
    /// new triple, alerts).
    fn hop(
        &mut self,
        obs: HopObs,
        ts: u64,
        ev_id: (HostId, u64),
        learn: bool,
        facts: &mut Facts,
    ) -> (f64, bool, bool, Vec<Alert>) {
        let keys = HopKeys {
            src: obs.src.0,
            dst: obs.dst.0,
            user: obs.user.as_deref().map(|u| key(&format!("u:{u}"))),
            port: obs.port,
        };
        let rarity = self.graph.rarity(&keys, self.cfg.prior_mass);
        let chain = self.chain_predecessor(obs.src, obs.dst, ts);
        let chain_bonus = chain
            .map(|i| self.cfg.chain_weight * self.hops[i].score.min(20.0))
            .unwrap_or(0.0);
        let base = rarity.score();
        let score = base + chain_bonus;
        if learn {
            self.graph.observe(&keys);
        }
        let remote = obs.src != obs.dst;
        facts.peer = remote.then(|| {
            key(&format!(
                "p:{}",
                if obs.src == ev_id.0 {
                    obs.dst.0
                } else {
                    obs.src.0
                }
            ))
        });
        facts.new_peer = remote && rarity.new_edge;
        facts.admin_port = remote && obs.port.is_some_and(is_admin_port);
        let new_edge = rarity.new_edge;
        let new_triple = rarity.new_triple;
        if !remote || !learn {
            return (score, new_edge, new_triple, Vec::new());
        }
        if let Some(st) = self.hosts.get_mut(&obs.dst) {
            st.hops_seen += 1;
            if st.hop_scores.len() >= HOP_SAMPLES {
                st.hop_scores.pop_front();
            }
            st.hop_scores.push_back((ts, score as f32));
        }
        let alerts = if obs.alertable {
            self.record_hop(obs, keys, rarity, score, chain_bonus, ts, ev_id)
        } else {
            Vec::new()
        };
        (score, new_edge, new_triple, alerts)
    }

    fn hop_threshold(&self, dst: HostId) -> Option<f64> {
        match self.hosts.get(&dst) {
            Some(st) if st.phase == HostPhase::Active => st.model.as_ref().map(|m| m.hop_threshold),
            Some(_) => None,
            None => self.fleet_hop_threshold,
        }
    }

    fn chain_predecessor(&self, src: HostId, dst: HostId, ts: u64) -> Option<usize> {
        let from = ts.saturating_sub(self.cfg.chain_window_ns);
        let mut best: Option<usize> = None;
        for i in self.positions_into(src) {
            let h = &self.hops[i];
            if h.dst != src || h.src == dst || h.first_ns < from || h.first_ns > ts {
                continue;
            }
            let thr = self
                .hop_threshold(h.dst)
                .unwrap_or(self.cfg.cold_start_hop_threshold);
            if h.score >= self.cfg.chain_factor * thr
                && best.is_none_or(|b| self.hops[b].score < h.score)
            {
                best = Some(i);
            }
        }
        best
    }

    /// Positions in `hops` of the recent hops into `dst`, oldest first.
    fn positions_into(&self, dst: HostId) -> Vec<usize> {
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

    fn push_hop(&mut self, h: HopRecord) -> usize {
        let g = self.hop_base + self.hops.len() as u64;
        self.by_dst.entry(h.dst).or_default().push(g);
        self.by_pair.insert((h.src, h.dst), g);
        self.hops.push_back(h);
        self.hops.len() - 1
    }

    fn pop_hop(&mut self) {
        let Some(h) = self.hops.pop_front() else {
            return;
        };
        let g = self.hop_base;
        self.hop_base += 1;
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

    #[allow(clippy::too_many_arguments)]
    fn record_hop(
        &mut self,
        obs: HopObs,
        keys: HopKeys,
        rarity: HopRarity,
        score: f64,
        chain_bonus: f64,
        ts: u64,
        ev_id: (HostId, u64),
    ) -> Vec<Alert> {
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
        });
        let idx = match existing {
            Some(i) => {
                let h = &mut self.hops[i];
                h.last_ns = ts;
                if h.evidence.len() < 16 {
                    h.evidence.push(ev_id);
                }
                if h.keys.len() < 8 && !h.keys.contains(&keys) {
                    h.keys.push(keys);
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
                // A logon after a connection (or the reverse) is the same
                // move; keep the stronger reading of it.
                if score > h.score {
                    h.score = score;
                    h.rarity = rarity;
                    h.chain_bonus = chain_bonus;
                }
                i
            }
            None => {
                let idx = self.push_hop(HopRecord {
                    src: obs.src,
                    dst: obs.dst,
                    user: obs.user.clone(),
                    ports: obs.port.into_iter().collect(),
                    keys: vec![keys],
                    first_ns: ts,
                    last_ns: ts,
                    score,
                    rarity,
                    techniques: obs
                        .technique
                        .map(|t| vec![t.to_string()])
                        .unwrap_or_default(),
                    processes: Vec::new(),
                    evidence: vec![ev_id],
                    alert_id: None,
                    incident_id: None,
                    chain_bonus,
                    boosts: Vec::new(),
                });
                self.apply_pending(idx, ts);
                idx
            }
        };
        self.maybe_alert_hop(idx, ts)
    }

    fn prune_hops(&mut self, ts: u64) {
        let keep = self.cfg.chain_window_ns.max(self.cfg.hop_dedupe_ns) * 2;
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
        while self
            .incidents
            .front()
            .is_some_and(|i| i.last_ns.saturating_add(keep) < ts)
        {
            self.incidents.pop_front();
        }
    }

    fn maybe_alert_hop(&mut self, idx: usize, ts: u64) -> Vec<Alert> {
        let (dst, score) = (self.hops[idx].dst, self.hops[idx].score);
        let Some(thr) = self.hop_threshold(dst) else {
            return Vec::new();
        };
        let mut alerts = Vec::new();
        if score >= self.cfg.chain_factor * thr {
            alerts.extend(self.correlate(idx, ts));
        }
        if score >= thr && self.hops[idx].alert_id.is_none() {
            let id = self.alloc_id();
            self.hops[idx].alert_id = Some(id);
            alerts.insert(0, self.hop_alert(idx, id, thr, ts));
        }
        alerts
    }

    fn hop_alert(&self, idx: usize, id: u64, thr: f64, ts: u64) -> Alert {
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
                score: k.weight() * r.surprise,
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
                sentence: format!("{src_name} had itself just been reached by an anomalous hop"),
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

    fn model_tag(&self, host: HostId) -> Option<String> {
        match self.hosts.get(&host).and_then(|s| s.model.as_ref()) {
            Some(m) => Some(m.version_tag()),
            None => Some("fleet".into()),
        }
    }

    /// Chains hop `idx` (S → D) onto an anomalous X → S hop, if any.
    fn correlate(&mut self, idx: usize, ts: u64) -> Vec<Alert> {
        let (src, dst, first) = (
            self.hops[idx].src,
            self.hops[idx].dst,
            self.hops[idx].first_ns,
        );
        let Some(pred) = self.chain_predecessor(src, dst, first) else {
            return Vec::new();
        };
        if pred == idx {
            return Vec::new();
        }
        let inc_pos = self.hops[pred]
            .incident_id
            .and_then(|iid| self.incidents.iter().position(|i| i.id == iid));
        let inc_pos = match inc_pos {
            Some(p) => p,
            None => {
                let id = self.alloc_id();
                let p = &self.hops[pred];
                self.incidents.push_back(Incident {
                    id,
                    path: vec![p.src, p.dst],
                    users: p.user.iter().cloned().collect(),
                    ports: p.ports.clone(),
                    processes: p.processes.clone(),
                    techniques: p.techniques.clone(),
                    evidence: p.evidence.clone(),
                    hop_scores: vec![p.score],
                    last_ns: p.last_ns,
                });
                self.hops[pred].incident_id = Some(id);
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
        inc.last_ns = ts;
        vec![self.incident_alert(inc_pos, ts)]
    }

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
                "{} anomalous hops chained within {} min: {}",
                inc.hop_scores.len(),
                self.cfg.chain_window_ns / 60_000_000_000,
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

    fn process(
        &mut self,
        host: HostId,
        ts: u64,
        ev_id: (HostId, u64),
        parent: &str,
        child: &str,
        facts: &mut Facts,
    ) -> Vec<Alert> {
        if child.is_empty() {
            return Vec::new();
        }
        let pair_key = key(&format!("{parent}>{child}"));
        let bin_key = key(child);
        let fleet_hosts = self.hosts.len() as u32;
        let Some(st) = self.hosts.get_mut(&host) else {
            return Vec::new();
        };
        if !parent.is_empty() && !st.pairs.contains(&pair_key) && st.pairs.len() < MAX_PAIRS {
            st.pairs.insert(pair_key);
            facts.new_parent_child = st.phase == HostPhase::Active || st.model.is_some();
        }
        let new_bin_here = !st.binaries.contains(&bin_key);
        if new_bin_here && st.binaries.len() < MAX_PAIRS {
            st.binaries.insert(bin_key);
        }
        let count = self.binary_hosts.entry(bin_key).or_insert(0);
        if new_bin_here {
            *count += 1;
        }
        facts.rare_binary =
            fleet_hosts >= 10 && f64::from(*count) <= (f64::from(fleet_hosts) * 0.02).max(1.0);
        let Some(t) = remote_spawn(parent, child) else {
            return Vec::new();
        };
        facts.remote_spawned = true;
        let bonus = self.cfg.spawn_bonus;
        self.link_to_hop(host, ts, ev_id, t, Some(child.to_string()), bonus)
    }

    /// Attaches a remote-session trace on `host` to the latest inbound hop,
    /// or keeps it a minute for a hop that is still on its way.
    fn link_to_hop(
        &mut self,
        host: HostId,
        ts: u64,
        ev_id: (HostId, u64),
        technique: &str,
        process: Option<String>,
        bonus: f64,
    ) -> Vec<Alert> {
        let from = ts.saturating_sub(10 * 60 * 1_000_000_000);
        let Some(idx) = self.positions_into(host).into_iter().rev().find(|&i| {
            let h = &self.hops[i];
            h.last_ns >= from && h.last_ns <= ts + 60_000_000_000
        }) else {
            while self.pending.len() >= 256 {
                self.pending.pop_front();
            }
            self.pending.push_back(PendingTrace {
                host,
                ts,
                technique: technique.to_string(),
                process,
                ev_id,
                bonus,
            });
            return Vec::new();
        };
        self.boost(idx, technique, process, ev_id, bonus);
        self.maybe_alert_hop(idx, ts)
    }

    fn boost(
        &mut self,
        idx: usize,
        technique: &str,
        process: Option<String>,
        ev_id: (HostId, u64),
        bonus: f64,
    ) {
        let h = &mut self.hops[idx];
        let process_note = match (&process, technique) {
            (Some(p), _) => p.clone(),
            (None, "T1098.004") => "a change to an SSH authorized_keys file".to_string(),
            (None, t) => t.to_string(),
        };
        push_unique(&mut h.techniques, technique.to_string());
        if let Some(p) = process {
            push_unique(&mut h.processes, p);
        }
        if h.evidence.len() < 16 {
            push_unique(&mut h.evidence, ev_id);
        }
        if !h.boosts.iter().any(|(t, _, _)| t == technique) {
            h.boosts.push((technique.to_string(), process_note, bonus));
            h.score += bonus;
        }
    }

    fn apply_pending(&mut self, idx: usize, ts: u64) {
        let dst = self.hops[idx].dst;
        let from = ts.saturating_sub(60_000_000_000);
        let (mine, rest): (Vec<PendingTrace>, Vec<PendingTrace>) = self
            .pending
            .drain(..)
            .partition(|p| p.host == dst && p.ts >= from && p.ts <= ts);
        self.pending = rest.into();
        for p in mine {
            self.boost(idx, &p.technique, p.process, p.ev_id, p.bonus);
        }
    }

    /// Closes every window of `host` that ended at or before `now_ns`.
    fn roll_windows(&mut self, host: HostId, now_ns: u64) -> Vec<Alert> {
        let mut alerts = Vec::new();
        for len in [WindowLen::FiveMin, WindowLen::Hour] {
            let Some(st) = self.hosts.get_mut(&host) else {
                break;
            };
            let slot = match len {
                WindowLen::FiveMin => &mut st.w5,
                WindowLen::Hour => &mut st.w1h,
            };
            let start = now_ns - now_ns % len.ns();
            let closed = match slot {
                Some(w) if w.start_ns + len.ns() <= now_ns => slot.replace(WindowAccum::new(start)),
                Some(_) => None,
                None => {
                    *slot = Some(WindowAccum::new(start));
                    None
                }
            };
            if let Some(w) = closed {
                if let Some(a) = self.close_window(host, len, w) {
                    alerts.push(a);
                }
            }
        }
        alerts
    }

    fn close_window(&mut self, host: HostId, len: WindowLen, w: WindowAccum) -> Option<Alert> {
        let st = self.hosts.get_mut(&host)?;
        let dev = if len == WindowLen::FiveMin {
            st.how.deviation_then_learn(w.start_ns, w.events)
        } else {
            0.0
        };
        let v = w.vector(dev);
        let ring = match len {
            WindowLen::FiveMin => &mut st.ring5,
            WindowLen::Hour => &mut st.ring1h,
        };
        let cap = if len == WindowLen::FiveMin {
            RING_5M
        } else {
            RING_1H
        };
        if ring.len() >= cap {
            ring.pop_front();
        }
        ring.push_back((w.start_ns, v));
        if st.phase != HostPhase::Active {
            return None;
        }
        let model = st.model.as_ref()?;
        let wm = match len {
            WindowLen::FiveMin => model.w5.as_ref(),
            WindowLen::Hour => model.w1h.as_ref(),
        }?;
        let d = wm.distance(&v);
        // More activity alone is not lateral movement: one of the
        // lateral-movement features must have moved too.
        let lateral = wm
            .deviations(&v)
            .iter()
            .any(|(i, _, _, z)| LATERAL_FEATURES.contains(i) && *z >= 2.0);
        if d < wm.threshold || !lateral {
            return None;
        }
        let name = self.registry.name(host);
        let deviations: Vec<FeatureDeviation> = wm
            .deviations(&v)
            .into_iter()
            .map(|(i, obs, base, z)| FeatureDeviation {
                feature: FEATURE_NAMES[i].to_string(),
                observed: f64::from(obs),
                baseline: f64::from(base),
                score: f64::from(z),
                sentence: format!(
                    "{}: {} in this {} window, usually {:.1} on {name} ({:.1} spreads above its norm)",
                    FEATURE_WORDS[i],
                    obs,
                    len.label(),
                    base,
                    z
                ),
            })
            .collect();
        let tag = model.version_tag();
        let thr = f64::from(wm.threshold);
        let id = self.alloc_id();
        let summary = format!(
            "{name}'s {} window at {} was {:.1} away from its baseline (threshold {:.1}): {}",
            len.label(),
            w.start_ns / 1_000_000_000,
            d,
            thr,
            deviations
                .iter()
                .take(3)
                .map(|d| d.feature.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Some(Alert {
            id,
            created_ns: w.start_ns + len.ns(),
            kind: AlertKind::Window,
            severity: severity_for(f64::from(d), thr, 1),
            score: f64::from(d),
            title: format!("Unusual {} of activity on {name}", len.label()),
            host,
            path: vec![host],
            path_names: vec![name],
            users: Vec::new(),
            ports: Vec::new(),
            processes: Vec::new(),
            techniques: Vec::new(),
            summary,
            deviations,
            evidence: w.evidence,
            incident_id: None,
            model_version: Some(tag),
        })
    }

    /// Advances time: closes windows that ended, retrains when due.
    pub fn tick(&mut self, now_ns: u64) -> Vec<Alert> {
        self.last_ns = self.last_ns.max(now_ns);
        let hosts: Vec<HostId> = self.hosts.keys().copied().collect();
        let mut alerts = Vec::new();
        for h in hosts {
            alerts.extend(self.roll_windows(h, now_ns));
        }
        match self.retrain_due(now_ns) {
            Some(true) => self.train(now_ns),
            Some(false) => self.train_hosts(now_ns, true),
            None => {}
        }
        self.prune_hops(now_ns);
        self.apply_suppressions(alerts, now_ns)
    }

    /// `Some(true)`: full retrain due; `Some(false)`: only hosts that just
    /// finished learning need a first model; `None`: nothing to do.
    fn retrain_due(&self, now_ns: u64) -> Option<bool> {
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

    fn is_excluded(&self, host: HostId, ts: u64) -> bool {
        self.excluded
            .iter()
            .any(|(h, from, to)| *h == host && ts >= *from && ts < *to)
    }

    /// Trains every host whose learning period is over (and retrains active
    /// ones), then calibrates hop thresholds to the fleet alert budget.
    /// Windows and hops inside confirmed true positives are left out.
    pub fn train(&mut self, now_ns: u64) {
        self.train_hosts(now_ns, false);
        self.last_train_ns = Some(now_ns);
    }

    /// Trains eligible hosts; with `only_new`, only hosts still learning
    /// (their first model), keeping the fleet threshold of the last full run.
    fn train_hosts(&mut self, now_ns: u64, only_new: bool) {
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
        // Pool (score, weight) over the fleet: weight = hops represented by
        // one kept sample per day of history.
        let mut pool: Vec<(f32, f64)> = Vec::new();
        for id in &eligible {
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
        match (only_new, self.fleet_hop_threshold) {
            (true, Some(known)) => fleet_thr = known,
            _ => self.fleet_hop_threshold = Some(fleet_thr),
        }
        for id in eligible {
            let excluded_5: Vec<bool>;
            let (v5, v1, scores, first_seen, hops_seen, old_version) = {
                let st = &self.hosts[&id];
                excluded_5 = st
                    .ring5
                    .iter()
                    .map(|(t, _)| self.is_excluded(id, *t))
                    .collect();
                let v5: Vec<FeatureVector> = st
                    .ring5
                    .iter()
                    .filter(|(t, _)| !self.is_excluded(id, *t))
                    .map(|(_, v)| *v)
                    .collect();
                let v1: Vec<FeatureVector> = st
                    .ring1h
                    .iter()
                    .filter(|(t, _)| !self.is_excluded(id, *t))
                    .map(|(_, v)| *v)
                    .collect();
                let scores: Vec<f32> = st
                    .hop_scores
                    .iter()
                    .filter(|(t, _)| !self.is_excluded(id, *t))
                    .map(|(_, s)| *s)
                    .collect();
                (
                    v5,
                    v1,
                    scores,
                    st.first_seen_ns,
                    st.hops_seen,
                    st.model.as_ref().map(|m| m.version).unwrap_or(0),
                )
            };
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
            let w5 = WindowModel::fit(WindowLen::FiveMin, &v5).ok();
            let w1h = WindowModel::fit(WindowLen::Hour, &v1).ok();
            let mut model = HostModel {
                version: old_version + 1,
                sha256: String::new(),
                trained_from_ns: first_seen,
                trained_to_ns: now_ns,
                hop_threshold,
                w5,
                w1h,
                metrics: ModelMetrics {
                    train_hops: scores.len() as u32,
                    hop_score_p99: f64::from(quantile(&scores, 0.99)),
                    train_windows_5m: v5.len() as u32,
                    train_windows_1h: v1.len() as u32,
                    excluded_windows: excluded_5.iter().filter(|e| **e).count() as u32,
                    expected_alerts_per_day: expected,
                },
            };
            if model.seal().is_err() {
                continue;
            }
            if let Some(st) = self.hosts.get_mut(&id) {
                st.model = Some(model);
                st.phase = HostPhase::Active;
            }
        }
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

    /// The trained model of a host.
    pub fn host_model(&self, host: HostId) -> Option<&HostModel> {
        self.hosts.get(&host).and_then(|s| s.model.as_ref())
    }

    /// Serialised size of one host's whole state (windows, rings, model).
    pub fn host_state_bytes(&self, host: HostId) -> usize {
        self.hosts
            .get(&host)
            .and_then(|s| postcard::to_allocvec(s).ok())
            .map(|b| b.len())
            .unwrap_or(0)
    }

    /// Serialises the whole detector state (postcard, versioned).
    pub fn snapshot(&self) -> Result<Vec<u8>, ModelError> {
        #[derive(Serialize)]
        struct SnapshotRef<'a> {
            format: u32,
            detector: &'a Detector,
        }
        postcard::to_allocvec(&SnapshotRef {
            format: SNAPSHOT_FORMAT,
            detector: self,
        })
        .map_err(|e| ModelError::Encode(e.to_string()))
    }

    /// Restores a detector from [`Detector::snapshot`] bytes.
    pub fn restore(bytes: &[u8]) -> Result<Self, ModelError> {
        let s: Snapshot =
            postcard::from_bytes(bytes).map_err(|e| ModelError::Decode(e.to_string()))?;
        if s.format != SNAPSHOT_FORMAT {
            return Err(ModelError::SnapshotVersion {
                found: s.format,
                expected: SNAPSHOT_FORMAT,
            });
        }
        Ok(s.detector)
    }

    fn apply_suppressions(&mut self, alerts: Vec<Alert>, now_ns: u64) -> Vec<Alert> {
        let mut kept = Vec::with_capacity(alerts.len());
        for a in alerts {
            let keys = self.alert_keys(&a);
            if self.history.len() >= MAX_HISTORY {
                self.history.pop_front();
                self.history_keys.pop_front();
            }
            self.history.push_back(a.clone());
            self.history_keys.push_back((a.id, keys));
            if self.suppressions.iter().any(|s| s.hides(&a, now_ns)) {
                self.suppressed_total += 1;
            } else {
                kept.push(a);
            }
        }
        kept
    }

    fn alert_keys(&self, a: &Alert) -> Vec<HopKeys> {
        if a.kind == AlertKind::Window {
            return Vec::new();
        }
        self.hops
            .iter()
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

    /// Distinct edges in the fleet graph.
    pub fn graph_edges(&self) -> usize {
        self.graph.edges()
    }

    /// The closed windows kept for training of one host, oldest first:
    /// (window start ns, feature vector).
    pub fn recent_windows(&self, host: HostId, len: WindowLen) -> Vec<(u64, FeatureVector)> {
        self.hosts
            .get(&host)
            .map(|s| match len {
                WindowLen::FiveMin => s.ring5.iter().copied().collect(),
                WindowLen::Hour => s.ring1h.iter().copied().collect(),
            })
            .unwrap_or_default()
    }

    /// Phase of a host (None if never seen).
    pub fn phase(&self, host: HostId) -> Option<HostPhase> {
        self.hosts.get(&host).map(|s| s.phase)
    }
}

/// Lower-cased user name without a trailing `@domain` or leading `DOMAIN\`.
pub fn normalise_user(u: &str) -> String {
    let u = u.rsplit('\\').next().unwrap_or(u);
    u.split('@').next().unwrap_or(u).trim().to_ascii_lowercase()
}

fn remote_logon_technique(l: &LoginInfo) -> Option<&'static str> {
    auth_technique(&l.method).or_else(|| service_port(&l.service).map(port_technique))
}

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
