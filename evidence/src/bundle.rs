//! Deterministic, streaming evidence bundle writer.
//!
//! A bundle is an uncompressed POSIX ustar archive (readable by any `tar`)
//! whose entries all have mtime 0, uid/gid 0, mode 0644, empty owner names
//! and no extended headers. Layout, in archive order:
//!
//! ```text
//! <content files>              sorted by path (bytes), added by the caller
//! audit/checkpoint.txt         signed audit log checkpoint (C2SP note)
//! audit/export-entry.json      the bytes of this export's own audit entry
//! audit/inclusion-proof.json   {"leaf_index","tree_size","hashes":[base64…]}
//! manifest.json                every file above: path, size, sha256
//! SHA256SUMS                   the same, in `sha256sum -c` format
//! bundle.dsse.json             DSSE envelope of the in-toto Statement
//! ```
//!
//! Content files come first so a caller can stream large files without
//! holding them: each is hashed while it is copied and only its digest is
//! kept. The statement's subjects are exactly the files listed in the
//! manifest (content + `audit/`); the manifest and `SHA256SUMS` are views of
//! the subjects that the verifier compares against the signed statement.

use std::io::{self, Read, Write};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::checkpoint::Checkpoint;
use crate::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use crate::merkle::{self, Hash};
use crate::statement::{
    AuditAnchor, EvidencePredicate, ExportInfo, PublicKeyInfo, Statement, Subject,
};

/// The signed audit checkpoint.
pub const CHECKPOINT_PATH: &str = "audit/checkpoint.txt";
/// The export's own audit entry, as stored (the Merkle leaf data).
pub const EXPORT_ENTRY_PATH: &str = "audit/export-entry.json";
/// The inclusion proof of the export entry.
pub const PROOF_PATH: &str = "audit/inclusion-proof.json";
/// JSON manifest of every subject file.
pub const MANIFEST_PATH: &str = "manifest.json";
/// The manifest in `sha256sum` format.
pub const SUMS_PATH: &str = "SHA256SUMS";
/// The DSSE envelope.
pub const ENVELOPE_PATH: &str = "bundle.dsse.json";
/// Paths content files may not use (prefix `audit/` is reserved too).
pub const RESERVED_PATHS: [&str; 3] = [MANIFEST_PATH, SUMS_PATH, ENVELOPE_PATH];
/// `format` field of `manifest.json`.
pub const MANIFEST_FORMAT: &str = "vigil-evidence-manifest/v1";
/// Longest path accepted (what ustar's prefix + name can hold).
pub const MAX_PATH_BYTES: usize = 255;

/// Why a bundle could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Writing the archive or reading a caller's stream failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// A path that is not allowed in a bundle.
    #[error("path {path:?}: {reason}")]
    Path {
        /// The path.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// Content files must be added in strictly increasing path order.
    #[error("path {path:?} added after {previous:?}: content files must be added sorted, without duplicates")]
    Order {
        /// The path added.
        path: String,
        /// The path before it.
        previous: String,
    },
    /// A stream gave a different number of bytes than declared.
    #[error("file {path:?}: declared {declared} bytes, stream gave {actual}")]
    Length {
        /// The file.
        path: String,
        /// Declared length.
        declared: u64,
        /// Bytes read (at least; reading stops one byte past the end).
        actual: u64,
    },
    /// The audit evidence does not hold (wrong key or proof).
    #[error("audit evidence: {0}")]
    Audit(String),
}

/// One row of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path in the archive.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256.
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Every subject file, in archive order.
    pub files: Vec<ManifestEntry>,
}

/// `audit/inclusion-proof.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProofFile {
    /// Index of the export entry in the log.
    pub leaf_index: u64,
    /// Tree size of the checkpoint the proof is for.
    pub tree_size: u64,
    /// Base64 hashes from the leaf up.
    pub hashes: Vec<String>,
}

/// The audit log's part of a bundle, produced by the appliance after it
/// appended the export's audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvidence {
    /// Signed checkpoint note covering the entry, by the bundle's key.
    pub checkpoint: String,
    /// The export entry's bytes as stored (its leaf data).
    pub entry: Vec<u8>,
    /// Its index in the log.
    pub entry_index: u64,
    /// Its inclusion proof in the checkpoint's tree.
    pub proof: Vec<Hash>,
}

/// A content file for [`write_bundle`].
pub struct BundleFile<'a> {
    /// Path in the archive.
    pub path: String,
    /// Exact length of the stream.
    pub len: u64,
    /// The bytes.
    pub reader: Box<dyn Read + 'a>,
}

/// Check a path is relative, portable and free of traversal. Used by the
/// writer and by the verifier on what it reads.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.len() > MAX_PATH_BYTES {
        return Err(format!("must be 1 to {MAX_PATH_BYTES} bytes"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-+@=,~/".contains(c);
    if !path.chars().all(allowed) {
        return Err("only ASCII letters, digits and ._-+@=,~/ are allowed".into());
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("must be relative, without empty, '.' or '..' components".into());
    }
    Ok(())
}

/// True for paths the writer itself adds after the content.
pub(crate) fn is_reserved(path: &str) -> bool {
    path.starts_with("audit/") || RESERVED_PATHS.contains(&path)
}

/// Header of every entry: the only varying fields are path and size.
fn header(path: &str, size: u64) -> Result<tar::Header, BundleError> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).map_err(|e| BundleError::Path {
        path: path.to_string(),
        reason: format!("does not fit a ustar header: {e}"),
    })?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// A reader that hashes what passes and refuses to end early.
struct Hashing<R> {
    inner: R,
    remaining: u64,
    read: u64,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stream ended early",
            ));
        }
        self.hasher.update(&buf[..n]);
        self.remaining -= n as u64;
        self.read += n as u64;
        Ok(n)
    }
}

/// Writes a bundle to `W` as files are added; see the module doc for the
/// layout. Memory is one manifest row per file, whatever the file sizes.
pub struct BundleWriter<W: Write> {
    tar: tar::Builder<W>,
    files: Vec<ManifestEntry>,
}

impl<W: Write> BundleWriter<W> {
    /// Start a bundle on `out`.
    pub fn new(out: W) -> Self {
        Self {
            tar: tar::Builder::new(out),
            files: Vec::new(),
        }
    }

    /// Stream one content file of exactly `len` bytes. Paths must come in
    /// strictly increasing byte order and not use the reserved names.
    pub fn add_file(&mut self, path: &str, len: u64, reader: impl Read) -> Result<(), BundleError> {
        let refuse = |reason: &str| BundleError::Path {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        check_path(path).map_err(|r| refuse(&r))?;
        if is_reserved(path) {
            return Err(refuse("reserved for the bundle's own files"));
        }
        if let Some(prev) = self.files.last() {
            if prev.path.as_str() >= path {
                return Err(BundleError::Order {
                    path: path.to_string(),
                    previous: prev.path.clone(),
                });
            }
        }
        self.append(path, len, reader)
    }

    /// Add a content file held in memory.
    pub fn add_bytes(&mut self, path: &str, bytes: &[u8]) -> Result<(), BundleError> {
        self.add_file(path, bytes.len() as u64, bytes)
    }

    /// Hex SHA-256 of the `SHA256SUMS` lines of the content added so far.
    /// The appliance may record it in the export's audit entry so the log
    /// itself names the exported content.
    pub fn content_digest(&self) -> String {
        hex::encode(Sha256::digest(sums_text(&self.files)))
    }

    fn append(&mut self, path: &str, len: u64, mut reader: impl Read) -> Result<(), BundleError> {
        let h = header(path, len)?;
        let mut hashing = Hashing {
            inner: &mut reader,
            remaining: len,
            read: 0,
            hasher: Sha256::new(),
        };
        let length_error = |actual| BundleError::Length {
            path: path.to_string(),
            declared: len,
            actual,
        };
        match self.tar.append(&h, &mut hashing) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(length_error(hashing.read))
            }
            other => other?,
        }
        let (read, digest) = (hashing.read, hashing.hasher.finalize());
        if reader.read(&mut [0u8; 1])? != 0 {
            return Err(length_error(read + 1));
        }
        self.files.push(ManifestEntry {
            path: path.to_string(),
            size: len,
            sha256: hex::encode(digest),
        });
        Ok(())
    }

    /// Write the audit files, manifest, `SHA256SUMS` and the signed
    /// envelope, and end the archive. The checkpoint must be signed by `key`
    /// under its origin and the proof must hold; otherwise nothing more is
    /// written and the bundle is unusable.
    pub fn finish(
        mut self,
        key: &SigningKey,
        info: ExportInfo,
        audit: AuditEvidence,
    ) -> Result<W, BundleError> {
        let checkpoint = Checkpoint::open(&audit.checkpoint, &key.verifying_key())
            .map_err(|e| BundleError::Audit(format!("checkpoint: {e}")))?;
        merkle::verify_inclusion(
            &merkle::leaf_hash(&audit.entry),
            audit.entry_index,
            checkpoint.size,
            &audit.proof,
            &checkpoint.root,
        )
        .map_err(|e| BundleError::Audit(format!("inclusion proof: {e}")))?;
        let hashes: Vec<String> = audit.proof.iter().map(|h| B64.encode(h)).collect();
        let proof_file = InclusionProofFile {
            leaf_index: audit.entry_index,
            tree_size: checkpoint.size,
            hashes: hashes.clone(),
        };
        self.append_bytes(CHECKPOINT_PATH, audit.checkpoint.as_bytes())?;
        self.append_bytes(EXPORT_ENTRY_PATH, &audit.entry)?;
        self.append_bytes(PROOF_PATH, &json_line(&proof_file))?;

        let manifest = Manifest {
            format: MANIFEST_FORMAT.to_string(),
            files: self.files.clone(),
        };
        let subjects = self
            .files
            .iter()
            .map(|f| Subject::sha256(&f.path, &f.sha256))
            .collect();
        let anchor = AuditAnchor {
            checkpoint: audit.checkpoint,
            entry_index: audit.entry_index,
            inclusion_proof: hashes,
        };
        let predicate =
            EvidencePredicate::new(info, PublicKeyInfo::ed25519(&key.verifying_key()), anchor);
        let statement = Statement::new(subjects, predicate);
        let envelope = Envelope::sign(INTOTO_PAYLOAD_TYPE, &statement.to_json(), key);

        let sums = sums_text(&self.files);
        self.append_unlisted(MANIFEST_PATH, &json_line(&manifest))?;
        self.append_unlisted(SUMS_PATH, sums.as_bytes())?;
        self.append_unlisted(ENVELOPE_PATH, &envelope.to_json())?;
        Ok(self.tar.into_inner()?)
    }

    /// Append a file that is listed in the manifest.
    fn append_bytes(&mut self, path: &str, bytes: &[u8]) -> Result<(), BundleError> {
        self.append(path, bytes.len() as u64, bytes)
    }

    /// Append one of the manifest views or the envelope.
    fn append_unlisted(&mut self, path: &str, bytes: &[u8]) -> Result<(), BundleError> {
        let h = header(path, bytes.len() as u64)?;
        self.tar.append(&h, bytes)?;
        Ok(())
    }
}

/// Write a whole bundle from content files in any order (they are sorted
/// here), streaming each.
pub fn write_bundle<W: Write>(
    out: W,
    mut files: Vec<BundleFile<'_>>,
    key: &SigningKey,
    info: ExportInfo,
    audit: AuditEvidence,
) -> Result<W, BundleError> {
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut writer = BundleWriter::new(out);
    for f in files {
        writer.add_file(&f.path, f.len, f.reader)?;
    }
    writer.finish(key, info, audit)
}

/// `sha256sum` text mode lines: `<hex>  <path>`.
pub(crate) fn sums_text(files: &[ManifestEntry]) -> String {
    files
        .iter()
        .map(|f| format!("{}  {}\n", f.sha256, f.path))
        .collect()
}

fn json_line<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).expect("serializes");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for ok in ["a", "events/host-1.jsonl", "a/b/c.d"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a//b",
            "a/./b",
            "a b",
            "a\\b",
            "é",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        assert!(is_reserved("audit/x") && is_reserved("SHA256SUMS") && !is_reserved("auditx"));
    }

    /// A file far larger than any buffer streams through: the writer only
    /// keeps its digest.
    #[test]
    fn streams_large_files() {
        let len = 64 << 20;
        let mut w = BundleWriter::new(io::sink());
        w.add_file("big.bin", len, io::repeat(7).take(len)).unwrap();
        assert_eq!(w.files[0].size, len);
    }

    #[test]
    fn refuses_unsorted_short_and_long_streams() {
        let mut w = BundleWriter::new(Vec::new());
        w.add_bytes("b", b"1").unwrap();
        assert!(matches!(
            w.add_bytes("a", b"1"),
            Err(BundleError::Order { .. })
        ));
        assert!(matches!(
            w.add_bytes("b", b"1"),
            Err(BundleError::Order { .. })
        ));
        assert!(matches!(
            w.add_file("c", 5, &b"abc"[..]),
            Err(BundleError::Length { actual: 3, .. })
        ));
        let mut w = BundleWriter::new(Vec::new());
        assert!(matches!(
            w.add_file("c", 2, &b"abc"[..]),
            Err(BundleError::Length { actual: 3, .. })
        ));
        assert!(matches!(
            w.add_bytes("manifest.json", b""),
            Err(BundleError::Path { .. })
        ));
    }
}
