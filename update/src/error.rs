//! Every way an update can be refused or fail, each with a message an
//! operator can act on and a stable [`VerifyError::reason`] label.

use crate::metadata::Role;

/// Why a bundle was refused. Nothing on the appliance changes when one of
/// these is returned.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The bundle could not be read.
    #[error("cannot read the bundle: {0}")]
    Io(#[from] std::io::Error),
    /// The bundle is not a well-formed archive of the expected entries.
    #[error("not an update bundle: {0}")]
    Archive(String),
    /// A metadata file does not parse or lacks a required field.
    #[error("{file}: malformed: {reason}")]
    Malformed {
        /// The metadata file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A required file is not in the bundle.
    #[error("{0} is missing from the bundle")]
    Missing(String),
    /// Too few valid signatures from the role's keys (wrong or unknown key,
    /// bad signature, or below the threshold).
    #[error("{file}: signed by {valid} valid {role} key(s), {threshold} required (wrong key or altered metadata)")]
    Signatures {
        /// The metadata file.
        file: String,
        /// The role whose keys must sign.
        role: Role,
        /// Distinct valid signatures found.
        valid: usize,
        /// Signatures required.
        threshold: u32,
    },
    /// A root in the rotation chain does not carry the next version.
    #[error(
        "{file}: root version {found}, expected {expected} (root versions must chain one by one)"
    )]
    RootChain {
        /// The root file.
        file: String,
        /// The version the chain needs.
        expected: u64,
        /// The version the file carries.
        found: u64,
    },
    /// Metadata older than what this appliance already trusts.
    #[error(
        "{role} version {found} is older than the trusted version {trusted}: rollback refused"
    )]
    Rollback {
        /// The role.
        role: Role,
        /// Version already trusted.
        trusted: u64,
        /// Version offered.
        found: u64,
    },
    /// The release is the one installed (or already seen).
    #[error("release {offered} is not newer than release {installed} already installed or seen")]
    NotNewer {
        /// Newest release this appliance accepted.
        installed: u64,
        /// Release offered.
        offered: u64,
    },
    /// Metadata past its expiry (frozen metadata).
    #[error("{role} metadata expired at {expires} (now {now}): ask for a freshly signed bundle")]
    Expired {
        /// The role.
        role: Role,
        /// Its expiry.
        expires: String,
        /// The time it was checked against.
        now: String,
    },
    /// One role's metadata does not match what another signed for it
    /// (mix-and-match of files from different releases).
    #[error("{file} does not match what {by} signed for it: {reason}")]
    Mismatch {
        /// The metadata file.
        file: String,
        /// The role that committed to it.
        by: Role,
        /// Which field differs.
        reason: String,
    },
    /// A file could not be fetched from a remote repository (the sensor
    /// side: network, HTTP status, or longer than its cap).
    #[error("cannot fetch {path}: {reason}")]
    Fetch {
        /// The repository path (`metadata/timestamp.json`, `targets/NAME`).
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A fetched file is longer than the length signed for it (or the
    /// fixed cap of metadata nothing signed a length for).
    #[error("{path} is longer than the {cap} bytes allowed")]
    TooLong {
        /// The repository path.
        path: String,
        /// Bytes allowed.
        cap: u64,
    },
    /// A target file's length or hash differs from targets metadata.
    #[error("target {name} was altered: {reason}")]
    TargetAltered {
        /// Target name.
        name: String,
        /// Length or hash difference.
        reason: String,
    },
}

impl VerifyError {
    /// Stable label, for counters and scripts.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::Io(_) => "io",
            VerifyError::Archive(_) => "archive",
            VerifyError::Malformed { .. } => "malformed",
            VerifyError::Missing(_) => "missing",
            VerifyError::Signatures { .. } => "signatures",
            VerifyError::RootChain { .. } => "root_chain",
            VerifyError::Rollback { .. } => "rollback",
            VerifyError::NotNewer { .. } => "not_newer",
            VerifyError::Expired { .. } => "expired",
            VerifyError::Mismatch { .. } => "mismatch",
            VerifyError::Fetch { .. } => "fetch",
            VerifyError::TooLong { .. } => "too_long",
            VerifyError::TargetAltered { .. } => "target_altered",
        }
    }
}

/// Why an update operation on the appliance failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The bundle was refused; the running system is untouched.
    #[error("update refused: {0}")]
    Refused(VerifyError),
    /// The slot state file could not be read or written.
    #[error("slot state {path}: {reason}")]
    State {
        /// The state file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The state machine does not allow this step now.
    #[error("{0}")]
    Slots(crate::slots::SlotError),
    /// Writing the inactive slot failed; the running slot is untouched.
    #[error("writing slot {slot}: {source}")]
    SlotWrite {
        /// The slot being written.
        slot: crate::slots::Slot,
        /// What the system said.
        source: std::io::Error,
    },
}

// Written by hand rather than `#[from]`: these wrap an error whose text is
// already in the message, so it is not also reported as a source (anyhow
// would print it twice).
impl From<VerifyError> for UpdateError {
    fn from(e: VerifyError) -> Self {
        UpdateError::Refused(e)
    }
}

impl From<crate::slots::SlotError> for UpdateError {
    fn from(e: crate::slots::SlotError) -> Self {
        UpdateError::Slots(e)
    }
}
