//! Collectors against the real kernel: real processes, TCP connections on
//! loopback, file writes and auth log lines; then the same through the full
//! sensor and uplink to the test appliance. Needs root: without it the tests
//! fail when `CI` is set and otherwise skip with a message.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use vigil_proto::{AuthMethod, FileOp, LoginService, Payload, ProcessStart, Transport, Visibility};
use vigil_sensor::collect::{self, CollectorCtx, Observed, Sink};
use vigil_sensor::health::CollectorStats;

fn have_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs root (CAP_NET_ADMIN for the process connector) and CI is set");
    }
    eprintln!("{test}: skipped, needs root");
    false
}

struct Running {
    rx: mpsc::Receiver<Observed>,
    stats: Arc<CollectorStats>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    seen: Vec<Payload>,
}

impl Running {
    fn start(name: &'static str, f: impl FnOnce(CollectorCtx) + Send + 'static) -> Running {
        let (sink, rx) = Sink::channel(100_000);
        let stats = CollectorStats::new(name);
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = CollectorCtx {
            sink,
            stats: stats.clone(),
            stop: stop.clone(),
            log_writers: Arc::default(),
        };
        let thread = std::thread::spawn(move || f(ctx));
        let r = Running {
            rx,
            stats,
            stop,
            thread: Some(thread),
            seen: Vec::new(),
        };
        let t0 = Instant::now();
        while matches!(r.stats.visibility(), Visibility::Unavailable(ref m) if m == "not started")
            && t0.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        r
    }

    /// Wait for the first payload matching `pred`.
    fn wait_for(&mut self, what: &str, pred: impl Fn(&Payload) -> bool) -> Payload {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(p) = self.seen.iter().find(|p| pred(p)) {
                return p.clone();
            }
            match self.rx.try_recv() {
                Ok(o) => self.seen.push(o.payload),
                Err(_) => {
                    assert!(
                        Instant::now() < deadline,
                        "timed out waiting for {what}; saw {} events",
                        self.seen.len()
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.rx.close();
        while self.rx.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn own_netns() -> u64 {
    std::fs::metadata("/proc/self/ns/net").unwrap().ino()
}

/// Clear CAP_NET_ADMIN from the calling thread's effective set (capsets
/// are per thread, so the rest of the test process keeps it).
fn drop_net_admin_on_this_thread() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data words, as the
    // kernel ABI requires; results are checked.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
            0
        );
        data[0].effective &= !(1 << 12);
        assert_eq!(libc::syscall(libc::SYS_capset, &header, data.as_ptr()), 0);
    }
}

/// Without CAP_NET_ADMIN the kernel ignores the connector subscription and
/// the socket stays silent; the collector says so instead of claiming to
/// work.
#[test]
fn process_connector_without_net_admin_reports_unavailable() {
    if !have_root("process_connector_without_net_admin") {
        return;
    }
    let r = Running::start("process", |ctx| {
        drop_net_admin_on_this_thread();
        collect::process::run(ctx, None)
    });
    match r.stats.visibility() {
        Visibility::Unavailable(why) => assert!(why.contains("CAP_NET_ADMIN"), "{why}"),
        other => panic!("collector without CAP_NET_ADMIN reports {other:?}"),
    }
}

/// In a child pid namespace (a container sharing the host's network) the
/// connector opens and subscribes without error, but the kernel ignores
/// the subscription: the collector must say so, not report itself working.
/// The test re-runs itself under `unshare --pid --fork`.
#[test]
fn process_connector_in_a_child_pid_namespace_reports_unavailable() {
    const INNER: &str = "VIGIL_TEST_INNER_PIDNS";
    let name = "process_connector_in_a_child_pid_namespace_reports_unavailable";
    if std::env::var_os(INNER).is_some() {
        let r = Running::start("process", |ctx| collect::process::run(ctx, None));
        println!("VISIBILITY={:?}", r.stats.visibility());
        return;
    }
    if !have_root(name) {
        return;
    }
    let out = std::process::Command::new("unshare")
        .args(["--pid", "--fork"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(INNER, "1")
        .output()
        .expect("unshare (util-linux) runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("VISIBILITY="))
        .unwrap_or_else(|| {
            panic!(
                "no visibility printed: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(
        line.contains("Unavailable(") && line.contains("pid namespace"),
        "{line}"
    );
}

#[test]
fn process_collector_reports_exec_with_enrichment_and_exit() {
    if !have_root("process_collector") {
        return;
    }
    let mut r = Running::start("process", |ctx| collect::process::run(ctx, None));
    assert_eq!(r.stats.visibility(), Visibility::Working);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut child = std::process::Command::new("/bin/sleep")
        .args(["0.5"])
        .current_dir("/tmp")
        .spawn()
        .unwrap();
    let pid = child.id();
    let start = r.wait_for(
        "exec of sleep",
        |p| matches!(p, Payload::ProcessStart(s) if s.pid == pid),
    );
    let Payload::ProcessStart(s) = start else {
        unreachable!()
    };
    let expected = ProcessStart {
        pid,
        ppid: std::process::id(),
        exe: Some("/usr/bin/sleep".into()),
        argv: vec!["/bin/sleep".into(), "0.5".into()],
        uid: Some(0),
        user: Some("root".into()),
        cwd: Some("/tmp".into()),
        parent_exe: Some(std::env::current_exe().unwrap().display().to_string()),
        start_time_ns: s.start_time_ns,
        netns: own_netns(),
        exited_before_enrichment: false,
    };
    assert_eq!(s, expected);
    let st = s.start_time_ns.unwrap();
    assert!(
        st + 2_000_000_000 > before && st < before + 2_000_000_000,
        "start time near now"
    );
    // The collector takes it from the fork event (kernels from 6.6) or from
    // /proc/<pid>/stat: the same value, to a clock tick.
    let from_stat = collect::process::Enricher::new()
        .process_start(pid)
        .start_time_ns
        .unwrap();
    assert!(st.abs_diff(from_stat) <= 10_000_000, "{st} vs {from_stat}");
    assert!(child.wait().unwrap().success());
    let exit = r.wait_for(
        "exit of sleep",
        |p| matches!(p, Payload::ProcessExit(e) if e.pid == pid),
    );
    let Payload::ProcessExit(e) = exit else {
        unreachable!()
    };
    assert_eq!(e.exit_code, Some(0));
    assert_eq!(e.exe.as_deref(), Some("/usr/bin/sleep"));

    // A killed process exits with minus the signal.
    let mut child = std::process::Command::new("/bin/sleep")
        .arg("5")
        .spawn()
        .unwrap();
    let pid = child.id();
    r.wait_for(
        "exec",
        |p| matches!(p, Payload::ProcessStart(s) if s.pid == pid),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let exit = r.wait_for(
        "exit",
        |p| matches!(p, Payload::ProcessExit(e) if e.pid == pid),
    );
    assert!(matches!(exit, Payload::ProcessExit(e) if e.exit_code == Some(-9)));

    // A process that is gone at once still yields an event.
    let pid = std::process::Command::new("/bin/true")
        .spawn()
        .unwrap()
        .id();
    r.wait_for(
        "exec of true",
        |p| matches!(p, Payload::ProcessStart(s) if s.pid == pid),
    );
}

#[test]
fn network_collector_reports_connect_and_accept_with_pid() {
    if !have_root("network_collector") {
        return;
    }
    let mut r = Running::start("network", |ctx| {
        collect::network::run(ctx, Duration::from_millis(100), None)
    });
    assert_eq!(r.stats.visibility(), Visibility::Working);
    std::thread::sleep(Duration::from_millis(250));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_addr = listener.local_addr().unwrap();
    let mut client = TcpStream::connect(server_addr).unwrap();
    let (mut conn, peer) = listener.accept().unwrap();
    let client_addr = client.local_addr().unwrap();
    assert_eq!(peer, client_addr);
    client.write_all(b"hi").unwrap();
    let mut b = [0u8; 2];
    conn.read_exact(&mut b).unwrap();
    let me = Some(std::process::id());
    let exe = Some(std::env::current_exe().unwrap().display().to_string());
    let c = r.wait_for(
        "connect",
        |p| matches!(p, Payload::NetConnect(f) if f.local == client_addr),
    );
    let Payload::NetConnect(f) = c else {
        unreachable!()
    };
    assert_eq!(
        (f.transport, f.remote, f.pid, f.exe.clone(), f.repeat),
        (Transport::Tcp, server_addr, me, exe.clone(), 1)
    );
    let a = r.wait_for(
        "accept",
        |p| matches!(p, Payload::NetAccept(f) if f.remote == client_addr),
    );
    let Payload::NetAccept(f) = a else {
        unreachable!()
    };
    assert_eq!((f.local, f.pid, f.exe.clone()), (server_addr, me, exe));
    // Reported once, not on every poll.
    std::thread::sleep(Duration::from_millis(400));
    while let Ok(o) = r.rx.try_recv() {
        r.seen.push(o.payload);
    }
    let n = r
        .seen
        .iter()
        .filter(|p| matches!(p, Payload::NetConnect(f) if f.local == client_addr))
        .count();
    assert_eq!(n, 1);
    drop((client, conn));
}

/// A writer lookup for lines whose pids are made up: these pids are root's
/// sshd (what the login collector checks is tested on its own below).
struct FakeSshd(&'static [u32]);

impl collect::auth::WriterLookup for FakeSshd {
    fn identify(&self, pid: u32) -> Option<collect::auth::ProcIdentity> {
        self.0.contains(&pid).then(|| collect::auth::ProcIdentity {
            euid: 0,
            exe: "/usr/sbin/sshd".into(),
        })
    }
}

#[test]
fn auth_collector_turns_log_lines_into_events() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(
        &log,
        "Nov 23 09:00:00 h sshd[1]: Accepted password for old from 1.1.1.1 port 1 ssh2\n",
    )
    .unwrap();
    let path = log.clone();
    let mut r = Running::start("auth", move |ctx| {
        collect::auth::run_with(ctx, path, false, Box::new(FakeSshd(&[77, 78])))
    });
    assert_eq!(r.stats.visibility(), Visibility::Working);
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(b"Nov 23 10:00:01 h sshd[77]: Accepted publickey for alice from 10.0.0.5 port 51234 ssh2\nNov 23 10:00:02 h sshd[78]: Failed password for invalid user admin from 10.0.0.66 port 50002 ssh2\n").unwrap();
    let login = r.wait_for("login", |p| matches!(p, Payload::Login(_)));
    let Payload::Login(l) = login else {
        unreachable!()
    };
    assert_eq!(l.user, "alice");
    assert_eq!(l.method, AuthMethod::PublicKey);
    assert_eq!(l.service, LoginService::Ssh);
    assert_eq!(l.src_addr, Some("10.0.0.5".parse().unwrap()));
    assert_eq!(l.src_port, Some(51234));
    assert_eq!(l.pid, Some(77));
    let fail = r.wait_for("failure", |p| matches!(p, Payload::AuthFailure(_)));
    assert!(
        matches!(fail, Payload::AuthFailure(i) if i.user == "admin" && i.src_port == Some(50002))
    );
    assert!(
        !r.seen
            .iter()
            .any(|p| matches!(p, Payload::Login(l) if l.user == "old")),
        "old lines skipped"
    );
}

#[test]
fn file_collector_reports_writes_with_hash() {
    let dir = tempfile::tempdir().unwrap();
    let ssh = dir.path().join(".ssh");
    std::fs::create_dir(&ssh).unwrap();
    let keys = ssh.join("authorized_keys");
    let paths: Vec<PathBuf> = vec![keys.clone()];
    let mut r = Running::start("files", move |ctx| collect::files::run(ctx, paths));
    assert_eq!(r.stats.visibility(), Visibility::Working);
    std::fs::write(&keys, b"ssh-ed25519 AAAA attacker\n").unwrap();
    let ev = r.wait_for("file change", |p| matches!(p, Payload::FileChange(_)));
    let Payload::FileChange(c) = ev else {
        unreachable!()
    };
    assert_eq!(c.path, keys.display().to_string());
    assert_eq!(c.op, FileOp::Created);
    assert_eq!(c.size, Some(26));
    use sha2::Digest;
    let want: [u8; 32] = sha2::Sha256::digest(b"ssh-ed25519 AAAA attacker\n").into();
    assert_eq!(c.sha256, Some(want));
}

#[test]
fn auth_collector_waits_for_a_log_that_appears_later() {
    // Bare sshd -E lines count only from a file no one but root can write.
    if !have_root("auth_collector_waits") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sshd.log");
    let path = log.clone();
    let mut r = Running::start("auth", move |ctx| collect::auth::run(ctx, path, false));
    assert!(
        matches!(r.stats.visibility(), Visibility::Degraded(m) if m.contains("does not exist"))
    );
    std::fs::write(
        &log,
        "Accepted password for late from 10.1.2.3 port 999 ssh2\n",
    )
    .unwrap();
    let login = r.wait_for("login from the new file", |p| {
        matches!(p, Payload::Login(_))
    });
    assert!(matches!(login, Payload::Login(l) if l.user == "late" && l.src_port == Some(999)));
    assert_eq!(r.stats.visibility(), Visibility::Working);
}

/// A root-owned `/usr/sbin/sshd` listening on a free loopback port, or why
/// it could not start.
fn start_sshd(dir: &std::path::Path) -> Result<std::process::Child, String> {
    let key = dir.join("host_key");
    let keygen = std::process::Command::new("/usr/bin/ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .map_err(|e| format!("ssh-keygen: {e}"))?;
    if !keygen.success() {
        return Err(format!("ssh-keygen: {keygen}"));
    }
    // sshd refuses to start without its privilege separation directory.
    std::fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let mut child = std::process::Command::new("/usr/sbin/sshd")
        .args([
            "-D",
            "-f",
            "/dev/null",
            "-o",
            "ListenAddress=127.0.0.1",
            "-o",
            "PidFile=none",
        ])
        .arg("-p")
        .arg(port.to_string())
        .arg("-h")
        .arg(&key)
        .arg("-E")
        .arg(dir.join("sshd-own.log"))
        .spawn()
        .map_err(|e| format!("/usr/sbin/sshd: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("sshd-own.log")).unwrap_or_default();
            return Err(format!("sshd exited ({status}): {log}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("sshd did not listen within 5 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

#[test]
fn auth_collector_refuses_sshd_lines_not_written_by_root_sshd() {
    if !have_root("auth_collector_refuses") {
        return;
    }
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(&log, "").unwrap();
    // Any local user's process: `logger` as nobody would carry this pid.
    let mut forger = std::process::Command::new("/bin/sleep")
        .arg("30")
        .uid(65534)
        .gid(65534)
        .spawn()
        .unwrap();
    let path = log.clone();
    let mut r = Running::start("auth", move |ctx| collect::auth::run(ctx, path, false));
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let forged = format!(
        "Nov 23 10:00:01 h sshd[{}]: Accepted password for root from 6.6.6.6 port 22 ssh2\n",
        forger.id()
    );
    f.write_all(forged.as_bytes()).unwrap();
    let t = r.wait_for("tamper", |p| matches!(p, Payload::Tamper(_)));
    let Payload::Tamper(t) = t else {
        unreachable!()
    };
    assert_eq!(
        (t.source.as_str(), t.reason.as_str()),
        ("auth_log", "sshd_line_not_from_sshd")
    );
    assert_eq!(t.detail, forged.trim_end());
    let _ = forger.kill();
    let _ = forger.wait();
    match start_sshd(dir.path()) {
        Ok(mut sshd) => {
            let genuine = format!(
                "Nov 23 10:00:02 h sshd[{}]: Accepted publickey for alice from 10.0.0.5 port 51234 ssh2\n",
                sshd.id()
            );
            f.write_all(genuine.as_bytes()).unwrap();
            let login = r.wait_for("login", |p| matches!(p, Payload::Login(_)));
            assert!(
                matches!(&login, Payload::Login(l) if l.user == "alice" && l.pid == Some(sshd.id())),
                "{login:?}"
            );
            let _ = sshd.kill();
            let _ = sshd.wait();
        }
        Err(why) => eprintln!("auth_collector_refuses: genuine half skipped: {why}"),
    }
    assert!(
        !r.seen
            .iter()
            .any(|p| matches!(p, Payload::Login(l) if l.user == "root")),
        "forged login reported: {:?}",
        r.seen
    );
}

/// A network namespace created for one test and deleted on drop.
struct TestNetns(String);

impl TestNetns {
    fn new(tag: &str) -> TestNetns {
        let name = format!("vigil-{tag}-{}", std::process::id());
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &name])
            .status();
        let ok = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name}");
        TestNetns(name)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

impl TestNetns {
    /// A namespace whose loopback is up (for connections inside it).
    fn with_loopback(tag: &str) -> TestNetns {
        let ns = TestNetns::new(tag);
        let up = std::process::Command::new("ip")
            .args(["netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(up, "lo up in {}", ns.0);
        ns
    }
}

/// One loopback connection: (server address, client address, client end,
/// server end).
type Loopback = (SocketAddr, SocketAddr, TcpStream, TcpStream);

/// Listen, connect and accept on loopback in the current namespace.
fn loopback_connection() -> Loopback {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let client = TcpStream::connect(server).unwrap();
    let (conn, peer) = listener.accept().unwrap();
    (server, peer, client, conn)
}

/// [`loopback_connection`] from a thread moved into namespace `ns`.
fn loopback_connection_in(ns: &str) -> std::thread::JoinHandle<Loopback> {
    let name = ns.to_owned();
    std::thread::spawn(move || {
        collect::network::enter_netns(&name).unwrap();
        loopback_connection()
    })
}

/// Runs `n` × `/bin/true` from one shell (optionally inside a namespace)
/// and returns their pids, which the shell prints.
fn many_trues(netns: Option<&str>, n: usize) -> Vec<u32> {
    let script =
        format!("i=0; while [ $i -lt {n} ]; do /bin/true & echo $!; wait; i=$((i+1)); done");
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns, "/bin/sh", "-c", &script]);
            c
        }
        None => {
            let mut c = std::process::Command::new("/bin/sh");
            c.args(["-c", &script]);
            c
        }
    };
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{:?}", out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// `--netns` mode: a process that is gone before its `/proc/<pid>/ns/net`
/// could be read (a `/bin/true` lives well under a millisecond) used to get
/// namespace 0 and be dropped. Every one run inside must be reported, with
/// the namespace's inode, and none run outside at the same time.
#[test]
fn netns_filter_reports_every_short_lived_process_inside_and_none_outside() {
    if !have_root("netns_short_lived") {
        return;
    }
    let ns = TestNetns::new("short");
    let inode = std::fs::metadata(format!("/run/netns/{}", ns.0))
        .unwrap()
        .ino();
    let mut r = Running::start("process", move |ctx| {
        collect::process::run(ctx, Some(inode))
    });
    assert_eq!(r.stats.visibility(), Visibility::Working);
    const N: usize = 200;
    let name = ns.0.clone();
    let inside = std::thread::spawn(move || many_trues(Some(&name), N));
    let outside = many_trues(None, N);
    let inside = inside.join().unwrap();
    assert_eq!(inside.len(), N);
    let deadline = Instant::now() + Duration::from_secs(20);
    let reported = |seen: &[Payload]| -> std::collections::HashSet<u32> {
        seen.iter()
            .filter_map(|p| match p {
                Payload::ProcessStart(s) => Some(s.pid),
                _ => None,
            })
            .collect()
    };
    while Instant::now() < deadline && !inside.iter().all(|p| reported(&r.seen).contains(p)) {
        match r.rx.try_recv() {
            Ok(o) => r.seen.push(o.payload),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    // Whatever else arrives meanwhile must be checked too.
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(o) = r.rx.try_recv() {
        r.seen.push(o.payload);
    }
    let pids = reported(&r.seen);
    let missing: Vec<u32> = inside
        .iter()
        .copied()
        .filter(|p| !pids.contains(p))
        .collect();
    let late = r
        .seen
        .iter()
        .filter(|p| matches!(p, Payload::ProcessStart(s) if s.exited_before_enrichment))
        .count();
    eprintln!(
        "inside: {N} run, {} missing; {late} attributed after they were gone; missed counter {}",
        missing.len(),
        r.stats.missed.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(missing.is_empty(), "not reported: {missing:?}");
    for p in &r.seen {
        if let Payload::ProcessStart(s) = p {
            assert_eq!(s.netns, inode, "only the namespace's processes: {s:?}");
            assert!(!outside.contains(&s.pid), "outside process reported: {s:?}");
            if inside.contains(&s.pid) && !s.exited_before_enrichment {
                assert_eq!(s.exe.as_deref(), Some("/usr/bin/true"), "{s:?}");
            }
        }
    }
}

// ---------- the eBPF process backend ----------

/// Root and a loadable eBPF backend; under `CI` a missing one fails.
fn ebpf_probes(test: &str, netns: Option<u64>) -> Option<collect::ebpf::Probes> {
    if !have_root(test) {
        return None;
    }
    match collect::ebpf::Probes::process(netns) {
        Ok(p) => Some(p),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("{test}: the eBPF backend does not load and CI is set: {e}")
        }
        Err(e) => {
            eprintln!("{test}: skipped, the eBPF backend does not load: {e}");
            None
        }
    }
}

fn start_ebpf(netns: Option<u64>, probes: collect::ebpf::Probes) -> Running {
    Running::start("process", move |ctx| {
        collect::process::ebpf::run(ctx, netns, probes)
    })
}

fn started(r: &mut Running, pid: u32) -> ProcessStart {
    match r.wait_for(
        "exec",
        |p| matches!(p, Payload::ProcessStart(s) if s.pid == pid),
    ) {
        Payload::ProcessStart(s) => s,
        _ => unreachable!(),
    }
}

fn exit_code_of(r: &mut Running, pid: u32) -> Option<i32> {
    match r.wait_for(
        "exit",
        |p| matches!(p, Payload::ProcessExit(e) if e.pid == pid),
    ) {
        Payload::ProcessExit(e) => e.exit_code,
        _ => unreachable!(),
    }
}

/// A world-readable temporary directory (the test's children run as nobody).
fn open_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Every field of an exec, from the kernel alone: exe resolved through
/// symlinks, argv, cwd (with a space, through a symlinked temp dir), the
/// effective uid and its name, parent, start time to the tick of
/// `/proc/<pid>/stat`, namespace; then its exit code.
#[test]
fn ebpf_process_backend_reports_exact_exec_and_exit() {
    let Some(probes) = ebpf_probes("ebpf_exec_exit", None) else {
        return;
    };
    use std::os::unix::process::CommandExt;
    let mut r = start_ebpf(None, probes);
    assert_eq!(r.stats.visibility(), Visibility::Working);
    let dir = open_tempdir();
    let cwd = dir.path().canonicalize().unwrap().join("work dir");
    std::fs::create_dir(&cwd).unwrap();
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "sleep 0.3", "sh", "two words", ""])
        .current_dir(&cwd)
        .uid(65534)
        .spawn()
        .unwrap();
    let pid = child.id();
    let s = started(&mut r, pid);
    let expected = ProcessStart {
        pid,
        ppid: std::process::id(),
        exe: Some(sh.display().to_string()),
        // Empty arguments are dropped, as the connector path does.
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            "sleep 0.3".into(),
            "sh".into(),
            "two words".into(),
        ],
        uid: Some(65534),
        user: Some("nobody".into()),
        cwd: Some(cwd.display().to_string()),
        parent_exe: Some(std::env::current_exe().unwrap().display().to_string()),
        start_time_ns: s.start_time_ns,
        netns: own_netns(),
        exited_before_enrichment: false,
    };
    assert_eq!(s, expected);
    let from_stat = collect::process::Enricher::new()
        .process_start(pid)
        .start_time_ns;
    assert_eq!(s.start_time_ns, from_stat, "same tick as /proc/<pid>/stat");
    assert!(child.wait().unwrap().success());
    assert_eq!(exit_code_of(&mut r, pid), Some(0));

    // Exit codes: a status, a signal.
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "exit 7"])
        .spawn()
        .unwrap();
    let pid = child.id();
    child.wait().unwrap();
    assert_eq!(exit_code_of(&mut r, pid), Some(7));
    let mut child = std::process::Command::new("/bin/sleep")
        .arg("5")
        .spawn()
        .unwrap();
    let pid = child.id();
    started(&mut r, pid);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(exit_code_of(&mut r, pid), Some(-9));
}

/// What the connector path could not give a process gone within a
/// millisecond (`exited_before_enrichment`), the kernel program does; and
/// paths that cross mounts (`/sys/fs/cgroup` is three mounts deep here,
/// `/dev/shm` is stacked twice).
#[test]
fn ebpf_process_backend_enriches_short_lived_processes_and_crosses_mounts() {
    let Some(probes) = ebpf_probes("ebpf_short_lived", None) else {
        return;
    };
    let mut r = start_ebpf(None, probes);
    for cwd in [
        "/",
        "/proc/sys/kernel",
        "/dev/shm",
        "/sys/fs/cgroup",
        "/tmp",
    ] {
        if !std::path::Path::new(cwd).is_dir() {
            continue;
        }
        let mut child = std::process::Command::new("/bin/true")
            .arg("short")
            .current_dir(cwd)
            .spawn()
            .unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let s = started(&mut r, pid);
        assert_eq!(
            (s.exe.as_deref(), s.cwd.as_deref(), &s.argv[..]),
            (
                Some("/usr/bin/true"),
                Some(cwd),
                &["/bin/true".to_string(), "short".to_string()][..]
            )
        );
        assert!(!s.exited_before_enrichment);
        assert_eq!(exit_code_of(&mut r, pid), Some(0));
    }
}

/// A cwd deeper than the kernel walk (64 components) and a command line
/// longer than the captured bytes are read from `/proc` instead, and come
/// out exactly as the connector path reports them.
#[test]
fn ebpf_process_backend_falls_back_to_proc_for_deep_paths_and_long_argv() {
    let Some(probes) = ebpf_probes("ebpf_deep", None) else {
        return;
    };
    let mut r = start_ebpf(None, probes);
    let dir = open_tempdir();
    let mut deep = dir.path().canonicalize().unwrap();
    for i in 0..70 {
        deep.push(format!("d{i}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    let long: Vec<String> = (0..8).map(|i| format!("{i}{}", "x".repeat(5000))).collect();
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "sleep 0.5", "sh"])
        .args(&long)
        .current_dir(&deep)
        .spawn()
        .unwrap();
    let pid = child.id();
    let s = started(&mut r, pid);
    let mut connector = collect::process::Enricher::new().process_start(pid);
    let _ = child.kill();
    child.wait().unwrap();
    assert_eq!(s.cwd, Some(deep.display().to_string()));
    assert_eq!(s.argv.len(), 12);
    assert!(s.argv[4..]
        .iter()
        .all(|a| a.len() == vigil_proto::limits::MAX_STRING));
    connector.parent_exe = s.parent_exe.clone();
    assert_eq!(s, connector);
}

/// `--netns`: the kernel keeps only the namespace's processes; every one
/// run inside is reported whole (none is gone before it could be read) and
/// none run outside.
#[test]
fn ebpf_netns_filter_keeps_exactly_the_namespaces_processes() {
    if !have_root("ebpf_netns") {
        return;
    }
    let ns = TestNetns::new("ebpf");
    let inode = std::fs::metadata(format!("/run/netns/{}", ns.0))
        .unwrap()
        .ino();
    let Some(probes) = ebpf_probes("ebpf_netns", Some(inode)) else {
        return;
    };
    let mut r = start_ebpf(Some(inode), probes);
    const N: usize = 100;
    let name = ns.0.clone();
    let inside = std::thread::spawn(move || many_trues(Some(&name), N));
    let outside = many_trues(None, N);
    let inside = inside.join().unwrap();
    for &pid in &inside {
        let s = started(&mut r, pid);
        assert_eq!(
            (s.netns, s.exe.as_deref(), s.exited_before_enrichment),
            (inode, Some("/usr/bin/true"), false)
        );
        assert_eq!(exit_code_of(&mut r, pid), Some(0));
    }
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(o) = r.rx.try_recv() {
        r.seen.push(o.payload);
    }
    for p in &r.seen {
        match p {
            Payload::ProcessStart(s) => {
                assert_eq!(s.netns, inode, "{s:?}");
                assert!(!outside.contains(&s.pid), "outside process reported: {s:?}");
            }
            Payload::ProcessExit(e) => assert!(!outside.contains(&e.pid), "{e:?}"),
            _ => {}
        }
    }
    assert_eq!(r.stats.missed.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// `auto` picks eBPF where it loads and says so; `connector` is the
/// connector.
#[test]
fn process_backend_choice_is_reported() {
    use collect::process::ebpf::{choose, Chosen};
    use vigil_sensor::config::ProcessBackend;
    let c = choose(ProcessBackend::Connector, None).unwrap();
    assert!(matches!(c, Chosen::Connector(None)));
    assert_eq!(c.label(), "connector");
    if ebpf_probes("backend_choice", None).is_none() {
        return;
    }
    let c = choose(ProcessBackend::Auto, None).unwrap();
    assert_eq!(c.label(), "ebpf");
    let stats = CollectorStats::new("process");
    stats.set_backend(c.label());
    assert_eq!(stats.display_name(), "process (ebpf)");
}

// ---------- eBPF connect/accept attribution and TCP flows ----------

fn ebpf_net_probes(test: &str) -> Option<collect::ebpf::Probes> {
    ebpf_probes(test, None)?;
    match collect::ebpf::Probes::network(None) {
        Ok(p) => Some(p),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("{test}: eBPF network attribution does not load and CI is set: {e}")
        }
        Err(e) => {
            eprintln!("{test}: skipped, eBPF network attribution does not load: {e}");
            None
        }
    }
}

/// The kernel programs see a TCP connect and its accept, each once, with
/// the exact addresses, IPv4 and IPv6: the connect with the process that
/// made it; the accept with the accepting process, or (where no accept
/// program attaches) as a handshake record without a process.
#[test]
fn ebpf_network_records_connects_and_accepts_with_pid() {
    let Some(mut probes) = ebpf_net_probes("ebpf_net_records") else {
        return;
    };
    assert!(
        probes.attributes_accepts(),
        "accepts are reported one way or another"
    );
    use collect::ebpf::record::{decode, NetRecord, Record};
    let me = std::process::id();
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let listener = TcpListener::bind(bind).unwrap();
        let server = listener.local_addr().unwrap();
        let client = TcpStream::connect(server).unwrap();
        let (_conn, peer) = listener.accept().unwrap();
        let local = client.local_addr().unwrap();
        assert_eq!(peer, local);
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        // Waits the whole time: a duplicate would arrive meanwhile.
        while Instant::now() < deadline {
            probes.wait(Duration::from_millis(50));
            probes.drain(|b| match decode(b) {
                Ok(r @ (Record::Connect(_) | Record::Accept(_) | Record::Handshake(_))) => {
                    seen.push(r)
                }
                other => panic!("{other:?}"),
            });
        }
        seen.retain(|r| match r {
            Record::Connect(n) => n.local == local,
            Record::Accept(n) | Record::Handshake(n) => n.remote == local,
            _ => false,
        });
        let inbound = NetRecord {
            tgid: me,
            local: server,
            remote: local,
        };
        let accept = match seen.get(1) {
            Some(Record::Handshake(_)) => {
                // Attributed to the listener's opener, this test.
                eprintln!(
                    "ebpf_net_records: accepts reported at handshake (no fexit/kretprobe here)"
                );
                Record::Handshake(inbound)
            }
            _ => Record::Accept(inbound),
        };
        let connect = Record::Connect(NetRecord {
            tgid: me,
            local,
            remote: server,
        });
        // The handshake completes (softirq, on the client's ACK) before or
        // after the client side leaves SYN_SENT: either order.
        seen.sort_by_key(|r| matches!(r, Record::Connect(_)) as u8 ^ 1);
        assert_eq!(seen, vec![connect, accept], "{bind}");
    }
    assert_eq!(probes.lost(), 0);
}

/// Drain what has arrived into `r.seen`, waiting `for_ms` first.
fn settle(r: &mut Running, for_ms: u64) {
    std::thread::sleep(Duration::from_millis(for_ms));
    while let Ok(o) = r.rx.try_recv() {
        r.seen.push(o.payload);
    }
}

/// The network collector with TCP flows from eBPF: a connect made by a
/// child process (bash's /dev/tcp) and the test's own accept, IPv4 and
/// IPv6, each reported exactly once with the right pid, executable,
/// addresses, ports and direction.
#[test]
fn network_collector_with_ebpf_flows_reports_each_once_with_pid() {
    if ebpf_net_probes("ebpf_net_collector").is_none() {
        return;
    }
    let mut r = Running::start("network", |ctx| {
        collect::network::run_with(ctx, Duration::from_millis(100), None, true)
    });
    assert_eq!(r.stats.visibility(), Visibility::Working);
    assert_eq!(
        r.stats.display_name(),
        format!("network ({})", collect::network::BACKEND_EBPF_FLOWS)
    );
    std::thread::sleep(Duration::from_millis(250));
    let bash = std::fs::canonicalize("/bin/bash").unwrap();
    let me = std::env::current_exe().unwrap().display().to_string();
    for (bind, host) in [("127.0.0.1:0", "127.0.0.1"), ("[::1]:0", "::1")] {
        let listener = TcpListener::bind(bind).unwrap();
        let server = listener.local_addr().unwrap();
        let mut child = std::process::Command::new("/bin/bash")
            .args([
                "-c",
                &format!("exec 3<>/dev/tcp/{host}/{}; sleep 1; true", server.port()),
            ])
            .spawn()
            .unwrap();
        let (_conn, peer) = listener.accept().unwrap();
        let c = r.wait_for(
            "connect",
            |p| matches!(p, Payload::NetConnect(f) if f.local == peer),
        );
        assert!(
            matches!(&c, Payload::NetConnect(f) if f.transport == Transport::Tcp && f.remote == server && f.pid == Some(child.id()) && f.exe.as_deref() == Some(bash.to_str().unwrap()) && f.repeat == 1),
            "{bind}: {c:?}"
        );
        let a = r.wait_for(
            "accept",
            |p| matches!(p, Payload::NetAccept(f) if f.remote == peer),
        );
        assert!(
            matches!(&a, Payload::NetAccept(f) if f.transport == Transport::Tcp && f.local == server && f.pid == Some(std::process::id()) && f.exe.as_deref() == Some(me.as_str()) && f.repeat == 1),
            "{bind}: {a:?}"
        );
        let _ = child.kill();
        let _ = child.wait();
        // Once each, not again on later polls or at close.
        settle(&mut r, 400);
        let connects = r
            .seen
            .iter()
            .filter(|p| matches!(p, Payload::NetConnect(f) if f.local == peer))
            .count();
        let accepts = r
            .seen
            .iter()
            .filter(|p| matches!(p, Payload::NetAccept(f) if f.remote == peer))
            .count();
        assert_eq!((connects, accepts), (1, 1), "{bind}");
    }
    assert_eq!(r.stats.missed.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// `--netns`: with TCP flows from eBPF, a connect and accept made inside
/// the namespace are reported (once each, with pid and addresses) and one
/// made at the same time outside it is not.
#[test]
fn network_collector_with_ebpf_flows_keeps_only_the_namespaces_flows() {
    if ebpf_net_probes("ebpf_net_netns").is_none() {
        return;
    }
    let ns = TestNetns::with_loopback("netflows");
    let name = ns.0.clone();
    let mut r = Running::start("network", move |ctx| {
        collect::network::run_with(ctx, Duration::from_millis(100), Some(name), true)
    });
    assert_eq!(r.stats.visibility(), Visibility::Working);
    assert_eq!(
        r.stats.display_name(),
        format!("network ({})", collect::network::BACKEND_EBPF_FLOWS)
    );
    std::thread::sleep(Duration::from_millis(250));
    // Inside: a thread of this process moved into the namespace; outside,
    // meanwhile.
    let inside = loopback_connection_in(&ns.0);
    let (out_server, out_peer, out_client, out_conn) = loopback_connection();
    let (server, peer, client, conn) = inside.join().unwrap();
    let me = Some(std::process::id());
    let c = r.wait_for(
        "connect inside",
        |p| matches!(p, Payload::NetConnect(f) if f.local == peer && f.remote == server),
    );
    assert!(matches!(&c, Payload::NetConnect(f) if f.pid == me), "{c:?}");
    let a = r.wait_for(
        "accept inside",
        |p| matches!(p, Payload::NetAccept(f) if f.local == server && f.remote == peer),
    );
    assert!(matches!(&a, Payload::NetAccept(f) if f.pid == me), "{a:?}");
    settle(&mut r, 500);
    let mine = |f: &vigil_proto::NetFlow| {
        (f.local == peer && f.remote == server) || (f.local == server && f.remote == peer)
    };
    for p in &r.seen {
        match p {
            Payload::NetConnect(f) | Payload::NetAccept(f) => {
                assert!(
                    f.local.port() != out_server.port() && f.remote.port() != out_server.port(),
                    "outside flow reported: {p:?}"
                );
                assert!(
                    mine(f) || f.transport == Transport::Udp,
                    "unexpected flow: {p:?}"
                );
            }
            _ => {}
        }
    }
    let n = r
        .seen
        .iter()
        .filter(|p| matches!(p, Payload::NetConnect(f) | Payload::NetAccept(f) if mine(f)))
        .count();
    assert_eq!(n, 2, "one connect and one accept: {:?}", r.seen);
    drop((client, conn, out_client, out_conn, out_peer));
    drop(r);
}

/// Without `--netns` the host is the sensor's own namespace: a connection
/// made inside another namespace (a container, a lab host) is that host's
/// and is not reported, while one made here is. (The kernel programs see
/// every namespace's sockets; `sock_diag` only ever saw this one.)
#[test]
fn network_collector_with_ebpf_flows_and_no_netns_keeps_its_own_namespace() {
    if ebpf_net_probes("ebpf_net_own_netns").is_none() {
        return;
    }
    let ns = TestNetns::with_loopback("ownflows");
    let mut r = Running::start("network", move |ctx| {
        collect::network::run_with(ctx, Duration::from_millis(100), None, true)
    });
    std::thread::sleep(Duration::from_millis(250));
    let inside = loopback_connection_in(&ns.0);
    let (out_server, out_peer, out_client, out_conn) = loopback_connection();
    let (in_server, in_peer, in_client, in_conn) = inside.join().unwrap();
    r.wait_for(
        "connect here",
        |p| matches!(p, Payload::NetConnect(f) if f.remote == out_server),
    );
    settle(&mut r, 500);
    for p in &r.seen {
        if let Payload::NetConnect(f) | Payload::NetAccept(f) = p {
            // The whole address pair: other tests' connections here may
            // reuse one of the inside ports (ports are per namespace).
            let pair = |a, b| (f.local, f.remote) == (a, b) || (f.local, f.remote) == (b, a);
            let inside = pair(in_peer, in_server);
            assert!(
                !inside || pair(out_peer, out_server),
                "a flow of another namespace reported as this host's: {p:?}"
            );
        }
    }
    drop((in_client, in_conn, out_client, out_conn));
    drop(r);
}

/// A listener opened before the collector started (so its opener was not
/// seen by the kernel program): where accepts are reported at handshake,
/// they are attributed through the listener's owner in `/proc`, looked up
/// once; either way the accept carries this process.
#[test]
fn network_collector_with_ebpf_flows_attributes_accepts_on_older_listeners() {
    if ebpf_net_probes("ebpf_net_old_listener").is_none() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let mut r = Running::start("network", |ctx| {
        collect::network::run_with(ctx, Duration::from_millis(100), None, true)
    });
    assert_eq!(r.stats.visibility(), Visibility::Working);
    std::thread::sleep(Duration::from_millis(250));
    let me = std::env::current_exe().unwrap().display().to_string();
    let mut peers = Vec::new();
    for _ in 0..3 {
        let client = TcpStream::connect(server).unwrap();
        let (conn, peer) = listener.accept().unwrap();
        let a = r.wait_for(
            "accept",
            |p| matches!(p, Payload::NetAccept(f) if f.remote == peer),
        );
        assert!(
            matches!(&a, Payload::NetAccept(f) if f.local == server && f.pid == Some(std::process::id()) && f.exe.as_deref() == Some(me.as_str())),
            "{a:?}"
        );
        peers.push((client, conn));
    }
}
