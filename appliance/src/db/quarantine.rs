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

impl Db {
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
