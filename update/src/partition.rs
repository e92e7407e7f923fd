//! Where a slot's files are written: behind [`SlotWriter`] so tests use a
//! directory "partition" and the appliance image a block device or a
//! mounted `/usr` slot.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::slots::Slot;

/// A file being written into a slot.
pub trait SlotFile: Write {
    /// Makes the written bytes durable.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

/// Writes release files into a slot that is not running.
pub trait SlotWriter {
    /// Removes everything from `slot` before a release is written to it.
    fn clear(&mut self, slot: Slot) -> io::Result<()>;
    /// Starts the target file `name` in `slot`.
    fn create(&mut self, slot: Slot, name: &str) -> io::Result<Box<dyn SlotFile + '_>>;
    /// Makes the slot's contents durable once every file is finished.
    fn sync(&mut self, slot: Slot) -> io::Result<()>;
    /// Makes the durable slot bootable on trial as `release` (a boot
    /// entry, last of all, so a half-written slot is never offered).
    /// Directory slots have nothing to switch.
    fn activate(&mut self, _slot: Slot, _release: u64) -> io::Result<()> {
        Ok(())
    }
}

/// Slots as directories `ROOT/a` and `ROOT/b`. Nothing outside them is
/// touched, in particular not the data directory.
#[derive(Debug, Clone)]
pub struct DirSlots {
    root: PathBuf,
}

impl DirSlots {
    /// Slots under `root`.
    pub fn new(root: &Path) -> Self {
        DirSlots {
            root: root.to_path_buf(),
        }
    }

    /// The directory of `slot`.
    pub fn dir(&self, slot: Slot) -> PathBuf {
        self.root.join(slot.name())
    }
}

struct DirFile(File);

impl Write for DirFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl SlotFile for DirFile {
    fn finish(self: Box<Self>) -> io::Result<()> {
        self.0.sync_all()
    }
}

impl SlotWriter for DirSlots {
    fn clear(&mut self, slot: Slot) -> io::Result<()> {
        let dir = self.dir(slot);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(&dir)
    }

    fn create(&mut self, slot: Slot, name: &str) -> io::Result<Box<dyn SlotFile + '_>> {
        Ok(Box::new(DirFile(File::create(self.dir(slot).join(name))?)))
    }

    fn sync(&mut self, slot: Slot) -> io::Result<()> {
        File::open(self.dir(slot))?.sync_all()
    }
}
