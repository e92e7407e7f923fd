//! The uplink: one mTLS QUIC connection to the appliance, a control stream
//! (hello, heartbeats, commands) and one stream per batch.
//!
//! Records leave the spool in seq order; a batch goes out when
//! `batch_max_events` are waiting or `batch_max` has passed, up to
//! [`MAX_IN_FLIGHT`] batches at a time. Only acknowledged seqs are deleted
//! from the spool; on any connection error the spool is rewound and the
//! connection retried with exponential backoff and jitter.
//!
//! After `Welcome`, a client certificate in the last third of its lifetime
//! is renewed on the control stream ([`crate::renew`]); the new one is used
//! from the next connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use thiserror::Error;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use vigil_proto::control::{Ack, Heartbeat, Hello, RenewResponse, RENEW_REFUSAL_PREFIX};
use vigil_proto::{
    Batch, Command, CommandResult, CommandState, ControlMessage, Event, Payload, Receipt,
    ResponseResult, SensorHealth,
};

use crate::enroll::{self, Identity};
use crate::renew;
use crate::spool::{Spool, SpoolError};
use crate::tls::{self, TlsError};
use crate::wire::{self, WireError};

/// Batches awaiting their ack at once.
pub const MAX_IN_FLIGHT: usize = 4;

/// Uplink failures (all of them lead to a reconnect, none to data loss).
#[derive(Debug, Error)]
pub enum UplinkError {
    /// TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Could not connect.
    #[error("connect to {addr}: {reason}")]
    Connect {
        /// Address tried.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The connection dropped.
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// A stream failed or carried bad frames.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The appliance refused us (revoked certificate, version, bad batch).
    #[error("appliance refused ({code}): {message}")]
    Refused {
        /// Machine-readable code.
        code: String,
        /// Explanation.
        message: String,
    },
    /// An unexpected message.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// Encoding a batch failed.
    #[error("encode: {0}")]
    Encode(#[from] vigil_proto::ProtoError),
}

/// Produces the current health for heartbeats.
pub type HealthFn = Arc<dyn Fn() -> SensorHealth + Send + Sync>;
/// Executes a response command (blocking allowed; runs off the runtime).
pub type CommandFn = Arc<dyn Fn(Command) -> CommandResult + Send + Sync>;

/// Uplink settings.
#[derive(Clone)]
pub struct UplinkSettings {
    /// Appliance `HOST:PORT`.
    pub appliance: String,
    /// Batch size trigger.
    pub batch_max_events: usize,
    /// Batch age trigger.
    pub batch_max: Duration,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Give up on a connection attempt after this long.
    pub connect_timeout: Duration,
    /// Network namespace watched as this host, if any: its name and
    /// addresses are what the Hello reports, so the appliance can tell lab
    /// hosts and containers apart and resolve peers to them.
    pub netns: Option<String>,
    /// Name and addresses the Hello reports instead of the machine's (or
    /// the namespace's): set when this uplink carries a replayed data-set
    /// host (`vigil replay`); `None` for a real sensor.
    pub hello_as: Option<(String, Vec<std::net::IpAddr>)>,
}

/// Batch and heartbeat settings in force for one connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionSettings {
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Batch age trigger.
    pub batch_max: Duration,
    /// Batch size trigger.
    pub batch_max_events: usize,
}

impl UplinkSettings {
    /// The appliance's pushed settings (from `Welcome`) win over the local
    /// file; zero or out-of-range values keep the local ones.
    pub fn session(&self, pushed: &vigil_proto::SensorConfig) -> SessionSettings {
        let ms = |v: u32, local: Duration, max_ms: u32| {
            if v == 0 || v > max_ms {
                local
            } else {
                Duration::from_millis(u64::from(v))
            }
        };
        let n = pushed.batch_max_events as usize;
        SessionSettings {
            heartbeat: ms(pushed.heartbeat_ms, self.heartbeat, 600_000),
            batch_max: ms(pushed.batch_max_ms, self.batch_max, 60_000),
            batch_max_events: if n == 0 || n > vigil_proto::limits::MAX_BATCH_EVENTS {
                self.batch_max_events
            } else {
                n
            },
        }
    }
}

/// Connection state shared with health reporting and tests.
#[derive(Debug, Default)]
pub struct UplinkStatus {
    /// True while a Welcome'd connection is up.
    pub connected: std::sync::atomic::AtomicBool,
    /// Batches acknowledged since start.
    pub batches_acked: std::sync::atomic::AtomicU64,
    /// Connection attempts that failed.
    pub connect_failures: std::sync::atomic::AtomicU64,
    /// Client certificates renewed and stored since start.
    pub renewals: std::sync::atomic::AtomicU64,
}

/// Everything the uplink task needs.
pub struct Uplink {
    /// Settings.
    pub settings: UplinkSettings,
    /// Enrolled identity.
    pub identity: Identity,
    /// The shared spool.
    pub spool: Arc<Mutex<Spool>>,
    /// Signalled when events were appended.
    pub appended: Arc<Notify>,
    /// Health for heartbeats.
    pub health: HealthFn,
    /// Command executor.
    pub commands: CommandFn,
    /// Status counters.
    pub status: Arc<UplinkStatus>,
    /// The CPU budget (f32 bits), updated from the appliance's `Welcome`.
    pub budget_pct_bits: Arc<std::sync::atomic::AtomicU32>,
}

/// Delay before reconnect attempt `attempt` (0-based): exponential, capped,
/// with "equal jitter" (half fixed, half random) so a fleet does not reconnect
/// in lock-step. `unit` in [0,1) is the random draw (passed in for tests).
pub fn backoff_delay(min: Duration, max: Duration, attempt: u32, unit: f64) -> Duration {
    let exp = min.saturating_mul(1u32 << attempt.min(20)).min(max);
    let half = exp / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Uplink {
    /// Run until `shutdown` turns true, reconnecting as needed.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut attempt = 0u32;
        let ordering = std::sync::atomic::Ordering::SeqCst;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let mut welcomed = false;
            let mut renewed = None;
            let result = self
                .session(&mut shutdown, &mut welcomed, &mut renewed)
                .await;
            // A renewed certificate is used from the next connection on.
            if let Some(identity) = renewed {
                self.identity = identity;
            }
            match result {
                Ok(()) => return,
                Err(e) => {
                    self.status.connected.store(false, ordering);
                    self.status.connect_failures.fetch_add(1, ordering);
                    tracing::warn!(error = %e, appliance = %self.settings.appliance, "uplink: disconnected; spool keeps everything");
                }
            }
            self.spool.lock().expect("spool lock").rewind();
            if welcomed {
                attempt = 0;
            }
            let delay = backoff_delay(
                self.settings.backoff_min,
                self.settings.backoff_max,
                attempt,
                rand::thread_rng().gen::<f64>(),
            );
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn connect(&self) -> Result<(quinn::Endpoint, quinn::Connection), UplinkError> {
        let addr: SocketAddr = enroll::resolve(&self.settings.appliance)
            .await
            .map_err(|e| UplinkError::Connect {
                addr: self.settings.appliance.clone(),
                reason: e.to_string(),
            })?;
        let cfg = tls::ingest_client_config(
            &self.identity.ca_der,
            &self.identity.cert_der,
            &self.identity.key_der,
        )?;
        let cerr = |reason: String| UplinkError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let endpoint = tls::client_endpoint(addr).map_err(|e| cerr(e.to_string()))?;
        let connecting = endpoint
            .connect_with(cfg, addr, tls::SERVER_NAME)
            .map_err(|e| cerr(e.to_string()))?;
        let conn = tokio::time::timeout(self.settings.connect_timeout, connecting)
            .await
            .map_err(|_| {
                cerr(format!(
                    "no answer within {:?}",
                    self.settings.connect_timeout
                ))
            })?
            .map_err(|e| cerr(e.to_string()))?;
        Ok((endpoint, conn))
    }

    /// One connection's life. `Ok` only on shutdown. A certificate renewed
    /// on it is left in `renewed`.
    async fn session(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        welcomed: &mut bool,
        renewed: &mut Option<Identity>,
    ) -> Result<(), UplinkError> {
        let (endpoint, conn) = self.connect().await?;
        let result = self.serve(&conn, shutdown, welcomed, renewed).await;
        conn.close(0u32.into(), b"bye");
        // Give the close a moment to reach the peer, but never hang shutdown.
        let _ = tokio::time::timeout(Duration::from_millis(200), endpoint.wait_idle()).await;
        result
    }

    /// Say hello and wait for the welcome; what the appliance already has
    /// stored is acknowledged in the spool, and the status says connected.
    async fn handshake(
        &self,
        ctl_send: &mut quinn::SendStream,
        ctl_recv: &mut quinn::RecvStream,
        welcomed: &mut bool,
    ) -> Result<vigil_proto::control::Welcome, UplinkError> {
        let next_seq = self.spool.lock().expect("spool lock").next_seq();
        let (hostname, addrs) = match &self.settings.hello_as {
            Some((name, addrs)) => (name.clone(), addrs.clone()),
            None => host_identity(self.settings.netns.as_deref()),
        };
        let hello = ControlMessage::Hello(Hello {
            protocol_versions: vec![vigil_proto::PROTOCOL_VERSION],
            sensor_version: env!("CARGO_PKG_VERSION").to_string(),
            hostname,
            os: enroll::os_name(),
            addrs,
            next_seq,
        });
        wire::write_control(ctl_send, &hello).await?;
        let welcome = match wire::read_control(ctl_recv).await? {
            ControlMessage::Welcome(w) => w,
            ControlMessage::Refused(r) => {
                return Err(UplinkError::Refused {
                    code: r.code,
                    message: r.message,
                })
            }
            other => {
                return Err(UplinkError::Protocol(format!(
                    "expected Welcome, got {other:?}"
                )))
            }
        };
        *welcomed = true;
        if welcome.host != self.identity.host {
            tracing::warn!(ours = %self.identity.host, theirs = %welcome.host, "uplink: appliance names another host id");
        }
        {
            let mut sp = self.spool.lock().expect("spool lock");
            if welcome.stored_up_to > 0 {
                sp.ack(1, welcome.stored_up_to)?;
            }
            sp.rewind();
        }
        self.status
            .connected
            .store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(host = %welcome.host, stored_up_to = welcome.stored_up_to, "uplink: connected");
        Ok(welcome)
    }

    /// A welcomed connection: batches out, acks and commands in, until
    /// shutdown (`Ok`) or an error.
    async fn serve(
        &self,
        conn: &quinn::Connection,
        shutdown: &mut watch::Receiver<bool>,
        welcomed: &mut bool,
        renewed: &mut Option<Identity>,
    ) -> Result<(), UplinkError> {
        let (mut ctl_send, mut ctl_recv) = conn.open_bi().await?;
        let welcome = self
            .handshake(&mut ctl_send, &mut ctl_recv, welcomed)
            .await?;
        let mut renewal = self.start_renewal(&mut ctl_send).await?;

        // Control-stream reads run in their own task, feeding a bounded channel,
        // because a read future must not be dropped mid-frame by select!.
        let (cmd_tx, mut cmd_rx) =
            tokio::sync::mpsc::channel::<Result<ControlMessage, WireError>>(16);
        let reader = tokio::spawn(async move {
            loop {
                let msg = wire::read_control(&mut ctl_recv).await;
                let stop = msg.is_err();
                if cmd_tx.send(msg).await.is_err() || stop {
                    return;
                }
            }
        });
        let _reader_guard = AbortOnDrop(reader);

        let session = self.settings.session(&welcome.config);
        let budget = welcome.config.cpu_budget_pct;
        if budget.is_finite() && budget > 0.0 && budget <= 100.0 {
            self.budget_pct_bits
                .store(budget.to_bits(), std::sync::atomic::Ordering::Relaxed);
        }
        let mut heartbeat = tokio::time::interval(session.heartbeat);
        let mut batch_tick = tokio::time::interval(session.batch_max);
        batch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut in_flight: JoinSet<Result<Ack, UplinkError>> = JoinSet::new();
        let mut running_cmds: JoinSet<CommandResult> = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    // Let in-flight batches finish briefly so their acks land.
                    let deadline = tokio::time::sleep(Duration::from_secs(2));
                    tokio::pin!(deadline);
                    while !in_flight.is_empty() {
                        tokio::select! {
                            r = in_flight.join_next() => self.on_ack(r)?,
                            _ = &mut deadline => break,
                        }
                    }
                    return Ok(());
                }
                _ = heartbeat.tick() => {
                    let hb = ControlMessage::Heartbeat(Heartbeat { ts_ns: now_ns(), health: (self.health)() });
                    wire::write_control(&mut ctl_send, &hb).await?;
                }
                _ = batch_tick.tick() => {
                    self.fill_in_flight(conn, &mut in_flight, 1, session.batch_max_events)?;
                }
                _ = self.appended.notified() => {
                    self.fill_in_flight(conn, &mut in_flight, session.batch_max_events, session.batch_max_events)?;
                }
                Some(r) = in_flight.join_next(), if !in_flight.is_empty() => {
                    self.on_ack(Some(r))?;
                    self.fill_in_flight(conn, &mut in_flight, session.batch_max_events, session.batch_max_events)?;
                }
                Some(msg) = cmd_rx.recv() => match msg? {
                    ControlMessage::Command(cmd) => {
                        tracing::info!(id = cmd.id, operator = %cmd.operator, action = ?cmd.action, "uplink: command received");
                        wire::write_control(&mut ctl_send, &ControlMessage::CommandReceived(cmd.id)).await?;
                        let exec = self.commands.clone();
                        running_cmds.spawn(async move {
                            let id = cmd.id;
                            tokio::task::spawn_blocking(move || exec(cmd)).await.unwrap_or_else(|e| CommandResult {
                                id, state: CommandState::Failed, message: format!("executor failed: {e}"),
                                receipt: Receipt::None, data: Vec::new(),
                            })
                        });
                    }
                    ControlMessage::UnsignedCommand(cmd) => {
                        let answer = crate::response::answer_unsigned(&cmd);
                        wire::write_control(&mut ctl_send, &ControlMessage::UnsignedResult(answer)).await?;
                    }
                    ControlMessage::Renewed(resp) => {
                        if let Some(next) = self.on_renewed(renewal.take(), &resp) {
                            *renewed = Some(next);
                        }
                    }
                    ControlMessage::Refused(r) if r.code.starts_with(RENEW_REFUSAL_PREFIX) => {
                        renewal = None;
                        tracing::warn!(code = %r.code, message = %r.message, "uplink: certificate renewal refused; retrying on the next connection");
                    }
                    ControlMessage::Refused(r) => return Err(UplinkError::Refused { code: r.code, message: r.message }),
                    other => tracing::debug!(msg = ?other, "uplink: ignoring control message"),
                },
                Some(done) = running_cmds.join_next(), if !running_cmds.is_empty() => {
                    let Ok(result) = done else { continue };
                    self.spool.lock().expect("spool lock").append(now_ns(), Payload::ResponseResult(ResponseResult {
                        command_id: result.id, ok: result.state == CommandState::Done, message: result.message.clone(),
                    }))?;
                    self.appended.notify_one();
                    wire::write_control(&mut ctl_send, &ControlMessage::CommandResult(result)).await?;
                }
            }
        }
    }

    /// After `Welcome`: ask for a new certificate if ours is in the last
    /// third of its lifetime. Only a broken stream is an error; a renewal
    /// that cannot start is logged and tried on the next connection.
    async fn start_renewal(
        &self,
        ctl_send: &mut quinn::SendStream,
    ) -> Result<Option<renew::Pending>, UplinkError> {
        if !renew::due(&self.identity.cert_der, std::time::SystemTime::now()) {
            return Ok(None);
        }
        let host_name = match &self.settings.hello_as {
            Some((name, _)) => name.clone(),
            None => enroll::hostname(),
        };
        match renew::request(&host_name) {
            Ok((pending, msg)) => {
                wire::write_control(ctl_send, &msg).await?;
                tracing::info!(host = %self.identity.host, "uplink: certificate in the last third of its lifetime; renewing");
                Ok(Some(pending))
            }
            Err(e) => {
                tracing::warn!(error = %e, "uplink: cannot start certificate renewal; retrying on the next connection");
                Ok(None)
            }
        }
    }

    /// The appliance's renewed certificate: checked and stored with the new
    /// key; the identity to use from the next connection, or `None` (logged;
    /// the current certificate stays in use and renewal is retried).
    fn on_renewed(
        &self,
        pending: Option<renew::Pending>,
        resp: &RenewResponse,
    ) -> Option<Identity> {
        let Some(pending) = pending else {
            tracing::warn!("uplink: ignoring a renewed certificate nobody asked for");
            return None;
        };
        let mut next = self.identity.clone();
        match pending.complete(&mut next, resp) {
            Ok(()) => {
                self.status
                    .renewals
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tracing::info!(host = %next.host, not_after_ns = resp.not_after_ns, "uplink: certificate renewed; used from the next connection");
                Some(next)
            }
            Err(e) => {
                tracing::warn!(error = %e, "uplink: renewed certificate not installed; retrying on the next connection");
                None
            }
        }
    }

    fn on_ack(
        &self,
        joined: Option<Result<Result<Ack, UplinkError>, tokio::task::JoinError>>,
    ) -> Result<(), UplinkError> {
        let Some(joined) = joined else { return Ok(()) };
        let ack = joined.map_err(|e| UplinkError::Protocol(format!("batch task: {e}")))??;
        self.spool
            .lock()
            .expect("spool lock")
            .ack(ack.first_seq, ack.last_seq)?;
        self.status
            .batches_acked
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tracing::debug!(
            first = ack.first_seq,
            last = ack.last_seq,
            dup = ack.duplicates,
            "uplink: batch acked"
        );
        Ok(())
    }

    /// Start batch streams while fewer than [`MAX_IN_FLIGHT`] are open and at
    /// least `min_events` unsent events are waiting.
    fn fill_in_flight(
        &self,
        conn: &quinn::Connection,
        in_flight: &mut JoinSet<Result<Ack, UplinkError>>,
        min_events: usize,
        batch_size: usize,
    ) -> Result<(), UplinkError> {
        while in_flight.len() < MAX_IN_FLIGHT {
            let events = {
                let mut sp = self.spool.lock().expect("spool lock");
                if (sp.unsent_len() as usize) < min_events.max(1) {
                    return Ok(());
                }
                sp.sync()?;
                sp.pending(batch_size)?
            };
            if events.is_empty() {
                return Ok(());
            }
            let conn = conn.clone();
            in_flight.spawn(send_batch(conn, events));
        }
        Ok(())
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn send_batch(conn: quinn::Connection, events: Vec<Event>) -> Result<Ack, UplinkError> {
    let batch = Batch { events };
    let (first, last) = batch.seq_range().expect("non-empty batch");
    let frame = batch.to_frame()?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&frame).await.map_err(WireError::from)?;
    send.finish().map_err(WireError::from)?;
    match wire::read_control(&mut recv).await? {
        ControlMessage::Ack(a) => {
            if a.first_seq != first || a.last_seq != last {
                tracing::warn!(
                    first,
                    last,
                    ack_first = a.first_seq,
                    ack_last = a.last_seq,
                    "uplink: ack range differs from batch"
                );
            }
            Ok(a)
        }
        ControlMessage::Refused(r) => Err(UplinkError::Refused {
            code: r.code,
            message: r.message,
        }),
        other => Err(UplinkError::Protocol(format!(
            "expected Ack, got {other:?}"
        ))),
    }
}

/// The name and addresses this sensor reports in its Hello: the machine's,
/// or, when it watches a network namespace, the namespace's name and the
/// addresses inside it (read from a short-lived thread that enters it, so
/// the sensor itself stays in the initial namespace).
pub fn host_identity(netns: Option<&str>) -> (String, Vec<std::net::IpAddr>) {
    let Some(ns) = netns else {
        return (enroll::hostname(), local_addrs());
    };
    let name = ns.to_string();
    let addrs = std::thread::spawn(move || {
        crate::collect::network::enter_netns(&name)
            .map(|()| local_addrs())
            .unwrap_or_default()
    })
    .join()
    .unwrap_or_default();
    (ns.to_string(), addrs)
}

/// Non-loopback addresses of this host (for the Hello).
pub fn local_addrs() -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(sa) = a.address else { continue };
            if let Some(v4) = sa.as_sockaddr_in() {
                let ip = std::net::IpAddr::V4(v4.ip());
                if !ip.is_loopback() {
                    out.push(ip);
                }
            } else if let Some(v6) = sa.as_sockaddr_in6() {
                let ip = std::net::IpAddr::V6(v6.ip());
                if !ip.is_loopback() {
                    out.push(ip);
                }
            }
        }
    }
    out.truncate(32);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appliance_settings_win_unless_invalid() {
        let local = UplinkSettings {
            appliance: "a:1".into(),
            batch_max_events: 10,
            batch_max: Duration::from_millis(20),
            heartbeat: Duration::from_millis(30),
            backoff_min: Duration::from_millis(1),
            backoff_max: Duration::from_millis(2),
            connect_timeout: Duration::from_millis(3),
            netns: None,
            hello_as: None,
        };
        let pushed = vigil_proto::SensorConfig {
            heartbeat_ms: 10_000,
            batch_max_events: 2_000,
            batch_max_ms: 0,
            cpu_budget_pct: 1.0,
        };
        assert_eq!(
            local.session(&pushed),
            SessionSettings {
                heartbeat: Duration::from_secs(10),
                batch_max: Duration::from_millis(20),
                batch_max_events: 2_000,
            }
        );
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        assert_eq!(backoff_delay(min, max, 0, 0.0), Duration::from_millis(50));
        assert_eq!(backoff_delay(min, max, 0, 1.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(min, max, 3, 1.0), Duration::from_millis(800));
        assert_eq!(backoff_delay(min, max, 30, 1.0), max);
        assert_eq!(backoff_delay(min, max, 30, 0.0), max / 2);
    }
}
