//! Sigma hits learned per host: counted while learning, lowered when
//! routine, kept when new, saved in the snapshot.

use super::super::{Detector, DetectorConfig, NS_PER_DAY, NS_PER_HOUR};
use super::ROUTINE_MIN_HITS;
use crate::alert::{Alert, AlertKind};
use crate::sigma::RuleSet;
use vigil_proto::query::Severity;
use vigil_proto::{Event, EventHeader, HostId, Payload, ProcessStart};

const WINRM_RULE: &str = "b29f3e46-818b-4eac-bc36-94bce89cd171";
/// Noon UTC on some day, so hits an hour apart stay on one day.
const T0: u64 = 19_700 * NS_PER_DAY + 12 * NS_PER_HOUR;

fn shell_under(host: u64, seq: u64, ts: u64, parent: &str) -> Event {
    Event {
        header: EventHeader {
            host: HostId(host),
            seq,
            ts_ns: ts,
        },
        payload: Payload::ProcessStart(ProcessStart {
            pid: 4242,
            ppid: 1,
            exe: Some("C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe".into()),
            argv: vec!["powershell.exe".into(), "-nop".into()],
            user: Some("admin".into()),
            parent_exe: Some(parent.into()),
            ..ProcessStart::default()
        }),
    }
}

/// The WinRM plugin host starting a shell (rule "Shell started by the
/// WinRM plugin host", level medium).
fn winrm(host: u64, seq: u64, ts: u64) -> Event {
    shell_under(host, seq, ts, "C:\\Windows\\System32\\wsmprovhost.exe")
}

/// The WMI provider host starting a shell (level high).
fn wmi(host: u64, seq: u64, ts: u64) -> Event {
    shell_under(host, seq, ts, "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe")
}

/// A detector with the shipped rules, two hosts first seen at `T0` and a
/// two-day learning period.
fn detector() -> Detector {
    let mut d = Detector::new(DetectorConfig {
        learning_period_ns: 2 * NS_PER_DAY,
        ..DetectorConfig::default()
    });
    d.set_sigma_rules(RuleSet::builtin());
    d.register_host(HostId(1), "srv-1", &[]);
    d.register_host(HostId(2), "srv-2", &[]);
    // Both hosts start learning at T0 (a process that fires no rule).
    for h in [1, 2] {
        d.observe(&shell_under(h, 0, T0, "C:\\Windows\\explorer.exe"));
    }
    d
}

fn sigma(alerts: Vec<Alert>) -> Vec<Alert> {
    alerts
        .into_iter()
        .filter(|a| a.kind == AlertKind::Sigma)
        .collect()
}

/// Host 1 is administered over WinRM every 6 hours during learning.
fn learn_routine(d: &mut Detector) -> usize {
    let mut raised = 0;
    for i in 0..8 {
        raised += sigma(d.observe(&winrm(1, i + 1, T0 + i * 6 * NS_PER_HOUR))).len();
    }
    raised
}

#[test]
fn the_learning_period_raises_nothing_and_counts_hits() {
    let mut d = detector();
    assert_eq!(learn_routine(&mut d), 0);
    assert_eq!(sigma(d.observe(&wmi(2, 1, T0 + NS_PER_HOUR))).len(), 0);
    assert_eq!(d.sigma_routine(WINRM_RULE, HostId(1)), Some((8, 3)));
    // One hit on host 2 is not routine.
    let hits = d.sigma_rules().matches(&wmi(2, 2, T0));
    assert_eq!(hits.len(), 1);
    assert_eq!(d.sigma_routine(&hits[0].rule_id, HostId(2)), None);
}

#[test]
fn a_routine_pair_is_lowered_and_explained_a_new_pair_is_not() {
    let mut d = detector();
    learn_routine(&mut d);
    let after = T0 + 3 * NS_PER_DAY;
    let routine = sigma(d.observe(&winrm(1, 20, after)));
    assert_eq!(routine.len(), 1, "still an alert: {routine:?}");
    assert_eq!(
        routine[0].severity,
        Severity::Low,
        "medium lowered one step"
    );
    assert!(
        routine[0]
            .summary
            .contains("routine on srv-1: 8 hits during learning"),
        "{}",
        routine[0].summary
    );
    assert_eq!(routine[0].deviations[0].feature, "sigma_routine");
    // The same rule on a host where it never fired keeps its level…
    let new_host = sigma(d.observe(&winrm(2, 20, after)));
    assert_eq!(new_host.len(), 1);
    assert_eq!(new_host[0].severity, Severity::Medium);
    assert!(!new_host[0].summary.contains("routine"));
    // …and so does another rule on the routine host.
    let new_rule = sigma(d.observe(&wmi(1, 21, after)));
    assert_eq!(new_rule.len(), 1);
    assert_eq!(new_rule[0].severity, Severity::High);
    assert!(!new_rule[0].summary.contains("routine"));
}

#[test]
fn hits_on_one_day_or_too_few_are_not_routine() {
    let mut d = detector();
    // Many hits, all on the first day.
    for i in 0..10 {
        d.observe(&winrm(1, i + 1, T0 + i * 60 * 1_000_000_000));
    }
    // Too few hits, on as many days (ROUTINE_MIN_DAYS is 2).
    let few = (ROUTINE_MIN_HITS - 1) as u64;
    for i in 0..few {
        d.observe(&winrm(2, i + 1, T0 + i * NS_PER_DAY));
    }
    assert_eq!(d.sigma_routine(WINRM_RULE, HostId(1)), None);
    assert_eq!(d.sigma_routine(WINRM_RULE, HostId(2)), None);
    let after = sigma(d.observe(&winrm(1, 50, T0 + 3 * NS_PER_DAY)));
    assert_eq!(after[0].severity, Severity::Medium);
}

#[test]
fn nothing_becomes_routine_after_learning() {
    let mut d = detector();
    let after = T0 + 3 * NS_PER_DAY;
    for i in 0..6 {
        let a = sigma(d.observe(&winrm(2, i + 1, after + i * 12 * NS_PER_HOUR)));
        assert!(a.iter().all(|a| a.severity == Severity::Medium), "{a:?}");
    }
    assert_eq!(d.sigma_routine(WINRM_RULE, HostId(2)), None);
}

#[test]
fn without_a_learning_period_every_hit_alerts() {
    let mut d = Detector::new(DetectorConfig {
        learning_period_ns: 0,
        ..DetectorConfig::default()
    });
    d.set_sigma_rules(RuleSet::builtin());
    let a = sigma(d.observe(&winrm(1, 1, T0)));
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].severity, Severity::Medium);
}

#[test]
fn routine_pairs_survive_a_snapshot() {
    let mut d = detector();
    learn_routine(&mut d);
    let mut back = Detector::restore(&d.snapshot().unwrap()).unwrap();
    assert_eq!(back.sigma_routine(WINRM_RULE, HostId(1)), Some((8, 3)));
    // Rules are configuration, not state: set again after a restore.
    back.set_sigma_rules(RuleSet::builtin());
    let a = sigma(back.observe(&winrm(1, 30, T0 + 3 * NS_PER_DAY)));
    assert_eq!(a[0].severity, Severity::Low);
}

#[test]
fn a_format_5_snapshot_loads_with_nothing_learned() {
    let mut d = detector();
    learn_routine(&mut d);
    let old = super::super::snapshot::as_format_5(&d.snapshot().unwrap());
    let back = Detector::restore(&old).unwrap();
    assert_eq!(back.sigma_routine(WINRM_RULE, HostId(1)), None);
    assert_eq!(back.graph_edges(), d.graph_edges());
}
