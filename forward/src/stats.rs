//! Per-receiver counters, and the things worth counting as named events
//! that log and count in one place (as `appliance::internal_events`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::queue::QueueStats;

/// Live counters of one receiver, shared by the submitter and the sender.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    sent: AtomicU64,
    resent: AtomicU64,
    failed_attempts: AtomicU64,
    full_refusals: AtomicU64,
    write_errors: AtomicU64,
    connected: AtomicBool,
    full: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// What one receiver's forwarding looks like now (`/metrics`, console).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverSnapshot {
    /// The receiver's configured name.
    pub name: String,
    /// Records delivered since start.
    pub sent: u64,
    /// Of those, records sent again after an attempt that wrote them but
    /// could not confirm delivery: the receiver may hold them twice (same
    /// seq) and should drop the second by seq.
    pub resent: u64,
    /// Records accepted and waiting to be sent.
    pub pending: u64,
    /// Connection or send attempts that failed since start.
    pub failed_attempts: u64,
    /// How long the oldest pending record has waited.
    pub oldest_pending_age: Option<Duration>,
    /// Bytes of pending records in the queue.
    pub queue_bytes: u64,
    /// The queue's byte bound.
    pub queue_max_bytes: u64,
    /// Records refused because the queue was full, since start: the alarm.
    pub full_refusals: u64,
    /// The queue refused the latest record it was offered (alarm raised
    /// until a record is accepted again).
    pub full: bool,
    /// Records the queue could not write (disk errors), since start.
    pub write_errors: u64,
    /// Torn or corrupt records dropped when the queue was opened.
    pub torn_records: u64,
    /// The highest per-receiver seq delivered (0: none).
    pub sent_seq: u64,
    /// Whether a connection is up now.
    pub connected: bool,
    /// The latest failure, for the console.
    pub last_error: Option<String>,
}

impl Counters {
    /// A snapshot with the queue's gauges, ages measured at `now`.
    pub(crate) fn snapshot(
        &self,
        name: &str,
        q: QueueStats,
        max_bytes: u64,
        now: SystemTime,
    ) -> ReceiverSnapshot {
        let now_ns = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        ReceiverSnapshot {
            name: name.to_string(),
            sent: self.sent.load(Ordering::Relaxed),
            resent: self.resent.load(Ordering::Relaxed),
            pending: q.pending_records,
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
            oldest_pending_age: q
                .oldest_pending_ns
                .map(|t| Duration::from_nanos(now_ns.saturating_sub(t))),
            queue_bytes: q.pending_bytes,
            queue_max_bytes: max_bytes,
            full_refusals: self.full_refusals.load(Ordering::Relaxed),
            full: self.full.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            torn_records: q.torn_records,
            sent_seq: q.sent_seq,
            connected: self.connected.load(Ordering::Relaxed),
            last_error: self.last_error.lock().map(|e| e.clone()).unwrap_or(None),
        }
    }

    fn clear_error(&self) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = None;
        }
    }

    fn set_error(&self, e: String) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = Some(e);
        }
    }
}

/// Something that logs and counts itself.
pub(crate) trait InternalEvent {
    /// Log and count.
    fn emit(self, c: &Counters);
}

/// A batch reached the receiver (written, flushed, acknowledged by TCP).
pub(crate) struct RecordsSent<'a> {
    pub receiver: &'a str,
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: u64,
    /// Records of the batch written before without confirmation.
    pub resent: u64,
}

impl InternalEvent for RecordsSent<'_> {
    fn emit(self, c: &Counters) {
        tracing::debug!(
            receiver = self.receiver,
            first = self.first_seq,
            last = self.last_seq,
            records = self.records,
            resent = self.resent,
            "forwarded"
        );
        c.sent.fetch_add(self.records, Ordering::Relaxed);
        c.resent.fetch_add(self.resent, Ordering::Relaxed);
        c.clear_error();
    }
}

/// Connecting or sending failed; the records stay queued.
pub(crate) struct SendFailed<'a> {
    pub receiver: &'a str,
    pub error: String,
    pub retry_in: Duration,
}

impl InternalEvent for SendFailed<'_> {
    fn emit(self, c: &Counters) {
        tracing::warn!(receiver = self.receiver, error = %self.error,
            retry_in_ms = self.retry_in.as_millis() as u64, "forwarding failed; will retry");
        c.failed_attempts.fetch_add(1, Ordering::Relaxed);
        c.connected.store(false, Ordering::Relaxed);
        c.set_error(self.error);
    }
}

/// A connection to the receiver is up.
pub(crate) struct Connected<'a> {
    pub receiver: &'a str,
    pub address: &'a str,
}

impl InternalEvent for Connected<'_> {
    fn emit(self, c: &Counters) {
        tracing::info!(
            receiver = self.receiver,
            address = self.address,
            "forwarding connected"
        );
        c.connected.store(true, Ordering::Relaxed);
    }
}

/// The queue refused a record because it is full: the alarm.
pub(crate) struct QueueFull<'a> {
    pub receiver: &'a str,
    pub pending_bytes: u64,
}

impl InternalEvent for QueueFull<'_> {
    fn emit(self, c: &Counters) {
        if !c.full.swap(true, Ordering::Relaxed) {
            tracing::error!(
                receiver = self.receiver,
                pending_bytes = self.pending_bytes,
                "forwarding queue full: records are being refused"
            );
        }
        c.full_refusals.fetch_add(1, Ordering::Relaxed);
    }
}

/// The queue accepted a record again after refusing.
pub(crate) struct QueueAccepting<'a> {
    pub receiver: &'a str,
}

impl InternalEvent for QueueAccepting<'_> {
    fn emit(self, c: &Counters) {
        if c.full.swap(false, Ordering::Relaxed) {
            tracing::warn!(receiver = self.receiver, "forwarding queue accepting again");
        }
    }
}

/// The queue could not write a record (disk error).
pub(crate) struct QueueWriteFailed<'a> {
    pub receiver: &'a str,
    pub error: String,
}

impl InternalEvent for QueueWriteFailed<'_> {
    fn emit(self, c: &Counters) {
        tracing::error!(receiver = self.receiver, error = %self.error, "forwarding queue write failed");
        c.write_errors.fetch_add(1, Ordering::Relaxed);
        c.set_error(self.error);
    }
}
