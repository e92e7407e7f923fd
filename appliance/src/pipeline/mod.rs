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
use crate::db::records::{PipelineState, QueuedVerdict};
use crate::db::Db;
use crate::metrics::Metrics;
pub use crate::model_board::ModelBoard;
use crate::notices::DetectionNotices;
use crate::shutdown::Shutdown;
use crate::store::StoreError;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use vigil_models::{Alert, AlertKind, Detector, DetectorConfig, ModelError, ModelStatus, Verdict};
use vigil_proto::query::{AlertRecord, TriageState};
use vigil_proto::{Event, HostId, LoginService, Payload};

/// Key of the saved pipeline state in the `models` column family.
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
/// A host with a backlog holds the others' time-ordered scoring back only
/// while its events are this recent (well over a chain's hop spacing).
const MAX_HOLD_BACK_NS: u64 = 10 * 60 * 1_000_000_000;
/// An alert on an event older than this when scored measures how late the
/// event arrived (a replayed history, a sensor's spool after days
/// offline), not detection: it is counted apart from the latency histograms.
pub const LIVE_LATENCY_BOUND_NS: u64 = MAX_HOLD_BACK_NS;
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

/// The detector plus its read position in the store.
pub struct Pipeline {
    db: Db,
    /// Which hosts ingest wrote and whether identities changed.
    notices: DetectionNotices,
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
    /// The operator's Sigma rules directory, and the rules generation the
    /// detector's rules were loaded at.
    sigma_dir: Option<(std::path::PathBuf, Option<u64>)>,
    /// SIEM forwarding: told about every alert stored (and scored events
    /// when raw events are forwarded).
    forwarding: Option<Arc<crate::forwarding::Forwarding>>,
}

/// Where an operator's Sigma rules live, under the data directory.
pub const SIGMA_RULES_DIR: &str = "rules/sigma";

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
    pub fn open(
        db: Db,
        notices: DetectionNotices,
        cfg: &PipelineConfig,
        now_ns: u64,
    ) -> Result<Pipeline, PipelineError> {
        let (det, cursors) = match db.pipeline_state()? {
            Some(saved) => {
                match Detector::restore(&saved.detector) {
                    Ok(mut det) => {
                        // The learning period is the operator's word (this
                        // start's configuration, then the console's), not
                        // the snapshot's: `cargo xtask demo` learns from a
                        // replayed history, then restarts with none.
                        let budget = det.config().alert_budget_per_day;
                        det.set_tuning(cfg.detector.learning_period_ns, budget);
                        (det, saved.cursors)
                    }
                    // Saved by another version of the detector: rebuild the
                    // baselines from the stored events (cursors from zero)
                    // rather than refuse to detect.
                    Err(ModelError::SnapshotVersion { found, expected }) => {
                        tracing::warn!(
                            found,
                            expected,
                            "detector state from another format: rebuilding from stored events"
                        );
                        (Detector::new(cfg.detector.clone()), BTreeMap::new())
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => (Detector::new(cfg.detector.clone()), BTreeMap::new()),
        };
        Ok(Pipeline {
            db,
            notices,
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
            sigma_dir: None,
            forwarding: None,
        })
    }

    /// Run the shipped Sigma rules and those in `dir` (reloaded whenever
    /// an import notes a change).
    pub fn with_sigma_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.sigma_dir = Some((dir, None));
        self
    }

    /// Load the Sigma rules if they changed since the last load; a bad rule
    /// is logged with its file and line and left out, never silently.
    fn reload_sigma(&mut self) {
        let generation = self.notices.rules_generation();
        let Some((dir, loaded)) = &mut self.sigma_dir else {
            return;
        };
        if *loaded == Some(generation) {
            return;
        }
        *loaded = Some(generation);
        let (rules, errors) = vigil_models::sigma::RuleSet::builtin_and_dir(dir);
        for e in &errors {
            tracing::error!(rule = %e, "Sigma rule refused");
        }
        tracing::info!(rules = rules.len(), dir = %dir.display(), "Sigma rules loaded");
        self.det.set_sigma_rules(rules);
    }

    /// Read every host next round (after a failed round, whose notices
    /// may have been consumed).
    pub fn force_full_pass(&mut self) {
        self.last_full_ns = None;
    }

    /// Forward stored alerts (and scored events, if configured) to SIEMs.
    pub fn with_forwarding(mut self, forwarding: Arc<crate::forwarding::Forwarding>) -> Self {
        self.forwarding = Some(forwarding);
        self
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
        self.reload_sigma();
        // The analysts' suppressions (saved in the console) hide alerts in
        // the detector too, so hidden hops never spend the alert budget.
        if self.det.set_suppressions(self.db.suppressions()?) {
            tracing::info!("suppressions from the console applied to detection");
        }
        self.apply_verdicts()?;
        let mut round = Round::default();
        self.pending.extend(self.notices.take_written());
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
                // Unless the host is far behind the clock (a sensor back
                // from days offline, or one lying about time): its old
                // events are scored as they come, out of step with the
                // others, so they never hold back anyone else.
                round.backlog = true;
                if let Some(last) = events.last() {
                    if last.header.ts_ns >= now_ns.saturating_sub(MAX_HOLD_BACK_NS) {
                        watermark = watermark.min(last.header.ts_ns);
                    }
                }
            }
            streams.push(events);
        }
        let mut scored: BTreeMap<u64, usize> = BTreeMap::new();
        let raw = self.forwarding.as_ref().filter(|f| f.raw_events()).cloned();
        let mut forward_events = Vec::new();
        for ev in merge_by_time(&streams, watermark) {
            self.record_edge(ev)?;
            let alerts = self.det.observe(ev);
            round.alerts += self.write_alerts(&alerts, now_ns)?;
            if raw.is_some() {
                forward_events.push(ev.clone());
            }
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
        if let Some(fwd) = raw {
            fwd.events_stored(forward_events);
        }
        let alerts = self.det.tick(now_ns);
        round.alerts += self.write_alerts(&alerts, now_ns)?;
        // Alerts a suppression hid are stored too: readers leave them out
        // of every view (the same rule marks them), an auditor can still
        // ask for them.
        let hidden = self.det.take_hidden();
        self.store_alerts(&hidden, now_ns, false)?;
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
        let state = PipelineState {
            detector: self.det.snapshot()?,
            cursors: self.cursors.clone(),
        };
        let applied: Vec<Vec<u8>> = self.verdicts_done.iter().cloned().collect();
        self.db.save_pipeline_state(&state, &applied)?;
        self.verdicts_done.clear();
        self.last_save_ns = now_ns;
        Ok(())
    }

    /// The learning period and alert budget an admin saved in the console
    /// win over the command line (they are the operator's latest word).
    fn apply_settings(&mut self) -> Result<(), PipelineError> {
        let Some(tuning) = self.db.detection_tuning()? else {
            return Ok(());
        };
        if self
            .det
            .set_tuning(tuning.learning_period_ns, tuning.alert_budget_per_day)
        {
            tracing::info!(
                learning_period_ns = tuning.learning_period_ns,
                alert_budget_per_day = tuning.alert_budget_per_day,
                "detection settings from the console applied"
            );
        }
        Ok(())
    }

    /// Analysts' closing verdicts: a true positive is left out of the next
    /// training (its hops out of the graph). Both kinds join the
    /// re-ranker's training set, which explains later alerts ("analysts
    /// closed N similar alerts as false positive") but never changes their
    /// scores (measured not to help, `docs/DETECTION.md`). What keeps a
    /// false positive from coming back is a suppression, which the detector
    /// applies (and which keeps such hops out of the alert budget).
    fn apply_verdicts(&mut self) -> Result<(), PipelineError> {
        for QueuedVerdict {
            key,
            alert_id,
            state,
        } in self.db.queued_verdicts()?
        {
            if self.verdicts_done.contains(&key) {
                continue;
            }
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
        self.registered_generation != Some(self.notices.identity_generation())
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
        let generation = self.notices.identity_generation();
        let mut new_host = false;
        // Only claims no earlier host owns reach the detector's address
        // and name maps (`crate::identity`): a sensor cannot take over
        // another host's identity in detection.
        let (accepted, _) = crate::identity::resolve(&self.db.host_records()?);
        let mut accepted: Vec<_> = accepted.into_iter().collect();
        accepted.sort_by_key(|(h, _)| *h);
        for (host, acc) in accepted {
            let entry = (acc.hostname.clone(), acc.addrs.clone());
            match self.registered.get(&host.0) {
                Some(known) if *known == entry => continue,
                Some(_) => {}
                None => new_host = true,
            }
            self.det.register_host(host, &acc.hostname, &acc.addrs);
            self.registered.insert(host.0, entry);
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

    /// Store alerts and forward them (see [`Self::store_alerts`]).
    fn write_alerts(&self, alerts: &[Alert], now_ns: u64) -> Result<usize, PipelineError> {
        self.store_alerts(alerts, now_ns, true)
    }

    /// Store alerts; an incident re-emitted as its chain grows keeps the
    /// analyst's triage state and assignee. `forward`: store them through
    /// SIEM forwarding's outbox (not the ones a suppression hid).
    fn store_alerts(
        &self,
        alerts: &[Alert],
        now_ns: u64,
        forward: bool,
    ) -> Result<usize, PipelineError> {
        let name = |h: HostId| self.registered.get(&h.0).map(|(n, _)| n.clone());
        for alert in alerts {
            let mut rec: AlertRecord = alert.to_record();
            if let Some(triage) = self.db.triage_of(rec.id)? {
                rec.state = triage.state;
                rec.assignee = triage.assignee;
            } else if let Some(old) = self.db.alert(rec.id)? {
                rec.state = old.state;
                rec.assignee = old.assignee;
            }
            match self.forwarding.as_ref().filter(|_| forward) {
                // With its forwarding outbox entry, in the same synced write.
                Some(fwd) => fwd.store_alert(&rec, alert.kind == AlertKind::Incident, &name)?,
                None => self.db.put_alert(&rec)?,
            }
            let age = now_ns.saturating_sub(alert.created_ns);
            let latency = Duration::from_nanos(age);
            match alert.kind {
                _ if age > LIVE_LATENCY_BOUND_NS => {
                    self.metrics
                        .alerts_on_old_events
                        .fetch_add(1, Ordering::Relaxed);
                }
                AlertKind::Incident => self.metrics.incident_latency.0.observe(latency),
                _ => self.metrics.alert_latency.0.observe(latency),
            }
        }
        if let Some(fwd) = self.forwarding.as_ref().filter(|_| forward) {
            fwd.alerts_stored();
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
    match db.pipeline_state()? {
        Some(saved) => Ok(Detector::restore(&saved.detector)?.model_status()),
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

/// How often the model board is refreshed when idle, and at most while
/// events are being scored.
const BOARD_EVERY: Duration = Duration::from_secs(5);
const BOARD_BUSY_EVERY: Duration = Duration::from_secs(1);

/// Run the pipeline until shutdown: a round every `poll`, state saved every
/// `save_every` and once more on the way out.
pub async fn run(core: Arc<Core>, cfg: PipelineConfig, mut shutdown: Shutdown) {
    let clock: Clock = core.clock.clone();
    let mut pipeline = match Pipeline::open(core.db.clone(), core.notices.clone(), &cfg, clock()) {
        Ok(p) => p
            .with_metrics(core.metrics.clone())
            .with_sigma_dir(core.data_dir.join(SIGMA_RULES_DIR))
            .with_forwarding(core.forwarding.clone()),
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
mod tests;
