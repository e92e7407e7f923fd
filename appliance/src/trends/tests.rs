use super::*;
use crate::store::memory::MemoryStore;
use crate::store::rocks::RocksStore;
use std::sync::Arc;

fn states(online: u64) -> HostStates {
    HostStates {
        online,
        stale: 1,
        offline: 2,
    }
}

fn memory_db() -> Db {
    Db::new(Arc::new(MemoryStore::new()))
}

/// `n` events in each of the given minutes.
fn minutes(starts: impl IntoIterator<Item = u64>, n: u64) -> BTreeMap<u64, u64> {
    starts.into_iter().map(|m| (minute_of(m), n)).collect()
}

#[test]
fn buckets_count_the_events_dated_in_them() {
    let (db, book) = (memory_db(), TrendBook::default());
    let t0 = 1_000 * MINUTE;
    assert!(book.due(t0));
    for m in 0..120 {
        let now = t0 + m * MINUTE;
        // What the writer stored during the minute before this sample.
        let stored = minutes((m > 0).then(|| now - MINUTE), 600);
        book.record(&db, now, &stored, states(m)).unwrap();
    }
    assert!(!book.due(t0 + 119 * MINUTE + 1));
    let t = book
        .trends(&db, t0 - 60 * MINUTE, t0 + 120 * MINUTE, 60 * MINUTE)
        .unwrap();
    assert_eq!(t.events, vec![None, Some(60 * 600), Some(59 * 600)]);
    assert_eq!(t.hosts[2], Some(states(119)));
    let total: u64 = t.events.iter().flatten().sum();
    assert_eq!(total, 119 * 600, "buckets add up to the events stored");
}

/// A replayed history lands where it happened, not when it arrived; the
/// hours it covers know nothing of the sensors then.
#[test]
fn a_replayed_past_is_charted_at_its_own_time() {
    let (db, book) = (memory_db(), TrendBook::default());
    let now = 5_000 * HOUR + 30 * MINUTE;
    // Three days, 10 events a minute, all stored in one go.
    let history = minutes(
        (0..3 * 24 * 60).map(|m| now - 3 * 24 * HOUR + m * MINUTE),
        10,
    );
    book.record(&db, now, &history, states(88)).unwrap();
    let since = now - now % HOUR - 3 * 24 * HOUR;
    let t = book
        .trends(&db, since, now - now % HOUR + HOUR, HOUR)
        .unwrap();
    assert_eq!(t.len(), 3 * 24 + 1);
    let total: u64 = t.events.iter().flatten().sum();
    assert_eq!(total, 3 * 24 * 60 * 10, "every replayed event plotted once");
    assert!(
        t.events[1..72].iter().all(|e| *e == Some(600)),
        "{:?}",
        t.events
    );
    assert_eq!(t.hosts[..72], vec![None; 72][..], "no sample then");
    assert_eq!(t.hosts[72], Some(states(88)));
    // Per minute over the last day: only minute points, same events.
    let day = book.trends(&db, now - 24 * HOUR, now, MINUTE).unwrap();
    assert_eq!(day.events.iter().flatten().sum::<u64>(), 24 * 60 * 10);
}

#[test]
fn old_points_go_and_clocks_going_back_record_no_sample() {
    let (db, book) = (memory_db(), TrendBook::default());
    let t0 = 100 * HOUR;
    book.record(&db, t0, &minutes([t0], 1), states(1)).unwrap();
    book.record(
        &db,
        t0 - 5 * MINUTE,
        &minutes([t0 - 5 * MINUTE], 2),
        states(2),
    )
    .unwrap();
    let t = book.trends(&db, t0 - HOUR, t0 + HOUR, HOUR).unwrap();
    assert_eq!(
        t.events,
        vec![Some(2), Some(1)],
        "events count, whatever the clock"
    );
    assert_eq!(t.hosts[0], None, "the clock went back: no sample");
    let later = t0 + HOUR_KEEP_NS + HOUR;
    book.record(&db, later, &minutes([later, t0], 3), states(3))
        .unwrap();
    let kept = |prefix| points(&db, prefix, 0, u64::MAX).unwrap().len();
    assert_eq!((kept(MINUTE_PREFIX), kept(HOUR_PREFIX)), (1, 1));
    let t = book.trends(&db, t0 - HOUR, later + HOUR, HOUR).unwrap();
    assert_eq!(
        t.events.iter().flatten().sum::<u64>(),
        3,
        "only what lies inside the horizon"
    );
    assert_eq!(book.trends(&db, 0, 10, 0).unwrap().len(), 0);
}

#[test]
fn days_before_the_minute_points_read_from_the_hour_points() {
    let (db, book) = (memory_db(), TrendBook::default());
    let t0 = 1_000 * HOUR;
    // Two days of samples, 60 events a minute: the first day's minute
    // points are gone by the end, its hour points are not.
    for m in 1..(48 * 60) {
        let now = t0 + m * MINUTE;
        book.record(&db, now, &minutes([now - MINUTE], 60), states(m))
            .unwrap();
    }
    assert!(points(&db, MINUTE_PREFIX, 0, t0 + 23 * HOUR)
        .unwrap()
        .is_empty());
    let t = book.trends(&db, t0, t0 + 48 * HOUR, HOUR).unwrap();
    assert!(t.events.iter().all(Option::is_some), "{:?}", t.events);
    assert_eq!(t.events[0], Some(3_600));
    assert_eq!(t.events[10], Some(3_600));
    assert_eq!(
        t.events[47],
        Some(59 * 60),
        "the last minute is not stored yet"
    );
    let total: u64 = t.events.iter().flatten().sum();
    assert_eq!(total, (48 * 60 - 1) * 60);
}

/// The history outlives the process: a new book on the reopened store
/// reads the same points, and the new process's counts add to them.
#[test]
fn points_survive_a_restart_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let open = || Db::new(Arc::new(RocksStore::open(&dir.path().join("db")).unwrap()));
    let t0 = 2_000 * HOUR;
    let before = {
        let (db, book) = (open(), TrendBook::default());
        for m in 1..90 {
            let now = t0 + m * MINUTE;
            book.record(&db, now, &minutes([now - MINUTE], 100), states(60))
                .unwrap();
        }
        book.trends(&db, t0, t0 + 2 * HOUR, HOUR).unwrap()
    };
    assert_eq!(before.events, vec![Some(6_000), Some(2_900)]);
    let (db, book) = (open(), TrendBook::default());
    assert_eq!(book.trends(&db, t0, t0 + 2 * HOUR, HOUR).unwrap(), before);
    assert_eq!(
        book.trends(&db, t0, t0 + 2 * HOUR, MINUTE).unwrap().events[88],
        Some(100)
    );
    let now = t0 + 95 * MINUTE;
    book.record(&db, now, &minutes([now - MINUTE], 40), states(59))
        .unwrap();
    let after = book.trends(&db, t0, t0 + 2 * HOUR, HOUR).unwrap();
    assert_eq!(after.events, vec![Some(6_000), Some(2_940)]);
    assert_eq!(after.hosts[1], Some(states(59)));
}

#[test]
fn metrics_show_the_last_sample() {
    let (db, book) = (memory_db(), TrendBook::default());
    assert_eq!(prometheus(&db).unwrap(), "");
    let t = 10 * HOUR;
    book.record(&db, t, &BTreeMap::new(), states(5)).unwrap();
    // Events dated a little ahead make a newer point without a sample.
    let stored = minutes([t, t + 3 * MINUTE], 600);
    book.record(&db, t + MINUTE, &stored, states(7)).unwrap();
    let text = prometheus(&db).unwrap();
    assert!(
        text.contains("vigil_sensors{state=\"online\"} 7\n"),
        "{text}"
    );
    assert!(
        text.contains("vigil_sensors{state=\"offline\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("vigil_trend_events_per_second 10\n"),
        "{text}"
    );
}

#[test]
fn event_minutes_add_up_until_taken() {
    let m = EventMinutes::default();
    m.add(&minutes([0, MINUTE + 5], 2));
    m.add(&minutes([MINUTE], 3));
    assert_eq!(m.take(), BTreeMap::from([(0, 2), (MINUTE, 5)]));
    assert!(m.take().is_empty());
    assert_eq!(minute_of(MINUTE + 59), MINUTE);
}

/// A store from before event-time bucketing: its points (here one minute
/// and one hour point, and one that no longer decodes) counted events by
/// arrival. Until the first sample nothing is shown; the sample drops
/// them all, counts them, and charts only what it adds.
#[test]
fn points_from_before_event_time_are_dropped_and_counted() {
    let db = memory_db();
    let t0 = 3_000 * HOUR;
    let old = TrendPoint {
        events: 999_999,
        hosts: states(4),
        samples: 1,
    };
    let mut batch = WriteBatch::default();
    batch.put(
        Cf::Meta,
        point_key(MINUTE_PREFIX, t0 - MINUTE),
        encode(&old),
    );
    batch.put(Cf::Meta, point_key(HOUR_PREFIX, t0 - HOUR), encode(&old));
    batch.put(Cf::Meta, point_key(HOUR_PREFIX, t0 - 2 * HOUR), vec![0xff]);
    db.store().write(batch, false).unwrap();

    let book = TrendBook::default();
    let before = book.trends(&db, t0 - 2 * HOUR, t0 + HOUR, HOUR).unwrap();
    assert!(
        before.events.iter().all(Option::is_none),
        "old points are not shown: {:?}",
        before.events
    );
    assert!(before.hosts.iter().all(Option::is_none));
    assert_eq!(prometheus(&db).unwrap(), "", "nor in /metrics");

    // The first sample: the old points go, the new counts stand alone
    // (not added to the old minute's 999,999).
    book.record(&db, t0, &minutes([t0 - MINUTE], 7), states(9))
        .unwrap();
    let marker = format(&db).unwrap().expect("marker written");
    assert_eq!(
        marker,
        TrendFormat {
            version: EVENT_TIME_FORMAT,
            since_ns: t0,
            dropped_points: 3
        }
    );
    let t = book.trends(&db, t0 - 2 * HOUR, t0 + HOUR, HOUR).unwrap();
    assert_eq!(
        t.events,
        vec![None, Some(7), Some(0)],
        "the sampled hour had none"
    );
    assert_eq!(t.hosts, vec![None, None, Some(states(9))]);
    let text = prometheus(&db).unwrap();
    assert!(
        text.contains("vigil_trend_points_dropped_total 3\n"),
        "{text}"
    );

    // Once upgraded, never again: a new book (a restart) keeps the points.
    let again = TrendBook::default();
    assert_eq!(again.upgrade(&db, t0 + MINUTE).unwrap(), 0);
    assert_eq!(
        again.trends(&db, t0 - 2 * HOUR, t0 + HOUR, HOUR).unwrap(),
        t
    );
    assert_eq!(format(&db).unwrap(), Some(marker));
}

/// A fresh store gets the marker with its first sample and drops nothing.
#[test]
fn a_fresh_store_is_marked_current() {
    let (db, book) = (memory_db(), TrendBook::default());
    assert_eq!(format(&db).unwrap(), None);
    book.record(&db, 10 * HOUR, &BTreeMap::new(), states(1))
        .unwrap();
    assert_eq!(format(&db).unwrap().map(|f| f.dropped_points), Some(0));
    assert!(prometheus(&db)
        .unwrap()
        .contains("vigil_trend_points_dropped_total 0\n"));
}
