//! The forwarding thread: queues what the store holds for the receivers
//! — the alert outbox ([`super::outbox`]) and each receiver's audit entries
//! ([`super::audit`]) — signs and forwards a fresh audit checkpoint on a
//! timer, and takes raw events from a bounded channel. Everything that
//! fsyncs a forwarding queue for these runs here, never on an async worker
//! and never on the pipeline's thread.

use super::audit::{self, AuditCursors};
use super::outbox::{self, OutboxEntry};
use super::settings::SettingsError;
use super::{lock, read, Forwarding};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vigil_forward::{AlertWithHosts, IncidentSummary, Record};
use vigil_proto::Event;

/// Batches of raw events waiting for the thread before offers are refused.
const EVENT_BATCHES: usize = 64;
/// Most outbox entries queued per write.
const OUTBOX_BATCH: usize = 256;
/// The store is looked at this often even without a wake-up (a lost
/// wake-up, a receiver added by a reload, a queue that drained).
const POLL: Duration = Duration::from_secs(1);

enum Job {
    Wake,
    Events(Vec<Event>),
    Stop,
}

/// Handle to the forwarding thread.
pub(super) struct Hub {
    tx: SyncSender<Job>,
    woken: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Hub {
    /// Start the thread; the audit cursors' directory is ready (and the
    /// legacy cursor read) before this returns.
    pub(super) fn spawn(
        fwd: Arc<Forwarding>,
        checkpoint_every: Duration,
    ) -> Result<Hub, SettingsError> {
        let cursors = AuditCursors::open(&fwd.data_dir)?;
        let (tx, rx) = sync_channel(EVENT_BATCHES);
        let woken = Arc::new(AtomicBool::new(true));
        let flag = woken.clone();
        let thread = std::thread::Builder::new()
            .name("vigil-forward".into())
            .spawn(move || run(&fwd, &rx, cursors, checkpoint_every, &flag))
            .map_err(|e| SettingsError::File {
                path: "vigil-forward thread".into(),
                detail: e.to_string(),
            })?;
        Ok(Hub {
            tx,
            woken,
            thread: Some(thread),
        })
    }

    /// An alert or audit entry was stored: queue it soon. Never blocks.
    pub(super) fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        let _ = self.tx.try_send(Job::Wake);
    }

    /// Hand raw events over; `false` when the channel is full.
    pub(super) fn offer_events(&self, events: Vec<Event>) -> bool {
        self.tx.try_send(Job::Events(events)).is_ok()
    }

    /// Queue what the store has left, then end the thread.
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
    mut cursors: AuditCursors,
    checkpoint_every: Duration,
    woken: &AtomicBool,
) {
    let mut next_checkpoint = Instant::now();
    let mut next_look = Instant::now();
    let mut more = false;
    loop {
        let wait = if more {
            Duration::ZERO
        } else {
            next_look
                .min(next_checkpoint)
                .saturating_duration_since(Instant::now())
        };
        let stop = match rx.recv_timeout(wait) {
            Ok(Job::Stop) | Err(RecvTimeoutError::Disconnected) => true,
            Ok(Job::Events(events)) => {
                let records: Vec<Record> = events.into_iter().map(Record::Event).collect();
                fwd.submit(&records);
                false
            }
            Ok(Job::Wake) | Err(RecvTimeoutError::Timeout) => false,
        };
        if stop || more || woken.swap(false, Ordering::AcqRel) || Instant::now() >= next_look {
            next_look = Instant::now() + POLL;
            more = forward_stored(fwd, &mut cursors);
        }
        if stop {
            return;
        }
        if Instant::now() >= next_checkpoint {
            next_checkpoint = Instant::now() + checkpoint_every;
            forward_checkpoint(fwd);
        }
    }
}

/// The outbox, then every receiver's audit entries; `true` when more is
/// waiting right away.
fn forward_stored(fwd: &Forwarding, cursors: &mut AuditCursors) -> bool {
    let alerts = forward_outbox(fwd).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "forwarding stored alerts failed; retrying");
        false
    });
    let audit = audit::forward(fwd, cursors).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "forwarding audit entries failed; retrying");
        false
    });
    alerts || audit
}

/// Queue one batch of outbox entries for the receivers and delete them.
/// While forwarding is configured but not running (a receiver's CA file
/// missing…) they wait; with no receivers at all they are dropped, as no
/// SIEM was meant to get them. `Ok(true)`: a full batch, more may wait.
fn forward_outbox(fwd: &Forwarding) -> Result<bool, String> {
    let pending = outbox::pending(&fwd.db, OUTBOX_BATCH).map_err(|e| e.to_string())?;
    if pending.is_empty() {
        return Ok(false);
    }
    let guard = read(&fwd.running);
    match guard.as_ref() {
        None if lock(&fwd.problem).is_some() => return Ok(false),
        None => {}
        Some(running) => {
            let records: Vec<Record> = pending
                .iter()
                .filter_map(|(revision, entry)| match entry {
                    Some(e) => Some(alert_record(e, *revision)),
                    None => {
                        tracing::error!(
                            revision,
                            "an alert outbox entry no longer decodes: not forwarded"
                        );
                        None
                    }
                })
                .collect();
            let outcome = running.forwarder.submit_batch(&records);
            fwd.raise_refusals(&outcome);
        }
    }
    drop(guard);
    let revisions: Vec<u64> = pending.iter().map(|(r, _)| *r).collect();
    outbox::remove(&fwd.db, &revisions).map_err(|e| e.to_string())?;
    Ok(pending.len() == OUTBOX_BATCH)
}

/// Sign a checkpoint of the log as it is now (the latest one when no
/// entry came since) and queue it for the receivers.
fn forward_checkpoint(fwd: &Forwarding) {
    let empty_log = fwd.db.audit_frontier().map_or(true, |f| f.size() == 0);
    if read(&fwd.running).is_none() || empty_log {
        return;
    }
    let now_ns = (fwd.clock)();
    match crate::audit_log::checkpoint_now(&fwd.db, &fwd.signer, now_ns) {
        Ok(note) => fwd.submit_checkpoint(&note),
        Err(e) => tracing::warn!(error = %e, "signing the audit checkpoint failed"),
    }
}

/// One outbox entry as a forwarding record; an incident's summary names
/// its `revision`, the stable number a SIEM deduplicates re-sends by.
fn alert_record(entry: &OutboxEntry, revision: u64) -> Record {
    let rec = &entry.alert;
    if !entry.incident {
        return Record::Alert(AlertWithHosts {
            alert: rec.clone(),
            host_names: entry.host_names.clone(),
        });
    }
    let mut summary = serde_json::to_value(rec).unwrap_or_default();
    if let Some(obj) = summary.as_object_mut() {
        obj.insert("host_names".into(), entry.host_names.clone().into());
        obj.insert("revision".into(), revision.into());
    }
    Record::Incident(IncidentSummary {
        id: rec.id,
        time_ns: rec.created_ns,
        severity: rec.severity,
        title: rec.title.clone(),
        summary,
    })
}
