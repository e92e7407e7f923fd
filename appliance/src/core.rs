//! The appliance's shared state, and first-start setup of its data
//! directory. Both `vigil serve` and the CLI's offline mode open it.
//!
//! Data directory layout:
//! - `db/` — RocksDB
//! - `keys/ca.key`, `keys/ca.crt`, `keys/server.key`, `keys/server.crt`, `keys/evidence.key` (0600)
//! - `metrics.token` — bearer token for `/metrics` (0600)
//! - `run/addresses.json`, `run/admin.sock` — while `vigil serve` runs

use crate::console::RocksConsoleStore;
use crate::db::Db;
use crate::enroll::Enrollment;
use crate::metrics::Metrics;
use crate::pki::{write_private, Pki, PkiError};
use crate::registry::Registry;
use crate::store::rocks::RocksStore;
use crate::store::{Store, StoreError};
use ed25519_dalek::pkcs8::EncodePrivateKey;
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
    #[error("evidence key: {0}")]
    Key(String),
}

/// Name of the first admin account.
pub const FIRST_ADMIN: &str = "admin";

/// Everything the servers and the admin commands share.
pub struct Core {
    pub data_dir: PathBuf,
    pub db: Db,
    pub pki: Arc<Pki>,
    pub registry: Arc<Registry>,
    pub enrollment: Enrollment,
    /// What the web console writes (users, sessions, audit, …).
    pub console: Arc<RocksConsoleStore>,
    pub metrics: Arc<Metrics>,
    /// The detection pipeline's latest per-host model status.
    pub models: Arc<crate::pipeline::ModelBoard>,
    pub clock: Clock,
    pub sensor_config: SensorConfig,
}

/// What first-start setup created (secrets are returned once, never logged).
#[derive(Debug, Default)]
pub struct FirstStart {
    /// One-time password of the `admin` account, if it was just created.
    pub admin_password: Option<String>,
    /// Whether the CA was just created.
    pub ca_created: bool,
}

impl Core {
    /// Open the data directory (RocksDB in `db/`), creating keys, the first
    /// admin and the metrics token on first use.
    pub fn open(data_dir: &Path, clock: Clock) -> Result<(Core, FirstStart), CoreError> {
        let store: Arc<dyn Store> = Arc::new(RocksStore::open(&data_dir.join("db"))?);
        Self::open_with_store(data_dir, store, clock)
    }

    /// Like [`Core::open`] over any store (tests use the in-memory one).
    pub fn open_with_store(
        data_dir: &Path,
        store: Arc<dyn Store>,
        clock: Clock,
    ) -> Result<(Core, FirstStart), CoreError> {
        for d in [data_dir.to_owned(), data_dir.join("run")] {
            std::fs::create_dir_all(&d).map_err(|source| CoreError::Io {
                path: d.clone(),
                source,
            })?;
        }
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
        let models: Arc<crate::pipeline::ModelBoard> = Arc::default();
        let console =
            Arc::new(RocksConsoleStore::new(db.clone(), pki.clone()).with_models(models.clone()));
        // The console's own bootstrap, so the password shown once logs into it.
        let first = FirstStart {
            admin_password: vigil_web_ui::auth::bootstrap_admin(console.as_ref(), clock())?,
            ca_created,
        };
        let registry = Arc::new(Registry::load(db.clone())?);
        let enrollment = Enrollment::new(db.clone(), pki.clone(), registry.clone());
        Ok((
            Core {
                data_dir: data_dir.to_owned(),
                db,
                pki,
                registry,
                enrollment,
                console,
                metrics: Arc::new(Metrics::default()),
                models,
                clock,
                sensor_config: SensorConfig::default(),
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
