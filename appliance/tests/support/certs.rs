//! Certificate lifetimes and renewal (issue #15) against a real appliance
//! over real QUIC: an expired sensor certificate is refused at the
//! handshake; a sensor whose certificate is in its last third renews it
//! over its own control stream, for its own host id and a new key only.
//! (`docs/SECURITY.md` maps each control to these tests.)

use super::*;
use std::time::SystemTime;
use vigil_appliance::ingest::frames::{read_control, write_control};
use vigil_proto::control::{Hello, RenewRequest};
use vigil_proto::PROTOCOL_VERSION;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn csr(key: &rcgen::KeyPair) -> Vec<u8> {
    // The name asked for is ignored: the certificate is for the connection's host.
    rcgen::CertificateParams::new(vec!["someone-else".to_owned()])
        .unwrap()
        .serialize_request(key)
        .unwrap()
        .der()
        .to_vec()
}

/// Credentials for `host` as if issued by this appliance at `at` (wall clock).
fn issued_at(lab: &Lab, host: HostId, key: &rcgen::KeyPair, at: SystemTime) -> Credentials {
    let cert_der = lab
        .app
        .core()
        .pki
        .sign_client_csr(&csr(key), host, at)
        .unwrap();
    Credentials {
        host,
        cert_der,
        key_der: key.serialize_der(),
        ca_der: lab.app.ca_der(),
    }
}

/// A welcomed connection with its control stream in the test's hands.
struct Control {
    conn: SimConn,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

impl Control {
    async fn open(lab: &Lab, creds: &Credentials) -> Control {
        let conn = SimConn::connect(&lab.ep, lab.app.quic_addr, creds)
            .await
            .unwrap();
        let (mut send, mut recv) = conn.conn.open_bi().await.unwrap();
        let hello = ControlMessage::Hello(Hello {
            protocol_versions: vec![PROTOCOL_VERSION],
            sensor_version: "test".into(),
            hostname: "renewing".into(),
            os: "linux".into(),
            addrs: vec![],
            next_seq: 1,
        });
        write_control(&mut send, &hello).await.unwrap();
        match read_control(&mut recv, Duration::from_secs(10)).await {
            Ok(ControlMessage::Welcome(w)) => assert_eq!(w.host, creds.host),
            other => panic!("expected Welcome, got {other:?}"),
        }
        Control { conn, send, recv }
    }

    /// Send `Renew` for `key` and read the answer.
    async fn renew(&mut self, key: &rcgen::KeyPair) -> ControlMessage {
        let req = ControlMessage::Renew(RenewRequest { csr_der: csr(key) });
        write_control(&mut self.send, &req).await.unwrap();
        read_control(&mut self.recv, Duration::from_secs(10))
            .await
            .unwrap()
    }
}

fn renewals(lab: &Lab, outcome: &str) -> u64 {
    let counts = lab.app.metrics().cert_renewals.snapshot();
    counts.get(outcome).copied().unwrap_or(0)
}

fn public_key(cert_der: &[u8]) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).unwrap();
    cert.public_key().subject_public_key.data.to_vec()
}

#[tokio::test]
async fn an_expired_sensor_certificate_is_refused_at_the_handshake() {
    let lab = lab().await;
    let a = lab.enroll_one("expired").await;
    let key = rcgen::KeyPair::generate().unwrap();
    // 90-day certificate issued 100 days ago: expired 10 days ago.
    let expired = issued_at(&lab, a.host, &key, SystemTime::now() - 100 * DAY);
    assert_refused(&lab, &expired).await;
    assert_eq!(
        lab.counter("handshake_rejects{reason=\"bad_certificate\"}"),
        1
    );
    // The same host with a current certificate is served.
    let c = lab.online(&a).await;
    let ev = realistic_events(a.host, 1, 10, T0, 1);
    assert_eq!(ack(c.send_batch(&ev).await.unwrap()).last_seq, 10);
    lab.app.shutdown().await;
}

#[tokio::test]
async fn renewal_before_the_last_third_of_the_lifetime_is_refused() {
    let lab = lab().await;
    let fresh = lab.enroll_one("fresh").await;
    let mut ctl = Control::open(&lab, &fresh).await;
    let new_key = rcgen::KeyPair::generate().unwrap();
    assert_eq!(refused_code(ctl.renew(&new_key).await), "renew_too_early");
    // 59 of 90 days used: still more than a third left.
    let key = rcgen::KeyPair::generate().unwrap();
    let young = issued_at(&lab, fresh.host, &key, SystemTime::now() - 59 * DAY);
    let mut ctl = Control::open(&lab, &young).await;
    assert_eq!(refused_code(ctl.renew(&new_key).await), "renew_too_early");
    assert_eq!(renewals(&lab, "renew_too_early"), 2);
    assert_eq!(renewals(&lab, "renewed"), 0);
    lab.app.shutdown().await;
}

#[tokio::test]
async fn renewal_with_the_current_key_is_refused() {
    let lab = lab().await;
    let a = lab.enroll_one("same-key").await;
    let key = rcgen::KeyPair::generate().unwrap();
    let aged = issued_at(&lab, a.host, &key, SystemTime::now() - 70 * DAY);
    let mut ctl = Control::open(&lab, &aged).await;
    assert_eq!(refused_code(ctl.renew(&key).await), "renew_same_key");
    assert_eq!(renewals(&lab, "renew_same_key"), 1);
    // The refusal is an answer, not the end of the connection.
    let ev = realistic_events(a.host, 1, 10, T0, 2);
    assert_eq!(ack(ctl.conn.send_batch(&ev).await.unwrap()).last_seq, 10);
    lab.app.shutdown().await;
}

#[tokio::test]
async fn a_certificate_in_its_last_third_is_renewed_for_the_same_host_and_a_new_key() {
    let lab = lab().await;
    let a = lab.enroll_one("renewing").await;
    let old_key = rcgen::KeyPair::generate().unwrap();
    // 70 of 90 days used: 20 days left, less than a third.
    let aged = issued_at(&lab, a.host, &old_key, SystemTime::now() - 70 * DAY);
    let mut ctl = Control::open(&lab, &aged).await;
    let new_key = rcgen::KeyPair::generate().unwrap();
    let before = SystemTime::now();
    let renewed = match ctl.renew(&new_key).await {
        ControlMessage::Renewed(r) => r,
        other => panic!("expected Renewed, got {other:?}"),
    };
    assert_eq!(
        vigil_appliance::pki::host_from_cert(&renewed.cert_der),
        Some(a.host),
        "the connection's host, not the CSR's name"
    );
    assert_eq!(
        public_key(&renewed.cert_der),
        rcgen::PublicKeyData::der_bytes(&new_key)
    );
    let v = vigil_appliance::pki::cert_validity(&renewed.cert_der).unwrap();
    let expected = before + vigil_appliance::pki::CLIENT_CERT_VALIDITY;
    let expected_s = expected
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((v.not_after_s - expected_s).abs() <= 5, "90 days from now");
    assert_eq!(renewed.not_after_ns, v.not_after_s as u64 * 1_000_000_000);
    assert_eq!(renewals(&lab, "renewed"), 1);
    // Once per connection: the next one presents the new certificate.
    assert_eq!(refused_code(ctl.renew(&new_key).await), "renew_repeated");

    let next = Credentials {
        host: a.host,
        cert_der: renewed.cert_der,
        key_der: new_key.serialize_der(),
        ca_der: lab.app.ca_der(),
    };
    let c = lab.online(&next).await;
    let ev = realistic_events(a.host, 1, 10, T0, 3);
    assert_eq!(ack(c.send_batch(&ev).await.unwrap()).last_seq, 10);
    // The new certificate is fresh: renewing it again is too early.
    let mut ctl = Control::open(&lab, &next).await;
    assert_eq!(refused_code(ctl.renew(&old_key).await), "renew_too_early");
    lab.app.shutdown().await;
}
