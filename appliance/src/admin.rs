//! Administration: the operations behind `vigil token|sensor|status|events`.
//!
//! RocksDB lets one process open the database. While `vigil serve` runs it
//! listens on `DATA/run/admin.sock` (mode 0600, so only root / the service
//! user can use it) for requests framed as a 4-byte big-endian length plus
//! JSON; the CLI sends its request there. When no server answers, the CLI
//! opens the database itself and runs the very same [`handle`] function.

use crate::core::Core;
use crate::db::{RetentionPolicy, RetentionRun};
use crate::enroll::NewToken;
use crate::metrics::MetricsSnapshot;
use crate::read::StoreReader;
use crate::shutdown::Shutdown;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil_proto::query::{
    AlertFilter, AlertRecord, ApplianceStats, EventFilter, EventPage, HostSummary, ReadApi,
};
use vigil_proto::HostId;
use vigil_web_ui::store::{ConsoleStore, EnrollmentTokenInfo, StoreError as ConsoleStoreError};

/// Largest admin message accepted.
pub const MAX_ADMIN_MESSAGE: usize = 64 * 1024 * 1024;

/// The addresses a running server bound (also written to `run/addresses.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addresses {
    pub quic: SocketAddr,
    pub https: SocketAddr,
    pub pid: u32,
}

/// A request to the appliance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Create an enrollment token.
    CreateToken { ttl_s: u64, uses: u32 },
    /// List enrollment tokens (never their secrets).
    ListTokens,
    /// Revoke an enrollment token by its listed id.
    RevokeToken { id: u64 },
    /// List enrolled sensors.
    ListSensors,
    /// Revoke a sensor's certificate.
    Revoke { host: HostId },
    /// Counters, retention, disk use.
    Status,
    /// Stored events.
    Events { filter: EventFilter },
    /// Alerts and incidents, newest first.
    Alerts { filter: AlertFilter },
    /// Each host's detection model (from the pipeline's last saved state).
    Models,
    /// Check every audit entry against every signed checkpoint.
    AuditVerify,
    /// The latest signed checkpoint covering the whole audit log.
    AuditCheckpoint,
    /// Prove the audit log extends the one `old` (a checkpoint note) saw.
    AuditProveExtends { old: String },
    /// Add Sigma rules (file name, text) to `DATA/rules/sigma`; all or
    /// none: one bad rule refuses the import.
    ImportRules {
        files: Vec<(String, String)>,
        operator: String,
    },
    /// Write an evidence bundle; `host` is an id or a name for host scope.
    Export {
        scope: ExportTarget,
        exporter: String,
    },
    /// `vigil respond …`.
    Respond(crate::respond_admin::RespondRequest),
    /// `vigil user add`: a console user with a generated one-time password.
    AddUser {
        name: String,
        /// `viewer`, `auditor`, `analyst` or `admin`.
        role: String,
        operator: String,
    },
    /// `vigil packages add`: a sensor package (base64) for the console's
    /// "Add hosts" page; audited.
    AddPackage {
        name: String,
        content_b64: String,
        operator: String,
    },
    /// `vigil packages list`.
    ListPackages,
    /// `vigil packages remove`; audited.
    RemovePackage { name: String, operator: String },
    /// `vigil update publish-sensors`: a verified bundle's metadata and
    /// sensor targets for sensors to update from; audited.
    PublishSensorUpdates(crate::sensor_updates::PublishRequest),
}

/// What `vigil export` names (hosts by id or name, resolved here).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ExportTarget {
    Incident(u64),
    Alert(u64),
    Host {
        host: String,
        from_ns: u64,
        to_ns: u64,
    },
}

/// A verification's outcome, as the CLI prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verified {
    pub ok: bool,
    /// One line per check.
    pub text: String,
}

impl From<&vigil_evidence::VerifyReport> for Verified {
    fn from(r: &vigil_evidence::VerifyReport) -> Self {
        Verified {
            ok: r.ok(),
            text: r.to_string(),
        }
    }
}

/// `vigil status` contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// Whether this came from a running server (live counters) or the database alone.
    pub server_running: bool,
    pub addresses: Option<Addresses>,
    pub hosts: usize,
    pub connected: usize,
    pub stats: ApplianceStats,
    pub metrics: MetricsSnapshot,
    pub retention: RetentionPolicy,
    pub last_retention: Option<RetentionRun>,
    pub ca_fingerprint: String,
}

/// The appliance's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminResponse {
    Token(NewToken),
    /// Enrollment tokens, newest first.
    Tokens(Vec<EnrollmentTokenInfo>),
    TokenRevoked {
        id: u64,
        newly: bool,
    },
    Sensors(Vec<HostSummary>),
    Revoked {
        host: HostId,
        newly: bool,
    },
    Status(Box<StatusReport>),
    Events(EventPage),
    /// Alerts, with the names of the hosts they mention.
    Alerts {
        alerts: Vec<AlertRecord>,
        host_names: BTreeMap<HostId, String>,
    },
    Models(Vec<vigil_models::ModelStatus>),
    /// `vigil audit verify`.
    AuditVerified(Verified),
    /// A signed checkpoint note and the key that signed it (base64).
    AuditCheckpoint {
        note: String,
        public_key: String,
    },
    /// `vigil audit prove-extends`.
    AuditExtends {
        extension: crate::audit_log::Extension,
        verified: Verified,
    },
    /// Sigma rules imported; `total` rules now run (shipped included).
    RulesImported {
        imported: usize,
        total: usize,
    },
    /// An evidence bundle written to `path` (private, in `DATA/run`).
    Exported {
        path: std::path::PathBuf,
        summary: crate::export::ExportSummary,
    },
    /// `vigil respond …`.
    Respond(crate::respond_admin::RespondResponse),
    /// A console user was created; the password is shown this once and
    /// must be changed at the first login.
    UserAdded {
        name: String,
        role: String,
        password: String,
    },
    /// A sensor package stored; `replaced`: one of that name was there.
    PackageAdded {
        package: crate::packages::StoredPackage,
        replaced: bool,
    },
    /// The listed sensor packages, newest first.
    Packages(Vec<crate::packages::StoredPackage>),
    /// `removed`: false when no package had that name.
    PackageRemoved {
        name: String,
        removed: bool,
    },
    /// The sensor update now served.
    SensorUpdatesPublished(crate::sensor_updates::Published),
    Error(String),
}

/// An admin-channel failure.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("admin message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("admin message of {0} bytes is too large")]
    TooLarge(usize),
}

/// Read `run/addresses.json`, if a server wrote one.
pub fn read_addresses(data_dir: &Path) -> Option<Addresses> {
    let text = std::fs::read_to_string(data_dir.join("run").join("addresses.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Run one request against an open appliance.
pub fn handle(core: &Arc<Core>, req: AdminRequest, server_running: bool) -> AdminResponse {
    let reader = StoreReader::new(core.clone());
    let now = (core.clock)();
    let result: Result<AdminResponse, String> = match req {
        AdminRequest::CreateToken { ttl_s, uses } => create_listed_token(core, ttl_s, uses, now),
        AdminRequest::ListTokens => core
            .console
            .enrollment_tokens()
            .map(AdminResponse::Tokens)
            .map_err(|e| e.to_string()),
        AdminRequest::RevokeToken { id } => match core.console.revoke_enrollment_token(id, now) {
            Ok(newly) => {
                if newly {
                    // The CLI is an operator action like the console's button.
                    let _ = core.console.append_audit(vigil_web_ui::store::AuditDraft {
                        ts_ns: now,
                        actor: "cli".into(),
                        action: "enrollment.token_revoke".into(),
                        target: format!("token:{id}"),
                        detail: String::new(),
                    });
                }
                Ok(AdminResponse::TokenRevoked { id, newly })
            }
            Err(ConsoleStoreError::NotFound(_)) => {
                Err(format!("no enrollment token {id}; see `vigil token list`"))
            }
            Err(e) => Err(e.to_string()),
        },
        AdminRequest::ListSensors => reader
            .hosts()
            .map(AdminResponse::Sensors)
            .map_err(|e| e.to_string()),
        AdminRequest::Revoke { host } => core
            .registry
            .revoke(host, now)
            .map(|newly| AdminResponse::Revoked { host, newly })
            .map_err(|e| e.to_string()),
        AdminRequest::Status => {
            status(core, &reader, server_running).map(|s| AdminResponse::Status(Box::new(s)))
        }
        AdminRequest::Events { filter } => reader
            .events(&filter)
            .map(AdminResponse::Events)
            .map_err(|e| e.to_string()),
        AdminRequest::Alerts { filter } => reader
            .alerts(&filter)
            .and_then(|alerts| {
                let host_names = reader
                    .hosts()?
                    .into_iter()
                    .map(|h| (h.id, h.hostname))
                    .collect();
                Ok(AdminResponse::Alerts { alerts, host_names })
            })
            .map_err(|e| e.to_string()),
        AdminRequest::AuditVerify => {
            crate::audit_log::verify_stored(&core.db, &core.audit_signer.public_key())
                .map(|r| AdminResponse::AuditVerified(Verified::from(&r)))
                .map_err(|e| e.to_string())
        }
        AdminRequest::AuditCheckpoint => {
            crate::audit_log::checkpoint_now(&core.db, &core.audit_signer, now)
                .map(|note| AdminResponse::AuditCheckpoint {
                    note,
                    public_key: public_key_b64(core),
                })
                .map_err(|e| e.to_string())
        }
        AdminRequest::AuditProveExtends { old } => {
            crate::audit_log::prove_extends(&core.db, &core.audit_signer, &old, now)
                .map(|(extension, r)| AdminResponse::AuditExtends {
                    extension,
                    verified: Verified::from(&r),
                })
                .map_err(|e| e.to_string())
        }
        AdminRequest::Export { scope, exporter } => export(core, &reader, scope, &exporter, now),
        AdminRequest::ImportRules { files, operator } => import_rules(core, files, &operator, now),
        AdminRequest::AddUser {
            name,
            role,
            operator,
        } => add_user(core, &name, &role, &operator, now),
        AdminRequest::AddPackage {
            name,
            content_b64,
            operator,
        } => crate::packages::admin_add(core, &name, &content_b64, &operator)
            .map(|(package, replaced)| AdminResponse::PackageAdded { package, replaced }),
        AdminRequest::ListPackages => crate::packages::PackageStore::new(&core.data_dir)
            .list()
            .map(AdminResponse::Packages)
            .map_err(|e| e.to_string()),
        AdminRequest::RemovePackage { name, operator } => {
            crate::packages::admin_remove(core, &name, &operator)
                .map(|removed| AdminResponse::PackageRemoved { name, removed })
        }
        AdminRequest::Respond(req) => {
            crate::respond_admin::handle(core, req).map(AdminResponse::Respond)
        }
        AdminRequest::PublishSensorUpdates(req) => crate::sensor_updates::admin_publish(core, req)
            .map(AdminResponse::SensorUpdatesPublished),
        // The running pipeline's view when there is one, else the last save.
        AdminRequest::Models => match core.models.all() {
            live if !live.is_empty() => Ok(AdminResponse::Models(live)),
            _ => crate::pipeline::saved_model_status(&core.db)
                .map(AdminResponse::Models)
                .map_err(|e| e.to_string()),
        },
    };
    result.unwrap_or_else(AdminResponse::Error)
}

fn public_key_b64(core: &Core) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(core.audit_signer.public_key().as_bytes())
}

/// Resolve a host given by id or name.
pub(crate) fn resolve_host(reader: &StoreReader, host: &str) -> Result<HostId, String> {
    if let Ok(id) = host.parse::<HostId>() {
        return Ok(id);
    }
    let hosts = reader.hosts().map_err(|e| e.to_string())?;
    let mut named = hosts.iter().filter(|h| h.hostname == host);
    match (named.next(), named.next()) {
        (Some(h), None) => Ok(h.id),
        (Some(_), Some(_)) => Err(format!("{host:?} names several hosts; give the host id")),
        (None, _) => Err(format!("no host {host:?}; see `vigil sensor list`")),
    }
}

/// Validate `files` against the rules in force (shipped and imported:
/// duplicate ids are refused too), then write them 0600 into the rules
/// directory, record who did it, and tell the pipeline to reload.
fn import_rules(
    core: &Arc<Core>,
    files: Vec<(String, String)>,
    operator: &str,
    now: u64,
) -> Result<AdminResponse, String> {
    use vigil_models::sigma::RuleSet;
    let dir = core.data_dir.join(crate::pipeline::SIGMA_RULES_DIR);
    let (mut set, _) = RuleSet::builtin_and_dir(&dir);
    let mut problems = Vec::new();
    for (name, text) in &files {
        let plain = std::path::Path::new(name)
            .file_name()
            .is_some_and(|f| f == name.as_str())
            && (name.ends_with(".yml") || name.ends_with(".yaml"));
        if !plain {
            problems.push(format!("{name}: not a plain .yml/.yaml file name"));
            continue;
        }
        if dir.join(name).exists() {
            problems.push(format!(
                "{name}: a rule file of that name is already imported"
            ));
            continue;
        }
        if let Err(errors) = set.add_str(name, text) {
            problems.extend(errors.iter().map(ToString::to_string));
        }
    }
    if !problems.is_empty() {
        return Err(format!("import refused:\n{}", problems.join("\n")));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, text) in &files {
        crate::pki::write_private(&dir.join(name), text.as_bytes()).map_err(|e| e.to_string())?;
    }
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    core.console
        .append_audit(vigil_web_ui::store::AuditDraft {
            ts_ns: now,
            actor: operator.to_string(),
            action: "rules.import".into(),
            target: "sigma".into(),
            detail: names.join(", "),
        })
        .map_err(|e| e.to_string())?;
    core.notices.note_rules_change();
    Ok(AdminResponse::RulesImported {
        imported: files.len(),
        total: set.len(),
    })
}

/// `vigil user add`: the console's rules for names and roles; audited as
/// the console audits a user created by an admin.
fn add_user(
    core: &Arc<Core>,
    name: &str,
    role: &str,
    operator: &str,
    now: u64,
) -> Result<AdminResponse, String> {
    use vigil_web_ui::store::{Role, User};
    if !vigil_web_ui::pages::admin::valid_name(name) {
        return Err("user names use letters, digits, '.', '_' or '-' (at most 64)".into());
    }
    let role = Role::from_name(role).ok_or_else(|| {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
        format!("unknown role {role:?}; one of {}", names.join(", "))
    })?;
    if core
        .console
        .user(name)
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Err(format!("user {name} already exists"));
    }
    let password = vigil_web_ui::auth::random_token()[..20].to_string();
    let password_hash = vigil_web_ui::auth::hash_password(&password).map_err(|e| e.to_string())?;
    // Audited first: no entry, no user.
    core.console
        .append_audit(vigil_web_ui::store::AuditDraft {
            ts_ns: now,
            actor: operator.to_string(),
            action: "user.create".into(),
            target: format!("user:{name}"),
            detail: format!("role={}", role.name()),
        })
        .map_err(|e| e.to_string())?;
    core.console
        .put_user(User {
            name: name.to_string(),
            role,
            password_hash,
            created_ns: now,
            must_change_password: true,
            disabled: false,
        })
        .map_err(|e| e.to_string())?;
    Ok(AdminResponse::UserAdded {
        name: name.to_string(),
        role: role.name().to_string(),
        password,
    })
}

/// Write the bundle to a private file in `DATA/run` for the CLI to move.
fn export(
    core: &Arc<Core>,
    reader: &StoreReader,
    target: ExportTarget,
    exporter: &str,
    now: u64,
) -> Result<AdminResponse, String> {
    use crate::export::ExportScope;
    let scope = match target {
        ExportTarget::Incident(id) => ExportScope::Incident(id),
        ExportTarget::Alert(id) => ExportScope::Alert(id),
        ExportTarget::Host {
            host,
            from_ns,
            to_ns,
        } => ExportScope::Host {
            host: resolve_host(reader, &host)?,
            from_ns,
            to_ns,
        },
    };
    let path = core.data_dir.join("run").join(format!("export-{now}.tar"));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let out = std::io::BufWriter::new(file);
    match crate::export::export_bundle(core, &scope, exporter, now, out) {
        Ok(summary) => Ok(AdminResponse::Exported { path, summary }),
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e.to_string())
        }
    }
}

/// A token the console and `vigil token list` show (label `cli`), so it
/// can be revoked by id later.
fn create_listed_token(
    core: &Arc<Core>,
    ttl_s: u64,
    uses: u32,
    now: u64,
) -> Result<AdminResponse, String> {
    let ttl_ns = Duration::from_secs(ttl_s)
        .as_nanos()
        .min(u128::from(u64::MAX)) as u64;
    core.console
        .create_enrollment_token("cli", ttl_ns, uses, now)
        .map(|t| {
            AdminResponse::Token(NewToken {
                token: t.secret,
                expires_ns: t.info.expires_ns,
                uses: t.info.max_uses,
                ca_fingerprint: core.pki.ca_fingerprint(),
                id: t.info.id,
            })
        })
        .map_err(|e| e.to_string())
}

fn status(
    core: &Arc<Core>,
    reader: &StoreReader,
    server_running: bool,
) -> Result<StatusReport, String> {
    let stats = reader.stats().map_err(|e| e.to_string())?;
    Ok(StatusReport {
        server_running,
        addresses: if server_running {
            read_addresses(&core.data_dir)
        } else {
            None
        },
        hosts: core.registry.all().len(),
        connected: core.registry.connected_count(),
        stats,
        metrics: core.metrics.snapshot(),
        retention: core.db.retention().map_err(|e| e.to_string())?,
        last_retention: core.db.retention_run().map_err(|e| e.to_string())?,
        ca_fingerprint: core.pki.ca_fingerprint(),
    })
}

/// Serve the admin socket until shutdown.
pub async fn serve(core: Arc<Core>, mut shutdown: Shutdown) -> std::io::Result<()> {
    let path = Core::admin_socket(&core.data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    loop {
        let stream = tokio::select! {
            _ = shutdown.wait() => break,
            s = listener.accept() => s,
        };
        let Ok((mut stream, _)) = stream else {
            continue;
        };
        let core = core.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_one(&mut stream, core).await {
                tracing::debug!(error = %e, "admin request failed");
            }
        });
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

async fn serve_one(stream: &mut tokio::net::UnixStream, core: Arc<Core>) -> Result<(), AdminError> {
    let len = stream.read_u32().await? as usize;
    if len > MAX_ADMIN_MESSAGE {
        return Err(AdminError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    let req: AdminRequest = serde_json::from_slice(&buf)?;
    let resp = tokio::task::spawn_blocking(move || handle(&core, req, true))
        .await
        .unwrap_or_else(|e| AdminResponse::Error(e.to_string()));
    let out = serde_json::to_vec(&resp)?;
    stream.write_u32(out.len() as u32).await?;
    stream.write_all(&out).await?;
    Ok(())
}

/// Send a request to a running server. `Ok(None)` when no server listens.
pub fn request(data_dir: &Path, req: &AdminRequest) -> Result<Option<AdminResponse>, AdminError> {
    let path = Core::admin_socket(data_dir);
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e.into()),
    };
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = serde_json::to_vec(req)?;
    stream.write_all(&(body.len() as u32).to_be_bytes())?;
    stream.write_all(&body)?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_ADMIN_MESSAGE {
        return Err(AdminError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf)?;
    Ok(Some(serde_json::from_slice(&buf)?))
}
