//! [`ReadApi`] over the store: what the web UI and the CLI read.

use crate::core::Core;
use crate::db::{alert_is_open, HostCounts, HostRecord};
use crate::store::{Cf, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use vigil_proto::query::{
    AlertFilter, AlertRecord, ApplianceStats, EdgeRecord, EventFilter, EventPage, HostModelSummary,
    HostStates, HostSummary, QueryError, ReadApi, SensorState, Trends,
};
use vigil_proto::{Event, HostId};

/// Heartbeat interval assumed for hosts that never said hello.
const DEFAULT_HEARTBEAT_MS: u64 = 10_000;

fn storage(e: StoreError) -> QueryError {
    QueryError::Storage(e.to_string())
}

/// Online within 2 heartbeat intervals, stale up to 10, then offline.
pub fn sensor_state(rec: &HostRecord, now_ns: u64) -> SensorState {
    if rec.revoked_ns.is_some() {
        return SensorState::Revoked;
    }
    let hb_ns = if rec.heartbeat_ms == 0 {
        DEFAULT_HEARTBEAT_MS
    } else {
        rec.heartbeat_ms as u64
    } * 1_000_000;
    let age = now_ns.saturating_sub(rec.last_seen_ns);
    if age <= 2 * hb_ns {
        SensorState::Online
    } else if age <= 10 * hb_ns {
        SensorState::Stale
    } else {
        SensorState::Offline
    }
}

/// Record a trend sample: the events stored since the last one, by their
/// own time, and how many registered sensors are online, stale and
/// offline (revoked ones are not counted).
pub fn sample_trends(core: &Core, now_ns: u64) {
    let mut hosts = HostStates::default();
    for r in core.registry.all() {
        match sensor_state(&r, now_ns) {
            SensorState::Online => hosts.online += 1,
            SensorState::Stale => hosts.stale += 1,
            SensorState::Offline => hosts.offline += 1,
            SensorState::Revoked => {}
        }
    }
    let stored = core.metrics.stored_by_minute.take();
    if let Err(e) = core.trends.record(&core.db, now_ns, &stored, hosts) {
        // Counted again with the next sample rather than lost.
        core.metrics.stored_by_minute.add(&stored);
        tracing::warn!(error = %e, "trend sample not stored");
    }
}

/// What the console warns about a host: refused or quarantined input by
/// reason, and identity claims another host owns.
pub fn host_warnings(
    flags: &std::collections::BTreeMap<String, u64>,
    conflicts: &[crate::identity::Conflict],
) -> Vec<String> {
    let mut out: Vec<String> = flags
        .iter()
        .map(|(reason, n)| format!("{n} × {reason}"))
        .collect();
    for c in conflicts {
        let what = match &c.claim {
            crate::identity::Claim::Addr(a) => format!("address {a}"),
            crate::identity::Claim::Name(n) => format!("name {n:?}"),
        };
        out.push(format!(
            "claims {what}, which host {} owns (refused)",
            c.held_by
        ));
    }
    out
}

/// Build the summary the UI shows for one host.
pub fn summarize(
    rec: &HostRecord,
    counts: &HostCounts,
    open_alerts: u32,
    now_ns: u64,
) -> HostSummary {
    HostSummary {
        id: HostId(rec.id),
        hostname: rec.hostname.clone(),
        os: rec.os.clone(),
        addrs: rec.addrs.clone(),
        sensor_version: rec.sensor_version.clone(),
        enrolled_ns: rec.enrolled_ns,
        last_seen_ns: rec.last_seen_ns,
        state: sensor_state(rec, now_ns),
        cpu_pct: rec.cpu_pct,
        rss_bytes: rec.rss_bytes,
        events_total: counts.events_total,
        lost_total: counts.lost_total,
        isolated: rec.isolated,
        open_alerts,
        warnings: Vec::new(),
    }
}

/// The store seen through [`ReadApi`].
#[derive(Clone)]
pub struct StoreReader {
    core: Arc<Core>,
}

impl StoreReader {
    /// Read from this appliance.
    pub fn new(core: Arc<Core>) -> Self {
        StoreReader { core }
    }

    /// The console's warnings about one host (see [`host_warnings`]).
    fn warnings(&self, host: HostId) -> Result<Vec<String>, QueryError> {
        let conflicts = self.core.db.identity_conflicts(host).map_err(storage)?;
        Ok(host_warnings(
            &self.core.metrics.host_flags.of(host),
            &conflicts,
        ))
    }

    /// Open alerts per host on their path, suppressed ones left out (as
    /// every list shows them).
    fn open_alerts_by_host(&self) -> Result<HashMap<HostId, u32>, QueryError> {
        let alerts = self
            .core
            .db
            .alerts_seen(
                &AlertFilter {
                    open_only: true,
                    limit: usize::MAX,
                    ..AlertFilter::default()
                },
                (self.core.clock)(),
            )
            .map_err(storage)?;
        let mut by_host = HashMap::new();
        for a in alerts.iter().filter(|a| alert_is_open(a)) {
            for h in &a.path {
                *by_host.entry(*h).or_insert(0) += 1;
            }
        }
        Ok(by_host)
    }
}

impl ReadApi for StoreReader {
    fn hosts(&self) -> Result<Vec<HostSummary>, QueryError> {
        let now = (self.core.clock)();
        let open = self.open_alerts_by_host()?;
        self.core
            .registry
            .all()
            .iter()
            .map(|r| {
                let counts = self.core.db.host_counts(HostId(r.id)).map_err(storage)?;
                let n = open.get(&HostId(r.id)).copied().unwrap_or(0);
                let mut h = summarize(r, &counts, n, now);
                h.warnings = self.warnings(h.id)?;
                Ok(h)
            })
            .collect()
    }

    fn host(&self, id: HostId) -> Result<HostSummary, QueryError> {
        let rec = self
            .core
            .registry
            .get(id)
            .ok_or_else(|| QueryError::NotFound(format!("host {id}")))?;
        let counts = self.core.db.host_counts(id).map_err(storage)?;
        let open = self.open_alerts_by_host()?.get(&id).copied().unwrap_or(0);
        let mut h = summarize(&rec, &counts, open, (self.core.clock)());
        h.warnings = self.warnings(id)?;
        Ok(h)
    }

    fn events(&self, filter: &EventFilter) -> Result<EventPage, QueryError> {
        if let (Some(s), Some(u)) = (filter.since_ns, filter.until_ns) {
            if s > u {
                return Err(QueryError::Invalid("since is after until".into()));
            }
        }
        self.core.db.events(filter).map_err(storage)
    }

    fn event(&self, host: HostId, seq: u64) -> Result<Event, QueryError> {
        self.core
            .db
            .event(host, seq)
            .map_err(storage)?
            .ok_or_else(|| QueryError::NotFound(format!("event {host}/{seq}")))
    }

    fn alerts(&self, filter: &AlertFilter) -> Result<Vec<AlertRecord>, QueryError> {
        self.core
            .db
            .alerts_seen(filter, (self.core.clock)())
            .map_err(storage)
    }

    /// One alert, whether or not a suppression hides it (`suppressed_by`
    /// names the one that does): suppressed alerts stay retrievable.
    fn alert(&self, id: u64) -> Result<AlertRecord, QueryError> {
        let mut a = self
            .core
            .db
            .alert(id)
            .map_err(storage)?
            .ok_or_else(|| QueryError::NotFound(format!("alert {id}")))?;
        let rules = self.core.db.suppressions().map_err(storage)?;
        vigil_proto::suppress::mark(&mut a, &rules, (self.core.clock)());
        Ok(a)
    }

    fn trends(&self, since_ns: u64, until_ns: u64, bucket_ns: u64) -> Result<Trends, QueryError> {
        self.core
            .trends
            .trends(&self.core.db, since_ns, until_ns, bucket_ns)
            .map_err(storage)
    }

    fn edges(&self, since_ns: u64) -> Result<Vec<EdgeRecord>, QueryError> {
        self.core.db.edges(since_ns).map_err(storage)
    }

    fn host_model(&self, host: HostId) -> Result<Option<HostModelSummary>, QueryError> {
        Ok(self
            .core
            .models
            .host(host)
            .map(|(m, learning_period_ns)| HostModelSummary {
                active: m.phase == vigil_models::HostPhase::Active,
                first_seen_ns: m.first_seen_ns,
                learning_period_ns,
                version: m.version,
                sha256: m.sha256,
                trained_window_ns: m.trained_window_ns,
                hop_threshold: m.hop_threshold,
                model_bytes: m.model_bytes as u64,
            }))
    }

    fn stats(&self) -> Result<ApplianceStats, QueryError> {
        let mut stats = ApplianceStats::default();
        for r in self.core.registry.all() {
            let c = self.core.db.host_counts(HostId(r.id)).map_err(storage)?;
            stats.events_total = stats.events_total.saturating_add(c.events_total);
            stats.duplicates_total = stats.duplicates_total.saturating_add(c.duplicates_total);
            stats.lost_total = stats.lost_total.saturating_add(c.lost_total);
        }
        let m = &self.core.metrics;
        stats.events_per_s = m.events_per_s();
        stats.rejected_frames_total = m.rejected_frames.total();
        let store = self.core.db.store();
        stats.bytes_on_disk = store.total_bytes();
        let policy = self.core.db.retention().map_err(storage)?;
        stats.retention_days = policy.max_age_days;
        stats.retention_bytes = policy.max_bytes;
        let snap = m.snapshot();
        let mut counters = vec![
            ("events_ingested".to_owned(), snap.events_ingested),
            ("duplicates".to_owned(), snap.duplicates),
            ("batches_acked".to_owned(), snap.batches_acked),
            ("bytes_received".to_owned(), snap.bytes_received),
            ("loss_records".to_owned(), snap.loss_records),
            ("events_lost".to_owned(), snap.events_lost),
            ("heartbeats".to_owned(), snap.heartbeats),
            ("enrollments".to_owned(), snap.enrollments),
            ("connections_open".to_owned(), snap.connections_open),
            ("write_errors".to_owned(), snap.write_errors),
            (
                "write_latency_mean_us".to_owned(),
                snap.write_latency_mean_us,
            ),
            (
                "events_bytes_on_disk".to_owned(),
                store.size_bytes(Cf::Events) + store.size_bytes(Cf::SeqIndex),
            ),
            ("detection_events".to_owned(), snap.detection_events),
            ("alerts_written".to_owned(), snap.alerts_written),
            ("detection_errors".to_owned(), snap.detection_errors),
            ("alerts_on_old_events".to_owned(), snap.alerts_on_old_events),
        ];
        for (name, p99) in [
            ("alert_latency_p99_ms", snap.alert_latency_p99_ms),
            ("incident_latency_p99_ms", snap.incident_latency_p99_ms),
        ] {
            if let Some(ms) = p99 {
                counters.push((name.to_owned(), ms));
            }
        }
        for (name, map) in [
            ("rejected_frames", &snap.rejected_frames),
            ("handshake_rejects", &snap.handshake_rejects),
            ("enroll_refused", &snap.enroll_refused),
            ("quarantined", &snap.quarantined),
        ] {
            for (reason, n) in map {
                counters.push((format!("{name}{{reason=\"{reason}\"}}"), *n));
            }
        }
        stats.counters = counters;
        Ok(stats)
    }
}
