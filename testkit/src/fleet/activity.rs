//! What a host does: one event payload at a time, drawn from a mix close to
//! a Linux fleet's (a third process starts, a quarter exits, a third
//! connections and accepts, the rest logins, sudo/su and watched files).

use super::{FleetHost, ENVS, PEOPLE};
use rand::rngs::StdRng;
use rand::Rng;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use vigil_proto::event::{
    AuthMethod, FileChange, FileOp, LoginInfo, LoginService, NetFlow, Payload, ProcessExit,
    ProcessStart, Transport,
};

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

/// A made-up word of 1-3 syllables (paths, hosts, arguments).
fn word(rng: &mut StdRng) -> String {
    const SYL: [&str; 16] = [
        "ka", "lo", "mi", "ne", "pu", "ra", "si", "to", "ve", "xo", "dat", "srv", "log", "cfg",
        "tmp", "bak",
    ];
    (0..rng.gen_range(1..4))
        .map(|_| SYL[rng.gen_range(0..SYL.len())])
        .collect()
}

/// A process start with a realistic command line, user and parent.
fn process_start(h: &FleetHost, rng: &mut StdRng, pid: u32, ts: u64) -> ProcessStart {
    let user = match rng.gen_range(0..10) {
        0..=3 => "root".to_owned(),
        4..=6 => h.user.clone(),
        7 => "www-data".to_owned(),
        8 => "postgres".to_owned(),
        _ => format!("svc-{}", SERVICES[rng.gen_range(0..SERVICES.len())]),
    };
    let (exe, argv) = command(h, rng);
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

/// A command line: `(exe, argv)`, one of 14 kinds with equal odds.
fn command(h: &FleetHost, rng: &mut StdRng) -> (&'static str, Vec<String>) {
    match rng.gen_range(0..14) {
        k @ 0..=5 => app_command(h, rng, k),
        k => tool_command(h, rng, k),
    }
}

/// Scripts, interpreters, the JVM, downloads and ssh (kinds 0–5).
fn app_command(h: &FleetHost, rng: &mut StdRng, kind: u32) -> (&'static str, Vec<String>) {
    match kind {
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
        // 5: ssh to a peer.
        _ => (
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
    }
}

/// Everyday tools: ls, grep, ps, git, systemctl, cron, sudo, sleep (kinds 6–13).
fn tool_command(h: &FleetHost, rng: &mut StdRng, kind: u32) -> (&'static str, Vec<String>) {
    match kind {
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
    }
}

/// A connection from `h`: mostly inside 10.16/12, some DNS, some to the internet.
fn flow(h: &FleetHost, rng: &mut StdRng, pid: u32) -> NetFlow {
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

/// One event payload of `h` at `ts`.
pub(super) fn payload(h: &FleetHost, rng: &mut StdRng, ts: u64) -> Payload {
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
        900..=964 => login(h, rng, pid),
        _ => file_change(rng, pid),
    }
}

/// A login, logout or failure: ssh from a peer, sudo, su or the console.
fn login(h: &FleetHost, rng: &mut StdRng, pid: u32) -> Payload {
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

/// A change to a watched file.
fn file_change(rng: &mut StdRng, pid: u32) -> Payload {
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
