//! `/`: fleet health, ingest, open alerts at a glance.

use super::layout::{render, Nav};
use super::*;
use crate::format::{compact_rate, compact_span};
use crate::svg::usage_bar;
use crate::time::ago;
use axum::extract::State;
use vigil_proto::query::{AlertFilter, HostSummary};

/// Render the overview.
pub fn page(state: &ConsoleState, auth: &Authed) -> PageResult {
    let now = state.now();
    let hosts = state.read.hosts()?;
    let stats = state.read.stats()?;
    let settings = state.store.settings()?;
    let mut by_state = [0u64; 4];
    for h in &hosts {
        by_state[h.state as usize] += 1;
    }
    let alerts: Vec<AlertRecord> = seen_alerts(
        state,
        &AlertFilter {
            open_only: true,
            limit: 5000,
            ..Default::default()
        },
        false,
    )?
    .into_iter()
    .filter(|a| is_open(&a.state))
    .collect();
    let mut by_sev = [0u64; 4];
    let mut incidents = 0;
    for a in &alerts {
        by_sev[a.severity as usize] += 1;
        incidents += u64::from(a.path.len() > 1);
    }
    let names: HashMap<HostId, String> = hosts.iter().map(|h| (h.id, h.hostname.clone())).collect();
    let latest = latest_rows(&alerts, &names, now);
    let attention_rows = attention_rows(&hosts, now);
    let counters = stats
        .counters
        .iter()
        .map(|(k, v)| view! { <tr><td class="mono">{k.clone()}</td><td class="num">{count(*v)}</td></tr> })
        .collect_view();
    let sev_cards = severity_cards(&by_sev);
    let trends = crate::trends::panels(state, now, &hosts)?;
    let loss_class = if stats.lost_total > 0 {
        "kpi warn"
    } else {
        "kpi"
    };
    let body = view! {
        <h1>"Overview"</h1>
        <div class="grid4">
            <section class="panel">
                <h2>"Sensors"</h2>
                <div class="kpis">
                    <a class="kpi ok" href="/hosts?state=online">{compact_span(by_state[0], "v")}<span class="k">"online"</span></a>
                    <a class="kpi warn" href="/hosts?state=stale">{compact_span(by_state[1], "v")}<span class="k">"stale"</span></a>
                    <a class="kpi bad" href="/hosts?state=offline">{compact_span(by_state[2], "v")}<span class="k">"offline"</span></a>
                    <a class="kpi" href="/hosts?state=revoked">{compact_span(by_state[3], "v")}<span class="k">"revoked"</span></a>
                </div>
            </section>
            <section class="panel">
                <h2>"Ingest"</h2>
                <div class="kpis">
                    <div class="kpi">{compact_rate(stats.events_per_s, "v")}<span class="k">"events/s"</span></div>
                    <div class="kpi">{compact_span(stats.events_total, "v")}<span class="k">"events stored"</span></div>
                    <div class=loss_class>{compact_span(stats.lost_total, "v")}<span class="k">"events lost"</span></div>
                </div>
            </section>
            <section class="panel wide">
                <h2>{format!("Open alerts · {incidents} incidents")}</h2>
                <div class="kpis">{sev_cards}</div>
            </section>
        </div>
        {trends}
        <div class="grid2">
            <section class="panel">
                <h2>"Latest open alerts"</h2>
                <table>
                    <thead><tr><th>"Severity"</th><th>"Alert"</th><th>"Hosts"</th><th>"State"</th><th>"Raised"</th></tr></thead>
                    <tbody>{latest}</tbody>
                </table>
                <p><a href="/alerts">"All alerts →"</a></p>
            </section>
            <section class="panel">
                <h2>"Hosts needing attention"</h2>
                <table>
                    <thead><tr><th>"Host"</th><th>"Sensor"</th><th>"Last seen"</th><th>"Lost events"</th></tr></thead>
                    <tbody>{attention_rows}</tbody>
                </table>
            </section>
        </div>
        <div class="grid2">
            <section class="panel">
                <h2>"Storage and retention"</h2>
                <dl class="facts">
                    <dt>"On disk"</dt><dd>{format!("{} of {}", bytes(stats.bytes_on_disk), bytes(stats.retention_bytes))}</dd>
                    <dt></dt><dd>{usage_bar(stats.bytes_on_disk as f64, stats.retention_bytes as f64)}</dd>
                    <dt>"Retention"</dt><dd>{format!("{} days, enforced automatically", stats.retention_days)}</dd>
                    <dt>"Duplicates ignored"</dt><dd>{count(stats.duplicates_total)}</dd>
                    <dt>"Rejected frames"</dt><dd>{count(stats.rejected_frames_total)}</dd>
                </dl>
            </section>
            <section class="panel">
                <h2>"Detection health"</h2>
                <dl class="facts">
                    <dt>"Learning period"</dt><dd>{format!("{} days", settings.learning_period_days)}</dd>
                    <dt>"Alert budget"</dt><dd>{format!("{} per day", settings.alert_budget_per_day)}</dd>
                    <dt>"Open incidents"</dt><dd>{incidents}</dd>
                </dl>
                <table><tbody>{counters}</tbody></table>
            </section>
        </div>
    };
    Ok(render("Overview", Nav::Overview, auth, body.into_any()))
}

/// Hosts whose sensor is not online or lost events, oldest first.
/// The newest open alerts as table rows.
fn latest_rows(alerts: &[AlertRecord], names: &HashMap<HostId, String>, now: u64) -> AnyView {
    alerts
        .iter()
        .take(8)
        .map(|a| {
            let path = a
                .path
                .iter()
                .map(|h| name_of(names, *h))
                .collect::<Vec<_>>()
                .join(" → ");
            view! {
                <tr>
                    <td>{severity_badge(a.severity)}</td>
                    <td><a href=format!("/alerts/{}", a.id)>{a.title.clone()}</a></td>
                    <td>{path}</td>
                    <td>{triage_badge(&a.state)}</td>
                    <td class="num">{ago(now, a.created_ns)}</td>
                </tr>
            }
        })
        .collect_view()
        .into_any()
}

fn attention_rows(hosts: &[HostSummary], now: u64) -> AnyView {
    let mut attention: Vec<_> = hosts
        .iter()
        .filter(|h| h.state != SensorState::Online || h.lost_total > 0)
        .collect();
    attention.sort_by_key(|h| h.last_seen_ns);
    attention
        .iter()
        .take(8)
        .map(|h| {
            view! {
                <tr>
                    <td><a href=format!("/hosts/{}", h.id)>{h.hostname.clone()}</a></td>
                    <td>{sensor_badge(h.state)}</td>
                    <td class="num">{ago(now, h.last_seen_ns)}</td>
                    <td class="num">{count(h.lost_total)}</td>
                </tr>
            }
        })
        .collect_view()
        .into_any()
}

/// One tile per severity with its count of open alerts.
fn severity_cards(by_sev: &[u64; 4]) -> AnyView {
    [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ]
    .into_iter()
    .map(|s| {
        view! {
            <a class=format!("kpi sev-{}", s.name()) href="/alerts">
                {compact_span(by_sev[s as usize], "v")}
                <span class="k">{s.name()}</span>
            </a>
        }
    })
    .collect_view()
    .into_any()
}

/// `GET /`.
pub async fn handler(State(state): State<ConsoleState>, auth: Authed) -> PageResult {
    off_runtime(move || page(&state, &auth)).await
}
