//! Replay: stream a data set into a running appliance through the real
//! sensor uplink (enrollment with a one-time token and a pinned CA, mTLS
//! QUIC, durable spool, batches, acks), one enrolled sensor identity per
//! data-set host, paced by the events' own timestamps.
//!
//! The path of one replayed event: the source iterator (on its own thread:
//! adapters read files) → the dispatcher (paces by `ts / speedup`, waits
//! while the host has too many unacknowledged events) → that host's
//! [`vigil_sensor::spool::Spool`] (gets the identity's host id and the next
//! seq, on disk) → that host's [`vigil_sensor::uplink::Uplink`] (the same
//! code a real sensor runs; it deletes records only when acknowledged).
//! Each uplink's `Hello` names the data-set host and its addresses, so the
//! appliance's registry and detector resolve peers to the replayed hosts.
//!
//! Identities live in `STATE/hosts/<data-set host id>/` and are reused on a
//! re-run (no token use, same appliance host); the spool continues its seq,
//! so a re-run stores the data set again as new events.
//!
//! Modules: [`hosts`] enrolls (or reloads) one identity per data-set host
//! and runs its spool and uplink; [`engine`] streams the source into them
//! (pacing, back-pressure, progress, the final drain); [`sources`] turns
//! the data sets into [`ReplayItem`]s.

mod engine;
mod hosts;
pub mod sources;

pub use engine::replay;
pub use sources::{otrf_source, synth_config, synth_source, BoxedSource, LanlIter, LanlSource};

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use vigil_proto::{Event, HostId};
use vigil_sensor::enroll::EnrollError;
use vigil_sensor::spool::SpoolError;
use vigil_sensor::tls::TlsError;

/// A data-set host: its id in the data set, and the name and addresses its
/// replayed sensor reports in its `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayHost {
    /// Host id inside the data set (events carry it; it keys the state dir).
    pub id: HostId,
    /// Name reported to the appliance.
    pub name: String,
    /// Addresses reported to the appliance (so peers resolve to this host).
    pub addrs: Vec<IpAddr>,
}

/// What a replay source yields: a host (before its first event, so peers
/// resolve from the start), or an event carrying the data-set host id.
/// Events must come in time order (ties and small inversions are fine).
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayItem {
    /// A host to enroll (and name) before its events.
    Host(ReplayHost),
    /// One event; `header.host` is the data-set id, `header.seq` is ignored.
    Event(Event),
}

/// Which timestamps the replayed events carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeMode {
    /// The data set's own timestamps (e.g. January 2024 for the generator,
    /// 1970 for LANL's relative seconds). A wall-clock appliance's retention
    /// deletes data older than its bound, and its detector ages out chains
    /// between rounds, so this is for appliances on a matching clock.
    Original,
    /// Shifted so the first event is stamped with the replay's start time;
    /// the data set's own spacing is kept (at a speed-up above 1 events are
    /// stamped ahead of the wall clock).
    Shift,
    /// Shifted so the first event is stamped `first_ns` (ns since the
    /// epoch), the data set's spacing kept: with `first_ns` at least the
    /// data set's span before now, the whole history lies in the past
    /// (`vigil replay … --start -3d`), inside the appliance's ordinary
    /// time bounds, so no `--accept-historical` is needed.
    StartAt(u64),
}

impl TimeMode {
    /// The timestamp an event dated `ts_ns` in the data set is stamped
    /// with, given the first event's original timestamp `first_ts_ns` and
    /// the wall clock when it was replayed (`first_wall_ns`).
    pub fn stamp(self, ts_ns: u64, first_ts_ns: u64, first_wall_ns: u64) -> u64 {
        let shift_to = |to: u64| {
            (i128::from(ts_ns) - i128::from(first_ts_ns) + i128::from(to))
                .clamp(0, i128::from(u64::MAX)) as u64
        };
        match self {
            TimeMode::Original => ts_ns,
            TimeMode::Shift => shift_to(first_wall_ns),
            TimeMode::StartAt(first_ns) => shift_to(first_ns),
        }
    }
}

/// One progress sample (the dispatcher's view, every `progress_every`).
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Since the replay started.
    pub elapsed: Duration,
    /// Events read from the source.
    pub read: u64,
    /// Events handed to an uplink in a batch at least once.
    pub sent: u64,
    /// Events the appliance acknowledged (durably stored).
    pub acked: u64,
    /// Sent per second over the last interval.
    pub sent_per_s: f64,
    /// Acknowledged per second over the last interval.
    pub acked_per_s: f64,
    /// Hosts with a running uplink.
    pub hosts: usize,
    /// Original timestamp of the newest event read (ns).
    pub data_ts_ns: u64,
}

/// Called with each progress sample.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Replay settings.
#[derive(Clone)]
pub struct ReplayOptions {
    /// Appliance `HOST:PORT` (QUIC).
    pub appliance: String,
    /// Enrollment token with at least one use per host not yet enrolled.
    pub token: String,
    /// SHA-256 of the appliance CA (hex, ':' allowed).
    pub ca_sha256: String,
    /// Identities and spools, one folder per data-set host.
    pub state_dir: PathBuf,
    /// Data-set seconds per wall second; `None`: as fast as acks allow.
    pub speedup: Option<f64>,
    /// Timestamps of the replayed events.
    pub time: TimeMode,
    /// Most unacknowledged events per host before the dispatcher waits.
    pub window_per_host: u64,
    /// Local batch age trigger (the appliance's `Welcome` may override it).
    pub batch_max: Duration,
    /// How long to wait for a new host's uplink to be welcomed before its
    /// events are spooled anyway.
    pub connect_wait: Duration,
    /// Give up when no acknowledgement arrives for this long.
    pub stall_timeout: Duration,
    /// Progress sample interval.
    pub progress_every: Duration,
    /// Called with each progress sample.
    pub progress: Option<ProgressFn>,
}

impl ReplayOptions {
    /// Defaults: shifted time, as fast as acks allow, 20 000 events per
    /// host in flight, progress every second.
    pub fn new(
        appliance: impl Into<String>,
        token: impl Into<String>,
        ca_sha256: impl Into<String>,
        state_dir: impl Into<PathBuf>,
    ) -> Self {
        ReplayOptions {
            appliance: appliance.into(),
            token: token.into(),
            ca_sha256: ca_sha256.into(),
            state_dir: state_dir.into(),
            speedup: None,
            time: TimeMode::Shift,
            window_per_host: 20_000,
            batch_max: Duration::from_millis(200),
            connect_wait: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(60),
            progress_every: Duration::from_secs(1),
            progress: None,
        }
    }
}

/// One replayed host in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayedHost {
    /// The data-set host.
    pub dataset: ReplayHost,
    /// The host id the appliance gave its identity.
    pub host: HostId,
    /// The identity was already in the state dir.
    pub reused: bool,
    /// Events of this host spooled in this run.
    pub events: u64,
    /// First seq this run used (events got `first_seq..first_seq + events`).
    pub first_seq: u64,
}

/// Totals of a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayReport {
    /// Events read from the source.
    pub events_read: u64,
    /// Events sent to the appliance at least once.
    pub events_sent: u64,
    /// Events the appliance acknowledged.
    pub events_acked: u64,
    /// Hosts by data-set id.
    pub hosts: BTreeMap<HostId, ReplayedHost>,
    /// Wall time of the replay (enrollment included).
    pub elapsed: Duration,
    /// Wall time from the first event spooled to the last one acknowledged.
    pub streaming: Duration,
}

impl ReplayReport {
    /// Acknowledged events per second of streaming.
    pub fn acked_per_s(&self) -> f64 {
        self.events_acked as f64 / self.streaming.as_secs_f64().max(1e-9)
    }
}

/// Why a replay stopped.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// The CA fingerprint is malformed.
    #[error("--ca-sha256: {0}")]
    Fingerprint(#[from] TlsError),
    /// Enrolling a data-set host failed.
    #[error("enrolling data-set host {name}: {source}")]
    Enroll {
        /// Data-set host name.
        name: String,
        /// Why.
        source: EnrollError,
    },
    /// A stored identity belongs to another appliance.
    #[error(
        "{dir}: this identity was enrolled with another appliance CA; use another --state dir"
    )]
    OtherAppliance {
        /// The identity folder.
        dir: PathBuf,
    },
    /// A spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The state dir could not be prepared.
    #[error("state dir {path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The source thread panicked.
    #[error("the data-set reader failed: {0}")]
    Source(String),
}

#[cfg(test)]
mod tests {
    use super::TimeMode;

    #[test]
    fn time_modes_keep_the_spacing() {
        let (first, wall) = (1_000, 5_000);
        assert_eq!(TimeMode::Original.stamp(1_250, first, wall), 1_250);
        assert_eq!(TimeMode::Shift.stamp(1_250, first, wall), 5_250);
        assert_eq!(TimeMode::StartAt(2_000).stamp(1_000, first, wall), 2_000);
        assert_eq!(TimeMode::StartAt(2_000).stamp(1_250, first, wall), 2_250);
        assert_eq!(
            TimeMode::StartAt(0).stamp(0, first, wall),
            0,
            "never below 0"
        );
    }
}
