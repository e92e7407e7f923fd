//! Reading `/proc/<pid>`: the [`ProcDir`] handle every file of a process is
//! read through, and the [`Enricher`] that turns it into a [`ProcessStart`]
//! (user names and boot time cached).

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use vigil_proto::limits::{MAX_ARGV, MAX_STRING};
use vigil_proto::ProcessStart;

/// Reads `/proc` and caches user names and boot time.
#[derive(Debug, Default)]
pub struct Enricher {
    users: HashMap<u32, String>,
    users_loaded_at: Option<Instant>,
    boot_ns: Option<u64>,
    tck: u64,
    /// Reused read buffer (`stat`, `cmdline`).
    buf: Vec<u8>,
}

/// Network-namespace inode of a process (0 when unreadable).
pub fn netns_of(pid: u32) -> u64 {
    fs::metadata(format!("/proc/{pid}/ns/net"))
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// `s` cut to [`MAX_STRING`] bytes at a character boundary.
pub(super) fn bounded(mut s: String) -> String {
    if s.len() > MAX_STRING {
        let mut cut = MAX_STRING;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Target of a symlink, bounded (`None` when unreadable).
pub(super) fn readlink(path: String) -> Option<String> {
    fs::read_link(path)
        .ok()
        .map(|p| bounded(p.to_string_lossy().into_owned()))
}

/// Largest `cmdline` read (MAX_ARGV arguments of MAX_STRING bytes at most
/// are kept anyway).
pub(super) const MAX_CMDLINE: usize = MAX_ARGV * MAX_STRING;

/// An open `/proc/<pid>` directory: every file of the process is then
/// reached relative to it (`openat`, `readlinkat`, `fstatat`), so the path
/// walk through `/proc/<pid>` happens once per process instead of once per
/// file, and no file is `stat`ed for a size hint (the `/proc` sizes are 0).
pub struct ProcDir {
    // A raw descriptor closed in `Drop` with a bare close(2): `OwnedFd`'s
    // drop adds an fcntl(2) check per close in debug-assertion builds.
    fd: RawFd,
}

impl Drop for ProcDir {
    fn drop(&mut self) {
        // SAFETY: fd was opened by `ProcDir::open` and is closed only here.
        unsafe { libc::close(self.fd) };
    }
}

impl ProcDir {
    /// Open `/proc/<pid>` (an `O_PATH` handle; `None` once the pid is gone).
    pub fn open(pid: u32) -> Option<ProcDir> {
        let mut path = *b"/proc/\0\0\0\0\0\0\0\0\0\0\0";
        let mut digits = [0u8; 10];
        let mut n = pid;
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..len {
            path[6 + i] = digits[len - 1 - i];
        }
        // SAFETY: path is NUL-terminated (at most 10 digits after "/proc/").
        let raw = unsafe {
            libc::open(
                path.as_ptr() as *const libc::c_char,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return None;
        }
        Some(ProcDir { fd: raw })
    }

    fn stat_at(&self, name: &CStr) -> Option<libc::stat> {
        // SAFETY: stat is plain data; name is NUL-terminated; the result is checked.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::fstatat(self.fd, name.as_ptr(), &mut st, 0) };
        (rc == 0).then_some(st)
    }

    /// Owner uid of the directory (the process's effective uid).
    pub fn uid(&self) -> Option<u32> {
        // SAFETY: as above; AT_EMPTY_PATH stats the handle itself.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::fstatat(self.fd, c"".as_ptr(), &mut st, libc::AT_EMPTY_PATH) };
        (rc == 0).then_some(st.st_uid)
    }

    /// Network-namespace inode (0 when unreadable: gone, or a zombie).
    pub fn netns(&self) -> u64 {
        self.stat_at(c"ns/net").map(|s| s.st_ino).unwrap_or(0)
    }

    /// Target of a symlink in the directory (`exe`, `cwd`), bounded.
    pub fn readlink(&self, name: &CStr) -> Option<String> {
        let mut buf = [0u8; 4096];
        // SAFETY: buf is writable for its length; name is NUL-terminated.
        let n = unsafe {
            libc::readlinkat(
                self.fd,
                name.as_ptr(),
                buf.as_mut_ptr() as *mut libc::c_char,
                buf.len(),
            )
        };
        if n < 0 {
            return None;
        }
        Some(bounded(
            String::from_utf8_lossy(&buf[..n as usize]).into_owned(),
        ))
    }

    /// Read a whole file of the directory into `buf` (cleared first), at
    /// most `max` bytes. A short read ends it: `/proc/<pid>/{stat,cmdline}`
    /// fill the whole request when they have more.
    pub fn read(&self, name: &CStr, buf: &mut Vec<u8>, max: usize) -> bool {
        buf.clear();
        // SAFETY: name is NUL-terminated; the result is checked.
        let raw = unsafe { libc::openat(self.fd, name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if raw < 0 {
            return false;
        }
        let ok = read_fd(raw, buf, max);
        // SAFETY: raw was opened above and is closed once.
        unsafe { libc::close(raw) };
        ok
    }
}

/// Read `fd` to its end into `buf` (see [`ProcDir::read`]).
fn read_fd(fd: RawFd, buf: &mut Vec<u8>, max: usize) -> bool {
    if buf.capacity() < 4096 {
        buf.reserve(4096);
    }
    loop {
        if buf.len() == buf.capacity() {
            if buf.len() >= max {
                return true;
            }
            buf.reserve(buf.len());
        }
        let spare = buf.capacity() - buf.len();
        // SAFETY: the spare capacity is writable; only what read(2)
        // wrote is then marked initialised.
        let n = unsafe {
            libc::read(
                fd,
                buf.as_mut_ptr().add(buf.len()) as *mut libc::c_void,
                spare,
            )
        };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return !buf.is_empty();
        }
        let n = n as usize;
        // SAFETY: read(2) initialised n bytes after the current length.
        unsafe { buf.set_len(buf.len() + n) };
        if n == 0 || n < spare {
            return true;
        }
    }
}

impl Enricher {
    /// A fresh enricher.
    pub fn new() -> Enricher {
        Enricher {
            tck: crate::health::clk_tck(),
            ..Enricher::default()
        }
    }

    /// User name of a uid from `/etc/passwd` (cached; reloaded on a miss,
    /// at most every 10 s, so uids without a name do not reread it per exec).
    pub fn user_name(&mut self, uid: u32) -> Option<String> {
        let stale = self
            .users_loaded_at
            .is_none_or(|t| t.elapsed() > Duration::from_secs(10));
        if !self.users.contains_key(&uid) && stale {
            self.users = parse_passwd(&fs::read_to_string("/etc/passwd").unwrap_or_default());
            self.users_loaded_at = Some(Instant::now());
        }
        self.users.get(&uid).cloned()
    }

    /// Start time (ns since the epoch, at the clock-tick resolution of
    /// `/proc/<pid>/stat`'s field 22, so both ways give the same value) of a
    /// process forked at kernel `CLOCK_MONOTONIC` time `fork_ns`.
    pub fn start_time_of_fork(&mut self, fork_ns: u64) -> Option<u64> {
        let boot = self.boot_ns()?;
        let clock = |id| {
            // SAFETY: ts is a valid timespec to fill.
            let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
            unsafe { libc::clock_gettime(id, &mut ts) };
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        };
        // /proc counts from boot including suspend (CLOCK_BOOTTIME).
        let suspended = clock(libc::CLOCK_BOOTTIME).saturating_sub(clock(libc::CLOCK_MONOTONIC));
        let tick_ns = 1_000_000_000 / self.tck.max(1);
        Some(boot + (fork_ns + suspended) / tick_ns * tick_ns)
    }

    /// Start time (ns since the epoch, at clock-tick resolution, as
    /// `/proc/<pid>/stat` gives it) of a task whose `start_boottime` is
    /// `boottime_ns` (ns since boot, counting suspend).
    pub fn start_time_of_boottime(&mut self, boottime_ns: u64) -> Option<u64> {
        let boot = self.boot_ns()?;
        let tick_ns = 1_000_000_000 / self.tck.max(1);
        Some(boot + boottime_ns / tick_ns * tick_ns)
    }

    fn boot_ns(&mut self) -> Option<u64> {
        if self.boot_ns.is_none() {
            let stat = fs::read_to_string("/proc/stat").ok()?;
            let btime: u64 = stat
                .lines()
                .find_map(|l| l.strip_prefix("btime "))?
                .trim()
                .parse()
                .ok()?;
            self.boot_ns = Some(btime * 1_000_000_000);
        }
        self.boot_ns
    }

    /// Everything `/proc/<pid>` tells about a process that just exec'd.
    pub fn process_start(&mut self, pid: u32) -> ProcessStart {
        let dir = ProcDir::open(pid);
        let netns = dir.as_ref().map(ProcDir::netns).unwrap_or(0);
        let mut p = self.read_process(pid, dir.as_ref(), netns, None).0;
        if p.ppid != 0 {
            p.parent_exe = readlink(format!("/proc/{}/exe", p.ppid));
        }
        p
    }

    /// Everything but the parent's executable, from an open `/proc/<pid>`
    /// (`None`: already gone) whose namespace inode was read as `netns`.
    /// Also says whether the process is still running (not a zombie).
    /// `/proc/<pid>/status` is avoided on purpose: it is the costliest file
    /// to generate; the uid comes from the owner of `/proc/<pid>` instead.
    /// With `fork` (parent tgid and kernel `CLOCK_MONOTONIC` time of the
    /// fork, from the connector's fork event), the parent and start time
    /// come from it and `/proc/<pid>/stat`, the next costliest, is not read.
    pub fn read_process(
        &mut self,
        pid: u32,
        dir: Option<&ProcDir>,
        netns: u64,
        fork: Option<(u32, u64)>,
    ) -> (ProcessStart, bool) {
        let mut p = ProcessStart {
            pid,
            netns,
            exited_before_enrichment: true,
            ..ProcessStart::default()
        };
        if let Some((parent, ts)) = fork {
            p.ppid = parent;
            p.start_time_ns = self.start_time_of_fork(ts);
        }
        let Some(dir) = dir else {
            return (p, false);
        };
        p.exe = dir.readlink(c"exe");
        let mut buf = std::mem::take(&mut self.buf);
        if dir.read(c"cmdline", &mut buf, MAX_CMDLINE) {
            p.argv = argv_from_cmdline(&buf);
        }
        p.cwd = dir.readlink(c"cwd");
        p.uid = dir.uid();
        // Without stat: a zombie has no command line left.
        let mut running = !p.argv.is_empty();
        let stat_ok = fork.is_some() || dir.read(c"stat", &mut buf, 4096);
        if fork.is_none() && stat_ok {
            let stat = String::from_utf8_lossy(&buf);
            running = stat_field(&stat, 3).is_some_and(|st| st != "Z" && st != "X");
            if let Some(start_ticks) = stat_field(&stat, 22).and_then(|v| v.parse::<u64>().ok()) {
                if let Some(boot) = self.boot_ns() {
                    p.start_time_ns = Some(boot + start_ticks * 1_000_000_000 / self.tck.max(1));
                }
            }
            p.ppid = stat_field(&stat, 4)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
        self.buf = buf;
        if let Some(uid) = p.uid {
            p.user = self.user_name(uid);
        }
        p.exited_before_enrichment = !stat_ok || p.exe.is_none() && p.argv.is_empty();
        (p, running)
    }
}

/// Arguments from `cmdline` bytes (NUL-separated; empty ones dropped),
/// bounded as every backend bounds them: [`MAX_ARGV`] of [`MAX_STRING`].
pub fn argv_from_cmdline(buf: &[u8]) -> Vec<String> {
    buf.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .take(MAX_ARGV)
        .map(|a| bounded(String::from_utf8_lossy(a).into_owned()))
        .collect()
}

/// Field `n` (1-based, as in proc(5)) of a `/proc/<pid>/stat` line.
pub fn stat_field(stat: &str, n: usize) -> Option<&str> {
    if n <= 2 {
        return None;
    }
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(n - 3)
}

/// uid → name from `/etc/passwd` text.
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let _pw = f.next()?;
            let uid = f.next()?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

/// Netns filter from `--netns NAME` (inode of `/run/netns/NAME`).
pub fn netns_inode(name: &str) -> io::Result<u64> {
    fs::metadata(format!("/run/netns/{name}")).map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_and_stat_parsing() {
        let users = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        );
        assert_eq!(users[&1000], "alice");
        let stat = "42 (a b) S 7 42 42 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 12345 0 0";
        assert_eq!(stat_field(stat, 4), Some("7"));
        assert_eq!(stat_field(stat, 22), Some("12345"));
    }

    #[test]
    fn enriches_own_process() {
        let mut e = Enricher::new();
        let p = e.process_start(std::process::id());
        assert_eq!(
            p.exe,
            std::env::current_exe()
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        );
        assert!(!p.argv.is_empty());
        assert!(p.ppid > 0);
        assert!(p.netns > 0);
        assert!(p.start_time_ns.is_some());
        assert!(!p.exited_before_enrichment);
        // A pid that does not exist is still reported, flagged.
        let gone = e.process_start(u32::MAX - 1);
        assert!(gone.exited_before_enrichment);
        assert_eq!(gone.exe, None);
    }

    /// A pid that cannot exist (above the kernel's pid_max limit).
    const GONE: u32 = 1 << 23;

    #[test]
    fn reads_relative_to_the_proc_dir() {
        let me = std::process::id();
        let d = ProcDir::open(me).expect("own /proc dir");
        assert_eq!(d.netns(), netns_of(me));
        assert_eq!(d.uid(), Some(nix::unistd::geteuid().as_raw()));
        let mut buf = Vec::new();
        assert!(d.read(c"stat", &mut buf, 4096));
        assert!(String::from_utf8_lossy(&buf).starts_with(&format!("{me} (")));
        assert!(ProcDir::open(GONE).is_none());
    }

    #[test]
    fn start_time_of_fork_matches_proc() {
        // Own process: its /proc start time, and the same instant given as
        // a CLOCK_MONOTONIC time, agree to the tick.
        let mut e = Enricher::new();
        let mine = e.process_start(std::process::id()).start_time_ns.unwrap();
        let stat = fs::read_to_string("/proc/self/stat").unwrap();
        let ticks: u64 = stat_field(&stat, 22).unwrap().parse().unwrap();
        let tick_ns = 1_000_000_000 / e.tck;
        let clock = |id| {
            let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
            unsafe { libc::clock_gettime(id, &mut ts) };
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        };
        let suspended = clock(libc::CLOCK_BOOTTIME).saturating_sub(clock(libc::CLOCK_MONOTONIC));
        let fork_mono = (ticks * tick_ns + tick_ns / 2).saturating_sub(suspended);
        assert_eq!(e.start_time_of_fork(fork_mono), Some(mine));
    }
}
