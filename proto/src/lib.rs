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
//! - [`command`]: signed response commands, their signing bytes and receipts.
//! - [`event`]: the event model — a common header plus a typed payload.
//!
//! Rules both the appliance and the console apply live here, once:
//! [`close`] (QUIC close codes), [`query::EventFilter::matches`] (which
//! events a filter selects), [`suppress`] (which alerts a suppression
//! hides) and [`incident`] (an incident's root cause, remediation checklist
//! and MTTD/MTTR, shared by the console, the CLI and evidence bundles).

pub mod batch;
mod bounded;
pub mod close;
pub mod command;
pub mod control;
pub mod error;
pub mod event;
pub mod frame;
pub mod incident;
mod loss;
mod memory;
pub mod query;
pub mod suppress;

pub use batch::{decode_batch, decode_batch_postcard, encode_batch, Batch};
pub use command::{
    CollectReceipt, Command, CommandAction, CommandResult, CommandState, IsolationReceipt,
    KillReceipt, Receipt, RefusalReason,
};
pub use control::{
    decode_control, renewal_due, ControlMessage, EnrollRequest, EnrollResponse, EnrollResponseV2,
    RenewRequest, RenewResponse, SensorConfig, UnsignedCommand, UnsignedResult,
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

/// ALPN for enrollment answered with `ControlMessage::EnrolledV2` (which
/// carries the appliance's command key). A sensor offers it before
/// [`ALPN_ENROLL`]; the appliance answers in the form the negotiated ALPN
/// names, so neither side ever reads a message it does not know.
pub const ALPN_ENROLL_V2: &[u8] = b"vigil-enroll/2";

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
    /// Longest string field kept (bytes) by sensors, which truncate; decoders
    /// accept up to [`MAX_EVENT_STRING_BYTES`].
    pub const MAX_STRING: usize = 4096;
    /// Longest string a decoder accepts inside an event or control message.
    /// Above everything a producer writes: the sensor truncates at
    /// [`MAX_STRING`] (4 KiB) and auth-log lines at 8 KiB, and a Windows
    /// command line replayed from a data set (32,767 UTF-16 units, at most
    /// 98,301 bytes of UTF-8) still fits.
    pub const MAX_EVENT_STRING_BYTES: usize = 128 * 1024;
    /// Most items in one sequence inside an event (argv, collectors). The
    /// sensor keeps at most [`MAX_ARGV`] arguments and a handful of
    /// collectors; this leaves ample room and keeps serde's preallocation small.
    pub const MAX_EVENT_SEQUENCE_ITEMS: usize = 4096;
    /// Most memory one decoded batch may take: its events' structs plus the
    /// heap bytes of their strings and vectors (see `Batch::memory_bytes`).
    /// 4 x [`MAX_BATCH_DECODED_BYTES`]: a full legitimate batch (65,536
    /// events of 192 bytes each is 12 MiB, plus at most 16 MiB of string
    /// bytes) fits with room to spare, while a hostile batch of tiny items
    /// (an empty string is 1 byte on the wire, 24 in memory) is held to 64 MiB
    /// instead of ~400 MiB.
    pub const MAX_BATCH_MEMORY_BYTES: usize = 64 * 1024 * 1024;
    /// Most memory one decoded control message may take. Control payloads are
    /// at most [`MAX_CONTROL_BYTES`]; 16 x that covers the worst legitimate
    /// amplification (a heartbeat's collector list, ~10x).
    pub const MAX_CONTROL_MEMORY_BYTES: usize = 16 * MAX_CONTROL_BYTES;
}
