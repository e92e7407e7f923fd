//! Triage actions on an alert, and suppressions with a preview.

use super::layout::{render, Nav};
use super::*;
use crate::store::{Role, Suppression, SuppressionScope, Triage};
use crate::time::ago;
use axum::extract::{Form, Path, Query, State};
use axum::response::Redirect;
use serde::Deserialize;
use vigil_proto::query::AlertFilter;

/// Fields of the triage form.
#[derive(Debug, Deserialize)]
pub struct TriageForm {
    /// `ack`, `investigate`, `assign` or `close`.
    pub action: String,
    #[serde(default)]
    pub assignee: String,
    /// `true_positive` or `false_positive` (for `close`).
    #[serde(default)]
    pub verdict: String,
    #[serde(default)]
    pub note: String,
}

/// Apply one triage action; returns the flash code.
pub fn apply(
    state: &ConsoleState,
    auth: &Authed,
    id: u64,
    f: &TriageForm,
) -> Result<&'static str, UiError> {
    auth.require(Role::Analyst)?;
    let current = with_triage(state, state.read.alert(id)?)?;
    let mut t = Triage {
        state: current.state.clone(),
        assignee: current.assignee.clone(),
        note: None,
        updated_ns: state.now(),
        updated_by: auth.user.name.clone(),
    };
    let note: String = f.note.trim().chars().take(500).collect();
    let (code, detail) = match f.action.as_str() {
        "ack" => {
            t.state = TriageState::Acknowledged;
            ("acknowledged", String::new())
        }
        "investigate" => {
            t.state = TriageState::Investigating;
            ("investigating", String::new())
        }
        "assign" => {
            let who = state
                .store
                .user(f.assignee.trim())?
                .filter(|u| !u.disabled && u.role >= Role::Analyst)
                .ok_or_else(|| {
                    UiError::BadRequest("Assignee must be an active analyst or admin.".into())
                })?;
            t.assignee = Some(who.name.clone());
            ("assigned", format!("assignee={}", who.name))
        }
        "close" => {
            t.state = match f.verdict.as_str() {
                "true_positive" => TriageState::ClosedTruePositive,
                "false_positive" => TriageState::ClosedFalsePositive,
                _ => {
                    return Err(UiError::BadRequest(
                        "Verdict must be true_positive or false_positive.".into(),
                    ))
                }
            };
            t.note = (!note.is_empty()).then(|| note.clone());
            ("closed", format!("verdict={} note={note}", f.verdict))
        }
        _ => return Err(UiError::BadRequest("Unknown triage action.".into())),
    };
    state.store.put_triage(id, t)?;
    state.audit(
        &auth.user.name,
        &format!("triage.{}", f.action),
        &format!("alert:{id}"),
        &detail,
    )?;
    Ok(code)
}

/// `POST /alerts/{id}/triage`.
pub async fn triage(
    State(state): State<ConsoleState>,
    auth: Authed,
    Path(id): Path<u64>,
    Form(f): Form<TriageForm>,
) -> Result<Redirect, UiError> {
    let code = apply(&state, &auth, id, &f)?;
    Ok(Redirect::to(&format!("/alerts/{id}?msg={code}")))
}

/// Fields that describe a suppression (query of the preview, form of the save).
#[derive(Debug, Default, Deserialize)]
pub struct SuppressForm {
    /// `1` to match the alert's title.
    #[serde(default)]
    pub match_title: String,
    /// Host id (hex) that must be in the path, or empty.
    #[serde(default)]
    pub host: String,
    /// User that must be involved, or empty.
    #[serde(default)]
    pub user: String,
    /// Host id (hex) the movement came from, or empty.
    #[serde(default)]
    pub peer: String,
    /// Port the alert names, or empty.
    #[serde(default)]
    pub port: String,
    /// Process basename the alert names, or empty.
    #[serde(default)]
    pub process: String,
    #[serde(default)]
    pub reason: String,
}

/// The rule a form describes for `alert`, validated.
pub fn rule_from(
    alert: &AlertRecord,
    f: &SuppressForm,
    auth: &Authed,
    now: u64,
) -> Result<Suppression, UiError> {
    let host = if f.host.is_empty() {
        None
    } else {
        let h: HostId = f
            .host
            .parse()
            .map_err(|_| UiError::BadRequest("Bad host id.".into()))?;
        if alert.path.last() != Some(&h) {
            return Err(UiError::BadRequest(
                "The host must be the one the alert is about (the last of its path).".into(),
            ));
        }
        Some(h)
    };
    let user = if f.user.is_empty() {
        None
    } else if alert.users.contains(&f.user) {
        Some(f.user.clone())
    } else {
        return Err(UiError::BadRequest(
            "The user must be one of the alert's users.".into(),
        ));
    };
    let peer = if f.peer.is_empty() {
        None
    } else {
        let p: HostId = f
            .peer
            .parse()
            .map_err(|_| UiError::BadRequest("Bad host id.".into()))?;
        if !alert.path[..alert.path.len().saturating_sub(1)].contains(&p) {
            return Err(UiError::BadRequest(
                "The source host must be on the alert's path before its last hop.".into(),
            ));
        }
        Some(p)
    };
    let port = if f.port.is_empty() {
        None
    } else {
        let p: u16 = f
            .port
            .parse()
            .map_err(|_| UiError::BadRequest("Bad port.".into()))?;
        if !alert.ports.contains(&p) {
            return Err(UiError::BadRequest(
                "The port must be one the alert names.".into(),
            ));
        }
        Some(p)
    };
    let process = if f.process.is_empty() {
        None
    } else if alert.processes.contains(&f.process) {
        Some(f.process.clone())
    } else {
        return Err(UiError::BadRequest(
            "The process must be one the alert names.".into(),
        ));
    };
    let title = (f.match_title == "1").then(|| alert.title.clone());
    if title.is_none()
        && host.is_none()
        && user.is_none()
        && peer.is_none()
        && port.is_none()
        && process.is_none()
    {
        return Err(UiError::BadRequest(
            "Pick at least one thing to match: title, host, user, source host, port or process."
                .into(),
        ));
    }
    let reason: String = f.reason.trim().chars().take(300).collect();
    if reason.is_empty() {
        return Err(UiError::BadRequest(
            "Give a reason for the suppression.".into(),
        ));
    }
    Ok(Suppression {
        id: 0,
        scope: SuppressionScope {
            title,
            host,
            user,
            peer,
            port,
            process,
        },
        reason,
        created_by: auth.user.name.clone(),
        created_ns: now,
        expires_ns: None,
        source_alert: Some(alert.id),
    })
}

/// Past alerts the rule would have hidden (all stored alerts except `except`).
pub fn preview(
    state: &ConsoleState,
    rule: &Suppression,
    except: u64,
) -> Result<Vec<AlertRecord>, UiError> {
    Ok(state
        .read
        .alerts(&AlertFilter {
            limit: super::alerts::SCAN_LIMIT,
            ..Default::default()
        })?
        .into_iter()
        .filter(|a| a.id != except && rule.scope.matches(&a.scope_view()))
        .collect())
}

fn describe_rule(r: &Suppression, names: &HashMap<HostId, String>) -> String {
    let r = &r.scope;
    let mut parts = Vec::new();
    if let Some(t) = &r.title {
        parts.push(format!("title is “{t}”"));
    }
    if let Some(h) = r.host {
        parts.push(format!("the alert is about host {}", name_of(names, h)));
    }
    if let Some(u) = &r.user {
        parts.push(format!("user {u} is involved"));
    }
    if let Some(p) = r.peer {
        parts.push(format!("the movement came from {}", name_of(names, p)));
    }
    if let Some(p) = r.port {
        parts.push(format!("port {p} is named"));
    }
    if let Some(p) = &r.process {
        parts.push(format!("process {p} is named"));
    }
    parts.join(" and ")
}

/// `GET /alerts/{id}/suppress`: what the rule would hide, then a confirm button.
pub async fn suppress_preview(
    State(state): State<ConsoleState>,
    auth: Authed,
    Path(id): Path<u64>,
    Query(f): Query<SuppressForm>,
) -> PageResult {
    auth.require(Role::Analyst)?;
    let now = state.now();
    let alert = state.read.alert(id)?;
    let rule = rule_from(&alert, &f, &auth, now)?;
    let hits = preview(&state, &rule, id)?;
    let names = hostnames(&state)?;
    let rows = hits
        .iter()
        .take(20)
        .map(|a| {
            view! {
                <tr>
                    <td>{severity_badge(a.severity)}</td>
                    <td><a href=format!("/alerts/{}", a.id)>{a.title.clone()}</a></td>
                    <td>{a.path.iter().map(|h| name_of(&names, *h)).collect::<Vec<_>>().join(" → ")}</td>
                    <td>{triage_badge(&a.state)}</td>
                    <td class="muted">{ago(now, a.created_ns)}</td>
                </tr>
            }
        })
        .collect_view();
    let body = view! {
        <h1>"Preview suppression"</h1>
        <section class="panel">
            <p class="lead">{format!("Hide future alerts where {}.", describe_rule(&rule, &names))}</p>
            <p class="preview-count">
                <strong>{format!("This rule would have hidden {} past alerts", hits.len())}</strong>
                {format!(" (of those stored, not counting #{id}).")}
            </p>
            <p>{format!("Reason: {}", rule.reason)}</p>
            <table class="dense">
                <thead><tr><th>"Severity"</th><th>"Alert"</th><th>"Hosts"</th><th>"State"</th><th>"Raised"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
            <form method="post" action=format!("/alerts/{id}/suppress") class="row">
                {csrf_field(&auth)}
                <input type="hidden" name="match_title" value=f.match_title.clone()/>
                <input type="hidden" name="host" value=f.host.clone()/>
                <input type="hidden" name="user" value=f.user.clone()/>
                <input type="hidden" name="peer" value=f.peer.clone()/>
                <input type="hidden" name="port" value=f.port.clone()/>
                <input type="hidden" name="process" value=f.process.clone()/>
                <input type="hidden" name="reason" value=f.reason.clone()/>
                <button type="submit" class="primary">"Save suppression"</button>
                <a href=format!("/alerts/{id}")>"Cancel"</a>
            </form>
        </section>
    };
    Ok(render(
        "Preview suppression",
        Nav::Alerts,
        &auth,
        body.into_any(),
    ))
}

/// `POST /alerts/{id}/suppress`: save the rule and audit it.
pub async fn suppress_save(
    State(state): State<ConsoleState>,
    auth: Authed,
    Path(id): Path<u64>,
    Form(f): Form<SuppressForm>,
) -> Result<Redirect, UiError> {
    auth.require(Role::Analyst)?;
    let alert = state.read.alert(id)?;
    let rule = rule_from(&alert, &f, &auth, state.now())?;
    let would_hide = preview(&state, &rule, id)?.len();
    let names = hostnames(&state)?;
    let detail = format!(
        "{}; reason: {}; would have hidden {would_hide}",
        describe_rule(&rule, &names),
        rule.reason
    );
    let rid = state.store.add_suppression(rule)?;
    state.audit(
        &auth.user.name,
        "suppression.create",
        &format!("suppression:{rid}"),
        &detail,
    )?;
    Ok(Redirect::to(&format!("/alerts/{id}?msg=suppressed")))
}
