//! Vigil detection core: graph-novelty baselines and logon signals per hop,
//! campaign correlation, explanations, suppressions and evaluation metrics.
//!
//! This crate does no I/O and reads no clock: every function that depends on
//! time takes `now`/event timestamps, and state is persisted by the caller
//! through [`Detector::snapshot`] / [`Detector::restore`].
//!
//! Entry point: [`Detector`] (streaming state machine).

// Modules in the order one event's data passes them (a blank line between
// each keeps rustfmt from sorting them). The line above each is a summary;
// the module's own `//!` docs are what rustdoc shows.

// Which host is behind an address or a workstation name (peer resolution).
pub mod registry;

// The fleet graph of counted relations, scored by smoothed rarity.
pub mod graph;

// Per-host models: the versioned, hashed host model (hop threshold).
pub mod model;

// The streaming detector: events and ticks in, alerts out.
pub mod detector;

// Alerts with their explanations, and their conversion for the UI.
pub mod alert;

// Static knowledge: admin ports, remote-session processes, ATT&CK techniques.
pub mod classify;

// The technique catalogue (data/techniques.toml): evidence → ATT&CK technique.
pub mod catalogue;

// Scoped suppressions made from false-positive verdicts.
pub mod suppress;

// The analysts' re-ranker: verdicts train a logistic regression on explanations.
pub mod rerank;

// Sigma rules for known techniques, evaluated per event.
pub mod sigma;

// Detection metrics as pure functions (average precision, ROC-AUC, …).
pub mod eval;

// Typed errors of this crate.
pub mod error;

pub use alert::{Alert, AlertKind};
pub use detector::{Detector, DetectorConfig, HostPhase, ModelStatus, Observed, Signals, Verdict};
pub use error::ModelError;
pub use suppress::{Suppression, SuppressionScope};
