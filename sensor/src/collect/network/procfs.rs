//! Socket owners from `/proc`: which process holds a socket inode (a scan
//! of `/proc/<pid>/fd`, cached between polls), and executables of pids.

use std::collections::{HashMap, HashSet};
use std::fs;

use super::sock_diag::DiagSocket;

/// Socket inode → (pid, exe), by scanning `/proc/*/fd`.
pub fn socket_owners() -> HashMap<u32, (u32, Option<String>)> {
    let Ok(procs) = fs::read_dir("/proc") else {
        return HashMap::new();
    };
    socket_owners_in(
        procs
            .flatten()
            .filter_map(|p| p.file_name().to_str().and_then(|s| s.parse::<u32>().ok())),
    )
}

/// Socket inode → (pid, exe) for the sockets of these processes.
///
/// Each `/proc/<pid>/fd` directory is opened once and its links are read
/// relative to it (`readlinkat`) into a stack buffer, so a process with
/// thousands of descriptors costs one short syscall per descriptor, without
/// a path walk or an allocation each.
pub fn socket_owners_in(pids: impl Iterator<Item = u32>) -> HashMap<u32, (u32, Option<String>)> {
    let mut map = HashMap::new();
    for pid in pids {
        scan_fds(pid, &mut map, None);
    }
    map
}

/// Per process, what its descriptors held at the last scan: the socket
/// inode at index fd (0 for anything but a socket, or no descriptor).
pub type FdCache = HashMap<u32, Vec<u32>>;

/// Like [`socket_owners_in`], but a descriptor that held a socket still
/// alive (its inode in `live`, the inodes of the current `sock_diag`
/// snapshot) is taken from `cache` instead of read again: with many
/// long-lived connections only new or reused descriptors cost a syscall.
/// (A descriptor closed and reused while its old socket lives on elsewhere
/// is missed here; the caller's full scan finds its socket.)
pub fn socket_owners_cached(
    pids: impl Iterator<Item = u32>,
    live: &HashSet<u32>,
    cache: &mut FdCache,
) -> HashMap<u32, (u32, Option<String>)> {
    let mut map = HashMap::new();
    for pid in pids {
        let old = cache.remove(&pid).unwrap_or_default();
        let mut now = Vec::with_capacity(old.len());
        if scan_fds(pid, &mut map, Some((&old, live, &mut now))) {
            cache.insert(pid, now);
        }
    }
    map
}

type FdMemory<'a> = (&'a [u32], &'a HashSet<u32>, &'a mut Vec<u32>);

/// Add the sockets of `pid` to `map`; false when its fds cannot be read.
fn scan_fds(
    pid: u32,
    map: &mut HashMap<u32, (u32, Option<String>)>,
    mut memory: Option<FdMemory<'_>>,
) -> bool {
    let Ok(path) = std::ffi::CString::new(format!("/proc/{pid}/fd")) else {
        return false;
    };
    // SAFETY: path is NUL-terminated; the result is checked.
    let dir = unsafe { libc::opendir(path.as_ptr()) };
    if dir.is_null() {
        return false;
    }
    // SAFETY: dir is a valid, open directory stream.
    let dfd = unsafe { libc::dirfd(dir) };
    let mut exe: Option<Option<String>> = None;
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: dir is open; the entry is valid until the next call.
        let ent = unsafe { libc::readdir64(dir) };
        if ent.is_null() {
            break;
        }
        // SAFETY: d_name is NUL-terminated within the entry.
        let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) };
        let Some(fd) = std::str::from_utf8(name.to_bytes())
            .ok()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let remembered = memory
            .as_ref()
            .and_then(|(old, live, _)| {
                old.get(fd as usize)
                    .filter(|i| **i != 0 && live.contains(i))
            })
            .copied();
        let ino = match remembered {
            Some(ino) => ino,
            None => {
                // SAFETY: name is a valid C string; buf is writable for its length.
                let n = unsafe {
                    libc::readlinkat(
                        dfd,
                        name.as_ptr(),
                        buf.as_mut_ptr() as *mut libc::c_char,
                        buf.len(),
                    )
                };
                if n <= 0 {
                    continue;
                }
                socket_inode(&buf[..n as usize]).unwrap_or(0)
            }
        };
        if let Some((_, _, now)) = memory.as_mut() {
            // Descriptor numbers are small and dense.
            if (fd as usize) < 1 << 20 {
                if now.len() <= fd as usize {
                    now.resize(fd as usize + 1, 0);
                }
                now[fd as usize] = ino;
            }
        }
        if ino == 0 {
            continue;
        }
        let exe = exe
            .get_or_insert_with(|| {
                fs::read_link(format!("/proc/{pid}/exe"))
                    .ok()
                    .map(|p| p.to_string_lossy().into_owned())
            })
            .clone();
        map.entry(ino).or_insert((pid, exe));
    }
    // SAFETY: dir was opened above and is closed once.
    unsafe { libc::closedir(dir) };
    true
}

/// The inode of a `socket:[N]` link target.
fn socket_inode(target: &[u8]) -> Option<u32> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Executables of pids, read from `/proc/<pid>/exe` at most once per pid a
/// poll round: a process making many connections costs one read a round,
/// and a reused pid is never given an old executable for longer than that.
#[derive(Debug, Default)]
pub struct ExeCache {
    exes: HashMap<u32, Option<String>>,
}

impl ExeCache {
    /// Executable of `pid` (`None` once the process is gone).
    pub fn get(&mut self, pid: u32) -> Option<String> {
        self.exes
            .entry(pid)
            .or_insert_with(|| {
                fs::read_link(format!("/proc/{pid}/exe"))
                    .ok()
                    .map(|p| p.to_string_lossy().into_owned())
            })
            .clone()
    }

    /// Forget every executable (start of a poll round).
    pub fn clear(&mut self) {
        self.exes.clear();
    }
}

/// Socket owners found by scanning `/proc/<pid>/fd`: inode → (pid, exe).
#[derive(Debug, Default)]
pub(super) struct ProcOwners {
    owners: HashMap<u32, (u32, Option<String>)>,
    /// Pids that owned the last new sockets: scanned first next time.
    hot: HashSet<u32>,
    fd_cache: FdCache,
}

impl ProcOwners {
    /// Find the owners of these socket inodes that are not known yet.
    pub(super) fn find(&mut self, inodes: impl Iterator<Item = u32>, snapshot: &[DiagSocket]) {
        let wanted: HashSet<u32> = inodes
            .filter(|i| *i != 0 && !self.owners.contains_key(i))
            .collect();
        if wanted.is_empty() {
            return;
        }
        // Processes that made connections recently usually make the next
        // ones too: look at them first, scan all of /proc only if needed.
        let live: HashSet<u32> = snapshot
            .iter()
            .map(|s| s.inode)
            .filter(|i| *i != 0)
            .collect();
        let mut found = socket_owners_cached(self.hot.iter().copied(), &live, &mut self.fd_cache);
        if !wanted.iter().all(|i| found.contains_key(i)) {
            found = socket_owners();
        }
        self.hot = wanted
            .iter()
            .filter_map(|i| found.get(i).map(|(p, _)| *p))
            .collect();
        let hot = &self.hot;
        self.fd_cache.retain(|pid, _| hot.contains(pid));
        self.owners.extend(found);
    }

    /// Owner of a socket inode (0 = none).
    pub(super) fn get(&self, inode: u32) -> (Option<u32>, Option<String>) {
        self.owners
            .get(&inode)
            .filter(|_| inode != 0)
            .cloned()
            .map_or((None, None), |(p, e)| (Some(p), e))
    }

    /// Bound the memory of a long run.
    pub(super) fn trim(&mut self) {
        if self.owners.len() > 200_000 {
            self.owners.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::network::{DiagSocketConn, TCP_LISTEN};
    use vigil_proto::Transport;

    #[test]
    fn cached_fd_scan_finds_new_sockets_and_keeps_live_ones() {
        let me = std::process::id();
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut d = DiagSocketConn::open().unwrap();
        let inode_of = |d: &mut DiagSocketConn, addr| {
            d.dump(libc::AF_INET as u8, Transport::Tcp, 1 << TCP_LISTEN)
                .unwrap()
                .into_iter()
                .find(|s| s.local == addr)
                .unwrap()
                .inode
        };
        let ia = inode_of(&mut d, a.local_addr().unwrap());
        let mut cache = FdCache::new();
        let live: HashSet<u32> = [ia].into();
        let found = socket_owners_cached([me].into_iter(), &live, &mut cache);
        assert_eq!(found.get(&ia).map(|o| o.0), Some(me));
        // A new socket (possibly on a reused descriptor) is found; the
        // remembered live one is still reported.
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ib = inode_of(&mut d, b.local_addr().unwrap());
        let live: HashSet<u32> = [ia, ib].into();
        let found = socket_owners_cached([me].into_iter(), &live, &mut cache);
        assert_eq!(found.get(&ia).map(|o| o.0), Some(me));
        assert_eq!(found.get(&ib).map(|o| o.0), Some(me));
        // Closed, then its descriptor reused by another socket.
        drop(b);
        let c = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ic = inode_of(&mut d, c.local_addr().unwrap());
        let live: HashSet<u32> = [ia, ic].into();
        let found = socket_owners_cached([me].into_iter(), &live, &mut cache);
        assert_eq!(found.get(&ic).map(|o| o.0), Some(me));
        assert!(!found.contains_key(&ib));
    }

    #[test]
    fn socket_link_targets() {
        assert_eq!(socket_inode(b"socket:[12345]"), Some(12345));
        assert_eq!(socket_inode(b"pipe:[12345]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
    }
}
