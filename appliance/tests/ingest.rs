//! In-process appliance over real QUIC and real RocksDB (temp dirs), driven
//! by the simulated sensor: enrollment, mTLS, bad input, dedupe, metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vigil_appliance::registry::{CLOSE_NO_CERT, CLOSE_REVOKED};
use vigil_appliance::{Appliance, ServeConfig};
use vigil_proto::control::Ack;
use vigil_proto::frame::{encode_frame, FrameKind};
use vigil_proto::query::{EventFilter, SensorState};
use vigil_proto::{ControlMessage, EventKind, HostId};
use vigil_testkit::sim_sensor::{
    client_endpoint, enroll, realistic_events, Credentials, SimConn, DEFAULT_IDLE,
};

const T0: u64 = 1_700_000_000_000_000_000;

#[path = "support/add_hosts.rs"]
mod add_hosts;
#[path = "support/certs.rs"]
mod certs;
#[path = "support/forwarding.rs"]
mod forwarding;
#[path = "support/hostile.rs"]
mod hostile;
#[path = "../../forward/tests/rsyslog/rsyslog_daemon.rs"]
mod rsyslog_daemon;
#[path = "support/sensor_updates.rs"]
mod sensor_updates;

struct Lab {
    app: Appliance,
    _dir: tempfile::TempDir,
    clock: Arc<AtomicU64>,
    ep: quinn::Endpoint,
}

async fn lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(T0));
    let mut cfg = ServeConfig::new(dir.path()).loopback();
    let c = clock.clone();
    cfg.clock = Arc::new(move || c.load(Ordering::SeqCst));
    cfg.admin_socket = false;
    let app = Appliance::start(cfg).await.unwrap();
    Lab {
        app,
        _dir: dir,
        clock,
        ep: client_endpoint().unwrap(),
    }
}

impl Lab {
    async fn enroll_one(&self, name: &str) -> Credentials {
        let tok = self.app.create_token(Duration::from_secs(60), 1).unwrap();
        enroll(
            &self.ep,
            self.app.quic_addr,
            &self.app.ca_der(),
            &tok.token,
            name,
        )
        .await
        .unwrap()
        .expect("enrollment accepted")
    }

    async fn online(&self, creds: &Credentials) -> SimConn {
        let mut c = SimConn::connect(&self.ep, self.app.quic_addr, creds)
            .await
            .unwrap();
        match c.hello(1).await.unwrap() {
            ControlMessage::Welcome(w) => assert_eq!(w.host, creds.host),
            other => panic!("expected Welcome, got {other:?}"),
        }
        c
    }

    fn counter(&self, name: &str) -> u64 {
        let s = self.app.reader().stats().unwrap();
        s.counters
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }
}

fn ack(msg: ControlMessage) -> Ack {
    match msg {
        ControlMessage::Ack(a) => a,
        other => panic!("expected Ack, got {other:?}"),
    }
}

fn refused_code(msg: ControlMessage) -> String {
    match msg {
        ControlMessage::Refused(r) => r.code,
        other => panic!("expected Refused, got {other:?}"),
    }
}

/// Connecting must fail, either at the handshake or right after it.
async fn assert_refused(lab: &Lab, creds: &Credentials) -> Option<quinn::ConnectionError> {
    match SimConn::connect(&lab.ep, lab.app.quic_addr, creds).await {
        Err(_) => None,
        Ok(mut c) => {
            assert!(c.hello(1).await.is_err(), "a refused sensor got a Welcome");
            c.conn.close_reason()
        }
    }
}

#[tokio::test]
async fn enrollment_accepts_valid_tokens_and_refuses_expired_used_up_and_unknown() {
    let lab = lab().await;
    let (addr, ca) = (lab.app.quic_addr, lab.app.ca_der());
    let two = lab.app.create_token(Duration::from_secs(600), 2).unwrap();
    assert_eq!(two.ca_fingerprint.len(), 64);
    let a = enroll(&lab.ep, addr, &ca, &two.token, "a")
        .await
        .unwrap()
        .unwrap();
    let b = enroll(&lab.ep, addr, &ca, &two.token, "b")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(a.host, b.host);
    assert_eq!(
        vigil_appliance::pki::host_from_cert(&a.cert_der),
        Some(a.host)
    );
    let used = enroll(&lab.ep, addr, &ca, &two.token, "c")
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(used.code, "token_used_up");

    let short = lab.app.create_token(Duration::from_secs(60), 5).unwrap();
    lab.clock.fetch_add(61_000_000_000, Ordering::SeqCst);
    let expired = enroll(&lab.ep, addr, &ca, &short.token, "d")
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(expired.code, "token_expired");
    let unknown = enroll(&lab.ep, addr, &ca, "vgl_nope", "e")
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(unknown.code, "token_unknown");
    assert_eq!(lab.counter("enroll_refused{reason=\"token_used_up\"}"), 1);
    assert_eq!(lab.counter("enroll_refused{reason=\"token_expired\"}"), 1);

    let hosts = lab.app.reader().hosts().unwrap();
    assert_eq!(hosts.len(), 2);
    // The enrolled certificate works for ingest.
    let c = lab.online(&a).await;
    let ev = realistic_events(a.host, 1, 10, T0, 1);
    assert_eq!(ack(c.send_batch(&ev).await.unwrap()).last_seq, 10);
    lab.app.shutdown().await;
}

#[tokio::test]
async fn resent_batch_is_stored_once_and_counted_as_duplicates() {
    let lab = lab().await;
    let creds = lab.enroll_one("dup").await;
    let c = lab.online(&creds).await;
    let events = realistic_events(creds.host, 1, 500, T0, 2);
    let first = ack(c.send_batch(&events).await.unwrap());
    assert_eq!(
        (first.first_seq, first.last_seq, first.duplicates),
        (1, 500, 0)
    );
    let again = ack(c.send_batch(&events).await.unwrap());
    assert_eq!(again.duplicates, 500);
    let overlap = realistic_events(creds.host, 401, 200, T0 + 1, 3);
    assert_eq!(ack(c.send_batch(&overlap).await.unwrap()).duplicates, 100);

    let db = lab.app.db();
    let seqs = db.stored_seqs(creds.host).unwrap();
    assert_eq!(seqs.len(), 600);
    let mut sorted = seqs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, (1..=600).collect::<Vec<_>>());
    assert_eq!(lab.counter("duplicates"), 600);
    let reader = lab.app.reader();
    assert_eq!(reader.event(creds.host, 42).unwrap(), events[41]);
    let host = reader.host(creds.host).unwrap();
    assert_eq!(host.events_total, 600);
    assert_eq!(host.state, SensorState::Online);

    // A new connection learns what is stored.
    let mut c2 = SimConn::connect(&lab.ep, lab.app.quic_addr, &creds)
        .await
        .unwrap();
    match c2.hello(601).await.unwrap() {
        ControlMessage::Welcome(w) => assert_eq!(w.stored_up_to, 600),
        other => panic!("{other:?}"),
    }
    // Query by host, time and kind.
    let page = reader
        .events(&EventFilter {
            host: Some(creds.host),
            kinds: vec![EventKind::NetConnect],
            limit: 10_000,
            ..EventFilter::default()
        })
        .unwrap();
    assert!(!page.events.is_empty());
    assert!(page
        .events
        .iter()
        .all(|e| e.kind() == EventKind::NetConnect));
    let paged = reader
        .events(&EventFilter {
            host: Some(creds.host),
            limit: 250,
            ..EventFilter::default()
        })
        .unwrap();
    assert_eq!(paged.events.len(), 250);
    let rest = reader
        .events(&EventFilter {
            host: Some(creds.host),
            limit: 1000,
            after: paged.next,
            ..EventFilter::default()
        })
        .unwrap();
    assert_eq!(rest.events.len(), 350);
    lab.app.shutdown().await;
}

#[tokio::test]
async fn bad_frames_are_rejected_counted_and_the_connection_keeps_working() {
    let lab = lab().await;
    let creds = lab.enroll_one("bad").await;
    let other = lab.enroll_one("good").await;
    let c = lab.online(&creds).await;

    // Oversized header: declared length above the cap, no payload follows.
    let mut big = vec![vigil_proto::PROTOCOL_VERSION, FrameKind::Batch as u8];
    big.extend_from_slice(&(64u32 * 1024 * 1024).to_be_bytes());
    assert_eq!(
        refused_code(c.send_raw(&big).await.unwrap()),
        "frame_too_large"
    );
    // Garbage bytes.
    assert_eq!(
        refused_code(
            c.send_raw(b"\xde\xad\xbe\xef garbage garbage")
                .await
                .unwrap()
        ),
        "unsupported_version"
    );
    // Valid header, payload that is not zstd.
    let frame = encode_frame(FrameKind::Batch, b"definitely not zstd").unwrap();
    assert_eq!(
        refused_code(c.send_raw(&frame).await.unwrap()),
        "compression"
    );
    // zstd of something that is not a batch.
    let junk = zstd::bulk::compress(&[0xffu8; 64], 3).unwrap();
    let frame = encode_frame(FrameKind::Batch, &junk).unwrap();
    assert_eq!(refused_code(c.send_raw(&frame).await.unwrap()), "malformed");
    // Truncated payload.
    let mut short = encode_frame(FrameKind::Batch, &[1u8; 100]).unwrap();
    short.truncate(50);
    assert_eq!(
        refused_code(c.send_raw(&short).await.unwrap()),
        "truncated_payload"
    );
    // Events claiming another host.
    let forged = realistic_events(other.host, 1, 5, T0, 4);
    assert_eq!(
        refused_code(c.send_batch(&forged).await.unwrap()),
        "wrong_host"
    );

    for reason in [
        "frame_too_large",
        "unsupported_version",
        "compression",
        "malformed",
        "truncated_payload",
        "wrong_host",
    ] {
        assert_eq!(
            lab.counter(&format!("rejected_frames{{reason=\"{reason}\"}}")),
            1,
            "{reason}"
        );
    }
    // The same connection still works, and so does everyone else.
    let good = realistic_events(creds.host, 1, 20, T0, 5);
    assert_eq!(ack(c.send_batch(&good).await.unwrap()).last_seq, 20);
    let o = lab.online(&other).await;
    assert_eq!(
        ack(o
            .send_batch(&realistic_events(other.host, 1, 5, T0, 6))
            .await
            .unwrap())
        .last_seq,
        5
    );
    assert_eq!(lab.app.db().count_events(other.host).unwrap(), 5);

    // Garbage as the very first (control) stream: refused, connection closed, counted.
    let mut raw = SimConn::connect(&lab.ep, lab.app.quic_addr, &other)
        .await
        .unwrap();
    assert_eq!(
        refused_code(raw.send_raw(b"\x00\x00\x00\x00\x00\x00\x00").await.unwrap()),
        "unsupported_version"
    );
    assert!(raw.hello(1).await.is_err());
    assert_eq!(
        lab.counter("rejected_frames{reason=\"unsupported_version\"}"),
        2
    );
    lab.app.shutdown().await;
}

fn self_signed_client(
    host: HostId,
) -> (
    Vec<rustls_pki_types::CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, host.to_string());
    let cert = p.self_signed(&key).unwrap();
    (
        vec![cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
}

#[tokio::test]
async fn wrong_and_revoked_certificates_are_refused_while_others_keep_streaming() {
    let lab = lab().await;
    let (addr, ca) = (lab.app.quic_addr, lab.app.ca_der());
    let a = lab.enroll_one("a").await;
    let b = lab.enroll_one("b").await;
    let ca_a = lab.online(&a).await;
    let ca_b = lab.online(&b).await;

    // Self-signed certificate claiming a's host id.
    let forged = SimConn::connect_raw(
        &lab.ep,
        addr,
        &ca,
        Some(self_signed_client(a.host)),
        a.host,
        DEFAULT_IDLE,
    )
    .await;
    if let Ok(mut c) = forged {
        assert!(c.hello(1).await.is_err());
    }
    // A certificate from another appliance's CA.
    let other_dir = tempfile::tempdir().unwrap();
    let (other_pki, _) = vigil_appliance::pki::Pki::load_or_create(other_dir.path()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    let foreign = Credentials {
        host: a.host,
        cert_der: other_pki
            .sign_client_csr(csr.der(), a.host, std::time::SystemTime::now())
            .unwrap(),
        key_der: key.serialize_der(),
        ca_der: ca.clone(),
    };
    assert_refused(&lab, &foreign).await;
    assert_eq!(
        lab.counter("handshake_rejects{reason=\"bad_certificate\"}"),
        2
    );

    // No certificate at all on the ingest ALPN.
    let mut anon = SimConn::connect_raw(&lab.ep, addr, &ca, None, a.host, DEFAULT_IDLE)
        .await
        .unwrap();
    assert!(anon.hello(1).await.is_err());
    match anon.conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(c.error_code, CLOSE_NO_CERT.into())
        }
        other => panic!("expected application close, got {other:?}"),
    }
    assert_eq!(
        lab.counter("handshake_rejects{reason=\"no_certificate\"}"),
        1
    );

    // Revoke a: its live connection is closed, and it cannot come back.
    assert!(lab.app.revoke(a.host).unwrap());
    let reason = tokio::time::timeout(Duration::from_secs(5), ca_a.conn.closed())
        .await
        .unwrap();
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, CLOSE_REVOKED.into())
        }
        other => panic!("expected revoked close, got {other:?}"),
    }
    assert_refused(&lab, &a).await;
    assert_eq!(lab.counter("handshake_rejects{reason=\"revoked\"}"), 1);
    assert_eq!(
        lab.app.reader().host(a.host).unwrap().state,
        SensorState::Revoked
    );

    // b never noticed.
    let ev = realistic_events(b.host, 1, 100, T0, 7);
    assert_eq!(ack(ca_b.send_batch(&ev).await.unwrap()).last_seq, 100);
    lab.app.shutdown().await;
}

#[tokio::test]
async fn heartbeats_update_the_registry_and_commands_reach_the_sensor() {
    let lab = lab().await;
    let creds = lab.enroll_one("hb").await;
    let mut c = lab.online(&creds).await;
    lab.clock.fetch_add(5_000_000_000, Ordering::SeqCst);
    c.heartbeat(T0).await.unwrap();
    let reader = lab.app.reader();
    let mut seen = 0;
    for _ in 0..100 {
        seen = reader.host(creds.host).unwrap().rss_bytes;
        if seen > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 20 << 20);
    assert_eq!(
        reader.host(creds.host).unwrap().last_seen_ns,
        T0 + 5_000_000_000
    );
    assert_eq!(lab.counter("heartbeats"), 1);
    // Stale after 2 missed intervals, offline after 10.
    lab.clock.fetch_add(25_000_000_000, Ordering::SeqCst);
    assert_eq!(reader.host(creds.host).unwrap().state, SensorState::Stale);
    lab.clock.fetch_add(200_000_000_000, Ordering::SeqCst);
    assert_eq!(reader.host(creds.host).unwrap().state, SensorState::Offline);

    let cmd = vigil_proto::Command {
        id: 9,
        host: creds.host,
        operator: "alice".into(),
        reason: "test".into(),
        created_ns: T0,
        expires_ns: T0 + 60_000_000_000,
        action: vigil_proto::CommandAction::ListProcesses,
        signature: Vec::new(),
    };
    lab.app.send_command(creds.host, cmd.clone()).unwrap();
    match c.next_control(Duration::from_secs(5)).await.unwrap() {
        ControlMessage::Command(got) => assert_eq!(got, cmd),
        other => panic!("{other:?}"),
    }
    lab.app.shutdown().await;
}

#[tokio::test]
async fn alerts_and_edges_round_trip_through_the_read_api() {
    use vigil_proto::query::{AlertFilter, AlertRecord, Severity, TriageState};
    let lab = lab().await;
    let db = lab.app.db();
    let id = db.next_alert_id().unwrap();
    let alert = AlertRecord {
        ports: Vec::new(),
        processes: Vec::new(),
        suppressed_by: None,
        id,
        created_ns: T0,
        severity: Severity::High,
        score: 7.5,
        title: "new admin peer".into(),
        path: vec![HostId(1), HostId(2)],
        users: vec!["alice".into()],
        techniques: vec!["T1021.004".into()],
        summary: "ssh to a never-seen peer".into(),
        deviations: vec![],
        evidence: vec![(HostId(1), 5)],
        state: TriageState::New,
        assignee: None,
        incident_id: None,
        model_version: None,
    };
    db.put_alert(&alert).unwrap();
    assert_eq!(db.next_alert_id().unwrap(), id + 1);
    db.record_edge(HostId(1), HostId(2), 22, Some("alice"), T0)
        .unwrap();
    let e = db
        .record_edge(HostId(1), HostId(2), 22, Some("alice"), T0 + 10)
        .unwrap();
    assert_eq!((e.count, e.first_seen_ns, e.last_seen_ns), (2, T0, T0 + 10));
    let reader = lab.app.reader();
    assert_eq!(reader.alert(id).unwrap(), alert);
    assert_eq!(
        reader
            .alerts(&AlertFilter {
                host: Some(HostId(2)),
                ..Default::default()
            })
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        reader
            .alerts(&AlertFilter {
                min_severity: Some(Severity::Critical),
                ..Default::default()
            })
            .unwrap()
            .len(),
        0
    );
    assert_eq!(reader.edges(T0 + 5).unwrap().len(), 1);
    assert_eq!(reader.edges(T0 + 11).unwrap().len(), 0);
    lab.app.shutdown().await;
}

async fn https_get(
    addr: std::net::SocketAddr,
    ca: &[u8],
    path: &str,
    bearer: Option<&str>,
) -> String {
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: vigil-appliance\r\n{auth}Connection: close\r\n\r\n");
    https_raw(addr, ca, &req).await
}

#[tokio::test]
async fn metrics_need_the_bearer_token_and_healthz_answers() {
    let lab = lab().await;
    let (addr, ca) = (lab.app.https_addr, lab.app.ca_der());
    let health = https_get(addr, &ca, "/healthz", None).await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let denied = https_get(addr, &ca, "/metrics", Some("wrong")).await;
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    let token = lab.app.core().metrics_token().unwrap();
    let ok = https_get(addr, &ca, "/metrics", Some(&token)).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("vigil_events_ingested_total 0"));
    assert!(ok.contains("vigil_write_latency_seconds_bucket"));
    lab.app.shutdown().await;
}

/// The console's security headers are on every HTTPS response, the
/// appliance's own `/healthz` and `/metrics` (even refused) included.
#[tokio::test]
async fn security_headers_cover_metrics_and_healthz_too() {
    let lab = lab().await;
    let (addr, ca) = (lab.app.https_addr, lab.app.ca_der());
    let token = lab.app.core().metrics_token().unwrap();
    for (path, bearer) in [
        ("/healthz", None),
        ("/metrics", None),
        ("/metrics", Some(token.as_str())),
        ("/login", None),
    ] {
        let res = https_get(addr, &ca, path, bearer).await;
        let what = format!("{path} ({})", res.lines().next().unwrap_or_default());
        assert_eq!(
            header(&res, "content-security-policy"),
            Some(vigil_web_ui::security::CSP),
            "{what}"
        );
        assert_eq!(
            header(&res, "x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(header(&res, "x-frame-options"), Some("DENY"), "{what}");
        assert_eq!(
            header(&res, "referrer-policy"),
            Some("no-referrer"),
            "{what}"
        );
        assert!(
            header(&res, "strict-transport-security").is_some_and(|v| v.starts_with("max-age=")),
            "{what}"
        );
        assert_eq!(header(&res, "cache-control"), Some("no-store"), "{what}");
    }
    lab.app.shutdown().await;
}

/// A token revoked in the console (or with `vigil token revoke`) enrolls
/// nothing more; other tokens keep working.
#[tokio::test]
async fn revoked_enrollment_tokens_are_refused() {
    use vigil_web_ui::ConsoleStore;
    let lab = lab().await;
    let (addr, ca) = (lab.app.quic_addr, lab.app.ca_der());
    let console = lab.app.core().console.clone();
    let doomed = console
        .create_enrollment_token("doomed", 600_000_000_000, 5, T0)
        .unwrap();
    let kept = console
        .create_enrollment_token("kept", 600_000_000_000, 5, T0)
        .unwrap();
    enroll(&lab.ep, addr, &ca, &doomed.secret, "before")
        .await
        .unwrap()
        .expect("valid before revocation");
    assert!(console.revoke_enrollment_token(doomed.info.id, T0).unwrap());
    let refused = enroll(&lab.ep, addr, &ca, &doomed.secret, "after")
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.code, "token_revoked");
    assert_eq!(lab.counter("enroll_refused{reason=\"token_revoked\"}"), 1);
    enroll(&lab.ep, addr, &ca, &kept.secret, "other")
        .await
        .unwrap()
        .expect("another token still enrolls");
    let listed = console.enrollment_tokens().unwrap();
    let revoked: Vec<_> = listed.iter().map(|t| (t.id, t.revoked)).collect();
    assert_eq!(revoked, [(kept.info.id, false), (doomed.info.id, true)]);
    lab.app.shutdown().await;
}

/// One raw HTTP/1.1 exchange over TLS, pinned to the appliance CA; the whole
/// response (status line, headers, body).
async fn https_raw(addr: std::net::SocketAddr, ca: &[u8], req: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(ca.to_vec()))
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(vigil_appliance::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("vigil-appliance").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out).await;
    out
}

async fn console_get(app: &Appliance, path: &str, cookie: Option<&str>) -> String {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: vigil-appliance\r\n{cookie}Connection: close\r\n\r\n"
    );
    https_raw(app.https_addr, &app.ca_der(), &req).await
}

/// Values of the `Set-Cookie` headers of a response.
fn set_cookies(res: &str) -> Vec<String> {
    let head = res.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("set-cookie")
                .then(|| v.trim().to_owned())
        })
        .collect()
}

/// `name=value` of the cookie `name` set by a response.
fn cookie_pair(res: &str, name: &str) -> Option<(String, String)> {
    set_cookies(res).into_iter().find_map(|c| {
        let pair = c.split(';').next()?.trim().to_owned();
        let (k, v) = pair.split_once('=')?;
        (k == name && !v.is_empty()).then(|| (format!("{k}={v}"), c.clone()))
    })
}

fn header<'a>(res: &'a str, name: &str) -> Option<&'a str> {
    let head = res.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The console's session cookie.
const SESSION: &str = "__Host-vigil_session";
/// The login form's double-submit cookie.
const LOGIN_CSRF: &str = "__Host-vigil_login_csrf";

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// POST a form (already encoded) with a session cookie.
async fn console_post(app: &Appliance, path: &str, cookie: &str, body: &str) -> String {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: vigil-appliance\r\nCookie: {cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    https_raw(app.https_addr, &app.ca_der(), &req).await
}

/// GET /login, then POST it with the form's CSRF token; the POST's response.
async fn console_login(app: &Appliance, user: &str, password: &str) -> String {
    let form = console_get(app, "/login", None).await;
    assert!(form.starts_with("HTTP/1.1 200"), "{form}");
    let (csrf_cookie, _) = cookie_pair(&form, LOGIN_CSRF).expect("login CSRF cookie");
    let csrf = csrf_cookie.split_once('=').unwrap().1.to_owned();
    assert!(
        form.contains(&csrf),
        "the form carries the same token as the cookie"
    );
    // user names and the generated passwords are URL-safe; encode anyway.
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    let body = format!(
        "csrf={csrf}&username={}&password={}",
        enc(user),
        enc(password)
    );
    let req = format!(
        "POST /login HTTP/1.1\r\nHost: vigil-appliance\r\nCookie: {csrf_cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    https_raw(app.https_addr, &app.ca_der(), &req).await
}

#[tokio::test]
async fn console_logs_in_with_the_first_start_password_across_restarts() {
    use vigil_web_ui::ConsoleStore;
    let dir = tempfile::tempdir().unwrap();
    let start = || async {
        // The previous instance may take a moment to let go of RocksDB's lock.
        let mut tries = 0;
        loop {
            let mut cfg = ServeConfig::new(dir.path()).loopback();
            cfg.admin_socket = false;
            match Appliance::start(cfg).await {
                Ok(app) => return app,
                Err(e) if tries < 50 => {
                    tries += 1;
                    tracing::debug!(error = %e, "restart retry");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("start appliance: {e}"),
            }
        }
    };
    let app = start().await;
    let password = app
        .first_start
        .admin_password
        .clone()
        .expect("first start creates the admin password");
    // The password is in a 0600 file in the private data directory.
    let file = app
        .first_start
        .admin_password_file
        .clone()
        .expect("first start writes the password file");
    assert_eq!(file, dir.path().join("first-admin-password"));
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
    assert_eq!(mode(&file), 0o600);
    for d in ["", "keys", "run", "db"] {
        assert_eq!(mode(&dir.path().join(d)), 0o700, "DATA/{d}");
    }

    // No session: every page sends the browser to the login form.
    let anon = console_get(&app, "/", None).await;
    assert!(anon.starts_with("HTTP/1.1 303"), "{anon}");
    assert_eq!(header(&anon, "location"), Some("/login"));

    // Wrong password: the form again, 401, no session cookie.
    let wrong = console_login(&app, "admin", "not-the-password-at-all").await;
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    assert!(cookie_pair(&wrong, SESSION).is_none(), "{wrong}");

    // The generated password logs into the console as admin.
    let ok = console_login(&app, "admin", &password).await;
    assert!(ok.starts_with("HTTP/1.1 303"), "{ok}");
    assert_eq!(
        header(&ok, "location"),
        Some("/account"),
        "the generated password must be changed first"
    );
    let (session, set) = cookie_pair(&ok, SESSION).expect("session cookie");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    // Until it is changed, every page leads to the change-password form.
    let hosts = console_get(&app, "/hosts", Some(&session)).await;
    assert!(hosts.starts_with("HTTP/1.1 303"), "{hosts}");
    assert_eq!(header(&hosts, "location"), Some("/account"));
    let account = console_get(&app, "/account", Some(&session)).await;
    assert!(account.starts_with("HTTP/1.1 200"), "{account}");
    let csrf = account
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("CSRF field")
        .to_owned();
    let new_password = "admin-chose-this-password";
    let changed = console_post(
        &app,
        "/account",
        &session,
        &format!("current={password}&new={new_password}&confirm={new_password}&csrf={csrf}"),
    )
    .await;
    assert!(changed.starts_with("HTTP/1.1 303"), "{changed}");
    assert!(
        !file.exists(),
        "the password file goes once the password changed"
    );
    let hosts = console_get(&app, "/hosts", Some(&session)).await;
    assert!(hosts.starts_with("HTTP/1.1 200"), "{hosts}");
    assert!(hosts.contains("<h1>Hosts</h1>"), "{hosts}");
    // The appliance's own routes still answer next to the console.
    let health = console_get(&app, "/healthz", None).await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    app.shutdown().await;

    // Same data directory: users and sessions come back from RocksDB, and
    // no password is generated (or written) again.
    let app = start().await;
    assert!(app.first_start.admin_password.is_none());
    assert!(app.first_start.admin_password_file.is_none());
    assert!(!file.exists());
    let hosts = console_get(&app, "/hosts", Some(&session)).await;
    assert!(
        hosts.starts_with("HTTP/1.1 200"),
        "old session survives: {hosts}"
    );
    let old = console_login(&app, "admin", &password).await;
    assert!(old.starts_with("HTTP/1.1 401"), "{old}");
    let again = console_login(&app, "admin", new_password).await;
    assert!(again.starts_with("HTTP/1.1 303"), "{again}");
    assert_eq!(header(&again, "location"), Some("/"));
    let (session2, _) = cookie_pair(&again, SESSION).expect("session cookie");
    assert_ne!(session2, session);
    let hosts = console_get(&app, "/hosts", Some(&session2)).await;
    assert!(hosts.contains("<h1>Hosts</h1>"), "{hosts}");
    // Logins, failures and the password change are in one intact audit chain.
    let entries = app.core().console.audit_entries().unwrap();
    let actions: Vec<_> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "login.failed",
            "login",
            "user.password",
            "login.failed",
            "login"
        ]
    );
    assert_eq!(
        vigil_web_ui::audit::verify(&entries),
        vigil_web_ui::audit::ChainStatus::Intact { entries: 5 }
    );
    app.shutdown().await;
}
