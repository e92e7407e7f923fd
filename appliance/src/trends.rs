//! The samples behind [`vigil_proto::query::ReadApi::trends`]: once a
//! minute the retention task records the ingest counter and how many
//! sensors are online, stale and offline; the console's charts read them
//! back per bucket.
//!
//! Points are kept in the store (`db::trends`), so the history survives a
//! restart: one point per minute for [`MINUTE_KEEP_NS`] (a day, 1,440
//! points) and one per hour for [`HOUR_KEEP_NS`] (30 days, 720 points),
//! each holding the events stored during its bucket (the counter's growth
//! since the previous sample), never the counter itself, which starts at
//! zero with every process. Buckets nothing was recorded for read `None`
//! (the appliance was not running), rather than a guess.

use std::sync::Mutex;

use crate::db::trends::{point_key, point_start, TrendPoint, HOUR_PREFIX, MINUTE_PREFIX};
use crate::db::{decode, encode, Db};
use crate::store::{Cf, Direction, StoreError, Visit, WriteBatch};
use vigil_proto::query::{HostStates, Trends};

const MINUTE: u64 = 60 * 1_000_000_000;
const HOUR: u64 = 60 * MINUTE;
/// Time between two samples.
pub const SAMPLE_EVERY_NS: u64 = MINUTE;
/// How long per-minute points are kept.
pub const MINUTE_KEEP_NS: u64 = 24 * HOUR;
/// How long per-hour points are kept.
pub const HOUR_KEEP_NS: u64 = 30 * 24 * HOUR;

/// The last sample this process recorded.
#[derive(Debug, Default, Clone, Copy)]
struct Last {
    ts_ns: u64,
    /// `Metrics::events_ingested` then (0 before the first sample: the
    /// counter starts at zero with the process).
    events: u64,
}

/// The appliance's trend book (time passed in; no clock here). Writes
/// come from one task; the store is the only state that outlives it.
#[derive(Debug, Default)]
pub struct TrendBook {
    last: Mutex<Option<Last>>,
}

impl TrendBook {
    fn last(&self) -> std::sync::MutexGuard<'_, Option<Last>> {
        // A panic while holding the lock leaves a whole value behind: keep going.
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a sample is due at `now_ns`.
    pub fn due(&self, now_ns: u64) -> bool {
        self.last()
            .is_none_or(|s| now_ns >= s.ts_ns.saturating_add(SAMPLE_EVERY_NS))
    }

    /// Record the ingest counter and sensor states at `now_ns` into the
    /// minute and hour points holding it, and drop points past their
    /// horizon, in one write. A clock that went back is ignored.
    pub fn record(
        &self,
        db: &Db,
        now_ns: u64,
        events_ingested: u64,
        hosts: HostStates,
    ) -> Result<(), StoreError> {
        let mut last = self.last();
        let prev = last.unwrap_or_default();
        if last.is_some() && now_ns <= prev.ts_ns {
            return Ok(());
        }
        let events = events_ingested.saturating_sub(prev.events);
        let mut batch = WriteBatch::default();
        for (prefix, width) in [(MINUTE_PREFIX, MINUTE), (HOUR_PREFIX, HOUR)] {
            let key = point_key(prefix, now_ns - now_ns % width);
            let mut point: TrendPoint = db.record(Cf::Meta, &key)?.unwrap_or_default();
            point.events = point.events.saturating_add(events);
            point.hosts = hosts;
            point.samples = point.samples.saturating_add(1);
            batch.put(Cf::Meta, key, encode(&point));
        }
        for (prefix, keep) in [(MINUTE_PREFIX, MINUTE_KEEP_NS), (HOUR_PREFIX, HOUR_KEEP_NS)] {
            for (key, _) in points(db, prefix, 0, now_ns.saturating_sub(keep))? {
                batch.delete(Cf::Meta, key);
            }
        }
        // Not synced: losing the last minute to a crash costs one point.
        db.store().write(batch, false)?;
        *last = Some(Last {
            ts_ns: now_ns,
            events: events_ingested,
        });
        Ok(())
    }

    /// Events stored per bucket and sensor states at each bucket's last
    /// sample, summed from the minute points where they are kept and from
    /// the hour points before that (each point counted in the bucket its
    /// start falls in).
    pub fn trends(
        &self,
        db: &Db,
        since_ns: u64,
        until_ns: u64,
        bucket_ns: u64,
    ) -> Result<Trends, StoreError> {
        let n = if bucket_ns == 0 {
            0
        } else {
            until_ns
                .saturating_sub(since_ns)
                .div_ceil(bucket_ns)
                .min(10_000) as usize
        };
        let mut t = Trends::unknown(since_ns, bucket_ns, n);
        if n == 0 {
            return Ok(t);
        }
        let end = since_ns.saturating_add(n as u64 * bucket_ns);
        let minutes = points(db, MINUTE_PREFIX, since_ns, end)?;
        // Minute points cover everything from the oldest one kept (every
        // sample writes both kinds); hour points what lies before it. The
        // hour holding that boundary counts only what its minutes no
        // longer show.
        let minute_from = oldest(db, MINUTE_PREFIX)?.unwrap_or(u64::MAX);
        let hours = if since_ns < minute_from {
            points(db, HOUR_PREFIX, since_ns, end.min(minute_from))?
        } else {
            Vec::new()
        };
        let mut add = |start: u64, events: u64, hosts: HostStates| {
            if let Some(i) = t.bucket_of(start) {
                t.events[i] = Some(t.events[i].unwrap_or(0).saturating_add(events));
                t.hosts[i] = Some(hosts);
            }
        };
        for (k, p) in &hours {
            let Some(s) = point_start(HOUR_PREFIX, k) else {
                continue;
            };
            if s.saturating_add(HOUR) <= minute_from {
                add(s, p.events, p.hosts);
                continue;
            }
            let shown: u64 = points(db, MINUTE_PREFIX, minute_from, s + HOUR)?
                .iter()
                .map(|(_, m)| m.events)
                .sum();
            let rest = p.events.saturating_sub(shown);
            if rest > 0 {
                add(s, rest, p.hosts);
            }
        }
        for (k, p) in &minutes {
            if let Some(s) = point_start(MINUTE_PREFIX, k) {
                add(s, p.events, p.hosts);
            }
        }
        Ok(t)
    }
}

/// The newest minute point as Prometheus gauges for `/metrics`: sensors
/// per state at the last sample and the events stored per second during
/// its minute (nothing before the first sample).
pub fn prometheus(db: &Db) -> Result<String, StoreError> {
    let newest =
        db.records_with_prefix::<TrendPoint>(Cf::Meta, MINUTE_PREFIX, Direction::Reverse, 1)?;
    let Some((_, p)) = newest.first() else {
        return Ok(String::new());
    };
    let mut out = String::from(
        "# HELP vigil_sensors Sensors per state at the last trend sample.\n\
         # TYPE vigil_sensors gauge\n",
    );
    for (state, n) in [
        ("online", p.hosts.online),
        ("stale", p.hosts.stale),
        ("offline", p.hosts.offline),
    ] {
        out.push_str(&format!("vigil_sensors{{state=\"{state}\"}} {n}\n"));
    }
    out.push_str(&format!(
        "# HELP vigil_trend_events_per_second Events stored per second during the last sampled minute.\n\
         # TYPE vigil_trend_events_per_second gauge\n\
         vigil_trend_events_per_second {}\n",
        p.events as f64 / 60.0
    ));
    Ok(out)
}

/// The points under `prefix` whose bucket starts in `[from, to)`, in time order.
fn points(
    db: &Db,
    prefix: &[u8],
    from: u64,
    to: u64,
) -> Result<Vec<(Vec<u8>, TrendPoint)>, StoreError> {
    let mut out = Vec::new();
    if to <= from {
        return Ok(out);
    }
    let mut err = None;
    let (lo, hi) = (point_key(prefix, from), point_key(prefix, to));
    db.store().scan(
        Cf::Meta,
        &lo,
        Some(hi.as_slice()),
        Direction::Forward,
        &mut |k, v| match decode::<TrendPoint>(Cf::Meta, v) {
            Ok(p) => {
                out.push((k.to_vec(), p));
                Visit::Continue
            }
            Err(e) => {
                err = Some(e);
                Visit::Stop
            }
        },
    )?;
    err.map_or(Ok(out), Err)
}

/// The start of the oldest point under `prefix`.
fn oldest(db: &Db, prefix: &[u8]) -> Result<Option<u64>, StoreError> {
    let first = db.records_with_prefix::<TrendPoint>(Cf::Meta, prefix, Direction::Forward, 1)?;
    Ok(first.first().and_then(|(k, _)| point_start(prefix, k)))
}

#[cfg(test)]
mod tests;
