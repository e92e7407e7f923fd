//! Event batches: postcard, then zstd, with decoded-size, count and
//! in-memory caps.

use crate::bounded::{self, Budget, DecodeLimits};
use crate::error::ProtoError;
use crate::event::Event;
use crate::frame::{encode_frame, FrameKind};
use crate::limits::{
    MAX_BATCH_DECODED_BYTES, MAX_BATCH_EVENTS, MAX_BATCH_MEMORY_BYTES, MAX_EVENT_SEQUENCE_ITEMS,
    MAX_EVENT_STRING_BYTES,
};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::mem::size_of;

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

    /// Memory the decoded batch takes: each event's struct and heap bytes.
    /// The bounded decoder keeps this same account and refuses batches above
    /// [`MAX_BATCH_MEMORY_BYTES`].
    pub fn memory_bytes(&self) -> usize {
        self.events.iter().map(Event::memory_bytes).sum()
    }

    /// Encode as a complete batch frame.
    pub fn to_frame(&self) -> Result<Vec<u8>, ProtoError> {
        encode_frame(FrameKind::Batch, &encode_batch(self)?)
    }
}

/// Encode a batch: postcard then zstd. Refuses batches above the count,
/// size and memory caps so a sender never produces what a receiver must
/// reject. (Strings and sequences are bounded by producers, which truncate
/// far below the decoder's caps: see [`crate::limits::MAX_STRING`].)
pub fn encode_batch(batch: &Batch) -> Result<Vec<u8>, ProtoError> {
    if batch.events.len() > MAX_BATCH_EVENTS {
        return Err(ProtoError::TooManyEvents {
            count: batch.events.len(),
            limit: MAX_BATCH_EVENTS,
        });
    }
    if batch.memory_bytes() > MAX_BATCH_MEMORY_BYTES {
        return Err(ProtoError::MemoryBudget {
            limit: MAX_BATCH_MEMORY_BYTES,
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
/// hostile payload cannot make the receiver allocate without bound; then
/// [`decode_batch_postcard`] bounds what the decoded events may take.
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
    decode_batch_postcard(&raw).map(|(batch, _)| batch)
}

/// Decode the postcard bytes of a batch (already decompressed), bounding
/// memory while decoding: the event count is checked before anything is
/// allocated, events are decoded one at a time, every string and sequence
/// inside them is capped, and the running memory account (the same as
/// [`Batch::memory_bytes`], which it returns alongside the batch) may not pass
/// [`MAX_BATCH_MEMORY_BYTES`].
pub fn decode_batch_postcard(raw: &[u8]) -> Result<(Batch, usize), ProtoError> {
    let (count, mut rest) = take_length(raw)?;
    if count > MAX_BATCH_EVENTS {
        return Err(ProtoError::TooManyEvents {
            count,
            limit: MAX_BATCH_EVENTS,
        });
    }
    // Every event takes at least one byte: a longer claim is a lie, and
    // refusing it here keeps `with_capacity` below honest.
    if count > rest.len() {
        return Err(ProtoError::SequenceTooLong { limit: rest.len() });
    }
    let budget = Budget::new(EVENT_LIMITS);
    budget.charge(count * size_of::<Event>())?;
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        let (event, after) = bounded::take::<Event>(rest, &budget)?;
        events.push(event);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(ProtoError::TrailingBytes(rest.len()));
    }
    Ok((Batch { events }, budget.used()))
}

/// Bounds for everything inside a batch's events.
const EVENT_LIMITS: DecodeLimits = DecodeLimits {
    max_string: MAX_EVENT_STRING_BYTES,
    max_items: MAX_EVENT_SEQUENCE_ITEMS,
    max_memory: MAX_BATCH_MEMORY_BYTES,
};

/// Reads a postcard sequence length (a LEB128 varint of at most 10 bytes
/// for a `u64`) from the front of `bytes`.
fn take_length(bytes: &[u8]) -> Result<(usize, &[u8]), ProtoError> {
    let mut value: u64 = 0;
    for (i, b) in bytes.iter().take(10).enumerate() {
        let bits = u64::from(b & 0x7f);
        if i == 9 && bits > 1 {
            return Err(ProtoError::Malformed("length varint overflows".into()));
        }
        value |= bits << (7 * i);
        if b & 0x80 == 0 {
            let len = usize::try_from(value)
                .map_err(|_| ProtoError::Malformed("length overflows usize".into()))?;
            return Ok((len, &bytes[i + 1..]));
        }
    }
    Err(ProtoError::Malformed("truncated length varint".into()))
}
