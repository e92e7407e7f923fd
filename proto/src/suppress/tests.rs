use super::*;

const A: HostId = HostId(0xa);
const B: HostId = HostId(0xb);
const C: HostId = HostId(0xc);

/// An alert's fields, owned, so cases can build them inline.
struct Alert {
    title: &'static str,
    path: Vec<HostId>,
    users: Vec<String>,
    ports: Vec<u16>,
    processes: Vec<String>,
}

impl Alert {
    fn view(&self) -> AlertScopeView<'_> {
        AlertScopeView {
            title: self.title,
            path: &self.path,
            users: &self.users,
            ports: &self.ports,
            processes: &self.processes,
        }
    }
}

/// Lateral movement A → B → C by alice over ssh.
fn incident() -> Alert {
    Alert {
        title: "Lateral movement chain",
        path: vec![A, B, C],
        users: vec!["Alice".into()],
        ports: vec![22],
        processes: vec!["sshd".into()],
    }
}

/// One hop A → B.
fn hop() -> Alert {
    Alert {
        path: vec![A, B],
        title: "New admin connection",
        ..incident()
    }
}

/// One host's unusual window.
fn single() -> Alert {
    Alert {
        path: vec![B],
        title: "Unusual host behaviour",
        ..incident()
    }
}

fn scope(edit: impl FnOnce(&mut SuppressionScope)) -> SuppressionScope {
    let mut s = SuppressionScope::default();
    edit(&mut s);
    s
}

#[test]
fn every_field_matches_as_documented() {
    #[rustfmt::skip]
    let cases: Vec<(&str, SuppressionScope, Alert, bool)> = vec![
        ("empty scope matches nothing", scope(|_| ()), incident(), false),
        ("title exact", scope(|s| s.title = Some("Lateral movement chain".into())), incident(), true),
        ("title is case-sensitive", scope(|s| s.title = Some("lateral movement chain".into())), incident(), false),
        ("title is not a substring", scope(|s| s.title = Some("Lateral".into())), incident(), false),
        // host = the last host of the path
        ("host: incident's landing host", scope(|s| s.host = Some(C)), incident(), true),
        ("host: not an earlier host of an incident", scope(|s| s.host = Some(B)), incident(), false),
        ("host: not the incident's origin", scope(|s| s.host = Some(A)), incident(), false),
        ("host: hop's destination", scope(|s| s.host = Some(B)), hop(), true),
        ("host: not the hop's source", scope(|s| s.host = Some(A)), hop(), false),
        ("host: single-host alert's host", scope(|s| s.host = Some(B)), single(), true),
        ("host: another host", scope(|s| s.host = Some(C)), single(), false),
        // peer = a host before the last one
        ("peer: incident's origin", scope(|s| s.peer = Some(A)), incident(), true),
        ("peer: incident's middle hop", scope(|s| s.peer = Some(B)), incident(), true),
        ("peer: not the landing host", scope(|s| s.peer = Some(C)), incident(), false),
        ("peer: hop's source", scope(|s| s.peer = Some(A)), hop(), true),
        ("peer: not the hop's destination", scope(|s| s.peer = Some(B)), hop(), false),
        ("peer: a single-host alert has none", scope(|s| s.peer = Some(B)), single(), false),
        ("host and peer: movement from A to C", scope(|s| { s.peer = Some(A); s.host = Some(C) }), incident(), true),
        ("host and peer: reversed", scope(|s| { s.peer = Some(C); s.host = Some(A) }), incident(), false),
        ("user", scope(|s| s.user = Some("Alice".into())), incident(), true),
        ("user case-insensitive", scope(|s| s.user = Some("aLICE".into())), incident(), true),
        ("user: another", scope(|s| s.user = Some("bob".into())), incident(), false),
        ("port", scope(|s| s.port = Some(22)), incident(), true),
        ("port: another", scope(|s| s.port = Some(445)), incident(), false),
        ("process", scope(|s| s.process = Some("sshd".into())), incident(), true),
        ("process case-insensitive", scope(|s| s.process = Some("SSHD".into())), incident(), true),
        ("process by basename", scope(|s| s.process = Some("/usr/sbin/sshd".into())), incident(), true),
        ("process: Windows path", scope(|s| s.process = Some(r"C:\Windows\SSHD".into())), incident(), true),
        ("process is not a substring", scope(|s| s.process = Some("ssh".into())), incident(), false),
        ("all fields set and matching", scope(|s| {
            s.title = Some("New admin connection".into());
            s.host = Some(B);
            s.peer = Some(A);
            s.user = Some("alice".into());
            s.port = Some(22);
            s.process = Some("sshd".into());
        }), hop(), true),
        ("one field off fails the scope", scope(|s| { s.host = Some(B); s.port = Some(445) }), hop(), false),
    ];
    for (name, scope, alert, want) in cases {
        assert_eq!(scope.matches(&alert.view()), want, "{name}");
    }
}

#[test]
fn an_empty_path_has_no_host_and_no_peer() {
    let alert = Alert {
        path: vec![],
        ..incident()
    };
    assert!(!scope(|s| s.host = Some(A)).matches(&alert.view()));
    assert!(!scope(|s| s.peer = Some(A)).matches(&alert.view()));
    assert!(scope(|s| s.port = Some(22)).matches(&alert.view()));
}

#[test]
fn an_empty_scope_is_refused() {
    assert_eq!(
        Suppression::new(SuppressionScope::default(), "noise", "ana", 1),
        Err(SuppressionError::EmptyScope)
    );
    let s = Suppression::new(scope(|s| s.port = Some(22)), "noise", "ana", 1).unwrap();
    assert_eq!((s.id, s.expires_ns, s.source_alert), (0, None, None));
    assert_eq!(s.created_by, "ana");
}

#[test]
fn an_expired_suppression_hides_nothing() {
    let mut s = Suppression::new(scope(|s| s.host = Some(C)), "known", "ana", 10).unwrap();
    let alert = incident();
    assert!(s.hides(&alert.view(), 1_000));
    s.expires_ns = Some(100);
    assert!(s.hides(&alert.view(), 99));
    assert!(!s.hides(&alert.view(), 100), "expiry is exclusive");
    assert!(!s.hides(&alert.view(), 101));
}

#[test]
fn the_first_hiding_rule_is_reported() {
    let rule = |id, edit: fn(&mut SuppressionScope), expires_ns| Suppression {
        id,
        expires_ns,
        ..Suppression::new(scope(edit), "r", "ana", 0).unwrap()
    };
    let rules = vec![
        rule(1, |s| s.port = Some(445), None),
        rule(2, |s| s.host = Some(C), Some(50)),
        rule(3, |s| s.peer = Some(B), None),
        rule(4, |s| s.user = Some("alice".into()), None),
    ];
    let alert = incident();
    assert_eq!(
        first_hiding(&rules, &alert.view(), 10).map(|r| r.id),
        Some(2)
    );
    assert_eq!(
        first_hiding(&rules, &alert.view(), 60).map(|r| r.id),
        Some(3)
    );
    assert_eq!(
        first_hiding(&rules, &single().view(), 60).map(|r| r.id),
        Some(4)
    );
    assert_eq!(first_hiding(&rules[..1], &alert.view(), 0), None);
}

#[test]
fn preview_counts_past_alerts_in_scope() {
    let past = [incident(), hop(), single()];
    let views = || past.iter().map(Alert::view);
    assert_eq!(preview(&scope(|s| s.host = Some(B)), views()), 2);
    assert_eq!(preview(&scope(|s| s.peer = Some(A)), views()), 2);
    assert_eq!(preview(&scope(|s| s.port = Some(22)), views()), 3);
    assert_eq!(preview(&SuppressionScope::default(), views()), 0);
}

/// An open `AlertRecord` with the scope fields of `a`.
fn record_of(a: &Alert) -> AlertRecord {
    AlertRecord {
        id: 1,
        created_ns: 0,
        severity: crate::query::Severity::High,
        score: 1.0,
        title: a.title.into(),
        path: a.path.clone(),
        users: a.users.clone(),
        techniques: vec![],
        summary: String::new(),
        deviations: vec![],
        evidence: vec![],
        state: crate::query::TriageState::New,
        assignee: None,
        incident_id: None,
        model_version: None,
        ports: a.ports.clone(),
        processes: a.processes.clone(),
        suppressed_by: None,
    }
}

#[test]
fn alert_records_expose_their_scope_view() {
    let a = incident();
    let record = record_of(&a);
    assert_eq!(record.scope_view(), a.view());
}

#[test]
fn mark_names_the_first_active_rule_and_hidden_means_open() {
    let a = incident();
    let mut record = record_of(&a);
    let user = a.users[0].clone();
    let rule = |id: u64, expires_ns: Option<u64>| Suppression {
        id,
        expires_ns,
        ..Suppression::new(scope(|s| s.user = Some(user.clone())), "r", "analyst", 0).unwrap()
    };
    let rules = vec![rule(7, Some(100)), rule(9, None)];
    mark(&mut record, &rules, 50);
    assert_eq!(record.suppressed_by, Some(7));
    assert!(record.is_hidden());
    mark(&mut record, &rules, 100);
    assert_eq!(
        record.suppressed_by,
        Some(9),
        "the expired rule no longer counts"
    );
    record.state = crate::query::TriageState::ClosedFalsePositive;
    assert!(!record.is_hidden(), "a closed alert stays visible");
    mark(&mut record, &[], 0);
    assert_eq!(record.suppressed_by, None);
}
