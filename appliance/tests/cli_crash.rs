//! The real `vigil` binary: CLI commands offline and against a running
//! server, and the crash test — several sensors stream while the appliance
//! is killed with SIGKILL again and again; afterwards every event a sensor
//! saw acknowledged is stored exactly once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_appliance::admin::read_addresses;
use vigil_testkit::sim_sensor::{
    client_endpoint, enroll, realistic_events, Credentials, SimConn,
};
use vigil_appliance::store::rocks::RocksStore;
use vigil_appliance::Db;
use vigil_proto::{ControlMessage, HostId};

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

fn vigil(data: &Path, args: &[&str]) -> String {
    let mut full: Vec<&str> = args.to_vec();
    let d = data.to_str().unwrap();
    full.extend_from_slice(&["--data", d]);
    let out = Command::new(VIGIL).args(&full).output().unwrap();
    assert!(
        out.status.success(),
        "vigil {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_server(data: &Path, quic_port: u16) -> Child {
    let child = Command::new(VIGIL)
        .args([
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--quic-listen",
            &format!("127.0.0.1:{quic_port}"),
            "--https-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_addresses(data).is_none_or(|a| a.pid != child.id()) {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn token_from(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("token:"))
        .map(|t| t.trim().to_owned())
        .expect("token line")
}

/// Per host: every seq the appliance acknowledged.
type Acked = Arc<Mutex<HashMap<HostId, Vec<u64>>>>;

const BATCH: usize = 300;

/// Stream batches one after another; reconnect after any failure and resend
/// from the first unacknowledged seq, with a different timestamp per attempt
/// so a double store would show up as two keys.
async fn stream(
    creds: Credentials,
    addr: std::net::SocketAddr,
    acked: Acked,
    stop: Arc<AtomicBool>,
) {
    let ep = client_endpoint().unwrap();
    let mut next = 1u64;
    let mut attempt = 0u64;
    // Recent timestamps: the appliance's retention (30 days by default) runs at every start.
    let base_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        - 3_600_000_000_000;
    while !stop.load(Ordering::SeqCst) {
        attempt += 1;
        let Ok(mut conn) =
            SimConn::connect_with_idle(&ep, addr, &creds, Duration::from_millis(1500)).await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if !matches!(conn.hello(next).await, Ok(ControlMessage::Welcome(_))) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        while !stop.load(Ordering::SeqCst) {
            let events = realistic_events(creds.host, next, BATCH, base_ns + attempt, 11);
            match conn.send_batch(&events).await {
                Ok(ControlMessage::Ack(a)) => {
                    assert_eq!((a.first_seq, a.last_seq), (next, next + BATCH as u64 - 1));
                    acked
                        .lock()
                        .unwrap()
                        .entry(creds.host)
                        .or_default()
                        .extend(a.first_seq..=a.last_seq);
                    next = a.last_seq + 1;
                }
                _ => break,
            }
        }
    }
}

#[test]
fn cli_works_offline_and_online_and_kill_9_loses_no_acked_event() {
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("vigil");

    // Offline: the first command sets the data directory up.
    let out = vigil(&data, &["token", "create", "--ttl", "1h", "--uses", "4"]);
    let token = token_from(&out);
    let fingerprint = out
        .lines()
        .find_map(|l| l.strip_prefix("CA fingerprint:"))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(fingerprint.len(), 64);
    assert!(fingerprint
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));

    let port = free_udp_port();
    let mut server = start_server(&data, port);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ca = std::fs::read_to_string(data.join("keys/ca.crt")).unwrap();
    let ca_der = x509_parser::pem::parse_x509_pem(ca.as_bytes())
        .unwrap()
        .1
        .contents;
    let sensors: Vec<Credentials> = rt.block_on(async {
        let ep = client_endpoint().unwrap();
        let mut v = Vec::new();
        for i in 0..4 {
            v.push(
                enroll(&ep, addr, &ca_der, &token, &format!("crash-{i}"))
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        v
    });

    // Online: through the admin socket.
    let list = vigil(&data, &["sensor", "list"]);
    for s in &sensors {
        assert!(list.contains(&s.host.to_string()), "{list}");
    }
    let status = vigil(&data, &["status"]);
    assert!(status.contains("running (pid"), "{status}");

    let acked: Acked = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = sensors
        .iter()
        .map(|c| rt.spawn(stream(c.clone(), addr, acked.clone(), stop.clone())))
        .collect();

    let started = Instant::now();
    for round in 0..6u64 {
        std::thread::sleep(Duration::from_millis(900 + 250 * (round % 3)));
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        server = start_server(&data, port);
    }
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    rt.block_on(async {
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(40), t).await;
        }
    });
    assert!(started.elapsed() < Duration::from_secs(60));

    let events_out = vigil(
        &data,
        &[
            "events",
            "--host",
            &sensors[0].host.to_string(),
            "--since",
            "3h",
            "--limit",
            "5",
        ],
    );
    assert_eq!(
        events_out.lines().filter(|l| l.contains("seq=")).count(),
        5,
        "{events_out}"
    );
    let revoke = vigil(&data, &["sensor", "revoke", &sensors[3].host.to_string()]);
    assert!(revoke.contains("revoked"), "{revoke}");

    server.kill().unwrap();
    server.wait().unwrap();

    // Offline again: the CLI opens the database itself.
    let list = vigil(&data, &["sensor", "list"]);
    assert!(list.contains("Revoked"), "{list}");
    let status = vigil(&data, &["status"]);
    assert!(status.contains("not running"), "{status}");

    let db = Db::new(Arc::new(RocksStore::open(&data.join("db")).unwrap()));
    let acked = acked.lock().unwrap();
    let mut total_acked = 0;
    for s in &sensors {
        let want = acked.get(&s.host).cloned().unwrap_or_default();
        total_acked += want.len();
        let stored = db.stored_seqs(s.host).unwrap();
        let mut uniq = stored.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(
            uniq.len(),
            stored.len(),
            "host {} has a seq stored twice",
            s.host
        );
        let set: std::collections::HashSet<u64> = stored.iter().copied().collect();
        for seq in &want {
            assert!(
                set.contains(seq),
                "acked seq {seq} of {} is missing",
                s.host
            );
        }
        assert_eq!(
            db.host_counts(s.host).unwrap().events_total,
            stored.len() as u64
        );
    }
    assert!(
        total_acked > 10 * BATCH,
        "too little traffic to mean anything: {total_acked}"
    );
    let dups: u64 = sensors
        .iter()
        .map(|s| db.host_counts(s.host).unwrap().duplicates_total)
        .sum();
    eprintln!("crash test: 6 x SIGKILL, {total_acked} acked events all stored once, {dups} duplicates dropped");
}
