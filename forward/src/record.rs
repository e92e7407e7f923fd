//! What the appliance forwards: one [`Record`] per alert, incident, audit
//! entry, raw event or checkpoint. Plain data, no I/O.

use serde::{Deserialize, Serialize};
use vigil_proto::query::{AlertRecord, Severity};
use vigil_proto::Event;

/// One thing to forward to every receiver that takes its kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An alert, with the names of the hosts on its path.
    Alert(AlertWithHosts),
    /// An incident summary, as the appliance renders it (JSON object).
    Incident(IncidentSummary),
    /// One audit log entry.
    Audit(AuditEntry),
    /// One raw event, as stored.
    Event(Event),
    /// A signed checkpoint of the audit log (signed-note text).
    Checkpoint(Checkpoint),
}

/// An alert and the host names of its path (the record holds only ids).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertWithHosts {
    /// The alert as stored.
    pub alert: AlertRecord,
    /// Host names in the same order as `alert.path` (may be shorter when a
    /// name is unknown; the id is used then).
    pub host_names: Vec<String>,
}

/// An incident summary: id, severity, time and the appliance's JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentSummary {
    /// Incident id.
    pub id: u64,
    /// When the incident was opened, ns since the epoch.
    pub time_ns: u64,
    /// Highest severity of its alerts.
    pub severity: Severity,
    /// One-line title.
    pub title: String,
    /// The appliance's summary object (hosts, alerts, root cause…).
    pub summary: serde_json::Value,
}

/// One audit log entry: who did what to what, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The user (or `system`) who acted.
    pub actor: String,
    /// When, ns since the epoch.
    pub time_ns: u64,
    /// What was done (`login`, `suppression.create`…).
    pub action: String,
    /// What it was done to (a user, host, alert id…).
    pub target: String,
    /// Parameters and result, free text.
    pub detail: String,
    /// The entry's index in the audit log (not the forwarding sequence).
    pub seq: u64,
}

/// A signed checkpoint of the audit log, in signed-note text form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// When it was made, ns since the epoch.
    pub time_ns: u64,
    /// The signed note, as the audit log prints it.
    pub text: String,
}

/// The kind of a record: the syslog MSGID and the receivers' filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// [`Record::Alert`].
    Alert,
    /// [`Record::Incident`].
    Incident,
    /// [`Record::Audit`].
    Audit,
    /// [`Record::Event`].
    Event,
    /// [`Record::Checkpoint`].
    Checkpoint,
}

impl RecordKind {
    /// Stable lower-case name (syslog MSGID, labels).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Alert => "alert",
            RecordKind::Incident => "incident",
            RecordKind::Audit => "audit",
            RecordKind::Event => "event",
            RecordKind::Checkpoint => "checkpoint",
        }
    }
}

impl Record {
    /// The record's kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Alert(_) => RecordKind::Alert,
            Record::Incident(_) => RecordKind::Incident,
            Record::Audit(_) => RecordKind::Audit,
            Record::Event(_) => RecordKind::Event,
            Record::Checkpoint(_) => RecordKind::Checkpoint,
        }
    }

    /// When the record's subject happened, ns since the epoch.
    pub fn time_ns(&self) -> u64 {
        match self {
            Record::Alert(a) => a.alert.created_ns,
            Record::Incident(i) => i.time_ns,
            Record::Audit(a) => a.time_ns,
            Record::Event(e) => e.header.ts_ns,
            Record::Checkpoint(c) => c.time_ns,
        }
    }
}

impl AlertWithHosts {
    /// Host names in path order, the id where no name is known.
    pub fn hosts(&self) -> Vec<String> {
        self.alert
            .path
            .iter()
            .enumerate()
            .map(|(i, id)| match self.host_names.get(i) {
                Some(name) if !name.is_empty() => name.clone(),
                _ => id.0.to_string(),
            })
            .collect()
    }
}

/// Fixed names for severities (OCSF `severity`, ECS `event.severity_name`).
pub fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Low => "Low",
        Severity::Medium => "Medium",
        Severity::High => "High",
        Severity::Critical => "Critical",
    }
}
