//! `bench-sensor`: overhead and capture of the sensor under an exec + connect
//! workload.
//!
//! Phases: the 10k/s workload alone (baseline), then with the sensor (process
//! and network collectors, pipeline and on-disk spool; no appliance, so the
//! uplink only retries) running in a child process: 1k/s, then 10k/s. Half
//! of each rate is `/bin/true <marker>` execs, half TCP connects to a
//! loopback listener, each held `--hold-ms` (default 1100 ms, longer than the
//! 1 s sock_diag poll) and closed with RST so no TIME_WAIT piles up.
//!
//! Prints a table, then as its last line one JSON object:
//! `{"bench":"sensor","cpu_pct_1k":…,"cpu_pct_10k":…,"rss_mb":…,
//!   "capture_ratio_1k":…,"capture_ratio_10k":…,"workload_slowdown_10k":…,
//!   "proc_read_us_per_exec":…,"backend":…}`; `proc_read_us_per_exec` is
//! the CPU cost of the `/proc` reads behind one exec event (on fresh
//! processes), the floor of the process collector with the proc connector,
//! which the eBPF backend does not pay; `backend` is what the process
//! collector ran on (`--backend auto|ebpf|connector`, default auto).
//! `VIGIL_BENCH_SECS` (or `--secs`) shortens the 30 s phases.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use vigil_proto::{HostId, Payload};
use vigil_sensor::health::{clk_tck, proc_cpu_ticks};
use vigil_sensor::{Config, Identity, Sensor};

#[derive(Parser)]
#[command(name = "bench-sensor", about = "Sensor overhead and capture benchmark")]
struct Args {
    /// Seconds per phase (default 30, or VIGIL_BENCH_SECS).
    #[arg(long)]
    secs: Option<f64>,
    /// How long each connection is held open, ms.
    #[arg(long, default_value_t = 1100)]
    hold_ms: u64,
    /// Process collector backend: auto (the default: eBPF, else the
    /// netlink connector), ebpf or connector.
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Internal: run as the sensor child.
    #[arg(long, hide = true)]
    child: bool,
    /// Internal: child's state directory.
    #[arg(long, hide = true)]
    state: Option<std::path::PathBuf>,
    /// Internal: marker argument of workload execs.
    #[arg(long, hide = true)]
    marker: Option<String>,
    /// Internal: workload listener port.
    #[arg(long, hide = true)]
    port: Option<u16>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.child {
        return child(args);
    }
    parent(args)
}

// ---------- child: the sensor ----------

fn child(args: Args) -> anyhow::Result<()> {
    let state = args.state.expect("--state");
    let marker = args.marker.expect("--marker");
    let port = args.port.expect("--port");
    // The same runtime as `vigil-sensor run` (src/main.rs).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut cfg = Config::new("127.0.0.1:9", &state);
        cfg.collectors.process_backend = args
            .backend
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--backend: {e}"))?;
        cfg.collectors.auth = false;
        cfg.collectors.files = false;
        cfg.backoff_min = Duration::from_secs(30);
        cfg.backoff_max = Duration::from_secs(60);
        let identity = Identity {
            host: HostId(1),
            key_der: Vec::new(),
            cert_der: Vec::new(),
            ca_der: Vec::new(),
            stored_in: None,
        };
        let handle = Sensor::start_with(cfg, identity, None).await?;
        let spool = handle.spool.clone();
        let mut out = std::io::stdout();
        let backend = handle
            .health
            .collectors
            .iter()
            .find(|c| c.name == "process")
            .and_then(|c| c.backend())
            .unwrap_or_else(|| "unknown".into());
        // The backend's label can carry a load error: keep it on one line.
        writeln!(out, "ready {}", backend.replace('\n', " "))?;
        out.flush()?;
        // Commands arrive one per line; read them with a blocking thread.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(4);
        std::thread::spawn(move || {
            for l in std::io::stdin().lock().lines().map_while(Result::ok) {
                if tx.blocking_send(l).is_err() {
                    break;
                }
            }
        });
        let mut counted_up_to = 0u64;
        while let Some(cmd) = rx.recv().await {
            match cmd.as_str() {
                c if c.starts_with("count ") => {
                    // The workload's exec'd pids for this phase, one per line.
                    let pids: std::collections::HashSet<u32> = std::fs::read_to_string(&c[6..])?
                        .lines()
                        .filter_map(|l| l.parse().ok())
                        .collect();
                    let (mut seen, mut enriched, mut connects) = (0u64, 0u64, 0u64);
                    let counted_from = counted_up_to;
                    let mut kinds: std::collections::BTreeMap<&'static str, u64> =
                        std::collections::BTreeMap::new();
                    {
                        let mut sp = spool.lock().expect("spool");
                        sp.rewind();
                        loop {
                            let chunk = sp.pending(10_000)?;
                            if chunk.is_empty() {
                                break;
                            }
                            for ev in chunk {
                                if ev.header.seq <= counted_up_to {
                                    continue;
                                }
                                counted_up_to = ev.header.seq;
                                *kinds.entry(ev.payload.kind().name()).or_default() += 1;
                                match ev.payload {
                                    Payload::ProcessStart(p) if pids.contains(&p.pid) => {
                                        seen += 1;
                                        if p.argv.get(1) == Some(&marker) {
                                            enriched += 1;
                                        }
                                    }
                                    Payload::NetConnect(f) if f.remote.port() == port => {
                                        connects += u64::from(f.repeat.max(1))
                                    }
                                    _ => {}
                                }
                            }
                        }
                    }
                    // Every event spooled since the last count (execs, exits,
                    // connects, accepts, anything else on the machine).
                    let events = counted_up_to - counted_from;
                    let kinds: Vec<String> =
                        kinds.iter().map(|(k, n)| format!("{k}={n}")).collect();
                    writeln!(
                        out,
                        "{seen} {enriched} {connects} {events} {}",
                        kinds.join(",")
                    )?;
                    out.flush()?;
                }
                _ => break,
            }
        }
        handle.shutdown().await;
        anyhow::Ok(())
    })
}

// ---------- parent: workload and measurement ----------

fn set_linger_zero(s: &impl AsRawFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: l is a valid linger struct of the given size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as u32,
        );
    }
}

fn raise_nofile() {
    let lim = libc::rlimit {
        rlim_cur: 200_000,
        rlim_max: 200_000,
    };
    // SAFETY: lim is a valid rlimit.
    unsafe {
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

#[derive(Debug, Default, Clone)]
struct Load {
    pids: Vec<u32>,
    execs: u64,
    connects: u64,
    busy: Duration,
    exec_busy: Duration,
    wall: Duration,
}

impl Load {
    fn ops(&self) -> u64 {
        self.execs + self.connects
    }
    fn per_op_us(&self) -> f64 {
        self.busy.as_secs_f64() * 1e6 / self.ops().max(1) as f64
    }
    fn exec_us(&self) -> f64 {
        self.exec_busy.as_secs_f64() * 1e6 / self.execs.max(1) as f64
    }
    fn connect_us(&self) -> f64 {
        (self.busy - self.exec_busy).as_secs_f64() * 1e6 / self.connects.max(1) as f64
    }
    /// Mean op time relative to `base`, execs and connects weighted equally
    /// (as in the workload), so a different mix of completed ops between
    /// runs does not count as slowdown.
    fn slowdown_vs(&self, base: &Load) -> f64 {
        0.5 * self.exec_us() / base.exec_us().max(1e-9)
            + 0.5 * self.connect_us() / base.connect_us().max(1e-9)
    }
}

/// Run `rate` events/s (half execs, half connects) for `secs`.
fn workload(rate: f64, secs: f64, marker: &str, target: SocketAddr, hold: Duration) -> Load {
    let exec_threads = 4usize;
    let conn_threads = 2usize;
    let per_exec = rate / 2.0 / exec_threads as f64;
    let per_conn = rate / 2.0 / conn_threads as f64;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut handles = Vec::new();
    for _ in 0..exec_threads {
        let marker = marker.to_string();
        handles.push(std::thread::spawn(move || {
            let mut l = Load::default();
            let step = Duration::from_secs_f64(1.0 / per_exec);
            let mut next = Instant::now();
            while Instant::now() < end {
                let now = Instant::now();
                if now < next {
                    std::thread::sleep(next - now);
                }
                let t = Instant::now();
                let child = Command::new("/bin/true")
                    .arg(&marker)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn();
                if let Ok(mut c) = child {
                    l.pids.push(c.id());
                    if c.wait().is_ok_and(|s| s.success()) {
                        l.execs += 1;
                    }
                }
                l.busy += t.elapsed();
                l.exec_busy += t.elapsed();
                next += step;
            }
            l
        }));
    }
    for _ in 0..conn_threads {
        handles.push(std::thread::spawn(move || {
            let mut l = Load::default();
            let step = Duration::from_secs_f64(1.0 / per_conn);
            let mut next = Instant::now();
            let mut held: VecDeque<(Instant, TcpStream)> = VecDeque::new();
            while Instant::now() < end {
                let now = Instant::now();
                while held
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > hold)
                {
                    held.pop_front();
                }
                if now < next {
                    std::thread::sleep(next - now);
                }
                let t = Instant::now();
                if let Ok(s) = TcpStream::connect(target) {
                    set_linger_zero(&s);
                    l.connects += 1;
                    held.push_back((Instant::now(), s));
                }
                l.busy += t.elapsed();
                next += step;
            }
            // Every connection lives its full hold time, the last ones too.
            if let Some((t, _)) = held.back() {
                std::thread::sleep(hold.saturating_sub(t.elapsed()));
            }
            l
        }));
    }
    let mut total = Load::default();
    for h in handles {
        let l = h.join().expect("worker");
        total.execs += l.execs;
        total.pids.extend(l.pids);
        total.connects += l.connects;
        total.busy += l.busy;
        total.exec_busy += l.exec_busy;
    }
    total.wall = start.elapsed();
    total
}

fn proc_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| proc_cpu_ticks(&s))
        .unwrap_or(0)
}

fn vm_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn thread_cpu_s() -> f64 {
    // SAFETY: ts is a valid timespec to fill.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The floor of per-exec enrichment: CPU µs of the collector's `/proc`
/// reads (the same code: `ProcDir` + `Enricher::read_process`) on `n` fresh
/// live processes, whose `/proc` entries are as cold as a new exec's.
fn proc_read_floor_us(n: usize) -> f64 {
    let mut enricher = vigil_sensor::collect::process::Enricher::new();
    let mut total = 0.0;
    let mut done = 0;
    for _ in 0..n {
        let Ok(mut c) = Command::new("/bin/sleep").arg("5").spawn() else {
            continue;
        };
        std::thread::sleep(Duration::from_millis(2));
        let t = thread_cpu_s();
        let dir = vigil_sensor::collect::process::ProcDir::open(c.id());
        let ns = dir.as_ref().map(|d| d.netns()).unwrap_or(0);
        // As in the collector: parent and start time from the fork event.
        let fork = Some((std::process::id(), 0));
        let (p, _) = enricher.read_process(c.id(), dir.as_ref(), ns, fork);
        drop(dir);
        total += thread_cpu_s() - t;
        if p.exe.is_some() {
            done += 1;
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    total * 1e6 / done.max(1) as f64
}

struct Phase {
    name: &'static str,
    target: f64,
    load: Load,
    cpu_pct: f64,
    captured: (u64, u64, u64),
    /// Events the sensor spooled per second over the phase and its drain.
    events_per_s: f64,
}

fn parent(args: Args) -> anyhow::Result<()> {
    raise_nofile();
    let secs = args
        .secs
        .or_else(|| {
            std::env::var("VIGIL_BENCH_SECS")
                .ok()
                .and_then(|s| s.parse().ok())
        })
        .unwrap_or(30.0);
    let hold = Duration::from_millis(args.hold_ms);
    let marker = format!("vigil-bench-{}", std::process::id());
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let target = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    hold_connections(listener, hold, stop.clone())?;
    eprintln!("bench-sensor: {secs} s per phase; baseline 10k/s without the sensor...");
    let baseline = workload(10_000.0, secs, &marker, target, hold);

    let state_dir = std::env::temp_dir().join(format!("vigil-bench-sensor-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state_dir);
    std::fs::create_dir_all(&state_dir)?;
    let mut sensor = SensorChild::start(&args.backend, &marker, target, &state_dir)?;
    eprintln!(
        "bench-sensor: process collector backend: {}",
        sensor.backend
    );
    std::thread::sleep(Duration::from_secs(2));
    let pid = sensor.pid;
    let tck = clk_tck() as f64;
    let mut phases = Vec::new();
    sensor.count(&[])?;
    for (name, rate) in [("1k/s", 1_000.0), ("10k/s", 10_000.0)] {
        eprintln!("bench-sensor: {name} with the sensor...");
        let t0 = Instant::now();
        let c0 = proc_ticks(pid);
        let load = workload(rate, secs, &marker, target, hold);
        // Let the last polls and enrichments land.
        std::thread::sleep(Duration::from_millis(2500));
        let window = t0.elapsed().as_secs_f64();
        let cpu_pct = (proc_ticks(pid) - c0) as f64 / tck / window * 100.0;
        let (captured, events) = sensor.count(&load.pids)?;
        phases.push(Phase {
            name,
            target: rate,
            load,
            cpu_pct,
            captured,
            events_per_s: events as f64 / window,
        });
    }
    let report = Report {
        secs,
        hold,
        floor_us: proc_read_floor_us(300),
        rss_mb: vm_kb(pid, "VmHWM:") as f64 / 1024.0,
        rss_now_mb: vm_kb(pid, "VmRSS:") as f64 / 1024.0,
        backend: sensor.backend.clone(),
        baseline,
        phases,
    };
    sensor.quit();
    stop.store(true, Ordering::Relaxed);
    let _ = std::fs::remove_dir_all(&state_dir);
    report.print_table();
    report.print_summary();
    Ok(())
}

/// Accept on the workload's listener and hold the server sides until the
/// client resets them (a thread of its own, until `stop`).
fn hold_connections(
    listener: TcpListener,
    hold: Duration,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let mut held: VecDeque<(Instant, TcpStream)> = VecDeque::new();
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, _)) => {
                    set_linger_zero(&s);
                    held.push_back((Instant::now(), s));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
            let now = Instant::now();
            while held
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > hold + Duration::from_millis(500))
            {
                held.pop_front();
            }
        }
    });
    Ok(())
}

/// The sensor under test: this binary re-run with `--child`, driven one
/// command per line over its stdin, answering on its stdout.
struct SensorChild {
    child: std::process::Child,
    to_child: std::process::ChildStdin,
    from_child: BufReader<std::process::ChildStdout>,
    pid: u32,
    pid_file: std::path::PathBuf,
    /// What the process collector runs on, as the child's health says.
    backend: String,
}

impl SensorChild {
    fn start(
        backend: &str,
        marker: &str,
        target: SocketAddr,
        state_dir: &std::path::Path,
    ) -> anyhow::Result<SensorChild> {
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "--child",
                "--marker",
                marker,
                "--port",
                &target.port().to_string(),
                "--backend",
                backend,
                "--state",
            ])
            .arg(state_dir)
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let pid = child.id();
        let to_child = child.stdin.take().expect("piped");
        let mut from_child = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        from_child.read_line(&mut line)?;
        let backend = line
            .trim()
            .strip_prefix("ready")
            .map(|b| b.trim().to_string())
            .ok_or_else(|| anyhow::anyhow!("sensor child failed to start: {line:?}"))?;
        Ok(SensorChild {
            child,
            to_child,
            from_child,
            pid,
            pid_file: state_dir.join("pids.txt"),
            backend,
        })
    }

    /// Events the sensor spooled since the last count: (execs of `pids`
    /// seen, execs with argv read, connects), and how many events in all.
    fn count(&mut self, pids: &[u32]) -> anyhow::Result<((u64, u64, u64), u64)> {
        let text: String = pids.iter().map(|p| format!("{p}\n")).collect();
        std::fs::write(&self.pid_file, text)?;
        writeln!(self.to_child, "count {}", self.pid_file.display())?;
        self.to_child.flush()?;
        let mut l = String::new();
        self.from_child.read_line(&mut l)?;
        let words: Vec<&str> = l.split_whitespace().collect();
        let num = |i: usize| {
            words
                .get(i)
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if let Some(kinds) = words.get(4) {
            eprintln!("bench-sensor: spooled by kind: {kinds}");
        }
        Ok(((num(0), num(1), num(2)), num(3)))
    }

    /// Tell the child to stop and wait for it.
    fn quit(mut self) {
        let _ = writeln!(self.to_child, "quit");
        drop(self.to_child);
        let _ = self.child.wait();
    }
}

/// Everything one run measured.
struct Report {
    secs: f64,
    hold: Duration,
    baseline: Load,
    phases: Vec<Phase>,
    /// CPU µs of the `/proc` reads behind one exec.
    floor_us: f64,
    rss_mb: f64,
    rss_now_mb: f64,
    backend: String,
}

impl Report {
    /// Share of the workload's execs and connects the sensor spooled.
    fn ratio(p: &Phase) -> f64 {
        (p.captured.0 + p.captured.2) as f64 / p.load.ops().max(1) as f64
    }

    /// The table: one row per phase.
    fn print_table(&self) {
        let baseline = &self.baseline;
        println!(
            "vigil sensor benchmark ({} s per phase, connections held {} ms)",
            self.secs,
            self.hold.as_millis()
        );
        println!(
            "{:<22} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>12}",
            "phase",
            "target/s",
            "done/s",
            "execs",
            "seen",
            "connects",
            "seen",
            "cpu %",
            "µs per op",
            "sensor ev/s"
        );
        println!(
            "{:<22} {:>10.0} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11.1} {:>12}",
            "10k/s without sensor",
            10_000.0,
            baseline.ops() as f64 / baseline.wall.as_secs_f64(),
            baseline.execs,
            "-",
            baseline.connects,
            "-",
            "-",
            baseline.per_op_us(),
            "-"
        );
        for p in &self.phases {
            println!(
                "{:<22} {:>10.0} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>9.2} {:>11.1} {:>12.0}",
                format!("{} with sensor", p.name),
                p.target,
                p.load.ops() as f64 / p.load.wall.as_secs_f64(),
                p.load.execs,
                p.captured.0,
                p.load.connects,
                p.captured.2,
                p.cpu_pct,
                p.load.per_op_us(),
                p.events_per_s
            );
        }
    }

    /// The summary lines, then the JSON line (always the last).
    fn print_summary(&self) {
        let (baseline, phases, floor_us) = (&self.baseline, &self.phases, self.floor_us);
        let (rss_mb, rss_now_mb, backend) = (self.rss_mb, self.rss_now_mb, &self.backend);
        let ratio = Report::ratio;
        let enriched = |p: &Phase| p.captured.1 as f64 / p.captured.0.max(1) as f64;
        let slowdown = phases[1].load.slowdown_vs(baseline);
        println!(
            "mean op time at 10k/s: exec {:.0} µs without, {:.0} µs with the sensor; connect {:.0} µs without, {:.0} µs with",
            baseline.exec_us(),
            phases[1].load.exec_us(),
            baseline.connect_us(),
            phases[1].load.connect_us()
        );
        println!(
            "sensor RSS: peak {rss_mb:.1} MB, at end {rss_now_mb:.1} MB; capture 1k {:.4}, 10k {:.4}; exec argv/exe read for {:.1} % (1k) and {:.1} % (10k) of seen execs (/bin/true lives ~1 ms); workload slowdown at 10k/s {slowdown:.3}x",
            ratio(&phases[0]),
            ratio(&phases[1]),
            enriched(&phases[0]) * 100.0,
            enriched(&phases[1]) * 100.0
        );
        let execs_1k = phases[0].load.execs as f64 / phases[0].load.wall.as_secs_f64();
        println!(
            "connector floor: the /proc reads of one exec cost {floor_us:.1} µs of CPU here (fresh process; exe, cmdline, cwd, ns/net, uid), so {execs_1k:.0} execs/s cost at least {:.2} % of a core before any wakeup",
            floor_us * execs_1k / 1e4
        );
        println!("process collector backend: {backend}");
        // The short name for the JSON line (the label may carry a load error).
        let backend_key = backend.split([';', ' ']).next().unwrap_or("unknown");
        println!(
            "{{\"bench\":\"sensor\",\"cpu_pct_1k\":{:.3},\"cpu_pct_10k\":{:.3},\"rss_mb\":{:.1},\"capture_ratio_1k\":{:.4},\"capture_ratio_10k\":{:.4},\"workload_slowdown_10k\":{:.3},\"proc_read_us_per_exec\":{:.1},\"sensor_events_per_s_1k\":{:.0},\"sensor_events_per_s_10k\":{:.0},\"backend\":\"{backend_key}\"}}",
            phases[0].cpu_pct,
            phases[1].cpu_pct,
            rss_mb,
            ratio(&phases[0]),
            ratio(&phases[1]),
            slowdown,
            floor_us,
            phases[0].events_per_s,
            phases[1].events_per_s
        );
    }
}
