//! The hostile-sensor suite: an enrolled sensor (or an unauthenticated
//! peer) that speaks the wire protocol and misbehaves, against a real
//! appliance over real QUIC and RocksDB. For each attack: the attacker's own
//! data is the only data affected, the appliance keeps serving the other
//! sensor, and a counter names the reason. (`docs/SECURITY.md` maps each
//! control to these tests.)

use super::*;
use std::net::{IpAddr, Ipv4Addr};
use vigil_appliance::db::RetentionPolicy;
use vigil_appliance::ingest::frames::{read_control, write_control};
use vigil_appliance::pki::SERVER_NAME;
use vigil_proto::control::Hello;
use vigil_proto::frame::HEADER_LEN;
use vigil_proto::{
    Event, EventHeader, LossReason, LossRecord, Payload, ProcessStart, PROTOCOL_VERSION,
};

const S: u64 = 1_000_000_000;

/// The victim: enrolled, online, with a batch stored.
async fn victim(lab: &Lab) -> (Credentials, SimConn, u64) {
    let creds = lab.enroll_one("victim").await;
    let conn = lab.online(&creds).await;
    let events = realistic_events(creds.host, 1, 500, T0 - 3600 * S, 7);
    ack(conn.send_batch(&events).await.unwrap());
    (creds, conn, 500)
}

/// The victim can still store a batch (the appliance still serves it).
async fn still_served(lab: &Lab, conn: &SimConn, host: HostId, next_seq: u64) {
    let more = realistic_events(host, next_seq, 50, T0 - 60 * S, 9);
    let a = tokio::time::timeout(Duration::from_secs(20), conn.send_batch(&more))
        .await
        .expect("the victim's batch was answered in time")
        .unwrap();
    assert_eq!(ack(a).last_seq, next_seq + 49);
    let _ = lab;
}

fn event(host: HostId, seq: u64, ts_ns: u64, payload: Payload) -> Event {
    Event {
        header: EventHeader { host, seq, ts_ns },
        payload,
    }
}

fn exit(host: HostId, seq: u64, ts_ns: u64) -> Event {
    event(host, seq, ts_ns, Payload::ProcessExit(Default::default()))
}

fn refused_code(msg: ControlMessage) -> String {
    match msg {
        ControlMessage::Refused(r) => r.code,
        other => panic!("expected Refused, got {other:?}"),
    }
}

/// A batch frame around `raw` postcard bytes (compressed here, so the
/// appliance's decoder, not the zstd cap, meets them).
fn batch_frame(raw: &[u8]) -> Vec<u8> {
    let z = zstd::bulk::compress(raw, 1).unwrap();
    encode_frame(FrameKind::Batch, &z).unwrap()
}

#[tokio::test]
async fn impossible_timestamps_go_to_quarantine_and_never_move_another_hosts_data() {
    let lab = lab().await;
    let (good, g, stored) = victim(&lab).await;
    let evil = lab.enroll_one("evil").await;
    let e = lab.online(&evil).await;
    // One far-future event (the retention attack), one from 1970 (the
    // merge stall), and a flood of ordinary ones to fill the store.
    let mut bad = vec![exit(evil.host, 1, u64::MAX - 1), exit(evil.host, 2, 1)];
    bad.extend(realistic_events(evil.host, 3, 5000, T0 - 3600 * S, 3));
    let a = ack(e.send_batch(&bad).await.unwrap());
    assert_eq!(
        (a.first_seq, a.last_seq),
        (1, 5002),
        "acknowledged, spool drains"
    );
    assert_eq!(lab.counter("quarantined{reason=\"future_timestamp\"}"), 1);
    assert_eq!(lab.counter("quarantined{reason=\"past_timestamp\"}"), 1);
    let db = lab.app.db();
    assert_eq!(db.quarantined(evil.host, 10).unwrap().len(), 2);
    let warnings = lab.app.reader().host(evil.host).unwrap().warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("quarantined: future_timestamp")),
        "the console names what the sensor did: {warnings:?}"
    );
    assert!(lab
        .app
        .reader()
        .host(good.host)
        .unwrap()
        .warnings
        .is_empty());
    // Retention under a byte bound: only the flooding host is cut.
    db.store().flush().unwrap();
    let total = db.store().size_bytes(vigil_appliance::store::Cf::Events)
        + db.store().size_bytes(vigil_appliance::store::Cf::SeqIndex);
    vigil_appliance::retention::apply(
        &db,
        &RetentionPolicy {
            max_age_days: 30,
            max_bytes: total / 2,
        },
        T0,
    )
    .unwrap();
    assert_eq!(
        db.count_events(good.host).unwrap(),
        stored,
        "the victim lost events"
    );
    assert!(
        db.count_events(evil.host).unwrap() < 5000,
        "the flood was cut"
    );
    still_served(&lab, &g, good.host, stored + 1).await;
}

#[tokio::test]
async fn overflowing_and_impossible_loss_records_cannot_stop_ingest() {
    let lab = lab().await;
    let (good, g, stored) = victim(&lab).await;
    let evil = lab.enroll_one("evil").await;
    let e = lab.online(&evil).await;
    let loss = |seq, from_seq, to_seq, count| {
        event(
            evil.host,
            seq,
            T0,
            Payload::Loss(LossRecord {
                from_seq,
                to_seq,
                count,
                reason: LossReason::SpoolFull,
            }),
        )
    };
    let batch = vec![
        loss(1, 10, 5, 3), // from after to
        // Valid but huge (their own seqs are outside the ranges): together
        // they would overflow the counter.
        loss(2, 10, u64::MAX, u64::MAX - 10),
        loss(3, 10, u64::MAX, u64::MAX - 10),
    ];
    ack(e.send_batch(&batch).await.unwrap());
    assert_eq!(lab.counter("quarantined{reason=\"invalid_loss\"}"), 1);
    let lost = lab.app.reader().host(evil.host).unwrap().lost_total;
    assert_eq!(lost, u64::MAX, "saturated, not wrapped or panicked");
    still_served(&lab, &g, good.host, stored + 1).await;
}

#[tokio::test]
async fn decompression_sequence_and_string_bombs_are_refused_by_reason() {
    let lab = lab().await;
    let (good, g, stored) = victim(&lab).await;
    let evil = lab.enroll_one("evil").await;
    let e = lab.online(&evil).await;
    // 64 MiB of zeros compress to a few KiB.
    let zeros = vec![0u8; 64 << 20];
    let bomb = encode_frame(FrameKind::Batch, &zstd::bulk::compress(&zeros, 3).unwrap()).unwrap();
    assert_eq!(
        refused_code(e.send_raw(&bomb).await.unwrap()),
        "batch_too_large"
    );
    // A batch claiming a million events in a few bytes.
    let mut claim = Vec::new();
    let mut n: u64 = 1_000_000;
    while n >= 0x80 {
        claim.push((n as u8) | 0x80);
        n >>= 7;
    }
    claim.push(n as u8);
    assert_eq!(
        refused_code(e.send_raw(&batch_frame(&claim)).await.unwrap()),
        "too_many_events"
    );
    // One event whose exe is 200 KiB.
    let long = vigil_proto::Batch {
        events: vec![event(
            evil.host,
            1,
            T0,
            Payload::ProcessStart(ProcessStart {
                exe: Some("x".repeat(200 << 10)),
                ..Default::default()
            }),
        )],
    };
    let raw = postcard::to_allocvec(&long).unwrap();
    assert_eq!(
        refused_code(e.send_raw(&batch_frame(&raw)).await.unwrap()),
        "string_too_long"
    );
    for reason in ["batch_too_large", "too_many_events", "string_too_long"] {
        assert_eq!(
            lab.counter(&format!("rejected_frames{{reason=\"{reason}\"}}")),
            1,
            "{reason}"
        );
    }
    assert_eq!(lab.app.db().count_events(evil.host).unwrap(), 0);
    still_served(&lab, &g, good.host, stored + 1).await;
}

#[tokio::test]
async fn an_announced_but_unsent_frame_and_a_stream_flood_do_not_stall_others() {
    let lab = lab().await;
    let (good, g, stored) = victim(&lab).await;
    let evil = lab.enroll_one("evil").await;
    let e = lab.online(&evil).await;
    // Streams that announce a full-size batch and then send nothing: the
    // appliance allocates as bytes arrive, and QUIC caps the streams.
    let mut hanging = Vec::new();
    for _ in 0..64 {
        let Ok(Ok((mut send, recv))) =
            tokio::time::timeout(Duration::from_millis(200), e.conn.open_bi()).await
        else {
            break; // the stream limit: further opens wait
        };
        let mut header = vec![PROTOCOL_VERSION, FrameKind::Batch as u8];
        header.extend_from_slice(&(vigil_proto::limits::MAX_FRAME_BYTES as u32).to_be_bytes());
        assert_eq!(header.len(), HEADER_LEN);
        send.write_all(&header).await.unwrap();
        hanging.push((send, recv));
    }
    assert!(
        hanging.len() <= 16,
        "QUIC caps a connection's concurrent streams"
    );
    still_served(&lab, &g, good.host, stored + 1).await;
}

/// Open the control stream with a chosen `Hello` (name and addresses).
async fn hello_claiming(conn: &SimConn, hostname: &str, addrs: Vec<IpAddr>) -> ControlMessage {
    let (mut send, mut recv) = conn.conn.open_bi().await.unwrap();
    let hello = ControlMessage::Hello(Hello {
        protocol_versions: vec![PROTOCOL_VERSION],
        sensor_version: "hostile".into(),
        hostname: hostname.into(),
        os: "linux".into(),
        addrs,
        next_seq: 1,
    });
    write_control(&mut send, &hello).await.unwrap();
    let answer = read_control(&mut recv, Duration::from_secs(10))
        .await
        .unwrap();
    // Keep the stream open for the life of the test.
    std::mem::forget((send, recv));
    answer
}

#[tokio::test]
async fn claiming_another_hosts_address_and_name_is_a_recorded_conflict() {
    let lab = lab().await;
    let victim_ip = IpAddr::V4(Ipv4Addr::new(10, 9, 0, 2));
    let good = lab.enroll_one("db01").await;
    let g = SimConn::connect(&lab.ep, lab.app.quic_addr, &good)
        .await
        .unwrap();
    assert!(matches!(
        hello_claiming(&g, "db01", vec![victim_ip]).await,
        ControlMessage::Welcome(_)
    ));
    // Enrolled later than the victim: "first enrolled" must not come down
    // to the tie-break between random host ids under the fixed test clock.
    lab.clock
        .fetch_add(1_000_000_000, std::sync::atomic::Ordering::SeqCst);
    let evil = lab.enroll_one("evil").await;
    let e = SimConn::connect(&lab.ep, lab.app.quic_addr, &evil)
        .await
        .unwrap();
    let mine = IpAddr::V4(Ipv4Addr::new(10, 9, 0, 66));
    let answer = hello_claiming(&e, "DB01.corp", vec![victim_ip, mine]).await;
    assert!(matches!(answer, ControlMessage::Welcome(_)), "{answer:?}");
    let reader = lab.app.reader();
    assert_eq!(
        reader.host(good.host).unwrap().addrs,
        vec![victim_ip],
        "the victim keeps it"
    );
    assert_eq!(
        reader.host(evil.host).unwrap().addrs,
        vec![mine],
        "the claim is refused"
    );
    let conflicts = lab.app.db().identity_conflicts(evil.host).unwrap();
    assert_eq!(conflicts.len(), 2, "{conflicts:?}");
    assert!(conflicts.iter().all(|c| c.held_by == good.host));
    assert_eq!(
        lab.counter("rejected_frames{reason=\"identity_conflict_addr\"}"),
        1
    );
    assert_eq!(
        lab.counter("rejected_frames{reason=\"identity_conflict_name\"}"),
        1
    );
}

#[tokio::test]
async fn an_enrollment_flood_from_one_address_leaves_others_able_to_enroll() {
    let lab = lab().await;
    let cfg = || {
        vigil_testkit::sim_sensor::client_config(
            &lab.app.ca_der(),
            vigil_proto::ALPN_ENROLL,
            None,
            Duration::from_secs(30),
        )
        .unwrap()
    };
    // Twenty silent enrollment connections from 127.0.0.1.
    let mut flood = Vec::new();
    for _ in 0..20 {
        let c = lab
            .ep
            .connect_with(cfg(), lab.app.quic_addr, SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        flood.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        lab.counter("handshake_rejects{reason=\"enrollments_busy\"}") >= 10,
        "the flood beyond the per-address cap is refused and counted"
    );
    // A real sensor on another address still enrolls.
    let other = quinn::Endpoint::client("127.0.0.2:0".parse().unwrap()).unwrap();
    let tok = lab.app.create_token(Duration::from_secs(60), 1).unwrap();
    let enrolled = enroll(
        &other,
        lab.app.quic_addr,
        &lab.app.ca_der(),
        &tok.token,
        "late",
    )
    .await
    .unwrap();
    assert!(enrolled.is_ok(), "{enrolled:?}");
    drop(flood);
}
