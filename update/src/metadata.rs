//! The four TUF top-level roles' metadata (specification v1.0, section 4),
//! the signed envelope around them, signing and threshold checking.
//!
//! Signatures are checked over the canonical JSON of the `signed` value as
//! it was parsed, so fields this subset does not know (delegations,
//! consistent snapshots, custom data) are covered by the signature too,
//! then simply not used.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use ed25519_dalek::{SigningKey, Verifier};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cjson::to_canonical;
use crate::error::VerifyError;
use crate::keys::{sign_bytes, PublicKey, Signature};

/// Spec version written into new metadata.
pub const SPEC_VERSION: &str = "1.0.31";

/// The four top-level roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Signs the keys of every role, itself included.
    Root,
    /// Signs the target files' lengths and hashes.
    Targets,
    /// Signs the version of the targets metadata (no mix-and-match).
    Snapshot,
    /// Signs the snapshot's hash; short expiry (no freeze).
    Timestamp,
}

impl Role {
    /// The role's name in metadata (`_type`, `roles` keys, file names).
    pub fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Targets => "targets",
            Role::Snapshot => "snapshot",
            Role::Timestamp => "timestamp",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A metadata file: the signed value and the signatures over it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// The role's metadata, kept as parsed so signatures cover every field.
    pub signed: Value,
    /// Signatures over the canonical JSON of `signed`.
    pub signatures: Vec<Signature>,
}

/// Keys allowed to sign for one role and how many must.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    /// Key ids (into [`Root::keys`]).
    pub keyids: Vec<String>,
    /// Distinct valid signatures required.
    pub threshold: u32,
}

/// Root metadata: the keys and thresholds of every role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Root {
    /// Always `root`.
    #[serde(rename = "_type")]
    pub kind: String,
    /// TUF specification version.
    pub spec_version: String,
    /// Root version; each rotation adds exactly one.
    pub version: u64,
    /// RFC 3339 UTC expiry.
    pub expires: String,
    /// Always false here: a bundle carries one snapshot of the repository.
    #[serde(default)]
    pub consistent_snapshot: bool,
    /// Every key any role may use, by key id.
    pub keys: BTreeMap<String, PublicKey>,
    /// The keys and threshold of each top-level role, by role name.
    pub roles: BTreeMap<String, RoleKeys>,
}

/// Length and hashes of a file another role commits to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaFile {
    /// Version of the referenced metadata.
    pub version: u64,
    /// Length in bytes, when committed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// Hashes by algorithm name (`sha256`, hex), when committed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<BTreeMap<String, String>>,
}

/// Timestamp or snapshot metadata: versions (and hashes) of other files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    /// `timestamp` or `snapshot`.
    #[serde(rename = "_type")]
    pub kind: String,
    /// TUF specification version.
    pub spec_version: String,
    /// This file's version.
    pub version: u64,
    /// RFC 3339 UTC expiry.
    pub expires: String,
    /// Referenced files by name (`snapshot.json`, `targets.json`).
    pub meta: BTreeMap<String, MetaFile>,
}

/// One target file as targets metadata describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetDesc {
    /// Exact length in bytes.
    pub length: u64,
    /// Hashes by algorithm; `sha256` is required here.
    pub hashes: BTreeMap<String, String>,
    /// Application data (Vigil writes `{"release": NAME}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<Value>,
}

impl TargetDesc {
    /// Whether `got_hex` (the SHA-256 of the bytes read) is the signed one;
    /// `Err` says how they differ, for the caller's "altered" error.
    pub fn check_sha256(&self, got_hex: &str) -> Result<(), String> {
        let want = self
            .hashes
            .get("sha256")
            .map(String::as_str)
            .unwrap_or_default();
        if want.eq_ignore_ascii_case(got_hex) {
            Ok(())
        } else {
            Err(format!("sha256 {got_hex} but {want} signed"))
        }
    }
}

/// Targets metadata: every file of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    /// Always `targets`.
    #[serde(rename = "_type")]
    pub kind: String,
    /// TUF specification version.
    pub spec_version: String,
    /// This file's version: the release number Vigil compares.
    pub version: u64,
    /// RFC 3339 UTC expiry.
    pub expires: String,
    /// Target files by name.
    pub targets: BTreeMap<String, TargetDesc>,
}

/// Parses a metadata file into its envelope.
pub fn parse_envelope(file: &str, bytes: &[u8]) -> Result<Envelope, VerifyError> {
    serde_json::from_slice(bytes).map_err(|e| VerifyError::Malformed {
        file: file.to_string(),
        reason: e.to_string(),
    })
}

/// Reads the typed role out of a verified envelope, checking `_type`.
pub fn typed<T: serde::de::DeserializeOwned>(
    file: &str,
    role: Role,
    env: &Envelope,
) -> Result<T, VerifyError> {
    let kind = env.signed.get("_type").and_then(Value::as_str);
    if kind != Some(role.name()) {
        return Err(VerifyError::Malformed {
            file: file.to_string(),
            reason: format!("_type is {kind:?}, expected {:?}", role.name()),
        });
    }
    serde_json::from_value(env.signed.clone()).map_err(|e| VerifyError::Malformed {
        file: file.to_string(),
        reason: e.to_string(),
    })
}

/// Builds a metadata file: `signed` signed by each of `keys`.
pub fn sign(signed: &Value, keys: &[&SigningKey]) -> Vec<u8> {
    let bytes = to_canonical(signed).expect("metadata this crate builds has no floats");
    let env = Envelope {
        signed: signed.clone(),
        signatures: keys.iter().map(|k| sign_bytes(k, &bytes)).collect(),
    };
    let mut out = serde_json::to_vec_pretty(&env).expect("an envelope always serialises");
    out.push(b'\n');
    out
}

/// Checks that at least the threshold of `role`'s keys in `root` signed
/// `env`. Each key counts once, however often it signed.
pub fn check_threshold(
    root: &Root,
    role: Role,
    env: &Envelope,
    file: &str,
) -> Result<(), VerifyError> {
    let keys = root
        .roles
        .get(role.name())
        .ok_or_else(|| VerifyError::Malformed {
            file: "root.json".into(),
            reason: format!("no {role} role"),
        })?;
    if keys.threshold == 0 {
        return Err(VerifyError::Malformed {
            file: "root.json".into(),
            reason: format!("{role} threshold is 0"),
        });
    }
    let bytes = to_canonical(&env.signed).map_err(|e| VerifyError::Malformed {
        file: file.to_string(),
        reason: e.to_string(),
    })?;
    let allowed: BTreeSet<&str> = keys.keyids.iter().map(String::as_str).collect();
    let mut valid = BTreeSet::new();
    for sig in &env.signatures {
        if !allowed.contains(sig.keyid.as_str()) || valid.contains(sig.keyid.as_str()) {
            continue;
        }
        let Some(key) = root.keys.get(&sig.keyid) else {
            continue;
        };
        // A key listed under an id that is not its own would let one key
        // count twice: the id must be the hash of the key it names.
        if key.key_id() != sig.keyid {
            continue;
        }
        if verify_one(key, &bytes, &sig.sig) {
            valid.insert(sig.keyid.as_str());
        }
    }
    if (valid.len() as u64) < u64::from(keys.threshold) {
        return Err(VerifyError::Signatures {
            file: file.to_string(),
            role,
            valid: valid.len(),
            threshold: keys.threshold,
        });
    }
    Ok(())
}

fn verify_one(key: &PublicKey, bytes: &[u8], sig_hex: &str) -> bool {
    let Ok(vk) = key.verifying_key() else {
        return false;
    };
    let Ok(raw) = hex::decode(sig_hex) else {
        return false;
    };
    let Ok(raw): Result<[u8; 64], _> = raw.try_into() else {
        return false;
    };
    vk.verify(bytes, &ed25519_dalek::Signature::from_bytes(&raw))
        .is_ok()
}

/// Parses an `expires` value.
pub fn parse_expires(file: &str, expires: &str) -> Result<SystemTime, VerifyError> {
    humantime::parse_rfc3339(expires).map_err(|e| VerifyError::Malformed {
        file: file.to_string(),
        reason: format!("expires {expires:?}: {e}"),
    })
}

/// Formats a time as TUF's `expires` (RFC 3339, UTC, whole seconds).
pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
