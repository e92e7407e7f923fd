//! The table of incidents and what each must give.

use super::*;

type Reached = (
    HostId,
    HostId,
    u64,
    Option<&'static str>,
    &'static [&'static str],
);

/// One incident and what it must give.
pub(crate) struct Case {
    name: &'static str,
    alerts: Vec<AlertRecord>,
    events: Vec<Event>,
    known_accounts: Option<Vec<(HostId, String)>>,
    expect: Expect,
}

struct Expect {
    origin: HostId,
    first_host: HostId,
    account: Option<&'static str>,
    entry: Option<EventRef>,
    entry_s: u64,
    origin_addr: Option<IpAddr>,
    reached: Vec<Reached>,
    techniques: &'static [&'static str],
    /// Step ids in checklist order; `+` marks a step with a proposed command.
    steps: &'static [&'static str],
    /// Seconds after T0 of the first malicious event.
    first_malicious_s: u64,
    summary_has: &'static [&'static str],
}

/// Two hops from outside: an attacker logs on to jump-02 by password, then
/// moves to db-03 with svc's key, runs an implant and plants a key.
pub(crate) fn from_outside() -> Case {
    let events = vec![
        ev(B, 10, 100, login("admin", AuthMethod::Password, ATTACKER)),
        ev(B, 11, 200, connect(C)),
        ev(C, 20, 210, login("svc", AuthMethod::PublicKey, addr(B))),
        ev(C, 21, 220, exec(900, &["/tmp/implant", "-d"], "svc", 220)),
        ev(C, 22, 230, keys_written("svc")),
        // Not in any alert's evidence, on a reached host after it was
        // reached: it counts for accounts and keys, not for processes.
        ev(C, 23, 240, exec(901, &["/usr/bin/sleep", "9"], "svc", 240)),
    ];
    let alerts = vec![
        with_evidence(alert(1, 150, &[X, B], &["admin"], &["T1078"]), &[(B, 10)]),
        with_evidence(
            alert(2, 260, &[B, C], &["svc"], &["T1021.004", "T1098.004"]),
            &[(B, 11), (C, 20), (C, 21), (C, 22)],
        ),
        with_evidence(
            alert(
                INC,
                270,
                &[X, B, C],
                &["admin", "svc"],
                &["T1021.004", "T1078", "T1098.004"],
            ),
            &[(B, 10), (B, 11), (C, 20), (C, 21), (C, 22)],
        ),
    ];
    let b = "0000000000000002";
    let c = "0000000000000003";
    Case {
        name: "from outside",
        alerts,
        events,
        known_accounts: None,
        expect: Expect {
            origin: X,
            first_host: B,
            account: Some("admin"),
            entry: Some(r(B, 10)),
            entry_s: 100,
            origin_addr: Some(ATTACKER),
            reached: vec![
                (B, X, 100, Some("admin"), &["T1078"]),
                (C, B, 200, Some("svc"), &["T1021.004", "T1098.004"]),
            ],
            techniques: &["T1078", "T1021.004", "T1098.004"],
            steps: leak(&[
                format!("+isolate:{c}"),
                format!("+isolate:{b}"),
                format!("+block:{b}:203.0.113.9"),
                format!("+block:{c}:203.0.113.9"),
                format!("+kill:{c}:900:{}", T0 + 220 * S),
                format!("+collect:{c}:/home/svc/.ssh/authorized_keys"),
                format!("remove-key:{c}:svc"),
                "reset-credentials:admin".to_string(),
                "reset-credentials:svc".to_string(),
            ]),
            first_malicious_s: 100,
            summary_has: &[
                "came from 203.0.113.9, outside the fleet, and entered jump-02 at 2024-05-01 10:03:43 UTC as admin (event 0000000000000002:10)",
                "It then reached db-03 (2024-05-01 10:05:23 UTC, as svc, from jump-02, T1021.004+T1098.004)",
                "Techniques, in order of first use: T1078, T1021.004, T1098.004.",
            ],
        },
    }
}

/// A chain inside the fleet by key: the process on jump-02 exited, an
/// account is created on db-03, the same key opens both hosts.
fn inside_fleet() -> Case {
    let events = vec![
        ev(A, 5, 50, connect(B)),
        ev(B, 30, 60, login("deploy", AuthMethod::PublicKey, addr(A))),
        ev(B, 31, 70, exec(77, &["/bin/bash", "-i"], "deploy", 70)),
        ev(B, 32, 80, connect(C)),
        ev(B, 33, 90, exit(77)),
        ev(C, 40, 95, login("deploy", AuthMethod::PublicKey, addr(B))),
        ev(
            C,
            41,
            120,
            exec(
                88,
                &["/usr/sbin/useradd", "-m", "-s", "/bin/bash", "backup2"],
                "root",
                120,
            ),
        ),
        // Before db-03 was reached: not the attacker's.
        ev(
            C,
            39,
            10,
            exec(66, &["/usr/sbin/useradd", "olduser"], "root", 10),
        ),
    ];
    let alerts = vec![
        with_evidence(
            alert(7, 100, &[A, B], &["deploy"], &["T1021.004"]),
            &[(A, 5), (B, 30), (B, 31)],
        ),
        with_evidence(
            alert(8, 130, &[B, C], &["deploy"], &["T1021.004"]),
            &[(B, 32), (C, 40)],
        ),
    ];
    let (a, b, c) = ("0000000000000001", "0000000000000002", "0000000000000003");
    Case {
        name: "inside the fleet",
        alerts,
        events,
        known_accounts: None,
        expect: Expect {
            origin: A,
            first_host: A,
            account: Some("deploy"),
            entry: Some(r(A, 5)),
            entry_s: 50,
            origin_addr: Some(addr(A)),
            reached: vec![
                (B, A, 50, Some("deploy"), &["T1021.004"]),
                (C, B, 80, Some("deploy"), &["T1021.004"]),
            ],
            techniques: &["T1021.004"],
            steps: leak(&[
                format!("+isolate:{c}"),
                format!("+isolate:{b}"),
                format!("+isolate:{a}"),
                format!("+disable:{c}:backup2"),
                format!("remove-key:{b}:deploy"),
                format!("remove-key:{c}:deploy"),
                "reset-credentials:deploy".to_string(),
            ]),
            first_malicious_s: 50,
            summary_has: &[
                "The incident starts on web-01 at 2024-05-01 10:02:53 UTC as deploy (event 0000000000000001:5).",
                "It then reached jump-02 (2024-05-01 10:02:53 UTC, as deploy, from web-01, T1021.004), then db-03",
            ],
        },
    }
}

/// One hop; the caller knows the accounts, so an unknown one is disabled;
/// a failed logon from outside is blocked.
fn unknown_account() -> Case {
    let events = vec![
        ev(
            B,
            1,
            10,
            Payload::AuthFailure(match login("root", AuthMethod::Password, ATTACKER) {
                Payload::Login(l) => l,
                _ => unreachable!(),
            }),
        ),
        ev(A, 2, 20, connect(B)),
        ev(B, 3, 30, login("mallory", AuthMethod::Password, addr(A))),
        ev(B, 4, 40, login("alice", AuthMethod::Password, addr(A))),
    ];
    let alerts = vec![with_evidence(
        alert(INC, 60, &[A, B], &["mallory"], &["T1078"]),
        &[(B, 1), (A, 2), (B, 3)],
    )];
    let (a, b) = ("0000000000000001", "0000000000000002");
    Case {
        name: "unknown account",
        alerts,
        events,
        known_accounts: Some(vec![(B, "alice".into()), (A, "mallory".into())]),
        expect: Expect {
            origin: A,
            first_host: A,
            account: Some("mallory"),
            entry: Some(r(A, 2)),
            entry_s: 20,
            origin_addr: Some(addr(A)),
            reached: vec![(B, A, 20, Some("mallory"), &["T1078"])],
            techniques: &["T1078"],
            steps: leak(&[
                format!("+isolate:{b}"),
                format!("+isolate:{a}"),
                format!("+block:{a}:203.0.113.9"),
                format!("+block:{b}:203.0.113.9"),
                format!("+disable:{b}:mallory"),
                "reset-credentials:mallory".to_string(),
            ]),
            first_malicious_s: 10,
            summary_has: &["It then reached jump-02 (2024-05-01 10:02:23 UTC, as mallory, from web-01, T1078)."],
        },
    }
}

fn leak(v: &[String]) -> &'static [&'static str] {
    let v: Vec<&'static str> = v
        .iter()
        .map(|s| &*Box::leak(s.clone().into_boxed_str()))
        .collect();
    Box::leak(v.into_boxed_slice())
}

pub(crate) fn view<'a>(c: &'a Case, hosts: &'a [HostSummary]) -> IncidentView<'a> {
    IncidentView {
        incident_id: INC,
        alerts: &c.alerts,
        events: &c.events,
        hosts,
        known_accounts: c.known_accounts.as_deref(),
    }
}

#[test]
fn cases() {
    let hosts = fleet();
    for case in [from_outside(), inside_fleet(), unknown_account()] {
        let v = view(&case, &hosts);
        let e = &case.expect;
        let rc = root_cause(&v).expect(case.name);
        assert_eq!(rc.incident_id, INC, "{}", case.name);
        assert_eq!(rc.origin, e.origin, "{}: origin", case.name);
        assert_eq!(
            rc.origin_in_fleet,
            !e.origin.is_unmanaged(),
            "{}",
            case.name
        );
        assert_eq!(rc.first_host, e.first_host, "{}: first host", case.name);
        assert_eq!(
            rc.first_account.as_deref(),
            e.account,
            "{}: account",
            case.name
        );
        assert_eq!(rc.entry_event, e.entry, "{}: entry event", case.name);
        assert_eq!(rc.entry_ns, T0 + e.entry_s * S, "{}: entry time", case.name);
        assert_eq!(rc.origin_addr, e.origin_addr, "{}: origin addr", case.name);
        let reached: Vec<_> = rc
            .reached
            .iter()
            .map(|h| {
                let techs: Vec<&str> = h.techniques.iter().map(String::as_str).collect();
                (h.host, h.from, h.first_ns, h.user.as_deref(), techs)
            })
            .collect();
        let want: Vec<_> = e
            .reached
            .iter()
            .map(|(h, f, s, u, t)| (*h, Some(*f), T0 + s * S, *u, t.to_vec()))
            .collect();
        assert_eq!(reached, want, "{}: reached", case.name);
        assert_eq!(rc.techniques, e.techniques, "{}: techniques", case.name);
        for s in e.summary_has {
            assert!(
                rc.summary.contains(s),
                "{}: summary {:?} lacks {s:?}",
                case.name,
                rc.summary
            );
        }
        let steps = remediation(&v);
        let got: Vec<String> = steps
            .iter()
            .map(|s| format!("{}{}", if s.proposed.is_some() { "+" } else { "" }, s.id))
            .collect();
        assert_eq!(got, e.steps, "{}: steps", case.name);
        for s in &steps {
            assert_eq!(s.id, s.target.id(), "{}", case.name);
            assert!(!s.why.is_empty() && !s.title.is_empty(), "{}", case.name);
            if let Some((h, _)) = &s.proposed {
                assert!(
                    !h.is_unmanaged(),
                    "{}: {} targets an unmanaged host",
                    case.name,
                    s.id
                );
            }
        }
        let t = IncidentTimes::derive(&v, &[], None, T0 + 10_000 * S).expect(case.name);
        let first_alert = case.alerts.iter().map(|a| a.created_ns).min().unwrap();
        assert_eq!(
            t.first_malicious_ns,
            T0 + e.first_malicious_s * S,
            "{}",
            case.name
        );
        assert_eq!(t.first_alert_ns, first_alert, "{}", case.name);
        assert_eq!(
            t.mttd_ns(),
            first_alert - t.first_malicious_ns,
            "{}",
            case.name
        );
        assert_eq!(t.contained_ns, None, "{}: nothing isolated yet", case.name);
    }
}

/// The details of the commands the checklist proposes, and the advice that
/// stands in for the commands the events cannot complete.
#[test]
fn proposed_commands_and_advice() {
    let hosts = fleet();
    let case = from_outside();
    let steps = remediation(&view(&case, &hosts));
    let by_id = |p: &str| steps.iter().find(|s| s.id.starts_with(p)).unwrap();
    let iso = by_id("isolate:0000000000000003");
    assert_eq!(
        iso.proposed,
        Some((
            C,
            CommandAction::IsolateHost {
                allow: vec![],
                expires_ns: None,
                allow_dhcp_nd: true
            }
        ))
    );
    assert_eq!(iso.evidence, vec![r(B, 11)]);
    let block = by_id("block:0000000000000003");
    assert_eq!(
        block.proposed,
        Some((C, CommandAction::BlockPeer { addr: ATTACKER }))
    );
    assert!(block.why.contains("logged on to jump-02"), "{}", block.why);
    let kill = by_id("kill:");
    assert!(
        kill.why.contains("reused pid is refused") && kill.why.contains("/tmp/implant"),
        "{}",
        kill.why
    );
    // One click: the event's start time names the process, not the pid alone.
    assert_eq!(
        kill.proposed,
        Some((
            C,
            CommandAction::KillProcessStartedAt {
                pid: 900,
                start_time_ns: T0 + 220 * S
            }
        ))
    );
    assert_eq!(kill.evidence, vec![r(C, 21)]);
    let collect = by_id("collect:");
    assert_eq!(
        collect.proposed,
        Some((
            C,
            CommandAction::CollectFile {
                path: "/home/svc/.ssh/authorized_keys".into(),
                max_bytes: 1024 * 1024
            }
        ))
    );
    let key = by_id("remove-key:");
    assert!(
        key.why.contains("not the added line") && key.why.contains(&"ab".repeat(32)),
        "{}",
        key.why
    );
    assert!(steps.iter().all(|s| s.done.is_none()));
    // Everything is derived from the input: another attacker address
    // gives other block steps.
    let mut moved = from_outside();
    let other: IpAddr = "198.51.100.7".parse().unwrap();
    if let Payload::Login(l) = &mut moved.events[0].payload {
        l.src_addr = Some(other);
    }
    let steps = remediation(&view(&moved, &hosts));
    assert!(steps
        .iter()
        .any(|s| s.id == "block:0000000000000002:198.51.100.7"));
    assert!(!steps.iter().any(|s| s.id.contains("203.0.113.9")));
}

#[test]
fn empty_incident_gives_nothing() {
    let v = IncidentView {
        incident_id: 1,
        alerts: &[],
        events: &[],
        hosts: &[],
        known_accounts: None,
    };
    assert_eq!(root_cause(&v), None);
    assert!(remediation(&v).is_empty());
    assert_eq!(IncidentTimes::derive(&v, &[], None, 0), None);
}

/// An alert whose evidence events the caller does not have: times and the
/// entry fall back to the alert's own time.
#[test]
fn without_events_the_alert_times_stand_in() {
    let alerts = vec![alert(INC, 500, &[A, B], &["u"], &["T1021.004"])];
    let v = IncidentView {
        incident_id: INC,
        alerts: &alerts,
        events: &[],
        hosts: &[],
        known_accounts: None,
    };
    let rc = root_cause(&v).unwrap();
    assert_eq!((rc.entry_ns, rc.entry_event), (T0 + 500 * S, None));
    assert_eq!(rc.reached[0].first_ns, T0 + 500 * S);
    assert!(
        rc.summary.contains("0000000000000001"),
        "ids stand in for names: {}",
        rc.summary
    );
    let t = IncidentTimes::derive(&v, &[], None, T0).unwrap();
    assert_eq!(t.mttd_ns(), 0);
}

#[test]
fn utc_formatting() {
    for (ns, want) in [
        (0, "1970-01-01 00:00:00 UTC"),
        (T0, "2024-05-01 10:02:03 UTC"),
        (951_782_400 * S, "2000-02-29 00:00:00 UTC"),
        (u64::MAX, "2554-07-21 23:34:33 UTC"),
    ] {
        assert_eq!(fmt_utc(ns), want);
    }
}
