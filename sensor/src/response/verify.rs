//! Which commands a sensor accepts: signed by the appliance's command key
//! (stored at enrollment), for this host, not expired, never executed
//! before. Executed ids are remembered on disk until their expiry, so a
//! restart never re-executes one and the file stays bounded.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, VerifyingKey};
use vigil_proto::{Command, HostId, RefusalReason};

use super::ResponseError;
use crate::enroll::write_private;

/// The appliance's command public key in the state directory (hex, 0600).
pub const KEY_FILE: &str = "command_key.pub";
/// Ids of executed commands with their expiry (JSON, 0600).
pub const SEEN_FILE: &str = "commands_seen.json";
/// Longest lifetime a command may claim: ids are remembered until their
/// expiry, so this bounds how long the replay file keeps each one.
pub const MAX_COMMAND_LIFETIME_NS: u64 = 7 * 24 * 3600 * 1_000_000_000;

/// The horizon of a record lost earlier, unless every command it covers
/// has expired (then the marker is removed). An unreadable marker is
/// taken as "lost now": refusing a little longer is the safe side.
fn load_lost_horizon(dir: &Path, now_ns: u64) -> Result<Option<u64>, ResponseError> {
    let path = dir.join(SEEN_LOST_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ResponseError::Store(format!("{}: {e}", path.display()))),
    };
    let horizon = text.trim().parse::<u64>().unwrap_or(now_ns);
    if horizon.saturating_add(MAX_COMMAND_LIFETIME_NS) < now_ns {
        fs::remove_file(&path)
            .map_err(|e| ResponseError::Store(format!("{}: {e}", path.display())))?;
        return Ok(None);
    }
    Ok(Some(horizon))
}

/// Store the appliance's command key (at enrollment).
pub fn store_command_key(dir: &Path, key: &[u8; 32]) -> Result<(), ResponseError> {
    VerifyingKey::from_bytes(key).map_err(|e| ResponseError::BadKey(e.to_string()))?;
    write_private(
        &dir.join(KEY_FILE),
        format!("{}\n", hex::encode(key)).as_bytes(),
    )
    .map_err(|e| ResponseError::Store(e.to_string()))
}

/// The stored command key; `None` if this sensor was enrolled without one.
pub fn load_command_key(dir: &Path) -> Result<Option<VerifyingKey>, ResponseError> {
    let path = dir.join(KEY_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ResponseError::Store(format!("{}: {e}", path.display()))),
    };
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ResponseError::BadKey(format!("{}: not 32 hex bytes", path.display())))?;
    VerifyingKey::from_bytes(&bytes)
        .map(Some)
        .map_err(|e| ResponseError::BadKey(e.to_string()))
}

/// Check everything about a command except policy and replay, in the order
/// a refusal is reported: unsigned, no key, bad signature, wrong host,
/// expired, expiry too far.
pub fn check(
    cmd: &Command,
    key: Option<&VerifyingKey>,
    host: HostId,
    now_ns: u64,
) -> Result<(), RefusalReason> {
    if cmd.signature.is_empty() {
        return Err(RefusalReason::Unsigned);
    }
    let key = key.ok_or(RefusalReason::NoCommandKey)?;
    let sig = Signature::from_slice(&cmd.signature).map_err(|_| RefusalReason::BadSignature)?;
    key.verify_strict(&cmd.signing_bytes(), &sig)
        .map_err(|_| RefusalReason::BadSignature)?;
    if cmd.host != host {
        return Err(RefusalReason::WrongHost);
    }
    if cmd.expires_ns <= now_ns {
        return Err(RefusalReason::Expired);
    }
    if cmd.expires_ns - now_ns > MAX_COMMAND_LIFETIME_NS {
        return Err(RefusalReason::ExpiryTooFar);
    }
    Ok(())
}

/// Where a corrupt [`SEEN_FILE`] is moved, for whoever investigates.
pub const SEEN_CORRUPT_FILE: &str = "commands_seen.json.corrupt";
/// When the executed-id record was found corrupt (ns since the Unix epoch,
/// 0600): until every command created before it has expired, such
/// commands are refused, since whether they ran is unknown.
pub const SEEN_LOST_FILE: &str = "commands_seen.lost";

/// Ids of commands already executed, each kept until its expiry (after
/// which [`check`] refuses the command anyway).
///
/// A corrupt record does not stop the sensor (telemetry matters more than
/// response): the file is set aside, and every command created before
/// that moment is refused as replayed until it could no longer be valid —
/// one of them may have run. Commands issued afterwards run normally.
#[derive(Debug)]
pub struct SeenIds {
    path: PathBuf,
    ids: BTreeMap<u64, u64>,
    /// Commands created before this (ns) are refused: their record was lost.
    lost_before_ns: Option<u64>,
}

impl SeenIds {
    /// Load from the state directory (empty when absent), at the wall clock.
    pub fn load(dir: &Path) -> Result<SeenIds, ResponseError> {
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        SeenIds::load_at(dir, now_ns)
    }

    /// Load from the state directory at `now_ns`; a corrupt record is set
    /// aside as described on [`SeenIds`].
    pub fn load_at(dir: &Path, now_ns: u64) -> Result<SeenIds, ResponseError> {
        let path = dir.join(SEEN_FILE);
        let store =
            |e: &dyn std::fmt::Display| ResponseError::Store(format!("{}: {e}", path.display()));
        let mut lost_before_ns = load_lost_horizon(dir, now_ns)?;
        let ids = match fs::read(&path) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e,
                        "the record of executed commands is corrupt; set aside, and commands created before now are refused");
                    // The marker first: a crash before the rename then
                    // finds both, never a missing record without a marker.
                    write_private(&dir.join(SEEN_LOST_FILE), format!("{now_ns}\n").as_bytes())
                        .map_err(|e| store(&e))?;
                    fs::rename(&path, dir.join(SEEN_CORRUPT_FILE)).map_err(|e| store(&e))?;
                    lost_before_ns = Some(lost_before_ns.map_or(now_ns, |h| h.max(now_ns)));
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(store(&e)),
        };
        Ok(SeenIds {
            path,
            ids,
            lost_before_ns,
        })
    }

    /// Whether `id` was executed.
    pub fn contains(&self, id: u64) -> bool {
        self.ids.contains_key(&id)
    }

    /// Whether a command created at `created_ns` may have run before the
    /// record was lost (then it is refused).
    pub fn maybe_ran_before_loss(&self, created_ns: u64) -> Option<u64> {
        self.lost_before_ns.filter(|&h| created_ns < h)
    }

    /// Remember `id` durably *before* it runs (a crash mid-action must not
    /// lead to a second execution), dropping ids whose expiry passed.
    pub fn record(&mut self, id: u64, expires_ns: u64, now_ns: u64) -> Result<(), ResponseError> {
        self.ids.retain(|_, exp| *exp > now_ns);
        self.ids.insert(id, expires_ns);
        let text =
            serde_json::to_vec(&self.ids).map_err(|e| ResponseError::Store(e.to_string()))?;
        write_private(&self.path, &text).map_err(|e| ResponseError::Store(e.to_string()))
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use vigil_proto::CommandAction;

    const NOW: u64 = 1_000_000_000_000;
    const HOST: HostId = HostId(7);

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn signed(k: &SigningKey) -> Command {
        let mut c = Command {
            id: 1,
            host: HOST,
            operator: "alice".into(),
            reason: "ir".into(),
            created_ns: NOW - 1,
            expires_ns: NOW + 60_000_000_000,
            action: CommandAction::KillProcess {
                pid: 42,
                start_time_ticks: 7,
            },
            signature: Vec::new(),
        };
        c.signature = k.sign(&c.signing_bytes()).to_bytes().to_vec();
        c
    }

    #[test]
    fn a_signed_command_for_this_host_passes() {
        let k = key(1);
        let vk = k.verifying_key();
        assert_eq!(check(&signed(&k), Some(&vk), HOST, NOW), Ok(()));
    }

    #[test]
    fn every_tampered_field_breaks_the_signature() {
        let k = key(1);
        let vk = k.verifying_key();
        type Tamper = fn(&mut Command);
        let cases: [(&str, Tamper); 8] = [
            ("id", |c| c.id += 1),
            ("host", |c| c.host = HostId(8)),
            ("operator", |c| c.operator.push('x')),
            ("reason", |c| c.reason.clear()),
            ("created", |c| c.created_ns += 1),
            ("expires", |c| c.expires_ns += 1),
            ("action", |c| {
                c.action = CommandAction::KillProcess {
                    pid: 43,
                    start_time_ticks: 7,
                }
            }),
            ("signature", |c| c.signature[0] ^= 1),
        ];
        for (field, tamper) in cases {
            let mut c = signed(&k);
            tamper(&mut c);
            assert_eq!(
                check(&c, Some(&vk), HOST, NOW),
                Err(RefusalReason::BadSignature),
                "{field}"
            );
        }
    }

    #[test]
    fn refusals_name_their_reason() {
        let k = key(1);
        let vk = k.verifying_key();
        let other = key(2);
        let mut unsigned = signed(&k);
        unsigned.signature.clear();
        assert_eq!(
            check(&unsigned, Some(&vk), HOST, NOW),
            Err(RefusalReason::Unsigned)
        );
        assert_eq!(
            check(&signed(&k), None, HOST, NOW),
            Err(RefusalReason::NoCommandKey)
        );
        assert_eq!(
            check(&signed(&other), Some(&vk), HOST, NOW),
            Err(RefusalReason::BadSignature),
            "signed by another key"
        );
        let mut short = signed(&k);
        short.signature.truncate(10);
        assert_eq!(
            check(&short, Some(&vk), HOST, NOW),
            Err(RefusalReason::BadSignature)
        );
        assert_eq!(
            check(&signed(&k), Some(&vk), HostId(8), NOW),
            Err(RefusalReason::WrongHost)
        );
        let c = signed(&k);
        assert_eq!(
            check(&c, Some(&vk), HOST, c.expires_ns),
            Err(RefusalReason::Expired)
        );
        let mut far = signed(&k);
        far.expires_ns = NOW + MAX_COMMAND_LIFETIME_NS + 1;
        far.signature = k.sign(&far.signing_bytes()).to_bytes().to_vec();
        assert_eq!(
            check(&far, Some(&vk), HOST, NOW),
            Err(RefusalReason::ExpiryTooFar)
        );
    }

    #[test]
    fn seen_ids_survive_a_restart_and_are_pruned_after_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = SeenIds::load(dir.path()).unwrap();
        seen.record(1, NOW + 10, NOW).unwrap();
        seen.record(2, NOW + 1000, NOW).unwrap();
        let mut again = SeenIds::load(dir.path()).unwrap();
        assert!(again.contains(1) && again.contains(2));
        again.record(3, NOW + 2000, NOW + 10).unwrap();
        assert!(!again.contains(1), "expired ids are dropped");
        assert_eq!(SeenIds::load(dir.path()).unwrap().len(), 2);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join(SEEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_corrupt_record_is_set_aside_and_older_commands_are_refused_until_expiry() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(SEEN_FILE), b"{\"1\": 17, trunc").unwrap();
        let mut seen = SeenIds::load_at(dir.path(), NOW).unwrap();
        assert!(dir.path().join(SEEN_CORRUPT_FILE).exists());
        assert_eq!(seen.maybe_ran_before_loss(NOW - 1), Some(NOW));
        assert_eq!(seen.maybe_ran_before_loss(NOW), None);
        seen.record(9, NOW + 10, NOW).unwrap();
        // A restart keeps the horizon (the new record is valid, the lost one
        // is still unknown) ...
        let again = SeenIds::load_at(dir.path(), NOW + 5).unwrap();
        assert!(again.contains(9));
        assert_eq!(again.maybe_ran_before_loss(NOW - 1), Some(NOW));
        // ... until every command it covers has expired.
        let later = SeenIds::load_at(dir.path(), NOW + MAX_COMMAND_LIFETIME_NS + 1).unwrap();
        assert_eq!(later.maybe_ran_before_loss(0), None);
        assert!(!dir.path().join(SEEN_LOST_FILE).exists());
    }

    #[test]
    fn the_command_key_is_stored_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_command_key(dir.path()).unwrap().is_none());
        let vk = key(3).verifying_key();
        store_command_key(dir.path(), vk.as_bytes()).unwrap();
        assert_eq!(load_command_key(dir.path()).unwrap(), Some(vk));
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
