//! Login collector: tails the auth log (path configurable) or, when that file
//! does not exist, follows journald (`journalctl -f -o json`), and turns
//! sshd / su / sudo lines into `Login`, `Logout` and `AuthFailure`.
//!
//! The parser is pure ([`AuthParser::parse_line`]) and tested from
//! `auth_cases.txt`: sample lines and the expected events side by side.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use vigil_proto::{AuthMethod, LoginInfo, LoginService, Payload, Visibility};

use super::CollectorCtx;

const POLL: Duration = Duration::from_millis(200);
/// The distribution's auth log; when it is absent, journald is followed.
const DEFAULT_AUTH_LOG: &str = "/var/log/auth.log";
/// Console logins come from here (see [`super::wtmp`]).
const WTMP: &str = "/var/log/wtmp";
/// Longest line considered (longer ones are skipped).
const MAX_LINE: usize = 8192;

/// Split a syslog line into (program, pid, message). Handles the classic
/// `Mon DD HH:MM:SS host prog[pid]: msg`, RFC 3339 timestamps, and bare
/// `msg` lines (sshd `-E logfile`), which are taken as sshd's.
pub fn split_syslog(line: &str) -> (String, Option<u32>, &str) {
    let mut idx = 0;
    for (n, tok) in line.split(' ').enumerate() {
        if n > 6 {
            break;
        }
        let tok_start = idx;
        idx += tok.len() + 1;
        let Some(head) = tok.strip_suffix(':') else {
            continue;
        };
        let (prog, pid) = match head.split_once('[') {
            Some((p, rest)) => (p, rest.strip_suffix(']').and_then(|x| x.parse().ok())),
            None => (head, None),
        };
        if prog.is_empty()
            || !prog
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            continue;
        }
        // A time like 10:00:01 also ends tokens with ':' only when split oddly;
        // require a letter so "01:" is never a program.
        if !prog.chars().any(|c| c.is_ascii_alphabetic()) {
            continue;
        }
        let _ = tok_start;
        let msg = line.get(idx.min(line.len())..).unwrap_or("").trim_start();
        let prog = prog.rsplit('/').next().unwrap_or(prog).to_string();
        return (prog, pid, msg);
    }
    ("sshd".into(), None, line.trim())
}

/// Stateful parser: remembers each sshd session's source so that the
/// `session closed` line can carry it.
#[derive(Debug, Default)]
pub struct AuthParser {
    sessions: HashMap<(Option<IpAddr>, Option<u16>), AuthMethod>,
}

fn method(word: &str) -> AuthMethod {
    match word {
        "password" => AuthMethod::Password,
        "publickey" => AuthMethod::PublicKey,
        w if w.starts_with("keyboard-interactive") => AuthMethod::KeyboardInteractive,
        "gssapi-with-mic" => AuthMethod::Kerberos,
        other => AuthMethod::Other(other.to_string()),
    }
}

/// Parse "USER from ADDR port PORT" (the tail of several sshd lines).
fn user_from(rest: &str) -> Option<(String, Option<IpAddr>, Option<u16>)> {
    let (user, rest) = rest.split_once(" from ")?;
    let mut it = rest.split_whitespace();
    let addr = it.next()?.parse().ok();
    let port = match (it.next(), it.next()) {
        (Some("port"), Some(p)) => p.parse().ok(),
        _ => None,
    };
    Some((user.to_string(), addr, port))
}

/// `key=value` field of a pam "authentication failure" line.
fn pam_field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    msg.split([' ', ';'])
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
}

fn info(user: String, method: AuthMethod, service: LoginService, pid: Option<u32>) -> LoginInfo {
    LoginInfo {
        user,
        method,
        service,
        src_addr: None,
        src_port: None,
        src_host: None,
        from_user: None,
        pid,
    }
}

impl AuthParser {
    /// Events for one log line (most lines give none).
    pub fn parse_line(&mut self, line: &str) -> Option<Payload> {
        let (prog, pid, msg) = split_syslog(line.trim_end());
        self.parse_message(&prog, pid, msg)
    }

    /// Events for one already-split message (journald gives fields).
    pub fn parse_message(&mut self, prog: &str, pid: Option<u32>, msg: &str) -> Option<Payload> {
        match prog {
            "sshd" | "sshd-session" => self.sshd(pid, msg),
            "su" => pam_line(msg, "su", LoginService::Su, pid),
            "sudo" => pam_line(msg, "sudo", LoginService::Sudo, pid),
            _ => None,
        }
    }

    fn sshd(&mut self, pid: Option<u32>, msg: &str) -> Option<Payload> {
        if let Some(rest) = msg.strip_prefix("Accepted ") {
            let (m, rest) = rest.split_once(" for ")?;
            let (user, addr, port) = user_from(rest)?;
            let method = method(m);
            if self.sessions.len() > 10_000 {
                self.sessions.clear();
            }
            self.sessions.insert((addr, port), method.clone());
            let mut i = info(user, method, LoginService::Ssh, pid);
            i.src_addr = addr;
            i.src_port = port;
            return Some(Payload::Login(i));
        }
        if let Some(rest) = msg.strip_prefix("Failed ") {
            let (m, rest) = rest.split_once(" for ")?;
            let rest = rest.strip_prefix("invalid user ").unwrap_or(rest);
            let (user, addr, port) = user_from(rest)?;
            let mut i = info(user, method(m), LoginService::Ssh, pid);
            i.src_addr = addr;
            i.src_port = port;
            return Some(Payload::AuthFailure(i));
        }
        if let Some(rest) = msg.strip_prefix("Invalid user ") {
            let (user, addr, port) = user_from(rest)?;
            let mut i = info(
                user,
                AuthMethod::Other("invalid_user".into()),
                LoginService::Ssh,
                pid,
            );
            i.src_addr = addr;
            i.src_port = port;
            return Some(Payload::AuthFailure(i));
        }
        // "session closed" (PAM) carries no source; this line, logged with
        // and without PAM, does.
        if let Some(rest) = msg.strip_prefix("Disconnected from user ") {
            let mut it = rest.split_whitespace();
            let user = it.next()?.to_string();
            let addr = it.next()?.parse().ok();
            let port = match (it.next(), it.next()) {
                (Some("port"), Some(p)) => p.parse().ok(),
                _ => None,
            };
            let method = self
                .sessions
                .remove(&(addr, port))
                .unwrap_or(AuthMethod::Other("unknown".into()));
            let mut i = info(user, method, LoginService::Ssh, pid);
            i.src_addr = addr;
            i.src_port = port;
            return Some(Payload::Logout(i));
        }
        None
    }
}

fn pam_line(msg: &str, svc: &str, service: LoginService, pid: Option<u32>) -> Option<Payload> {
    let opened = format!("pam_unix({svc}:session): session opened for user ");
    let closed = format!("pam_unix({svc}:session): session closed for user ");
    let failure = format!("pam_unix({svc}:auth): authentication failure;");
    let strip_uid = |u: &str| u.split('(').next().unwrap_or(u).to_string();
    if let Some(rest) = msg.strip_prefix(opened.as_str()) {
        let mut it = rest.split_whitespace();
        let user = strip_uid(it.next()?);
        let by = match (it.next(), it.next()) {
            (Some("by"), Some(b)) => Some(strip_uid(b)).filter(|b| !b.is_empty()),
            _ => None,
        };
        let mut i = info(user, AuthMethod::Password, service, pid);
        i.from_user = by;
        return Some(Payload::Login(i));
    }
    if let Some(rest) = msg.strip_prefix(closed.as_str()) {
        let user = strip_uid(rest.split_whitespace().next()?);
        return Some(Payload::Logout(info(
            user,
            AuthMethod::Password,
            service,
            pid,
        )));
    }
    if msg.starts_with(failure.as_str()) {
        let from = pam_field(msg, "ruser").or_else(|| pam_field(msg, "logname"));
        let user = pam_field(msg, "user").or(from)?.to_string();
        let mut i = info(user, AuthMethod::Password, service, pid);
        i.from_user = from.map(str::to_string);
        i.src_addr = pam_field(msg, "rhost").and_then(|h| h.parse().ok());
        return Some(Payload::AuthFailure(i));
    }
    None
}

/// Follows a growing log file across truncation and rotation.
pub struct Tail {
    path: PathBuf,
    file: Option<BufReader<File>>,
    inode: u64,
    pos: u64,
    partial: String,
}

impl Tail {
    /// Start at the current end of `path` (or at the start of a file that
    /// appears later).
    pub fn new(path: &Path) -> Tail {
        let mut t = Tail {
            path: path.to_path_buf(),
            file: None,
            inode: 0,
            pos: 0,
            partial: String::new(),
        };
        if t.reopen().is_ok() {
            t.pos = t
                .file
                .as_mut()
                .and_then(|f| f.seek(SeekFrom::End(0)).ok())
                .unwrap_or(0);
        }
        t
    }

    fn reopen(&mut self) -> io::Result<()> {
        let f = File::open(&self.path)?;
        self.inode = f.metadata()?.ino();
        self.file = Some(BufReader::new(f));
        self.pos = 0;
        self.partial.clear();
        Ok(())
    }

    /// Complete lines appended since the last call.
    pub fn read_lines(&mut self) -> io::Result<Vec<String>> {
        let meta = std::fs::metadata(&self.path);
        match (&meta, &self.file) {
            (Ok(m), Some(_)) if m.ino() != self.inode || m.len() < self.pos => self.reopen()?,
            (Ok(_), None) => self.reopen()?,
            (Err(_), _) => return Ok(Vec::new()),
            _ => {}
        }
        let f = self.file.as_mut().expect("opened");
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = f
                .by_ref()
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut buf)?;
            if n == 0 {
                break;
            }
            self.pos += n as u64;
            let s = String::from_utf8_lossy(&buf);
            if s.ends_with('\n') {
                let mut line = std::mem::take(&mut self.partial);
                line.push_str(s.trim_end_matches('\n'));
                if line.len() <= MAX_LINE {
                    out.push(line);
                }
            } else {
                self.partial.push_str(&s);
                if self.partial.len() > MAX_LINE {
                    self.partial.clear();
                }
            }
        }
        Ok(out)
    }
}

/// Run the collector until stopped. `wtmp`: also report console logins
/// from `/var/log/wtmp` (off when watching a network namespace, whose
/// "host" has no console).
pub fn run(ctx: CollectorCtx, path: PathBuf, wtmp: bool) {
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
    let mut parser = AuthParser::default();
    let mut wtmp = wtmp.then(|| super::wtmp::WtmpTail::new(Path::new(WTMP)));
    let mut wtmp_state = super::wtmp::WtmpState::default();
    while !ctx.stopping() {
        let records = wtmp.as_mut().map(|w| w.read().unwrap_or_default());
        for rec in records.unwrap_or_default() {
            if let Some(p) = wtmp_state.event(&rec) {
                if !ctx.emit(p) {
                    return;
                }
            }
        }
        match tail.read_lines() {
            Ok(lines) => {
                if tail.file.is_some() {
                    ctx.stats.set(Visibility::Working);
                }
                for line in lines {
                    if let Some(p) = parser.parse_line(&line) {
                        if !ctx.emit(p) {
                            return;
                        }
                    }
                }
            }
            Err(e) => ctx.stats.set(Visibility::Degraded(format!(
                "reading {}: {e}",
                path.display()
            ))),
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
            if let Some(p) = parser.parse_message(&prog, pid, &msg) {
                if !reader_ctx.emit(p) {
                    return;
                }
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
mod tests {
    use super::*;

    /// One line per event, so expected events are easy to write by hand.
    fn render(p: &Payload) -> String {
        let (kind, i) = match p {
            Payload::Login(i) => ("Login", i),
            Payload::Logout(i) => ("Logout", i),
            Payload::AuthFailure(i) => ("AuthFailure", i),
            other => return format!("{other:?}"),
        };
        let method = match &i.method {
            AuthMethod::Password => "password".to_string(),
            AuthMethod::PublicKey => "publickey".to_string(),
            AuthMethod::KeyboardInteractive => "keyboard-interactive".to_string(),
            AuthMethod::Other(o) => o.clone(),
            m => format!("{m:?}"),
        };
        let service = match &i.service {
            LoginService::Ssh => "ssh".to_string(),
            LoginService::Su => "su".to_string(),
            LoginService::Sudo => "sudo".to_string(),
            s => format!("{s:?}"),
        };
        let mut s = format!("{kind} user={} method={method} service={service}", i.user);
        if let Some(a) = i.src_addr {
            s += &format!(" src={a}");
        }
        if let Some(p) = i.src_port {
            s += &format!(" port={p}");
        }
        if let Some(f) = &i.from_user {
            s += &format!(" from_user={f}");
        }
        if let Some(p) = i.pid {
            s += &format!(" pid={p}");
        }
        s
    }

    #[test]
    fn auth_cases_file() {
        let text = include_str!("auth_cases.txt");
        let mut parser = AuthParser::default();
        let mut checked = 0;
        let mut line: Option<&str> = None;
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("line: ") {
                line = Some(rest);
            } else if let Some(want) = l.strip_prefix("want: ") {
                let input = line.take().expect("want: follows a line:");
                let got = parser
                    .parse_line(input)
                    .map(|p| render(&p))
                    .unwrap_or_else(|| "none".into());
                assert_eq!(got, want, "for line {input:?}");
                checked += 1;
            }
        }
        assert!(checked >= 15, "only {checked} cases");
    }

    #[test]
    fn tail_follows_appends_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        std::fs::write(&path, "old line\n").unwrap();
        let mut t = Tail::new(&path);
        assert!(t.read_lines().unwrap().is_empty(), "starts at end");
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"one\ntw").unwrap();
        assert_eq!(t.read_lines().unwrap(), vec!["one"]);
        f.write_all(b"o\n").unwrap();
        assert_eq!(t.read_lines().unwrap(), vec!["two"]);
        // Rotation: new file at the same path.
        std::fs::rename(&path, dir.path().join("auth.log.1")).unwrap();
        std::fs::write(&path, "three\n").unwrap();
        assert_eq!(t.read_lines().unwrap(), vec!["three"]);
    }
}
