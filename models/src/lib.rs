//! Vigil detection core: per-host feature windows, graph-novelty and
//! multivariate baselines, campaign correlation, explanations, suppressions
//! and evaluation metrics.
//!
//! This crate does no I/O and reads no clock: every function that depends on
//! time takes `now`/event timestamps, and state is persisted by the caller
//! through [`Detector::snapshot`] / [`Detector::restore`].
//!
//! Entry point: [`Detector`] (streaming state machine).

pub mod alert;
pub mod classify;
pub mod detector;
pub mod error;
pub mod eval;
pub mod features;
pub mod graph;
pub mod model;
pub mod registry;
pub mod suppress;

pub use alert::{Alert, AlertKind};
pub use detector::{Detector, DetectorConfig, HostPhase, ModelStatus, Observed, Verdict};
pub use error::ModelError;
pub use suppress::{Suppression, SuppressionScope};
