//! The versioned, hashed per-host model: the host's hop threshold and
//! what its training saw. (Session 8 removed the k-means window models that
//! used to live here: measured on every evaluation set they raised ~15
//! alerts a day and detected nothing the hop scores missed; see
//! `docs/DETECTION.md`.)

use crate::error::ModelError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Quantile `q` (0..=1) of a slice (sorted copy, nearest rank).
pub fn quantile(values: &[f32], q: f64) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    let idx = ((v.len() - 1) as f64 * q).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// Training facts kept with a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetrics {
    /// Hop scores seen in training.
    pub train_hops: u32,
    /// 99th percentile of training hop scores.
    pub hop_score_p99: f64,
    /// Hop scores left out because they lay in confirmed true positives.
    pub excluded_hops: u32,
    /// Alerts/day this host would have raised on its training data.
    pub expected_alerts_per_day: f64,
}

/// One host's model: versioned, hashed, with its training window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostModel {
    /// Increases by one per retrain of this host.
    pub version: u32,
    /// SHA-256 (hex) of the postcard-serialised parameters.
    pub sha256: String,
    /// Training data start, ns.
    pub trained_from_ns: u64,
    /// Training data end (the train call's `now`), ns.
    pub trained_to_ns: u64,
    /// Hop score above which a hop into this host alerts.
    pub hop_threshold: f64,
    /// How training went.
    pub metrics: ModelMetrics,
}

#[derive(Serialize)]
struct HashedParams<'a> {
    version: u32,
    trained_from_ns: u64,
    trained_to_ns: u64,
    hop_threshold: f64,
    metrics: &'a ModelMetrics,
}

impl HostModel {
    /// Computes and stores the parameter hash.
    pub fn seal(&mut self) -> Result<(), ModelError> {
        let params = HashedParams {
            version: self.version,
            trained_from_ns: self.trained_from_ns,
            trained_to_ns: self.trained_to_ns,
            hop_threshold: self.hop_threshold,
            metrics: &self.metrics,
        };
        let bytes =
            postcard::to_allocvec(&params).map_err(|e| ModelError::Encode(e.to_string()))?;
        self.sha256 = hex::encode(Sha256::digest(&bytes));
        Ok(())
    }

    /// `v<version>-<first 12 hex of hash>`, the id shown with alerts.
    pub fn version_tag(&self) -> String {
        format!(
            "v{}-{}",
            self.version,
            &self.sha256[..self.sha256.len().min(12)]
        )
    }

    /// Serialised size in bytes (postcard).
    pub fn encoded_len(&self) -> usize {
        postcard::to_allocvec(self).map(|b| b.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_is_nearest_rank() {
        assert_eq!(quantile(&[], 0.5), 0.0);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 1.0), 3.0);
    }

    #[test]
    fn seal_is_deterministic_and_sensitive() {
        let mut a = HostModel {
            version: 1,
            sha256: String::new(),
            trained_from_ns: 0,
            trained_to_ns: 10,
            hop_threshold: 8.0,
            metrics: ModelMetrics {
                train_hops: 50,
                hop_score_p99: 7.0,
                excluded_hops: 0,
                expected_alerts_per_day: 0.0,
            },
        };
        a.seal().unwrap();
        let mut b = a.clone();
        b.seal().unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a.sha256.len(), 64);
        b.hop_threshold = 8.5;
        b.seal().unwrap();
        assert_ne!(a.sha256, b.sha256);
        assert!(a.encoded_len() < 64 * 1024);
    }
}
