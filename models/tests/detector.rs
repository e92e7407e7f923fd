//! Behaviour of the streaming detector: learning → active, snapshots,
//! suppressions with preview, verdicts, memory per host, and robustness.

use proptest::prelude::*;
use std::net::{IpAddr, SocketAddr};
use vigil_models::{
    AlertKind, Detector, DetectorConfig, HostPhase, Suppression, SuppressionScope, Verdict,
};
use vigil_proto::{
    AuthMethod, Event, EventHeader, HostId, LoginInfo, LoginService, NetFlow, Payload,
    ProcessStart, Transport,
};

const S: u64 = 1_000_000_000;
const DAY: u64 = 86_400 * S;

fn ip(i: u64) -> IpAddr {
    format!("10.0.0.{i}").parse().unwrap()
}

fn login(host: u64, seq: u64, ts: u64, user: &str, src: u64) -> Event {
    Event {
        header: EventHeader {
            host: HostId(host),
            seq,
            ts_ns: ts,
        },
        payload: Payload::Login(LoginInfo {
            user: user.into(),
            method: AuthMethod::Kerberos,
            service: LoginService::Smb,
            src_addr: Some(ip(src)),
            src_port: None,
            src_host: None,
            from_user: None,
            pid: None,
        }),
    }
}

fn fleet(cfg: DetectorConfig) -> Detector {
    let mut d = Detector::new(cfg);
    for h in 1..=6 {
        d.register_host(HostId(h), &format!("host-{h}"), &[ip(h)]);
    }
    d
}

/// Two weeks of routine: hosts 1-4 log on to server 5 every working hour.
fn routine(d: &mut Detector, days: u64) -> u64 {
    let mut seq = 0;
    for day in 0..days {
        for hour in 8..18 {
            for src in 1..=4 {
                seq += 1;
                let ts = day * DAY + hour * 3600 * S + src * 60 * S;
                d.observe(&login(5, seq, ts, &format!("user{src}"), src));
                d.tick(ts);
            }
        }
    }
    seq
}

#[test]
fn learning_hosts_do_not_alert_then_train_makes_them_active() {
    let mut d = fleet(DetectorConfig {
        learning_period_ns: 7 * DAY,
        ..Default::default()
    });
    let a = d.observe(&login(5, 1, S, "mallory", 6));
    assert!(a.is_empty(), "learning host must not alert");
    assert_eq!(d.phase(HostId(5)), Some(HostPhase::Learning));
    let seq = routine(&mut d, 8);
    assert_eq!(
        d.phase(HostId(5)),
        Some(HostPhase::Active),
        "tick trains once learned"
    );
    let st = d
        .model_status()
        .into_iter()
        .find(|s| s.host == HostId(5))
        .unwrap();
    assert!(st.version.as_deref().unwrap().starts_with('v'));
    assert_eq!(st.sha256.as_ref().unwrap().len(), 64);
    assert!(st.model_bytes > 0 && st.model_bytes < 64 * 1024);
    // a never-seen source and user on the server alerts, explained
    let alerts = d.observe(&login(5, seq + 1, 8 * DAY + 12 * 3600 * S, "mallory", 6));
    let hop = alerts
        .iter()
        .find(|a| a.kind == AlertKind::Hop)
        .expect("hop alert");
    assert_eq!(hop.path, vec![HostId(6), HostId(5)]);
    assert!(hop
        .deviations
        .iter()
        .any(|d| d.feature == "rare_user_on_host"));
    assert_eq!(hop.evidence, vec![(HostId(5), seq + 1)]);
    // routine stays quiet
    let quiet = d.observe(&login(5, seq + 2, 8 * DAY + 12 * 3600 * S + S, "user1", 1));
    assert!(quiet.is_empty(), "{quiet:?}");
}

#[test]
fn retrain_bumps_version_and_changes_hash() {
    let mut d = fleet(DetectorConfig {
        learning_period_ns: DAY,
        ..Default::default()
    });
    routine(&mut d, 3);
    d.train(3 * DAY);
    let v1 = d.host_model(HostId(5)).unwrap().clone();
    routine(&mut d, 1);
    d.train(4 * DAY);
    let v2 = d.host_model(HostId(5)).unwrap();
    assert_eq!(v2.version, v1.version + 1);
    assert_ne!(v2.sha256, v1.sha256);
    assert_eq!(v2.trained_to_ns, 4 * DAY);
}

#[test]
fn snapshot_restores_identical_behaviour() {
    let mut d = fleet(DetectorConfig {
        learning_period_ns: DAY,
        ..Default::default()
    });
    let seq = routine(&mut d, 3);
    let bytes = d.snapshot().unwrap();
    let mut r = Detector::restore(&bytes).unwrap();
    let ev = login(5, seq + 1, 3 * DAY + 10 * 3600 * S, "mallory", 6);
    let a = d.observe_scored(&ev);
    let b = r.observe_scored(&ev);
    assert_eq!(a.score, b.score);
    assert_eq!(a.alerts, b.alerts);
    assert!(!a.alerts.is_empty());
    assert!(Detector::restore(&bytes[..bytes.len() / 2]).is_err());
}

#[test]
fn suppression_preview_counts_then_hides() {
    let mut d = fleet(DetectorConfig {
        learning_period_ns: 0,
        ..Default::default()
    });
    d.train(0);
    let mut n = 0;
    for (i, (src, dst)) in [(1u64, 5u64), (2, 6), (3, 4)].iter().enumerate() {
        n += d
            .observe(&login(
                *dst,
                i as u64 + 1,
                (i as u64 + 1) * 7200 * S,
                "svc_scan",
                *src,
            ))
            .len();
    }
    assert!(n >= 3, "each new pair alerts at cold start: {n}");
    let by_user = SuppressionScope {
        user: Some("SVC_SCAN".into()),
        ..Default::default()
    };
    let by_peer = SuppressionScope {
        peer: Some(HostId(2)),
        ..Default::default()
    };
    let past = d.preview_suppression(&by_user);
    assert_eq!(past, n);
    assert_eq!(d.preview_suppression(&by_peer), 1);
    assert!(Suppression::new(SuppressionScope::default(), "x", "analyst", 0).is_err());
    let id = d
        .add_suppression(Suppression::new(by_user, "authorised scanner", "analyst", 0).unwrap())
        .unwrap();
    let hidden = d.observe(&login(1, 10, 10 * 7200 * S, "svc_scan", 4));
    assert!(hidden.is_empty());
    assert_eq!(d.suppressed_total(), 1);
    let kept = d.take_hidden();
    assert_eq!(
        kept.len(),
        1,
        "a hidden alert is handed over for storage, not lost"
    );
    assert!(d.take_hidden().is_empty());
    assert!(d.remove_suppression(id));
    let shown = d.observe(&login(2, 11, 20 * 7200 * S, "svc_scan", 6));
    assert!(!shown.is_empty());
}

/// An analyst's suppression hides alerts everywhere, and the hops behind
/// them stop spending the alert budget: the host's next hop threshold is
/// calibrated as if they had not alerted.
#[test]
fn suppressed_hops_do_not_spend_the_alert_budget() {
    let run = |suppress: bool| {
        let mut d = fleet(DetectorConfig {
            learning_period_ns: 0,
            ..Default::default()
        });
        d.train(0);
        if suppress {
            let scope = SuppressionScope {
                user: Some("svc_scan".into()),
                ..Default::default()
            };
            d.add_suppression(Suppression::new(scope, "authorised scanner", "analyst", 0).unwrap())
                .unwrap();
        }
        let mut seq = routine(&mut d, 14);
        let mut alerts = 0;
        for i in 0..10u64 {
            seq += 1;
            let ev = login(5, seq, 14 * DAY + i * 3600 * S, "svc_scan", 100 + i);
            alerts += d.observe(&ev).len();
        }
        d.train(15 * DAY);
        let thr = d
            .model_status()
            .into_iter()
            .find(|m| m.host == HostId(5))
            .and_then(|m| m.hop_threshold)
            .expect("host 5 trained");
        (thr, alerts)
    };
    let (with, hidden) = run(true);
    let (without, shown) = run(false);
    assert_eq!(hidden, 0, "the suppression hides the scanner's alerts");
    assert!(shown > 0, "without it they alert");
    assert!(
        with < without,
        "suppressed hops still spend the budget: threshold {with} vs {without}"
    );
}

#[test]
fn true_positive_verdict_takes_the_edge_back_out_of_the_graph() {
    let mut d = fleet(DetectorConfig {
        learning_period_ns: 0,
        ..Default::default()
    });
    d.train(0);
    let first = d.observe_scored(&login(5, 1, 100 * S, "mallory", 6));
    let id = first.alerts[0].id;
    let again = d
        .observe_scored(&login(5, 2, 200 * S, "mallory", 6))
        .score
        .unwrap();
    assert!(again < 2.0, "learned after one sighting: {again}");
    d.record_verdict(id, Verdict::TruePositive).unwrap();
    let after = d
        .observe_scored(&login(5, 3, 300 * S, "mallory", 6))
        .score
        .unwrap();
    assert!(after > 10.0, "forgotten after the verdict: {after}");
    assert!(d.record_verdict(999_999, Verdict::FalsePositive).is_err());
}

#[test]
fn host_state_stays_under_64_kib_under_heavy_novelty() {
    let mut d = fleet(DetectorConfig {
        learning_period_ns: DAY,
        ..Default::default()
    });
    for i in 0..20_000u64 {
        let seq = i + 1;
        let ts = i * 30 * S;
        let payload = if i % 2 == 0 {
            Payload::ProcessStart(ProcessStart {
                exe: Some(format!("/opt/bin/tool{i}")),
                parent_exe: Some(format!("/opt/bin/parent{}", i % 997)),
                ..Default::default()
            })
        } else {
            Payload::NetConnect(NetFlow {
                transport: Transport::Tcp,
                local: SocketAddr::new(ip(5), 40000),
                remote: SocketAddr::new(
                    format!("10.9.{}.{}", (i / 250) % 250, i % 250)
                        .parse()
                        .unwrap(),
                    445,
                ),
                pid: None,
                exe: None,
                repeat: 1,
            })
        };
        d.observe(&Event {
            header: EventHeader {
                host: HostId(5),
                seq,
                ts_ns: ts,
            },
            payload,
        });
        if i % 500 == 0 {
            d.tick(ts);
        }
    }
    let bytes = d.host_state_bytes(HostId(5));
    assert!(bytes < 64 * 1024, "host state {bytes} bytes");
}

fn arb_event() -> impl Strategy<Value = Event> {
    (
        1u64..5,
        1u64..1_000_000,
        0u8..4,
        1u64..6,
        0u16..6000,
        "[a-z]{1,4}",
    )
        .prop_map(|(host, t, kind, peer, port, name)| {
            let ts = t * S;
            let payload = match kind {
                0 => login(host, 0, ts, &name, peer).payload,
                1 => Payload::NetConnect(NetFlow {
                    transport: Transport::Tcp,
                    local: SocketAddr::new(ip(host), 5555),
                    remote: SocketAddr::new(ip(peer), port),
                    pid: None,
                    exe: None,
                    repeat: 1,
                }),
                2 => Payload::ProcessStart(ProcessStart {
                    exe: Some(format!("{name}.exe")),
                    parent_exe: Some(if port % 2 == 0 {
                        "wmiprvse.exe".into()
                    } else {
                        name.clone()
                    }),
                    ..Default::default()
                }),
                _ => Payload::AuthFailure(LoginInfo {
                    user: name,
                    method: AuthMethod::Password,
                    service: LoginService::Ssh,
                    src_addr: None,
                    src_port: None,
                    src_host: Some(format!("host-{peer}")),
                    from_user: None,
                    pid: None,
                }),
            };
            Event {
                header: EventHeader {
                    host: HostId(host),
                    seq: t,
                    ts_ns: ts,
                },
                payload,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_event_stream_is_handled_and_alerts_convert(mut events in proptest::collection::vec(arb_event(), 1..80)) {
        events.sort_by_key(|e| e.header.ts_ns);
        let mut d = fleet(DetectorConfig { learning_period_ns: 0, ..Default::default() });
        d.train(0);
        for e in &events {
            for a in d.observe(e) {
                let r = a.to_record();
                prop_assert_eq!(r.path, a.path.clone());
                prop_assert!(a.score.is_finite());
                prop_assert!(!a.evidence.is_empty());
            }
        }
        let snap = d.snapshot().unwrap();
        let mut r = Detector::restore(&snap).unwrap();
        prop_assert_eq!(r.model_status(), d.model_status());
        prop_assert_eq!(r.graph_edges(), d.graph_edges());
        let probe = login(2, 9999, 2_000_000 * S, "probe", 3);
        let (a, b) = (d.observe_scored(&probe), r.observe_scored(&probe));
        prop_assert_eq!(a.score, b.score);
        prop_assert_eq!(a.alerts, b.alerts);
    }
}
