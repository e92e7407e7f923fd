//! What the `vigil` admin subcommands do and print. `main.rs` only parses
//! flags; this module sends the request (server socket first, database
//! second) and renders the answer as text.

use crate::admin::{self, AdminError, AdminRequest, AdminResponse, StatusReport};
use crate::core::{system_clock, Core, CoreError};
use crate::store::StoreError;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use vigil_proto::query::{AlertRecord, EventPage, HostSummary};
use vigil_proto::HostId;
use vigil_web_ui::store::EnrollmentTokenInfo;

/// A CLI failure.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("the database is locked by a running `vigil serve`, but its admin socket does not answer: {0}")]
    Locked(String),
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("{0}")]
    Refused(String),
}

/// Run a request: through the running server if there is one, else
/// directly on the database. Also returns the file holding the first-start
/// admin password if opening the database offline had to create one.
pub fn execute(
    data_dir: &Path,
    req: AdminRequest,
) -> Result<(AdminResponse, Option<std::path::PathBuf>), CliError> {
    if let Some(resp) = admin::request(data_dir, &req)? {
        return Ok((resp, None));
    }
    let (core, first) = match Core::open(data_dir, system_clock()) {
        Ok(c) => c,
        Err(CoreError::Store(StoreError::Locked(e))) => return Err(CliError::Locked(e)),
        Err(e) => return Err(e.into()),
    };
    let core = Arc::new(core);
    Ok((admin::handle(&core, req, false), first.admin_password_file))
}

pub fn ns_to_text(ns: u64) -> String {
    if ns == 0 {
        return "never".into();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn now_ns() -> u64 {
    (system_clock())()
}

/// Render `vigil token list` (state as of `now_ns`).
pub fn format_tokens(tokens: &[EnrollmentTokenInfo], now_ns: u64) -> String {
    let mut out = format!(
        "{:>4}  {:<20}  {:<20}  {:<20}  {:>11}  {}\n",
        "ID", "LABEL", "CREATED", "EXPIRES", "USES", "STATE"
    );
    for t in tokens {
        let state = if t.revoked {
            "revoked"
        } else if t.expires_ns <= now_ns {
            "expired"
        } else if t.uses >= t.max_uses {
            "used up"
        } else {
            "valid"
        };
        let _ = writeln!(
            out,
            "{:>4}  {:<20}  {:<20}  {:<20}  {:>11}  {}",
            t.id,
            t.label,
            ns_to_text(t.created_ns),
            ns_to_text(t.expires_ns),
            format!("{}/{}", t.uses, t.max_uses),
            state
        );
    }
    out
}

/// Render `vigil sensor list`.
pub fn format_sensors(hosts: &[HostSummary]) -> String {
    let mut out = format!(
        "{:<16}  {:<20}  {:<8}  {:<20}  {:>10}  {:>8}  {:<12}\n",
        "HOST", "HOSTNAME", "STATE", "LAST SEEN", "EVENTS", "LOST", "VERSION"
    );
    for h in hosts {
        let _ = writeln!(
            out,
            "{:<16}  {:<20}  {:<8}  {:<20}  {:>10}  {:>8}  {:<12}",
            h.id.to_string(),
            h.hostname,
            format!("{:?}", h.state),
            ns_to_text(h.last_seen_ns),
            h.events_total,
            h.lost_total,
            h.sensor_version
        );
    }
    out
}

/// Render `vigil status`.
pub fn format_status(s: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "server:            {}",
        match &s.addresses {
            Some(a) => format!(
                "running (pid {}), QUIC {}, HTTPS {}",
                a.pid, a.quic, a.https
            ),
            None if s.server_running => "running".into(),
            None => "not running (read from the database; live counters are zero)".into(),
        }
    );
    let _ = writeln!(out, "CA fingerprint:    {}", s.ca_fingerprint);
    let _ = writeln!(
        out,
        "hosts:             {} enrolled, {} connected",
        s.hosts, s.connected
    );
    let st = &s.stats;
    let _ = writeln!(
        out,
        "events stored:     {} (duplicates {}, reported lost {})",
        st.events_total, st.duplicates_total, st.lost_total
    );
    let _ = writeln!(out, "ingest rate:       {:.0} events/s", st.events_per_s);
    let _ = writeln!(out, "disk:              {} bytes", st.bytes_on_disk);
    let days = if s.retention.max_age_days == 0 {
        "no age bound".to_owned()
    } else {
        format!("{} days", s.retention.max_age_days)
    };
    let bytes = if s.retention.max_bytes == 0 {
        "no size bound".to_owned()
    } else {
        format!("{} bytes", s.retention.max_bytes)
    };
    let _ = writeln!(out, "retention:         {days}, {bytes}");
    match &s.last_retention {
        Some(r) => {
            let _ = writeln!(
                out,
                "last retention:    {} (cut before {}, {} → {} bytes)",
                ns_to_text(r.ran_ns),
                if r.cutoff_ns == 0 {
                    "nothing".into()
                } else {
                    ns_to_text(r.cutoff_ns)
                },
                r.bytes_before,
                r.bytes_after
            );
        }
        None => {
            let _ = writeln!(out, "last retention:    never ran");
        }
    }
    let _ = writeln!(out, "counters:");
    for (name, v) in &st.counters {
        let _ = writeln!(out, "  {name:<48} {v}");
    }
    out
}

/// Render `vigil events`: one line per event (header, kind, payload as JSON).
pub fn format_events(page: &EventPage) -> String {
    let mut out = String::new();
    for e in &page.events {
        let payload = serde_json::to_string(&e.payload).unwrap_or_default();
        let _ = writeln!(
            out,
            "{}  {}  seq={}  {}  {}",
            ns_to_text(e.header.ts_ns),
            e.header.host,
            e.header.seq,
            e.kind(),
            payload
        );
    }
    if let Some(next) = page.next {
        let _ = writeln!(
            out,
            "… more after {}/{}/{}",
            next.host, next.ts_ns, next.seq
        );
    }
    out
}

/// Turn a response into printable text, or the error it carries.
pub fn render(resp: AdminResponse) -> Result<String, CliError> {
    match resp {
        AdminResponse::Token(t) => Ok(format!(
            "token:           {}\nexpires:         {}\nuses:            {}\nCA fingerprint:  {}\nid:              {}\n",
            t.token,
            ns_to_text(t.expires_ns),
            t.uses,
            t.ca_fingerprint,
            t.id
        )),
        AdminResponse::Tokens(t) => Ok(format_tokens(&t, now_ns())),
        AdminResponse::TokenRevoked { id, newly } => Ok(if newly {
            format!("revoked enrollment token {id}; it enrolls no more sensors\n")
        } else {
            format!("enrollment token {id} was already revoked\n")
        }),
        AdminResponse::Sensors(h) => Ok(format_sensors(&h)),
        AdminResponse::Revoked { host, newly } => Ok(if newly {
            format!("revoked {host}; it is refused at its next handshake\n")
        } else {
            format!("{host} was already revoked\n")
        }),
        AdminResponse::Status(s) => Ok(format_status(&s)),
        AdminResponse::Events(p) => Ok(format_events(&p)),
        AdminResponse::Alerts { alerts, host_names } => Ok(format_alerts(&alerts, &host_names)),
        AdminResponse::Models(m) => Ok(format_models(&m)),
        AdminResponse::AuditVerified(v) => Ok(v.text),
        AdminResponse::AuditCheckpoint { note, .. } => Ok(note),
        AdminResponse::AuditExtends { verified, .. } => Ok(verified.text),
        AdminResponse::RulesImported { imported, total } => Ok(format!(
            "imported {imported} Sigma rules; {total} rules run (shipped included)\n"
        )),
        AdminResponse::Exported { path, summary } => Ok(format!(
            "bundle at {} ({} alerts, {} events)\n",
            path.display(),
            summary.alerts,
            summary.events
        )),
        AdminResponse::Respond(r) => Ok(crate::respond_admin::render(&r)),
        AdminResponse::UserAdded {
            name,
            role,
            password,
        } => Ok(format!(
            "created {role} {name}; one-time password (to be changed at the first login): {password}\n"
        )),
        AdminResponse::PackageAdded { package, replaced } => {
            Ok(crate::packages::format_added(&package, replaced))
        }
        AdminResponse::Packages(list) => Ok(crate::packages::format_list(&list)),
        AdminResponse::PackageRemoved { name, removed } => Ok(if removed {
            format!("removed package {name}\n")
        } else {
            format!("no package {name}; see `vigil packages list`\n")
        }),
        AdminResponse::SensorUpdatesPublished(p) => {
            Ok(crate::sensor_updates::format_published(&p))
        }
        AdminResponse::Error(e) => Err(CliError::Refused(e)),
    }
}

/// One alert per line: id, time, severity, path, users, techniques, summary, evidence.
pub fn format_alerts(alerts: &[AlertRecord], names: &BTreeMap<HostId, String>) -> String {
    if alerts.is_empty() {
        return "no alerts\n".into();
    }
    let mut out = String::new();
    for a in alerts {
        let path = path_names(&a.path, names);
        let evidence: Vec<String> = a.evidence.iter().map(|(h, s)| format!("{h}:{s}")).collect();
        out.push_str(&format!(
            "#{id} {time} {sev:?} score={score:.1} path={path} users={users} techniques={tech} state={state:?}\n    {summary}\n    evidence: {evidence}\n",
            id = a.id,
            time = ns_to_text(a.created_ns),
            sev = a.severity,
            score = a.score,
            path = path.join(" -> "),
            users = a.users.join(","),
            tech = a.techniques.join(","),
            state = a.state,
            summary = a.summary,
            evidence = evidence.join(" "),
        ));
    }
    out
}

/// Host names along a path (the id when a host has no name yet).
pub fn path_names(path: &[HostId], names: &BTreeMap<HostId, String>) -> Vec<String> {
    path.iter()
        .map(|h| match names.get(h) {
            Some(n) if !n.is_empty() => n.clone(),
            _ => h.to_string(),
        })
        .collect()
}

/// One host model per line.
pub fn format_models(models: &[vigil_models::ModelStatus]) -> String {
    if models.is_empty() {
        return "no host models yet (the detection pipeline saves its state every 30 s)\n".into();
    }
    let mut out = format!(
        "{:<16}  {:<20}  {:<8}  {:<16}  {:<41}  {}\n",
        "HOST", "NAME", "STATE", "VERSION", "TRAINING WINDOW", "SHA-256"
    );
    for m in models {
        let window = m
            .trained_window_ns
            .map(|(a, b)| format!("{} .. {}", ns_to_text(a), ns_to_text(b)))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<16}  {:<20}  {:<8}  {:<16}  {:<41}  {}\n",
            m.host.to_string(),
            m.hostname,
            format!("{:?}", m.phase).to_lowercase(),
            m.version.clone().unwrap_or_else(|| "-".into()),
            window,
            m.sha256.clone().unwrap_or_else(|| "-".into()),
        ));
    }
    out
}
