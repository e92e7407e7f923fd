//! Enrollment and uplink against an in-process QUIC/mTLS test appliance.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{free_udp_addr, TestCa, TestServer, GOOD_TOKEN, TEST_HOST};
use vigil_proto::{
    CommandAction, CommandState, ControlMessage, Payload, ProcessExit, Receipt, RefusalReason,
    UnsignedCommand,
};
use vigil_sensor::enroll::EnrollError;
use vigil_sensor::{enroll, Config, EnrollParams, Identity, Sensor};

fn params(server: &TestServer, token: &str, fp: String, dir: &std::path::Path) -> EnrollParams {
    EnrollParams {
        appliance: server.addr.to_string(),
        token: token.into(),
        ca_sha256: fp,
        state_dir: dir.to_path_buf(),
    }
}

fn test_config(addr: &str, state: &std::path::Path) -> Config {
    let mut c = Config::new(addr, state);
    c.collectors.process = false;
    c.collectors.network = false;
    c.collectors.auth = false;
    c.collectors.files = false;
    c.batch_max = Duration::from_millis(50);
    c.batch_max_events = 100;
    c.heartbeat = Duration::from_millis(200);
    c.backoff_min = Duration::from_millis(50);
    c.backoff_max = Duration::from_millis(400);
    c.connect_timeout = Duration::from_millis(300);
    c
}

fn exit_event(i: u32) -> Payload {
    Payload::ProcessExit(ProcessExit {
        pid: i,
        exit_code: Some(0),
        exe: Some("/bin/true".into()),
    })
}

async fn enrolled(server: &TestServer, dir: &std::path::Path) -> Identity {
    enroll(&params(server, GOOD_TOKEN, server.ca.sha256(), dir))
        .await
        .expect("enroll")
}

#[tokio::test]
async fn enroll_with_good_token_stores_identity_0600() {
    let server = TestServer::start(TestCa::new(), "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    // Fingerprint given with colons and in upper case is accepted too.
    let fp = server
        .ca
        .sha256()
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let id = enroll(&params(&server, GOOD_TOKEN, fp, dir.path()))
        .await
        .unwrap();
    assert_eq!(id.host, TEST_HOST);
    assert_eq!(id.ca_der, server.ca.der());
    for f in ["key.pem", "cert.pem", "ca.pem", "host_id"] {
        let m = std::fs::metadata(dir.path().join(f)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600, "{f}");
    }
    let loaded = Identity::load(dir.path()).unwrap();
    assert_eq!(loaded.host, TEST_HOST);
    assert_eq!(loaded.cert_der, id.cert_der);
    server.stop().await;
}

#[tokio::test]
async fn enroll_refused_token_reports_reason() {
    let server = TestServer::start(TestCa::new(), "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let err = enroll(&params(&server, "wrong", server.ca.sha256(), dir.path()))
        .await
        .unwrap_err();
    match &err {
        EnrollError::Refused { code, message } => {
            assert_eq!(code, "token_unknown");
            assert!(message.contains("not known"));
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(err.to_string().contains("token_unknown"));
    assert!(!dir.path().join("key.pem").exists(), "nothing stored");
    server.stop().await;
}

#[tokio::test]
async fn enroll_rejects_wrong_ca_fingerprint() {
    let server = TestServer::start(TestCa::new(), "127.0.0.1:0".parse().unwrap()).await;
    let other_ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let err = enroll(&params(&server, GOOD_TOKEN, other_ca.sha256(), dir.path()))
        .await
        .unwrap_err();
    assert!(matches!(err, EnrollError::FingerprintMismatch), "{err:?}");
    assert_eq!(
        server.seen.lock().unwrap().enroll_requests,
        0,
        "token never sent"
    );
    assert!(!dir.path().join("key.pem").exists());
    server.stop().await;
}

#[tokio::test]
async fn batches_are_acked_and_removed_from_spool_and_heartbeats_flow() {
    let server = TestServer::start(TestCa::new(), "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let id = enrolled(&server, dir.path()).await;
    let cfg = test_config(&server.addr.to_string(), dir.path());
    let sensor = Sensor::start_with(cfg, id, None).await.unwrap();
    for i in 0..1000 {
        assert!(sensor.sink.emit_async(exit_event(i)).await);
    }
    server
        .wait_for("1000 events", Duration::from_secs(20), |s| {
            s.events.len() == 1000
        })
        .await;
    {
        let seen = server.seen.lock().unwrap();
        let seqs: Vec<u64> = seen.events.keys().copied().collect();
        assert_eq!(seqs, (1..=1000).collect::<Vec<_>>(), "gap-free from 1");
        for (i, e) in seen.events.values().enumerate() {
            assert_eq!(e.header.host, TEST_HOST);
            assert_eq!(e.payload, exit_event(i as u32));
        }
        assert!(seen.batches >= 10, "batched by 100: {}", seen.batches);
        assert!(seen.hellos[0].next_seq >= 1 && seen.hellos[0].next_seq <= 1001);
    }
    // Acked records leave the spool.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let unacked = sensor.spool.lock().unwrap().unacked_len();
        if unacked == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {unacked} unacked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
        .wait_for("a heartbeat", Duration::from_secs(5), |s| {
            !s.heartbeats.is_empty()
        })
        .await;
    let hb = server
        .seen
        .lock()
        .unwrap()
        .heartbeats
        .last()
        .cloned()
        .unwrap();
    assert!(hb.rss_bytes > 0);
    sensor.shutdown().await;
    // Everything acked before shutdown: a restart replays nothing.
    let sp =
        vigil_sensor::spool::Spool::open(&dir.path().join("spool"), TEST_HOST, Default::default())
            .unwrap();
    assert_eq!(sp.unacked_len(), 0);
    assert_eq!(sp.next_seq(), 1001);
    server.stop().await;
}

#[tokio::test]
async fn unreachable_appliance_keeps_everything_and_sends_it_later() {
    let ca = TestCa::new();
    let first = TestServer::start(ca.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let id = enrolled(&first, dir.path()).await;
    first.stop().await;
    let addr = free_udp_addr();
    let cfg = test_config(&addr.to_string(), dir.path());
    let sensor = Sensor::start_with(cfg, id, None).await.unwrap();
    for i in 0..300 {
        sensor.sink.emit_async(exit_event(i)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        sensor.spool.lock().unwrap().unacked_len(),
        300,
        "spool keeps all"
    );
    assert!(
        sensor
            .uplink
            .connect_failures
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 2,
        "retried with backoff"
    );
    let server = TestServer::start(ca, addr).await;
    server
        .wait_for(
            "300 events after the appliance came up",
            Duration::from_secs(20),
            |s| s.events.len() == 300,
        )
        .await;
    let seqs: Vec<u64> = server.seen.lock().unwrap().events.keys().copied().collect();
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
    sensor.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn spool_survives_sensor_restart_while_offline() {
    let ca = TestCa::new();
    let first = TestServer::start(ca.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let id = enrolled(&first, dir.path()).await;
    first.stop().await;
    let addr = free_udp_addr();
    let sensor = Sensor::start_with(test_config(&addr.to_string(), dir.path()), id.clone(), None)
        .await
        .unwrap();
    for i in 0..50 {
        sensor.sink.emit_async(exit_event(i)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    sensor.shutdown().await;
    let sensor = Sensor::start_with(test_config(&addr.to_string(), dir.path()), id, None)
        .await
        .unwrap();
    for i in 50..60 {
        sensor.sink.emit_async(exit_event(i)).await;
    }
    let server = TestServer::start(ca, addr).await;
    server
        .wait_for("60 events", Duration::from_secs(20), |s| {
            s.events.len() == 60
        })
        .await;
    let events: Vec<_> = server
        .seen
        .lock()
        .unwrap()
        .events
        .values()
        .cloned()
        .collect();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.header.seq, i as u64 + 1);
        assert_eq!(e.payload, exit_event(i as u32));
    }
    sensor.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn commands_are_executed_and_reported() {
    let server = TestServer::start(TestCa::new(), "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let id = enrolled(&server, dir.path()).await;
    let sensor = Sensor::start_with(test_config(&server.addr.to_string(), dir.path()), id, None)
        .await
        .unwrap();
    server
        .wait_for("hello", Duration::from_secs(10), |s| !s.hellos.is_empty())
        .await;
    let file = dir.path().join("evidence.txt");
    std::fs::write(&file, b"evidence").unwrap();
    let collect = CommandAction::CollectFile {
        path: file.display().to_string(),
        max_bytes: 1024,
    };
    let mut tampered = common::signed(76, collect.clone());
    tampered.reason = "changed in flight".into();
    let unsigned = UnsignedCommand {
        id: 75,
        operator: "old appliance".into(),
        reason: "triage".into(),
        issued_ns: 0,
        action: collect.clone(),
    };
    for msg in [
        ControlMessage::UnsignedCommand(unsigned),
        ControlMessage::Command(tampered),
    ] {
        server.commands.send(msg).await.unwrap();
    }
    server
        .commands
        .send(ControlMessage::Command(common::signed(77, collect)))
        .await
        .unwrap();
    server
        .wait_for("command results", Duration::from_secs(10), |s| {
            s.results.len() >= 2
        })
        .await;
    let results = server.seen.lock().unwrap().results.clone();
    let old = server.seen.lock().unwrap().unsigned_results.clone();
    assert_eq!(old.len(), 1, "the unsigned command is answered, not run");
    assert!(
        !old[0].ok && old[0].message == "refused: unsigned",
        "{old:?}"
    );
    let refused = results.iter().find(|r| r.id == 76).unwrap();
    assert_eq!(
        refused.state,
        CommandState::Refused(RefusalReason::BadSignature)
    );
    let r = results.iter().find(|r| r.id == 77).unwrap();
    assert_eq!(r.state, CommandState::Done, "{}", r.message);
    assert_eq!(r.data, b"evidence");
    match &r.receipt {
        Receipt::Collect(c) => assert_eq!(c.size, 8),
        other => panic!("{other:?}"),
    }
    server
        .wait_for("ResponseResult event", Duration::from_secs(10), |s| {
            s.events.values().any(|e| {
                matches!(&e.payload, Payload::ResponseResult(rr) if rr.command_id == 77 && rr.ok)
            })
        })
        .await;
    sensor.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_cpu_budget_repeated_connects_are_aggregated_execs_are_not() {
    let mut pushed = common::test_sensor_config();
    pushed.cpu_budget_pct = 0.001;
    let server =
        TestServer::start_with(TestCa::new(), "127.0.0.1:0".parse().unwrap(), pushed).await;
    let dir = tempfile::tempdir().unwrap();
    let id = enrolled(&server, dir.path()).await;
    let sensor = Sensor::start_with(test_config(&server.addr.to_string(), dir.path()), id, None)
        .await
        .unwrap();
    // Burn some CPU in this process so the sensor's self-measurement is
    // above the (tiny) budget the appliance pushed.
    let burn = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let b = burn.clone();
    let burner = std::thread::spawn(move || {
        let mut x = 0u64;
        while b.load(std::sync::atomic::Ordering::Relaxed) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        x
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !sensor
        .health
        .over_budget
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        assert!(tokio::time::Instant::now() < deadline, "never over budget");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let flow = |port: u16| vigil_proto::NetFlow {
        transport: vigil_proto::Transport::Tcp,
        local: SocketAddr::new("10.0.0.1".parse().unwrap(), port),
        remote: "10.0.0.2:445".parse().unwrap(),
        pid: Some(4242),
        exe: Some("/usr/bin/smbclient".into()),
        repeat: 1,
    };
    for i in 0..200u16 {
        sensor
            .sink
            .emit_async(Payload::NetConnect(flow(40_000 + i)))
            .await;
        if i % 40 == 0 {
            sensor
                .sink
                .emit_async(Payload::ProcessStart(vigil_proto::ProcessStart {
                    pid: u32::from(i),
                    ..Default::default()
                }))
                .await;
        }
    }
    server
        .wait_for("all 200 connects, folded", Duration::from_secs(15), |s| {
            s.events
                .values()
                .map(|e| match &e.payload {
                    Payload::NetConnect(f) => f.repeat,
                    _ => 0,
                })
                .sum::<u32>()
                == 200
        })
        .await;
    burn.store(false, std::sync::atomic::Ordering::Relaxed);
    burner.join().unwrap();
    let (connects, execs) = {
        let seen = server.seen.lock().unwrap();
        let c = seen
            .events
            .values()
            .filter(|e| matches!(e.payload, Payload::NetConnect(_)))
            .count();
        let x = seen
            .events
            .values()
            .filter(|e| matches!(e.payload, Payload::ProcessStart(_)))
            .count();
        (c, x)
    };
    assert!(
        connects < 20,
        "repeats folded: {connects} NetConnect events for 200 flows"
    );
    assert_eq!(execs, 5, "exec events are never folded");
    let h = sensor.health_snapshot();
    assert_eq!(h.aggregated_total, 200 - connects as u64);
    sensor.shutdown().await;
    server.stop().await;
}

const DAY: i64 = 24 * 60 * 60;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A CA whose enrollment certificates are 90 days old by 70: in their last third.
fn aging_ca() -> TestCa {
    let mut ca = TestCa::new();
    let now = unix_now();
    ca.enroll_validity = Some((now - 70 * DAY, now + 20 * DAY));
    ca
}

async fn wait_until(what: &str, pred: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !pred() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_certificate_in_its_last_third_is_renewed_and_used_from_the_next_connection() {
    let addr = free_udp_addr();
    let server = TestServer::start(aging_ca(), addr).await;
    let dir = tempfile::tempdir().unwrap();
    let id = enrolled(&server, dir.path()).await;
    let (old_cert, old_key) = (id.cert_der.clone(), id.key_der.clone());
    let sensor = Sensor::start_with(test_config(&addr.to_string(), dir.path()), id, None)
        .await
        .unwrap();
    let status = sensor.uplink.clone();
    wait_until("renewal stored", || {
        status.renewals.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    let renewed = {
        let seen = server.seen.lock().unwrap();
        assert_eq!(seen.renew_requests, 1);
        assert_eq!(seen.client_certs, vec![old_cert.clone()]);
        seen.renewed[0].clone()
    };
    let stored = Identity::load(dir.path()).unwrap();
    assert_eq!(stored.cert_der, renewed);
    assert_ne!(stored.key_der, old_key, "a new key");
    for f in ["key.pem", "cert.pem"] {
        let m = std::fs::metadata(dir.path().join(f)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600, "{f}");
    }
    assert!(!dir.path().join("renewed.pem").exists());
    // Events keep flowing on the connection that renewed.
    sensor.sink.emit_async(exit_event(1)).await;
    server
        .wait_for("1 event", Duration::from_secs(20), |s| s.events.len() == 1)
        .await;

    // The next connection presents the new certificate, which is fresh:
    // no renewal is asked for.
    server.kick();
    server
        .wait_for("reconnect", Duration::from_secs(20), |s| {
            s.hellos.len() == 2
        })
        .await;
    sensor.sink.emit_async(exit_event(2)).await;
    server
        .wait_for("event after reconnect", Duration::from_secs(20), |s| {
            s.events.len() == 2
        })
        .await;
    {
        let seen = server.seen.lock().unwrap();
        assert_eq!(seen.client_certs, vec![old_cert, renewed]);
        assert_eq!(seen.renew_requests, 1);
    }
    sensor.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn a_refused_renewal_keeps_the_connection_and_is_retried_on_the_next_one() {
    let mut ca = aging_ca();
    ca.refuse_renewals = true;
    let addr = free_udp_addr();
    let server = TestServer::start(ca, addr).await;
    let dir = tempfile::tempdir().unwrap();
    let id = enrolled(&server, dir.path()).await;
    let old_cert = id.cert_der.clone();
    let sensor = Sensor::start_with(test_config(&addr.to_string(), dir.path()), id, None)
        .await
        .unwrap();
    server
        .wait_for("a renewal request", Duration::from_secs(20), |s| {
            s.renew_requests == 1
        })
        .await;
    sensor.sink.emit_async(exit_event(1)).await;
    server
        .wait_for("1 event", Duration::from_secs(20), |s| s.events.len() == 1)
        .await;
    assert_eq!(
        server.seen.lock().unwrap().hellos.len(),
        1,
        "same connection"
    );
    assert_eq!(Identity::load(dir.path()).unwrap().cert_der, old_cert);

    server.kick();
    server
        .wait_for("renewal asked again", Duration::from_secs(20), |s| {
            s.renew_requests == 2
        })
        .await;
    assert_eq!(
        server.seen.lock().unwrap().client_certs,
        vec![old_cert.clone(), old_cert]
    );
    sensor.shutdown().await;
    server.stop().await;
}
