//! The reduced root booted by `systemd-nspawn --boot` for `cargo xtask
//! image --check`: read-only, its own network namespace (loopback only), a
//! directory as the data partition on `/var` and another as the ESP on
//! `/boot/efi`. The words a boot loader would put on the kernel command
//! line are given to the container's init, where systemd reads them
//! instead (it reads PID 1's arguments in a container).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BUILD_DIR;
use crate::package::capture;
use crate::Result;

/// A `systemd-nspawn --boot` of the reduced root: read-only, its own
/// network namespace (loopback only), `var` as the data partition.
pub(super) struct Container {
    nspawn: Child,
    leader: u32,
}

impl Container {
    /// Boot `root` with `var` on `/var`, `esp` on `/boot/efi` and
    /// `cmdline` (what a boot loader would pass) as init's arguments.
    pub(super) fn boot(
        root: &Path,
        var: &Path,
        esp: &Path,
        cmdline: &[String],
    ) -> Result<Container> {
        let log = fs::File::create(Path::new(BUILD_DIR).join("check-nspawn.log"))
            .map_err(|e| format!("nspawn log: {e}"))?;
        let mut nspawn = Command::new("systemd-nspawn")
            .args([
                "--quiet",
                "--register=no",
                "--keep-unit",
                "--read-only",
                "--private-network",
            ])
            .args(["--boot", "--console=passive", "--machine=vigil-image-check"])
            .arg(format!("--directory={}", root.display()))
            .arg(format!("--bind={}:/var", var.display()))
            .arg(format!("--bind={}:/boot/efi", esp.display()))
            .arg("--set-credential=vigil.management_address:127.0.0.1")
            .args(cmdline)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start systemd-nspawn: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(leader) = leader_of(nspawn.id()) {
                return Ok(Container { nspawn, leader });
            }
            if let Ok(Some(status)) = nspawn.try_wait() {
                return Err(format!(
                    "systemd-nspawn exited ({status}); see {BUILD_DIR}/check-nspawn.log"
                ));
            }
            if Instant::now() > deadline {
                let _ = nspawn.kill();
                return Err("the container's init did not start".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A command inside the container (all its namespaces, its root).
    pub(super) fn exec(&self, args: &[&str]) -> Result<String> {
        capture(
            Command::new("nsenter")
                .arg(format!("--target={}", self.leader))
                .args(["-m", "-u", "-i", "-n", "-p", "-r", "-w", "--"])
                .args(args),
        )
    }

    /// A host command inside the container's network namespace only.
    pub(super) fn net_exec(&self, args: &[&str]) -> Result<String> {
        capture(
            Command::new("nsenter")
                .arg(format!("--target={}", self.leader))
                .args(["-n", "--"])
                .args(args),
        )
    }

    /// A path inside the running container, seen from the host.
    pub(super) fn root_path(&self, rel: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.leader)).join(rel)
    }

    /// Wait for the boot to finish; the state it reached.
    pub(super) fn wait_running(&self) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            // Exits non-zero until "running", saying the state on stdout.
            let state = Command::new("nsenter")
                .arg(format!("--target={}", self.leader))
                .args(["-m", "-u", "-i", "-n", "-p", "-r", "-w", "--"])
                .args(["systemctl", "is-system-running"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            match state.trim() {
                "running" => return Ok("running".into()),
                "degraded" => {
                    let failed = self.exec(&["systemctl", "--failed", "--no-legend"]);
                    return Err(format!("boot degraded: {failed:?}"));
                }
                _ if Instant::now() > deadline => {
                    return Err(format!("boot did not finish in 90 s (state {state:?})"))
                }
                _ => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    }

    /// Wait until `unit` is active and the console listens on 8443.
    pub(super) fn wait_active(&self, unit: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(s) = self.exec(&["systemctl", "is-active", unit]) {
                if s.trim() == "active" && self.net_exec(&["ss", "-Hlnt"])?.contains(":8443") {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let status = self.exec(&["systemctl", "status", "--no-pager", "-n", "30", unit]);
        Err(format!("{unit} did not come up: {status:?}"))
    }

    /// Power the container off and wait for systemd-nspawn to exit.
    pub(super) fn poweroff(mut self) -> Result<()> {
        let _ = self.exec(&["systemctl", "poweroff"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err("the container did not power off in 30 s".into())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Ok(None) = self.nspawn.try_wait() {
            // The container's init first: killing systemd-nspawn alone
            // would leave the container running, orphaned.
            let _ = Command::new("kill")
                .args(["-KILL", &self.leader.to_string()])
                .status();
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
    }
}

/// The container's init: the process named `systemd` among the
/// descendants of systemd-nspawn.
fn leader_of(nspawn: u32) -> Option<u32> {
    let mut queue = vec![nspawn];
    while let Some(pid) = queue.pop() {
        let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        for c in children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
        {
            let comm = fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default();
            if comm.trim() == "systemd" {
                return Some(c);
            }
            queue.push(c);
        }
    }
    None
}
