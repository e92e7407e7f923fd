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
use vigil_appliance::store::rocks::RocksStore;
use vigil_appliance::Db;
use vigil_proto::{ControlMessage, HostId};
use vigil_testkit::sim_sensor::{client_endpoint, enroll, realistic_events, Credentials, SimConn};

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

/// `vigil serve` with these extra flags, once its addresses are written.
fn serve_with(data: &Path, quic_port: u16, extra: &[&str]) -> Child {
    let quic = format!("127.0.0.1:{quic_port}");
    let mut args = vec![
        "serve",
        "--data",
        data.to_str().unwrap(),
        "--quic-listen",
        &quic,
    ];
    args.extend_from_slice(extra);
    let child = Command::new(VIGIL)
        .args(&args)
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

fn refused_enrollment(addr: std::net::SocketAddr, data: &Path, token: &str) -> String {
    let ca = std::fs::read_to_string(data.join("keys/ca.crt")).unwrap();
    let ca_der = x509_parser::pem::parse_x509_pem(ca.as_bytes())
        .unwrap()
        .1
        .contents;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ep = client_endpoint().unwrap();
        enroll(&ep, addr, &ca_der, token, "late")
            .await
            .unwrap()
            .expect_err("a revoked token must not enroll")
            .code
    })
}

/// The first admin password goes to a 0600 file (only its path is printed);
/// `vigil token list|revoke` offline and online, a revoked token refused at
/// enrollment; the console binds the management address, remembered.
#[test]
fn token_revoke_first_password_file_and_management_address() {
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("vigil");
    let d = data.to_str().unwrap();

    let out = Command::new(VIGIL)
        .args(["token", "create", "--ttl", "1h", "--uses", "3", "--data", d])
        .output()
        .unwrap();
    assert!(out.status.success());
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    let file = data.join("first-admin-password");
    let password = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(password.len() >= 12);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(
        !stderr.contains(&password) && !stdout.contains(&password),
        "the password itself is never printed"
    );
    let first = token_from(&stdout);
    assert!(stdout.contains("id:              1"), "{stdout}");

    // Offline: list and revoke through the database.
    let list = vigil(&data, &["token", "list"]);
    let row = list
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap();
    assert!(
        row.contains("cli") && row.contains("0/3") && row.ends_with("valid"),
        "{list}"
    );
    assert!(!list.contains(&first), "never the secret");
    let revoked = vigil(&data, &["token", "revoke", "1"]);
    assert!(revoked.contains("revoked enrollment token 1"), "{revoked}");
    let list = vigil(&data, &["token", "list"]);
    assert!(
        list.lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.ends_with("revoked")),
        "{list}"
    );

    // Served on the management address only.
    let port = free_udp_port();
    let quic: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut server = serve_with(
        &data,
        port,
        &["--management-address", "127.0.0.2", "--https-port", "0"],
    );
    let https = read_addresses(&data).unwrap().https;
    assert_eq!(https.ip().to_string(), "127.0.0.2");
    assert!(
        std::net::TcpStream::connect(https).is_ok(),
        "{https} answers"
    );
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], https.port()));
    assert!(
        std::net::TcpStream::connect(loopback).is_err(),
        "{loopback} must refuse"
    );
    assert_eq!(refused_enrollment(quic, &data, &first), "token_revoked");

    // Online: through the admin socket.
    let out = vigil(&data, &["token", "create", "--ttl", "1h"]);
    let second = token_from(&out);
    assert!(out.contains("id:              2"), "{out}");
    let revoked = vigil(&data, &["token", "revoke", "2"]);
    assert!(revoked.contains("revoked enrollment token 2"), "{revoked}");
    assert_eq!(refused_enrollment(quic, &data, &second), "token_revoked");
    let again = Command::new(VIGIL)
        .args(["token", "revoke", "7", "--data", d])
        .output()
        .unwrap();
    assert!(!again.status.success(), "unknown ids are an error");
    server.kill().unwrap();
    server.wait().unwrap();

    // The management address is remembered.
    let mut server = serve_with(&data, port, &["--https-port", "0"]);
    assert_eq!(
        read_addresses(&data).unwrap().https.ip().to_string(),
        "127.0.0.2"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}

/// One suppression, one answer everywhere: the console's alert list, the
/// overview, the host page, the read API's host counts and `vigil alerts`
/// all leave the suppressed alert out, and the stored alert is still there
/// on request with the suppression named. (The detector side — suppressed
/// hops do not spend the alert budget — is
/// `models/tests/detector.rs::suppressed_hops_do_not_spend_the_alert_budget`.)
#[test]
fn one_suppression_hides_the_same_alerts_in_every_view() {
    use vigil_appliance::db::HostRecord;
    use vigil_appliance::{system_clock, Core, StoreReader};
    use vigil_proto::query::{AlertFilter, AlertRecord, ReadApi, Severity, TriageState};
    use vigil_proto::suppress::{Suppression, SuppressionScope};
    use vigil_web_ui::pages::{alerts, host, overview};
    use vigil_web_ui::{ConsoleState, ConsoleStore};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (a, b) = (HostId(0xa1), HostId(0xb2));
    let alert = |id: u64, title: &str, user: &str| AlertRecord {
        id,
        created_ns: system_clock()() - 60_000_000_000,
        severity: Severity::High,
        score: 9.0,
        title: title.into(),
        path: vec![b, a],
        users: vec![user.into()],
        techniques: vec!["T1021.004".into()],
        summary: String::new(),
        deviations: vec![],
        evidence: vec![],
        state: TriageState::New,
        assignee: None,
        incident_id: None,
        model_version: None,
        ports: vec![22],
        processes: vec![],
        suppressed_by: None,
    };
    let (scanner, real, rule_id);
    {
        let (core, _) = Core::open(data, system_clock()).unwrap();
        for (h, name) in [(a, "web-a"), (b, "jump-b")] {
            let rec = HostRecord {
                id: h.0,
                hostname: name.into(),
                enrolled_ns: 1,
                ..HostRecord::default()
            };
            core.db.put_host_record(&rec, true).unwrap();
        }
        scanner = core.db.next_alert_id().unwrap();
        core.db
            .put_alert(&alert(scanner, "Scanner sweep hop", "svc_scan"))
            .unwrap();
        real = core.db.next_alert_id().unwrap();
        core.db
            .put_alert(&alert(real, "Stolen key hop", "mallory"))
            .unwrap();
        let scope = SuppressionScope {
            user: Some("SVC_SCAN".into()),
            host: Some(a),
            ..SuppressionScope::default()
        };
        let rule = Suppression::new(scope, "authorised scanner", "analyst", 1).unwrap();
        rule_id = core.console.add_suppression(rule).unwrap();
    }

    // `vigil alerts` (offline, straight from the store).
    let ids: Vec<u64> = vigil(data, &["alerts", "--json", "--since", "3650d"])
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, vec![real], "vigil alerts");

    let (core, _) = Core::open(data, system_clock()).unwrap();
    let core = Arc::new(core);
    let reader = Arc::new(StoreReader::new(core.clone()));
    // Host counts of the read API (the hosts list and the host page use them).
    assert_eq!(
        reader.host(a).unwrap().open_alerts,
        1,
        "host a's open alerts"
    );
    assert_eq!(
        reader.host(b).unwrap().open_alerts,
        1,
        "host b's open alerts"
    );
    // The stored alert is still retrievable, with its suppression named.
    let kept = reader.alert(scanner).unwrap();
    assert_eq!(kept.suppressed_by, Some(rule_id));
    let all = reader
        .alerts(&AlertFilter {
            include_suppressed: true,
            ..AlertFilter::default()
        })
        .unwrap();
    assert_eq!(all.len(), 2, "on request, suppressed alerts are listed too");

    // The console's pages, rendered over the same store.
    let state = ConsoleState::new(reader.clone(), core.console.clone());
    let admin = vigil_testkit::render_bench::bench_admin();
    let list = alerts::list_page(&state, &admin, &Default::default())
        .unwrap()
        .0;
    assert!(
        list.contains("Stolen key hop") && !list.contains("Scanner sweep hop"),
        "alert list"
    );
    assert!(
        list.contains("1 open alerts hidden by suppressions"),
        "alert list says so"
    );
    let shown = alerts::list_page(
        &state,
        &admin,
        &alerts::AlertsQuery {
            suppressed: "1".into(),
            ..Default::default()
        },
    )
    .unwrap()
    .0;
    assert!(shown.contains("Scanner sweep hop"), "shown on request");
    let front = overview::page(&state, &admin).unwrap().0;
    assert!(
        front.contains("Stolen key hop") && !front.contains("Scanner sweep hop"),
        "overview"
    );
    let page = host::page(&state, &admin, a, &Default::default())
        .unwrap()
        .0;
    assert!(
        page.contains("Stolen key hop") && !page.contains("Scanner sweep hop"),
        "host page"
    );
    let detail = alerts::detail_page(&state, &admin, scanner, &Default::default())
        .unwrap()
        .0;
    assert!(
        detail.contains(&format!("suppression #{rule_id}")),
        "the alert names its suppression"
    );
}

/// Run `vigil` and return (exit code, stdout, stderr), whatever the outcome.
fn vigil_status(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(VIGIL).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The content file `name` inside a bundle (with the system's `tar`).
fn bundle_file(bundle: &Path, name: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(bundle)
        .arg(name)
        .output()
        .unwrap();
    assert!(out.status.success(), "tar -xOf {name}");
    out.stdout
}

/// Store an incident over two hosts with real events (through the ingest
/// writer) and audit entries about it; then, with the real binary: export
/// it, verify the bundle offline (with and without the appliance's key),
/// export again for the same content, and see every kind of tampering named.
/// The audit log verifies, proves it extends an older checkpoint, and a
/// rewritten stored entry fails verification.
#[test]
fn evidence_bundles_and_the_audit_log_verify_offline_and_name_tampering() {
    use vigil_appliance::db::HostRecord;
    use vigil_appliance::ingest::writer::{spawn_writer_with, EncodedEvent};
    use vigil_appliance::notices::DetectionNotices;
    use vigil_appliance::{system_clock, Core};
    use vigil_proto::query::{AlertRecord, Severity, TriageState};
    use vigil_web_ui::store::{AuditDraft, ConsoleStore};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let now = system_clock()();
    let (a, b) = (HostId(0xa1), HostId(0xb2));
    let incident;
    {
        let (core, _) = Core::open(&data, system_clock()).unwrap();
        for (h, name) in [(a, "ws-a"), (b, "db-b")] {
            let rec = HostRecord {
                id: h.0,
                hostname: name.into(),
                enrolled_ns: 1,
                ..HostRecord::default()
            };
            core.db.put_host_record(&rec, true).unwrap();
        }
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (queue, writer) = spawn_writer_with(
                core.db.clone(),
                DetectionNotices::default(),
                core.metrics.clone(),
                4,
                Default::default(),
                system_clock(),
            )
            .unwrap();
            for h in [a, b] {
                let events: Vec<EncodedEvent> =
                    realistic_events(h, 1, 40, now - 120_000_000_000, 7)
                        .iter()
                        .map(EncodedEvent::from_event)
                        .collect();
                queue.submit(h, events, 4_000).await.unwrap();
            }
            drop(queue);
            writer.join().unwrap();
        });
        let record = |id: u64, incident_id: u64, evidence: Vec<(HostId, u64)>| AlertRecord {
            id,
            created_ns: now - 60_000_000_000,
            severity: Severity::High,
            score: 12.0,
            title: "evidence-marker hop".into(),
            path: vec![a, b],
            users: vec!["mallory".into()],
            techniques: vec!["T1021.004".into()],
            summary: "stolen key".into(),
            deviations: vec![],
            evidence,
            state: TriageState::New,
            assignee: None,
            incident_id: Some(incident_id),
            model_version: None,
            ports: vec![22],
            processes: vec![],
            suppressed_by: None,
        };
        incident = core.db.next_alert_id().unwrap();
        core.db
            .put_alert(&record(incident, incident, vec![(b, 5)]))
            .unwrap();
        let member = core.db.next_alert_id().unwrap();
        core.db
            .put_alert(&record(member, incident, vec![(a, 3)]))
            .unwrap();
        for i in 0..3 {
            core.console
                .append_audit(AuditDraft {
                    ts_ns: now - 30_000_000_000 + i,
                    actor: "analyst".into(),
                    action: "triage.comment".into(),
                    target: format!("alert:{incident}"),
                    detail: format!("note {i}"),
                })
                .unwrap();
        }
        collect_from_incident(&core, a, incident);
    }

    // The audit log verifies; keep a checkpoint as an auditor would.
    let (code, report, _) = vigil_status(&["audit", "verify", "--data", d]);
    assert_eq!(code, 0, "audit verify: {report}");
    let (code, old_checkpoint, key_line) = vigil_status(&["audit", "checkpoint", "--data", d]);
    assert_eq!(code, 0);
    let key = key_line.trim().rsplit(' ').next().unwrap().to_string();
    let old = dir.path().join("old-checkpoint.txt");
    std::fs::write(&old, &old_checkpoint).unwrap();

    // Export, twice; both verify offline, against the appliance's key too.
    let incident_arg = incident.to_string();
    let bundles: Vec<PathBuf> = (1..=2)
        .map(|i| {
            let out = dir.path().join(format!("incident-{i}.tar"));
            let (code, stdout, stderr) = vigil_status(&[
                "export",
                "--incident",
                &incident_arg,
                "-o",
                out.to_str().unwrap(),
                "--operator",
                "auditor-test",
                "--data",
                d,
            ]);
            assert_eq!(code, 0, "export: {stdout}{stderr}");
            out
        })
        .collect();
    for bundle in &bundles {
        let (code, report, _) = vigil_status(&["verify", bundle.to_str().unwrap(), "--key", &key]);
        assert_eq!(code, 0, "verify: {report}");
        assert!(report.contains("verified: all"), "{report}");
    }
    for name in ["alerts.json", "events.jsonl", "hosts.json", "model.json"] {
        assert_eq!(
            bundle_file(&bundles[0], name),
            bundle_file(&bundles[1], name),
            "{name} differs between two exports of the same incident"
        );
    }
    let events = String::from_utf8(bundle_file(&bundles[0], "events.jsonl")).unwrap();
    assert_eq!(
        events.lines().count(),
        80,
        "both hosts' events of the window"
    );
    let alerts = String::from_utf8(bundle_file(&bundles[0], "alerts.json")).unwrap();
    assert_eq!(
        alerts.matches("evidence-marker hop").count(),
        2,
        "incident and member"
    );
    let audit = String::from_utf8(bundle_file(&bundles[0], "audit.jsonl")).unwrap();
    assert_eq!(
        audit.lines().count(),
        5,
        "the incident's audit entries and its command's: {audit}"
    );
    assert!(audit.contains("command.issue") && audit.contains("command.receipt"));
    assert!(
        !audit.contains("evidence.export"),
        "exports are in audit/: {audit}"
    );
    // The response: the command with its lifecycle and receipt, what it
    // collected, and the checklist with who did what.
    let commands = String::from_utf8(bundle_file(&bundles[0], "commands.json")).unwrap();
    assert!(commands.contains("\"CollectFile\"") && commands.contains("\"history\""));
    assert!(commands.contains("\"operator\": \"ana\""), "{commands}");
    let collected = bundle_file(&bundles[0], "collected/command-1.bin");
    assert_eq!(collected, COLLECTED);
    let record: serde_json::Value =
        serde_json::from_slice(&bundle_file(&bundles[0], "incident.json")).unwrap();
    assert!(record.get("root_cause").is_some(), "{record}");
    assert!(
        record["remediation"]
            .as_array()
            .is_some_and(|s| !s.is_empty()),
        "{record}"
    );
    assert!(record["times"]["first_alert_ns"].is_u64(), "{record}");

    // Same input, same bytes: two copies of the store exported at the same
    // time by the same exporter give byte-identical bundles.
    let copies: Vec<Vec<u8>> = (0..2)
        .map(|i| {
            let copy = dir.path().join(format!("copy-{i}"));
            let ok = Command::new("cp")
                .arg("-a")
                .arg(&data)
                .arg(&copy)
                .status()
                .unwrap();
            assert!(ok.success());
            let core = Arc::new(Core::open(&copy, system_clock()).unwrap().0);
            let mut out = Vec::new();
            let scope = vigil_appliance::export::ExportScope::Incident(incident);
            vigil_appliance::export::export_bundle(&core, &scope, "auditor-test", now, &mut out)
                .unwrap();
            out
        })
        .collect();
    assert!(
        copies[0] == copies[1],
        "two exports of the same store differ"
    );

    // One changed byte in the events is named; so is a foreign key.
    let mut bytes = std::fs::read(&bundles[0]).unwrap();
    let at = bytes
        .windows(b"\"seq\":7".len())
        .position(|w| w == b"\"seq\":7")
        .expect("an event in the bundle");
    bytes[at + 6] = b'8';
    let tampered = dir.path().join("tampered.tar");
    std::fs::write(&tampered, &bytes).unwrap();
    let (code, report, _) = vigil_status(&["verify", tampered.to_str().unwrap()]);
    assert_eq!(code, 1, "a tampered bundle verified: {report}");
    assert!(
        report.contains("FAILED file events.jsonl"),
        "the broken file is not named: {report}"
    );
    let other_key = {
        use base64::Engine;
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
        base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
    };
    let (code, report, _) =
        vigil_status(&["verify", bundles[0].to_str().unwrap(), "--key", &other_key]);
    assert_eq!(code, 1, "a bundle verified against another key: {report}");
    assert!(report.contains("FAILED key"), "{report}");

    // The log grew by the two exports and proves it extends the old one.
    let (code, report, _) =
        vigil_status(&["audit", "prove-extends", old.to_str().unwrap(), "--data", d]);
    assert_eq!(code, 0, "prove-extends: {report}");

    // Console users from the CLI, the auditor role included; audited.
    let (code, out, err) =
        vigil_status(&["user", "add", "audrey", "--role", "auditor", "--data", d]);
    assert_eq!(code, 0, "user add: {out}{err}");
    assert!(
        out.contains("created auditor audrey; one-time password"),
        "{out}"
    );
    let (code, _, err) = vigil_status(&["user", "add", "eve", "--role", "root", "--data", d]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown role"), "{err}");
    let (code, _, err) = vigil_status(&["user", "add", "audrey", "--role", "viewer", "--data", d]);
    assert_ne!(code, 0, "a second audrey: {err}");

    // A rewritten stored entry is found.
    {
        let store = Arc::new(RocksStore::open(&data.join("db")).unwrap());
        let db = Db::new(store);
        let key = vigil_appliance::db::records::id_key(vigil_appliance::db::records::AUDIT, 2);
        let mut entry: vigil_web_ui::store::AuditEntry = db
            .record(vigil_appliance::store::Cf::Audit, &key)
            .unwrap()
            .unwrap();
        entry.detail = "nothing happened".into();
        db.put_record(vigil_appliance::store::Cf::Audit, &key, &entry)
            .unwrap();
    }
    let (code, report, _) = vigil_status(&["audit", "verify", "--data", d]);
    assert_eq!(code, 1, "a rewritten audit entry verified: {report}");
}

/// What the incident's collect command brought back.
const COLLECTED: &[u8] = b"ssh-ed25519 AAAA mallory@outside\n";

/// An analyst collects a file on `host` from the incident's checklist and
/// the sensor's receipt comes back (through the real responder).
fn collect_from_incident(core: &vigil_appliance::Core, host: HostId, incident: u64) {
    use sha2::Digest;
    use vigil_proto::command::{
        CollectReceipt, CommandAction, CommandResult, CommandState, Receipt,
    };
    use vigil_proto::query::response::{CommandRequest, ResponseApi};
    use vigil_web_ui::store::{ConsoleStore, Role, User};
    core.console
        .put_user(User {
            name: "ana".into(),
            role: Role::Analyst,
            password_hash: String::new(),
            created_ns: 1,
            must_change_password: false,
            disabled: false,
        })
        .unwrap();
    let rec = core
        .responder
        .issue(CommandRequest {
            host,
            action: CommandAction::CollectFile {
                path: "/home/mallory/.ssh/authorized_keys".into(),
                max_bytes: 4096,
            },
            operator: "ana".into(),
            reason: "the planted key".into(),
            deliver_within_ns: None,
            incident: Some(incident),
            step: None,
        })
        .unwrap();
    core.responder.on_result(
        host,
        CommandResult {
            id: rec.id(),
            state: CommandState::Done,
            message: "collected".into(),
            receipt: Receipt::Collect(CollectReceipt {
                size: COLLECTED.len() as u64,
                sha256: sha2::Sha256::digest(COLLECTED).into(),
                sent: COLLECTED.len() as u64,
            }),
            data: COLLECTED.to_vec(),
        },
    );
    let done = core.responder.command(rec.id()).unwrap();
    assert!(done.result.is_some(), "receipt filed: {done:?}");
}

/// `vigil rules check|import`: a malformed rule is refused with its file
/// and line and nothing is imported; good rules land 0600 in the rules
/// directory, once, and the import is an audit entry.
#[test]
fn sigma_rules_are_checked_and_imported_all_or_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let stick = dir.path().join("usb");
    std::fs::create_dir_all(&stick).unwrap();
    let good = "title: whoami run\nid: 3b1f0a9e-0000-4000-8000-000000000002\n\
                logsource:\n  category: process_creation\n\
                detection:\n  sel:\n    CommandLine|contains: whoami\n  condition: sel\n\
                level: low\n";
    std::fs::write(stick.join("good.yml"), good).unwrap();
    std::fs::write(
        stick.join("bad.yml"),
        "title: counts\nid: 3b1f0a9e-0000-4000-8000-000000000003\n\
         logsource:\n  category: process_creation\n\
         detection:\n  sel:\n    Image: x\n  condition: sel | count() > 5\n",
    )
    .unwrap();
    let (code, _, err) = vigil_status(&["rules", "check", stick.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.yml:8"),
        "the bad rule's file and line are not named: {err}"
    );
    let (code, _, err) = vigil_status(&["rules", "import", stick.to_str().unwrap(), "--data", d]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bad.yml:8"),
        "the refused import does not name the bad rule's file and line: {err}"
    );
    let installed = data.join("rules/sigma");
    assert!(
        !installed.join("good.yml").exists(),
        "a partial import happened"
    );

    std::fs::remove_file(stick.join("bad.yml")).unwrap();
    let (code, out, err) = vigil_status(&["rules", "check", stick.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 rules OK"), "{out}");
    let (code, out, err) = vigil_status(&[
        "rules",
        "import",
        stick.to_str().unwrap(),
        "--data",
        d,
        "--operator",
        "alice",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("imported 1 Sigma rules"), "{out}");
    let mode = std::fs::metadata(installed.join("good.yml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (code, _, err) = vigil_status(&["rules", "import", stick.to_str().unwrap(), "--data", d]);
    assert_eq!(code, 1, "a second import of the same file was accepted");
    assert!(err.contains("already imported"), "{err}");
    // The import is in the audit log, which still verifies.
    let (code, report, _) = vigil_status(&["audit", "verify", "--data", d]);
    assert_eq!(code, 0, "{report}");
    let store = Arc::new(RocksStore::open(&data.join("db")).unwrap());
    let entries: Vec<(Vec<u8>, vigil_web_ui::store::AuditEntry)> = Db::new(store)
        .records_with_prefix(
            vigil_appliance::store::Cf::Audit,
            vigil_appliance::db::records::AUDIT,
            vigil_appliance::store::Direction::Forward,
            0,
        )
        .unwrap();
    assert!(
        entries.iter().any(|(_, e)| e.action == "rules.import"
            && e.actor == "alice"
            && e.detail == "good.yml"),
        "no audit entry for the import"
    );
}
