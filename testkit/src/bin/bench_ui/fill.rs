//! Filling a bench store through the real write path: host records and
//! health samples through [`Db`], events through the ingest writer
//! ([`spawn_writer_with`]: dedupe, seq sets, per-host counters, one
//! group-committed write of up to 200,000 events). That writer syncs the WAL
//! once per group; the fill does not need the durability (an interrupted
//! fill has no manifest and is rebuilt) and at that group size the syncs
//! cost nothing measurable. Alerts, incidents, triage and fleet edges go
//! through [`Db`] and the console store like the detection pipeline and the
//! console write them.

use crate::report::{dir_bytes, gib};
use crate::{Manifest, Opts, GENERATOR_VERSION, HOUR, MANIFEST, NOW};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;
use vigil_appliance::db::{HealthSample, HostRecord};
use vigil_appliance::ingest::writer::{spawn_writer_with, EncodedEvent};
use vigil_appliance::metrics::Metrics;
use vigil_appliance::notices::DetectionNotices;
use vigil_appliance::store::Cf;
use vigil_appliance::{Core, Db};
use vigil_proto::event::Event;
use vigil_proto::query::TriageState;
use vigil_testkit::fleet::{Fleet, FleetHost, HEARTBEAT_MS};
use vigil_web_ui::store::{ConsoleStore, Triage};

/// Batches generated or waiting for their ack at once.
const IN_FLIGHT: usize = 24;

/// The bench's fixed clock.
pub(crate) fn fixed_clock() -> vigil_appliance::Clock {
    Arc::new(|| NOW)
}

/// Build the store for `o` from `fleet` and write its manifest.
pub(crate) fn fill(o: &Opts, fleet: &Fleet) -> Result<Manifest> {
    fresh_dir(o)?;
    let (core, _) = Core::open(&o.store, fixed_clock())?;
    let db = core.db.clone();
    eprintln!(
        "filling {}: {} hosts, {} events, {} alerts (seed {:#x})",
        o.store.display(),
        o.hosts,
        o.events,
        o.alerts,
        o.seed
    );
    let started = Instant::now();
    for h in &fleet.hosts {
        db.put_host_record(&host_record(h), false)?;
    }
    let (stored, rate) = write_events(&db, fleet, started)?;
    write_health(&db, fleet)?;
    let edges = fleet.edges();
    for e in &edges {
        db.put_edge(e)?;
    }
    let n_alerts = write_alerts(&core, fleet, o.alerts)?;
    eprintln!(
        "plus {} health samples, {} fleet edges, {n_alerts} alerts and incidents",
        fleet.hosts.len() * 24,
        edges.len()
    );
    let store = db.store().clone();
    store.flush()?;
    let fill_secs = started.elapsed().as_secs_f64();
    let bytes_after_fill = dir_bytes(&o.store.join("db"));
    eprintln!(
        "fill done in {fill_secs:.1} s; on disk {} ({:.1} bytes/event)",
        gib(bytes_after_fill),
        bytes_after_fill as f64 / o.events as f64
    );
    let compact_secs = if o.compact {
        let t = Instant::now();
        eprintln!("compacting events and seq index (bottommost zstd) …");
        store.compact(Cf::Events, None, None)?;
        store.compact(Cf::SeqIndex, None, None)?;
        store.compact(Cf::Hosts, None, None)?;
        t.elapsed().as_secs_f64()
    } else {
        0.0
    };
    drop(core);
    let bytes_on_disk = dir_bytes(&o.store.join("db"));
    if o.compact {
        eprintln!(
            "compaction {compact_secs:.1} s; on disk {} ({:.1} bytes/event)",
            gib(bytes_on_disk),
            bytes_on_disk as f64 / o.events as f64
        );
    }
    let m = Manifest {
        generator_version: GENERATOR_VERSION,
        hosts: o.hosts,
        events: stored,
        alerts: o.alerts,
        seed: o.seed,
        now_ns: NOW,
        fill_secs,
        fill_events_per_s: rate,
        compact_secs,
        bytes_after_fill,
        bytes_on_disk,
    };
    std::fs::write(o.store.join(MANIFEST), serde_json::to_vec_pretty(&m)?)?;
    Ok(m)
}

/// Empty `o.store`, refusing to delete a directory that is not a bench store.
fn fresh_dir(o: &Opts) -> Result<()> {
    if o.store.exists() {
        let ours = o.store.join("db").exists()
            || o.store.join(MANIFEST).exists()
            || std::fs::read_dir(&o.store)?.next().is_none();
        if !ours {
            bail!(
                "{} exists and is not a bench-ui store; pick another --store",
                o.store.display()
            );
        }
        std::fs::remove_dir_all(&o.store)
            .with_context(|| format!("removing old store {}", o.store.display()))?;
    }
    std::fs::create_dir_all(&o.store)?;
    Ok(())
}

/// The registry record the appliance would hold for `h`.
fn host_record(h: &FleetHost) -> HostRecord {
    HostRecord {
        id: h.id.0,
        hostname: h.hostname.clone(),
        os: h.os.clone(),
        addrs: h.addrs.clone(),
        sensor_version: h.sensor_version.clone(),
        enrolled_ns: h.enrolled_ns,
        last_seen_ns: h.last_seen_ns,
        heartbeat_ms: HEARTBEAT_MS,
        revoked_ns: h.revoked_ns,
        isolated: h.isolated,
        cpu_pct: h.cpu_pct,
        rss_bytes: h.rss_bytes,
        events_per_s: h.events_per_s,
        spool_bytes: h.spool_bytes,
        dropped_total: h.dropped_total,
    }
}

/// An event encoded as a connection task hands it to the writer.
fn encode(e: &Event) -> EncodedEvent {
    EncodedEvent::from_event(e)
}

/// Every host's events through the ingest writer, host by host in id order
/// (so keys arrive nearly sorted, as a fleet's per-host streams do over
/// time), [`IN_FLIGHT`] batches at once. Returns (events stored, events/s).
fn write_events(db: &Db, fleet: &Fleet, started: Instant) -> Result<(u64, f64)> {
    let total = fleet.config.events;
    let jobs: Vec<(usize, u64)> = fleet
        .hosts
        .iter()
        .enumerate()
        .flat_map(|(i, h)| (0..h.batch_count()).map(move |b| (i, b)))
        .collect();
    let hosts: Arc<Vec<FleetHost>> = Arc::new(fleet.hosts.clone());
    let seed = fleet.config.seed;
    let pb = progress(total, "events");
    let mut plain = PlainProgress {
        total,
        next: total / 20,
        started,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let events_started = Instant::now();
    let stored: u64 = rt.block_on(async {
        // Events are dated around the bench's fixed NOW: an explicit
        // historical import, so none is quarantined by the time bounds.
        let rules = vigil_appliance::ingest::rules::IngestRules {
            max_future_ns: u64::MAX,
            accept_historical: true,
        };
        let (queue, writer) = spawn_writer_with(
            db.clone(),
            DetectionNotices::default(),
            Arc::new(Metrics::default()),
            64,
            rules,
            Arc::new(|| NOW),
        )?;
        let mut set = tokio::task::JoinSet::new();
        let mut done = 0u64;
        let mut jobs = jobs.into_iter();
        loop {
            while set.len() < IN_FLIGHT {
                let Some((i, b)) = jobs.next() else { break };
                let (q, hosts) = (queue.clone(), hosts.clone());
                set.spawn(async move {
                    let h = &hosts[i];
                    let events: Vec<EncodedEvent> = h.batch(b, seed).iter().map(encode).collect();
                    let n = events.len() as u64;
                    let bytes = events.iter().map(|e| e.value.len() as u64 + 24).sum();
                    q.submit(h.id, events, bytes).await.map(|ack| {
                        debug_assert_eq!(ack.duplicates, 0);
                        n
                    })
                });
            }
            let Some(r) = set.join_next().await else {
                break;
            };
            done += r.context("fill task")?.context("ingest writer")?;
            pb.set_position(done);
            plain.update(done);
        }
        drop(queue);
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("writer thread panicked"))?;
        anyhow::Ok(done)
    })?;
    pb.finish_and_clear();
    let event_secs = events_started.elapsed().as_secs_f64();
    let rate = stored as f64 / event_secs;
    eprintln!(
        "events stored: {stored} in {event_secs:.1} s = {rate:.0} events/s (ingest writer, group commit)"
    );
    Ok((stored, rate))
}

/// Health history: one sample per hour of each host's last day seen.
fn write_health(db: &Db, fleet: &Fleet) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(fleet.config.seed ^ 0x4ea1);
    for h in &fleet.hosts {
        for k in 0..24u64 {
            let ts = h.last_seen_ns.saturating_sub(k * HOUR);
            db.put_health(
                h.id,
                &HealthSample {
                    ts_ns: ts,
                    cpu_pct: h.cpu_pct * rng.gen_range(0.5..1.5),
                    rss_bytes: h.rss_bytes,
                    events_per_s: h.events_per_s * rng.gen_range(0.3..2.0),
                    spool_bytes: h.spool_bytes,
                    dropped_total: h.dropped_total,
                },
            )?;
        }
    }
    Ok(())
}

/// The generator's alerts with ids from the store, the incidents' edges,
/// and analysts' triage in the console store. Returns how many alert
/// records were written.
fn write_alerts(core: &Core, fleet: &Fleet, n: usize) -> Result<usize> {
    let db = &core.db;
    let plan = fleet.alerts(n, || db.next_alert_id())?;
    for e in &plan.edges {
        db.put_edge(e)?;
    }
    for a in &plan.alerts {
        let r = &a.record;
        db.put_alert(r)?;
        if !a.triaged {
            continue;
        }
        core.console.put_triage(
            r.id,
            Triage {
                state: r.state.clone(),
                assignee: r.assignee.clone(),
                note: matches!(
                    r.state,
                    TriageState::ClosedTruePositive | TriageState::ClosedFalsePositive
                )
                .then(|| "checked with the host owner".into()),
                updated_ns: r.created_ns + HOUR,
                updated_by: "admin".into(),
            },
        )?;
    }
    Ok(plan.alerts.len())
}

fn progress(total: u64, unit: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} [{{bar:40}}] {{human_pos}}/{{human_len}} {unit} {{per_sec}} eta {{eta}}"
        ))
        .expect("static template")
        .progress_chars("=> "),
    );
    pb
}

/// A plain progress line every 5 % when stderr is not a terminal (CI logs).
struct PlainProgress {
    total: u64,
    next: u64,
    started: Instant,
}

impl PlainProgress {
    fn update(&mut self, done: u64) {
        if std::io::stderr().is_terminal() || done < self.next {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64();
        eprintln!(
            "  {:>5.1} %  {done} events  {:.0} events/s  {secs:.0} s",
            done as f64 * 100.0 / self.total as f64,
            done as f64 / secs.max(1e-9)
        );
        self.next += (self.total / 20).max(1);
    }
}
