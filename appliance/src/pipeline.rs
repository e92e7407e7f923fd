//! The detection pipeline: stored events → [`vigil_models::Detector`] →
//! alerts, incidents and fleet-graph edges in the store.
//!
//! The store is the pipeline's queue. Each round reads every host's events
//! after that host's cursor (in seq order, through the seq index), so ingest
//! never waits on detection, and a restart resumes exactly where the last
//! saved cursor stopped: the detector state and the cursors are saved
//! together, atomically, in the `models` column family. Events after the
//! saved cursor are re-read on restart, never skipped.

use crate::core::{Clock, Core};
use crate::db::{decode, encode, Db};
use crate::shutdown::Shutdown;
use crate::store::{Cf, StoreError, WriteBatch};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use vigil_models::{Alert, Detector, DetectorConfig, ModelError, ModelStatus};
use vigil_proto::query::AlertRecord;
use vigil_proto::{Event, HostId, LoginService, Payload};

/// Key of the saved pipeline state in the `models` column family.
const STATE_KEY: &[u8] = b"pipeline/state";
/// Most events read per host per round (keeps a round short under backlog).
const EVENTS_PER_HOST_PER_ROUND: usize = 20_000;

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

/// Counters of the pipeline, for `vigil status` and `/metrics`.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub events_scored: AtomicU64,
    pub alerts_written: AtomicU64,
    pub rounds: AtomicU64,
    pub errors: AtomicU64,
    /// Worst event → alert delay seen in the last round with alerts, ms.
    pub last_alert_delay_ms: AtomicU64,
}

/// The detector plus its read position in the store.
pub struct Pipeline {
    db: Db,
    det: Detector,
    cursors: BTreeMap<u64, u64>,
    registered: BTreeMap<u64, (String, Vec<IpAddr>)>,
    last_save_ns: u64,
    save_every_ns: u64,
    stats: Arc<PipelineStats>,
}

/// One round's outcome.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub events: usize,
    pub alerts: usize,
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
            stats: Arc::new(PipelineStats::default()),
        })
    }

    /// Shared counters.
    pub fn stats(&self) -> Arc<PipelineStats> {
        self.stats.clone()
    }

    /// Per-host model status.
    pub fn model_status(&self) -> Vec<ModelStatus> {
        self.det.model_status()
    }

    /// One round: learn new hosts' names and addresses, score every stored
    /// event after each cursor, close windows, write alerts and edges.
    pub fn round(&mut self, now_ns: u64) -> Result<Round, PipelineError> {
        if self.register_hosts()? && self.det.config().learning_period_ns == 0 {
            // No learning period (a lab, or an operator's choice): a new
            // host gets its cold-start model before its first event is scored.
            self.det.train(now_ns);
        }
        let mut round = Round::default();
        let hosts: Vec<u64> = self.registered.keys().copied().collect();
        for host in hosts {
            let after = self.cursors.get(&host).copied().unwrap_or(0);
            let events =
                self.db
                    .events_after_seq(HostId(host), after, EVENTS_PER_HOST_PER_ROUND)?;
            for ev in &events {
                self.record_edge(ev)?;
                let alerts = self.det.observe(ev);
                round.alerts += self.write_alerts(&alerts, now_ns)?;
                self.cursors.insert(host, ev.header.seq);
            }
            round.events += events.len();
        }
        let alerts = self.det.tick(now_ns);
        round.alerts += self.write_alerts(&alerts, now_ns)?;
        self.stats
            .events_scored
            .fetch_add(round.events as u64, Ordering::Relaxed);
        self.stats.rounds.fetch_add(1, Ordering::Relaxed);
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
        self.db.store().write(wb, true)?;
        self.last_save_ns = now_ns;
        Ok(())
    }

    /// Tell the detector about new or renamed hosts; true when a host it
    /// had never heard of appeared.
    fn register_hosts(&mut self) -> Result<bool, PipelineError> {
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
        let mut worst_delay = 0u64;
        for alert in alerts {
            let mut rec: AlertRecord = alert.to_record();
            if let Some(old) = self.db.alert(rec.id)? {
                rec.state = old.state;
                rec.assignee = old.assignee;
            }
            self.db.put_alert(&rec)?;
            worst_delay = worst_delay.max(now_ns.saturating_sub(alert.created_ns));
        }
        if !alerts.is_empty() {
            self.stats
                .alerts_written
                .fetch_add(alerts.len() as u64, Ordering::Relaxed);
            self.stats
                .last_alert_delay_ms
                .store(worst_delay / 1_000_000, Ordering::Relaxed);
        }
        Ok(alerts.len())
    }
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

/// Model status shared with the admin socket and the CLI.
pub type SharedStatus = Arc<Mutex<Vec<ModelStatus>>>;

/// Run the pipeline until shutdown: a round every `poll`, state saved every
/// `save_every` and once more on the way out.
pub async fn run(
    core: Arc<Core>,
    cfg: PipelineConfig,
    status: SharedStatus,
    stats_out: Arc<Mutex<Option<Arc<PipelineStats>>>>,
    mut shutdown: Shutdown,
) {
    let clock: Clock = core.clock.clone();
    let mut pipeline = match Pipeline::open(core.db.clone(), &cfg, clock()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "detection pipeline cannot start");
            return;
        }
    };
    *stats_out.lock().expect("stats lock") = Some(pipeline.stats());
    let mut interval = tokio::time::interval(cfg.poll);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = interval.tick() => {}
        }
        let now = clock();
        let (p, result) = tokio::task::spawn_blocking(move || {
            let r = pipeline.round(now);
            (pipeline, r)
        })
        .await
        .expect("pipeline round does not panic");
        pipeline = p;
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
                pipeline.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "detection round failed");
            }
        }
        *status.lock().expect("status lock") = pipeline.model_status();
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
}
