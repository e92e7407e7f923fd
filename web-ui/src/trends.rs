//! The overview's trend charts: alerts per day by severity (from the alerts
//! the console shows, so they agree with its counters), events per second
//! and sensor states over time (from [`ReadApi::trends`]). The series are
//! built by pure functions so tests compare plotted totals with the store.

use crate::charts::{line_chart, stacked_bars, Series, Unit, XAxis};
use crate::error::UiError;
use crate::pages::{seen_alerts, severity_name};
use crate::time::format_ts;
use crate::ConsoleState;
use leptos::prelude::*;
use vigil_proto::query::{AlertFilter, AlertRecord, Severity, Trends};

const HOUR: u64 = 3600 * 1_000_000_000;
const DAY: u64 = 24 * HOUR;
/// Days of alerts drawn.
pub const ALERT_DAYS: u64 = 14;
/// Hours of ingest drawn.
pub const EVENT_HOURS: u64 = 48;
/// Most alerts read for the chart.
const ALERT_LIMIT: usize = 100_000;

/// Severities bottom to top of a stacked bar.
const SEVERITIES: [Severity; 4] = [
    Severity::Low,
    Severity::Medium,
    Severity::High,
    Severity::Critical,
];

/// Start of the UTC day holding `ns`.
pub fn day_start(ns: u64) -> u64 {
    ns - ns % DAY
}

/// Alerts raised per UTC day by severity: `days` days ending with today,
/// one series per severity (low first).
pub fn alerts_per_day(alerts: &[AlertRecord], now: u64, days: u64) -> (XAxis, Vec<Series>) {
    let first = day_start(now).saturating_sub((days - 1) * DAY);
    let mut counts = vec![[0f64; 4]; days as usize];
    for a in alerts.iter().filter(|a| a.created_ns >= first) {
        let i = ((a.created_ns - first) / DAY) as usize;
        if let Some(row) = counts.get_mut(i) {
            row[a.severity as usize] += 1.0;
        }
    }
    let labels = (0..days)
        .map(|d| format_ts(first + d * DAY)[5..10].to_string())
        .collect();
    let series = SEVERITIES
        .iter()
        .map(|s| Series {
            name: severity_name(*s).into(),
            class: format!("s-{}", severity_name(*s)),
            values: counts.iter().map(|row| row[*s as usize]).collect(),
        })
        .collect();
    (XAxis { labels, every: 2 }, series)
}

fn hour_labels(t: &Trends) -> XAxis {
    XAxis {
        labels: (0..t.len())
            .map(|i| format_ts(t.since_ns + i as u64 * t.bucket_ns)[5..16].to_string())
            .collect(),
        every: (t.len() / 4).max(1),
    }
}

/// Events per second per bucket (`None` buckets drawn as 0), or `None` when
/// nothing was recorded.
pub fn events_per_s(t: &Trends) -> Option<Series> {
    if t.events.iter().all(Option::is_none) || t.bucket_ns == 0 {
        return None;
    }
    let secs = t.bucket_ns as f64 / 1e9;
    Some(Series {
        name: "events/s".into(),
        class: "s-events".into(),
        values: t
            .events
            .iter()
            .map(|e| e.map_or(0.0, |n| n as f64 / secs))
            .collect(),
    })
}

/// Sensors online, stale, offline per bucket, or `None` when nothing was recorded.
pub fn host_states(t: &Trends) -> Option<Vec<Series>> {
    if t.hosts.iter().all(Option::is_none) {
        return None;
    }
    let pick = |name: &str, class: &str, f: fn(&vigil_proto::query::HostStates) -> u64| Series {
        name: name.into(),
        class: class.into(),
        values: t
            .hosts
            .iter()
            .map(|h| h.as_ref().map_or(0.0, |h| f(h) as f64))
            .collect(),
    };
    Some(vec![
        pick("online", "s-online", |h| h.online),
        pick("stale", "s-stale", |h| h.stale),
        pick("offline", "s-offline", |h| h.offline),
    ])
}

fn nothing_yet(what: &str) -> AnyView {
    view! { <p class="muted">{format!("No {what} recorded yet: the appliance samples it while it runs.")}</p> }
        .into_any()
}

/// The trend panels of the overview.
pub fn panels(state: &ConsoleState, now: u64) -> Result<AnyView, UiError> {
    let since = day_start(now).saturating_sub((ALERT_DAYS - 1) * DAY);
    let alerts = seen_alerts(
        state,
        &AlertFilter {
            since_ns: Some(since),
            limit: ALERT_LIMIT,
            ..Default::default()
        },
        false,
    )?;
    let (days, by_sev) = alerts_per_day(&alerts, now, ALERT_DAYS);
    let hour_now = now - now % HOUR + HOUR;
    let t = state
        .read
        .trends(hour_now - EVENT_HOURS * HOUR, hour_now, HOUR)?;
    let hours = hour_labels(&t);
    let events = match events_per_s(&t) {
        Some(s) => line_chart(&hours, &[s], Unit::PerSecond),
        None => nothing_yet("ingest history"),
    };
    let response = crate::pages::incident::response_times_panel(state, &alerts)?;
    let sensors = match host_states(&t) {
        Some(s) => line_chart(&hours, &s, Unit::Count),
        None => nothing_yet("sensor history"),
    };
    Ok(view! {
        <div class="grid3">
            <section class="panel">
                <h2>{format!("Alerts per day by severity · last {ALERT_DAYS} days")}</h2>
                {stacked_bars(&days, &by_sev, Unit::Count)}
            </section>
            <section class="panel">
                <h2>{format!("Events per second · last {EVENT_HOURS} h (hourly mean)")}</h2>
                {events}
            </section>
            <section class="panel">
                <h2>{format!("Sensors online / stale / offline · last {EVENT_HOURS} h")}</h2>
                {sensors}
            </section>
        </div>
        {response}
    }
    .into_any())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::query::{HostStates, TriageState};
    use vigil_proto::HostId;

    fn alert(id: u64, created_ns: u64, severity: Severity) -> AlertRecord {
        AlertRecord {
            id,
            created_ns,
            severity,
            score: 1.0,
            title: String::new(),
            path: vec![HostId(1)],
            users: Vec::new(),
            techniques: Vec::new(),
            summary: String::new(),
            deviations: Vec::new(),
            evidence: Vec::new(),
            state: TriageState::New,
            assignee: None,
            incident_id: None,
            model_version: None,
            ports: Vec::new(),
            processes: Vec::new(),
            suppressed_by: None,
        }
    }

    #[test]
    fn alerts_land_in_their_day_and_add_up() {
        let now = 1_795_442_585_000_000_000; // 2026-11-23 14:03Z
        let alerts: Vec<AlertRecord> = (0..40)
            .map(|i| alert(i, now - i * 9 * HOUR, SEVERITIES[(i % 4) as usize]))
            .collect();
        let (x, series) = alerts_per_day(&alerts, now, ALERT_DAYS);
        assert_eq!(x.labels.last().unwrap(), "11-23");
        assert_eq!(x.labels.len(), ALERT_DAYS as usize);
        let plotted: f64 = crate::charts::stack_totals(&series).iter().sum();
        let first = day_start(now) - (ALERT_DAYS - 1) * DAY;
        let stored = alerts.iter().filter(|a| a.created_ns >= first).count();
        assert_eq!(plotted as usize, stored);
        assert_eq!(series[3].name, "critical");
    }

    #[test]
    fn unrecorded_history_is_said_not_drawn() {
        let t = Trends::unknown(0, HOUR, 48);
        assert!(events_per_s(&t).is_none() && host_states(&t).is_none());
        let mut t = t;
        t.events[47] = Some(7200);
        t.hosts[47] = Some(HostStates {
            online: 5,
            stale: 1,
            offline: 0,
        });
        assert_eq!(events_per_s(&t).unwrap().values[47], 2.0);
        assert_eq!(host_states(&t).unwrap()[0].values[47], 5.0);
    }
}
