//! Vigil's wire protocol and event model.
//!
//! This crate is the contract between sensors and the appliance. It does no
//! I/O and reads no clock: callers pass bytes in and get typed values (or a
//! typed error) out, so every decoder can be fuzzed and property-tested.
//!
//! Layers, outermost first:
//! - [`frame`]: `[version u8][kind u8][len u32 BE][payload]`, hard size caps.
//! - [`batch`]: a batch of [`Event`]s, postcard-encoded then zstd-compressed,
//!   with a cap on the decompressed size (no zstd bombs).
//! - [`control`]: control-stream messages (hello, config, heartbeat, ack,
//!   command, command result, enrollment), postcard-encoded.
//! - [`event`]: the event model — a common header plus a typed payload.

pub mod batch;
pub mod control;
pub mod error;
pub mod event;
pub mod frame;
pub mod query;

pub use batch::{decode_batch, encode_batch, Batch};
pub use control::{
    Command, CommandAction, CommandResult, ControlMessage, EnrollRequest, EnrollResponse,
    SensorConfig,
};
pub use error::ProtoError;
pub use event::*;
pub use frame::{decode_frame, encode_frame, Frame, FrameHeader, FrameKind};

/// The protocol version this build speaks (frame header byte and hello).
pub const PROTOCOL_VERSION: u8 = 1;

/// ALPN for the mTLS ingest/control connection.
pub const ALPN_INGEST: &[u8] = b"vigil/1";

/// ALPN for the enrollment connection (server-authenticated TLS only: the
/// sensor has no client certificate yet and proves itself with a token).
pub const ALPN_ENROLL: &[u8] = b"vigil-enroll/1";

/// Hard limits applied by every decoder before it allocates.
pub mod limits {
    /// Largest frame payload (compressed batch or control message) accepted.
    pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;
    /// Largest control-message payload accepted.
    pub const MAX_CONTROL_BYTES: usize = 256 * 1024;
    /// Largest decompressed batch accepted (guards against zstd bombs).
    pub const MAX_BATCH_DECODED_BYTES: usize = 16 * 1024 * 1024;
    /// Most events in one batch.
    pub const MAX_BATCH_EVENTS: usize = 65_536;
    /// Longest argv kept per process (elements), longer ones are truncated by sensors.
    pub const MAX_ARGV: usize = 64;
    /// Longest string field kept (bytes); sensors truncate, decoders accept up to the frame cap.
    pub const MAX_STRING: usize = 4096;
}
