//! The process collector on the eBPF backend: exec and exit records from
//! the kernel programs (see [`crate::collect::ebpf`]) become the same
//! payloads the connector path builds, through the same [`ProcessTracker`]
//! (parent executables, user names, exit attribution).
//!
//! Everything an exec needs comes with its record, read in the exec'ing
//! task's own context: no `/proc` read per exec (only for a path too deep
//! to walk in the kernel, or a command line over the captured bytes), no
//! "gone before it was read" case, and in `--netns` mode the kernel keeps
//! only the namespace's processes.

use std::sync::atomic::Ordering;

use vigil_proto::{Payload, ProcessStart, Visibility};

use super::procfs::{bounded, MAX_CMDLINE};
use super::{argv_from_cmdline, ProcDir, ProcEvent, ProcessTracker};
use crate::collect::ebpf::record::{self, ExecRecord, KernelPath, Record};
use crate::collect::ebpf::{EbpfError, Probes, DRAIN_EVERY};
use crate::collect::CollectorCtx;
use crate::config::ProcessBackend;

/// The backend the process collector will run on.
#[derive(Debug)]
pub enum Chosen {
    /// eBPF programs, loaded and attached.
    Ebpf(Box<Probes>),
    /// The netlink connector; with the reason eBPF was not used under `auto`.
    Connector(Option<String>),
}

impl Chosen {
    /// How health names the backend (`ebpf`, `connector`, or why `auto`
    /// fell back to the connector).
    pub fn label(&self) -> String {
        match self {
            Chosen::Ebpf(_) => "ebpf".into(),
            Chosen::Connector(None) => "connector".into(),
            Chosen::Connector(Some(why)) => format!("connector; eBPF unavailable: {why}"),
        }
    }
}

/// Load the configured backend: `auto` tries eBPF and falls back to the
/// connector, `ebpf` fails when it cannot load.
pub fn choose(backend: ProcessBackend, netns: Option<u64>) -> Result<Chosen, EbpfError> {
    match backend {
        ProcessBackend::Connector => Ok(Chosen::Connector(None)),
        ProcessBackend::Ebpf => Probes::process(netns).map(|p| Chosen::Ebpf(Box::new(p))),
        ProcessBackend::Auto => Ok(match Probes::process(netns) {
            Ok(p) => Chosen::Ebpf(Box::new(p)),
            Err(e) => {
                tracing::warn!(error = %e, "eBPF process backend unavailable; using the netlink connector");
                Chosen::Connector(Some(e.to_string()))
            }
        }),
    }
}

/// Run the collector on the chosen backend until stopped (the caller has
/// told `ctx.stats` which, with [`Chosen::label`]).
pub fn run_chosen(ctx: CollectorCtx, netns: Option<u64>, chosen: Chosen) {
    match chosen {
        Chosen::Ebpf(probes) => run(ctx, netns, *probes),
        Chosen::Connector(_) => super::run(ctx, netns),
    }
}

/// Run the eBPF backend until stopped.
pub fn run(ctx: CollectorCtx, netns: Option<u64>, mut probes: Probes) {
    ctx.stats.set(Visibility::Working);
    let mut tracker = ProcessTracker::new(netns).with_log_writers(ctx.log_writers.clone());
    let mut out = Vec::new();
    let mut lost = 0u64;
    let mut bad = 0u64;
    while !ctx.stopping() {
        probes.wait(DRAIN_EVERY);
        probes.drain(|bytes| match record::decode(bytes) {
            Ok(Record::Exec(e)) => tracker.exec_record(e, &mut out),
            Ok(Record::Exit(x)) => tracker.handle(
                0,
                ProcEvent::Exit {
                    pid: x.tgid,
                    tgid: x.tgid,
                    status: x.status,
                    parent: x.ppid,
                },
                &mut out,
            ),
            Ok(_) => {}
            Err(e) => {
                bad += 1;
                tracing::debug!(error = %e, "undecodable eBPF process record");
            }
        });
        let now_lost = probes.lost();
        if now_lost > lost || bad > 0 {
            ctx.stats
                .missed
                .fetch_add(now_lost - lost + bad, Ordering::Relaxed);
            ctx.stats.set(Visibility::Degraded(format!(
                "eBPF process records lost: {now_lost} (ring buffer full), {bad} undecodable"
            )));
            if now_lost > lost {
                tracker.lost_events();
            }
            lost = now_lost;
            bad = 0;
        }
        for payload in out.drain(..) {
            if !ctx.emit(payload) {
                return;
            }
        }
    }
}

impl ProcessTracker {
    /// Handle one exec record from the kernel: build the same
    /// [`ProcessStart`] the connector path builds and report it.
    pub fn exec_record(&mut self, e: ExecRecord, out: &mut Vec<Payload>) {
        if self.netns.is_some_and(|want| want != e.netns) {
            // The kernel filters already; this guards a filter that failed.
            return;
        }
        let p = self.start_from_record(e);
        let mut p = p;
        if p.ppid != 0 {
            p.parent_exe = self.parent_exe(p.ppid);
        }
        // A pid seen exec'ing again is the same process with a new image.
        let fork = self.known.remove(&p.pid).and_then(|k| k.fork);
        if self.known.len() >= super::tracker::MAX_KNOWN {
            self.known.clear();
        }
        self.report_exec(p, fork, out);
    }

    /// The payload of an exec record; `/proc` is read only for what the
    /// kernel program could not capture whole.
    fn start_from_record(&mut self, e: ExecRecord) -> ProcessStart {
        let dir = if matches!(e.exe, KernelPath::Truncated)
            || matches!(e.cwd, KernelPath::Truncated)
            || e.argv_truncated
        {
            ProcDir::open(e.tgid)
        } else {
            None
        };
        let path = |k: KernelPath, link: &std::ffi::CStr| match k {
            KernelPath::Full(s) => Some(bounded(s)),
            KernelPath::Truncated => dir.as_ref().and_then(|d| d.readlink(link)),
            KernelPath::None => None,
        };
        let exe = path(e.exe, c"exe");
        let cwd = path(e.cwd, c"cwd");
        let mut argv = argv_from_cmdline(&e.argv);
        if e.argv_truncated {
            let mut buf = Vec::new();
            if dir
                .as_ref()
                .is_some_and(|d| d.read(c"cmdline", &mut buf, MAX_CMDLINE))
                && !buf.is_empty()
            {
                argv = argv_from_cmdline(&buf);
            }
        }
        ProcessStart {
            pid: e.tgid,
            ppid: e.ppid,
            exited_before_enrichment: exe.is_none() && argv.is_empty(),
            exe,
            argv,
            uid: Some(e.uid),
            user: self.enricher.user_name(e.uid),
            cwd,
            parent_exe: None,
            start_time_ns: self.enricher.start_time_of_boottime(e.start_boottime_ns),
            netns: e.netns,
        }
    }
}
