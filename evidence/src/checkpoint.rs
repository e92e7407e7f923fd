//! Signed checkpoints: C2SP tlog-checkpoint inside a C2SP signed-note.
//!
//! ```text
//! vigil-audit/appliance-1
//! 1042
//! 3dPV5y2BX9Qu8W5fNEh1Ec7mPu3LKXv3h3dMbK8DgV0=
//! time 2025-03-01T12:00:00Z
//!
//! — vigil-audit/appliance-1 Xx9kQ…base64(key id || Ed25519 signature)…
//! ```
//!
//! The first three lines are origin, tree size and base64 root hash; the
//! time goes in an *extension line* `time <RFC 3339>`. tlog-checkpoint
//! allows extension lines (opaque, non-empty) but does not recommend them
//! because public log monitors cannot audit them; our monitors are the
//! auditors reading this very text, and the Ed25519 note signature (type
//! 0x01) covers the whole note text, extensions included. The key name is
//! the origin, and the key id is `SHA-256(name || 0x0A || 0x01 || pubkey)[:4]`
//! as signed-note specifies. Pinned against golang.org/x/mod/sumdb/note's
//! published example signature.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// Largest note accepted by [`SignedNote::parse`] (64 signatures of the
/// largest post-quantum size the spec mentions fit comfortably).
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Most signature lines accepted (the spec asks for at least 16).
pub const MAX_SIGNATURES: usize = 64;
/// signed-note signature type byte of Ed25519.
const ED25519_TYPE: u8 = 0x01;
/// Prefix of a signature line: em dash and space.
const SIG_PREFIX: &str = "\u{2014} ";
/// Prefix of our time extension line.
const TIME_PREFIX: &str = "time ";

/// What is wrong with a note or checkpoint.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    /// Larger than [`MAX_NOTE_BYTES`] or more than [`MAX_SIGNATURES`].
    #[error("note too large ({0})")]
    TooLarge(String),
    /// Not well formed per signed-note.
    #[error("malformed note: {0}")]
    Malformed(String),
    /// Not well formed per tlog-checkpoint.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    /// A key name with a space or plus, or empty.
    #[error("invalid key name {0:?}: must be non-empty, without spaces or '+'")]
    KeyName(String),
    /// No signature line by the expected key (name and key id).
    #[error("no signature by key {name} (key id {key_id:08x}); signed by: {found}")]
    NoSignature {
        /// The expected key name.
        name: String,
        /// The expected key id.
        key_id: u32,
        /// The signers present, `name/keyid`.
        found: String,
    },
    /// The signature line of the expected key does not verify.
    #[error("signature by {name} (key id {key_id:08x}) does not verify")]
    BadSignature {
        /// The key name.
        name: String,
        /// The key id.
        key_id: u32,
    },
}

/// The origin (and key name) of an appliance's audit log:
/// `vigil-audit/<appliance-id>`.
pub fn audit_origin(appliance_id: &str) -> String {
    format!("vigil-audit/{appliance_id}")
}

/// The signed-note key id of an Ed25519 key under `name`.
pub fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519_TYPE]);
    h.update(key.as_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn check_key_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::KeyName(name.to_string()));
    }
    Ok(())
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key id (first four bytes of the decoded signature).
    pub key_id: u32,
    /// The signature bytes after the key id.
    pub signature: Vec<u8>,
}

/// A parsed signed note: text plus signature lines, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text, ending in a newline.
    pub text: String,
    /// The signature lines in order.
    pub signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// Sign `text` (which must end in a newline) with `key` under `name`.
    pub fn sign(text: &str, name: &str, key: &SigningKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        check_text(text)?;
        let sig = key.sign(text.as_bytes());
        Ok(Self {
            text: text.to_string(),
            signatures: vec![NoteSignature {
                name: name.to_string(),
                key_id: key_id(name, &key.verifying_key()),
                signature: sig.to_bytes().to_vec(),
            }],
        })
    }

    /// Parse a note strictly: bounded size, UTF-8 without control
    /// characters other than newline, text separated from the signature
    /// lines by the last blank line.
    pub fn parse(note: &str) -> Result<Self, NoteError> {
        if note.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge(format!("{} bytes", note.len())));
        }
        if note.chars().any(|c| c != '\n' && (c as u32) < 0x20) {
            return Err(NoteError::Malformed("control character".into()));
        }
        let Some(split) = note.rfind("\n\n") else {
            return Err(NoteError::Malformed(
                "no blank line before signatures".into(),
            ));
        };
        let text = &note[..split + 1];
        let sigs = &note[split + 2..];
        let Some(sigs) = sigs.strip_suffix('\n') else {
            return Err(NoteError::Malformed("does not end in a newline".into()));
        };
        let signatures = sigs
            .split('\n')
            .map(parse_signature_line)
            .collect::<Result<Vec<_>, _>>()?;
        if signatures.len() > MAX_SIGNATURES {
            return Err(NoteError::TooLarge(format!(
                "{} signatures",
                signatures.len()
            )));
        }
        Ok(Self {
            text: text.to_string(),
            signatures,
        })
    }

    /// The note in its text form.
    pub fn to_text(&self) -> String {
        let mut out = format!("{}\n", self.text);
        for s in &self.signatures {
            let mut blob = s.key_id.to_be_bytes().to_vec();
            blob.extend_from_slice(&s.signature);
            out.push_str(&format!("{SIG_PREFIX}{} {}\n", s.name, B64.encode(blob)));
        }
        out
    }

    /// Verify the signature by `key` under `name`; other signers are
    /// ignored as the spec requires.
    pub fn verify(&self, name: &str, key: &VerifyingKey) -> Result<(), NoteError> {
        let id = key_id(name, key);
        let Some(sig) = self
            .signatures
            .iter()
            .find(|s| s.name == name && s.key_id == id)
        else {
            let found = self
                .signatures
                .iter()
                .map(|s| format!("{}/{:08x}", s.name, s.key_id))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(NoteError::NoSignature {
                name: name.to_string(),
                key_id: id,
                found,
            });
        };
        let bad = || NoteError::BadSignature {
            name: name.to_string(),
            key_id: id,
        };
        let sig = Signature::from_slice(&sig.signature).map_err(|_| bad())?;
        key.verify_strict(self.text.as_bytes(), &sig)
            .map_err(|_| bad())
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("text must end in a newline".into()));
    }
    if text.chars().any(|c| c != '\n' && (c as u32) < 0x20) {
        return Err(NoteError::Malformed("control character in text".into()));
    }
    Ok(())
}

fn parse_signature_line(line: &str) -> Result<NoteSignature, NoteError> {
    let bad = |why: &str| NoteError::Malformed(format!("signature line {line:?}: {why}"));
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or_else(|| bad("does not start with an em dash"))?;
    let (name, b64) = rest.split_once(' ').ok_or_else(|| bad("no signature"))?;
    check_key_name(name).map_err(|_| bad("invalid key name"))?;
    let blob = B64.decode(b64).map_err(|_| bad("invalid base64"))?;
    if blob.len() < 5 {
        return Err(bad("too short"));
    }
    Ok(NoteSignature {
        name: name.to_string(),
        key_id: u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]),
        signature: blob[4..].to_vec(),
    })
}

/// A tree head: origin, size, root hash and extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log identity, e.g. `vigil-audit/<appliance-id>`; also the key name.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 6962 root of those leaves.
    pub root: Hash,
    /// Extension lines (non-empty), e.g. `time 2025-03-01T12:00:00Z`.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint stamped with `time_rfc3339` as a `time` extension line.
    pub fn new(origin: &str, size: u64, root: Hash, time_rfc3339: &str) -> Self {
        Self {
            origin: origin.to_string(),
            size,
            root,
            extensions: vec![format!("{TIME_PREFIX}{time_rfc3339}")],
        }
    }

    /// The time extension, if any.
    pub fn time(&self) -> Option<&str> {
        self.extensions
            .iter()
            .find_map(|e| e.strip_prefix(TIME_PREFIX))
    }

    /// The note text (the signed body).
    pub fn body(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            out.push_str(e);
            out.push('\n');
        }
        out
    }

    /// Parse a note text as a checkpoint body.
    pub fn parse_body(text: &str) -> Result<Self, NoteError> {
        let bad = |why: &str| NoteError::MalformedCheckpoint(why.to_string());
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("no final newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad("empty origin"))?;
        let size_line = lines.next().ok_or_else(|| bad("no tree size"))?;
        let size_ok = !size_line.is_empty()
            && size_line.bytes().all(|b| b.is_ascii_digit())
            && (size_line == "0" || !size_line.starts_with('0'));
        let size: u64 = size_ok
            .then(|| size_line.parse().ok())
            .flatten()
            .ok_or_else(|| bad("tree size is not a decimal without leading zeroes"))?;
        let root_line = lines.next().ok_or_else(|| bad("no root hash"))?;
        let root: Hash = B64
            .decode(root_line)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad("root hash is not base64 of 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("empty extension line"));
        }
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }

    /// Sign as a note under the origin as key name; returns the note text.
    pub fn sign(&self, key: &SigningKey) -> Result<String, NoteError> {
        Ok(SignedNote::sign(&self.body(), &self.origin, key)?.to_text())
    }

    /// Parse a signed checkpoint and verify the signature by `key` under the
    /// checkpoint's own origin.
    pub fn open(note: &str, key: &VerifyingKey) -> Result<Self, NoteError> {
        let (cp, note) = Self::parse_unverified(note)?;
        note.verify(&cp.origin, key)?;
        Ok(cp)
    }

    /// Parse a signed checkpoint without checking any signature (to report
    /// what it claims when the signature fails).
    pub fn parse_unverified(note: &str) -> Result<(Self, SignedNote), NoteError> {
        let note = SignedNote::parse(note)?;
        Ok((Self::parse_body(&note.text)?, note))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// golang.org/x/mod/sumdb/note's example: PeterNeumann's key and note.
    const GO_SKEY: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const GO_NOTE_SIG: &str =
        "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=";

    fn go_key() -> SigningKey {
        let raw = B64.decode(GO_SKEY).unwrap();
        assert_eq!(raw[0], ED25519_TYPE);
        SigningKey::from_bytes(&raw[1..].try_into().unwrap())
    }

    #[test]
    fn go_sumdb_note_vector() {
        let key = go_key();
        let vkey = B64.decode(GO_VKEY).unwrap();
        assert_eq!(&vkey[1..], key.verifying_key().as_bytes());
        assert_eq!(key_id("PeterNeumann", &key.verifying_key()), 0xc74f20a3);
        let note = SignedNote::sign(GO_TEXT, "PeterNeumann", &key).unwrap();
        let want = format!("{GO_TEXT}\n\u{2014} PeterNeumann {GO_NOTE_SIG}\n");
        assert_eq!(note.to_text(), want);
        let parsed = SignedNote::parse(&want).unwrap();
        parsed.verify("PeterNeumann", &key.verifying_key()).unwrap();
        let tampered = SignedNote::parse(&want.replace("cryptography", "cryptographY")).unwrap();
        assert!(matches!(
            tampered.verify("PeterNeumann", &key.verifying_key()),
            Err(NoteError::BadSignature { .. })
        ));
    }

    #[test]
    fn checkpoint_round_trip_and_strictness() {
        let key = go_key();
        let cp = Checkpoint::new("vigil-audit/app-1", 7, [9u8; 32], "2025-03-01T12:00:00Z");
        let text = cp.sign(&key).unwrap();
        assert!(text.starts_with("vigil-audit/app-1\n7\n"));
        let opened = Checkpoint::open(&text, &key.verifying_key()).unwrap();
        assert_eq!(opened, cp);
        assert_eq!(opened.time(), Some("2025-03-01T12:00:00Z"));
        for bad in [
            "o\n07\nAAAA\n",
            "o\n7\nAAAA\n",
            "o\n7\n",
            "\n7\nAAAA\n",
            "o\n-1\nAAAA\n",
        ] {
            assert!(Checkpoint::parse_body(bad).is_err(), "{bad:?}");
        }
        assert!(SignedNote::parse(&"x".repeat(MAX_NOTE_BYTES + 1)).is_err());
        assert!(
            SignedNote::parse("a\n\n\u{2014} k AAAA\n").is_err(),
            "short signature"
        );
        assert!(SignedNote::parse("a\x07\n\n\u{2014} k AAAAAAAA\n").is_err());
    }
}
