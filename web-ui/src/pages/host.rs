//! `/hosts/{id}`: one host's timeline, process tree, connections, logins,
//! file changes and baseline charts.

use super::layout::{render, Nav};
use super::*;
use crate::svg::band_chart;
use crate::time::{ago, format_ts};
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use vigil_proto::event::{EventKind, ProcessStart};
use vigil_proto::query::{AlertFilter, AlertRecord, EventFilter, HostModelSummary, HostSummary};

const HOUR: u64 = 3600 * 1_000_000_000;
/// Most events read for the detail sections.
pub const EVENT_LIMIT: usize = 5000;

/// Query string of the host page.
#[derive(Debug, Default, Deserialize)]
pub struct HostQuery {
    /// Look-back window in hours (default 24).
    pub hours: Option<u64>,
}

/// Per-hour outbound connection counts and distinct peers over `windows` hours.
fn hourly(events: &[Event], now: u64, windows: usize) -> (Vec<f64>, Vec<f64>) {
    let start = now - windows as u64 * HOUR;
    let mut conns = vec![0.0; windows];
    let mut peers: Vec<HashSet<std::net::IpAddr>> = vec![HashSet::new(); windows];
    for e in events {
        if let Payload::NetConnect(f) = &e.payload {
            if e.header.ts_ns >= start {
                let i = (((e.header.ts_ns - start) / HOUR) as usize).min(windows - 1);
                conns[i] += f64::from(f.repeat.max(1));
                peers[i].insert(f.remote.ip());
            }
        }
    }
    (conns, peers.iter().map(|p| p.len() as f64).collect())
}

/// Median ± 3 × MAD of the windows, never narrower than ±0.5.
pub fn robust_band(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 1.0);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let m = median(&mut values.to_vec());
    let mad = median(&mut values.iter().map(|v| (v - m).abs()).collect());
    let half = (3.0 * 1.4826 * mad).max(0.5);
    ((m - half).max(0.0), m + half)
}

/// One process in the tree: its last image, and the images it exec'd
/// through before (`env` → `bash` keeps one pid).
struct ProcNode<'a> {
    last: &'a ProcessStart,
    earlier: Vec<String>,
}

/// Processes as a tree by parent pid. Successive execs of one process
/// (same pid and parent) are one node, so a subtree is drawn once.
fn process_tree(procs: &[&ProcessStart]) -> AnyView {
    let mut order: Vec<(u32, u32)> = Vec::new();
    let mut nodes: HashMap<(u32, u32), ProcNode> = HashMap::new();
    for p in procs {
        let key = (p.pid, p.ppid);
        match nodes.get_mut(&key) {
            Some(n) => {
                n.earlier
                    .push(n.last.exe.clone().unwrap_or_else(|| "?".into()));
                n.last = p;
            }
            None => {
                order.push(key);
                nodes.insert(
                    key,
                    ProcNode {
                        last: p,
                        earlier: Vec::new(),
                    },
                );
            }
        }
    }
    let pids: HashSet<u32> = order.iter().map(|(pid, _)| *pid).collect();
    let mut children: BTreeMap<u32, Vec<(u32, u32)>> = BTreeMap::new();
    let mut roots = Vec::new();
    for key in &order {
        let (pid, ppid) = *key;
        if ppid != pid && pids.contains(&ppid) {
            children.entry(ppid).or_default().push(*key);
        } else {
            roots.push(*key);
        }
    }
    fn node(
        key: (u32, u32),
        nodes: &HashMap<(u32, u32), ProcNode>,
        children: &BTreeMap<u32, Vec<(u32, u32)>>,
        depth: usize,
    ) -> AnyView {
        let n = &nodes[&key];
        let p = n.last;
        let kids = if depth < 12 {
            children
                .get(&p.pid)
                .map(|c| {
                    c.iter()
                        .filter(|k| **k != key)
                        .map(|k| node(*k, nodes, children, depth + 1))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let sub = (!kids.is_empty()).then(|| view! { <ul>{kids}</ul> });
        let parent = p
            .parent_exe
            .clone()
            .map(|pe| view! { <span class="muted">{format!(" ← {pe}")}</span> });
        let chain = (!n.earlier.is_empty()).then(|| {
            view! { <span class="muted">{format!(" (exec'd from {})", n.earlier.join(" → "))}</span> }
        });
        view! {
            <li>
                <span class="mono">{p.exe.clone().unwrap_or_else(|| "?".into())}</span>
                <span class="argv">{p.argv.join(" ")}</span>
                <span class="muted">{format!(" pid {} · {}", p.pid, p.user.clone().unwrap_or_else(|| "?".into()))}</span>
                {chain}
                {parent}
                {sub}
            </li>
        }
        .into_any()
    }
    let items = roots
        .iter()
        .take(300)
        .map(|r| node(*r, &nodes, &children, 0))
        .collect::<Vec<_>>();
    view! { <ul class="tree">{items}</ul> }.into_any()
}

fn event_rows(events: &[&Event], now: u64) -> AnyView {
    events
        .iter()
        .map(|e| {
            view! {
                <tr>
                    <td class="mono nowrap">{format_ts(e.header.ts_ns)}</td>
                    <td class="muted nowrap">{ago(now, e.header.ts_ns)}</td>
                    <td><span class="kind">{e.kind().name()}</span></td>
                    <td class="mono wrap">{describe(e)}</td>
                </tr>
            }
        })
        .collect_view()
        .into_any()
}

fn table(head: &'static [&'static str], rows: AnyView, empty: bool) -> AnyView {
    if empty {
        return view! { <p class="muted">"Nothing in this window."</p> }.into_any();
    }
    let ths = head.iter().map(|h| view! { <th>{*h}</th> }).collect_view();
    view! { <table class="dense"><thead><tr>{ths}</tr></thead><tbody>{rows}</tbody></table> }
        .into_any()
}

/// Connections per hour, distinct peers per hour, and the hour labels.
type BaselineSeries = (Vec<f64>, Vec<f64>, Vec<String>);

/// The last 48 h of outbound connections and distinct peers per hour, with
/// the hour labels the charts put under them.
fn baseline_series(state: &ConsoleState, id: HostId, now: u64) -> Result<BaselineSeries, UiError> {
    let flows = state
        .read
        .events(&EventFilter {
            host: Some(id),
            since_ns: Some(now.saturating_sub(48 * HOUR)),
            kinds: vec![EventKind::NetConnect],
            limit: EVENT_LIMIT,
            newest_first: true,
            ..Default::default()
        })?
        .events;
    let (conns, peers) = hourly(&flows, now, 48);
    let labels: Vec<String> = (0..48)
        .map(|i| format_ts(now - (48 - i) * HOUR)[11..16].to_string())
        .collect();
    Ok((conns, peers, labels))
}

/// Outbound and inbound connections of the window, one row per
/// direction, peer · program and port, with a count and the last time
/// seen; `true` with them when there are none.
fn connections(recent: &[Event], now: u64) -> (AnyView, bool) {
    let mut conn_agg: BTreeMap<(bool, String, String), (u64, u64)> = BTreeMap::new();
    for e in recent {
        if let Payload::NetConnect(f) | Payload::NetAccept(f) = &e.payload {
            let inbound = matches!(e.payload, Payload::NetAccept(_));
            let key = if inbound {
                (true, f.remote.ip().to_string(), f.local.port().to_string())
            } else {
                (
                    false,
                    f.remote.ip().to_string(),
                    f.remote.port().to_string(),
                )
            };
            let v = conn_agg
                .entry((
                    key.0,
                    format!("{} · {}", key.1, f.exe.as_deref().unwrap_or("?")),
                    key.2,
                ))
                .or_default();
            v.0 += u64::from(f.repeat.max(1));
            v.1 = v.1.max(e.header.ts_ns);
        }
    }
    let conn_rows = conn_agg
        .iter()
        .map(|((inbound, peer, port), (n, last))| {
            view! {
                <tr>
                    <td>{if *inbound { "inbound" } else { "outbound" }}</td>
                    <td class="mono">{peer.clone()}</td>
                    <td class="num">{port.clone()}</td>
                    <td class="num">{count(*n)}</td>
                    <td class="muted">{ago(now, *last)}</td>
                </tr>
            }
        })
        .collect_view()
        .into_any();
    (conn_rows, conn_agg.is_empty())
}

/// The host's alerts with the analyst's triage, one row each.
fn alert_rows(state: &ConsoleState, alerts: &[AlertRecord], now: u64) -> Result<AnyView, UiError> {
    Ok(alerts
        .iter()
        .map(|a| with_triage(state, a.clone()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|a| {
            view! {
                <tr>
                    <td>{severity_badge(a.severity)}</td>
                    <td><a href=format!("/alerts/{}", a.id)>{a.title.clone()}</a></td>
                    <td>{triage_badge(&a.state)}</td>
                    <td class="muted">{ago(now, a.created_ns)}</td>
                </tr>
            }
        })
        .collect_view()
        .into_any())
}

/// Chips choosing the look-back window, the current one highlighted.
fn window_links(id: HostId, hours: u64) -> AnyView {
    [1u64, 6, 24, 48, 168]
        .into_iter()
        .map(|w| {
            let class = if w == hours { "chip active" } else { "chip" };
            view! { <a class=class href=format!("/hosts/{id}?hours={w}")>{format!("{w} h")}</a> }
        })
        .collect_view()
        .into_any()
}

/// The host's identity, sensor and counts.
/// What this host's sensor sent that the appliance refused, quarantined or
/// throttled, and identity claims another host owns (nothing when none).
fn warnings_panel(h: &HostSummary) -> Option<AnyView> {
    (!h.warnings.is_empty()).then(|| {
        let items = h.warnings.iter().map(|w| view! { <li>{w.clone()}</li> }).collect_view();
        view! {
            <section class="panel sensor-warnings">
                <h2>"Sensor broke ingest rules"</h2>
                <p class="muted">"Only this host's own data was affected; the rest of the fleet is unaffected."</p>
                <ul>{items}</ul>
            </section>
        }
        .into_any()
    })
}

fn facts_panel(h: &HostSummary, now: u64) -> AnyView {
    let addrs = h
        .addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    view! {
        <section class="panel">
            <dl class="facts cols">
                <dt>"Host id"</dt><dd class="mono">{h.id.to_string()}</dd>
                <dt>"OS"</dt><dd>{h.os.clone()}</dd>
                <dt>"Addresses"</dt><dd class="mono">{addrs}</dd>
                <dt>"Sensor"</dt><dd>{format!("{} · CPU {:.1} % · RSS {}", h.sensor_version, h.cpu_pct, bytes(h.rss_bytes))}</dd>
                <dt>"Last seen"</dt><dd>{format!("{} ({})", ago(now, h.last_seen_ns), format_ts(h.last_seen_ns))}</dd>
                <dt>"Enrolled"</dt><dd>{format_ts(h.enrolled_ns)}</dd>
                <dt>"Events"</dt><dd>{format!("{} stored · {} lost", count(h.events_total), count(h.lost_total))}</dd>
                <dt>"Open alerts"</dt><dd>{h.open_alerts}</dd>
            </dl>
        </section>
    }
    .into_any()
}

/// Render one host.
pub fn page(state: &ConsoleState, auth: &Authed, id: HostId, q: &HostQuery) -> PageResult {
    let now = state.now();
    let h = state.read.host(id)?;
    let hours = q.hours.unwrap_or(24).clamp(1, 24 * 30);
    let since = now.saturating_sub(hours * HOUR);
    // The newest events of the window (a busy host has more than a page),
    // put back in time order for the process tree and the lists below.
    let mut recent = state
        .read
        .events(&EventFilter {
            host: Some(id),
            since_ns: Some(since),
            limit: EVENT_LIMIT,
            newest_first: true,
            ..Default::default()
        })?
        .events;
    recent.reverse();
    let (conns, peers, labels) = baseline_series(state, id, now)?;
    let alerts = seen_alerts(
        state,
        &AlertFilter {
            host: Some(id),
            limit: 50,
            ..Default::default()
        },
        false,
    )?;

    let mut timeline: Vec<&Event> = recent.iter().collect();
    timeline.reverse();
    let procs: Vec<&ProcessStart> = recent
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::ProcessStart(p) => Some(p),
            _ => None,
        })
        .collect();
    let (conn_rows, no_conns) = connections(&recent, now);
    let logins: Vec<&Event> = timeline
        .iter()
        .copied()
        .filter(|e| {
            matches!(
                e.kind(),
                EventKind::Login | EventKind::Logout | EventKind::AuthFailure
            )
        })
        .collect();
    let files: Vec<&Event> = timeline
        .iter()
        .copied()
        .filter(|e| e.kind() == EventKind::FileChange)
        .collect();
    let alert_rows = alert_rows(state, &alerts, now)?;
    let window_links = window_links(id, hours);
    let truncated = (recent.len() >= EVENT_LIMIT).then(|| {
        view! { <p class="muted">{format!("Showing the newest {EVENT_LIMIT} events of the window; narrow it or use Hunt.")}</p> }
    });
    let model_view = baseline_model(state.read.host_model(h.id)?, now);
    let banner = super::respond::isolation_banner(state, h.id);
    let body = view! {
        {banner}
        <div class="titlebar">
            <h1>{h.hostname.clone()}</h1>
            {sensor_badge(h.state)}
            {h.isolated.then(|| view! { <span class="badge sev-high">"isolated"</span> })}
            <span class="spacer"></span>
            <a class="button" href=format!("/hunt?host={}", h.id)>"Hunt on this host"</a>
        </div>
        {warnings_panel(&h)}
        {facts_panel(&h, now)}
        {crate::trends::host_panel(state, h.id, now)?}
        <section class="panel">
            <h2>"Baseline status"</h2>
            {model_view}
            <p class="muted">"Last 48 h per hour against this host's band (median ± 3 MAD of the same windows). Red dots are outside the band."</p>
            <div class="grid2">
                <div><h3>"Outbound connections per hour"</h3>{band_chart(&conns, robust_band(&conns), &labels, 6)}</div>
                <div><h3>"Distinct outbound peers per hour"</h3>{band_chart(&peers, robust_band(&peers), &labels, 6)}</div>
            </div>
        </section>
        <section class="panel">
            <h2>"Alerts on this host"</h2>
            {table(&["Severity", "Alert", "State", "Raised"], alert_rows, alerts.is_empty())}
        </section>
        <div class="toolbar">"Window: " {window_links}</div>
        {truncated}
        <div class="grid2">
            <section class="panel">
                <h2>"Process tree"</h2>
                {if procs.is_empty() { view! { <p class="muted">"No process starts in this window."</p> }.into_any() } else { process_tree(&procs) }}
            </section>
            <section class="panel">
                <h2>"Connections"</h2>
                {table(&["Direction", "Peer · program", "Port", "Count", "Last"], conn_rows, no_conns)}
            </section>
        </div>
        <div class="grid2">
            <section class="panel">
                <h2>"Logins"</h2>
                {table(&["Time", "", "Kind", "Detail"], event_rows(&logins, now), logins.is_empty())}
            </section>
            <section class="panel">
                <h2>"File changes"</h2>
                {table(&["Time", "", "Kind", "Detail"], event_rows(&files, now), files.is_empty())}
            </section>
        </div>
        <section class="panel">
            <h2>{format!("Timeline · {} events, newest first", timeline.len())}</h2>
            {table(&["Time", "", "Kind", "Detail"], event_rows(&timeline[..timeline.len().min(200)], now), timeline.is_empty())}
        </section>
        {super::respond::host_panel(state, auth, id)?}
        {super::export::export_form(state, auth, &super::export::ExportTarget::Host { host: id, from_ns: since, to_ns: now })}
    };
    Ok(render(&h.hostname, Nav::Hosts, auth, body.into_any()))
}

/// `GET /hosts/{id}`.
pub async fn handler(
    State(state): State<ConsoleState>,
    auth: Authed,
    Path(id): Path<String>,
    Query(q): Query<HostQuery>,
) -> PageResult {
    let id: HostId = id
        .parse()
        .map_err(|_| UiError::BadRequest("host id must be 16 hex digits".into()))?;
    off_runtime(move || page(&state, &auth, id, &q)).await
}

/// The detector's model of this host: learning (with a progress bar to the
/// end of the learning period) or active (version, hash, training window).
fn baseline_model(model: Option<HostModelSummary>, now: u64) -> AnyView {
    let Some(m) = model else {
        return view! { <p class="muted">"The detection pipeline has not scored this host yet."</p> }.into_any();
    };
    if !m.active {
        let elapsed = now
            .saturating_sub(m.first_seen_ns)
            .min(m.learning_period_ns);
        let pct = elapsed
            .saturating_mul(100)
            .checked_div(m.learning_period_ns)
            .unwrap_or(100);
        let ends = m.first_seen_ns.saturating_add(m.learning_period_ns);
        return view! {
            <p>
                <span class="badge">"learning"</span>
                {format!(" {pct} % of the learning period; this host may alert from {}.", format_ts(ends))}
            </p>
            <progress max="100" value=pct.to_string()>{format!("{pct} %")}</progress>
        }
        .into_any();
    }
    let window = m
        .trained_window_ns
        .map(|(a, b)| format!("{} → {}", format_ts(a), format_ts(b)))
        .unwrap_or_else(|| "–".into());
    let sha = m.sha256.clone().unwrap_or_default();
    view! {
        <dl class="facts cols">
            <dt>"Model"</dt><dd><span class="badge">"active"</span>{format!(" {}", m.version.clone().unwrap_or_default())}</dd>
            <dt>"SHA-256"</dt><dd class="mono" title=sha.clone()>{sha.chars().take(16).collect::<String>()}</dd>
            <dt>"Trained on"</dt><dd>{window}</dd>
            <dt>"Hop threshold"</dt><dd>{m.hop_threshold.map(|t| format!("{t:.1} nats")).unwrap_or_else(|| "–".into())}</dd>
            <dt>"Model size"</dt><dd>{bytes(m.model_bytes)}</dd>
        </dl>
    }
    .into_any()
}
