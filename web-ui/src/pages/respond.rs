//! Response from the console: the actions on a host page, the
//! confirmation that shows exactly what will happen, the command page with
//! its live state and receipt, and the isolation banner.
//!
//! Acting needs the analyst role, checked here and again by the
//! appliance's responder (which also writes the audit entries); viewers
//! see the commands but no action. Every action is a GET to a confirmation
//! page and then a CSRF-checked POST: nothing acts in one click by accident.

use super::layout::{render, Nav};
use super::*;
use crate::store::Role;
use crate::time::{ago, format_ts};
use crate::urlenc;
use axum::extract::{Form, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::net::IpAddr;
use std::sync::Arc;
use vigil_proto::query::response::{
    action_name, describe_action, CommandRecord, CommandRequest, CommandStatus, ResponseApi,
    ResponseError,
};
use vigil_proto::{CommandAction, Receipt};

/// The responder, or a clear error when this console has none.
pub fn responder(state: &ConsoleState) -> Result<Arc<dyn ResponseApi>, UiError> {
    state
        .respond
        .clone()
        .ok_or_else(|| UiError::NotFound("response is not available in this console".into()))
}

impl From<ResponseError> for UiError {
    fn from(e: ResponseError) -> Self {
        match e {
            ResponseError::Forbidden(_) => UiError::Forbidden("not allowed to act on hosts"),
            ResponseError::NotFound(what) => UiError::NotFound(what),
            ResponseError::Invalid(why) | ResponseError::Conflict(why) => UiError::BadRequest(why),
            ResponseError::Storage(e) => UiError::Store(crate::store::StoreError::Backend(e)),
        }
    }
}

/// An action as form fields (the confirmation page's query and its POST).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ActionForm {
    /// `isolate`, `release`, `kill`, `collect`, `processes`, `connections`,
    /// `remove-key`, `disable-account` or `block`.
    pub action: String,
    /// Isolation lifts after this many seconds (empty: until released).
    #[serde(default)]
    pub for_s: String,
    /// `1`: isolation also allows DHCP and neighbour discovery.
    #[serde(default)]
    pub dhcp: String,
    /// Extra addresses an isolation allows, comma-separated.
    #[serde(default)]
    pub allow: String,
    #[serde(default)]
    pub pid: String,
    /// Process start time, clock ticks after boot.
    #[serde(default)]
    pub start: String,
    /// Process start time as its start event says, ns since the Unix epoch
    /// (the checklist's links; used instead of `start` when given).
    #[serde(default)]
    pub start_ns: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub user: String,
    /// The `authorized_keys` line, or its SHA-256 in `line_sha256`.
    #[serde(default)]
    pub line: String,
    #[serde(default)]
    pub line_sha256: String,
    #[serde(default)]
    pub peer: String,
    /// Why (required to send).
    #[serde(default)]
    pub reason: String,
    /// The incident and remediation step it comes from.
    #[serde(default)]
    pub incident: String,
    #[serde(default)]
    pub step: String,
}

/// Largest file the console asks a sensor to bring back.
const COLLECT_MAX_BYTES: u64 = 8 * 1024 * 1024;

fn bad(why: &str) -> UiError {
    UiError::BadRequest(why.to_owned())
}

impl ActionForm {
    /// The command this form describes (`now` dates an isolation's expiry).
    pub fn to_action(&self, now: u64) -> Result<CommandAction, UiError> {
        let num = |s: &str, what: &str| s.trim().parse::<u64>().map_err(|_| bad(what));
        Ok(match self.action.as_str() {
            "isolate" => {
                let expires_ns = match self.for_s.trim() {
                    "" => None,
                    s => Some(now.saturating_add(
                        num(s, "Duration must be seconds.")?.saturating_mul(1_000_000_000),
                    )),
                };
                let allow = self
                    .allow
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        s.parse::<IpAddr>()
                            .map_err(|_| bad("Allowed addresses must be IP addresses."))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                CommandAction::IsolateHost {
                    allow,
                    expires_ns,
                    allow_dhcp_nd: self.dhcp == "1",
                }
            }
            "release" => CommandAction::Release,
            "kill" => {
                let pid = u32::try_from(num(&self.pid, "Pid must be a number.")?)
                    .map_err(|_| bad("Pid must be a number."))?;
                match self.start_ns.trim() {
                    "" => CommandAction::KillProcess {
                        pid,
                        start_time_ticks: num(&self.start, "Start time must be clock ticks.")?,
                    },
                    ns => CommandAction::KillProcessStartedAt {
                        pid,
                        start_time_ns: num(ns, "Start time must be ns since the epoch.")?,
                    },
                }
            }
            "collect" => CommandAction::CollectFile {
                path: self.path.trim().to_owned(),
                max_bytes: COLLECT_MAX_BYTES,
            },
            "processes" => CommandAction::ListProcesses,
            "connections" => CommandAction::ListConnections,
            "remove-key" => CommandAction::RemoveAuthorizedKey {
                user: self.user.trim().to_owned(),
                line_sha256: self.key_hash()?,
            },
            "disable-account" => CommandAction::DisableAccount {
                user: self.user.trim().to_owned(),
            },
            "block" => CommandAction::BlockPeer {
                addr: self
                    .peer
                    .trim()
                    .parse()
                    .map_err(|_| bad("Peer must be an IP address."))?,
            },
            _ => return Err(bad("Unknown action.")),
        })
    }

    fn key_hash(&self) -> Result<[u8; 32], UiError> {
        use sha2::{Digest, Sha256};
        if !self.line.trim().is_empty() {
            return Ok(Sha256::digest(self.line.trim_end_matches(['\r', '\n']).as_bytes()).into());
        }
        let bytes =
            hex::decode(self.line_sha256.trim()).map_err(|_| bad("Key hash must be hex."))?;
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| bad("Key hash must be 32 bytes."))
    }

    /// The form fields of `action` (links from the remediation checklist).
    pub fn of(action: &CommandAction) -> Vec<(&'static str, String)> {
        let mut f = vec![("action", action_name(action).to_owned())];
        match action {
            CommandAction::IsolateHost {
                allow,
                allow_dhcp_nd,
                ..
            } => {
                let list: Vec<String> = allow.iter().map(|a| a.to_string()).collect();
                f.push(("allow", list.join(",")));
                if *allow_dhcp_nd {
                    f.push(("dhcp", "1".into()));
                }
            }
            CommandAction::KillProcess {
                pid,
                start_time_ticks,
            } => {
                f.push(("pid", pid.to_string()));
                f.push(("start", start_time_ticks.to_string()));
            }
            CommandAction::KillProcessStartedAt { pid, start_time_ns } => {
                f.push(("pid", pid.to_string()));
                f.push(("start_ns", start_time_ns.to_string()));
            }
            CommandAction::CollectFile { path, .. } => f.push(("path", path.clone())),
            CommandAction::RemoveAuthorizedKey { user, line_sha256 } => {
                f.push(("user", user.clone()));
                f.push(("line_sha256", hex::encode(line_sha256)));
            }
            CommandAction::DisableAccount { user } => f.push(("user", user.clone())),
            CommandAction::BlockPeer { addr } => f.push(("peer", addr.to_string())),
            _ => {}
        }
        f
    }

    /// Every field, to carry from the confirmation page into its POST.
    fn hidden_fields(&self) -> impl IntoView {
        [
            ("action", &self.action),
            ("for_s", &self.for_s),
            ("dhcp", &self.dhcp),
            ("allow", &self.allow),
            ("pid", &self.pid),
            ("start", &self.start),
            ("start_ns", &self.start_ns),
            ("path", &self.path),
            ("user", &self.user),
            ("line", &self.line),
            ("line_sha256", &self.line_sha256),
            ("peer", &self.peer),
            ("incident", &self.incident),
            ("step", &self.step),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| view! { <input type="hidden" name=k value=v.clone()/> })
        .collect_view()
    }
}

/// The link that opens the confirmation of `action` on `host`.
pub fn confirm_link(
    host: HostId,
    action: &CommandAction,
    incident: Option<u64>,
    step: Option<&str>,
) -> String {
    let mut fields = ActionForm::of(action);
    if let Some(i) = incident {
        fields.push(("incident", i.to_string()));
    }
    if let Some(s) = step {
        fields.push(("step", s.to_owned()));
    }
    format!("/hosts/{host}/respond?{}", urlenc::query(&fields))
}

/// `GET /hosts/{id}/respond`: what will happen, and the form that sends it.
pub fn confirm_page(
    state: &ConsoleState,
    auth: &Authed,
    host: HostId,
    f: &ActionForm,
) -> PageResult {
    auth.require(Role::Analyst)?;
    let r = responder(state)?;
    let h = state.read.host(host)?;
    let action = f.to_action(state.now())?;
    let approval = r.needs_approval(host, &action).then(|| view! {
        <p class="flash warn">"This host is tagged as a server: a second analyst must approve before the command is sent."</p>
    });
    let lasts = match (&action, f.for_s.trim()) {
        (CommandAction::IsolateHost { .. }, "") => Some("Until released.".to_owned()),
        (CommandAction::IsolateHost { .. }, s) => Some(format!("Lifts by itself after {s} s.")),
        _ => None,
    };
    let effect = effect_list(&action);
    let body = view! {
        <div class="titlebar"><h1>{format!("Confirm: {} on {}", action_name(&action), h.hostname)}</h1></div>
        <section class="panel confirm">
            <h2>"What will happen"</h2>
            <p class="lead">{describe_action(&action)}</p>
            {effect}
            {lasts.map(|l| view! { <p>{l}</p> })}
            {approval}
            <form method="post" action=format!("/hosts/{host}/respond")>
                {csrf_field(auth)}
                {f.hidden_fields()}
                <label>"Reason (recorded in the command and the audit log)"
                    <textarea name="reason" required maxlength="1024">{f.reason.clone()}</textarea>
                </label>
                <button type="submit" class="danger">"Send command"</button>
                " "<a href=format!("/hosts/{host}")>"Cancel"</a>
            </form>
        </section>
    };
    Ok(render("Confirm action", Nav::Hosts, auth, body.into_any()))
}

/// The exact effect, for the actions where a sentence is not enough.
fn effect_list(action: &CommandAction) -> Option<AnyView> {
    match action {
        CommandAction::IsolateHost { allow, allow_dhcp_nd, .. } => {
            let mut rules = vec![
                format!(
                    "One nftables table `inet {}`, installed in one transaction (all or nothing).",
                    vigil_proto::command::ISOLATION_TABLE
                ),
                "Input, output and forward chains drop by default.".to_owned(),
                "Allowed: loopback; established traffic to and from the appliance's addresses pinned at enrollment, on its QUIC port.".to_owned(),
            ];
            if *allow_dhcp_nd {
                rules.push("Allowed: DHCPv4/v6 and IPv6 neighbour/router discovery.".into());
            }
            for a in allow {
                rules.push(format!("Allowed: all traffic with {a}."));
            }
            rules.push("The sensor re-applies it at every start; release deletes only this table.".into());
            rules.push("The receipt carries the SHA-256 of the ruleset and a self-check that the appliance is still reachable; the host stays isolated if that check fails.".into());
            let items = rules.into_iter().map(|r| view! { <li>{r}</li> }).collect_view();
            Some(view! { <ul class="rules">{items}</ul> }.into_any())
        }
        CommandAction::KillProcess { pid, start_time_ticks } => Some(view! {
            <p>{format!("Only the process with pid {pid} AND start time {start_time_ticks} is signalled (through a pidfd): a reused pid is refused.")}</p>
        }.into_any()),
        CommandAction::KillProcessStartedAt { pid, start_time_ns } => Some(view! {
            <p>{format!("Only the process with pid {pid} AND the start time {} of its start event is signalled (through a pidfd): a reused pid, or a start time of another boot, is refused.", format_ts(*start_time_ns))}</p>
        }.into_any()),
        _ => None,
    }
}

/// `POST /hosts/{id}/respond`: sign, store and deliver.
pub fn issue(
    state: &ConsoleState,
    auth: &Authed,
    host: HostId,
    f: &ActionForm,
) -> Result<u64, UiError> {
    auth.require(Role::Analyst)?;
    let r = responder(state)?;
    let action = f.to_action(state.now())?;
    let rec = r.issue(CommandRequest {
        host,
        action,
        operator: auth.user.name.clone(),
        reason: f.reason.trim().to_owned(),
        deliver_within_ns: None,
        incident: f.incident.trim().parse().ok(),
        step: (!f.step.trim().is_empty()).then(|| f.step.trim().chars().take(200).collect()),
    })?;
    Ok(rec.id())
}

/// `GET /commands/{id}`.
pub fn command_page(state: &ConsoleState, auth: &Authed, id: u64) -> PageResult {
    let r = responder(state)?;
    let c = r.command(id)?;
    let now = state.now();
    let names = hostnames(state)?;
    let history = c
        .history
        .iter()
        .map(|t| view! {
            <tr><td>{format_ts(t.ts_ns)}</td><td>{status_badge(t.status)}</td><td>{t.by.clone()}</td><td>{t.detail.clone()}</td></tr>
        })
        .collect_view();
    let actions = auth.can(Role::Analyst).then(|| {
        let approve = (c.status == CommandStatus::AwaitingApproval && c.command.operator != auth.user.name).then(|| view! {
            <form method="post" action=format!("/commands/{id}/approve")>{csrf_field(auth)}<button type="submit">"Approve"</button></form>
        });
        let cancel = matches!(c.status, CommandStatus::AwaitingApproval | CommandStatus::Queued).then(|| view! {
            <form method="post" action=format!("/commands/{id}/cancel")>{csrf_field(auth)}<button type="submit">"Cancel command"</button></form>
        });
        view! { <div class="actions">{approve}{cancel}</div> }
    });
    // Until it is final, the page refreshes itself (no script needed).
    let refresh =
        (!c.status.is_final()).then(|| view! { <meta http-equiv="refresh" content="2"/> });
    let body = view! {
        {refresh}
        <div class="titlebar">
            <h1>{format!("Command #{id}: {}", action_name(&c.command.action))}</h1>
            {status_badge(c.status)}
        </div>
        <section class="panel">
            <dl class="facts cols">
                <dt>"Host"</dt><dd><a href=format!("/hosts/{}", c.host())>{name_of(&names, c.host())}</a></dd>
                <dt>"What"</dt><dd>{describe_action(&c.command.action)}</dd>
                <dt>"Operator"</dt><dd>{c.command.operator.clone()}</dd>
                <dt>"Reason"</dt><dd>{c.command.reason.clone()}</dd>
                <dt>"Created"</dt><dd>{format!("{} ({})", format_ts(c.command.created_ns), ago(now, c.command.created_ns))}</dd>
                <dt>"Expires"</dt><dd>{format_ts(c.command.expires_ns)}</dd>
                <dt>"Approved by"</dt><dd>{c.approved_by.clone().unwrap_or_else(|| "—".into())}</dd>
                <dt>"Signature"</dt><dd class="mono">{format!("Ed25519, {} bytes", c.command.signature.len())}</dd>
            </dl>
            {actions}
        </section>
        {receipt_panel(&c, auth)}
        <section class="panel">
            <h2>"Lifecycle"</h2>
            <table class="dense"><thead><tr><th>"Time"</th><th>"State"</th><th>"By"</th><th>"Detail"</th></tr></thead><tbody>{history}</tbody></table>
        </section>
    };
    Ok(render(
        &format!("Command #{id}"),
        Nav::Hosts,
        auth,
        body.into_any(),
    ))
}

fn status_badge(s: CommandStatus) -> impl IntoView {
    view! { <span class=format!("badge cmd-{}", s.code())>{s.code().replace('_', " ")}</span> }
}

fn receipt_panel(c: &CommandRecord, auth: &Authed) -> Option<AnyView> {
    let r = c.result.as_ref()?;
    let facts: Vec<(&str, String)> = match &r.receipt {
        Receipt::None => vec![],
        Receipt::Isolation(i) => vec![
            ("Ruleset SHA-256", hex::encode(i.ruleset_sha256)),
            (
                "Allowed",
                i.allowed
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ("Until", i.until_ns.map_or("released".into(), format_ts)),
            (
                "Self-check",
                format!(
                    "{}: {}",
                    if i.self_check_ok {
                        "passed"
                    } else {
                        "FAILED (host stays isolated)"
                    },
                    i.self_check
                ),
            ),
        ],
        Receipt::Released { was_isolated } => vec![("Was isolated", was_isolated.to_string())],
        Receipt::Kill(k) => vec![
            ("Process", format!("pid {} {}", k.pid, k.exe)),
            ("Start time", format!("{} ticks", k.start_time_ticks)),
            ("Signal", k.signal.to_string()),
            ("Exited", k.exited.to_string()),
        ],
        Receipt::Collect(k) => vec![
            ("Size", format!("{} bytes", k.size)),
            ("SHA-256", hex::encode(k.sha256)),
            ("Brought back", format!("{} bytes", k.sent)),
        ],
        Receipt::Listing { total, listed } => vec![("Rows", format!("{listed} of {total}"))],
        Receipt::KeyRemoved { path, line } => {
            vec![("File", path.clone()), ("Removed line", line.clone())]
        }
        Receipt::AccountDisabled { user, changes } => {
            vec![("Account", user.clone()), ("Changes", changes.join("; "))]
        }
        Receipt::PeerBlocked {
            addr,
            ruleset_sha256,
        } => vec![
            ("Peer", addr.to_string()),
            ("Ruleset SHA-256", hex::encode(ruleset_sha256)),
        ],
    };
    let rows = facts
        .into_iter()
        .map(|(k, v)| view! { <dt>{k}</dt><dd class="mono">{v}</dd> })
        .collect_view();
    let download = (r.data_len > 0 && auth.can(Role::Analyst)).then(|| view! {
        <p><a class="button" href=format!("/commands/{}/data", c.id())>{format!("Download {} bytes (SHA-256 {})", r.data_len, r.data_sha256)}</a></p>
    });
    Some(
        view! {
            <section class="panel receipt">
                <h2>"Receipt"</h2>
                <p>{r.message.clone()}</p>
                <dl class="facts">{rows}</dl>
                {download}
            </section>
        }
        .into_any(),
    )
}

/// The banner on a host page while the host is isolated.
pub fn isolation_banner(state: &ConsoleState, host: HostId) -> Option<AnyView> {
    let r = state.respond.as_ref()?;
    let now = state.now();
    let iso = r.isolation(host, now).ok()??;
    let left = match iso.until_ns {
        Some(u) => format!("lifts in {}", crate::time::duration(u.saturating_sub(now))),
        None => "until released".into(),
    };
    let check = if iso.self_check_ok {
        ""
    } else {
        " Self-check FAILED: the appliance may not reach it."
    };
    Some(view! {
        <div class="flash warn isolated-banner">
            {format!("Isolated since {} ({left}) by command #{}.{check}", format_ts(iso.since_ns), iso.command)}
            " "<a href=format!("/commands/{}", iso.command)>"Receipt"</a>
        </div>
    }.into_any())
}

/// The response panel of a host page: recent commands and, for analysts, the actions.
pub fn host_panel(state: &ConsoleState, auth: &Authed, host: HostId) -> Result<AnyView, UiError> {
    let Some(r) = state.respond.as_ref() else {
        return Ok(response_placeholder().into_any());
    };
    let now = state.now();
    let recent = r.commands(Some(host), 10)?;
    let rows = recent
        .iter()
        .map(|c| {
            view! {
                <tr>
                    <td><a href=format!("/commands/{}", c.id())>{format!("#{}", c.id())}</a></td>
                    <td>{action_name(&c.command.action)}</td>
                    <td>{status_badge(c.status)}</td>
                    <td>{c.command.operator.clone()}</td>
                    <td>{ago(now, c.command.created_ns)}</td>
                </tr>
            }
        })
        .collect_view();
    let forms = auth.can(Role::Analyst).then(|| action_forms(host));
    Ok(view! {
        <section class="panel response">
            <h2>"Response"</h2>
            <table class="dense"><thead><tr><th>"Command"</th><th>"Action"</th><th>"State"</th><th>"Operator"</th><th>"When"</th></tr></thead>
            <tbody>{rows}</tbody></table>
            {recent.is_empty().then(|| view! { <p class="muted">"No commands sent to this host yet."</p> })}
            {forms}
        </section>
    }.into_any())
}

/// One small GET form per action; each opens its confirmation page.
fn action_forms(host: HostId) -> AnyView {
    let to = format!("/hosts/{host}/respond");
    let simple = |action: &'static str, label: &'static str| {
        view! { <form method="get" action=to.clone() class="inline"><input type="hidden" name="action" value=action/><button type="submit">{label}</button></form> }
    };
    view! {
        <div class="actions">
            <form method="get" action=to.clone() class="inline">
                <input type="hidden" name="action" value="isolate"/>
                <select name="for_s"><option value="">"until released"</option><option value="3600">"1 h"</option><option value="14400">"4 h"</option><option value="86400">"24 h"</option></select>
                <label class="check"><input type="checkbox" name="dhcp" value="1"/>" DHCP/ND"</label>
                <button type="submit" class="danger">"Isolate host"</button>
            </form>
            {simple("release", "Release")}
            {simple("processes", "List processes")}
            {simple("connections", "List connections")}
        </div>
        <div class="actions">
            <form method="get" action=to.clone() class="inline"><input type="hidden" name="action" value="kill"/>
                <input name="pid" placeholder="pid" size="7" required/><input name="start" placeholder="start ticks" size="10" required/><button type="submit">"Kill process"</button></form>
            <form method="get" action=to.clone() class="inline"><input type="hidden" name="action" value="collect"/>
                <input name="path" placeholder="/absolute/path" required/><button type="submit">"Collect file"</button></form>
            <form method="get" action=to.clone() class="inline"><input type="hidden" name="action" value="block"/>
                <input name="peer" placeholder="peer address" required/><button type="submit">"Block peer"</button></form>
            <form method="get" action=to.clone() class="inline"><input type="hidden" name="action" value="disable-account"/>
                <input name="user" placeholder="user" required/><button type="submit">"Disable account"</button></form>
            <form method="get" action=to class="inline"><input type="hidden" name="action" value="remove-key"/>
                <input name="user" placeholder="user" required/><input name="line" placeholder="authorized_keys line" required/><button type="submit">"Remove key"</button></form>
        </div>
    }
    .into_any()
}

fn parse_host(id: &str) -> Result<HostId, UiError> {
    id.parse()
        .map_err(|_| UiError::BadRequest("host id must be 16 hex digits".into()))
}

/// `GET /hosts/{id}/respond`.
pub async fn confirm(
    State(state): State<ConsoleState>,
    auth: Authed,
    Path(id): Path<String>,
    Query(f): Query<ActionForm>,
) -> PageResult {
    let id = parse_host(&id)?;
    off_runtime(move || confirm_page(&state, &auth, id, &f)).await
}

/// `POST /hosts/{id}/respond`.
pub async fn send(
    State(state): State<ConsoleState>,
    auth: Authed,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Result<Redirect, UiError> {
    let id = parse_host(&id)?;
    let cmd = off_runtime(move || issue(&state, &auth, id, &f)).await?;
    Ok(Redirect::to(&format!("/commands/{cmd}")))
}

/// `GET /commands/{id}`.
pub async fn show(
    State(state): State<ConsoleState>,
    auth: Authed,
    Path(id): Path<u64>,
) -> PageResult {
    off_runtime(move || command_page(&state, &auth, id)).await
}

/// `POST /commands/{id}/approve`: a second analyst approves.
pub async fn approve(
    State(state): State<ConsoleState>,
    auth: Authed,
    Path(id): Path<u64>,
) -> Result<Redirect, UiError> {
    decide(state, auth, id, |r, id, who| r.approve(id, who)).await
}

/// `POST /commands/{id}/cancel`: withdrawn before its sensor received it.
pub async fn cancel(
    State(state): State<ConsoleState>,
    auth: Authed,
    Path(id): Path<u64>,
) -> Result<Redirect, UiError> {
    decide(state, auth, id, |r, id, who| r.cancel(id, who)).await
}

/// An analyst's decision on a command, then back to its page.
async fn decide(
    state: ConsoleState,
    auth: Authed,
    id: u64,
    act: fn(&dyn ResponseApi, u64, &str) -> Result<CommandRecord, ResponseError>,
) -> Result<Redirect, UiError> {
    off_runtime(move || {
        auth.require(Role::Analyst)?;
        act(responder(&state)?.as_ref(), id, &auth.user.name)?;
        Ok(())
    })
    .await?;
    Ok(Redirect::to(&format!("/commands/{id}")))
}

/// `GET /commands/{id}/data`: the collected bytes, as an attachment (audited).
pub async fn data(
    State(state): State<ConsoleState>,
    auth: Authed,
    Path(id): Path<u64>,
) -> Result<Response, UiError> {
    let bytes = off_runtime(move || {
        auth.require(Role::Analyst)?;
        Ok(responder(&state)?.command_data(id, &auth.user.name)?)
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"command-{id}.bin\""),
            ),
        ],
        bytes,
    )
        .into_response())
}
