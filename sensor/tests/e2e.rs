//! The whole sensor with real collectors, shipping to the in-process test
//! appliance: real processes, loopback TCP, file writes, a real sshd login,
//! a network-namespace host, and isolation in a namespace. Needs root:
//! without it the tests fail when `CI` is set and otherwise skip.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{TestCa, TestServer, GOOD_TOKEN, TEST_HOST};
use vigil_proto::{AuthMethod, CommandAction, FileOp, LoginService, Payload, Visibility};
use vigil_sensor::response::{self, ResponseCtx};
use vigil_sensor::{enroll, Config, EnrollParams, Sensor};

fn have_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs root and CI is set");
    }
    eprintln!("{test}: skipped, needs root");
    false
}

async fn start_sensor(
    server: &TestServer,
    state: &Path,
    tweak: impl FnOnce(&mut Config),
) -> vigil_sensor::SensorHandle {
    let id = enroll(&EnrollParams {
        appliance: server.addr.to_string(),
        token: GOOD_TOKEN.into(),
        ca_sha256: server.ca.sha256(),
        state_dir: state.to_path_buf(),
    })
    .await
    .unwrap();
    let mut c = Config::new(server.addr.to_string(), state);
    c.batch_max = Duration::from_millis(50);
    c.heartbeat = Duration::from_millis(300);
    c.collectors.network_poll = Duration::from_millis(100);
    c.cpu_budget_pct = 100.0;
    tweak(&mut c);
    let h = Sensor::start_with(c, id, None).await.unwrap();
    // Let collectors come up and the network poller prime.
    tokio::time::sleep(Duration::from_millis(400)).await;
    h
}

fn has(server: &TestServer, pred: impl Fn(&Payload) -> bool) -> bool {
    server
        .seen
        .lock()
        .unwrap()
        .events
        .values()
        .any(|e| pred(&e.payload))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_exec_connect_file_and_login_reach_the_appliance() {
    if !have_root("e2e") {
        return;
    }
    let server = TestServer::start(TestCa::new(), "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("cron.d");
    std::fs::create_dir(&watched).unwrap();
    let auth_log = dir.path().join("auth.log");
    std::fs::write(&auth_log, "").unwrap();
    let (w, a) = (watched.clone(), auth_log.clone());
    let sensor = start_sensor(&server, &dir.path().join("state"), move |c| {
        c.collectors.file_paths = Some(vec![w]);
        c.collectors.auth_log = a;
    })
    .await;

    let mut child = Command::new("/bin/sleep").arg("0.2").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let srv = listener.local_addr().unwrap();
    let client = TcpStream::connect(srv).unwrap();
    let cl = client.local_addr().unwrap();
    let _accepted = listener.accept().unwrap();
    std::fs::write(watched.join("backdoor"), b"* * * * * root nc -e /bin/sh\n").unwrap();
    // sshd's own `-E` output (bare lines, in a file only root can write)
    // is believed; a tagged line whose pid no sshd has is refused.
    std::fs::write(
        &auth_log,
        "Accepted password for mallory from 10.9.9.9 port 4444 ssh2\n\
         Nov 23 10:00:01 h sshd[8388608]: Accepted password for eve from 10.9.9.8 port 4445 ssh2\n",
    )
    .unwrap();

    let me = std::process::id();
    let t = Duration::from_secs(15);
    server
        .wait_for("exec of sleep", t, |s| {
            s.events.values().any(|e| {
                matches!(&e.payload, Payload::ProcessStart(p) if p.pid == pid
                    && p.exe.as_deref() == Some("/usr/bin/sleep")
                    && p.argv == ["/bin/sleep", "0.2"]
                    && p.ppid == me && p.user.as_deref() == Some("root"))
            })
        })
        .await;
    server
        .wait_for("exit of sleep", t, |s| {
            s.events.values().any(|e| matches!(&e.payload, Payload::ProcessExit(x) if x.pid == pid && x.exit_code == Some(0)))
        })
        .await;
    server
        .wait_for("connect", t, |s| {
            s.events.values().any(|e| matches!(&e.payload, Payload::NetConnect(f) if f.local == cl && f.remote == srv && f.pid == Some(me)))
        })
        .await;
    server
        .wait_for("accept", t, |s| {
            s.events.values().any(|e| matches!(&e.payload, Payload::NetAccept(f) if f.local == srv && f.remote == cl && f.pid == Some(me)))
        })
        .await;
    server
        .wait_for("file change", t, |s| {
            s.events.values().any(|e| matches!(&e.payload, Payload::FileChange(f) if f.path.ends_with("cron.d/backdoor") && f.op == FileOp::Created && f.size == Some(29) && f.sha256.is_some()))
        })
        .await;
    server
        .wait_for("login", t, |s| {
            s.events.values().any(|e| matches!(&e.payload, Payload::Login(l) if l.user == "mallory" && l.src_port == Some(4444) && l.method == AuthMethod::Password))
        })
        .await;
    server
        .wait_for("tamper for the forged line", t, |s| {
            s.events.values().any(|e| matches!(&e.payload, Payload::Tamper(r) if r.source == "auth_log" && r.reason == "sshd_line_pid_unknown" && r.detail.contains("eve")))
        })
        .await;
    server
        .wait_for("heartbeat with all collectors working", t, |s| {
            s.heartbeats.iter().any(|h| {
                h.collectors.len() == 4
                    && h.collectors
                        .iter()
                        .all(|c| c.visibility == Visibility::Working)
            })
        })
        .await;
    {
        let seen = server.seen.lock().unwrap();
        assert!(seen.events.values().all(|e| e.header.host == TEST_HOST));
        assert!(!seen
            .events
            .values()
            .any(|e| matches!(&e.payload, Payload::Login(l) if l.user == "eve")));
        let seqs: Vec<u64> = seen.events.keys().copied().collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "gap-free"
        );
    }
    sensor.shutdown().await;
    server.stop().await;
}

struct Sshd {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sshd {
    fn start() -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for k in ["hostkey", "userkey"] {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(k))
                .status()
                .unwrap();
            assert!(ok.success());
        }
        std::fs::copy(d.join("userkey.pub"), d.join("authorized_keys")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\nPermitRootLogin yes\n",
                d.join("hostkey").display(),
                d.join("authorized_keys").display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        std::fs::write(d.join("auth.log"), "").unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-f"])
            .arg(d.join("sshd_config"))
            .arg("-E")
            .arg(d.join("auth.log"))
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Sshd { child, port, dir }
    }

    fn ssh(&self, user: &str) -> bool {
        Command::new("ssh")
            .arg("-i")
            .arg(self.dir.path().join("userkey"))
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
                "-p",
                &self.port.to_string(),
                &format!("{user}@127.0.0.1"),
                "true",
            ])
            .status()
            .unwrap()
            .success()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_ssh_login_failure_and_logout_reach_the_appliance() {
    if !have_root("ssh e2e") {
        return;
    }
    let sshd = Sshd::start();
    let server = TestServer::start(TestCa::new(), "127.0.0.1:0".parse().unwrap()).await;
    let state = tempfile::tempdir().unwrap();
    let log = sshd.dir.path().join("auth.log");
    let sensor = start_sensor(&server, state.path(), move |c| {
        c.collectors.process = false;
        c.collectors.network = false;
        c.collectors.files = false;
        c.collectors.auth_log = log;
    })
    .await;
    assert!(sshd.ssh("root"), "ssh login as root works");
    assert!(!sshd.ssh("nosuchuser"), "unknown user refused");
    let t = Duration::from_secs(15);
    let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    server
        .wait_for("ssh login", t, |s| {
            s.events.values().any(|e| {
                matches!(&e.payload, Payload::Login(l) if l.user == "root"
                && l.method == AuthMethod::PublicKey && l.service == LoginService::Ssh
                && l.src_addr == Some(lo) && l.src_port.is_some())
            })
        })
        .await;
    server
        .wait_for("ssh logout", t, |s| {
            s.events.values().any(|e| matches!(&e.payload, Payload::Logout(l) if l.user == "root" && l.method == AuthMethod::PublicKey))
        })
        .await;
    server
        .wait_for("invalid user", t, |s| {
            s.events.values().any(|e| matches!(&e.payload, Payload::AuthFailure(l) if l.user == "nosuchuser" && l.src_addr == Some(lo)))
        })
        .await;
    // Login and logout carry the same source port.
    let ports: Vec<Option<u16>> = server
        .seen
        .lock()
        .unwrap()
        .events
        .values()
        .filter_map(|e| match &e.payload {
            Payload::Login(l) | Payload::Logout(l) if l.user == "root" => Some(l.src_port),
            _ => None,
        })
        .collect();
    assert_eq!(ports.len(), 2);
    assert_eq!(ports[0], ports[1]);
    sensor.shutdown().await;
    server.stop().await;
}

/// A network namespace that is deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("vigil-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        sh(&format!("ip -n {name} link set lo up"));
        Netns(name)
    }

    fn inode(&self) -> u64 {
        std::fs::metadata(format!("/run/netns/{}", self.0))
            .unwrap()
            .ino()
    }

    /// Run `f` in a thread inside this namespace.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let name = self.0.clone();
        std::thread::spawn(move || {
            vigil_sensor::collect::network::enter_netns(&name).unwrap();
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn sh(cmd: &str) {
    let ok = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(ok.success(), "{cmd}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_scope_filters_processes_and_watches_sockets_inside() {
    if !have_root("netns e2e") {
        return;
    }
    let ns = Netns::new("scope");
    let server = TestServer::start(TestCa::new(), "127.0.0.1:0".parse().unwrap()).await;
    let state = tempfile::tempdir().unwrap();
    let name = ns.0.clone();
    let sensor = start_sensor(&server, state.path(), move |c| {
        c.netns = Some(name);
        c.collectors.auth = false;
        c.collectors.files = false;
    })
    .await;
    // Inside: `ip netns exec` enters the namespace, then execs sleep (same pid).
    let mut inside = Command::new("ip")
        .args(["netns", "exec", &ns.0, "/bin/sleep", "0.3"])
        .spawn()
        .unwrap();
    let inside_pid = inside.id();
    let mut outside = Command::new("/bin/sleep").arg("0.31").spawn().unwrap();
    let outside_pid = outside.id();
    inside.wait().unwrap();
    outside.wait().unwrap();
    // A connection inside the namespace (owned by this test process).
    let (srv, cl) = ns.run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = l.local_addr().unwrap();
        let c = TcpStream::connect(s).unwrap();
        let _a = l.accept().unwrap();
        let cl = c.local_addr().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        (s, cl)
    });
    let inode = ns.inode();
    let t = Duration::from_secs(15);
    server
        .wait_for("exec inside the namespace", t, |s| {
            s.events.values().any(|e| matches!(&e.payload, Payload::ProcessStart(p) if p.pid == inside_pid && p.netns == inode && p.exe.as_deref() == Some("/usr/bin/sleep")))
        })
        .await;
    let me = std::process::id();
    server
        .wait_for("connect inside the namespace", t, |s| {
            s.events.values().any(|e| matches!(&e.payload, Payload::NetConnect(f) if f.local == cl && f.remote == srv && f.pid == Some(me)))
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !has(
            &server,
            |p| matches!(p, Payload::ProcessStart(s) if s.pid == outside_pid)
        ),
        "process outside the namespace is filtered"
    );
    assert!(
        !has(
            &server,
            |p| matches!(p, Payload::ProcessStart(s) if s.netns != inode)
        ),
        "only the namespace's processes"
    );
    sensor.shutdown().await;
    server.stop().await;
}

fn can_connect(ns: &Netns, to: SocketAddr) -> bool {
    ns.run(move || TcpStream::connect_timeout(&to, Duration::from_millis(400)).is_ok())
}

#[test]
fn isolate_and_release_in_a_namespace() {
    if !have_root("isolate") {
        return;
    }
    let a = Netns::new("isoA");
    let b = Netns::new("isoB");
    let (va, vb) = (
        format!("va{}", std::process::id() % 100000),
        format!("vb{}", std::process::id() % 100000),
    );
    sh(&format!(
        "ip link add {va} netns {} type veth peer name {vb} netns {}",
        a.0, b.0
    ));
    sh(&format!(
        "ip -n {} addr add 10.77.0.1/24 dev {va} && ip -n {} link set {va} up",
        a.0, a.0
    ));
    sh(&format!(
        "ip -n {} addr add 10.77.0.2/24 dev {vb} && ip -n {} link set {vb} up",
        b.0, b.0
    ));
    // Listeners in B (peer) and in A (its own loopback).
    let peer: SocketAddr = "10.77.0.2:7070".parse().unwrap();
    let _lb = b.run(move || TcpListener::bind(peer).unwrap());
    let own: SocketAddr = "127.0.0.1:7071".parse().unwrap();
    let _la = a.run(move || TcpListener::bind(own).unwrap());
    assert!(can_connect(&a, peer), "baseline connectivity");

    let ctx = ResponseCtx {
        appliance: "10.77.0.99:7443".into(),
        netns: Some(a.0.clone()),
    };
    let cmd = |action| vigil_proto::Command {
        id: 1,
        operator: "op".into(),
        reason: "test".into(),
        issued_ns: 0,
        action,
    };
    let r = response::execute(
        &cmd(CommandAction::Isolate {
            allow: vec![],
            expires_ns: None,
        }),
        &ctx,
        0,
    );
    assert!(r.ok, "{}", r.message);
    assert!(r.message.contains("10.77.0.99"), "{}", r.message);
    assert!(!can_connect(&a, peer), "isolated from the peer");
    assert!(can_connect(&a, own), "loopback still works");
    let r = response::execute(&cmd(CommandAction::Release), &ctx, 0);
    assert!(r.ok && r.message == "released", "{}", r.message);
    assert!(can_connect(&a, peer), "released");
    let r = response::execute(&cmd(CommandAction::Release), &ctx, 0);
    assert!(r.ok && r.message == "was not isolated", "{}", r.message);

    // The appliance's address stays reachable while isolated.
    let ctx2 = ResponseCtx {
        appliance: "10.77.0.2:7070".into(),
        netns: Some(a.0.clone()),
    };
    assert!(
        response::execute(
            &cmd(CommandAction::Isolate {
                allow: vec![],
                expires_ns: None
            }),
            &ctx2,
            0
        )
        .ok
    );
    assert!(can_connect(&a, peer), "appliance allowed");
    assert!(response::execute(&cmd(CommandAction::Release), &ctx2, 0).ok);

    // Expiry releases by itself.
    let now = 1_000_000_000_000u64;
    let r = response::execute(
        &cmd(CommandAction::Isolate {
            allow: vec![],
            expires_ns: Some(now + 1_000_000_000),
        }),
        &ctx,
        now,
    );
    assert!(r.ok);
    assert!(!can_connect(&a, peer));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(can_connect(&a, peer), "isolation expired");
}
