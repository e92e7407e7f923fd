//! Network collector: reports each new connection once, as `NetConnect`
//! (this host opened it) or `NetAccept` (a peer connected to one of our
//! listening ports), with the owning pid and exe.
//!
//! Two ways, chosen at start:
//!
//! - **eBPF TCP flows** (when the kernel programs load, see
//!   [`run_with`]): the `inet_sock_set_state` program sends a record per TCP
//!   connect (when the socket leaves SYN_SENT, with the pid that called
//!   `connect(2)`) and per accept (from `inet_csk_accept` where fexit or
//!   kretprobes work; else when the handshake completes, with the pid that
//!   opened the listener, or, for a listener older than the sensor, the
//!   listener's owner found once in `/proc`). No socket table is dumped or
//!   diffed for TCP; `sock_diag` is polled for UDP only. Ring-buffer losses
//!   are added to `missed_total` and make the collector `Degraded`.
//! - **Polling** (no eBPF, or the accept side unavailable): `sock_diag`
//!   (inet_diag) snapshots of TCP and UDP sockets are diffed, and owners are
//!   found through the socket inode in `/proc/*/fd` (or, for connects, from
//!   the eBPF connect records when only those load).
//!
//! What polling misses: a connection that opens and fully closes between two
//! polls (≤ 1 s apart) is invisible unless one side still holds it, e.g. in
//! TIME_WAIT (then it is reported, but without a pid: the socket no longer
//! belongs to a process). UDP is visible only for *connected* sockets
//! (`connect(2)` then `send`); `sendto` on an unconnected socket leaves no
//! peer to see. To make the misses visible, every poll compares the kernel's
//! TCP `ActiveOpens`/`PassiveOpens` counters (`/proc/thread-self/net/snmp`)
//! with the connections it reported and adds the shortfall to `missed_total`.
//! The eBPF flows have no such gap: a connection is reported however short.
//!
//! With `--netns NAME` the poller thread enters that namespace (setns) before
//! opening its netlink socket; the rest of the sensor stays where it is. The
//! kernel programs filter on the socket's namespace themselves.

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

    /// Listening TCP sockets, both families (the kernel walks only its
    /// listening hash for this: cheap however many connections there are).
    pub fn listeners(&mut self) -> io::Result<Vec<DiagSocket>> {
        let mut all = self.dump(libc::AF_INET as u8, Transport::Tcp, 1 << TCP_LISTEN)?;
        all.extend(self.dump(libc::AF_INET6 as u8, Transport::Tcp, 1 << TCP_LISTEN)?);
        Ok(all)
    }

    /// All UDP sockets, both families.
    pub fn snapshot_udp(&mut self) -> io::Result<Vec<DiagSocket>> {
        let mut all = self.dump(libc::AF_INET as u8, Transport::Udp, u32::MAX)?;
        all.extend(self.dump(libc::AF_INET6 as u8, Transport::Udp, u32::MAX)?);
        Ok(all)
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

/// Who a kernel flow record belongs to, as [`kernel_flow`] asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The process that connected or accepted (tgid).
    Process(u32),
    /// No process: the kernel itself made it (tgid 0).
    Kernel,
    /// An inbound handshake: whoever holds the listening socket on this
    /// local address.
    ListenerOf(SocketAddr),
}

/// The payload a kernel flow record stands for: the same [`NetFlow`] the
/// `sock_diag` path reports for that TCP socket (connect: our address
/// local, the peer remote; accept or inbound handshake: the listening
/// address local, the client remote), with the pid and executable
/// `resolve` gives for its [`Owner`]. Records that are not flows give
/// `None`.
pub fn kernel_flow(
    record: &super::ebpf::record::Record,
    resolve: impl FnOnce(Owner) -> (Option<u32>, Option<String>),
) -> Option<Payload> {
    use super::ebpf::record::Record;
    let (r, inbound) = match record {
        Record::Connect(r) => (r, false),
        Record::Accept(r) | Record::Handshake(r) => (r, true),
        Record::Exec(_) | Record::Exit(_) => return None,
    };
    let owner = match record {
        Record::Handshake(r) if r.tgid == 0 => Owner::ListenerOf(r.local),
        _ if r.tgid == 0 => Owner::Kernel,
        _ => Owner::Process(r.tgid),
    };
    let (pid, exe) = resolve(owner);
    let flow = NetFlow {
        transport: Transport::Tcp,
        local: r.local,
        remote: r.remote,
        pid,
        exe,
        repeat: 1,
    };
    Some(if inbound {
        Payload::NetAccept(flow)
    } else {
        Payload::NetConnect(flow)
    })
}

/// Owners of the listening TCP sockets, by listening address: what an
/// inbound handshake record (which has no process) is attributed to. Each
/// listener's owner is looked up in `/proc` once, when its socket inode is
/// first seen, not once per connection; a listener that is closed, or
/// replaced by another socket on the same address, is forgotten at the
/// next [`refresh`](ListenerOwners::refresh).
///
/// With several processes holding one listener (fork after `listen`), the
/// first one found is named, where the `/proc` scan of an accepted socket
/// names the process that accepted it.
#[derive(Debug, Default)]
pub struct ListenerOwners {
    /// Listening address → (socket inode, owner pid and exe; no pid when
    /// no process holds it).
    by_addr: HashMap<SocketAddr, (u32, Option<u32>, Option<String>)>,
}

impl ListenerOwners {
    /// The owner of the listener a connection to `local` arrived on: the
    /// listener on exactly that address, else a wildcard one on its port.
    /// `None` when no listener is known there.
    pub fn owner(&self, local: SocketAddr) -> Option<(Option<u32>, Option<String>)> {
        let port = local.port();
        let any = if local.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        [
            local,
            SocketAddr::new(any, port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
        ]
        .iter()
        .find_map(|a| self.by_addr.get(a))
        .map(|(_, pid, exe)| (*pid, exe.clone()))
    }

    /// Bring the map up to date with `listening`, the current listening
    /// sockets; `find` is called once, with the inodes of the listeners not
    /// known yet, and returns inode → (pid, exe) for those it found.
    /// Returns how many new listeners there were.
    pub fn refresh(
        &mut self,
        listening: &[DiagSocket],
        find: impl FnOnce(&HashSet<u32>) -> HashMap<u32, (u32, Option<String>)>,
    ) -> usize {
        let now: HashMap<SocketAddr, u32> = listening
            .iter()
            .filter(|s| s.transport == Transport::Tcp && s.state == TCP_LISTEN)
            .map(|s| (s.local, s.inode))
            .collect();
        self.by_addr
            .retain(|addr, (inode, _, _)| now.get(addr) == Some(inode));
        let new: HashSet<u32> = now
            .iter()
            .filter(|(addr, _)| !self.by_addr.contains_key(*addr))
            .map(|(_, inode)| *inode)
            .collect();
        if new.is_empty() {
            return 0;
        }
        let found = find(&new);
        for (addr, inode) in now {
            if new.contains(&inode) {
                let (pid, exe) = found
                    .get(&inode)
                    .filter(|_| inode != 0)
                    .cloned()
                    .map_or((None, None), |(p, e)| (Some(p), e));
                self.by_addr.insert(addr, (inode, pid, exe));
            }
        }
        new.len()
    }
}

/// Ring-buffer losses and undecodable records since the last look, as the
/// kernel's running total `lost` grows: what to add to `missed`.
#[derive(Debug, Default)]
pub struct LossMeter {
    lost: u64,
}

impl LossMeter {
    /// New losses, given the kernel's running total and the undecodable
    /// records seen since the last call. A total that went backwards (it
    /// cannot, short of a reloaded map) counts as no loss rather than a
    /// huge one.
    pub fn update(&mut self, lost_total: u64, undecodable: u64) -> u64 {
        let new = lost_total.saturating_sub(self.lost);
        self.lost = self.lost.max(lost_total);
        new + undecodable
    }
}

/// Socket owners found by scanning `/proc/<pid>/fd`: inode → (pid, exe).
#[derive(Debug, Default)]
struct ProcOwners {
    owners: HashMap<u32, (u32, Option<String>)>,
    /// Pids that owned the last new sockets: scanned first next time.
    hot: HashSet<u32>,
    fd_cache: FdCache,
}

impl ProcOwners {
    /// Find the owners of these socket inodes that are not known yet.
    fn find(&mut self, inodes: impl Iterator<Item = u32>, snapshot: &[DiagSocket]) {
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
    fn get(&self, inode: u32) -> (Option<u32>, Option<String>) {
        self.owners
            .get(&inode)
            .filter(|_| inode != 0)
            .cloned()
            .map_or((None, None), |(p, e)| (Some(p), e))
    }

    /// Bound the memory of a long run.
    fn trim(&mut self) {
        if self.owners.len() > 200_000 {
            self.owners.clear();
        }
    }
}

/// The payload for a flow found in a `sock_diag` snapshot.
fn diag_flow(f: NewFlow, pid: Option<u32>, exe: Option<String>) -> Payload {
    let flow = NetFlow {
        transport: f.socket.transport,
        local: f.socket.local,
        remote: f.socket.remote,
        pid,
        exe,
        repeat: 1,
    };
    if f.inbound {
        Payload::NetAccept(flow)
    } else {
        Payload::NetConnect(flow)
    }
}

/// Backend label when TCP flows come from the kernel programs.
pub const BACKEND_EBPF_FLOWS: &str = "eBPF TCP flows + sock_diag UDP";

/// Load the eBPF programs for this collector, or say why not.
/// Inode of the sensor's own network namespace (0 when unreadable).
fn own_netns() -> u64 {
    super::process::netns_of(std::process::id())
}

fn kernel_attribution(ctx: &CollectorCtx, netns: Option<&str>) -> Option<super::ebpf::Probes> {
    let inode = match netns.map(super::process::netns_inode).transpose() {
        Ok(i) => i,
        Err(e) => {
            ctx.stats
                .set_backend(format!("sock_diag; eBPF attribution unavailable: {e}"));
            return None;
        }
    };
    // Without `--netns` the host is the sensor's own namespace, as with
    // `sock_diag` (which only sees that one): the kernel programs see every
    // namespace's sockets, and a container's or a lab host's connections
    // are that host's, not this one's.
    let inode = inode.or_else(|| Some(own_netns()).filter(|&i| i != 0));
    match super::ebpf::Probes::network(inode) {
        Ok(p) => {
            ctx.stats.set_backend(if p.attributes_accepts() {
                BACKEND_EBPF_FLOWS
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

/// Run the collector until stopped. With `ebpf` and both kernel programs
/// attached (connect and accept), TCP flows come from the kernel as they
/// happen and `sock_diag` is polled for UDP only; with the connect program
/// alone, connects are attributed by it and the rest by the `/proc` scan;
/// without eBPF, everything is polled and scanned.
pub fn run_with(ctx: CollectorCtx, poll: Duration, netns: Option<String>, ebpf: bool) {
    let probes = if ebpf {
        kernel_attribution(&ctx, netns.as_deref())
    } else {
        None
    };
    if let Some(ns) = &netns {
        if let Err(e) = enter_netns(ns) {
            ctx.stats.set(Visibility::Unavailable(format!(
                "cannot enter netns {ns}: {e}"
            )));
            return;
        }
    }
    let diag = match DiagSocketConn::open() {
        Ok(d) => d,
        Err(e) => {
            ctx.stats.set(Visibility::Unavailable(format!(
                "sock_diag unavailable: {e}"
            )));
            return;
        }
    };
    match probes {
        Some(p) if p.attributes_accepts() => run_kernel_flows(&ctx, poll, diag, p),
        probes => run_polled(&ctx, poll, diag, probes),
    }
}

/// TCP flows from the kernel programs, UDP from `sock_diag`.
///
/// A connect record is sent when the socket leaves SYN_SENT (established or
/// failed), an accept record when `accept(2)` hands the socket over, each
/// once, in the process's own context: no snapshot of the host's sockets,
/// no diff and no `/proc/<pid>/fd` scan per TCP connection. The ring is
/// drained every [`DRAIN_EVERY`](super::ebpf::DRAIN_EVERY) (sooner when it
/// is half full); the UDP poll, executable cache and loss accounting run
/// once per `poll`.
fn run_kernel_flows(
    ctx: &CollectorCtx,
    poll: Duration,
    mut diag: DiagSocketConn,
    mut probes: super::ebpf::Probes,
) {
    use super::ebpf::record::{decode, Record};
    let mut udp = FlowTracker::default();
    let mut owners = ProcOwners::default();
    let mut listeners = ListenerOwners::default();
    let mut exes = ExeCache::default();
    let mut losses = LossMeter::default();
    let mut lost_total = 0u64;
    let mut bad = 0u64;
    let mut records: Vec<Record> = Vec::new();
    let mut out: Vec<Payload> = Vec::new();
    let mut next_poll = std::time::Instant::now();
    // Listener owners from /proc, for handshake records: only the inodes
    // of listeners not seen before are looked for.
    let refresh_listeners =
        |diag: &mut DiagSocketConn, listeners: &mut ListenerOwners| match diag.listeners() {
            Ok(l) => {
                listeners.refresh(&l, |want| {
                    let mut all = socket_owners();
                    all.retain(|i, _| want.contains(i));
                    all
                });
                Ok(())
            }
            Err(e) => Err(format!("sock_diag listener dump failed: {e}")),
        };
    ctx.stats.set(Visibility::Working);
    while !ctx.stopping() {
        let now = std::time::Instant::now();
        if now >= next_poll {
            next_poll = now + poll;
            exes.clear();
            let mut trouble = refresh_listeners(&mut diag, &mut listeners).err();
            match diag.snapshot_udp() {
                Ok(snapshot) => {
                    let new = udp.update(&snapshot);
                    owners.find(new.iter().map(|f| f.socket.inode), &snapshot);
                    for f in new {
                        let (pid, exe) = owners.get(f.socket.inode);
                        out.push(diag_flow(f, pid, exe));
                    }
                    owners.trim();
                }
                Err(e) => trouble = Some(format!("sock_diag UDP dump failed: {e}")),
            }
            let missed = losses.update(probes.lost(), bad);
            if missed > 0 {
                lost_total += missed;
                ctx.stats.missed.fetch_add(missed, Ordering::Relaxed);
                tracing::warn!(
                    missed,
                    "eBPF TCP flow records lost (ring buffer full or undecodable)"
                );
                trouble.get_or_insert(format!(
                    "eBPF TCP flow records lost: {lost_total} since start ({missed} in the last {} ms)",
                    poll.as_millis()
                ));
            }
            bad = 0;
            ctx.stats.set(match trouble {
                Some(why) => Visibility::Degraded(why),
                None => Visibility::Working,
            });
        }
        let wait = next_poll
            .saturating_duration_since(std::time::Instant::now())
            .min(super::ebpf::DRAIN_EVERY);
        probes.wait(wait);
        probes.drain(|b| match decode(b) {
            Ok(r) => records.push(r),
            Err(e) => {
                bad += 1;
                tracing::debug!(error = %e, "undecodable eBPF network record");
            }
        });
        // A handshake on a listener not known yet (opened since the last
        // poll): look at the listeners again, once per batch.
        let unknown = records.iter().any(|r| {
            matches!(r, Record::Handshake(n) if n.tgid == 0 && listeners.owner(n.local).is_none())
        });
        if unknown {
            let _ = refresh_listeners(&mut diag, &mut listeners);
        }
        for r in records.drain(..) {
            out.extend(kernel_flow(&r, |who| match who {
                Owner::Process(pid) => (Some(pid), exes.get(pid)),
                Owner::Kernel => (None, None),
                Owner::ListenerOf(addr) => listeners.owner(addr).unwrap_or((None, None)),
            }));
        }
        for p in out.drain(..) {
            if !ctx.emit(p) {
                return;
            }
        }
    }
}

/// Everything from `sock_diag` snapshots, owners from the kernel's connect
/// records when `probes` is given, else from `/proc/<pid>/fd`.
fn run_polled(
    ctx: &CollectorCtx,
    poll: Duration,
    mut diag: DiagSocketConn,
    mut probes: Option<super::ebpf::Probes>,
) {
    let mut kernel = KernelOwners::default();
    let mut tracker = FlowTracker::default();
    let read_opens = || {
        fs::read_to_string("/proc/thread-self/net/snmp")
            .ok()
            .and_then(|s| tcp_opens(&s))
    };
    let mut last_opens = read_opens();
    let mut owners = ProcOwners::default();
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
        owners.find(
            new.iter()
                .filter(|f| by_kernel(f).is_none())
                .map(|f| f.socket.inode),
            &snapshot,
        );
        let attributed: Vec<Option<u32>> = new.iter().map(by_kernel).collect();
        for (f, kpid) in new.into_iter().zip(attributed) {
            let (pid, exe) = match kpid {
                Some(p) => (Some(p), kernel.exe(p)),
                None => owners.get(f.socket.inode),
            };
            if !ctx.emit(diag_flow(f, pid, exe)) {
                return;
            }
        }
        owners.trim();
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

    fn net(tgid: u32, local: &str, remote: &str) -> crate::collect::ebpf::record::NetRecord {
        crate::collect::ebpf::record::NetRecord {
            tgid,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
        }
    }

    #[test]
    fn kernel_records_become_the_same_flows_as_the_scan_path() {
        use crate::collect::ebpf::record::{ExitRecord, Record};
        let flow = |pid: Option<u32>, exe: Option<&str>, local, remote| NetFlow {
            transport: Transport::Tcp,
            local,
            remote,
            pid,
            exe: exe.map(String::from),
            repeat: 1,
        };
        let exe_of = |who: Owner| match who {
            Owner::Process(p) => (Some(p), Some(format!("/bin/p{p}"))),
            Owner::Kernel => (None, None),
            Owner::ListenerOf(a) => (Some(u32::from(a.port())), Some("/bin/listener".into())),
        };
        // (record, accept?, pid and exe expected)
        let cases = [
            // A connect and an accept, each with its caller.
            (
                Record::Connect(net(7, "10.0.0.1:40000", "10.0.0.2:443")),
                false,
                Some(7),
                Some("/bin/p7"),
            ),
            (
                Record::Accept(net(8, "[::1]:22", "[::1]:5000")),
                true,
                Some(8),
                Some("/bin/p8"),
            ),
            // A handshake with the listener's opener, or without one.
            (
                Record::Handshake(net(9, "127.0.0.1:80", "127.0.0.1:6000")),
                true,
                Some(9),
                Some("/bin/p9"),
            ),
            (
                Record::Handshake(net(0, "127.0.0.1:80", "127.0.0.1:6000")),
                true,
                Some(80),
                Some("/bin/listener"),
            ),
            // The kernel's own connections have no process, as in the scan.
            (
                Record::Connect(net(0, "10.0.0.1:2049", "10.0.0.3:2049")),
                false,
                None,
                None,
            ),
        ];
        for (record, accept, pid, exe) in cases {
            let (Record::Connect(n) | Record::Accept(n) | Record::Handshake(n)) = &record else {
                unreachable!("flow records only");
            };
            let f = flow(pid, exe, n.local, n.remote);
            let want = if accept {
                Payload::NetAccept(f)
            } else {
                Payload::NetConnect(f)
            };
            assert_eq!(kernel_flow(&record, exe_of), Some(want), "{record:?}");
        }
        let x = Record::Exit(ExitRecord {
            tgid: 1,
            ppid: 0,
            status: 0,
            netns: 0,
        });
        assert_eq!(kernel_flow(&x, exe_of), None);
    }

    #[test]
    fn listener_owners_are_looked_up_once_and_follow_the_listeners() {
        let l = |addr: &str, inode| sock(TCP_LISTEN, addr, "0.0.0.0:0", inode);
        let mut owners = ListenerOwners::default();
        let table = |want: &HashSet<u32>| -> HashMap<u32, (u32, Option<String>)> {
            want.iter()
                .filter(|i| **i != 13)
                .map(|i| (*i, (*i + 1000, Some(format!("/bin/{i}")))))
                .collect()
        };
        let first = [
            l("127.0.0.1:80", 10),
            l("0.0.0.0:22", 11),
            l("[::]:443", 12),
            l("10.0.0.1:53", 13),
        ];
        assert_eq!(owners.refresh(&first, table), 4);
        // Known listeners are not looked up again.
        assert_eq!(owners.refresh(&first, |_| panic!("looked up again")), 0);
        let at = |o: &ListenerOwners, a: &str| o.owner(a.parse().unwrap());
        assert_eq!(
            at(&owners, "127.0.0.1:80"),
            Some((Some(1010), Some("/bin/10".into())))
        );
        // Wildcard listeners, v4 and v6 (dual stack).
        assert_eq!(at(&owners, "10.1.2.3:22").map(|o| o.0), Some(Some(1011)));
        assert_eq!(
            at(&owners, "[::ffff:10.1.2.3]:443").map(|o| o.0),
            Some(Some(1012))
        );
        assert_eq!(at(&owners, "[fe80::1]:443").map(|o| o.0), Some(Some(1012)));
        // A listener nobody holds is known, without an owner.
        assert_eq!(at(&owners, "10.0.0.1:53"), Some((None, None)));
        assert_eq!(at(&owners, "127.0.0.1:81"), None);
        assert_eq!(at(&owners, "127.0.0.2:80"), None);
        // Closed, and replaced by another socket: forgotten, then the new
        // one is looked up.
        let second = [l("127.0.0.1:80", 20), l("[::]:443", 12)];
        let mut asked = HashSet::new();
        assert_eq!(
            owners.refresh(&second, |w| {
                asked = w.clone();
                table(w)
            }),
            1
        );
        assert_eq!(asked, [20].into());
        assert_eq!(at(&owners, "127.0.0.1:80").map(|o| o.0), Some(Some(1020)));
        assert_eq!(at(&owners, "10.1.2.3:22"), None);
    }

    #[test]
    fn loss_meter_counts_each_loss_once() {
        let mut m = LossMeter::default();
        assert_eq!(m.update(0, 0), 0);
        assert_eq!(m.update(5, 0), 5);
        assert_eq!(m.update(5, 2), 2);
        assert_eq!(m.update(9, 0), 4);
        // A total going backwards is not a loss, and not counted twice later.
        assert_eq!(m.update(3, 0), 0);
        assert_eq!(m.update(10, 0), 1);
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
