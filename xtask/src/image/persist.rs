//! What the first boot makes lasting, as `cargo xtask image --check`
//! proves it in the `systemd-nspawn` root ([`super::container`]):
//!
//! - the sensor packages the image ships in `/usr/share/vigil/packages`
//!   are listed in the console's store after the first boot and served
//!   over HTTPS without login (the Add hosts page's downloads); a second
//!   boot adds nothing again, nor one the administrator removed. The check ships small stand-ins
//!   ([`stand_in_packages`]): the real `.deb` and tarball around the debug
//!   sensor are 20 MB each, and their install is `cargo xtask package`'s
//!   own check; the full image ships the release ones.
//! - one machine ID: the first boot's is kept on `/var` and written into
//!   every boot entry of the ESP (a directory here), including one an
//!   update wrote without it; the second boot, given the entry's
//!   `systemd.machine_id=` as a boot loader would, runs with that ID.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::container::Container;
use super::{Binaries, BUILD_DIR};
use crate::package::{capture, io};
use crate::Result;

/// The directory the check binds on `/boot/efi`.
pub fn esp_dir() -> PathBuf {
    Path::new(BUILD_DIR).join("check-esp")
}

/// The kept machine ID, relative to the data partition (`/var`).
const KEPT_ID: &str = "lib/vigil-machine-id/machine-id";

/// Small stand-ins for the sensor's `.deb` and tarball, named as
/// `cargo xtask package` names them (the store checks names, not content).
pub fn stand_in_packages() -> Result<Vec<PathBuf>> {
    let dir = Path::new(BUILD_DIR).join("check-packages");
    recreate(&dir)?;
    let mut made = Vec::new();
    for name in [
        "vigil-sensor_0.0.0~check_amd64.deb",
        "vigil-sensor-0.0.0~check-x86_64-linux.tar.gz",
    ] {
        let path = dir.join(name);
        let line = format!("stand-in for {name} (cargo xtask image --check)\n");
        fs::write(&path, line.repeat(2048)).map_err(|e| io(&path, e))?;
        made.push(path);
    }
    Ok(made)
}

/// An ESP as the image's: slot A's entry, written by the image's update
/// tool as the full build writes it (no machine ID yet).
pub fn make_esp(bins: &Binaries) -> Result<PathBuf> {
    let esp = esp_dir();
    recreate(&esp)?;
    write_entry(&esp, bins, "a", "vigil-a.conf")?;
    Ok(esp)
}

/// `vigil-update boot-entry` of `slot` into `loader/entries/FILE`.
fn write_entry(esp: &Path, bins: &Binaries, slot: &str, file: &str) -> Result<()> {
    let uuid = super::disk::PART_IDS[if slot == "a" { 1 } else { 2 }];
    let entry = capture(Command::new(&bins.update).args([
        "boot-entry",
        "--slot",
        slot,
        "--release",
        "1",
        "--partuuid",
        uuid,
    ]))?;
    let entries = esp.join("loader/entries");
    fs::create_dir_all(&entries).map_err(|e| io(&entries, e))?;
    fs::write(entries.join(file), entry + "\n").map_err(|e| io(&entries, e))
}

/// An update's entry for slot B with one try, as `vigil update apply`
/// writes it today (without the machine ID): the next boot must add it.
pub fn add_update_entry(esp: &Path, bins: &Binaries) -> Result<()> {
    write_entry(esp, bins, "b", "vigil-b+1.conf")
}

/// What a boot loader would add to init's command line for the check:
/// the `systemd.machine_id=` of slot A's entry (the other words name
/// partitions and consoles the container does not have).
pub fn boot_loader_words(esp: &Path) -> Result<Vec<String>> {
    let entry = esp.join("loader/entries/vigil-a.conf");
    let text = fs::read_to_string(&entry).map_err(|e| io(&entry, e))?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("options "))
        .flat_map(str::split_whitespace)
        .filter(|w| w.starts_with("systemd.machine_id="))
        .map(str::to_string)
        .collect())
}

/// After a boot: the store lists every shipped package with its SHA-256,
/// and each downloads over HTTPS without login, byte for byte.
pub fn expect_store(boot: &Container, data: &Path, shipped: &[PathBuf]) -> Result<()> {
    let index_path = data.join("packages/index.json");
    let index = fs::read_to_string(&index_path).map_err(|e| io(&index_path, e))?;
    let download = Path::new(BUILD_DIR).join("check-download");
    for file in shipped {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let sum = capture(Command::new("sha256sum").arg(file))?;
        let sum = sum.split_whitespace().next().unwrap_or_default();
        if !index.contains(&format!("\"name\": \"{name}\""))
            || !index.contains(&format!("\"sha256\": \"{sum}\""))
        {
            return Err(format!(
                "the store does not list the shipped {name} (sha256 {sum}):\n{index}"
            ));
        }
        let url = format!("https://127.0.0.1:8443/enroll/packages/{name}");
        let out = download.display().to_string();
        let code = boot.net_exec(&["curl", "-sk", "-o", &out, "-w", "%{http_code}", &url])?;
        let bytes = fs::read(&download).map_err(|e| io(&download, e))?;
        fs::remove_file(&download).map_err(|e| io(&download, e))?;
        if code != "200" || bytes != fs::read(file).map_err(|e| io(file, e))? {
            return Err(format!(
                "{url} answered {code} with {} bytes, not the shipped package",
                bytes.len()
            ));
        }
    }
    Ok(())
}

/// The administrator removes `file`'s package (through the running
/// server): the next boot must not add it back.
pub fn remove_package(boot: &Container, data: &Path, file: &Path) -> Result<()> {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    boot.exec(&[
        "vigil",
        "packages",
        "remove",
        &name,
        "--data",
        "/var/lib/vigil",
    ])?;
    expect_unlisted(data, file)
}

/// The store does not list `file`'s package.
pub fn expect_unlisted(data: &Path, file: &Path) -> Result<()> {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let index_path = data.join("packages/index.json");
    let index = fs::read_to_string(&index_path).map_err(|e| io(&index_path, e))?;
    if index.contains(&format!("\"name\": \"{name}\"")) {
        return Err(format!("the store lists the removed {name}:\n{index}"));
    }
    Ok(())
}

/// The boot runs with the appliance's machine ID: kept on `/var`, the
/// one in `/etc/machine-id`, and on every entry's command line (`want`:
/// the ID an earlier boot kept). Returns it.
pub fn expect_machine_id(
    boot: &Container,
    var: &Path,
    esp: &Path,
    want: Option<&str>,
) -> Result<String> {
    let kept_path = var.join(KEPT_ID);
    let kept = fs::read_to_string(&kept_path).map_err(|e| io(&kept_path, e))?;
    let kept = kept.trim().to_string();
    let running = boot.exec(&["cat", "/etc/machine-id"])?;
    if kept.len() != 32 || running.trim() != kept || want.is_some_and(|w| w != kept) {
        return Err(format!(
            "machine ID: kept {kept:?}, running {:?}, expected {want:?}",
            running.trim()
        ));
    }
    let entries = esp.join("loader/entries");
    let mut seen = 0;
    for e in fs::read_dir(&entries)
        .map_err(|e| io(&entries, e))?
        .flatten()
    {
        let text = fs::read_to_string(e.path()).map_err(|err| io(&e.path(), err))?;
        let word = format!("systemd.machine_id={kept}");
        let options = text
            .lines()
            .find(|l| l.starts_with("options "))
            .unwrap_or("");
        if options
            .split_whitespace()
            .filter(|w| w.starts_with("systemd.machine_id="))
            .ne([word.as_str()])
        {
            return Err(format!(
                "{} should carry {word} once:\n{text}",
                e.path().display()
            ));
        }
        seen += 1;
    }
    if seen == 0 {
        return Err(format!("no boot entries in {}", entries.display()));
    }
    Ok(kept)
}

fn recreate(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    fs::create_dir_all(dir).map_err(|e| io(dir, e))
}
