//! `/alerts` and `/alerts/{id}`: triage list and the alert / incident page.

use super::layout::{render, Nav};
use super::*;
use crate::store::Role;
use crate::svg::{path_graph, usage_bar, Node};
use crate::time::{ago, format_ts};
use crate::urlenc;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use vigil_proto::query::AlertFilter;

/// Rows per page of the alert list.
pub const PAGE_SIZE: usize = 50;
/// Most alerts considered by the list and the suppression preview.
pub const SCAN_LIMIT: usize = 10_000;

/// ATT&CK technique names the console knows.
pub fn technique_name(id: &str) -> &'static str {
    match id {
        "T1021.001" => "Remote Desktop Protocol",
        "T1021.002" => "SMB / Windows Admin Shares",
        "T1021.004" => "Remote Services: SSH",
        "T1021.006" => "Windows Remote Management",
        "T1047" => "Windows Management Instrumentation",
        "T1078" => "Valid Accounts",
        "T1098.004" => "SSH Authorized Keys",
        "T1110.001" => "Password Guessing",
        "T1550.002" => "Pass the Hash",
        "T1569.002" => "Service Execution",
        _ => "",
    }
}

/// Query string of `/alerts`.
#[derive(Debug, Default, Deserialize)]
pub struct AlertsQuery {
    /// `open` (default), `closed` or `all`.
    #[serde(default)]
    pub view: String,
    /// Minimum severity name.
    #[serde(default)]
    pub sev: String,
    /// `1` to include alerts hidden by suppressions.
    #[serde(default)]
    pub suppressed: String,
    #[serde(default)]
    pub page: usize,
}

/// Render the alert list.
pub fn list_page(state: &ConsoleState, auth: &Authed, q: &AlertsQuery) -> PageResult {
    let now = state.now();
    let min_sev = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ]
    .into_iter()
    .find(|s| s.name() == q.sev);
    let names = hostnames(state)?;
    let view_mode = if q.view.is_empty() {
        "open"
    } else {
        q.view.as_str()
    };
    let mut hidden = 0usize;
    let mut shown = Vec::new();
    let filter = AlertFilter {
        min_severity: min_sev,
        limit: SCAN_LIMIT,
        ..Default::default()
    };
    for a in seen_alerts(state, &filter, true)? {
        let keep = match view_mode {
            "closed" => !is_open(&a.state),
            "all" => true,
            _ => is_open(&a.state),
        };
        if !keep {
            continue;
        }
        if a.is_hidden() && q.suppressed != "1" {
            hidden += 1;
            continue;
        }
        shown.push(a);
    }
    let pages = shown.len().div_ceil(PAGE_SIZE).max(1);
    let page_no = q.page.min(pages - 1);
    let rows = shown
        .iter()
        .skip(page_no * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|a| {
            let path = a.path.iter().map(|h| name_of(&names, *h)).collect::<Vec<_>>().join(" → ");
            let kind = if a.path.len() > 1 { "incident" } else { "alert" };
            view! {
                <tr>
                    <td>{severity_badge(a.severity)}</td>
                    <td><a href=format!("/alerts/{}", a.id)>{a.title.clone()}</a> <span class="muted">{format!(" #{} · {kind}", a.id)}</span></td>
                    <td>{path}</td>
                    <td>{a.users.join(", ")}</td>
                    <td class="mono">{a.techniques.join(" ")}</td>
                    <td>{triage_badge(&a.state)}</td>
                    <td>{a.assignee.clone().unwrap_or_else(|| "—".into())}</td>
                    <td class="muted nowrap">{ago(now, a.created_ns)}</td>
                </tr>
            }
        })
        .collect_view();
    let tabs = ["open", "closed", "all"]
        .into_iter()
        .map(|v| {
            let class = if v == view_mode { "chip active" } else { "chip" };
            view! { <a class=class href=format!("/alerts?{}", urlenc::query(&[("view", v.into()), ("sev", q.sev.clone())]))>{v}</a> }
        })
        .collect_view();
    let sev_opts = ["", "low", "medium", "high", "critical"]
        .into_iter()
        .map(|s| view! { <option value=s selected={q.sev == s}>{if s.is_empty() { "any severity" } else { s }}</option> })
        .collect_view();
    let hidden_note = (hidden > 0).then(|| {
        let href = format!("/alerts?{}", urlenc::query(&[("view", view_mode.into()), ("sev", q.sev.clone()), ("suppressed", "1".into())]));
        view! { <p class="muted">{format!("{hidden} open alerts hidden by suppressions. ")}<a href=href>"Show them"</a></p> }
    });
    let base = format!(
        "/alerts?{}",
        urlenc::query(&[
            ("view", view_mode.into()),
            ("sev", q.sev.clone()),
            ("suppressed", q.suppressed.clone())
        ])
    );
    let body = view! {
        <h1>"Alerts and incidents"</h1>
        <form method="get" action="/alerts" class="toolbar">
            {tabs}
            <input type="hidden" name="view" value=view_mode.to_string()/>
            <select name="sev">{sev_opts}</select>
            <button type="submit">"Filter"</button>
            <span class="muted">{format!("{} shown", shown.len())}</span>
        </form>
        {hidden_note}
        <section class="panel flush">
            <table class="dense">
                <thead><tr><th>"Severity"</th><th>"Alert"</th><th>"Hosts"</th><th>"Users"</th><th>"ATT&CK"</th><th>"State"</th><th>"Assignee"</th><th>"Raised"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
        {pager(&base, page_no, pages)}
    };
    Ok(render("Alerts", Nav::Alerts, auth, body.into_any()))
}

/// `GET /alerts`.
pub async fn list(
    State(state): State<ConsoleState>,
    auth: Authed,
    Query(q): Query<AlertsQuery>,
) -> PageResult {
    off_runtime(move || list_page(&state, &auth, &q)).await
}

fn triage_panel(
    state: &ConsoleState,
    auth: &Authed,
    a: &AlertRecord,
    names: &HashMap<HostId, String>,
) -> Result<AnyView, UiError> {
    if !auth.can(Role::Analyst) {
        return Ok(view! {
            <section class="panel"><h2>"Triage"</h2><p class="muted">"Your role (viewer) can read alerts but not triage them."</p></section>
        }
        .into_any());
    }
    let action = format!("/alerts/{}/triage", a.id);
    let users = state
        .store
        .users()?
        .into_iter()
        .filter(|u| !u.disabled && u.role >= Role::Analyst)
        .map(|u| {
            let sel = a.assignee.as_deref() == Some(u.name.as_str());
            view! { <option value=u.name.clone() selected=sel>{u.name.clone()}</option> }
        })
        .collect_view();
    let suppress_users = a
        .users
        .iter()
        .map(|u| view! { <option value=u.clone()>{format!("user {u}")}</option> })
        .collect_view();
    // The host an alert is about: the last of its path (see
    // `vigil_proto::suppress`).
    let suppress_hosts = a
        .path
        .last()
        .map(|h| view! { <option value=h.to_string()>{format!("about host {}", name_of(names, *h))}</option> });
    // The side the movement came from: every host on the path but the last.
    let suppress_peers = a.path[..a.path.len().saturating_sub(1)]
        .iter()
        .map(|h| view! { <option value=h.to_string()>{format!("from {}", name_of(names, *h))}</option> })
        .collect_view();
    let suppress_ports = a
        .ports
        .iter()
        .map(|p| view! { <option value=p.to_string()>{format!("port {p}")}</option> })
        .collect_view();
    let suppress_processes = a
        .processes
        .iter()
        .map(|p| view! { <option value=p.clone()>{format!("process {p}")}</option> })
        .collect_view();
    Ok(view! {
        <section class="panel">
            <h2>"Triage"</h2>
            <div class="actions">
                <form method="post" action=action.clone() class="inline">
                    {csrf_field(auth)}
                    <input type="hidden" name="action" value="ack"/>
                    <button type="submit">"Acknowledge"</button>
                </form>
                <form method="post" action=action.clone() class="inline">
                    {csrf_field(auth)}
                    <input type="hidden" name="action" value="investigate"/>
                    <button type="submit">"Investigating"</button>
                </form>
            </div>
            <form method="post" action=action.clone() class="row">
                {csrf_field(auth)}
                <input type="hidden" name="action" value="assign"/>
                <label>"Assignee " <select name="assignee">{users}</select></label>
                <button type="submit">"Assign"</button>
            </form>
            <form method="post" action=action class="row">
                {csrf_field(auth)}
                <input type="hidden" name="action" value="close"/>
                <label>"Verdict "
                    <select name="verdict">
                        <option value="false_positive">"False positive"</option>
                        <option value="true_positive">"True positive"</option>
                    </select>
                </label>
                <input type="text" name="note" maxlength="500" placeholder="Reason (kept in the audit log)"/>
                <button type="submit" class="danger">"Close"</button>
            </form>
            <h3>"Suppress similar alerts"</h3>
            <form method="get" action=format!("/alerts/{}/suppress", a.id) class="row">
                <label><input type="checkbox" name="match_title" value="1" checked/>" same title"</label>
                <select name="host"><option value="">"any host"</option>{suppress_hosts}</select>
                <select name="user"><option value="">"any user"</option>{suppress_users}</select>
                <select name="peer"><option value="">"from any host"</option>{suppress_peers}</select>
                <select name="port"><option value="">"any port"</option>{suppress_ports}</select>
                <select name="process"><option value="">"any process"</option>{suppress_processes}</select>
                <input type="text" name="reason" maxlength="300" placeholder="Why (required)"/>
                <button type="submit">"Preview suppression"</button>
            </form>
        </section>
    }
    .into_any())
}

fn evidence(state: &ConsoleState, a: &AlertRecord, names: &HashMap<HostId, String>) -> AnyView {
    let rows = a
        .evidence
        .iter()
        .take(50)
        .map(|(h, seq)| match state.read.event(*h, *seq) {
            Ok(e) => view! {
                <tr>
                    <td class="mono nowrap">{format_ts(e.header.ts_ns)}</td>
                    <td><a href=format!("/hosts/{h}")>{name_of(names, *h)}</a></td>
                    <td class="num">{*seq}</td>
                    <td><span class="kind">{e.kind().name()}</span></td>
                    <td class="mono wrap">{describe(&e)}</td>
                </tr>
            }
            .into_any(),
            Err(_) => view! {
                <tr>
                    <td class="muted">"—"</td>
                    <td>{name_of(names, *h)}</td>
                    <td class="num">{*seq}</td>
                    <td colspan="2" class="muted">"Event no longer stored (retention)."</td>
                </tr>
            }
            .into_any(),
        })
        .collect_view();
    view! {
        <table class="dense">
            <thead><tr><th>"Time"</th><th>"Host"</th><th>"Seq"</th><th>"Kind"</th><th>"Detail"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}

fn path_section(
    state: &ConsoleState,
    a: &AlertRecord,
    names: &HashMap<HostId, String>,
) -> Result<Option<AnyView>, UiError> {
    if a.path.len() < 2 {
        return Ok(None);
    }
    let edges = state
        .read
        .edges(a.created_ns.saturating_sub(24 * 3600 * 1_000_000_000))?;
    let hops: Vec<String> = a
        .path
        .windows(2)
        .map(|w| {
            edges
                .iter()
                .filter(|e| e.src == w[0] && e.dst == w[1])
                .max_by_key(|e| e.first_seen_ns)
                .map(|e| format!("port {} {}", e.port, e.user.clone().unwrap_or_default()))
                .unwrap_or_default()
        })
        .collect();
    let nodes: Vec<Node> = a
        .path
        .iter()
        .map(|h| {
            let addr = state
                .read
                .host(*h)
                .ok()
                .and_then(|s| s.addrs.first().map(|a| a.to_string()))
                .unwrap_or_default();
            Node {
                label: name_of(names, *h),
                sub: addr,
                href: format!("/hosts/{h}"),
                hot: true,
            }
        })
        .collect();
    Ok(Some(
        view! {
            <section class="panel">
                <h2>"Lateral-movement path"</h2>
                {path_graph(&nodes, &hops)}
            </section>
        }
        .into_any(),
    ))
}

/// Query string of the alert page.
#[derive(Debug, Default, Deserialize)]
pub struct AlertQuery {
    /// Flash message code after an action.
    pub msg: Option<String>,
}

/// Render one alert or incident.
pub fn detail_page(state: &ConsoleState, auth: &Authed, id: u64, q: &AlertQuery) -> PageResult {
    let now = state.now();
    let mut a = with_triage(state, state.read.alert(id)?)?;
    vigil_proto::suppress::mark(&mut a, &state.store.suppressions()?, now);
    let names = hostnames(state)?;
    let kind = if a.path.len() > 1 {
        "Incident"
    } else {
        "Alert"
    };
    let max_score = a.deviations.iter().map(|d| d.score).fold(1.0, f64::max);
    let sentences = a
        .deviations
        .iter()
        .map(|d| view! { <li>{d.sentence.clone()}</li> })
        .collect_view();
    let dev_rows = a
        .deviations
        .iter()
        .map(|d| {
            view! {
                <tr>
                    <td class="mono">{d.feature.clone()}</td>
                    <td class="num">{format!("{:.2}", d.observed)}</td>
                    <td class="num">{format!("{:.2}", d.baseline)}</td>
                    <td class="num">{format!("{:.1}", d.score)}</td>
                    <td class="barcell">{usage_bar(d.score, max_score)}</td>
                </tr>
            }
        })
        .collect_view();
    let techniques = a
        .techniques
        .iter()
        .map(|t| view! { <li><span class="mono">{t.clone()}</span>" "{technique_name(t)}</li> })
        .collect_view();
    let related = if a.path.len() > 1 {
        let rel: Vec<AlertRecord> = state
            .read
            .alerts(&AlertFilter {
                since_ns: Some(a.created_ns.saturating_sub(24 * 3600 * 1_000_000_000)),
                limit: 500,
                ..Default::default()
            })?
            .into_iter()
            .filter(|r| r.incident_id == Some(a.id))
            .collect();
        (!rel.is_empty()).then(|| {
            let items = rel.iter().map(|r| view! { <li><a href=format!("/alerts/{}", r.id)>{r.title.clone()}</a></li> }).collect_view();
            view! { <section class="panel"><h2>"Alerts in this incident"</h2><ul>{items}</ul></section> }
        })
    } else {
        None
    };
    let parent = a.incident_id.map(|i| view! { <p>"Part of " <a href=format!("/alerts/{i}")>{format!("incident #{i}")}</a></p> });
    let suppressed = a.suppressed_by.map(|r| view! { <p class="muted suppressed-by">{format!("Hidden from alert lists and counts by suppression #{r}.")}</p> });
    let path_view = path_section(state, &a, &names)?;
    let remediation = if a.path.len() > 1 {
        Some(super::incident::panels(state, auth, &a)?)
    } else {
        None
    };
    let panel = triage_panel(state, auth, &a, &names)?;
    let export_target = if a.path.len() > 1 && a.incident_id.is_none_or(|i| i == a.id) {
        super::export::ExportTarget::Incident(a.id)
    } else {
        super::export::ExportTarget::Alert(a.id)
    };
    let export = super::export::export_form(state, auth, &export_target);
    // A Sigma hit is explained by its rule and the fields it matched; the
    // behavioural table (observed against a baseline) means nothing for it.
    let why = match sigma_rule(&a) {
        Some(rule) => sigma_panel(&rule, &a),
        None => view! {
            <section class="panel">
                <h2>"Why this fired"</h2>
                <p class="lead">{a.summary.clone()}</p>
                <ul class="because">{sentences}</ul>
                <table class="dense">
                    <thead><tr><th>"Feature"</th><th>"Observed"</th><th>"Baseline"</th><th>"Score"</th><th></th></tr></thead>
                    <tbody>{dev_rows}</tbody>
                </table>
                <h3>"ATT&CK techniques"</h3>
                <ul>{techniques}</ul>
            </section>
        }
        .into_any(),
    };
    let body = view! {
        {flash(q.msg.as_deref())}
        <div class="titlebar">
            {severity_badge(a.severity)}
            <h1>{a.title.clone()}</h1>
            <span class="muted">{format!("{kind} #{}", a.id)}</span>
            {suppressed}
        </div>
        <section class="panel">
            <dl class="facts cols">
                <dt>"State"</dt><dd>{triage_badge(&a.state)}</dd>
                <dt>"Assignee"</dt><dd>{a.assignee.clone().unwrap_or_else(|| "unassigned".into())}</dd>
                <dt>"Raised"</dt><dd>{format!("{} ({})", format_ts(a.created_ns), ago(now, a.created_ns))}</dd>
                <dt>"Score"</dt><dd>{format!("{:.2}", a.score)}</dd>
                <dt>"Users"</dt><dd>{a.users.join(", ")}</dd>
                <dt>"Model"</dt><dd class="mono">{a.model_version.clone().unwrap_or_else(|| "—".into())}</dd>
            </dl>
            {parent}
            {export}
        </section>
        {path_view}
        <div class="grid2">
            {why}
            <div>
                {panel}
            </div>
        </div>
        {remediation}
        {related}
        <section class="panel">
            <h2>"Evidence events"</h2>
            {evidence(state, &a, &names)}
        </section>
    };
    Ok(render(&a.title, Nav::Alerts, auth, body.into_any()))
}

/// What a Sigma alert says about the rule that raised it, read back from
/// the record the detector writes (`vigil_models` `detector/sigma.rs`): the
/// model version is `sigma:<rule id>`, the summary quotes the title before
/// the id, and each matched field is a `sigma:<field>` deviation whose
/// sentence is `<field> = <value>`.
#[derive(Debug, PartialEq)]
pub struct SigmaRule {
    /// The rule's `id`.
    pub id: String,
    /// The rule's `title`.
    pub title: String,
    /// The fields that matched, with the values the event had.
    pub matched: Vec<(String, String)>,
}

/// The Sigma rule behind `a`, if a Sigma rule raised it.
pub fn sigma_rule(a: &AlertRecord) -> Option<SigmaRule> {
    let id = a.model_version.as_deref()?.strip_prefix("sigma:")?;
    let before_id = format!("\" ({id}) matched on ");
    let title = a
        .summary
        .strip_prefix("Sigma rule \"")
        .and_then(|s| s.split_once(before_id.as_str()))
        .map(|(title, _)| title)
        .or_else(|| a.title.strip_prefix("Sigma: "))
        .unwrap_or(&a.title);
    let matched = a
        .deviations
        .iter()
        .filter_map(|d| {
            let field = d.feature.strip_prefix("sigma:")?;
            let value = d.sentence.strip_prefix(&format!("{field} = "));
            Some((field.to_string(), value.unwrap_or(&d.sentence).to_string()))
        })
        .collect();
    Some(SigmaRule {
        id: id.to_string(),
        title: title.to_string(),
        matched,
    })
}

fn sigma_panel(rule: &SigmaRule, a: &AlertRecord) -> AnyView {
    let tags = a
        .techniques
        .iter()
        .map(|t| view! { <li><span class="mono">{t.clone()}</span>" "{technique_name(t)}</li> })
        .collect_view();
    let rows = rule
        .matched
        .iter()
        .map(|(field, value)| view! { <tr><td class="mono">{field.clone()}</td><td class="mono wrap">{value.clone()}</td></tr> })
        .collect_view();
    view! {
        <section class="panel sigma-rule">
            <h2>{format!("Sigma: {} ({})", rule.title, rule.id)}</h2>
            <p class="lead">{a.summary.clone()}</p>
            <dl class="facts">
                <dt>"Level"</dt><dd>{a.severity.name()}</dd>
                <dt>"Rule id"</dt><dd class="mono">{rule.id.clone()}</dd>
            </dl>
            <h3>"Matched fields"</h3>
            <table class="dense">
                <thead><tr><th>"Field"</th><th>"Value"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
            <h3>"ATT&CK tags"</h3>
            <ul>{tags}</ul>
        </section>
    }
    .into_any()
}

/// `GET /alerts/{id}`.
pub async fn detail(
    State(state): State<ConsoleState>,
    auth: Authed,
    Path(id): Path<u64>,
    Query(q): Query<AlertQuery>,
) -> PageResult {
    off_runtime(move || detail_page(&state, &auth, id, &q)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::query::FeatureDeviation;

    fn sigma_alert(title: &str, summary: &str) -> AlertRecord {
        AlertRecord {
            id: 1,
            created_ns: 0,
            severity: Severity::Low,
            score: 0.0,
            title: title.into(),
            path: vec![HostId(1)],
            users: Vec::new(),
            techniques: vec!["T1033".into()],
            summary: summary.into(),
            deviations: vec![FeatureDeviation {
                feature: "sigma:CommandLine".into(),
                observed: 1.0,
                baseline: 0.0,
                score: 0.0,
                sentence: "CommandLine = sh -c whoami".into(),
            }],
            evidence: Vec::new(),
            state: TriageState::New,
            assignee: None,
            incident_id: None,
            model_version: Some("sigma:3b1f0a9e".into()),
            ports: Vec::new(),
            processes: Vec::new(),
            suppressed_by: None,
        }
    }

    /// The rule's title is read exactly, even when it holds quotes or " on ".
    #[test]
    fn a_sigma_alert_names_its_rule_and_matched_fields() {
        let a = sigma_alert(
            "Sigma: whoami \"on\" h1 on h1",
            "Sigma rule \"whoami \"on\" h1\" (3b1f0a9e) matched on h1: CommandLine = sh -c whoami",
        );
        assert_eq!(
            sigma_rule(&a),
            Some(SigmaRule {
                id: "3b1f0a9e".into(),
                title: "whoami \"on\" h1".into(),
                matched: vec![("CommandLine".into(), "sh -c whoami".into())],
            })
        );
        let behavioural = AlertRecord {
            model_version: Some("v3-abcd".into()),
            ..a
        };
        assert_eq!(sigma_rule(&behavioural), None);
    }
}
