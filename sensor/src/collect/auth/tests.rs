//! The login collector's line handling with an injected writer lookup:
//! forged lines become `Tamper`, genuine ones events.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use vigil_proto::Payload;

use super::{LineChecker, ProcIdentity, WriterLookup};

/// Pids and who they are, as a test says.
struct Table(HashMap<u32, ProcIdentity>);

impl WriterLookup for Table {
    fn identify(&self, pid: u32) -> Option<ProcIdentity> {
        self.0.get(&pid).cloned()
    }
}

fn checker() -> LineChecker {
    let id = |euid, exe: &str| ProcIdentity {
        euid,
        exe: exe.into(),
    };
    LineChecker::new(Box::new(Table(HashMap::from([
        (100, id(0, "/usr/sbin/sshd")),
        (200, id(65534, "/usr/bin/sleep")),
    ]))))
}

fn reason(p: &Payload) -> Option<&str> {
    match p {
        Payload::Tamper(t) => Some(t.reason.as_str()),
        _ => None,
    }
}

#[test]
fn forged_sshd_line_is_tamper_and_genuine_is_login() {
    let mut c = checker();
    let mut out = Vec::new();
    let forged =
        "Nov 23 10:00:01 h sshd[200]: Accepted password for root from 6.6.6.6 port 22 ssh2";
    c.line(forged, false, &mut out);
    let [Payload::Tamper(t)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(
        (t.source.as_str(), t.reason.as_str(), t.detail.as_str()),
        ("auth_log", "sshd_line_not_from_sshd", forged)
    );
    out.clear();
    c.line(
        "Nov 23 10:00:02 h sshd[100]: Accepted password for alice from 10.0.0.5 port 51234 ssh2",
        false,
        &mut out,
    );
    assert!(
        matches!(&out[..], [Payload::Login(l)] if l.user == "alice" && l.pid == Some(100)),
        "{out:?}"
    );
    // A forged line that names no pid.
    out.clear();
    c.line(
        "Nov 23 10:00:03 h sshd: Accepted password for root from 6.6.6.6 port 22 ssh2",
        false,
        &mut out,
    );
    assert_eq!(
        out.iter().filter_map(reason).collect::<Vec<_>>(),
        ["sshd_line_without_pid"]
    );
    // Lines that are no event are not checked at all.
    out.clear();
    c.line(
        "Nov 23 10:00:04 h sshd[200]: Connection closed by 6.6.6.6 port 4 [preauth]",
        false,
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn user_containing_from_keeps_the_real_source() {
    let mut c = checker();
    let mut out = Vec::new();
    c.line(
        "Nov 23 10:00:01 h sshd[100]: Failed password for invalid user x from 10.0.0.9 port 22 from 192.0.2.7 port 40000 ssh2",
        false,
        &mut out,
    );
    let [Payload::AuthFailure(i)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(i.user, "x from 10.0.0.9 port 22");
    assert_eq!(i.src_addr, Some("192.0.2.7".parse().unwrap()));
    assert_eq!(i.src_port, Some(40000));
}

#[test]
fn bare_lines_count_only_from_a_root_only_file() {
    let mut c = checker();
    let mut out = Vec::new();
    let line = "Accepted publickey for erin from 127.0.0.1 port 43210 ssh2: ED25519 SHA256:q";
    c.line(line, true, &mut out);
    assert!(
        matches!(&out[..], [Payload::Login(l)] if l.user == "erin"),
        "{out:?}"
    );
    out.clear();
    c.line(line, false, &mut out);
    assert_eq!(
        out.iter().filter_map(reason).collect::<Vec<_>>(),
        ["sshd_line_without_pid"]
    );
}

#[test]
fn unknown_pid_waits_then_is_refused() {
    let mut c = checker();
    let mut out = Vec::new();
    c.line(
        "Nov 23 10:00:01 h sshd[999]: Accepted password for bob from 10.0.0.5 port 1 ssh2",
        false,
        &mut out,
    );
    assert!(out.is_empty(), "waits: {out:?}");
    c.retry(Instant::now(), &mut out);
    assert!(out.is_empty(), "still waiting: {out:?}");
    c.retry(Instant::now() + Duration::from_secs(3), &mut out);
    assert_eq!(
        out.iter().filter_map(reason).collect::<Vec<_>>(),
        ["sshd_line_pid_unknown"]
    );
    c.retry(Instant::now() + Duration::from_secs(6), &mut out);
    assert_eq!(out.len(), 1, "decided once");
}
