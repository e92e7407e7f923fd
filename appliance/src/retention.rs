//! Retention: delete events older than the age bound, then the oldest
//! events until the events column families fit the byte bound; range
//! deletes per host followed by compaction so the space is really freed.

use crate::core::Core;
use crate::db::keys::{event_key, health_key, host_end, host_prefix};
use crate::db::{Db, RetentionPolicy, RetentionRun};
use crate::internal_events::{InternalEvent, RetentionApplied};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::store::{Cf, Direction, StoreError, Visit};
use std::sync::Arc;
use std::time::Duration;
use vigil_proto::HostId;

const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;
/// Most size-bound rounds per pass (each drops about a quarter of the remaining time span).
const MAX_SIZE_ROUNDS: usize = 16;

fn events_bytes(db: &Db) -> u64 {
    db.store().size_bytes(Cf::Events) + db.store().size_bytes(Cf::SeqIndex)
}

fn hosts_with_events(db: &Db) -> Result<Vec<HostId>, StoreError> {
    let mut hosts = Vec::new();
    let mut from = host_prefix(HostId(0)).to_vec();
    loop {
        let mut found = None;
        db.store()
            .scan(Cf::Events, &from, None, Direction::Forward, &mut |k, _| {
                found = crate::db::keys::parse_event_key(k).map(|(h, _, _)| h);
                Visit::Stop
            })?;
        let Some(h) = found else { break };
        hosts.push(h);
        from = host_end(h);
        if from.len() > 8 {
            break;
        }
    }
    Ok(hosts)
}

fn newest_event_ts(db: &Db, host: HostId) -> Result<Option<u64>, StoreError> {
    let mut ts = None;
    db.store().scan(
        Cf::Events,
        &host_prefix(host),
        Some(&host_end(host)),
        Direction::Reverse,
        &mut |k, _| {
            ts = crate::db::keys::parse_event_key(k).map(|(_, t, _)| t);
            Visit::Stop
        },
    )?;
    Ok(ts)
}

fn cut_before(db: &Db, hosts: &[HostId], cutoff_ns: u64) -> Result<(), StoreError> {
    for &h in hosts {
        if db.oldest_event_ts(h)?.is_some_and(|t| t < cutoff_ns) {
            db.delete_events_before(h, cutoff_ns)?;
            db.store().compact(
                Cf::Events,
                Some(&event_key(h, 0, 0)),
                Some(&event_key(h, cutoff_ns, 0)),
            )?;
            db.store()
                .delete_range(Cf::Hosts, &health_key(h, 0), &health_key(h, cutoff_ns))?;
        }
    }
    db.store().compact(Cf::SeqIndex, None, None)
}

/// Apply `policy` once at time `now_ns`; returns what was done.
pub fn apply(db: &Db, policy: &RetentionPolicy, now_ns: u64) -> Result<RetentionRun, StoreError> {
    let hosts = hosts_with_events(db)?;
    let bytes_before = events_bytes(db);
    let mut cutoff = 0;
    if policy.max_age_days > 0 {
        let age_cut = now_ns.saturating_sub(policy.max_age_days as u64 * NS_PER_DAY);
        if age_cut > 0 {
            cut_before(db, &hosts, age_cut)?;
            cutoff = age_cut;
        }
    }
    if policy.max_bytes > 0 {
        for _ in 0..MAX_SIZE_ROUNDS {
            if events_bytes(db) <= policy.max_bytes {
                break;
            }
            let mut oldest = u64::MAX;
            let mut newest = 0;
            for &h in &hosts {
                if let Some(t) = db.oldest_event_ts(h)? {
                    oldest = oldest.min(t);
                }
                if let Some(t) = newest_event_ts(db, h)? {
                    newest = newest.max(t);
                }
            }
            if oldest == u64::MAX {
                break;
            }
            let step = (newest.saturating_sub(oldest) / 4).max(1);
            let size_cut = oldest.saturating_add(step);
            cut_before(db, &hosts, size_cut)?;
            cutoff = cutoff.max(size_cut);
        }
    }
    let run = RetentionRun {
        ran_ns: now_ns,
        cutoff_ns: cutoff,
        bytes_before,
        bytes_after: events_bytes(db),
    };
    db.put_retention_run(&run)?;
    Ok(run)
}

/// Background task: apply the policy every `interval`, and sample the
/// ingest rate for the overview, until shutdown.
pub async fn run(core: Arc<Core>, interval: Duration, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rate = tokio::time::interval(Duration::from_secs(5));
    let mut last = (0u64, (core.clock)());
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = rate.tick() => sample_rate(&core.metrics, &mut last, (core.clock)()),
            _ = tick.tick() => {
                let c = core.clone();
                let done = tokio::task::spawn_blocking(move || {
                    let policy = c.db.retention()?;
                    apply(&c.db, &policy, (c.clock)())
                })
                .await;
                match done {
                    Ok(Ok(run)) => RetentionApplied {
                        cutoff_ns: run.cutoff_ns,
                        bytes_before: run.bytes_before,
                        bytes_after: run.bytes_after,
                    }
                    .emit(&core.metrics),
                    Ok(Err(e)) => tracing::error!(error = %e, "retention failed"),
                    Err(e) => tracing::error!(error = %e, "retention task panicked"),
                }
            }
        }
    }
}

fn sample_rate(m: &Metrics, last: &mut (u64, u64), now_ns: u64) {
    let n = m.events_ingested.load(std::sync::atomic::Ordering::Relaxed);
    let dt = now_ns.saturating_sub(last.1);
    if dt > 0 {
        m.set_events_per_s((n - last.0) as f64 * 1e9 / dt as f64);
    }
    *last = (n, now_ns);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::encode;
    use crate::store::memory::MemoryStore;
    use crate::store::WriteBatch;

    fn fill(db: &Db, host: HostId, ts: impl Iterator<Item = u64>) {
        let mut wb = WriteBatch::default();
        for (i, t) in ts.enumerate() {
            let seq = i as u64 + 1;
            wb.put(Cf::Events, event_key(host, t, seq), vec![0u8; 100]);
            wb.put(
                Cf::SeqIndex,
                crate::db::keys::seq_key(host, seq),
                encode(&t),
            );
        }
        db.store().write(wb, false).unwrap();
    }

    #[test]
    fn age_bound_deletes_only_old_events() {
        let db = Db::new(Arc::new(MemoryStore::new()));
        let now = 100 * NS_PER_DAY;
        fill(&db, HostId(1), (0..10).map(|d| now - d * NS_PER_DAY));
        let run = apply(
            &db,
            &RetentionPolicy {
                max_age_days: 5,
                max_bytes: 0,
            },
            now,
        )
        .unwrap();
        assert_eq!(run.cutoff_ns, now - 5 * NS_PER_DAY);
        // days 0..=5 ago survive (the one exactly 5 days old is at the cutoff).
        assert_eq!(db.count_events(HostId(1)).unwrap(), 6);
        assert!(db.event(HostId(1), 10).unwrap().is_none());
        assert!(db.event(HostId(1), 1).unwrap().is_some());
    }

    #[test]
    fn byte_bound_deletes_the_oldest_first() {
        let db = Db::new(Arc::new(MemoryStore::new()));
        fill(&db, HostId(1), 1_000..2_000);
        fill(&db, HostId(2), 1_500..2_500);
        let before = events_bytes(&db);
        let run = apply(
            &db,
            &RetentionPolicy {
                max_age_days: 0,
                max_bytes: before / 2,
            },
            3_000,
        )
        .unwrap();
        assert!(run.bytes_after <= before / 2, "{run:?}");
        assert!(db.oldest_event_ts(HostId(1)).unwrap().unwrap_or(u64::MAX) > 1_000);
        assert_eq!(newest_event_ts(&db, HostId(2)).unwrap(), Some(2_499));
    }
}
