//! The whole sensor with real collectors, shipping to the in-process test
//! appliance: real processes, loopback TCP, file writes, a real sshd login,
//! a network-namespace host, and isolation in a namespace. Needs root:
//! without it the tests fail when `CI` is set and otherwise skip.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{TestCa, TestServer, GOOD_TOKEN, TEST_HOST};
use sha2::{Digest, Sha256};
use vigil_proto::{
    AuthMethod, CommandAction, CommandState, FileOp, LoginService, Payload, Receipt, RefusalReason,
    Visibility,
};
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

/// Whether `nft` can run (root and the tool): else the isolation tests fail
/// under `CI` and skip otherwise.
fn have_nft(test: &str) -> bool {
    if !have_root(test) {
        return false;
    }
    if Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs nft and CI is set");
    }
    eprintln!("{test}: skipped, needs nft");
    false
}

fn can_ping(ns: &Netns, to: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", &ns.0, "ping", "-c1", "-W1", to])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// A UDP datagram to `to` from inside `ns` comes back (an echo server runs there).
fn udp_echo(ns: &Netns, to: SocketAddr) -> bool {
    ns.run(move || {
        let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let s = UdpSocket::bind(bind).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 8];
        s.send_to(b"ping", to).is_ok() && s.recv(&mut buf).is_ok_and(|n| &buf[..n] == b"ping")
    })
}

/// Two namespaces on a veth pair: A (the sensor's host) and B (a peer
/// with TCP listeners, and the appliance: UDP echo on its QUIC port, on
/// addresses of their own).
struct IsolationLab {
    a: Netns,
    _b: Netns,
    peers: [SocketAddr; 2],
    appliance: [SocketAddr; 2],
}

fn isolation_lab() -> IsolationLab {
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
    for (ns, dev, last) in [(&a, &va, 1), (&b, &vb, 2)] {
        sh(&format!(
            "ip -n {n} addr add 10.77.0.{last}/24 dev {dev} && ip -n {n} addr add fd77::{last}/64 dev {dev} nodad && ip -n {n} link set {dev} up",
            n = ns.0
        ));
    }
    sh(&format!(
        "ip -n {n} addr add 10.77.0.3/24 dev {vb} && ip -n {n} addr add fd77::3/64 dev {vb} nodad",
        n = b.0
    ));
    let peers: [SocketAddr; 2] = [
        "10.77.0.2:7070".parse().unwrap(),
        "[fd77::2]:7070".parse().unwrap(),
    ];
    let appliance: [SocketAddr; 2] = [
        "10.77.0.3:7443".parse().unwrap(),
        "[fd77::3]:7443".parse().unwrap(),
    ];
    for addr in peers {
        // Listeners stay open as long as the namespace (they are leaked on purpose).
        std::mem::forget(b.run(move || TcpListener::bind(addr).unwrap()));
    }
    for addr in appliance {
        let sock = b.run(move || UdpSocket::bind(addr).unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], from);
            }
        });
    }
    IsolationLab {
        a,
        _b: b,
        peers,
        appliance,
    }
}

fn isolated_from_peers(lab: &IsolationLab) -> bool {
    let cut = !can_connect(&lab.a, lab.peers[0])
        && !can_connect(&lab.a, lab.peers[1])
        && !can_ping(&lab.a, "10.77.0.2")
        && !can_ping(&lab.a, "fd77::2");
    let open = can_connect(&lab.a, lab.peers[0])
        && can_connect(&lab.a, lab.peers[1])
        && can_ping(&lab.a, "10.77.0.2")
        && can_ping(&lab.a, "fd77::2");
    assert!(
        cut != open,
        "partly isolated: TCP/ICMP over IPv4/IPv6 disagree"
    );
    cut
}

fn responder(lab: &IsolationLab, state: &Path) -> response::Responder {
    let ctx = ResponseCtx {
        appliance_addrs: lab.appliance.iter().map(|a| a.ip()).collect(),
        appliance_port: 7443,
        netns: Some(lab.a.0.clone()),
        state_dir: state.to_path_buf(),
    };
    response::Responder::open(ctx, TEST_HOST, Vec::new()).unwrap()
}

fn isolate(id: u64, expires_ns: Option<u64>) -> vigil_proto::Command {
    common::signed(
        id,
        CommandAction::IsolateHost {
            allow: vec![],
            expires_ns,
            allow_dhcp_nd: false,
        },
    )
}

#[test]
fn isolate_and_release_in_a_namespace() {
    if !have_nft("isolate") {
        return;
    }
    let lab = isolation_lab();
    let state = tempfile::tempdir().unwrap();
    response::store_command_key(
        state.path(),
        &common::command_key().verifying_key().to_bytes(),
    )
    .unwrap();
    let own: SocketAddr = "127.0.0.1:7071".parse().unwrap();
    let _la = lab.a.run(move || TcpListener::bind(own).unwrap());
    assert!(!isolated_from_peers(&lab), "baseline connectivity");
    let r = responder(&lab, state.path());
    let now = common::signed(0, CommandAction::Release).created_ns;

    let got = r.handle(&isolate(1, None), now);
    assert_eq!(got.state, CommandState::Done, "{}", got.message);
    let Receipt::Isolation(receipt) = &got.receipt else {
        panic!("{:?}", got.receipt)
    };
    assert!(receipt.self_check_ok, "{}", receipt.self_check);
    let script = response::isolate::isolation_ruleset(
        &[lab.appliance[0].ip(), lab.appliance[1].ip()],
        7443,
        &[response::isolate::Isolation {
            id: 1,
            expires_ns: None,
            allow: vec![],
            allow_dhcp_nd: false,
        }],
    );
    assert_eq!(
        receipt.ruleset_sha256,
        <[u8; 32]>::from(Sha256::digest(script.as_bytes()))
    );
    assert!(
        isolated_from_peers(&lab),
        "isolated from the peer, IPv4 and IPv6, TCP and ICMP"
    );
    assert!(can_connect(&lab.a, own), "loopback still works");
    assert!(
        udp_echo(&lab.a, lab.appliance[0]),
        "appliance reachable over IPv4"
    );
    assert!(
        udp_echo(&lab.a, lab.appliance[1]),
        "appliance reachable over IPv6"
    );

    // A reboot loses the ruleset: the next start re-applies it.
    sh(&format!(
        "ip netns exec {} nft delete table inet vigil_isolate",
        lab.a.0
    ));
    assert!(!isolated_from_peers(&lab));
    drop(r);
    let r = responder(&lab, state.path());
    r.restore(now).unwrap();
    assert!(isolated_from_peers(&lab), "re-applied at start");

    let got = r.handle(&common::signed(2, CommandAction::Release), now);
    assert_eq!(got.receipt, Receipt::Released { was_isolated: true });
    assert!(!isolated_from_peers(&lab), "released");
    let got = r.handle(&common::signed(3, CommandAction::Release), now);
    assert_eq!(
        got.receipt,
        Receipt::Released {
            was_isolated: false
        }
    );

    // Expiry lifts it; time is passed in, nothing sleeps.
    let s = 1_000_000_000;
    assert_eq!(
        r.handle(&isolate(4, Some(now + s)), now).state,
        CommandState::Done
    );
    assert!(isolated_from_peers(&lab));
    assert!(!r.expiry_due(now + s - 1) && r.expiry_due(now + s));
    r.tick(now + s - 1);
    assert!(isolated_from_peers(&lab), "not yet");
    r.tick(now + s);
    assert!(!isolated_from_peers(&lab), "isolation expired");

    // Two isolations: the first expiring leaves the second in force.
    assert_eq!(
        r.handle(&isolate(5, Some(now + s)), now).state,
        CommandState::Done
    );
    assert_eq!(
        r.handle(&isolate(6, Some(now + 5 * s)), now).state,
        CommandState::Done
    );
    r.tick(now + s);
    assert!(isolated_from_peers(&lab), "the later isolation still holds");
    r.tick(now + 5 * s);
    assert!(!isolated_from_peers(&lab), "both expired");
    assert!(!r.isolated());

    // A blocked peer: that address only, never the appliance.
    let block = |id, addr| common::signed(id, CommandAction::BlockPeer { addr });
    let got = r.handle(&block(7, lab.peers[0].ip()), now);
    assert!(
        matches!(got.receipt, Receipt::PeerBlocked { .. }),
        "{got:?}"
    );
    assert!(!can_connect(&lab.a, lab.peers[0]), "blocked");
    assert!(can_connect(&lab.a, lab.peers[1]), "only that address");
    let got = r.handle(&block(8, lab.appliance[0].ip()), now);
    assert_eq!(
        got.state,
        CommandState::Refused(RefusalReason::UnsafeTarget)
    );
}
