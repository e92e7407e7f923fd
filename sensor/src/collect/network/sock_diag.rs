//! `sock_diag` (inet_diag over netlink): socket table dumps, and the
//! polling backend that diffs them ([`run_polled`]), with owners from the
//! `/proc/<pid>/fd` scan or from the kernel's connect records.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use vigil_proto::{Transport, Visibility};

use super::ebpf::KernelOwners;
use super::flows::{diag_flow, FlowTracker, NewFlow};
use super::procfs::ProcOwners;
use crate::collect::CollectorCtx;

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
/// Closed socket.
pub(super) const TCP_CLOSE: u8 = 7;

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

/// Everything from `sock_diag` snapshots, owners from the kernel's connect
/// records when `probes` is given, else from `/proc/<pid>/fd`.
pub(super) fn run_polled(
    ctx: &CollectorCtx,
    poll: Duration,
    mut diag: DiagSocketConn,
    mut probes: Option<crate::collect::ebpf::Probes>,
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
            use crate::collect::ebpf::record::{decode, Record};
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
    use super::super::procfs::socket_owners;
    use super::*;

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
