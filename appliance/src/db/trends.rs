//! The trend book's bytes (`crate::trends`): one point per minute and one
//! per hour in the `meta` family, keyed `trend/m/` or `trend/h/` + the
//! bucket's start (ns, big-endian) so a range scan reads them in time
//! order. A point holds what happened during its bucket, never a process
//! counter, so it means the same after a restart.

use serde::{Deserialize, Serialize};
use vigil_proto::query::HostStates;

/// Prefix of the per-minute points.
pub const MINUTE_PREFIX: &[u8] = b"trend/m/";
/// Prefix of the per-hour points.
pub const HOUR_PREFIX: &[u8] = b"trend/h/";

/// What one bucket recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TrendPoint {
    /// Events stored during the bucket.
    pub events: u64,
    /// Sensors online, stale and offline at the bucket's last sample.
    pub hosts: HostStates,
    /// Samples folded into the point.
    pub samples: u32,
}

/// The key of the point of the bucket starting at `start_ns` under `prefix`.
pub fn point_key(prefix: &[u8], start_ns: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&start_ns.to_be_bytes());
    k
}

/// The bucket start a point key holds, if it is one under `prefix`.
pub fn point_start(prefix: &[u8], key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(prefix)?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::encode;

    /// These bytes are on disk: a change needs a migration, never new hex.
    #[test]
    fn golden() {
        let key = point_key(HOUR_PREFIX, 0x0102_0304_0506_0708);
        assert_eq!(key, b"trend/h/\x01\x02\x03\x04\x05\x06\x07\x08");
        assert_eq!(point_start(HOUR_PREFIX, &key), Some(0x0102_0304_0506_0708));
        assert_eq!(point_start(MINUTE_PREFIX, &key), None);
        let point = TrendPoint {
            events: 300,
            hosts: HostStates {
                online: 60,
                stale: 2,
                offline: 1,
            },
            samples: 3,
        };
        assert_eq!(encode(&point), [0xac, 0x02, 60, 2, 1, 3]);
    }
}
