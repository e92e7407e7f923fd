//! The detection pipeline: stored events → [`vigil_models::Detector`] →
//! alerts, incidents and fleet-graph edges in the store.
//!
//! The store is the pipeline's queue. Each round reads every host's events
//! after that host's cursor (in seq order, through the seq index), so ingest
//! never waits on detection, and a restart resumes exactly where the last
//! saved cursor stopped: the detector state and the cursors are saved
//! together, atomically, in the `models` column family. Events after the
//! saved cursor are re-read on restart, never skipped.

use crate::console::{saved_settings, triage_of, VERDICT};
use crate::core::{Clock, Core};
use crate::db::{decode, encode, Db};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::store::{Cf, StoreError, WriteBatch};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use vigil_models::{Alert, AlertKind, Detector, DetectorConfig, ModelError, ModelStatus, Verdict};
use vigil_proto::query::{AlertRecord, TriageState};
use vigil_proto::{Event, HostId, LoginService, Payload};

/// Key of the saved pipeline state in the `models` column family.
const STATE_KEY: &[u8] = b"pipeline/state";
/// Most events read in one round, over all hosts (bounds memory under a
/// backlog; a round that hits it is followed at once by the next).
const EVENTS_PER_ROUND: usize = 200_000;
/// Least time between two host-record reads for events of a host that
/// is not registered yet.
const REGISTER_RETRY_NS: u64 = 2_000_000_000;
/// How often every host is read even without a write notice.
const FULL_SCAN_EVERY_NS: u64 = 60_000_000_000;
/// Per-host share of a round, whatever the fleet size.
const MIN_PER_HOST: usize = 50;
const MAX_PER_HOST: usize = 20_000;

/// A pipeline failure.
#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("detector state: {0}")]
    Model(#[from] ModelError),
}

/// Pipeline settings.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub detector: DetectorConfig,
    /// How often a round runs.
    pub poll: Duration,
    /// How often the detector state and cursors are saved.
    pub save_every: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            detector: DetectorConfig::default(),
            poll: Duration::from_millis(500),
            save_every: Duration::from_secs(30),
        }
    }
}

/// What is saved: the detector and how far it has read each host.
#[derive(Serialize, Deserialize)]
struct SavedState {
    detector: Vec<u8>,
    cursors: BTreeMap<u64, u64>,
}

/// The detector plus its read position in the store.
pub struct Pipeline {
    db: Db,
    det: Detector,
    cursors: BTreeMap<u64, u64>,
    registered: BTreeMap<u64, (String, Vec<IpAddr>)>,
    last_save_ns: u64,
    save_every_ns: u64,
    metrics: Arc<Metrics>,
    /// When host records were last read (a scan of every host: not every round).
    last_register_ns: u64,
    /// The store's identity generation at that read.
    registered_generation: Option<u64>,
    /// Hosts to read next round: written since, or left with unscored events.
    pending: BTreeSet<u64>,
    /// When every host was last read regardless (a safety net for events
    /// written outside ingest, e.g. a restore).
    last_full_ns: Option<u64>,
    /// Verdict keys applied to the detector, deleted with the next save (so
    /// a crash before the save re-applies them instead of losing them).
    verdicts_done: BTreeSet<Vec<u8>>,
}

/// One round's outcome.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub events: usize,
    pub alerts: usize,
    /// Some host had more waiting than its share: run again without pausing.
    pub backlog: bool,
}

impl Pipeline {
    /// Resume from the saved state, or start fresh with `cfg.detector`.
    /// A saved state keeps its own detector settings except the learning
    /// period, which follows the configuration.
    pub fn open(db: Db, cfg: &PipelineConfig, now_ns: u64) -> Result<Pipeline, PipelineError> {
        let (det, cursors) = match db.store().get(Cf::Models, STATE_KEY)? {
            Some(bytes) => {
                let saved: SavedState = decode(Cf::Models, &bytes)?;
                (Detector::restore(&saved.detector)?, saved.cursors)
            }
            None => (Detector::new(cfg.detector.clone()), BTreeMap::new()),
        };
        Ok(Pipeline {
            db,
            det,
            cursors,
            registered: BTreeMap::new(),
            last_save_ns: now_ns,
            save_every_ns: cfg.save_every.as_nanos() as u64,
            metrics: Arc::new(Metrics::default()),
            last_register_ns: 0,
            registered_generation: None,
            pending: BTreeSet::new(),
            last_full_ns: None,
            verdicts_done: BTreeSet::new(),
        })
    }

    /// Read every host next round (after a failed round, whose notices
    /// may have been consumed).
    pub fn force_full_pass(&mut self) {
        self.last_full_ns = None;
    }

    /// Count into the appliance's metrics instead of private ones.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The counters this pipeline increments.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Per-host model status.
    pub fn model_status(&self) -> Vec<ModelStatus> {
        self.det.model_status()
    }

    /// One round: learn new hosts' names and addresses, score every stored
    /// event after each cursor, close windows, write alerts and edges.
    pub fn round(&mut self, now_ns: u64) -> Result<Round, PipelineError> {
        self.apply_settings()?;
        self.apply_verdicts()?;
        let mut round = Round::default();
        self.pending.extend(self.db.take_written());
        if self.register_due(now_ns)
            && self.register_hosts(now_ns)?
            && self.det.config().learning_period_ns == 0
        {
            // No learning period (a lab, or an operator's choice): a new
            // host gets its cold-start model before its first event is scored.
            self.det.train(now_ns);
        }
        let full = self
            .last_full_ns
            .is_none_or(|t| now_ns.saturating_sub(t) >= FULL_SCAN_EVERY_NS);
        if full {
            self.last_full_ns = Some(now_ns);
        }
        let hosts: Vec<u64> = self
            .registered
            .keys()
            .copied()
            .filter(|h| full || self.pending.contains(h))
            .collect();
        // Hosts not registered yet keep their notice until they are.
        let registered = &self.registered;
        self.pending.retain(|h| !registered.contains_key(h));
        let share = (EVENTS_PER_ROUND / hosts.len().max(1)).clamp(MIN_PER_HOST, MAX_PER_HOST);
        // Read every host's share, then score them merged in time order:
        // a chain A → B → C is only seen as one if the hop into B is scored
        // before the hop out of it, whichever host reported which.
        let mut streams = Vec::with_capacity(hosts.len());
        let mut watermark = u64::MAX;
        for host in hosts {
            let after = self.cursors.get(&host).copied().unwrap_or(0);
            let events = self.db.events_after_seq(HostId(host), after, share)?;
            if events.len() == share {
                // More is waiting: nothing later than this host's last event
                // may be scored this round, or it would overtake the rest.
                round.backlog = true;
                if let Some(last) = events.last() {
                    watermark = watermark.min(last.header.ts_ns);
                }
            }
            streams.push(events);
        }
        let mut scored: BTreeMap<u64, usize> = BTreeMap::new();
        for ev in merge_by_time(&streams, watermark) {
            self.record_edge(ev)?;
            let alerts = self.det.observe(ev);
            round.alerts += self.write_alerts(&alerts, now_ns)?;
            self.cursors.insert(ev.header.host.0, ev.header.seq);
            *scored.entry(ev.header.host.0).or_default() += 1;
            round.events += 1;
        }
        // Hosts with events left (their share was full, or the watermark
        // stopped them) are read again next round.
        for s in &streams {
            if let Some(first) = s.first() {
                let host = first.header.host.0;
                if s.len() == share || scored.get(&host).copied().unwrap_or(0) < s.len() {
                    self.pending.insert(host);
                }
            }
        }
        let alerts = self.det.tick(now_ns);
        round.alerts += self.write_alerts(&alerts, now_ns)?;
        self.metrics
            .detection_events
            .fetch_add(round.events as u64, Ordering::Relaxed);
        if now_ns.saturating_sub(self.last_save_ns) >= self.save_every_ns {
            self.save(now_ns)?;
        }
        Ok(round)
    }

    /// Save the detector and the cursors in one write.
    pub fn save(&mut self, now_ns: u64) -> Result<(), PipelineError> {
        let state = SavedState {
            detector: self.det.snapshot()?,
            cursors: self.cursors.clone(),
        };
        let mut wb = WriteBatch::default();
        wb.put(Cf::Models, STATE_KEY.to_vec(), encode(&state));
        for key in &self.verdicts_done {
            wb.delete(Cf::Models, key.clone());
        }
        self.db.store().write(wb, true)?;
        self.verdicts_done.clear();
        self.last_save_ns = now_ns;
        Ok(())
    }

    /// The learning period and alert budget an admin saved in the console
    /// win over the command line (they are the operator's latest word).
    fn apply_settings(&mut self) -> Result<(), PipelineError> {
        let Some(settings) = saved_settings(&self.db)? else {
            return Ok(());
        };
        let learning_ns = u64::from(settings.learning_period_days) * 86_400 * 1_000_000_000;
        let budget = f64::from(settings.alert_budget_per_day);
        if self.det.set_tuning(learning_ns, budget) {
            tracing::info!(
                learning_period_days = settings.learning_period_days,
                alert_budget_per_day = settings.alert_budget_per_day,
                "detection settings from the console applied"
            );
        }
        Ok(())
    }

    /// Analysts' closing verdicts: a true positive is left out of the next
    /// training (its hour on every host of its path, its hops out of the
    /// graph). False positives are already handled by suppressions.
    fn apply_verdicts(&mut self) -> Result<(), PipelineError> {
        let queued = self.db.records_with_prefix::<TriageState>(
            Cf::Models,
            VERDICT,
            crate::store::Direction::Forward,
            0,
        )?;
        for (key, state) in queued {
            if self.verdicts_done.contains(&key) || key.len() != VERDICT.len() + 8 {
                continue;
            }
            let alert_id = crate::db::keys::be64(&key[VERDICT.len()..]);
            let verdict = match state {
                TriageState::ClosedTruePositive => Verdict::TruePositive,
                _ => Verdict::FalsePositive,
            };
            match self.det.record_verdict(alert_id, verdict) {
                Ok(()) if verdict == Verdict::TruePositive => {
                    self.metrics
                        .verdicts_applied
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(alert_id, "true-positive verdict: excluded from retraining");
                }
                Ok(()) => {}
                // Older than the detector's alert history: nothing to undo.
                Err(ModelError::UnknownAlert(_)) => {}
                Err(e) => return Err(e.into()),
            }
            self.verdicts_done.insert(key);
        }
        Ok(())
    }

    /// Whether host records must be read again: never read yet, a host's
    /// identity changed, events wait for a host not registered yet (e.g.
    /// written by a restore, not through enrollment), or the periodic
    /// safety net. Not on a short timer: the `hosts` family also holds every
    /// host's health history, and 10,000 idle hosts made that scan the
    /// pipeline's main idle cost.
    fn register_due(&self, now_ns: u64) -> bool {
        let since = now_ns.saturating_sub(self.last_register_ns);
        let waiting = self
            .pending
            .iter()
            .any(|h| !self.registered.contains_key(h));
        self.registered_generation != Some(self.db.identity_generation())
            || (waiting && since >= REGISTER_RETRY_NS)
            || since >= FULL_SCAN_EVERY_NS
    }

    /// Tell the detector about new or renamed hosts; true when a host it
    /// had never heard of appeared.
    fn register_hosts(&mut self, now_ns: u64) -> Result<bool, PipelineError> {
        self.last_register_ns = now_ns;
        // Read before the scan, so a change noted during it triggers
        // another; kept only once the scan succeeded, so a failed one is
        // retried next round.
        let generation = self.db.identity_generation();
        let mut new_host = false;
        for rec in self.db.host_records()? {
            let entry = (rec.hostname.clone(), rec.addrs.clone());
            match self.registered.get(&rec.id) {
                Some(known) if *known == entry => continue,
                Some(_) => {}
                None => new_host = true,
            }
            self.det
                .register_host(HostId(rec.id), &rec.hostname, &rec.addrs);
            self.registered.insert(rec.id, entry);
        }
        self.registered_generation = Some(generation);
        Ok(new_host)
    }

    /// Host-to-host edges for the fleet graph: connections to a known peer,
    /// and logons from one.
    fn record_edge(&self, ev: &Event) -> Result<(), PipelineError> {
        let me = ev.header.host;
        let (src, dst, port, user) = match &ev.payload {
            Payload::NetConnect(f) => match self.det.host_by_addr(f.remote.ip()) {
                Some(peer) if peer != me => (me, peer, f.remote.port(), None),
                _ => return Ok(()),
            },
            Payload::Login(l) => {
                let peer = l
                    .src_addr
                    .and_then(|a| self.det.host_by_addr(a))
                    .or_else(|| l.src_host.as_deref().and_then(|n| self.det.host_by_name(n)));
                match peer {
                    Some(peer) if peer != me => {
                        (peer, me, service_port(&l.service), Some(l.user.as_str()))
                    }
                    _ => return Ok(()),
                }
            }
            _ => return Ok(()),
        };
        self.db.record_edge(src, dst, port, user, ev.header.ts_ns)?;
        Ok(())
    }

    /// Store alerts; an incident re-emitted as its chain grows keeps the
    /// analyst's triage state and assignee.
    fn write_alerts(&self, alerts: &[Alert], now_ns: u64) -> Result<usize, PipelineError> {
        for alert in alerts {
            let mut rec: AlertRecord = alert.to_record();
            if let Some(triage) = triage_of(&self.db, rec.id)? {
                rec.state = triage.state;
                rec.assignee = triage.assignee;
            } else if let Some(old) = self.db.alert(rec.id)? {
                rec.state = old.state;
                rec.assignee = old.assignee;
            }
            self.db.put_alert(&rec)?;
            let latency = Duration::from_nanos(now_ns.saturating_sub(alert.created_ns));
            match alert.kind {
                AlertKind::Incident => self.metrics.incident_latency.0.observe(latency),
                _ => self.metrics.alert_latency.0.observe(latency),
            }
        }
        self.metrics
            .alerts_written
            .fetch_add(alerts.len() as u64, Ordering::Relaxed);
        Ok(alerts.len())
    }
}

/// Every stream's events in time order, each stream's own (seq) order
/// kept; a stream stops at its first event later than `watermark`, so its
/// cursor never passes an event that was not scored.
fn merge_by_time(streams: &[Vec<Event>], watermark: u64) -> Vec<&Event> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut heap: BinaryHeap<Reverse<(u64, usize, usize)>> = streams
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.first().map(|e| Reverse((e.header.ts_ns, i, 0))))
        .collect();
    let mut out = Vec::with_capacity(streams.iter().map(Vec::len).sum());
    while let Some(Reverse((ts, i, pos))) = heap.pop() {
        if ts > watermark {
            continue;
        }
        out.push(&streams[i][pos]);
        if let Some(next) = streams[i].get(pos + 1) {
            heap.push(Reverse((next.header.ts_ns, i, pos + 1)));
        }
    }
    out
}

/// Model status from the pipeline's last saved state (works with or
/// without a running server).
pub fn saved_model_status(db: &Db) -> Result<Vec<ModelStatus>, PipelineError> {
    match db.store().get(Cf::Models, STATE_KEY)? {
        Some(bytes) => {
            let saved: SavedState = decode(Cf::Models, &bytes)?;
            Ok(Detector::restore(&saved.detector)?.model_status())
        }
        None => Ok(Vec::new()),
    }
}

/// The port an admin logon service listens on (for graph edges).
fn service_port(service: &LoginService) -> u16 {
    match service {
        LoginService::Ssh => 22,
        LoginService::Smb => 445,
        LoginService::Rdp => 3389,
        LoginService::WinRm => 5985,
        LoginService::Wmi => 135,
        _ => 0,
    }
}

/// The pipeline's latest per-host model status, shared with the console
/// and the CLI (refreshed every few seconds, not every round: computing it
/// hashes every model).
#[derive(Debug, Default)]
pub struct ModelBoard {
    inner: Mutex<BoardInner>,
}

#[derive(Debug, Default)]
struct BoardInner {
    hosts: BTreeMap<HostId, ModelStatus>,
    learning_period_ns: u64,
    /// The tuning in force, once the pipeline has published:
    /// (learning period ns, alert budget per day).
    tuning: Option<(u64, f64)>,
}

impl ModelBoard {
    /// Replace the board with the pipeline's current view.
    pub fn publish(&self, status: Vec<ModelStatus>, learning_period_ns: u64, budget: f64) {
        let mut g = self.inner.lock().expect("model board lock");
        g.hosts = status.into_iter().map(|m| (m.host, m)).collect();
        g.learning_period_ns = learning_period_ns;
        g.tuning = Some((learning_period_ns, budget));
    }

    /// The detector's learning period (ns) and alert budget in force, once
    /// the pipeline runs (what the console's settings page shows until an
    /// admin saves its own).
    pub fn tuning(&self) -> Option<(u64, f64)> {
        self.inner.lock().expect("model board lock").tuning
    }

    /// Every host's status, host order.
    pub fn all(&self) -> Vec<ModelStatus> {
        let g = self.inner.lock().expect("model board lock");
        g.hosts.values().cloned().collect()
    }

    /// One host's status, with the learning period in force.
    pub fn host(&self, host: HostId) -> Option<(ModelStatus, u64)> {
        let g = self.inner.lock().expect("model board lock");
        g.hosts
            .get(&host)
            .map(|m| (m.clone(), g.learning_period_ns))
    }
}

/// How often the model board is refreshed when idle, and at most while
/// events are being scored.
const BOARD_EVERY: Duration = Duration::from_secs(5);
const BOARD_BUSY_EVERY: Duration = Duration::from_secs(1);

/// Run the pipeline until shutdown: a round every `poll`, state saved every
/// `save_every` and once more on the way out.
pub async fn run(core: Arc<Core>, cfg: PipelineConfig, mut shutdown: Shutdown) {
    let clock: Clock = core.clock.clone();
    let mut pipeline = match Pipeline::open(core.db.clone(), &cfg, clock()) {
        Ok(p) => p.with_metrics(core.metrics.clone()),
        Err(e) => {
            tracing::error!(error = %e, "detection pipeline cannot start");
            return;
        }
    };
    let mut board_at = std::time::Instant::now()
        .checked_sub(BOARD_EVERY)
        .unwrap_or_else(std::time::Instant::now);
    let mut interval = tokio::time::interval(cfg.poll);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backlog = false;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            _ = std::future::ready(()), if backlog => {}
            _ = interval.tick(), if !backlog => {}
        }
        let now = clock();
        let (p, result) = tokio::task::spawn_blocking(move || {
            let r = pipeline.round(now);
            (pipeline, r)
        })
        .await
        .expect("pipeline round does not panic");
        pipeline = p;
        backlog = matches!(&result, Ok(r) if r.backlog);
        let scored = matches!(&result, Ok(r) if r.events > 0);
        match result {
            Ok(round) if round.alerts > 0 => {
                tracing::info!(
                    events = round.events,
                    alerts = round.alerts,
                    "detection round"
                )
            }
            Ok(_) => {}
            Err(e) => {
                pipeline
                    .metrics
                    .detection_errors
                    .fetch_add(1, Ordering::Relaxed);
                pipeline.force_full_pass();
                tracing::warn!(error = %e, "detection round failed");
            }
        }
        // Fresh within a second while events flow, every few seconds when idle.
        let since = board_at.elapsed();
        if since >= BOARD_EVERY || (scored && since >= BOARD_BUSY_EVERY) {
            let cfg = pipeline.det.config();
            let (learning, budget) = (cfg.learning_period_ns, cfg.alert_budget_per_day);
            core.models
                .publish(pipeline.model_status(), learning, budget);
            board_at = std::time::Instant::now();
        }
    }
    if let Err(e) = pipeline.save(clock()) {
        tracing::warn!(error = %e, "saving detector state at shutdown failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::HostRecord;
    use crate::store::memory::MemoryStore;
    use std::net::{Ipv4Addr, SocketAddr};
    use vigil_proto::{AuthMethod, EventHeader, LoginInfo, NetFlow, Transport};

    const S: u64 = 1_000_000_000;

    fn host(db: &Db, id: u64, name: &str, ip: [u8; 4]) {
        db.put_host_record(
            &HostRecord {
                id,
                hostname: name.into(),
                addrs: vec![IpAddr::V4(Ipv4Addr::from(ip))],
                ..HostRecord::default()
            },
            true,
        )
        .unwrap();
    }

    fn store_events(db: &Db, events: &[Event]) {
        store_events_unnoticed(db, events);
        // What the ingest writer does after its write.
        db.mark_written(events.iter().map(|e| e.header.host));
    }

    /// Written behind the pipeline's back (no writer notice).
    fn store_events_unnoticed(db: &Db, events: &[Event]) {
        let mut wb = WriteBatch::default();
        for e in events {
            wb.put(
                Cf::Events,
                crate::db::keys::event_key(e.header.host, e.header.ts_ns, e.header.seq).to_vec(),
                crate::db::events::payload_value(&e.payload),
            );
            wb.put(
                Cf::SeqIndex,
                crate::db::keys::seq_key(e.header.host, e.header.seq).to_vec(),
                crate::db::events::seq_index_value(e.header.ts_ns),
            );
        }
        db.store().write(wb, true).unwrap();
    }

    fn ssh_hop(dst: u64, seq: u64, ts: u64, from: [u8; 4]) -> Event {
        Event {
            header: EventHeader {
                host: HostId(dst),
                seq,
                ts_ns: ts,
            },
            payload: Payload::Login(LoginInfo {
                user: "root".into(),
                method: AuthMethod::PublicKey,
                service: LoginService::Ssh,
                src_addr: Some(IpAddr::V4(Ipv4Addr::from(from))),
                src_port: Some(40000),
                src_host: None,
                from_user: None,
                pid: Some(1),
            }),
        }
    }

    fn connect(src: u64, seq: u64, ts: u64, to: [u8; 4]) -> Event {
        Event {
            header: EventHeader {
                host: HostId(src),
                seq,
                ts_ns: ts,
            },
            payload: Payload::NetConnect(NetFlow {
                transport: Transport::Tcp,
                local: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, src as u8)), 40000),
                remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(to)), 22),
                pid: Some(7),
                exe: Some("/usr/bin/ssh".into()),
                repeat: 1,
            }),
        }
    }

    fn cold_start() -> PipelineConfig {
        PipelineConfig {
            detector: DetectorConfig {
                learning_period_ns: 0,
                ..DetectorConfig::default()
            },
            poll: Duration::from_millis(10),
            save_every: Duration::from_secs(3600),
        }
    }

    /// A → B then B → C: the pipeline turns stored events into one incident
    /// over the path, with graph edges, and resumes after a restart without
    /// re-reading what it already scored.
    #[test]
    fn stored_chain_becomes_incident_and_cursor_survives_restart() {
        let db = Db::new(Arc::new(MemoryStore::default()));
        host(&db, 1, "a", [10, 0, 0, 1]);
        host(&db, 2, "b", [10, 0, 0, 2]);
        host(&db, 3, "c", [10, 0, 0, 3]);
        let t0 = 1_700_000_000 * S;
        store_events(
            &db,
            &[
                connect(1, 1, t0, [10, 0, 0, 2]),
                ssh_hop(2, 1, t0 + S, [10, 0, 0, 1]),
                connect(2, 2, t0 + 60 * S, [10, 0, 0, 3]),
                ssh_hop(3, 1, t0 + 61 * S, [10, 0, 0, 2]),
            ],
        );
        let cfg = cold_start();
        let mut p = Pipeline::open(db.clone(), &cfg, t0).unwrap();
        let r = p.round(t0 + 62 * S).unwrap();
        assert_eq!(r.events, 4);
        let alerts = db.alerts(&Default::default()).unwrap();
        let incident = alerts
            .iter()
            .find(|a| a.path == vec![HostId(1), HostId(2), HostId(3)])
            .unwrap_or_else(|| panic!("no A→B→C incident in {alerts:#?}"));
        assert!(incident.techniques.iter().any(|t| t.starts_with("T1021")));
        let edges = db.edges(0).unwrap();
        assert!(edges
            .iter()
            .any(|e| e.src == HostId(1) && e.dst == HostId(2) && e.port == 22));
        assert!(edges
            .iter()
            .any(|e| e.src == HostId(2) && e.dst == HostId(3) && e.port == 22));

        p.save(t0 + 62 * S).unwrap();
        let mut again = Pipeline::open(db.clone(), &cfg, t0 + 63 * S).unwrap();
        assert_eq!(
            again.round(t0 + 63 * S).unwrap().events,
            0,
            "scored events re-read"
        );
        store_events(&db, &[ssh_hop(3, 2, t0 + 70 * S, [10, 0, 0, 1])]);
        assert_eq!(again.round(t0 + 71 * S).unwrap().events, 1);
    }

    /// The analyst's triage survives the incident being re-emitted.
    #[test]
    fn re_emitted_alert_keeps_triage() {
        let db = Db::new(Arc::new(MemoryStore::default()));
        host(&db, 1, "a", [10, 0, 0, 1]);
        host(&db, 2, "b", [10, 0, 0, 2]);
        let t0 = 1_700_000_000 * S;
        store_events(&db, &[ssh_hop(2, 1, t0, [10, 0, 0, 1])]);
        let mut p = Pipeline::open(db.clone(), &cold_start(), t0).unwrap();
        p.round(t0 + S).unwrap();
        let mut alerts = db.alerts(&Default::default()).unwrap();
        assert!(
            !alerts.is_empty(),
            "a first-ever admin hop alerts on a cold start"
        );
        let mut first = alerts.remove(0);
        first.state = vigil_proto::query::TriageState::Investigating;
        first.assignee = Some("ana".into());
        db.put_alert(&first).unwrap();
        let alert = Alert::clone(p.det.history().find(|a| a.id == first.id).unwrap());
        p.write_alerts(&[alert], t0 + 2 * S).unwrap();
        let stored = db.alert(first.id).unwrap().unwrap();
        assert_eq!(stored.state, vigil_proto::query::TriageState::Investigating);
        assert_eq!(stored.assignee.as_deref(), Some("ana"));
    }

    /// A true-positive verdict queued by the console reaches the detector
    /// once, is counted, and leaves the queue with the next save; saved
    /// console settings replace the command line's tuning; alert latency
    /// is measured from the event's time.
    #[test]
    fn verdicts_settings_and_latency_reach_the_detector() {
        let db = Db::new(Arc::new(MemoryStore::default()));
        host(&db, 1, "a", [10, 0, 0, 1]);
        host(&db, 2, "b", [10, 0, 0, 2]);
        let t0 = 1_700_000_000 * S;
        store_events(&db, &[ssh_hop(2, 1, t0, [10, 0, 0, 1])]);
        let mut p = Pipeline::open(db.clone(), &cold_start(), t0).unwrap();
        p.round(t0 + 2 * S).unwrap();
        let alert = db.alerts(&Default::default()).unwrap().remove(0);
        let lat = &p.metrics().alert_latency.0;
        assert_eq!(lat.snapshot().2, 1, "one alert latency observed");
        assert_eq!(lat.quantile_upper_us(0.99), Some(2_000_000));

        let mut wb = WriteBatch::default();
        let key = [VERDICT, &alert.id.to_be_bytes()[..]].concat();
        wb.put(
            Cf::Models,
            key.clone(),
            encode(&TriageState::ClosedTruePositive),
        );
        db.store().write(wb, true).unwrap();
        p.round(t0 + 3 * S).unwrap();
        p.round(t0 + 4 * S).unwrap();
        assert_eq!(p.metrics().verdicts_applied.load(Ordering::Relaxed), 1);
        assert!(
            db.store().get(Cf::Models, &key).unwrap().is_some(),
            "kept until saved"
        );
        p.save(t0 + 5 * S).unwrap();
        assert!(
            db.store().get(Cf::Models, &key).unwrap().is_none(),
            "dequeued with the save"
        );

        let settings = vigil_web_ui::store::Settings {
            learning_period_days: 3,
            alert_budget_per_day: 7,
            ..Default::default()
        };
        db.put_record(Cf::Meta, b"console/settings", &settings)
            .unwrap();
        p.round(t0 + 6 * S).unwrap();
        assert_eq!(p.det.config().learning_period_ns, 3 * 86_400 * S);
        assert_eq!(p.det.config().alert_budget_per_day, 7.0);
    }

    /// Hosts are read in id order, but a chain is scored in time order:
    /// here the first hop lands on the higher host id and the second on a
    /// lower one, and they still chain into one incident.
    #[test]
    fn chain_across_hosts_is_scored_in_time_order_not_host_order() {
        let db = Db::new(Arc::new(MemoryStore::default()));
        host(&db, 3, "a", [10, 0, 0, 3]);
        host(&db, 2, "b", [10, 0, 0, 2]);
        host(&db, 1, "c", [10, 0, 0, 1]);
        let t0 = 1_700_000_000 * S;
        store_events(
            &db,
            &[
                ssh_hop(2, 1, t0, [10, 0, 0, 3]),
                ssh_hop(1, 1, t0 + 60 * S, [10, 0, 0, 2]),
            ],
        );
        let mut p = Pipeline::open(db.clone(), &cold_start(), t0).unwrap();
        let r = p.round(t0 + 61 * S).unwrap();
        assert_eq!(r.events, 2);
        assert!(!r.backlog);
        let alerts = db.alerts(&Default::default()).unwrap();
        assert!(
            alerts
                .iter()
                .any(|a| a.path == vec![HostId(3), HostId(2), HostId(1)]),
            "no a → b → c incident in {alerts:#?}"
        );
    }

    /// The merge keeps each host's own order and stops every stream at the
    /// watermark, so no cursor passes an unscored event.
    #[test]
    fn merge_respects_stream_order_and_watermark() {
        let ev = |host: u64, seq: u64, ts: u64| connect(host, seq, ts, [10, 0, 0, 9]);
        let streams = vec![
            vec![ev(1, 1, 10), ev(1, 2, 30), ev(1, 3, 50)],
            vec![ev(2, 1, 20), ev(2, 2, 15), ev(2, 3, 40)],
        ];
        let order: Vec<(u64, u64)> = merge_by_time(&streams, 40)
            .iter()
            .map(|e| (e.header.host.0, e.header.seq))
            .collect();
        assert_eq!(order, vec![(1, 1), (2, 1), (2, 2), (1, 2), (2, 3)]);
    }

    /// An idle fleet costs a round nothing: only hosts with new events (or
    /// unscored ones left over) are read after the first round.
    #[test]
    fn rounds_read_only_hosts_with_new_events() {
        let db = Db::new(Arc::new(MemoryStore::default()));
        host(&db, 1, "a", [10, 0, 0, 1]);
        host(&db, 2, "b", [10, 0, 0, 2]);
        let t0 = 1_700_000_000 * S;
        let mut p = Pipeline::open(db.clone(), &cold_start(), t0).unwrap();
        p.round(t0).unwrap();
        // Written behind the pipeline's back (no notice): not read until
        // the periodic full pass.
        store_events_unnoticed(&db, &[connect(1, 1, t0 + S, [10, 0, 0, 2])]);
        assert_eq!(p.round(t0 + 2 * S).unwrap().events, 0);
        // With the writer's notice it is read at once.
        store_events(&db, &[connect(2, 1, t0 + 3 * S, [10, 0, 0, 1])]);
        assert_eq!(p.round(t0 + 4 * S).unwrap().events, 1);
        // The full pass finds the unnoticed one.
        assert_eq!(p.round(t0 + 61 * S).unwrap().events, 1);
        // A new host's first events, noticed before the host is registered,
        // are read as soon as it is (not at the next full pass).
        store_events(&db, &[connect(3, 1, t0 + 62 * S, [10, 0, 0, 1])]);
        assert_eq!(p.round(t0 + 62 * S).unwrap().events, 0);
        host(&db, 3, "c", [10, 0, 0, 3]);
        assert_eq!(p.round(t0 + 65 * S).unwrap().events, 1);
    }

    #[test]
    fn host_records_are_reread_on_identity_change_not_every_round() {
        let db = Db::new(Arc::new(MemoryStore::default()));
        host(&db, 1, "a", [10, 0, 0, 1]);
        let t0 = 1_700_000_000 * S;
        let mut p = Pipeline::open(db.clone(), &cold_start(), t0).unwrap();
        p.round(t0).unwrap();
        let first_read = p.last_register_ns;
        // A renamed host without a notice: idle rounds do not read the
        // records (the health history shares their column family).
        host(&db, 1, "a-renamed", [10, 0, 0, 9]);
        p.round(t0 + 5 * S).unwrap();
        assert_eq!(p.last_register_ns, first_read);
        assert_eq!(p.registered[&1].0, "a");
        // The registry's notice (a hello with a new name or address, an
        // enrollment) makes the next round read them.
        db.note_identity_change();
        p.round(t0 + 6 * S).unwrap();
        assert_eq!(p.registered[&1].0, "a-renamed");
        assert_eq!(p.det.host_by_addr([10, 0, 0, 9].into()), Some(HostId(1)));
        // And the periodic safety net, without any notice.
        host(&db, 1, "a-again", [10, 0, 0, 9]);
        p.round(t0 + 30 * S).unwrap();
        assert_eq!(p.registered[&1].0, "a-renamed");
        p.round(t0 + 67 * S).unwrap();
        assert_eq!(p.registered[&1].0, "a-again");
    }
}
