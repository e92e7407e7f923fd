//! Alerts as the detector raises them, with their explanation, and their
//! conversion into the UI's [`AlertRecord`].

use serde::{Deserialize, Serialize};
use vigil_proto::query::{AlertRecord, FeatureDeviation, Severity, TriageState};
use vigil_proto::HostId;

/// What kind of finding an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlertKind {
    /// One anomalous host-to-host hop (logon or admin-port connection).
    Hop,
    /// Anomalous hops chained across hosts: one lateral-movement incident.
    /// Re-emitted with the same id when the chain grows (upsert).
    Incident,
    /// Failed logons from one source against many accounts or hosts, or
    /// for one user from many sources (T1110.003); the path starts at the
    /// source.
    Spray,
    /// A strong remote-execution trace (a shell under a service, WMI…) on
    /// one host whose inbound hop was not seen; the path is that host.
    Trace,
    /// A Sigma rule fired on one event of one host.
    Sigma,
}

/// One alert with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique per detector (incidents keep theirs across updates).
    pub id: u64,
    /// Time of the event (or window end) that raised it, ns.
    pub created_ns: u64,
    /// Hop, incident, spray, trace or Sigma.
    pub kind: AlertKind,
    /// How bad.
    pub severity: Severity,
    /// Anomaly score (nats of surprise for hops and incidents).
    pub score: f64,
    /// One-line title.
    pub title: String,
    /// Host the alert is about (the hop's destination, the incident's last
    /// host).
    pub host: HostId,
    /// Hosts in path order (source, destination…), or the one host.
    pub path: Vec<HostId>,
    /// Host names in path order, as registered.
    pub path_names: Vec<String>,
    /// Users involved.
    pub users: Vec<String>,
    /// Ports involved.
    pub ports: Vec<u16>,
    /// Process images involved (basenames).
    pub processes: Vec<String>,
    /// MITRE ATT&CK technique ids.
    pub techniques: Vec<String>,
    /// Summary sentence.
    pub summary: String,
    /// Features that moved, against this host's baseline.
    pub deviations: Vec<FeatureDeviation>,
    /// (host, seq) of the supporting events.
    pub evidence: Vec<(HostId, u64)>,
    /// Incident this alert belongs to.
    pub incident_id: Option<u64>,
    /// Model version tag of the host that scored it (`v3-1a2b…`), or
    /// `cold-start` when the host had no trained model yet.
    pub model_version: Option<String>,
}

impl Alert {
    /// The record the store and the UI use.
    pub fn to_record(&self) -> AlertRecord {
        AlertRecord {
            id: self.id,
            created_ns: self.created_ns,
            severity: self.severity,
            score: self.score,
            title: self.title.clone(),
            path: self.path.clone(),
            users: self.users.clone(),
            techniques: self.techniques.clone(),
            summary: self.summary.clone(),
            deviations: self.deviations.clone(),
            evidence: self.evidence.clone(),
            state: TriageState::New,
            assignee: None,
            incident_id: self.incident_id,
            model_version: self.model_version.clone(),
            ports: self.ports.clone(),
            processes: self.processes.clone(),
            // Readers fill this in against the saved suppressions; an alert
            // as raised is visible.
            suppressed_by: None,
        }
    }

    /// Whether the alert names both hosts (by id) anywhere on its path.
    pub fn names_hosts(&self, src: HostId, dst: HostId) -> bool {
        self.path.contains(&src) && self.path.contains(&dst)
    }
}

impl From<&Alert> for AlertRecord {
    fn from(a: &Alert) -> Self {
        a.to_record()
    }
}

/// Adds `item` to `v` unless already there.
pub(crate) fn push_unique<T: PartialEq>(v: &mut Vec<T>, item: T) {
    if !v.contains(&item) {
        v.push(item);
    }
}

/// Severity from a score relative to its threshold, raised by chain length.
pub fn severity_for(score: f64, threshold: f64, hosts_in_path: usize) -> Severity {
    let ratio = if threshold > 0.0 {
        score / threshold
    } else {
        f64::INFINITY
    };
    let base = if ratio >= 2.0 {
        Severity::High
    } else if ratio >= 1.3 {
        Severity::Medium
    } else {
        Severity::Low
    };
    match hosts_in_path {
        0..=2 => base,
        3 => base.max(Severity::High),
        _ => Severity::Critical,
    }
}
