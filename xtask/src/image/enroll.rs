//! A sensor enrolled from the `.deb` against the booted appliance: a
//! fresh Debian root (the package check's mmdebstrap minbase) on the
//! host, the debug `.deb` installed with dpkg, `vigil-sensor enroll` with
//! the token and CA fingerprint the appliance gives, and the sensor run
//! in that root (chroot: the host's network, so QEMU's forward of the
//! QUIC port reaches the guest). The appliance must then list it online.
//! A second QEMU guest would prove no more for several minutes of TCG.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::guest::Agent;
use super::BUILD_DIR;
use crate::package::{self, capture, io, Flavour};
use crate::Result;

/// The sensor process in its root, killed on drop.
struct Sensor(Child);

impl Drop for Sensor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Enroll and run a sensor against the appliance at `quic` (host side of
/// the forward); returns the seconds from enroll to "Online".
pub fn sensor_online(agent: &mut Agent, quic: &str) -> Result<f64> {
    let long = Duration::from_secs(120);
    let fingerprint = agent.ok("cat /var/lib/vigil/ca.sha256", long)?;
    let created = agent.ok("runuser -u vigil -- vigil token create --ttl 1h", long)?;
    let token = created
        .lines()
        .find_map(|l| l.strip_prefix("token:"))
        .map(str::trim)
        .ok_or_else(|| format!("no token in:\n{created}"))?
        .to_string();
    let packages = package::build(Flavour::DebugCheck)?;
    let root = PathBuf::from(BUILD_DIR).join("sensor-root");
    package::fresh_root(&package::debian_root_tarball()?, &root)?;
    let deb = packages.deb.file_name().ok_or("no .deb name")?;
    fs::copy(&packages.deb, root.join("tmp").join(deb)).map_err(|e| io(&root, e))?;
    chroot(
        &root,
        &["dpkg", "-i", &format!("/tmp/{}", deb.to_string_lossy())],
    )?;
    let token_file = root.join("tmp/token");
    fs::write(&token_file, &token).map_err(|e| io(&token_file, e))?;
    let started = Instant::now();
    let enrolled = chroot(
        &root,
        &[
            "vigil-sensor",
            "enroll",
            "--appliance",
            quic,
            "--token-file",
            "/tmp/token",
            "--ca-sha256",
            fingerprint.trim(),
        ],
    )?;
    eprintln!(
        "xtask: boot test: sensor from the .deb: {}",
        enrolled.trim()
    );
    let log = root.join("tmp/sensor.log");
    let _sensor = Sensor(
        Command::new("chroot")
            .arg(&root)
            .args(["vigil-sensor", "run", "--config", "/etc/vigil/sensor.toml"])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).map_err(|e| io(&log, e))?)
            .stderr(Stdio::from(
                fs::File::options()
                    .append(true)
                    .open(&log)
                    .map_err(|e| io(&log, e))?,
            ))
            .spawn()
            .map_err(|e| format!("cannot start the sensor: {e}"))?,
    );
    loop {
        let list = agent.ok("runuser -u vigil -- vigil sensor list", long)?;
        if list.lines().skip(1).any(|l| l.contains("Online")) {
            eprintln!("xtask: boot test: the appliance lists the sensor:\n{list}");
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(180) {
            let tail = fs::read_to_string(&log).unwrap_or_default();
            return Err(format!(
                "the sensor is not online after 3 min:\n{list}\nsensor log:\n{tail}"
            ));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Remove the sensor's root (nothing is mounted in it).
pub fn clean() -> Result<()> {
    let root = PathBuf::from(BUILD_DIR).join("sensor-root");
    if root.exists() {
        fs::remove_dir_all(&root).map_err(|e| io(&root, e))?;
    }
    Ok(())
}

fn chroot(root: &Path, args: &[&str]) -> Result<String> {
    capture(Command::new("chroot").arg(root).args(args))
        .map_err(|e| format!("in the sensor root, {}: {e}", args.join(" ")))
}
