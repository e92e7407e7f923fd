//! Starting and stopping the whole appliance in-process.

use crate::admin::{self, Addresses};
use crate::core::{system_clock, Clock, Core, CoreError, FirstStart};
use crate::db::{Db, RetentionPolicy};
use crate::enroll::{create_token, NewToken};
use crate::ingest::limits::LimitsConfig;
use crate::ingest::rules::IngestRules;
use crate::ingest::{server, writer};
use crate::metrics::Metrics;
use crate::pipeline::PipelineConfig;
use crate::read::StoreReader;
use crate::registry::RegistryError;
use crate::shutdown::{self, ShutdownTrigger};
use crate::store::StoreError;
use crate::tls::{self, TlsError};
use crate::{https, pki::write_private};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::task::JoinHandle;
use vigil_proto::query::ReadApi;
use vigil_proto::{Command, HostId, SensorConfig};

/// How `vigil serve` runs.
pub struct ServeConfig {
    pub data_dir: PathBuf,
    /// QUIC ingest and enrollment (default 0.0.0.0:4433).
    pub quic_listen: SocketAddr,
    /// HTTPS (default 127.0.0.1:8443; `vigil serve` binds the management
    /// address instead when one is set).
    pub https_listen: SocketAddr,
    /// A console session unused this long ends (default 30 minutes).
    pub console_idle_timeout: Duration,
    /// Stored as the policy when set; otherwise the stored (or default) one applies.
    pub retention: Option<RetentionPolicy>,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Settings pushed to sensors in `Welcome`.
    pub sensor_config: SensorConfig,
    /// Extra routes (the web UI) merged into the HTTPS router.
    pub extra_router: Option<axum::Router>,
    /// Batches queued for the writer before connections wait.
    pub ingest_queue_batches: usize,
    /// Serve `DATA/run/admin.sock` for the CLI.
    pub admin_socket: bool,
    /// Clock (tests may pass a fake one).
    pub clock: Clock,
    /// The detection pipeline (`None` turns detection off, e.g. for ingest benches).
    pub pipeline: Option<PipelineConfig>,
    /// Which events enter the event store and which go to quarantine.
    pub ingest_rules: IngestRules,
    /// Memory, connection and per-host rate bounds of the QUIC endpoint.
    pub ingest_limits: LimitsConfig,
}

impl ServeConfig {
    /// Defaults that work out of the box.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServeConfig {
            data_dir: data_dir.into(),
            quic_listen: "0.0.0.0:4433".parse().expect("valid address"),
            https_listen: "127.0.0.1:8443".parse().expect("valid address"),
            console_idle_timeout: Duration::from_nanos(vigil_web_ui::auth::DEFAULT_IDLE_TIMEOUT_NS),
            retention: None,
            retention_interval: Duration::from_secs(300),
            sensor_config: SensorConfig::default(),
            extra_router: None,
            ingest_queue_batches: 256,
            admin_socket: true,
            clock: system_clock(),
            pipeline: Some(PipelineConfig::default()),
            ingest_rules: IngestRules::default(),
            ingest_limits: LimitsConfig::default(),
        }
    }

    /// Both listeners on 127.0.0.1 with OS-chosen ports (tests, benches).
    pub fn loopback(mut self) -> Self {
        self.quic_listen = "127.0.0.1:0".parse().expect("valid address");
        self.https_listen = "127.0.0.1:0".parse().expect("valid address");
        self
    }
}

/// Starting the appliance failed.
#[derive(Debug, Error)]
pub enum ApplianceError {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ApplianceError {
    let what = what.into();
    move |source| ApplianceError::Io { what, source }
}

/// A running appliance.
pub struct Appliance {
    core: Arc<Core>,
    /// Bound QUIC address.
    pub quic_addr: SocketAddr,
    /// Bound HTTPS address.
    pub https_addr: SocketAddr,
    /// Secrets created at first start (the admin password, shown once).
    pub first_start: FirstStart,
    trigger: ShutdownTrigger,
    tasks: Vec<JoinHandle<()>>,
    quic: Option<server::QuicThread>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Appliance {
    /// Open the data directory, bind both listeners and start every task.
    pub async fn start(cfg: ServeConfig) -> Result<Appliance, ApplianceError> {
        let (mut core, first_start) = Core::open(&cfg.data_dir, cfg.clock.clone())?;
        core.sensor_config = cfg.sensor_config.clone();
        if let Some(policy) = &cfg.retention {
            core.db.put_retention(policy)?;
        }
        let core = Arc::new(core);
        let (trigger, shutdown) = shutdown::channel();

        let qcfg =
            tls::quic_server_config(&core.pki, core.registry.revoked_set(), core.metrics.clone())?;
        let qcrypto = quinn::crypto::rustls::QuicServerConfig::try_from(qcfg)
            .map_err(|e| TlsError::Quic(e.to_string()))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(qcrypto));
        server_config.transport_config(Arc::new(server::transport_config()));
        let tcp = std::net::TcpListener::bind(cfg.https_listen).map_err(io("bind HTTPS"))?;
        tcp.set_nonblocking(true).map_err(io("HTTPS listener"))?;
        let https_addr = tcp.local_addr().map_err(io("HTTPS address"))?;

        let (queue, writer) = writer::spawn_writer_with(
            core.db.clone(),
            core.notices.clone(),
            core.metrics.clone(),
            cfg.ingest_queue_batches,
            cfg.ingest_rules,
            core.clock.clone(),
        )
        .map_err(io("start writer"))?;
        let quic = server::QuicThread::spawn(
            server_config,
            cfg.quic_listen,
            core.clone(),
            queue,
            cfg.ingest_limits,
            shutdown.clone(),
        )
        .map_err(io("bind QUIC"))?;
        let quic_addr = quic.addr;
        let mut tasks = Vec::new();

        // SIEM forwarding (#17): `DATA/forward.toml` and the console's
        // receivers; opening queues fsyncs, so off the async workers.
        let fwd = core.forwarding.clone();
        tokio::task::spawn_blocking(move || fwd.start())
            .await
            .map_err(|e| io("start forwarding")(std::io::Error::other(e)))?
            .map_err(|e| io("start forwarding")(std::io::Error::other(e)))?;

        let mut app = https::router(core.clone(), core.metrics_token()?);
        let console = vigil_web_ui::ConsoleState::new(
            Arc::new(StoreReader::new(core.clone())),
            core.console.clone(),
        )
        .with_clock(core.clock.clone())
        .with_responder(core.responder.clone())
        .with_exports(Arc::new(
            crate::export_jobs::ExportJobs::open(core.clone()).map_err(io("exports dir"))?,
        ))
        .with_receivers(crate::forwarding::console::api(&core.forwarding))
        .with_add_hosts(Arc::new(crate::packages::ConsoleHosts::new(
            core.clone(),
            quic_addr,
            https_addr,
        )))
        .with_idle_timeout(cfg.console_idle_timeout)
        .with_first_password_file(cfg.data_dir.join(crate::core::FIRST_PASSWORD_FILE));
        // Beside `/enroll/packages`: sensor updates, no login (#18).
        app = app.merge(crate::sensor_updates::router(core.data_dir.clone()));
        app = app.merge(vigil_web_ui::router(console));
        if let Some(extra) = cfg.extra_router {
            app = app.merge(extra);
        }
        let https_tls = Arc::new(tls::https_server_config(&core.pki)?);
        let sd = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = https::serve(tcp, https_tls, app, sd).await {
                tracing::error!(error = %e, "HTTPS server failed");
            }
        }));
        if cfg.admin_socket {
            let (c, sd) = (core.clone(), shutdown.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = admin::serve(c, sd).await {
                    tracing::error!(error = %e, "admin socket failed");
                }
            }));
        }
        if let Some(pcfg) = cfg.pipeline.clone() {
            tasks.push(tokio::spawn(crate::pipeline::run(
                core.clone(),
                pcfg,
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(sweep_commands(core.clone(), shutdown.clone())));
        tasks.push(tokio::spawn(crate::retention::run(
            core.clone(),
            cfg.retention_interval,
            shutdown.clone(),
        )));

        let addrs = Addresses {
            quic: quic_addr,
            https: https_addr,
            pid: std::process::id(),
        };
        let json = serde_json::to_vec_pretty(&addrs)
            .map_err(|e| io("addresses")(std::io::Error::other(e)))?;
        write_private(&cfg.data_dir.join("run").join("addresses.json"), &json)
            .map_err(|e| io("write addresses.json")(std::io::Error::other(e.to_string())))?;
        tracing::info!(quic = %quic_addr, https = %https_addr, "appliance serving");
        Ok(Appliance {
            core,
            quic_addr,
            https_addr,
            first_start,
            trigger,
            tasks,
            quic: Some(quic),
            writer: Some(writer),
        })
    }

    /// Each host's detection model: phase, version, hash, training window.
    pub fn model_status(&self) -> Vec<vigil_models::ModelStatus> {
        self.core.models.all()
    }

    /// Read access for the web UI, the CLI and tests.
    pub fn reader(&self) -> Arc<dyn ReadApi> {
        Arc::new(StoreReader::new(self.core.clone()))
    }

    /// The typed database (to write alerts and edges).
    pub fn db(&self) -> Db {
        self.core.db.clone()
    }

    /// Shared state.
    pub fn core(&self) -> Arc<Core> {
        self.core.clone()
    }

    /// Live counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.core.metrics.clone()
    }

    /// Create an enrollment token.
    pub fn create_token(&self, ttl: Duration, uses: u32) -> Result<NewToken, StoreError> {
        create_token(
            &self.core.db,
            &self.core.pki,
            ttl,
            uses,
            (self.core.clock)(),
        )
    }

    /// The CA certificate (DER) sensors pin.
    pub fn ca_der(&self) -> Vec<u8> {
        self.core.pki.ca_der().to_vec()
    }

    /// SHA-256 of the CA certificate, lowercase hex.
    pub fn ca_fingerprint(&self) -> String {
        self.core.pki.ca_fingerprint()
    }

    /// Revoke a host now (its live connection is closed).
    pub fn revoke(&self, host: HostId) -> Result<bool, RegistryError> {
        self.core.registry.revoke(host, (self.core.clock)())
    }

    /// Queue a response command on a connected host's control stream.
    pub fn send_command(&self, host: HostId, cmd: Command) -> Result<(), RegistryError> {
        self.core.registry.send_command(host, cmd)
    }

    /// A listener that fires when this appliance shuts down.
    pub fn shutdown_signal(&self) -> shutdown::Shutdown {
        self.trigger.subscribe()
    }

    /// Stop every task, drain the writer, close the endpoint.
    pub async fn shutdown(mut self) {
        self.trigger.trigger();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        if let Some(q) = self.quic.take() {
            join_thread("QUIC endpoint", move || q.join()).await;
        }
        if let Some(w) = self.writer.take() {
            join_thread("writer", move || {
                let _ = w.join();
            })
            .await;
        }
        // After the pipeline ended: what it stored is queued or forwarded.
        let fwd = self.core.forwarding.clone();
        join_thread("forwarding", move || fwd.stop()).await;
        let _ = std::fs::remove_file(self.core.data_dir.join("run").join("addresses.json"));
    }
}

/// Wait (at most 10 s, without blocking the runtime) for a thread to end.
async fn join_thread(what: &str, join: impl FnOnce() + Send + 'static) {
    let joined = tokio::task::spawn_blocking(join);
    if tokio::time::timeout(Duration::from_secs(10), joined)
        .await
        .is_err()
    {
        tracing::warn!("{what} did not stop within 10 s");
    }
}

/// Expire response commands that missed their deadline and retry delivery
/// to connected hosts, every second until shutdown.
async fn sweep_commands(core: Arc<Core>, mut shutdown: shutdown::Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        let responder = core.responder.clone();
        let _ = tokio::task::spawn_blocking(move || responder.sweep()).await;
    }
}
