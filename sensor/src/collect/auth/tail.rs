//! [`Tail`]: follows a growing log file across truncation and rotation,
//! and says whether only root can write it.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Longest line considered (longer ones are skipped).
const MAX_LINE: usize = 8192;

/// Follows a growing log file across truncation and rotation.
pub struct Tail {
    path: PathBuf,
    file: Option<BufReader<File>>,
    inode: u64,
    pos: u64,
    partial: String,
}

impl Tail {
    /// Start at the current end of `path` (or at the start of a file that
    /// appears later).
    pub fn new(path: &Path) -> Tail {
        let mut t = Tail {
            path: path.to_path_buf(),
            file: None,
            inode: 0,
            pos: 0,
            partial: String::new(),
        };
        if t.reopen().is_ok() {
            t.pos = t
                .file
                .as_mut()
                .and_then(|f| f.seek(SeekFrom::End(0)).ok())
                .unwrap_or(0);
        }
        t
    }

    fn reopen(&mut self) -> io::Result<()> {
        let f = File::open(&self.path)?;
        self.inode = f.metadata()?.ino();
        self.file = Some(BufReader::new(f));
        self.pos = 0;
        self.partial.clear();
        Ok(())
    }

    /// True while the file is open (it exists).
    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// True when only root can write the open file: owned by uid 0 and not
    /// writable by group or others. Asked afresh each time (a `chmod` shows).
    pub fn root_only(&self) -> bool {
        self.file
            .as_ref()
            .and_then(|f| f.get_ref().metadata().ok())
            .is_some_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0)
    }

    /// Complete lines appended since the last call.
    pub fn read_lines(&mut self) -> io::Result<Vec<String>> {
        let meta = std::fs::metadata(&self.path);
        match (&meta, &self.file) {
            (Ok(m), Some(_)) if m.ino() != self.inode || m.len() < self.pos => self.reopen()?,
            (Ok(_), None) => self.reopen()?,
            (Err(_), _) => return Ok(Vec::new()),
            _ => {}
        }
        let f = self.file.as_mut().expect("opened");
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = f
                .by_ref()
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut buf)?;
            if n == 0 {
                break;
            }
            self.pos += n as u64;
            let s = String::from_utf8_lossy(&buf);
            if s.ends_with('\n') {
                let mut line = std::mem::take(&mut self.partial);
                line.push_str(s.trim_end_matches('\n'));
                if line.len() <= MAX_LINE {
                    out.push(line);
                }
            } else {
                self.partial.push_str(&s);
                if self.partial.len() > MAX_LINE {
                    self.partial.clear();
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_follows_appends_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        std::fs::write(&path, "old line\n").unwrap();
        let mut t = Tail::new(&path);
        assert!(t.read_lines().unwrap().is_empty(), "starts at end");
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"one\ntw").unwrap();
        assert_eq!(t.read_lines().unwrap(), vec!["one"]);
        f.write_all(b"o\n").unwrap();
        assert_eq!(t.read_lines().unwrap(), vec!["two"]);
        // Rotation: new file at the same path.
        std::fs::rename(&path, dir.path().join("auth.log.1")).unwrap();
        std::fs::write(&path, "three\n").unwrap();
        assert_eq!(t.read_lines().unwrap(), vec!["three"]);
    }

    #[test]
    fn root_only_means_owned_by_root_and_not_writable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sshd.log");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut t = Tail::new(&path);
        t.read_lines().unwrap();
        assert_eq!(t.root_only(), nix::unistd::geteuid().is_root());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!t.root_only(), "world-writable");
        assert!(!Tail::new(&dir.path().join("absent")).root_only());
    }
}
