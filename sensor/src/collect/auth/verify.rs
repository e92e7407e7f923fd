//! Who wrote a login line. Any local user can put a line tagged `sshd` in
//! the auth log (`logger -t sshd`), so a tag is not a writer: a line becomes
//! an event only when a root-owned sshd (or su, sudo) wrote it. A line that
//! claims one of them and fails the check becomes a `Tamper` record instead.
//!
//! - Syslog lines: the tag's pid must be (or, if it exited since, have been
//!   when the process collector saw it, see [`LogWriters`]) a process with
//!   effective uid 0 running `sshd`/`sshd-session` (or `su`, `sudo`). An
//!   sshd line without a pid is refused; su and sudo lines without one are
//!   taken as before (sudo logs its PAM lines without a pid).
//! - Bare lines (no syslog header: sshd's own `-E` file) are believed only
//!   from a file no one but root can write.
//! - journald: the fields journald sets itself from the sender's
//!   credentials (`_UID`, `_COMM`, `_EXE`) decide, never the identifier.
//!
//! Limit: rsyslog lets the sender choose the pid in the tag
//! (`logger --id=PID`), so naming a live root sshd's pid passes the check;
//! journald's fields have no such gap.

use std::sync::Arc;

use vigil_proto::{Payload, TamperRecord};

use super::parse::LogLine;
use crate::collect::process::{exe_basename, LogWriters, ProcDir};

/// Longest excerpt of a refused line kept in its `Tamper` record.
pub const DETAIL_MAX: usize = 256;

/// A process as far as the sensor can tell: effective uid and executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcIdentity {
    /// Effective uid.
    pub euid: u32,
    /// Executable path.
    pub exe: String,
}

/// Finds out who a pid is, or recently was. A trait so tests inject one.
pub trait WriterLookup: Send {
    /// The process `pid` is or was; `None` when the sensor cannot tell.
    fn identify(&self, pid: u32) -> Option<ProcIdentity>;
}

/// `/proc/<pid>` while the process runs; once it exited, what the process
/// collector noted of it in [`LogWriters`].
#[derive(Debug, Clone)]
pub struct ProcLookup {
    /// Shared with the process collector.
    pub writers: Arc<LogWriters>,
}

impl WriterLookup for ProcLookup {
    fn identify(&self, pid: u32) -> Option<ProcIdentity> {
        live_identity(pid).or_else(|| {
            self.writers.get(pid).map(|w| ProcIdentity {
                euid: w.uid,
                exe: w.exe,
            })
        })
    }
}

/// Effective uid (from `status`: the owner of `/proc/<pid>` is root for
/// any process that made itself non-dumpable) and executable of a running
/// process.
fn live_identity(pid: u32) -> Option<ProcIdentity> {
    let dir = ProcDir::open(pid)?;
    let exe = dir.readlink(c"exe")?;
    let mut buf = Vec::new();
    if !dir.read(c"status", &mut buf, 16 * 1024) {
        return None;
    }
    let status = String::from_utf8_lossy(&buf);
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(ProcIdentity { euid, exe })
}

/// What the check says about one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Written by the program it names.
    Genuine,
    /// Not: the stable reason label for the `Tamper` record.
    Forged(&'static str),
    /// The pid is gone and was not seen: ask again shortly (the process
    /// collector may not have noted it yet), then refuse it with this label.
    Unknown(&'static str),
}

/// The executables allowed to write a program's login lines, and the
/// reason labels for a refusal: (program, names, not from it, no pid, pid
/// unknown).
type Rule = (
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
    &'static str,
);

fn rule(prog: &str) -> Option<Rule> {
    Some(match prog {
        "sshd" | "sshd-session" => (
            "sshd",
            &["sshd", "sshd-session"],
            "sshd_line_not_from_sshd",
            "sshd_line_without_pid",
            "sshd_line_pid_unknown",
        ),
        "su" => (
            "su",
            &["su"],
            "su_line_not_from_su",
            "su_line_without_pid",
            "su_line_pid_unknown",
        ),
        "sudo" => (
            "sudo",
            &["sudo"],
            "sudo_line_not_from_sudo",
            "sudo_line_without_pid",
            "sudo_line_pid_unknown",
        ),
        _ => return None,
    })
}

/// Check a line of a log file. `root_only`: only root can write the file
/// (what makes a bare line believable).
pub fn check_file_line(line: &LogLine<'_>, root_only: bool, lookup: &dyn WriterLookup) -> Verdict {
    let Some((prog, names, not_from, without_pid, unknown)) = rule(&line.prog) else {
        return Verdict::Genuine;
    };
    if line.bare {
        return if root_only {
            Verdict::Genuine
        } else {
            Verdict::Forged(without_pid)
        };
    }
    let Some(pid) = line.pid else {
        return if prog == "sshd" {
            Verdict::Forged(without_pid)
        } else {
            Verdict::Genuine
        };
    };
    match lookup.identify(pid) {
        None => Verdict::Unknown(unknown),
        Some(id) if id.euid == 0 && names.contains(&exe_basename(&id.exe)) => Verdict::Genuine,
        Some(_) => Verdict::Forged(not_from),
    }
}

/// The fields journald sets itself for an entry (from the sender's
/// credentials, not from what it wrote).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalFields {
    /// `_UID` (journald takes the sender's effective uid).
    pub uid: Option<u32>,
    /// `_COMM`.
    pub comm: Option<String>,
    /// `_EXE`.
    pub exe: Option<String>,
}

/// Check a journald entry whose identifier claims `prog`.
pub fn check_journal(prog: &str, fields: &JournalFields) -> Verdict {
    let Some((_, names, not_from, _, _)) = rule(prog) else {
        return Verdict::Genuine;
    };
    let named = match (&fields.exe, &fields.comm) {
        (Some(exe), _) => names.contains(&exe_basename(exe)),
        (None, Some(comm)) => names.contains(&comm.as_str()),
        (None, None) => false,
    };
    if fields.uid == Some(0) && named {
        Verdict::Genuine
    } else {
        Verdict::Forged(not_from)
    }
}

/// The record for a refused line: its first [`DETAIL_MAX`] bytes.
pub fn tamper(reason: &str, line: &str) -> Payload {
    let mut cut = line.len().min(DETAIL_MAX);
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    Payload::Tamper(TamperRecord {
        source: "auth_log".into(),
        reason: reason.into(),
        detail: line[..cut].to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::parse::split_syslog;
    use super::*;

    /// Pids and who they are, as a test says.
    struct Table(HashMap<u32, ProcIdentity>);

    impl WriterLookup for Table {
        fn identify(&self, pid: u32) -> Option<ProcIdentity> {
            self.0.get(&pid).cloned()
        }
    }

    fn table() -> Table {
        let id = |euid, exe: &str| ProcIdentity {
            euid,
            exe: exe.into(),
        };
        Table(HashMap::from([
            (100, id(0, "/usr/sbin/sshd")),
            (101, id(0, "/usr/lib/openssh/sshd-session")),
            (200, id(1000, "/usr/bin/logger")),
            (201, id(1000, "/usr/sbin/sshd")),
            (202, id(0, "/usr/bin/bash")),
            (300, id(0, "/usr/bin/sudo")),
        ]))
    }

    #[test]
    fn syslog_lines_are_believed_only_from_root_sshd() {
        let t = table();
        let check = |line: &str| check_file_line(&split_syslog(line), false, &t);
        let accepted = "Accepted password for alice from 10.0.0.5 port 1 ssh2";
        assert_eq!(
            check(&format!("Nov 23 10:00:01 h sshd[100]: {accepted}")),
            Verdict::Genuine
        );
        assert_eq!(
            check(&format!("Nov 23 10:00:01 h sshd-session[101]: {accepted}")),
            Verdict::Genuine
        );
        let forged = Verdict::Forged("sshd_line_not_from_sshd");
        assert_eq!(
            check(&format!("Nov 23 10:00:01 h sshd[200]: {accepted}")),
            forged
        );
        // The real binary, run by a user; root running something else.
        assert_eq!(
            check(&format!("Nov 23 10:00:01 h sshd[201]: {accepted}")),
            forged
        );
        assert_eq!(
            check(&format!("Nov 23 10:00:01 h sshd[202]: {accepted}")),
            forged
        );
        assert_eq!(
            check(&format!("Nov 23 10:00:01 h sshd: {accepted}")),
            Verdict::Forged("sshd_line_without_pid")
        );
        assert_eq!(
            check(&format!("Nov 23 10:00:01 h sshd-session[999]: {accepted}")),
            Verdict::Unknown("sshd_line_pid_unknown")
        );
        // su and sudo: checked where a pid is given.
        let sudo = "pam_unix(sudo:session): session opened for user root(uid=0) by a(uid=1000)";
        assert_eq!(
            check(&format!("Nov 23 10:00:01 h sudo[300]: {sudo}")),
            Verdict::Genuine
        );
        assert_eq!(
            check(&format!("Nov 23 10:00:01 h sudo[200]: {sudo}")),
            Verdict::Forged("sudo_line_not_from_sudo")
        );
        assert_eq!(
            check(&format!("Nov 23 10:00:01 h sudo: {sudo}")),
            Verdict::Genuine
        );
    }

    #[test]
    fn bare_lines_need_a_file_only_root_can_write() {
        let t = table();
        let line = split_syslog("Accepted publickey for erin from 127.0.0.1 port 4 ssh2");
        assert_eq!(check_file_line(&line, true, &t), Verdict::Genuine);
        assert_eq!(
            check_file_line(&line, false, &t),
            Verdict::Forged("sshd_line_without_pid")
        );
    }

    #[test]
    fn journald_trusts_its_own_fields_not_the_identifier() {
        let f = |uid, comm: &str, exe: Option<&str>| JournalFields {
            uid: Some(uid),
            comm: Some(comm.into()),
            exe: exe.map(String::from),
        };
        assert_eq!(
            check_journal("sshd", &f(0, "sshd", Some("/usr/sbin/sshd"))),
            Verdict::Genuine
        );
        assert_eq!(
            check_journal(
                "sshd",
                &f(0, "sshd-session", Some("/usr/lib/openssh/sshd-session"))
            ),
            Verdict::Genuine
        );
        let forged = Verdict::Forged("sshd_line_not_from_sshd");
        assert_eq!(
            check_journal("sshd", &f(1000, "logger", Some("/usr/bin/logger"))),
            forged
        );
        assert_eq!(
            check_journal("sshd", &f(1000, "sshd", Some("/usr/sbin/sshd"))),
            forged
        );
        assert_eq!(check_journal("sshd", &JournalFields::default()), forged);
        assert_eq!(
            check_journal("su", &f(0, "su", Some("/usr/bin/su"))),
            Verdict::Genuine
        );
    }

    #[test]
    fn tamper_detail_is_bounded_at_a_char_boundary() {
        let long = "é".repeat(200);
        let Payload::Tamper(t) = tamper("sshd_line_not_from_sshd", &long) else {
            unreachable!()
        };
        assert!(t.detail.len() <= DETAIL_MAX && t.detail.len() >= DETAIL_MAX - 1);
        assert_eq!(
            (t.source.as_str(), t.reason.as_str()),
            ("auth_log", "sshd_line_not_from_sshd")
        );
    }

    #[test]
    fn own_process_is_identified_from_proc() {
        let me = live_identity(std::process::id()).expect("own /proc");
        assert_eq!(me.euid, nix::unistd::geteuid().as_raw());
        assert_eq!(
            Some(me.exe),
            std::env::current_exe()
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        );
    }
}
