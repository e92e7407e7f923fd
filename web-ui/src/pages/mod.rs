//! One module per page. Each page is a plain function from the state, the
//! logged-in user and the parsed request to an HTML string, so the bench and
//! tests can render it without HTTP; handlers are thin wrappers.

pub mod add_hosts;
pub mod admin;
pub mod alerts;
pub mod export;
pub mod graph;
pub mod host;
pub mod hosts;
pub mod hunt;
pub mod incident;
pub mod layout;
pub mod login;
pub mod overview;
pub mod receivers;
pub mod respond;
pub mod respond_policy;
pub mod triage;

use crate::auth::Authed;
use crate::error::UiError;
use crate::ConsoleState;
use leptos::prelude::*;
use std::collections::HashMap;
use vigil_proto::event::{Event, HostId, Payload};
use vigil_proto::query::{AlertFilter, AlertRecord, SensorState, Severity, TriageState};

/// Result of a page render.
pub type PageResult = Result<axum::response::Html<String>, UiError>;

/// Run a page render on the blocking pool: [`vigil_proto::query::ReadApi`]
/// calls are synchronous store reads and must not stall the async workers
/// that also serve ingest.
pub async fn off_runtime<T, F>(f: F) -> Result<T, UiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, UiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| UiError::Task)?
}

/// Coloured severity label.
pub fn severity_badge(s: Severity) -> impl IntoView {
    view! { <span class=format!("badge sev-{}", s.name())>{s.name()}</span> }
}

/// Human name of a triage state.
pub fn triage_name(s: &TriageState) -> &'static str {
    match s {
        TriageState::New => "new",
        TriageState::Acknowledged => "acknowledged",
        TriageState::Investigating => "investigating",
        TriageState::ClosedTruePositive => "closed: true positive",
        TriageState::ClosedFalsePositive => "closed: false positive",
    }
}

/// Whether an alert still needs work.
pub fn is_open(s: &TriageState) -> bool {
    !matches!(
        s,
        TriageState::ClosedTruePositive | TriageState::ClosedFalsePositive
    )
}

/// Triage state label.
pub fn triage_badge(s: &TriageState) -> impl IntoView {
    let class = match s {
        TriageState::New => "badge st-new",
        TriageState::Acknowledged | TriageState::Investigating => "badge st-work",
        _ => "badge st-closed",
    };
    view! { <span class=class>{triage_name(s)}</span> }
}

/// Lower-case sensor state name.
pub fn sensor_state_name(s: SensorState) -> &'static str {
    match s {
        SensorState::Online => "online",
        SensorState::Stale => "stale",
        SensorState::Offline => "offline",
        SensorState::Revoked => "revoked",
    }
}

/// Sensor state label.
pub fn sensor_badge(s: SensorState) -> impl IntoView {
    view! { <span class=format!("badge ss-{}", sensor_state_name(s))>{sensor_state_name(s)}</span> }
}

/// Hidden CSRF field for a form of this session.
pub fn csrf_field(auth: &Authed) -> impl IntoView {
    view! { <input type="hidden" name="csrf" value=auth.session.csrf.clone()/> }
}

/// Host id → hostname for every host.
pub fn hostnames(state: &ConsoleState) -> Result<HashMap<HostId, String>, UiError> {
    Ok(state
        .read
        .hosts()?
        .into_iter()
        .map(|h| (h.id, h.hostname))
        .collect())
}

/// Name of a host, falling back to its id.
pub fn name_of(names: &HashMap<HostId, String>, id: HostId) -> String {
    names.get(&id).cloned().unwrap_or_else(|| id.to_string())
}

/// The alert with the console's triage (state, assignee) applied.
pub fn with_triage(state: &ConsoleState, mut alert: AlertRecord) -> Result<AlertRecord, UiError> {
    if let Some(t) = state.store.triage(alert.id)? {
        alert.state = t.state;
        alert.assignee = t.assignee;
    }
    Ok(alert)
}

/// Alerts as the console shows them: the analyst's triage applied, each
/// marked with the suppression that hides it (the one rule,
/// `vigil_proto::suppress`), hidden ones (open and suppressed) left out
/// unless `include_hidden`. The alert list, the overview's counts and the
/// host page all read through here, so they agree with each other and with
/// the appliance's own readers (`vigil alerts`, host counts).
pub fn seen_alerts(
    state: &ConsoleState,
    filter: &AlertFilter,
    include_hidden: bool,
) -> Result<Vec<AlertRecord>, UiError> {
    let rules = state.store.suppressions()?;
    let now = state.now();
    let mut out = Vec::new();
    let filter = AlertFilter {
        include_suppressed: true,
        ..filter.clone()
    };
    for a in state.read.alerts(&filter)? {
        let mut a = with_triage(state, a)?;
        vigil_proto::suppress::mark(&mut a, &rules, now);
        if include_hidden || !a.is_hidden() {
            out.push(a);
        }
    }
    Ok(out)
}

/// `31.0 MiB`, `18.4 GB` style sizes (binary units).
pub fn bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// Thousands separators: `1 904 221`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// One line describing an event, for tables and CSV.
pub fn describe(e: &Event) -> String {
    match &e.payload {
        Payload::ProcessStart(p) => format!(
            "{} [{}] pid {} ppid {} user {}",
            p.exe.as_deref().unwrap_or("?"),
            p.argv.join(" "),
            p.pid,
            p.ppid,
            p.user.as_deref().unwrap_or("?")
        ),
        Payload::ProcessExit(p) => format!(
            "{} pid {} exit {}",
            p.exe.as_deref().unwrap_or("?"),
            p.pid,
            p.exit_code.map_or("?".into(), |c| c.to_string())
        ),
        Payload::NetConnect(f) => format!(
            "{} → {} ({})",
            f.local,
            f.remote,
            f.exe.as_deref().unwrap_or("?")
        ),
        Payload::NetAccept(f) => format!(
            "{} ← {} ({})",
            f.local,
            f.remote,
            f.exe.as_deref().unwrap_or("?")
        ),
        Payload::Login(l) | Payload::Logout(l) | Payload::AuthFailure(l) => format!(
            "{} via {:?} ({:?}) from {}",
            l.user,
            l.service,
            l.method,
            l.src_addr.map_or("local".into(), |a| a.to_string())
        ),
        Payload::FileChange(f) => format!("{:?} {}", f.op, f.path),
        Payload::SensorHealth(h) => format!(
            "cpu {:.1}% rss {} {:.0} ev/s dropped {}",
            h.cpu_pct,
            bytes(h.rss_bytes),
            h.events_per_s,
            h.dropped_total
        ),
        Payload::Loss(l) => format!(
            "lost {} events (seq {}–{}): {:?}",
            l.count, l.from_seq, l.to_seq, l.reason
        ),
        Payload::ResponseResult(r) => format!(
            "command {} {}: {}",
            r.command_id,
            if r.ok { "ok" } else { "failed" },
            r.message
        ),
        Payload::Tamper(t) => format!("forged {} input ({}): {}", t.source, t.reason, t.detail),
    }
}

/// Previous / next links for page `page` (0-based) of `pages`.
pub fn pager(base: &str, page: usize, pages: usize) -> impl IntoView {
    let sep = if base.contains('?') { '&' } else { '?' };
    let prev = (page > 0)
        .then(|| view! { <a href=format!("{base}{sep}page={}", page - 1)>"← Previous"</a> });
    let next = (page + 1 < pages)
        .then(|| view! { <a href=format!("{base}{sep}page={}", page + 1)>"Next →"</a> });
    view! { <div class="pager">{prev}<span>{format!("Page {} of {}", page + 1, pages.max(1))}</span>{next}</div> }
}

/// Shown instead of the response panel by a console with no responder
/// (fixtures, benches): nothing here can act on hosts.
pub fn response_placeholder() -> impl IntoView {
    view! {
        <section class="panel placeholder">
            <h2>"Response"</h2>
            <p>"This console is not connected to an appliance's responder: it cannot act on hosts."</p>
        </section>
    }
}

/// Fixed flash messages selected by `?msg=` (never reflects free text).
pub fn flash(code: Option<&str>) -> Option<AnyView> {
    let text = match code? {
        "acknowledged" => "Alert acknowledged.",
        "investigating" => "Alert marked as investigating.",
        "assigned" => "Assignee saved.",
        "closed" => "Alert closed.",
        "suppressed" => "Suppression saved. Matching alerts are now hidden from the alert list.",
        "saved" => "Saved.",
        "password" => "Password changed.",
        "user" => "User saved.",
        "revoked" => "Enrollment token revoked: it enrolls no more sensors.",
        _ => return None,
    };
    Some(view! { <div class="flash ok">{text}</div> }.into_any())
}
