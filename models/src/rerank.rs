//! The analysts' re-ranker (issue #14): closing verdicts (true / false
//! positive) train a logistic regression over an alert's explanation, so a
//! fleet's analysts teach the detector which of its alerts they confirm.
//!
//! The input is a fixed, named feature vector ([`FEATURE_NAMES`]) read from
//! an [`Alert`]'s explanation — each deviation's score, the hop score,
//! counts (hosts in the path, techniques, users), the alert's kind and an
//! hour-of-week bucket — never raw host or user ids, so what is learnt
//! transfers between alerts about different hosts.
//!
//! `smartcore` fits the weights; the fitted model is kept as our own plain
//! struct (standardisation, weights, intercept) that scores without
//! smartcore, serialises with postcard and carries a version and a SHA-256
//! of its parameters, like [`crate::model::HostModel`]. A model is only
//! fitted from at least [`MIN_PER_CLASS`] verdicts of each class; until then
//! callers keep the detector's ranking (identity).
//!
//! Logistic regression, not a random forest: the verdict sets are small
//! (tens to thousands), a linear model over standardised features with an
//! L2 penalty neither memorises them nor needs a seed, its weights say what
//! it learnt, and its probability is a smooth function of the features, so
//! the re-ranked score orders alerts without ties.

use crate::alert::{Alert, AlertKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};

/// Format of the serialised [`Reranker`] (part of the detector snapshot).
pub const RERANK_FORMAT: u32 = 1;
/// Fewest verdicts of each class before a re-ranker is fitted.
pub const MIN_PER_CLASS: usize = 5;
/// L2 penalty of the logistic regression (on standardised features).
const ALPHA: f64 = 1.0;
/// Features are clamped to ± this before anything else (a NaN is 0).
const FEATURE_CAP: f64 = 1e6;
/// Logits are clamped to ± this so a probability is never exactly 0 or 1.
const LOGIT_CAP: f64 = 30.0;

/// Names of the features, in vector order (stable: part of the hash).
pub const FEATURE_NAMES: [&str; NF] = [
    "score",
    "rare_inbound_source",
    "rare_outbound_peer",
    "rare_user_destination",
    "rare_user_source",
    "rare_user_on_host",
    "rare_admin_service",
    "new_logon_edge",
    "new_user_on_edge",
    "fan_out",
    "unusual_hour",
    "after_spray",
    "remote_session_trace",
    "chained_hop",
    "chain_length",
    "password_spray",
    "other_deviations",
    "hosts_in_path",
    "techniques",
    "users",
    "kind_incident",
    "kind_spray",
    "kind_trace",
    "kind_sigma",
    "night_utc",
    "weekend_utc",
];
/// Number of features.
pub const NF: usize = 26;
/// Index of the first deviation feature and one past the last named one
/// (`other_deviations` collects the rest).
const DEV_FIRST: usize = 1;
const DEV_OTHER: usize = 16;

/// Weight of the re-ranker's log-odds in [`combine`], chosen on the tuning
/// styles only (`vigil eval enterprise --rerank`, docs/DETECTION.md).
pub const RERANK_WEIGHT: f64 = 0.25;
/// Feature name of the re-ranker's own explanation line (never read back
/// as a feature).
pub const VERDICT_FEATURE: &str = "analyst_verdicts";

/// The re-ranked score of an alerted event: the detector's score plus
/// `weight` × the re-ranker's log-odds (nats either way).
pub fn combine(score: f64, logit: f64, weight: f64) -> f64 {
    score + weight * logit
}

/// Why a re-ranker could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RerankError {
    /// Fewer verdicts of a class than [`MIN_PER_CLASS`] (one class alone
    /// teaches nothing about the difference).
    #[error(
        "too few verdicts: {positives} true and {negatives} false positives, need {need} of each"
    )]
    TooFewVerdicts {
        /// True-positive verdicts given.
        positives: usize,
        /// False-positive verdicts given.
        negatives: usize,
        /// Needed of each.
        need: usize,
    },
    /// smartcore refused or failed to fit.
    #[error("re-ranker fit failed: {0}")]
    Fit(String),
    /// The fit produced a non-finite weight.
    #[error("re-ranker fit produced non-finite weights")]
    NonFinite,
}

/// One alert's explanation as numbers, in [`FEATURE_NAMES`] order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Features(pub [f64; NF]);

impl Features {
    /// Reads the explanation of `a` (deviation scores summed by feature
    /// name; unknown names go to `other_deviations`).
    pub fn from_alert(a: &Alert) -> Features {
        let mut v = [0.0; NF];
        v[0] = a.score;
        for d in a.deviations.iter().filter(|d| d.feature != VERDICT_FEATURE) {
            let i = FEATURE_NAMES[DEV_FIRST..DEV_OTHER]
                .iter()
                .position(|n| *n == d.feature)
                .map_or(DEV_OTHER, |i| i + DEV_FIRST);
            v[i] += clean(d.score);
        }
        v[17] = a.path.len() as f64;
        v[18] = a.techniques.len() as f64;
        v[19] = a.users.len() as f64;
        let kind = match a.kind {
            AlertKind::Hop => None,
            AlertKind::Incident => Some(20),
            AlertKind::Spray => Some(21),
            AlertKind::Trace => Some(22),
            AlertKind::Sigma => Some(23),
        };
        if let Some(k) = kind {
            v[k] = 1.0;
        }
        let (night, weekend) = hour_of_week_bucket(a.created_ns);
        v[24] = f64::from(u8::from(night));
        v[25] = f64::from(u8::from(weekend));
        Features(v.map(clean))
    }

    /// The value of a named feature (None for an unknown name).
    pub fn get(&self, name: &str) -> Option<f64> {
        FEATURE_NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| self.0[i])
    }
}

/// (night 20:00–06:59 UTC, Saturday or Sunday UTC) of a time in ns since
/// the epoch (a Thursday).
fn hour_of_week_bucket(ns: u64) -> (bool, bool) {
    let hours = ns / 3_600_000_000_000;
    let hour = hours % 24;
    let day = (hours / 24 + 3) % 7; // 0 = Monday
    (!(7..20).contains(&hour), day >= 5)
}

/// A finite, bounded value (NaN is 0, infinities are the cap).
fn clean(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(-FEATURE_CAP, FEATURE_CAP)
    }
}

/// A fitted re-ranker: the probability that analysts would close an alert
/// as a true positive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reranker {
    /// [`RERANK_FORMAT`].
    pub format: u32,
    /// Increases by one per refit (set by the caller that keeps it).
    pub version: u32,
    /// SHA-256 (hex) of the postcard-serialised parameters.
    pub sha256: String,
    /// True-positive verdicts it was fitted on.
    pub positives: usize,
    /// False-positive verdicts it was fitted on.
    pub negatives: usize,
    mean: Vec<f64>,
    scale: Vec<f64>,
    weights: Vec<f64>,
    intercept: f64,
}

#[derive(Serialize)]
struct HashedParams<'a> {
    format: u32,
    version: u32,
    positives: usize,
    negatives: usize,
    mean: &'a [f64],
    scale: &'a [f64],
    weights: &'a [f64],
    intercept: f64,
    features: [&'static str; NF],
}

impl Reranker {
    /// Fits a re-ranker on (features, analysts said true positive) pairs.
    /// Refused with [`RerankError::TooFewVerdicts`] below
    /// [`MIN_PER_CLASS`] of either class.
    pub fn fit(samples: &[(Features, bool)]) -> Result<Reranker, RerankError> {
        let positives = samples.iter().filter(|s| s.1).count();
        let negatives = samples.len() - positives;
        if positives < MIN_PER_CLASS || negatives < MIN_PER_CLASS {
            return Err(RerankError::TooFewVerdicts {
                positives,
                negatives,
                need: MIN_PER_CLASS,
            });
        }
        let n = samples.len() as f64;
        let rows: Vec<[f64; NF]> = samples.iter().map(|s| s.0 .0.map(clean)).collect();
        let mut mean = vec![0.0; NF];
        let mut scale = vec![0.0; NF];
        for r in &rows {
            for (m, x) in mean.iter_mut().zip(r) {
                *m += x / n;
            }
        }
        for r in &rows {
            for ((s, x), m) in scale.iter_mut().zip(r).zip(&mean) {
                *s += (x - m) * (x - m) / n;
            }
        }
        // A constant feature gets scale 1 (it then contributes nothing).
        let scale: Vec<f64> = scale
            .into_iter()
            .map(|v| if v.sqrt() > 1e-9 { v.sqrt() } else { 1.0 })
            .collect();
        let x: Vec<Vec<f64>> = rows.iter().map(|r| standardise(r, &mean, &scale)).collect();
        let y: Vec<i32> = samples.iter().map(|s| i32::from(s.1)).collect();
        let x = DenseMatrix::from_2d_vec(&x).map_err(|e| RerankError::Fit(e.to_string()))?;
        let params = LogisticRegressionParameters::default().with_alpha(ALPHA);
        let lr =
            LogisticRegression::fit(&x, &y, params).map_err(|e| RerankError::Fit(e.to_string()))?;
        use smartcore::linalg::basic::arrays::Array;
        let weights: Vec<f64> = (0..NF).map(|j| *lr.coefficients().get((0, j))).collect();
        let intercept = *lr.intercept().get((0, 0));
        if !intercept.is_finite() || weights.iter().any(|w| !w.is_finite()) {
            return Err(RerankError::NonFinite);
        }
        let mut r = Reranker {
            format: RERANK_FORMAT,
            version: 1,
            sha256: String::new(),
            positives,
            negatives,
            mean,
            scale,
            weights,
            intercept,
        };
        r.seal();
        Ok(r)
    }

    /// Sets the version and recomputes the parameter hash.
    pub fn with_version(mut self, version: u32) -> Reranker {
        self.version = version;
        self.seal();
        self
    }

    fn seal(&mut self) {
        let params = HashedParams {
            format: self.format,
            version: self.version,
            positives: self.positives,
            negatives: self.negatives,
            mean: &self.mean,
            scale: &self.scale,
            weights: &self.weights,
            intercept: self.intercept,
            features: FEATURE_NAMES,
        };
        // Encoding plain numbers into a Vec cannot fail.
        let bytes = postcard::to_allocvec(&params).unwrap_or_default();
        self.sha256 = hex::encode(Sha256::digest(&bytes));
    }

    /// Log-odds that analysts would confirm an alert with these features,
    /// clamped to ±30 (finite for any input).
    pub fn logit(&self, f: &Features) -> f64 {
        let z = standardise(&f.0.map(clean), &self.mean, &self.scale);
        let l: f64 = z.iter().zip(&self.weights).map(|(x, w)| x * w).sum::<f64>() + self.intercept;
        if l.is_nan() {
            0.0
        } else {
            l.clamp(-LOGIT_CAP, LOGIT_CAP)
        }
    }

    /// Probability (0..1, exclusive) that analysts would confirm it.
    pub fn score(&self, f: &Features) -> f64 {
        1.0 / (1.0 + (-self.logit(f)).exp())
    }

    /// The learnt weight of each feature (standardised units), by name.
    pub fn weights(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        FEATURE_NAMES
            .iter()
            .copied()
            .zip(self.weights.iter().copied())
    }

    /// `r<version>-<first 12 hex of hash>`.
    pub fn version_tag(&self) -> String {
        format!(
            "r{}-{}",
            self.version,
            &self.sha256[..self.sha256.len().min(12)]
        )
    }

    /// Serialises it (postcard).
    pub fn to_bytes(&self) -> Result<Vec<u8>, crate::ModelError> {
        postcard::to_allocvec(self).map_err(|e| crate::ModelError::Encode(e.to_string()))
    }

    /// Restores it from [`Reranker::to_bytes`]; refuses another format or
    /// parameters whose hash does not match.
    pub fn from_bytes(bytes: &[u8]) -> Result<Reranker, crate::ModelError> {
        let r: Reranker =
            postcard::from_bytes(bytes).map_err(|e| crate::ModelError::Decode(e.to_string()))?;
        if r.format != RERANK_FORMAT {
            return Err(crate::ModelError::SnapshotVersion {
                found: r.format,
                expected: RERANK_FORMAT,
            });
        }
        if r.mean.len() != NF || r.scale.len() != NF || r.weights.len() != NF {
            return Err(crate::ModelError::Decode(
                "re-ranker of another width".into(),
            ));
        }
        let mut check = r.clone();
        check.seal();
        if check.sha256 != r.sha256 {
            return Err(crate::ModelError::Decode("re-ranker hash mismatch".into()));
        }
        Ok(r)
    }
}

fn standardise(r: &[f64; NF], mean: &[f64], scale: &[f64]) -> Vec<f64> {
    r.iter()
        .zip(mean)
        .zip(scale)
        .map(|((x, m), s)| (x - m) / s)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vigil_proto::query::{FeatureDeviation, Severity};
    use vigil_proto::HostId;

    fn alert(score: f64, devs: &[(&str, f64)], path: usize) -> Alert {
        Alert {
            id: 1,
            created_ns: 0,
            kind: AlertKind::Hop,
            severity: Severity::Low,
            score,
            title: String::new(),
            host: HostId(1),
            path: (0..path as u64).map(HostId).collect(),
            path_names: Vec::new(),
            users: vec!["u".into()],
            ports: Vec::new(),
            processes: Vec::new(),
            techniques: Vec::new(),
            summary: String::new(),
            deviations: devs
                .iter()
                .map(|(f, s)| FeatureDeviation {
                    feature: (*f).into(),
                    observed: 1.0,
                    baseline: 0.0,
                    score: *s,
                    sentence: String::new(),
                })
                .collect(),
            evidence: Vec::new(),
            incident_id: None,
            model_version: None,
        }
    }

    /// Analysts confirm alerts with a remote-session trace and close the
    /// rest; the score alone does not separate them.
    fn verdicts() -> Vec<(Features, bool)> {
        (0..40)
            .map(|i| {
                let tp = i % 2 == 0;
                let trace = if tp { 5.0 } else { 0.0 };
                let a = alert(
                    10.0 + f64::from(i % 7),
                    &[("remote_session_trace", trace), ("fan_out", 1.0)],
                    2,
                );
                (Features::from_alert(&a), tp)
            })
            .collect()
    }

    #[test]
    fn features_are_named_and_read_from_the_explanation() {
        assert_eq!(FEATURE_NAMES.len(), NF);
        let mut a = alert(
            12.0,
            &[
                ("chained_hop", 3.0),
                ("chained_hop", 1.0),
                ("brand_new", 2.0),
            ],
            3,
        );
        a.kind = AlertKind::Incident;
        // Saturday 1970-01-03 23:00 UTC
        a.created_ns = (2 * 24 + 23) * 3_600_000_000_000;
        let f = Features::from_alert(&a);
        assert_eq!(f.get("score"), Some(12.0));
        assert_eq!(f.get("chained_hop"), Some(4.0));
        assert_eq!(f.get("other_deviations"), Some(2.0));
        assert_eq!(f.get("hosts_in_path"), Some(3.0));
        assert_eq!(f.get("kind_incident"), Some(1.0));
        assert_eq!(f.get("night_utc"), Some(1.0));
        assert_eq!(f.get("weekend_utc"), Some(1.0));
        assert_eq!(f.get("no_such"), None);
    }

    #[test]
    fn learns_what_analysts_confirm() {
        let r = Reranker::fit(&verdicts()).unwrap();
        let with = Features::from_alert(&alert(10.0, &[("remote_session_trace", 5.0)], 2));
        let without = Features::from_alert(&alert(16.0, &[], 2));
        assert!(r.score(&with) > 0.8, "{}", r.score(&with));
        assert!(r.score(&without) < 0.2, "{}", r.score(&without));
        let w: Vec<_> = r.weights().collect();
        assert_eq!(w.len(), NF);
        assert!(
            w.iter()
                .find(|(n, _)| *n == "remote_session_trace")
                .unwrap()
                .1
                > 0.0
        );
    }

    #[test]
    fn one_class_or_too_few_is_refused() {
        let only_fp: Vec<_> = verdicts().into_iter().map(|(f, _)| (f, false)).collect();
        assert_eq!(
            Reranker::fit(&only_fp),
            Err(RerankError::TooFewVerdicts {
                positives: 0,
                negatives: 40,
                need: MIN_PER_CLASS
            })
        );
        let few: Vec<_> = verdicts().into_iter().take(8).collect();
        assert!(matches!(
            Reranker::fit(&few),
            Err(RerankError::TooFewVerdicts { positives: 4, .. })
        ));
        assert!(Reranker::fit(&[]).is_err());
    }

    #[test]
    fn round_trips_with_version_and_hash() {
        let r = Reranker::fit(&verdicts()).unwrap().with_version(3);
        assert_eq!(r.sha256.len(), 64);
        assert!(r.version_tag().starts_with("r3-"));
        let back = Reranker::from_bytes(&r.to_bytes().unwrap()).unwrap();
        assert_eq!(back, r);
        // same verdicts, same model
        assert_eq!(Reranker::fit(&verdicts()).unwrap().with_version(3), r);
        let mut tampered = r.clone();
        tampered.intercept += 1.0;
        let bytes = tampered.to_bytes().unwrap();
        assert!(Reranker::from_bytes(&bytes).is_err());
        assert!(Reranker::from_bytes(&[1, 2, 3]).is_err());
    }

    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            -100.0..100.0f64,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn never_panics_and_stays_a_probability(
            xs in prop::collection::vec(any_f64(), NF),
            noise in prop::collection::vec((any_f64(), any::<bool>()), 0..30),
        ) {
            let r = Reranker::fit(&verdicts()).unwrap();
            let mut v = [0.0; NF];
            v.copy_from_slice(&xs);
            let p = r.score(&Features(v));
            prop_assert!((0.0..=1.0).contains(&p), "{p}");
            prop_assert!(r.logit(&Features(v)).is_finite());
            // fitting on arbitrary values either works or is a typed error
            let mut samples = verdicts();
            for (i, (x, label)) in noise.iter().enumerate() {
                let mut f = [0.0; NF];
                f[i % NF] = *x;
                samples.push((Features(f), *label));
            }
            if let Ok(r) = Reranker::fit(&samples) {
                prop_assert!(r.score(&Features(v)).is_finite());
            }
            let mut a = alert(xs[0], &[("fan_out", xs[1]), ("x", xs[2])], 2);
            a.created_ns = u64::MAX;
            let f = Features::from_alert(&a);
            prop_assert!(f.0.iter().all(|x| x.is_finite()));
        }
    }
}
