//! The sensor package store (#18): the `.deb` and tarball the console's
//! "Add hosts" page offers, kept in `DATA/packages/` with an index
//! (`index.json`: name, size, SHA-256, when added) so hosts download them
//! from the appliance itself.
//!
//! Packages arrive through `vigil packages add FILE` (audited; the CLI
//! sends the bytes, so the appliance writes and owns the file whichever
//! user ran the CLI). Downloads need no login, so what may be served is
//! decided here, by the index alone: a name is looked up by exact match
//! among the listed entries, and names were checked when added (plain
//! file names ending `.deb` or `.tar.gz`), so no request can name another
//! file. Files and the index are 0600 in a 0700 directory, written to a
//! temporary name, fsync'd and renamed.

use crate::core::Core;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use vigil_web_ui::pages::add_hosts::{AddHostsApi, PackageInfo, PackageKind};
use vigil_web_ui::store::{AuditDraft, ConsoleStore};

/// The store's directory under the data directory.
pub const PACKAGES_DIR: &str = "packages";
/// The index file in it.
pub const INDEX_FILE: &str = "index.json";
/// Largest package accepted: the admin socket carries it base64-encoded in
/// one message of at most `admin::MAX_ADMIN_MESSAGE` (64 MiB). A release
/// sensor package is a few MiB.
pub const MAX_PACKAGE_BYTES: usize = 40 << 20;
/// Longest package name.
pub const MAX_NAME_LEN: usize = 128;

/// Serialises index updates within the process (the CLI without a server
/// is the only process then: RocksDB's lock keeps out a second one).
static INDEX_LOCK: Mutex<()> = Mutex::new(());

/// One listed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPackage {
    /// Plain file name (see [`valid_name`]).
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// When it was added (ns since the epoch).
    pub added_ns: u64,
}

impl StoredPackage {
    /// The console's view of it.
    pub fn info(&self) -> Option<PackageInfo> {
        Some(PackageInfo {
            name: self.name.clone(),
            size: self.size,
            sha256: self.sha256.clone(),
            kind: kind(&self.name)?,
            added_ns: self.added_ns,
        })
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    packages: Vec<StoredPackage>,
}

/// Why a package operation failed.
#[derive(Debug, Error)]
pub enum PackageError {
    #[error(
        "{0:?} is not a package name: a plain file name of letters, digits, '.', '_', '+', '~' \
         or '-' (at most {MAX_NAME_LEN}), ending .deb or .tar.gz"
    )]
    BadName(String),
    #[error("{name}: {size} bytes; packages of at most {MAX_PACKAGE_BYTES} bytes are accepted")]
    TooLarge { name: String, size: usize },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {detail}", path.display())]
    BadIndex { path: PathBuf, detail: String },
}

/// Whether `name` may be stored and served: a plain file name (no
/// separator, no leading dot) of `[A-Za-z0-9._+~-]`, ending `.deb` or
/// `.tar.gz`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with(['.', '-', '~'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '~' | '-'))
        && kind(name).is_some()
}

/// What a package is for, from its name's suffix.
pub fn kind(name: &str) -> Option<PackageKind> {
    if name.len() > 4 && name.ends_with(".deb") {
        Some(PackageKind::Deb)
    } else if name.len() > 7 && name.ends_with(".tar.gz") {
        Some(PackageKind::Tarball)
    } else {
        None
    }
}

/// The package directory of a data directory.
#[derive(Debug, Clone)]
pub struct PackageStore {
    dir: PathBuf,
}

impl PackageStore {
    /// The store of `data_dir` (created on the first add).
    pub fn new(data_dir: &Path) -> Self {
        PackageStore {
            dir: data_dir.join(PACKAGES_DIR),
        }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PackageError + '_ {
        move |source| PackageError::Io {
            path: path.to_owned(),
            source,
        }
    }

    fn read_index(&self) -> Result<Index, PackageError> {
        let path = self.dir.join(INDEX_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| PackageError::BadIndex {
                path,
                detail: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(Self::io(&path)(e)),
        }
    }

    /// Every listed package, newest first.
    pub fn list(&self) -> Result<Vec<StoredPackage>, PackageError> {
        let mut packages = self.read_index()?.packages;
        packages.sort_by(|a, b| b.added_ns.cmp(&a.added_ns).then(a.name.cmp(&b.name)));
        Ok(packages)
    }

    /// Write `bytes` to `name` durably: temporary file, fsync, rename,
    /// fsync of the directory.
    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), PackageError> {
        let path = self.dir.join(name);
        // Listed names never start with '.', so this never collides.
        let tmp = self.dir.join(format!(".tmp-{name}"));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(Self::io(&tmp))?;
        f.write_all(bytes).map_err(Self::io(&tmp))?;
        f.sync_all().map_err(Self::io(&tmp))?;
        fs::rename(&tmp, &path).map_err(Self::io(&path))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(Self::io(&self.dir))
    }

    fn ensure_dir(&self) -> Result<(), PackageError> {
        fs::create_dir_all(&self.dir).map_err(Self::io(&self.dir))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(Self::io(&self.dir))
    }

    fn write_index(&self, index: &Index) -> Result<(), PackageError> {
        let json = serde_json::to_vec_pretty(index).map_err(|e| PackageError::BadIndex {
            path: self.dir.join(INDEX_FILE),
            detail: e.to_string(),
        })?;
        self.write(INDEX_FILE, &json)
    }

    /// Store `bytes` as `name` and list it; `Ok(true)` when it replaced a
    /// package of that name. The file is in place before the index names it.
    pub fn add(
        &self,
        name: &str,
        bytes: &[u8],
        now_ns: u64,
    ) -> Result<(StoredPackage, bool), PackageError> {
        check(name, bytes.len())?;
        let _g = INDEX_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        self.ensure_dir()?;
        let mut index = self.read_index()?;
        self.write(name, bytes)?;
        let package = StoredPackage {
            name: name.to_owned(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
            added_ns: now_ns,
        };
        let before = index.packages.len();
        index.packages.retain(|p| p.name != name);
        let replaced = index.packages.len() != before;
        index.packages.push(package.clone());
        self.write_index(&index)?;
        Ok((package, replaced))
    }

    /// Unlist `name` and delete its file; `Ok(false)` when it was not listed.
    pub fn remove(&self, name: &str) -> Result<bool, PackageError> {
        let _g = INDEX_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut index = self.read_index()?;
        let before = index.packages.len();
        index.packages.retain(|p| p.name != name);
        if index.packages.len() == before {
            return Ok(false);
        }
        // The index first: a crash leaves an unlisted file, never a listed hole.
        self.write_index(&index)?;
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Self::io(&path)(e)),
            _ => Ok(true),
        }
    }

    /// A listed package and its file opened for reading, or `None` when
    /// `name` is not listed (whatever it is) or its file is not the
    /// regular file of the listed size.
    pub fn open(&self, name: &str) -> Result<Option<(StoredPackage, fs::File)>, PackageError> {
        let Some(package) = self
            .read_index()?
            .packages
            .into_iter()
            .find(|p| p.name == name)
        else {
            return Ok(None);
        };
        let path = self.dir.join(&package.name);
        let file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Self::io(&path)(e)),
        };
        let meta = file.metadata().map_err(Self::io(&path))?;
        if !meta.is_file() || meta.len() != package.size {
            tracing::warn!(path = %path.display(), "listed package changed on disk; not served");
            return Ok(None);
        }
        Ok(Some((package, file)))
    }
}

fn check(name: &str, size: usize) -> Result<(), PackageError> {
    if !valid_name(name) {
        return Err(PackageError::BadName(name.to_owned()));
    }
    if size > MAX_PACKAGE_BYTES {
        return Err(PackageError::TooLarge {
            name: name.to_owned(),
            size,
        });
    }
    Ok(())
}

fn audit(
    core: &Core,
    operator: &str,
    action: &str,
    target: &str,
    detail: String,
) -> Result<(), String> {
    core.console
        .append_audit(AuditDraft {
            ts_ns: (core.clock)(),
            actor: operator.to_owned(),
            action: action.into(),
            target: target.into(),
            detail,
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `vigil packages add`: checked, audited (before it is written: no
/// entry, no package), stored and listed.
pub fn admin_add(
    core: &Core,
    name: &str,
    content_b64: &str,
    operator: &str,
) -> Result<(StoredPackage, bool), String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(content_b64)
        .map_err(|e| format!("package content: {e}"))?;
    check(name, bytes.len()).map_err(|e| e.to_string())?;
    let sha = hex::encode(Sha256::digest(&bytes));
    let detail = format!("{} bytes; sha256 {sha}", bytes.len());
    audit(
        core,
        operator,
        "packages.add",
        &format!("package:{name}"),
        detail,
    )?;
    PackageStore::new(&core.data_dir)
        .add(name, &bytes, (core.clock)())
        .map_err(|e| e.to_string())
}

/// `vigil packages remove`: audited when something is removed.
pub fn admin_remove(core: &Core, name: &str, operator: &str) -> Result<bool, String> {
    let store = PackageStore::new(&core.data_dir);
    if !store
        .list()
        .map_err(|e| e.to_string())?
        .iter()
        .any(|p| p.name == name)
    {
        return Ok(false);
    }
    audit(
        core,
        operator,
        "packages.remove",
        &format!("package:{name}"),
        String::new(),
    )?;
    store.remove(name).map_err(|e| e.to_string())
}

/// `vigil packages add`'s answer.
pub fn format_added(p: &StoredPackage, replaced: bool) -> String {
    format!(
        "{} package {} ({} bytes, sha256 {}); the console's Add hosts page offers it\n",
        if replaced { "replaced" } else { "added" },
        p.name,
        p.size,
        p.sha256
    )
}

/// `vigil packages list`: one package per line.
pub fn format_list(list: &[StoredPackage]) -> String {
    if list.is_empty() {
        return "no packages; add one with `vigil packages add FILE`\n".into();
    }
    list.iter()
        .map(|p| format!("{}  {:>10}  {}\n", p.sha256, p.size, p.name))
        .collect()
}

/// The CA certificate as PEM (64-column base64 of the DER).
pub fn ca_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// What the console's "Add hosts" page and the unauthenticated downloads
/// read: the store, the CA and the bound addresses.
pub struct ConsoleHosts {
    core: Arc<Core>,
    store: PackageStore,
    quic: SocketAddr,
    https: SocketAddr,
}

impl ConsoleHosts {
    /// For an appliance whose listeners are bound to `quic` and `https`.
    pub fn new(core: Arc<Core>, quic: SocketAddr, https: SocketAddr) -> Self {
        let store = PackageStore::new(&core.data_dir);
        ConsoleHosts {
            core,
            store,
            quic,
            https,
        }
    }
}

impl AddHostsApi for ConsoleHosts {
    fn ca_fingerprint(&self) -> String {
        self.core.pki.ca_fingerprint()
    }

    fn ca_pem(&self) -> String {
        ca_pem(self.core.pki.ca_der())
    }

    fn https_addr(&self) -> SocketAddr {
        self.https
    }

    fn quic_addr(&self) -> SocketAddr {
        self.quic
    }

    fn packages(&self) -> Result<Vec<PackageInfo>, String> {
        let list = self.store.list().map_err(|e| e.to_string())?;
        Ok(list.iter().filter_map(StoredPackage::info).collect())
    }

    fn open_package(&self, name: &str) -> Option<(PackageInfo, fs::File)> {
        match self.store.open(name) {
            Ok(found) => found.and_then(|(p, f)| Some((p.info()?, f))),
            Err(e) => {
                tracing::warn!(error = %e, "package store");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_package_file_names() {
        for ok in [
            "vigil-sensor_0.1.0_amd64.deb",
            "vigil-sensor-0.1.0-x86_64-linux.tar.gz",
            "v_1.0+deb12~rc1.deb",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".deb",
            ".tar.gz",
            "../x.deb",
            "a/b.deb",
            "..",
            ".hidden.deb",
            "-rf.deb",
            "x.deb/",
            "x.txt",
            "index.json",
            "x.tar",
            "x deb.deb",
            "x%2f.deb",
            "x\0.deb",
            "x\\.deb",
            &format!("{}.deb", "a".repeat(MAX_NAME_LEN)),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn only_listed_names_open_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = PackageStore::new(dir.path());
        assert!(store.list().unwrap().is_empty());
        let (p, replaced) = store.add("s_1_amd64.deb", b"deb bytes", 5).unwrap();
        assert!(!replaced);
        assert_eq!(p.sha256, hex::encode(Sha256::digest(b"deb bytes")));
        store.add("s-1.tar.gz", b"tgz", 6).unwrap();
        let names: Vec<_> = store.list().unwrap().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["s-1.tar.gz", "s_1_amd64.deb"]);
        let (_, again) = store.add("s_1_amd64.deb", b"new deb", 7).unwrap();
        assert!(again);
        let (got, mut f) = store.open("s_1_amd64.deb").unwrap().unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut f, &mut text).unwrap();
        assert_eq!((got.size, text.as_str()), (7, "new deb"));
        for hostile in [
            INDEX_FILE,
            "../packages/s-1.tar.gz",
            ".tmp-s-1.tar.gz",
            ".",
            "",
        ] {
            assert!(store.open(hostile).unwrap().is_none(), "{hostile}");
        }
        assert!(matches!(
            store.add("../evil.deb", b"x", 8),
            Err(PackageError::BadName(_))
        ));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join(PACKAGES_DIR)), 0o700);
        assert_eq!(mode(&dir.path().join("packages/s-1.tar.gz")), 0o600);
        assert_eq!(mode(&dir.path().join("packages/index.json")), 0o600);
        assert!(store.remove("s-1.tar.gz").unwrap());
        assert!(!store.remove("s-1.tar.gz").unwrap());
        assert!(store.open("s-1.tar.gz").unwrap().is_none());
        assert!(!dir.path().join("packages/s-1.tar.gz").exists());
    }

    #[test]
    fn a_file_changed_behind_the_index_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = PackageStore::new(dir.path());
        store.add("a.deb", b"12345", 1).unwrap();
        fs::write(dir.path().join("packages/a.deb"), b"123").unwrap();
        assert!(store.open("a.deb").unwrap().is_none());
        fs::remove_file(dir.path().join("packages/a.deb")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("packages/a.deb")).unwrap();
        assert!(
            !matches!(store.open("a.deb"), Ok(Some(_))),
            "a symlink is never followed"
        );
    }

    #[test]
    fn the_pem_holds_the_der() {
        use base64::Engine;
        let der: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        let pem = ca_pem(&der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let back = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        assert_eq!(back, der);
    }
}
