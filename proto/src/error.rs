//! Every way bytes from the network can be wrong.

use thiserror::Error;

/// A decoding or encoding failure. Each variant names one way input is wrong,
/// so the receiver can count rejects by reason.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// Fewer bytes than a frame header.
    #[error("truncated frame header: need {need} bytes, have {have}")]
    TruncatedHeader { need: usize, have: usize },
    /// The header announced more payload than was supplied.
    #[error("truncated frame payload: header says {declared} bytes, have {have}")]
    TruncatedPayload { declared: usize, have: usize },
    /// Protocol version byte not spoken by this build.
    #[error("unsupported protocol version {got} (this build speaks {supported})")]
    UnsupportedVersion { got: u8, supported: u8 },
    /// Frame kind byte not known.
    #[error("unknown frame kind {0}")]
    UnknownFrameKind(u8),
    /// Declared payload length is above the cap for this frame kind.
    #[error("frame of {declared} bytes exceeds the {limit}-byte limit")]
    FrameTooLarge { declared: usize, limit: usize },
    /// Decompressed batch would exceed the cap.
    #[error("batch decompresses beyond the {limit}-byte limit")]
    BatchTooLarge { limit: usize },
    /// Batch holds more events than allowed.
    #[error("batch of {count} events exceeds the {limit}-event limit")]
    TooManyEvents { count: usize, limit: usize },
    /// zstd stream is corrupt.
    #[error("corrupt compression: {0}")]
    Compression(String),
    /// postcard could not decode the payload into the expected type.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// Bytes left over after a complete message.
    #[error("{0} trailing bytes after message")]
    TrailingBytes(usize),
    /// Encoding failed (only on values that break limits).
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The decoded value would take more memory than allowed (many tiny
    /// items on the wire become many structs and strings in memory).
    #[error("decoded message would take more than {limit} bytes of memory")]
    MemoryBudget { limit: usize },
    /// A string inside a message is longer than allowed.
    #[error("string of {len} bytes exceeds the {limit}-byte limit")]
    StringTooLong { len: usize, limit: usize },
    /// A sequence inside a message claims more items than allowed, or more
    /// items than there are bytes left to hold them.
    #[error("sequence claims more than {limit} items or more than the bytes left")]
    SequenceTooLong { limit: usize },
    /// A loss record claims more lost events than its seq range holds, or
    /// its range runs backwards.
    #[error("loss record {from_seq}..={to_seq} cannot hold {count} lost events")]
    InvalidLoss {
        from_seq: u64,
        to_seq: u64,
        count: u64,
    },
}

impl ProtoError {
    /// A short, stable label for counters (`rejected_frames{reason=...}`).
    pub fn reason(&self) -> &'static str {
        match self {
            ProtoError::TruncatedHeader { .. } => "truncated_header",
            ProtoError::TruncatedPayload { .. } => "truncated_payload",
            ProtoError::UnsupportedVersion { .. } => "unsupported_version",
            ProtoError::UnknownFrameKind(_) => "unknown_kind",
            ProtoError::FrameTooLarge { .. } => "frame_too_large",
            ProtoError::BatchTooLarge { .. } => "batch_too_large",
            ProtoError::TooManyEvents { .. } => "too_many_events",
            ProtoError::Compression(_) => "compression",
            ProtoError::Malformed(_) => "malformed",
            ProtoError::TrailingBytes(_) => "trailing_bytes",
            ProtoError::Encode(_) => "encode",
            ProtoError::MemoryBudget { .. } => "memory_budget",
            ProtoError::StringTooLong { .. } => "string_too_long",
            ProtoError::SequenceTooLong { .. } => "sequence_too_long",
            ProtoError::InvalidLoss { .. } => "invalid_loss",
        }
    }
}
