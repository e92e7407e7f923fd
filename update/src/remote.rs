//! The TUF client workflow against a remote repository (issue #18: "sensors
//! update from the appliance the same way: they verify the TUF metadata
//! against the root they were enrolled with, never the appliance's word
//! alone"). The repository has the bundle's layout:
//!
//! ```text
//! metadata/N.root.json   fetched for N = trusted + 1, + 2, … until absent
//! metadata/timestamp.json   capped at MAX_METADATA_BYTES
//! metadata/snapshot.json    capped at the length the timestamp signed
//! metadata/targets.json     capped at the length the snapshot signed
//! targets/NAME              one named target, capped at its signed length
//! ```
//!
//! Pure: files come through a [`Fetch`] (HTTPS on the sensor, a map in
//! tests), the clock through [`VerifyOptions`] with the same expiry policy
//! as bundles (the later of the caller's clock and the last time already
//! seen, `expires + grace`; see [`crate::verify`]). The caller persists
//! [`Verified::state`] once it acted on it, so a replayed older metadata
//! set is refused next time ([`VerifyError::Rollback`]).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::bundle::MAX_METADATA_BYTES;
use crate::error::VerifyError;
use crate::metadata::MetaFile;
use crate::verify::{valid_target_name, TrustedState, Verified, VerifyOptions, Walk};

/// Most root versions followed in one refresh (spec 5.3.3 bounds the chain
/// too): a hostile server cannot keep a client fetching forever.
pub const MAX_ROOT_ROTATIONS: u64 = 256;

/// Where a client reads repository files from.
pub trait Fetch {
    /// The file at `path` (`metadata/timestamp.json`, `targets/NAME`):
    /// `Ok(None)` when the repository has no such file, an error when it
    /// cannot be read or holds more than `max_len` bytes (the implementation
    /// stops reading there).
    fn fetch(&mut self, path: &str, max_len: u64) -> Result<Option<Vec<u8>>, VerifyError>;
}

/// Fetches and verifies the repository's current metadata against
/// `trusted`. Nothing is fetched past the first refusal.
pub fn refresh(
    fetcher: &mut dyn Fetch,
    trusted: &TrustedState,
    opts: &VerifyOptions,
) -> Result<Verified, VerifyError> {
    let first = trusted.root()?.version.saturating_add(1);
    let mut roots = BTreeMap::new();
    for n in first..first.saturating_add(MAX_ROOT_ROTATIONS) {
        let path = format!("metadata/{n}.root.json");
        match fetch_capped(fetcher, &path, MAX_METADATA_BYTES)? {
            Some(bytes) => roots.insert(n, bytes),
            None => break,
        };
    }
    let mut walk = Walk::start(trusted, &roots, opts)?;
    let timestamp = fetch_meta(fetcher, "timestamp.json", None)?;
    let snapshot_ref = walk.timestamp(timestamp.as_deref())?;
    let snapshot = fetch_meta(fetcher, "snapshot.json", Some(&snapshot_ref))?;
    let targets_ref = walk.snapshot(snapshot.as_deref())?;
    let targets = fetch_meta(fetcher, "targets.json", Some(&targets_ref))?;
    walk.targets(targets.as_deref())
}

/// Fetches target `name` of a verified release, reading no more than its
/// signed length, and checks its length and SHA-256.
pub fn fetch_target(
    fetcher: &mut dyn Fetch,
    verified: &Verified,
    name: &str,
) -> Result<Vec<u8>, VerifyError> {
    let desc = verified.targets.get(name).ok_or_else(|| {
        VerifyError::Missing(format!("target {name} (not in the signed targets)"))
    })?;
    if !valid_target_name(name) {
        return Err(VerifyError::Missing(format!("target {name}")));
    }
    let path = format!("targets/{name}");
    let altered = |reason: String| VerifyError::TargetAltered {
        name: name.to_string(),
        reason,
    };
    let bytes = match fetcher.fetch(&path, desc.length) {
        Ok(Some(b)) => b,
        Ok(None) => return Err(VerifyError::Missing(path)),
        // Longer than signed is an altered target, not a network problem.
        Err(VerifyError::TooLong { cap, .. }) => {
            return Err(altered(format!("longer than the {cap} bytes signed")))
        }
        Err(e) => return Err(e),
    };
    if bytes.len() as u64 != desc.length {
        return Err(altered(format!(
            "length {} but {} signed",
            bytes.len(),
            desc.length
        )));
    }
    desc.check_sha256(&hex::encode(Sha256::digest(&bytes)))
        .map_err(altered)?;
    Ok(bytes)
}

/// A metadata file, capped at the length the referring role signed (or
/// [`MAX_METADATA_BYTES`] when it signed none); absent is `None`, which
/// the walk reports as missing.
fn fetch_meta(
    fetcher: &mut dyn Fetch,
    name: &str,
    signed_by: Option<&MetaFile>,
) -> Result<Option<Vec<u8>>, VerifyError> {
    let cap = signed_by
        .and_then(|m| m.length)
        .map_or(MAX_METADATA_BYTES, |l| l.min(MAX_METADATA_BYTES));
    fetch_capped(fetcher, &format!("metadata/{name}"), cap)
}

/// Calls the fetcher and enforces the cap whatever it did.
fn fetch_capped(
    fetcher: &mut dyn Fetch,
    path: &str,
    cap: u64,
) -> Result<Option<Vec<u8>>, VerifyError> {
    let got = fetcher.fetch(path, cap)?;
    if let Some(bytes) = &got {
        if bytes.len() as u64 > cap {
            return Err(too_long(path, cap));
        }
    }
    Ok(got)
}

/// The error a [`Fetch`] returns for a file longer than its cap.
pub fn too_long(path: &str, cap: u64) -> VerifyError {
    VerifyError::TooLong {
        path: path.to_string(),
        cap,
    }
}

/// A repository in memory (tests, and a directory read whole): files by
/// repository path, and every path requested, in order.
#[derive(Debug, Default, Clone)]
pub struct MemoryRepo {
    /// Files by path (`metadata/1.root.json`, `targets/NAME`).
    pub files: BTreeMap<String, Vec<u8>>,
    /// Paths fetched so far.
    pub requests: Vec<String>,
}

impl MemoryRepo {
    /// Every file under `dir` (its `metadata/` and `targets/`).
    pub fn from_dir(dir: &std::path::Path) -> std::io::Result<Self> {
        let mut files = BTreeMap::new();
        for sub in ["metadata", "targets"] {
            let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
                continue;
            };
            for e in entries {
                let e = e?;
                if let Some(name) = e.file_name().to_str() {
                    files.insert(format!("{sub}/{name}"), std::fs::read(e.path())?);
                }
            }
        }
        Ok(MemoryRepo {
            files,
            requests: Vec::new(),
        })
    }
}

impl Fetch for MemoryRepo {
    fn fetch(&mut self, path: &str, max_len: u64) -> Result<Option<Vec<u8>>, VerifyError> {
        self.requests.push(path.to_string());
        match self.files.get(path) {
            None => Ok(None),
            Some(b) if b.len() as u64 > max_len => Err(too_long(path, max_len)),
            Some(b) => Ok(Some(b.clone())),
        }
    }
}
