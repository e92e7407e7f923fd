//! The samples behind [`vigil_proto::query::ReadApi::trends`]: the ingest
//! writer counts every stored event by the minute of its own time
//! ([`EventMinutes`], in the metrics), and once a minute the retention task
//! folds those counts into the store together with how many sensors are
//! online, stale and offline; the console's charts read them back per
//! bucket. Events are placed by when they happened, not when they arrived,
//! so a replayed week charts as a week, not as a spike at load time.
//!
//! Points are kept in the store (`db::trends`), so the history survives a
//! restart: one point per minute for [`MINUTE_KEEP_NS`] (a day, 1,440
//! points) and one per hour for [`HOUR_KEEP_NS`] (30 days, 720 points),
//! each holding the events dated in its bucket (an event older than a
//! point's horizon when it is stored goes only to the points still kept),
//! and, for buckets the appliance sampled, the sensor states. Buckets
//! nothing was recorded for read `None`, rather than a guess.
//!
//! Points written before events were bucketed by their own time counted
//! them by arrival, a different meaning under the same key. Stores carry a
//! format marker ([`TrendFormat`]) since the change; on a store without it
//! the first sample drops every point (counted in the marker and in
//! `/metrics`) before it writes new ones, and until then the trends read
//! as unknown, so no chart ever mixes the two meanings.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::db::trends::{point_key, point_start, TrendPoint, HOUR_PREFIX, MINUTE_PREFIX};
use crate::db::{encode, Db};
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

/// Meta key of the [`TrendFormat`] marker (outside both point prefixes).
pub const FORMAT_KEY: &[u8] = b"trend/format";
/// Points count events by their own time. Format 1 (no marker) counted
/// them by when they were stored.
pub const EVENT_TIME_FORMAT: u32 = 2;

/// What the trend points of a store mean, and what the switch to it cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TrendFormat {
    /// [`EVENT_TIME_FORMAT`] once the store's points are all of that kind.
    pub version: u32,
    /// When the marker was written (the first sample of this format).
    pub since_ns: u64,
    /// Points of the old format dropped then (minute and hour points).
    pub dropped_points: u64,
}

/// The store's marker, if any.
pub fn format(db: &Db) -> Result<Option<TrendFormat>, StoreError> {
    db.record(Cf::Meta, FORMAT_KEY)
}

/// The start of the minute holding `ts_ns`.
pub fn minute_of(ts_ns: u64) -> u64 {
    ts_ns - ts_ns % MINUTE
}

/// Events stored since the last trend sample, counted by the minute of
/// their own time (minute start → events). The ingest writer adds after
/// each durable group commit; the trend sample takes them. Bounded by the
/// minutes ingest accepts (retention horizon to a few minutes ahead).
#[derive(Debug, Default)]
pub struct EventMinutes(Mutex<BTreeMap<u64, u64>>);

impl EventMinutes {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, u64>> {
        // A panic while holding the lock leaves a whole map behind: keep going.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count `counts` (minute start → events) in.
    pub fn add(&self, counts: &BTreeMap<u64, u64>) {
        let mut m = self.lock();
        for (minute, n) in counts {
            let c = m.entry(*minute).or_insert(0);
            *c = c.saturating_add(*n);
        }
    }

    /// Everything counted since the last take.
    pub fn take(&self) -> BTreeMap<u64, u64> {
        std::mem::take(&mut *self.lock())
    }
}

/// The appliance's trend book (time passed in; no clock here). Writes
/// come from one task; the store is the only state that outlives it.
#[derive(Debug, Default)]
pub struct TrendBook {
    /// When this process last sampled.
    last: Mutex<Option<u64>>,
    /// The store's points are known to be of [`EVENT_TIME_FORMAT`].
    current: AtomicBool,
}

impl TrendBook {
    fn last(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        // A panic while holding the lock leaves a whole value behind: keep going.
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the store's points are of [`EVENT_TIME_FORMAT`] (read once,
    /// then remembered).
    fn is_current(&self, db: &Db) -> Result<bool, StoreError> {
        if self.current.load(Ordering::Acquire) {
            return Ok(true);
        }
        let ok = format(db)?.is_some_and(|f| f.version >= EVENT_TIME_FORMAT);
        if ok {
            self.current.store(true, Ordering::Release);
        }
        Ok(ok)
    }

    /// Bring a store without the format marker to [`EVENT_TIME_FORMAT`]:
    /// its points counted events by arrival and cannot be re-dated, so
    /// they are dropped (counted in the marker) in the same write that
    /// sets the marker. Returns how many were dropped.
    pub fn upgrade(&self, db: &Db, now_ns: u64) -> Result<u64, StoreError> {
        if self.is_current(db)? {
            return Ok(0);
        }
        let mut batch = WriteBatch::default();
        let mut dropped = 0u64;
        for prefix in [MINUTE_PREFIX, HOUR_PREFIX] {
            let end = crate::db::keys::prefix_end(prefix);
            // Keys only: an old point need not decode as today's.
            db.store().scan(
                Cf::Meta,
                prefix,
                end.as_deref(),
                Direction::Forward,
                &mut |k, _| {
                    batch.delete(Cf::Meta, k.to_vec());
                    dropped += 1;
                    Visit::Continue
                },
            )?;
        }
        let marker = TrendFormat {
            version: EVENT_TIME_FORMAT,
            since_ns: now_ns,
            dropped_points: dropped,
        };
        batch.put(Cf::Meta, FORMAT_KEY.to_vec(), encode(&marker));
        db.store().write(batch, true)?;
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "trend points from before event-time bucketing dropped (they counted events by arrival time)"
            );
        }
        self.current.store(true, Ordering::Release);
        Ok(dropped)
    }

    /// Whether a sample is due at `now_ns`.
    pub fn due(&self, now_ns: u64) -> bool {
        self.last()
            .is_none_or(|t| now_ns >= t.saturating_add(SAMPLE_EVERY_NS))
    }

    /// Add `stored` (events by the minute of their own time, from
    /// [`EventMinutes::take`]) to the minute and hour points holding them,
    /// record the sensor states in the points holding `now_ns`, and drop
    /// points past their horizon, in one write. Minutes past a horizon
    /// count only where points are still kept. A clock that went back
    /// records no sensor states (the events are still counted).
    pub fn record(
        &self,
        db: &Db,
        now_ns: u64,
        stored: &BTreeMap<u64, u64>,
        hosts: HostStates,
    ) -> Result<(), StoreError> {
        // Before anything is read back into a point: old points must not
        // take new counts.
        self.upgrade(db, now_ns)?;
        let mut last = self.last();
        let sample = last.is_none_or(|t| now_ns > t);
        let mut touched: BTreeMap<Vec<u8>, TrendPoint> = BTreeMap::new();
        let kept = [
            (MINUTE_PREFIX, MINUTE, MINUTE_KEEP_NS),
            (HOUR_PREFIX, HOUR, HOUR_KEEP_NS),
        ];
        for (prefix, width, keep) in kept {
            let horizon = now_ns.saturating_sub(keep);
            for (minute, n) in stored.range(horizon - horizon % width..) {
                let start = minute - minute % width;
                if start >= horizon {
                    let p = point_mut(db, &mut touched, point_key(prefix, start))?;
                    p.events = p.events.saturating_add(*n);
                }
            }
            if sample {
                let p = point_mut(db, &mut touched, point_key(prefix, now_ns - now_ns % width))?;
                p.hosts = hosts;
                p.samples = p.samples.saturating_add(1);
            }
        }
        let mut batch = WriteBatch::default();
        for (key, p) in touched {
            batch.put(Cf::Meta, key, encode(&p));
        }
        for (prefix, _, keep) in kept {
            for (key, _) in points(db, prefix, 0, now_ns.saturating_sub(keep))? {
                batch.delete(Cf::Meta, key);
            }
        }
        // Not synced: losing the last minute to a crash costs one point.
        db.store().write(batch, false)?;
        if sample {
            *last = Some(now_ns);
        }
        Ok(())
    }

    /// Events dated in each bucket and sensor states at each bucket's last
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
        // Until the first sample upgrades the store, its points may count
        // events by arrival: nothing is known rather than a mix.
        if n == 0 || !self.is_current(db)? {
            return Ok(t);
        }
        let end = since_ns.saturating_add(n as u64 * bucket_ns);
        let minutes = points(db, MINUTE_PREFIX, since_ns, end)?;
        // Minute points cover everything from the oldest one kept (an
        // event counted in a minute point is counted in its hour point
        // too); hour points what lies before it. The
        // hour holding that boundary counts only what its minutes no
        // longer show.
        let minute_from = oldest(db, MINUTE_PREFIX)?.unwrap_or(u64::MAX);
        let hours = if since_ns < minute_from {
            points(db, HOUR_PREFIX, since_ns, end.min(minute_from))?
        } else {
            Vec::new()
        };
        let mut add = |start: u64, events: u64, p: &TrendPoint| {
            if let Some(i) = t.bucket_of(start) {
                t.events[i] = Some(t.events[i].unwrap_or(0).saturating_add(events));
                // Only a sample knows the sensors; a point holding events
                // alone (a replayed past) says nothing about them.
                if p.samples > 0 {
                    t.hosts[i] = Some(p.hosts);
                }
            }
        };
        for (k, p) in &hours {
            let Some(s) = point_start(HOUR_PREFIX, k) else {
                continue;
            };
            if s.saturating_add(HOUR) <= minute_from {
                add(s, p.events, p);
                continue;
            }
            let shown: u64 = points(db, MINUTE_PREFIX, minute_from, s + HOUR)?
                .iter()
                .map(|(_, m)| m.events)
                .sum();
            let rest = p.events.saturating_sub(shown);
            if rest > 0 {
                add(s, rest, p);
            }
        }
        for (k, p) in &minutes {
            if let Some(s) = point_start(MINUTE_PREFIX, k) {
                add(s, p.events, p);
            }
        }
        Ok(t)
    }
}

/// Where a sample wrote, as Prometheus gauges for `/metrics`: sensors per
/// state at the last sample and the events per second dated in the whole
/// minute before it (nothing before the first sample).
pub fn prometheus(db: &Db) -> Result<String, StoreError> {
    let Some(marker) = format(db)?.filter(|f| f.version >= EVENT_TIME_FORMAT) else {
        // Not sampled in this format yet: the points may be old ones.
        return Ok(String::new());
    };
    let mut out = format!(
        "# HELP vigil_trend_points_dropped_total Trend points dropped because they counted events by arrival time (stores from before event-time bucketing).\n\
         # TYPE vigil_trend_points_dropped_total counter\n\
         vigil_trend_points_dropped_total {}\n",
        marker.dropped_points
    );
    // The newest points may hold events dated a little ahead and no sample.
    let newest =
        db.records_with_prefix::<TrendPoint>(Cf::Meta, MINUTE_PREFIX, Direction::Reverse, 16)?;
    let Some((key, p)) = newest.iter().find(|(_, p)| p.samples > 0) else {
        return Ok(out);
    };
    let before = point_start(MINUTE_PREFIX, key)
        .and_then(|s| s.checked_sub(MINUTE))
        .map(|s| db.record::<TrendPoint>(Cf::Meta, &point_key(MINUTE_PREFIX, s)))
        .transpose()?
        .flatten()
        .unwrap_or_default();
    out.push_str(
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
        "# HELP vigil_trend_events_per_second Events per second dated in the whole minute before the last trend sample.\n\
         # TYPE vigil_trend_events_per_second gauge\n\
         vigil_trend_events_per_second {}\n",
        before.events as f64 / 60.0
    ));
    Ok(out)
}

/// The point under `key`, read from the store the first time it is touched.
fn point_mut<'a>(
    db: &Db,
    touched: &'a mut BTreeMap<Vec<u8>, TrendPoint>,
    key: Vec<u8>,
) -> Result<&'a mut TrendPoint, StoreError> {
    Ok(match touched.entry(key) {
        std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
        std::collections::btree_map::Entry::Vacant(v) => {
            let p = db.record(Cf::Meta, v.key())?.unwrap_or_default();
            v.insert(p)
        }
    })
}

/// The points under `prefix` whose bucket starts in `[from, to)`, in time order.
fn points(
    db: &Db,
    prefix: &[u8],
    from: u64,
    to: u64,
) -> Result<Vec<(Vec<u8>, TrendPoint)>, StoreError> {
    if to <= from {
        return Ok(Vec::new());
    }
    let (lo, hi) = (point_key(prefix, from), point_key(prefix, to));
    db.records_in_range(Cf::Meta, &lo, Some(&hi), Direction::Forward, 0)
}

/// The start of the oldest point under `prefix`.
fn oldest(db: &Db, prefix: &[u8]) -> Result<Option<u64>, StoreError> {
    let first = db.records_with_prefix::<TrendPoint>(Cf::Meta, prefix, Direction::Forward, 1)?;
    Ok(first.first().and_then(|(k, _)| point_start(prefix, k)))
}

#[cfg(test)]
mod tests;
