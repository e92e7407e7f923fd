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

pub mod ebpf;
pub mod flows;
pub mod procfs;
pub mod sock_diag;

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use vigil_proto::Visibility;

use super::CollectorCtx;
use ebpf::{kernel_attribution, run_kernel_flows};
use sock_diag::run_polled;

pub use ebpf::{kernel_flow, KernelOwners, ListenerOwners, LossMeter, Owner, BACKEND_EBPF_FLOWS};
pub use flows::{FlowTracker, NewFlow};
pub use procfs::{socket_owners, socket_owners_cached, socket_owners_in, ExeCache, FdCache};
pub use sock_diag::{
    parse_dump, tcp_opens, DiagSocket, DiagSocketConn, TCP_ESTABLISHED, TCP_LISTEN, TCP_SYN_SENT,
};

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
