//! A minimal QUIC sensor speaking the real protocol: enroll with a token
//! and a CSR, connect with the issued client certificate, say hello, send
//! heartbeats and batches. Used by the integration tests, the ingest bench
//! and the end-to-end demo; it is not the production sensor.

use crate::ingest::frames::{read_control, write_control, FrameReadError};
use crate::pki::SERVER_NAME;
use crate::tls::provider;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use vigil_proto::control::{Heartbeat, Hello, Refusal};
use vigil_proto::*;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Idle timeout of simulated connections (keep-alives every third of it).
pub const DEFAULT_IDLE: Duration = Duration::from_secs(60);

/// A simulated-sensor failure.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("tls: {0}")]
    Tls(String),
    #[error("connect: {0}")]
    Connect(String),
    #[error("stream: {0}")]
    Stream(String),
    #[error("frame: {0}")]
    Frame(#[from] FrameReadError),
    #[error("proto: {0}")]
    Proto(#[from] ProtoError),
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// Credentials from a successful enrollment.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub host: HostId,
    pub cert_der: Vec<u8>,
    /// PKCS#8 private key of the sensor.
    pub key_der: Vec<u8>,
    pub ca_der: Vec<u8>,
}

/// A client endpoint on 127.0.0.1 (or the unspecified address of `family`).
pub fn client_endpoint() -> Result<Endpoint, SimError> {
    Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .map_err(|e| SimError::Connect(e.to_string()))
}

/// quinn client config trusting `ca_der`, offering `alpn`, with an optional client certificate.
pub fn client_config(
    ca_der: &[u8],
    alpn: &[u8],
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    idle_timeout: Duration,
) -> Result<quinn::ClientConfig, SimError> {
    let tls = |e: rustls::Error| SimError::Tls(e.to_string());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .map_err(tls)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls)?
        .with_root_certificates(roots);
    let mut cfg = match client {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(tls)?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let q = quinn::crypto::rustls::QuicClientConfig::try_from(cfg)
        .map_err(|e| SimError::Tls(e.to_string()))?;
    let mut c = quinn::ClientConfig::new(Arc::new(q));
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(idle_timeout / 3));
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(idle_timeout).map_err(|e| SimError::Tls(e.to_string()))?,
    ));
    // As the real sensor does (sensor/src/tls.rs): ask the appliance to
    // acknowledge each packet at once, so a heartbeat costs it one wakeup,
    // not a second one for a delayed-ACK timer.
    let mut ack = quinn::AckFrequencyConfig::default();
    ack.ack_eliciting_threshold(0u32.into());
    t.ack_frequency_config(Some(ack));
    c.transport_config(Arc::new(t));
    Ok(c)
}

async fn open(
    endpoint: &Endpoint,
    addr: SocketAddr,
    cfg: quinn::ClientConfig,
) -> Result<Connection, SimError> {
    let connecting = endpoint
        .connect_with(cfg, addr, SERVER_NAME)
        .map_err(|e| SimError::Connect(e.to_string()))?;
    tokio::time::timeout(TIMEOUT, connecting)
        .await
        .map_err(|_| SimError::Connect("timed out".into()))?
        .map_err(|e| SimError::Connect(e.to_string()))
}

/// Enroll: `Ok(Ok(credentials))`, or `Ok(Err(refusal))` when the appliance says no.
pub async fn enroll(
    endpoint: &Endpoint,
    addr: SocketAddr,
    ca_der: &[u8],
    token: &str,
    hostname: &str,
) -> Result<Result<Credentials, Refusal>, SimError> {
    let key = rcgen::KeyPair::generate().map_err(|e| SimError::Tls(e.to_string()))?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.serialize_request(&key))
        .map_err(|e| SimError::Tls(e.to_string()))?;
    let conn = open(
        endpoint,
        addr,
        client_config(ca_der, ALPN_ENROLL, None, DEFAULT_IDLE)?,
    )
    .await?;
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| SimError::Stream(e.to_string()))?;
    let req = ControlMessage::Enroll(EnrollRequest {
        token: token.to_owned(),
        csr_der: csr.der().to_vec(),
        hostname: hostname.to_owned(),
        os: "linux".into(),
        sensor_version: "sim-0.1".into(),
    });
    write_control(&mut send, &req)
        .await
        .map_err(SimError::Stream)?;
    let _ = send.finish();
    let answer = read_control(&mut recv, TIMEOUT).await?;
    conn.close(0u32.into(), b"done");
    match answer {
        ControlMessage::Enrolled(r) => Ok(Ok(Credentials {
            host: r.host,
            cert_der: r.cert_der,
            key_der: key.serialize_der(),
            ca_der: r.ca_der,
        })),
        ControlMessage::Refused(r) => Ok(Err(r)),
        other => Err(SimError::Unexpected(format!("{other:?}"))),
    }
}

/// An ingest connection.
pub struct SimConn {
    pub conn: Connection,
    pub host: HostId,
    control: Option<(SendStream, RecvStream)>,
}

impl SimConn {
    /// Connect on the ingest ALPN with these credentials (no hello yet).
    pub async fn connect(
        endpoint: &Endpoint,
        addr: SocketAddr,
        creds: &Credentials,
    ) -> Result<SimConn, SimError> {
        let chain = vec![CertificateDer::from(creds.cert_der.clone())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(creds.key_der.clone()));
        Self::connect_raw(
            endpoint,
            addr,
            &creds.ca_der,
            Some((chain, key)),
            creds.host,
            DEFAULT_IDLE,
        )
        .await
    }

    /// Like [`SimConn::connect`] with a custom idle timeout (short ones notice a dead appliance fast).
    pub async fn connect_with_idle(
        endpoint: &Endpoint,
        addr: SocketAddr,
        creds: &Credentials,
        idle_timeout: Duration,
    ) -> Result<SimConn, SimError> {
        let chain = vec![CertificateDer::from(creds.cert_der.clone())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(creds.key_der.clone()));
        Self::connect_raw(
            endpoint,
            addr,
            &creds.ca_der,
            Some((chain, key)),
            creds.host,
            idle_timeout,
        )
        .await
    }

    /// Connect on the ingest ALPN with any (or no) client certificate.
    pub async fn connect_raw(
        endpoint: &Endpoint,
        addr: SocketAddr,
        ca_der: &[u8],
        client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
        host: HostId,
        idle_timeout: Duration,
    ) -> Result<SimConn, SimError> {
        let conn = open(
            endpoint,
            addr,
            client_config(ca_der, ALPN_INGEST, client, idle_timeout)?,
        )
        .await?;
        Ok(SimConn {
            conn,
            host,
            control: None,
        })
    }

    /// Open the control stream and say hello; returns the answer (`Welcome` or `Refused`).
    pub async fn hello(&mut self, next_seq: u64) -> Result<ControlMessage, SimError> {
        let (mut send, mut recv) = self
            .conn
            .open_bi()
            .await
            .map_err(|e| SimError::Stream(e.to_string()))?;
        let hello = ControlMessage::Hello(Hello {
            protocol_versions: vec![PROTOCOL_VERSION],
            sensor_version: "sim-0.1".into(),
            hostname: format!("sim-{}", self.host),
            os: "linux".into(),
            addrs: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            next_seq,
        });
        write_control(&mut send, &hello)
            .await
            .map_err(SimError::Stream)?;
        let answer = read_control(&mut recv, TIMEOUT).await?;
        self.control = Some((send, recv));
        Ok(answer)
    }

    /// Send one heartbeat on the control stream.
    pub async fn heartbeat(&mut self, ts_ns: u64) -> Result<(), SimError> {
        let (send, _) = self
            .control
            .as_mut()
            .ok_or_else(|| SimError::Unexpected("heartbeat before hello".into()))?;
        let hb = ControlMessage::Heartbeat(Heartbeat {
            ts_ns,
            health: SensorHealth {
                cpu_pct: 0.3,
                rss_bytes: 20 << 20,
                events_per_s: 100.0,
                spool_bytes: 0,
                dropped_total: 0,
                aggregated_total: 0,
                collectors: vec![],
            },
        });
        write_control(send, &hb).await.map_err(SimError::Stream)
    }

    /// Read the next message the appliance sends on the control stream (e.g. a command).
    pub async fn next_control(&mut self, timeout: Duration) -> Result<ControlMessage, SimError> {
        let (_, recv) = self
            .control
            .as_mut()
            .ok_or_else(|| SimError::Unexpected("no control stream".into()))?;
        Ok(read_control(recv, timeout).await?)
    }

    /// Send a batch on its own stream; returns `Ack` or `Refused`.
    pub async fn send_batch(&self, events: &[Event]) -> Result<ControlMessage, SimError> {
        let frame = Batch {
            events: events.to_vec(),
        }
        .to_frame()?;
        self.send_raw(&frame).await
    }

    /// Send arbitrary bytes on a new stream, finish it, read the one answer.
    pub async fn send_raw(&self, bytes: &[u8]) -> Result<ControlMessage, SimError> {
        let (mut send, mut recv) = self
            .conn
            .open_bi()
            .await
            .map_err(|e| SimError::Stream(e.to_string()))?;
        send.write_all(bytes)
            .await
            .map_err(|e| SimError::Stream(e.to_string()))?;
        let _ = send.finish();
        Ok(read_control(&mut recv, TIMEOUT).await?)
    }
}

const EXES: [&str; 12] = [
    "/usr/bin/bash",
    "/usr/bin/python3",
    "/usr/sbin/sshd",
    "/usr/bin/curl",
    "/usr/bin/ls",
    "/usr/bin/grep",
    "/usr/lib/systemd/systemd-journald",
    "/usr/bin/cron",
    "/usr/bin/sudo",
    "/usr/bin/git",
    "/opt/app/bin/server",
    "/usr/bin/ps",
];
const USERS: [&str; 5] = ["root", "alice", "bob", "svc-backup", "www-data"];
const PATHS: [&str; 4] = [
    "/root/.ssh/authorized_keys",
    "/etc/crontab",
    "/etc/sudoers.d/90-admin",
    "/etc/systemd/system/app.service",
];

/// Deterministic, realistic-looking events for `host`: seqs `first_seq..first_seq+n`,
/// about 1 ms apart from `start_ns`. Mix: processes, flows, logins, file changes.
pub fn realistic_events(
    host: HostId,
    first_seq: u64,
    n: usize,
    start_ns: u64,
    seed: u64,
) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed ^ host.0 ^ first_seq.rotate_left(17));
    let mut ts = start_ns;
    let local_ip = IpAddr::V4(Ipv4Addr::new(
        10,
        0,
        (host.0 % 200) as u8,
        (host.0 % 250) as u8 + 2,
    ));
    (0..n)
        .map(|i| {
            ts += rng.gen_range(200_000..1_800_000);
            let seq = first_seq + i as u64;
            let pid = rng.gen_range(300..40_000);
            let roll = rng.gen_range(0..100);
            let payload = if roll < 35 {
                let exe = EXES[rng.gen_range(0..EXES.len())];
                Payload::ProcessStart(ProcessStart {
                    pid,
                    ppid: rng.gen_range(1..300),
                    exe: Some(exe.into()),
                    argv: vec![
                        exe.rsplit('/').next().unwrap_or(exe).into(),
                        "-c".into(),
                        format!("job-{}", rng.gen_range(0..50)),
                    ],
                    uid: Some(rng.gen_range(0..3) * 1000),
                    user: Some(USERS[rng.gen_range(0..USERS.len())].into()),
                    cwd: Some("/home/alice".into()),
                    parent_exe: Some(EXES[rng.gen_range(0..3)].into()),
                    start_time_ns: Some(ts - 50_000),
                    netns: 4026531840,
                    exited_before_enrichment: false,
                })
            } else if roll < 60 {
                Payload::ProcessExit(ProcessExit {
                    pid,
                    exit_code: Some(0),
                    exe: Some(EXES[rng.gen_range(0..EXES.len())].into()),
                })
            } else if roll < 90 {
                let peer = IpAddr::V4(Ipv4Addr::new(
                    10,
                    0,
                    rng.gen_range(0..4),
                    rng.gen_range(1..60),
                ));
                let port = [22u16, 443, 80, 53, 445, 5432][rng.gen_range(0..6)];
                let flow = NetFlow {
                    transport: if port == 53 {
                        Transport::Udp
                    } else {
                        Transport::Tcp
                    },
                    local: SocketAddr::new(local_ip, rng.gen_range(32768..60999)),
                    remote: SocketAddr::new(peer, port),
                    pid: Some(pid),
                    exe: Some(EXES[rng.gen_range(0..EXES.len())].into()),
                    repeat: 1,
                };
                if roll < 80 {
                    Payload::NetConnect(flow)
                } else {
                    Payload::NetAccept(flow)
                }
            } else if roll < 97 {
                let info = LoginInfo {
                    user: USERS[rng.gen_range(0..USERS.len())].into(),
                    method: AuthMethod::PublicKey,
                    service: LoginService::Ssh,
                    src_addr: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 1, rng.gen_range(1..60)))),
                    src_port: Some(rng.gen_range(32768..60999)),
                    src_host: None,
                    from_user: None,
                    pid: Some(pid),
                };
                match roll % 3 {
                    0 => Payload::Login(info),
                    1 => Payload::Logout(info),
                    _ => Payload::AuthFailure(info),
                }
            } else {
                Payload::FileChange(FileChange {
                    path: PATHS[rng.gen_range(0..PATHS.len())].into(),
                    op: FileOp::Modified,
                    size: Some(rng.gen_range(100..4000)),
                    mode: Some(0o600),
                    uid: Some(0),
                    sha256: Some(rng.gen()),
                    pid: Some(pid),
                })
            };
            Event {
                header: EventHeader {
                    host,
                    seq,
                    ts_ns: ts,
                },
                payload,
            }
        })
        .collect()
}
