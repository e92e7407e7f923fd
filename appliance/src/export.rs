//! Evidence bundles (issue #17): everything about an incident, an alert or
//! a host's time range in one signed, deterministic archive that
//! `vigil verify` checks offline ([`vigil_evidence`] does the formats).
//!
//! Content files, in the bundle's sorted order:
//! - `alerts.json` — the alert(s) with their explanations, as stored
//! - `audit.jsonl` — the audit entries about them, their incident and
//!   their commands (leaf data, as the audit tree holds them; earlier
//!   exports are left out, so exporting again gives the same content)
//! - `collected/command-<id>.bin` — what a command's receipt brought back
//!   (a collected file, a listing)
//! - `commands.json` — the response commands on the hosts (issued from the
//!   incident, or in the window), each with its lifecycle and receipt
//! - `events.jsonl` — the raw events of the window, one JSON per line, in
//!   time order per host (spooled to a private temp file, so memory stays
//!   bounded whatever the window holds)
//! - `hosts.json` — the hosts involved (name, addresses, OS, sensor)
//! - `incident.json` — incident and alert exports: root cause, remediation
//!   checklist with who did each step and when, MTTD/MTTR
//!   (`vigil_proto::incident`, as the console shows them)
//! - `model.json` — the detector state in force and its SHA-256
//!
//! The export itself is an audit entry (`evidence.export`, the content
//! digest as its detail), appended before the bundle is sealed; the
//! bundle carries a checkpoint covering it and its inclusion proof.

use crate::audit_log::{self, AuditLogError};
use crate::core::Core;
use crate::read::StoreReader;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use thiserror::Error;
use vigil_evidence::statement::{rfc3339_from_ns, CustodyEntry, ModelInfo, Scope, TimeRange};
use vigil_evidence::{AuditEvidence, BundleWriter, ExportInfo};
use vigil_proto::incident::{IncidentTimes, IncidentView, RemediationStep, RootCause};
use vigil_proto::query::response::CommandRecord;
use vigil_proto::query::{AlertRecord, EventFilter, QueryError, ReadApi, TriageState};
use vigil_proto::HostId;
use vigil_web_ui::store::{AuditDraft, ConsoleStore};

/// Events before an alert's first evidence that a bundle includes.
pub const LEAD_IN_NS: u64 = 3_600 * 1_000_000_000;
/// Events after its last evidence (or creation).
pub const TAIL_NS: u64 = 600 * 1_000_000_000;
/// Events read per page while spooling.
const PAGE: usize = 5_000;

/// What to export (one definition, the console's).
pub use vigil_web_ui::pages::export::ExportTarget as ExportScope;

/// A failed export.
#[derive(Debug, Error)]
pub enum ExportError {
    #[error("{0}")]
    Query(#[from] QueryError),
    #[error("audit log: {0}")]
    Audit(#[from] AuditLogError),
    #[error("audit entry: {0}")]
    Console(#[from] vigil_web_ui::store::StoreError),
    #[error("bundle: {0}")]
    Bundle(#[from] vigil_evidence::BundleError),
    #[error("spool: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Scope(String),
}

/// How far an export is, for the console's job page: raw events written of
/// the window's total (counted before writing).
#[derive(Debug, Default)]
pub struct ExportProgress {
    /// Events written so far.
    pub written: AtomicU64,
    /// Events in the window.
    pub total: AtomicU64,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportSummary {
    /// Raw events in the bundle.
    pub events: u64,
    /// Alerts in the bundle.
    pub alerts: usize,
    /// Digest of the content files, as recorded in the audit entry.
    pub content_digest: String,
    /// Seq of the export's audit entry.
    pub audit_seq: u64,
}

/// The alerts, hosts and window an export covers.
struct Selection {
    scope: Scope,
    alerts: Vec<AlertRecord>,
    hosts: Vec<HostId>,
    from_ns: u64,
    to_ns: u64,
    /// Audit targets that concern it (`alert:17`, `incident:17`, host ids).
    audit_targets: Vec<String>,
    /// Commands issued from an incident with these ids belong to it.
    incident_ids: Vec<u64>,
    /// Target of the export's own audit entry (`incident:17`, `host:…`).
    export_target: String,
}

fn select(reader: &StoreReader, scope: &ExportScope) -> Result<Selection, ExportError> {
    let alerts = match scope {
        ExportScope::Incident(id) => {
            let incident = reader.alert(*id)?;
            if incident.incident_id.is_some_and(|i| i != *id) {
                return Err(ExportError::Scope(format!(
                    "alert {id} is not an incident (it belongs to incident {})",
                    incident.incident_id.unwrap_or_default()
                )));
            }
            let mut all = vec![incident];
            let members = reader.alerts(&vigil_proto::query::AlertFilter {
                include_suppressed: true,
                limit: 100_000,
                ..Default::default()
            })?;
            all.extend(
                members
                    .into_iter()
                    .filter(|a| a.id != *id && a.incident_id == Some(*id)),
            );
            all
        }
        ExportScope::Alert(id) => vec![reader.alert(*id)?],
        ExportScope::Host { .. } => Vec::new(),
    };
    if let ExportScope::Host {
        host,
        from_ns,
        to_ns,
    } = scope
    {
        if from_ns > to_ns {
            return Err(ExportError::Scope("--from is after --to".into()));
        }
        reader.host(*host)?;
        return Ok(Selection {
            scope: Scope::Host {
                host: host.to_string(),
            },
            alerts,
            hosts: vec![*host],
            from_ns: *from_ns,
            to_ns: *to_ns,
            audit_targets: vec![host.to_string(), format!("host:{host}")],
            incident_ids: Vec::new(),
            export_target: format!("host:{host}"),
        });
    }
    let mut hosts: Vec<HostId> = alerts.iter().flat_map(|a| a.path.clone()).collect();
    hosts.sort();
    hosts.dedup();
    let mut first = u64::MAX;
    let mut last = 0u64;
    for a in &alerts {
        last = last.max(a.created_ns);
        for (h, seq) in &a.evidence {
            if let Ok(e) = reader.event(*h, *seq) {
                first = first.min(e.header.ts_ns);
                last = last.max(e.header.ts_ns);
            }
        }
    }
    if first == u64::MAX {
        first = alerts.iter().map(|a| a.created_ns).min().unwrap_or(0);
    }
    let id = alerts.first().map_or(0, |a| a.id);
    let (scope, export_target) = match scope {
        ExportScope::Incident(_) => (
            Scope::Incident { id: id.to_string() },
            format!("incident:{id}"),
        ),
        _ => (Scope::Alert { id: id.to_string() }, format!("alert:{id}")),
    };
    let mut audit_targets: Vec<String> = alerts.iter().map(|a| format!("alert:{}", a.id)).collect();
    audit_targets.push(format!("incident:{id}"));
    Ok(Selection {
        scope,
        audit_targets,
        incident_ids: alerts.iter().map(|a| a.id).collect(),
        export_target,
        alerts,
        hosts,
        from_ns: first.saturating_sub(LEAD_IN_NS),
        to_ns: last.saturating_add(TAIL_NS),
    })
}

/// Spool the window's events of every host as JSON lines into a private
/// temp file; returns it rewound, its length and the event count.
fn spool_events(
    reader: &StoreReader,
    sel: &Selection,
    dir: &std::path::Path,
    progress: &ExportProgress,
) -> Result<(std::fs::File, u64, u64), ExportError> {
    let file = tempfile::tempfile_in(dir)?;
    let mut out = BufWriter::new(file);
    let mut count = 0u64;
    for host in &sel.hosts {
        let mut after = None;
        loop {
            let page = reader.events(&EventFilter {
                host: Some(*host),
                since_ns: Some(sel.from_ns),
                until_ns: Some(sel.to_ns),
                limit: PAGE,
                after,
                ..EventFilter::default()
            })?;
            for e in &page.events {
                serde_json::to_writer(&mut out, e).map_err(std::io::Error::other)?;
                out.write_all(b"\n")?;
                count += 1;
            }
            progress.written.store(count, Ordering::Relaxed);
            match page.next {
                Some(next) if !page.events.is_empty() => after = Some(next),
                _ => break,
            }
        }
    }
    let mut file = out.into_inner().map_err(|e| e.into_error())?;
    let len = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(0))?;
    Ok((file, len, count))
}

fn json(value: &impl serde::Serialize) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(value).expect("plain data serializes");
    v.push(b'\n');
    v
}

/// Raw events of the window on the selected hosts: a scan of the event
/// keys in range, so the job page can show "written of total".
fn count_window(core: &Core, sel: &Selection) -> Result<u64, ExportError> {
    use crate::db::keys::{event_key, EVENT_KEY_LEN};
    use crate::store::{Cf, Direction, Visit};
    let mut n = 0u64;
    for host in &sel.hosts {
        let from = event_key(*host, sel.from_ns, 0);
        let to = event_key(*host, sel.to_ns.saturating_add(1), 0);
        core.db
            .store()
            .scan(
                Cf::Events,
                &from,
                Some(&to[..]),
                Direction::Forward,
                &mut |k, _| {
                    if k.len() == EVENT_KEY_LEN {
                        n += 1;
                    }
                    Visit::Continue
                },
            )
            .map_err(AuditLogError::from)?;
    }
    Ok(n)
}

/// The response commands that belong in the bundle, oldest first: on the
/// selected hosts, issued from one of its incidents or alerts, or created
/// in the window (for an incident or alert: any time after the window
/// starts, since the response follows the detection).
fn commands(core: &Core, sel: &Selection) -> Result<Vec<CommandRecord>, ExportError> {
    let host_scope = matches!(sel.scope, Scope::Host { .. });
    let mut out = Vec::new();
    for host in &sel.hosts {
        for rec in core
            .db
            .commands(Some(*host), 0)
            .map_err(AuditLogError::from)?
        {
            let created = rec.command.created_ns;
            let in_window = created >= sel.from_ns && (!host_scope || created <= sel.to_ns);
            let from_incident = rec.incident.is_some_and(|i| sel.incident_ids.contains(&i));
            if in_window || from_incident {
                out.push(rec);
            }
        }
    }
    out.sort_by_key(|r| r.id());
    out.dedup_by_key(|r| r.id());
    Ok(out)
}

/// `incident.json`: what the console's incident page derives, with who did
/// each step and when.
#[derive(serde::Serialize)]
struct IncidentRecord {
    /// The incident (or alert) id.
    id: u64,
    root_cause: Option<RootCause>,
    remediation: Vec<RemediationStep>,
    times: Option<IncidentTimes>,
}

fn incident_record(
    core: &Core,
    reader: &StoreReader,
    sel: &Selection,
    commands: &[CommandRecord],
    now_ns: u64,
) -> Result<IncidentRecord, ExportError> {
    let id = sel.alerts.first().map_or(0, |a| a.id);
    let mut events = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (host, seq) in sel.alerts.iter().flat_map(|a| a.evidence.iter().copied()) {
        if seen.insert((host, seq)) {
            if let Ok(e) = reader.event(host, seq) {
                events.push(e);
            }
        }
    }
    let hosts: Vec<_> = reader
        .hosts()?
        .into_iter()
        .filter(|h| sel.hosts.contains(&h.id))
        .collect();
    let view = IncidentView {
        incident_id: id,
        alerts: &sel.alerts,
        events: &events,
        hosts: &hosts,
        known_accounts: None,
    };
    let done = vigil_web_ui::pages::incident::executed(commands);
    let closed_ns = match sel.alerts.first().map(|a| &a.state) {
        Some(TriageState::ClosedTruePositive | TriageState::ClosedFalsePositive) => {
            core.console.triage(id)?.map(|t| t.updated_ns)
        }
        _ => None,
    };
    let mut remediation = vigil_proto::incident::remediation(&view);
    vigil_proto::incident::mark_done(&mut remediation, &done, now_ns);
    Ok(IncidentRecord {
        id,
        root_cause: vigil_proto::incident::root_cause(&view),
        remediation,
        times: IncidentTimes::derive(&view, &done, closed_ns, now_ns),
    })
}

/// The audit entries about the selection and its commands, as leaf data
/// lines. Exports are left out: each export is its own entry, carried with
/// its proof in `audit/`, and a later export must give the same content.
fn audit_lines(
    core: &Core,
    sel: &Selection,
    commands: &[CommandRecord],
) -> Result<Vec<u8>, ExportError> {
    let mut targets: std::collections::BTreeSet<String> =
        sel.audit_targets.iter().cloned().collect();
    targets.extend(commands.iter().map(|c| format!("command:{}", c.id())));
    Ok(core
        .console
        .audit_entries()?
        .iter()
        .filter(|e| !e.action.starts_with("evidence.") && targets.contains(&e.target))
        .flat_map(|e| {
            let mut line = crate::db::audit_log::leaf_data(e);
            line.push(b'\n');
            line
        })
        .collect())
}

fn model_info(core: &Core) -> Result<ModelInfo, ExportError> {
    Ok(
        match core.db.pipeline_state().map_err(AuditLogError::from)? {
            Some(state) => ModelInfo {
                version: format!(
                    "detector snapshot format {}",
                    vigil_models::detector::SNAPSHOT_FORMAT
                ),
                sha256: hex::encode(Sha256::digest(&state.detector)),
            },
            None => ModelInfo {
                version: "no saved detector state".into(),
                sha256: hex::encode(Sha256::digest([])),
            },
        },
    )
}

/// Export `scope` as `exporter` at `now_ns` into `out`.
pub fn export_bundle(
    core: &Arc<Core>,
    scope: &ExportScope,
    exporter: &str,
    now_ns: u64,
    out: impl Write,
) -> Result<ExportSummary, ExportError> {
    export_bundle_with(
        core,
        scope,
        exporter,
        now_ns,
        out,
        &ExportProgress::default(),
    )
}

/// [`export_bundle`], reporting how many events are written to `progress`.
pub fn export_bundle_with(
    core: &Arc<Core>,
    scope: &ExportScope,
    exporter: &str,
    now_ns: u64,
    out: impl Write,
    progress: &ExportProgress,
) -> Result<ExportSummary, ExportError> {
    let reader = StoreReader::new(core.clone());
    let sel = select(&reader, scope)?;
    progress
        .total
        .store(count_window(core, &sel)?, Ordering::Relaxed);
    let run_dir = core.data_dir.join("run");
    std::fs::create_dir_all(&run_dir)?;
    let (events, events_len, event_count) = spool_events(&reader, &sel, &run_dir, progress)?;
    let hosts: Vec<_> = sel
        .hosts
        .iter()
        .filter_map(|h| reader.host(*h).ok())
        .collect();
    let host_names: Vec<String> = hosts.iter().map(|h| h.hostname.clone()).collect();
    let commands = commands(core, &sel)?;
    let audit = audit_lines(core, &sel, &commands)?;
    let model = model_info(core)?;

    let mut bundle = BundleWriter::new(out);
    bundle.add_bytes("alerts.json", &json(&sel.alerts))?;
    bundle.add_bytes("audit.jsonl", &audit)?;
    // Receipts' data, one at a time (each is bounded by the sensor's cap).
    let mut collected = BTreeMap::new();
    for c in commands
        .iter()
        .filter(|c| c.result.as_ref().is_some_and(|r| r.data_len > 0))
    {
        collected.insert(format!("collected/command-{}.bin", c.id()), c.id());
    }
    for (path, id) in collected {
        if let Some(data) = core.db.command_data(id).map_err(AuditLogError::from)? {
            bundle.add_bytes(&path, &data)?;
        }
    }
    bundle.add_bytes("commands.json", &json(&commands))?;
    bundle.add_file("events.jsonl", events_len, events)?;
    bundle.add_bytes("hosts.json", &json(&hosts))?;
    if !matches!(scope, ExportScope::Host { .. }) {
        let record = incident_record(core, &reader, &sel, &commands, now_ns)?;
        bundle.add_bytes("incident.json", &json(&record))?;
    }
    bundle.add_bytes("model.json", &json(&model))?;
    seal(core, &sel, exporter, now_ns, bundle, host_names, model).map(
        |(audit_seq, content_digest)| ExportSummary {
            events: event_count,
            alerts: sel.alerts.len(),
            content_digest,
            audit_seq,
        },
    )
}

/// Append the export's audit entry, then sign the bundle with a checkpoint
/// covering it and its inclusion proof. Returns the entry's seq and the
/// content digest it records.
fn seal<W: Write>(
    core: &Arc<Core>,
    sel: &Selection,
    exporter: &str,
    now_ns: u64,
    bundle: BundleWriter<W>,
    host_names: Vec<String>,
    model: ModelInfo,
) -> Result<(u64, String), ExportError> {
    let content_digest = bundle.content_digest();
    let target = sel.export_target.clone();
    let entry = core.console.append_audit(AuditDraft {
        ts_ns: now_ns,
        actor: exporter.to_string(),
        action: "evidence.export".into(),
        target,
        detail: format!("content sha256 {content_digest}"),
    })?;
    let signer = &core.audit_signer;
    let checkpoint = audit_log::checkpoint_now(&core.db, signer, now_ns)?;
    let (cp, _) = vigil_evidence::Checkpoint::parse_unverified(&checkpoint)
        .map_err(|e| AuditLogError::Checkpoint(e.to_string()))?;
    let proof = audit_log::inclusion(&core.db, entry.seq, cp.size)?;
    let export_time = rfc3339_from_ns(now_ns);
    let info = ExportInfo {
        scope: sel.scope.clone(),
        hosts: host_names,
        time_range: TimeRange {
            from: rfc3339_from_ns(sel.from_ns),
            to: rfc3339_from_ns(sel.to_ns),
        },
        exporter: exporter.to_string(),
        export_time: export_time.clone(),
        appliance_id: signer.appliance_id().to_string(),
        custody: vec![CustodyEntry {
            time: export_time,
            actor: exporter.to_string(),
            action: "exported".into(),
            note: format!("audit entry {}", entry.seq),
        }],
        model,
    };
    let audit = AuditEvidence {
        checkpoint,
        entry: crate::db::audit_log::leaf_data(&entry),
        entry_index: entry.seq - 1,
        proof,
    };
    bundle.finish(signer.signing_key(), info, audit)?.flush()?;
    Ok((entry.seq, content_digest))
}
