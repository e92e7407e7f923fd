//! `/hosts`: searchable, sortable, paginated host list.

use super::layout::{render, Nav};
use super::*;
use crate::format::compact_span;
use crate::time::ago;
use crate::urlenc;
use axum::extract::{Query, State};
use serde::Deserialize;
use vigil_proto::query::HostSummary;

/// Rows per page.
pub const PAGE_SIZE: usize = 100;

/// Query string of `/hosts`.
#[derive(Debug, Default, Deserialize)]
pub struct HostsQuery {
    /// Substring of hostname, address, OS or id.
    #[serde(default)]
    pub q: String,
    /// Column: name, state, seen, version, cpu, rss, events, lost, alerts.
    #[serde(default)]
    pub sort: String,
    /// `desc` for descending.
    #[serde(default)]
    pub dir: String,
    /// Only hosts in this sensor state.
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub page: usize,
}

fn matches(h: &HostSummary, q: &str) -> bool {
    q.is_empty()
        || h.hostname.to_lowercase().contains(q)
        || h.os.to_lowercase().contains(q)
        || h.id.to_string().contains(q)
        || h.addrs.iter().any(|a| a.to_string().contains(q))
}

fn sort(hosts: &mut [HostSummary], key: &str, desc: bool) {
    match key {
        "state" => hosts.sort_by_key(|h| h.state as u8),
        "seen" => hosts.sort_by_key(|h| h.last_seen_ns),
        "version" => hosts.sort_by(|a, b| a.sensor_version.cmp(&b.sensor_version)),
        "cpu" => hosts.sort_by(|a, b| a.cpu_pct.total_cmp(&b.cpu_pct)),
        "rss" => hosts.sort_by_key(|h| h.rss_bytes),
        "events" => hosts.sort_by_key(|h| h.events_total),
        "lost" => hosts.sort_by_key(|h| h.lost_total),
        "alerts" => hosts.sort_by_key(|h| h.open_alerts),
        _ => hosts.sort_by(|a, b| a.hostname.cmp(&b.hostname)),
    }
    if desc {
        hosts.reverse();
    }
}

/// Render the host list.
pub fn page(state: &ConsoleState, auth: &Authed, q: &HostsQuery) -> PageResult {
    let now = state.now();
    let needle = q.q.trim().to_lowercase();
    let mut hosts: Vec<HostSummary> = state
        .read
        .hosts()?
        .into_iter()
        .filter(|h| q.state.is_empty() || sensor_state_name(h.state) == q.state)
        .filter(|h| matches(h, &needle))
        .collect();
    let desc = q.dir == "desc";
    sort(&mut hosts, &q.sort, desc);
    let total = hosts.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page_no = q.page.min(pages - 1);
    let base_pairs = |sort: &str, dir: &str| {
        urlenc::query(&[
            ("q", q.q.clone()),
            ("state", q.state.clone()),
            ("sort", sort.into()),
            ("dir", dir.into()),
        ])
    };
    let header = |key: &'static str, label: &'static str| {
        let dir = if q.sort == key && !desc { "desc" } else { "" };
        let mark = if q.sort == key {
            if desc {
                " ▼"
            } else {
                " ▲"
            }
        } else {
            ""
        };
        view! { <th><a href=format!("/hosts?{}", base_pairs(key, dir))>{label}{mark}</a></th> }
    };
    let rows = hosts
        .iter()
        .skip(page_no * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|h| {
            let addrs = h
                .addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let alerts_class = if h.open_alerts > 0 { "num hot" } else { "num" };
            view! {
                <tr>
                    <td><a href=format!("/hosts/{}", h.id)>{h.hostname.clone()}</a></td>
                    <td>{sensor_badge(h.state)}</td>
                    <td class="num">{ago(now, h.last_seen_ns)}</td>
                    <td class="mono">{h.sensor_version.clone()}</td>
                    <td class="num">{format!("{:.1} %", h.cpu_pct)}</td>
                    <td class="num">{bytes(h.rss_bytes)}</td>
                    <td class="num">{compact_span(h.events_total, "")}</td>
                    <td class="num">{compact_span(h.lost_total, "")}</td>
                    <td>{if h.isolated { "isolated" } else { "—" }}</td>
                    <td class=alerts_class>{h.open_alerts}</td>
                    <td>{h.os.clone()}</td>
                    <td class="mono">{addrs}</td>
                </tr>
            }
        })
        .collect_view();
    let states = ["", "online", "stale", "offline", "revoked"]
        .into_iter()
        .map(|s| {
            let label = if s.is_empty() { "any state" } else { s };
            view! { <option value=s selected={q.state == s}>{label}</option> }
        })
        .collect_view();
    let base = format!("/hosts?{}", base_pairs(&q.sort, &q.dir));
    let body = view! {
        <h1>"Hosts"</h1>
        <form method="get" action="/hosts" class="toolbar">
            <input type="search" name="q" value=q.q.clone() placeholder="Search name, address, OS, id"/>
            <select name="state">{states}</select>
            <input type="hidden" name="sort" value=q.sort.clone()/>
            <input type="hidden" name="dir" value=q.dir.clone()/>
            <button type="submit">"Search"</button>
            <span class="muted">{format!("{total} hosts")}</span>
        </form>
        <section class="panel flush">
            <table class="dense">
                <thead>
                    <tr>
                        {header("name", "Host")}
                        {header("state", "Sensor")}
                        {header("seen", "Last seen")}
                        {header("version", "Version")}
                        {header("cpu", "CPU")}
                        {header("rss", "RSS")}
                        {header("events", "Events")}
                        {header("lost", "Lost")}
                        <th>"Isolation"</th>
                        {header("alerts", "Open alerts")}
                        <th>"OS"</th>
                        <th>"Addresses"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
        {pager(&base, page_no, pages)}
    };
    Ok(render("Hosts", Nav::Hosts, auth, body.into_any()))
}

/// `GET /hosts`.
pub async fn list(
    State(state): State<ConsoleState>,
    auth: Authed,
    Query(q): Query<HostsQuery>,
) -> PageResult {
    off_runtime(move || page(&state, &auth, &q)).await
}
