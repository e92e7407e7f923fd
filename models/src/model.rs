//! Per-host models: the multivariate window model (k-means distance on
//! standardised feature vectors, fitted with linfa) and the versioned,
//! hashed [`HostModel`] that bundles it with the host's hop threshold.

use crate::error::ModelError;
use crate::features::{FeatureVector, WindowLen, FEATURE_NAMES, NF};
use linfa::prelude::*;
use linfa::DatasetBase;
use linfa_clustering::KMeans;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Fewest windows needed to fit a window model.
pub const MIN_TRAIN_WINDOWS: usize = 12;
/// Floor on a feature's spread (in log1p units): a feature that never moved
/// in training must move by a whole count or so before it looks anomalous.
const MIN_SCALE: f32 = 0.35;

/// k-means distance model over one host's windows of one length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowModel {
    /// Window length it was trained on.
    pub len: WindowLen,
    /// Mean of `ln(1+x)` per feature.
    pub center: [f32; NF],
    /// Spread of `ln(1+x)` per feature (std, floored).
    pub scale: [f32; NF],
    /// Cluster centres in standardised space.
    pub centroids: Vec<[f32; NF]>,
    /// Distance above which a window alerts.
    pub threshold: f32,
    /// Training windows used.
    pub train_windows: u32,
    /// Median training distance.
    pub distance_p50: f32,
    /// 99th-percentile training distance.
    pub distance_p99: f32,
}

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

impl WindowModel {
    /// Fits on training vectors (already free of confirmed true positives).
    pub fn fit(len: WindowLen, vectors: &[FeatureVector]) -> Result<Self, ModelError> {
        if vectors.len() < MIN_TRAIN_WINDOWS {
            return Err(ModelError::TooFewWindows {
                have: vectors.len(),
                need: MIN_TRAIN_WINDOWS,
            });
        }
        let n = vectors.len() as f32;
        let mut center = [0f32; NF];
        let mut scale = [0f32; NF];
        for v in vectors {
            for i in 0..NF {
                center[i] += v[i].ln_1p() / n;
            }
        }
        for v in vectors {
            for i in 0..NF {
                scale[i] += (v[i].ln_1p() - center[i]).powi(2) / n;
            }
        }
        for s in &mut scale {
            *s = s.sqrt().max(MIN_SCALE);
        }
        let mut model = WindowModel {
            len,
            center,
            scale,
            centroids: vec![[0.0; NF]],
            threshold: f32::INFINITY,
            train_windows: vectors.len() as u32,
            distance_p50: 0.0,
            distance_p99: 0.0,
        };
        let z: Vec<[f32; NF]> = vectors.iter().map(|v| model.standardise(v)).collect();
        let k = (z.len() / 40).clamp(1, 4);
        let flat: Vec<f64> = z
            .iter()
            .flat_map(|r| r.iter().map(|&x| f64::from(x)))
            .collect();
        let records = Array2::from_shape_vec((z.len(), NF), flat)
            .map_err(|e| ModelError::Fit(e.to_string()))?;
        let data = DatasetBase::from(records);
        let km = KMeans::params(k)
            .n_runs(2)
            .max_n_iterations(50)
            .tolerance(1e-4)
            .fit(&data)
            .map_err(|e| ModelError::Fit(e.to_string()))?;
        model.centroids = km
            .centroids()
            .rows()
            .into_iter()
            .map(|row| {
                let mut c = [0f32; NF];
                for (ci, x) in c.iter_mut().zip(row.iter()) {
                    *ci = *x as f32;
                }
                c
            })
            .collect();
        let d: Vec<f32> = z.iter().map(|zi| model.distance_z(zi)).collect();
        model.distance_p50 = quantile(&d, 0.5);
        model.distance_p99 = quantile(&d, 0.99);
        model.threshold = quantile(&d, 1.0).max(1.0) * 1.25;
        Ok(model)
    }

    /// Standardised `ln(1+x)`.
    pub fn standardise(&self, v: &FeatureVector) -> [f32; NF] {
        let mut z = [0f32; NF];
        for i in 0..NF {
            z[i] = (v[i].ln_1p() - self.center[i]) / self.scale[i];
        }
        z
    }

    /// Distance to the nearest centre counting only upward moves (less
    /// activity is not lateral movement).
    fn distance_z(&self, z: &[f32; NF]) -> f32 {
        self.centroids
            .iter()
            .map(|c| {
                z.iter()
                    .zip(c)
                    .map(|(a, b)| (a - b).max(0.0).powi(2))
                    .sum::<f32>()
                    .sqrt()
            })
            .fold(f32::INFINITY, f32::min)
    }

    /// Anomaly distance of a window.
    pub fn distance(&self, v: &FeatureVector) -> f32 {
        self.distance_z(&self.standardise(v))
    }

    /// Per-feature (index, observed, typical value, z) for features that rose.
    pub fn deviations(&self, v: &FeatureVector) -> Vec<(usize, f32, f32, f32)> {
        let z = self.standardise(v);
        let mut out: Vec<(usize, f32, f32, f32)> = (0..NF)
            .filter(|&i| z[i] > 1.0)
            .map(|i| (i, v[i], self.center[i].exp_m1(), z[i]))
            .collect();
        out.sort_by(|a, b| b.3.total_cmp(&a.3));
        out
    }
}

/// Training facts kept with a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetrics {
    /// Hop scores seen in training.
    pub train_hops: u32,
    /// 99th percentile of training hop scores.
    pub hop_score_p99: f64,
    /// Training windows (5 min) used.
    pub train_windows_5m: u32,
    /// Training windows (1 h) used.
    pub train_windows_1h: u32,
    /// Windows left out because they held confirmed true positives.
    pub excluded_windows: u32,
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
    /// 5-minute window model, when there was enough data.
    pub w5: Option<WindowModel>,
    /// 1-hour window model, when there was enough data.
    pub w1h: Option<WindowModel>,
    /// How training went.
    pub metrics: ModelMetrics,
}

#[derive(Serialize)]
struct HashedParams<'a> {
    version: u32,
    trained_from_ns: u64,
    trained_to_ns: u64,
    hop_threshold: f64,
    w5: &'a Option<WindowModel>,
    w1h: &'a Option<WindowModel>,
    metrics: &'a ModelMetrics,
    features: [&'static str; NF],
}

impl HostModel {
    /// Computes and stores the parameter hash.
    pub fn seal(&mut self) -> Result<(), ModelError> {
        let params = HashedParams {
            version: self.version,
            trained_from_ns: self.trained_from_ns,
            trained_to_ns: self.trained_to_ns,
            hop_threshold: self.hop_threshold,
            w5: &self.w5,
            w1h: &self.w1h,
            metrics: &self.metrics,
            features: FEATURE_NAMES,
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

/// Index of a feature by name.
pub fn feature_index(name: &str) -> Option<usize> {
    FEATURE_NAMES.iter().position(|n| *n == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet_windows(n: usize) -> Vec<FeatureVector> {
        (0..n)
            .map(|i| {
                let mut v = [0f32; NF];
                v[0] = (2 + i % 3) as f32;
                v[3] = 1.0;
                v
            })
            .collect()
    }

    #[test]
    fn fit_scores_a_burst_far_above_training() {
        let m = WindowModel::fit(WindowLen::Hour, &quiet_windows(100)).unwrap();
        let normal = quiet_windows(1)[0];
        let mut burst = normal;
        burst[1] = 6.0;
        burst[2] = 6.0;
        assert!(m.distance(&normal) < m.threshold);
        assert!(m.distance(&burst) > m.threshold);
        let dev = m.deviations(&burst);
        assert_eq!(dev.len(), 2);
        assert!(dev.iter().any(|d| d.0 == 1) && dev.iter().any(|d| d.0 == 2));
    }

    #[test]
    fn fit_refuses_too_little_data() {
        assert!(matches!(
            WindowModel::fit(WindowLen::FiveMin, &quiet_windows(3)),
            Err(ModelError::TooFewWindows { .. })
        ));
    }

    #[test]
    fn seal_is_deterministic_and_sensitive() {
        let w = WindowModel::fit(WindowLen::Hour, &quiet_windows(50)).unwrap();
        let mut a = HostModel {
            version: 1,
            sha256: String::new(),
            trained_from_ns: 0,
            trained_to_ns: 10,
            hop_threshold: 8.0,
            w5: None,
            w1h: Some(w),
            metrics: ModelMetrics {
                train_hops: 0,
                hop_score_p99: 0.0,
                train_windows_5m: 0,
                train_windows_1h: 50,
                excluded_windows: 0,
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
