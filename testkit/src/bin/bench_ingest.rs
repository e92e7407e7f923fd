//! `bench-ingest`: acknowledged ingest rate over real QUIC on loopback
//! against raw synced RocksDB write batches of the same data, bytes per
//! stored event after compaction, and CPU of the appliance holding many
//! idle sensor connections. Last line: one JSON object.
//!
//! Flags: `--sensors N` (8), `--batches-per-sensor N` (40), `--batch N` (2000),
//! `--in-flight N` (4), `--idle N` (10000), `--idle-secs N` (20).
//! Internal: `--serve-appliance DIR` runs only the appliance (the idle test
//! measures that child process's CPU from /proc).

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_appliance::db::events::{payload_value, seq_index_value};
use vigil_appliance::db::keys::{event_key, seq_key};
use vigil_appliance::db::HostRecord;
use vigil_appliance::store::rocks::RocksStore;
use vigil_appliance::store::{Cf, Store, WriteBatch};
use vigil_appliance::{Appliance, ServeConfig};
use vigil_proto::{Batch, ControlMessage, Event, HostId};
use vigil_testkit::sim_sensor::{client_endpoint, enroll, realistic_events, Credentials, SimConn};

const T0: u64 = 1_750_000_000_000_000_000;

struct Opts {
    sensors: usize,
    batches: usize,
    batch: usize,
    in_flight: usize,
    idle: usize,
    idle_secs: u64,
}

fn parse() -> Result<(Opts, Option<String>)> {
    let mut o = Opts {
        sensors: 8,
        batches: 40,
        batch: 2000,
        in_flight: 4,
        idle: 10_000,
        idle_secs: 20,
    };
    let mut serve = None;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let val = args.get(i + 1).cloned().unwrap_or_default();
        let num = || {
            val.parse::<usize>()
                .with_context(|| format!("{} needs a number", args[i]))
        };
        match args[i].as_str() {
            "--sensors" => o.sensors = num()?,
            "--batches-per-sensor" => o.batches = num()?,
            "--batch" => o.batch = num()?,
            "--in-flight" => o.in_flight = num()?,
            "--idle" => o.idle = num()?,
            "--idle-secs" => o.idle_secs = num()? as u64,
            "--serve-appliance" => serve = Some(val),
            other => bail!("unknown flag {other}"),
        }
        i += 2;
    }
    Ok((o, serve))
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let (opts, serve) = parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(dir) = serve {
        return rt.block_on(serve_only(&dir));
    }
    let data = tempfile::tempdir()?;
    let (acked_rate, events, bytes_per_event, events_only_bpe, frames) =
        rt.block_on(acked_ingest(&opts, data.path()))?;
    let raw_rate = raw_rocksdb(&frames)?;
    drop(frames);
    let (idle_pct, idle_conns) = rt.block_on(idle_connections(&opts))?;
    let ratio = acked_rate / raw_rate;
    println!(
        "== vigil ingest bench ({} sensors x {} batches x {} events, {} in flight per sensor) ==",
        opts.sensors, opts.batches, opts.batch, opts.in_flight
    );
    println!("{:<52} {:>14}", "metric", "value");
    println!(
        "{:<52} {:>14.0}",
        "acknowledged events/s (QUIC, synced group commit)", acked_rate
    );
    println!(
        "{:<52} {:>14.0}",
        "raw synced RocksDB write batches, events/s", raw_rate
    );
    println!("{:<52} {:>14.3}", "ratio acked / raw", ratio);
    println!("{:<52} {:>14}", "events stored", events);
    println!(
        "{:<52} {:>14.1}",
        "bytes/event on disk after compaction (+seq index)", bytes_per_event
    );
    println!(
        "{:<52} {:>14.1}",
        "bytes/event, events column family only", events_only_bpe
    );
    println!("{:<52} {:>14}", "idle connections held", idle_conns);
    println!(
        "{:<52} {:>14.2}",
        "appliance CPU % of one core, idle connections", idle_pct
    );
    if idle_conns < opts.idle {
        println!(
            "note: only {idle_conns} of {} idle connections could be opened on this machine",
            opts.idle
        );
    }
    println!(
        "{{\"bench\":\"ingest\",\"acked_events_per_s\":{:.0},\"raw_rocksdb_events_per_s\":{:.0},\"ratio\":{:.3},\"bytes_per_event\":{:.1},\"idle_10k_cpu_pct\":{:.2}}}",
        acked_rate, raw_rate, ratio, bytes_per_event, idle_pct
    );
    Ok(())
}

/// Encoded batches, kept to replay them into raw RocksDB.
type Frames = Vec<Vec<Event>>;

async fn acked_ingest(o: &Opts, dir: &Path) -> Result<(f64, u64, f64, f64, Frames)> {
    let mut cfg = ServeConfig::new(dir).loopback();
    cfg.admin_socket = false;
    // The bench's events are dated from a fixed T0, not the wall clock: an
    // explicit historical import, so they are stored, not quarantined.
    cfg.ingest_rules = historical_import();
    cfg.retention_interval = Duration::from_secs(3600);
    let app = Appliance::start(cfg).await?;
    let ep = client_endpoint()?;
    let tok = app.create_token(Duration::from_secs(600), o.sensors as u32)?;
    let mut conns = Vec::new();
    let mut all_batches: Frames = Vec::new();
    let mut work = Vec::new();
    for i in 0..o.sensors {
        let creds = enroll(
            &ep,
            app.quic_addr,
            &app.ca_der(),
            &tok.token,
            &format!("bench-{i}"),
        )
        .await?
        .map_err(|r| anyhow::anyhow!("enroll refused: {}", r.message))?;
        let mut c = SimConn::connect(&ep, app.quic_addr, &creds).await?;
        c.hello(1).await?;
        // Pre-encode every frame so the clock measures the appliance, not the generator.
        let mut frames = Vec::new();
        for b in 0..o.batches {
            let first = 1 + (b * o.batch) as u64;
            let evs = realistic_events(
                creds.host,
                first,
                o.batch,
                T0 + (b as u64) * 3_000_000_000,
                42,
            );
            frames.push(
                Batch {
                    events: evs.clone(),
                }
                .to_frame()?,
            );
            all_batches.push(evs);
        }
        work.push(frames);
        conns.push(Arc::new(c));
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, frames) in conns.iter().zip(work) {
        let frames = Arc::new(frames);
        for lane in 0..o.in_flight {
            let (c, frames) = (c.clone(), frames.clone());
            let lanes = o.in_flight;
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                for f in frames.iter().skip(lane).step_by(lanes) {
                    match c.send_raw(f).await? {
                        ControlMessage::Ack(a) => n += a.last_seq - a.first_seq + 1,
                        other => bail!("not acked: {other:?}"),
                    }
                }
                Ok(n)
            }));
        }
    }
    let mut acked = 0;
    for t in tasks {
        acked += t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let db = app.db();
    let store = db.store().clone();
    let stored: u64 = app.reader().stats()?.events_total;
    app.shutdown().await;
    drop(conns);
    store.flush()?;
    store.compact(Cf::Events, None, None)?;
    store.compact(Cf::SeqIndex, None, None)?;
    let ev_bytes = store.size_bytes(Cf::Events) as f64;
    let all = ev_bytes + store.size_bytes(Cf::SeqIndex) as f64;
    Ok((
        acked as f64 / secs,
        stored,
        all / stored as f64,
        ev_bytes / stored as f64,
        all_batches,
    ))
}

fn raw_rocksdb(batches: &Frames) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let store = RocksStore::open(dir.path())?;
    // Encode outside the clock, as the appliance's connection tasks do.
    let prepared: Vec<WriteBatch> = batches
        .iter()
        .map(|evs| {
            let mut wb = WriteBatch::default();
            for e in evs {
                let h = e.header;
                wb.put(
                    Cf::Events,
                    event_key(h.host, h.ts_ns, h.seq),
                    payload_value(&e.payload),
                );
                wb.put(
                    Cf::SeqIndex,
                    seq_key(h.host, h.seq),
                    seq_index_value(h.ts_ns),
                );
            }
            wb
        })
        .collect();
    let n: usize = batches.iter().map(Vec::len).sum();
    let started = Instant::now();
    for wb in prepared {
        store.write(wb, true)?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Ingest rules for data dated by the bench, not the wall clock.
fn historical_import() -> vigil_appliance::ingest::rules::IngestRules {
    vigil_appliance::ingest::rules::IngestRules {
        max_future_ns: u64::MAX,
        accept_historical: true,
    }
}

async fn serve_only(dir: &str) -> Result<()> {
    let mut cfg = ServeConfig::new(dir).loopback();
    cfg.admin_socket = false;
    cfg.ingest_rules = historical_import();
    cfg.retention_interval = Duration::from_secs(3600);
    // `VIGIL_BENCH_DETECTION=0` measures the idle appliance without its
    // detection pipeline (to see what each part costs).
    if std::env::var("VIGIL_BENCH_DETECTION").is_ok_and(|v| v == "0") {
        cfg.pipeline = None;
    }
    let app = Appliance::start(cfg).await?;
    tokio::signal::ctrl_c().await?;
    app.shutdown().await;
    Ok(())
}

fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("stat format")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

/// Pre-enroll `n` hosts directly in the store (one key, many certificates),
/// run the appliance in a child process, connect them all, say hello, send
/// heartbeats at the configured interval, and measure the child's CPU.
async fn idle_connections(o: &Opts) -> Result<(f64, usize)> {
    if o.idle == 0 {
        return Ok((0.0, 0));
    }
    let dir = tempfile::tempdir()?;
    let key = rcgen::KeyPair::generate()?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())?.serialize_request(&key)?;
    let creds: Vec<Credentials> = {
        let (core, _) = vigil_appliance::Core::open(dir.path(), vigil_appliance::system_clock())?;
        let mut out = Vec::with_capacity(o.idle);
        for i in 0..o.idle {
            let host = HostId(0x1000_0000 + i as u64);
            core.db.put_host_record(
                &HostRecord {
                    id: host.0,
                    hostname: format!("idle-{i}"),
                    ..Default::default()
                },
                false,
            )?;
            out.push(Credentials {
                host,
                cert_der: core.pki.sign_client_csr(
                    csr.der(),
                    host,
                    std::time::SystemTime::now(),
                )?,
                key_der: key.serialize_der(),
                ca_der: core.pki.ca_der().to_vec(),
            });
        }
        core.db.store().flush()?;
        out
    };
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args(["--serve-appliance", dir.path().to_str().context("path")?])
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("child pid")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        if let Some(a) = vigil_appliance::admin::read_addresses(dir.path()).filter(|a| a.pid == pid)
        {
            break a.quic;
        }
        if Instant::now() > deadline {
            bail!("appliance child did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let endpoints: Vec<quinn::Endpoint> = (0..16)
        .map(|_| client_endpoint())
        .collect::<Result<_, _>>()?;
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let connect_deadline = Instant::now() + Duration::from_secs(240);
    let mut tasks = Vec::new();
    for (i, c) in creds.into_iter().enumerate() {
        let ep = endpoints[i % endpoints.len()].clone();
        let (connected, stop, sem) = (connected.clone(), stop.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.ok()?;
            if Instant::now() > connect_deadline {
                return None;
            }
            let mut conn = SimConn::connect(&ep, addr, &c).await.ok()?;
            let hb_ms = match conn.hello(1).await.ok()? {
                ControlMessage::Welcome(w) => w.config.heartbeat_ms as u64,
                _ => return None,
            };
            drop(permit);
            connected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let jitter = Duration::from_millis(rand::random::<u64>() % hb_ms.max(1));
            tokio::time::sleep(jitter).await;
            let mut tick = tokio::time::interval(Duration::from_millis(hb_ms.max(100)));
            loop {
                tokio::select! {
                    _ = stop.notified() => break,
                    _ = tick.tick() => { if conn.heartbeat(T0).await.is_err() { break; } }
                }
            }
            Some(conn)
        }));
    }
    // Wait until every connection is up (or the connect budget is spent).
    loop {
        let n = connected.load(std::sync::atomic::Ordering::Relaxed);
        if n == o.idle || Instant::now() > connect_deadline {
            break;
        }
        eprintln!("idle: {n}/{} connected", o.idle);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n = connected.load(std::sync::atomic::Ordering::Relaxed);
    let hz = 100.0; // USER_HZ on Linux
    let t0 = cpu_ticks(pid)?;
    let w0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(o.idle_secs)).await;
    let t1 = cpu_ticks(pid)?;
    let pct = (t1 - t0) as f64 / hz / w0.elapsed().as_secs_f64() * 100.0;
    stop.notify_waiters();
    for t in tasks {
        t.abort();
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    Ok((pct, n))
}
