//! New flows from successive socket snapshots ([`FlowTracker`]), and the
//! payload a snapshot flow becomes: shared by both backends (all of polling,
//! and UDP under eBPF).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use vigil_proto::{NetFlow, Payload, Transport};

use super::sock_diag::{DiagSocket, TCP_CLOSE, TCP_LISTEN};

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

/// The payload for a flow found in a `sock_diag` snapshot.
pub(super) fn diag_flow(f: NewFlow, pid: Option<u32>, exe: Option<String>) -> Payload {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::collect::network::{TCP_ESTABLISHED, TCP_SYN_SENT};

    /// A TCP socket for tests.
    pub(in crate::collect::network) fn sock(
        state: u8,
        local: &str,
        remote: &str,
        inode: u32,
    ) -> DiagSocket {
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
}
