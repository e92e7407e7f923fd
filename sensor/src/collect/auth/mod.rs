//! Login collector: tails the auth log (path configurable) or, when that file
//! does not exist, follows journald (`journalctl -f -o json`), and turns
//! sshd / su / sudo lines into `Login`, `Logout` and `AuthFailure` — only
//! those their program really wrote ([`verify`]); a line that claims sshd
//! and fails the check becomes a `Tamper` record.
//!
//! The parser is pure ([`AuthParser::parse_line`], in [`parse`]) and tested
//! from `auth_cases.txt`: sample lines and the expected events side by side.

pub mod parse;
pub mod tail;
pub mod verify;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vigil_proto::{Payload, Visibility};

pub use parse::{split_syslog, AuthParser, LogLine};
pub use tail::Tail;
use verify::{check_file_line, check_journal, tamper, JournalFields, ProcLookup, Verdict};
pub use verify::{ProcIdentity, WriterLookup};

use super::CollectorCtx;

const POLL: Duration = Duration::from_millis(200);
/// The distribution's auth log; when it is absent, journald is followed.
const DEFAULT_AUTH_LOG: &str = "/var/log/auth.log";
/// Console logins come from here (see [`super::wtmp`]).
const WTMP: &str = "/var/log/wtmp";
/// How long a line whose pid is gone waits for the process collector to
/// say who that was (it notes execs within its 100 ms drain).
const UNKNOWN_WAIT: Duration = Duration::from_secs(2);

/// A line whose writer could not be told yet.
#[derive(Debug)]
struct Waiting {
    since: Instant,
    line: String,
    prog: String,
    pid: Option<u32>,
    event: Payload,
}

/// Turns auth log lines into events, or into `Tamper` records when the
/// program a line names did not write it.
pub struct LineChecker {
    parser: AuthParser,
    lookup: Box<dyn WriterLookup>,
    waiting: VecDeque<Waiting>,
}

impl LineChecker {
    /// A checker asking `lookup` who a pid is.
    pub fn new(lookup: Box<dyn WriterLookup>) -> LineChecker {
        LineChecker {
            parser: AuthParser::default(),
            lookup,
            waiting: VecDeque::new(),
        }
    }

    /// Handle one line of a file only root can write (`root_only`) or not;
    /// what it gives is appended to `out` (now, or from a later
    /// [`LineChecker::retry`] if its pid must be looked up again).
    pub fn line(&mut self, line: &str, root_only: bool, out: &mut Vec<Payload>) {
        let l = split_syslog(line.trim_end());
        let Some(event) = self.parser.peek(&l.prog, l.pid, l.msg) else {
            return;
        };
        match check_file_line(&l, root_only, &*self.lookup) {
            Verdict::Genuine => {
                self.parser.commit(&event);
                out.push(event);
            }
            Verdict::Forged(reason) => out.push(tamper(reason, line)),
            Verdict::Unknown(_) => self.waiting.push_back(Waiting {
                since: Instant::now(),
                line: line.to_string(),
                prog: l.prog,
                pid: l.pid,
                event,
            }),
        }
    }

    /// Look up the waiting lines' pids again; those still unknown after
    /// [`UNKNOWN_WAIT`] (as of `now`) are refused.
    pub fn retry(&mut self, now: Instant, out: &mut Vec<Payload>) {
        for w in std::mem::take(&mut self.waiting) {
            let l = LogLine {
                prog: w.prog.clone(),
                pid: w.pid,
                msg: "",
                bare: false,
            };
            match check_file_line(&l, false, &*self.lookup) {
                Verdict::Genuine => {
                    self.parser.commit(&w.event);
                    out.push(w.event);
                }
                Verdict::Forged(reason) => out.push(tamper(reason, &w.line)),
                Verdict::Unknown(reason) if now.duration_since(w.since) >= UNKNOWN_WAIT => {
                    out.push(tamper(reason, &w.line))
                }
                Verdict::Unknown(_) => self.waiting.push_back(w),
            }
        }
    }
}

/// Run the collector until stopped. `wtmp`: also report console logins
/// from `/var/log/wtmp` (off when watching a network namespace, whose
/// "host" has no console).
pub fn run(ctx: CollectorCtx, path: PathBuf, wtmp: bool) {
    let lookup = ProcLookup {
        writers: ctx.log_writers.clone(),
    };
    run_with(ctx, path, wtmp, Box::new(lookup))
}

/// [`run`] with the given way to find out who a pid is.
pub fn run_with(ctx: CollectorCtx, path: PathBuf, wtmp: bool, lookup: Box<dyn WriterLookup>) {
    // Only the default path falls back to journald: an explicitly configured
    // log (e.g. a lab sshd's `-E` file) may simply not exist yet.
    if path == Path::new(DEFAULT_AUTH_LOG) && !path.exists() && which("journalctl") {
        return run_journald(ctx);
    }
    if !path.exists() {
        ctx.stats.set(Visibility::Degraded(format!(
            "{} does not exist (yet) and journalctl is not available; waiting for the file",
            path.display()
        )));
    } else {
        ctx.stats.set(Visibility::Working);
    }
    let mut tail = Tail::new(&path);
    let mut checker = LineChecker::new(lookup);
    let mut out = Vec::new();
    let mut wtmp = wtmp.then(|| super::wtmp::WtmpTail::new(Path::new(WTMP)));
    let mut wtmp_state = super::wtmp::WtmpState::default();
    while !ctx.stopping() {
        let records = wtmp.as_mut().map(|w| w.read().unwrap_or_default());
        out.extend(
            records
                .unwrap_or_default()
                .iter()
                .filter_map(|rec| wtmp_state.event(rec)),
        );
        match tail.read_lines() {
            Ok(lines) => {
                if tail.is_open() {
                    ctx.stats.set(Visibility::Working);
                }
                let root_only = tail.root_only();
                for line in lines {
                    checker.line(&line, root_only, &mut out);
                }
            }
            Err(e) => ctx.stats.set(Visibility::Degraded(format!(
                "reading {}: {e}",
                path.display()
            ))),
        }
        checker.retry(Instant::now(), &mut out);
        for p in out.drain(..) {
            if !ctx.emit(p) {
                return;
            }
        }
        std::thread::sleep(POLL);
    }
}

fn which(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

fn run_journald(ctx: CollectorCtx) {
    let child = Command::new("journalctl")
        .args([
            "-f",
            "-o",
            "json",
            "-n",
            "0",
            "-t",
            "sshd",
            "-t",
            "sshd-session",
            "-t",
            "su",
            "-t",
            "sudo",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            ctx.stats
                .set(Visibility::Unavailable(format!("journalctl: {e}")));
            return;
        }
    };
    let stdout = child.stdout.take().expect("piped");
    ctx.stats.set(Visibility::Working);
    let reader_ctx = ctx.clone();
    let reader = std::thread::spawn(move || {
        let mut parser = AuthParser::default();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
            let (Some(prog), Some(msg)) = (field("SYSLOG_IDENTIFIER"), field("MESSAGE")) else {
                continue;
            };
            let pid = field("_PID")
                .or_else(|| field("SYSLOG_PID"))
                .and_then(|p| p.parse().ok());
            // Who sent it, as journald saw it: never the identifier.
            let trusted = JournalFields {
                uid: field("_UID").and_then(|u| u.parse().ok()),
                comm: field("_COMM"),
                exe: field("_EXE"),
            };
            let Some(event) = parser.peek(&prog, pid, &msg) else {
                continue;
            };
            let p = match check_journal(&prog, &trusted) {
                Verdict::Genuine => {
                    parser.commit(&event);
                    event
                }
                Verdict::Forged(reason) | Verdict::Unknown(reason) => {
                    tamper(reason, &format!("{prog}: {msg}"))
                }
            };
            if !reader_ctx.emit(p) {
                return;
            }
        }
    });
    while !ctx.stopping() {
        if let Ok(Some(status)) = child.try_wait() {
            ctx.stats.set(Visibility::Unavailable(format!(
                "journalctl exited: {status}"
            )));
            break;
        }
        std::thread::sleep(POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
}

#[cfg(test)]
mod tests;
