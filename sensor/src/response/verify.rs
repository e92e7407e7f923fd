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

/// Ids of commands already executed, each kept until its expiry (after
/// which [`check`] refuses the command anyway).
#[derive(Debug)]
pub struct SeenIds {
    path: PathBuf,
    ids: BTreeMap<u64, u64>,
}

impl SeenIds {
    /// Load from the state directory (empty when absent).
    pub fn load(dir: &Path) -> Result<SeenIds, ResponseError> {
        let path = dir.join(SEEN_FILE);
        let ids = match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| ResponseError::Store(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(ResponseError::Store(format!("{}: {e}", path.display()))),
        };
        Ok(SeenIds { path, ids })
    }

    /// Whether `id` was executed.
    pub fn contains(&self, id: u64) -> bool {
        self.ids.contains_key(&id)
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
