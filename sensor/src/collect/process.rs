//! Process collector: the netlink process connector (exec, fork, exit),
//! enriched from `/proc/<pid>`.
//!
//! The connector needs root and works only from the initial network
//! namespace; with `--netns` the sensor stays there and keeps only processes
//! whose network namespace inode matches. A process that is gone before it is
//! read still yields an event (`exited_before_enrichment`) with its pid.
//! When the kernel drops notifications (`ENOBUFS`, the socket buffer
//! overflowed) the overrun is counted in `missed_total` and the collector
//! reports itself degraded.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vigil_proto::limits::{MAX_ARGV, MAX_STRING};
use vigil_proto::{Payload, ProcessExit, ProcessStart, Visibility};

use super::CollectorCtx;

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
    },
    /// Something else (uid change, comm, ...).
    Other,
}

/// Decode every connector event in one datagram.
pub fn parse_datagram(buf: &[u8]) -> Vec<ProcEvent> {
    let mut out = Vec::new();
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
            let d = 16;
            out.push(match what {
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
                },
                _ => ProcEvent::Other,
            });
        }
        off += (len + 3) & !3;
    }
    out
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
}

impl ConnectorSocket {
    /// Open, bind to the proc group and subscribe (needs CAP_NET_ADMIN).
    pub fn open() -> io::Result<ConnectorSocket> {
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
        let sock = ConnectorSocket { fd };
        sock.set_int(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 8 << 20)
            .or_else(|_| sock.set_int(libc::SOL_SOCKET, libc::SO_RCVBUF, 8 << 20))?;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: tv is a valid timeval of the given size.
        unsafe {
            libc::setsockopt(
                sock.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        sock.subscribe(true)?;
        Ok(sock)
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
            msg.extend_from_slice(&(PROC_EVENT_EXEC | PROC_EVENT_EXIT).to_ne_bytes());
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
    users_loaded: bool,
    boot_ns: Option<u64>,
    tck: u64,
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

impl Enricher {
    /// A fresh enricher.
    pub fn new() -> Enricher {
        Enricher {
            tck: crate::health::clk_tck(),
            ..Enricher::default()
        }
    }

    /// User name of a uid from `/etc/passwd` (cached; reloaded on a miss).
    pub fn user_name(&mut self, uid: u32) -> Option<String> {
        if !self.users.contains_key(&uid) || !self.users_loaded {
            self.users = parse_passwd(&fs::read_to_string("/etc/passwd").unwrap_or_default());
            self.users_loaded = true;
        }
        self.users.get(&uid).cloned()
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
        self.process_start_with(pid, &HashMap::new())
    }

    /// Like [`Enricher::process_start`], taking parent executables from
    /// `known_exes` (pid → exe of processes seen exec'ing) when present.
    /// `/proc/<pid>/status` is avoided on purpose: it is the costliest file
    /// to generate; the uid comes from the owner of `/proc/<pid>` instead.
    pub fn process_start_with(
        &mut self,
        pid: u32,
        known_exes: &HashMap<u32, Option<String>>,
    ) -> ProcessStart {
        let mut p = ProcessStart {
            pid,
            ..ProcessStart::default()
        };
        let meta = fs::metadata(format!("/proc/{pid}"));
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"));
        p.exe = readlink(format!("/proc/{pid}/exe"));
        if let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) {
            p.argv = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .take(MAX_ARGV)
                .map(|a| bounded(String::from_utf8_lossy(a).into_owned()))
                .collect();
        }
        p.cwd = readlink(format!("/proc/{pid}/cwd"));
        p.netns = netns_of(pid);
        p.uid = meta.as_ref().ok().map(|m| m.uid());
        if let Ok(stat) = &stat {
            if let Some(start_ticks) = stat_field(stat, 22).and_then(|v| v.parse::<u64>().ok()) {
                if let Some(boot) = self.boot_ns() {
                    p.start_time_ns = Some(boot + start_ticks * 1_000_000_000 / self.tck.max(1));
                }
            }
            p.ppid = stat_field(stat, 4)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
        if let Some(uid) = p.uid {
            p.user = self.user_name(uid);
        }
        if p.ppid != 0 {
            p.parent_exe = match known_exes.get(&p.ppid) {
                Some(Some(exe)) => Some(exe.clone()),
                _ => readlink(format!("/proc/{}/exe", p.ppid)),
            };
        }
        p.exited_before_enrichment = stat.is_err() || p.exe.is_none() && p.argv.is_empty();
        p
    }
}

/// True when the process exists and is not a zombie.
fn is_running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_field(&s, 3).map(|st| st != "Z" && st != "X"))
        .unwrap_or(false)
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

/// Run the collector until stopped.
pub fn run(ctx: CollectorCtx, netns: Option<u64>) {
    let sock = match ConnectorSocket::open() {
        Ok(s) => s,
        Err(e) => {
            ctx.stats.set(Visibility::Unavailable(format!(
                "process connector unavailable: {e} (needs root / CAP_NET_ADMIN in the initial network namespace)"
            )));
            return;
        }
    };
    ctx.stats.set(Visibility::Working);
    let mut enricher = Enricher::new();
    // pid → exe of processes seen exec'ing, for exit events (bounded).
    let mut exes: HashMap<u32, Option<String>> = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_overrun: Option<Instant> = None;
    let mut draining = false;
    while !ctx.stopping() {
        // Block for the first event, then drain without blocking: one wakeup
        // handles everything queued meanwhile.
        let flags = if draining { libc::MSG_DONTWAIT } else { 0 };
        let n = match sock.recv_flags(&mut buf, flags) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                ctx.stats.missed.fetch_add(1, Ordering::Relaxed);
                ctx.stats.set(Visibility::Degraded(
                    "kernel dropped process events (netlink ENOBUFS overrun)".into(),
                ));
                last_overrun = Some(Instant::now());
                continue;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if draining {
                    draining = false;
                    continue;
                }
                if last_overrun.is_some_and(|t| t.elapsed() > Duration::from_secs(30)) {
                    ctx.stats.set(Visibility::Working);
                    last_overrun = None;
                }
                continue;
            }
            Err(e) => {
                ctx.stats.set(Visibility::Unavailable(format!(
                    "process connector read failed: {e}"
                )));
                return;
            }
        };
        draining = true;
        for ev in parse_datagram(&buf[..n]) {
            let Some(payload) = handle(ev, netns, &mut enricher, &mut exes) else {
                continue;
            };
            if !ctx.emit(payload) {
                return;
            }
        }
    }
}

fn handle(
    ev: ProcEvent,
    netns: Option<u64>,
    enricher: &mut Enricher,
    exes: &mut HashMap<u32, Option<String>>,
) -> Option<Payload> {
    match ev {
        ProcEvent::Exec { pid } => {
            // Read at once: short-lived processes are gone within a millisecond.
            let mut p = enricher.process_start_with(pid, exes);
            if p.exe.is_none() && is_running(pid) {
                // The event comes from inside execve(2); if the task has not
                // finished it, try once more a moment later.
                std::thread::sleep(Duration::from_micros(300));
                p = enricher.process_start_with(pid, exes);
            }
            if netns.is_some_and(|want| p.netns != want) {
                return None;
            }
            if exes.len() > 65_536 {
                exes.clear();
            }
            exes.insert(pid, p.exe.clone());
            Some(Payload::ProcessStart(p))
        }
        ProcEvent::Exit { pid, tgid, status } if pid == tgid => {
            // Only processes we reported (and so passed the netns filter).
            let exe = exes.remove(&pid)?;
            Some(Payload::ProcessExit(ProcessExit {
                pid,
                exit_code: Some(exit_code(status)),
                exe,
            }))
        }
        _ => None,
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
            parse_datagram(&datagram(PROC_EVENT_EXIT, &[5, 5, 256 * 3, 17])),
            vec![ProcEvent::Exit {
                pid: 5,
                tgid: 5,
                status: 768
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
}
