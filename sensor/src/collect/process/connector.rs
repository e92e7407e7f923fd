//! The netlink process connector backend (exec, fork, exit), enriched from
//! `/proc/<pid>` through the [`ProcessTracker`].
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

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vigil_proto::Visibility;

use super::ProcessTracker;
use crate::collect::CollectorCtx;

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

/// `CAP_NET_ADMIN` in a capability mask.
const CAP_NET_ADMIN_BIT: u32 = 12;

/// Why the kernel would ignore this thread's subscription, if it would.
///
/// Opening, binding and sending the subscription all succeed without
/// privilege, but the kernel's `cn_proc_mcast_ctl` silently ignores a
/// listener outside the initial user and pid namespaces and refuses one
/// without `CAP_NET_ADMIN` (checked on the sending thread): the socket
/// then stays silent and the collector would call itself working while
/// capturing nothing. `None` also when the status cannot be read (no
/// `/proc`): then nothing is known and the open itself decides.
pub fn subscription_refused() -> Option<String> {
    let status = fs::read_to_string("/proc/thread-self/status").ok()?;
    let uid_map = fs::read_to_string("/proc/self/uid_map").ok();
    subscription_refused_by(&status, uid_map.as_deref()).or_else(|| {
        // A /proc mounted for a child pid namespace shows one NSpid level:
        // there pid 2 is not the kernel's kthreadd (parent 0).
        let kthreadd = fs::read_to_string("/proc/2/status").unwrap_or_default();
        let parent = kthreadd
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .map(str::trim);
        (parent != Some("0")).then(|| {
            "the sensor runs in a child pid namespace (pid 2 is not kthreadd; the kernel reports process events only to the initial one)".to_string()
        })
    })
}

/// [`subscription_refused`] on given `/proc/thread-self/status` and
/// `/proc/self/uid_map` texts.
pub fn subscription_refused_by(status: &str, uid_map: Option<&str>) -> Option<String> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    if let Some(map) = uid_map {
        let whole: Vec<&str> = map.split_whitespace().collect();
        if whole != ["0", "0", "4294967295"] {
            return Some("the sensor runs in a user namespace (the kernel reports process events only to the initial one)".into());
        }
    }
    if field("NSpid").is_some_and(|ids| ids.split_whitespace().count() > 1) {
        return Some("the sensor runs in a child pid namespace (the kernel reports process events only to the initial one)".into());
    }
    let effective = field("CapEff").and_then(|hex| u64::from_str_radix(hex, 16).ok());
    match effective {
        Some(caps) if caps & (1 << CAP_NET_ADMIN_BIT) == 0 => {
            Some("CAP_NET_ADMIN is not in the sensor's effective capabilities".into())
        }
        _ => None,
    }
}

/// Exit events younger than this (kernel time) wait for the next round: an
/// exec stamped just before them might not be in its socket yet.
const EXIT_HOLD_NS: u64 = 20_000_000;
/// Longest wait for an exec before fork and exit events are read anyway.
const EXIT_DRAIN_EVERY: Duration = Duration::from_millis(50);

/// Kernel `CLOCK_MONOTONIC` now, ns (the clock connector events are stamped with).
pub(super) fn monotonic_ns() -> u64 {
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
    if let Some(why) = subscription_refused() {
        ctx.stats.set(Visibility::Unavailable(format!(
            "process connector would deliver nothing: {why}"
        )));
        return;
    }
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
    let mut tracker = ProcessTracker::new(netns).with_log_writers(ctx.log_writers.clone());
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
        apply_in_order(&mut tracker, &events, &mut held, horizon, &mut out);
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

/// Apply one wakeup's exec `events` and the `held` fork and exit events in
/// kernel-timestamp order: a held event of an exec's pid that is older than
/// the exec goes first, other held events once older than `horizon`.
fn apply_in_order(
    tracker: &mut ProcessTracker,
    events: &[(u64, ProcEvent)],
    held: &mut Vec<(u64, ProcEvent)>,
    horizon: u64,
    out: &mut Vec<vigil_proto::Payload>,
) {
    for &(ts, ev) in events {
        if let (ProcEvent::Exec { pid }, false) = (ev, held.is_empty()) {
            // The exit of an earlier process with this pid, and this
            // process's fork, go first.
            held.retain(|&(xts, x)| match x {
                ProcEvent::Exit { tgid: p, .. } | ProcEvent::Fork { child_tgid: p, .. }
                    if p == pid && xts < ts =>
                {
                    tracker.handle(xts, x, out);
                    false
                }
                _ => true,
            });
        }
        tracker.handle(ts, ev, out);
    }
    held.retain(|&(xts, x)| {
        if xts < horizon {
            tracker.handle(xts, x, out);
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_MAP: &str = "         0          0 4294967295\n";

    fn status(nspid: &str, cap_eff: &str) -> String {
        format!("Name:\tvigil-sensor\nNSpid:\t{nspid}\nCapEff:\t{cap_eff}\n")
    }

    #[test]
    fn subscription_needs_net_admin_in_the_initial_namespaces() {
        let full = "000001ffffffffff";
        assert_eq!(
            subscription_refused_by(&status("812", full), Some(ROOT_MAP)),
            None
        );
        // Every capability but CAP_NET_ADMIN (bit 12).
        let no_net_admin = format!("{:016x}", 0x1ff_ffff_ffffu64 & !(1 << 12));
        let why = subscription_refused_by(&status("812", &no_net_admin), Some(ROOT_MAP));
        assert!(why.unwrap().contains("CAP_NET_ADMIN"));
        let why = subscription_refused_by(&status("812\t1", full), Some(ROOT_MAP));
        assert!(why.unwrap().contains("pid namespace"));
        let why = subscription_refused_by(&status("812", full), Some("0 1000 1\n"));
        assert!(why.unwrap().contains("user namespace"));
        // Unknown fields: nothing known, the open decides.
        assert_eq!(subscription_refused_by("Name:\tx\n", None), None);
    }

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
}
