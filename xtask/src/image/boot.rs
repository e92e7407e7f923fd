//! Booting the full image under QEMU (KVM when `/dev/kvm` opens, else
//! TCG) through UEFI (OVMF) and systemd-boot, on a throw-away overlay so
//! the image itself stays as built, and checking it from outside: the
//! console answers over HTTPS on the management address (QEMU's user
//! network forwards a host port to it), the banner on the serial console
//! carries the CA fingerprint, and `vigil-report.service` lists what
//! listens and the live hardening score. Then ([`super::trial`]) a
//! sensor enrolls from the `.deb`, and updates are applied in the guest
//! and the machine is powered on again after each reboot (QEMU runs with
//! `-no-reboot`, so a reboot is the process ending).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::disk::Image;
use super::BUILD_DIR;
use crate::package::{capture, io};
use crate::{run, Result};

/// Host ports forwarded to the guest's console and QUIC ports.
const HTTPS_FWD: u16 = 18443;
/// The QUIC forward, as the sensor's `--appliance` names it.
pub const QUIC_FWD: &str = "127.0.0.1:14433";
/// The address QEMU's user network gives the guest by DHCP.
const GUEST_IP: &str = "10.0.2.15";

/// Boot the image and check it; prints the figures for BENCHMARKS.md.
pub fn boot_test(image: &Image) -> Result<()> {
    let dir = PathBuf::from(BUILD_DIR).join("boot-test");
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
    }
    fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let disk = dir.join("overlay.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&image.qcow2)
        .arg(&disk))?;
    let vars = dir.join("OVMF_VARS.fd");
    fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).map_err(|e| io(&vars, e))?;
    let kvm = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let mut machine = Machine {
        dir: dir.clone(),
        disk,
        vars,
        sticks: image
            .trials
            .as_ref()
            .map(|t| t.sticks())
            .unwrap_or_default(),
        kvm,
    };
    let console = machine.console(1);
    let (vm, started) = start(&mut machine)?;
    let kvm = machine.kvm;
    let report = wait_report(&console, Duration::from_secs(if kvm { 180 } else { 900 }))?;
    let boot_secs = started.elapsed().as_secs_f64();
    let https = Instant::now();
    let code = loop {
        let code = capture(Command::new("curl").args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            &format!("https://127.0.0.1:{HTTPS_FWD}/"),
        ]))
        .unwrap_or_default();
        if code.starts_with('2') || code.starts_with('3') || https.elapsed().as_secs() > 60 {
            break code;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    if !(code.starts_with('2') || code.starts_with('3')) {
        return Err(format!("the console over HTTPS answered {code:?}"));
    }
    let log =
        String::from_utf8_lossy(&fs::read(&console).map_err(|e| io(&console, e))?).into_owned();
    let fingerprint_shown = log.contains("CA fingerprint:   sha256 ");
    if !fingerprint_shown || !log.contains(&format!("https://{GUEST_IP}:8443/")) {
        return Err(format!(
            "the console banner lacks the UI address or the CA fingerprint; see {}",
            console.display()
        ));
    }
    let listeners: String = report
        .lines()
        .filter_map(|l| l.strip_prefix("listen: "))
        .map(|l| {
            let (proto, local) = l.split_once(' ').unwrap_or((l, ""));
            format!("{proto} LISTEN 0 0 {local} *\n")
        })
        .collect();
    only_listeners(&listeners, GUEST_IP)?;
    let field = |name: &str| {
        report
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or("?")
            .trim()
            .to_string()
    };
    let exposure = field("exposure: ");
    let trial = match &image.trials {
        Some(bundles) => Some(super::trial::run(&machine, vm, bundles)?),
        None => None,
    };
    let raw_mib = fs::metadata(&image.raw)
        .map_err(|e| io(&image.raw, e))?
        .len()
        / 1048576;
    let qcow_mib = fs::metadata(&image.qcow2)
        .map_err(|e| io(&image.qcow2, e))?
        .len()
        / 1048576;
    println!("| figure | value |\n| --- | --- |");
    println!(
        "| image build (without the release compile) | {:.0} s |",
        image.build_secs
    );
    println!("| raw disk / qcow2 (compressed) | {raw_mib} MiB / {qcow_mib} MiB |");
    println!("| accelerator | {} |", if kvm { "KVM" } else { "TCG" });
    println!("| power-on to report on the console | {boot_secs:.1} s |");
    println!("| vigil.service exposure (live) | {exposure} |");
    println!("| HTTPS console | {code} |");
    println!("| listeners | {} |", listeners.lines().count());
    let mut json = format!(
        "{{\"bench\":\"image\",\"build_s\":{:.0},\"raw_mib\":{raw_mib},\"qcow2_mib\":{qcow_mib},\"boot_s\":{boot_secs:.1},\"kvm\":{kvm},\"exposure\":\"{exposure}\"",
        image.build_secs
    );
    if let Some(t) = trial {
        t.print(&mut json);
    }
    println!("{json}}}");
    // The update bundles are made again by the next build.
    if image.trials.is_some() {
        let trial = PathBuf::from(BUILD_DIR).join("trial");
        fs::remove_dir_all(&trial).map_err(|e| io(&trial, e))?;
    }
    fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))
}

/// The QEMU process, killed on drop.
pub struct Vm(Child);

impl Vm {
    /// Wait for the guest to power off or reboot (QEMU then exits).
    pub fn wait_exit(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while matches!(self.0.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                return Err(format!("the guest did not reboot within {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(())
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The appliance under test: its disk (an overlay on the image), its
/// firmware variables (systemd-boot's boot counting lives on the ESP, the
/// variables only say which entry booted) and the update "USB sticks"
/// (raw bundle files as virtio disks with serial numbers, so the guest
/// sees `/dev/disk/by-id/virtio-SERIAL`).
pub struct Machine {
    /// Scratch directory of the test.
    pub dir: PathBuf,
    disk: PathBuf,
    vars: PathBuf,
    sticks: Vec<(String, PathBuf)>,
    /// Whether QEMU runs under KVM (else TCG).
    pub kvm: bool,
}

impl Machine {
    /// The serial console's log of power-on `n`.
    pub fn console(&self, n: u32) -> PathBuf {
        self.dir.join(format!("console-{n}.log"))
    }

    /// QEMU's end of the guest agent's virtio port.
    pub fn agent_socket(&self) -> PathBuf {
        self.dir.join("qga.sock")
    }

    /// Power on (again): the `n`th boot of this disk.
    pub fn power_on(&self, n: u32) -> Result<(Vm, Instant)> {
        let _ = fs::remove_file(self.agent_socket());
        let started = Instant::now();
        Ok((Vm(qemu(self, &self.console(n))?), started))
    }
}

/// Start QEMU, with KVM when `/dev/kvm` opens; when KVM opens but cannot
/// run the firmware (nested virtualisation: the VM stops with "KVM
/// internal error" before the firmware prints anything), again with TCG.
fn start(machine: &mut Machine) -> Result<(Vm, Instant)> {
    let console = machine.console(1);
    if machine.kvm {
        let (mut vm, started) = machine.power_on(1)?;
        let errors = qemu_log(&console);
        loop {
            let log = fs::read_to_string(&errors).unwrap_or_default();
            if log.contains("KVM internal error") || !matches!(vm.0.try_wait(), Ok(None)) {
                break;
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Ok((vm, started));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        eprintln!("xtask: KVM opens but cannot run the guest here: falling back to TCG");
        drop(vm);
        machine.kvm = false;
        fs::write(&console, b"").map_err(|e| io(&console, e))?;
        fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &machine.vars)
            .map_err(|e| io(&machine.vars, e))?;
    }
    machine.power_on(1)
}

fn qemu(m: &Machine, console: &Path) -> Result<Child> {
    let kvm = m.kvm;
    let mut cmd = Command::new("nice");
    cmd.args(["-n", "10", "qemu-system-x86_64"])
        .args([
            "-machine",
            if kvm {
                "q35,accel=kvm"
            } else {
                "q35,accel=tcg"
            },
        ])
        .args(["-cpu", if kvm { "host" } else { "max" }])
        .args([
            "-m", "2048", "-smp", "2", "-display", "none", "-monitor", "none",
        ])
        .args(["-no-reboot"])
        .arg("-drive")
        .arg("if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd")
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            m.vars.display()
        ))
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=qcow2", m.disk.display()))
        .arg("-netdev")
        .arg(format!(
            "user,id=n0,hostfwd=tcp:127.0.0.1:{HTTPS_FWD}-:8443,hostfwd=udp:{QUIC_FWD}-:4433"
        ))
        .args(["-device", "virtio-net-pci,netdev=n0"])
        .args(["-device", "virtio-serial-pci", "-chardev"])
        .arg(format!(
            "socket,id=qga0,path={},server=on,wait=off",
            m.agent_socket().display()
        ))
        .args([
            "-device",
            "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
        ]);
    for (i, (serial, file)) in m.sticks.iter().enumerate() {
        cmd.arg("-drive")
            .arg(format!(
                "file={},if=none,id=stick{i},format=raw,readonly=on",
                file.display()
            ))
            .arg("-device")
            .arg(format!("virtio-blk-pci,drive=stick{i},serial={serial}"));
    }
    cmd.arg("-serial")
        .arg(format!("file:{}", console.display()))
        .stdin(Stdio::null())
        .stderr(fs::File::create(qemu_log(console)).map_err(|e| format!("qemu log: {e}"))?);
    eprintln!(
        "xtask: booting the image under QEMU ({})",
        if kvm { "KVM" } else { "TCG" }
    );
    cmd.spawn().map_err(|e| format!("cannot start qemu: {e}"))
}

/// QEMU's own messages, next to the console log.
fn qemu_log(console: &Path) -> PathBuf {
    console.with_file_name("qemu.log")
}

/// Wait for `vigil-report`'s block on the serial console.
pub fn wait_report(console: &Path, limit: Duration) -> Result<String> {
    let deadline = Instant::now() + limit;
    loop {
        let log = fs::read(console).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        if let Some(begin) = log.find("VIGIL-REPORT-BEGIN") {
            if let Some(len) = log[begin..].find("VIGIL-REPORT-END") {
                return Ok(log[begin..begin + len].replace('\r', ""));
            }
        }
        if Instant::now() > deadline {
            let tail: String = log
                .chars()
                .rev()
                .take(3000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(format!(
                "no report on the console within {limit:?}; last output:\n{tail}"
            ));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Check `ss -Hlntu` output: only the console's TCP port on `console_ip`
/// and the QUIC UDP port listen (besides the DHCP client's port 68).
pub fn only_listeners(ss: &str, console_ip: &str) -> Result<()> {
    let mut seen = Vec::new();
    for line in ss.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // netid state recv-q send-q local peer
        let (Some(proto), Some(local)) = (cols.first(), cols.get(4)) else {
            continue;
        };
        let ok = match *proto {
            "tcp" => *local == format!("{console_ip}:8443"),
            // The DHCP client's socket (systemd-networkd), bound to its link.
            "udp" => local.ends_with(":4433") || local.ends_with(":68"),
            _ => false,
        };
        if !ok {
            return Err(format!("unexpected listener {proto} {local}:\n{ss}"));
        }
        seen.push(*proto);
    }
    if !seen.contains(&"tcp") || !ss.contains(":4433 ") {
        return Err(format!("the console or QUIC is not listening:\n{ss}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::only_listeners;

    const CONSOLE: &str = "tcp LISTEN 0 128 10.0.2.15:8443 0.0.0.0:*\n";
    const QUIC: &str = "udp UNCONN 0 0 0.0.0.0:4433 0.0.0.0:*\n";

    #[test]
    fn the_console_and_quic_alone_pass() {
        only_listeners(&format!("{CONSOLE}{QUIC}"), "10.0.2.15").unwrap();
    }

    #[test]
    fn anything_else_fails() {
        let sshd = "tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:*\n";
        let err = only_listeners(&format!("{CONSOLE}{QUIC}{sshd}"), "10.0.2.15").unwrap_err();
        assert!(err.contains("0.0.0.0:22"), "{err}");
        let everywhere = "tcp LISTEN 0 128 0.0.0.0:8443 0.0.0.0:*\n";
        assert!(only_listeners(&format!("{everywhere}{QUIC}"), "10.0.2.15").is_err());
    }

    #[test]
    fn a_missing_listener_fails() {
        assert!(only_listeners(CONSOLE, "10.0.2.15").is_err());
        assert!(only_listeners("", "10.0.2.15").is_err());
    }
}
