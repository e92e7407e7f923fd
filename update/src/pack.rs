//! The signing side (`vigil-update keygen | init | rotate-root | sign`):
//! a TUF repository on a directory of the build machine, from which each
//! release is packed into a bundle.
//!
//! ```text
//! REPO/metadata/N.root.json   every root version, kept for the chain
//! REPO/metadata/{timestamp,snapshot,targets}.json   the current release
//! REPO/targets/<name>         the current release's files
//! ```
//!
//! Private keys never enter the repository; each command is given the key
//! files it signs with, so root keys can stay on offline media and be
//! brought together only for a rotation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::VerifyError;
use crate::keys::{key_id_of, PublicKey};
use crate::metadata::{
    format_time, parse_envelope, sign, typed, Role, RoleKeys, Root, SPEC_VERSION,
};
use crate::verify::valid_target_name;

/// Why the signing side failed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// A repository file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// Fewer signing keys given than the role's threshold.
    #[error("{role}: {have} of the given keys belong to the role, {need} required")]
    NotEnoughKeys {
        /// The role to sign.
        role: Role,
        /// Matching keys given.
        have: usize,
        /// Threshold.
        need: u32,
    },
    /// The repository's own metadata is unreadable.
    #[error("repository metadata: {0}")]
    Metadata(#[from] VerifyError),
    /// The repository already has (or lacks) a root.
    #[error("{0}")]
    Repo(String),
}

/// One role's keys and threshold in a new root.
#[derive(Debug, Clone)]
pub struct RoleSpec {
    /// Public keys allowed to sign.
    pub keys: Vec<PublicKey>,
    /// Signatures required.
    pub threshold: u32,
}

/// The content of a new root version.
#[derive(Debug, Clone)]
pub struct RootSpec {
    /// Root keys (offline; e.g. 2 of 3).
    pub root: RoleSpec,
    /// Targets keys.
    pub targets: RoleSpec,
    /// Snapshot keys.
    pub snapshot: RoleSpec,
    /// Timestamp keys.
    pub timestamp: RoleSpec,
    /// When this root expires.
    pub expires: SystemTime,
}

/// How long each role's metadata of a release stays valid.
#[derive(Debug, Clone, Copy)]
pub struct Expiries {
    /// Targets metadata.
    pub targets: Duration,
    /// Snapshot metadata.
    pub snapshot: Duration,
    /// Timestamp metadata: bounds how long a frozen bundle can be replayed.
    pub timestamp: Duration,
}

impl Default for Expiries {
    /// A USB stick may take weeks to reach an isolated site: 30 days for
    /// the timestamp, a year for the rest.
    fn default() -> Self {
        let day = 24 * 3600;
        Expiries {
            targets: Duration::from_secs(365 * day),
            snapshot: Duration::from_secs(365 * day),
            timestamp: Duration::from_secs(30 * day),
        }
    }
}

/// A TUF repository directory on the signing machine.
#[derive(Debug, Clone)]
pub struct Repo {
    dir: PathBuf,
}

impl Repo {
    /// Creates a repository with root version 1, signed by `signers`.
    pub fn create(dir: &Path, spec: &RootSpec, signers: &[SigningKey]) -> Result<Repo, PackError> {
        let repo = Repo {
            dir: dir.to_path_buf(),
        };
        if repo.meta_path("1.root.json").exists() {
            return Err(PackError::Repo(format!(
                "{} already has a root",
                dir.display()
            )));
        }
        mkdir(&repo.dir.join("metadata"))?;
        mkdir(&repo.dir.join("targets"))?;
        let root = root_metadata(spec, 1);
        let typed_root: Root = serde_json::from_value(root.clone()).expect("built from a RootSpec");
        let bytes = sign_as(&typed_root, Role::Root, &root, signers)?;
        write(&repo.meta_path("1.root.json"), &bytes)?;
        Ok(repo)
    }

    /// Opens an existing repository.
    pub fn open(dir: &Path) -> Result<Repo, PackError> {
        let repo = Repo {
            dir: dir.to_path_buf(),
        };
        repo.latest_root()?;
        Ok(repo)
    }

    /// The newest root: its version, file bytes and typed content.
    pub fn latest_root(&self) -> Result<(u64, Vec<u8>, Root), PackError> {
        let mut n = 0;
        while self.meta_path(&format!("{}.root.json", n + 1)).exists() {
            n += 1;
        }
        if n == 0 {
            return Err(PackError::Repo(format!(
                "{} has no root: run init",
                self.dir.display()
            )));
        }
        let file = format!("{n}.root.json");
        let bytes = read(&self.meta_path(&file))?;
        let root = typed(&file, Role::Root, &parse_envelope(&file, &bytes)?)?;
        Ok((n, bytes, root))
    }

    /// Adds root version N+1: signed by the threshold of the current root
    /// keys and of the new ones, so appliances trusting N accept it.
    pub fn rotate_root(&self, spec: &RootSpec, signers: &[SigningKey]) -> Result<u64, PackError> {
        let (n, _, old) = self.latest_root()?;
        let next = root_metadata(spec, n + 1);
        let next_typed: Root = serde_json::from_value(next.clone()).expect("built from a RootSpec");
        let old_signers = select(&old, Role::Root, signers)?;
        let new_signers = select(&next_typed, Role::Root, signers)?;
        let mut all: BTreeMap<String, &SigningKey> = BTreeMap::new();
        for k in old_signers.into_iter().chain(new_signers) {
            all.insert(key_id_of(k), k);
        }
        let keys: Vec<&SigningKey> = all.into_values().collect();
        write(
            &self.meta_path(&format!("{}.root.json", n + 1)),
            &sign(&next, &keys),
        )?;
        Ok(n + 1)
    }

    /// Signs a release of `files` (targets named after their file names)
    /// with new targets, snapshot and timestamp versions; returns the
    /// release number (the targets version).
    pub fn publish(
        &self,
        files: &[PathBuf],
        release: &str,
        signers: &[SigningKey],
        expiries: &Expiries,
        now: SystemTime,
    ) -> Result<u64, PackError> {
        let (_, _, root) = self.latest_root()?;
        let targets_dir = self.dir.join("targets");
        let _ = std::fs::remove_dir_all(&targets_dir);
        mkdir(&targets_dir)?;
        let mut entries = serde_json::Map::new();
        for path in files {
            let name = target_name(path)?;
            let bytes = read(path)?;
            write(&targets_dir.join(&name), &bytes)?;
            let desc = json!({
                "length": bytes.len(),
                "hashes": {"sha256": hex::encode(Sha256::digest(&bytes))},
                "custom": {"release": release},
            });
            entries.insert(name, desc);
        }
        let version = self.version_of("targets.json")? + 1;
        let targets = json!({
            "_type": "targets", "spec_version": SPEC_VERSION, "version": version,
            "expires": format_time(now + expiries.targets), "targets": entries,
        });
        let targets_bytes = sign_as(&root, Role::Targets, &targets, signers)?;
        let snapshot = json!({
            "_type": "snapshot", "spec_version": SPEC_VERSION,
            "version": self.version_of("snapshot.json")? + 1,
            "expires": format_time(now + expiries.snapshot),
            "meta": {"targets.json": file_ref(version, &targets_bytes)},
        });
        let snapshot_bytes = sign_as(&root, Role::Snapshot, &snapshot, signers)?;
        let timestamp = json!({
            "_type": "timestamp", "spec_version": SPEC_VERSION,
            "version": self.version_of("timestamp.json")? + 1,
            "expires": format_time(now + expiries.timestamp),
            "meta": {"snapshot.json": file_ref(snapshot["version"].as_u64().unwrap_or(0), &snapshot_bytes)},
        });
        let timestamp_bytes = sign_as(&root, Role::Timestamp, &timestamp, signers)?;
        write(&self.meta_path("targets.json"), &targets_bytes)?;
        write(&self.meta_path("snapshot.json"), &snapshot_bytes)?;
        write(&self.meta_path("timestamp.json"), &timestamp_bytes)?;
        Ok(version)
    }

    /// Packs every root and the current release into one bundle file.
    pub fn write_bundle(&self, out: &Path) -> Result<(), PackError> {
        let (n, _, _) = self.latest_root()?;
        let mut metadata = Vec::new();
        for v in 1..=n {
            let name = format!("{v}.root.json");
            metadata.push((name.clone(), read(&self.meta_path(&name))?));
        }
        for name in ["timestamp.json", "snapshot.json", "targets.json"] {
            metadata.push((name.to_string(), read(&self.meta_path(name))?));
        }
        let targets_dir = self.dir.join("targets");
        let mut names: Vec<String> = std::fs::read_dir(&targets_dir)
            .map_err(|e| io_err(&targets_dir, e))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        let paths: Vec<(String, PathBuf)> = names
            .into_iter()
            .map(|n| (n.clone(), targets_dir.join(n)))
            .collect();
        let targets: Vec<(String, &Path)> = paths
            .iter()
            .map(|(n, p)| (n.clone(), p.as_path()))
            .collect();
        let file = std::fs::File::create(out).map_err(|e| io_err(out, e))?;
        crate::bundle::write_bundle(std::io::BufWriter::new(file), &metadata, &targets)
            .map_err(|e| io_err(out, e))
    }

    fn version_of(&self, file: &str) -> Result<u64, PackError> {
        let path = self.meta_path(file);
        if !path.exists() {
            return Ok(0);
        }
        let env = parse_envelope(file, &read(&path)?)?;
        Ok(env
            .signed
            .get("version")
            .and_then(Value::as_u64)
            .unwrap_or(0))
    }

    fn meta_path(&self, name: &str) -> PathBuf {
        self.dir.join("metadata").join(name)
    }
}

/// The root metadata value for `spec` at `version`.
pub fn root_metadata(spec: &RootSpec, version: u64) -> Value {
    let mut keys = BTreeMap::new();
    let mut roles = BTreeMap::new();
    for (role, rs) in [
        (Role::Root, &spec.root),
        (Role::Targets, &spec.targets),
        (Role::Snapshot, &spec.snapshot),
        (Role::Timestamp, &spec.timestamp),
    ] {
        let keyids = rs.keys.iter().map(|k| {
            keys.insert(k.key_id(), k.clone());
            k.key_id()
        });
        let keyids: Vec<String> = keyids.collect();
        roles.insert(
            role.name().to_string(),
            RoleKeys {
                keyids,
                threshold: rs.threshold,
            },
        );
    }
    json!({
        "_type": "root", "spec_version": SPEC_VERSION, "version": version,
        "expires": format_time(spec.expires), "consistent_snapshot": false,
        "keys": keys, "roles": roles,
    })
}

/// The signers among `signers` that `root` allows for `role`, refused if
/// fewer than its threshold.
fn select<'a>(
    root: &Root,
    role: Role,
    signers: &'a [SigningKey],
) -> Result<Vec<&'a SigningKey>, PackError> {
    let rk = root
        .roles
        .get(role.name())
        .ok_or_else(|| PackError::Repo(format!("root has no {role} role")))?;
    let chosen: Vec<&SigningKey> = signers
        .iter()
        .filter(|k| rk.keyids.contains(&key_id_of(k)))
        .collect();
    if (chosen.len() as u64) < u64::from(rk.threshold) {
        return Err(PackError::NotEnoughKeys {
            role,
            have: chosen.len(),
            need: rk.threshold,
        });
    }
    Ok(chosen)
}

fn sign_as(
    root: &Root,
    role: Role,
    value: &Value,
    signers: &[SigningKey],
) -> Result<Vec<u8>, PackError> {
    Ok(sign(value, &select(root, role, signers)?))
}

fn file_ref(version: u64, bytes: &[u8]) -> Value {
    json!({"version": version, "length": bytes.len(), "hashes": {"sha256": hex::encode(Sha256::digest(bytes))}})
}

fn target_name(path: &Path) -> Result<String, PackError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if !valid_target_name(name) {
        return Err(PackError::Repo(format!(
            "{}: target file names are [A-Za-z0-9._+-], not starting with '.'",
            path.display()
        )));
    }
    Ok(name.to_string())
}

fn io_err(path: &Path, source: std::io::Error) -> PackError {
    PackError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn read(path: &Path) -> Result<Vec<u8>, PackError> {
    std::fs::read(path).map_err(|e| io_err(path, e))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), PackError> {
    std::fs::write(path, bytes).map_err(|e| io_err(path, e))
}

fn mkdir(path: &Path) -> Result<(), PackError> {
    std::fs::create_dir_all(path).map_err(|e| io_err(path, e))
}
