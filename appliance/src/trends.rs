//! The samples behind [`vigil_proto::query::ReadApi::trends`]: once a
//! minute the retention task records the ingest counter and how many
//! sensors are online, stale and offline; the console's charts read them
//! back per bucket. Kept in memory for [`KEEP_NS`] (about 11,500 samples,
//! under 0.5 MiB): a restart starts the history afresh, and the charts say
//! so for the buckets before it (`None`), rather than guessing.

use std::collections::VecDeque;
use std::sync::Mutex;
use vigil_proto::query::{HostStates, Trends};

const MINUTE: u64 = 60 * 1_000_000_000;
/// Time between two samples.
pub const SAMPLE_EVERY_NS: u64 = MINUTE;
/// How long samples are kept.
pub const KEEP_NS: u64 = 8 * 24 * 60 * MINUTE;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    ts_ns: u64,
    /// `Metrics::events_ingested` at `ts_ns` (monotonic while the process lives).
    events: u64,
    hosts: HostStates,
}

/// The appliance's trend samples (time passed in; no clock here).
#[derive(Debug, Default)]
pub struct TrendBook {
    samples: Mutex<VecDeque<Sample>>,
}

impl TrendBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Sample>> {
        // A panic while holding the lock leaves whole samples behind: keep going.
        self.samples.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a sample is due at `now_ns`.
    pub fn due(&self, now_ns: u64) -> bool {
        self.lock()
            .back()
            .is_none_or(|s| now_ns >= s.ts_ns.saturating_add(SAMPLE_EVERY_NS))
    }

    /// Record the ingest counter and sensor states at `now_ns`, dropping
    /// samples older than [`KEEP_NS`]. A clock that went back is ignored.
    pub fn record(&self, now_ns: u64, events_ingested: u64, hosts: HostStates) {
        let mut s = self.lock();
        if s.back().is_some_and(|b| now_ns <= b.ts_ns) {
            return;
        }
        s.push_back(Sample {
            ts_ns: now_ns,
            events: events_ingested,
            hosts,
        });
        while s.front().is_some_and(|f| f.ts_ns + KEEP_NS < now_ns) {
            s.pop_front();
        }
    }

    /// Events stored per bucket (the counter's growth from the last sample
    /// before the bucket, or its first sample inside it, to its last
    /// sample) and sensor states at each bucket's last sample.
    pub fn trends(&self, since_ns: u64, until_ns: u64, bucket_ns: u64) -> Trends {
        let n = if bucket_ns == 0 {
            0
        } else {
            until_ns
                .saturating_sub(since_ns)
                .div_ceil(bucket_ns)
                .min(10_000) as usize
        };
        let mut t = Trends::unknown(since_ns, bucket_ns, n);
        let s = self.lock();
        for i in 0..n {
            let start = since_ns + i as u64 * bucket_ns;
            let end = start.saturating_add(bucket_ns);
            let before = s.partition_point(|x| x.ts_ns < start);
            let upto = s.partition_point(|x| x.ts_ns < end);
            if upto == before {
                continue;
            }
            let last = s[upto - 1];
            let base = if before > 0 { s[before - 1] } else { s[before] };
            t.events[i] = Some(last.events.saturating_sub(base.events));
            t.hosts[i] = Some(last.hosts);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(online: u64) -> HostStates {
        HostStates {
            online,
            stale: 1,
            offline: 2,
        }
    }

    #[test]
    fn buckets_count_the_growth_inside_them() {
        let book = TrendBook::default();
        let t0 = 1_000 * MINUTE;
        assert!(book.due(t0));
        for m in 0..120 {
            book.record(t0 + m * MINUTE, m * 600, states(m));
        }
        assert!(!book.due(t0 + 119 * MINUTE + 1));
        let t = book.trends(t0 - 60 * MINUTE, t0 + 120 * MINUTE, 60 * MINUTE);
        assert_eq!(t.events, vec![None, Some(59 * 600), Some(60 * 600)]);
        assert_eq!(t.hosts[2], Some(states(119)));
        let total: u64 = t.events.iter().flatten().sum();
        assert_eq!(total, 119 * 600, "buckets add up to the counter's growth");
    }

    #[test]
    fn old_samples_go_and_clocks_going_back_are_ignored() {
        let book = TrendBook::default();
        book.record(10 * MINUTE, 1, states(1));
        book.record(5 * MINUTE, 2, states(2));
        book.record(10 * MINUTE + KEEP_NS + 1, 3, states(3));
        assert_eq!(book.lock().len(), 1);
        assert_eq!(book.trends(0, 10, 0).len(), 0);
    }
}
