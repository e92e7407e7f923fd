//! The streaming detector: events in, alerts out. A state machine in the
//! style of `quinn-proto` — no I/O, no clock; the caller passes every event
//! and the current time, and persists [`Detector::snapshot`] as it likes.
//!
//! Path of one event: [`Detector::observe`] → resolve peer → graph rarity
//! and logon signals (score, then learn) → hop alert / incident; a later
//! process start or key write on the destination is a trace that raises the
//! hop it follows.
//!
//! The modules follow that path:
//! - `observe`: the two entry points (an event, a tick) and what each payload
//!   kind contributes (logons, flows, process starts, key files);
//! - `hops`: scoring one src → dst hop against the fleet graph, the recent-hop
//!   index, and the hop alert with its explanation;
//! - `traces`: remote-session traces (a spawned shell, a key write) that
//!   raise the score of the hop they follow;
//! - `incidents`: chaining anomalous hops into lateral-movement incidents;
//! - `training`: the learning period, (re)training and hop-threshold
//!   calibration to the alert budget, model status;
//! - `feedback`: suppressions, alert history and analyst verdicts.
//!
//! Every type in this file that derives `Serialize` is part of the stored
//! snapshot (postcard encodes fields in declaration order, without names):
//! reordering, adding or retyping a field changes the format and needs a new
//! [`SNAPSHOT_FORMAT`].

mod feedback;
mod hops;
mod incidents;
mod logons;
mod observe;
mod sigma;
mod signals;
mod snapshot;
mod traces;
mod training;

pub use observe::normalise_user;
pub use signals::Signals;

use crate::alert::Alert;
use crate::error::ModelError;
use crate::graph::{FleetGraph, HopKeys, HopRarity};
use crate::model::{HostModel, ModelMetrics};
use crate::registry::Registry;
use crate::suppress::Suppression;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use vigil_proto::HostId;

const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;
const NS_PER_HOUR: u64 = 3_600 * 1_000_000_000;
/// Snapshot format version (2: suppressions are `vigil_proto::suppress`
/// rules, and suppressed hops are kept out of budget calibration; 3: logon
/// memory, chain heads, hop signals — session 5 scoring; 4, session 8:
/// analysts' verdicts and re-ranker; window models, feature windows and the
/// alert kind `Window` removed; scoring switches in the configuration;
/// 5, session 9: host-relation weight in the configuration; 6, session 9:
/// Sigma hits learned per rule and host). Format 4 and later load through
/// the migrations in `snapshot`.
pub const SNAPSHOT_FORMAT: u32 = 6;

/// Tunables. Defaults are the values frozen on the generator's dev seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorConfig {
    /// How long a host only learns before it may alert.
    pub learning_period_ns: u64,
    /// How often models are retrained (tick triggers it).
    pub retrain_interval_ns: u64,
    /// A → B then B → C within this window chains into one incident (the
    /// chain bonus decays with a 6-hour half-life inside it).
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
    /// Which scoring signals are on (all, outside ablation runs).
    pub signals: Signals,
    /// Multiplier on the graph's three host relations (who reaches this
    /// host, where this source goes, its admin services) in the score of a
    /// logon hop; a user-less connection hop keeps them whole. Kept at 1 in
    /// session 9 by a rule fixed before measuring, on the tuning styles and
    /// dev seeds only: lower weights raise the top of the ranking but cost
    /// FP/day at 80 % recall (`docs/DETECTION.md`, "Session 9").
    pub host_relation_weight: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            learning_period_ns: 7 * NS_PER_DAY,
            retrain_interval_ns: NS_PER_DAY,
            chain_window_ns: 3 * NS_PER_DAY,
            hop_dedupe_ns: NS_PER_HOUR,
            alert_budget_per_day: 20.0,
            min_hop_threshold: 6.0,
            cold_start_hop_threshold: 10.0,
            prior_mass: 20.0,
            spawn_bonus: 5.0,
            chain_weight: 0.5,
            chain_factor: 0.6,
            signals: Signals::ALL,
            host_relation_weight: 1.0,
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

/// Per-host state (survives restarts through the snapshot).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostState {
    phase: HostPhase,
    first_seen_ns: u64,
    hop_scores: VecDeque<(u64, f32)>,
    hops_seen: u64,
    model: Option<HostModel>,
}

impl HostState {
    fn new(now_ns: u64) -> Self {
        HostState {
            phase: HostPhase::Learning,
            first_seen_ns: now_ns,
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
    /// Logon signals in the score: (feature, sentence, nats).
    signals: Vec<logons::Signal>,
    /// Age of the chained predecessor when the bonus was taken, ns.
    chain_age_ns: Option<u64>,
    /// Not baseline-normal (new edge, new user on it): may join a chain.
    novel: bool,
    /// Scored at least `chain_factor × threshold`: later hops out of its
    /// destination chain onto it (kept in `chain_heads` once it leaves
    /// the recent hops).
    chain_head: bool,
}

/// Where a hop used for chaining lives: among the recent hops or among the
/// chain heads kept for the whole chain window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HopRef {
    Recent(usize),
    Kept(usize),
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
    first_ns: u64,
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
    hops: VecDeque<HopRecord>,
    /// Global index of `hops[0]`; indices below are kept per destination
    /// and per pair so lookups never scan every recent hop.
    hop_base: u64,
    by_dst: HashMap<HostId, Vec<u64>>,
    by_pair: HashMap<(HostId, HostId), u64>,
    pending: VecDeque<PendingTrace>,
    /// Global indices of user-less hops whose incident correlation waits
    /// for their logon (see `incidents::USERLESS_GRACE_NS`). Not saved: a
    /// restart within the grace correlates them without a user.
    #[serde(skip)]
    deferred: VecDeque<u64>,
    /// Anomalous hops past the recent window, kept for the chain window.
    chain_heads: VecDeque<HopRecord>,
    /// Successful-logon edges, fan-out and failures (see `logons`).
    logons: logons::LogonMemory,
    incidents: VecDeque<Incident>,
    history: VecDeque<Alert>,
    history_keys: VecDeque<(u64, Vec<HopKeys>)>,
    excluded: Vec<(HostId, u64, u64)>,
    suppressions: Vec<Suppression>,
    suppressed_total: u64,
    /// (host, time) of hops whose alert a suppression hid: left out of
    /// alert-budget calibration.
    budget_excluded: Vec<(HostId, u64)>,
    /// Alerts a suppression hid since the last [`Detector::take_hidden`]:
    /// the appliance stores them too (hidden from views, kept for audit).
    #[serde(skip)]
    hidden: Vec<crate::alert::Alert>,
    /// Sigma rules in force (configuration, set by the caller; not saved).
    #[serde(skip)]
    sigma: crate::sigma::RuleSet,
    /// When each (rule, host) last alerted, for deduplication.
    #[serde(skip)]
    sigma_seen: HashMap<(String, HostId), u64>,
    next_id: u64,
    last_train_ns: Option<u64>,
    fleet_hop_threshold: Option<f64>,
    last_ns: u64,
    /// Analysts' verdicts and the re-ranker fitted on them.
    learning: feedback::Learning,
    /// Sigma hits counted per (rule, host) while hosts learn (last field:
    /// format 5 migrates by appending its empty encoding).
    sigma_learning: sigma::SigmaLearning,
}

impl Detector {
    /// A detector with this configuration and no hosts.
    pub fn new(cfg: DetectorConfig) -> Self {
        Detector {
            cfg,
            registry: Registry::default(),
            graph: FleetGraph::default(),
            hosts: BTreeMap::new(),
            hops: VecDeque::new(),
            hop_base: 0,
            by_dst: HashMap::new(),
            by_pair: HashMap::new(),
            pending: VecDeque::new(),
            deferred: VecDeque::new(),
            chain_heads: VecDeque::new(),
            logons: logons::LogonMemory::default(),
            incidents: VecDeque::new(),
            history: VecDeque::new(),
            history_keys: VecDeque::new(),
            excluded: Vec::new(),
            suppressions: Vec::new(),
            suppressed_total: 0,
            budget_excluded: Vec::new(),
            hidden: Vec::new(),
            sigma: crate::sigma::RuleSet::new(),
            sigma_seen: HashMap::new(),
            next_id: 1,
            last_train_ns: None,
            fleet_hop_threshold: None,
            last_ns: 0,
            learning: feedback::Learning::default(),
            sigma_learning: sigma::SigmaLearning::default(),
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

    /// Next alert, incident or suppression id (one sequence for all).
    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The trained model of a host.
    pub fn host_model(&self, host: HostId) -> Option<&HostModel> {
        self.hosts.get(&host).and_then(|s| s.model.as_ref())
    }

    /// Serialised size of one host's whole state (hop samples, model).
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

    /// Restores a detector from [`Detector::snapshot`] bytes. The format
    /// number is read first: an older format from
    /// `snapshot::OLDEST_LOADABLE_FORMAT` on is migrated, any other is
    /// refused as [`ModelError::SnapshotVersion`] (the appliance then
    /// relearns) even when its body no longer decodes.
    pub fn restore(bytes: &[u8]) -> Result<Self, ModelError> {
        let (format, body) = postcard::take_from_bytes::<u32>(bytes)
            .map_err(|e| ModelError::Decode(e.to_string()))?;
        if !(snapshot::OLDEST_LOADABLE_FORMAT..=SNAPSHOT_FORMAT).contains(&format) {
            return Err(ModelError::SnapshotVersion {
                found: format,
                expected: SNAPSHOT_FORMAT,
            });
        }
        let body = if format == SNAPSHOT_FORMAT {
            std::borrow::Cow::Borrowed(body)
        } else {
            std::borrow::Cow::Owned(snapshot::upgrade(format, body)?)
        };
        postcard::from_bytes(&body).map_err(|e| ModelError::Decode(e.to_string()))
    }

    /// Distinct edges in the fleet graph.
    pub fn graph_edges(&self) -> usize {
        self.graph.edges()
    }

    /// Phase of a host (None if never seen).
    pub fn phase(&self, host: HostId) -> Option<HostPhase> {
        self.hosts.get(&host).map(|s| s.phase)
    }
}
