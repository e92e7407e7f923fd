//! Process collector: every exec and exit on the host (or in the watched
//! network namespace), as `ProcessStart` and `ProcessExit`.
//!
//! Two backends, chosen at start by [`ebpf::choose`]: the eBPF programs
//! ([`ebpf`]) or the netlink process connector with `/proc` enrichment
//! ([`connector`], [`procfs`]). Both build their payloads through the same
//! [`ProcessTracker`] ([`tracker`]), so a process reads the same whichever
//! backend saw it.

pub mod connector;
pub mod ebpf;
pub mod procfs;
pub mod tracker;
pub mod writers;

pub use connector::{
    exit_code, kernel_at_least, parse_datagram, parse_datagram_into, run, subscription_refused,
    subscription_refused_by, ConnectorSocket, ProcEvent,
};
pub use procfs::{
    argv_from_cmdline, netns_inode, netns_of, parse_passwd, stat_field, Enricher, ProcDir,
};
pub use tracker::ProcessTracker;
pub use writers::{exe_basename, LogWriters};
