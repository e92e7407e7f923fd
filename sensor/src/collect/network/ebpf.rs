//! TCP flows from the eBPF programs ([`run_kernel_flows`]): connect and
//! accept records become flows as they happen, attributed in the caller's
//! context; inbound handshakes without a process go to the listener's owner
//! ([`ListenerOwners`]). UDP still comes from `sock_diag`. In polling mode
//! the connect records only name owners ([`KernelOwners`]).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use vigil_proto::{NetFlow, Payload, Transport, Visibility};

use super::flows::{diag_flow, FlowTracker};
use super::procfs::{socket_owners, ExeCache, ProcOwners};
use super::sock_diag::{DiagSocket, DiagSocketConn, TCP_LISTEN};
use crate::collect::CollectorCtx;

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
    pub fn record(&mut self, r: &crate::collect::ebpf::record::NetRecord) {
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
    record: &crate::collect::ebpf::record::Record,
    resolve: impl FnOnce(Owner) -> (Option<u32>, Option<String>),
) -> Option<Payload> {
    use crate::collect::ebpf::record::Record;
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

/// Backend label when TCP flows come from the kernel programs.
pub const BACKEND_EBPF_FLOWS: &str = "eBPF TCP flows + sock_diag UDP";

/// Inode of the sensor's own network namespace (0 when unreadable).
fn own_netns() -> u64 {
    crate::collect::process::netns_of(std::process::id())
}
/// Load the eBPF programs for this collector, or say why not.
pub(super) fn kernel_attribution(
    ctx: &CollectorCtx,
    netns: Option<&str>,
) -> Option<crate::collect::ebpf::Probes> {
    let inode = match netns.map(crate::collect::process::netns_inode).transpose() {
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
    match crate::collect::ebpf::Probes::network(inode) {
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

/// TCP flows from the kernel programs, UDP from `sock_diag`.
///
/// A connect record is sent when the socket leaves SYN_SENT (established or
/// failed), an accept record when `accept(2)` hands the socket over, each
/// once, in the process's own context: no snapshot of the host's sockets,
/// no diff and no `/proc/<pid>/fd` scan per TCP connection. The ring is
/// drained every [`DRAIN_EVERY`](crate::collect::ebpf::DRAIN_EVERY) (sooner when it
/// is half full); the UDP poll, executable cache and loss accounting run
/// once per `poll`.
pub(super) fn run_kernel_flows(
    ctx: &CollectorCtx,
    poll: Duration,
    mut diag: DiagSocketConn,
    mut probes: crate::collect::ebpf::Probes,
) {
    use crate::collect::ebpf::record::{decode, Record};
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
            .min(crate::collect::ebpf::DRAIN_EVERY);
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

#[cfg(test)]
mod tests {
    use super::super::flows::tests::sock;
    use super::*;

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
}
