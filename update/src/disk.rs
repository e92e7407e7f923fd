//! The appliance's real slots: each root file system on its GPT partition
//! (`vigil-root-a`, `vigil-root-b`), each slot's kernel and initrd and its
//! systemd-boot entry on the ESP.
//!
//! The switch is systemd-boot's boot counting (the Boot Loader
//! Specification's "+TRIES" in the entry's file name): a written slot gets
//! `vigil-X+1.conf`, whose `version` (the release) sorts it first. The
//! boot loader spends the try before it starts the kernel; only
//! `systemd-bless-boot`, after `boot-complete.target` (which the image's
//! health check is required by), renames it to `vigil-X.conf`. An entry
//! with no tries left sorts last, so the firmware itself boots the old
//! slot again: no running code has to succeed for a rollback.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::partition::{SlotFile, SlotWriter};
use crate::slots::Slot;

/// The target holding a slot's root file system image.
pub const ROOT_IMAGE: &str = "root.img";
/// Targets installed on the ESP next to the slot's boot entry.
pub const BOOT_FILES: &[&str] = &["vmlinuz", "initrd.img"];

/// Slots on the appliance's disk.
#[derive(Debug, Clone)]
pub struct DiskSlots {
    esp: PathBuf,
    by_partlabel: PathBuf,
    by_partuuid: PathBuf,
    files: PathBuf,
    running: Option<Slot>,
}

impl DiskSlots {
    /// The appliance: ESP on `/boot/efi`, partitions through udev's
    /// `/dev/disk/by-*` links, other targets (sensor packages) under
    /// `state/files/<slot>/`, the running slot from `/proc/cmdline`.
    pub fn appliance(state: &Path) -> Self {
        let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
        DiskSlots::new(
            Path::new("/boot/efi"),
            Path::new("/dev/disk"),
            &state.join("files"),
            slot_from_cmdline(&cmdline),
        )
    }

    /// Slots with the ESP at `esp`, partitions in `dev/by-partlabel` and
    /// `dev/by-partuuid` (regular files and links in tests), other
    /// targets under `files`; `running` is never written.
    pub fn new(esp: &Path, dev: &Path, files: &Path, running: Option<Slot>) -> Self {
        DiskSlots {
            esp: esp.to_path_buf(),
            by_partlabel: dev.join("by-partlabel"),
            by_partuuid: dev.join("by-partuuid"),
            files: files.to_path_buf(),
            running,
        }
    }

    fn entries(&self) -> PathBuf {
        self.esp.join("loader/entries")
    }

    fn partition(&self, slot: Slot) -> PathBuf {
        self.by_partlabel.join(format!("vigil-root-{slot}"))
    }

    /// The GPT partition UUID of `slot`'s root: the `by-partuuid` link
    /// that resolves to the same device as its label.
    fn partuuid(&self, slot: Slot) -> io::Result<String> {
        let device = fs::canonicalize(self.partition(slot))?;
        for entry in fs::read_dir(&self.by_partuuid)? {
            let entry = entry?;
            if fs::canonicalize(entry.path()).ok().as_ref() == Some(&device) {
                return Ok(entry.file_name().to_string_lossy().to_lowercase());
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no partition UUID for {}", device.display()),
        ))
    }

    fn refuse_running(&self, slot: Slot) -> io::Result<()> {
        if self.running == Some(slot) {
            return Err(io::Error::other(format!(
                "slot {slot} is running: it is never written"
            )));
        }
        Ok(())
    }
}

struct SyncedFile(File);

impl Write for SyncedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl SlotFile for SyncedFile {
    fn finish(self: Box<Self>) -> io::Result<()> {
        self.0.sync_all()
    }
}

impl SlotWriter for DiskSlots {
    /// The slot's boot entries go first, so from here on the boot loader
    /// never offers what is being overwritten.
    fn clear(&mut self, slot: Slot) -> io::Result<()> {
        self.refuse_running(slot)?;
        let entries = self.entries();
        fs::create_dir_all(&entries)?;
        for entry in fs::read_dir(&entries)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if entry_slot(&name) == Some(slot) {
                fs::remove_file(entries.join(&name))?;
            }
        }
        File::open(&entries)?.sync_all()?;
        for dir in [
            self.esp.join(format!("vigil-{slot}")),
            self.files.join(slot.name()),
        ] {
            match fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            fs::create_dir_all(&dir)?;
        }
        Ok(())
    }

    fn create(&mut self, slot: Slot, name: &str) -> io::Result<Box<dyn SlotFile + '_>> {
        self.refuse_running(slot)?;
        let file = if name == ROOT_IMAGE {
            // The partition itself: never created, never truncated.
            OpenOptions::new().write(true).open(self.partition(slot))?
        } else if BOOT_FILES.contains(&name) {
            File::create(self.esp.join(format!("vigil-{slot}")).join(name))?
        } else {
            File::create(self.files.join(slot.name()).join(name))?
        };
        Ok(Box::new(SyncedFile(file)))
    }

    fn sync(&mut self, slot: Slot) -> io::Result<()> {
        File::open(self.esp.join(format!("vigil-{slot}")))?.sync_all()?;
        File::open(self.files.join(slot.name()))?.sync_all()
    }

    /// One try: `vigil-X+1.conf`, written whole and renamed into place.
    fn activate(&mut self, slot: Slot, release: u64) -> io::Result<()> {
        self.refuse_running(slot)?;
        let for_boot = |name: &str| self.esp.join(format!("vigil-{slot}")).join(name);
        if !BOOT_FILES.iter().all(|f| for_boot(f).is_file()) {
            return Err(io::Error::other(format!(
                "the release has no {} for slot {slot}",
                BOOT_FILES.join(" and ")
            )));
        }
        let kept = fs::read_to_string(MACHINE_ID_FILE).ok();
        let text = with_machine_id(
            &boot_entry(slot, release, &self.partuuid(slot)?),
            kept.as_deref(),
        );
        let entries = self.entries();
        let tmp = entries.join(format!("vigil-{slot}.tmp"));
        let mut file = File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, entries.join(format!("vigil-{slot}+1.conf")))?;
        File::open(&entries)?.sync_all()
    }
}

/// The systemd-boot entry of `slot` holding `release`, its root on the
/// partition `partuuid`. `sort-key` + `version` make the newest release
/// that still has tries (or was blessed) the default; the image's first
/// entry comes from here too (`vigil-update boot-entry`).
pub fn boot_entry(slot: Slot, release: u64, partuuid: &str) -> String {
    format!(
        "title Vigil appliance (slot {slot}, release {release})\n\
         sort-key vigil\n\
         version {release}\n\
         linux /vigil-{slot}/vmlinuz\n\
         initrd /vigil-{slot}/initrd.img\n\
         options root=PARTUUID={} ro rootfstype=ext4 console=tty0 console=ttyS0,115200 \
         quiet systemd.show_status=error vigil.slot={slot}\n",
        partuuid.to_lowercase()
    )
}

/// Where the appliance keeps the machine ID its first boot chose (written
/// by `vigil-machine-id.service`; image/README.md, "Machine ID").
pub const MACHINE_ID_FILE: &str = "/var/lib/vigil-machine-id/machine-id";

/// `entry` with `systemd.machine_id=ID` on its command line when `kept`
/// holds a valid machine ID (32 hex digits), so the first boot of a new
/// slot keeps the appliance's ID instead of a transient one; otherwise
/// `entry` unchanged.
pub fn with_machine_id(entry: &str, kept: Option<&str>) -> String {
    match kept.map(str::trim) {
        Some(id) if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) => entry.replacen(
            " vigil.slot=",
            &format!(" systemd.machine_id={id} vigil.slot="),
            1,
        ),
        _ => entry.to_string(),
    }
}

/// The slot an entry file boots: `vigil-a.conf`, `vigil-b+1.conf`,
/// `vigil-b+0-1.conf`.
fn entry_slot(file: &str) -> Option<Slot> {
    let stem = file.strip_prefix("vigil-")?.strip_suffix(".conf")?;
    match stem.split('+').next()? {
        "a" => Some(Slot::A),
        "b" => Some(Slot::B),
        _ => None,
    }
}

/// The running slot, from `vigil.slot=` on the kernel command line.
pub fn slot_from_cmdline(cmdline: &str) -> Option<Slot> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("vigil.slot="))
        .and_then(|s| match s {
            "a" => Some(Slot::A),
            "b" => Some(Slot::B),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_names_its_slot_release_and_root() {
        let e = boot_entry(Slot::B, 7, "5669676C-0000-4000-8000-000000000003");
        assert!(e.contains("linux /vigil-b/vmlinuz\n"), "{e}");
        assert!(e.contains("version 7\n"), "{e}");
        assert!(
            e.contains("root=PARTUUID=5669676c-0000-4000-8000-000000000003 ro "),
            "{e}"
        );
        assert!(e.ends_with(" vigil.slot=b\n"), "{e}");
    }

    #[test]
    fn a_kept_machine_id_goes_on_the_new_entry_and_junk_never_does() {
        let e = boot_entry(Slot::B, 7, "5669676C-0000-4000-8000-000000000003");
        let id = "0123456789abcdef0123456789abcdef";
        let with = with_machine_id(&e, Some(&format!("{id}\n")));
        assert!(
            with.ends_with(&format!(" systemd.machine_id={id} vigil.slot=b\n")),
            "{with}"
        );
        for junk in [
            None,
            Some(""),
            Some("xyz"),
            Some("0123 rd.break vigil.slot=a"),
        ] {
            assert_eq!(with_machine_id(&e, junk), e, "{junk:?}");
        }
    }

    #[test]
    fn entry_files_and_command_lines_name_slots() {
        assert_eq!(entry_slot("vigil-a.conf"), Some(Slot::A));
        assert_eq!(entry_slot("vigil-b+1.conf"), Some(Slot::B));
        assert_eq!(entry_slot("vigil-b+0-1.conf"), Some(Slot::B));
        assert_eq!(entry_slot("vigil-b.tmp"), None);
        assert_eq!(entry_slot("other.conf"), None);
        assert_eq!(
            slot_from_cmdline("root=x ro vigil.slot=b quiet"),
            Some(Slot::B)
        );
        assert_eq!(slot_from_cmdline("root=x ro"), None);
    }

    #[test]
    fn a_release_is_written_beside_the_running_slot_and_offered_once() {
        let t = tempfile::tempdir().unwrap();
        let (esp, dev, files) = (
            t.path().join("esp"),
            t.path().join("dev"),
            t.path().join("f"),
        );
        for d in ["by-partlabel", "by-partuuid"] {
            fs::create_dir_all(dev.join(d)).unwrap();
        }
        for (slot, uuid) in [("a", "UUID-A"), ("b", "UUID-B")] {
            let part = dev.join("by-partlabel").join(format!("vigil-root-{slot}"));
            fs::write(&part, vec![0u8; 64]).unwrap();
            std::os::unix::fs::symlink(&part, dev.join("by-partuuid").join(uuid)).unwrap();
        }
        fs::create_dir_all(esp.join("loader/entries")).unwrap();
        fs::write(esp.join("loader/entries/vigil-a.conf"), "running").unwrap();
        fs::write(esp.join("loader/entries/vigil-b+0-1.conf"), "failed").unwrap();
        let mut w = DiskSlots::new(&esp, &dev, &files, Some(Slot::A));
        assert!(w.clear(Slot::A).is_err(), "the running slot is refused");
        w.clear(Slot::B).unwrap();
        for (name, bytes) in [
            ("root.img", &b"ROOT"[..]),
            ("vmlinuz", b"K"),
            ("initrd.img", b"I"),
            ("s.deb", b"D"),
        ] {
            let mut f = w.create(Slot::B, name).unwrap();
            f.write_all(bytes).unwrap();
            f.finish().unwrap();
        }
        w.sync(Slot::B).unwrap();
        w.activate(Slot::B, 3).unwrap();
        let part = fs::read(dev.join("by-partlabel/vigil-root-b")).unwrap();
        assert_eq!(
            (&part[..4], part.len()),
            (&b"ROOT"[..], 64),
            "written in place"
        );
        assert_eq!(fs::read(files.join("b/s.deb")).unwrap(), b"D");
        let mut names: Vec<String> = fs::read_dir(esp.join("loader/entries"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["vigil-a.conf", "vigil-b+1.conf"]);
        let entry = fs::read_to_string(esp.join("loader/entries/vigil-b+1.conf")).unwrap();
        assert!(entry.contains("root=PARTUUID=uuid-b ro"), "{entry}");
        assert_eq!(
            fs::read(esp.join("loader/entries/vigil-a.conf")).unwrap(),
            b"running"
        );
    }
}
