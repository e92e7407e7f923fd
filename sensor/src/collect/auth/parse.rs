//! Auth log lines → `Login`, `Logout`, `AuthFailure`. Pure: who wrote a
//! line is checked elsewhere ([`super::verify`]); tested from
//! `auth_cases.txt`, sample lines and the expected events side by side.

use std::collections::HashMap;
use std::net::IpAddr;

use vigil_proto::{AuthMethod, LoginInfo, LoginService, Payload};

/// One log line split into its syslog header and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// Program named by the header (basename); `sshd` for a bare line.
    pub prog: String,
    /// Pid named by the header, if any.
    pub pid: Option<u32>,
    /// The message after the header.
    pub msg: &'a str,
    /// No syslog header at all: a program's own log file (sshd `-E`),
    /// whose lines are taken as sshd's.
    pub bare: bool,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Index of the first token after the timestamp: classic `Mon DD HH:MM:SS`
/// (the day may be padded with a space) or an RFC 3339 stamp.
fn after_timestamp(tokens: &[&str]) -> Option<usize> {
    let first = *tokens.first()?;
    if MONTHS.contains(&first) {
        let mut i = 1;
        while tokens.get(i) == Some(&"") {
            i += 1;
        }
        let day = tokens.get(i)?;
        let time = tokens.get(i + 1)?;
        let ok = !day.is_empty()
            && day.len() <= 2
            && day.bytes().all(|b| b.is_ascii_digit())
            && time.len() >= 8
            && time
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b':' || b == b'.');
        return ok.then_some(i + 2);
    }
    let b = first.as_bytes();
    let rfc3339 =
        b.len() >= 19 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T';
    rfc3339.then_some(1)
}

/// `prog[pid]:` or `prog:` → (prog basename, pid).
fn program_tag(tok: &str) -> Option<(String, Option<u32>)> {
    let head = tok.strip_suffix(':')?;
    let (prog, pid) = match head.split_once('[') {
        Some((p, rest)) => (p, rest.strip_suffix(']').and_then(|x| x.parse().ok())),
        None => (head, None),
    };
    let valid = !prog.is_empty()
        && prog
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && prog.chars().any(|c| c.is_ascii_alphabetic());
    valid.then(|| (prog.rsplit('/').next().unwrap_or(prog).to_string(), pid))
}

/// Split a log line: `Mon DD HH:MM:SS host prog[pid]: msg`, the same with
/// an RFC 3339 timestamp, or a bare `msg` (sshd `-E logfile`, taken as
/// sshd's). The program tag is looked for only where the header puts it
/// (right after the timestamp and host), never inside the message, whose
/// text a remote user partly chooses (user names).
pub fn split_syslog(line: &str) -> LogLine<'_> {
    let tokens: Vec<&str> = line.splitn(10, ' ').collect();
    let header = after_timestamp(&tokens).and_then(|i| {
        // The host is optional; the tag is the next token or the one after.
        (i..=i + 1).find_map(|j| {
            let (prog, pid) = program_tag(tokens.get(j)?)?;
            let at: usize = tokens[..=j].iter().map(|t| t.len() + 1).sum();
            Some((prog, pid, at))
        })
    });
    match header {
        Some((prog, pid, at)) => LogLine {
            prog,
            pid,
            msg: line.get(at.min(line.len())..).unwrap_or("").trim_start(),
            bare: false,
        },
        None => LogLine {
            prog: "sshd".into(),
            pid: None,
            msg: line.trim(),
            bare: true,
        },
    }
}

/// Stateful parser: remembers each sshd session's method so that the
/// `Disconnected` line can carry it.
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

/// `ADDR port PORT` at the start of `tail` (whatever follows: ` ssh2`,
/// `: key info`).
fn addr_port(tail: &str) -> (Option<IpAddr>, Option<u16>) {
    let mut it = tail.split(' ');
    let addr = it.next().and_then(|a| a.parse().ok());
    let port = match (it.next(), it.next()) {
        (Some("port"), Some(p)) => p.trim_end_matches(':').parse().ok(),
        _ => None,
    };
    (addr, port)
}

/// Parse `USER from ADDR port PORT[ ssh2][: ...]` from the right: the last
/// ` from ` ends the user, so a user name that itself contains
/// ` from 10.0.0.9 port 22` stays the user and the source is the real one
/// (sshd writes the user verbatim; nothing after the port holds ` from `).
fn user_from(rest: &str) -> Option<(String, Option<IpAddr>, Option<u16>)> {
    let at = rest.rfind(" from ")?;
    let (addr, port) = addr_port(&rest[at + " from ".len()..]);
    Some((rest[..at].to_string(), addr, port))
}

/// `USER ADDR port PORT` (the `Disconnected from user` tail), from the
/// right for the same reason.
fn user_addr_port(rest: &str) -> Option<(String, Option<IpAddr>, Option<u16>)> {
    let mut it = rest.rsplitn(4, ' ');
    let (port, word, addr, user) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let port = (word == "port").then(|| port.parse().ok()).flatten();
    Some((user.to_string(), addr.parse().ok(), port))
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

fn ssh_info(
    (user, addr, port): (String, Option<IpAddr>, Option<u16>),
    method: AuthMethod,
    pid: Option<u32>,
) -> LoginInfo {
    let mut i = info(user, method, LoginService::Ssh, pid);
    i.src_addr = addr;
    i.src_port = port;
    i
}

impl AuthParser {
    /// Events for one log line (most lines give none), trusting its tag.
    pub fn parse_line(&mut self, line: &str) -> Option<Payload> {
        let l = split_syslog(line.trim_end());
        self.parse_message(&l.prog, l.pid, l.msg)
    }

    /// Events for one already-split message (journald gives fields),
    /// trusting its tag.
    pub fn parse_message(&mut self, prog: &str, pid: Option<u32>, msg: &str) -> Option<Payload> {
        let p = self.peek(prog, pid, msg)?;
        self.commit(&p);
        Some(p)
    }

    /// The event a message stands for, without remembering anything: the
    /// caller first decides whether to believe it, then calls
    /// [`AuthParser::commit`].
    pub fn peek(&self, prog: &str, pid: Option<u32>, msg: &str) -> Option<Payload> {
        match prog {
            "sshd" | "sshd-session" => self.sshd(pid, msg),
            "su" => pam_line(msg, "su", LoginService::Su, pid),
            "sudo" => pam_line(msg, "sudo", LoginService::Sudo, pid),
            _ => None,
        }
    }

    /// Remember what a believed event means for later lines (the method of
    /// an ssh session, for its `Disconnected` line).
    pub fn commit(&mut self, p: &Payload) {
        match p {
            Payload::Login(i) if i.service == LoginService::Ssh => {
                if self.sessions.len() > 10_000 {
                    self.sessions.clear();
                }
                self.sessions
                    .insert((i.src_addr, i.src_port), i.method.clone());
            }
            Payload::Logout(i) if i.service == LoginService::Ssh => {
                self.sessions.remove(&(i.src_addr, i.src_port));
            }
            _ => {}
        }
    }

    fn sshd(&self, pid: Option<u32>, msg: &str) -> Option<Payload> {
        if let Some(rest) = msg.strip_prefix("Accepted ") {
            let (m, rest) = rest.split_once(" for ")?;
            return Some(Payload::Login(ssh_info(user_from(rest)?, method(m), pid)));
        }
        if let Some(rest) = msg.strip_prefix("Failed ") {
            let (m, rest) = rest.split_once(" for ")?;
            let rest = rest.strip_prefix("invalid user ").unwrap_or(rest);
            let i = ssh_info(user_from(rest)?, method(m), pid);
            return Some(Payload::AuthFailure(i));
        }
        if let Some(rest) = msg.strip_prefix("Invalid user ") {
            let m = AuthMethod::Other("invalid_user".into());
            return Some(Payload::AuthFailure(ssh_info(user_from(rest)?, m, pid)));
        }
        // "session closed" (PAM) carries no source; this line, logged with
        // and without PAM, does.
        if let Some(rest) = msg.strip_prefix("Disconnected from user ") {
            let (user, addr, port) = user_addr_port(rest)?;
            let method = self
                .sessions
                .get(&(addr, port))
                .cloned()
                .unwrap_or(AuthMethod::Other("unknown".into()));
            return Some(Payload::Logout(ssh_info((user, addr, port), method, pid)));
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
    fn header_is_found_only_where_syslog_puts_it() {
        let l = split_syslog("Nov  3 10:00:03 web1 sshd[1250]: Accepted x");
        assert_eq!(
            (l.prog.as_str(), l.pid, l.msg, l.bare),
            ("sshd", Some(1250), "Accepted x", false)
        );
        let l = split_syslog("2026-11-23T10:06:00.123456+00:00 db2 sudo: alice : TTY=pts/0");
        assert_eq!((l.prog.as_str(), l.pid, l.bare), ("sudo", None, false));
        // A remote user name that looks like a tag, in a bare sshd -E line.
        let l =
            split_syslog("Invalid user sshd[1]: Accepted password for root from 6.6.6.6 port 22");
        assert!(l.bare, "{l:?}");
        assert_eq!(l.prog, "sshd");
        assert_eq!(l.pid, None);
    }
}
