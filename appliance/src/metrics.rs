//! Appliance counters: atomics plus labelled counters and latency
//! histograms, rendered as Prometheus text. Ingest counters are incremented
//! only by [`crate::internal_events`], so every count has a matching log
//! line; the detection pipeline keeps its own (scored events, alerts, and
//! event → alert latency).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (µs) of the write-latency histogram buckets.
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000,
];

/// Upper bounds (µs) of the event → alert latency buckets: the targets are
/// p99 ≤ 5 s for an alert and ≤ 10 s for a cross-host incident.
pub const ALERT_LATENCY_BUCKETS_US: [u64; 11] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
    3_600_000_000,
];

/// A counter with a `reason` label.
#[derive(Debug, Default)]
pub struct Labelled(Mutex<BTreeMap<String, u64>>);

impl Labelled {
    /// Add `n` under `label`.
    pub fn add(&self, label: &str, n: u64) {
        let mut m = self.0.lock().expect("labelled counter lock");
        let v = m.entry(label.to_owned()).or_default();
        *v = v.saturating_add(n);
    }

    /// Snapshot of all labels.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().expect("labelled counter lock").clone()
    }

    /// Sum over labels.
    pub fn total(&self) -> u64 {
        self.0
            .lock()
            .expect("labelled counter lock")
            .values()
            .fold(0u64, |a, v| a.saturating_add(*v))
    }
}

/// Per-host counts of refused or quarantined input, by reason. Bounded:
/// beyond [`HostFlags::MAX_HOSTS`] hosts new ones are not tracked (the
/// global counters still count them).
#[derive(Debug, Default)]
pub struct HostFlags(Mutex<std::collections::HashMap<vigil_proto::HostId, BTreeMap<String, u64>>>);

impl HostFlags {
    /// Most hosts tracked.
    pub const MAX_HOSTS: usize = 100_000;

    /// Count one `reason` against `host`.
    pub fn add(&self, host: vigil_proto::HostId, reason: &str) {
        let mut m = self.0.lock().expect("host flags lock");
        if m.len() >= Self::MAX_HOSTS && !m.contains_key(&host) {
            return;
        }
        let v = m
            .entry(host)
            .or_default()
            .entry(reason.to_owned())
            .or_default();
        *v = v.saturating_add(1);
    }

    /// `host`'s counts, by reason.
    pub fn of(&self, host: vigil_proto::HostId) -> BTreeMap<String, u64> {
        self.0
            .lock()
            .expect("host flags lock")
            .get(&host)
            .cloned()
            .unwrap_or_default()
    }
}

/// A latency histogram over fixed bucket bounds (µs); the last bucket is
/// `+Inf`.
#[derive(Debug)]
pub struct Histogram {
    bounds_us: &'static [u64],
    buckets: Vec<AtomicU64>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// The write-latency histogram.
impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(&LATENCY_BUCKETS_US)
    }
}

/// Event → alert latency (its own bucket bounds, seconds to an hour).
#[derive(Debug)]
pub struct AlertLatency(pub Histogram);

impl Default for AlertLatency {
    fn default() -> Self {
        AlertLatency(Histogram::new(&ALERT_LATENCY_BUCKETS_US))
    }
}

impl Histogram {
    /// An empty histogram over `bounds_us` (ascending).
    pub fn new(bounds_us: &'static [u64]) -> Histogram {
        Histogram {
            bounds_us,
            buckets: (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// The bucket bounds, µs.
    pub fn bounds_us(&self) -> &'static [u64] {
        self.bounds_us
    }

    /// The upper bound (µs) of the bucket holding quantile `q` (None when
    /// empty; `u64::MAX` when it falls in the `+Inf` bucket).
    pub fn quantile_upper_us(&self, q: f64) -> Option<u64> {
        let (buckets, _, count) = self.snapshot();
        if count == 0 {
            return None;
        }
        let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (i, n) in buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(self.bounds_us.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        Some(u64::MAX)
    }

    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let i = self
            .bounds_us
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(self.bounds_us.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// (per-bucket counts, sum µs, count).
    pub fn snapshot(&self) -> (Vec<u64>, u64, u64) {
        (
            self.buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            self.sum_us.load(Ordering::Relaxed),
            self.count.load(Ordering::Relaxed),
        )
    }
}

/// Every counter the appliance keeps.
#[derive(Debug, Default)]
pub struct Metrics {
    pub events_ingested: AtomicU64,
    pub duplicates: AtomicU64,
    pub batches_acked: AtomicU64,
    pub bytes_received: AtomicU64,
    pub loss_records: AtomicU64,
    pub events_lost: AtomicU64,
    pub heartbeats: AtomicU64,
    pub enrollments: AtomicU64,
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    pub write_errors: AtomicU64,
    pub retention_runs: AtomicU64,
    pub rejected_frames: Labelled,
    pub handshake_rejects: Labelled,
    pub enroll_refused: Labelled,
    /// Certificate renewals by outcome: `renewed` or the refusal code.
    pub cert_renewals: Labelled,
    /// Acknowledged events kept in quarantine, by reason.
    pub quarantined: Labelled,
    /// Response commands by outcome (`issued`, `sent`, `acknowledged`,
    /// `done`, `failed`, `refused:<code>`, `expired`, `cancelled`,
    /// `result_rejected` for a receipt naming another host's command).
    pub commands: Labelled,
    /// What each host's sensor did that was refused, quarantined or
    /// throttled, by reason (shown on the host in the console).
    pub host_flags: HostFlags,
    pub write_latency: Histogram,
    /// Recent ingest rate (f64 bits), sampled by the housekeeping task.
    pub rate_bits: AtomicU64,
    /// Stored events the detection pipeline has scored.
    pub detection_events: AtomicU64,
    /// Alerts and incident updates the pipeline wrote.
    pub alerts_written: AtomicU64,
    /// Detection rounds that failed (store or model errors).
    pub detection_errors: AtomicU64,
    /// Analyst true-positive verdicts handed to the detector for retraining.
    pub verdicts_applied: AtomicU64,
    /// Sensor event time → single-host alert stored, for events scored
    /// within `pipeline::LIVE_LATENCY_BOUND_NS` of their time.
    pub alert_latency: AlertLatency,
    /// Sensor event time of the latest hop → incident stored (same bound).
    pub incident_latency: AlertLatency,
    /// Alerts on events older than that bound when scored (a replayed
    /// history, a sensor's backlog): counted here, not as latency.
    pub alerts_on_old_events: AtomicU64,
    /// Events stored since the last trend sample, by the minute of their
    /// own time (drained by the trend book).
    pub stored_by_minute: crate::trends::EventMinutes,
}

/// A point-in-time copy of the counters, for `vigil status` and the UI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    pub events_ingested: u64,
    pub duplicates: u64,
    pub batches_acked: u64,
    pub bytes_received: u64,
    pub loss_records: u64,
    pub events_lost: u64,
    pub heartbeats: u64,
    pub enrollments: u64,
    pub connections_open: u64,
    pub write_errors: u64,
    pub retention_runs: u64,
    pub rejected_frames: BTreeMap<String, u64>,
    pub handshake_rejects: BTreeMap<String, u64>,
    pub enroll_refused: BTreeMap<String, u64>,
    /// Events quarantined at ingest, by reason.
    #[serde(default)]
    pub quarantined: BTreeMap<String, u64>,
    pub write_latency_count: u64,
    pub write_latency_mean_us: u64,
    pub detection_events: u64,
    pub alerts_written: u64,
    pub detection_errors: u64,
    /// Upper bound of the p99 bucket, ms (None before the first alert).
    pub alert_latency_p99_ms: Option<u64>,
    pub incident_latency_p99_ms: Option<u64>,
    /// Alerts on events too old for their latency to mean detection.
    #[serde(default)]
    pub alerts_on_old_events: u64,
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn ms(us: u64) -> u64 {
    us / 1000
}

/// Prometheus histogram lines for `h`.
fn render_histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let (buckets, sum, count) = h.snapshot();
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0;
    for (i, n) in buckets.iter().enumerate() {
        cumulative += n;
        let le = h
            .bounds_us()
            .get(i)
            .map_or("+Inf".to_owned(), |us| format!("{}", *us as f64 / 1e6));
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_sum {}\n{name}_count {count}", sum as f64 / 1e6);
}

impl Metrics {
    /// Recent events/s.
    pub fn events_per_s(&self) -> f64 {
        f64::from_bits(self.rate_bits.load(Ordering::Relaxed))
    }

    /// Set the recent events/s.
    pub fn set_events_per_s(&self, rate: f64) {
        self.rate_bits.store(rate.to_bits(), Ordering::Relaxed);
    }

    /// Copy every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let (_, sum, count) = self.write_latency.snapshot();
        MetricsSnapshot {
            events_ingested: load(&self.events_ingested),
            duplicates: load(&self.duplicates),
            batches_acked: load(&self.batches_acked),
            bytes_received: load(&self.bytes_received),
            loss_records: load(&self.loss_records),
            events_lost: load(&self.events_lost),
            heartbeats: load(&self.heartbeats),
            enrollments: load(&self.enrollments),
            connections_open: load(&self.connections_opened)
                .saturating_sub(load(&self.connections_closed)),
            write_errors: load(&self.write_errors),
            retention_runs: load(&self.retention_runs),
            rejected_frames: self.rejected_frames.snapshot(),
            handshake_rejects: self.handshake_rejects.snapshot(),
            enroll_refused: self.enroll_refused.snapshot(),
            quarantined: self.quarantined.snapshot(),
            write_latency_count: count,
            write_latency_mean_us: sum.checked_div(count).unwrap_or(0),
            detection_events: load(&self.detection_events),
            alerts_written: load(&self.alerts_written),
            detection_errors: load(&self.detection_errors),
            alert_latency_p99_ms: self.alert_latency.0.quantile_upper_us(0.99).map(ms),
            incident_latency_p99_ms: self.incident_latency.0.quantile_upper_us(0.99).map(ms),
            alerts_on_old_events: load(&self.alerts_on_old_events),
        }
    }

    /// Prometheus text exposition of every counter.
    pub fn render_prometheus(&self, extra_gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        for (name, help, v) in self.counters() {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        self.render_rest(&mut out, extra_gauges);
        out
    }

    /// Every plain counter: (name, help, value).
    fn counters(&self) -> [(&'static str, &'static str, u64); 16] {
        [
            (
                "vigil_events_ingested_total",
                "Events stored (new, after dedupe).",
                load(&self.events_ingested),
            ),
            (
                "vigil_duplicate_events_total",
                "Events received again and ignored.",
                load(&self.duplicates),
            ),
            (
                "vigil_batches_acked_total",
                "Batches written and acknowledged.",
                load(&self.batches_acked),
            ),
            (
                "vigil_received_bytes_total",
                "Batch frame bytes received.",
                load(&self.bytes_received),
            ),
            (
                "vigil_loss_records_total",
                "Loss records reported by sensors.",
                load(&self.loss_records),
            ),
            (
                "vigil_events_lost_total",
                "Events sensors reported as dropped.",
                load(&self.events_lost),
            ),
            (
                "vigil_heartbeats_total",
                "Heartbeats received.",
                load(&self.heartbeats),
            ),
            (
                "vigil_enrollments_total",
                "Sensors enrolled.",
                load(&self.enrollments),
            ),
            (
                "vigil_connections_opened_total",
                "Ingest connections accepted.",
                load(&self.connections_opened),
            ),
            (
                "vigil_write_errors_total",
                "Failed store writes (batches refused).",
                load(&self.write_errors),
            ),
            (
                "vigil_retention_runs_total",
                "Retention passes run.",
                load(&self.retention_runs),
            ),
            (
                "vigil_detection_events_total",
                "Stored events scored by the detection pipeline.",
                load(&self.detection_events),
            ),
            (
                "vigil_alerts_written_total",
                "Alerts and incident updates written.",
                load(&self.alerts_written),
            ),
            (
                "vigil_detection_errors_total",
                "Detection rounds that failed.",
                load(&self.detection_errors),
            ),
            (
                "vigil_alerts_on_old_events_total",
                "Alerts on events over 10 min old when scored (history, backlog), left out of the latency histograms.",
                load(&self.alerts_on_old_events),
            ),
            (
                "vigil_verdicts_applied_total",
                "True-positive verdicts excluded from retraining.",
                load(&self.verdicts_applied),
            ),
        ]
    }

    /// Labelled counters, histograms and the caller's gauges.
    fn render_rest(&self, out: &mut String, extra_gauges: &[(&str, &str, f64)]) {
        let labelled = [
            (
                "vigil_rejected_frames_total",
                "Frames or batches refused, by reason.",
                &self.rejected_frames,
            ),
            (
                "vigil_handshake_rejects_total",
                "Connections refused at or right after the handshake.",
                &self.handshake_rejects,
            ),
            (
                "vigil_enroll_refused_total",
                "Enrollment attempts refused.",
                &self.enroll_refused,
            ),
            (
                "vigil_cert_renewals_total",
                "Sensor certificate renewals, by outcome (renewed or refusal code).",
                &self.cert_renewals,
            ),
            (
                "vigil_quarantined_events_total",
                "Acknowledged events kept out of the event store, by reason.",
                &self.quarantined,
            ),
            (
                "vigil_response_commands_total",
                "Response commands, by outcome.",
                &self.commands,
            ),
        ];
        for (name, help, c) in labelled {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (reason, v) in c.snapshot() {
                let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {v}");
            }
        }
        render_histogram(
            out,
            "vigil_write_latency_seconds",
            "Synced group-commit write latency.",
            &self.write_latency,
        );
        render_histogram(
            out,
            "vigil_alert_latency_seconds",
            "Sensor event time to single-host alert stored.",
            &self.alert_latency.0,
        );
        render_histogram(
            out,
            "vigil_incident_latency_seconds",
            "Sensor event time of the latest hop to incident stored.",
            &self.incident_latency.0,
        );
        for (name, help, v) in extra_gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_labels_and_buckets() {
        let m = Metrics::default();
        m.rejected_frames.add("malformed", 2);
        m.write_latency.observe(Duration::from_millis(3));
        let text = m.render_prometheus(&[("vigil_hosts", "Hosts.", 3.0)]);
        assert!(text.contains("vigil_rejected_frames_total{reason=\"malformed\"} 2"));
        assert!(text.contains("vigil_write_latency_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("vigil_write_latency_seconds_count 1"));
        assert!(text.contains("vigil_hosts 3"));
        assert!(text.contains("vigil_alert_latency_seconds_count 0"));
    }

    #[test]
    fn quantile_is_the_upper_bound_of_its_bucket() {
        let h = Histogram::new(&ALERT_LATENCY_BUCKETS_US);
        assert_eq!(h.quantile_upper_us(0.99), None);
        for _ in 0..98 {
            h.observe(Duration::from_millis(300));
        }
        h.observe(Duration::from_secs(3));
        h.observe(Duration::from_secs(7200));
        assert_eq!(h.quantile_upper_us(0.5), Some(500_000));
        assert_eq!(h.quantile_upper_us(0.99), Some(5_000_000));
        assert_eq!(h.quantile_upper_us(1.0), Some(u64::MAX));
    }
}
