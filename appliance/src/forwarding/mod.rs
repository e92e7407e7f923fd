//! SIEM forwarding in the appliance (issue #17): the receivers from
//! `DATA/forward.toml` and the console ([`settings`]) feed one
//! [`vigil_forward::Forwarder`], reloaded in place when an admin changes
//! them.
//!
//! What is forwarded, and from where — everything from the store, by the
//! forwarding thread ([`hub`]), so nothing stored is lost to a crash:
//! - alerts and incidents: the pipeline stores each one together with an
//!   outbox entry in one synced write ([`Forwarding::store_alert`],
//!   [`outbox`]); the thread queues the entries in order and then deletes
//!   them. Each changed incident revision is forwarded once, numbered.
//!   Suppressed alerts are not forwarded;
//! - audit entries: to each receiver from a cursor of its own
//!   (`DATA/forward/audit/NAME.cursor`, [`audit`]), starting at the log's
//!   first entry or at the time it was added (its `from` setting), woken
//!   by [`Forwarding::audit_appended`] so an audit append never waits on a
//!   forwarding fsync;
//! - the audit checkpoint: signed afresh when the log grew since the last
//!   one, at start and every `checkpoint_every_secs`;
//! - raw events (off by default): the events the pipeline scored are
//!   offered to the forwarding thread through a bounded channel; a full
//!   channel is counted (`vigil_forward_events_dropped_total`) and never
//!   blocks anything.
//!
//! Delivery is at least once: a crash between a queue write and the
//! outbox delete (or cursor write) queues those records again, with new
//! per-receiver seqs but the same alert id (and incident revision) or
//! audit seq, for the SIEM to drop. A record a receiver's queue refuses
//! (full) is logged and counted, and the console's receivers page shows
//! the alarm; audit entries wait for room instead (the log keeps them).

mod audit;
pub mod console;
mod hub;
mod outbox;
pub mod settings;

use crate::audit_log::AuditSigner;
use crate::core::Clock;
use crate::db::Db;
use crate::store::StoreError;
use settings::{FileConfig, SettingsError};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use vigil_forward::{
    Forwarder, ForwarderConfig, ReceiverConfig, ReceiverSnapshot, Record, SubmitOutcome, Timing,
};
use vigil_proto::query::AlertRecord;
use vigil_proto::{Event, HostId};

/// How long a stopping forwarder may keep sending what is queued.
const DRAIN_ON_STOP: Duration = Duration::from_secs(2);

/// The forwarder in force and where each receiver came from.
struct Running {
    forwarder: Forwarder,
    /// `(receiver, from the config file)`.
    receivers: Vec<(ReceiverConfig, bool)>,
}

/// Counters of forwarders replaced by a reload, so totals never go back.
#[derive(Debug, Default, Clone, Copy)]
struct Carried {
    sent: u64,
    failed_attempts: u64,
    refused: u64,
    write_errors: u64,
}

/// The appliance's SIEM forwarding: idle until [`Forwarding::start`].
pub struct Forwarding {
    data_dir: PathBuf,
    db: Db,
    /// Signs the audit checkpoints the receivers get.
    signer: Arc<AuditSigner>,
    clock: Clock,
    outbox: outbox::Outbox,
    hostname: String,
    running: RwLock<Option<Running>>,
    carried: Mutex<BTreeMap<String, Carried>>,
    /// Why forwarding is not running (shown on the console).
    problem: Mutex<Option<String>>,
    file: Mutex<FileConfig>,
    /// Serialises console edits and reloads.
    edit: Mutex<()>,
    hub: Mutex<Option<hub::Hub>>,
    raw_events: AtomicBool,
    /// Raw events left out because the forwarding thread's channel was full.
    events_dropped: AtomicU64,
    /// Submissions a receiver refused (queue full or disk error), in total.
    refusals: AtomicU64,
}

impl Forwarding {
    /// Idle forwarding over `data_dir` (the CLI's offline mode keeps it
    /// so); `signer` signs the checkpoints it forwards, at `clock`'s time.
    pub fn new(data_dir: PathBuf, db: Db, signer: Arc<AuditSigner>, clock: Clock) -> Forwarding {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "vigil".into());
        Forwarding {
            data_dir,
            db,
            signer,
            clock,
            outbox: outbox::Outbox::default(),
            hostname,
            running: RwLock::new(None),
            carried: Mutex::default(),
            problem: Mutex::default(),
            file: Mutex::default(),
            edit: Mutex::default(),
            hub: Mutex::default(),
            raw_events: AtomicBool::new(false),
            events_dropped: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        }
    }

    /// Read `forward.toml` (a malformed file fails the start: it is the
    /// operator's configuration), start the receivers and the forwarding
    /// thread. Blocking.
    pub fn start(self: &Arc<Self>) -> Result<(), SettingsError> {
        let file = settings::load_file(&self.data_dir)?;
        self.raw_events.store(file.raw_events, Ordering::Relaxed);
        let every = Duration::from_secs(file.checkpoint_every_secs);
        *lock(&self.file) = file;
        self.reload();
        let hub = hub::Hub::spawn(self.clone(), every)?;
        *lock(&self.hub) = Some(hub);
        Ok(())
    }

    /// Stop the forwarding thread and the senders (what is unsent stays
    /// queued on disk for the next start). Blocking.
    pub fn stop(&self) {
        let hub = lock(&self.hub).take();
        if let Some(hub) = hub {
            hub.stop();
        }
        let old = write(&self.running).take();
        if let Some(old) = old {
            self.carry(&old);
            old.forwarder.shutdown(DRAIN_ON_STOP);
        }
    }

    /// Start a forwarder for the receivers configured now, replacing the
    /// one in force. Blocking.
    pub fn reload(&self) {
        let _edit = lock(&self.edit);
        self.reload_locked();
    }

    fn reload_locked(&self) {
        let mut slot = write(&self.running);
        if let Some(old) = slot.take() {
            self.carry(&old);
            // The new senders open the same queues: the old ones stop first.
            old.forwarder.shutdown(Duration::ZERO);
        }
        let (started, problem) = match self.receivers_now() {
            Err(e) => (None, Some(e.to_string())),
            Ok(receivers) if receivers.is_empty() => (None, None),
            Ok(receivers) => match Forwarder::start(self.config(&receivers)) {
                Ok(forwarder) => (
                    Some(Running {
                        forwarder,
                        receivers,
                    }),
                    None,
                ),
                Err(e) => (None, Some(format!("forwarding stopped: {e}"))),
            },
        };
        if let Some(running) = &started {
            let receivers: Vec<ReceiverConfig> =
                running.receivers.iter().map(|(r, _)| r.clone()).collect();
            if let Err(e) = audit::begin(self, &receivers) {
                tracing::error!(error = %e, "audit forwarding positions not set");
            }
        }
        if let Some(p) = &problem {
            tracing::error!(problem = %p, "SIEM forwarding not running");
        }
        *slot = started;
        *lock(&self.problem) = problem;
    }

    /// The file's receivers, then the console's.
    fn receivers_now(&self) -> Result<Vec<(ReceiverConfig, bool)>, SettingsError> {
        let mut out: Vec<(ReceiverConfig, bool)> = lock(&self.file)
            .receivers
            .iter()
            .map(|r| (r.clone(), true))
            .collect();
        out.extend(
            settings::load_console(&self.data_dir)?
                .into_iter()
                .map(|r| (r, false)),
        );
        Ok(out)
    }

    fn config(&self, receivers: &[(ReceiverConfig, bool)]) -> ForwarderConfig {
        ForwarderConfig {
            queue_dir: self
                .data_dir
                .join(settings::FORWARD_DIR)
                .join(settings::QUEUE_DIR),
            hostname: self.hostname.clone(),
            product_version: env!("CARGO_PKG_VERSION").to_string(),
            receivers: receivers.iter().map(|(r, _)| r.clone()).collect(),
            timing: Timing::default(),
        }
    }

    fn carry(&self, old: &Running) {
        let mut carried = lock(&self.carried);
        for s in old.forwarder.snapshot(SystemTime::now()) {
            let c = carried.entry(s.name.clone()).or_default();
            c.sent += s.sent;
            c.failed_attempts += s.failed_attempts;
            c.refused += s.full_refusals;
            c.write_errors += s.write_errors;
        }
    }

    /// Queue `records` for every receiver that takes them; returns after
    /// the queues are fsync'd. Blocking: never call it on an async worker.
    pub fn submit(&self, records: &[Record]) {
        if records.is_empty() {
            return;
        }
        let guard = read(&self.running);
        let Some(running) = guard.as_ref() else {
            return;
        };
        let outcome: SubmitOutcome = running.forwarder.submit_batch(records);
        drop(guard);
        self.raise_refusals(&outcome);
    }

    /// Queue the audit log's signed checkpoint text. Blocking.
    fn submit_checkpoint(&self, note: &str) {
        let guard = read(&self.running);
        if let Some(running) = guard.as_ref() {
            let outcome = running.forwarder.submit_checkpoint(note);
            drop(guard);
            self.raise_refusals(&outcome);
        }
    }

    fn raise_refusals(&self, outcome: &SubmitOutcome) {
        for r in &outcome.refused {
            self.refusals.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                receiver = %r.receiver,
                records = r.records,
                reason = r.reason,
                "SIEM receiver refused records: they are not forwarded"
            );
        }
    }

    /// Store `rec` (`incident`: an incident) together with its outbox
    /// entry in one synced write, so it reaches the receivers even after a
    /// crash right after; `name` gives a host's name. Blocking (the
    /// pipeline's thread). Call [`Forwarding::alerts_stored`] after a batch.
    pub fn store_alert(
        &self,
        rec: &AlertRecord,
        incident: bool,
        name: &dyn Fn(HostId) -> Option<String>,
    ) -> Result<(), StoreError> {
        let entry = outbox::OutboxEntry {
            alert: rec.clone(),
            incident,
            host_names: rec
                .path
                .iter()
                .map(|h| name(*h).unwrap_or_default())
                .collect(),
        };
        self.outbox.store(&self.db, &entry).map(|_| ())
    }

    /// Alerts were stored: the forwarding thread queues them. Never blocks.
    pub fn alerts_stored(&self) {
        if let Some(hub) = lock(&self.hub).as_ref() {
            hub.wake();
        }
    }

    /// An audit entry was appended: the forwarding thread picks it up.
    /// Never blocks.
    pub fn audit_appended(&self) {
        if let Some(hub) = lock(&self.hub).as_ref() {
            hub.wake();
        }
    }

    /// Whether raw events are forwarded (`raw_events` in `forward.toml`).
    pub fn raw_events(&self) -> bool {
        self.raw_events.load(Ordering::Relaxed)
    }

    /// Offer stored events to the forwarding thread; a full channel counts
    /// them as dropped and returns at once.
    pub fn events_stored(&self, events: Vec<Event>) {
        if events.is_empty() || !self.raw_events() {
            return;
        }
        let n = events.len() as u64;
        let offered = lock(&self.hub)
            .as_ref()
            .is_some_and(|hub| hub.offer_events(events));
        if !offered {
            self.events_dropped.fetch_add(n, Ordering::Relaxed);
            tracing::warn!(
                events = n,
                "raw events not forwarded: forwarding thread busy"
            );
        }
    }

    /// Every receiver, where it came from, and its counters (totals
    /// include forwarders replaced by reloads).
    pub fn snapshot(&self) -> Vec<(ReceiverConfig, bool, ReceiverSnapshot)> {
        let guard = read(&self.running);
        let Some(running) = guard.as_ref() else {
            return Vec::new();
        };
        let carried = lock(&self.carried);
        running
            .forwarder
            .snapshot(SystemTime::now())
            .into_iter()
            .zip(&running.receivers)
            .map(|(mut s, (rc, from_file))| {
                let c = carried.get(&s.name).copied().unwrap_or_default();
                s.sent += c.sent;
                s.failed_attempts += c.failed_attempts;
                s.full_refusals += c.refused;
                s.write_errors += c.write_errors;
                (rc.clone(), *from_file, s)
            })
            .collect()
    }

    /// Why forwarding is not running, if it is not.
    pub fn problem(&self) -> Option<String> {
        lock(&self.problem).clone()
    }

    /// Prometheus text for `/metrics`.
    pub fn prometheus(&self) -> String {
        let snaps = self.snapshot();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for l in lines {
                let _ = writeln!(out, "{name}{l}");
            }
        };
        let label = |s: &ReceiverSnapshot| s.name.replace(['\\', '"', '\n'], "_");
        family(
            "vigil_forward_records_total",
            "counter",
            "Records per SIEM receiver: sent, failed (queue write errors), refused (queue full).",
            snaps
                .iter()
                .flat_map(|(_, _, s)| {
                    let r = label(s);
                    [
                        format!("{{receiver=\"{r}\",outcome=\"sent\"}} {}", s.sent),
                        format!("{{receiver=\"{r}\",outcome=\"failed\"}} {}", s.write_errors),
                        format!(
                            "{{receiver=\"{r}\",outcome=\"refused\"}} {}",
                            s.full_refusals
                        ),
                    ]
                })
                .collect(),
        );
        let gauge = |f: &dyn Fn(&ReceiverSnapshot) -> String| {
            snaps
                .iter()
                .map(|(_, _, s)| format!("{{receiver=\"{}\"}} {}", label(s), f(s)))
                .collect::<Vec<_>>()
        };
        let queued = gauge(&|s| s.pending.to_string());
        let oldest = gauge(&|s| {
            s.oldest_pending_age
                .map_or(0.0, |d| d.as_secs_f64())
                .to_string()
        });
        let attempts = gauge(&|s| s.failed_attempts.to_string());
        let full = gauge(&|s| u8::from(s.full).to_string());
        family(
            "vigil_forward_queue_records",
            "gauge",
            "Records waiting in a SIEM receiver's queue.",
            queued,
        );
        family(
            "vigil_forward_oldest_pending_seconds",
            "gauge",
            "Age of the oldest record waiting for a SIEM receiver (0: none).",
            oldest,
        );
        family(
            "vigil_forward_send_failures_total",
            "counter",
            "Failed connection or send attempts per SIEM receiver.",
            attempts,
        );
        family(
            "vigil_forward_queue_full",
            "gauge",
            "1 while a SIEM receiver's queue refuses records (the alarm).",
            full,
        );
        let dropped = self.events_dropped.load(Ordering::Relaxed);
        family(
            "vigil_forward_events_dropped_total",
            "counter",
            "Raw events not forwarded because the forwarding thread was busy.",
            vec![format!(" {dropped}")],
        );
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}
