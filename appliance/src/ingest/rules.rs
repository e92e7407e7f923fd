//! What an acknowledged event must satisfy to enter the event store. Pure:
//! the writer passes the appliance clock in.
//!
//! A sensor runs on a machine an attacker may own, so its timestamps and
//! loss counts are claims. An event dated far in the future would escape
//! age retention and skew every time-ordered view; one dated before the
//! retention horizon would be deleted at once and can stall time-ordered
//! merges. Such events are acknowledged (the sensor's spool must drain)
//! but kept in quarantine with the reason, never in `events`.

use crate::db::quarantine::QuarantineReason;

/// Default: how far ahead of the appliance clock an event may be dated.
/// Generous for clock skew between endpoints, tight enough that no event
/// outlives age retention.
pub const DEFAULT_MAX_FUTURE_NS: u64 = 5 * 60 * 1_000_000_000;

const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// The ingest rules in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestRules {
    /// Most an event may be dated after the appliance clock.
    pub max_future_ns: u64,
    /// Accept events older than the retention horizon: an operator's
    /// explicit historical import (`vigil serve --accept-historical`).
    pub accept_historical: bool,
}

impl Default for IngestRules {
    fn default() -> Self {
        IngestRules {
            max_future_ns: DEFAULT_MAX_FUTURE_NS,
            accept_historical: false,
        }
    }
}

impl IngestRules {
    /// Why an event dated `ts_ns` must go to quarantine at `now_ns`, given
    /// the age bound of retention (`max_age_days`, 0 = none). A sensor back
    /// from a week offline delivers normally as long as its events are
    /// inside the retention horizon.
    pub fn check_time(
        &self,
        ts_ns: u64,
        now_ns: u64,
        max_age_days: u32,
    ) -> Option<QuarantineReason> {
        if ts_ns > now_ns.saturating_add(self.max_future_ns) {
            return Some(QuarantineReason::FutureTimestamp);
        }
        if max_age_days > 0 && !self.accept_historical {
            let horizon = now_ns.saturating_sub(max_age_days as u64 * NS_PER_DAY);
            if ts_ns < horizon {
                return Some(QuarantineReason::PastTimestamp);
            }
        }
        None
    }
}

/// Whether a loss record `(from_seq, to_seq, count)` is possible: a
/// non-empty range that holds at least `count` seqs.
pub fn loss_is_valid(from_seq: u64, to_seq: u64, count: u64) -> bool {
    from_seq <= to_seq && count <= (to_seq - from_seq).saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000_000_000;

    #[test]
    fn time_bounds() {
        let r = IngestRules::default();
        assert_eq!(r.check_time(NOW, NOW, 30), None);
        assert_eq!(r.check_time(NOW + DEFAULT_MAX_FUTURE_NS, NOW, 30), None);
        assert_eq!(
            r.check_time(NOW + DEFAULT_MAX_FUTURE_NS + 1, NOW, 30),
            Some(QuarantineReason::FutureTimestamp)
        );
        assert_eq!(
            r.check_time(u64::MAX, NOW, 0),
            Some(QuarantineReason::FutureTimestamp)
        );
        // A week offline is inside a 30-day horizon.
        assert_eq!(r.check_time(NOW - 7 * NS_PER_DAY, NOW, 30), None);
        assert_eq!(
            r.check_time(NOW - 31 * NS_PER_DAY, NOW, 30),
            Some(QuarantineReason::PastTimestamp)
        );
        assert_eq!(r.check_time(1, NOW, 0), None, "no age bound, no past bound");
        let import = IngestRules {
            accept_historical: true,
            ..r
        };
        assert_eq!(import.check_time(1, NOW, 30), None);
    }

    #[test]
    fn loss_validity() {
        assert!(loss_is_valid(1, 10, 10));
        assert!(loss_is_valid(5, 5, 1));
        assert!(!loss_is_valid(10, 1, 1), "from after to");
        assert!(!loss_is_valid(1, 10, 11), "more lost than the range holds");
        assert!(
            !loss_is_valid(2, u64::MAX, u64::MAX),
            "count past the range"
        );
        assert!(
            loss_is_valid(0, u64::MAX, u64::MAX),
            "no overflow at the edges"
        );
    }
}
