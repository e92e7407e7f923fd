//! The boot test's updates, on the real disk of the booted image:
//!
//! 1. a sensor enrolls from the `.deb` ([`super::enroll`]): data to keep;
//! 2. a **broken** release (its `vigil` exits 1) is applied with `vigil
//!    update apply` from a virtual USB stick and the guest reboots: slot B
//!    boots on its one try, the health check fails, the machine reboots
//!    and systemd-boot, finding B without tries, boots A by itself;
//!    `vigil update status` and the journal say so, and the same bundle
//!    again is refused as not newer;
//! 3. a **good** release: slot B boots, passes, is blessed
//!    (`vigil-b.conf`), and the enrolled sensor and the CA are still
//!    there.
//!
//! Along the way: the store lists the shipped sensor packages at the first
//! boot, and the machine ID stays the first boot's on every boot through
//! slot A's entry and on every entry (see `image/README.md`).
//!
//! Both releases are the image's own root with the release number moved
//! on (and, for the broken one, `vigil` replaced), signed by the same
//! repository whose root the image ships.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::boot::{wait_report, Machine, Vm, QUIC_FWD};
use super::guest::Agent;
use super::signing::Signing;
use super::{Binaries, BUILD_DIR};
use crate::package::io;
use crate::Result;

/// The signed bundles the test applies.
pub struct Bundles {
    broken: PathBuf,
    good: PathBuf,
    good_release: u64,
}

impl Bundles {
    /// The bundles as virtual USB sticks: (serial, file).
    pub fn sticks(&self) -> Vec<(String, PathBuf)> {
        vec![
            ("vigil-broken".into(), self.broken.clone()),
            ("vigil-good".into(), self.good.clone()),
        ]
    }
}

/// Sign the broken and the good release of `root` (the image's root
/// directory, before it is deleted), each root image `mib` MiB so it fits
/// slot B.
pub fn bundles(root: &Path, mib: u64, bins: &Binaries, epoch: &str) -> Result<Bundles> {
    let signing = Signing::open(&bins.update)?;
    let dir = PathBuf::from(BUILD_DIR).join("trial");
    let _ = fs::remove_dir_all(&dir);
    let base = signing.release()?;
    let vigil = root.join("usr/bin/vigil");
    let real = root.join("usr/bin/vigil.real");
    let release = root.join("usr/lib/vigil/update/release");
    let mut out = Vec::new();
    for (name, broken) in [("broken", true), ("good", false)] {
        let stage = dir.join(name);
        fs::create_dir_all(&stage).map_err(|e| io(&stage, e))?;
        if broken {
            fs::rename(&vigil, &real).map_err(|e| io(&vigil, e))?;
            fs::write(
                &vigil,
                "#!/bin/sh\necho 'vigil: deliberately broken build (image boot test)' >&2\nexit 1\n",
            )
            .map_err(|e| io(&vigil, e))?;
            set_mode(&vigil, 0o755)?;
        }
        let number = base + out.len() as u64 + 1;
        fs::write(&release, format!("{number}\n")).map_err(|e| io(&release, e))?;
        let img = stage.join("root.img");
        super::disk::make_ext4(&img, "vigil-root", Some(root), mib, epoch, 2)?;
        if broken {
            fs::rename(&real, &vigil).map_err(|e| io(&real, e))?;
        }
        for (prefix, target) in [("vmlinuz-", "vmlinuz"), ("initrd.img-", "initrd.img")] {
            fs::copy(boot_file(root, prefix)?, stage.join(target)).map_err(|e| io(&stage, e))?;
        }
        let bundle = dir.join(format!("{name}.tar"));
        let files = ["root.img", "vmlinuz", "initrd.img"].map(|f| stage.join(f));
        let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let signed = signing.pack(name, &files, &bundle)?;
        fs::remove_dir_all(&stage).map_err(|e| io(&stage, e))?;
        eprintln!("xtask: update bundle {name}: release {signed}");
        out.push((bundle, signed));
    }
    // The image says which release it is: the one signed before these.
    fs::write(&release, format!("{base}\n")).map_err(|e| io(&release, e))?;
    let (good, good_release) = out.pop().expect("two bundles");
    let (broken, _) = out.pop().expect("two bundles");
    Ok(Bundles {
        broken,
        good,
        good_release,
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io(path, e))
}

/// The root's kernel or initrd (`/boot/PREFIX*`).
pub fn boot_file(root: &Path, prefix: &str) -> Result<PathBuf> {
    let boot = root.join("boot");
    fs::read_dir(&boot)
        .map_err(|e| io(&boot, e))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .ok_or_else(|| format!("no {prefix}* in the root's /boot"))
}

/// What the updates took, for BENCHMARKS.md.
pub struct Figures {
    enroll_s: f64,
    apply_broken_s: f64,
    rollback_s: f64,
    apply_good_s: f64,
    update_boot_s: f64,
}

impl Figures {
    /// Table rows, and the fields appended to the JSON line.
    pub fn print(&self, json: &mut String) {
        println!(
            "| sensor from the .deb: enroll → listed online | {:.1} s |",
            self.enroll_s
        );
        println!(
            "| `vigil update apply` (broken / good release) | {:.1} s / {:.1} s |",
            self.apply_broken_s, self.apply_good_s
        );
        println!("| broken release: power-on → failed health → back on slot A, agent answers | {:.1} s |", self.rollback_s);
        println!(
            "| good release: power-on → slot B healthy and blessed | {:.1} s |",
            self.update_boot_s
        );
        json.push_str(&format!(
            ",\"enroll_s\":{:.1},\"apply_s\":{:.1},\"rollback_s\":{:.1},\"update_boot_s\":{:.1}",
            self.enroll_s, self.apply_good_s, self.rollback_s, self.update_boot_s
        ));
    }
}

const LONG: Duration = Duration::from_secs(600);

/// Run the scenario on the booted `vm` (power-on 1, slot A).
pub fn run(machine: &Machine, vm: Vm, bundles: &Bundles) -> Result<Figures> {
    let boot_limit = Duration::from_secs(if machine.kvm { 300 } else { 1500 });
    let mut agent = Agent::connect(&machine.agent_socket(), boot_limit)?;
    let enroll_s = super::enroll::sensor_online(&mut agent, QUIC_FWD)?;
    let hosts_before = sensors(&mut agent)?;
    let ca_before = agent.ok("cat /var/lib/vigil/ca.sha256", LONG)?;
    status_has(&mut agent, &["\"booted\": \"a\"", "\"active\": \"a\""])?;
    let packages = agent.ok("runuser -u vigil -- vigil packages list", LONG)?;
    if !packages.contains(".deb") || !packages.contains(".tar.gz") {
        return Err(format!(
            "the store lacks the packages the image ships:\n{packages}"
        ));
    }
    let machine_id = machine_id_on_entries(&mut agent)?;
    super::enroll::clean()?;

    // A release whose vigil exits 1: tried once, then slot A by itself.
    let (apply_broken_s, vm) = apply_and_reboot(&mut agent, vm, "vigil-broken")?;
    drop(agent);
    drop(vm);
    let (mut vm, started) = machine.power_on(2)?;
    vm.wait_exit(boot_limit).map_err(|e| {
        format!("the broken release: {e} (it should fail its health check and reboot)")
    })?;
    let (vm, _) = machine.power_on(3)?;
    let mut agent = Agent::connect(&machine.agent_socket(), boot_limit)?;
    wait_report(&machine.console(3), boot_limit)?;
    let rollback_s = started.elapsed().as_secs_f64();
    expect(&mut agent, "cat /proc/cmdline", "vigil.slot=a")?;
    expect(&mut agent, "cat /etc/machine-id", &machine_id)?;
    status_has(
        &mut agent,
        &[
            "\"booted\": \"a\"",
            "\"active\": \"a\"",
            "\"status\": \"failed\"",
        ],
    )?;
    expect(
        &mut agent,
        // Every directory: the failed trial booted through the update's
        // entry, which may lack the machine ID (a transient one then).
        "journalctl -D /var/log/journal -o cat -u vigil-health.service",
        "failed its health check",
    )?;
    let again = agent.sh(
        "vigil update apply /dev/disk/by-id/virtio-vigil-broken",
        LONG,
    )?;
    if again.code == 0 || !again.text.contains("not newer") {
        return Err(format!(
            "the broken release again was not refused as old:\n{}",
            again.text
        ));
    }
    eprintln!(
        "xtask: boot test: the broken release came back on slot A by itself and is refused again"
    );

    // The good release: slot B, healthy, blessed, data kept.
    let (apply_good_s, vm) = apply_and_reboot(&mut agent, vm, "vigil-good")?;
    drop(agent);
    drop(vm);
    let (_vm, started) = machine.power_on(4)?;
    let mut agent = Agent::connect(&machine.agent_socket(), boot_limit)?;
    wait_report(&machine.console(4), boot_limit)?;
    agent.ok(
        "while ! systemctl -q is-active vigil-health.service; do sleep 1; done",
        LONG,
    )?;
    agent.ok(
        "while ! test -e /boot/efi/loader/entries/vigil-b.conf; do sleep 1; done",
        LONG,
    )?;
    let update_boot_s = started.elapsed().as_secs_f64();
    expect(&mut agent, "cat /proc/cmdline", "vigil.slot=b")?;
    expect(
        &mut agent,
        "cat /usr/lib/vigil/update/release",
        &bundles.good_release.to_string(),
    )?;
    status_has(
        &mut agent,
        &[
            "\"booted\": \"b\"",
            "\"active\": \"b\"",
            "\"pending\": null",
        ],
    )?;
    if sensors(&mut agent)? != hosts_before
        || agent.ok("cat /var/lib/vigil/ca.sha256", LONG)? != ca_before
    {
        return Err("the enrolled sensor or the CA did not survive the update".into());
    }
    if machine_id_on_entries(&mut agent)? != machine_id {
        return Err("the kept machine ID changed across the update".into());
    }
    // The first boot of B came through the entry `vigil update apply`
    // wrote: it has the ID only if the update tool carries it.
    let on_b = agent.ok("cat /etc/machine-id", LONG)?;
    eprintln!(
        "xtask: boot test: machine ID {} on every boot through slot A and on every entry; slot B's first boot {}",
        machine_id,
        if on_b.trim() == machine_id { "had it too" } else { "had a transient one (its entry was written without it)" }
    );
    eprintln!("xtask: boot test: the good release runs from slot B, blessed, with the data kept");
    Ok(Figures {
        enroll_s,
        apply_broken_s,
        rollback_s,
        apply_good_s,
        update_boot_s,
    })
}

/// `vigil update apply` from the stick `serial`, then reboot; the VM once
/// it has gone down.
fn apply_and_reboot(agent: &mut Agent, mut vm: Vm, serial: &str) -> Result<(f64, Vm)> {
    let started = Instant::now();
    let out = agent.ok(
        &format!("vigil update apply /dev/disk/by-id/virtio-{serial}"),
        Duration::from_secs(1800),
    )?;
    let secs = started.elapsed().as_secs_f64();
    if !out.contains("written to slot b") {
        return Err(format!("{serial}: {out}"));
    }
    eprintln!(
        "xtask: boot test: {serial} applied in {secs:.1} s: {}",
        out.trim()
    );
    agent.ok("(sleep 1; systemctl reboot) > /dev/null 2>&1 &", LONG)?;
    vm.wait_exit(Duration::from_secs(300))?;
    Ok((secs, vm))
}

/// The machine ID kept on the data partition, once `vigil-machine-id`
/// has put it on every boot entry of the ESP (it runs early in each boot).
fn machine_id_on_entries(agent: &mut Agent) -> Result<String> {
    let id = agent.ok(
        "while ! systemctl is-active -q vigil-machine-id.service; do sleep 1; done; \
         cat /var/lib/vigil-machine-id/machine-id",
        LONG,
    )?;
    let id = id.trim().to_string();
    let missing = agent.ok(
        &format!("grep -L 'systemd.machine_id={id}' /boot/efi/loader/entries/vigil-*.conf || true"),
        LONG,
    )?;
    if id.len() != 32 || !missing.trim().is_empty() {
        return Err(format!(
            "machine ID {id:?}: entries without it: {}",
            missing.trim()
        ));
    }
    Ok(id)
}

/// The enrolled hosts' ids (the first column of `vigil sensor list`).
fn sensors(agent: &mut Agent) -> Result<Vec<String>> {
    let list = agent.ok("runuser -u vigil -- vigil sensor list", LONG)?;
    Ok(list
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

fn expect(agent: &mut Agent, script: &str, needle: &str) -> Result<()> {
    let out = agent.ok(script, LONG)?;
    if !out.contains(needle) {
        return Err(format!("`{script}` lacks {needle:?}:\n{out}"));
    }
    Ok(())
}

fn status_has(agent: &mut Agent, needles: &[&str]) -> Result<()> {
    let status = agent.ok("vigil update status", LONG)?;
    match needles.iter().find(|n| !status.contains(**n)) {
        Some(n) => Err(format!("`vigil update status` lacks {n}:\n{status}")),
        None => Ok(()),
    }
}
