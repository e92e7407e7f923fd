//! Vigil evidence: what an auditor can verify offline, months later, without
//! trusting the appliance (issue #17).
//!
//! Pure: no clock (times are passed in), no storage, no I/O beyond the
//! readers and writers the caller hands in. Published formats only, so
//! auditors can check with tools they already trust. Modules in the order
//! data passes them:
//!
//! 1. [`merkle`] — RFC 6962 / RFC 9162 Merkle tree over the audit log:
//!    root, inclusion and consistency proofs from a [`merkle::LeafHashes`]
//!    source, O(log n) [`merkle::Frontier`] for appending.
//! 2. [`checkpoint`] — the signed tree head as a C2SP tlog-checkpoint in a
//!    C2SP signed-note, Ed25519.
//! 3. [`dsse`] — DSSE v1 envelope and pre-authentication encoding.
//! 4. [`statement`] — in-toto Statement v1 with the evidence-bundle
//!    predicate.
//! 5. [`bundle`] — deterministic, streaming ustar bundle writer.
//! 6. [`verify`] — offline verification of bundles, the audit log and
//!    log extension, each as a report naming every broken part.

pub mod bundle;
pub mod checkpoint;
pub mod dsse;
pub mod merkle;
pub mod statement;
pub mod verify;

pub use bundle::{write_bundle, AuditEvidence, BundleError, BundleFile, BundleWriter};
pub use checkpoint::{audit_origin, Checkpoint, NoteError};
pub use dsse::{fingerprint, Envelope};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use merkle::{Frontier, Hash, LeafHashes, MemoryLeaves, MerkleError};
pub use statement::{ExportInfo, Statement};
pub use verify::{prove_extends, verify_audit_log, verify_bundle, Check, VerifyReport};
