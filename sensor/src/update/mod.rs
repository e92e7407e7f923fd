//! Sensor self-update from the appliance (#18), verified against the TUF
//! root the sensor was enrolled with, never the appliance's word alone.
//!
//! Enrollment stores `updates.json` in the state directory (0600): the
//! appliance's HTTPS URL, the trusted TUF state (the root given with
//! `--update-root`, else `/usr/share/vigil-sensor/update-root.json` when the
//! package ships one; without a root, updates are off and `enroll` and
//! `update` say so) and the release installed. `vigil-sensor update`:
//!
//! 1. fetches `metadata/N.root.json` (N = trusted + 1, … until absent),
//!    `timestamp.json`, `snapshot.json`, `targets.json` from
//!    `/enroll/updates/` over HTTPS trusting only the enrolled CA, and
//!    verifies them with [`vigil_update::remote`] (signatures, thresholds,
//!    root rotation, versions only forward, expiry with the bundles'
//!    policy);
//! 2. if the release is newer than the one installed and differs from the
//!    running binary, fetches the one target [`target_name`] (capped at its
//!    signed length, SHA-256 checked) and installs it next to the binary:
//!    temporary file, fsync, the old one kept as `PATH.prev`, rename;
//! 3. persists the new trusted state, so an older metadata set replayed
//!    later is refused.
//!
//! Any refusal leaves the binary and the state as they were.

mod https;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use vigil_update::remote::{fetch_target, refresh, Fetch};
use vigil_update::verify::TrustedState;
use vigil_update::{VerifyError, VerifyOptions};

pub use https::{BaseUrl, HttpsFetcher};

/// The update settings and trust in the state directory.
pub const UPDATES_FILE: &str = "updates.json";
/// The root a package may ship, used when enrollment names none.
pub const DEFAULT_ROOT: &str = "/usr/share/vigil-sensor/update-root.json";

/// The target a sensor installs: its own binary for this architecture.
pub fn target_name() -> String {
    format!("vigil-sensor-linux-{}", std::env::consts::ARCH)
}

/// Why an update did not happen.
#[derive(Debug, Error)]
pub enum UpdateError {
    /// Enrollment stored no update root.
    #[error("updates are off: enroll with --update-root FILE --updates-url https://HOST:PORT (or install {DEFAULT_ROOT})")]
    Off,
    /// The appliance offered something that does not verify.
    #[error("update refused: {0}")]
    Refused(#[from] VerifyError),
    /// A setting is wrong.
    #[error("{0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> UpdateError + '_ {
    move |source| UpdateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `updates.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateSettings {
    /// `https://HOST:PORT` of the appliance's console listener.
    pub url: String,
    /// The TUF trust: the enrolled root, then whatever verified since.
    pub trusted: TrustedState,
    /// The release installed by the last update (0: the enrolled binary).
    pub installed_release: u64,
}

impl UpdateSettings {
    /// The settings in `state_dir`; `Ok(None)` when updates are off.
    pub fn load(state_dir: &Path) -> Result<Option<Self>, UpdateError> {
        let path = state_dir.join(UPDATES_FILE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| UpdateError::Config(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Writes them 0600, atomically.
    pub fn save(&self, state_dir: &Path) -> Result<(), UpdateError> {
        let json = serde_json::to_vec_pretty(self).expect("settings always serialise");
        crate::enroll::write_private(&state_dir.join(UPDATES_FILE), &json)
            .map_err(|e| UpdateError::Config(e.to_string()))
    }
}

/// At enrollment: trust `root` (the file given, else [`DEFAULT_ROOT`] if
/// present) for updates from `url`, and save that in `state_dir`. Returns
/// a line saying what was set, or that updates are off.
pub fn configure(
    state_dir: &Path,
    root: Option<&Path>,
    url: Option<&str>,
) -> Result<String, UpdateError> {
    let (settings, said) = prepare(root, url)?;
    if let Some(s) = settings {
        s.save(state_dir)?;
    }
    Ok(said)
}

/// [`configure`] without saving: checks the root (self-signed to its
/// threshold) and the URL, so `enroll` can refuse bad flags before it
/// spends its one-time token.
pub fn prepare(
    root: Option<&Path>,
    url: Option<&str>,
) -> Result<(Option<UpdateSettings>, String), UpdateError> {
    let default = Path::new(DEFAULT_ROOT);
    let root = match root {
        Some(r) => r,
        None if default.is_file() => default,
        None => {
            let off = format!("updates: off (no --update-root and no {DEFAULT_ROOT})");
            return Ok((None, off));
        }
    };
    let Some(url) = url else {
        return Ok((None, "updates: off (no --updates-url)".into()));
    };
    BaseUrl::parse(url).map_err(UpdateError::Config)?;
    let bytes = std::fs::read(root).map_err(io_err(root))?;
    let trusted = TrustedState::from_root_file(&bytes)
        .map_err(|e| UpdateError::Config(format!("{}: {e}", root.display())))?;
    let version = trusted.root()?.version;
    let said = format!(
        "updates: from {url}, verified against {} (root version {version})",
        root.display()
    );
    let settings = UpdateSettings {
        url: url.to_string(),
        trusted,
        installed_release: 0,
    };
    Ok((Some(settings), said))
}

/// What an update run found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing newer than what runs.
    UpToDate {
        /// The release the appliance offers.
        release: u64,
    },
    /// The release has no target for this sensor.
    NoTarget {
        /// The release offered.
        release: u64,
    },
    /// `--check`: a newer release is available.
    Available {
        /// The release.
        release: u64,
        /// Its target's SHA-256.
        sha256: String,
    },
    /// Installed.
    Installed {
        /// The release.
        release: u64,
        /// The binary replaced.
        path: PathBuf,
        /// Its new SHA-256.
        sha256: String,
    },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::UpToDate { release } => write!(f, "up to date (release {release} offered)"),
            Outcome::NoTarget { release } => {
                write!(f, "release {release} has no {} target", target_name())
            }
            Outcome::Available { release, sha256 } => {
                write!(f, "release {release} available (sha256 {sha256}); run `vigil-sensor update` to install")
            }
            Outcome::Installed {
                release,
                path,
                sha256,
            } => write!(
                f,
                "installed release {release} at {} (sha256 {sha256}; previous kept as .prev); restart the sensor to run it",
                path.display()
            ),
        }
    }
}

/// The exit status of `vigil-sensor update --installed-exit-code` when it
/// installed a new binary. Without the flag an install exits 0 as always;
/// with it, the caller (the update timer's unit) restarts the sensor only
/// on this status. 10 is outside the range shells (126–165), systemd
/// (200–243) and sysexits (64–78) give meanings to.
pub const EXIT_INSTALLED: u8 = 10;

/// The exit status for a successful run: [`EXIT_INSTALLED`] when a binary
/// was installed and the caller asked for a distinct status, else 0 (so
/// existing callers see what they always saw). Refusals exit 1 elsewhere.
pub fn exit_status(outcome: &Outcome, distinct_install: bool) -> u8 {
    match outcome {
        Outcome::Installed { .. } if distinct_install => EXIT_INSTALLED,
        _ => 0,
    }
}

/// One update run against `fetcher`, installing into `binary` unless
/// `check_only`. The settings in `state_dir` move forward only when
/// something was verified and acted on.
pub fn run(
    state_dir: &Path,
    fetcher: &mut dyn Fetch,
    binary: &Path,
    check_only: bool,
    now: SystemTime,
) -> Result<Outcome, UpdateError> {
    let mut settings = UpdateSettings::load(state_dir)?.ok_or(UpdateError::Off)?;
    let verified = refresh(fetcher, &settings.trusted, &VerifyOptions::at(now))?;
    let release = verified.release;
    let name = target_name();
    let Some(desc) = verified.targets.get(&name) else {
        return Ok(Outcome::NoTarget { release });
    };
    let want = desc.hashes.get("sha256").cloned().unwrap_or_default();
    let running = std::fs::read(binary)
        .map(|b| hex::encode(Sha256::digest(b)))
        .unwrap_or_default();
    let newer = release > settings.installed_release && !want.eq_ignore_ascii_case(&running);
    let outcome = match (newer, check_only) {
        (false, _) => Outcome::UpToDate { release },
        (true, true) => Outcome::Available {
            release,
            sha256: want,
        },
        (true, false) => {
            let bytes = fetch_target(fetcher, &verified, &name)?;
            install_binary(binary, &bytes)?;
            Outcome::Installed {
                release,
                path: binary.to_path_buf(),
                sha256: want,
            }
        }
    };
    if !check_only {
        settings.trusted = verified.state;
        settings.installed_release = settings.installed_release.max(release);
        settings.save(state_dir)?;
    }
    Ok(outcome)
}

/// Replaces `path` with `bytes` (mode 0755): written beside it, fsync'd,
/// the old file kept as `PATH.prev` (a hard link, so `path` never
/// disappears), then renamed over it and the directory fsync'd.
pub fn install_binary(path: &Path, bytes: &[u8]) -> Result<(), UpdateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vigil-sensor".into());
    let tmp = dir.join(format!(".{file_name}.new"));
    let prev = dir.join(format!("{file_name}.prev"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    // The umask (0077 for everything else the sensor writes) must not
    // make the binary unrunnable by the service manager.
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    if path.exists() {
        let _ = std::fs::remove_file(&prev);
        std::fs::hard_link(path, &prev)
            .or_else(|_| std::fs::copy(path, &prev).map(|_| ()))
            .map_err(io_err(&prev))?;
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_keeps_the_previous_binary() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("vigil-sensor");
        std::fs::write(&bin, b"old").unwrap();
        install_binary(&bin, b"new").unwrap();
        assert_eq!(std::fs::read(&bin).unwrap(), b"new");
        assert_eq!(
            std::fs::read(dir.path().join("vigil-sensor.prev")).unwrap(),
            b"old"
        );
        let mode = std::fs::metadata(&bin).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        install_binary(&bin, b"newer").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("vigil-sensor.prev")).unwrap(),
            b"new"
        );
        assert!(!dir.path().join(".vigil-sensor.new").exists());
    }

    #[test]
    fn only_an_install_asked_to_be_told_apart_exits_10() {
        let installed = Outcome::Installed {
            release: 2,
            path: PathBuf::from("/usr/bin/vigil-sensor"),
            sha256: "ab".into(),
        };
        let others = [
            Outcome::UpToDate { release: 2 },
            Outcome::NoTarget { release: 2 },
            Outcome::Available {
                release: 2,
                sha256: "ab".into(),
            },
        ];
        assert_eq!(exit_status(&installed, true), EXIT_INSTALLED);
        assert_eq!(EXIT_INSTALLED, 10, "packaging/vigil-sensor-update.service");
        // Without the flag, an install is a plain success as before.
        assert_eq!(exit_status(&installed, false), 0);
        for o in &others {
            assert_eq!(exit_status(o, true), 0, "{o}");
            assert_eq!(exit_status(o, false), 0, "{o}");
        }
    }

    #[test]
    fn without_a_root_updates_are_off() {
        let dir = tempfile::tempdir().unwrap();
        let said = configure(dir.path(), None, Some("https://10.0.0.1:8443")).unwrap();
        if !Path::new(DEFAULT_ROOT).is_file() {
            assert!(said.starts_with("updates: off"), "{said}");
            let mut repo = vigil_update::remote::MemoryRepo::default();
            let err = run(
                dir.path(),
                &mut repo,
                &dir.path().join("bin"),
                false,
                SystemTime::now(),
            )
            .unwrap_err();
            assert!(matches!(err, UpdateError::Off), "{err}");
        }
    }
}
