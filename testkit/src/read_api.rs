//! [`MemoryReadApi`]: the console's read API over plain vectors, for tests,
//! the browser walk-through, the demo and the in-memory render bench; and
//! [`scaled_read_api`], the bench fleet of [`crate::fleet`] in memory.
//! Events match a filter by `EventFilter::matches`, the store's own rule.

use crate::fleet::{Fleet, FleetConfig};
use std::collections::BTreeMap;
use vigil_proto::event::*;
use vigil_proto::query::*;

const DAY: u64 = 24 * 3600 * 1_000_000_000;

/// A [`ReadApi`] over plain vectors. Events are kept per host, sorted by
/// (ts, seq); alerts newest first.
#[derive(Debug, Clone, Default)]
pub struct MemoryReadApi {
    /// Hosts, in the order the host list shows them unsorted.
    pub hosts: Vec<HostSummary>,
    /// Each host's events, sorted by (ts, seq).
    pub events: BTreeMap<HostId, Vec<Event>>,
    /// Alerts, newest first.
    pub alerts: Vec<AlertRecord>,
    /// Fleet graph edges.
    pub edges: Vec<EdgeRecord>,
    /// What `stats()` answers.
    pub stats: ApplianceStats,
}

impl ReadApi for MemoryReadApi {
    fn hosts(&self) -> Result<Vec<HostSummary>, QueryError> {
        Ok(self.hosts.clone())
    }
    fn host(&self, id: HostId) -> Result<HostSummary, QueryError> {
        self.hosts
            .iter()
            .find(|h| h.id == id)
            .cloned()
            .ok_or_else(|| QueryError::NotFound(format!("host {id}")))
    }
    fn events(&self, f: &EventFilter) -> Result<EventPage, QueryError> {
        let limit = f.limit.clamp(1, 10_000);
        if let (true, Some(h)) = (f.newest_first, f.host) {
            let events = self
                .events
                .get(&h)
                .into_iter()
                .flatten()
                .rev()
                .filter(|e| f.since_ns.is_none_or(|s| e.header.ts_ns >= s))
                .filter(|e| f.until_ns.is_none_or(|u| e.header.ts_ns < u))
                .filter(|e| f.matches(e))
                .take(limit)
                .cloned()
                .collect();
            return Ok(EventPage { events, next: None });
        }
        let mut out = Vec::new();
        let hosts: Box<dyn Iterator<Item = (&HostId, &Vec<Event>)>> = match f.host {
            Some(h) => Box::new(self.events.get_key_value(&h).into_iter()),
            None => Box::new(self.events.iter()),
        };
        for (host, evs) in hosts {
            if f.after.is_some_and(|c| *host < c.host) {
                continue;
            }
            let start = match f.since_ns {
                Some(s) => evs.partition_point(|e| e.header.ts_ns < s),
                None => 0,
            };
            for e in &evs[start..] {
                if f.until_ns.is_some_and(|u| e.header.ts_ns >= u) {
                    break;
                }
                if let Some(c) = f.after {
                    if *host == c.host && (e.header.ts_ns, e.header.seq) <= (c.ts_ns, c.seq) {
                        continue;
                    }
                }
                if !f.matches(e) {
                    continue;
                }
                if out.len() == limit {
                    let last: &Event = &out[limit - 1];
                    let next = EventCursor {
                        host: last.header.host,
                        ts_ns: last.header.ts_ns,
                        seq: last.header.seq,
                    };
                    return Ok(EventPage {
                        events: out,
                        next: Some(next),
                    });
                }
                out.push(e.clone());
            }
        }
        Ok(EventPage {
            events: out,
            next: None,
        })
    }
    fn event(&self, host: HostId, seq: u64) -> Result<Event, QueryError> {
        self.events
            .get(&host)
            .and_then(|v| v.iter().find(|e| e.header.seq == seq))
            .cloned()
            .ok_or_else(|| QueryError::NotFound(format!("event {host}/{seq}")))
    }
    fn alerts(&self, f: &AlertFilter) -> Result<Vec<AlertRecord>, QueryError> {
        Ok(self
            .alerts
            .iter()
            .filter(|a| f.since_ns.is_none_or(|s| a.created_ns >= s))
            .filter(|a| f.host.is_none_or(|h| a.path.contains(&h)))
            .filter(|a| !f.open_only || is_open(a))
            .filter(|a| f.include_suppressed || !a.is_hidden())
            .filter(|a| f.min_severity.is_none_or(|s| a.severity >= s))
            .take(if f.limit == 0 { usize::MAX } else { f.limit })
            .cloned()
            .collect())
    }
    fn alert(&self, id: u64) -> Result<AlertRecord, QueryError> {
        self.alerts
            .iter()
            .find(|a| a.id == id)
            .cloned()
            .ok_or_else(|| QueryError::NotFound(format!("alert {id}")))
    }
    fn edges(&self, since_ns: u64) -> Result<Vec<EdgeRecord>, QueryError> {
        Ok(self
            .edges
            .iter()
            .filter(|e| e.last_seen_ns >= since_ns)
            .cloned()
            .collect())
    }
    fn stats(&self) -> Result<ApplianceStats, QueryError> {
        Ok(self.stats.clone())
    }
}

/// Seed of [`scaled_read_api`]'s fleet.
const SCALED_SEED: u64 = 0x005c_a1ed;

/// The bench's fleet in memory: `hosts` hosts (at least 10) with about
/// `events_per_host` events each on average (busy servers far more, as in
/// `bench-ui`), one alert per 20 hosts (at least one) and the fleet graph.
pub fn scaled_read_api(hosts: usize, events_per_host: usize, now: u64) -> MemoryReadApi {
    let hosts = hosts.max(10);
    let fleet = Fleet::plan(&FleetConfig {
        hosts,
        events: (hosts * events_per_host.max(2)) as u64,
        seed: SCALED_SEED,
        now_ns: now,
        span_ns: 7 * DAY,
    });
    MemoryReadApi::from_fleet(&fleet, (hosts / 20).max(1))
}

impl MemoryReadApi {
    /// A planned fleet with all its events, its graph and `alerts` alerts.
    pub fn from_fleet(fleet: &Fleet, alerts: usize) -> MemoryReadApi {
        let now = fleet.config.now_ns;
        let mut api = MemoryReadApi::default();
        for h in &fleet.hosts {
            let mut evs: Vec<Event> = (0..h.batch_count())
                .flat_map(|b| h.batch(b, fleet.config.seed))
                .collect();
            evs.sort_by_key(|e| (e.header.ts_ns, e.header.seq));
            api.events.insert(h.id, evs);
            api.hosts.push(HostSummary {
                id: h.id,
                hostname: h.hostname.clone(),
                os: h.os.clone(),
                addrs: h.addrs.clone(),
                sensor_version: h.sensor_version.clone(),
                enrolled_ns: h.enrolled_ns,
                last_seen_ns: h.last_seen_ns,
                state: h.state(now),
                cpu_pct: h.cpu_pct,
                rss_bytes: h.rss_bytes,
                events_total: h.events,
                lost_total: h.dropped_total,
                isolated: h.isolated,
                open_alerts: 0,
                warnings: Vec::new(),
            });
        }
        let mut next = 0u64;
        let plan = fleet
            .alerts(alerts, || {
                next += 1;
                Ok::<_, std::convert::Infallible>(next)
            })
            .unwrap_or_else(|never| match never {});
        // The store keys edges by (src, dst, port, user): a later write wins.
        let mut edges = BTreeMap::new();
        for e in fleet.edges().into_iter().chain(plan.edges) {
            edges.insert((e.src, e.dst, e.port, e.user.clone()), e);
        }
        api.edges = edges.into_values().collect();
        api.alerts = plan.alerts.into_iter().map(|a| a.record).collect();
        api.alerts.sort_by_key(|a| std::cmp::Reverse(a.created_ns));
        api.count_open_alerts();
        api.stats = ApplianceStats {
            events_total: fleet.events_total(),
            events_per_s: fleet.hosts.iter().map(|h| h.events_per_s as f64).sum(),
            lost_total: fleet.hosts.iter().map(|h| h.dropped_total).sum(),
            ..Default::default()
        };
        api
    }

    /// Set every host's `open_alerts` from [`MemoryReadApi::alerts`].
    pub fn count_open_alerts(&mut self) {
        for h in &mut self.hosts {
            h.open_alerts = 0;
        }
        for a in self.alerts.iter().filter(|a| is_open(a)) {
            for h in self.hosts.iter_mut().filter(|h| a.path.contains(&h.id)) {
                h.open_alerts += 1;
            }
        }
    }
}

/// Whether an alert is still open (not closed either way).
pub fn is_open(a: &AlertRecord) -> bool {
    !matches!(
        a.state,
        TriageState::ClosedFalsePositive | TriageState::ClosedTruePositive
    )
}
