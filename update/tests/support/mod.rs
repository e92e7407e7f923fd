//! A signing repository and an appliance (state, slots, data directory)
//! in one temporary directory, with deterministic keys and a fixed clock.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use serde_json::Value;
use sha2::{Digest, Sha256};
use vigil_update::apply::ApplyReport;
use vigil_update::keys::PublicKey;
use vigil_update::metadata::{sign, Envelope};
use vigil_update::pack::{Expiries, Repo, RoleSpec, RootSpec};
use vigil_update::partition::DirSlots;
use vigil_update::{HealthOutcome, StateStore, UpdateError, VerifyOptions};

/// The signing side's "today": 2027-01-15.
pub const T0: u64 = 1_800_000_000;
/// One day.
pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// `T0 + days`.
pub fn at(days: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0) + DAY * days as u32
}

/// A deterministic key.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn public(k: &SigningKey) -> PublicKey {
    PublicKey::from_verifying(&k.verifying_key())
}

/// Keys of one generation of the repository.
#[derive(Clone)]
pub struct KeySet {
    /// Three offline root keys, threshold 2.
    pub root: Vec<SigningKey>,
    /// Targets key.
    pub targets: SigningKey,
    /// Snapshot key.
    pub snapshot: SigningKey,
    /// Timestamp key.
    pub timestamp: SigningKey,
}

impl KeySet {
    /// Keys from seeds `base..base+6`.
    pub fn new(base: u8) -> Self {
        KeySet {
            root: (0..3).map(|i| key(base + i)).collect(),
            targets: key(base + 3),
            snapshot: key(base + 4),
            timestamp: key(base + 5),
        }
    }

    /// The root content naming these keys, valid a year from `T0`.
    pub fn spec(&self) -> RootSpec {
        let one = |k: &SigningKey| RoleSpec {
            keys: vec![public(k)],
            threshold: 1,
        };
        RootSpec {
            root: RoleSpec {
                keys: self.root.iter().map(public).collect(),
                threshold: 2,
            },
            targets: one(&self.targets),
            snapshot: one(&self.snapshot),
            timestamp: one(&self.timestamp),
            expires: at(365),
        }
    }

    /// The online keys (targets, snapshot, timestamp).
    pub fn online(&self) -> Vec<SigningKey> {
        vec![
            self.targets.clone(),
            self.snapshot.clone(),
            self.timestamp.clone(),
        ]
    }
}

/// Signing repository plus appliance.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub keys: KeySet,
    pub repo: Repo,
    pub store: StateStore,
    pub slots: DirSlots,
}

impl Fixture {
    /// A repository (root v1, release 1 "1.0") and an appliance running
    /// release 1 in slot A with some data.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeySet::new(10);
        let repo = Repo::create(&dir.path().join("repo"), &keys.spec(), &keys.root[..2]).unwrap();
        let store = StateStore::new(&dir.path().join("state"));
        let slots = DirSlots::new(&dir.path().join("slots"));
        let f = Fixture {
            dir,
            keys,
            repo,
            store,
            slots,
        };
        f.release("1.0", &[("appliance.img", b"image one")], at(0));
        let root = std::fs::read(f.path("repo/metadata/1.root.json")).unwrap();
        f.store.init(&root, 1, Some("1.0".into())).unwrap();
        std::fs::create_dir_all(f.path("slots/a")).unwrap();
        std::fs::write(f.path("slots/a/appliance.img"), b"image one").unwrap();
        std::fs::create_dir_all(f.path("data/db")).unwrap();
        std::fs::write(f.path("data/db/000001.sst"), b"events").unwrap();
        std::fs::write(f.path("data/vigil.toml"), b"[serve]").unwrap();
        f
    }

    /// A path under the fixture's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Signs a release with the current online keys at `now` and returns
    /// its bundle file.
    pub fn release(&self, name: &str, files: &[(&str, &[u8])], now: SystemTime) -> PathBuf {
        self.release_with(name, files, now, &self.keys.online())
    }

    /// Signs a release with `signers`.
    pub fn release_with(
        &self,
        name: &str,
        files: &[(&str, &[u8])],
        now: SystemTime,
        signers: &[SigningKey],
    ) -> PathBuf {
        let src = self.path(&format!("src-{name}"));
        std::fs::create_dir_all(&src).unwrap();
        let paths: Vec<PathBuf> = files
            .iter()
            .map(|(n, bytes)| {
                let p = src.join(n);
                std::fs::write(&p, bytes).unwrap();
                p
            })
            .collect();
        self.repo
            .publish(&paths, name, signers, &Expiries::default(), now)
            .unwrap();
        let out = self.path(&format!("bundle-{name}.tar"));
        self.repo.write_bundle(&out).unwrap();
        out
    }

    /// `vigil update apply` at `now`.
    pub fn apply_at(&self, bundle: &Path, now: SystemTime) -> Result<ApplyReport, UpdateError> {
        let mut slots = self.slots.clone();
        vigil_update::apply_file(bundle, &self.store, &mut slots, &VerifyOptions::at(now))
    }

    /// Boot then report health.
    pub fn boot_and_check(&self, healthy: bool) -> HealthOutcome {
        vigil_update::boot(&self.store).unwrap();
        vigil_update::report_health(&self.store, healthy).unwrap()
    }

    /// Every file under `rel` with its SHA-256, to prove nothing changed.
    pub fn tree(&self, rel: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        walk(&self.path(rel), &self.path(rel), &mut out);
        out
    }
}

fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(base, &p, out);
        } else {
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            out.insert(rel, hex::encode(Sha256::digest(std::fs::read(&p).unwrap())));
        }
    }
}

/// The files of a bundle, in order, to rebuild it altered.
pub fn unpack(bundle: &Path) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(std::fs::File::open(bundle).unwrap());
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        out.push((path, bytes));
    }
    out
}

/// Writes `files` (full archive paths) as a tar file.
pub fn repack(files: &[(String, Vec<u8>)], out: &Path) {
    let mut builder = tar::Builder::new(std::fs::File::create(out).unwrap());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, path, bytes.as_slice())
            .unwrap();
    }
    builder.finish().unwrap();
}

/// Replaces one file of a bundle's file list.
pub fn replace(files: &mut [(String, Vec<u8>)], path: &str, bytes: Vec<u8>) {
    let slot = files
        .iter_mut()
        .find(|(p, _)| p == path)
        .unwrap_or_else(|| panic!("{path} not in bundle"));
    slot.1 = bytes;
}

/// The bytes of `path` in a file list.
pub fn get<'a>(files: &'a [(String, Vec<u8>)], path: &str) -> &'a [u8] {
    &files.iter().find(|(p, _)| p == path).unwrap().1
}

/// Re-signs a metadata file after `edit` changed its signed part.
pub fn resign(bytes: &[u8], signers: &[&SigningKey], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut env: Envelope = serde_json::from_slice(bytes).unwrap();
    edit(&mut env.signed);
    sign(&env.signed, signers)
}

/// `{"version", "length", "hashes"}` for a metadata file.
pub fn file_ref(version: u64, bytes: &[u8]) -> Value {
    serde_json::json!({"version": version, "length": bytes.len(), "hashes": {"sha256": hex::encode(Sha256::digest(bytes))}})
}
