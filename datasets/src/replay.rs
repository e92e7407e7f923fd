//! Replay: stream a data set into a running appliance through the real
//! sensor uplink (enrollment with a one-time token and a pinned CA, mTLS
//! QUIC, durable spool, batches, acks), one enrolled sensor identity per
//! data-set host, paced by the events' own timestamps.
//!
//! The path of one replayed event: the source iterator (on its own thread:
//! adapters read files) → the dispatcher (paces by `ts / speedup`, waits
//! while the host has too many unacknowledged events) → that host's
//! [`vigil_sensor::spool::Spool`] (gets the identity's host id and the next
//! seq, on disk) → that host's [`vigil_sensor::uplink::Uplink`] (the same
//! code a real sensor runs; it deletes records only when acknowledged).
//! Each uplink's `Hello` names the data-set host and its addresses, so the
//! appliance's registry and detector resolve peers to the replayed hosts.
//!
//! Identities live in `STATE/hosts/<data-set host id>/` and are reused on a
//! re-run (no token use, same appliance host); the spool continues its seq,
//! so a re-run stores the data set again as new events.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::BufRead;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::{mpsc, watch, Notify};
use vigil_proto::{Command, CommandResult, Event, HostId, SensorHealth};
use vigil_sensor::enroll::{EnrollError, EnrollParams, Identity};
use vigil_sensor::spool::{Spool, SpoolError, SpoolOptions};
use vigil_sensor::tls::{self, TlsError};
use vigil_sensor::uplink::{CommandFn, HealthFn, Uplink, UplinkSettings, UplinkStatus};

/// Items read from the source per hand-over to the dispatcher.
const CHUNK: usize = 1024;
/// Enrollments run at once.
const ENROLL_PARALLEL: usize = 16;

/// A data-set host: its id in the data set, and the name and addresses its
/// replayed sensor reports in its `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayHost {
    /// Host id inside the data set (events carry it; it keys the state dir).
    pub id: HostId,
    /// Name reported to the appliance.
    pub name: String,
    /// Addresses reported to the appliance (so peers resolve to this host).
    pub addrs: Vec<IpAddr>,
}

/// What a replay source yields: a host (before its first event, so peers
/// resolve from the start), or an event carrying the data-set host id.
/// Events must come in time order (ties and small inversions are fine).
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayItem {
    /// A host to enroll (and name) before its events.
    Host(ReplayHost),
    /// One event; `header.host` is the data-set id, `header.seq` is ignored.
    Event(Event),
}

/// Which timestamps the replayed events carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeMode {
    /// The data set's own timestamps (e.g. January 2024 for the generator,
    /// 1970 for LANL's relative seconds). A wall-clock appliance's retention
    /// deletes data older than its bound, and its detector ages out chains
    /// between rounds, so this is for appliances on a matching clock.
    Original,
    /// Shifted so the first event is stamped with the replay's start time;
    /// the data set's own spacing is kept (at a speed-up above 1 events are
    /// stamped ahead of the wall clock).
    Shift,
}

/// One progress sample (the dispatcher's view, every `progress_every`).
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Since the replay started.
    pub elapsed: Duration,
    /// Events read from the source.
    pub read: u64,
    /// Events handed to an uplink in a batch at least once.
    pub sent: u64,
    /// Events the appliance acknowledged (durably stored).
    pub acked: u64,
    /// Sent per second over the last interval.
    pub sent_per_s: f64,
    /// Acknowledged per second over the last interval.
    pub acked_per_s: f64,
    /// Hosts with a running uplink.
    pub hosts: usize,
    /// Original timestamp of the newest event read (ns).
    pub data_ts_ns: u64,
}

/// Called with each progress sample.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Replay settings.
#[derive(Clone)]
pub struct ReplayOptions {
    /// Appliance `HOST:PORT` (QUIC).
    pub appliance: String,
    /// Enrollment token with at least one use per host not yet enrolled.
    pub token: String,
    /// SHA-256 of the appliance CA (hex, ':' allowed).
    pub ca_sha256: String,
    /// Identities and spools, one folder per data-set host.
    pub state_dir: PathBuf,
    /// Data-set seconds per wall second; `None`: as fast as acks allow.
    pub speedup: Option<f64>,
    /// Timestamps of the replayed events.
    pub time: TimeMode,
    /// Most unacknowledged events per host before the dispatcher waits.
    pub window_per_host: u64,
    /// Local batch age trigger (the appliance's `Welcome` may override it).
    pub batch_max: Duration,
    /// How long to wait for a new host's uplink to be welcomed before its
    /// events are spooled anyway.
    pub connect_wait: Duration,
    /// Give up when no acknowledgement arrives for this long.
    pub stall_timeout: Duration,
    /// Progress sample interval.
    pub progress_every: Duration,
    /// Called with each progress sample.
    pub progress: Option<ProgressFn>,
}

impl ReplayOptions {
    /// Defaults: shifted time, as fast as acks allow, 20 000 events per
    /// host in flight, progress every second.
    pub fn new(
        appliance: impl Into<String>,
        token: impl Into<String>,
        ca_sha256: impl Into<String>,
        state_dir: impl Into<PathBuf>,
    ) -> Self {
        ReplayOptions {
            appliance: appliance.into(),
            token: token.into(),
            ca_sha256: ca_sha256.into(),
            state_dir: state_dir.into(),
            speedup: None,
            time: TimeMode::Shift,
            window_per_host: 20_000,
            batch_max: Duration::from_millis(200),
            connect_wait: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(60),
            progress_every: Duration::from_secs(1),
            progress: None,
        }
    }
}

/// One replayed host in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayedHost {
    /// The data-set host.
    pub dataset: ReplayHost,
    /// The host id the appliance gave its identity.
    pub host: HostId,
    /// The identity was already in the state dir.
    pub reused: bool,
    /// Events of this host spooled in this run.
    pub events: u64,
    /// First seq this run used (events got `first_seq..first_seq + events`).
    pub first_seq: u64,
}

/// Totals of a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayReport {
    /// Events read from the source.
    pub events_read: u64,
    /// Events sent to the appliance at least once.
    pub events_sent: u64,
    /// Events the appliance acknowledged.
    pub events_acked: u64,
    /// Hosts by data-set id.
    pub hosts: BTreeMap<HostId, ReplayedHost>,
    /// Wall time of the replay (enrollment included).
    pub elapsed: Duration,
    /// Wall time from the first event spooled to the last one acknowledged.
    pub streaming: Duration,
}

impl ReplayReport {
    /// Acknowledged events per second of streaming.
    pub fn acked_per_s(&self) -> f64 {
        self.events_acked as f64 / self.streaming.as_secs_f64().max(1e-9)
    }
}

/// Why a replay stopped.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// The CA fingerprint is malformed.
    #[error("--ca-sha256: {0}")]
    Fingerprint(#[from] TlsError),
    /// Enrolling a data-set host failed.
    #[error("enrolling data-set host {name}: {source}")]
    Enroll {
        /// Data-set host name.
        name: String,
        /// Why.
        source: EnrollError,
    },
    /// A stored identity belongs to another appliance.
    #[error(
        "{dir}: this identity was enrolled with another appliance CA; use another --state dir"
    )]
    OtherAppliance {
        /// The identity folder.
        dir: PathBuf,
    },
    /// A spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The state dir could not be prepared.
    #[error("state dir {path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The source thread panicked.
    #[error("the data-set reader failed: {0}")]
    Source(String),
}

/// A running replayed host.
struct Slot {
    dataset: ReplayHost,
    host: HostId,
    reused: bool,
    spool: Arc<Mutex<Spool>>,
    appended: Arc<Notify>,
    status: Arc<UplinkStatus>,
    /// Highest seq spooled before this run.
    base: u64,
    /// Events spooled this run (shared with the progress task).
    events: Arc<AtomicU64>,
    /// Highest "sent" count seen (the spool cursor rewinds on reconnect).
    sent_seen: Arc<AtomicU64>,
    touched: bool,
}

impl Slot {
    /// (sent, acked) this run.
    fn counts(spool: &Mutex<Spool>, base: u64, events: u64, sent_seen: &AtomicU64) -> (u64, u64) {
        let sp = spool.lock().expect("spool lock");
        let last = sp.next_seq() - 1;
        let acked = last.saturating_sub(sp.unacked_len()).saturating_sub(base);
        let sent = last.saturating_sub(sp.unsent_len()).saturating_sub(base);
        drop(sp);
        let sent = sent_seen.fetch_max(sent, Ordering::Relaxed).max(sent);
        (sent.min(events).max(acked.min(events)), acked.min(events))
    }

    fn sent_acked(&self) -> (u64, u64) {
        Slot::counts(
            &self.spool,
            self.base,
            self.events.load(Ordering::Relaxed),
            &self.sent_seen,
        )
    }
}

/// What the progress task reads.
#[derive(Clone)]
struct Shared {
    slots: Arc<Mutex<Vec<SlotView>>>,
    read: Arc<AtomicU64>,
    data_ts: Arc<AtomicU64>,
}

#[derive(Clone)]
struct SlotView {
    spool: Arc<Mutex<Spool>>,
    base: u64,
    events: Arc<AtomicU64>,
    sent_seen: Arc<AtomicU64>,
}

impl Shared {
    fn totals(&self) -> (u64, u64, usize) {
        let slots = self.slots.lock().expect("slots lock").clone();
        let (mut sent, mut acked) = (0, 0);
        for s in &slots {
            let (a, b) = Slot::counts(
                &s.spool,
                s.base,
                s.events.load(Ordering::Relaxed),
                &s.sent_seen,
            );
            sent += a;
            acked += b;
        }
        (sent, acked, slots.len())
    }
}

fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The identity in `params.state_dir`, or a new one from the token.
async fn load_or_enroll(
    params: EnrollParams,
    pin_hex: String,
    name: String,
) -> Result<(Identity, bool), ReplayError> {
    match Identity::load(&params.state_dir) {
        Ok(id) if tls::sha256_hex(&id.ca_der) == pin_hex => Ok((id, true)),
        Ok(_) => Err(ReplayError::OtherAppliance {
            dir: params.state_dir,
        }),
        Err(EnrollError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let id = vigil_sensor::enroll(&params)
                .await
                .map_err(|source| ReplayError::Enroll { name, source })?;
            Ok((id, false))
        }
        Err(source) => Err(ReplayError::Enroll { name, source }),
    }
}

struct Dispatcher {
    opts: ReplayOptions,
    pin_hex: String,
    slots: Vec<Slot>,
    by_id: HashMap<HostId, usize>,
    /// Slots started but not yet confirmed welcomed.
    connecting: Vec<usize>,
    shutdown: watch::Receiver<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    shared: Shared,
}

impl Dispatcher {
    /// Enroll (or load) and start the uplink of a data-set host.
    async fn declare(&mut self, h: ReplayHost) -> Result<usize, ReplayError> {
        let id = h.id;
        self.declare_many(vec![h]).await?;
        Ok(self.by_id[&id])
    }

    /// Enroll (or load) hosts, [`ENROLL_PARALLEL`] at a time, and start
    /// their uplinks in the given order.
    async fn declare_many(&mut self, hosts: Vec<ReplayHost>) -> Result<(), ReplayError> {
        let mut seen = std::collections::HashSet::new();
        let hosts: Vec<ReplayHost> = hosts
            .into_iter()
            .filter(|h| !self.by_id.contains_key(&h.id) && seen.insert(h.id))
            .collect();
        for chunk in hosts.chunks(ENROLL_PARALLEL) {
            let mut set = tokio::task::JoinSet::new();
            for (k, h) in chunk.iter().enumerate() {
                let dir = self.opts.state_dir.join("hosts").join(h.id.to_string());
                let params = EnrollParams {
                    appliance: self.opts.appliance.clone(),
                    token: self.opts.token.clone(),
                    ca_sha256: self.opts.ca_sha256.clone(),
                    state_dir: dir,
                };
                let (pin, name) = (self.pin_hex.clone(), h.name.clone());
                set.spawn(async move { (k, load_or_enroll(params, pin, name).await) });
            }
            let mut got: Vec<Option<(Identity, bool)>> = vec![None; chunk.len()];
            let mut first_err = None;
            while let Some(joined) = set.join_next().await {
                let (k, r) =
                    joined.map_err(|e| ReplayError::Source(format!("enroll task: {e}")))?;
                match r {
                    Ok(v) => got[k] = Some(v),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
            for (h, g) in chunk.iter().zip(got) {
                let (identity, reused) = g.expect("every task answered");
                self.start(h.clone(), identity, reused)?;
            }
        }
        Ok(())
    }

    /// Open the host's spool and start its uplink.
    fn start(
        &mut self,
        h: ReplayHost,
        identity: Identity,
        reused: bool,
    ) -> Result<usize, ReplayError> {
        let dir = self.opts.state_dir.join("hosts").join(h.id.to_string());
        let spool = Spool::open(
            &dir.join("spool"),
            identity.host,
            SpoolOptions {
                max_bytes: 8 << 30,
                max_age_ns: u64::MAX,
                ..SpoolOptions::default()
            },
        )?;
        let base = spool.next_seq() - 1;
        let spool = Arc::new(Mutex::new(spool));
        let appended = Arc::new(Notify::new());
        let status = Arc::new(UplinkStatus::default());
        let events = Arc::new(AtomicU64::new(0));
        let sent_seen = Arc::new(AtomicU64::new(0));
        let health: HealthFn = {
            let spool = spool.clone();
            Arc::new(move || SensorHealth {
                cpu_pct: 0.0,
                rss_bytes: 0,
                events_per_s: 0.0,
                spool_bytes: spool.lock().expect("spool lock").bytes(),
                dropped_total: 0,
                aggregated_total: 0,
                collectors: Vec::new(),
            })
        };
        let commands: CommandFn = Arc::new(|cmd: Command| CommandResult {
            id: cmd.id,
            ok: false,
            message: "replayed data-set host: no response executor".into(),
            data: Vec::new(),
        });
        let uplink = Uplink {
            settings: UplinkSettings {
                appliance: self.opts.appliance.clone(),
                batch_max_events: vigil_proto::limits::MAX_BATCH_EVENTS.min(2_000),
                batch_max: self.opts.batch_max,
                heartbeat: Duration::from_secs(10),
                backoff_min: Duration::from_millis(200),
                backoff_max: Duration::from_secs(5),
                connect_timeout: Duration::from_secs(5),
                netns: None,
                hello_as: Some((h.name.clone(), h.addrs.clone())),
            },
            identity: identity.clone(),
            spool: spool.clone(),
            appended: appended.clone(),
            health,
            commands,
            status: status.clone(),
            budget_pct_bits: Arc::new(AtomicU32::new(1.0f32.to_bits())),
        };
        self.tasks
            .push(tokio::spawn(uplink.run(self.shutdown.clone())));
        tracing::debug!(name = %h.name, host = %identity.host, reused, "replay: host started");
        self.shared
            .slots
            .lock()
            .expect("slots lock")
            .push(SlotView {
                spool: spool.clone(),
                base,
                events: events.clone(),
                sent_seen: sent_seen.clone(),
            });
        let i = self.slots.len();
        self.by_id.insert(h.id, i);
        self.slots.push(Slot {
            dataset: h,
            host: identity.host,
            reused,
            spool,
            appended,
            status,
            base,
            events,
            sent_seen,
            touched: false,
        });
        self.connecting.push(i);
        Ok(i)
    }

    /// Wait (bounded) until every newly started uplink has been welcomed,
    /// so the appliance knows every declared name before events arrive.
    async fn await_connected(&mut self) {
        if self.connecting.is_empty() {
            return;
        }
        let deadline = Instant::now() + self.opts.connect_wait;
        loop {
            self.connecting
                .retain(|&i| !self.slots[i].status.connected.load(Ordering::SeqCst));
            if self.connecting.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                let names: Vec<&str> = self
                    .connecting
                    .iter()
                    .take(5)
                    .map(|&i| self.slots[i].dataset.name.as_str())
                    .collect();
                tracing::warn!(hosts = self.connecting.len(), first = ?names, appliance = %self.opts.appliance,
                    "replay: uplinks not welcomed yet; spooling their events anyway");
                self.connecting.clear();
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn flush_notify(&mut self) {
        for s in &mut self.slots {
            if s.touched {
                s.touched = false;
                s.appended.notify_one();
            }
        }
    }

    fn totals(&self) -> (u64, u64) {
        self.slots.iter().fold((0, 0), |(a, b), s| {
            let (x, y) = s.sent_acked();
            (a + x, b + y)
        })
    }
}

/// Replay `source` into the appliance of `opts`; see the module docs.
pub async fn replay<I>(source: I, opts: ReplayOptions) -> Result<ReplayReport, ReplayError>
where
    I: IntoIterator<Item = ReplayItem> + Send + 'static,
{
    let started = Instant::now();
    let pin_hex = hex_lower(&tls::parse_fingerprint(&opts.ca_sha256)?);
    let hosts_dir = opts.state_dir.join("hosts");
    std::fs::create_dir_all(&hosts_dir).map_err(|source| ReplayError::Io {
        path: hosts_dir.clone(),
        source,
    })?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shared = Shared {
        slots: Arc::new(Mutex::new(Vec::new())),
        read: Arc::new(AtomicU64::new(0)),
        data_ts: Arc::new(AtomicU64::new(0)),
    };
    let mut d = Dispatcher {
        opts: opts.clone(),
        pin_hex,
        slots: Vec::new(),
        by_id: HashMap::new(),
        connecting: Vec::new(),
        shutdown: shutdown_rx,
        tasks: Vec::new(),
        shared: shared.clone(),
    };

    // The source runs on its own thread: adapters read and parse files.
    let (tx, mut rx) = mpsc::channel::<Vec<ReplayItem>>(8);
    let reader = std::thread::Builder::new()
        .name("replay-source".into())
        .spawn(move || {
            let mut buf = Vec::with_capacity(CHUNK);
            for item in source {
                buf.push(item);
                if buf.len() == CHUNK
                    && tx
                        .blocking_send(std::mem::replace(&mut buf, Vec::with_capacity(CHUNK)))
                        .is_err()
                {
                    return;
                }
            }
            if !buf.is_empty() {
                let _ = tx.blocking_send(buf);
            }
        })
        .map_err(|source| ReplayError::Io {
            path: opts.state_dir.clone(),
            source,
        })?;

    let progress_task = opts.progress.clone().map(|f| {
        let shared = shared.clone();
        let every = opts.progress_every;
        let mut stop = d.shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            let (mut last_sent, mut last_acked, mut last_t) = (0u64, 0u64, Instant::now());
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                let (sent, acked, hosts) = shared.totals();
                let dt = last_t.elapsed().as_secs_f64().max(1e-9);
                f(&Progress {
                    elapsed: started.elapsed(),
                    read: shared.read.load(Ordering::Relaxed),
                    sent,
                    acked,
                    sent_per_s: sent.saturating_sub(last_sent) as f64 / dt,
                    acked_per_s: acked.saturating_sub(last_acked) as f64 / dt,
                    hosts,
                    data_ts_ns: shared.data_ts.load(Ordering::Relaxed),
                });
                (last_sent, last_acked, last_t) = (sent, acked, Instant::now());
            }
        })
    });

    let result = dispatch(&mut d, &mut rx, &shared).await;
    drop(rx);
    let (read, stream_start) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = shutdown_tx.send(true);
            for t in d.tasks.drain(..) {
                let _ = t.await;
            }
            let _ = reader.join();
            return Err(e);
        }
    };

    // Drain: wait until every spooled event is acknowledged (or acks stall).
    d.flush_notify();
    let mut last_acked = u64::MAX;
    let mut last_progress = Instant::now();
    let total: u64 = d
        .slots
        .iter()
        .map(|s| s.events.load(Ordering::Relaxed))
        .sum();
    loop {
        let (_, acked) = d.totals();
        if acked >= total {
            break;
        }
        if acked != last_acked {
            last_acked = acked;
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= opts.stall_timeout {
            tracing::warn!(
                acked,
                total,
                "replay: no acknowledgement for {:?}; stopping",
                opts.stall_timeout
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let streaming = stream_start.map(|t| t.elapsed()).unwrap_or_default();
    let (sent, acked) = d.totals();
    let _ = shutdown_tx.send(true);
    for t in d.tasks.drain(..) {
        let _ = t.await;
    }
    if let Some(p) = progress_task {
        let _ = p.await;
    }
    for s in &d.slots {
        if let Err(e) = s.spool.lock().expect("spool lock").sync() {
            tracing::warn!(error = %e, host = %s.dataset.name, "replay: spool sync failed");
        }
    }
    reader
        .join()
        .map_err(|_| ReplayError::Source("reader thread panicked".into()))?;
    let hosts = d
        .slots
        .iter()
        .map(|s| {
            (
                s.dataset.id,
                ReplayedHost {
                    dataset: s.dataset.clone(),
                    host: s.host,
                    reused: s.reused,
                    events: s.events.load(Ordering::Relaxed),
                    first_seq: s.base + 1,
                },
            )
        })
        .collect();
    Ok(ReplayReport {
        events_read: read,
        events_sent: sent,
        events_acked: acked,
        hosts,
        elapsed: started.elapsed(),
        streaming,
    })
}

/// The dispatcher loop: returns events read and when streaming started.
async fn dispatch(
    d: &mut Dispatcher,
    rx: &mut mpsc::Receiver<Vec<ReplayItem>>,
    shared: &Shared,
) -> Result<(u64, Option<Instant>), ReplayError> {
    // (first original ts, its instant, its wall-clock ns)
    let mut anchor: Option<(u64, Instant, u64)> = None;
    let mut read = 0u64;
    let window = d.opts.window_per_host.max(1);
    let mut hosts: Vec<ReplayHost> = Vec::new();
    while let Some(chunk) = rx.recv().await {
        for item in chunk {
            let ev = match item {
                ReplayItem::Host(h) => {
                    hosts.push(h);
                    continue;
                }
                ReplayItem::Event(ev) => ev,
            };
            if !hosts.is_empty() {
                d.declare_many(std::mem::take(&mut hosts)).await?;
            }
            read += 1;
            shared.read.store(read, Ordering::Relaxed);
            shared.data_ts.store(ev.header.ts_ns, Ordering::Relaxed);
            let i = match d.by_id.get(&ev.header.host) {
                Some(&i) => i,
                None => {
                    let id = ev.header.host;
                    d.declare(ReplayHost {
                        id,
                        name: format!("host-{id}"),
                        addrs: Vec::new(),
                    })
                    .await?
                }
            };
            if !d.connecting.is_empty() {
                d.flush_notify();
                d.await_connected().await;
            }
            let (t0, i0, w0) =
                *anchor.get_or_insert_with(|| (ev.header.ts_ns, Instant::now(), wall_ns()));
            if let Some(s) = d.opts.speedup.filter(|s| s.is_finite() && *s > 0.0) {
                let ahead_s = ev.header.ts_ns.saturating_sub(t0) as f64 / 1e9 / s;
                let due = i0 + Duration::from_secs_f64(ahead_s.min(1e9));
                if due > Instant::now() + Duration::from_micros(500) {
                    d.flush_notify();
                    tokio::time::sleep_until(due.into()).await;
                }
            }
            // Backpressure: at most `window` unacknowledged events per host.
            let mut waited = false;
            loop {
                let s = &d.slots[i];
                let events = s.events.load(Ordering::Relaxed);
                let (_, acked) = s.sent_acked();
                if events.saturating_sub(acked) < window {
                    break;
                }
                if !waited {
                    d.flush_notify();
                    waited = true;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let ts = match d.opts.time {
                TimeMode::Original => ev.header.ts_ns,
                TimeMode::Shift => (i128::from(ev.header.ts_ns) - i128::from(t0) + i128::from(w0))
                    .clamp(0, i128::from(u64::MAX)) as u64,
            };
            let s = &mut d.slots[i];
            s.spool.lock().expect("spool lock").append(ts, ev.payload)?;
            s.events.fetch_add(1, Ordering::Relaxed);
            s.touched = true;
        }
        d.flush_notify();
    }
    d.declare_many(hosts).await?;
    d.await_connected().await;
    Ok((read, anchor.map(|a| a.1)))
}

// ---------------------------------------------------------------------------
// Sources

/// Any source behind one type (the iterator is made on the replay's reader
/// thread, so it need not be `Send` itself).
pub struct BoxedSource(Box<dyn FnOnce() -> Box<dyn Iterator<Item = ReplayItem>> + Send>);

impl BoxedSource {
    /// Box `source`.
    pub fn new<S>(source: S) -> Self
    where
        S: IntoIterator<Item = ReplayItem> + Send + 'static,
        S::IntoIter: 'static,
    {
        BoxedSource(Box::new(move || Box::new(source.into_iter())))
    }
}

impl IntoIterator for BoxedSource {
    type Item = ReplayItem;
    type IntoIter = Box<dyn Iterator<Item = ReplayItem>>;

    fn into_iter(self) -> Self::IntoIter {
        (self.0)()
    }
}

/// The synthetic enterprise as a replay source: every host that will ever
/// exist declared first (name and address; hosts that join later are
/// reached by admins and scanners before their first day), then the events
/// day by day. Labels are not part of the stream (see [`crate::synth::Generator::campaigns`]).
pub fn synth_source(cfg: crate::synth::SynthConfig) -> impl Iterator<Item = ReplayItem> + Send {
    let mut gen = crate::synth::Generator::new(cfg);
    let days = gen.config().days;
    let mut day = 0u32;
    let mut queue: VecDeque<ReplayItem> = VecDeque::new();
    std::iter::from_fn(move || loop {
        if let Some(item) = queue.pop_front() {
            return Some(item);
        }
        if day >= days {
            return None;
        }
        if day == 0 {
            queue.extend(gen.hosts().iter().map(|h| {
                ReplayItem::Host(ReplayHost {
                    id: h.id,
                    name: h.name.clone(),
                    addrs: vec![h.addr],
                })
            }));
        }
        queue.extend(
            gen.day(day)
                .into_iter()
                .map(|le| ReplayItem::Event(le.event)),
        );
        day += 1;
    })
}

/// LANL 2015 (`auth.txt[.gz]`, optional `proc.txt[.gz]` and
/// `flows.txt[.gz]`, merged in time order) as a replay source. Every
/// computer named in a line is declared before that line's event, with its
/// LANL name and the stable synthetic address its flows use
/// ([`crate::lanl::host_addr`]); `redteam.txt` is not read. Timestamps are
/// LANL's seconds since its own epoch, so replay it with [`TimeMode::Shift`].
/// The files are opened on the replay's reader thread; a read error there
/// ends the stream (logged).
#[derive(Debug, Clone)]
pub struct LanlSource {
    dir: PathBuf,
}

impl LanlSource {
    /// Checks that `DIR/auth.txt[.gz]` exists.
    pub fn new(dir: &Path) -> Result<Self, crate::lanl::LanlError> {
        if crate::lanl::find(dir, "auth.txt").is_none() {
            return Err(crate::lanl::LanlError::Io {
                path: dir.join("auth.txt"),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "auth.txt or auth.txt.gz required",
                ),
            });
        }
        Ok(LanlSource {
            dir: dir.to_path_buf(),
        })
    }
}

impl IntoIterator for LanlSource {
    type Item = ReplayItem;
    type IntoIter = LanlIter;

    fn into_iter(self) -> LanlIter {
        use crate::lanl::{find, open_lines, SideKind};
        let open = |name: &str| -> Option<Box<dyn BufRead>> {
            let p = find(&self.dir, name)?;
            open_lines(&p)
                .map_err(|e| tracing::warn!(error = %e, "replay: cannot open LANL {name}"))
                .ok()
        };
        let mut sides = Vec::new();
        for (name, kind) in [("proc.txt", SideKind::Proc), ("flows.txt", SideKind::Flows)] {
            if let Some(lines) = open(name) {
                sides.push(Side {
                    kind,
                    lines,
                    peeked: None,
                    buf: String::new(),
                    done: false,
                });
            }
        }
        LanlIter {
            auth: open("auth.txt"),
            sides,
            seq: crate::lanl::Sequencer::default(),
            known: std::collections::HashSet::new(),
            queue: VecDeque::new(),
            line: String::new(),
        }
    }
}

/// One LANL side file, one parsed line ahead: (time, computer names, event).
struct Side {
    kind: crate::lanl::SideKind,
    lines: Box<dyn BufRead>,
    peeked: Option<(u64, Vec<String>, Event)>,
    buf: String,
    done: bool,
}

impl Side {
    fn peek(&mut self, seq: &mut crate::lanl::Sequencer) -> Option<u64> {
        while self.peeked.is_none() && !self.done {
            self.buf.clear();
            match self.lines.read_line(&mut self.buf) {
                Ok(0) | Err(_) => self.done = true,
                Ok(_) => {
                    if let Some((t, ev)) = crate::lanl::side_event(self.kind, &self.buf, seq) {
                        let f: Vec<&str> = self.buf.trim_end().split(',').collect();
                        let names = match self.kind {
                            crate::lanl::SideKind::Proc => vec![f[2].to_string()],
                            crate::lanl::SideKind::Flows => {
                                vec![f[2].to_string(), f[4].to_string()]
                            }
                        };
                        self.peeked = Some((t, names, ev));
                    }
                }
            }
        }
        self.peeked.as_ref().map(|p| p.0)
    }
}

/// Iterator of [`LanlSource`].
pub struct LanlIter {
    auth: Option<Box<dyn BufRead>>,
    sides: Vec<Side>,
    seq: crate::lanl::Sequencer,
    known: std::collections::HashSet<HostId>,
    queue: VecDeque<ReplayItem>,
    line: String,
}

impl LanlIter {
    fn declare(&mut self, name: &str) {
        if name.is_empty() || name == "?" {
            return;
        }
        let id = crate::lanl::host_id(name);
        if self.known.insert(id) {
            self.queue.push_back(ReplayItem::Host(ReplayHost {
                id,
                name: name.to_string(),
                addrs: vec![crate::lanl::host_addr(name)],
            }));
        }
    }

    fn push_side(&mut self, k: usize) {
        if let Some((_, names, ev)) = self.sides[k].peeked.take() {
            for n in &names {
                self.declare(n);
            }
            self.queue.push_back(ReplayItem::Event(ev));
        }
    }
}

impl Iterator for LanlIter {
    type Item = ReplayItem;

    fn next(&mut self) -> Option<ReplayItem> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(item);
            }
            self.line.clear();
            let read = match self.auth.as_mut() {
                Some(a) => a.read_line(&mut self.line),
                None => Ok(0),
            };
            match read {
                Ok(0) | Err(_) => {
                    if let Err(e) = read {
                        tracing::warn!(error = %e, "replay: LANL auth read failed; stopping");
                        self.auth = None;
                        return None;
                    }
                    self.auth = None;
                    // Auth done: the side files' rest, in time order.
                    let mut best: Option<(u64, usize)> = None;
                    for k in 0..self.sides.len() {
                        if let Some(t) = self.sides[k].peek(&mut self.seq) {
                            if best.is_none_or(|(bt, _)| t < bt) {
                                best = Some((t, k));
                            }
                        }
                    }
                    let (_, k) = best?;
                    self.push_side(k);
                }
                Ok(_) => {
                    let Some(r) = crate::lanl::AuthRecord::parse(&self.line) else {
                        continue;
                    };
                    for k in 0..self.sides.len() {
                        while self.sides[k]
                            .peek(&mut self.seq)
                            .is_some_and(|t| t <= r.time)
                        {
                            self.push_side(k);
                        }
                    }
                    self.declare(&r.src);
                    self.declare(&r.dst);
                    let ev = crate::lanl::auth_event(&r, &mut self.seq);
                    self.queue.push_back(ReplayItem::Event(ev));
                }
            }
        }
    }
}

/// OTRF Security-Datasets captures (`.zip` of JSON lines) or `.evtx` files
/// as a replay source, read now. Each capture's hosts are declared first
/// (full name when a record gives one, addresses the records prove, as
/// `vigil eval otrf` registers them), then its events. Captures are laid
/// end to end: each one after the first is shifted to start a minute after
/// the previous one ended, so pacing never waits for the years between
/// recordings.
pub fn otrf_source(files: &[PathBuf]) -> Result<Vec<ReplayItem>, crate::otrf::CaptureError> {
    use crate::eval::otrf::host_id;
    use crate::windows::{own_addrs, payload};
    let mut out = Vec::new();
    let mut declared: HashMap<HostId, usize> = HashMap::new();
    let mut end: Option<u64> = None;
    for f in files {
        let is_evtx = f
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("evtx"));
        let records = if is_evtx {
            crate::evtx_file::read_evtx(f)?
        } else {
            crate::otrf::read_capture(f)?
        };
        let Some(first) = records.first().map(|r| r.ts_ns) else {
            continue;
        };
        let shift: i128 = match end {
            Some(e) => i128::from(e) + 60_000_000_000 - i128::from(first),
            None => 0,
        };
        for r in &records {
            let id = host_id(&r.hostname);
            let pos = *declared.entry(id).or_insert_with(|| {
                out.push(ReplayItem::Host(ReplayHost {
                    id,
                    name: r.hostname.clone(),
                    addrs: Vec::new(),
                }));
                out.len() - 1
            });
            if let ReplayItem::Host(h) = &mut out[pos] {
                if r.hostname.contains('.') && !h.name.contains('.') {
                    h.name = r.hostname.clone();
                }
                for a in own_addrs(&r.record) {
                    if !h.addrs.contains(&a) {
                        h.addrs.push(a);
                    }
                }
            }
        }
        for r in &records {
            let Some(p) = payload(&r.record) else {
                continue;
            };
            let ts = (i128::from(r.ts_ns) + shift).clamp(0, i128::from(u64::MAX)) as u64;
            end = Some(end.map_or(ts, |e| e.max(ts)));
            out.push(ReplayItem::Event(Event {
                header: vigil_proto::EventHeader {
                    host: host_id(&r.hostname),
                    seq: 0,
                    ts_ns: ts,
                },
                payload: p,
            }));
        }
    }
    Ok(out)
}
