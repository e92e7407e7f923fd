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
/// Most size-bound rounds per pass (sizes are approximate, so a round may
/// leave a host slightly over its share; the next one corrects it).
const MAX_SIZE_ROUNDS: usize = 4;

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
///
/// The age bound cuts every host at `now - max_age_days`. The byte bound
/// is shared out per host ([`water_level`]): hosts at or under their share
/// keep everything, and each host over it loses only its own oldest events
/// until it is back at the share. So one host's volume or timestamps (a
/// flood, an event dated far in the future) can never push another host's
/// events out.
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
            let cuts = size_cuts(db, &hosts, policy.max_bytes)?;
            if cuts.is_empty() {
                break;
            }
            for (h, cut) in cuts {
                cut_before(db, &[h], cut)?;
                cutoff = cutoff.max(cut);
            }
        }
    }
    // Quarantined events are bounded per host too (a sensor that dates
    // everything in the future must not fill the disk through them).
    db.trim_quarantine(crate::db::quarantine::MAX_PER_HOST)?;
    let run = RetentionRun {
        ran_ns: now_ns,
        cutoff_ns: cutoff,
        bytes_before,
        bytes_after: events_bytes(db),
    };
    db.put_retention_run(&run)?;
    Ok(run)
}

/// The per-host share of `budget` bytes ("water filling"): the largest
/// level `q` with `sum(min(size, q)) <= budget`. Hosts at or under `q`
/// keep everything; `u64::MAX` when everything fits.
pub fn water_level(sizes: &[u64], budget: u64) -> u64 {
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable();
    let mut left = budget;
    for (i, &s) in sorted.iter().enumerate() {
        let hosts_left = (sorted.len() - i) as u64;
        if s.saturating_mul(hosts_left) <= left {
            left -= s;
        } else {
            return left / hosts_left;
        }
    }
    u64::MAX
}

/// Bytes a host's events occupy from `from_ts` on.
fn event_bytes_from(db: &Db, host: HostId, from_ts: u64) -> u64 {
    db.store()
        .approx_range_bytes(Cf::Events, &event_key(host, from_ts, 0), &host_end(host))
}

/// Bytes a host's events and their seq index occupy.
fn host_bytes(db: &Db, host: HostId) -> u64 {
    event_bytes_from(db, host, 0)
        + db.store()
            .approx_range_bytes(Cf::SeqIndex, &host_prefix(host), &host_end(host))
}

/// For each host over its share of `budget`: the earliest timestamp to
/// keep so that it fits its share again (its oldest events go first).
fn size_cuts(db: &Db, hosts: &[HostId], budget: u64) -> Result<Vec<(HostId, u64)>, StoreError> {
    db.store().flush()?;
    let sizes: Vec<u64> = hosts.iter().map(|&h| host_bytes(db, h)).collect();
    let level = water_level(&sizes, budget);
    let mut cuts = Vec::new();
    for (&h, &size) in hosts.iter().zip(&sizes) {
        if size <= level {
            continue;
        }
        let Some(oldest) = db.oldest_event_ts(h)? else {
            continue;
        };
        let newest = newest_event_ts(db, h)?.unwrap_or(oldest);
        // The seq index shrinks with the events it points at: keep the
        // events' part of the share in proportion.
        let events_all = event_bytes_from(db, h, 0);
        let target = (level as u128 * events_all as u128 / size.max(1) as u128) as u64;
        let cut = earliest_fitting_cut(oldest, newest, |t| event_bytes_from(db, h, t) <= target);
        if cut > oldest {
            cuts.push((h, cut));
        }
    }
    Ok(cuts)
}

/// Smallest `t` in `(oldest, newest + 1]` with `fits(t)` (bytes from `t`
/// on shrink as `t` grows); at least one step past `oldest` so a round
/// always makes progress on a host over its share.
fn earliest_fitting_cut(oldest: u64, newest: u64, fits: impl Fn(u64) -> bool) -> u64 {
    let (mut lo, mut hi) = (oldest.saturating_add(1), newest.saturating_add(1));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
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
            _ = shutdown.wait() => {
                // Events stored since the last sample are only counted in
                // memory: fold them into the trend points before exiting.
                crate::read::sample_trends(&core, (core.clock)());
                break;
            }
            _ = rate.tick() => {
                let now = (core.clock)();
                sample_rate(&core.metrics, &mut last, now);
                if core.trends.due(now) {
                    crate::read::sample_trends(&core, now);
                }
            }
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

    #[test]
    fn a_far_future_event_on_one_host_never_deletes_another_hosts_events() {
        // The attack: one hostile sensor stores an event dated near u64::MAX.
        // A shared time cut would step past every real event of every host.
        let db = Db::new(Arc::new(MemoryStore::new()));
        fill(&db, HostId(1), 1_000..1_100);
        fill(&db, HostId(2), (1_000..1_400).chain([u64::MAX - 1]));
        let before = events_bytes(&db);
        apply(
            &db,
            &RetentionPolicy {
                max_age_days: 0,
                max_bytes: before * 3 / 4,
            },
            2_000,
        )
        .unwrap();
        assert_eq!(
            db.count_events(HostId(1)).unwrap(),
            100,
            "victim lost events"
        );
        assert!(
            db.count_events(HostId(2)).unwrap() < 401,
            "the flood was cut"
        );
    }

    #[test]
    fn water_level_shares_the_budget() {
        assert_eq!(water_level(&[10, 10], 100), u64::MAX);
        assert_eq!(water_level(&[10, 100], 60), 50);
        assert_eq!(water_level(&[10, 100, 100], 70), 30);
        assert_eq!(water_level(&[], 10), u64::MAX);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever timestamps and volumes hosts send, a host at or under
        /// its share of the byte bound loses nothing, and a host over it
        /// loses only its own oldest events.
        #[test]
        fn no_host_loses_events_within_its_share_because_of_another(
            hosts in proptest::collection::vec(
                proptest::collection::vec(proptest::prelude::any::<u64>(), 1..120),
                2..6,
            ),
            budget_pct in 5u64..100,
        ) {
            let db = Db::new(Arc::new(MemoryStore::new()));
            for (i, ts) in hosts.iter().enumerate() {
                fill(&db, HostId(i as u64 + 1), ts.iter().copied());
            }
            let ids: Vec<HostId> = (1..=hosts.len() as u64).map(HostId).collect();
            let sizes: Vec<u64> = ids.iter().map(|&h| host_bytes(&db, h)).collect();
            let budget = events_bytes(&db) * budget_pct / 100;
            let level = water_level(&sizes, budget);
            let before: Vec<Vec<u64>> = ids
                .iter()
                .map(|&h| db.stored_seqs(h).unwrap())
                .collect();
            apply(&db, &RetentionPolicy { max_age_days: 0, max_bytes: budget }, 0).unwrap();
            for (i, &h) in ids.iter().enumerate() {
                let after = db.stored_seqs(h).unwrap();
                if sizes[i] <= level {
                    proptest::prop_assert_eq!(&after, &before[i], "host {} under its share lost events", h);
                }
                // Whatever was kept is the host's newest: nothing kept is
                // older than something deleted.
                let mut ts: Vec<(u64, u64)> = hosts[i].iter().enumerate()
                    .map(|(j, t)| (*t, j as u64 + 1)).collect();
                ts.sort_unstable();
                let kept: std::collections::HashSet<u64> = after.iter().copied().collect();
                let first_kept = ts.iter().position(|(_, s)| kept.contains(s)).unwrap_or(ts.len());
                proptest::prop_assert!(ts[first_kept..].iter().all(|(_, s)| kept.contains(s)));
            }
        }
    }

    #[test]
    fn quarantine_is_trimmed_per_host_to_its_newest_records() {
        use crate::db::quarantine::{put, QuarantineReason, QuarantineRecord};
        let db = Db::new(Arc::new(MemoryStore::new()));
        let mut wb = WriteBatch::default();
        for (host, n) in [(HostId(1), 30u64), (HostId(2), 5)] {
            for seq in 1..=n {
                let rec = QuarantineRecord {
                    reason: QuarantineReason::FutureTimestamp,
                    ts_ns: u64::MAX,
                    payload: vec![],
                };
                put(&mut wb, host, seq, &rec);
            }
        }
        db.store().write(wb, false).unwrap();
        assert_eq!(db.trim_quarantine(10).unwrap(), 20);
        let kept: Vec<u64> = db
            .quarantined(HostId(1), 100)
            .unwrap()
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(kept, (21..=30).collect::<Vec<_>>(), "the newest are kept");
        assert_eq!(
            db.quarantined(HostId(2), 100).unwrap().len(),
            5,
            "another host untouched"
        );
    }
}
