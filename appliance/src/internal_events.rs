//! Things worth counting, one struct each (vector's `internal_events`
//! style): `emit` logs the event and bumps its counter in one place, so a
//! number on `/metrics` always has a log line behind it.

use crate::db::quarantine::QuarantineReason;
use crate::metrics::Metrics;
use std::sync::atomic::Ordering;
use std::time::Duration;
use vigil_proto::HostId;

/// Something that logs and counts itself.
pub trait InternalEvent {
    /// Log and count.
    fn emit(self, metrics: &Metrics);
}

/// A batch was stored and acknowledged.
pub struct BatchStored {
    pub host: HostId,
    pub first_seq: u64,
    pub last_seq: u64,
    pub new_events: u64,
    pub duplicates: u64,
    pub wire_bytes: u64,
}

impl InternalEvent for BatchStored {
    fn emit(self, m: &Metrics) {
        tracing::trace!(host = %self.host, first = self.first_seq, last = self.last_seq,
            new = self.new_events, duplicates = self.duplicates, "batch stored");
        m.events_ingested
            .fetch_add(self.new_events, Ordering::Relaxed);
        m.duplicates.fetch_add(self.duplicates, Ordering::Relaxed);
        m.bytes_received
            .fetch_add(self.wire_bytes, Ordering::Relaxed);
        m.batches_acked.fetch_add(1, Ordering::Relaxed);
    }
}

/// A group commit finished (one synced write).
pub struct GroupCommitted {
    pub batches: usize,
    pub events: usize,
    /// The new events by the minute of their own time (trend charts).
    pub by_minute: std::collections::BTreeMap<u64, u64>,
    pub latency: Duration,
}

impl InternalEvent for GroupCommitted {
    fn emit(self, m: &Metrics) {
        tracing::trace!(
            batches = self.batches,
            events = self.events,
            latency_us = self.latency.as_micros() as u64,
            "group commit"
        );
        m.write_latency.observe(self.latency);
        m.stored_by_minute.add(&self.by_minute);
    }
}

/// A store write failed; the batches in it were refused, not acked.
pub struct WriteFailed<'a> {
    pub batches: usize,
    pub error: &'a str,
}

impl InternalEvent for WriteFailed<'_> {
    fn emit(self, m: &Metrics) {
        tracing::error!(
            batches = self.batches,
            error = self.error,
            "store write failed"
        );
        m.write_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// A frame or batch was refused.
pub struct FrameRejected<'a> {
    pub host: Option<HostId>,
    pub reason: &'a str,
    pub detail: &'a str,
}

impl InternalEvent for FrameRejected<'_> {
    fn emit(self, m: &Metrics) {
        let host = self.host.map(|h| h.to_string()).unwrap_or_default();
        tracing::warn!(
            host,
            reason = self.reason,
            detail = self.detail,
            "frame rejected"
        );
        m.rejected_frames.add(self.reason, 1);
        if let Some(h) = self.host {
            m.host_flags.add(h, self.reason);
        }
    }
}

/// A connection was refused at (or right after) the TLS handshake.
pub struct HandshakeRejected<'a> {
    pub reason: &'a str,
    pub detail: &'a str,
}

impl InternalEvent for HandshakeRejected<'_> {
    fn emit(self, m: &Metrics) {
        tracing::warn!(
            reason = self.reason,
            detail = self.detail,
            "handshake rejected"
        );
        m.handshake_rejects.add(self.reason, 1);
    }
}

/// A sensor reported events it had to drop.
pub struct LossReported {
    pub host: HostId,
    pub from_seq: u64,
    pub to_seq: u64,
    pub count: u64,
}

impl InternalEvent for LossReported {
    fn emit(self, m: &Metrics) {
        tracing::warn!(host = %self.host, from = self.from_seq, to = self.to_seq,
            count = self.count, "sensor reported lost events");
        m.loss_records.fetch_add(1, Ordering::Relaxed);
        // A sensor chooses `count`: never let it wrap the counter.
        let _ = m
            .events_lost
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(self.count))
            });
    }
}

/// An acknowledged event broke an ingest rule and went to quarantine.
pub struct EventQuarantined {
    pub host: HostId,
    pub seq: u64,
    pub reason: QuarantineReason,
}

impl InternalEvent for EventQuarantined {
    fn emit(self, m: &Metrics) {
        tracing::warn!(host = %self.host, seq = self.seq, reason = self.reason.label(),
            "event quarantined");
        m.quarantined.add(self.reason.label(), 1);
        m.host_flags
            .add(self.host, &format!("quarantined: {}", self.reason.label()));
    }
}

/// A host sent events faster than its budget and was made to wait.
pub struct HostThrottled {
    pub host: HostId,
    pub wait: Duration,
}

impl InternalEvent for HostThrottled {
    fn emit(self, m: &Metrics) {
        tracing::warn!(host = %self.host, wait_ms = self.wait.as_millis() as u64,
            "sensor over its event rate, throttled");
        m.rejected_frames.add("throttled", 1);
        m.host_flags.add(self.host, "throttled");
    }
}

/// A sensor claimed an address or name another host owns; the claim was
/// refused for detection and recorded.
pub struct IdentityConflicted<'a> {
    pub conflict: &'a crate::identity::Conflict,
}

impl InternalEvent for IdentityConflicted<'_> {
    fn emit(self, m: &Metrics) {
        let c = self.conflict;
        tracing::warn!(host = %c.host, held_by = %c.held_by, claim = ?c.claim,
            "identity claim refused: owned by another host");
        let label = match c.claim {
            crate::identity::Claim::Addr(_) => "identity_conflict_addr",
            crate::identity::Claim::Name(_) => "identity_conflict_name",
        };
        m.rejected_frames.add(label, 1);
    }
}

/// A commit of the ingest writer panicked; the writer carried on with
/// fresh state and the group's batches were refused (never acknowledged).
pub struct WriterRestarted;

impl InternalEvent for WriterRestarted {
    fn emit(self, m: &Metrics) {
        tracing::error!("ingest writer commit panicked; batches refused, writer restarted");
        m.write_errors.fetch_add(1, Ordering::Relaxed);
        m.rejected_frames.add("writer_restarted", 1);
    }
}

/// A heartbeat arrived.
pub struct HeartbeatReceived {
    pub host: HostId,
}

impl InternalEvent for HeartbeatReceived {
    fn emit(self, m: &Metrics) {
        tracing::trace!(host = %self.host, "heartbeat");
        m.heartbeats.fetch_add(1, Ordering::Relaxed);
    }
}

/// A sensor enrolled.
pub struct SensorEnrolled<'a> {
    pub host: HostId,
    pub hostname: &'a str,
}

impl InternalEvent for SensorEnrolled<'_> {
    fn emit(self, m: &Metrics) {
        tracing::info!(host = %self.host, hostname = self.hostname, "sensor enrolled");
        m.enrollments.fetch_add(1, Ordering::Relaxed);
    }
}

/// An enrollment was refused.
pub struct EnrollmentRefused<'a> {
    pub code: &'a str,
}

impl InternalEvent for EnrollmentRefused<'_> {
    fn emit(self, m: &Metrics) {
        tracing::warn!(code = self.code, "enrollment refused");
        m.enroll_refused.add(self.code, 1);
    }
}

/// A sensor's client certificate was renewed over its connection.
pub struct CertificateRenewed {
    pub host: HostId,
    /// When the new certificate expires, ns since the Unix epoch.
    pub not_after_ns: u64,
}

impl InternalEvent for CertificateRenewed {
    fn emit(self, m: &Metrics) {
        tracing::info!(host = %self.host, not_after_ns = self.not_after_ns, "sensor certificate renewed");
        m.cert_renewals.add("renewed", 1);
    }
}

/// A sensor's certificate renewal was refused (`code` starts with `renew_`).
pub struct RenewalRefused<'a> {
    pub host: HostId,
    pub code: &'a str,
    pub detail: &'a str,
}

impl InternalEvent for RenewalRefused<'_> {
    fn emit(self, m: &Metrics) {
        tracing::warn!(host = %self.host, code = self.code, detail = self.detail, "certificate renewal refused");
        m.cert_renewals.add(self.code, 1);
    }
}

/// An ingest connection opened.
pub struct ConnectionOpened {
    pub host: HostId,
}

impl InternalEvent for ConnectionOpened {
    fn emit(self, m: &Metrics) {
        tracing::debug!(host = %self.host, "sensor connected");
        m.connections_opened.fetch_add(1, Ordering::Relaxed);
    }
}

/// An ingest connection closed.
pub struct ConnectionClosed<'a> {
    pub host: HostId,
    pub reason: &'a str,
}

impl InternalEvent for ConnectionClosed<'_> {
    fn emit(self, m: &Metrics) {
        tracing::debug!(host = %self.host, reason = self.reason, "sensor disconnected");
        m.connections_closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// The retention task deleted old events.
pub struct RetentionApplied {
    pub cutoff_ns: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl InternalEvent for RetentionApplied {
    fn emit(self, m: &Metrics) {
        tracing::info!(
            cutoff_ns = self.cutoff_ns,
            bytes_before = self.bytes_before,
            bytes_after = self.bytes_after,
            "retention applied"
        );
        m.retention_runs.fetch_add(1, Ordering::Relaxed);
    }
}
