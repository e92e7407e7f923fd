//! Event batches: postcard, then zstd, with decoded-size and count caps.

use crate::error::{from_postcard_exact, ProtoError};
use crate::event::Event;
use crate::frame::{encode_frame, FrameKind};
use crate::limits::{MAX_BATCH_DECODED_BYTES, MAX_BATCH_EVENTS};
use serde::{Deserialize, Serialize};
use std::io::Read;

/// zstd level used by sensors: fast, and most of the gain on telemetry.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// A batch of events from one sensor, in seq order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Batch {
    pub events: Vec<Event>,
}

impl Batch {
    /// The batch's seq range, if it holds any event.
    pub fn seq_range(&self) -> Option<(u64, u64)> {
        let first = self.events.first()?.header.seq;
        let last = self.events.last()?.header.seq;
        Some((first, last))
    }

    /// Encode as a complete batch frame.
    pub fn to_frame(&self) -> Result<Vec<u8>, ProtoError> {
        encode_frame(FrameKind::Batch, &encode_batch(self)?)
    }
}

/// Encode a batch: postcard then zstd. Refuses batches above the caps so a
/// sender can never produce what a receiver must reject.
pub fn encode_batch(batch: &Batch) -> Result<Vec<u8>, ProtoError> {
    if batch.events.len() > MAX_BATCH_EVENTS {
        return Err(ProtoError::TooManyEvents {
            count: batch.events.len(),
            limit: MAX_BATCH_EVENTS,
        });
    }
    let raw = postcard::to_allocvec(batch).map_err(|e| ProtoError::Encode(e.to_string()))?;
    if raw.len() > MAX_BATCH_DECODED_BYTES {
        return Err(ProtoError::BatchTooLarge {
            limit: MAX_BATCH_DECODED_BYTES,
        });
    }
    zstd::bulk::compress(&raw, DEFAULT_ZSTD_LEVEL).map_err(|e| ProtoError::Encode(e.to_string()))
}

/// Decode a batch payload. Decompression stops at the cap, so a small
/// hostile payload cannot make the receiver allocate without bound.
pub fn decode_batch(payload: &[u8]) -> Result<Batch, ProtoError> {
    let decoder = zstd::stream::read::Decoder::new(payload)
        .map_err(|e| ProtoError::Compression(e.to_string()))?;
    let mut raw = Vec::new();
    decoder
        .take(MAX_BATCH_DECODED_BYTES as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| ProtoError::Compression(e.to_string()))?;
    if raw.len() > MAX_BATCH_DECODED_BYTES {
        return Err(ProtoError::BatchTooLarge {
            limit: MAX_BATCH_DECODED_BYTES,
        });
    }
    let batch: Batch = from_postcard_exact(&raw)?;
    if batch.events.len() > MAX_BATCH_EVENTS {
        return Err(ProtoError::TooManyEvents {
            count: batch.events.len(),
            limit: MAX_BATCH_EVENTS,
        });
    }
    Ok(batch)
}
