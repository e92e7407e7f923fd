//! The forwarding thread: tails the audit log from its own durable
//! cursor, forwards the latest signed checkpoint on a timer, and takes
//! raw events from a bounded channel. Everything that fsyncs a forwarding
//! queue for these runs here, never on an async worker.

use super::settings::{forward_dir, SettingsError};
use super::Forwarding;
use crate::db::records::{id_key, AUDIT};
use crate::pki::write_private;
use crate::store::Cf;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vigil_forward::{AuditEntry, Record};
use vigil_proto::Event;

/// Batches of raw events waiting for the thread before offers are refused.
const EVENT_BATCHES: usize = 64;
/// Most audit entries forwarded per queue write.
const AUDIT_BATCH: u64 = 256;
/// The thread looks at its flags at least this often.
const POLL: Duration = Duration::from_secs(1);
/// The last audit entry forwarded, under `DATA/forward/`.
const CURSOR_FILE: &str = "audit.cursor";

enum Job {
    Wake,
    Events(Vec<Event>),
    Stop,
}

/// Handle to the forwarding thread.
pub(super) struct Hub {
    tx: SyncSender<Job>,
    audit: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Hub {
    /// Start the thread; the audit cursor is read (or set to the log's end
    /// on the first start) before this returns.
    pub(super) fn spawn(
        fwd: Arc<Forwarding>,
        checkpoint_every: Duration,
    ) -> Result<Hub, SettingsError> {
        let cursor = AuditCursor::open(&fwd)?;
        let (tx, rx) = sync_channel(EVENT_BATCHES);
        let audit = Arc::new(AtomicBool::new(true));
        let flag = audit.clone();
        let thread = std::thread::Builder::new()
            .name("vigil-forward".into())
            .spawn(move || run(&fwd, &rx, cursor, checkpoint_every, &flag))
            .map_err(|e| SettingsError::File {
                path: "vigil-forward thread".into(),
                detail: e.to_string(),
            })?;
        Ok(Hub {
            tx,
            audit,
            thread: Some(thread),
        })
    }

    /// New audit entries: forward them soon. Never blocks.
    pub(super) fn wake_audit(&self) {
        self.audit.store(true, Ordering::Release);
        let _ = self.tx.try_send(Job::Wake);
    }

    /// Hand raw events over; `false` when the channel is full.
    pub(super) fn offer_events(&self, events: Vec<Event>) -> bool {
        self.tx.try_send(Job::Events(events)).is_ok()
    }

    /// Forward what the audit log has left, then end the thread.
    pub(super) fn stop(mut self) {
        let _ = self.tx.send(Job::Stop);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("forwarding thread panicked");
            }
        }
    }
}

fn run(
    fwd: &Forwarding,
    rx: &Receiver<Job>,
    mut cursor: AuditCursor,
    checkpoint_every: Duration,
    audit: &AtomicBool,
) {
    let mut next_checkpoint = Instant::now();
    loop {
        let wait = POLL.min(next_checkpoint.saturating_duration_since(Instant::now()));
        let stop = match rx.recv_timeout(wait) {
            Ok(Job::Stop) | Err(RecvTimeoutError::Disconnected) => true,
            Ok(Job::Events(events)) => {
                let records: Vec<Record> = events.into_iter().map(Record::Event).collect();
                fwd.submit(&records);
                false
            }
            Ok(Job::Wake) | Err(RecvTimeoutError::Timeout) => false,
        };
        if audit.swap(false, Ordering::AcqRel) || stop {
            if let Err(e) = forward_audit(fwd, &mut cursor) {
                audit.store(true, Ordering::Release);
                tracing::warn!(error = %e, "forwarding audit entries failed; retrying");
            }
        }
        if stop {
            return;
        }
        if Instant::now() >= next_checkpoint {
            next_checkpoint = Instant::now() + checkpoint_every;
            match fwd.db.latest_audit_checkpoint() {
                Ok(Some((_, note))) => fwd.submit_checkpoint(&note),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "reading the audit checkpoint failed"),
            }
        }
    }
}

/// Forward every audit entry after the cursor, a batch at a time, moving
/// the cursor after each batch is queued.
fn forward_audit(fwd: &Forwarding, cursor: &mut AuditCursor) -> Result<(), String> {
    loop {
        let mut records = Vec::new();
        let mut last = cursor.seq;
        while (records.len() as u64) < AUDIT_BATCH {
            let entry: Option<vigil_web_ui::store::AuditEntry> = fwd
                .db
                .record(Cf::Audit, &id_key(AUDIT, last + 1))
                .map_err(|e| e.to_string())?;
            let Some(e) = entry else { break };
            last = e.seq;
            records.push(Record::Audit(AuditEntry {
                actor: e.actor,
                time_ns: e.ts_ns,
                action: e.action,
                target: e.target,
                detail: e.detail,
                seq: e.seq,
            }));
        }
        if records.is_empty() {
            return Ok(());
        }
        fwd.submit(&records);
        cursor.save(last).map_err(|e| e.to_string())?;
    }
}

/// The last audit entry forwarded, fsync'd after each batch. A crash
/// between the queue write and the cursor write forwards a batch again:
/// each record carries the entry's own audit seq, so the SIEM sees it.
struct AuditCursor {
    path: PathBuf,
    seq: u64,
}

impl AuditCursor {
    fn open(fwd: &Forwarding) -> Result<AuditCursor, SettingsError> {
        let path = forward_dir(&fwd.data_dir)?.join(CURSOR_FILE);
        let bad = |detail: String| SettingsError::File {
            path: path.clone(),
            detail,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let seq = text
                    .trim()
                    .parse()
                    .map_err(|e| bad(format!("not a number: {e}")))?;
                Ok(AuditCursor {
                    path: path.clone(),
                    seq,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // First start: forward entries from now on, not the history.
                let seq = fwd
                    .db
                    .audit_frontier()
                    .map_err(|e| bad(e.to_string()))?
                    .size();
                let mut c = AuditCursor {
                    path: path.clone(),
                    seq,
                };
                c.save(seq).map_err(|e| bad(e.to_string()))?;
                Ok(c)
            }
            Err(e) => Err(bad(e.to_string())),
        }
    }

    fn save(&mut self, seq: u64) -> Result<(), crate::pki::PkiError> {
        write_private(Path::new(&self.path), format!("{seq}\n").as_bytes())?;
        self.seq = seq;
        Ok(())
    }
}
