//! The [`ProcessTracker`]: the state both process backends share. It turns
//! execs, forks and exits into payloads, remembers live processes (their
//! executables, namespaces and forks) and attributes, in `--netns` mode,
//! processes that were gone before they could be read.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_proto::{Payload, ProcessExit, ProcessStart};

use super::procfs::{readlink, Enricher, ProcDir};
use super::writers::LogWriters;
use super::{exit_code, ProcEvent};

/// What the collector remembers about a live process (removed at its exit).
#[derive(Debug, Default, Clone)]
pub(super) struct Known {
    /// Executable, once read (`None`: not read yet).
    exe: Option<Option<String>>,
    /// Network-namespace inode when last read (0: unknown).
    netns: u64,
    /// Seen exec'ing since the sensor started (not only looked up as a parent).
    execd: bool,
    /// A `ProcessStart` was emitted for it, so its exit is reported too.
    reported: bool,
    /// Its current image is a shell, which cannot change namespaces itself.
    shell: bool,
    /// Parent tgid and kernel time of its fork, when the sensor saw it.
    pub(super) fork: Option<(u32, u64)>,
}

/// An exec in `--netns` mode whose namespace could not be read because the
/// process was already gone: decided at its exit event, which names the
/// parent.
#[derive(Debug)]
struct Pending {
    start: ProcessStart,
    since: Instant,
    /// The namespace of the pid's previous image, when that was a shell
    /// (`bash -c 'a; b'` execs `b` in the shell's own pid).
    inherit: Option<u64>,
}

/// Pending execs older than this are given up (their exit event was lost).
const PENDING_TTL: Duration = Duration::from_secs(10);
/// Bound on remembered processes.
pub(super) const MAX_KNOWN: usize = 65_536;

fn is_shell(exe: Option<&str>) -> bool {
    let Some(exe) = exe else { return false };
    let base = exe.rsplit('/').next().unwrap_or(exe);
    matches!(
        base,
        "bash"
            | "sh"
            | "dash"
            | "zsh"
            | "ksh"
            | "ksh93"
            | "mksh"
            | "fish"
            | "rbash"
            | "tcsh"
            | "csh"
    )
}

/// The collector's state: turns connector events into payloads.
///
/// With a namespace filter, an exec is attributed to the namespace that
/// `/proc/<pid>/ns/net` names, read first of all. A process that is gone
/// before that read (a `/bin/true` lives well under a millisecond) is
/// attributed at its exit event, which carries the parent's tgid:
/// - a first exec since fork inherits the namespace its parent is in (a
///   child starts in its parent's namespace);
/// - a re-exec of a pid whose previous image was a shell keeps the shell's
///   namespace (a shell cannot change it);
/// - anything else (e.g. the second exec of `ip netns exec`, which changed
///   namespace in between) is not attributed: it is counted in
///   [`ProcessTracker::unattributed`] rather than guessed.
///
/// The one case inheritance gets wrong is a child that changes its own
/// namespace between fork and exec (`setns`/`unshare` in a pre-exec hook)
/// and exits before it could be read.
#[derive(Debug)]
pub struct ProcessTracker {
    pub(super) enricher: Enricher,
    pub(super) known: HashMap<u32, Known>,
    pending: HashMap<u32, Pending>,
    pub(super) netns: Option<u64>,
    /// Execs that could not be attributed to a namespace (netns mode).
    pub unattributed: u64,
    /// Where log-writing processes are noted for the login collector.
    log_writers: Option<Arc<LogWriters>>,
    /// Pids noted there, so other execs and exits cost no lock.
    writer_pids: HashSet<u32>,
}

impl ProcessTracker {
    /// A tracker keeping only processes in network namespace `netns`
    /// (inode), or every process.
    pub fn new(netns: Option<u64>) -> ProcessTracker {
        ProcessTracker {
            enricher: Enricher::new(),
            known: HashMap::new(),
            pending: HashMap::new(),
            netns,
            unattributed: 0,
            log_writers: None,
            writer_pids: HashSet::new(),
        }
    }

    /// Also note the log-writing processes (sshd, su, sudo) it sees in
    /// `writers`, for the login collector's checks.
    pub fn with_log_writers(mut self, writers: Arc<LogWriters>) -> ProcessTracker {
        self.log_writers = Some(writers);
        self
    }

    /// Execs waiting for their exit event to be attributed.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Handle one event stamped `ts` (kernel `CLOCK_MONOTONIC` ns),
    /// appending what it produces to `out`.
    pub fn handle(&mut self, ts: u64, ev: ProcEvent, out: &mut Vec<Payload>) {
        match ev {
            ProcEvent::Exec { pid } => self.exec(pid, out),
            ProcEvent::Fork {
                parent,
                child_pid,
                child_tgid,
            } if child_pid == child_tgid => {
                // A new process (not a thread); any entry is a dead one's.
                if self.known.len() >= MAX_KNOWN {
                    self.known.clear();
                }
                self.known.insert(
                    child_tgid,
                    Known {
                        fork: Some((parent, ts)),
                        ..Known::default()
                    },
                );
            }
            ProcEvent::Exit {
                pid,
                tgid,
                status,
                parent,
            } if pid == tgid => self.exit(pid, status, parent, out),
            _ => {}
        }
    }

    /// Give up pending execs whose exit never came; returns how many.
    pub fn expire(&mut self, now: Instant) -> u64 {
        let before = self.pending.len();
        self.pending
            .retain(|_, p| now.duration_since(p.since) < PENDING_TTL);
        let gone = (before - self.pending.len()) as u64;
        self.unattributed += gone;
        gone
    }

    fn exec(&mut self, pid: u32, out: &mut Vec<Payload>) {
        // Read at once, namespace first: short-lived processes are gone
        // within a millisecond.
        let dir = ProcDir::open(pid);
        let ns = dir.as_ref().map(ProcDir::netns).unwrap_or(0);
        if self.pending.remove(&pid).is_some() {
            // That process was gone, so this is a new one with its pid: the
            // old one's exit event was lost.
            self.unattributed += 1;
        }
        let entry = self.known.remove(&pid);
        let fork = entry.as_ref().and_then(|k| k.fork);
        let prev = entry.filter(|k| k.execd);
        if self.known.len() >= MAX_KNOWN {
            self.known.clear();
        }
        if let Some(want) = self.netns {
            if ns != 0 && ns != want {
                // Another namespace: remembered (cheaply) for its re-execs.
                let reported = prev.as_ref().is_some_and(|k| k.reported);
                self.known.insert(
                    pid,
                    Known {
                        exe: prev.and_then(|k| k.exe).filter(|_| reported),
                        netns: ns,
                        execd: true,
                        reported,
                        shell: false,
                        fork,
                    },
                );
                return;
            }
        }
        let (mut p, running) = self.enricher.read_process(pid, dir.as_ref(), ns, fork);
        if p.exe.is_none() && running {
            // The event comes from inside execve(2); if the task has not
            // finished it, try once more a moment later.
            std::thread::sleep(Duration::from_micros(300));
            p = self.enricher.read_process(pid, dir.as_ref(), ns, fork).0;
        }
        drop(dir);
        if p.ppid != 0 {
            p.parent_exe = self.parent_exe(p.ppid);
        }
        if self.netns.is_some() && ns == 0 {
            let inherit = match &prev {
                None => None,
                Some(k) if k.shell && k.netns != 0 => Some(k.netns),
                Some(_) => {
                    self.unattributed += 1;
                    return;
                }
            };
            self.pending.insert(
                pid,
                Pending {
                    start: p,
                    since: Instant::now(),
                    inherit,
                },
            );
            return;
        }
        self.report_exec(p, fork, out);
    }

    /// Remember a process that exec'd and passed the namespace filter (so
    /// its exit is reported), and emit its start. Shared by both backends.
    pub(super) fn report_exec(
        &mut self,
        p: ProcessStart,
        fork: Option<(u32, u64)>,
        out: &mut Vec<Payload>,
    ) {
        self.known.insert(
            p.pid,
            Known {
                exe: Some(p.exe.clone()),
                netns: p.netns,
                execd: true,
                reported: true,
                shell: is_shell(p.exe.as_deref()),
                fork,
            },
        );
        self.note_writer(&p);
        out.push(Payload::ProcessStart(p));
    }

    /// Keep [`LogWriters`] current for an exec: a writer is noted, a pid
    /// that was one and exec'd something else is forgotten.
    fn note_writer(&mut self, p: &ProcessStart) {
        let Some(writers) = &self.log_writers else {
            return;
        };
        match (p.exe.as_deref(), p.uid) {
            (Some(exe), Some(uid)) if LogWriters::is_writer(exe) => {
                writers.started(p.pid, uid, exe);
                self.writer_pids.insert(p.pid);
            }
            _ if self.writer_pids.remove(&p.pid) => writers.forget(p.pid),
            _ => {}
        }
    }

    fn exit(&mut self, pid: u32, status: u32, parent: u32, out: &mut Vec<Payload>) {
        if let Some(pend) = self.pending.remove(&pid) {
            self.known.remove(&pid);
            let ns = match pend.inherit {
                Some(ns) => ns,
                None => self.netns_of_live(parent),
            };
            if ns == 0 || Some(ns) != self.netns {
                if ns == 0 {
                    self.unattributed += 1;
                }
                return;
            }
            let mut p = pend.start;
            p.netns = ns;
            if p.ppid == 0 {
                p.ppid = parent;
            }
            if p.parent_exe.is_none() && p.ppid != 0 {
                p.parent_exe = self.parent_exe(p.ppid);
            }
            let exe = p.exe.clone();
            out.push(Payload::ProcessStart(p));
            out.push(Payload::ProcessExit(ProcessExit {
                pid,
                exit_code: Some(exit_code(status)),
                exe,
            }));
            return;
        }
        // Only processes we reported (and so passed the netns filter).
        if self.writer_pids.remove(&pid) {
            if let Some(w) = &self.log_writers {
                w.exited(pid);
            }
        }
        if let Some(k) = self.known.remove(&pid) {
            if k.reported {
                out.push(Payload::ProcessExit(ProcessExit {
                    pid,
                    exit_code: Some(exit_code(status)),
                    exe: k.exe.flatten(),
                }));
            }
        }
    }

    /// Namespace of a (parent) process now, or when last read.
    fn netns_of_live(&self, pid: u32) -> u64 {
        if pid == 0 {
            return 0;
        }
        match ProcDir::open(pid).map(|d| d.netns()).unwrap_or(0) {
            0 => self.known.get(&pid).map(|k| k.netns).unwrap_or(0),
            ns => ns,
        }
    }

    /// Executable of a parent: remembered from its exec, or read once.
    pub(super) fn parent_exe(&mut self, ppid: u32) -> Option<String> {
        if let Some(Some(exe)) = self.known.get(&ppid).map(|k| &k.exe) {
            return exe.clone();
        }
        let exe = readlink(format!("/proc/{ppid}/exe"));
        self.known.entry(ppid).or_default().exe = Some(exe.clone());
        exe
    }

    /// Forget everything learnt from events (after the kernel dropped some).
    pub fn lost_events(&mut self) {
        // Exits may be among the dropped: remembered executables may now be
        // stale (pid reuse), so read parents afresh.
        for k in self.known.values_mut() {
            if !k.execd {
                k.exe = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::process::connector::monotonic_ns;
    use crate::collect::process::netns_of;

    /// A pid that cannot exist (above the kernel's pid_max limit).
    const GONE: u32 = 1 << 23;

    fn exit(pid: u32, parent: u32) -> ProcEvent {
        ProcEvent::Exit {
            pid,
            tgid: pid,
            status: 0,
            parent,
        }
    }

    #[test]
    fn gone_child_inherits_its_parents_namespace_at_exit() {
        let me = std::process::id();
        let mine = netns_of(me);
        let mut t = ProcessTracker::new(Some(mine));
        let mut out = Vec::new();
        t.handle(0, ProcEvent::Exec { pid: GONE }, &mut out);
        assert!(out.is_empty(), "waits for the exit event");
        assert_eq!(t.pending(), 1);
        t.handle(0, exit(GONE, me), &mut out);
        assert_eq!(t.pending(), 0);
        match &out[..] {
            [Payload::ProcessStart(p), Payload::ProcessExit(x)] => {
                assert_eq!((p.pid, p.ppid, p.netns), (GONE, me, mine));
                assert!(p.exited_before_enrichment);
                assert_eq!(x.pid, GONE);
            }
            other => panic!("{other:?}"),
        }
        // Watching another namespace: the same child is not reported.
        let mut t = ProcessTracker::new(Some(mine + 1));
        let mut out = Vec::new();
        t.handle(0, ProcEvent::Exec { pid: GONE }, &mut out);
        t.handle(0, exit(GONE, me), &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(t.unattributed, 0, "attributed: to another namespace");
    }

    #[test]
    fn gone_reexec_is_attributed_only_after_a_shell() {
        let me = std::process::id();
        let mine = netns_of(me);
        let mut t = ProcessTracker::new(Some(mine));
        let mut out = Vec::new();
        // A pid seen exec'ing a non-shell in the namespace (as `ip netns
        // exec` would, before it changes namespace and execs again).
        t.known.insert(
            GONE,
            Known {
                exe: Some(Some("/usr/bin/ip".into())),
                netns: mine,
                execd: true,
                reported: true,
                shell: false,
                fork: None,
            },
        );
        t.handle(0, ProcEvent::Exec { pid: GONE }, &mut out);
        assert_eq!(t.pending(), 0);
        assert_eq!(t.unattributed, 1);
        t.handle(0, exit(GONE, me), &mut out);
        assert!(
            !out.iter().any(|p| matches!(p, Payload::ProcessStart(_))),
            "{out:?}"
        );
        // After a shell, the image keeps the shell's namespace.
        out.clear();
        t.known.insert(
            GONE,
            Known {
                exe: Some(Some("/usr/bin/bash".into())),
                netns: mine,
                execd: true,
                reported: true,
                shell: true,
                fork: None,
            },
        );
        t.handle(0, ProcEvent::Exec { pid: GONE }, &mut out);
        t.handle(0, exit(GONE, 1), &mut out);
        assert!(
            matches!(&out[..], [Payload::ProcessStart(p), Payload::ProcessExit(_)] if p.netns == mine && p.ppid == 1),
            "{out:?}"
        );
    }

    #[test]
    fn fork_event_gives_parent_and_start_time_without_stat() {
        let me = std::process::id();
        let mut t = ProcessTracker::new(None);
        let mut out = Vec::new();
        let fork = ProcEvent::Fork {
            parent: me,
            child_pid: GONE,
            child_tgid: GONE,
        };
        let at = monotonic_ns();
        t.handle(at, fork, &mut out);
        t.handle(at + 1000, ProcEvent::Exec { pid: GONE }, &mut out);
        let Some(Payload::ProcessStart(p)) = out.first() else {
            panic!("{out:?}")
        };
        assert_eq!(p.ppid, me);
        let st = p.start_time_ns.expect("start time from the fork event");
        let now = crate::collect::now_ns();
        assert!(st <= now && st + 2_000_000_000 > now, "{st} vs {now}");
        // Thread creations are not processes.
        let mut t = ProcessTracker::new(None);
        let thread = ProcEvent::Fork {
            parent: me,
            child_pid: GONE + 1,
            child_tgid: GONE,
        };
        t.handle(at, thread, &mut out);
        assert!(t.known.is_empty());
    }
}
