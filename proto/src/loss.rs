//! Checks on [`LossRecord`]s, which arrive from sensors and feed counters:
//! a forged or corrupt record must not claim more loss than its seq range
//! holds, nor overflow a total.

use crate::error::ProtoError;
use crate::event::LossRecord;

impl LossRecord {
    /// Whether the record is consistent: `from_seq <= to_seq` and `count` is
    /// at most the number of seqs in `from_seq..=to_seq`. Receivers must call
    /// it before counting or storing a loss record from the wire; the range
    /// `0..=u64::MAX` (2^64 seqs) is checked without overflow.
    pub fn validate(&self) -> Result<(), ProtoError> {
        let span = u128::from(self.to_seq) - u128::from(self.from_seq.min(self.to_seq)) + 1;
        if self.from_seq > self.to_seq || u128::from(self.count) > span {
            return Err(ProtoError::InvalidLoss {
                from_seq: self.from_seq,
                to_seq: self.to_seq,
                count: self.count,
            });
        }
        Ok(())
    }

    /// Sum of the records' counts, saturating at `u64::MAX` instead of
    /// wrapping (a hostile sensor can send many records of `u64::MAX`).
    pub fn saturating_total<'a>(records: impl IntoIterator<Item = &'a LossRecord>) -> u64 {
        records
            .into_iter()
            .fold(0u64, |total, r| total.saturating_add(r.count))
    }
}

#[cfg(test)]
mod tests {
    use crate::error::ProtoError;
    use crate::event::{LossReason, LossRecord};

    fn loss(from_seq: u64, to_seq: u64, count: u64) -> LossRecord {
        LossRecord {
            from_seq,
            to_seq,
            count,
            reason: LossReason::SpoolFull,
        }
    }

    #[test]
    fn validate_accepts_consistent_records_and_refuses_the_rest() {
        let cases = [
            // (from, to, count, valid)
            (1, 1, 1, true),
            (10, 19, 10, true),
            (10, 19, 3, true), // fewer lost than the range: some were acked
            (10, 19, 0, true),
            (0, u64::MAX, u64::MAX, true), // span 2^64 does not overflow
            (u64::MAX, u64::MAX, 1, true),
            (10, 19, 11, false),
            (20, 19, 0, false),
            (u64::MAX, 0, 1, false),
            (5, 5, 2, false),
        ];
        for (from, to, count, valid) in cases {
            let got = loss(from, to, count).validate();
            assert_eq!(got.is_ok(), valid, "{from}..={to} count {count}");
            if let Err(e) = got {
                assert_eq!(
                    e,
                    ProtoError::InvalidLoss {
                        from_seq: from,
                        to_seq: to,
                        count
                    }
                );
                assert_eq!(e.reason(), "invalid_loss");
            }
        }
    }

    #[test]
    fn totals_saturate_instead_of_wrapping() {
        let records = [loss(1, 10, 10), loss(11, 12, 2)];
        assert_eq!(LossRecord::saturating_total(&records), 12);
        let huge = [loss(0, u64::MAX, u64::MAX), loss(0, u64::MAX, u64::MAX)];
        assert_eq!(LossRecord::saturating_total(&huge), u64::MAX);
        assert_eq!(LossRecord::saturating_total(&[]), 0);
    }
}
