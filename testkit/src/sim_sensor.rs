//! A minimal QUIC sensor speaking the real protocol: enroll with a token
//! and a CSR, connect with the issued client certificate, say hello, send
//! heartbeats and batches; its events come from [`realistic_events`] (the
//! fleet generator). Used by the appliance's integration tests and the
//! ingest bench; it is not the production sensor.

pub use crate::fleet::realistic_events;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use vigil_appliance::ingest::frames::{read_control, write_control, FrameReadError};
use vigil_appliance::pki::SERVER_NAME;
use vigil_appliance::tls::provider;
use vigil_proto::control::{Heartbeat, Hello, Refusal};
use vigil_proto::*;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Idle timeout of simulated connections (keep-alives every third of it).
pub const DEFAULT_IDLE: Duration = Duration::from_secs(60);

/// A simulated-sensor failure.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Building the TLS or QUIC configuration failed.
    #[error("tls: {0}")]
    Tls(String),
    /// The connection could not be opened.
    #[error("connect: {0}")]
    Connect(String),
    /// A stream could not be opened, written or finished.
    #[error("stream: {0}")]
    Stream(String),
    /// The appliance's answer was not a readable frame.
    #[error("frame: {0}")]
    Frame(#[from] FrameReadError),
    /// Encoding a batch failed.
    #[error("proto: {0}")]
    Proto(#[from] ProtoError),
    /// The appliance answered something this step does not expect.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// Credentials from a successful enrollment.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The host id the appliance assigned (the certificate's CN).
    pub host: HostId,
    /// The issued client certificate.
    pub cert_der: Vec<u8>,
    /// PKCS#8 private key of the sensor.
    pub key_der: Vec<u8>,
    /// The appliance CA to pin.
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
    /// The QUIC connection.
    pub conn: Connection,
    /// The host it speaks for.
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
