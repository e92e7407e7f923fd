//! [`LogWriters`]: the processes allowed to write login lines (sshd,
//! sshd-session, su, sudo) as the process tracker saw them exec, kept for a
//! while after they exit, so the login collector can still verify a line
//! whose writer is gone by the time the line is read (`ssh host true`,
//! `sudo true`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Executable names (basenames) whose log lines become login events.
pub const LOG_WRITER_EXES: &[&str] = &["sshd", "sshd-session", "su", "sudo"];

/// How long an exited writer is remembered: longer than any delay between
/// a line being written and the login collector reading it.
const KEEP_AFTER_EXIT: Duration = Duration::from_secs(60);
/// Bound on remembered writers (live ones included).
const MAX_WRITERS: usize = 4096;

/// A remembered writer: its effective uid and executable at exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    /// Effective uid at exec.
    pub uid: u32,
    /// Executable path at exec.
    pub exe: String,
    /// When its exit was seen; `None` while it runs.
    pub exited: Option<Instant>,
}

/// The log-writing processes the process collector saw (shared between the
/// process and login collectors; both ends are cheap: a handful of entries).
#[derive(Debug, Default)]
pub struct LogWriters {
    by_pid: Mutex<HashMap<u32, Writer>>,
}

/// Basename of an executable path, without the ` (deleted)` the kernel
/// appends once the file was replaced (a package upgrade).
pub fn exe_basename(exe: &str) -> &str {
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(exe);
    exe.rsplit('/').next().unwrap_or(exe)
}

impl LogWriters {
    /// True when `exe` is one of [`LOG_WRITER_EXES`].
    pub fn is_writer(exe: &str) -> bool {
        LOG_WRITER_EXES.contains(&exe_basename(exe))
    }

    /// `pid` exec'd `exe` as effective uid `uid`.
    pub fn started(&self, pid: u32, uid: u32, exe: &str) {
        let mut map = self.by_pid.lock().expect("log writers");
        if map.len() >= MAX_WRITERS {
            let now = Instant::now();
            map.retain(|_, w| {
                w.exited
                    .is_none_or(|t| now.duration_since(t) < KEEP_AFTER_EXIT)
            });
            if map.len() >= MAX_WRITERS {
                map.retain(|_, w| w.exited.is_none());
            }
        }
        map.insert(
            pid,
            Writer {
                uid,
                exe: exe.to_string(),
                exited: None,
            },
        );
    }

    /// `pid` exited: remembered for [`KEEP_AFTER_EXIT`] more.
    pub fn exited(&self, pid: u32) {
        if let Some(w) = self.by_pid.lock().expect("log writers").get_mut(&pid) {
            w.exited.get_or_insert_with(Instant::now);
        }
    }

    /// `pid` exec'd something else: it is no longer a writer.
    pub fn forget(&self, pid: u32) {
        self.by_pid.lock().expect("log writers").remove(&pid);
    }

    /// The writer `pid` is, or was until less than a minute ago.
    pub fn get(&self, pid: u32) -> Option<Writer> {
        let map = self.by_pid.lock().expect("log writers");
        map.get(&pid)
            .filter(|w| w.exited.is_none_or(|t| t.elapsed() < KEEP_AFTER_EXIT))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_writers_past_their_exit_and_forgets_reexecs() {
        assert!(LogWriters::is_writer("/usr/sbin/sshd"));
        assert!(LogWriters::is_writer(
            "/usr/lib/openssh/sshd-session (deleted)"
        ));
        assert!(!LogWriters::is_writer("/usr/bin/logger"));
        let w = LogWriters::default();
        w.started(10, 0, "/usr/sbin/sshd");
        w.exited(10);
        let got = w.get(10).expect("remembered after exit");
        assert_eq!((got.uid, got.exe.as_str()), (0, "/usr/sbin/sshd"));
        w.started(11, 0, "/usr/bin/sudo");
        w.forget(11);
        assert_eq!(w.get(11), None);
        assert_eq!(w.get(12), None);
    }
}
