//! The quarantine family: acknowledged events kept out of `events` because
//! they broke an ingest rule. They are stored (never silently dropped),
//! counted by reason, and invisible to detection and retention, so a
//! hostile sensor's impossible timestamps cannot move anyone's time.

use super::keys::{host_end, host_prefix, seq_key};
use super::{decode, encode, Db};
use crate::store::{Cf, Direction, StoreError, Visit, WriteBatch};
use serde::{Deserialize, Serialize};
use vigil_proto::HostId;

/// Why an event went to quarantine. Stored: never reorder, only append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuarantineReason {
    /// Dated further ahead of the appliance clock than allowed.
    FutureTimestamp,
    /// Dated before the retention horizon (and no historical import allowed).
    PastTimestamp,
    /// A loss record whose range or count is impossible.
    InvalidLoss,
}

impl QuarantineReason {
    /// Stable label for counters and the console.
    pub fn label(self) -> &'static str {
        match self {
            QuarantineReason::FutureTimestamp => "future_timestamp",
            QuarantineReason::PastTimestamp => "past_timestamp",
            QuarantineReason::InvalidLoss => "invalid_loss",
        }
    }
}

/// One quarantined event: the reason, the claimed time and the payload as
/// it would have been stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    pub reason: QuarantineReason,
    pub ts_ns: u64,
    /// postcard of the `Payload`, exactly as the events family stores it.
    pub payload: Vec<u8>,
}

/// Queue a quarantined event into `wb`.
pub fn put(wb: &mut WriteBatch, host: HostId, seq: u64, rec: &QuarantineRecord) {
    wb.put(Cf::Quarantine, seq_key(host, seq), encode(rec));
}

/// Most quarantined events kept per host: enough to show an operator what
/// a sensor sent, never a way for one sensor to fill the disk (its newest
/// records are kept).
pub const MAX_PER_HOST: usize = 10_000;

impl Db {
    /// Trim every host's quarantine to its newest [`MAX_PER_HOST`] records
    /// (by seq); returns how many were deleted.
    pub fn trim_quarantine(&self, max_per_host: usize) -> Result<u64, StoreError> {
        // Counts first (small: one number per host), then a range delete up
        // to each over-full host's first kept key.
        let mut counts: std::collections::BTreeMap<u64, usize> = Default::default();
        self.store().scan(
            Cf::Quarantine,
            &[],
            None,
            Direction::Forward,
            &mut |k, _| {
                if let Some(h) = k.get(..8).and_then(|b| b.try_into().ok()) {
                    *counts.entry(u64::from_be_bytes(h)).or_default() += 1;
                }
                Visit::Continue
            },
        )?;
        let mut deleted = 0u64;
        for (&h, &n) in counts.iter().filter(|(_, &n)| n > max_per_host) {
            let host = HostId(h);
            let skip = n - max_per_host;
            let mut first_kept = None;
            let mut seen = 0usize;
            self.store().scan(
                Cf::Quarantine,
                &host_prefix(host),
                Some(&host_end(host)),
                Direction::Forward,
                &mut |k, _| {
                    if seen == skip {
                        first_kept = Some(k.to_vec());
                        return Visit::Stop;
                    }
                    seen += 1;
                    Visit::Continue
                },
            )?;
            if let Some(cut) = first_kept {
                self.store()
                    .delete_range(Cf::Quarantine, &host_prefix(host), &cut)?;
                deleted += skip as u64;
            }
        }
        Ok(deleted)
    }

    /// A host's quarantined events, by seq (at most `limit`).
    pub fn quarantined(
        &self,
        host: HostId,
        limit: usize,
    ) -> Result<Vec<(u64, QuarantineRecord)>, StoreError> {
        let mut out = Vec::new();
        let mut err = None;
        self.store().scan(
            Cf::Quarantine,
            &host_prefix(host),
            Some(&host_end(host)),
            Direction::Forward,
            &mut |k, v| {
                if out.len() >= limit {
                    return Visit::Stop;
                }
                let seq = k
                    .get(8..16)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes);
                match (seq, decode::<QuarantineRecord>(Cf::Quarantine, v)) {
                    (Some(seq), Ok(r)) => out.push((seq, r)),
                    (_, Err(e)) => {
                        err = Some(e);
                        return Visit::Stop;
                    }
                    (None, _) => {}
                }
                Visit::Continue
            },
        )?;
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}
