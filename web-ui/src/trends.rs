//! The overview's trend charts: alerts per day by severity (from the alerts
//! the console shows, so they agree with its counters), events per second
//! by the events' own time (a replayed week shows as that week) and sensor
//! states over time (from [`ReadApi::trends`]). The series are built by
//! pure functions so tests compare plotted totals with the store.

use crate::charts::{line_chart, stacked_bars, Series, Unit, XAxis};
use crate::error::UiError;
use crate::pages::seen_alerts;
use crate::time::format_ts;
use crate::ConsoleState;
use leptos::prelude::*;
use vigil_proto::query::{AlertFilter, AlertRecord, Severity, Trends};

const HOUR: u64 = 3600 * 1_000_000_000;
const DAY: u64 = 24 * HOUR;
/// Days of alerts drawn.
pub const ALERT_DAYS: u64 = 14;
/// Days of events drawn (by their own time; what the host page draws too).
pub const EVENT_DAYS: u64 = 7;
/// Hours of sensor states drawn (they are sampled while the appliance runs).
pub const SENSOR_HOURS: u64 = 48;
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
            name: s.name().into(),
            class: format!("s-{}", s.name()),
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

/// The last `n` buckets of `t` (all of them when it has fewer).
pub fn last_buckets(t: &Trends, n: usize) -> Trends {
    let skip = t.len().saturating_sub(n);
    Trends {
        since_ns: t.since_ns + skip as u64 * t.bucket_ns,
        bucket_ns: t.bucket_ns,
        events: t.events[skip..].to_vec(),
        hosts: t.hosts[skip..].to_vec(),
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

/// The trend panels of the overview (`hosts`: the overview's registry read).
pub fn panels(
    state: &ConsoleState,
    now: u64,
    hosts: &[vigil_proto::query::HostSummary],
) -> Result<AnyView, UiError> {
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
        .trends(hour_now - EVENT_DAYS * DAY, hour_now, HOUR)?;
    let events = match events_per_s(&t) {
        Some(s) => line_chart(&hour_labels(&t), &[s], Unit::PerSecond),
        None => nothing_yet("event history"),
    };
    let response = crate::pages::incident::response_times_panel(state, &alerts, hosts)?;
    let recent = last_buckets(&t, SENSOR_HOURS as usize);
    let sensors = match host_states(&recent) {
        Some(s) => line_chart(&hour_labels(&recent), &s, Unit::Count),
        None => nothing_yet("sensor history"),
    };
    Ok(view! {
        <div class="grid3">
            <section class="panel">
                <h2>{format!("Alerts per day by severity · last {ALERT_DAYS} days")}</h2>
                {stacked_bars(&days, &by_sev, Unit::Count)}
            </section>
            <section class="panel">
                <h2>{format!("Events per second · last {EVENT_DAYS} days (hourly mean, by event time)")}</h2>
                {events}
            </section>
            <section class="panel">
                <h2>{format!("Sensors online / stale / offline · last {SENSOR_HOURS} h")}</h2>
                {sensors}
            </section>
        </div>
        {response}
    }
    .into_any())
}

/// Days of one host's activity drawn on its page.
pub const HOST_DAYS: u64 = 7;
/// Most of a host's events read for its chart (pages of 10,000).
pub const HOST_EVENT_CAP: usize = 100_000;

/// Events per hour of one host over `hours` hours from `since`, counted by
/// the events' own time (a replayed history lands where it happened).
pub fn host_events_per_hour(events: &[vigil_proto::Event], since: u64, hours: usize) -> Vec<f64> {
    let mut counts = vec![0f64; hours];
    for e in events.iter().filter(|e| e.header.ts_ns >= since) {
        if let Some(c) = counts.get_mut(((e.header.ts_ns - since) / HOUR) as usize) {
            *c += 1.0;
        }
    }
    counts
}

/// One host's stored events from `since` to `until` in time order, read
/// page by page up to [`HOST_EVENT_CAP`]; `true` when the cap cut it short.
fn host_events(
    state: &ConsoleState,
    host: vigil_proto::HostId,
    since: u64,
    until: u64,
) -> Result<(Vec<vigil_proto::Event>, bool), UiError> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = state.read.events(&vigil_proto::query::EventFilter {
            host: Some(host),
            since_ns: Some(since),
            until_ns: Some(until),
            limit: 10_000,
            after,
            ..Default::default()
        })?;
        out.extend(page.events);
        match page.next {
            Some(next) if out.len() < HOST_EVENT_CAP => after = Some(next),
            Some(_) => return Ok((out, true)),
            None => return Ok((out, false)),
        }
    }
}

/// The host page's activity panel: its events per second (hourly mean)
/// and its alerts per day by severity over [`HOST_DAYS`] days, both from
/// the store, by the events' and alerts' own times.
pub fn host_panel(
    state: &ConsoleState,
    host: vigil_proto::HostId,
    now: u64,
) -> Result<AnyView, UiError> {
    let hour_now = now - now % HOUR + HOUR;
    let hours = (HOST_DAYS * 24) as usize;
    let since = hour_now - HOST_DAYS * DAY;
    let (events, capped) = host_events(state, host, since, hour_now)?;
    let per_hour = host_events_per_hour(&events, since, hours);
    let x = XAxis {
        labels: (0..hours as u64)
            .map(|i| format_ts(since + i * HOUR)[5..16].to_string())
            .collect(),
        every: 24,
    };
    let rate = Series {
        name: "events/s".into(),
        class: "s-events".into(),
        values: per_hour.iter().map(|n| n / 3600.0).collect(),
    };
    let alerts = seen_alerts(
        state,
        &AlertFilter {
            host: Some(host),
            since_ns: Some(day_start(now).saturating_sub((HOST_DAYS - 1) * DAY)),
            limit: ALERT_LIMIT,
            ..Default::default()
        },
        false,
    )?;
    let (days, by_sev) = alerts_per_day(&alerts, now, HOST_DAYS);
    let note = capped.then(|| {
        view! { <p class="muted">{format!("Drawn from the first {} events of the period.", events.len())}</p> }
    });
    Ok(view! {
        <section class="panel host-trends">
            <h2>{format!("Activity · last {HOST_DAYS} days")}</h2>
            <div class="grid2">
                <div>
                    <h3>{format!("Events per second (hourly mean) · {} events", events.len())}</h3>
                    {line_chart(&x, &[rate], Unit::PerSecond)}
                    {note}
                </div>
                <div>
                    <h3>{format!("Alerts per day by severity · {}", alerts.len())}</h3>
                    {stacked_bars(&days, &by_sev, Unit::Count)}
                </div>
            </div>
        </section>
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

    /// The host chart plots every stored event of its period once: its
    /// hourly rates times an hour add up to the events in range.
    #[test]
    fn host_chart_adds_up_to_the_stored_events() {
        use vigil_proto::event::{Event, EventHeader, Payload, ProcessExit};
        let now = 1_795_442_585_000_000_000;
        let since = now - now % HOUR + HOUR - HOST_DAYS * DAY;
        let ev = |ts_ns| Event {
            header: EventHeader {
                host: HostId(1),
                seq: 0,
                ts_ns,
            },
            payload: Payload::ProcessExit(ProcessExit {
                pid: 1,
                exit_code: None,
                exe: None,
            }),
        };
        // One event every 7 minutes over 9 days: two days before the chart.
        let events: Vec<Event> = (0..9 * 24 * 60 / 7)
            .map(|i| ev(now - 9 * DAY + i * 7 * 60 * 1_000_000_000))
            .collect();
        let hours = (HOST_DAYS * 24) as usize;
        let per_hour = host_events_per_hour(&events, since, hours);
        let stored = events.iter().filter(|e| e.header.ts_ns >= since).count();
        assert_eq!(per_hour.iter().sum::<f64>() as usize, stored);
        // Every whole hour holds 8 or 9 of them; the current one is partial.
        let whole = &per_hour[..hours - 1];
        assert!(
            whole.iter().all(|n| (8.0..=9.0).contains(n)),
            "{per_hour:?}"
        );
    }

    /// The overview's events chart plots every event the store counted in
    /// its range once, and the sensor chart is its last hours.
    #[test]
    fn events_chart_adds_up_to_the_stored_counts() {
        let since = 1_795_442_400_000_000_000;
        let mut t = Trends::unknown(since, HOUR, (EVENT_DAYS * 24) as usize);
        for (i, e) in t.events.iter_mut().enumerate() {
            *e = (i % 5 != 0).then_some(i as u64 * 37);
        }
        let stored: u64 = t.events.iter().flatten().sum();
        let plotted: f64 = events_per_s(&t)
            .unwrap()
            .values
            .iter()
            .map(|v| v * 3600.0)
            .sum();
        assert_eq!(plotted.round() as u64, stored);
        let recent = last_buckets(&t, SENSOR_HOURS as usize);
        assert_eq!(recent.len(), SENSOR_HOURS as usize);
        assert_eq!(
            recent.since_ns,
            since + (EVENT_DAYS * 24 - SENSOR_HOURS) * HOUR
        );
        assert_eq!(
            recent.events[..],
            t.events[t.len() - SENSOR_HOURS as usize..]
        );
        assert_eq!(last_buckets(&recent, 1000), recent);
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
