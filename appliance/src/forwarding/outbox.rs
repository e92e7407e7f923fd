//! The alert outbox: every alert or incident revision the pipeline stores
//! for forwarding is written in the same synced store write as the alert
//! itself, under an upsert sequence of its own. The forwarding thread
//! queues the entries in sequence order and deletes them (one synced
//! write) once the receivers' queues hold them: the lowest entry left is
//! the durable cursor. A crash between the store write and the queue write
//! therefore loses nothing — the restart finds the entry and forwards it.
//!
//! Keys (`meta` column family):
//! - `forward/alert/{revision u64 BE}` → [`OutboxEntry`];
//! - `forward/alert_next` → the next revision number.
//!
//! Revisions: an incident is stored again as its chain grows; each stored
//! revision that differs from the one before is one entry and is forwarded
//! once, numbered (`revision` in the incident's summary) so a SIEM keeps
//! the latest and drops a re-send. An unchanged re-store adds no entry.

use crate::db::{decode, encode, Db};
use crate::store::{Cf, Direction, StoreError, Visit, WriteBatch};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use vigil_proto::query::AlertRecord;

/// Prefix of the outbox entries.
const ENTRY: &[u8] = b"forward/alert/";
/// The next revision number.
const NEXT: &[u8] = b"forward/alert_next";

/// One stored revision waiting to be queued for the receivers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The alert as stored.
    pub alert: AlertRecord,
    /// An incident, not a single alert.
    pub incident: bool,
    /// Names of `alert.path`'s hosts when it was stored ("" if unknown).
    pub host_names: Vec<String>,
}

/// Writes to the outbox; one writer at a time keeps revisions in order.
#[derive(Default)]
pub struct Outbox {
    write: Mutex<()>,
}

fn entry_key(revision: u64) -> Vec<u8> {
    [ENTRY, &revision.to_be_bytes()[..]].concat()
}

impl Outbox {
    /// Store `entry.alert` and, when it differs from the stored one, its
    /// outbox entry, in one synced write. Returns the revision, if any.
    pub fn store(&self, db: &Db, entry: &OutboxEntry) -> Result<Option<u64>, StoreError> {
        let _one = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = WriteBatch::default();
        Db::put_alert_in(&mut batch, &entry.alert);
        let unchanged = db.alert(entry.alert.id)?.as_ref() == Some(&entry.alert);
        let revision = if unchanged {
            None
        } else {
            let next: u64 = db.record(Cf::Meta, NEXT)?.unwrap_or(1);
            batch.put(Cf::Meta, entry_key(next), encode(entry));
            batch.put(Cf::Meta, NEXT.to_vec(), encode(&(next + 1)));
            Some(next)
        };
        db.store().write(batch, true)?;
        Ok(revision)
    }
}

/// Up to `limit` entries, lowest revision first. An entry that no longer
/// decodes (written by another version) comes back as `None` so the
/// caller can log it and move past it rather than stall behind it.
pub fn pending(db: &Db, limit: usize) -> Result<Vec<(u64, Option<OutboxEntry>)>, StoreError> {
    let end = crate::db::keys::prefix_end(ENTRY);
    let mut out = Vec::new();
    db.store().scan(
        Cf::Meta,
        ENTRY,
        end.as_deref(),
        Direction::Forward,
        &mut |k, v| {
            if k.len() == ENTRY.len() + 8 {
                let revision = crate::db::keys::be64(&k[ENTRY.len()..]);
                out.push((revision, decode::<OutboxEntry>(Cf::Meta, v).ok()));
            }
            if out.len() >= limit {
                Visit::Stop
            } else {
                Visit::Continue
            }
        },
    )?;
    Ok(out)
}

/// Delete the entries of `revisions` (queued), in one synced write.
pub fn remove(db: &Db, revisions: &[u64]) -> Result<(), StoreError> {
    let mut batch = WriteBatch::default();
    for r in revisions {
        batch.delete(Cf::Meta, entry_key(*r));
    }
    if batch.is_empty() {
        return Ok(());
    }
    db.store().write(batch, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use std::sync::Arc;
    use vigil_proto::query::{Severity, TriageState};
    use vigil_proto::HostId;

    fn incident(title: &str) -> OutboxEntry {
        OutboxEntry {
            alert: AlertRecord {
                id: 7,
                created_ns: 1,
                severity: Severity::High,
                score: 3.0,
                title: title.into(),
                path: vec![HostId(1)],
                users: vec![],
                techniques: vec![],
                summary: String::new(),
                deviations: vec![],
                evidence: vec![],
                state: TriageState::New,
                assignee: None,
                incident_id: None,
                model_version: None,
                ports: vec![],
                processes: vec![],
                suppressed_by: None,
            },
            incident: true,
            host_names: vec!["web-1".into()],
        }
    }

    #[test]
    fn each_changed_revision_is_one_entry_until_removed() {
        let db = Db::new(Arc::new(MemoryStore::default()));
        let outbox = Outbox::default();
        assert_eq!(outbox.store(&db, &incident("a → b")).unwrap(), Some(1));
        assert_eq!(outbox.store(&db, &incident("a → b")).unwrap(), None);
        assert_eq!(outbox.store(&db, &incident("a → b → c")).unwrap(), Some(2));
        assert_eq!(db.alert(7).unwrap().unwrap().title, "a → b → c");
        let got = pending(&db, 10).unwrap();
        let titles: Vec<(u64, String)> = got
            .iter()
            .map(|(r, e)| (*r, e.as_ref().unwrap().alert.title.clone()))
            .collect();
        assert_eq!(titles, [(1, "a → b".into()), (2, "a → b → c".into())]);
        remove(&db, &[1]).unwrap();
        assert_eq!(pending(&db, 10).unwrap()[0].0, 2);
        remove(&db, &[2]).unwrap();
        assert!(pending(&db, 10).unwrap().is_empty());
        // Numbering never restarts, so a SIEM never sees a revision twice.
        assert_eq!(outbox.store(&db, &incident("a")).unwrap(), Some(3));
    }

    #[test]
    fn an_entry_that_no_longer_decodes_is_reported_not_stalled_on() {
        let db = Db::new(Arc::new(MemoryStore::default()));
        let mut b = WriteBatch::default();
        b.put(Cf::Meta, entry_key(5), vec![0xff; 3]);
        db.store().write(b, true).unwrap();
        Outbox::default().store(&db, &incident("x")).unwrap();
        let got = pending(&db, 10).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0, got[1].0), (1, 5));
        assert!(got[0].1.is_some() && got[1].1.is_none());
    }
}
