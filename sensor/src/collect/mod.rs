//! Collectors: each runs in its own thread, turns what the kernel or a log
//! shows into [`Payload`]s, hands them to the [`Sink`], and keeps its
//! [`CollectorStats`] (visibility, events, misses) current.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use vigil_proto::Payload;

use crate::health::CollectorStats;

/// One observation: when (ns since the epoch) and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Wall-clock time of the observation, ns.
    pub ts_ns: u64,
    /// What was observed.
    pub payload: Payload,
}

/// Where collectors put observations (a bounded channel: when the pipeline
/// falls behind, collectors block and the kernel side counts overruns).
#[derive(Debug, Clone)]
pub struct Sink {
    tx: mpsc::Sender<Observed>,
}

impl Sink {
    /// A sink and its receiving end, holding at most `capacity` observations.
    pub fn channel(capacity: usize) -> (Sink, mpsc::Receiver<Observed>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Sink { tx }, rx)
    }

    /// Send from a collector thread, blocking while the channel is full.
    /// False when the pipeline is gone (shutdown).
    pub fn emit(&self, payload: Payload) -> bool {
        self.tx
            .blocking_send(Observed {
                ts_ns: now_ns(),
                payload,
            })
            .is_ok()
    }

    /// Send from async code.
    pub async fn emit_async(&self, payload: Payload) -> bool {
        self.tx
            .send(Observed {
                ts_ns: now_ns(),
                payload,
            })
            .await
            .is_ok()
    }
}

/// Wall-clock now, ns since the Unix epoch.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// What every collector thread gets.
#[derive(Debug, Clone)]
pub struct CollectorCtx {
    /// Output.
    pub sink: Sink,
    /// Its counters and visibility.
    pub stats: Arc<CollectorStats>,
    /// Set when the collector must stop.
    pub stop: Arc<AtomicBool>,
    /// Log-writing processes (sshd, su, sudo): noted by the process
    /// collector, checked by the login collector. One per sensor.
    pub log_writers: Arc<process::LogWriters>,
}

impl CollectorCtx {
    /// True once shutdown was requested.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Emit and count one event; false when the pipeline is gone.
    pub fn emit(&self, payload: Payload) -> bool {
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        self.sink.emit(payload)
    }
}

pub mod auth;
pub mod ebpf;
pub mod files;
pub mod network;
pub mod process;
pub mod wtmp;

/// Start the named collector's thread.
pub fn spawn(
    name: &'static str,
    ctx: CollectorCtx,
    config: &crate::config::Config,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let c = config.collectors.clone();
    let netns = config.netns.clone();
    let builder = std::thread::Builder::new().name(format!("collect-{name}"));
    match name {
        "process" => {
            let filter = match &netns {
                Some(ns) => Some(process::netns_inode(ns).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("--netns {ns}: /run/netns/{ns}: {e}"))
                })?),
                None => None,
            };
            // Loaded here, before the thread starts, so that `ebpf` mode
            // fails the sensor's start with the reason.
            let chosen = process::ebpf::choose(c.process_backend, filter).map_err(|e| {
                std::io::Error::other(format!("collectors.process_backend = \"ebpf\": {e}"))
            })?;
            // Said before the thread starts, so health names it at once.
            ctx.stats.set_backend(chosen.label());
            builder.spawn(move || process::ebpf::run_chosen(ctx, filter, chosen))
        }
        "network" => {
            // The connector choice means "no eBPF": the /proc scan alone.
            let ebpf = c.process_backend != crate::config::ProcessBackend::Connector;
            builder.spawn(move || network::run_with(ctx, c.network_poll, netns, ebpf))
        }
        "auth" => {
            let wtmp = netns.is_none();
            builder.spawn(move || auth::run(ctx, c.auth_log, wtmp))
        }
        "files" => {
            let paths = c.file_paths.unwrap_or_else(files::default_paths);
            builder.spawn(move || files::run(ctx, paths))
        }
        other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("unknown collector {other}"),
        )),
    }
}
