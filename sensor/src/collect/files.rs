//! File collector: inotify on persistence and lateral-movement paths.
//! Reports metadata and a SHA-256, never content (so `/etc/shadow` can be
//! watched without shipping secrets). inotify does not say who wrote, so
//! `pid` stays empty.
//!
//! A watched *file* is watched through its parent directory with a name
//! filter, so replacement by rename (editors, `useradd`, `sed -i`) is seen;
//! a watched *directory* is watched with its subdirectories (depth ≤ 3).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use sha2::{Digest, Sha256};
use vigil_proto::{FileChange, FileOp, Payload, Visibility};

use super::CollectorCtx;

/// Files larger than this are reported without a hash.
const MAX_HASH_BYTES: u64 = 64 << 20;
const MAX_DEPTH: usize = 3;
const MAX_WATCHES: usize = 4096;

/// The default watch list: every user's `~/.ssh/authorized_keys`,
/// `/etc/cron*`, `/etc/systemd/system`, `/etc/sudoers*`, `/etc/passwd`,
/// `/etc/shadow`.
pub fn default_paths() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(passwd) = fs::read_to_string("/etc/passwd") {
        let mut homes: Vec<PathBuf> = passwd
            .lines()
            .filter_map(|l| l.split(':').nth(5))
            .filter(|h| !h.is_empty() && *h != "/" && *h != "/nonexistent")
            .map(PathBuf::from)
            .collect();
        homes.push(PathBuf::from("/root"));
        homes.sort();
        homes.dedup();
        for h in homes {
            if h.join(".ssh").is_dir() {
                out.push(h.join(".ssh/authorized_keys"));
            }
        }
    }
    if let Ok(etc) = fs::read_dir("/etc") {
        let mut names: Vec<PathBuf> = etc
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(OsStr::to_str)
                    .is_some_and(|n| n.starts_with("cron") || n.starts_with("sudoers"))
            })
            .collect();
        names.sort();
        out.extend(names);
    }
    for p in ["/etc/systemd/system", "/etc/passwd", "/etc/shadow"] {
        out.push(PathBuf::from(p));
    }
    out
}

/// What one inotify watch stands for.
#[derive(Debug, Clone)]
struct Watch {
    dir: PathBuf,
    /// Only these names in `dir` (a watched file); `None` = everything.
    only: Option<HashSet<String>>,
    depth: usize,
}

/// SHA-256 of a regular file's content (bounded).
pub fn hash_file(path: &Path) -> Option<[u8; 32]> {
    let mut f = fs::File::open(path).ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_HASH_BYTES {
        return None;
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Some(h.finalize().into())
}

/// The event for `path` after `op`, with current metadata (none if deleted).
pub fn file_change(path: &Path, op: FileOp) -> FileChange {
    let meta = if op == FileOp::Deleted {
        None
    } else {
        fs::symlink_metadata(path).ok()
    };
    FileChange {
        path: path.to_string_lossy().into_owned(),
        op,
        size: meta.as_ref().map(|m| m.len()),
        mode: meta.as_ref().map(|m| m.permissions().mode()),
        uid: meta.as_ref().map(|m| m.uid()),
        sha256: meta
            .as_ref()
            .filter(|m| m.is_file())
            .and_then(|_| hash_file(path)),
        pid: None,
    }
}

struct Watcher {
    ino: Inotify,
    watches: HashMap<WatchDescriptor, Watch>,
    /// Files created and not yet closed after writing.
    created: HashSet<PathBuf>,
    problems: Vec<String>,
}

fn mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

impl Watcher {
    fn new() -> nix::Result<Watcher> {
        Ok(Watcher {
            ino: Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?,
            watches: HashMap::new(),
            created: HashSet::new(),
            problems: Vec::new(),
        })
    }

    fn add_dir(&mut self, dir: &Path, only: Option<HashSet<String>>, depth: usize) {
        if self.watches.len() >= MAX_WATCHES {
            self.problems
                .push(format!("watch limit reached at {}", dir.display()));
            return;
        }
        // Merge name filters when the same directory is watched for several files.
        if let Some((_, w)) = self.watches.iter_mut().find(|(_, w)| w.dir == dir) {
            match (&mut w.only, only) {
                (Some(a), Some(b)) => a.extend(b),
                (slot, _) => *slot = None,
            }
            return;
        }
        match self.ino.add_watch(dir, mask()) {
            Ok(wd) => {
                let recurse = only.is_none() && depth < MAX_DEPTH;
                self.watches.insert(
                    wd,
                    Watch {
                        dir: dir.to_path_buf(),
                        only,
                        depth,
                    },
                );
                if recurse {
                    if let Ok(rd) = fs::read_dir(dir) {
                        for e in rd.flatten() {
                            if e.file_type().is_ok_and(|t| t.is_dir()) {
                                self.add_dir(&e.path(), None, depth + 1);
                            }
                        }
                    }
                }
            }
            Err(e) => self.problems.push(format!("{}: {e}", dir.display())),
        }
    }

    fn add_path(&mut self, path: &Path) {
        if path.is_dir() {
            self.add_dir(path, None, 0);
        } else if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
            if parent.is_dir() {
                let only = HashSet::from([name.to_string_lossy().into_owned()]);
                self.add_dir(parent, Some(only), MAX_DEPTH);
            } else {
                self.problems
                    .push(format!("{}: parent directory missing", path.display()));
            }
        }
    }

    /// Read pending events; returns changes and whether the queue overflowed.
    fn poll(&mut self) -> (Vec<FileChange>, bool) {
        let mut out = Vec::new();
        let mut overflow = false;
        let events = match self.ino.read_events() {
            Ok(ev) => ev,
            Err(_) => return (out, false),
        };
        for ev in events {
            if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                overflow = true;
                continue;
            }
            let Some(w) = self.watches.get(&ev.wd).cloned() else {
                continue;
            };
            if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                self.watches.remove(&ev.wd);
                continue;
            }
            let Some(name) = ev.name.as_ref().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            if w.only.as_ref().is_some_and(|o| !o.contains(&name)) {
                continue;
            }
            let path = w.dir.join(&name);
            let is_dir = ev.mask.contains(AddWatchFlags::IN_ISDIR);
            let m = ev.mask;
            let op = if m.contains(AddWatchFlags::IN_CREATE) {
                if is_dir {
                    if w.only.is_none() && w.depth < MAX_DEPTH {
                        self.add_dir(&path, None, w.depth + 1);
                    }
                    Some(FileOp::Created)
                } else {
                    // Report once the writer closes it, with final size and hash.
                    self.created.insert(path.clone());
                    None
                }
            } else if m.contains(AddWatchFlags::IN_CLOSE_WRITE) {
                Some(if self.created.remove(&path) {
                    FileOp::Created
                } else {
                    FileOp::Modified
                })
            } else if m.contains(AddWatchFlags::IN_DELETE)
                || m.contains(AddWatchFlags::IN_MOVED_FROM)
            {
                self.created.remove(&path);
                Some(FileOp::Deleted)
            } else if m.contains(AddWatchFlags::IN_MOVED_TO) {
                Some(FileOp::Renamed)
            } else if m.contains(AddWatchFlags::IN_ATTRIB) {
                (!self.created.contains(&path)).then_some(FileOp::Attributes)
            } else {
                None
            };
            if let Some(op) = op {
                out.push(file_change(&path, op));
            }
        }
        if self.created.len() > 10_000 {
            self.created.clear();
        }
        (out, overflow)
    }
}

/// Run the collector until stopped.
pub fn run(ctx: CollectorCtx, paths: Vec<PathBuf>) {
    let mut w = match Watcher::new() {
        Ok(w) => w,
        Err(e) => {
            ctx.stats
                .set(Visibility::Unavailable(format!("inotify: {e}")));
            return;
        }
    };
    for p in &paths {
        w.add_path(p);
    }
    if w.watches.is_empty() {
        ctx.stats.set(Visibility::Unavailable(format!(
            "no watchable path: {}",
            w.problems.join("; ")
        )));
    } else if !w.problems.is_empty() {
        ctx.stats.set(Visibility::Degraded(format!(
            "not watched: {}",
            w.problems.join("; ")
        )));
    } else {
        ctx.stats.set(Visibility::Working);
    }
    while !ctx.stopping() {
        let (changes, overflow) = w.poll();
        if overflow {
            ctx.stats.missed.fetch_add(1, Ordering::Relaxed);
            ctx.stats.set(Visibility::Degraded(
                "inotify queue overflowed; some changes were missed".into(),
            ));
        }
        for c in changes {
            if !ctx.emit(Payload::FileChange(c)) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_the_persistence_paths() {
        let d = default_paths();
        for p in ["/etc/passwd", "/etc/shadow", "/etc/systemd/system"] {
            assert!(d.contains(&PathBuf::from(p)), "{p}");
        }
        if Path::new("/etc/crontab").exists() {
            assert!(d.contains(&PathBuf::from("/etc/crontab")));
        }
    }

    #[test]
    fn watcher_reports_create_modify_rename_delete_with_hash() {
        let dir = tempfile::tempdir().unwrap();
        let watched_dir = dir.path().join("cron.d");
        fs::create_dir(&watched_dir).unwrap();
        let keys = dir.path().join("authorized_keys");
        let mut w = Watcher::new().unwrap();
        w.add_path(&watched_dir);
        w.add_path(&keys);
        fs::write(watched_dir.join("job"), b"* * * * * root id\n").unwrap();
        fs::write(&keys, b"ssh-ed25519 AAAA test\n").unwrap();
        fs::write(dir.path().join("unrelated"), b"x").unwrap();
        let names = |changes: &[FileChange]| -> Vec<(String, FileOp)> {
            changes
                .iter()
                .map(|c| {
                    (
                        Path::new(&c.path)
                            .file_name()
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                        c.op,
                    )
                })
                .collect()
        };
        let (changes, overflow) = w.poll();
        assert!(!overflow);
        assert_eq!(
            names(&changes),
            vec![
                ("job".into(), FileOp::Created),
                ("authorized_keys".into(), FileOp::Created)
            ]
        );
        let created = &changes[0];
        assert_eq!(created.size, Some(18));
        let want: [u8; 32] = Sha256::digest(b"* * * * * root id\n").into();
        assert_eq!(created.sha256, Some(want));
        assert!(created.mode.is_some() && created.uid == Some(nix::unistd::getuid().as_raw()));

        fs::write(&keys, b"ssh-ed25519 BBBB test\n").unwrap();
        let (changes, _) = w.poll();
        assert_eq!(
            names(&changes),
            vec![("authorized_keys".into(), FileOp::Modified)]
        );
        let want2: [u8; 32] = Sha256::digest(b"ssh-ed25519 BBBB test\n").into();
        assert_eq!(changes[0].sha256, Some(want2));

        fs::rename(watched_dir.join("job"), watched_dir.join("job2")).unwrap();
        fs::remove_file(watched_dir.join("job2")).unwrap();
        let (changes, _) = w.poll();
        assert_eq!(
            names(&changes),
            vec![
                ("job".into(), FileOp::Deleted),
                ("job2".into(), FileOp::Renamed),
                ("job2".into(), FileOp::Deleted),
            ]
        );
        assert_eq!(changes[2].size, None, "deleted: no metadata");
    }
}
