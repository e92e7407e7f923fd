//! Typed errors of the models crate.

/// Why a model could not be trained, encoded or restored.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Not enough windows to fit a window model.
    #[error("too few training windows: have {have}, need {need}")]
    TooFewWindows { have: usize, need: usize },
    /// The clustering library failed.
    #[error("model fit failed: {0}")]
    Fit(String),
    /// Serialisation failed.
    #[error("encoding failed: {0}")]
    Encode(String),
    /// A snapshot could not be decoded.
    #[error("snapshot decode failed: {0}")]
    Decode(String),
    /// A snapshot from an incompatible version.
    #[error("snapshot format {found} is not supported (expected {expected})")]
    SnapshotVersion { found: u32, expected: u32 },
    /// No such alert in the detector's history.
    #[error("unknown alert id {0}")]
    UnknownAlert(u64),
}
