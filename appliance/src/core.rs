//! The appliance's shared state, and first-start setup of its data
//! directory. Both `vigil serve` and the CLI's offline mode open it.
//!
//! Data directory layout (the directories mode 0700, files 0600):
//! - `db/` — RocksDB
//! - `keys/ca.key`, `keys/ca.crt`, `keys/server.key`, `keys/server.crt`, `keys/evidence.key`,
//!   `keys/command.key` (signs response commands)
//! - `metrics.token` — bearer token for `/metrics`
//! - `first-admin-password` — the generated password of `admin`, until it is changed
//! - `management.json` — the management address the console binds (`vigil serve --management-address`)
//! - `run/addresses.json`, `run/admin.sock` — while `vigil serve` runs

use crate::audit_log::{AuditLogError, AuditSigner};
use crate::console::RocksConsoleStore;
use crate::db::Db;
use crate::enroll::Enrollment;
use crate::metrics::Metrics;
use crate::notices::DetectionNotices;
use crate::pki::{write_private, Pki, PkiError};
use crate::registry::Registry;
use crate::store::rocks::RocksStore;
use crate::store::{Store, StoreError};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;
use vigil_proto::SensorConfig;

/// Current time, ns since the Unix epoch; passed in so logic can be tested without sleeping.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    })
}

/// Opening or setting up the appliance failed.
#[derive(Debug, Error)]
pub enum CoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Creating the first console admin failed.
    #[error("first admin: {0}")]
    Console(#[from] vigil_web_ui::error::UiError),
    #[error("key: {0}")]
    Key(String),
    #[error(transparent)]
    AuditLog(#[from] AuditLogError),
}

/// Name of the first admin account.
pub const FIRST_ADMIN: &str = vigil_web_ui::auth::FIRST_ADMIN;
/// File (in the data directory, mode 0600) holding the first admin's
/// generated password until the admin changes it.
pub const FIRST_PASSWORD_FILE: &str = "first-admin-password";
/// File (in the data directory) remembering the management address.
pub const MANAGEMENT_FILE: &str = "management.json";

/// Everything the servers and the admin commands share.
pub struct Core {
    pub data_dir: PathBuf,
    pub db: Db,
    pub pki: Arc<Pki>,
    pub registry: Arc<Registry>,
    /// What ingest and the registry tell the detection pipeline.
    pub notices: DetectionNotices,
    /// Signs audit checkpoints and evidence bundles (`keys/evidence.key`).
    pub audit_signer: Arc<AuditSigner>,
    pub enrollment: Enrollment,
    /// What the web console writes (users, sessions, audit, …).
    pub console: Arc<RocksConsoleStore>,
    pub metrics: Arc<Metrics>,
    /// The detection pipeline's latest per-host model status.
    pub models: Arc<crate::model_board::ModelBoard>,
    /// Signs, stores and delivers response commands (`keys/command.key`).
    pub responder: Arc<crate::response::Responder>,
    pub clock: Clock,
    pub sensor_config: SensorConfig,
    /// Ingest and sensor-state samples for the console's trend charts.
    pub trends: Arc<crate::trends::TrendBook>,
    /// SIEM forwarding (#17): idle until `vigil serve` starts it.
    pub forwarding: Arc<crate::forwarding::Forwarding>,
}

/// What first-start setup created. Secrets are never logged: the admin
/// password is written to a 0600 file whose path is printed instead.
#[derive(Debug, Default)]
pub struct FirstStart {
    /// One-time password of the `admin` account, if it was just created
    /// (in memory for in-process callers such as tests; never printed).
    pub admin_password: Option<String>,
    /// The 0600 file holding that password, if it was just created.
    pub admin_password_file: Option<PathBuf>,
    /// Whether the CA was just created.
    pub ca_created: bool,
}

impl Core {
    /// Open the data directory (RocksDB in `db/`), creating keys, the first
    /// admin and the metrics token on first use.
    pub fn open(data_dir: &Path, clock: Clock) -> Result<(Core, FirstStart), CoreError> {
        private_dirs(data_dir)?;
        let store: Arc<dyn Store> = Arc::new(RocksStore::open(&data_dir.join("db"))?);
        Self::open_with_store(data_dir, store, clock)
    }

    /// Like [`Core::open`] over any store (tests use the in-memory one).
    pub fn open_with_store(
        data_dir: &Path,
        store: Arc<dyn Store>,
        clock: Clock,
    ) -> Result<(Core, FirstStart), CoreError> {
        private_dirs(data_dir)?;
        let keys = data_dir.join("keys");
        let (pki, ca_created) = Pki::load_or_create(&keys)?;
        ensure_evidence_key(&keys.join("evidence.key"))?;
        let token_path = data_dir.join("metrics.token");
        if !token_path.exists() {
            let t: [u8; 24] = rand::random();
            write_private(&token_path, hex::encode(t).as_bytes())?;
        }
        let db = Db::new(store);
        let pki = Arc::new(pki);
        let models: Arc<crate::model_board::ModelBoard> = Arc::default();
        let audit_signer = Arc::new(AuditSigner::load(
            &keys.join("evidence.key"),
            &pki.ca_fingerprint(),
        )?);
        crate::audit_log::catch_up(&db)?;
        let forwarding = Arc::new(crate::forwarding::Forwarding::new(
            data_dir.to_owned(),
            db.clone(),
            audit_signer.clone(),
            clock.clone(),
        ));
        let fwd = forwarding.clone();
        let console = Arc::new(
            RocksConsoleStore::new(db.clone(), pki.clone())
                .with_models(models.clone())
                .with_audit_signer(audit_signer.clone())
                .with_audit_listener(Arc::new(move || fwd.audit_appended())),
        );
        // The console's own bootstrap, so the password in the file logs into it.
        let admin_password = vigil_web_ui::auth::bootstrap_admin(console.as_ref(), clock())?;
        let first = FirstStart {
            admin_password_file: first_password_file(data_dir, console.as_ref(), &admin_password)?,
            admin_password,
            ca_created,
        };
        let notices = DetectionNotices::default();
        let registry = Arc::new(Registry::load(db.clone(), notices.clone())?);
        let enrollment = Enrollment::new(db.clone(), pki.clone(), registry.clone());
        let metrics = Arc::new(Metrics::default());
        let command_key = crate::response::load_or_create_command_key(
            &keys.join(crate::response::COMMAND_KEY_FILE),
        )
        .map_err(CoreError::Key)?;
        let responder = Arc::new(
            crate::response::Responder::open(
                db.clone(),
                command_key,
                registry.clone(),
                console.clone(),
                metrics.clone(),
                clock.clone(),
            )
            .map_err(|e| CoreError::Key(format!("response commands: {e}")))?,
        );
        Ok((
            Core {
                data_dir: data_dir.to_owned(),
                db,
                pki,
                registry,
                notices,
                audit_signer,
                enrollment,
                console,
                metrics,
                models,
                responder,
                clock,
                sensor_config: SensorConfig::default(),
                trends: Arc::default(),
                forwarding,
            },
            first,
        ))
    }

    /// The bearer token `/metrics` expects.
    pub fn metrics_token(&self) -> Result<String, CoreError> {
        let p = self.data_dir.join("metrics.token");
        std::fs::read_to_string(&p)
            .map(|s| s.trim().to_owned())
            .map_err(|source| CoreError::Io { path: p, source })
    }

    /// Path of the admin socket.
    pub fn admin_socket(data_dir: &Path) -> PathBuf {
        data_dir.join("run").join("admin.sock")
    }
}

/// Create the data directory and `keys/`, `run/`, `db/` as mode 0700 (and
/// tighten them if they already exist): they hold keys, tokens and the
/// admin socket.
fn private_dirs(data_dir: &Path) -> Result<(), CoreError> {
    for d in [
        data_dir.to_owned(),
        data_dir.join("keys"),
        data_dir.join("run"),
        data_dir.join("db"),
    ] {
        let io = |source| CoreError::Io {
            path: d.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .map_err(io)?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// Write a just-generated admin password to its 0600 file; once the admin
/// has chosen their own password, remove a file left behind.
fn first_password_file(
    data_dir: &Path,
    console: &RocksConsoleStore,
    password: &Option<String>,
) -> Result<Option<PathBuf>, CoreError> {
    use vigil_web_ui::ConsoleStore;
    let path = data_dir.join(FIRST_PASSWORD_FILE);
    if let Some(pw) = password {
        write_private(&path, format!("{pw}\n").as_bytes())?;
        return Ok(Some(path));
    }
    let changed = console
        .user(FIRST_ADMIN)
        .map_err(vigil_web_ui::error::UiError::from)?
        .is_none_or(|u| !u.must_change_password);
    if changed && path.exists() {
        std::fs::remove_file(&path).map_err(|source| CoreError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(None)
}

/// The address the console's HTTPS listener binds by default: `given`
/// (remembered in `DATA/management.json` for later starts), else the one
/// remembered, else `None`.
pub fn management_address(
    data_dir: &Path,
    given: Option<IpAddr>,
) -> Result<Option<IpAddr>, CoreError> {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Management {
        address: IpAddr,
    }
    private_dirs(data_dir)?;
    let path = data_dir.join(MANAGEMENT_FILE);
    if let Some(address) = given {
        let json =
            serde_json::to_vec_pretty(&Management { address }).map_err(|e| CoreError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?;
        write_private(&path, &json)?;
        return Ok(Some(address));
    }
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<Management>(&bytes)
            .map(|m| Some(m.address))
            .map_err(|e| CoreError::Io {
                path,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CoreError::Io { path, source }),
    }
}

fn ensure_evidence_key(path: &Path) -> Result<(), CoreError> {
    if path.exists() {
        return Ok(());
    }
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| CoreError::Key(e.to_string()))?;
    write_private(path, pem.as_bytes())?;
    Ok(())
}
