//! The audit hash chain: each entry holds the SHA-256 of the previous one.
//! Pure functions, so every [`crate::store::ConsoleStore`] chains the same way.

use crate::store::{AuditDraft, AuditEntry};
use sha2::{Digest, Sha256};

/// `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Hex SHA-256 over an entry's fields, length-prefixed so no two field
/// splits hash alike.
pub fn entry_hash(seq: u64, prev_hash: &str, d: &AuditDraft) -> String {
    let mut h = Sha256::new();
    h.update(b"vigil-audit-v1");
    h.update(seq.to_be_bytes());
    h.update(d.ts_ns.to_be_bytes());
    for field in [prev_hash, &d.actor, &d.action, &d.target, &d.detail] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The entry that follows `prev` (or starts the chain).
pub fn seal(prev: Option<&AuditEntry>, draft: AuditDraft) -> AuditEntry {
    let seq = prev.map_or(1, |p| p.seq + 1);
    let prev_hash = prev.map_or_else(|| GENESIS.to_string(), |p| p.hash.clone());
    let hash = entry_hash(seq, &prev_hash, &draft);
    AuditEntry {
        seq,
        ts_ns: draft.ts_ns,
        actor: draft.actor,
        action: draft.action,
        target: draft.target,
        detail: draft.detail,
        prev_hash,
        hash,
    }
}

/// Result of checking a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainStatus {
    /// Every link checks out.
    Intact { entries: u64 },
    /// The first entry whose hash, link or sequence number is wrong.
    Broken { seq: u64, why: &'static str },
}

/// Recompute every hash and link, oldest first.
pub fn verify(entries: &[AuditEntry]) -> ChainStatus {
    let mut prev_hash = GENESIS.to_string();
    for (i, e) in entries.iter().enumerate() {
        if e.seq != i as u64 + 1 {
            return ChainStatus::Broken {
                seq: e.seq,
                why: "sequence gap",
            };
        }
        if e.prev_hash != prev_hash {
            return ChainStatus::Broken {
                seq: e.seq,
                why: "previous hash does not match",
            };
        }
        let draft = AuditDraft {
            ts_ns: e.ts_ns,
            actor: e.actor.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            detail: e.detail.clone(),
        };
        if entry_hash(e.seq, &e.prev_hash, &draft) != e.hash {
            return ChainStatus::Broken {
                seq: e.seq,
                why: "entry was modified",
            };
        }
        prev_hash = e.hash.clone();
    }
    ChainStatus::Intact {
        entries: entries.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(n: u64) -> AuditDraft {
        AuditDraft {
            ts_ns: n,
            actor: "alice".into(),
            action: "login".into(),
            target: format!("user:{n}"),
            detail: String::new(),
        }
    }

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let e = seal(out.last(), draft(i));
            out.push(e);
        }
        out
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), ChainStatus::Intact { entries: 5 });
        assert_eq!(verify(&[]), ChainStatus::Intact { entries: 0 });
    }

    #[test]
    fn tampered_detail_is_found() {
        let mut c = chain(5);
        c[2].detail = "edited".into();
        assert_eq!(
            verify(&c),
            ChainStatus::Broken {
                seq: 3,
                why: "entry was modified"
            }
        );
    }

    #[test]
    fn removed_entry_is_found() {
        let mut c = chain(5);
        c.remove(1);
        assert!(matches!(verify(&c), ChainStatus::Broken { seq: 3, .. }));
    }
}
