//! An in-process test appliance: a real QUIC/mTLS server with an rcgen CA,
//! speaking the enrollment and ingest protocol exactly as the appliance does.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio::sync::mpsc;
use vigil_proto::control::{Ack, EnrollResponseV2, Refusal, RenewResponse, Welcome};
use vigil_proto::frame::HEADER_LEN;
use vigil_proto::{
    decode_batch, Command, CommandResult, ControlMessage, Event, FrameHeader, FrameKind, HostId,
    SensorConfig, SensorHealth,
};

pub const GOOD_TOKEN: &str = "good-token";
pub const TEST_HOST: HostId = HostId(0x42);

/// The test appliance's command key (handed out at enrollment).
pub fn command_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x5a; 32])
}

/// `cmd` for `TEST_HOST`, valid for a minute from now, signed with [`command_key`].
pub fn signed(id: u64, action: vigil_proto::CommandAction) -> Command {
    use ed25519_dalek::Signer;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut c = Command {
        id,
        host: TEST_HOST,
        operator: "alice".into(),
        reason: "triage".into(),
        created_ns: now,
        expires_ns: now + 60_000_000_000,
        action,
        signature: Vec::new(),
    };
    c.signature = command_key().sign(&c.signing_bytes()).to_bytes().to_vec();
    c
}

/// The test CA (kept across server restarts so a sensor's identity stays valid).
#[derive(Clone)]
pub struct TestCa {
    pub cert: Arc<rcgen::Certificate>,
    pub key: Arc<rcgen::KeyPair>,
    pub leaf_der: Vec<u8>,
    pub leaf_key_der: Vec<u8>,
    /// Validity (Unix s) of the client certificates enrollment issues;
    /// `None`: rcgen's default (practically forever, never due for renewal).
    pub enroll_validity: Option<(i64, i64)>,
    /// Answer `Renew` with `Refused { code: "renew_too_early" }`.
    pub refuse_renewals: bool,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "vigil test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut leaf = rcgen::CertificateParams::new(vec!["vigil-appliance".to_string()]).unwrap();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "vigil-appliance");
        let leaf = leaf.signed_by(&leaf_key, &cert, &key).unwrap();
        TestCa {
            cert: Arc::new(cert),
            key: Arc::new(key),
            leaf_der: leaf.der().to_vec(),
            leaf_key_der: leaf_key.serialize_der(),
            enroll_validity: None,
            refuse_renewals: false,
        }
    }

    /// A client certificate for `TEST_HOST` and the CSR's key, valid
    /// `validity` (Unix s) if given.
    pub fn sign_client(
        &self,
        csr_der: &[u8],
        validity: Option<(i64, i64)>,
    ) -> anyhow::Result<Vec<u8>> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())?;
        csr.params.distinguished_name = rcgen::DistinguishedName::new();
        csr.params
            .distinguished_name
            .push(rcgen::DnType::CommonName, TEST_HOST.to_string());
        if let Some((from, to)) = validity {
            let at = |s| x509_parser::time::ASN1Time::from_timestamp(s).map(|t| t.to_datetime());
            csr.params.not_before = at(from)?;
            csr.params.not_after = at(to)?;
        }
        Ok(csr.signed_by(&self.cert, &self.key)?.der().to_vec())
    }

    pub fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    pub fn sha256(&self) -> String {
        vigil_sensor::tls::sha256_hex(self.cert.der())
    }
}

/// What the server saw.
#[derive(Default)]
pub struct Seen {
    pub events: BTreeMap<u64, Event>,
    pub batches: u64,
    pub hellos: Vec<vigil_proto::control::Hello>,
    pub heartbeats: Vec<SensorHealth>,
    pub results: Vec<CommandResult>,
    /// Answers to commands in the pre-signing form.
    pub unsigned_results: Vec<vigil_proto::UnsignedResult>,
    pub enroll_requests: u64,
    /// The client certificate of each ingest connection, in order.
    pub client_certs: Vec<Vec<u8>>,
    /// `Renew` requests received.
    pub renew_requests: u64,
    /// Certificates issued by renewal.
    pub renewed: Vec<Vec<u8>>,
    /// Ingest connections, for [`TestServer::kick`].
    pub conns: Vec<quinn::Connection>,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub ca: TestCa,
    pub seen: Arc<Mutex<Seen>>,
    pub commands: mpsc::Sender<ControlMessage>,
    endpoint: quinn::Endpoint,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(ca: TestCa, addr: SocketAddr) -> TestServer {
        Self::start_with(ca, addr, test_sensor_config()).await
    }

    /// Start with the sensor settings this appliance pushes in `Welcome`.
    pub async fn start_with(ca: TestCa, addr: SocketAddr, config: SensorConfig) -> TestServer {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(ca.der())).unwrap();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .unwrap();
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![
                    CertificateDer::from(ca.leaf_der.clone()),
                    CertificateDer::from(ca.der()),
                ],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ca.leaf_key_der.clone())),
            )
            .unwrap();
        tls.alpn_protocols = vec![
            vigil_proto::ALPN_INGEST.to_vec(),
            vigil_proto::ALPN_ENROLL.to_vec(),
        ];
        let qcfg = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
        let server_cfg = quinn::ServerConfig::with_crypto(Arc::new(qcfg));
        let endpoint = quinn::Endpoint::server(server_cfg, addr).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let cmd_rx = Arc::new(tokio::sync::Mutex::new(cmd_rx));
        let ep = endpoint.clone();
        let seen2 = seen.clone();
        let ca2 = ca.clone();
        let task = tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let seen = seen2.clone();
                let ca = ca2.clone();
                let cmd_rx = cmd_rx.clone();
                let config = config.clone();
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    let _ = handle(conn, ca, seen, cmd_rx, config).await;
                });
            }
        });
        TestServer {
            addr,
            ca,
            seen,
            commands: cmd_tx,
            endpoint,
            task,
        }
    }

    pub async fn stop(self) {
        self.endpoint.close(0u32.into(), b"stop");
        self.task.abort();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    /// Close every ingest connection (the sensor reconnects).
    pub fn kick(&self) {
        for c in self.seen.lock().unwrap().conns.drain(..) {
            c.close(0u32.into(), b"kicked");
        }
    }

    /// Wait until `pred` holds on what the server saw (polling), or panic.
    pub async fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Seen) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(&self.seen.lock().unwrap()) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn read_frame(recv: &mut quinn::RecvStream) -> anyhow::Result<(FrameKind, Vec<u8>)> {
    let mut hdr = [0u8; HEADER_LEN];
    recv.read_exact(&mut hdr).await?;
    let h = FrameHeader::parse(&hdr)?;
    let mut p = vec![0u8; h.len];
    recv.read_exact(&mut p).await?;
    Ok((h.kind, p))
}

async fn read_ctl(recv: &mut quinn::RecvStream) -> anyhow::Result<ControlMessage> {
    let (kind, p) = read_frame(recv).await?;
    anyhow::ensure!(kind == FrameKind::Control);
    Ok(ControlMessage::from_payload(&p)?)
}

async fn handle(
    conn: quinn::Connection,
    ca: TestCa,
    seen: Arc<Mutex<Seen>>,
    cmd_rx: Arc<tokio::sync::Mutex<mpsc::Receiver<ControlMessage>>>,
    config: SensorConfig,
) -> anyhow::Result<()> {
    let alpn = conn
        .handshake_data()
        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|h| h.protocol)
        .unwrap_or_default();
    if alpn == vigil_proto::ALPN_ENROLL {
        let (mut send, mut recv) = conn.accept_bi().await?;
        let ControlMessage::Enroll(req) = read_ctl(&mut recv).await? else {
            anyhow::bail!("expected enroll");
        };
        seen.lock().unwrap().enroll_requests += 1;
        let answer = if req.token == GOOD_TOKEN {
            ControlMessage::EnrolledV2(EnrollResponseV2 {
                host: TEST_HOST,
                cert_der: ca.sign_client(&req.csr_der, ca.enroll_validity)?,
                ca_der: ca.der(),
                command_key: command_key().verifying_key().to_bytes(),
            })
        } else {
            ControlMessage::Refused(Refusal {
                code: "token_unknown".into(),
                message: "this enrollment token is not known".into(),
            })
        };
        send.write_all(&answer.to_frame()?).await?;
        send.finish()?;
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
        return Ok(());
    }
    let client_cert = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|certs| certs.first().map(|c| c.to_vec()));
    let Some(client_cert) = client_cert else {
        anyhow::bail!("ingest needs a client certificate");
    };
    {
        let mut s = seen.lock().unwrap();
        s.client_certs.push(client_cert);
        s.conns.push(conn.clone());
    }
    let (mut ctl_send, mut ctl_recv) = conn.accept_bi().await?;
    let ControlMessage::Hello(hello) = read_ctl(&mut ctl_recv).await? else {
        anyhow::bail!("expected hello");
    };
    let stored_up_to = seen
        .lock()
        .unwrap()
        .events
        .keys()
        .next_back()
        .copied()
        .unwrap_or(0);
    seen.lock().unwrap().hellos.push(hello);
    let welcome = ControlMessage::Welcome(Welcome {
        protocol_version: 1,
        host: TEST_HOST,
        config,
        stored_up_to,
    });
    ctl_send.write_all(&welcome.to_frame()?).await?;
    // Control stream reader; answers (renewals) go out through the pusher.
    let seen_c = seen.clone();
    let (reply_tx, mut reply_rx) = mpsc::channel::<ControlMessage>(4);
    tokio::spawn(async move {
        while let Ok(msg) = read_ctl(&mut ctl_recv).await {
            match msg {
                ControlMessage::Heartbeat(h) => seen_c.lock().unwrap().heartbeats.push(h.health),
                ControlMessage::CommandResult(r) => seen_c.lock().unwrap().results.push(r),
                ControlMessage::UnsignedResult(r) => {
                    seen_c.lock().unwrap().unsigned_results.push(r)
                }
                ControlMessage::Renew(req) => {
                    let reply = renew_reply(&ca, &seen_c, &req.csr_der);
                    if reply_tx.send(reply).await.is_err() {
                        return;
                    }
                }
                _ => {}
            }
        }
    });
    // Command pusher.
    let conn2 = conn.clone();
    tokio::spawn(async move {
        let mut rx = cmd_rx.lock().await;
        loop {
            tokio::select! {
                c = rx.recv() => {
                    let Some(c) = c else { return };
                    let f = c.to_frame().unwrap();
                    if ctl_send.write_all(&f).await.is_err() { return; }
                }
                Some(r) = reply_rx.recv() => {
                    if ctl_send.write_all(&r.to_frame().unwrap()).await.is_err() { return; }
                }
                _ = conn2.closed() => return,
            }
        }
    });
    loop {
        let (mut send, mut recv) = conn.accept_bi().await?;
        let seen = seen.clone();
        tokio::spawn(async move {
            let Ok((FrameKind::Batch, p)) = read_frame(&mut recv).await else {
                return;
            };
            let Ok(batch) = decode_batch(&p) else { return };
            let Some((first, last)) = batch.seq_range() else {
                return;
            };
            let mut dup = 0;
            {
                let mut s = seen.lock().unwrap();
                s.batches += 1;
                for e in batch.events {
                    if s.events.insert(e.header.seq, e).is_some() {
                        dup += 1;
                    }
                }
            }
            let ack = ControlMessage::Ack(Ack {
                first_seq: first,
                last_seq: last,
                duplicates: dup,
            });
            let _ = send.write_all(&ack.to_frame().unwrap()).await;
            let _ = send.finish();
        });
    }
}

/// Answer a `Renew` as the appliance does: a 90-day certificate from now
/// for the CSR's key (or a refusal when the CA is set to refuse).
fn renew_reply(ca: &TestCa, seen: &Mutex<Seen>, csr_der: &[u8]) -> ControlMessage {
    seen.lock().unwrap().renew_requests += 1;
    let refuse = |code: &str, message: String| {
        ControlMessage::Refused(Refusal {
            code: code.into(),
            message,
        })
    };
    if ca.refuse_renewals {
        return refuse("renew_too_early", "refused by the test".into());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let not_after = now + 90 * 24 * 3600;
    match ca.sign_client(csr_der, Some((now - 3600, not_after))) {
        Ok(cert_der) => {
            seen.lock().unwrap().renewed.push(cert_der.clone());
            ControlMessage::Renewed(RenewResponse {
                cert_der,
                not_after_ns: not_after as u64 * 1_000_000_000,
            })
        }
        Err(e) => refuse("renew_bad_csr", e.to_string()),
    }
}

/// Fast heartbeats and small batches, and a budget the tests never reach.
pub fn test_sensor_config() -> SensorConfig {
    SensorConfig {
        heartbeat_ms: 200,
        batch_max_events: 100,
        batch_max_ms: 50,
        cpu_budget_pct: 100.0,
    }
}

/// A free UDP port on loopback (bound then released).
pub fn free_udp_addr() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}
