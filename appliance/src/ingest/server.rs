//! The QUIC endpoint: enrollment connections and mTLS ingest connections.
//!
//! Ingest connection: the host id comes from the client certificate's CN.
//! The first bidirectional stream is the control stream (`Hello` →
//! `Welcome`, then heartbeats, command results and certificate renewals;
//! commands and renewed certificates go the other way). Every further
//! bidirectional stream carries exactly one batch frame, answered with
//! `Ack` after the synced write, or `Refused`.

use super::frames::{read_control, read_frame, write_control, FrameReadError};
use super::limits::{IngestLimits, LimitsConfig};
use super::writer::{EncodedEvent, IngestQueue};
use crate::core::Core;
use crate::internal_events::{
    CertificateRenewed, ConnectionClosed, ConnectionOpened, EnrollmentRefused, FrameRejected,
    HandshakeRejected, HeartbeatReceived, HostThrottled, IdentityConflicted, InternalEvent,
    RenewalRefused, SensorEnrolled,
};
use crate::pki::host_from_cert;
use crate::registry::{
    CLOSE_NO_CERT, CLOSE_PROTOCOL, CLOSE_REVOKED, CLOSE_SHUTDOWN, CLOSE_UNKNOWN_HOST,
};
use crate::shutdown::Shutdown;
use quinn::{Connection, RecvStream, SendStream};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use vigil_proto::control::{Refusal, RenewRequest, Welcome};
use vigil_proto::frame::FrameKind;
use vigil_proto::{decode_batch, Command, ControlMessage, HostId, PROTOCOL_VERSION};

/// How long a peer may take to send a whole frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an unauthenticated enrollment peer may take to ask: a request
/// is one small frame, and a slot held by a silent peer is one a real
/// sensor cannot use.
pub const ENROLL_TIMEOUT: Duration = Duration::from_secs(10);
/// Most batch streams one connection may have open at once (QUIC back-pressure).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 16;
/// Pending commands per connected host.
pub const COMMAND_QUEUE: usize = 16;

/// QUIC transport settings for the ingest endpoint.
pub fn transport_config() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(MAX_STREAMS_PER_CONNECTION.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(120)).expect("idle timeout in range"),
    ));
    t.stream_receive_window((8u32 * 1024 * 1024).into());
    t.receive_window((16u32 * 1024 * 1024).into());
    t
}

/// The QUIC endpoint running on its own thread.
pub struct QuicThread {
    /// The bound address.
    pub addr: SocketAddr,
    thread: std::thread::JoinHandle<()>,
}

impl QuicThread {
    /// Bind `listen` and serve on a dedicated single-threaded runtime until
    /// `shutdown`. Why its own thread: every QUIC packet passes through the
    /// endpoint driver, the connection driver and a stream task; on the
    /// shared multi-threaded runtime each of those hand-offs could wake an
    /// idle worker on the other core, so 10,000 idle sensors cost more in
    /// futex wakeups and context switches than in QUIC itself. On one thread
    /// the hand-offs are plain queue pushes. Batches are only decoded here;
    /// the synced writes happen on the writer thread.
    pub fn spawn(
        server_config: quinn::ServerConfig,
        listen: SocketAddr,
        core: Arc<Core>,
        queue: IngestQueue,
        limits: LimitsConfig,
        shutdown: Shutdown,
    ) -> std::io::Result<QuicThread> {
        let limits = Arc::new(IngestLimits::new(limits));
        let (bound_tx, bound_rx) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("vigil-quic".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let endpoint = match quinn::Endpoint::server(server_config, listen)
                        .and_then(|ep| Ok((ep.local_addr()?, ep)))
                    {
                        Ok((addr, ep)) => {
                            let _ = bound_tx.send(Ok(addr));
                            ep
                        }
                        Err(e) => {
                            let _ = bound_tx.send(Err(e));
                            return;
                        }
                    };
                    run(endpoint.clone(), core, queue, limits, shutdown).await;
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), endpoint.wait_idle()).await;
                });
            })?;
        let addr = bound_rx
            .recv()
            .map_err(|_| std::io::Error::other("QUIC thread exited before binding"))??;
        Ok(QuicThread { addr, thread })
    }

    /// Wait for the thread to finish (after shutdown was triggered).
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("QUIC thread panicked");
        }
    }
}

/// Accept connections until shutdown.
pub async fn run(
    endpoint: quinn::Endpoint,
    core: Arc<Core>,
    queue: IngestQueue,
    limits: Arc<IngestLimits>,
    mut shutdown: Shutdown,
) {
    loop {
        let incoming = tokio::select! {
            _ = shutdown.wait() => break,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        // Before any certificate is checked: a flood of handshakes is
        // refused at the cap, not queued.
        let Some(slot) = limits.try_handshake() else {
            HandshakeRejected {
                reason: "handshakes_busy",
                detail: "too many handshakes in progress",
            }
            .emit(&core.metrics);
            incoming.refuse();
            continue;
        };
        let (core, queue, shutdown) = (core.clone(), queue.clone(), shutdown.clone());
        let limits = limits.clone();
        tokio::spawn(async move {
            let connecting = incoming.await;
            drop(slot);
            match connecting {
                Ok(conn) => handle_connection(conn, core, queue, limits, shutdown).await,
                Err(e) => tracing::debug!(error = %e, "handshake failed"),
            }
        });
    }
    endpoint.close(CLOSE_SHUTDOWN.into(), b"appliance shutting down");
    tracing::debug!("ingest endpoint stopped");
}

fn alpn(conn: &Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

fn peer_host(conn: &Connection) -> Option<HostId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
        .ok()?;
    host_from_cert(certs.first()?)
}

async fn handle_connection(
    conn: Connection,
    core: Arc<Core>,
    queue: IngestQueue,
    limits: Arc<IngestLimits>,
    shutdown: Shutdown,
) {
    match alpn(&conn).as_deref() {
        Some(p) if p == vigil_proto::ALPN_ENROLL || p == vigil_proto::ALPN_ENROLL_V2 => {
            let v2 = p == vigil_proto::ALPN_ENROLL_V2;
            // Enrollment is unauthenticated until the token is checked.
            let Some(_slot) = limits.try_enrollment(conn.remote_address().ip()) else {
                HandshakeRejected {
                    reason: "enrollments_busy",
                    detail: "too many enrollment connections",
                }
                .emit(&core.metrics);
                conn.close(CLOSE_PROTOCOL.into(), b"enrollment busy, retry later");
                return;
            };
            handle_enroll(conn, core, v2).await
        }
        Some(p) if p == vigil_proto::ALPN_INGEST => {
            handle_ingest(conn, core, queue, limits, shutdown).await
        }
        _ => {
            HandshakeRejected {
                reason: "alpn",
                detail: "no known ALPN",
            }
            .emit(&core.metrics);
            conn.close(CLOSE_PROTOCOL.into(), b"unknown ALPN");
        }
    }
}

async fn refuse_stream(send: &mut SendStream, code: &str, message: &str) {
    let msg = ControlMessage::Refused(Refusal {
        code: code.to_owned(),
        message: message.to_owned(),
    });
    let _ = write_control(send, &msg).await;
    let _ = send.finish();
}

/// Refuse on the control stream, give the peer a moment to read why, then close.
async fn refuse_and_close(conn: &Connection, send: &mut SendStream, code: &str, message: &str) {
    refuse_stream(send, code, message).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
    conn.close(CLOSE_PROTOCOL.into(), message.as_bytes());
}

async fn handle_enroll(conn: Connection, core: Arc<Core>, v2: bool) {
    let Ok(Ok((mut send, mut recv))) = tokio::time::timeout(ENROLL_TIMEOUT, conn.accept_bi()).await
    else {
        return;
    };
    let reply = match read_control(&mut recv, ENROLL_TIMEOUT).await {
        Ok(ControlMessage::Enroll(req)) => {
            let now = (core.clock)();
            let peer = Some(conn.remote_address().ip());
            // Enrollment makes synced writes: off the QUIC thread, so an
            // fsync never stalls every other connection's packets.
            let (c, r) = (core.clone(), req.clone());
            let enrolled = tokio::task::spawn_blocking(move || c.enrollment.enroll(&r, peer, now))
                .await
                .unwrap_or_else(|e| {
                    Err(Refusal {
                        code: "internal".into(),
                        message: format!("enrollment task failed: {e}"),
                    })
                });
            match enrolled {
                Ok(resp) => {
                    SensorEnrolled {
                        host: resp.host,
                        hostname: &req.hostname,
                    }
                    .emit(&core.metrics);
                    if v2 {
                        // Sensors that speak v2 learn the command key too.
                        ControlMessage::EnrolledV2(vigil_proto::EnrollResponseV2 {
                            host: resp.host,
                            cert_der: resp.cert_der,
                            ca_der: resp.ca_der,
                            command_key: core.responder.public_key(),
                        })
                    } else {
                        ControlMessage::Enrolled(resp)
                    }
                }
                Err(refusal) => {
                    EnrollmentRefused {
                        code: &refusal.code,
                    }
                    .emit(&core.metrics);
                    ControlMessage::Refused(refusal)
                }
            }
        }
        Ok(_) => {
            EnrollmentRefused {
                code: "unexpected_message",
            }
            .emit(&core.metrics);
            ControlMessage::Refused(Refusal {
                code: "unexpected_message".into(),
                message: "expected Enroll".into(),
            })
        }
        Err(e) => {
            FrameRejected {
                host: None,
                reason: e.reason(),
                detail: &e.to_string(),
            }
            .emit(&core.metrics);
            ControlMessage::Refused(Refusal {
                code: e.reason().into(),
                message: e.to_string(),
            })
        }
    };
    let _ = write_control(&mut send, &reply).await;
    let _ = send.finish();
    // Let the peer read the answer and close; bounded so a silent peer cannot pin us.
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
}

async fn handle_ingest(
    conn: Connection,
    core: Arc<Core>,
    queue: IngestQueue,
    limits: Arc<IngestLimits>,
    mut shutdown: Shutdown,
) {
    let Some(host) = peer_host(&conn) else {
        HandshakeRejected {
            reason: "no_certificate",
            detail: "ingest requires a client certificate",
        }
        .emit(&core.metrics);
        conn.close(CLOSE_NO_CERT.into(), b"client certificate required");
        return;
    };
    if core.registry.is_revoked(host) {
        HandshakeRejected {
            reason: "revoked",
            detail: &host.to_string(),
        }
        .emit(&core.metrics);
        conn.close(CLOSE_REVOKED.into(), b"certificate revoked");
        return;
    }
    if core.registry.get(host).is_none() {
        HandshakeRejected {
            reason: "unknown_host",
            detail: &host.to_string(),
        }
        .emit(&core.metrics);
        conn.close(CLOSE_UNKNOWN_HOST.into(), b"host not enrolled here");
        return;
    }
    ConnectionOpened { host }.emit(&core.metrics);
    let conn_id = core.registry.connected(host, conn.clone());
    let mut control_started = false;
    let reason = loop {
        let stream = tokio::select! {
            _ = shutdown.wait() => {
                conn.close(CLOSE_SHUTDOWN.into(), b"appliance shutting down");
                break "shutdown";
            }
            s = conn.accept_bi() => s,
        };
        let Ok((send, recv)) = stream else {
            break "closed";
        };
        if !control_started {
            control_started = true;
            tokio::spawn(control_stream(
                conn.clone(),
                conn_id,
                host,
                send,
                recv,
                core.clone(),
                shutdown.clone(),
            ));
        } else {
            tokio::spawn(batch_stream(
                host,
                send,
                recv,
                core.clone(),
                queue.clone(),
                limits.clone(),
            ));
        }
    };
    core.registry.disconnected(host, conn_id);
    ConnectionClosed { host, reason }.emit(&core.metrics);
}

async fn control_stream(
    conn: Connection,
    conn_id: usize,
    host: HostId,
    mut send: SendStream,
    mut recv: RecvStream,
    core: Arc<Core>,
    mut shutdown: Shutdown,
) {
    let hello = match read_control(&mut recv, FRAME_TIMEOUT).await {
        Ok(ControlMessage::Hello(h)) => h,
        other => {
            let (reason, detail) = match &other {
                Ok(_) => ("unexpected_message", "expected Hello".to_owned()),
                Err(e) => (e.reason(), e.to_string()),
            };
            FrameRejected {
                host: Some(host),
                reason,
                detail: &detail,
            }
            .emit(&core.metrics);
            refuse_and_close(&conn, &mut send, reason, &detail).await;
            return;
        }
    };
    if !hello.protocol_versions.contains(&PROTOCOL_VERSION) {
        FrameRejected {
            host: Some(host),
            reason: "version",
            detail: "no common protocol version",
        }
        .emit(&core.metrics);
        let msg = format!("this appliance speaks protocol {PROTOCOL_VERSION}");
        refuse_and_close(&conn, &mut send, "version", &msg).await;
        return;
    }
    let config = core.sensor_config.clone();
    let now = (core.clock)();
    match core
        .registry
        .on_hello(host, &hello, config.heartbeat_ms, now)
    {
        Ok(conflicts) => {
            for c in conflicts {
                IdentityConflicted { conflict: &c }.emit(&core.metrics);
            }
        }
        Err(e) => tracing::warn!(host = %host, error = %e, "registry update failed"),
    }
    let stored_up_to = core
        .db
        .seqset(host)
        .map(|s| s.contiguous_from_one())
        .unwrap_or(0);
    let welcome = ControlMessage::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        host,
        config,
        stored_up_to,
    });
    if write_control(&mut send, &welcome).await.is_err() {
        return;
    }
    let (tx, rx) = mpsc::channel::<Command>(COMMAND_QUEUE);
    core.registry.attach_commands(host, conn_id, tx);
    // Answers to the sensor's own requests (renewal) share the send half
    // with commands, so they go through the writer too.
    let (reply_tx, reply_rx) = mpsc::channel::<ControlMessage>(1);
    let writer = tokio::spawn(command_writer(send, rx, reply_rx, shutdown.clone()));
    // What waited for this host goes out now (stored commands survive
    // disconnections and appliance restarts).
    let responder = core.responder.clone();
    let _ = tokio::task::spawn_blocking(move || responder.host_connected(host)).await;
    let mut renewed = false;
    loop {
        let msg = tokio::select! {
            _ = shutdown.wait() => break,
            m = read_control(&mut recv, Duration::from_secs(3600)) => m,
        };
        match msg {
            Ok(ControlMessage::Heartbeat(hb)) => {
                HeartbeatReceived { host }.emit(&core.metrics);
                if let Err(e) = core.registry.on_heartbeat(host, &hb, (core.clock)()) {
                    tracing::warn!(host = %host, error = %e, "heartbeat not recorded");
                }
            }
            Ok(ControlMessage::CommandResult(r)) => {
                tracing::info!(host = %host, command = r.id, state = ?r.state, message = %r.message, "command result");
                let responder = core.responder.clone();
                let _ = tokio::task::spawn_blocking(move || responder.on_result(host, r)).await;
            }
            Ok(ControlMessage::CommandReceived(id)) => {
                let responder = core.responder.clone();
                let _ = tokio::task::spawn_blocking(move || responder.on_received(host, id)).await;
            }
            Ok(ControlMessage::Renew(req)) => {
                let reply = renew_reply(&conn, host, &req, &core, renewed);
                renewed |= matches!(reply, ControlMessage::Renewed(_));
                if reply_tx.send(reply).await.is_err() {
                    break;
                }
            }
            Ok(_) => {
                FrameRejected {
                    host: Some(host),
                    reason: "unexpected_message",
                    detail: "on control stream",
                }
                .emit(&core.metrics);
            }
            Err(FrameReadError::Finished) | Err(FrameReadError::Stream(_)) => break,
            Err(e) => {
                FrameRejected {
                    host: Some(host),
                    reason: e.reason(),
                    detail: &e.to_string(),
                }
                .emit(&core.metrics);
                conn.close(CLOSE_PROTOCOL.into(), b"bad frame on control stream");
                break;
            }
        }
    }
    writer.abort();
}

/// Answer a sensor's `Renew` (see [`crate::pki::Pki::renew_client`]): a new
/// certificate for the host id of this connection's certificate, at most
/// once per connection, dated by the wall clock (which the TLS verifier
/// checks it against). Counted either way.
fn renew_reply(
    conn: &Connection,
    host: HostId,
    req: &RenewRequest,
    core: &Core,
    already_renewed: bool,
) -> ControlMessage {
    let result = match peer_cert(conn) {
        _ if already_renewed => Err((
            "renew_repeated",
            "already renewed on this connection; reconnect with the new certificate".to_owned(),
        )),
        None => Err(("renew_bad_certificate", "no client certificate".to_owned())),
        Some(current) => core
            .pki
            .renew_client(&current, &req.csr_der, host, std::time::SystemTime::now())
            .map_err(|e| (e.code(), e.to_string())),
    };
    match result {
        Ok(resp) => {
            CertificateRenewed {
                host,
                not_after_ns: resp.not_after_ns,
            }
            .emit(&core.metrics);
            ControlMessage::Renewed(resp)
        }
        Err((code, message)) => {
            RenewalRefused {
                host,
                code,
                detail: &message,
            }
            .emit(&core.metrics);
            ControlMessage::Refused(Refusal {
                code: code.to_owned(),
                message,
            })
        }
    }
}

/// The client certificate (DER) the peer authenticated with.
fn peer_cert(conn: &Connection) -> Option<Vec<u8>> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
        .ok()?;
    Some(certs.first()?.to_vec())
}

async fn command_writer(
    mut send: SendStream,
    mut rx: mpsc::Receiver<Command>,
    mut replies: mpsc::Receiver<ControlMessage>,
    mut shutdown: Shutdown,
) {
    loop {
        let msg = tokio::select! {
            _ = shutdown.wait() => break,
            c = rx.recv() => match c { Some(c) => ControlMessage::Command(c), None => break },
            Some(r) = replies.recv() => r,
        };
        if write_control(&mut send, &msg).await.is_err() {
            break;
        }
    }
}

async fn batch_stream(
    host: HostId,
    mut send: SendStream,
    mut recv: RecvStream,
    core: Arc<Core>,
    queue: IngestQueue,
    limits: Arc<IngestLimits>,
) {
    let reject = |reason: &str, detail: &str| {
        FrameRejected {
            host: Some(host),
            reason,
            detail,
        }
        .emit(&core.metrics);
    };
    let payload = match read_frame(&mut recv, FrameKind::Batch, FRAME_TIMEOUT).await {
        Ok(p) => p,
        Err(FrameReadError::Stream(_)) => return,
        Err(e) => {
            let reason = match &e {
                FrameReadError::Finished => "truncated_header",
                other => other.reason(),
            };
            reject(reason, &e.to_string());
            refuse_stream(&mut send, reason, &e.to_string()).await;
            return;
        }
    };
    let wire_bytes = payload.len() as u64 + vigil_proto::frame::HEADER_LEN as u64;
    let Some(permit) = limits.decode_permit().await else {
        return;
    };
    let decoded = tokio::task::spawn_blocking(move || decode_and_encode(host, &payload)).await;
    drop(permit);
    let events = match decoded {
        Ok(Ok(events)) => events,
        Ok(Err((reason, detail))) => {
            reject(reason, &detail);
            refuse_stream(&mut send, reason, &detail).await;
            return;
        }
        Err(e) => {
            reject("decode_task", &e.to_string());
            refuse_stream(&mut send, "decode_task", "batch decoding failed").await;
            return;
        }
    };
    let wait = limits.throttle(host, events.len() as u64, (core.clock)());
    if !wait.is_zero() {
        HostThrottled { host, wait }.emit(&core.metrics);
        tokio::time::sleep(wait).await;
    }
    match queue.submit(host, events, wire_bytes).await {
        Ok(ack) => {
            core.registry.touch(host, (core.clock)());
            if write_control(&mut send, &ControlMessage::Ack(ack))
                .await
                .is_ok()
            {
                let _ = send.finish();
            }
        }
        Err(e) => refuse_stream(&mut send, "store_unavailable", &e.to_string()).await,
    }
}

/// Decode a batch payload and re-encode each event for storage (on the
/// blocking pool). Errors are (reason label, detail).
fn decode_and_encode(
    host: HostId,
    payload: &[u8],
) -> Result<Vec<EncodedEvent>, (&'static str, String)> {
    let batch = decode_batch(payload).map_err(|e| (e.reason(), e.to_string()))?;
    if batch.events.is_empty() {
        return Err(("empty_batch", "batch holds no events".into()));
    }
    if let Some(bad) = batch.events.iter().find(|e| e.header.host != host) {
        return Err((
            "wrong_host",
            format!(
                "event for host {} on the connection of {host}",
                bad.header.host
            ),
        ));
    }
    Ok(batch.events.iter().map(EncodedEvent::from_event).collect())
}
