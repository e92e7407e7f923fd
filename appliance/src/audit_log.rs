//! The provable audit log: signed checkpoints of the Merkle tree the store
//! keeps over the console's audit entries ([`crate::db::audit_log`]), and
//! the operations behind `vigil audit verify|checkpoint|prove-extends`.
//!
//! Checkpoints are C2SP signed notes by the appliance's evidence key
//! (`keys/evidence.key`, Ed25519), origin `vigil-audit/<CA fingerprint>`.
//! One is signed when an append leaves at least [`CHECKPOINT_EVERY_ENTRIES`]
//! entries or [`CHECKPOINT_EVERY_NS`] uncovered, and on request (exports,
//! `vigil audit checkpoint`). Time comes from the entries, never a clock
//! read here.

use crate::db::records::AUDIT;
use crate::db::Db;
use crate::store::{Cf, Direction, StoreError, WriteBatch};
use std::path::Path;
use thiserror::Error;
use vigil_evidence::merkle::{self, Hash, MerkleError};
use vigil_evidence::statement::rfc3339_from_ns;
use vigil_evidence::{audit_origin, Checkpoint, SigningKey, VerifyReport, VerifyingKey};
use vigil_web_ui::store::AuditEntry;

/// Sign a checkpoint once this many entries are not covered by one.
pub const CHECKPOINT_EVERY_ENTRIES: u64 = 64;
/// … or once the oldest uncovered entry is this much older than the newest.
pub const CHECKPOINT_EVERY_NS: u64 = 10 * 60 * 1_000_000_000;

/// What can go wrong with the audit log.
#[derive(Debug, Error)]
pub enum AuditLogError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("audit tree: {0}")]
    Merkle(#[from] MerkleError),
    #[error("evidence key {path}: {detail}")]
    Key { path: String, detail: String },
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

/// Signs the audit log's checkpoints (and evidence bundles).
pub struct AuditSigner {
    key: SigningKey,
    origin: String,
    appliance_id: String,
}

impl AuditSigner {
    /// Load the PKCS#8 PEM evidence key; `appliance_id` names the log.
    pub fn load(path: &Path, appliance_id: &str) -> Result<Self, AuditLogError> {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let key_err = |detail: String| AuditLogError::Key {
            path: path.display().to_string(),
            detail,
        };
        let pem = std::fs::read_to_string(path).map_err(|e| key_err(e.to_string()))?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| key_err(e.to_string()))?;
        Ok(Self::new(key, appliance_id))
    }

    /// A signer over `key` (tests).
    pub fn new(key: SigningKey, appliance_id: &str) -> Self {
        AuditSigner {
            key,
            origin: audit_origin(appliance_id),
            appliance_id: appliance_id.to_string(),
        }
    }

    /// The public half, for verification.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The signing key (evidence bundles are signed with the same key).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Which appliance this is (the CA fingerprint).
    pub fn appliance_id(&self) -> &str {
        &self.appliance_id
    }

    /// A signed checkpoint note of a tree of `size` leaves with `root`.
    pub fn sign(&self, size: u64, root: Hash, time_ns: u64) -> Result<String, AuditLogError> {
        Checkpoint::new(&self.origin, size, root, &rfc3339_from_ns(time_ns))
            .sign(&self.key)
            .map_err(|e| AuditLogError::Checkpoint(e.to_string()))
    }
}

/// Bring the tree up to the stored entries (entries written before the
/// tree existed, by an older version). Idempotent.
pub fn catch_up(db: &Db) -> Result<u64, AuditLogError> {
    let mut frontier = db.audit_frontier()?;
    let start = frontier.size();
    // Every start comes here: read the whole log only when the last entry
    // is past the tree (an upgrade from a version without it).
    let last = db.records_with_prefix::<AuditEntry>(Cf::Audit, AUDIT, Direction::Reverse, 1)?;
    if last.first().is_none_or(|(_, e)| e.seq <= start) {
        return Ok(0);
    }
    let missing = db.records_with_prefix::<AuditEntry>(Cf::Audit, AUDIT, Direction::Forward, 0)?;
    let mut batch = WriteBatch::default();
    for (_, entry) in missing.into_iter().skip(start as usize) {
        db.audit_append_to(&mut batch, &mut frontier, &entry)?;
    }
    let added = frontier.size() - start;
    if added > 0 {
        db.store().write(batch, true)?;
    }
    Ok(added)
}

/// Append `entry` and its leaf in one synced write; sign a checkpoint if
/// one is due. Call with the console store's audit lock held.
pub fn append(
    db: &Db,
    signer: Option<&AuditSigner>,
    entry: &AuditEntry,
) -> Result<(), AuditLogError> {
    let mut frontier = db.audit_frontier()?;
    let mut batch = WriteBatch::default();
    db.audit_append_to(&mut batch, &mut frontier, entry)?;
    db.store().write(batch, true)?;
    let Some(signer) = signer else {
        return Ok(());
    };
    let due = match db.latest_audit_checkpoint()? {
        None => true,
        Some((size, note)) => {
            let covered_ns = Checkpoint::parse_unverified(&note)
                .ok()
                .and_then(|(cp, _)| cp.time().and_then(parse_rfc3339_ns))
                .unwrap_or(0);
            frontier.size() - size >= CHECKPOINT_EVERY_ENTRIES
                || entry.ts_ns.saturating_sub(covered_ns) >= CHECKPOINT_EVERY_NS
        }
    };
    if due {
        let note = signer.sign(frontier.size(), frontier.root(), entry.ts_ns)?;
        db.put_audit_checkpoint(frontier.size(), &note)?;
    }
    Ok(())
}

fn parse_rfc3339_ns(s: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339(s).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(d.as_nanos()).ok()
}

/// A checkpoint of the whole log as it is now, signed at `now_ns` (reused
/// when the latest one already covers every entry).
pub fn checkpoint_now(db: &Db, signer: &AuditSigner, now_ns: u64) -> Result<String, AuditLogError> {
    let frontier = db.audit_frontier()?;
    if let Some((size, note)) = db.latest_audit_checkpoint()? {
        if size == frontier.size() {
            return Ok(note);
        }
    }
    let note = signer.sign(frontier.size(), frontier.root(), now_ns)?;
    db.put_audit_checkpoint(frontier.size(), &note)?;
    Ok(note)
}

/// Check every stored entry against every stored checkpoint with `key`.
pub fn verify_stored(db: &Db, key: &VerifyingKey) -> Result<VerifyReport, AuditLogError> {
    let notes: Vec<String> = db
        .audit_checkpoints()?
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    let refs: Vec<&str> = notes.iter().map(String::as_str).collect();
    Ok(vigil_evidence::verify_audit_log(
        db.audit_leaf_data()?,
        &refs,
        key,
    ))
}

/// Proof that the log now extends the one `old_note` describes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Extension {
    /// The checkpoint of the log now.
    pub checkpoint: String,
    /// RFC 6962 consistency proof from the old size to the new, hex.
    pub proof: Vec<String>,
}

/// A fresh checkpoint and the consistency proof from `old_note`'s tree to
/// it, checked before it is returned (the report says whether it holds).
pub fn prove_extends(
    db: &Db,
    signer: &AuditSigner,
    old_note: &str,
    now_ns: u64,
) -> Result<(Extension, VerifyReport), AuditLogError> {
    let (old, _) = Checkpoint::parse_unverified(old_note)
        .map_err(|e| AuditLogError::Checkpoint(format!("old checkpoint: {e}")))?;
    let checkpoint = checkpoint_now(db, signer, now_ns)?;
    let (new, _) = Checkpoint::parse_unverified(&checkpoint)
        .map_err(|e| AuditLogError::Checkpoint(e.to_string()))?;
    let proof = if old.size == 0 || old.size > new.size {
        Vec::new()
    } else {
        merkle::consistency_proof(&db.audit_leaves(new.size), old.size, new.size)?
    };
    let report = vigil_evidence::prove_extends(old_note, &checkpoint, &proof, &signer.public_key());
    Ok((
        Extension {
            checkpoint,
            proof: proof.iter().map(hex::encode).collect(),
        },
        report,
    ))
}

/// The inclusion proof of entry `seq` in a tree of `size` leaves.
pub fn inclusion(db: &Db, seq: u64, size: u64) -> Result<Vec<Hash>, AuditLogError> {
    Ok(merkle::inclusion_proof(
        &db.audit_leaves(size),
        seq - 1,
        size,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::audit_log::leaf_data;
    use crate::store::memory::MemoryStore;
    use std::sync::Arc;
    use vigil_web_ui::audit::seal;
    use vigil_web_ui::store::AuditDraft;

    fn draft(i: u64) -> AuditDraft {
        AuditDraft {
            ts_ns: 1_700_000_000_000_000_000 + i * 1_000_000_000,
            actor: "admin".into(),
            action: "triage.close".into(),
            target: format!("alert:{i}"),
            detail: String::new(),
        }
    }

    fn log_of(n: u64, signer: &AuditSigner) -> Db {
        let db = Db::new(Arc::new(MemoryStore::default()));
        let mut last: Option<AuditEntry> = None;
        for i in 0..n {
            let e = seal(last.as_ref(), draft(i));
            append(&db, Some(signer), &e).unwrap();
            last = Some(e);
        }
        db
    }

    fn signer() -> AuditSigner {
        AuditSigner::new(SigningKey::from_bytes(&[7; 32]), "test-appliance")
    }

    #[test]
    fn checkpoints_are_signed_as_entries_accumulate_and_the_log_verifies() {
        let s = signer();
        let db = log_of(200, &s);
        let sizes: Vec<u64> = db
            .audit_checkpoints()
            .unwrap()
            .iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(sizes, vec![1, 65, 129, 193]);
        let report = verify_stored(&db, &s.public_key()).unwrap();
        assert!(report.ok(), "{report}");
    }

    #[test]
    fn a_changed_stored_entry_fails_verification() {
        let s = signer();
        let db = log_of(100, &s);
        let mut e: AuditEntry = db
            .record(Cf::Audit, &crate::db::records::id_key(AUDIT, 10))
            .unwrap()
            .unwrap();
        e.actor = "someone-else".into();
        db.put_record(Cf::Audit, &crate::db::records::id_key(AUDIT, 10), &e)
            .unwrap();
        let report = verify_stored(&db, &s.public_key()).unwrap();
        assert!(!report.ok(), "a rewritten entry verified: {report}");
    }

    #[test]
    fn the_log_proves_it_extends_an_older_checkpoint_and_a_fork_does_not() {
        let s = signer();
        let db = log_of(70, &s);
        let old = checkpoint_now(&db, &s, 1).unwrap();
        let mut last = None;
        for (_, e) in db
            .records_with_prefix::<AuditEntry>(Cf::Audit, AUDIT, Direction::Reverse, 1)
            .unwrap()
        {
            last = Some(e);
        }
        for i in 70..90 {
            let e = seal(last.as_ref(), draft(i));
            append(&db, Some(&s), &e).unwrap();
            last = Some(e);
        }
        let (ext, report) = prove_extends(&db, &s, &old, 2).unwrap();
        assert!(report.ok(), "{report}");
        assert!(!ext.proof.is_empty());
        // A different log under the same key does not extend it.
        let other = Db::new(Arc::new(MemoryStore::default()));
        let mut last: Option<AuditEntry> = None;
        for i in 500..600 {
            let e = seal(last.as_ref(), draft(i));
            append(&other, Some(&s), &e).unwrap();
            last = Some(e);
        }
        let (_, forked) = prove_extends(&other, &s, &old, 3).unwrap();
        assert!(!forked.ok(), "a different log claimed to extend");
    }

    #[test]
    fn entries_from_before_the_tree_are_caught_up_once() {
        let s = signer();
        let db = Db::new(Arc::new(MemoryStore::default()));
        let mut last: Option<AuditEntry> = None;
        for i in 0..5 {
            let e = seal(last.as_ref(), draft(i));
            db.put_record(Cf::Audit, &crate::db::records::id_key(AUDIT, e.seq), &e)
                .unwrap();
            last = Some(e);
        }
        assert_eq!(catch_up(&db).unwrap(), 5);
        assert_eq!(catch_up(&db).unwrap(), 0);
        checkpoint_now(&db, &s, 9).unwrap();
        assert!(verify_stored(&db, &s.public_key()).unwrap().ok());
        let proof = inclusion(&db, 3, 5).unwrap();
        let root = db.audit_frontier().unwrap().root();
        let third: AuditEntry = db
            .record(Cf::Audit, &crate::db::records::id_key(AUDIT, 3))
            .unwrap()
            .unwrap();
        let leaf = merkle::leaf_hash(&leaf_data(&third));
        merkle::verify_inclusion(&leaf, 2, 5, &proof, &root).unwrap();
    }
}
