//! The install check of `cargo xtask package --check` (and of
//! `cargo xtask test`): both packages into fresh Debian roots, then files,
//! modes, the unit, that the binary runs, and that only a purge deletes
//! the state directory.

use super::*;

/// Where fresh Debian roots are cached, one tarball per day.
pub(crate) const ROOT_CACHE: &str = "/var/cache/vigil/debian-root";

/// The worst exposure the update service may have: it needs no
/// capability and no local socket, so it scores far below the sensor.
const MAX_UPDATE_EXPOSURE: f32 = 2.5;

/// The units the `.deb` installs under `/lib/systemd/system` and
/// `install.sh` under `/etc/systemd/system`.
const UNITS: [&str; 3] = [
    "vigil-sensor.service",
    "vigil-sensor-update.service",
    "vigil-sensor-update.timer",
];

/// Where enabling puts the units' links (relative to the root).
const WANTS: [&str; 2] = [
    "etc/systemd/system/multi-user.target.wants/vigil-sensor.service",
    "etc/systemd/system/timers.target.wants/vigil-sensor-update.timer",
];

/// Install both packages into fresh Debian roots and check the result.
pub(super) fn install_check(packages: &Packages) -> Result<()> {
    for (name, max) in [
        ("vigil-sensor.service", MAX_EXPOSURE),
        ("vigil-sensor-update.service", MAX_UPDATE_EXPOSURE),
    ] {
        let unit = repo_root().join("packaging").join(name);
        let score = exposure(&unit)?;
        if score > max {
            return Err(format!(
                "systemd-analyze security: exposure {score} of {} is above {max}",
                unit.display()
            ));
        }
        eprintln!("xtask: package check: {name} exposure {score} (at most {max})");
    }
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
    let units = UNITS.map(|u| format!("lib/systemd/system/{u}"));
    let mut installed = vec![
        ("usr/bin/vigil-sensor", 0o755),
        ("etc/vigil", 0o755),
        ("etc/vigil/sensor.toml", 0o640),
        ("usr/share/doc/vigil-sensor/copyright", 0o644),
        ("var/lib/vigil-sensor", 0o700),
    ];
    installed.extend(units.iter().map(|u| (u.as_str(), 0o644)));
    expect_modes(root, &installed)?;
    for link in WANTS {
        expect_exists(root, link)?;
    }
    verify_units(root, &units)?;
    shipped_root_installed(root, p)?;
    runs(root, "/usr/bin/vigil-sensor", &p.version)?;
    let id = "var/lib/vigil-sensor/host_id";
    write(&root.join(id), "0000000000000001\n", 0o600)?;
    // As `vigil-sensor update` leaves it: removed with the binary.
    write(&root.join("usr/bin/vigil-sensor.prev"), "old\n", 0o755)?;
    chroot(root, &["dpkg", "-r", "vigil-sensor"])?;
    expect_absent(root, "usr/bin/vigil-sensor")?;
    expect_absent(root, "usr/bin/vigil-sensor.prev")?;
    expect_modes(root, &[(id, 0o600), ("etc/vigil/sensor.toml", 0o640)])
        .map_err(|e| format!("after dpkg -r (state must stay): {e}"))?;
    chroot(root, &["dpkg", "-i", &format!("/tmp/{name}")])?;
    expect_modes(root, &[(id, 0o600), ("var/lib/vigil-sensor", 0o700)])
        .map_err(|e| format!("after re-install (enrollment must stay): {e}"))?;
    chroot(root, &["dpkg", "-P", "vigil-sensor"])?;
    let gone = ["var/lib/vigil-sensor", "etc/vigil"].into_iter();
    for path in gone.chain(units.iter().map(String::as_str)).chain(WANTS) {
        expect_absent(root, path).map_err(|e| format!("after dpkg -P: {e}"))?;
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
    let units = UNITS.map(|u| format!("etc/systemd/system/{u}"));
    let mut installed = vec![
        ("usr/local/bin/vigil-sensor", 0o755),
        ("etc/vigil/sensor.toml", 0o640),
        ("var/lib/vigil-sensor", 0o700),
    ];
    installed.extend(units.iter().map(|u| (u.as_str(), 0o644)));
    chroot(root, &["sh", &script])?;
    expect_modes(root, &installed)?;
    tarball_units_point_at_local_bin(root)?;
    // install.sh enables with systemctl; minbase roots have none.
    if root.join("usr/bin/systemctl").exists() {
        for link in WANTS {
            expect_exists(root, link)?;
        }
    }
    verify_units(root, &units)?;
    shipped_root_installed(root, p)?;
    runs(root, "/usr/local/bin/vigil-sensor", &p.version)?;
    let id = "var/lib/vigil-sensor/host_id";
    write(&root.join(id), "0000000000000001\n", 0o600)?;
    chroot(root, &["sh", &script]).map_err(|e| format!("second run (must be idempotent): {e}"))?;
    expect_modes(root, &installed)?;
    expect_modes(root, &[(id, 0o600)])?;
    write(
        &root.join("usr/local/bin/vigil-sensor.prev"),
        "old\n",
        0o755,
    )?;
    chroot(root, &["sh", &script, "--uninstall"])?;
    let gone = [
        "usr/local/bin/vigil-sensor",
        "usr/local/bin/vigil-sensor.prev",
    ];
    for path in gone.into_iter().chain(units.iter().map(String::as_str)) {
        expect_absent(root, path).map_err(|e| format!("after --uninstall: {e}"))?;
    }
    for link in WANTS {
        expect_absent(root, link).map_err(|e| format!("after --uninstall: {e}"))?;
    }
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

/// `install.sh` points both services at `/usr/local/bin`, where it put the
/// binary, and lets the update service write there and nowhere in `/usr/bin`.
fn tarball_units_point_at_local_bin(root: &Path) -> Result<()> {
    let unit = read(&root.join("etc/systemd/system/vigil-sensor.service"))?;
    let update = read(&root.join("etc/systemd/system/vigil-sensor-update.service"))?;
    let wants = [
        (&unit, "\nExecStart=/usr/local/bin/vigil-sensor run "),
        (&update, "\nExecStart=/usr/local/bin/vigil-sensor update "),
        (
            &update,
            "\nReadWritePaths=/usr/local/bin /var/lib/vigil-sensor\n",
        ),
    ];
    for (text, want) in wants {
        if !text.contains(want) {
            return Err(format!("install.sh did not write {:?}", want.trim()));
        }
    }
    if update.contains("/usr/bin") {
        return Err("the installed update unit still names /usr/bin".into());
    }
    Ok(())
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

/// `systemd-analyze verify` of the installed units, together (the timer
/// with its service). The minbase root has no systemd units to verify
/// against, so the host's are used, on copies whose ExecStart points at the
/// binary installed in the root (verify checks it exists and is executable).
fn verify_units(root: &Path, units: &[String]) -> Result<()> {
    let dir = repo_root().join("target/packages/verify");
    recreate(&dir)?;
    let mut copies = Vec::new();
    for unit in units {
        let text = read(&root.join(unit))?;
        let mut rewritten = String::new();
        for line in text.lines() {
            match line.strip_prefix("ExecStart=") {
                Some(cmd) => rewritten.push_str(&format!("ExecStart={}{cmd}", root.display())),
                None => rewritten.push_str(line),
            }
            rewritten.push('\n');
        }
        let name = Path::new(unit).file_name().expect("units have names");
        let copy = dir.join(name);
        write(&copy, &rewritten, 0o644)?;
        copies.push(copy);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "--generators=no"])
        .args(&copies)
        .output()
        .map_err(|e| format!("cannot run systemd-analyze: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || stderr.contains("vigil-sensor") {
        return Err(format!("systemd-analyze verify {units:?}:\n{stderr}"));
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
