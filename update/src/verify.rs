//! The TUF client workflow (specification v1.0 section 5.3–5.6) over
//! metadata already read from a bundle ([`verify_metadata`]) or fetched
//! one file at a time ([`Walk`], used by [`crate::remote`]): root rotation
//! chain, timestamp, snapshot, targets. Pure: the clock is passed in,
//! target bytes are checked by the caller against what this returns.
//!
//! Expiry on a machine whose clock may drift: the time used is the later
//! of the caller's clock and the latest time this appliance has already
//! seen (kept in [`TrustedState::last_known_time`]), so a clock reset to
//! 1970 or 2000 by a flat RTC battery cannot make old, frozen metadata
//! valid again; and metadata is accepted until `expires + grace`, so an
//! RTC a few hours fast (a local-time RTC, drift over years unplugged)
//! does not refuse a bundle signed today. A clock far ahead is refused
//! with the times named, and a bundle signed with longer expiries fixes it.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::VerifyError;
use crate::metadata::{
    check_threshold, format_time, parse_envelope, parse_expires, typed, Envelope, MetaFile, Role,
    Root, TargetDesc, Targets, Versions,
};

/// Default tolerance for a clock running ahead of the signer's.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// What an appliance trusts between updates: the newest root it accepted
/// and the newest version of every other role.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrustedState {
    /// The newest root metadata accepted (signed envelope).
    pub root: Envelope,
    /// Newest timestamp version accepted.
    pub timestamp_version: u64,
    /// Newest snapshot version accepted.
    pub snapshot_version: u64,
    /// Newest targets version accepted: the newest release seen.
    pub targets_version: u64,
    /// Latest time seen by an accepted update (RFC 3339); time never goes
    /// back before it.
    #[serde(default)]
    pub last_known_time: Option<String>,
}

impl TrustedState {
    /// Starts trust from the root shipped with the appliance (`root.json`):
    /// it must be signed by its own root threshold.
    pub fn from_root_file(bytes: &[u8]) -> Result<Self, VerifyError> {
        let env = parse_envelope("root.json", bytes)?;
        let root: Root = typed("root.json", Role::Root, &env)?;
        check_threshold(&root, Role::Root, &env, "root.json")?;
        Ok(TrustedState {
            root: env,
            timestamp_version: 0,
            snapshot_version: 0,
            targets_version: 0,
            last_known_time: None,
        })
    }

    /// The trusted root's typed metadata.
    pub fn root(&self) -> Result<Root, VerifyError> {
        typed("trusted root", Role::Root, &self.root)
    }
}

/// Metadata files found in a bundle, by role.
#[derive(Debug, Clone, Default)]
pub struct BundleMetadata {
    /// `N.root.json` files by N.
    pub roots: BTreeMap<u64, Vec<u8>>,
    /// `timestamp.json`.
    pub timestamp: Option<Vec<u8>>,
    /// `snapshot.json`.
    pub snapshot: Option<Vec<u8>>,
    /// `targets.json`.
    pub targets: Option<Vec<u8>>,
}

/// Why a file cannot take a place among a repository's metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataFileError {
    /// Not `N.root.json` (N ≥ 1), `timestamp.json`, `snapshot.json` or
    /// `targets.json`.
    #[error(
        "unexpected metadata file (not N.root.json, timestamp.json, snapshot.json or targets.json)"
    )]
    UnknownName,
    /// The same file twice: which copy would count is ambiguous.
    #[error("appears twice")]
    Twice,
}

impl BundleMetadata {
    /// Files `name` (a repository's `metadata/` file name) with `bytes`:
    /// the one place that knows which names TUF metadata has, for bundles
    /// read from a stick and bundles published to the appliance alike.
    pub fn insert(&mut self, name: &str, bytes: Vec<u8>) -> Result<(), MetadataFileError> {
        let slot = match name {
            "timestamp.json" => &mut self.timestamp,
            "snapshot.json" => &mut self.snapshot,
            "targets.json" => &mut self.targets,
            _ => {
                let n = root_version(name).ok_or(MetadataFileError::UnknownName)?;
                if self.roots.contains_key(&n) {
                    return Err(MetadataFileError::Twice);
                }
                self.roots.insert(n, bytes);
                return Ok(());
            }
        };
        if slot.is_some() {
            return Err(MetadataFileError::Twice);
        }
        *slot = Some(bytes);
        Ok(())
    }

    /// Every file with its repository name: roots in version order, then
    /// timestamp, snapshot and targets (those present).
    pub fn files(&self) -> Vec<(String, &[u8])> {
        let roots = self
            .roots
            .iter()
            .map(|(n, b)| (format!("{n}.root.json"), b.as_slice()));
        let top = [
            ("timestamp.json", &self.timestamp),
            ("snapshot.json", &self.snapshot),
            ("targets.json", &self.targets),
        ]
        .into_iter()
        .filter_map(|(name, b)| b.as_deref().map(|b| (name.to_owned(), b)));
        roots.chain(top).collect()
    }
}

/// N of a `N.root.json` file name, N ≥ 1 written in canonical decimal
/// (no sign, no leading zero: one file name per version).
fn root_version(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".root.json")?;
    let n: u64 = digits.parse().ok()?;
    (n > 0 && n.to_string() == digits).then_some(n)
}

/// The clock and its tolerance.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions {
    /// The caller's clock.
    pub now: SystemTime,
    /// How far past `expires` metadata is still accepted.
    pub grace: Duration,
}

impl VerifyOptions {
    /// `now` with [`DEFAULT_GRACE`].
    pub fn at(now: SystemTime) -> Self {
        VerifyOptions {
            now,
            grace: DEFAULT_GRACE,
        }
    }
}

/// Metadata that passed every check, and the trust it moves to.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The trusted state to keep once the update is installed.
    pub state: TrustedState,
    /// Root version before and after, when the bundle rotated the root.
    pub root_rotation: Option<(u64, u64)>,
    /// Release number (the targets version).
    pub release: u64,
    /// Release name from the targets' `custom.release`, if any.
    pub release_name: Option<String>,
    /// Target files to check and install.
    pub targets: BTreeMap<String, TargetDesc>,
}

/// Runs the TUF workflow: rotate the root through the bundle's chain, then
/// check timestamp, snapshot and targets against the (new) root.
pub fn verify_metadata(
    trusted: &TrustedState,
    meta: &BundleMetadata,
    opts: &VerifyOptions,
) -> Result<Verified, VerifyError> {
    let mut walk = Walk::start(trusted, &meta.roots, opts)?;
    walk.timestamp(meta.timestamp.as_deref())?;
    walk.snapshot(meta.snapshot.as_deref())?;
    walk.targets(meta.targets.as_deref())
}

/// The same workflow one role at a time, for a client that fetches each
/// file only once the one before it verified ([`crate::remote`]): the
/// signed length of the next file then caps its download.
#[derive(Debug)]
pub struct Walk {
    now: SystemTime,
    grace: Duration,
    old_version: u64,
    root_env: Envelope,
    root: Root,
    floor: TrustedState,
    timestamp_version: u64,
    snapshot_version: u64,
    targets_ref: Option<MetaFile>,
    snapshot_ref: Option<MetaFile>,
}

impl Walk {
    /// Rotates the trusted root through `roots` (`N.root.json` by N) and
    /// checks the resulting root's expiry.
    pub fn start(
        trusted: &TrustedState,
        roots: &BTreeMap<u64, Vec<u8>>,
        opts: &VerifyOptions,
    ) -> Result<Walk, VerifyError> {
        let now = effective_now(trusted, opts)?;
        let old_root = trusted.root()?;
        let (root_env, root) = rotate_root(&trusted.root, &old_root, roots)?;
        check_expiry(Role::Root, &root.expires, "root.json", now, opts.grace)?;
        let mut floor = trusted.clone();
        // A rotated timestamp or snapshot key resets its version floor (spec
        // 5.3.11): it recovers from a fast-forward attack by the old key.
        if role_keys_changed(&old_root, &root, Role::Timestamp) {
            floor.timestamp_version = 0;
        }
        if role_keys_changed(&old_root, &root, Role::Snapshot) {
            floor.snapshot_version = 0;
        }
        Ok(Walk {
            now,
            grace: opts.grace,
            old_version: old_root.version,
            root_env,
            root,
            floor,
            timestamp_version: 0,
            snapshot_version: 0,
            targets_ref: None,
            snapshot_ref: None,
        })
    }

    /// Checks `timestamp.json`; returns what it signed for `snapshot.json`.
    pub fn timestamp(&mut self, bytes: Option<&[u8]>) -> Result<MetaFile, VerifyError> {
        let timestamp = check_role::<Versions>(&self.root, Role::Timestamp, bytes, None)?;
        check_version(
            Role::Timestamp,
            self.floor.timestamp_version,
            timestamp.version,
        )?;
        check_expiry(
            Role::Timestamp,
            &timestamp.expires,
            "timestamp.json",
            self.now,
            self.grace,
        )?;
        let snap_ref = referenced(&timestamp, "snapshot.json", "timestamp.json")?.clone();
        self.timestamp_version = timestamp.version;
        self.snapshot_ref = Some(snap_ref.clone());
        Ok(snap_ref)
    }

    /// Checks `snapshot.json` against the timestamp; returns what it
    /// signed for `targets.json`.
    pub fn snapshot(&mut self, bytes: Option<&[u8]>) -> Result<MetaFile, VerifyError> {
        let snap_ref = self.snapshot_ref.as_ref().ok_or_else(out_of_order)?;
        let snapshot = check_role::<Versions>(
            &self.root,
            Role::Snapshot,
            bytes,
            Some((snap_ref, Role::Timestamp)),
        )?;
        check_version(
            Role::Snapshot,
            self.floor.snapshot_version,
            snapshot.version,
        )?;
        let targets_ref = referenced(&snapshot, "targets.json", "snapshot.json")?.clone();
        check_version(
            Role::Targets,
            self.floor.targets_version,
            targets_ref.version,
        )?;
        check_expiry(
            Role::Snapshot,
            &snapshot.expires,
            "snapshot.json",
            self.now,
            self.grace,
        )?;
        self.snapshot_version = snapshot.version;
        self.targets_ref = Some(targets_ref.clone());
        Ok(targets_ref)
    }

    /// Checks `targets.json` against the snapshot and returns the whole
    /// verified result.
    pub fn targets(self, bytes: Option<&[u8]>) -> Result<Verified, VerifyError> {
        let targets_ref = self.targets_ref.as_ref().ok_or_else(out_of_order)?;
        let targets = check_role::<Targets>(
            &self.root,
            Role::Targets,
            bytes,
            Some((targets_ref, Role::Snapshot)),
        )?;
        check_expiry(
            Role::Targets,
            &targets.expires,
            "targets.json",
            self.now,
            self.grace,
        )?;
        check_target_names(&targets)?;
        let rotated = (self.root.version != self.old_version)
            .then_some((self.old_version, self.root.version));
        Ok(Verified {
            state: TrustedState {
                root: self.root_env,
                timestamp_version: self.timestamp_version,
                snapshot_version: self.snapshot_version,
                targets_version: targets.version,
                last_known_time: Some(format_time(self.now)),
            },
            root_rotation: rotated,
            release: targets.version,
            release_name: release_name(&targets),
            targets: targets.targets,
        })
    }
}

/// A [`Walk`] step called before the one it depends on: a caller's bug,
/// reported rather than panicking.
fn out_of_order() -> VerifyError {
    VerifyError::Malformed {
        file: "metadata".into(),
        reason: "timestamp, snapshot and targets must be checked in that order".into(),
    }
}

fn effective_now(trusted: &TrustedState, opts: &VerifyOptions) -> Result<SystemTime, VerifyError> {
    let Some(known) = &trusted.last_known_time else {
        return Ok(opts.now);
    };
    Ok(opts.now.max(parse_expires("trusted state", known)?))
}

/// Follows `N.root.json` files past the trusted version; each must be
/// signed by the threshold of the previous root and of itself.
fn rotate_root(
    trusted_env: &Envelope,
    trusted: &Root,
    roots: &BTreeMap<u64, Vec<u8>>,
) -> Result<(Envelope, Root), VerifyError> {
    let mut env = trusted_env.clone();
    let mut root = trusted.clone();
    for (&n, bytes) in roots.range(trusted.version.saturating_add(1)..) {
        let file = format!("{n}.root.json");
        let expected = root.version + 1;
        if n != expected {
            return Err(VerifyError::RootChain {
                file,
                expected,
                found: n,
            });
        }
        let next_env = parse_envelope(&file, bytes)?;
        let next: Root = typed(&file, Role::Root, &next_env)?;
        check_threshold(&root, Role::Root, &next_env, &file)?;
        check_threshold(&next, Role::Root, &next_env, &file)?;
        if next.version != expected {
            return Err(VerifyError::RootChain {
                file,
                expected,
                found: next.version,
            });
        }
        env = next_env;
        root = next;
    }
    Ok((env, root))
}

fn role_keys_changed(old: &Root, new: &Root, role: Role) -> bool {
    old.roles.get(role.name()) != new.roles.get(role.name())
}

/// Parses and checks one role's file: against the length and hashes the
/// referring role signed for it, its signatures, and its version.
fn check_role<T: serde::de::DeserializeOwned + HasVersion>(
    root: &Root,
    role: Role,
    bytes: Option<&[u8]>,
    reference: Option<(&MetaFile, Role)>,
) -> Result<T, VerifyError> {
    let file = format!("{}.json", role.name());
    let bytes = bytes.ok_or_else(|| VerifyError::Missing(file.clone()))?;
    if let Some((mf, by)) = reference {
        check_file_ref(&file, by, mf, bytes)?;
    }
    let env = parse_envelope(&file, bytes)?;
    check_threshold(root, role, &env, &file)?;
    let parsed: T = typed(&file, role, &env)?;
    if let Some((mf, by)) = reference {
        if parsed.version() != mf.version {
            return Err(VerifyError::Mismatch {
                file,
                by,
                reason: format!(
                    "version {} but {by} names version {}",
                    parsed.version(),
                    mf.version
                ),
            });
        }
    }
    Ok(parsed)
}

/// Roles that carry a version.
trait HasVersion {
    fn version(&self) -> u64;
}

impl HasVersion for Versions {
    fn version(&self) -> u64 {
        self.version
    }
}

impl HasVersion for Targets {
    fn version(&self) -> u64 {
        self.version
    }
}

fn check_file_ref(file: &str, by: Role, mf: &MetaFile, bytes: &[u8]) -> Result<(), VerifyError> {
    let mismatch = |reason: String| VerifyError::Mismatch {
        file: file.to_string(),
        by,
        reason,
    };
    if let Some(len) = mf.length {
        if len != bytes.len() as u64 {
            return Err(mismatch(format!(
                "length {} but {by} signed {len}",
                bytes.len()
            )));
        }
    }
    if let Some(hashes) = &mf.hashes {
        let want = hashes
            .get("sha256")
            .ok_or_else(|| mismatch(format!("{by} names no sha256")))?;
        let got = hex::encode(Sha256::digest(bytes));
        if !want.eq_ignore_ascii_case(&got) {
            return Err(mismatch(format!("sha256 {got} but {by} signed {want}")));
        }
    }
    Ok(())
}

fn referenced<'a>(v: &'a Versions, name: &str, file: &str) -> Result<&'a MetaFile, VerifyError> {
    v.meta.get(name).ok_or_else(|| VerifyError::Malformed {
        file: file.to_string(),
        reason: format!("meta has no {name}"),
    })
}

fn check_version(role: Role, trusted: u64, found: u64) -> Result<(), VerifyError> {
    if found < trusted {
        return Err(VerifyError::Rollback {
            role,
            trusted,
            found,
        });
    }
    Ok(())
}

fn check_expiry(
    role: Role,
    expires: &str,
    file: &str,
    now: SystemTime,
    grace: Duration,
) -> Result<(), VerifyError> {
    let at = parse_expires(file, expires)?;
    if at.checked_add(grace).is_none_or(|limit| limit <= now) {
        return Err(VerifyError::Expired {
            role,
            expires: expires.to_string(),
            now: format_time(now),
        });
    }
    Ok(())
}

/// Whether `name` is a target name this crate will write: a plain file
/// name, so no target can reach outside its slot.
pub fn valid_target_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

fn check_target_names(targets: &Targets) -> Result<(), VerifyError> {
    for (name, desc) in &targets.targets {
        if !valid_target_name(name) {
            return Err(VerifyError::Malformed {
                file: "targets.json".into(),
                reason: format!("target name {name:?} is not a plain file name"),
            });
        }
        if !desc.hashes.contains_key("sha256") {
            return Err(VerifyError::Malformed {
                file: "targets.json".into(),
                reason: format!("target {name} has no sha256"),
            });
        }
    }
    Ok(())
}

fn release_name(targets: &Targets) -> Option<String> {
    targets.targets.values().find_map(|t| {
        t.custom
            .as_ref()?
            .get("release")?
            .as_str()
            .map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_files_are_filed_by_name_once_each() {
        let mut m = BundleMetadata::default();
        for name in [
            "2.root.json",
            "1.root.json",
            "targets.json",
            "timestamp.json",
        ] {
            m.insert(name, name.as_bytes().to_vec()).unwrap();
        }
        let names: Vec<String> = m.files().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "1.root.json",
                "2.root.json",
                "timestamp.json",
                "targets.json"
            ]
        );
        assert_eq!(m.roots[&2], b"2.root.json");
        assert_eq!(
            m.insert("targets.json", vec![]),
            Err(MetadataFileError::Twice)
        );
        assert_eq!(
            m.insert("1.root.json", vec![]),
            Err(MetadataFileError::Twice)
        );
        for bad in [
            "0.root.json",
            "01.root.json",
            "+3.root.json",
            "root.json",
            "x.root.json",
            "mirrors.json",
            "../targets.json",
        ] {
            assert_eq!(
                m.insert(bad, vec![]),
                Err(MetadataFileError::UnknownName),
                "{bad}"
            );
        }
    }
}
