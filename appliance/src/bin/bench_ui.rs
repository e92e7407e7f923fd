//! `bench-ui`: p95 server render time of the console's overview, host list,
//! host page and alert page over the appliance's real on-disk RocksDB store
//! (by default 10,000 hosts and 50 million events).
//!
//! The store is built once under `/var/cache/vigil/bench-ui-store` (flag
//! `--store DIR` or env `VIGIL_BENCH_UI_STORE`) and reused while its
//! `bench-ui-manifest.json` matches the requested size and seed. Everything
//! is generated from a seed, so two fills are identical.
//!
//! The fill goes through the real write path: host records and health
//! samples through [`Db`], events through the ingest writer
//! ([`spawn_writer`]: dedupe, seq sets, per-host counters, one group-committed
//! write of up to 200,000 events). That writer syncs the WAL once per group;
//! the fill does not need the durability (an interrupted fill has no manifest
//! and is rebuilt) and at that group size the syncs cost nothing measurable.
//! Alerts, incidents, triage and fleet edges go through [`Db`] and the
//! console store like the detection pipeline and the console write them.
//!
//! Pages are rendered by the real console page functions with the
//! appliance's [`StoreReader`] and [`RocksConsoleStore`], at a fixed "now".
//!
//! Flags: `--hosts N` (10000), `--events N` (50000000), `--alerts N` (300),
//! `--iterations N` (100), `--seed N`, `--store DIR`, `--rebuild`,
//! `--no-compact`. Last line: one JSON object.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use vigil_appliance::console::RocksConsoleStore;
use vigil_appliance::db::events::payload_value;
use vigil_appliance::db::{HealthSample, HostRecord};
use vigil_appliance::ingest::writer::{spawn_writer, EncodedEvent};
use vigil_appliance::metrics::Metrics;
use vigil_appliance::store::Cf;
use vigil_appliance::{Core, Db, StoreReader};
use vigil_proto::event::*;
use vigil_proto::query::{
    AlertFilter, AlertRecord, EdgeRecord, EventFilter, FeatureDeviation, ReadApi, Severity,
    TriageState,
};
use vigil_proto::HostId;
use vigil_web_ui::bench::{bench_admin, p95, BenchReport};
use vigil_web_ui::pages::{alerts, host, hosts, overview};
use vigil_web_ui::store::{ConsoleStore, Triage};
use vigil_web_ui::ConsoleState;

/// The fixed "now" of the whole bench (2026-05-28T20:26:40Z).
const NOW: u64 = 1_780_000_000_000_000_000;
const SEC: u64 = 1_000_000_000;
const HOUR: u64 = 3600 * SEC;
const DAY: u64 = 24 * HOUR;
/// Events span the week before [`NOW`].
const SPAN: u64 = 7 * DAY;
/// Events per submitted batch (one sensor batch).
const CHUNK: u64 = 10_000;
/// Batches generated or waiting for their ack at once.
const IN_FLIGHT: usize = 24;
/// Bump when the generator or the stored records change, so old stores are
/// rebuilt (2: alerts carry ports and processes).
const GENERATOR_VERSION: u32 = 2;
const MANIFEST: &str = "bench-ui-manifest.json";
const DEFAULT_STORE: &str = "/var/cache/vigil/bench-ui-store";

struct Opts {
    hosts: usize,
    events: u64,
    alerts: usize,
    iterations: usize,
    seed: u64,
    store: PathBuf,
    rebuild: bool,
    compact: bool,
}

fn parse() -> Result<Opts> {
    let mut o = Opts {
        hosts: 10_000,
        events: 50_000_000,
        alerts: 300,
        iterations: 100,
        seed: 0x005e_ed0f_0b5e,
        store: std::env::var_os("VIGIL_BENCH_UI_STORE")
            .map_or_else(|| PathBuf::from(DEFAULT_STORE), PathBuf::from),
        rebuild: false,
        compact: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--rebuild" => {
                o.rebuild = true;
                continue;
            }
            "--no-compact" => {
                o.compact = false;
                continue;
            }
            _ => {}
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let num = || -> Result<u64> {
            value
                .replace('_', "")
                .parse()
                .with_context(|| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--hosts" => o.hosts = num()? as usize,
            "--events" => o.events = num()?,
            "--alerts" => o.alerts = num()? as usize,
            "--iterations" => o.iterations = num()? as usize,
            "--seed" => o.seed = num()?,
            "--store" => o.store = PathBuf::from(&value),
            _ => bail!(
                "unknown flag {flag} (use --hosts, --events, --alerts, --iterations, --seed, \
                 --store DIR, --rebuild, --no-compact)"
            ),
        }
    }
    if o.hosts < 10 || o.events < o.hosts as u64 * 2 || o.alerts < 10 {
        bail!("need at least 10 hosts, 2 events per host and 10 alerts");
    }
    Ok(o)
}

/// What a finished fill wrote; a store is reused only when this matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Manifest {
    generator_version: u32,
    hosts: usize,
    events: u64,
    alerts: usize,
    seed: u64,
    now_ns: u64,
    fill_secs: f64,
    fill_events_per_s: f64,
    compact_secs: f64,
    bytes_after_fill: u64,
    bytes_on_disk: u64,
}

impl Manifest {
    fn matches(&self, o: &Opts) -> bool {
        self.generator_version == GENERATOR_VERSION
            && self.hosts == o.hosts
            && self.events == o.events
            && self.alerts == o.alerts
            && self.seed == o.seed
            && self.now_ns == NOW
    }
}

// ---------------------------------------------------------------- the fleet

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    /// Domain controllers, proxies, bastions, CI: ~0.1 % of hosts, ~10 % of events.
    VeryBusy,
    /// Servers: ~2 % of hosts, ~20 % of events.
    Busy,
    /// Workstations and small servers.
    Normal,
}

/// One host of the generated fleet.
#[derive(Debug, Clone)]
struct PlannedHost {
    rec: HostRecord,
    tier: Tier,
    /// Stored events, the loss record included.
    events: u64,
    /// `(k, m)`: seqs `k+1..=k+m` were dropped by the sensor and a loss
    /// record with seq `k+m+1` says so.
    loss: Option<(u64, u64)>,
    first_ts: u64,
    last_ts: u64,
    user: String,
}

impl PlannedHost {
    fn id(&self) -> HostId {
        HostId(self.rec.id)
    }

    /// Seq of the `j`-th stored event (0-based).
    fn seq_of(&self, j: u64) -> u64 {
        match self.loss {
            Some((k, m)) if j >= k => j + 1 + m,
            _ => j + 1,
        }
    }

    /// Timestamp of the `j`-th stored event: increasing, jittered.
    fn ts_of(&self, j: u64, jitter: f64) -> u64 {
        let span = (self.last_ts - self.first_ts) as f64;
        self.first_ts + (span * (j as f64 + jitter) / self.events as f64) as u64
    }

    fn local_ip(&self) -> IpAddr {
        self.rec.addrs[0]
    }
}

const OSES: [&str; 7] = [
    "Debian GNU/Linux 12 (bookworm)",
    "Ubuntu 22.04.4 LTS",
    "Ubuntu 24.04.1 LTS",
    "Red Hat Enterprise Linux 9.4 (Plow)",
    "Rocky Linux 9.3 (Blue Onyx)",
    "Debian GNU/Linux 11 (bullseye)",
    "Amazon Linux 2023",
];
const VERSIONS: [&str; 5] = ["0.1.0", "0.1.1", "0.1.2", "0.1.2", "0.2.0-rc.1"];
const VERY_BUSY: [&str; 12] = [
    "dc01",
    "dc02",
    "proxy01",
    "proxy02",
    "bastion01",
    "ci-runner01",
    "mail01",
    "fs01",
    "jump01",
    "logs01",
    "vault01",
    "git01",
];
const ROLES: [&str; 9] = [
    "web", "api", "db", "cache", "k8s-node", "kafka", "es", "etl", "auth",
];
const ENVS: [&str; 3] = ["prod", "stage", "dev"];
const DEPTS: [&str; 8] = [
    "finance", "eng", "sales", "hr", "legal", "ops", "support", "design",
];
const PEOPLE: [&str; 24] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yusuf", "zoe",
    "amir", "bea", "chen",
];

fn plan_fleet(o: &Opts) -> Vec<PlannedHost> {
    let mut rng = StdRng::seed_from_u64(o.seed);
    let n = o.hosts;
    let very_busy = (n / 1000).max(1);
    let busy = (n / 50).max(2);
    let mut ids = HashSet::new();
    let mut weights = Vec::with_capacity(n);
    let mut plan = Vec::with_capacity(n);
    for i in 0..n {
        let id = loop {
            let id = rng.gen::<u64>() >> 1;
            if id != 0 && ids.insert(id) {
                break id;
            }
        };
        let (tier, weight) = if i < very_busy {
            (Tier::VeryBusy, 50.0 * rng.gen_range(0.6..1.4))
        } else if i < very_busy + busy {
            (Tier::Busy, 5.0 * rng.gen_range(0.4..1.6))
        } else {
            (Tier::Normal, 0.35 * rng.gen_range(0.2..1.8))
        };
        weights.push(weight);
        let person = PEOPLE[rng.gen_range(0..PEOPLE.len())];
        let hostname = match tier {
            Tier::VeryBusy => match VERY_BUSY.get(i) {
                Some(name) => format!("{name}.corp.example"),
                None => format!("infra{i:02}.corp.example"),
            },
            Tier::Busy => format!(
                "{}-{}-{:03}",
                ROLES[i % ROLES.len()],
                ENVS[rng.gen_range(0..ENVS.len())],
                i
            ),
            Tier::Normal if i % 5 == 0 => {
                format!("{}-{}-{:03}", ROLES[i % ROLES.len()], ENVS[i % 3], i)
            }
            Tier::Normal if i % 3 == 0 => format!("lt-{person}{i}"),
            Tier::Normal => format!("ws-{}-{:04}", DEPTS[i % DEPTS.len()], i),
        };
        let block = i / 250;
        let mut addrs = vec![IpAddr::V4(Ipv4Addr::new(
            10,
            (16 + block / 256) as u8,
            (block % 256) as u8,
            (i % 250 + 2) as u8,
        ))];
        if rng.gen_bool(0.3) {
            addrs.push(IpAddr::V6(Ipv6Addr::new(
                0xfd00,
                0x0c0,
                0,
                block as u16,
                0,
                0,
                0,
                i as u16,
            )));
        }
        if tier != Tier::Normal && rng.gen_bool(0.5) {
            addrs.push(IpAddr::V4(Ipv4Addr::new(172, 17, 0, 1)));
        }
        let enrolled_ns = if rng.gen_bool(0.05) {
            NOW - rng.gen_range(HOUR..6 * DAY)
        } else {
            NOW - rng.gen_range(8 * DAY..400 * DAY)
        };
        let roll: f64 = rng.gen();
        let (last_seen_ns, revoked_ns) = if roll < 0.90 {
            (NOW - rng.gen_range(0..15 * SEC), None)
        } else if roll < 0.95 {
            (NOW - rng.gen_range(25 * SEC..95 * SEC), None)
        } else if roll < 0.99 {
            (NOW - rng.gen_range(HOUR..5 * DAY), None)
        } else {
            let seen = NOW - rng.gen_range(DAY..5 * DAY);
            (seen, Some(seen + rng.gen_range(SEC..HOUR)))
        };
        let last_seen_ns = last_seen_ns.max(enrolled_ns + HOUR);
        let rec = HostRecord {
            id,
            hostname,
            os: OSES[rng.gen_range(0..OSES.len())].into(),
            addrs,
            sensor_version: VERSIONS[rng.gen_range(0..VERSIONS.len())].into(),
            enrolled_ns,
            last_seen_ns,
            heartbeat_ms: 10_000,
            revoked_ns,
            isolated: rng.gen_bool(0.002),
            cpu_pct: rng.gen_range(0.1..if tier == Tier::Normal { 2.0 } else { 6.0 }),
            rss_bytes: rng.gen_range(
                14u64 << 20..if tier == Tier::Normal {
                    40 << 20
                } else {
                    120 << 20
                },
            ),
            events_per_s: 0.0,
            spool_bytes: if rng.gen_bool(0.05) {
                rng.gen_range(1 << 20..200 << 20)
            } else {
                0
            },
            dropped_total: 0,
        };
        plan.push(PlannedHost {
            first_ts: (NOW - SPAN).max(enrolled_ns),
            last_ts: last_seen_ns,
            rec,
            tier,
            events: 0,
            loss: None,
            user: person.to_owned(),
        });
    }
    // Events per host in proportion to the weights; the rounding rest goes to host 0.
    let total: f64 = weights.iter().sum();
    let mut assigned = 0;
    for (h, w) in plan.iter_mut().zip(&weights) {
        h.events = ((o.events as f64 * w / total) as u64).max(2);
        assigned += h.events;
    }
    plan[0].events = (plan[0].events + o.events).saturating_sub(assigned).max(2);
    for h in plan.iter_mut() {
        let span_s = ((h.last_ts - h.first_ts) / SEC).max(1) as f32;
        h.rec.events_per_s = h.events as f32 / span_s;
        if h.events > 100 && rng.gen_bool(0.02) {
            let k = rng.gen_range(1..h.events - 1);
            let m = rng.gen_range(50..5_000);
            h.loss = Some((k, m));
            h.rec.dropped_total = m;
        }
    }
    plan.sort_by_key(|h| h.rec.id);
    plan
}

// ---------------------------------------------------------------- events

const SERVICES: [&str; 10] = [
    "nginx",
    "postgresql",
    "redis-server",
    "sshd",
    "cron",
    "docker",
    "kubelet",
    "node_exporter",
    "rsyslog",
    "systemd-resolved",
];
const FILES: [&str; 14] = [
    "/etc/passwd",
    "/etc/shadow",
    "/etc/crontab",
    "/etc/sudoers.d/90-admin",
    "/etc/ssh/sshd_config",
    "/root/.ssh/authorized_keys",
    "/etc/systemd/system/app.service",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/usr/local/bin/deploy.sh",
    "/etc/cron.d/backup",
    "/var/spool/cron/crontabs/root",
    "/etc/ld.so.preload",
    "/etc/pam.d/sshd",
];
const EXTERNAL: [[u8; 2]; 6] = [
    [151, 101],
    [140, 82],
    [104, 16],
    [52, 84],
    [35, 186],
    [185, 199],
];

fn word(rng: &mut StdRng) -> String {
    const SYL: [&str; 16] = [
        "ka", "lo", "mi", "ne", "pu", "ra", "si", "to", "ve", "xo", "dat", "srv", "log", "cfg",
        "tmp", "bak",
    ];
    (0..rng.gen_range(1..4))
        .map(|_| SYL[rng.gen_range(0..SYL.len())])
        .collect()
}

fn process_start(h: &PlannedHost, rng: &mut StdRng, pid: u32, ts: u64) -> ProcessStart {
    let user = match rng.gen_range(0..10) {
        0..=3 => "root".to_owned(),
        4..=6 => h.user.clone(),
        7 => "www-data".to_owned(),
        8 => "postgres".to_owned(),
        _ => format!("svc-{}", SERVICES[rng.gen_range(0..SERVICES.len())]),
    };
    let (exe, argv): (&str, Vec<String>) = match rng.gen_range(0..14) {
        0 | 1 => (
            "/usr/bin/bash",
            vec![
                "bash".into(),
                "-c".into(),
                format!(
                    "cd /srv/{} && ./run.sh --env {} 2>&1 | tee -a /var/log/{}.log",
                    word(rng),
                    ENVS[rng.gen_range(0..3)],
                    word(rng)
                ),
            ],
        ),
        2 => (
            "/usr/bin/python3",
            (0..rng.gen_range(1..8))
                .map(|i| {
                    if i == 0 {
                        format!("/opt/{}/bin/{}.py", word(rng), word(rng))
                    } else {
                        format!("--{}={}", word(rng), rng.gen_range(0..10_000))
                    }
                })
                .fold(vec!["python3".to_owned()], |mut v, a| {
                    v.push(a);
                    v
                }),
        ),
        3 => (
            "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
            vec![
                "java".into(),
                format!("-Xmx{}m", 256 << rng.gen_range(0..5)),
                "-cp".into(),
                (0..rng.gen_range(3..25))
                    .map(|_| format!("/opt/app/lib/{}-{}.jar", word(rng), rng.gen_range(1..9)))
                    .collect::<Vec<_>>()
                    .join(":"),
                "-jar".into(),
                "/opt/app/app.jar".into(),
                "--spring.profiles.active=prod".into(),
            ],
        ),
        4 => (
            "/usr/bin/curl",
            vec![
                "curl".into(),
                "-fsSL".into(),
                format!(
                    "https://{}.example.com/api/v{}/{}?id={}",
                    word(rng),
                    rng.gen_range(1..4),
                    word(rng),
                    rng.gen::<u32>()
                ),
                "-o".into(),
                format!("/tmp/{}", word(rng)),
            ],
        ),
        5 => (
            "/usr/bin/ssh",
            vec![
                "ssh".into(),
                "-o".into(),
                "BatchMode=yes".into(),
                format!(
                    "{}@10.{}.{}.{}",
                    h.user,
                    rng.gen_range(16..18),
                    rng.gen_range(0..40),
                    rng.gen_range(2..252)
                ),
            ],
        ),
        6 => (
            "/usr/bin/ls",
            vec!["ls".into(), "-la".into(), format!("/home/{}", h.user)],
        ),
        7 => (
            "/usr/bin/grep",
            vec![
                "grep".into(),
                "-r".into(),
                word(rng),
                format!("/var/log/{}", word(rng)),
            ],
        ),
        8 => ("/usr/bin/ps", vec!["ps".into(), "aux".into()]),
        9 => (
            "/usr/bin/git",
            vec![
                "git".into(),
                "fetch".into(),
                "--prune".into(),
                "origin".into(),
            ],
        ),
        10 => (
            "/usr/bin/systemctl",
            vec![
                "systemctl".into(),
                "status".into(),
                SERVICES[rng.gen_range(0..SERVICES.len())].into(),
            ],
        ),
        11 => (
            "/usr/sbin/CRON",
            vec!["/usr/sbin/CRON".into(), "-f".into(), "-P".into()],
        ),
        12 => (
            "/usr/bin/sudo",
            vec![
                "sudo".into(),
                "-u".into(),
                "postgres".into(),
                "psql".into(),
                "-c".into(),
                format!(
                    "SELECT count(*) FROM {} WHERE id > {}",
                    word(rng),
                    rng.gen::<u16>()
                ),
            ],
        ),
        _ => (
            "/usr/bin/sleep",
            vec!["sleep".into(), rng.gen_range(1..600).to_string()],
        ),
    };
    ProcessStart {
        pid,
        ppid: if rng.gen_bool(0.3) {
            1
        } else {
            pid.saturating_sub(rng.gen_range(1..50)).max(2)
        },
        exe: Some(exe.into()),
        argv,
        uid: Some(if user == "root" {
            0
        } else {
            rng.gen_range(1000..1100)
        }),
        user: Some(user),
        cwd: Some(if rng.gen_bool(0.5) {
            "/".into()
        } else {
            format!("/home/{}", h.user)
        }),
        parent_exe: Some(
            [
                "/usr/bin/bash",
                "/usr/lib/systemd/systemd",
                "/usr/sbin/sshd",
                "/usr/sbin/cron",
            ][rng.gen_range(0..4)]
            .into(),
        ),
        start_time_ns: Some(ts.saturating_sub(rng.gen_range(10_000..900_000))),
        netns: 4026531840,
        exited_before_enrichment: rng.gen_bool(0.01),
    }
}

fn flow(h: &PlannedHost, rng: &mut StdRng, pid: u32) -> NetFlow {
    let remote_ip = match rng.gen_range(0..10) {
        0..=5 => IpAddr::V4(Ipv4Addr::new(
            10,
            rng.gen_range(16..18),
            rng.gen_range(0..40),
            rng.gen_range(2..252),
        )),
        6 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, 53)),
        _ => {
            let p = EXTERNAL[rng.gen_range(0..EXTERNAL.len())];
            IpAddr::V4(Ipv4Addr::new(p[0], p[1], rng.gen(), rng.gen()))
        }
    };
    let port = match remote_ip {
        IpAddr::V4(v) if v.octets() == [10, 0, 0, 53] => 53,
        IpAddr::V4(v) if v.octets()[0] != 10 => [443, 443, 80][rng.gen_range(0..3)],
        _ => [22, 443, 5432, 6379, 9092, 8080, 445, 9200][rng.gen_range(0..8)],
    };
    NetFlow {
        transport: if port == 53 {
            Transport::Udp
        } else {
            Transport::Tcp
        },
        local: SocketAddr::new(h.local_ip(), rng.gen_range(32768..60999)),
        remote: SocketAddr::new(remote_ip, port),
        pid: Some(pid),
        exe: Some(
            [
                "/usr/bin/curl",
                "/usr/sbin/nginx",
                "/usr/bin/python3",
                "/usr/bin/ssh",
                "/usr/lib/postgresql/15/bin/postgres",
                "/opt/app/bin/server",
            ][rng.gen_range(0..6)]
            .into(),
        ),
        repeat: if rng.gen_bool(0.15) {
            rng.gen_range(2..60)
        } else {
            1
        },
    }
}

fn payload(h: &PlannedHost, rng: &mut StdRng, ts: u64) -> Payload {
    let pid = rng.gen_range(300..4_000_000);
    let roll = rng.gen_range(0..1000);
    match roll {
        0..=329 => Payload::ProcessStart(process_start(h, rng, pid, ts)),
        330..=579 => Payload::ProcessExit(ProcessExit {
            pid,
            exit_code: Some(if rng.gen_bool(0.9) {
                0
            } else {
                rng.gen_range(1..128)
            }),
            exe: Some(format!("/usr/bin/{}", word(rng))),
        }),
        580..=799 => Payload::NetConnect(flow(h, rng, pid)),
        800..=899 => {
            let mut f = flow(h, rng, pid);
            f.local = SocketAddr::new(h.local_ip(), [22, 443, 80, 5432][rng.gen_range(0..4)]);
            f.remote = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(
                    10,
                    rng.gen_range(16..18),
                    rng.gen_range(0..40),
                    rng.gen_range(2..252),
                )),
                rng.gen_range(32768..60999),
            );
            Payload::NetAccept(f)
        }
        900..=964 => {
            let failed = rng.gen_bool(0.15);
            let service = [
                LoginService::Ssh,
                LoginService::Ssh,
                LoginService::Sudo,
                LoginService::Su,
                LoginService::Console,
            ][rng.gen_range(0..5)]
            .clone();
            let info = LoginInfo {
                user: if rng.gen_bool(0.6) {
                    h.user.clone()
                } else {
                    PEOPLE[rng.gen_range(0..PEOPLE.len())].into()
                },
                method: if failed || rng.gen_bool(0.2) {
                    AuthMethod::Password
                } else {
                    AuthMethod::PublicKey
                },
                src_addr: (service == LoginService::Ssh).then(|| {
                    IpAddr::V4(Ipv4Addr::new(
                        10,
                        rng.gen_range(16..18),
                        rng.gen_range(0..40),
                        rng.gen_range(2..252),
                    ))
                }),
                src_port: (service == LoginService::Ssh).then(|| rng.gen_range(32768..60999)),
                src_host: None,
                from_user: (service == LoginService::Sudo || service == LoginService::Su)
                    .then(|| h.user.clone()),
                service,
                pid: Some(pid),
            };
            if failed {
                Payload::AuthFailure(info)
            } else if rng.gen_bool(0.5) {
                Payload::Login(info)
            } else {
                Payload::Logout(info)
            }
        }
        _ => {
            let op = [
                FileOp::Modified,
                FileOp::Modified,
                FileOp::Created,
                FileOp::Deleted,
                FileOp::Renamed,
                FileOp::Attributes,
            ][rng.gen_range(0..6)];
            Payload::FileChange(FileChange {
                path: FILES[rng.gen_range(0..FILES.len())].into(),
                op,
                size: (op != FileOp::Deleted).then(|| rng.gen_range(40..64_000)),
                mode: Some([0o644, 0o600, 0o755, 0o440][rng.gen_range(0..4)]),
                uid: Some(0),
                sha256: matches!(op, FileOp::Modified | FileOp::Created).then(|| rng.gen()),
                pid: Some(pid),
            })
        }
    }
}

/// The `chunk`-th batch of a host's events, encoded as a connection task does.
fn chunk_events(h: &PlannedHost, chunk: u64, seed: u64) -> Vec<EncodedEvent> {
    let mut rng = StdRng::seed_from_u64(
        seed ^ h.rec.id.rotate_left(13) ^ chunk.wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    let from = chunk * CHUNK;
    let to = (from + CHUNK).min(h.events);
    (from..to)
        .map(|j| {
            let ts = h.ts_of(j, rng.gen());
            let seq = h.seq_of(j);
            match h.loss {
                Some((k, m)) if j == k => {
                    let p = Payload::Loss(LossRecord {
                        from_seq: k + 1,
                        to_seq: k + m,
                        count: m,
                        reason: LossReason::SpoolFull,
                    });
                    EncodedEvent {
                        seq,
                        ts_ns: ts,
                        value: payload_value(&p),
                        loss: Some((k + 1, k + m, m)),
                    }
                }
                _ => EncodedEvent {
                    seq,
                    ts_ns: ts,
                    value: payload_value(&payload(h, &mut rng, ts)),
                    loss: None,
                },
            }
        })
        .collect()
}

// ---------------------------------------------------------------- fill

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

fn dir_bytes(path: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(path) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

fn fixed_clock() -> vigil_appliance::Clock {
    Arc::new(|| NOW)
}

fn fill(o: &Opts, plan: &[PlannedHost]) -> Result<Manifest> {
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
    for h in plan {
        db.put_host_record(&h.rec, false)?;
    }

    // Events through the ingest writer, host by host in id order (so keys
    // arrive nearly sorted, as a fleet's per-host streams do over time).
    let jobs: Vec<(usize, u64)> = plan
        .iter()
        .enumerate()
        .flat_map(|(i, h)| (0..h.events.div_ceil(CHUNK)).map(move |c| (i, c)))
        .collect();
    let plan_arc: Arc<Vec<PlannedHost>> = Arc::new(plan.to_vec());
    let pb = progress(o.events, "events");
    let mut plain = PlainProgress {
        total: o.events,
        next: o.events / 20,
        started,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let seed = o.seed;
    let events_started = Instant::now();
    let stored: u64 = rt.block_on(async {
        let (queue, writer) = spawn_writer(db.clone(), Arc::new(Metrics::default()), 64)?;
        let mut set = tokio::task::JoinSet::new();
        let mut done = 0u64;
        let mut jobs = jobs.into_iter();
        loop {
            while set.len() < IN_FLIGHT {
                let Some((i, c)) = jobs.next() else { break };
                let (q, plan) = (queue.clone(), plan_arc.clone());
                set.spawn(async move {
                    let h = &plan[i];
                    let events = chunk_events(h, c, seed);
                    let n = events.len() as u64;
                    let bytes = events.iter().map(|e| e.value.len() as u64 + 24).sum();
                    q.submit(h.id(), events, bytes).await.map(|ack| {
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

    // Health history: one sample per hour of each host's last day seen.
    let mut rng = StdRng::seed_from_u64(o.seed ^ 0x4ea1);
    for h in plan {
        for k in 0..24u64 {
            let ts = h.rec.last_seen_ns.saturating_sub(k * HOUR);
            db.put_health(
                h.id(),
                &HealthSample {
                    ts_ns: ts,
                    cpu_pct: h.rec.cpu_pct * rng.gen_range(0.5..1.5),
                    rss_bytes: h.rec.rss_bytes,
                    events_per_s: h.rec.events_per_s * rng.gen_range(0.3..2.0),
                    spool_bytes: h.rec.spool_bytes,
                    dropped_total: h.rec.dropped_total,
                },
            )?;
        }
    }
    let n_edges = write_edges(&db, plan, o.seed)?;
    let n_alerts = write_alerts(&core, plan, o)?;
    eprintln!(
        "plus {} health samples, {n_edges} fleet edges, {n_alerts} alerts and incidents",
        plan.len() * 24
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

/// The fleet graph: admins and bastions reach servers over ssh, clients
/// reach services; a few edges per host. Returns how many were written.
fn write_edges(db: &Db, plan: &[PlannedHost], seed: u64) -> Result<usize> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xed6e);
    let servers: Vec<&PlannedHost> = plan.iter().filter(|h| h.tier != Tier::Normal).collect();
    let mut n = 0;
    for h in plan {
        let fanout = match h.tier {
            Tier::VeryBusy => 40,
            Tier::Busy => 6,
            Tier::Normal => rng.gen_range(0..4),
        };
        for _ in 0..fanout {
            let dst = if rng.gen_bool(0.7) {
                servers[rng.gen_range(0..servers.len())]
            } else {
                &plan[rng.gen_range(0..plan.len())]
            };
            if dst.rec.id == h.rec.id {
                continue;
            }
            let port = [22, 22, 445, 5432, 443, 3389, 5985][rng.gen_range(0..7)];
            let first = h.first_ts + rng.gen_range(0..(h.last_ts - h.first_ts).max(1));
            db.put_edge(&EdgeRecord {
                src: h.id(),
                dst: dst.id(),
                port,
                user: (port == 22 || port == 445).then(|| h.user.clone()),
                first_seen_ns: first,
                last_seen_ns: first + rng.gen_range(0..(h.last_ts - first).max(1)),
                count: rng.gen_range(1..5_000),
            })?;
            n += 1;
        }
    }
    Ok(n)
}

const TITLES: [(&str, &[&str]); 8] = [
    (
        "New SSH destination outside the host's baseline",
        &["T1021.004"],
    ),
    ("Burst of authentication failures", &["T1110.001"]),
    (
        "Rare process opened outbound connections",
        &["T1059.004", "T1071.001"],
    ),
    ("Credential use from an unusual source", &["T1078"]),
    ("New admin-port peers", &["T1046", "T1021"]),
    ("Tool transfer then execution", &["T1105", "T1059.004"]),
    (
        "Persistence: cron or systemd unit changed",
        &["T1053.003", "T1543.002"],
    ),
    ("SSH keys added for root", &["T1098.004"]),
];

fn deviations(rng: &mut StdRng) -> Vec<FeatureDeviation> {
    const FEATURES: [(&str, &str); 6] = [
        ("new_peers", "new outbound peers in the window"),
        ("admin_port_peers", "distinct peers on admin ports"),
        ("auth_failures", "failed logins"),
        ("rare_exe", "processes rarely seen on this host"),
        ("bytes_out", "outbound flows"),
        ("new_users", "users not seen on this host before"),
    ];
    (0..rng.gen_range(1..6))
        .map(|_| {
            let (f, what) = FEATURES[rng.gen_range(0..FEATURES.len())];
            let baseline: f64 = rng.gen_range(0.0..5.0);
            let observed = baseline + rng.gen_range(3.0..40.0);
            FeatureDeviation {
                feature: f.into(),
                observed,
                baseline,
                score: rng.gen_range(2.0..12.0),
                sentence: format!(
                    "{observed:.0} {what} against a usual {baseline:.1} for this host at this hour."
                ),
            }
        })
        .collect()
}

/// Alerts (one host) and incidents (a path of 2–4 hosts with one alert per
/// hop) with evidence pointing at stored events; some triaged through the
/// console store. Returns how many alert records were written.
fn write_alerts(core: &Core, plan: &[PlannedHost], o: &Opts) -> Result<usize> {
    let db = &core.db;
    let mut rng = StdRng::seed_from_u64(o.seed ^ 0xa1e7);
    let busy: Vec<&PlannedHost> = plan.iter().filter(|h| h.tier != Tier::Normal).collect();
    let pick = |rng: &mut StdRng| -> &PlannedHost {
        if rng.gen_bool(0.3) {
            busy[rng.gen_range(0..busy.len())]
        } else {
            &plan[rng.gen_range(0..plan.len())]
        }
    };
    let evidence = |rng: &mut StdRng, h: &PlannedHost, n: usize| -> Vec<(HostId, u64)> {
        let recent = (h.events / 10).max(1);
        (0..n)
            .map(|_| (h.id(), h.seq_of(h.events - 1 - rng.gen_range(0..recent))))
            .collect()
    };
    let mut written = 0;
    while written < o.alerts {
        let created_ns = NOW - (SPAN as f64 * rng.gen::<f64>().powi(2)) as u64;
        let state = match rng.gen_range(0..20) {
            0..=11 => TriageState::New,
            12..=14 => TriageState::Acknowledged,
            15..=16 => TriageState::Investigating,
            17 => TriageState::ClosedTruePositive,
            _ => TriageState::ClosedFalsePositive,
        };
        let incident = rng.gen_bool(0.15);
        let (title, techniques) = TITLES[rng.gen_range(0..TITLES.len())];
        let mut base = AlertRecord {
            ports: Vec::new(),
            processes: Vec::new(),
            id: 0,
            created_ns,
            severity: [
                Severity::Low,
                Severity::Medium,
                Severity::Medium,
                Severity::High,
                Severity::Critical,
            ][rng.gen_range(0..5)],
            score: rng.gen_range(0.5..1.0),
            title: title.into(),
            path: Vec::new(),
            users: Vec::new(),
            techniques: techniques.iter().map(|t| (*t).to_owned()).collect(),
            summary: String::new(),
            deviations: deviations(&mut rng),
            evidence: Vec::new(),
            state: state.clone(),
            assignee: (state != TriageState::New).then(|| "admin".to_owned()),
            incident_id: None,
            model_version: Some("baseline-v3+graph-novelty".into()),
        };
        if incident {
            let hops = rng.gen_range(2..5);
            let mut path: Vec<&PlannedHost> = Vec::new();
            while path.len() < hops {
                let h = pick(&mut rng);
                if !path.iter().any(|p| p.rec.id == h.rec.id) {
                    path.push(h);
                }
            }
            let user = path[0].user.clone();
            let incident_id = db.next_alert_id()?;
            let mut ev = Vec::new();
            for (n, w) in path.windows(2).enumerate() {
                let ts = created_ns - (hops - n) as u64 * 600 * SEC;
                db.put_edge(&EdgeRecord {
                    src: w[0].id(),
                    dst: w[1].id(),
                    port: 22,
                    user: Some(user.clone()),
                    first_seen_ns: ts,
                    last_seen_ns: ts + 30 * SEC,
                    count: rng.gen_range(1..4),
                })?;
            }
            for h in &path {
                let child_id = db.next_alert_id()?;
                let n_ev = rng.gen_range(3..15);
                let child_ev = evidence(&mut rng, h, n_ev);
                ev.extend(child_ev.iter().copied());
                db.put_alert(&AlertRecord {
                    ports: Vec::new(),
                    processes: Vec::new(),
                    id: child_id,
                    title: "New SSH destination outside the host's baseline".into(),
                    path: vec![h.id()],
                    users: vec![user.clone()],
                    summary: format!(
                        "{} reached a host it never reached before as {user}.",
                        h.rec.hostname
                    ),
                    evidence: child_ev,
                    incident_id: Some(incident_id),
                    ..base.clone()
                })?;
                written += 1;
            }
            base.id = incident_id;
            base.title = format!("Lateral movement chain across {hops} hosts");
            base.techniques = vec!["T1021.004".into(), "T1078".into(), "T1570".into()];
            base.severity = Severity::Critical;
            base.summary = format!(
                "{user} moved {}.",
                path.iter()
                    .map(|h| h.rec.hostname.as_str())
                    .collect::<Vec<_>>()
                    .join(" → ")
            );
            base.path = path.iter().map(|h| h.id()).collect();
            base.users = vec![user];
            base.evidence = ev;
        } else {
            let h = pick(&mut rng);
            base.id = db.next_alert_id()?;
            base.path = vec![h.id()];
            base.users = vec![h.user.clone(), "root".into()];
            base.summary = format!("{} on {}.", title, h.rec.hostname);
            let n_ev = rng.gen_range(3..60);
            base.evidence = evidence(&mut rng, h, n_ev);
        }
        db.put_alert(&base)?;
        written += 1;
        if state != TriageState::New && rng.gen_bool(0.5) {
            core.console.put_triage(
                base.id,
                Triage {
                    state: state.clone(),
                    assignee: base.assignee.clone(),
                    note: matches!(
                        state,
                        TriageState::ClosedTruePositive | TriageState::ClosedFalsePositive
                    )
                    .then(|| "checked with the host owner".into()),
                    updated_ns: created_ns + HOUR,
                    updated_by: "admin".into(),
                },
            )?;
        }
    }
    Ok(written)
}

// ---------------------------------------------------------------- measure

struct PageTimes {
    name: &'static str,
    samples: Vec<f64>,
}

impl PageTimes {
    fn p(&self, q: f64) -> f64 {
        let mut s = self.samples.clone();
        s.sort_by(f64::total_cmp);
        if s.is_empty() {
            return 0.0;
        }
        s[(((s.len() as f64) * q).ceil() as usize).clamp(1, s.len()) - 1]
    }
}

fn time_page(
    name: &'static str,
    iterations: usize,
    mut render: impl FnMut(usize) -> Result<usize>,
) -> Result<PageTimes> {
    // Two untimed renders first (first-touch of code and caches).
    render(usize::MAX - 1)?;
    render(usize::MAX - 2)?;
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let t = Instant::now();
        std::hint::black_box(render(i)?);
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(PageTimes { name, samples })
}

/// A named ReadApi call to time alone.
type ReadCall<'a> = (&'static str, Box<dyn Fn() -> Result<usize> + 'a>);

fn measure(o: &Opts, plan: &[PlannedHost]) -> Result<(Vec<PageTimes>, usize)> {
    let (core, _) = Core::open(&o.store, fixed_clock())?;
    let core = Arc::new(core);
    let console: Arc<RocksConsoleStore> = core.console.clone();
    let reader = Arc::new(StoreReader::new(core.clone()));
    let state = ConsoleState::new(reader.clone(), console.clone()).with_clock(Arc::new(|| NOW));
    let auth = bench_admin();
    // Host page: every third render a very busy or busy host, else any host.
    let mut by_events: Vec<&PlannedHost> = plan.iter().collect();
    by_events.sort_by_key(|h| std::cmp::Reverse(h.events));
    let busiest: Vec<HostId> = by_events.iter().take(50).map(|h| h.id()).collect();
    let all: Vec<HostId> = plan.iter().map(|h| h.id()).collect();
    let host_for = |i: usize| match i % 3 {
        0 => busiest[(i / 3) % busiest.len()],
        _ => all[i.wrapping_mul(7919) % all.len()],
    };
    let alert_ids: Vec<u64> = core
        .db
        .alerts(&AlertFilter {
            limit: usize::MAX,
            ..AlertFilter::default()
        })?
        .iter()
        .map(|a| a.id)
        .collect();
    if alert_ids.is_empty() {
        bail!("the store has no alerts");
    }
    let n_alerts = alert_ids.len();
    let err = |e: vigil_web_ui::error::UiError| anyhow::anyhow!("render failed: {e}");
    let it = o.iterations;
    let mut out = Vec::new();
    out.push(time_page("overview", it, |_| {
        Ok(overview::page(&state, &auth).map_err(err)?.0.len())
    })?);
    out.push(time_page("hosts", it, |i| {
        let q = hosts::HostsQuery {
            page: i % 200,
            sort: ["name", "seen", "alerts", "state", "cpu"][i % 5].into(),
            dir: if i % 2 == 0 { "" } else { "desc" }.into(),
            q: if i % 7 == 3 {
                "prod".into()
            } else {
                String::new()
            },
            ..Default::default()
        };
        Ok(hosts::page(&state, &auth, &q).map_err(err)?.0.len())
    })?);
    out.push(time_page("host", it, |i| {
        let q = host::HostQuery {
            hours: [None, None, Some(1), Some(168)][i % 4],
        };
        Ok(host::page(&state, &auth, host_for(i), &q)
            .map_err(err)?
            .0
            .len())
    })?);
    out.push(time_page("alert", it, |i| {
        let id = alert_ids[i.wrapping_mul(37) % n_alerts];
        Ok(
            alerts::detail_page(&state, &auth, id, &alerts::AlertQuery::default())
                .map_err(err)?
                .0
                .len(),
        )
    })?);
    // Where the time goes: the ReadApi calls behind the pages, timed alone.
    let busiest_host = busiest[0];
    let ev = |since: u64, kinds: Vec<EventKind>| EventFilter {
        host: Some(busiest_host),
        since_ns: Some(NOW - since),
        kinds,
        limit: host::EVENT_LIMIT,
        ..EventFilter::default()
    };
    let calls: Vec<ReadCall> = vec![
        ("read.hosts()", Box::new(|| Ok(reader.hosts()?.len()))),
        (
            "read.stats()",
            Box::new(|| Ok(reader.stats()?.counters.len())),
        ),
        (
            "read.host(busiest)",
            Box::new(|| Ok(reader.host(busiest_host)?.addrs.len())),
        ),
        (
            "read.events(busiest, 24 h, 5000)",
            Box::new(|| Ok(reader.events(&ev(24 * HOUR, vec![]))?.events.len())),
        ),
        (
            "read.events(busiest, 48 h, connects)",
            Box::new(|| {
                Ok(reader
                    .events(&ev(48 * HOUR, vec![EventKind::NetConnect]))?
                    .events
                    .len())
            }),
        ),
        (
            "read.alerts(open, 5000)",
            Box::new(|| {
                Ok(reader
                    .alerts(&AlertFilter {
                        open_only: true,
                        limit: 5000,
                        ..AlertFilter::default()
                    })?
                    .len())
            }),
        ),
        ("read.edges(all)", Box::new(|| Ok(reader.edges(0)?.len()))),
    ];
    for (name, call) in calls {
        out.push(time_page(name, 20, |_| call())?);
    }
    Ok((out, n_alerts))
}

fn main() -> Result<()> {
    let o = parse()?;
    let plan = plan_fleet(&o);
    let existing: Option<Manifest> = std::fs::read(o.store.join(MANIFEST))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let manifest = match existing {
        Some(m) if m.matches(&o) && !o.rebuild => {
            eprintln!(
                "reusing {} ({} hosts, {} events; built in {:.0} s at {:.0} events/s)",
                o.store.display(),
                m.hosts,
                m.events,
                m.fill_secs,
                m.fill_events_per_s
            );
            m
        }
        _ => fill(&o, &plan)?,
    };
    let (pages, n_alerts) = measure(&o, &plan)?;
    let on_disk = dir_bytes(&o.store.join("db"));
    println!(
        "== vigil console render bench over RocksDB: {} hosts, {} events, {} alerts ==",
        manifest.hosts, manifest.events, n_alerts
    );
    println!("store      {}", o.store.display());
    println!(
        "fill       {:.0} s total, events at {:.0} events/s through the ingest writer",
        manifest.fill_secs, manifest.fill_events_per_s
    );
    println!(
        "on disk    {} after fill, {} after compaction ({:.0} s), {} now ({:.1} bytes/event)",
        gib(manifest.bytes_after_fill),
        gib(manifest.bytes_on_disk),
        manifest.compact_secs,
        gib(on_disk),
        on_disk as f64 / manifest.events as f64
    );
    println!(
        "{:<38} {:>9} {:>9} {:>9}",
        "page (target p95 ≤ 200 ms) / read call", "p50 ms", "p95 ms", "max ms"
    );
    for p in &pages {
        let label = if p.name.starts_with("read.") {
            if p.name == "read.hosts()" {
                println!("where the time goes (each read call alone, 20 calls):");
            }
            format!("  {}", p.name)
        } else {
            format!("{} ({} renders)", p.name, p.samples.len())
        };
        println!(
            "{label:<38} {:>9.2} {:>9.2} {:>9.2}",
            p.p(0.5),
            p95(&mut p.samples.clone()),
            p.p(1.0)
        );
    }
    let get = |name: &str| {
        pages
            .iter()
            .find(|p| p.name == name)
            .map_or(0.0, |p| p95(&mut p.samples.clone()))
    };
    let report = BenchReport {
        iterations: o.iterations,
        p95_ms_overview: get("overview"),
        p95_ms_hosts: get("hosts"),
        p95_ms_host: get("host"),
        p95_ms_alert: get("alert"),
    };
    println!("{}", report.json());
    Ok(())
}
