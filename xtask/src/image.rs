//! `cargo xtask image [--check]`: the appliance image (issue #18).
//!
//! The root is built by mmdebstrap from Debian 12 packages (the list in
//! `image/packages.txt`, the mirrors in apt's own
//! `/etc/apt/sources.list.d/debian.sources`), then the files under
//! `image/rootfs/` and the `vigil` and `vigil-update` binaries are laid
//! over it by [`customize`]; `image/README.md` says why mmdebstrap and not
//! mkosi. The full build ([`disk`]) makes a GPT disk of that root (raw and
//! qcow2) and boots it under QEMU ([`boot`]).
//!
//! `--check` ([`check`]) proves each part on a reduced root (no kernel, no
//! boot loader, the debug binaries `cargo xtask test` built): the units
//! verify and score, the nftables policy lets only its ports through in a
//! network namespace, the first-boot service runs once in a
//! `systemd-nspawn --boot` container and not again, and an update bundle
//! is applied through `vigil update` while a tampered one is refused.
//!
//! Everything large goes under `/var/cache/vigil/image-build/`.

mod boot;
mod check;
mod container;
mod disk;
mod enroll;
mod guest;
mod persist;
mod signing;
mod trial;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::package::{capture, io};
use crate::{prereq, repo_root, run, target_dir, Result};

pub use check::check_debug_build;

/// Where builds, roots and images go (outside the clone: disk is tight
/// and the trees are large).
pub const BUILD_DIR: &str = "/var/cache/vigil/image-build";

/// apt's own source list, so the image comes from the mirror the machine
/// already uses (a local mirror on an isolated build host).
const SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";

/// Documentation, manual pages and translations are not installed.
const DPKG_EXCLUDES: &[&str] = &[
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
];

/// Units enabled in every root (the full image adds none; SSH stays off).
const ENABLED_UNITS: &[&str] = &[
    "vigil.service",
    "vigil-first-boot.service",
    "vigil-issue.service",
    "vigil-report.service",
    "vigil-update-boot.service",
    "vigil-health.service",
    "vigil-packages.service",
    "vigil-machine-id.service",
    "nftables.service",
    "systemd-networkd.service",
];

/// Where the image ships the sensor packages, read-only; every boot
/// `vigil-packages.service` lists the new ones in the console's store.
pub const SHIPPED_PACKAGES: &str = "usr/share/vigil/packages";

/// The vigil user's fixed id (`image/rootfs/usr/lib/sysusers.d/vigil.conf`).
pub const VIGIL_UID: u32 = 990;

/// `cargo xtask image [--check]`.
pub fn image(args: &[String]) -> Result<()> {
    match args {
        [] => disk::build_and_boot(true),
        // Two builds compared for reproducibility need no boot.
        [flag] if flag == "--no-boot" => disk::build_and_boot(false),
        [flag] if flag == "--check" => check::check(),
        // Helpers the check runs inside network namespaces.
        [cmd, rest @ ..] if cmd == "__listen" => check::listen(rest),
        [cmd, rest @ ..] if cmd == "__probe" => check::probe(rest),
        _ => Err("usage: cargo xtask image [--check | --no-boot]".into()),
    }
}

/// The two binaries the appliance runs.
pub struct Binaries {
    /// `vigil`.
    pub vigil: PathBuf,
    /// `vigil-update`, next to it so `vigil update …` finds it.
    pub update: PathBuf,
}

impl Binaries {
    /// `vigil` and `vigil-update` of a cargo profile (`debug`, `release`),
    /// or from the directory `$VIGIL_IMAGE_BINARIES` when it is set (say,
    /// binaries built and stripped elsewhere); the second value says which.
    pub fn of(profile: &str) -> (Binaries, Option<PathBuf>) {
        let given = std::env::var_os("VIGIL_IMAGE_BINARIES").map(PathBuf::from);
        let dir = given.clone().unwrap_or_else(|| target_dir().join(profile));
        let bins = Binaries {
            vigil: dir.join("vigil"),
            update: dir.join("vigil-update"),
        };
        (bins, given)
    }
}

/// Lay the image's files over a freshly unpacked Debian root: the overlay
/// under `image/rootfs/`, the binaries, the vigil user, the banner link,
/// the enabled units. Used by the check and the full build alike, so both
/// prove the same root. A root booted by systemd-nspawn (`container`) has
/// no partitions to mount, so no `fstab`, and no link to wait for, so no
/// `systemd-networkd-wait-online` (its management address comes as a
/// credential). The updates' root of trust and the release number go to
/// `/usr/lib/vigil/update/` (read by `vigil-update init-appliance`), the
/// sensor `packages` to [`SHIPPED_PACKAGES`].
pub fn customize(
    root: &Path,
    bins: &Binaries,
    packages: &[PathBuf],
    container: bool,
) -> Result<()> {
    let signing = signing::Signing::open(&bins.update)?;
    let trust = root.join("usr/lib/vigil/update");
    fs::create_dir_all(&trust).map_err(|e| io(&trust, e))?;
    fs::copy(signing.root_json()?, trust.join("root.json")).map_err(|e| io(&trust, e))?;
    fs::write(trust.join("release"), format!("{}\n", signing.release()?))
        .map_err(|e| io(&trust, e))?;
    let overlay = repo_root().join("image/rootfs");
    run(Command::new("cp")
        .args(["-r", "--preserve=mode", "--no-target-directory"])
        .arg(&overlay)
        .arg(root))?;
    if container {
        fs::remove_file(root.join("etc/fstab")).map_err(|e| io(&root.join("etc/fstab"), e))?;
    }
    run(Command::new("chown")
        .args(["-R", "root:root"])
        .arg(root.join("usr/lib/vigil"))
        .arg(root.join("usr/lib/systemd/system")))?;
    for (src, name) in [(&bins.vigil, "vigil"), (&bins.update, "vigil-update")] {
        install_binary(src, &root.join("usr/bin").join(name))?;
    }
    ship_packages(root, packages)?;
    // Empty: on the read-only root systemd makes a transient id at boot,
    // until vigil-machine-id.service has put the appliance's on the
    // boot entries (image/README.md, "Machine ID").
    fs::write(root.join("etc/machine-id"), "").map_err(|e| io(root, e))?;
    // The ESP's mount point (a directory bound there in the check).
    fs::create_dir_all(root.join("boot/efi")).map_err(|e| io(root, e))?;
    let doc = root.join("usr/share/doc/vigil");
    fs::create_dir_all(&doc).map_err(|e| io(&doc, e))?;
    fs::copy(repo_root().join("image/README.md"), doc.join("README.md"))
        .map_err(|e| io(&doc, e))?;
    run(Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.display()))
        .arg(root.join("usr/lib/sysusers.d/vigil.conf")))?;
    // systemd-sysusers says why it could not create a user but exits 0.
    let passwd = fs::read_to_string(root.join("etc/passwd")).map_err(|e| io(root, e))?;
    if !passwd.contains(&format!("\nvigil:x:{VIGIL_UID}:{VIGIL_UID}:")) {
        return Err(format!(
            "systemd-sysusers did not create vigil ({VIGIL_UID})"
        ));
    }
    // /etc is read-only on the appliance: the banner lives in /run.
    let issue = root.join("etc/issue");
    let _ = fs::remove_file(&issue);
    std::os::unix::fs::symlink("../run/vigil/issue", &issue).map_err(|e| io(&issue, e))?;
    run(Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .arg("enable")
        .args(ENABLED_UNITS))?;
    if container {
        run(Command::new("systemctl")
            .arg(format!("--root={}", root.display()))
            .args(["mask", "systemd-networkd-wait-online.service"]))?;
    }
    // The data partition is mounted on /var: it starts empty and
    // systemd-tmpfiles creates what the system needs there.
    let var_lib = root.join("var/lib/vigil");
    fs::create_dir_all(&var_lib).map_err(|e| io(&var_lib, e))?;
    Ok(())
}

/// The sensor packages, root's and world-readable, in [`SHIPPED_PACKAGES`]
/// (the `vigil` user reads them to add them to its store).
fn ship_packages(root: &Path, packages: &[PathBuf]) -> Result<()> {
    let dir = root.join(SHIPPED_PACKAGES);
    fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    for package in packages {
        let name = package
            .file_name()
            .ok_or_else(|| format!("{} is not a file", package.display()))?;
        let dest = dir.join(name);
        fs::copy(package, &dest).map_err(|e| io(package, e))?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o644)).map_err(|e| io(&dest, e))?;
    }
    Ok(())
}

/// A hard link when the binary is on the same file system (the debug
/// `vigil` is over 500 MB), else a copy; mode 0755 either way.
fn install_binary(src: &Path, dest: &Path) -> Result<()> {
    if !src.is_file() {
        return Err(format!("{} is not built", src.display()));
    }
    let _ = fs::remove_file(dest);
    if fs::hard_link(src, dest).is_err() {
        fs::copy(src, dest).map_err(|e| io(dest, e))?;
    }
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755)).map_err(|e| io(dest, e))
}

/// A Debian root of `packages` as a tarball, cached per day and package
/// list under `name` in the same cache as the package check's roots
/// (other days' and lists' deleted).
pub fn debian_root(name: &str, packages: &[String], epoch: Option<&str>) -> Result<PathBuf> {
    let dir = PathBuf::from(crate::package::ROOT_CACHE);
    fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let today = capture(Command::new("date").args(["-u", "+%Y%m%d"]))?;
    let file = format!("{name}-{today}-{:016x}.tar", fnv1a(&packages.join(",")));
    let path = dir.join(&file);
    if path.is_file() {
        return Ok(path);
    }
    for entry in fs::read_dir(&dir).map_err(|e| io(&dir, e))?.flatten() {
        let old = entry.file_name().to_string_lossy().into_owned();
        // `NAME-<date>…` only: `bookworm-appliance-check-…` is another root.
        let same_root = old
            .strip_prefix(&format!("{name}-"))
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
        if same_root && old != file {
            let _ = fs::remove_file(entry.path());
        }
    }
    eprintln!("xtask: building the Debian root {name} with mmdebstrap (cached for today)");
    let partial = dir.join(format!("{file}.partial.tar"));
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--variant=minbase", "--quiet"])
        .arg(format!("--include={}", packages.join(",")));
    for opt in DPKG_EXCLUDES {
        cmd.arg(format!("--dpkgopt={opt}"));
    }
    if let Some(epoch) = epoch {
        cmd.env("SOURCE_DATE_EPOCH", epoch);
    }
    cmd.arg("bookworm").arg(&partial);
    if Path::new(SOURCES).is_file() {
        cmd.arg(SOURCES);
    }
    run(&mut cmd).map_err(|e| format!("{e}\n  mmdebstrap needs the Debian mirror apt uses"))?;
    fs::rename(&partial, &path).map_err(|e| io(&path, e))?;
    Ok(path)
}

/// FNV-1a (64 bit): a package list's short, stable name in the cache.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The package list in `image/NAME`: one per line, `#` comments.
pub fn package_list(name: &str) -> Result<Vec<String>> {
    let path = repo_root().join("image").join(name);
    let text = fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Unpack a root tarball into `root`, replacing what was there.
pub fn unpack(tarball: &Path, root: &Path) -> Result<()> {
    if root.exists() {
        fs::remove_dir_all(root).map_err(|e| io(root, e))?;
    }
    fs::create_dir_all(root).map_err(|e| io(root, e))?;
    run(Command::new("tar")
        .args(["--numeric-owner", "-xf"])
        .arg(tarball)
        .arg("-C")
        .arg(root))
}

/// Tools a step needs: present, or (under `CI`) an error, or a printed
/// skip. `Ok(false)` means skip.
pub fn tools_present(step: &str, packages: &[&str], commands: &[&str]) -> Result<bool> {
    if prereq::is_root() {
        prereq::ensure_packages(packages)?;
    }
    let missing: Vec<&str> = commands
        .iter()
        .copied()
        .filter(|c| !command_exists(c))
        .collect();
    let why = if !prereq::is_root() {
        Some(format!("{step} needs root (namespaces, chroot)"))
    } else if !missing.is_empty() {
        Some(format!("{step} needs {}", missing.join(", ")))
    } else {
        None
    };
    match why {
        None => Ok(true),
        Some(why) if std::env::var_os("CI").is_some() => Err(format!("{why}; CI must have it")),
        Some(why) => {
            eprintln!("xtask: skipping: {why}");
            Ok(false)
        }
    }
}

fn command_exists(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(name).is_file())
}
