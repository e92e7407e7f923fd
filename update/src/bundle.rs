//! The update bundle: one tar file a USB stick carries, holding a TUF
//! repository snapshot.
//!
//! ```text
//! metadata/1.root.json … metadata/N.root.json   every root, for rotation
//! metadata/timestamp.json
//! metadata/snapshot.json
//! metadata/targets.json
//! targets/<name>                                image, .deb, tarball …
//! ```
//!
//! Reading never trusts the archive: entries are counted, metadata files
//! are capped before they are read, targets are not read at all until
//! their signed length and hash are known, and then streamed (images are
//! hundreds of megabytes), so arbitrary bytes cost bounded memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::VerifyError;
use crate::metadata::TargetDesc;
use crate::verify::{
    valid_target_name, verify_metadata, BundleMetadata, TrustedState, Verified, VerifyOptions,
};

/// Largest metadata file read.
pub const MAX_METADATA_BYTES: u64 = 1 << 20;
/// Most entries in a bundle.
pub const MAX_ENTRIES: usize = 4096;

/// Where a target's bytes are inside the archive.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: u64,
    length: u64,
}

/// A bundle opened for verification and installation.
#[derive(Debug)]
pub struct Bundle<R> {
    reader: R,
    /// The metadata files found.
    pub metadata: BundleMetadata,
    targets: BTreeMap<String, Span>,
}

/// Opens the bundle file at `path`.
pub fn open(path: &Path) -> Result<Bundle<File>, VerifyError> {
    Bundle::read(File::open(path)?)
}

impl<R: Read + Seek> Bundle<R> {
    /// Indexes the archive: reads the (capped) metadata files and notes
    /// where each target's bytes are.
    pub fn read(reader: R) -> Result<Self, VerifyError> {
        let mut archive = tar::Archive::new(reader);
        let mut metadata = BundleMetadata::default();
        let mut targets = BTreeMap::new();
        let entries = archive.entries_with_seek().map_err(archive_err)?;
        for (n, entry) in entries.enumerate() {
            if n >= MAX_ENTRIES {
                return Err(VerifyError::Archive(format!(
                    "more than {MAX_ENTRIES} entries"
                )));
            }
            let mut entry = entry.map_err(archive_err)?;
            let path = String::from_utf8(entry.path_bytes().into_owned())
                .map_err(|_| VerifyError::Archive("an entry name is not UTF-8".into()))?;
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                continue;
            }
            if !kind.is_file() {
                return Err(VerifyError::Archive(format!("{path}: not a regular file")));
            }
            if let Some(name) = path.strip_prefix("targets/") {
                if !valid_target_name(name) {
                    return Err(VerifyError::Archive(format!(
                        "{path}: not a plain target name"
                    )));
                }
                let span = Span {
                    offset: entry.raw_file_position(),
                    length: entry.size(),
                };
                if targets.insert(name.to_string(), span).is_some() {
                    return Err(VerifyError::Archive(format!("{path} appears twice")));
                }
            } else if let Some(name) = path.strip_prefix("metadata/") {
                read_metadata(&mut metadata, name, &path, &mut entry)?;
            } else {
                return Err(VerifyError::Archive(format!("{path}: unexpected entry")));
            }
        }
        let reader = archive.into_inner();
        Ok(Bundle {
            reader,
            metadata,
            targets,
        })
    }

    /// Verifies the metadata against `trusted` at the given clock, then
    /// every target's length and hash. Nothing is written anywhere.
    pub fn verify(
        &mut self,
        trusted: &TrustedState,
        opts: &VerifyOptions,
    ) -> Result<Verified, VerifyError> {
        let verified = self.verify_metadata(trusted, opts)?;
        self.verify_targets(&verified)?;
        Ok(verified)
    }

    /// Verifies the metadata only (signatures, versions, expiry): cheap,
    /// so refusals that need no target bytes come before any hashing.
    pub fn verify_metadata(
        &self,
        trusted: &TrustedState,
        opts: &VerifyOptions,
    ) -> Result<Verified, VerifyError> {
        verify_metadata(trusted, &self.metadata, opts)
    }

    /// Checks that the archive holds no unsigned target and that every
    /// signed target has its signed length and hash (streamed, hundreds
    /// of megabytes for an image).
    pub fn verify_targets(&mut self, verified: &Verified) -> Result<(), VerifyError> {
        for name in self.targets.keys() {
            if !verified.targets.contains_key(name) {
                return Err(VerifyError::Archive(format!(
                    "targets/{name} is not in the signed targets"
                )));
            }
        }
        for (name, desc) in &verified.targets {
            self.copy_target(name, desc, &mut io::sink())?;
        }
        Ok(())
    }

    /// Whether the archive holds target `name` (signed or not).
    pub fn has_target(&self, name: &str) -> bool {
        self.targets.contains_key(name)
    }

    /// Streams target `name` into `out`, failing if its length or hash is
    /// not the signed one. `out` may already hold bytes when this fails:
    /// callers write only into a slot that is not running.
    pub fn copy_target(
        &mut self,
        name: &str,
        desc: &TargetDesc,
        out: &mut dyn Write,
    ) -> Result<(), VerifyError> {
        let span = *self
            .targets
            .get(name)
            .ok_or_else(|| VerifyError::Missing(format!("targets/{name}")))?;
        let altered = |reason: String| VerifyError::TargetAltered {
            name: name.to_string(),
            reason,
        };
        if span.length != desc.length {
            return Err(altered(format!(
                "length {} but {} signed",
                span.length, desc.length
            )));
        }
        self.reader.seek(SeekFrom::Start(span.offset))?;
        let mut hasher = Sha256::new();
        let mut left = span.length;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let got = self.reader.read(&mut buf[..want])?;
            if got == 0 {
                return Err(altered(format!("truncated: {left} bytes missing")));
            }
            hasher.update(&buf[..got]);
            out.write_all(&buf[..got])?;
            left -= got as u64;
        }
        desc.check_sha256(&hex::encode(hasher.finalize()))
            .map_err(altered)?;
        Ok(())
    }
}

fn archive_err(e: io::Error) -> VerifyError {
    VerifyError::Archive(e.to_string())
}

fn read_metadata(
    meta: &mut BundleMetadata,
    name: &str,
    path: &str,
    entry: &mut impl Read,
) -> Result<(), VerifyError> {
    let bytes = read_capped(entry, path)?;
    meta.insert(name, bytes)
        .map_err(|e| VerifyError::Archive(format!("{path}: {e}")))
}

fn read_capped(entry: &mut impl Read, path: &str) -> Result<Vec<u8>, VerifyError> {
    let mut buf = Vec::new();
    entry
        .take(MAX_METADATA_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(archive_err)?;
    if buf.len() as u64 > MAX_METADATA_BYTES {
        return Err(VerifyError::Archive(format!(
            "{path} is larger than {MAX_METADATA_BYTES} bytes"
        )));
    }
    Ok(buf)
}

/// Writes a bundle: metadata files (name, bytes) then target files (name,
/// path), in the order given, with fixed owners, modes and times so the
/// same inputs give the same bytes.
pub fn write_bundle(
    out: impl Write,
    metadata: &[(String, Vec<u8>)],
    targets: &[(String, &Path)],
) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    for (name, bytes) in metadata {
        let mut header = fixed_header(bytes.len() as u64);
        builder.append_data(&mut header, format!("metadata/{name}"), bytes.as_slice())?;
    }
    for (name, path) in targets {
        let file = File::open(path)?;
        let mut header = fixed_header(file.metadata()?.len());
        builder.append_data(&mut header, format!("targets/{name}"), file)?;
    }
    builder.into_inner()?.flush()
}

fn fixed_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}
