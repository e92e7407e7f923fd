//! Sensor updates the appliance publishes (#18): the TUF metadata of an
//! update bundle and its sensor targets, served to enrolled sensors at
//! `/enroll/updates/metadata/NAME` and `/enroll/updates/targets/NAME`
//! over the console's HTTPS listener, without login (a sensor has no
//! console account).
//!
//! Sensors verify what they fetch against the TUF root they were enrolled
//! with (`vigil_update::remote`), never the appliance's word alone: this
//! module is a mirror, so a compromised appliance can withhold updates but
//! not forge or roll one back. It still refuses to publish what does not
//! verify against the appliance's own trusted root, so an operator learns
//! of a bad bundle here rather than from every sensor.
//!
//! Layout (`DATA/sensor-updates/`, 0755, files 0644, owned by the
//! service user; each file written to a temporary name, fsync'd, renamed;
//! the index last, so a name is served only once its file is complete):
//!
//! ```text
//! index.json              what may be served: name, size, SHA-256
//! metadata/N.root.json, timestamp.json, snapshot.json, targets.json
//! targets/vigil-sensor…   the release's sensor targets only
//! ```
//!
//! Requests are answered from the index alone (exact names; anything else
//! is a 404), and a file is served only when it is the regular file of the
//! listed size.

use crate::core::Core;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vigil_update::bundle::MAX_METADATA_BYTES;
use vigil_update::verify::{verify_metadata, BundleMetadata, TrustedState};
use vigil_update::{StateStore, VerifyError, VerifyOptions};
use vigil_web_ui::store::{AuditDraft, ConsoleStore};

/// The published set's directory under the data directory.
pub const SENSOR_UPDATES_DIR: &str = "sensor-updates";
/// Largest sensor target published: the admin channel carries it
/// base64-encoded in one message of at most 64 MiB. A sensor binary or
/// package is a few MiB.
pub const MAX_TARGET_BYTES: u64 = 40 << 20;
/// The name every sensor target starts with (binary, `.deb`, tarball).
pub const SENSOR_TARGET_PREFIX: &str = "vigil-sensor";

/// Serialises publishes within the process.
static PUBLISH_LOCK: Mutex<()> = Mutex::new(());

/// Whether a bundle target is one sensors update from.
pub fn is_sensor_target(name: &str) -> bool {
    name.starts_with(SENSOR_TARGET_PREFIX) && vigil_update::verify::valid_target_name(name)
}

/// One served file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedFile {
    /// Bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// `index.json`: the published release and every file that may be served.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Release number (the TUF targets version).
    pub release: u64,
    /// Release name, if the bundle carries one.
    pub release_name: Option<String>,
    /// Metadata files by name.
    pub metadata: BTreeMap<String, PublishedFile>,
    /// Sensor targets by name.
    pub targets: BTreeMap<String, PublishedFile>,
    /// When it was published (ns since the epoch).
    pub published_ns: u64,
}

/// What `vigil update publish-sensors` sends over the admin channel: the
/// appliance's trusted TUF state (read by the root-run CLI from the update
/// tool's state) and the bundle's metadata files and sensor targets,
/// base64-encoded, each as (name, content).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishRequest {
    /// What the bundle must verify against.
    pub trusted: TrustedState,
    /// `N.root.json`, `timestamp.json`, `snapshot.json`, `targets.json`.
    pub metadata: Vec<(String, String)>,
    /// Sensor targets.
    pub targets: Vec<(String, String)>,
    /// Who publishes (audit log).
    pub operator: String,
}

/// What `vigil update publish-sensors BUNDLE` sends: the update tool's
/// trusted state (`state_dir/slots.json`), the bundle's metadata once it
/// verifies against it at `now`, and the bundle's sensor targets, each
/// checked against its signed length and hash as it is read.
pub fn request_from_bundle(
    bundle: &Path,
    state_dir: &Path,
    operator: String,
    now: SystemTime,
) -> Result<PublishRequest, String> {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let refused = |e: VerifyError| format!("update refused: {e}");
    let trusted = StateStore::new(state_dir)
        .load()
        .map_err(|e| e.to_string())?
        .trusted;
    let mut bundle =
        vigil_update::bundle::open(bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
    let verified = bundle
        .verify_metadata(&trusted, &VerifyOptions::at(now))
        .map_err(refused)?;
    let meta = &bundle.metadata;
    let metadata: Vec<(String, String)> = meta
        .files()
        .into_iter()
        .map(|(name, b)| (name, b64(b)))
        .collect();
    let mut targets = Vec::new();
    for (name, desc) in &verified.targets {
        if !is_sensor_target(name) || !bundle.has_target(name) {
            continue;
        }
        if desc.length > MAX_TARGET_BYTES {
            return Err(format!(
                "{name}: {} bytes; at most {MAX_TARGET_BYTES}",
                desc.length
            ));
        }
        let mut bytes = Vec::new();
        bundle
            .copy_target(name, desc, &mut bytes)
            .map_err(refused)?;
        targets.push((name.clone(), b64(&bytes)));
    }
    Ok(PublishRequest {
        trusted,
        metadata,
        targets,
        operator,
    })
}

/// Where the published set lives.
fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(SENSOR_UPDATES_DIR)
}

/// The published index, `None` when nothing was published.
pub fn published(data_dir: &Path) -> Result<Option<Published>, String> {
    let path = dir(data_dir).join("index.json");
    match fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn decode(what: &str, name: &str, b64: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("{what} {name}: {e}"))
}

/// The bundle's metadata files, checked for names and size.
fn metadata_files(req: &PublishRequest) -> Result<(BundleMetadata, Vec<NamedFile>), String> {
    let mut meta = BundleMetadata::default();
    let mut files = Vec::new();
    for (name, b64) in &req.metadata {
        let bytes = decode("metadata", name, b64)?;
        if bytes.len() as u64 > MAX_METADATA_BYTES {
            return Err(format!(
                "metadata {name}: larger than {MAX_METADATA_BYTES} bytes"
            ));
        }
        meta.insert(name, bytes.clone())
            .map_err(|e| format!("metadata {name:?}: {e}"))?;
        files.push((name.clone(), bytes));
    }
    Ok((meta, files))
}

/// Verifies a publish request completely: the metadata against the
/// trusted state at `now_ns`, then each target against its signed length
/// and hash. Returns the index to write and the files.
pub fn verify(req: &PublishRequest, now_ns: u64) -> Result<(Published, Files), String> {
    let (meta, metadata) = metadata_files(req)?;
    let opts = VerifyOptions::at(UNIX_EPOCH + Duration::from_nanos(now_ns));
    let verified = verify_metadata(&req.trusted, &meta, &opts)
        .map_err(|e| format!("the bundle does not verify against the appliance's root: {e}"))?;
    let mut targets = Vec::new();
    for (name, b64) in &req.targets {
        if !is_sensor_target(name) {
            return Err(format!(
                "{name:?} is not a sensor target ({SENSOR_TARGET_PREFIX}…)"
            ));
        }
        let desc = verified
            .targets
            .get(name)
            .ok_or_else(|| format!("{name} is not in the signed targets"))?;
        if desc.length > MAX_TARGET_BYTES {
            return Err(format!(
                "{name}: {} bytes; at most {MAX_TARGET_BYTES}",
                desc.length
            ));
        }
        let bytes = decode("target", name, b64)?;
        let sha = hex::encode(Sha256::digest(&bytes));
        let want = desc.hashes.get("sha256").map(String::as_str).unwrap_or("");
        if bytes.len() as u64 != desc.length || !want.eq_ignore_ascii_case(&sha) {
            return Err(format!(
                "target {name} was altered: it is not the signed length and sha256"
            ));
        }
        targets.push((name.clone(), bytes));
    }
    if targets.is_empty() {
        return Err(format!(
            "release {} has no sensor target ({SENSOR_TARGET_PREFIX}…): nothing to publish",
            verified.release
        ));
    }
    let entry = |b: &[u8]| PublishedFile {
        size: b.len() as u64,
        sha256: hex::encode(Sha256::digest(b)),
    };
    let index = Published {
        release: verified.release,
        release_name: verified.release_name,
        metadata: metadata
            .iter()
            .map(|(n, b)| (n.clone(), entry(b)))
            .collect(),
        targets: targets.iter().map(|(n, b)| (n.clone(), entry(b))).collect(),
        published_ns: now_ns,
    };
    Ok((index, Files { metadata, targets }))
}

/// A file's name and bytes.
pub type NamedFile = (String, Vec<u8>);

/// The bytes a publish writes.
#[derive(Debug)]
pub struct Files {
    /// Metadata files.
    pub metadata: Vec<NamedFile>,
    /// Sensor targets.
    pub targets: Vec<NamedFile>,
}

/// `vigil update publish-sensors`: verified, audited (before anything is
/// written: no entry, no publish), then written.
pub fn admin_publish(core: &Core, req: PublishRequest) -> Result<Published, String> {
    let now = (core.clock)();
    let (index, files) = verify(&req, now)?;
    let names: Vec<&str> = index.targets.keys().map(String::as_str).collect();
    core.console
        .append_audit(AuditDraft {
            ts_ns: now,
            actor: req.operator.clone(),
            action: "sensor_updates.publish".into(),
            target: format!("release:{}", index.release),
            detail: format!(
                "{}; {} root version(s); targets {}",
                index.release_name.as_deref().unwrap_or("unnamed"),
                index
                    .metadata
                    .keys()
                    .filter(|n| n.ends_with(".root.json"))
                    .count(),
                names.join(", ")
            ),
        })
        .map_err(|e| e.to_string())?;
    write_published(&core.data_dir, &index, &files).map_err(|e| e.to_string())?;
    Ok(index)
}

/// Writes the files, then the index, then removes files no longer listed.
pub fn write_published(data_dir: &Path, index: &Published, files: &Files) -> std::io::Result<()> {
    let _g = PUBLISH_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let root = dir(data_dir);
    for d in [root.clone(), root.join("metadata"), root.join("targets")] {
        fs::create_dir_all(&d)?;
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755))?;
    }
    for (name, bytes) in &files.targets {
        write_public(&root.join("targets"), name, bytes)?;
    }
    for (name, bytes) in &files.metadata {
        write_public(&root.join("metadata"), name, bytes)?;
    }
    let json = serde_json::to_vec_pretty(index).map_err(std::io::Error::other)?;
    write_public(&root, "index.json", &json)?;
    for (sub, listed) in [("metadata", &index.metadata), ("targets", &index.targets)] {
        for e in fs::read_dir(root.join(sub))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !listed.contains_key(&name) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// `dir/name`, 0644, through a temporary file, fsync and rename.
fn write_public(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    // Published names never start with '.', so this never collides.
    let tmp = dir.join(format!(".tmp-{name}"));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    // The service's umask may be narrower than what sensors need to read.
    f.set_permissions(fs::Permissions::from_mode(0o644))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    fs::File::open(dir)?.sync_all()
}

/// Reads a listed file: `None` unless `name` is listed under `kind`
/// (`metadata` or `targets`) and its file is the regular file of the
/// listed size.
pub fn read_listed(data_dir: &Path, kind: &str, name: &str) -> Option<Vec<u8>> {
    let index = published(data_dir).ok().flatten()?;
    let listed = match kind {
        "metadata" => index.metadata.get(name)?,
        "targets" => index.targets.get(name)?,
        _ => return None,
    };
    if listed.size > MAX_TARGET_BYTES {
        return None;
    }
    let path = dir(data_dir).join(kind).join(name);
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() != listed.size {
        tracing::warn!(path = %path.display(), "published sensor update changed on disk; not served");
        return None;
    }
    let mut bytes = Vec::with_capacity(listed.size as usize);
    file.take(listed.size).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// `vigil update publish-sensors`'s answer.
pub fn format_published(p: &Published) -> String {
    let mut out = format!(
        "published release {}{} for sensors: {}\n",
        p.release,
        p.release_name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default(),
        p.targets.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    out.push_str("sensors fetch it with `vigil-sensor update` from /enroll/updates/\n");
    out
}

/// `GET /enroll/updates/metadata/{name}` and `/enroll/updates/targets/{name}`
/// (no login), from the published index only.
pub fn router(data_dir: PathBuf) -> Router {
    Router::new()
        .route("/enroll/updates/metadata/{name}", get(metadata))
        .route("/enroll/updates/targets/{name}", get(target))
        .with_state(data_dir)
}

async fn metadata(State(data): State<PathBuf>, UrlPath(name): UrlPath<String>) -> Response {
    serve(data, "metadata", name, "application/json").await
}

async fn target(State(data): State<PathBuf>, UrlPath(name): UrlPath<String>) -> Response {
    serve(data, "targets", name, "application/octet-stream").await
}

async fn serve(
    data: PathBuf,
    kind: &'static str,
    name: String,
    content_type: &'static str,
) -> Response {
    let found = tokio::task::spawn_blocking(move || read_listed(&data, kind, &name))
        .await
        .ok()
        .flatten();
    match found {
        Some(bytes) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not published\n").into_response(),
    }
}
