//! Process collector: the netlink process connector (exec, fork, exit),
//! enriched from `/proc/<pid>`.
//!
//! The connector needs root and works only from the initial network
//! namespace; with `--netns` the sensor stays there and keeps only processes
//! whose network namespace inode matches. A process that is gone before it is
//! read still yields an event (`exited_before_enrichment`) with its pid; with
//! `--netns`, such a process is attributed at its exit event from its parent
//! (see [`ProcessTracker`]), and one that cannot be attributed safely is
//! counted in `missed_total`, never guessed.
//! When the kernel drops notifications (`ENOBUFS`, the socket buffer
//! overflowed) the overrun is counted in `missed_total` and the collector
//! reports itself degraded.
//!
//! Cost: one exec costs about a dozen `/proc` syscalls (the `/proc/<pid>`
//! directory is opened once and every file read relative to it, namespace
//! first) and two wakeups (exec and exit); parents' executables are
//! remembered from their own exec instead of read again per child.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vigil_proto::limits::{MAX_ARGV, MAX_STRING};
use vigil_proto::{Payload, ProcessExit, ProcessStart, Visibility};

use super::CollectorCtx;

pub mod ebpf;

const NETLINK_CONNECTOR: libc::c_int = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDR: usize = 16;
const CN_MSG: usize = 20;

const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// One decoded process-connector event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEvent {
    /// `parent` forked `child` (thread-group ids).
    Fork {
        /// Parent tgid.
        parent: u32,
        /// Child pid.
        child_pid: u32,
        /// Child tgid.
        child_tgid: u32,
    },
    /// `pid` (a thread-group leader after exec) executed a new image.
    Exec {
        /// Process id (tgid).
        pid: u32,
    },
    /// A task exited.
    Exit {
        /// Task pid.
        pid: u32,
        /// Thread-group id.
        tgid: u32,
        /// Raw wait status.
        status: u32,
        /// Thread-group id of its parent at exit (0 on kernels before 4.18,
        /// which do not send it).
        parent: u32,
    },
    /// Something else (uid change, comm, ...).
    Other,
}

/// Decode every connector event in one datagram.
pub fn parse_datagram(buf: &[u8]) -> Vec<ProcEvent> {
    let mut out = Vec::new();
    parse_datagram_into(buf, &mut out);
    out.into_iter().map(|(_, ev)| ev).collect()
}

/// Decode every connector event in one datagram into `out`, each with its
/// kernel timestamp (`CLOCK_MONOTONIC` ns).
pub fn parse_datagram_into(buf: &[u8], out: &mut Vec<(u64, ProcEvent)>) {
    let mut off = 0;
    while off + NLMSG_HDR <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4")) as usize;
        if len < NLMSG_HDR || off + len > buf.len() {
            break;
        }
        let msg = &buf[off + NLMSG_HDR..off + len];
        if msg.len() >= CN_MSG + 16 {
            let ev = &msg[CN_MSG..];
            let u = |i: usize| -> u32 {
                ev.get(i..i + 4)
                    .map(|b| u32::from_ne_bytes(b.try_into().expect("4")))
                    .unwrap_or(0)
            };
            let what = u(0);
            // what(4) cpu(4) timestamp(8), then the union.
            let ts = u64::from_ne_bytes(ev[8..16].try_into().expect("8"));
            let d = 16;
            out.push((
                ts,
                match what {
                    PROC_EVENT_FORK => ProcEvent::Fork {
                        parent: u(d + 4),
                        child_pid: u(d + 8),
                        child_tgid: u(d + 12),
                    },
                    PROC_EVENT_EXEC => ProcEvent::Exec { pid: u(d + 4) },
                    PROC_EVENT_EXIT => ProcEvent::Exit {
                        pid: u(d),
                        tgid: u(d + 4),
                        status: u(d + 8),
                        parent: u(d + 20),
                    },
                    _ => ProcEvent::Other,
                },
            ));
        }
        off += (len + 3) & !3;
    }
}

/// Exit code from a raw wait status: the code, or minus the signal.
pub fn exit_code(status: u32) -> i32 {
    let sig = (status & 0x7f) as i32;
    if sig != 0 {
        -sig
    } else {
        ((status >> 8) & 0xff) as i32
    }
}

/// A subscribed process-connector socket.
pub struct ConnectorSocket {
    fd: OwnedFd,
    /// Event types asked for (honoured by kernels from 6.6).
    mask: u32,
}

impl ConnectorSocket {
    /// Open, bind to the proc group and subscribe to exec and exit events
    /// (needs CAP_NET_ADMIN).
    pub fn open() -> io::Result<ConnectorSocket> {
        ConnectorSocket::open_for(PROC_EVENT_EXEC | PROC_EVENT_EXIT)
    }

    /// Like [`ConnectorSocket::open`] for the event types in `mask`
    /// (`PROC_EVENT_*` bits); kernels before 6.6 send every type anyway.
    pub fn open_for(mask: u32) -> io::Result<ConnectorSocket> {
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_CONNECTOR,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh, owned descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_pid = 0;
        addr.nl_groups = CN_IDX_PROC;
        // SAFETY: addr is a valid sockaddr_nl of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = ConnectorSocket { fd, mask };
        sock.set_int(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 8 << 20)
            .or_else(|_| sock.set_int(libc::SOL_SOCKET, libc::SO_RCVBUF, 8 << 20))?;
        sock.set_timeout(Duration::from_millis(200));
        sock.subscribe(true)?;
        Ok(sock)
    }

    /// How long a blocking [`ConnectorSocket::recv`] waits (`SO_RCVTIMEO`).
    pub fn set_timeout(&self, t: Duration) {
        let tv = libc::timeval {
            tv_sec: t.as_secs() as libc::time_t,
            tv_usec: t.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: tv is a valid timeval of the given size.
        unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
    }

    fn set_int(&self, level: libc::c_int, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
        // SAFETY: v is a valid c_int of the given size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                &v as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn subscribe(&self, on: bool) -> io::Result<()> {
        // Since Linux 6.6 a listener can ask for some event types only;
        // exec and exit are all this collector uses, and skipping the forks
        // of every thread on the host saves most of the wakeups.
        // (`PROC_CN_MCAST_IGNORE` carries the mask too; the kernel ignores it.)
        let filtered = kernel_at_least(6, 6);
        let data_len: usize = if filtered { 8 } else { 4 };
        let total = NLMSG_HDR + CN_MSG + data_len;
        let mut msg = Vec::with_capacity(total);
        msg.extend_from_slice(&(total as u32).to_ne_bytes());
        msg.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&std::process::id().to_ne_bytes());
        msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&(data_len as u16).to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes());
        let op: u32 = if on { PROC_CN_MCAST_LISTEN } else { 2 };
        msg.extend_from_slice(&op.to_ne_bytes());
        if filtered {
            msg.extend_from_slice(&self.mask.to_ne_bytes());
        }
        // SAFETY: msg is a valid buffer of its length.
        let rc = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                msg.as_ptr() as *const libc::c_void,
                msg.len(),
                0,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Receive one datagram (times out after 200 ms with `WouldBlock`).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_flags(buf, 0)
    }

    /// Receive one datagram with `recv(2)` flags (e.g. `MSG_DONTWAIT`).
    pub fn recv_flags(&self, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
        // SAFETY: buf is a valid writable buffer of its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                flags,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl Drop for ConnectorSocket {
    fn drop(&mut self) {
        let _ = self.subscribe(false);
    }
}

/// True when the running kernel is at least `major.minor`.
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let Ok(release) = fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|x| x.parse::<u32>().ok());
    let (Some(a), Some(b)) = (it.next(), it.next()) else {
        return false;
    };
    (a, b) >= (major, minor)
}

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

fn bounded(mut s: String) -> String {
    if s.len() > MAX_STRING {
        let mut cut = MAX_STRING;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

fn readlink(path: String) -> Option<String> {
    fs::read_link(path)
        .ok()
        .map(|p| bounded(p.to_string_lossy().into_owned()))
}

/// Largest `cmdline` read (MAX_ARGV arguments of MAX_STRING bytes at most
/// are kept anyway).
const MAX_CMDLINE: usize = MAX_ARGV * MAX_STRING;

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

/// What the collector remembers about a live process (removed at its exit).
#[derive(Debug, Default, Clone)]
struct Known {
    /// Executable, once read (`None`: not read yet).
    exe: Option<Option<String>>,
    /// Network-namespace inode when last read (0: unknown).
    netns: u64,
    /// Seen exec'ing since the sensor started (not only looked up as a parent).
    execd: bool,
    /// A `ProcessStart` was emitted for it, so its exit is reported too.
    reported: bool,
    /// Its current image is a shell, which cannot change namespaces itself.
    shell: bool,
    /// Parent tgid and kernel time of its fork, when the sensor saw it.
    fork: Option<(u32, u64)>,
}

/// An exec in `--netns` mode whose namespace could not be read because the
/// process was already gone: decided at its exit event, which names the
/// parent.
#[derive(Debug)]
struct Pending {
    start: ProcessStart,
    since: Instant,
    /// The namespace of the pid's previous image, when that was a shell
    /// (`bash -c 'a; b'` execs `b` in the shell's own pid).
    inherit: Option<u64>,
}

/// Pending execs older than this are given up (their exit event was lost).
const PENDING_TTL: Duration = Duration::from_secs(10);
/// Bound on remembered processes.
const MAX_KNOWN: usize = 65_536;

fn is_shell(exe: Option<&str>) -> bool {
    let Some(exe) = exe else { return false };
    let base = exe.rsplit('/').next().unwrap_or(exe);
    matches!(
        base,
        "bash"
            | "sh"
            | "dash"
            | "zsh"
            | "ksh"
            | "ksh93"
            | "mksh"
            | "fish"
            | "rbash"
            | "tcsh"
            | "csh"
    )
}

/// The collector's state: turns connector events into payloads.
///
/// With a namespace filter, an exec is attributed to the namespace that
/// `/proc/<pid>/ns/net` names, read first of all. A process that is gone
/// before that read (a `/bin/true` lives well under a millisecond) is
/// attributed at its exit event, which carries the parent's tgid:
/// - a first exec since fork inherits the namespace its parent is in (a
///   child starts in its parent's namespace);
/// - a re-exec of a pid whose previous image was a shell keeps the shell's
///   namespace (a shell cannot change it);
/// - anything else (e.g. the second exec of `ip netns exec`, which changed
///   namespace in between) is not attributed: it is counted in
///   [`ProcessTracker::unattributed`] rather than guessed.
///
/// The one case inheritance gets wrong is a child that changes its own
/// namespace between fork and exec (`setns`/`unshare` in a pre-exec hook)
/// and exits before it could be read.
#[derive(Debug)]
pub struct ProcessTracker {
    enricher: Enricher,
    known: HashMap<u32, Known>,
    pending: HashMap<u32, Pending>,
    netns: Option<u64>,
    /// Execs that could not be attributed to a namespace (netns mode).
    pub unattributed: u64,
}

impl ProcessTracker {
    /// A tracker keeping only processes in network namespace `netns`
    /// (inode), or every process.
    pub fn new(netns: Option<u64>) -> ProcessTracker {
        ProcessTracker {
            enricher: Enricher::new(),
            known: HashMap::new(),
            pending: HashMap::new(),
            netns,
            unattributed: 0,
        }
    }

    /// Execs waiting for their exit event to be attributed.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Handle one event stamped `ts` (kernel `CLOCK_MONOTONIC` ns),
    /// appending what it produces to `out`.
    pub fn handle(&mut self, ts: u64, ev: ProcEvent, out: &mut Vec<Payload>) {
        match ev {
            ProcEvent::Exec { pid } => self.exec(pid, out),
            ProcEvent::Fork {
                parent,
                child_pid,
                child_tgid,
            } if child_pid == child_tgid => {
                // A new process (not a thread); any entry is a dead one's.
                if self.known.len() >= MAX_KNOWN {
                    self.known.clear();
                }
                self.known.insert(
                    child_tgid,
                    Known {
                        fork: Some((parent, ts)),
                        ..Known::default()
                    },
                );
            }
            ProcEvent::Exit {
                pid,
                tgid,
                status,
                parent,
            } if pid == tgid => self.exit(pid, status, parent, out),
            _ => {}
        }
    }

    /// Give up pending execs whose exit never came; returns how many.
    pub fn expire(&mut self, now: Instant) -> u64 {
        let before = self.pending.len();
        self.pending
            .retain(|_, p| now.duration_since(p.since) < PENDING_TTL);
        let gone = (before - self.pending.len()) as u64;
        self.unattributed += gone;
        gone
    }

    fn exec(&mut self, pid: u32, out: &mut Vec<Payload>) {
        // Read at once, namespace first: short-lived processes are gone
        // within a millisecond.
        let dir = ProcDir::open(pid);
        let ns = dir.as_ref().map(ProcDir::netns).unwrap_or(0);
        if self.pending.remove(&pid).is_some() {
            // That process was gone, so this is a new one with its pid: the
            // old one's exit event was lost.
            self.unattributed += 1;
        }
        let entry = self.known.remove(&pid);
        let fork = entry.as_ref().and_then(|k| k.fork);
        let prev = entry.filter(|k| k.execd);
        if self.known.len() >= MAX_KNOWN {
            self.known.clear();
        }
        if let Some(want) = self.netns {
            if ns != 0 && ns != want {
                // Another namespace: remembered (cheaply) for its re-execs.
                let reported = prev.as_ref().is_some_and(|k| k.reported);
                self.known.insert(
                    pid,
                    Known {
                        exe: prev.and_then(|k| k.exe).filter(|_| reported),
                        netns: ns,
                        execd: true,
                        reported,
                        shell: false,
                        fork,
                    },
                );
                return;
            }
        }
        let (mut p, running) = self.enricher.read_process(pid, dir.as_ref(), ns, fork);
        if p.exe.is_none() && running {
            // The event comes from inside execve(2); if the task has not
            // finished it, try once more a moment later.
            std::thread::sleep(Duration::from_micros(300));
            p = self.enricher.read_process(pid, dir.as_ref(), ns, fork).0;
        }
        drop(dir);
        if p.ppid != 0 {
            p.parent_exe = self.parent_exe(p.ppid);
        }
        if self.netns.is_some() && ns == 0 {
            let inherit = match &prev {
                None => None,
                Some(k) if k.shell && k.netns != 0 => Some(k.netns),
                Some(_) => {
                    self.unattributed += 1;
                    return;
                }
            };
            self.pending.insert(
                pid,
                Pending {
                    start: p,
                    since: Instant::now(),
                    inherit,
                },
            );
            return;
        }
        self.report_exec(p, fork, out);
    }

    /// Remember a process that exec'd and passed the namespace filter (so
    /// its exit is reported), and emit its start. Shared by both backends.
    fn report_exec(&mut self, p: ProcessStart, fork: Option<(u32, u64)>, out: &mut Vec<Payload>) {
        self.known.insert(
            p.pid,
            Known {
                exe: Some(p.exe.clone()),
                netns: p.netns,
                execd: true,
                reported: true,
                shell: is_shell(p.exe.as_deref()),
                fork,
            },
        );
        out.push(Payload::ProcessStart(p));
    }

    fn exit(&mut self, pid: u32, status: u32, parent: u32, out: &mut Vec<Payload>) {
        if let Some(pend) = self.pending.remove(&pid) {
            self.known.remove(&pid);
            let ns = match pend.inherit {
                Some(ns) => ns,
                None => self.netns_of_live(parent),
            };
            if ns == 0 || Some(ns) != self.netns {
                if ns == 0 {
                    self.unattributed += 1;
                }
                return;
            }
            let mut p = pend.start;
            p.netns = ns;
            if p.ppid == 0 {
                p.ppid = parent;
            }
            if p.parent_exe.is_none() && p.ppid != 0 {
                p.parent_exe = self.parent_exe(p.ppid);
            }
            let exe = p.exe.clone();
            out.push(Payload::ProcessStart(p));
            out.push(Payload::ProcessExit(ProcessExit {
                pid,
                exit_code: Some(exit_code(status)),
                exe,
            }));
            return;
        }
        // Only processes we reported (and so passed the netns filter).
        if let Some(k) = self.known.remove(&pid) {
            if k.reported {
                out.push(Payload::ProcessExit(ProcessExit {
                    pid,
                    exit_code: Some(exit_code(status)),
                    exe: k.exe.flatten(),
                }));
            }
        }
    }

    /// Namespace of a (parent) process now, or when last read.
    fn netns_of_live(&self, pid: u32) -> u64 {
        if pid == 0 {
            return 0;
        }
        match ProcDir::open(pid).map(|d| d.netns()).unwrap_or(0) {
            0 => self.known.get(&pid).map(|k| k.netns).unwrap_or(0),
            ns => ns,
        }
    }

    /// Executable of a parent: remembered from its exec, or read once.
    fn parent_exe(&mut self, ppid: u32) -> Option<String> {
        if let Some(Some(exe)) = self.known.get(&ppid).map(|k| &k.exe) {
            return exe.clone();
        }
        let exe = readlink(format!("/proc/{ppid}/exe"));
        self.known.entry(ppid).or_default().exe = Some(exe.clone());
        exe
    }

    /// Forget everything learnt from events (after the kernel dropped some).
    pub fn lost_events(&mut self) {
        // Exits may be among the dropped: remembered executables may now be
        // stale (pid reuse), so read parents afresh.
        for k in self.known.values_mut() {
            if !k.execd {
                k.exe = None;
            }
        }
    }
}

/// Exit events younger than this (kernel time) wait for the next round: an
/// exec stamped just before them might not be in its socket yet.
const EXIT_HOLD_NS: u64 = 20_000_000;
/// Longest wait for an exec before fork and exit events are read anyway.
const EXIT_DRAIN_EVERY: Duration = Duration::from_millis(50);

fn monotonic_ns() -> u64 {
    // SAFETY: ts is a valid timespec to fill.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What one non-blocking or blocking read of a connector socket gave.
enum Got {
    Data(usize),
    Nothing,
    Overrun,
    Failed(io::Error),
}

fn recv_once(sock: &ConnectorSocket, buf: &mut [u8], flags: libc::c_int) -> Got {
    match sock.recv_flags(buf, flags) {
        Ok(n) => Got::Data(n),
        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Got::Overrun,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) =>
        {
            Got::Nothing
        }
        Err(e) => Got::Failed(e),
    }
}

/// Run the collector until stopped.
///
/// On kernels from 6.6 exec events come on one socket, fork and exit
/// events on another: the thread wakes for execs only (their `/proc` must be
/// read at once) and collects the forks and exits queued meanwhile in the
/// same wakeup, or every 50 ms, so they (two thirds of the events, more
/// with short-lived threads) cost no wakeup of their own; forks give the
/// parent and start time, so `/proc/<pid>/stat` is not read. Forks and
/// exits are applied in kernel-timestamp order with the execs of the same
/// pid, and held back while younger than [`EXIT_HOLD_NS`] so no exit
/// overtakes its own exec.
pub fn run(ctx: CollectorCtx, netns: Option<u64>) {
    let opened = if kernel_at_least(6, 6) {
        ConnectorSocket::open_for(PROC_EVENT_EXEC).and_then(|execs| {
            let exits = ConnectorSocket::open_for(PROC_EVENT_FORK | PROC_EVENT_EXIT)?;
            // The fork/exit socket is read at least this often: its 8 MiB
            // buffer (~10k events) then absorbs ~200k thread forks and
            // exits per second between two reads.
            execs.set_timeout(EXIT_DRAIN_EVERY);
            Ok((execs, Some(exits)))
        })
    } else {
        ConnectorSocket::open().map(|s| (s, None))
    };
    let (sock, exit_sock) = match opened {
        Ok(s) => s,
        Err(e) => {
            ctx.stats.set(Visibility::Unavailable(format!(
                "process connector unavailable: {e} (needs root / CAP_NET_ADMIN in the initial network namespace)"
            )));
            return;
        }
    };
    ctx.stats.set(Visibility::Working);
    let mut tracker = ProcessTracker::new(netns);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut events: Vec<(u64, ProcEvent)> = Vec::new();
    // Exit events read but not applied yet, in arrival (= kernel) order.
    let mut held: Vec<(u64, ProcEvent)> = Vec::new();
    let mut last_overrun: Option<Instant> = None;
    let mut last_expire = Instant::now();
    let overrun = |tracker: &mut ProcessTracker, last: &mut Option<Instant>| {
        ctx.stats.missed.fetch_add(1, Ordering::Relaxed);
        ctx.stats.set(Visibility::Degraded(
            "kernel dropped process events (netlink ENOBUFS overrun)".into(),
        ));
        tracker.lost_events();
        *last = Some(Instant::now());
    };
    while !ctx.stopping() {
        if tracker.pending() > 0 && last_expire.elapsed() > Duration::from_secs(1) {
            last_expire = Instant::now();
            let gone = tracker.expire(last_expire);
            ctx.stats.missed.fetch_add(gone, Ordering::Relaxed);
        }
        // Block for the first exec (50 or 200 ms at most), then drain without
        // blocking: one wakeup handles everything queued meanwhile.
        events.clear();
        match recv_once(&sock, &mut buf, 0) {
            Got::Data(n) => parse_datagram_into(&buf[..n], &mut events),
            Got::Overrun => overrun(&mut tracker, &mut last_overrun),
            Got::Nothing => {
                if last_overrun.is_some_and(|t| t.elapsed() > Duration::from_secs(30)) {
                    ctx.stats.set(Visibility::Working);
                    last_overrun = None;
                }
            }
            Got::Failed(e) => {
                ctx.stats.set(Visibility::Unavailable(format!(
                    "process connector read failed: {e}"
                )));
                return;
            }
        }
        let horizon = monotonic_ns().saturating_sub(EXIT_HOLD_NS);
        loop {
            match recv_once(&sock, &mut buf, libc::MSG_DONTWAIT) {
                Got::Data(n) => parse_datagram_into(&buf[..n], &mut events),
                Got::Overrun => overrun(&mut tracker, &mut last_overrun),
                Got::Nothing | Got::Failed(_) => break,
            }
        }
        if let Some(xs) = &exit_sock {
            loop {
                match recv_once(xs, &mut buf, libc::MSG_DONTWAIT) {
                    Got::Data(n) => parse_datagram_into(&buf[..n], &mut held),
                    Got::Overrun => overrun(&mut tracker, &mut last_overrun),
                    Got::Nothing | Got::Failed(_) => break,
                }
            }
        }
        let unattributed = tracker.unattributed;
        for &(ts, ev) in &events {
            if let (ProcEvent::Exec { pid }, false) = (ev, held.is_empty()) {
                // The exit of an earlier process with this pid, and this
                // process's fork, go first.
                held.retain(|&(xts, x)| match x {
                    ProcEvent::Exit { tgid: p, .. } | ProcEvent::Fork { child_tgid: p, .. }
                        if p == pid && xts < ts =>
                    {
                        tracker.handle(xts, x, &mut out);
                        false
                    }
                    _ => true,
                });
            }
            tracker.handle(ts, ev, &mut out);
        }
        held.retain(|&(xts, x)| {
            if xts < horizon {
                tracker.handle(xts, x, &mut out);
                false
            } else {
                true
            }
        });
        ctx.stats
            .missed
            .fetch_add(tracker.unattributed - unattributed, Ordering::Relaxed);
        for payload in out.drain(..) {
            if !ctx.emit(payload) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(what: u32, data: &[u32]) -> Vec<u8> {
        let mut ev = Vec::new();
        ev.extend_from_slice(&what.to_ne_bytes());
        ev.extend_from_slice(&0u32.to_ne_bytes());
        ev.extend_from_slice(&0u64.to_ne_bytes());
        for d in data {
            ev.extend_from_slice(&d.to_ne_bytes());
        }
        let total = NLMSG_HDR + CN_MSG + ev.len();
        let mut buf = Vec::new();
        buf.extend_from_slice(&(total as u32).to_ne_bytes());
        buf.extend_from_slice(&[0u8; 12]);
        buf.extend_from_slice(&[0u8; CN_MSG]);
        buf.extend_from_slice(&ev);
        buf
    }

    #[test]
    fn parses_connector_events() {
        assert_eq!(
            parse_datagram(&datagram(PROC_EVENT_EXEC, &[77, 77])),
            vec![ProcEvent::Exec { pid: 77 }]
        );
        assert_eq!(
            parse_datagram(&datagram(PROC_EVENT_FORK, &[1, 1, 2, 2])),
            vec![ProcEvent::Fork {
                parent: 1,
                child_pid: 2,
                child_tgid: 2
            }]
        );
        assert_eq!(
            parse_datagram(&datagram(PROC_EVENT_EXIT, &[5, 5, 256 * 3, 17, 4, 4])),
            vec![ProcEvent::Exit {
                pid: 5,
                tgid: 5,
                status: 768,
                parent: 4
            }]
        );
        assert!(parse_datagram(&[1, 2, 3]).is_empty());
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(9), -9);
    }

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

    fn exit(pid: u32, parent: u32) -> ProcEvent {
        ProcEvent::Exit {
            pid,
            tgid: pid,
            status: 0,
            parent,
        }
    }

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
    fn gone_child_inherits_its_parents_namespace_at_exit() {
        let me = std::process::id();
        let mine = netns_of(me);
        let mut t = ProcessTracker::new(Some(mine));
        let mut out = Vec::new();
        t.handle(0, ProcEvent::Exec { pid: GONE }, &mut out);
        assert!(out.is_empty(), "waits for the exit event");
        assert_eq!(t.pending(), 1);
        t.handle(0, exit(GONE, me), &mut out);
        assert_eq!(t.pending(), 0);
        match &out[..] {
            [Payload::ProcessStart(p), Payload::ProcessExit(x)] => {
                assert_eq!((p.pid, p.ppid, p.netns), (GONE, me, mine));
                assert!(p.exited_before_enrichment);
                assert_eq!(x.pid, GONE);
            }
            other => panic!("{other:?}"),
        }
        // Watching another namespace: the same child is not reported.
        let mut t = ProcessTracker::new(Some(mine + 1));
        let mut out = Vec::new();
        t.handle(0, ProcEvent::Exec { pid: GONE }, &mut out);
        t.handle(0, exit(GONE, me), &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(t.unattributed, 0, "attributed: to another namespace");
    }

    #[test]
    fn gone_reexec_is_attributed_only_after_a_shell() {
        let me = std::process::id();
        let mine = netns_of(me);
        let mut t = ProcessTracker::new(Some(mine));
        let mut out = Vec::new();
        // A pid seen exec'ing a non-shell in the namespace (as `ip netns
        // exec` would, before it changes namespace and execs again).
        t.known.insert(
            GONE,
            Known {
                exe: Some(Some("/usr/bin/ip".into())),
                netns: mine,
                execd: true,
                reported: true,
                shell: false,
                fork: None,
            },
        );
        t.handle(0, ProcEvent::Exec { pid: GONE }, &mut out);
        assert_eq!(t.pending(), 0);
        assert_eq!(t.unattributed, 1);
        t.handle(0, exit(GONE, me), &mut out);
        assert!(
            !out.iter().any(|p| matches!(p, Payload::ProcessStart(_))),
            "{out:?}"
        );
        // After a shell, the image keeps the shell's namespace.
        out.clear();
        t.known.insert(
            GONE,
            Known {
                exe: Some(Some("/usr/bin/bash".into())),
                netns: mine,
                execd: true,
                reported: true,
                shell: true,
                fork: None,
            },
        );
        t.handle(0, ProcEvent::Exec { pid: GONE }, &mut out);
        t.handle(0, exit(GONE, 1), &mut out);
        assert!(
            matches!(&out[..], [Payload::ProcessStart(p), Payload::ProcessExit(_)] if p.netns == mine && p.ppid == 1),
            "{out:?}"
        );
    }

    #[test]
    fn fork_event_gives_parent_and_start_time_without_stat() {
        let me = std::process::id();
        let mut t = ProcessTracker::new(None);
        let mut out = Vec::new();
        let fork = ProcEvent::Fork {
            parent: me,
            child_pid: GONE,
            child_tgid: GONE,
        };
        let at = monotonic_ns();
        t.handle(at, fork, &mut out);
        t.handle(at + 1000, ProcEvent::Exec { pid: GONE }, &mut out);
        let Some(Payload::ProcessStart(p)) = out.first() else {
            panic!("{out:?}")
        };
        assert_eq!(p.ppid, me);
        let st = p.start_time_ns.expect("start time from the fork event");
        let now = crate::collect::now_ns();
        assert!(st <= now && st + 2_000_000_000 > now, "{st} vs {now}");
        // Thread creations are not processes.
        let mut t = ProcessTracker::new(None);
        let thread = ProcEvent::Fork {
            parent: me,
            child_pid: GONE + 1,
            child_tgid: GONE,
        };
        t.handle(at, thread, &mut out);
        assert!(t.known.is_empty());
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
