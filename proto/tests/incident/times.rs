//! Containment, "done by" and the daily trend, as tables.

use super::cases::{from_outside, view};
use super::*;
use vigil_proto::command::RefusalReason;

/// Containment and "done by": (commands, now) → contained time and who
/// did the isolation steps. The incident reaches jump-02 and db-03.
#[test]
fn containment_table() {
    let hosts = fleet();
    let case = from_outside();
    let v = view(&case, &hosts);
    let failed = ExecutedCommand {
        state: CommandState::Failed,
        ..done(9, B, 400, isolate(None))
    };
    let refused = ExecutedCommand {
        state: CommandState::Refused(RefusalReason::Expired),
        ..done(10, C, 400, isolate(None))
    };
    // (name, commands, now, contained at, isolate:B done by, isolate:C done by)
    type Row = (
        &'static str,
        Vec<ExecutedCommand>,
        u64,
        Option<u64>,
        Option<u64>,
        Option<u64>,
    );
    let table: Vec<Row> = vec![
        ("nothing", vec![], 1000, None, None, None),
        (
            "one of two",
            vec![done(1, B, 300, isolate(None))],
            1000,
            None,
            Some(1),
            None,
        ),
        (
            "both",
            vec![
                done(1, B, 300, isolate(None)),
                done(2, C, 350, isolate(None)),
            ],
            1000,
            Some(350),
            Some(1),
            Some(2),
        ),
        (
            "released then isolated again",
            vec![
                done(1, B, 300, isolate(None)),
                done(2, C, 350, isolate(None)),
                done(3, C, 360, CommandAction::Release),
                done(4, C, 500, isolate(None)),
                done(5, C, 510, isolate(None)),
            ],
            1000,
            Some(500),
            Some(1),
            Some(4),
        ),
        (
            "expired",
            vec![
                done(1, B, 300, isolate(Some(600))),
                done(2, C, 350, isolate(None)),
            ],
            1000,
            None,
            None,
            Some(2),
        ),
        (
            "not yet expired",
            vec![
                done(1, B, 300, isolate(Some(600))),
                done(2, C, 350, isolate(None)),
            ],
            599,
            Some(350),
            Some(1),
            Some(2),
        ),
        (
            "a later isolation outlives an earlier expiry",
            vec![
                done(1, B, 300, isolate(Some(400))),
                done(2, B, 390, isolate(Some(2000))),
                done(3, C, 350, isolate(None)),
            ],
            1000,
            Some(350),
            Some(1),
            Some(3),
        ),
        (
            "failed, refused and future commands do not count",
            vec![
                failed.clone(),
                refused.clone(),
                done(4, B, 2000, isolate(None)),
            ],
            1000,
            None,
            None,
            None,
        ),
    ];
    for (name, cmds, now_s, contained, by_b, by_c) in table {
        let now = T0 + now_s * S;
        let t = IncidentTimes::derive(&v, &cmds, Some(T0 + 900 * S), now).unwrap();
        assert_eq!(t.contained_ns, contained.map(|s| T0 + s * S), "{name}");
        assert_eq!(
            t.mttr_contain_ns(),
            contained.map(|s| (s - 150) * S),
            "{name}"
        );
        assert_eq!(t.mttr_close_ns(), Some(750 * S), "{name}");
        let mut steps = remediation(&v);
        mark_done(&mut steps, &cmds, now);
        let by = |h: &str| {
            let s = steps
                .iter()
                .find(|s| s.id == format!("isolate:{h}"))
                .unwrap();
            s.done.as_ref().map(|d| {
                assert_eq!(d.operator, format!("op{}", d.command_id), "{name}");
                d.command_id
            })
        };
        assert_eq!(by("0000000000000002"), by_b, "{name}: jump-02");
        assert_eq!(by("0000000000000003"), by_c, "{name}: db-03");
    }
}

#[test]
fn other_steps_marked_done_by_matching_commands() {
    let hosts = fleet();
    let case = from_outside();
    let mut steps = remediation(&view(&case, &hosts));
    let cmds = vec![
        done(1, C, 300, CommandAction::BlockPeer { addr: ATTACKER }),
        // Another host, another address: no match.
        done(2, A, 300, CommandAction::BlockPeer { addr: ATTACKER }),
        done(3, B, 301, CommandAction::BlockPeer { addr: addr(A) }),
        done(
            4,
            C,
            310,
            CommandAction::KillProcess {
                pid: 900,
                start_time_ticks: 12,
            },
        ),
        done(
            5,
            C,
            320,
            CommandAction::CollectFile {
                path: "/home/svc/.ssh/authorized_keys".into(),
                max_bytes: 1,
            },
        ),
        done(
            6,
            C,
            330,
            CommandAction::RemoveAuthorizedKey {
                user: "svc".into(),
                line_sha256: [1; 32],
            },
        ),
        done(7, C, 305, CommandAction::BlockPeer { addr: ATTACKER }),
    ];
    mark_done(&mut steps, &cmds, T0 + 1000 * S);
    let done_by: Vec<(String, Option<u64>)> = steps
        .iter()
        .map(|s| (s.id.clone(), s.done.as_ref().map(|d| d.command_id)))
        .collect();
    let want = |p: &str| done_by.iter().find(|(id, _)| id.starts_with(p)).unwrap().1;
    assert_eq!(
        want("block:0000000000000003"),
        Some(1),
        "the earliest of two"
    );
    assert_eq!(want("block:0000000000000002"), None);
    assert_eq!(want("kill:"), Some(4));
    assert_eq!(want("collect:"), Some(5));
    assert_eq!(want("remove-key:"), Some(6));
    assert_eq!(
        want("reset-credentials:svc"),
        None,
        "advice is never done by a command"
    );
}

/// Days of incidents → median and p90 (nearest rank) per day.
#[test]
fn daily_trend_table() {
    let day = |d: u64, mttd_s: u64, contain_s: Option<u64>, close_s: Option<u64>| {
        let alert = T0 + d * DAY_NS;
        IncidentTimes {
            first_malicious_ns: alert - mttd_s * S,
            first_alert_ns: alert,
            contained_ns: contain_s.map(|s| alert + s * S),
            closed_ns: close_s.map(|s| alert + s * S),
        }
    };
    let times = vec![
        day(2, 5, None, None),
        day(0, 40, Some(100), None),
        day(0, 10, Some(300), Some(1000)),
        day(0, 30, None, None),
        day(0, 20, Some(200), None),
    ];
    let trend = daily_trend(&times);
    let stats = |c: u32, m: u64, p: u64| {
        Some(DurationStats {
            count: c,
            median_ns: m * S,
            p90_ns: p * S,
        })
    };
    let first_day = T0 / DAY_NS * DAY_NS;
    assert_eq!(
        trend,
        vec![
            TrendBucket {
                day_start_ns: first_day,
                incidents: 4,
                mttd: stats(4, 20, 40),
                contain: stats(3, 200, 300),
                close: stats(1, 1000, 1000),
            },
            TrendBucket {
                day_start_ns: first_day + 2 * DAY_NS,
                incidents: 1,
                mttd: stats(1, 5, 5),
                contain: None,
                close: None,
            },
        ]
    );
    assert!(daily_trend(&[]).is_empty());
    assert_eq!(
        DurationStats::of((1..=10).collect()).map(|s| (s.median_ns, s.p90_ns)),
        Some((5, 9))
    );
}
