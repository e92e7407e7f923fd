//! Appliance counters: atomics plus labelled counters and one latency
//! histogram, rendered as Prometheus text. Only [`crate::internal_events`]
//! increments them, so every count has a matching log line.

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

/// A counter with a `reason` label.
#[derive(Debug, Default)]
pub struct Labelled(Mutex<BTreeMap<String, u64>>);

impl Labelled {
    /// Add `n` under `label`.
    pub fn add(&self, label: &str, n: u64) {
        let mut m = self.0.lock().expect("labelled counter lock");
        *m.entry(label.to_owned()).or_default() += n;
    }

    /// Snapshot of all labels.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().expect("labelled counter lock").clone()
    }

    /// Sum over labels.
    pub fn total(&self) -> u64 {
        self.0.lock().expect("labelled counter lock").values().sum()
    }
}

/// Write-latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let i = LATENCY_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
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
    pub write_latency: Histogram,
    /// Recent ingest rate (f64 bits), sampled by the housekeeping task.
    pub rate_bits: AtomicU64,
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
    pub write_latency_count: u64,
    pub write_latency_mean_us: u64,
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
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
            write_latency_count: count,
            write_latency_mean_us: sum.checked_div(count).unwrap_or(0),
        }
    }

    /// Prometheus text exposition of every counter.
    pub fn render_prometheus(&self, extra_gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, u64); 11] = [
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
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
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
        ];
        for (name, help, c) in labelled {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (reason, v) in c.snapshot() {
                let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {v}");
            }
        }
        let (buckets, sum, count) = self.write_latency.snapshot();
        let name = "vigil_write_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Synced group-commit write latency.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (i, n) in buckets.iter().enumerate() {
            cumulative += n;
            let le = LATENCY_BUCKETS_US
                .get(i)
                .map_or("+Inf".to_owned(), |us| format!("{}", *us as f64 / 1e6));
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {count}", sum as f64 / 1e6);
        for (name, help, v) in extra_gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
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
    }
}
