//! Network collector: polls `sock_diag` (inet_diag) for TCP and UDP sockets
//! and reports each new connection once, as `NetConnect` (this host opened
//! it) or `NetAccept` (a peer connected to one of our listening ports), with
//! the owning pid and exe found through the socket inode in `/proc/*/fd`.
//!
//! What polling misses: a connection that opens and fully closes between two
//! polls (≤ 1 s apart) is invisible unless one side still holds it, e.g. in
//! TIME_WAIT (then it is reported, but without a pid: the socket no longer
//! belongs to a process). UDP is visible only for *connected* sockets
//! (`connect(2)` then `send`); `sendto` on an unconnected socket leaves no
//! peer to see. To make the misses visible, every poll compares the kernel's
//! TCP `ActiveOpens`/`PassiveOpens` counters (`/proc/thread-self/net/snmp`)
//! with the connections it reported and adds the shortfall to `missed_total`.
//!
//! With `--netns NAME` the poller thread enters that namespace (setns) before
//! opening its netlink socket; the rest of the sensor stays where it is.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use vigil_proto::{NetFlow, Payload, Transport, Visibility};

use super::CollectorCtx;

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;

/// TCP states (include/net/tcp_states.h).
pub const TCP_ESTABLISHED: u8 = 1;
/// Connect in progress.
pub const TCP_SYN_SENT: u8 = 2;
/// Listening socket.
pub const TCP_LISTEN: u8 = 10;
const TCP_CLOSE: u8 = 7;

/// One socket as reported by inet_diag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagSocket {
    /// TCP or UDP.
    pub transport: Transport,
    /// Kernel socket state.
    pub state: u8,
    /// Local address.
    pub local: SocketAddr,
    /// Remote address (unspecified:0 when none).
    pub remote: SocketAddr,
    /// Socket inode (0 once no process owns it, e.g. TIME_WAIT).
    pub inode: u32,
}

/// Parse the `inet_diag_msg` records of one netlink datagram. Returns the
/// sockets and whether the dump is complete.
pub fn parse_dump(buf: &[u8], transport: Transport) -> (Vec<DiagSocket>, bool) {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4")) as usize;
        let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().expect("2"));
        if len < 16 || off + len > buf.len() {
            break;
        }
        if ty == NLMSG_DONE || ty == NLMSG_ERROR {
            return (out, true);
        }
        let m = &buf[off + 16..off + len];
        if m.len() >= 72 {
            let family = m[0];
            let state = m[1];
            let sport = u16::from_be_bytes([m[4], m[5]]);
            let dport = u16::from_be_bytes([m[6], m[7]]);
            let ip = |b: &[u8]| -> IpAddr {
                if family == libc::AF_INET as u8 {
                    IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
                } else {
                    let a: [u8; 16] = b[..16].try_into().expect("16");
                    IpAddr::V6(Ipv6Addr::from(a))
                }
            };
            let src = ip(&m[8..24]);
            let dst = ip(&m[24..40]);
            let inode = u32::from_ne_bytes(m[68..72].try_into().expect("4"));
            out.push(DiagSocket {
                transport,
                state,
                local: SocketAddr::new(src, sport),
                remote: SocketAddr::new(dst, dport),
                inode,
            });
        }
        off += (len + 3) & !3;
    }
    (out, false)
}

/// A sock_diag netlink socket.
pub struct DiagSocketConn {
    fd: OwnedFd,
    seq: u32,
}

impl DiagSocketConn {
    /// Open a NETLINK_SOCK_DIAG socket (in the calling thread's netns).
    pub fn open() -> io::Result<DiagSocketConn> {
        // SAFETY: plain socket(2) call; result checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh owned descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(DiagSocketConn { fd, seq: 0 })
    }

    /// Dump every socket of one family and protocol in `states` (bitmask).
    pub fn dump(
        &mut self,
        family: u8,
        transport: Transport,
        states: u32,
    ) -> io::Result<Vec<DiagSocket>> {
        self.seq = self.seq.wrapping_add(1);
        let proto = match transport {
            Transport::Tcp => libc::IPPROTO_TCP as u8,
            Transport::Udp => libc::IPPROTO_UDP as u8,
        };
        let total = 16 + 56;
        let mut req = Vec::with_capacity(total);
        req.extend_from_slice(&(total as u32).to_ne_bytes());
        req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req.extend_from_slice(&self.seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(&[family, proto, 0, 0]);
        req.extend_from_slice(&states.to_ne_bytes());
        req.extend_from_slice(&[0u8; 48]);
        // SAFETY: req is a valid buffer of its length.
        let rc = unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr() as *const _, req.len(), 0) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: buf is a valid writable buffer.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut _,
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let (socks, done) = parse_dump(&buf[..n as usize], transport);
            out.extend(socks);
            if done || n == 0 {
                return Ok(out);
            }
        }
    }

    /// All TCP and UDP sockets, both families.
    pub fn snapshot(&mut self) -> io::Result<Vec<DiagSocket>> {
        let mut all = Vec::new();
        for fam in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            all.extend(self.dump(fam, Transport::Tcp, u32::MAX)?);
            all.extend(self.dump(fam, Transport::Udp, u32::MAX)?);
        }
        Ok(all)
    }
}

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

type FlowKey = (Transport, SocketAddr, SocketAddr);

/// The pure part of the collector: turns successive snapshots into new flows.
#[derive(Debug, Default)]
pub struct FlowTracker {
    /// Flows of the last snapshot with their socket inode.
    seen: HashMap<FlowKey, u32>,
    primed: bool,
}

/// A new flow found by [`FlowTracker::update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFlow {
    /// True for accept (inbound to a listening port).
    pub inbound: bool,
    /// The socket.
    pub socket: DiagSocket,
}

impl FlowTracker {
    /// Feed one snapshot; returns the flows not present in the previous one.
    /// The first snapshot only primes the tracker (connections that existed
    /// before the sensor started are not reported as new).
    pub fn update(&mut self, snapshot: &[DiagSocket]) -> Vec<NewFlow> {
        let listening: HashSet<(Transport, SocketAddr)> = snapshot
            .iter()
            .filter(|s| s.transport == Transport::Tcp && s.state == TCP_LISTEN)
            .map(|s| (s.transport, s.local))
            .collect();
        let is_listening = |s: &DiagSocket| {
            let port = s.local.port();
            let any = if s.local.is_ipv4() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            };
            listening.contains(&(s.transport, s.local))
                || listening.contains(&(s.transport, SocketAddr::new(any, port)))
                || listening.contains(&(
                    s.transport,
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
                ))
        };
        let mut current = HashMap::with_capacity(snapshot.len());
        let mut out = Vec::new();
        for s in snapshot {
            if s.remote.port() == 0 || s.remote.ip().is_unspecified() {
                continue;
            }
            if s.transport == Transport::Tcp && (s.state == TCP_LISTEN || s.state == TCP_CLOSE) {
                continue;
            }
            let key = (s.transport, s.local, s.remote);
            if current.insert(key, s.inode).is_some() {
                continue;
            }
            // Same 4-tuple but another live socket: the port was reused by a
            // new connection (a socket only loses its inode, in TIME_WAIT).
            let is_new = match self.seen.get(&key) {
                None => true,
                Some(&old) => old != 0 && s.inode != 0 && old != s.inode,
            };
            if self.primed && is_new {
                out.push(NewFlow {
                    inbound: s.transport == Transport::Tcp && is_listening(s),
                    socket: s.clone(),
                });
            }
        }
        self.seen = current;
        self.primed = true;
        out
    }
}

/// TCP ActiveOpens and PassiveOpens from `/proc/.../net/snmp` text.
pub fn tcp_opens(snmp: &str) -> Option<(u64, u64)> {
    let mut lines = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let get = |n: &str| -> Option<u64> {
        let i = names.iter().position(|x| *x == n)?;
        values.get(i)?.parse().ok()
    };
    Some((get("ActiveOpens")?, get("PassiveOpens")?))
}

/// Enter the named network namespace (this thread only).
pub fn enter_netns(name: &str) -> io::Result<()> {
    let f = fs::File::open(format!("/run/netns/{name}"))?;
    // SAFETY: setns on a valid namespace fd affects only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Poll rounds a kernel attribution is kept for a flow sock_diag has not
/// shown yet.
const KERNEL_KEEP_ROUNDS: u64 = 3;

/// TCP flows attributed by the eBPF programs at connect or accept time, in
/// the caller's context: (local, remote) → pid. Consulted before any
/// `/proc/<pid>/fd` scan; what it lacks (UDP, records lost) is scanned for.
#[derive(Debug, Default)]
pub struct KernelOwners {
    flows: HashMap<(SocketAddr, SocketAddr), (u32, u64)>,
    round: u64,
    /// Executables of the pids met this round (read once per pid a round,
    /// so a reused pid is never given an old executable for long).
    exes: HashMap<u32, Option<String>>,
}

impl KernelOwners {
    /// Remember one connect or accept record.
    pub fn record(&mut self, r: &super::ebpf::record::NetRecord) {
        self.flows.insert((r.local, r.remote), (r.tgid, self.round));
    }

    /// The pid that connected or accepted this TCP flow, if seen.
    pub fn pid(&self, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
        self.flows.get(&(local, remote)).map(|(p, _)| *p)
    }

    /// Executable of `pid` (read at most once a round).
    pub fn exe(&mut self, pid: u32) -> Option<String> {
        self.exes
            .entry(pid)
            .or_insert_with(|| {
                fs::read_link(format!("/proc/{pid}/exe"))
                    .ok()
                    .map(|p| p.to_string_lossy().into_owned())
            })
            .clone()
    }

    /// Start a poll round: forget old flows and this round's executables.
    pub fn next_round(&mut self) {
        self.round += 1;
        let keep = self.round.saturating_sub(KERNEL_KEEP_ROUNDS);
        self.flows.retain(|_, (_, r)| *r >= keep);
        self.exes.clear();
    }
}

/// Load the eBPF attribution programs for this collector, or say why not.
fn kernel_attribution(ctx: &CollectorCtx, netns: Option<&str>) -> Option<super::ebpf::Probes> {
    let inode = match netns.map(super::process::netns_inode).transpose() {
        Ok(i) => i,
        Err(e) => {
            ctx.stats
                .set_backend(format!("sock_diag; eBPF attribution unavailable: {e}"));
            return None;
        }
    };
    match super::ebpf::Probes::network(inode) {
        Ok(p) => {
            ctx.stats.set_backend(if p.attributes_accepts() {
                "sock_diag + eBPF attribution"
            } else {
                "sock_diag + eBPF attribution of connects"
            });
            Some(p)
        }
        Err(e) => {
            tracing::warn!(error = %e, "eBPF connect/accept attribution unavailable; scanning /proc");
            ctx.stats
                .set_backend(format!("sock_diag; eBPF attribution unavailable: {e}"));
            None
        }
    }
}

/// Run the collector until stopped, attributing flows to processes by
/// scanning `/proc/<pid>/fd` only.
pub fn run(ctx: CollectorCtx, poll: Duration, netns: Option<String>) {
    run_with(ctx, poll, netns, false)
}

/// Run the collector until stopped; with `ebpf`, TCP connects and accepts
/// are attributed by the kernel programs when they load (and by the
/// `/proc` scan otherwise, or for what they do not cover).
pub fn run_with(ctx: CollectorCtx, poll: Duration, netns: Option<String>, ebpf: bool) {
    let mut probes = if ebpf {
        kernel_attribution(&ctx, netns.as_deref())
    } else {
        None
    };
    let mut kernel = KernelOwners::default();
    if let Some(ns) = &netns {
        if let Err(e) = enter_netns(ns) {
            ctx.stats.set(Visibility::Unavailable(format!(
                "cannot enter netns {ns}: {e}"
            )));
            return;
        }
    }
    let mut diag = match DiagSocketConn::open() {
        Ok(d) => d,
        Err(e) => {
            ctx.stats.set(Visibility::Unavailable(format!(
                "sock_diag unavailable: {e}"
            )));
            return;
        }
    };
    let mut tracker = FlowTracker::default();
    let read_opens = || {
        fs::read_to_string("/proc/thread-self/net/snmp")
            .ok()
            .and_then(|s| tcp_opens(&s))
    };
    let mut last_opens = read_opens();
    let mut owners: HashMap<u32, (u32, Option<String>)> = HashMap::new();
    let mut hot: HashSet<u32> = HashSet::new();
    let mut fd_cache = FdCache::new();
    ctx.stats.set(Visibility::Working);
    while !ctx.stopping() {
        let started = std::time::Instant::now();
        let snapshot = match diag.snapshot() {
            Ok(s) => s,
            Err(e) => {
                ctx.stats
                    .set(Visibility::Degraded(format!("sock_diag dump failed: {e}")));
                std::thread::sleep(poll);
                continue;
            }
        };
        let new = tracker.update(&snapshot);
        // Drained after the dump: every connection in the snapshot was
        // connected or accepted before it, so its record is queued.
        if let Some(p) = probes.as_mut() {
            use super::ebpf::record::{decode, Record};
            kernel.next_round();
            p.drain(|b| {
                if let Ok(Record::Connect(r) | Record::Accept(r)) = decode(b) {
                    kernel.record(&r);
                }
            });
        }
        let by_kernel = |f: &NewFlow| {
            (f.socket.transport == Transport::Tcp)
                .then(|| kernel.pid(f.socket.local, f.socket.remote))
                .flatten()
        };
        let opens = read_opens();
        if let (Some((a0, p0)), Some((a1, p1))) = (last_opens, opens) {
            let seen_out = new
                .iter()
                .filter(|f| !f.inbound && f.socket.transport == Transport::Tcp)
                .count() as u64;
            let seen_in = new.iter().filter(|f| f.inbound).count() as u64;
            let missed = (a1 - a0).saturating_sub(seen_out) + (p1 - p0).saturating_sub(seen_in);
            ctx.stats.missed.fetch_add(missed, Ordering::Relaxed);
        }
        last_opens = opens;
        let wanted: HashSet<u32> = new
            .iter()
            .filter(|f| by_kernel(f).is_none())
            .map(|f| f.socket.inode)
            .filter(|i| *i != 0 && !owners.contains_key(i))
            .collect();
        if !wanted.is_empty() {
            // Processes that made connections recently usually make the next
            // ones too: look at them first, scan all of /proc only if needed.
            let live: HashSet<u32> = snapshot
                .iter()
                .map(|s| s.inode)
                .filter(|i| *i != 0)
                .collect();
            let mut found = socket_owners_cached(hot.iter().copied(), &live, &mut fd_cache);
            if !wanted.iter().all(|i| found.contains_key(i)) {
                found = socket_owners();
            }
            hot = wanted
                .iter()
                .filter_map(|i| found.get(i).map(|(p, _)| *p))
                .collect();
            fd_cache.retain(|pid, _| hot.contains(pid));
            owners.extend(found);
        }
        let attributed: Vec<Option<u32>> = new.iter().map(by_kernel).collect();
        for (f, kpid) in new.into_iter().zip(attributed) {
            let (pid, exe) = match kpid {
                Some(p) => (Some(p), kernel.exe(p)),
                None => owners
                    .get(&f.socket.inode)
                    .filter(|_| f.socket.inode != 0)
                    .cloned()
                    .map_or((None, None), |(p, e)| (Some(p), e)),
            };
            let flow = NetFlow {
                transport: f.socket.transport,
                local: f.socket.local,
                remote: f.socket.remote,
                pid,
                exe,
                repeat: 1,
            };
            let payload = if f.inbound {
                Payload::NetAccept(flow)
            } else {
                Payload::NetConnect(flow)
            };
            if !ctx.emit(payload) {
                return;
            }
        }
        if owners.len() > 200_000 {
            owners.clear();
        }
        let spent = started.elapsed();
        if spent < poll {
            std::thread::sleep(poll - spent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(state: u8, local: &str, remote: &str, inode: u32) -> DiagSocket {
        DiagSocket {
            transport: Transport::Tcp,
            state,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            inode,
        }
    }

    #[test]
    fn tracker_reports_new_connects_and_accepts_once() {
        let mut t = FlowTracker::default();
        let listen = sock(TCP_LISTEN, "0.0.0.0:22", "0.0.0.0:0", 1);
        let old = sock(TCP_ESTABLISHED, "10.0.0.1:22", "10.0.0.9:5000", 2);
        assert!(
            t.update(&[listen.clone(), old.clone()]).is_empty(),
            "priming"
        );
        let out = sock(TCP_SYN_SENT, "10.0.0.1:40000", "10.0.0.2:443", 3);
        let inb = sock(TCP_ESTABLISHED, "10.0.0.1:22", "10.0.0.7:6000", 4);
        let new = t.update(&[listen.clone(), old.clone(), out.clone(), inb.clone()]);
        assert_eq!(
            new,
            vec![
                NewFlow {
                    inbound: false,
                    socket: out.clone()
                },
                NewFlow {
                    inbound: true,
                    socket: inb.clone()
                }
            ]
        );
        // Still there (now established): not reported again.
        let out_est = DiagSocket {
            state: TCP_ESTABLISHED,
            ..out
        };
        assert!(t.update(&[listen, old, out_est, inb]).is_empty());
    }

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

    #[test]
    fn snmp_counters() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails\nTcp: 1 200 120000 -1 17 5 0\n";
        assert_eq!(tcp_opens(text), Some((17, 5)));
    }

    #[test]
    fn diag_dump_sees_a_loopback_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut d = DiagSocketConn::open().unwrap();
        let all = d
            .dump(libc::AF_INET as u8, Transport::Tcp, 1 << TCP_LISTEN)
            .unwrap();
        let me = all
            .iter()
            .find(|s| s.local == addr)
            .expect("own listener in dump");
        assert_eq!(me.state, TCP_LISTEN);
        let owners = socket_owners();
        assert_eq!(owners.get(&me.inode).map(|o| o.0), Some(std::process::id()));
    }
}
