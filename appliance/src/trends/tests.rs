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

#[test]
fn buckets_count_the_growth_inside_them() {
    let (db, book) = (memory_db(), TrendBook::default());
    let t0 = 1_000 * MINUTE;
    assert!(book.due(t0));
    for m in 0..120 {
        book.record(&db, t0 + m * MINUTE, m * 600, states(m))
            .unwrap();
    }
    assert!(!book.due(t0 + 119 * MINUTE + 1));
    let t = book
        .trends(&db, t0 - 60 * MINUTE, t0 + 120 * MINUTE, 60 * MINUTE)
        .unwrap();
    assert_eq!(t.events, vec![None, Some(59 * 600), Some(60 * 600)]);
    assert_eq!(t.hosts[2], Some(states(119)));
    let total: u64 = t.events.iter().flatten().sum();
    assert_eq!(total, 119 * 600, "buckets add up to the counter's growth");
}

#[test]
fn old_points_go_and_clocks_going_back_are_ignored() {
    let (db, book) = (memory_db(), TrendBook::default());
    let t0 = 100 * HOUR;
    book.record(&db, t0, 1, states(1)).unwrap();
    book.record(&db, t0 - 5 * MINUTE, 2, states(2)).unwrap();
    let later = t0 + HOUR_KEEP_NS + HOUR;
    book.record(&db, later, 3, states(3)).unwrap();
    let kept = |prefix| points(&db, prefix, 0, u64::MAX).unwrap().len();
    assert_eq!((kept(MINUTE_PREFIX), kept(HOUR_PREFIX)), (1, 1));
    let t = book.trends(&db, t0 - HOUR, later + HOUR, HOUR).unwrap();
    assert_eq!(
        t.events.iter().flatten().sum::<u64>(),
        2,
        "the last sample's growth"
    );
    assert_eq!(book.trends(&db, 0, 10, 0).unwrap().len(), 0);
}

#[test]
fn days_before_the_minute_points_read_from_the_hour_points() {
    let (db, book) = (memory_db(), TrendBook::default());
    let t0 = 1_000 * HOUR;
    // Two days of samples, 60 events a minute: the first day's minute
    // points are gone by the end, its hour points are not.
    for m in 0..(48 * 60) {
        book.record(&db, t0 + m * MINUTE, m * 60, states(m))
            .unwrap();
    }
    assert!(points(&db, MINUTE_PREFIX, 0, t0 + 23 * HOUR)
        .unwrap()
        .is_empty());
    let t = book.trends(&db, t0, t0 + 48 * HOUR, HOUR).unwrap();
    assert!(t.events.iter().all(Option::is_some), "{:?}", t.events);
    assert_eq!(
        t.events[0],
        Some(59 * 60),
        "the first sample only starts the count"
    );
    assert_eq!(t.events[10], Some(3_600));
    assert_eq!(t.events[47], Some(3_600));
    let total: u64 = t.events.iter().flatten().sum();
    assert_eq!(total, (48 * 60 - 1) * 60);
}

/// The history outlives the process: a new book on the reopened store
/// reads the same points, and the new process's counter (from zero again)
/// adds to them.
#[test]
fn points_survive_a_restart_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let open = || Db::new(Arc::new(RocksStore::open(&dir.path().join("db")).unwrap()));
    let t0 = 2_000 * HOUR;
    let before = {
        let (db, book) = (open(), TrendBook::default());
        for m in 0..90 {
            book.record(&db, t0 + m * MINUTE, m * 100, states(60))
                .unwrap();
        }
        book.trends(&db, t0, t0 + 2 * HOUR, HOUR).unwrap()
    };
    assert_eq!(before.events, vec![Some(5_900), Some(3_000)]);
    let (db, book) = (open(), TrendBook::default());
    assert_eq!(book.trends(&db, t0, t0 + 2 * HOUR, HOUR).unwrap(), before);
    assert_eq!(
        book.trends(&db, t0, t0 + 2 * HOUR, MINUTE).unwrap().events[89],
        Some(100)
    );
    book.record(&db, t0 + 95 * MINUTE, 40, states(59)).unwrap();
    let after = book.trends(&db, t0, t0 + 2 * HOUR, HOUR).unwrap();
    assert_eq!(after.events, vec![Some(5_900), Some(3_040)]);
    assert_eq!(after.hosts[1], Some(states(59)));
}

#[test]
fn metrics_show_the_newest_minute() {
    let (db, book) = (memory_db(), TrendBook::default());
    assert_eq!(prometheus(&db).unwrap(), "");
    book.record(&db, 10 * HOUR, 0, states(5)).unwrap();
    book.record(&db, 10 * HOUR + MINUTE, 600, states(7))
        .unwrap();
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
