//! in-toto Statement v1 with Vigil's evidence-bundle predicate.
//!
//! The statement names every file of a bundle (subjects, with SHA-256) and
//! describes the export in a predicate of type [`PREDICATE_TYPE`]. It is
//! serialized compactly with fields in declaration order, so the same input
//! gives the same bytes.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::dsse::fingerprint;

/// in-toto Statement v1 `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// Our predicate type. Versioned in the path: a change of meaning of any
/// field is a new version, never an edit of v1.
pub const PREDICATE_TYPE: &str = "https://vigil.dev/evidence-bundle/v1";

/// RFC 3339 (UTC) text of a time given in nanoseconds since the epoch:
/// whole seconds when there is no fraction, nanoseconds otherwise.
pub fn rfc3339_from_ns(ns: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(ns);
    if ns.is_multiple_of(1_000_000_000) {
        humantime::format_rfc3339_seconds(t).to_string()
    } else {
        humantime::format_rfc3339_nanos(t).to_string()
    }
}

/// An in-toto Statement v1 carrying an [`EvidencePredicate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// Always [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// Every file of the bundle except the manifest views and the envelope.
    pub subject: Vec<Subject>,
    /// Always [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// What was exported, by whom, when, with which key and audit anchor.
    pub predicate: EvidencePredicate,
}

impl Statement {
    /// A statement over `subject` with `predicate`.
    pub fn new(subject: Vec<Subject>, predicate: EvidencePredicate) -> Self {
        Self {
            statement_type: STATEMENT_TYPE.to_string(),
            subject,
            predicate_type: PREDICATE_TYPE.to_string(),
            predicate,
        }
    }

    /// The JSON payload signed in the envelope.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("statement serializes")
    }

    /// Parse a payload, checking `_type` and `predicateType`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let s: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if s.statement_type != STATEMENT_TYPE {
            return Err(format!(
                "_type is {:?}, expected {STATEMENT_TYPE}",
                s.statement_type
            ));
        }
        if s.predicate_type != PREDICATE_TYPE {
            return Err(format!(
                "predicateType is {:?}, expected {PREDICATE_TYPE}",
                s.predicate_type
            ));
        }
        Ok(s)
    }
}

/// One file named by the statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Path inside the bundle.
    pub name: String,
    /// `{"sha256": hex}`.
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    /// A subject with its SHA-256 in hex.
    pub fn sha256(name: &str, hex_digest: &str) -> Self {
        Self {
            name: name.to_string(),
            digest: BTreeMap::from([("sha256".to_string(), hex_digest.to_string())]),
        }
    }

    /// The SHA-256 hex digest, if present.
    pub fn sha256_hex(&self) -> Option<&str> {
        self.digest.get("sha256").map(String::as_str)
    }
}

/// What an export covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    /// One incident.
    Incident {
        /// Incident id.
        id: String,
    },
    /// One alert.
    Alert {
        /// Alert id.
        id: String,
    },
    /// One host over the predicate's time range.
    Host {
        /// Host name or id.
        host: String,
    },
}

/// A closed time range, RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    /// First instant covered.
    pub from: String,
    /// Last instant covered.
    pub to: String,
}

/// The key that signs the envelope and the audit checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyInfo {
    /// Always `ed25519`.
    pub algorithm: String,
    /// Base64 of the 32-byte raw public key.
    pub public_key: String,
    /// Hex SHA-256 of the raw public key.
    pub fingerprint: String,
}

impl PublicKeyInfo {
    /// Describe `key`.
    pub fn ed25519(key: &VerifyingKey) -> Self {
        Self {
            algorithm: "ed25519".to_string(),
            public_key: B64.encode(key.as_bytes()),
            fingerprint: fingerprint(key),
        }
    }

    /// The key, if the algorithm is Ed25519 and the bytes decode.
    pub fn key(&self) -> Result<VerifyingKey, String> {
        if self.algorithm != "ed25519" {
            return Err(format!("unsupported key algorithm {:?}", self.algorithm));
        }
        let raw: [u8; 32] = B64
            .decode(&self.public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("public key is not base64 of 32 bytes")?;
        VerifyingKey::from_bytes(&raw).map_err(|e| format!("invalid Ed25519 key: {e}"))
    }
}

/// One hand-over of the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyEntry {
    /// When, RFC 3339.
    pub time: String,
    /// Who (user name or system component).
    pub actor: String,
    /// What they did (`collected`, `exported`, `approved`…).
    pub action: String,
    /// Free text, may be empty.
    pub note: String,
}

/// The detection model in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Model version label.
    pub version: String,
    /// Hex SHA-256 of the model artefact.
    pub sha256: String,
}

/// Where the export sits in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditAnchor {
    /// The signed checkpoint note (also `audit/checkpoint.txt`).
    pub checkpoint: String,
    /// Index of the export's own audit entry (`audit/export-entry.json`).
    pub entry_index: u64,
    /// Inclusion proof of that entry, base64 hashes from the leaf up (also
    /// `audit/inclusion-proof.json`).
    pub inclusion_proof: Vec<String>,
}

/// What the caller describes about an export; the writer adds the key and
/// the audit anchor to make the [`EvidencePredicate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportInfo {
    /// What was exported.
    pub scope: Scope,
    /// Hosts covered.
    pub hosts: Vec<String>,
    /// Time window of the evidence.
    pub time_range: TimeRange,
    /// User who exported.
    pub exporter: String,
    /// When, RFC 3339 (passed in, never read from a clock).
    pub export_time: String,
    /// Appliance identity.
    pub appliance_id: String,
    /// Custody chain, oldest first.
    pub custody: Vec<CustodyEntry>,
    /// Model in force.
    pub model: ModelInfo,
}

/// The predicate of [`PREDICATE_TYPE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidencePredicate {
    /// What was exported.
    pub scope: Scope,
    /// Hosts covered.
    pub hosts: Vec<String>,
    /// Time window of the evidence.
    pub time_range: TimeRange,
    /// User who exported.
    pub exporter: String,
    /// When, RFC 3339.
    pub export_time: String,
    /// Appliance identity.
    pub appliance_id: String,
    /// The signing key.
    pub key: PublicKeyInfo,
    /// Custody chain, oldest first.
    pub custody: Vec<CustodyEntry>,
    /// Model in force.
    pub model: ModelInfo,
    /// Audit log anchor of this export.
    pub audit: AuditAnchor,
}

impl EvidencePredicate {
    /// Combine the caller's description with the key and audit anchor.
    pub fn new(info: ExportInfo, key: PublicKeyInfo, audit: AuditAnchor) -> Self {
        Self {
            scope: info.scope,
            hosts: info.hosts,
            time_range: info.time_range,
            exporter: info.exporter,
            export_time: info.export_time,
            appliance_id: info.appliance_id,
            key,
            custody: info.custody,
            model: info.model,
            audit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_from_nanos() {
        assert_eq!(rfc3339_from_ns(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_from_ns(1_700_000_000_000_000_000),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            rfc3339_from_ns(1_500_000_001),
            "1970-01-01T00:00:01.500000001Z"
        );
    }

    #[test]
    fn scope_json() {
        let s = serde_json::to_string(&Scope::Incident { id: "7".into() }).unwrap();
        assert_eq!(s, r#"{"kind":"incident","id":"7"}"#);
    }
}
