//! Vigil signed offline updates (issue #18): a bundle carried on a USB
//! stick, verified against the root of trust shipped on the appliance,
//! written to the inactive A/B slot, booted on trial and rolled back by
//! itself if its health check fails.
//!
//! # Why a TUF subset here rather than `tough`
//!
//! The issue names The Update Framework. `tough` (awslabs, Bottlerocket's
//! client) was examined at 0.24 and not used:
//! - it signs and verifies with `aws-lc-rs`, a second cryptographic
//!   library built from C (`aws-lc-sys`, cmake/cc) beside the `ring` and
//!   `ed25519-dalek` the workspace audits, and it turns on rustls's
//!   `aws_lc_rs` provider for the whole workspace through feature
//!   unification; about 130 crates in its tree (tokio, futures, url, ICU…);
//! - expiry reads the system clock itself (`Timestamp::now`) and refuses
//!   to load when the clock stepped back since the last load: the caller
//!   can neither pass a time in (tests, a drifting RTC on an isolated
//!   network) nor choose a sensible policy, only `ExpirationEnforcement::
//!   Unsafe`, which turns expiry off;
//! - its loader is async over URL transports, where we read one local file.
//!
//! So this crate implements the part of the TUF specification (v1.0.31)
//! an offline client needs, by its section numbers: the four top-level
//! roles (root, targets, snapshot, timestamp), Ed25519 keys and key ids
//! over canonical JSON, signature thresholds counted per distinct key,
//! version numbers that only move forward, expiry against a clock passed
//! in, length/hash chaining timestamp → snapshot → targets → target files
//! (no mix-and-match), and root rotation by chaining `N.root.json` files
//! each signed by the old and the new root threshold. Not implemented:
//! delegated targets, consistent snapshots, hash algorithms other than
//! SHA-256, key types other than Ed25519. The metadata is standard TUF
//! JSON, so python-tuf can check a bundle's `metadata/` independently.
//!
//! # Modules, in the order a bundle passes them
//!
//! 1. [`cjson`], [`keys`], [`metadata`] — canonical JSON, keys, roles.
//! 2. [`pack`] — the signing side: keygen, root rotation, releases, bundles.
//! 3. [`bundle`] — the one-file bundle, read with bounded memory.
//! 4. [`verify`] — the TUF client workflow (pure, clock passed in).
//!    [`remote`] — the same workflow over files fetched one at a time
//!    (sensors updating from the appliance), then one named target.
//! 5. [`slots`] — the A/B state machine (pure).
//! 6. [`state`], [`partition`], [`disk`] — `slots.json` on disk; slot
//!    writers (directories in tests, the appliance's partitions and ESP).
//! 7. [`apply`] — verify / apply / boot / health / status, as thin calls.

pub mod apply;
pub mod bundle;
pub mod cjson;
pub mod disk;
pub mod error;
pub mod keys;
pub mod metadata;
pub mod pack;
pub mod partition;
pub mod remote;
pub mod slots;
pub mod state;
pub mod verify;

pub use apply::{
    apply, apply_file, boot, booted, report_health, status, verify_file, ApplyReport, Status,
};
pub use bundle::Bundle;
pub use disk::DiskSlots;
pub use error::{UpdateError, VerifyError};
pub use partition::{DirSlots, SlotWriter};
pub use slots::{BootDecision, HealthOutcome, Slot, SlotStatus, Slots};
pub use state::StateStore;
pub use verify::{TrustedState, VerifyOptions};
