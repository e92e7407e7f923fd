//! SIEM receivers (issue #17): where the appliance forwards alerts,
//! incidents, audit entries and (optionally) raw events, with each
//! receiver's counters and the queue-full alarm. Admins only: the page
//! names internal addresses and its forms change what leaves the appliance.
//!
//! The appliance implements [`ReceiversApi`]; the console validates the
//! form itself first (every problem at once, each naming its field) so a
//! hostile or mistyped value never reaches the forwarder's configuration.

use super::layout::{render, Nav};
use super::*;
use crate::store::Role;
use axum::extract::{Form, Path, Query, State};
use axum::response::Redirect;
use serde::Deserialize;
use std::sync::Arc;

/// Longest host name accepted (RFC 1035: 253 characters).
pub const MAX_HOST_LEN: usize = 253;
/// Largest CA PEM accepted (a chain of a few certificates fits easily).
pub const MAX_CA_PEM_BYTES: usize = 16 * 1024;
/// Longest receiver name (it names the receiver's queue directory).
pub const MAX_NAME_LEN: usize = 64;

/// One receiver as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceiverStatus {
    /// Unique name.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// `tcp` or `tls`.
    pub transport: String,
    /// `ocsf`, `ecs` or `cef`.
    pub format: String,
    /// Record kinds it takes (`alert`, `incident`, `audit`, `event`, `checkpoint`).
    pub kinds: Vec<String>,
    /// Where its audit forwarding began: `start` (the whole log) or `now`.
    pub audit_from: String,
    /// Configured in the appliance's config file (read-only here).
    pub from_config_file: bool,
    /// Records delivered.
    pub sent: u64,
    /// Records accepted and waiting to be sent.
    pub queued: u64,
    /// Failed connection or send attempts.
    pub failed_attempts: u64,
    /// Age of the oldest waiting record, in seconds.
    pub oldest_pending_secs: Option<u64>,
    /// The queue refused its latest record: the alarm is up.
    pub full: bool,
    /// Records refused because the queue was full.
    pub refused: u64,
    /// A connection is up now.
    pub connected: bool,
    /// The latest failure.
    pub last_error: Option<String>,
}

/// A receiver the admin adds, already validated by [`validate_receiver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReceiver {
    /// `[A-Za-z0-9_-]{1,64}`.
    pub name: String,
    /// Host name or IP address (no brackets).
    pub host: String,
    /// 1–65535.
    pub port: u16,
    /// The CA certificate(s) for TLS; `None` for plain TCP.
    pub tls_ca_pem: Option<String>,
    /// `ocsf`, `ecs` or `cef`.
    pub format: String,
    /// Record kinds: a subset of `alert`, `incident`, `audit`, `event`.
    pub kinds: Vec<String>,
    /// `start`: the whole audit log; `now`: entries from now on.
    pub audit_from: String,
}

/// What the console asks the appliance's forwarder. Calls block (files,
/// restarting senders): call them off the async runtime.
pub trait ReceiversApi: Send + Sync {
    /// Every receiver with its counters.
    fn receivers(&self) -> Vec<ReceiverStatus>;
    /// Why forwarding is not running, if it is not.
    fn problem(&self) -> Option<String>;
    /// Add a receiver and reload the forwarder; the messages say why not.
    fn add_receiver(&self, new: NewReceiver) -> Result<(), Vec<String>>;
    /// Remove a console-managed receiver; `Ok(false)` when there is none.
    fn remove_receiver(&self, name: &str) -> Result<bool, String>;
}

/// Fields of the add form (checkboxes are present only when ticked).
#[derive(Debug, Default, Deserialize)]
pub struct ReceiverForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub port: String,
    #[serde(default)]
    pub transport: String,
    #[serde(default)]
    pub ca_pem: String,
    #[serde(default)]
    pub format: String,
    pub kind_alert: Option<String>,
    pub kind_incident: Option<String>,
    pub kind_audit: Option<String>,
    pub kind_event: Option<String>,
    /// `start` (default) or `now`.
    #[serde(default)]
    pub audit_from: String,
}

/// Every problem with the add form, each naming its field.
pub fn validate_receiver(f: &ReceiverForm) -> Result<NewReceiver, Vec<String>> {
    let mut errs = Vec::new();
    let name = f.name.trim();
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        errs.push(format!(
            "name: 1 to {MAX_NAME_LEN} letters, digits, '-' or '_'"
        ));
    }
    let host = f.host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty()
        || host.len() > MAX_HOST_LEN
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        || host.starts_with('-')
    {
        errs.push(format!(
            "host: a host name or IP address of at most {MAX_HOST_LEN} characters (letters, digits, '.', '-', ':')"
        ));
    }
    let port = f.port.trim().parse::<u16>().ok().filter(|p| *p != 0);
    if port.is_none() {
        errs.push("port: a number from 1 to 65535".to_string());
    }
    let tls_ca_pem = match f.transport.as_str() {
        "tcp" => None,
        "tls" => {
            let pem = f.ca_pem.trim();
            if pem.len() > MAX_CA_PEM_BYTES {
                errs.push(format!(
                    "ca_pem: at most {} KiB of PEM",
                    MAX_CA_PEM_BYTES / 1024
                ));
            } else if !pem.contains("-----BEGIN CERTIFICATE-----") {
                errs.push("ca_pem: paste the receiver's CA certificate (PEM, -----BEGIN CERTIFICATE-----)".to_string());
            }
            Some(format!("{pem}\n"))
        }
        _ => {
            errs.push("transport: tcp or tls".to_string());
            None
        }
    };
    if !matches!(f.format.as_str(), "ocsf" | "ecs" | "cef") {
        errs.push("format: ocsf, ecs or cef".to_string());
    }
    let kinds: Vec<String> = [
        ("alert", &f.kind_alert),
        ("incident", &f.kind_incident),
        ("audit", &f.kind_audit),
        ("event", &f.kind_event),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_some())
    .map(|(k, _)| k.to_string())
    .collect();
    let audit_from = match f.audit_from.as_str() {
        "" | "start" => "start",
        "now" => "now",
        _ => {
            errs.push("audit_from: start or now".to_string());
            "start"
        }
    };
    if kinds.is_empty() {
        errs.push("kinds: tick at least one of alerts, incidents, audit, events".to_string());
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(NewReceiver {
        name: name.to_string(),
        host: host.to_string(),
        port: port.unwrap_or_default(),
        tls_ca_pem,
        format: f.format.clone(),
        kinds,
        audit_from: audit_from.to_string(),
    })
}

fn api(state: &ConsoleState) -> Result<Arc<dyn ReceiversApi>, UiError> {
    state
        .receivers
        .clone()
        .ok_or_else(|| UiError::NotFound("SIEM forwarding on this console".into()))
}

/// `?msg=` of the page.
#[derive(Debug, Default, Deserialize)]
pub struct ReceiversQuery {
    pub msg: Option<String>,
}

/// `GET /settings/receivers` (admin).
pub async fn page(
    State(state): State<ConsoleState>,
    auth: Authed,
    Query(q): Query<ReceiversQuery>,
) -> PageResult {
    auth.require(Role::Admin)?;
    let api = api(&state)?;
    let (list, problem) = off_runtime(move || Ok((api.receivers(), api.problem()))).await?;
    let flash = match q.msg.as_deref() {
        Some("added") => Some("Receiver added; forwarding reloaded."),
        Some("removed") => Some("Receiver removed; forwarding reloaded."),
        _ => None,
    };
    Ok(view_page(&auth, &list, problem, flash, &[]))
}

/// `POST /settings/receivers` (admin): add one, reload forwarding, audit it.
pub async fn add(
    State(state): State<ConsoleState>,
    auth: Authed,
    Form(f): Form<ReceiverForm>,
) -> Result<axum::response::Response, UiError> {
    use axum::response::IntoResponse;
    auth.require(Role::Admin)?;
    let api = api(&state)?;
    let new = match validate_receiver(&f) {
        Ok(n) => n,
        Err(errs) => return Ok(refused(&auth, api, errs).await?.into_response()),
    };
    let detail = format!(
        "{}:{} transport={} format={} kinds={} audit_from={}",
        new.host,
        new.port,
        if new.tls_ca_pem.is_some() {
            "tls"
        } else {
            "tcp"
        },
        new.format,
        new.kinds.join(","),
        new.audit_from
    );
    let name = new.name.clone();
    let a = api.clone();
    if let Err(errs) = off_runtime(move || Ok(a.add_receiver(new))).await? {
        return Ok(refused(&auth, api, errs).await?.into_response());
    }
    state.audit(
        &auth.user.name,
        "forward.receiver_add",
        &format!("receiver:{name}"),
        &detail,
    )?;
    Ok(Redirect::to("/settings/receivers?msg=added").into_response())
}

/// The page again with the problems, answered 400.
async fn refused(
    auth: &Authed,
    api: Arc<dyn ReceiversApi>,
    errs: Vec<String>,
) -> Result<(axum::http::StatusCode, axum::response::Html<String>), UiError> {
    let (list, problem) = off_runtime(move || Ok((api.receivers(), api.problem()))).await?;
    Ok((
        axum::http::StatusCode::BAD_REQUEST,
        view_page(auth, &list, problem, None, &errs),
    ))
}

/// `POST /settings/receivers/{name}/remove` (admin).
pub async fn remove(
    State(state): State<ConsoleState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<Redirect, UiError> {
    auth.require(Role::Admin)?;
    let api = api(&state)?;
    let n = name.clone();
    let removed = off_runtime(move || api.remove_receiver(&n).map_err(UiError::BadRequest)).await?;
    if !removed {
        return Err(UiError::NotFound(format!("receiver {name}")));
    }
    state.audit(
        &auth.user.name,
        "forward.receiver_remove",
        &format!("receiver:{name}"),
        "",
    )?;
    Ok(Redirect::to("/settings/receivers?msg=removed"))
}

fn row(auth: &Authed, r: &ReceiverStatus) -> impl IntoView {
    let remove = (!r.from_config_file).then(|| {
        let action = format!("/settings/receivers/{}/remove", r.name);
        view! {
            <form method="post" action=action class="row">
                {csrf_field(auth)}
                <button type="submit">"Remove"</button>
            </form>
        }
    });
    let source = if r.from_config_file {
        "config file"
    } else {
        "console"
    };
    let state = match (r.full, r.connected) {
        (true, _) => "QUEUE FULL",
        (false, true) => "connected",
        (false, false) => "not connected",
    };
    view! {
        <tr>
            <td>{r.name.clone()}</td>
            <td class="mono">{r.address.clone()}</td>
            <td>{format!("{} / {}", r.transport, r.format)}</td>
            <td>{r.kinds.join(", ")}</td>
            <td>{r.kinds.iter().any(|k| k == "audit").then(|| r.audit_from.clone())}</td>
            <td class="num">{r.sent}</td>
            <td class="num">{r.queued}</td>
            <td class="num">{r.failed_attempts}</td>
            <td class="num">{r.oldest_pending_secs.map_or("-".to_string(), |s| format!("{s} s"))}</td>
            <td class="num">{r.refused}</td>
            <td>{state}" "<span class="muted">{r.last_error.clone().unwrap_or_default()}</span></td>
            <td>{source}</td>
            <td>{remove}</td>
        </tr>
    }
}

fn view_page(
    auth: &Authed,
    list: &[ReceiverStatus],
    problem: Option<String>,
    flash: Option<&'static str>,
    errs: &[String],
) -> axum::response::Html<String> {
    let alarms: Vec<String> = list
        .iter()
        .filter(|r| r.full || r.refused > 0)
        .map(|r| {
            format!(
                "{}: the queue refused {} record(s){}; they were not forwarded.",
                r.name,
                r.refused,
                if r.full { " and is full now" } else { "" }
            )
        })
        .collect();
    let alarm = (!alarms.is_empty()).then(|| {
        view! {
            <div class="flash err" id="forward-alarm">
                <strong>"Forwarding alarm. "</strong>
                {alarms.into_iter().map(|a| view! { <div>{a}</div> }).collect_view()}
            </div>
        }
    });
    let problem = problem.map(|p| view! { <div class="flash err">{p}</div> });
    let errors = (!errs.is_empty()).then(|| {
        let items = errs
            .iter()
            .map(|e| view! { <li>{e.clone()}</li> })
            .collect_view();
        view! { <div class="flash err" id="form-errors"><ul>{items}</ul></div> }
    });
    let rows = list.iter().map(|r| row(auth, r)).collect_view();
    let body = view! {
        <h1>"SIEM receivers"</h1>
        {flash.map(|t| view! { <div class="flash ok">{t}</div> })}
        {alarm}
        {problem}
        {errors}
        <section class="panel flush">
            <table class="dense">
                <thead><tr>
                    <th>"Name"</th><th>"Address"</th><th>"Transport / format"</th><th>"Kinds"</th><th>"Audit from"</th>
                    <th>"Sent"</th><th>"Queued"</th><th>"Failed attempts"</th><th>"Oldest pending"</th>
                    <th>"Refused"</th><th>"State"</th><th>"Source"</th><th></th>
                </tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
        <section class="panel">
            <h2>"Add a receiver"</h2>
            <form method="post" action="/settings/receivers" class="stack">
                {csrf_field(auth)}
                <label>"Name " <input type="text" name="name" maxlength="64" pattern="[A-Za-z0-9_-]+" required/></label>
                <label>"Host " <input type="text" name="host" maxlength="253" required/></label>
                <label>"Port " <input type="number" name="port" min="1" max="65535" value="6514" required/></label>
                <label>"Transport "
                    <select name="transport">
                        <option value="tls" selected>"TLS (RFC 5425)"</option>
                        <option value="tcp">"TCP (RFC 6587)"</option>
                    </select>
                </label>
                <label>"CA certificate (PEM, TLS only) " <textarea name="ca_pem" maxlength="16384"></textarea></label>
                <label>"Format "
                    <select name="format">
                        <option value="ocsf" selected>"OCSF"</option>
                        <option value="ecs">"ECS"</option>
                        <option value="cef">"CEF"</option>
                    </select>
                </label>
                <fieldset>
                    <legend>"Send"</legend>
                    <label><input type="checkbox" name="kind_alert" checked/>" alerts"</label>
                    <label><input type="checkbox" name="kind_incident" checked/>" incidents"</label>
                    <label><input type="checkbox" name="kind_audit" checked/>" audit entries"</label>
                    <label><input type="checkbox" name="kind_event"/>" raw events"</label>
                </fieldset>
                <label>"Audit entries from "
                    <select name="audit_from">
                        <option value="start" selected>"the log's first entry"</option>
                        <option value="now">"now on"</option>
                    </select>
                </label>
                <button type="submit" class="primary">"Add receiver"</button>
            </form>
            <p class="muted">"Receivers from the appliance's forward.toml are listed but changed only there. Signed audit checkpoints go to every receiver."</p>
        </section>
    };
    render("SIEM receivers", Nav::Receivers, auth, body.into_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> ReceiverForm {
        ReceiverForm {
            name: "siem-1".into(),
            host: "siem.example".into(),
            port: "6514".into(),
            transport: "tls".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----".into(),
            format: "ocsf".into(),
            kind_alert: Some("on".into()),
            ..ReceiverForm::default()
        }
    }

    #[test]
    fn a_good_form_is_accepted() {
        let n = validate_receiver(&form()).unwrap();
        assert_eq!((n.port, n.kinds.clone()), (6514, vec!["alert".to_string()]));
        assert!(n.tls_ca_pem.is_some());
        assert_eq!(n.audit_from, "start");
        let now = ReceiverForm {
            audit_from: "now".into(),
            ..form()
        };
        assert_eq!(validate_receiver(&now).unwrap().audit_from, "now");
    }

    #[test]
    fn every_hostile_field_is_named() {
        let f = ReceiverForm {
            name: "../../etc".into(),
            host: format!("a{}", "b".repeat(MAX_HOST_LEN)),
            port: "70000".into(),
            transport: "tls".into(),
            ca_pem: "x".repeat(MAX_CA_PEM_BYTES + 1),
            format: "xml".into(),
            audit_from: "yesterday".into(),
            ..ReceiverForm::default()
        };
        let errs = validate_receiver(&f).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "host",
                "port",
                "ca_pem",
                "format",
                "audit_from",
                "kinds"
            ]
        );
        let f = ReceiverForm {
            host: "evil.example\nX: y".into(),
            transport: "udp".into(),
            ..form()
        };
        let errs = validate_receiver(&f).unwrap_err();
        assert!(errs[0].starts_with("host:") && errs[1].starts_with("transport:"));
    }
}
