//! Audit entries to each receiver from a position of its own: the last
//! entry queued for it, in `DATA/forward/audit/NAME.cursor` (0600,
//! fsync'd, renamed into place after each batch). A receiver configured
//! for the first time starts where its `from` setting says ([`begin`]):
//! `start` (the default: the SIEM gets the whole log, entries from before
//! forwarding was set up included) or `now` (the entry after the last one
//! written when it was added).
//!
//! The audit log is durable, so a receiver whose queue is full is not fed
//! past it: its position stays at the last entry its queue accepted, and
//! the rest follows once the queue drains (the refusal still raises the
//! alarm). Only an entry too large for any queue record is skipped.
//!
//! A crash between a queue write and the cursor write queues that batch
//! again: every record carries the entry's own audit seq, so a SIEM drops
//! the copy.

use super::settings::{forward_dir, private_dir, SettingsError};
use super::{read, Forwarding};
use crate::db::records::{id_key, AUDIT};
use crate::pki::write_private;
use crate::store::Cf;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vigil_forward::{AuditEntry, AuditFrom, ReceiverConfig, Record, RecordKind};

/// Most audit entries queued per write.
const BATCH: u64 = 256;
/// Most batches per receiver per pass, so a long history (a new receiver
/// with `from = "start"`) never holds a console reload back for long.
const BATCHES_PER_PASS: usize = 16;
/// A receiver whose queue refused entries is offered more after this.
const HOLD_AFTER_REFUSAL: Duration = Duration::from_secs(5);
/// Per-receiver cursors, under `DATA/forward/`.
const CURSOR_DIR: &str = "audit";
/// The single cursor of versions before per-receiver ones.
const LEGACY_CURSOR: &str = "audit.cursor";

/// The receivers' audit positions.
pub(super) struct AuditCursors {
    dir: PathBuf,
    /// Receivers whose queue refused entries, and until when they rest.
    held: HashMap<String, Instant>,
}

fn file_err(path: &Path, detail: impl ToString) -> SettingsError {
    SettingsError::File {
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

fn read_seq(path: &Path) -> Result<Option<u64>, SettingsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| file_err(path, format!("not a number: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_err(path, e)),
    }
}

fn cursor_dir(data_dir: &Path) -> Result<PathBuf, SettingsError> {
    let dir = forward_dir(data_dir)?.join(CURSOR_DIR);
    private_dir(&dir)?;
    Ok(dir)
}

fn cursor_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.cursor"))
}

fn save(dir: &Path, name: &str, seq: u64) -> Result<(), SettingsError> {
    let path = cursor_path(dir, name);
    write_private(&path, format!("{seq}\n").as_bytes()).map_err(|e| file_err(&path, e))
}

/// Give every receiver that takes audit entries and has no position yet
/// its first one: the legacy single cursor if an older version left one
/// (it forwarded to them from there), else its `from` setting, the log's
/// size now for `now`. Called when receivers are (re)configured, so "now"
/// is the moment a receiver was added.
pub(super) fn begin(fwd: &Forwarding, receivers: &[ReceiverConfig]) -> Result<(), SettingsError> {
    let dir = cursor_dir(&fwd.data_dir)?;
    let legacy_path = forward_dir(&fwd.data_dir)?.join(LEGACY_CURSOR);
    let legacy = read_seq(&legacy_path)?;
    for rc in receivers
        .iter()
        .filter(|r| r.kinds.contains(&RecordKind::Audit))
    {
        if read_seq(&cursor_path(&dir, &rc.name))?.is_some() {
            continue;
        }
        let seq = match (legacy, rc.from) {
            (Some(seq), _) => seq,
            (None, AuditFrom::Start) => 0,
            (None, AuditFrom::Now) => fwd
                .db
                .audit_frontier()
                .map_err(|e| file_err(&dir, e))?
                .size(),
        };
        save(&dir, &rc.name, seq)?;
        tracing::info!(receiver = %rc.name, after = seq, from = rc.from.as_str(), "audit forwarding begins");
    }
    if legacy.is_some() {
        let _ = std::fs::remove_file(legacy_path);
    }
    Ok(())
}

impl AuditCursors {
    /// The cursors under `data_dir` (the directory is created 0700).
    pub(super) fn open(data_dir: &Path) -> Result<AuditCursors, SettingsError> {
        Ok(AuditCursors {
            dir: cursor_dir(data_dir)?,
            held: HashMap::new(),
        })
    }

    /// The last entry queued for `name` ([`begin`] set the first one; a
    /// position lost since starts over from the log's first entry).
    fn position(&self, name: &str) -> Result<u64, SettingsError> {
        Ok(read_seq(&cursor_path(&self.dir, name))?.unwrap_or(0))
    }
}

/// Forget a removed receiver's position, so a receiver added again under
/// its name starts from its own `from` setting.
pub(super) fn forget(data_dir: &Path, name: &str) {
    let path = data_dir
        .join(super::settings::FORWARD_DIR)
        .join(CURSOR_DIR)
        .join(format!("{name}.cursor"));
    let _ = std::fs::remove_file(path);
}

/// Queue audit entries for every running receiver that takes them, from
/// its own position. `Ok(true)`: some receiver has more right away.
pub(super) fn forward(fwd: &Forwarding, cursors: &mut AuditCursors) -> Result<bool, String> {
    let guard = read(&fwd.running);
    let Some(running) = guard.as_ref() else {
        return Ok(false);
    };
    let mut more = false;
    let now = Instant::now();
    cursors.held.retain(|_, until| *until > now);
    for (rc, _) in &running.receivers {
        if !rc.kinds.contains(&RecordKind::Audit) || cursors.held.contains_key(&rc.name) {
            continue;
        }
        let mut seq = cursors.position(&rc.name).map_err(|e| e.to_string())?;
        for _ in 0..BATCHES_PER_PASS {
            let entries = entries_after(fwd, seq)?;
            let Some(last) = entries.last().map(|e| e.seq) else {
                break;
            };
            let records: Vec<Record> = entries.into_iter().map(Record::Audit).collect();
            let outcome = running.forwarder.submit_to(&rc.name, &records);
            fwd.raise_refusals(&outcome);
            let next = match outcome.refused.first() {
                None => last,
                Some(refusal) => {
                    let accepted = records.len().saturating_sub(refusal.records);
                    let skip = usize::from(refusal.reason == "too_large");
                    let through = accepted + skip;
                    cursors
                        .held
                        .insert(rc.name.clone(), now + HOLD_AFTER_REFUSAL);
                    match through.checked_sub(1).map(|i| &records[i]) {
                        Some(Record::Audit(e)) => e.seq,
                        _ => seq,
                    }
                }
            };
            if next != seq {
                save(&cursors.dir, &rc.name, next).map_err(|e| e.to_string())?;
                seq = next;
            }
            if next != last {
                break;
            }
        }
        more |= !cursors.held.contains_key(&rc.name) && has_entry_after(fwd, seq)?;
    }
    Ok(more)
}

/// Up to [`BATCH`] audit entries after `seq`, as forwarding records.
fn entries_after(fwd: &Forwarding, seq: u64) -> Result<Vec<AuditEntry>, String> {
    let mut out = Vec::new();
    let mut next = seq + 1;
    while (out.len() as u64) < BATCH {
        let entry: Option<vigil_web_ui::store::AuditEntry> = fwd
            .db
            .record(Cf::Audit, &id_key(AUDIT, next))
            .map_err(|e| e.to_string())?;
        let Some(e) = entry else { break };
        next = e.seq + 1;
        out.push(AuditEntry {
            actor: e.actor,
            time_ns: e.ts_ns,
            action: e.action,
            target: e.target,
            detail: e.detail,
            seq: e.seq,
        });
    }
    Ok(out)
}

fn has_entry_after(fwd: &Forwarding, seq: u64) -> Result<bool, String> {
    let entry: Option<vigil_web_ui::store::AuditEntry> = fwd
        .db
        .record(Cf::Audit, &id_key(AUDIT, seq + 1))
        .map_err(|e| e.to_string())?;
    Ok(entry.is_some())
}
