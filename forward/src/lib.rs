//! Loss-free SIEM forwarding (issue #17): alerts, incidents, audit entries,
//! raw events and signed audit checkpoints, as OCSF 1.x JSON (default), ECS
//! JSON or CEF, in RFC 5424 syslog messages over TCP or TLS with RFC 5425 /
//! RFC 6587 octet-counting framing.
//!
//! # The path of one record
//!
//! [`Forwarder::submit`] renders the record once per receiver that takes
//! its kind, with that receiver's next sequence number, and appends it to
//! the receiver's durable queue ([`queue`]); it returns once the queue is
//! fsync'd. *Accepted means on disk.* A full queue refuses the record
//! ([`SubmitOutcome::refused`], the `full` alarm of [`ReceiverSnapshot`]):
//! never silent loss, the caller raises the alarm. A sender thread per
//! receiver reads the queue in order and writes batches.
//!
//! # Delivery: at least once, duplicates visible and rare
//!
//! Syslog over TCP has no application acknowledgement, so "written and
//! flushed" proves nothing: bytes written to a socket whose peer has just
//! gone are silently dropped. The sender therefore advances the committed
//! cursor only when the receiver's *TCP* has acknowledged every byte of the
//! batch (`SIOCOUTQ` is zero and the connection is still established), and
//! before each batch checks that the peer has not closed the connection.
//! A receiver that stops (or restarts) therefore loses nothing: the batch
//! it did not acknowledge is sent again after reconnecting, and nothing it
//! acknowledged is ever re-sent.
//!
//! Two narrow windows remain, inherent to syslog over TCP: a receiver that
//! crashes after its kernel acknowledged bytes but before it processed them
//! loses them (RELP would be needed to close that); and a connection that
//! breaks after the receiver read a batch but before its acknowledgement
//! reached us makes us re-send that batch. Every record carries its
//! per-receiver sequence number (structured data `[vigil@32473 seq="N"]`
//! and in the payload: OCSF `metadata.sequence`, ECS `event.sequence`, CEF
//! `cn1`/`cn1Label=vigilSeq`), so the SIEM drops such a duplicate by seq and
//! sees any gap. Refused records take no sequence number.
//!
//! # Checkpoints
//!
//! The appliance calls [`Forwarder::submit_checkpoint`] on its own timer
//! with the audit log's signed-note text; it is forwarded like any record.

pub mod config;
pub mod format;
pub mod queue;
pub mod record;
pub mod syslog;
pub mod transport;

mod forwarder;
mod sender;
mod stats;

pub use config::{AuditFrom, ConfigProblem, ForwarderConfig, ReceiverConfig, Timing, Transport};
pub use format::{Format, RenderContext};
pub use forwarder::{ForwardError, Forwarder, Refusal, SubmitOutcome};
pub use record::{AlertWithHosts, AuditEntry, Checkpoint, IncidentSummary, Record, RecordKind};
pub use sender::backoff;
pub use stats::ReceiverSnapshot;
