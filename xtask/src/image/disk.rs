//! The full image: the release binaries on the Debian root of
//! `image/packages.txt`, laid out as a GPT disk (raw and qcow2), then
//! booted under QEMU ([`super::boot`]).
//!
//! Every file system is made from a directory by its own mkfs, without
//! loop devices or mounts, so the build needs no kernel support beyond a
//! chroot, and fixed UUIDs, labels, hash seeds and times make it
//! reproducible. Layout (1 MiB aligned):
//!
//! | # | label | type | size | |
//! |---|---|---|---|---|
//! | 1 | `vigil-esp` | EFI system | 256 MiB | systemd-boot, kernel + initrd per slot |
//! | 2 | `vigil-root-a` | Linux root (x86-64) | root + 25 % | the booted slot, mounted read-only |
//! | 3 | `vigil-root-b` | Linux root (x86-64) | same | the update slot, empty at first |
//! | 4 | `vigil-data` | Linux variable data | 512 MiB | `/var`: `/var/lib/vigil`, the journal; grows |

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::{customize, debian_root, package_list, tools_present, unpack, Binaries, BUILD_DIR};
use crate::package::{capture, io, source_date_epoch};
use crate::{cargo, run, Result};

/// GPT partition type GUIDs (Discoverable Partitions Specification).
const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const ROOT_TYPE: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
const VAR_TYPE: &str = "4D21B016-B534-45C2-A9FB-5C16E091FD2D";

/// Fixed identities, so two builds of one commit are the same bytes.
const DISK_ID: &str = "5669676C-0000-4000-8000-000000000000";
pub(super) const PART_IDS: [&str; 4] = [
    "5669676C-0000-4000-8000-000000000001",
    "5669676C-0000-4000-8000-000000000002",
    "5669676C-0000-4000-8000-000000000003",
    "5669676C-0000-4000-8000-000000000004",
];
/// Room for two slots' kernel and initrd (~45 MB each with Debian's
/// generic initrd) and the boot loader.
const ESP_MIB: u64 = 256;

/// Kernel module trees a rack appliance never loads (graphics beyond the
/// firmware's frame buffer, sound, cameras, radios, lab and staging
/// drivers): about 130 MB of the 384 MB the generic kernel installs.
const MODULES_NOT_NEEDED: &[&str] = &[
    "kernel/drivers/gpu",
    "kernel/drivers/media",
    "kernel/sound",
    "kernel/drivers/net/wireless",
    "kernel/net/wireless",
    "kernel/net/mac80211",
    "kernel/drivers/bluetooth",
    "kernel/net/bluetooth",
    "kernel/drivers/staging",
    "kernel/drivers/iio",
    "kernel/drivers/comedi",
    "kernel/drivers/isdn",
    "kernel/drivers/infiniband",
    "kernel/lib/test_bpf.ko",
];
const DATA_MIB: u64 = 512;

/// What a full build produced.
pub struct Image {
    /// The raw disk.
    pub raw: PathBuf,
    /// The same disk as compressed qcow2.
    pub qcow2: PathBuf,
    /// Seconds the build took (without the release compile).
    pub build_secs: f64,
    /// The update bundles the boot test applies (when it runs).
    pub trials: Option<super::trial::Bundles>,
}

/// `cargo xtask image [--no-boot]`: release build, image, boot test.
pub fn build_and_boot(boot: bool) -> Result<()> {
    let tools = [
        "mmdebstrap",
        "mkfs.ext4",
        "mkfs.vfat",
        "mcopy",
        "sfdisk",
        "qemu-img",
        "qemu-system-x86_64",
    ];
    let packages = [
        "mmdebstrap",
        "e2fsprogs",
        "dosfstools",
        "mtools",
        "fdisk",
        "qemu-utils",
        "qemu-system-x86",
        "ovmf",
    ];
    if !tools_present("the image build", &packages, &tools)? {
        return Err("the image build cannot run here".into());
    }
    let (bins, given) = Binaries::of("release");
    if let Some(dir) = given {
        eprintln!(
            "xtask: image with the binaries in {} (VIGIL_IMAGE_BINARIES)",
            dir.display()
        );
        let image = build(&bins, &given_packages(&dir)?, boot)?;
        return if boot {
            super::boot::boot_test(&image)
        } else {
            Ok(())
        };
    }
    // Release binaries in the release profile's own directory: no dev
    // build is disturbed (it still compiles RocksDB once, ~20 minutes on
    // 2 cores, and holds the target dir's lock meanwhile). The sensor too:
    // its release packages go into the image.
    let release = cargo();
    let mut nice = Command::new("nice");
    nice.args(["-n", "10"])
        .arg(release.get_program())
        .args([
            "build",
            "--release",
            "-p",
            "vigil-appliance",
            "--bin",
            "vigil",
            "-p",
            "vigil-update",
            "--bin",
            "vigil-update",
            "-p",
            "vigil-sensor",
            "--bin",
            "vigil-sensor",
        ])
        .current_dir(crate::repo_root());
    for (k, v) in release.get_envs() {
        if let Some(v) = v {
            nice.env(k, v);
        }
    }
    run(&mut nice)?;
    let packages = crate::package::build(crate::package::Flavour::Release)?;
    let image = build(&bins, &[packages.deb, packages.tarball], boot)?;
    if boot {
        super::boot::boot_test(&image)?;
    }
    Ok(())
}

/// The sensor packages beside binaries given in `dir`
/// (`VIGIL_IMAGE_BINARIES`), else the release ones `cargo xtask package`
/// left in `target/packages/`.
fn given_packages(dir: &Path) -> Result<Vec<PathBuf>> {
    let find = |dir: &Path| -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                name.starts_with("vigil-sensor")
                    && (name.ends_with(".deb") || name.ends_with(".tar.gz"))
            })
            .collect();
        found.sort();
        found
    };
    let mut found = find(dir);
    if found.is_empty() {
        found = find(&crate::repo_root().join("target/packages"));
    }
    if found.is_empty() {
        return Err(format!(
            "no sensor packages in {} or target/packages: run `cargo xtask package` (the image ships them)",
            dir.display()
        ));
    }
    Ok(found)
}

/// Build the disk around `bins` with the sensor `packages`; with `trials`,
/// also the update bundles the boot test applies (a broken release and a
/// good one).
pub fn build(bins: &Binaries, packages: &[PathBuf], trials: bool) -> Result<Image> {
    let started = Instant::now();
    let epoch = source_date_epoch();
    let out = PathBuf::from(BUILD_DIR);
    let tarball = debian_root(
        "bookworm-appliance",
        &package_list("packages.txt")?,
        Some(&epoch),
    )?;
    let root = out.join("root");
    unpack(&tarball, &root)?;
    customize(&root, bins, packages, false)?;
    appliance_only(&root)?;
    let esp = out.join("esp.img");
    make_esp(&root, &esp, &epoch, bins)?;
    clamp_times(&root, &epoch)?;
    let root_img = out.join("root-a.img");
    let root_mib = make_ext4(&root_img, "vigil-root-a", Some(&root), 0, &epoch, 1)?;
    clamp_inode_times(&root_img, &epoch)?;
    let trials = if trials {
        Some(super::trial::bundles(&root, root_mib, bins, &epoch)?)
    } else {
        None
    };
    fs::remove_dir_all(&root).map_err(|e| io(&root, e))?;
    let data_img = out.join("data.img");
    make_ext4(&data_img, "vigil-data", None, DATA_MIB, &epoch, 3)?;
    // Per partition, so two builds show where they differ.
    for part in [&esp, &root_img, &data_img] {
        println!("{}", capture(Command::new("sha256sum").arg(part))?);
    }
    let raw = out.join("vigil-appliance.raw");
    assemble(&raw, &esp, &root_img, root_mib, &data_img)?;
    for part in [&esp, &root_img, &data_img] {
        fs::remove_file(part).map_err(|e| io(part, e))?;
    }
    let qcow2 = out.join("vigil-appliance.qcow2");
    let _ = fs::remove_file(&qcow2);
    run(Command::new("qemu-img")
        .args(["convert", "-c", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow2))?;
    let build_secs = started.elapsed().as_secs_f64();
    for f in [&raw, &qcow2] {
        let size = fs::metadata(f).map_err(|e| io(f, e))?.len();
        let used = capture(Command::new("du").args(["-k"]).arg(f))?;
        let used_kib: u64 = used
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let sum = capture(Command::new("sha256sum").arg(f))?;
        println!(
            "{}  {:.0} MiB ({:.0} MiB allocated)  sha256 {}",
            f.display(),
            size as f64 / 1048576.0,
            used_kib as f64 / 1024.0,
            sum.split_whitespace().next().unwrap_or_default()
        );
    }
    println!("image built in {build_secs:.0} s (root slot {root_mib} MiB)");
    Ok(Image {
        raw,
        qcow2,
        build_secs,
        trials,
    })
}

/// What only the disk image has: SSH off, no package manager state
/// under the data mount, a hostname.
fn appliance_only(root: &Path) -> Result<()> {
    run(Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .args(["disable", "ssh.service"]))?;
    // Every appliance made its own host keys at first start, not at build.
    for e in fs::read_dir(root.join("etc/ssh"))
        .map_err(|e| io(root, e))?
        .flatten()
    {
        if e.file_name().to_string_lossy().starts_with("ssh_host_") {
            fs::remove_file(e.path()).map_err(|err| io(&e.path(), err))?;
        }
    }
    fs::write(root.join("etc/hostname"), "vigil\n").map_err(|e| io(root, e))?;
    // The data partition is mounted over /var; what the packages left
    // there would be hidden anyway.
    let var = root.join("var");
    for e in fs::read_dir(&var).map_err(|e| io(&var, e))?.flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            fs::remove_dir_all(&p).map_err(|err| io(&p, err))?;
        } else {
            fs::remove_file(&p).map_err(|err| io(&p, err))?;
        }
    }
    trim_modules(root)
}

/// Remove [`MODULES_NOT_NEEDED`] and rebuild the module index. The
/// initrd keeps its own copies (built by the package, it only grows the
/// ESP by a few MB).
fn trim_modules(root: &Path) -> Result<()> {
    let modules = root.join("usr/lib/modules");
    for kernel in fs::read_dir(&modules)
        .map_err(|e| io(&modules, e))?
        .flatten()
    {
        for tree in MODULES_NOT_NEEDED {
            let p = kernel.path().join(tree);
            if p.is_dir() {
                fs::remove_dir_all(&p).map_err(|e| io(&p, e))?;
            } else if p.is_file() {
                fs::remove_file(&p).map_err(|e| io(&p, e))?;
            }
        }
        let version = kernel.file_name().to_string_lossy().into_owned();
        // The root's own depmod: the build host need not have kmod.
        run(Command::new("chroot").arg(root).args(["depmod", &version]))?;
    }
    Ok(())
}

/// The ESP: systemd-boot and slot A's kernel, initrd and boot entry
/// (written by `vigil-update boot-entry`, the same code that writes an
/// update's). No `default` in `loader.conf`: the entries' `sort-key` and
/// `version` make the newest bootable release the default, and boot
/// counting sorts one without tries left last.
fn make_esp(root: &Path, esp: &Path, epoch: &str, bins: &Binaries) -> Result<()> {
    let boot = root.join("boot");
    let pick = |prefix: &str| -> Result<PathBuf> {
        fs::read_dir(&boot)
            .map_err(|e| io(&boot, e))?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .ok_or_else(|| format!("no {prefix}* in the root's /boot"))
    };
    let staging = Path::new(BUILD_DIR).join("esp");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))?;
    }
    let files: [(PathBuf, &str); 3] = [
        (
            root.join("usr/lib/systemd/boot/efi/systemd-bootx64.efi"),
            "EFI/BOOT/BOOTX64.EFI",
        ),
        (pick("vmlinuz-")?, "vigil-a/vmlinuz"),
        (pick("initrd.img-")?, "vigil-a/initrd.img"),
    ];
    for (src, dest) in &files {
        let d = staging.join(dest);
        fs::create_dir_all(d.parent().expect("has a parent")).map_err(|e| io(&d, e))?;
        fs::copy(src, &d).map_err(|e| io(src, e))?;
    }
    let entries = staging.join("loader/entries");
    fs::create_dir_all(&entries).map_err(|e| io(&entries, e))?;
    fs::write(staging.join("loader/loader.conf"), "timeout 0\neditor no\n")
        .map_err(|e| io(&staging, e))?;
    let release =
        fs::read_to_string(root.join("usr/lib/vigil/update/release")).map_err(|e| io(root, e))?;
    let entry = capture(Command::new(&bins.update).args([
        "boot-entry",
        "--slot",
        "a",
        "--release",
        release.trim(),
        "--partuuid",
        PART_IDS[1],
    ]))?;
    fs::write(entries.join("vigil-a.conf"), entry + "\n").map_err(|e| io(&entries, e))?;
    clamp_times(&staging, epoch)?;
    let _ = fs::remove_file(esp);
    run(Command::new("mkfs.vfat")
        .args([
            "-C",
            "-F",
            "32",
            "-n",
            "VIGIL-ESP",
            "-i",
            "5669674c",
            "--invariant",
        ])
        .arg(esp)
        .arg((ESP_MIB * 1024).to_string()))?;
    run(Command::new("mcopy")
        .env("SOURCE_DATE_EPOCH", epoch)
        .args(["-s", "-m", "-i"])
        .arg(esp)
        .arg(staging.join("EFI"))
        .arg(staging.join("loader"))
        .arg(staging.join("vigil-a"))
        .arg("::"))?;
    fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))
}

/// Every file's times set to the commit's (mkfs copies them).
fn clamp_times(dir: &Path, epoch: &str) -> Result<()> {
    run(Command::new("find")
        .arg(dir)
        .args(["-exec", "touch", "--no-dereference", "--date"])
        .arg(format!("@{epoch}"))
        .args(["{}", "+"]))
}

/// `mkfs.ext4 -d` copies each file's ctime (which `touch` cannot set) and
/// its atime (which reading it during the build moved): set both to the
/// epoch in every used inode. `-d` allocates inodes in order from 1, so
/// the used ones are 1 up to the count in use.
fn clamp_inode_times(img: &Path, epoch: &str) -> Result<()> {
    let header = capture(Command::new("dumpe2fs").arg("-h").arg(img))?;
    let field = |name: &str| -> Result<u64> {
        header
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim_start_matches(':').trim().parse().ok())
            .ok_or_else(|| format!("dumpe2fs: no {name} for {}", img.display()))
    };
    let used = field("Inode count")? - field("Free inodes")?;
    let mut cmds = String::new();
    for inode in 1..=used {
        cmds.push_str(&format!(
            "sif <{inode}> ctime @{epoch}\nsif <{inode}> atime @{epoch}\n"
        ));
    }
    let file = img.with_extension("debugfs");
    fs::write(&file, cmds).map_err(|e| io(&file, e))?;
    // The fake time also keeps the superblock's last-write time fixed.
    run(Command::new("debugfs")
        .env("E2FSPROGS_FAKE_TIME", epoch)
        .args(["-w", "-f"])
        .arg(&file)
        .arg(img)
        .stdout(std::process::Stdio::null()))?;
    fs::remove_file(&file).map_err(|e| io(&file, e))?;
    let check = Command::new("e2fsck")
        .args(["-fn"])
        .arg(img)
        .output()
        .map_err(|e| format!("e2fsck: {e}"))?;
    if !check.status.success() {
        return Err(format!(
            "e2fsck after setting inode times:\n{}",
            String::from_utf8_lossy(&check.stdout)
        ));
    }
    Ok(())
}

/// An ext4 image of `from` (sized to it plus a quarter, or `mib` when
/// given), or an empty one of `mib`. Returns its size in MiB.
pub(super) fn make_ext4(
    img: &Path,
    label: &str,
    from: Option<&Path>,
    mib: u64,
    epoch: &str,
    n: usize,
) -> Result<u64> {
    let mib = match from {
        Some(dir) if mib == 0 => {
            let kib = capture(Command::new("du").args(["-sk", "--apparent-size"]).arg(dir))?;
            let kib: u64 = kib
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            (kib * 5 / 4 / 1024 + 64).div_ceil(64) * 64
        }
        _ => mib,
    };
    let _ = fs::remove_file(img);
    let mut cmd = Command::new("mkfs.ext4");
    cmd.env("E2FSPROGS_FAKE_TIME", epoch)
        .args(["-q", "-F", "-L", label, "-U"])
        .arg(PART_IDS[n].to_lowercase())
        .arg("-E")
        .arg(format!(
            "hash_seed={},root_owner=0:0",
            PART_IDS[n].to_lowercase()
        ))
        .args(["-b", "4096"]);
    if let Some(dir) = from {
        cmd.arg("-d").arg(dir);
    }
    cmd.arg(img).arg(format!("{mib}M"));
    run(&mut cmd)?;
    Ok(mib)
}

/// The GPT disk from its partition images; slot B is left empty (zeros,
/// sparse in the raw file, absent from the qcow2).
fn assemble(raw: &Path, esp: &Path, root: &Path, root_mib: u64, data: &Path) -> Result<()> {
    let sizes = [ESP_MIB, root_mib, root_mib, DATA_MIB];
    let total = 1 + sizes.iter().sum::<u64>() + 1;
    let _ = fs::remove_file(raw);
    run(Command::new("truncate")
        .arg(format!("--size={total}M"))
        .arg(raw))?;
    let names = ["vigil-esp", "vigil-root-a", "vigil-root-b", "vigil-data"];
    let types = [ESP_TYPE, ROOT_TYPE, ROOT_TYPE, VAR_TYPE];
    let mut script = format!("label: gpt\nlabel-id: {DISK_ID}\nunit: sectors\nfirst-lba: 2048\n");
    let mut start = 1u64;
    let mut starts = Vec::new();
    for i in 0..4 {
        script.push_str(&format!(
            "start={}, size={}, type={}, uuid={}, name=\"{}\"\n",
            start * 2048,
            sizes[i] * 2048,
            types[i],
            PART_IDS[i],
            names[i]
        ));
        starts.push(start);
        start += sizes[i];
    }
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(raw)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run sfdisk: {e}"))?;
    use std::io::Write;
    sfdisk
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| format!("sfdisk: {e}"))?;
    let status = sfdisk.wait().map_err(|e| format!("sfdisk: {e}"))?;
    if !status.success() {
        return Err(format!("sfdisk failed ({status}) on:\n{script}"));
    }
    for (part, at) in [(esp, starts[0]), (root, starts[1]), (data, starts[3])] {
        run(Command::new("dd")
            .arg(format!("if={}", part.display()))
            .arg(format!("of={}", raw.display()))
            .args(["bs=1M", "conv=notrunc,sparse", "status=none"])
            .arg(format!("seek={at}")))?;
    }
    Ok(())
}
