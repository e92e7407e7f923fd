//! `/graph`: the fleet graph at any fleet size. Edges behind alerts and
//! edges first seen in the window are drawn with their neighbourhood;
//! routine traffic is folded into groups ([`crate::fleet_graph`] says how).
//! Filters are a GET form; every edge links to the hunt for its events and
//! every host to its page.

use super::layout::{render, Nav};
use super::*;
use crate::fleet_graph::{self, alerts_behind, Input, Limits};
use crate::format::compact_span;
use crate::time::{ago, format_input, format_ts};
use crate::urlenc;
use axum::extract::{Query, State};
use serde::Deserialize;
use std::collections::HashSet;
use vigil_proto::query::{EdgeRecord, HostSummary};

const HOUR: u64 = 3600 * 1_000_000_000;
/// Most rows in each edge table under the graph.
pub const TABLE_ROWS: usize = 100;

/// Query string of `/graph`.
#[derive(Debug, Default, Deserialize)]
pub struct GraphQuery {
    /// Edges last seen within this many hours (default 24).
    pub hours: Option<u64>,
    /// Only this destination port.
    pub port: Option<String>,
    /// Only edges touching hosts whose name contains this (or this host id).
    #[serde(default)]
    pub host: String,
    /// Only edges of this user.
    #[serde(default)]
    pub user: String,
    /// Only edges behind alerts naming this ATT&CK technique (prefix:
    /// `T1021` matches `T1021.004`).
    #[serde(default)]
    pub technique: String,
}

fn parse_port(q: &GraphQuery) -> Result<Option<u16>, UiError> {
    match q.port.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(p) => p
            .parse()
            .map(Some)
            .map_err(|_| UiError::BadRequest("Port must be a number from 0 to 65535.".into())),
    }
}

/// Hosts the host filter names: id, or name substring (case-insensitive).
fn pinned_hosts(hosts: &[HostSummary], needle: &str) -> HashSet<HostId> {
    let needle = needle.trim().to_lowercase();
    if needle.is_empty() {
        return HashSet::new();
    }
    hosts
        .iter()
        .filter(|h| h.id.to_string() == needle || h.hostname.to_lowercase().contains(&needle))
        .map(|h| h.id)
        .collect()
}

/// The hunt for the connections of one stored edge.
fn edge_hunt(e: &EdgeRecord, hosts: &HashMap<HostId, &HostSummary>, since: u64) -> String {
    let mut pairs = vec![(
        "host",
        hosts
            .get(&e.src)
            .map_or_else(|| e.src.to_string(), |h| h.hostname.clone()),
    )];
    if let Some(a) = hosts.get(&e.dst).and_then(|h| h.addrs.first()) {
        pairs.push(("peer", a.to_string()));
    }
    pairs.push(("port", e.port.to_string()));
    pairs.push(("kind", "net_connect".into()));
    pairs.push(("since", format_input(since)));
    format!("/hunt?{}", urlenc::query(&pairs))
}

/// Render the fleet graph.
pub fn page(state: &ConsoleState, auth: &Authed, q: &GraphQuery) -> PageResult {
    let now = state.now();
    let hours = q.hours.unwrap_or(24).clamp(1, 24 * 90);
    let port = parse_port(q)?;
    let since = now.saturating_sub(hours * HOUR);
    let hosts = state.read.hosts()?;
    let technique = q.technique.trim().to_uppercase();
    let alerts: Vec<AlertRecord> = seen_alerts(
        state,
        &AlertFilter {
            since_ns: Some(since),
            limit: 5000,
            ..Default::default()
        },
        false,
    )?
    .into_iter()
    .filter(|a| {
        technique.is_empty()
            || a.techniques
                .iter()
                .any(|t| t.to_uppercase().starts_with(&technique))
    })
    .collect();
    let pinned = pinned_hosts(&hosts, &q.host);
    let user = q.user.trim();
    let hops = fleet_graph::alert_hops(&alerts);
    let edges: Vec<EdgeRecord> = state
        .read
        .edges(since)?
        .into_iter()
        .filter(|e| port.is_none_or(|p| e.port == p))
        .filter(|e| user.is_empty() || e.user.as_deref() == Some(user))
        .filter(|e| q.host.trim().is_empty() || pinned.contains(&e.src) || pinned.contains(&e.dst))
        .filter(|e| technique.is_empty() || !alerts_behind(&hops, e).is_empty())
        .collect();
    let graph = fleet_graph::build(
        &Input {
            hosts: &hosts,
            edges: &edges,
            alerts: &alerts,
            since_ns: since,
            pinned: &pinned,
        },
        &Limits::default(),
    );
    let info: HashMap<HostId, &HostSummary> = hosts.iter().map(|h| (h.id, h)).collect();
    let names: HashMap<HostId, String> = hosts.iter().map(|h| (h.id, h.hostname.clone())).collect();
    let mut alert_edges: Vec<(&EdgeRecord, Vec<&AlertRecord>)> = edges
        .iter()
        .map(|e| (e, alerts_behind(&hops, e)))
        .filter(|(_, a)| !a.is_empty())
        .collect();
    alert_edges.sort_by_key(|(e, _)| std::cmp::Reverse(e.first_seen_ns));
    let mut new_edges: Vec<&EdgeRecord> =
        edges.iter().filter(|e| e.first_seen_ns >= since).collect();
    new_edges.sort_by_key(|e| std::cmp::Reverse(e.first_seen_ns));
    let summary = format!(
        "{} edges · {} hosts ({} drawn, {} in groups) · {} behind alerts · {} new in window{}{}",
        count(graph.edges_in_window as u64),
        count(graph.hosts_in_window as u64),
        count(graph.hosts_drawn as u64),
        count(graph.hosts_grouped as u64),
        count(alert_edges.len() as u64),
        count(new_edges.len() as u64),
        match graph
            .nodes
            .iter()
            .filter(|n| matches!(n.kind, fleet_graph::NodeKind::Fan { .. }))
            .count()
        {
            0 => String::new(),
            n => format!(" · {n} fan-out (scan, backup, monitoring) folded into one edge each"),
        },
        if graph.edges_not_drawn > 0 {
            format!(
                " · {} minor group edges not drawn",
                count(graph.edges_not_drawn as u64)
            )
        } else {
            String::new()
        }
    );
    let alert_rows = alert_rows(&alert_edges, &names, &info, since);
    let new_rows = new_rows(&new_edges, &names, &info, since, now);
    let body = view! {
        <h1>"Fleet graph"</h1>
        {filter_form(q, hours)}
        <p class="muted">{summary}</p>
        <section class="panel">
            <div class="legend">
                <span class="swatch alert"></span>"behind an alert"
                <span class="swatch new"></span>"first seen in the window"
                <span class="swatch"></span>"routine"
                <span class="dot group"></span>"group of hosts (role from the name, else subnet), routine traffic folded in"
                <span class="dot group fan"></span>"N hosts: one host's routine fan-out (a scanner's sweep) as one edge"
            </div>
            {fleet_graph::render(&graph)}
        </section>
        <section class="panel">
            <h2>"Edges behind alerts"</h2>
            <table class="dense">
                <thead><tr><th>"From"</th><th>"To"</th><th>"Port"</th><th>"User"</th><th>"Alerts"</th><th>"First seen"</th><th>"Count"</th><th></th></tr></thead>
                <tbody>{alert_rows}</tbody>
            </table>
        </section>
        <section class="panel">
            <h2>"New edges in this window"</h2>
            <table class="dense">
                <thead><tr><th>"From"</th><th>"To"</th><th>"Port"</th><th>"User"</th><th>"First seen"</th><th>"Last seen"</th><th>"Count"</th><th></th></tr></thead>
                <tbody>{new_rows}</tbody>
            </table>
        </section>
    };
    Ok(render("Fleet graph", Nav::Graph, auth, body.into_any()))
}

/// The window choices offered in the form.
const WINDOWS_H: [u64; 6] = [1, 6, 24, 72, 168, 720];

/// The window choices, with the current window among them: a link or a
/// typed URL may ask for any number of hours, and a select without it
/// would show (and on "Apply" submit) its first choice instead.
fn window_choices(hours: u64) -> Vec<u64> {
    let mut choices = WINDOWS_H.to_vec();
    if !choices.contains(&hours) {
        choices.push(hours);
        choices.sort_unstable();
    }
    choices
}

fn filter_form(q: &GraphQuery, hours: u64) -> impl IntoView {
    let hour_opts = window_choices(hours)
        .into_iter()
        .map(|h| view! { <option value=h.to_string() selected={h == hours}>{format!("last {h} h")}</option> })
        .collect_view();
    view! {
        <form method="get" action="/graph" class="toolbar">
            <label>"Window " <select name="hours">{hour_opts}</select></label>
            <label>"Host " <input type="text" name="host" size="14" value=q.host.clone() placeholder="name or id"/></label>
            <label>"User " <input type="text" name="user" size="10" value=q.user.clone()/></label>
            <label>"Port " <input type="text" name="port" inputmode="numeric" size="6" value=q.port.clone().unwrap_or_default()/></label>
            <label>"Technique " <input type="text" name="technique" size="10" value=q.technique.clone() placeholder="T1021"/></label>
            <button type="submit">"Apply"</button>
            <a href="/graph">"Reset"</a>
        </form>
    }
}

fn host_link(names: &HashMap<HostId, String>, h: HostId) -> impl IntoView {
    view! { <a href=format!("/hosts/{h}")>{name_of(names, h)}</a> }
}

fn alert_rows(
    rows: &[(&EdgeRecord, Vec<&AlertRecord>)],
    names: &HashMap<HostId, String>,
    info: &HashMap<HostId, &HostSummary>,
    since: u64,
) -> AnyView {
    rows.iter()
        .take(TABLE_ROWS)
        .map(|(e, alerts)| {
            let links = alerts
                .iter()
                .map(|a| view! { <a href=format!("/alerts/{}", a.id)>{format!("#{} ", a.id)}</a> })
                .collect_view();
            view! {
                <tr>
                    <td>{host_link(names, e.src)}</td>
                    <td>{host_link(names, e.dst)}</td>
                    <td class="num">{e.port}</td>
                    <td>{e.user.clone().unwrap_or_else(|| "—".into())}</td>
                    <td>{links}</td>
                    <td class="mono nowrap">{format_ts(e.first_seen_ns)}</td>
                    <td class="num">{compact_span(e.count, "")}</td>
                    <td><a href=edge_hunt(e, info, since)>"events →"</a></td>
                </tr>
            }
        })
        .collect_view()
        .into_any()
}

fn new_rows(
    rows: &[&EdgeRecord],
    names: &HashMap<HostId, String>,
    info: &HashMap<HostId, &HostSummary>,
    since: u64,
    now: u64,
) -> AnyView {
    rows.iter()
        .take(TABLE_ROWS)
        .map(|e| {
            view! {
                <tr>
                    <td>{host_link(names, e.src)}</td>
                    <td>{host_link(names, e.dst)}</td>
                    <td class="num">{e.port}</td>
                    <td>{e.user.clone().unwrap_or_else(|| "—".into())}</td>
                    <td class="mono nowrap">{format_ts(e.first_seen_ns)}</td>
                    <td class="muted">{ago(now, e.last_seen_ns)}</td>
                    <td class="num">{compact_span(e.count, "")}</td>
                    <td><a href=edge_hunt(e, info, since)>"events →"</a></td>
                </tr>
            }
        })
        .collect_view()
        .into_any()
}

/// `GET /graph`.
pub async fn handler(
    State(state): State<ConsoleState>,
    auth: Authed,
    Query(q): Query<GraphQuery>,
) -> PageResult {
    off_runtime(move || page(&state, &auth, &q)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_select_shows_the_window_asked_for() {
        assert_eq!(window_choices(24), WINDOWS_H.to_vec());
        assert_eq!(window_choices(49), vec![1, 6, 24, 49, 72, 168, 720]);
        let html = filter_form(&GraphQuery::default(), 49).to_html();
        let selected: Vec<&str> = html
            .split("<option")
            .skip(1)
            .filter(|o| o.contains("selected"))
            .collect();
        assert_eq!(selected.len(), 1, "{html}");
        assert!(selected[0].contains("value=\"49\""), "{html}");
    }
}
