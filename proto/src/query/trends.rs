//! Time series for the console's trend charts ([`super::ReadApi::trends`]):
//! what the appliance counts per time bucket. Plain data, no clock.

use serde::{Deserialize, Serialize};

/// Counters per bucket of `bucket_ns`, the first starting at `since_ns`.
/// Every vector has one entry per bucket; `None` where the appliance has
/// no record of that bucket (before it started sampling, or after a
/// restart lost its in-memory samples).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Trends {
    /// Start of the first bucket, ns since the epoch.
    pub since_ns: u64,
    /// Width of a bucket, ns.
    pub bucket_ns: u64,
    /// Events dated in each bucket (by their own time, not their arrival).
    pub events: Vec<Option<u64>>,
    /// Sensors online, stale and offline at the end of each bucket.
    pub hosts: Vec<Option<HostStates>>,
}

/// How many sensors were in each state at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HostStates {
    pub online: u64,
    pub stale: u64,
    pub offline: u64,
}

impl Trends {
    /// `buckets` buckets from `since_ns`, nothing recorded.
    pub fn unknown(since_ns: u64, bucket_ns: u64, buckets: usize) -> Trends {
        Trends {
            since_ns,
            bucket_ns,
            events: vec![None; buckets],
            hosts: vec![None; buckets],
        }
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there are no buckets.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Index of the bucket holding `ts_ns`, if it is in range.
    pub fn bucket_of(&self, ts_ns: u64) -> Option<usize> {
        if self.bucket_ns == 0 || ts_ns < self.since_ns {
            return None;
        }
        let i = ((ts_ns - self.since_ns) / self.bucket_ns) as usize;
        (i < self.len()).then_some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        let t = Trends::unknown(1000, 10, 3);
        assert_eq!(t.len(), 3);
        assert_eq!(t.bucket_of(999), None);
        assert_eq!(t.bucket_of(1000), Some(0));
        assert_eq!(t.bucket_of(1029), Some(2));
        assert_eq!(t.bucket_of(1030), None);
        assert_eq!(Trends::unknown(0, 0, 1).bucket_of(5), None);
    }
}
