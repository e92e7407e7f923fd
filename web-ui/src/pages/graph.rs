//! `/graph`: host-to-host communication graph, new edges highlighted.

use super::layout::{render, Nav};
use super::*;
use crate::svg::{fleet_graph, Link, Node};
use crate::time::{ago, format_ts};
use axum::extract::{Query, State};
use serde::Deserialize;
use std::collections::BTreeMap;
use vigil_proto::query::EdgeRecord;

const HOUR: u64 = 3600 * 1_000_000_000;
/// Most hosts drawn; the busiest and those with new edges win.
pub const MAX_NODES: usize = 60;

/// Query string of `/graph`.
#[derive(Debug, Default, Deserialize)]
pub struct GraphQuery {
    /// Edges last seen within this many hours (default 24).
    pub hours: Option<u64>,
    /// Only this destination port.
    pub port: Option<String>,
}

/// Render the fleet graph.
pub fn page(state: &ConsoleState, auth: &Authed, q: &GraphQuery) -> PageResult {
    let now = state.now();
    let hours = q.hours.unwrap_or(24).clamp(1, 24 * 90);
    let port: Option<u16> =
        match q.port.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(p) => Some(p.parse().map_err(|_| {
                UiError::BadRequest("Port must be a number from 0 to 65535.".into())
            })?),
        };
    let since = now.saturating_sub(hours * HOUR);
    let edges: Vec<EdgeRecord> = state
        .read
        .edges(since)?
        .into_iter()
        .filter(|e| port.is_none_or(|p| e.port == p))
        .collect();
    let is_new = |e: &EdgeRecord| e.first_seen_ns >= since;
    let names = hostnames(state)?;
    let mut weight: BTreeMap<HostId, (u64, u64)> = BTreeMap::new();
    for e in &edges {
        for h in [e.src, e.dst] {
            let w = weight.entry(h).or_default();
            w.0 += u64::from(is_new(e));
            w.1 += 1;
        }
    }
    let mut ranked: Vec<(HostId, (u64, u64))> = weight.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(MAX_NODES);
    let mut chosen: Vec<HostId> = ranked.iter().map(|(h, _)| *h).collect();
    chosen.sort_by_key(|h| name_of(&names, *h));
    let index: HashMap<HostId, usize> = chosen.iter().enumerate().map(|(i, h)| (*h, i)).collect();
    let nodes: Vec<Node> = chosen
        .iter()
        .map(|h| Node {
            label: name_of(&names, *h),
            sub: String::new(),
            href: format!("/hosts/{h}"),
            hot: edges
                .iter()
                .any(|e| is_new(e) && (e.src == *h || e.dst == *h)),
        })
        .collect();
    let links: Vec<Link> = edges
        .iter()
        .filter_map(|e| {
            Some(Link {
                from: *index.get(&e.src)?,
                to: *index.get(&e.dst)?,
                label: format!(":{}", e.port),
                new: is_new(e),
            })
        })
        .collect();
    let mut new_edges: Vec<&EdgeRecord> = edges.iter().filter(|e| is_new(e)).collect();
    new_edges.sort_by_key(|e| std::cmp::Reverse(e.first_seen_ns));
    let new_rows = new_edges
        .iter()
        .take(100)
        .map(|e| {
            view! {
                <tr>
                    <td><a href=format!("/hosts/{}", e.src)>{name_of(&names, e.src)}</a></td>
                    <td><a href=format!("/hosts/{}", e.dst)>{name_of(&names, e.dst)}</a></td>
                    <td class="num">{e.port}</td>
                    <td>{e.user.clone().unwrap_or_else(|| "—".into())}</td>
                    <td class="mono nowrap">{format_ts(e.first_seen_ns)}</td>
                    <td class="muted">{ago(now, e.last_seen_ns)}</td>
                    <td class="num">{count(e.count)}</td>
                </tr>
            }
        })
        .collect_view();
    let hour_opts = [1u64, 6, 24, 72, 168, 720]
        .into_iter()
        .map(|h| view! { <option value=h.to_string() selected={h == hours}>{format!("last {h} h")}</option> })
        .collect_view();
    let body = view! {
        <h1>"Fleet graph"</h1>
        <form method="get" action="/graph" class="toolbar">
            <label>"Window " <select name="hours">{hour_opts}</select></label>
            <label>"Port " <input type="text" name="port" inputmode="numeric" size="6" value=q.port.clone().unwrap_or_default()/></label>
            <button type="submit">"Apply"</button>
            <span class="muted">{format!("{} edges · {} hosts drawn (max {MAX_NODES}) · {} new in window", edges.len(), nodes.len(), new_edges.len())}</span>
        </form>
        <section class="panel">
            <div class="legend"><span class="swatch"></span>"seen before the window" <span class="swatch new"></span>"first seen in the window"</div>
            {fleet_graph(&nodes, &links)}
        </section>
        <section class="panel">
            <h2>"New edges in this window"</h2>
            <table class="dense">
                <thead><tr><th>"From"</th><th>"To"</th><th>"Port"</th><th>"User"</th><th>"First seen"</th><th>"Last seen"</th><th>"Count"</th></tr></thead>
                <tbody>{new_rows}</tbody>
            </table>
        </section>
    };
    Ok(render("Fleet graph", Nav::Graph, auth, body.into_any()))
}

/// `GET /graph`.
pub async fn handler(
    State(state): State<ConsoleState>,
    auth: Authed,
    Query(q): Query<GraphQuery>,
) -> PageResult {
    off_runtime(move || page(&state, &auth, &q)).await
}
