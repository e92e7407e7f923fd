//! Snapshot formats and the migrations that keep older ones loading.
//!
//! postcard writes a struct's fields in order with no names or lengths, and
//! the configuration is the detector's first field, so a format that only
//! changes the configuration or appends a last field migrates by rewriting
//! that prefix or appending that field's default encoding — no copy of the
//! old detector type is needed.
//!
//! - 4 → 5 (session 9): the configuration gains `host_relation_weight`; an
//!   older snapshot takes today's default (the weight is not an operator
//!   setting, so the frozen value applies to existing installs too).
//! - 5 → 6 (session 9): the detector gains a last field, the Sigma hits
//!   counted per (rule, host) during learning; an older snapshot has none
//!   (every pair keeps its rule's severity until hosts relearn).

use super::sigma::SigmaLearning;
use super::{DetectorConfig, Signals};
use crate::error::ModelError;
use serde::{Deserialize, Serialize};

/// Oldest snapshot format that still loads (older ones relearn).
pub const OLDEST_LOADABLE_FORMAT: u32 = 4;

/// `DetectorConfig` as format 4 stored it: no host-relation weight.
#[derive(Serialize, Deserialize)]
struct ConfigV4 {
    learning_period_ns: u64,
    retrain_interval_ns: u64,
    chain_window_ns: u64,
    hop_dedupe_ns: u64,
    alert_budget_per_day: f64,
    min_hop_threshold: f64,
    cold_start_hop_threshold: f64,
    prior_mass: f64,
    spawn_bonus: f64,
    chain_weight: f64,
    chain_factor: f64,
    signals: Signals,
}

/// Brings a detector's encoding (the snapshot after its format number) of
/// `format` up to the current format, one step at a time.
pub(super) fn upgrade(format: u32, body: &[u8]) -> Result<Vec<u8>, ModelError> {
    let mut body = body.to_vec();
    if format <= 4 {
        body = v4_to_v5(&body)?;
    }
    if format <= 5 {
        let empty = postcard::to_allocvec(&SigmaLearning::default())
            .map_err(|e| ModelError::Encode(e.to_string()))?;
        body.extend_from_slice(&empty);
    }
    Ok(body)
}

/// Format 5 adds `host_relation_weight` at the end of the configuration.
fn v4_to_v5(body: &[u8]) -> Result<Vec<u8>, ModelError> {
    let (old, rest) = postcard::take_from_bytes::<ConfigV4>(body)
        .map_err(|e| ModelError::Decode(format!("format 4 configuration: {e}")))?;
    let cfg = DetectorConfig {
        learning_period_ns: old.learning_period_ns,
        retrain_interval_ns: old.retrain_interval_ns,
        chain_window_ns: old.chain_window_ns,
        hop_dedupe_ns: old.hop_dedupe_ns,
        alert_budget_per_day: old.alert_budget_per_day,
        min_hop_threshold: old.min_hop_threshold,
        cold_start_hop_threshold: old.cold_start_hop_threshold,
        prior_mass: old.prior_mass,
        spawn_bonus: old.spawn_bonus,
        chain_weight: old.chain_weight,
        chain_factor: old.chain_factor,
        signals: old.signals,
        host_relation_weight: DetectorConfig::default().host_relation_weight,
    };
    let mut out = postcard::to_allocvec(&cfg).map_err(|e| ModelError::Encode(e.to_string()))?;
    out.extend_from_slice(rest);
    Ok(out)
}

/// A current snapshot rewritten as format 5 (no Sigma learning), for the
/// migration tests.
#[cfg(test)]
pub(super) fn as_format_5(snapshot: &[u8]) -> Vec<u8> {
    let mut d = super::Detector::restore(snapshot).unwrap();
    d.sigma_learning = SigmaLearning::default();
    let mut bytes = d.snapshot().unwrap();
    // The empty last field is one byte (a zero length).
    assert_eq!(bytes.pop(), Some(0));
    let (_, body) = postcard::take_from_bytes::<u32>(&bytes).unwrap();
    let mut out = postcard::to_allocvec(&5u32).unwrap();
    out.extend_from_slice(body);
    out
}

/// A current snapshot rewritten as format 4 (what the session-8 detector
/// saved), for the migration tests.
#[cfg(test)]
pub(super) fn as_format_4(snapshot: &[u8]) -> Vec<u8> {
    let v5 = as_format_5(snapshot);
    let (_, body) = postcard::take_from_bytes::<u32>(&v5).unwrap();
    let (cfg, rest) = postcard::take_from_bytes::<DetectorConfig>(body).unwrap();
    let old = ConfigV4 {
        learning_period_ns: cfg.learning_period_ns,
        retrain_interval_ns: cfg.retrain_interval_ns,
        chain_window_ns: cfg.chain_window_ns,
        hop_dedupe_ns: cfg.hop_dedupe_ns,
        alert_budget_per_day: cfg.alert_budget_per_day,
        min_hop_threshold: cfg.min_hop_threshold,
        cold_start_hop_threshold: cfg.cold_start_hop_threshold,
        prior_mass: cfg.prior_mass,
        spawn_bonus: cfg.spawn_bonus,
        chain_weight: cfg.chain_weight,
        chain_factor: cfg.chain_factor,
        signals: cfg.signals,
    };
    let mut out = postcard::to_allocvec(&4u32).unwrap();
    out.extend(postcard::to_allocvec(&old).unwrap());
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Detector, SNAPSHOT_FORMAT};
    use super::*;
    use vigil_proto::{AuthMethod, Event, EventHeader, HostId, LoginInfo, LoginService, Payload};

    fn login(host: u64, seq: u64, ts: u64, user: &str, from: &str) -> Event {
        Event {
            header: EventHeader {
                host: HostId(host),
                seq,
                ts_ns: ts,
            },
            payload: Payload::Login(LoginInfo {
                user: user.into(),
                method: AuthMethod::Kerberos,
                service: LoginService::Smb,
                src_addr: None,
                src_port: None,
                src_host: Some(from.into()),
                from_user: None,
                pid: None,
            }),
        }
    }

    #[test]
    fn a_format_4_snapshot_loads_with_the_default_weight() {
        let mut d = Detector::new(DetectorConfig {
            host_relation_weight: 0.125,
            learning_period_ns: 42,
            ..DetectorConfig::default()
        });
        for i in 0..20 {
            d.observe(&login(1, i, i * 1_000_000_000, "alice", "ws-2"));
        }
        let now = d.snapshot().unwrap();
        let old = as_format_4(&now);
        assert_eq!(postcard::take_from_bytes::<u32>(&old).unwrap().0, 4);
        let back = Detector::restore(&old).unwrap();
        assert_eq!(back.config().learning_period_ns, 42);
        assert_eq!(
            back.config().host_relation_weight,
            DetectorConfig::default().host_relation_weight
        );
        assert_eq!(back.graph_edges(), d.graph_edges());
        assert_eq!(back.next_id, d.next_id);
        assert_eq!(back.last_ns, d.last_ns);
        // Saved again, it is a current snapshot.
        let again = back.snapshot().unwrap();
        assert_eq!(
            postcard::take_from_bytes::<u32>(&again).unwrap().0,
            SNAPSHOT_FORMAT
        );
        assert!(Detector::restore(&again).is_ok());
    }

    #[test]
    fn formats_before_4_are_refused_as_such() {
        let mut bytes = postcard::to_allocvec(&3u32).unwrap();
        bytes.extend_from_slice(&[0u8; 64]);
        match Detector::restore(&bytes) {
            Err(ModelError::SnapshotVersion { found: 3, .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}
