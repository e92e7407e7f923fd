//! Properties: the derivation never panics and does not depend on the
//! order its inputs arrive in.

use super::*;
use proptest::prelude::*;

fn user() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("root".to_string()),
        Just("svc".to_string()),
        Just("admin".to_string()),
        ".{0,6}"
    ]
}

fn host_id() -> impl Strategy<Value = HostId> {
    prop_oneof![Just(A), Just(B), Just(C), Just(X), Just(HostId(4))]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        host_id().prop_map(addr),
        Just(ATTACKER),
        Just(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(o.into())),
    ]
}

fn payload() -> impl Strategy<Value = Payload> {
    let method = prop_oneof![Just(AuthMethod::Password), Just(AuthMethod::PublicKey)];
    prop_oneof![
        (user(), method, ip()).prop_map(|(u, m, a)| login(&u, m, a)),
        (user(), ip()).prop_map(|(u, a)| match login(&u, AuthMethod::Password, a) {
            Payload::Login(l) => Payload::AuthFailure(l),
            p => p,
        }),
        host_id().prop_map(connect),
        (
            0u32..4,
            user(),
            0u64..50,
            prop_oneof![
                Just(vec![
                    "/usr/sbin/useradd".to_string(),
                    "-m".into(),
                    "evil".into()
                ]),
                Just(vec![
                    "net.exe".to_string(),
                    "user".into(),
                    "evil".into(),
                    "/add".into()
                ]),
                proptest::collection::vec(".{0,8}", 0..3),
            ]
        )
            .prop_map(|(pid, u, s, argv)| Payload::ProcessStart(ProcessStart {
                pid,
                exe: argv.first().cloned(),
                argv,
                user: Some(u),
                start_time_ns: Some(T0 + s * S),
                ..ProcessStart::default()
            })),
        (0u32..4).prop_map(exit),
        user().prop_map(|u| keys_written(&u)),
        ".{0,30}".prop_map(|path| Payload::FileChange(FileChange {
            path,
            op: FileOp::Created,
            size: None,
            mode: None,
            uid: None,
            sha256: None,
            pid: None
        })),
    ]
}

/// Events with unique (host, seq), as in the store.
fn events() -> impl Strategy<Value = Vec<Event>> {
    proptest::collection::btree_map((host_id(), 0u64..30), (0u64..500, payload()), 0..25).prop_map(
        |m| {
            m.into_iter()
                .map(|((h, seq), (at, p))| ev(h, seq, at, p))
                .collect()
        },
    )
}

fn alerts() -> impl Strategy<Value = Vec<AlertRecord>> {
    let one = (
        0u64..500,
        proptest::collection::vec(host_id(), 1..4),
        proptest::collection::vec(user(), 0..2),
        proptest::collection::vec(
            prop_oneof![Just("T1078"), Just("T1021.004"), Just("T1098.004")],
            0..3,
        ),
        proptest::collection::vec((host_id(), 0u64..30), 0..8),
    );
    proptest::collection::vec(one, 0..5).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (at, path, users, techs, evidence))| {
                let users: Vec<&str> = users.iter().map(String::as_str).collect();
                with_evidence(alert(i as u64 + 1, at, &path, &users, &techs), &evidence)
            })
            .collect()
    })
}

fn commands() -> impl Strategy<Value = Vec<ExecutedCommand>> {
    let action = prop_oneof![
        proptest::option::of(0u64..800).prop_map(isolate),
        Just(CommandAction::Release),
        ip().prop_map(|addr| CommandAction::BlockPeer { addr }),
        (0u32..4).prop_map(|pid| CommandAction::KillProcess {
            pid,
            start_time_ticks: 1
        }),
        user().prop_map(|user| CommandAction::DisableAccount { user }),
    ];
    let state = prop_oneof![Just(CommandState::Done), Just(CommandState::Failed)];
    proptest::collection::vec((host_id(), 0u64..900, action, state), 0..8).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (h, at, a, st))| ExecutedCommand {
                state: st,
                ..done(i as u64, h, at, a)
            })
            .collect()
    })
}

type Derived = (
    Option<RootCause>,
    Vec<RemediationStep>,
    Option<IncidentTimes>,
);

fn derive_all(
    alerts: &[AlertRecord],
    events: &[Event],
    cmds: &[ExecutedCommand],
    known: Option<&[(HostId, String)]>,
) -> Derived {
    let hosts = fleet();
    let v = IncidentView {
        incident_id: INC,
        alerts,
        events,
        hosts: &hosts,
        known_accounts: known,
    };
    let now = T0 + 700 * S;
    let mut steps = remediation(&v);
    mark_done(&mut steps, cmds, now);
    (
        root_cause(&v),
        steps,
        IncidentTimes::derive(&v, cmds, Some(T0 + 800 * S), now),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Never panics; the same incident in any order gives the same output;
    /// the checklist is well formed.
    #[test]
    fn deterministic_in_any_order(
        (alerts, shuffled_alerts) in alerts().prop_flat_map(|a| (Just(a.clone()), Just(a).prop_shuffle())),
        (events, shuffled_events) in events().prop_flat_map(|e| (Just(e.clone()), Just(e).prop_shuffle())),
        (cmds, shuffled_cmds) in commands().prop_flat_map(|c| (Just(c.clone()), Just(c).prop_shuffle())),
        known in proptest::option::of(proptest::collection::vec((host_id(), user()), 0..4)),
    ) {
        let first = derive_all(&alerts, &events, &cmds, known.as_deref());
        let again = derive_all(&shuffled_alerts, &shuffled_events, &shuffled_cmds, known.as_deref());
        prop_assert_eq!(&first, &again);
        let (rc, steps, times) = first;
        prop_assert_eq!(rc.is_some(), !alerts.is_empty());
        prop_assert_eq!(times.is_some(), !alerts.is_empty());
        if let Some(t) = times {
            prop_assert!(t.first_malicious_ns <= t.first_alert_ns);
        }
        let mut ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        prop_assert_eq!(ids.len(), steps.len(), "step ids are unique");
        for s in &steps {
            prop_assert_eq!(&s.id, &s.target.id());
            if let Some((h, _)) = &s.proposed {
                prop_assert!(!h.is_unmanaged());
            }
        }
    }
}
