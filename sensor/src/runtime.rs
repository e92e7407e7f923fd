//! Wiring: collectors → pipeline (budget aggregation, spool append) →
//! uplink, plus the health sampler. [`Sensor::start`] returns a handle whose
//! [`SensorHandle::shutdown`] stops every task and thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, watch, Notify};
use vigil_proto::{Command, CommandResult, HostId};

use crate::collect::{self, now_ns, CollectorCtx, Observed, Sink};
use crate::config::Config;
use crate::enroll::{EnrollError, Identity};
use crate::health::{Aggregator, CollectorStats, Health};
use crate::spool::{Spool, SpoolError, SpoolOptions};
use crate::uplink::{CommandFn, HealthFn, Uplink, UplinkSettings, UplinkStatus};

/// Capacity of the collector → pipeline channel.
const SINK_CAPACITY: usize = 8192;
/// How often the pipeline drains the collectors' channel (each drain is a
/// wakeup; 100 ms adds nothing that matters to a 5 s alert budget).
const DRAIN_EVERY: Duration = Duration::from_millis(100);
/// How often aggregated flows are flushed while over budget.
const AGGREGATE_WINDOW: Duration = Duration::from_secs(1);

/// The sensor could not start.
#[derive(Debug, Error)]
pub enum SensorError {
    /// No usable identity (not enrolled yet?).
    #[error("{0} (run `vigil-sensor enroll` first)")]
    Identity(#[from] EnrollError),
    /// The spool could not be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The response executor's state could not be loaded.
    #[error(transparent)]
    Response(#[from] crate::response::ResponseError),
    /// A collector could not be set up.
    #[error("collector {name}: {message}")]
    Collector {
        /// Collector name.
        name: &'static str,
        /// Why.
        message: String,
    },
}

/// Entry point of the sensor library.
pub struct Sensor;

/// A running sensor.
pub struct SensorHandle {
    shutdown: watch::Sender<bool>,
    stop_threads: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Inject observations as a collector would (used by tests and replay).
    pub sink: Sink,
    /// The spool (for inspection).
    pub spool: Arc<Mutex<Spool>>,
    /// Uplink counters.
    pub uplink: Arc<UplinkStatus>,
    /// Health state.
    pub health: Arc<Health>,
}

impl Sensor {
    /// Start with the identity stored in `config.state_dir`.
    pub async fn start(config: Config) -> Result<SensorHandle, SensorError> {
        let identity = Identity::load(&config.state_dir)?;
        Sensor::start_with(config, identity, None).await
    }

    /// Start with an explicit identity and, optionally, a custom command executor.
    pub async fn start_with(
        config: Config,
        identity: Identity,
        commands: Option<CommandFn>,
    ) -> Result<SensorHandle, SensorError> {
        let spool = Spool::open(
            &config.spool_dir,
            identity.host,
            SpoolOptions {
                max_bytes: config.spool_max_bytes,
                max_age_ns: config.spool_max_age.as_nanos() as u64,
                ..SpoolOptions::default()
            },
        )?;
        let stats = spool.stats();
        if stats.torn_tails > 0 {
            tracing::warn!(
                torn = stats.torn_tails,
                "spool: repaired torn tails at start"
            );
        }
        let spool = Arc::new(Mutex::new(spool));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let stop_threads = Arc::new(AtomicBool::new(false));
        let (sink, rx) = Sink::channel(SINK_CAPACITY);

        let (collectors, threads) = spawn_collectors(&config, &sink, &stop_threads)?;
        let health = Health::new(collectors, config.cpu_budget_pct);
        let appended = Arc::new(Notify::new());
        let status = Arc::new(UplinkStatus::default());

        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(pipeline(
            rx,
            spool.clone(),
            appended.clone(),
            health.clone(),
            config.spool_max_age,
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(sampler(health.clone(), shutdown_rx.clone())));
        let health_fn: HealthFn = {
            let health = health.clone();
            let spool = spool.clone();
            Arc::new(move || {
                let (bytes, dropped) = {
                    let sp = spool.lock().expect("spool lock");
                    (sp.bytes(), sp.stats().dropped_total)
                };
                health.snapshot(bytes, dropped)
            })
        };
        let commands = match commands {
            Some(c) => c,
            None => start_responder(&config, identity.host, shutdown_rx.clone(), &mut tasks)?,
        };
        let uplink = Uplink {
            settings: UplinkSettings {
                appliance: config.appliance.clone(),
                batch_max_events: config.batch_max_events,
                batch_max: config.batch_max,
                heartbeat: config.heartbeat,
                backoff_min: config.backoff_min,
                backoff_max: config.backoff_max,
                connect_timeout: config.connect_timeout,
                netns: config.netns.clone(),
                hello_as: None,
            },
            identity,
            spool: spool.clone(),
            appended,
            health: health_fn,
            commands,
            status: status.clone(),
            budget_pct_bits: health.budget_pct_bits.clone(),
        };
        tasks.push(tokio::spawn(uplink.run(shutdown_rx)));
        Ok(SensorHandle {
            shutdown: shutdown_tx,
            stop_threads,
            tasks,
            threads,
            sink,
            spool,
            uplink: status,
            health,
        })
    }
}

/// The response executor: re-installs the containment in force (a reboot
/// lost it), and lifts isolations as they expire, checked every second.
fn start_responder(
    config: &Config,
    host: HostId,
    mut shutdown: watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<CommandFn, SensorError> {
    let ctx = crate::response::ResponseCtx::new(
        &config.appliance,
        config.netns.clone(),
        &config.state_dir,
    );
    let responder = Arc::new(crate::response::Responder::open(
        ctx,
        host,
        config.refuse.clone(),
    )?);
    if let Err(e) = responder.restore(now_ns()) {
        tracing::error!(error = %e, "response: cannot re-apply the containment in force");
    }
    if !config.refuse.is_empty() {
        let names: Vec<&str> = config.refuse.iter().map(|c| c.name()).collect();
        tracing::info!(refused = %names.join(", "), "response: action classes refused by policy");
    }
    let ticker = responder.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if !ticker.expiry_due(now_ns()) {
                        continue;
                    }
                    let r = ticker.clone();
                    let _ = tokio::task::spawn_blocking(move || r.tick(now_ns())).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }));
    Ok(Arc::new(move |cmd: Command| -> CommandResult {
        responder.handle(&cmd, now_ns())
    }))
}

/// The collector threads a sensor runs.
type Collectors = (Vec<Arc<CollectorStats>>, Vec<std::thread::JoinHandle<()>>);

/// Start the enabled collectors' threads, all sending to `sink` and
/// stopping on `stop`: their stats (for health) and their threads.
fn spawn_collectors(
    config: &Config,
    sink: &Sink,
    stop: &Arc<AtomicBool>,
) -> Result<Collectors, SensorError> {
    let mut threads = Vec::new();
    let mut collectors = Vec::new();
    let log_writers = Arc::new(collect::process::LogWriters::default());
    for (name, enabled) in [
        ("process", config.collectors.process),
        ("network", config.collectors.network),
        ("auth", config.collectors.auth),
        ("files", config.collectors.files),
    ] {
        if !enabled {
            continue;
        }
        let st = CollectorStats::new(name);
        let ctx = CollectorCtx {
            sink: sink.clone(),
            stats: st.clone(),
            stop: stop.clone(),
            log_writers: log_writers.clone(),
        };
        collectors.push(st);
        let handle = collect::spawn(name, ctx, config).map_err(|e| SensorError::Collector {
            name,
            message: e.to_string(),
        })?;
        threads.push(handle);
    }
    Ok((collectors, threads))
}

impl SensorHandle {
    /// The health record a heartbeat would carry now.
    pub fn health_snapshot(&self) -> vigil_proto::SensorHealth {
        let (bytes, dropped) = {
            let sp = self.spool.lock().expect("spool lock");
            (sp.bytes(), sp.stats().dropped_total)
        };
        self.health.snapshot(bytes, dropped)
    }

    /// Stop collectors, flush the pipeline into the spool, stop the uplink.
    pub async fn shutdown(self) {
        self.stop_threads.store(true, Ordering::SeqCst);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Err(e) = self.spool.lock().expect("spool lock").sync() {
            tracing::error!(error = %e, "spool sync at shutdown failed");
        }
    }
}

async fn pipeline(
    mut rx: mpsc::Receiver<Observed>,
    spool: Arc<Mutex<Spool>>,
    appended: Arc<Notify>,
    health: Arc<Health>,
    max_age: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut agg = Aggregator::default();
    let mut flush_tick = tokio::time::interval(AGGREGATE_WINDOW);
    let mut age_tick = tokio::time::interval(Duration::from_secs(60));
    // Drain on a short tick instead of waking per event: a sender only wakes
    // a receiver that is parked on the channel, so this keeps the sensor's
    // context switches independent of the event rate.
    let mut drain_tick = tokio::time::interval(DRAIN_EVERY);
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut ready: Vec<Observed> = Vec::new();
        tokio::select! {
            _ = drain_tick.tick() => {
                let over = health.over_budget.load(Ordering::Relaxed);
                let mut closed = false;
                loop {
                    match rx.try_recv() {
                        Ok(o) => {
                            if let Some(p) = agg.offer(o.payload, over) {
                                ready.push(Observed { ts_ns: o.ts_ns, payload: p });
                            }
                        }
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
                if closed && ready.is_empty() && agg.is_empty() {
                    break;
                }
            }
            _ = flush_tick.tick() => {
                let (out, folded) = agg.flush();
                health.aggregated_total.fetch_add(folded, Ordering::Relaxed);
                let ts = now_ns();
                ready.extend(out.into_iter().map(|payload| Observed { ts_ns: ts, payload }));
            }
            _ = age_tick.tick() => {
                let _ = max_age;
                if let Err(e) = spool.lock().expect("spool lock").enforce_age(now_ns()) {
                    tracing::error!(error = %e, "spool age enforcement failed");
                }
                appended.notify_one();
            }
            _ = shutdown.changed() => {
                // Drain what collectors already produced.
                while let Ok(o) = rx.try_recv() {
                    ready.push(o);
                }
                let (out, folded) = agg.flush();
                health.aggregated_total.fetch_add(folded, Ordering::Relaxed);
                let ts = now_ns();
                ready.extend(out.into_iter().map(|payload| Observed { ts_ns: ts, payload }));
                append_all(&spool, &health, ready);
                break;
            }
        }
        if !ready.is_empty() {
            append_all(&spool, &health, ready);
            appended.notify_one();
        }
    }
}

fn append_all(spool: &Mutex<Spool>, health: &Health, ready: Vec<Observed>) {
    let mut sp = spool.lock().expect("spool lock");
    // One write per drained batch, not one per event.
    if let Err((dropped, e)) = sp.append_batch(ready.into_iter().map(|o| (o.ts_ns, o.payload))) {
        // Full disk or similar: count it; the next successful append
        // continues the seq, and the health report shows the drop.
        health.dropped_total.fetch_add(dropped, Ordering::Relaxed);
        tracing::error!(error = %e, dropped, "spool append failed; events dropped");
    }
}

async fn sampler(health: Arc<Health>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => { health.sample(now_ns()); }
            _ = shutdown.changed() => return,
        }
    }
}
