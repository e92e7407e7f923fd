//! The audit log as an RFC 6962 Merkle tree (issue #17): key layout and the
//! atomic append, so an auditor can get inclusion proofs for single entries
//! and consistency proofs that today's log extends one saved last quarter.
//!
//! In the `audit` family, beside the entries (`audit/{seq BE}`):
//! - `auditlog/leaf/{index BE}` → the 32-byte leaf hash of entry `index + 1`
//! - `auditlog/node/{level u8}{index BE}` → each completed perfect subtree,
//!   so a proof costs O(log n) reads instead of a scan of the log
//! - `auditlog/frontier` → the tree's right edge (size + one hash per set
//!   bit), so an append costs O(log n)
//! - `auditlog/cp/{size BE}` → signed checkpoint notes (C2SP format)
//!
//! An entry, its leaf, its nodes and the new frontier are one synced write:
//! the tree never disagrees with the log. The leaf data of an entry is its
//! JSON ([`leaf_data`]), the bytes an evidence bundle carries, pinned by a
//! golden test.

use super::{encode, Db};
use crate::store::{Cf, Direction, StoreError, WriteBatch};
use serde::{Deserialize, Serialize};
use vigil_evidence::merkle::{self, Hash, MerkleError};
use vigil_evidence::{Frontier, LeafHashes};
use vigil_web_ui::store::AuditEntry;

/// `audit`: `auditlog/leaf/{index u64 BE}`.
pub const LEAF: &[u8] = b"auditlog/leaf/";
/// `audit`: `auditlog/node/{level u8}{index u64 BE}`.
pub const NODE: &[u8] = b"auditlog/node/";
/// `audit`: the saved [`Frontier`].
pub const FRONTIER: &[u8] = b"auditlog/frontier";
/// `audit`: `auditlog/cp/{tree size u64 BE}` → signed checkpoint note.
pub const CHECKPOINT: &[u8] = b"auditlog/cp/";

/// The bytes of `entry` that the Merkle tree commits to: its JSON, fields
/// in declaration order. Never change: stored trees and exported bundles
/// depend on it (`db/golden.rs`).
pub fn leaf_data(entry: &AuditEntry) -> Vec<u8> {
    serde_json::to_vec(entry).expect("an audit entry is plain data")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedFrontier {
    size: u64,
    nodes: Vec<Hash>,
}

fn node_key(level: u32, index: u64) -> Vec<u8> {
    let mut k = NODE.to_vec();
    k.push(level as u8);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn hash_of(cf: Cf, bytes: &[u8]) -> Result<Hash, StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        cf: cf.name(),
        detail: format!("audit tree hash of {} bytes", bytes.len()),
    })
}

impl Db {
    /// The audit tree's right edge (empty before the first entry).
    pub fn audit_frontier(&self) -> Result<Frontier, StoreError> {
        let Some(saved) = self.get::<SavedFrontier>(Cf::Audit, FRONTIER)? else {
            return Ok(Frontier::new());
        };
        Frontier::from_parts(saved.size, saved.nodes).ok_or_else(|| StoreError::Corrupt {
            cf: Cf::Audit.name(),
            detail: "audit frontier does not fit its size".into(),
        })
    }

    /// Add `entry` (the next one: `seq == frontier.size() + 1`), its leaf,
    /// the subtrees it completes and the advanced frontier to `batch`.
    pub fn audit_append_to(
        &self,
        batch: &mut WriteBatch,
        frontier: &mut Frontier,
        entry: &AuditEntry,
    ) -> Result<(), StoreError> {
        if entry.seq != frontier.size() + 1 {
            return Err(StoreError::Corrupt {
                cf: Cf::Audit.name(),
                detail: format!(
                    "audit entry {} does not follow the tree of {} leaves",
                    entry.seq,
                    frontier.size()
                ),
            });
        }
        batch.put(
            Cf::Audit,
            super::records::id_key(super::records::AUDIT, entry.seq),
            encode(entry),
        );
        let leaf = merkle::leaf_hash(&leaf_data(entry));
        frontier.push_with(leaf, |level, index, hash| {
            let key = if level == 0 {
                [LEAF, &index.to_be_bytes()[..]].concat()
            } else {
                node_key(level, index)
            };
            batch.put(Cf::Audit, key, hash.to_vec());
        });
        let saved = SavedFrontier {
            size: frontier.size(),
            nodes: frontier.nodes().to_vec(),
        };
        batch.put(Cf::Audit, FRONTIER.to_vec(), encode(&saved));
        Ok(())
    }

    /// Store a signed checkpoint note for a tree of `size` leaves.
    pub fn put_audit_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        self.put_record(
            Cf::Audit,
            &[CHECKPOINT, &size.to_be_bytes()[..]].concat(),
            &note.to_string(),
        )
    }

    /// Every stored checkpoint note, smallest tree first.
    pub fn audit_checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError> {
        self.audit_checkpoints_dir(Direction::Forward, 0)
    }

    /// The checkpoint of the largest tree, if any.
    pub fn latest_audit_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        Ok(self.audit_checkpoints_dir(Direction::Reverse, 1)?.pop())
    }

    fn audit_checkpoints_dir(
        &self,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        Ok(self
            .records_with_prefix::<String>(Cf::Audit, CHECKPOINT, dir, limit)?
            .into_iter()
            .filter(|(k, _)| k.len() == CHECKPOINT.len() + 8)
            .map(|(k, note)| (super::keys::be64(&k[CHECKPOINT.len()..]), note))
            .collect())
    }

    /// The audit tree as the Merkle code reads it, `size` leaves long.
    pub fn audit_leaves(&self, size: u64) -> StoredLeaves<'_> {
        StoredLeaves { db: self, size }
    }

    /// Every audit entry's leaf data, in log order (for verification).
    pub fn audit_leaf_data(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .records_with_prefix::<AuditEntry>(
                Cf::Audit,
                super::records::AUDIT,
                Direction::Forward,
                0,
            )?
            .into_iter()
            .map(|(_, e)| leaf_data(&e))
            .collect())
    }
}

/// [`LeafHashes`] over the stored tree.
pub struct StoredLeaves<'a> {
    db: &'a Db,
    size: u64,
}

impl StoredLeaves<'_> {
    fn read(&self, key: &[u8]) -> Result<Option<Hash>, MerkleError> {
        let source = |e: StoreError| MerkleError::Source(e.to_string());
        match self.db.store().get(Cf::Audit, key).map_err(source)? {
            Some(bytes) => Ok(Some(hash_of(Cf::Audit, &bytes).map_err(source)?)),
            None => Ok(None),
        }
    }
}

impl LeafHashes for StoredLeaves<'_> {
    fn len(&self) -> u64 {
        self.size
    }

    fn leaf(&self, index: u64) -> Result<Hash, MerkleError> {
        self.read(&[LEAF, &index.to_be_bytes()[..]].concat())?
            .ok_or_else(|| MerkleError::Source(format!("audit leaf {index} missing")))
    }

    fn perfect_node(&self, level: u32, index: u64) -> Result<Option<Hash>, MerkleError> {
        self.read(&node_key(level, index))
    }
}
