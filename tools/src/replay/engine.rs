//! Streaming: the source on its own thread, the dispatcher that paces
//! events and hands them to their host's spool, progress samples, and the
//! drain that waits for the last acknowledgement.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::hosts::{Dispatcher, Shared};
use super::{
    Progress, ProgressFn, ReplayError, ReplayHost, ReplayItem, ReplayOptions, ReplayReport,
    ReplayedHost,
};

/// Items read from the source per hand-over to the dispatcher.
const CHUNK: usize = 1024;

fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Replay `source` into the appliance of `opts`; see the module docs.
pub async fn replay<I>(source: I, opts: ReplayOptions) -> Result<ReplayReport, ReplayError>
where
    I: IntoIterator<Item = ReplayItem> + Send + 'static,
{
    let started = Instant::now();
    let hosts_dir = opts.state_dir.join("hosts");
    std::fs::create_dir_all(&hosts_dir).map_err(|source| ReplayError::Io {
        path: hosts_dir.clone(),
        source,
    })?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shared = Shared::new();
    let mut d = Dispatcher::new(opts.clone(), shutdown_rx, shared.clone())?;
    let (mut rx, reader) = spawn_reader(source, &opts)?;
    let progress_task = opts.progress.clone().map(|f| {
        let stop = d.shutdown.clone();
        tokio::spawn(report_progress(
            f,
            shared.clone(),
            opts.progress_every,
            stop,
            started,
        ))
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

    drain(&mut d).await;
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

/// Runs the source on a thread of its own (adapters read and parse
/// files), handing items over in chunks of [`CHUNK`].
fn spawn_reader<I>(
    source: I,
    opts: &ReplayOptions,
) -> Result<(mpsc::Receiver<Vec<ReplayItem>>, std::thread::JoinHandle<()>), ReplayError>
where
    I: IntoIterator<Item = ReplayItem> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Vec<ReplayItem>>(8);
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
    Ok((rx, reader))
}

/// Calls `f` with a progress sample every `every` until `stop` changes.
async fn report_progress(
    f: ProgressFn,
    shared: Shared,
    every: Duration,
    mut stop: watch::Receiver<bool>,
    started: Instant,
) {
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
}

/// Waits until every spooled event is acknowledged, or until no
/// acknowledgement arrived for `stall_timeout`.
async fn drain(d: &mut Dispatcher) {
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
        } else if last_progress.elapsed() >= d.opts.stall_timeout {
            tracing::warn!(
                acked,
                total,
                "replay: no acknowledgement for {:?}; stopping",
                d.opts.stall_timeout
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
            let ts = d.opts.time.stamp(ev.header.ts_ns, t0, w0);
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
