//! MTTD and MTTR: when an incident started, was detected, contained and
//! closed, and their daily trend for the overview's chart.

use super::{ExecutedCommand, Facts, IncidentView};
use crate::command::CommandAction;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One day, ns.
pub const DAY_NS: u64 = 86_400_000_000_000;

/// The moments MTTD and MTTR are measured between, ns since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentTimes {
    /// The first malicious event: the earliest event of the alerts'
    /// evidence (never after the first alert; the first alert's time when
    /// the caller had no event).
    pub first_malicious_ns: u64,
    /// The first alert of the incident.
    pub first_alert_ns: u64,
    /// When every fleet host on the incident's path was isolated: the
    /// latest, over those hosts, of the done isolation that began the
    /// isolation still in force (not released or expired since). `None`
    /// while any of them is not isolated, or when none is in the fleet.
    pub contained_ns: Option<u64>,
    /// When the incident was closed, as the caller's triage record says.
    pub closed_ns: Option<u64>,
}

impl IncidentTimes {
    /// The times of an incident, given the commands sent for it and its
    /// closing time; `None` without alerts. Commands finished after
    /// `now_ns` are ignored, isolations that expired by then do not count.
    pub fn derive(
        view: &IncidentView<'_>,
        commands: &[ExecutedCommand],
        closed_ns: Option<u64>,
        now_ns: u64,
    ) -> Option<Self> {
        let facts = Facts::new(view);
        let first_alert_ns = facts.first_alert_ns()?;
        let first_malicious_ns = facts
            .evidence
            .iter()
            .map(|e| e.header.ts_ns)
            .min()
            .map_or(first_alert_ns, |t| t.min(first_alert_ns));
        let mut done: Vec<&ExecutedCommand> = commands
            .iter()
            .filter(|c| c.is_done() && c.finished_ns <= now_ns)
            .collect();
        done.sort_by_key(|c| (c.finished_ns, c.id));
        let fleet: Vec<_> = facts.path.iter().filter(|h| !h.is_unmanaged()).collect();
        let contained_ns = if fleet.is_empty() {
            None
        } else {
            fleet
                .iter()
                .map(|h| {
                    let mine: Vec<&ExecutedCommand> =
                        done.iter().copied().filter(|c| c.host == **h).collect();
                    isolation_in_force(&mine, now_ns).map(|c| c.finished_ns)
                })
                .collect::<Option<Vec<u64>>>()
                .and_then(|v| v.into_iter().max())
        };
        Some(IncidentTimes {
            first_malicious_ns,
            first_alert_ns,
            contained_ns,
            closed_ns,
        })
    }

    /// Mean time to detect, for this incident: first malicious event → first alert.
    pub fn mttd_ns(&self) -> u64 {
        self.first_alert_ns.saturating_sub(self.first_malicious_ns)
    }

    /// Time to contain: first alert → contained (0 if contained before).
    pub fn mttr_contain_ns(&self) -> Option<u64> {
        self.contained_ns
            .map(|c| c.saturating_sub(self.first_alert_ns))
    }

    /// Time to close: first alert → closed (0 if closed before).
    pub fn mttr_close_ns(&self) -> Option<u64> {
        self.closed_ns
            .map(|c| c.saturating_sub(self.first_alert_ns))
    }
}

/// The done isolation that began the isolation in force on one host at
/// `now_ns`, among that host's done commands in (finished, id) order. A
/// release lifts every isolation; an isolation lifts at its expiry unless
/// one without expiry, or with a later one, is in force (as the sensor
/// does).
pub(crate) fn isolation_in_force<'c>(
    done: &[&'c ExecutedCommand],
    now_ns: u64,
) -> Option<&'c ExecutedCommand> {
    // The isolation that began the current stretch, and when it ends
    // (`None`: until released).
    let mut current: Option<(&ExecutedCommand, Option<u64>)> = None;
    let lapse = |cur: &mut Option<(&ExecutedCommand, Option<u64>)>, at: u64| {
        if matches!(cur, Some((_, Some(until))) if *until <= at) {
            *cur = None;
        }
    };
    for c in done {
        lapse(&mut current, c.finished_ns);
        match &c.action {
            CommandAction::Release => current = None,
            CommandAction::IsolateHost { expires_ns, .. }
            | CommandAction::Isolate { expires_ns, .. } => {
                current = match current {
                    None => Some((c, *expires_ns)),
                    Some((began, until)) => {
                        let until = until.zip(*expires_ns).map(|(a, b)| a.max(b));
                        Some((began, until))
                    }
                };
            }
            _ => {}
        }
    }
    lapse(&mut current, now_ns);
    current.map(|(c, _)| c)
}

/// Median and 90th percentile of a set of durations (nearest rank).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurationStats {
    /// How many durations.
    pub count: u32,
    /// The median (the lower one for an even count), ns.
    pub median_ns: u64,
    /// The 90th percentile, ns.
    pub p90_ns: u64,
}

impl DurationStats {
    /// Stats of `values`; `None` when empty.
    pub fn of(mut values: Vec<u64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let n = values.len();
        // Nearest rank: the ceil(p·n)-th smallest, 1-based.
        let rank = |pct: usize| values[(pct * n).div_ceil(100).clamp(1, n) - 1];
        Some(DurationStats {
            count: u32::try_from(n).unwrap_or(u32::MAX),
            median_ns: rank(50),
            p90_ns: rank(90),
        })
    }
}

/// One day of the MTTD/MTTR trend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrendBucket {
    /// Start of the day (UTC midnight), ns since the epoch.
    pub day_start_ns: u64,
    /// Incidents whose first alert fell on that day.
    pub incidents: u32,
    /// Their MTTD.
    pub mttd: Option<DurationStats>,
    /// Their time to contain, over those contained.
    pub contain: Option<DurationStats>,
    /// Their time to close, over those closed.
    pub close: Option<DurationStats>,
}

/// Incidents grouped by the UTC day of their first alert, oldest day
/// first; days without an incident are left out (the chart spaces days by
/// `day_start_ns`).
pub fn daily_trend(times: &[IncidentTimes]) -> Vec<TrendBucket> {
    let mut days: BTreeMap<u64, Vec<&IncidentTimes>> = BTreeMap::new();
    for t in times {
        days.entry(t.first_alert_ns / DAY_NS).or_default().push(t);
    }
    days.into_iter()
        .map(|(day, ts)| TrendBucket {
            day_start_ns: day * DAY_NS,
            incidents: u32::try_from(ts.len()).unwrap_or(u32::MAX),
            mttd: DurationStats::of(ts.iter().map(|t| t.mttd_ns()).collect()),
            contain: DurationStats::of(ts.iter().filter_map(|t| t.mttr_contain_ns()).collect()),
            close: DurationStats::of(ts.iter().filter_map(|t| t.mttr_close_ns()).collect()),
        })
        .collect()
}
