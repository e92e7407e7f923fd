//! The read-only query API that the web UI and the CLI share and that the
//! appliance's store implements. Plain types and one trait: no I/O here.

use crate::event::{Event, EventKind, HostId};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

mod filter;
pub mod response;
mod trends;

pub use trends::{HostStates, Trends};

/// Whether a sensor is reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SensorState {
    /// Heartbeat within the last 2 heartbeat intervals.
    Online,
    /// Silent for a while, not yet offline.
    Stale,
    Offline,
    /// Certificate revoked.
    Revoked,
}

/// One host as the registry knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSummary {
    pub id: HostId,
    pub hostname: String,
    pub os: String,
    pub addrs: Vec<IpAddr>,
    pub sensor_version: String,
    pub enrolled_ns: u64,
    pub last_seen_ns: u64,
    pub state: SensorState,
    pub cpu_pct: f32,
    pub rss_bytes: u64,
    pub events_total: u64,
    /// Events the sensor reported as lost (sum of loss records).
    pub lost_total: u64,
    pub isolated: bool,
    pub open_alerts: u32,
    /// What this host's sensor did that the appliance refused or
    /// quarantined, and identity claims another host owns (one line each,
    /// e.g. "2 events quarantined: future_timestamp"); empty when it
    /// behaves.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Which events to return. All set fields must match
/// ([`EventFilter::matches`] says how).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EventFilter {
    pub host: Option<HostId>,
    /// Inclusive lower bound, ns since epoch.
    pub since_ns: Option<u64>,
    /// Exclusive upper bound, ns since epoch.
    pub until_ns: Option<u64>,
    pub kinds: Vec<EventKind>,
    /// User named in a login or process event.
    pub user: Option<String>,
    /// Peer address in a network or login event.
    pub peer: Option<IpAddr>,
    /// Local or remote port of a network event.
    pub port: Option<u16>,
    /// Substring of a process's exe or argv.
    pub process: Option<String>,
    /// Most events to return (the store may cap it further).
    pub limit: usize,
    /// Resume after this (host, ts, seq) position, for pagination.
    pub after: Option<EventCursor>,
    /// The newest `limit` events of one host (`host` set), newest first, and
    /// no pagination cursor: what a host page's timeline shows. Ignored
    /// without `host`.
    #[serde(default)]
    pub newest_first: bool,
}

/// A position in the event index, for pagination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCursor {
    pub host: HostId,
    pub ts_ns: u64,
    pub seq: u64,
}

/// One page of events.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Where the next page starts, if there is more.
    pub next: Option<EventCursor>,
}

/// Severity of an alert or incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The lower-case name every surface prints (CLI, console, Sigma
    /// reasons, metrics labels): one spelling, defined once.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Where an analyst is with an alert.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TriageState {
    New,
    Acknowledged,
    Investigating,
    ClosedTruePositive,
    ClosedFalsePositive,
}

/// One line of an explanation: a feature that moved against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDeviation {
    /// Feature name (`new_peers`, `admin_port_peers`…).
    pub feature: String,
    pub observed: f64,
    /// The host's baseline for it (mean or expected value).
    pub baseline: f64,
    /// How unusual, in the model's own units (z-score, -log rarity…).
    pub score: f64,
    /// The sentence an analyst reads.
    pub sentence: String,
}

/// An alert (one host, one window) or an incident (a chain across hosts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub id: u64,
    pub created_ns: u64,
    pub severity: Severity,
    pub score: f64,
    pub title: String,
    /// Hosts in path order for an incident (A, B, C), or the one host.
    pub path: Vec<HostId>,
    pub users: Vec<String>,
    /// MITRE ATT&CK technique ids (T1021.004…).
    pub techniques: Vec<String>,
    pub summary: String,
    pub deviations: Vec<FeatureDeviation>,
    /// (host, seq) of the events that support it.
    pub evidence: Vec<(HostId, u64)>,
    pub state: TriageState,
    pub assignee: Option<String>,
    /// Set when this is part of an incident.
    pub incident_id: Option<u64>,
    pub model_version: Option<String>,
    /// Ports the alert names (22, 445…), for scoped suppressions.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Process basenames the alert names, for scoped suppressions.
    #[serde(default)]
    pub processes: Vec<String>,
    /// The suppression that hides this alert (see
    /// [`crate::suppress::first_hiding`]), filled in by readers; `None` when
    /// the alert is visible. (postcard ignores `serde(default)`: alerts
    /// stored before this field existed do not decode without a migration.)
    #[serde(default)]
    pub suppressed_by: Option<u64>,
}

/// Filter for alerts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AlertFilter {
    pub since_ns: Option<u64>,
    pub host: Option<HostId>,
    pub open_only: bool,
    pub min_severity: Option<Severity>,
    pub limit: usize,
    /// Also return alerts a suppression hides (their `suppressed_by` says
    /// which); by default readers leave hidden alerts out.
    #[serde(default)]
    pub include_suppressed: bool,
}

/// A host-to-host edge of the fleet graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeRecord {
    pub src: HostId,
    pub dst: HostId,
    pub port: u16,
    pub user: Option<String>,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub count: u64,
}

/// Appliance-wide counters for the overview page, `vigil status` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ApplianceStats {
    pub events_total: u64,
    pub events_per_s: f64,
    pub duplicates_total: u64,
    pub lost_total: u64,
    pub rejected_frames_total: u64,
    pub bytes_on_disk: u64,
    pub retention_days: u32,
    pub retention_bytes: u64,
    /// Named counters (`rejected_frames{reason="malformed"}` → n).
    pub counters: Vec<(String, u64)>,
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid query: {0}")]
    Invalid(String),
    #[error("storage error: {0}")]
    Storage(String),
}

/// Read-only access to everything the appliance stores. Implemented by the
/// appliance's store; used by the web UI and the CLI.
pub trait ReadApi: Send + Sync {
    /// All hosts, registry order.
    fn hosts(&self) -> Result<Vec<HostSummary>, QueryError>;
    /// One host.
    fn host(&self, id: HostId) -> Result<HostSummary, QueryError>;
    /// Events matching a filter, oldest first within a host.
    fn events(&self, filter: &EventFilter) -> Result<EventPage, QueryError>;
    /// One event by (host, seq).
    fn event(&self, host: HostId, seq: u64) -> Result<Event, QueryError>;
    /// Alerts and incidents, newest first.
    fn alerts(&self, filter: &AlertFilter) -> Result<Vec<AlertRecord>, QueryError>;
    /// One alert.
    fn alert(&self, id: u64) -> Result<AlertRecord, QueryError>;
    /// Fleet graph edges last seen at or after `since_ns`.
    fn edges(&self, since_ns: u64) -> Result<Vec<EdgeRecord>, QueryError>;
    /// Appliance counters.
    fn stats(&self) -> Result<ApplianceStats, QueryError>;
    /// The detection model of one host, once the pipeline has seen it.
    fn host_model(&self, _host: HostId) -> Result<Option<HostModelSummary>, QueryError> {
        Ok(None)
    }
    /// Events stored and sensor states per bucket of `bucket_ns` from
    /// `since_ns` up to `until_ns` (exclusive), for the console's trend
    /// charts. By default nothing is recorded (every bucket `None`).
    fn trends(&self, since_ns: u64, until_ns: u64, bucket_ns: u64) -> Result<Trends, QueryError> {
        let buckets = if bucket_ns == 0 {
            0
        } else {
            until_ns.saturating_sub(since_ns).div_ceil(bucket_ns) as usize
        };
        Ok(Trends::unknown(since_ns, bucket_ns, buckets.min(10_000)))
    }
}

/// Where one host's behavioural baseline stands, for the console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostModelSummary {
    /// True once the host has a trained model (it may alert); false while
    /// it is still learning.
    pub active: bool,
    /// First event the detector saw from the host, ns.
    pub first_seen_ns: u64,
    /// How long a host learns before it may alert, ns.
    pub learning_period_ns: u64,
    /// `v<n>-<hash prefix>` once trained.
    pub version: Option<String>,
    /// SHA-256 of the model parameters.
    pub sha256: Option<String>,
    /// The span of behaviour the model was trained on, ns.
    pub trained_window_ns: Option<(u64, u64)>,
    /// The host's calibrated hop threshold (nats).
    pub hop_threshold: Option<f64>,
    /// Serialised model size.
    pub model_bytes: u64,
}
