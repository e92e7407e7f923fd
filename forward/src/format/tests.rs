use super::*;
use crate::record::{AlertWithHosts, AuditEntry, Checkpoint, IncidentSummary};
use serde_json::Value;
use vigil_proto::query::{AlertRecord, TriageState};
use vigil_proto::HostId;

fn ctx() -> RenderContext {
    RenderContext {
        product_version: "0.1.0".into(),
        appliance: "vigil-01".into(),
    }
}

pub(crate) fn alert() -> Record {
    Record::Alert(AlertWithHosts {
        alert: AlertRecord {
            id: 42,
            created_ns: 1_700_000_000_123_456_789,
            severity: Severity::High,
            score: 0.93,
            title: "SSH lateral movement".into(),
            path: vec![HostId(1), HostId(2)],
            users: vec!["alice".into()],
            techniques: vec!["T1021.004".into()],
            summary: "alice hopped a → b".into(),
            deviations: vec![],
            evidence: vec![],
            state: TriageState::New,
            assignee: None,
            incident_id: Some(7),
            model_version: Some("m1".into()),
            ports: vec![22],
            processes: vec![],
            suppressed_by: None,
        },
        host_names: vec!["web-1".into(), "db-1".into()],
    })
}

fn json(f: Format, r: &Record, seq: u64) -> Value {
    serde_json::from_str(&render(f, r, seq, &ctx())).unwrap()
}

#[test]
fn ocsf_alert_is_a_detection_finding() {
    let v = json(Format::Ocsf, &alert(), 9);
    assert_eq!(v["class_uid"], 2004);
    assert_eq!(v["category_uid"], 2);
    assert_eq!(v["type_uid"], 200401);
    assert_eq!(v["severity_id"], 4);
    assert_eq!(v["time"], 1_700_000_000_123u64);
    assert_eq!(v["metadata"]["sequence"], 9);
    assert_eq!(v["metadata"]["product"]["name"], "Vigil");
    assert_eq!(v["metadata"]["product"]["version"], "0.1.0");
    assert_eq!(v["finding_info"]["uid"], "alert-42");
    assert_eq!(v["finding_info"]["title"], "SSH lateral movement");
    assert_eq!(
        v["finding_info"]["attacks"][0]["technique"]["uid"],
        "T1021.004"
    );
    assert_eq!(v["resources"][1]["name"], "db-1");
}

#[test]
fn ocsf_severity_ids_cover_every_severity() {
    let ids: Vec<u8> = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ]
    .into_iter()
    .map(ocsf_severity_id)
    .collect();
    assert_eq!(ids, [2, 3, 4, 5]);
}

#[test]
fn ecs_alert_has_the_fields_siems_key_on() {
    let v = json(Format::Ecs, &alert(), 3);
    assert_eq!(v["event"]["kind"], "alert");
    assert_eq!(v["event"]["sequence"], 3);
    assert_eq!(v["@timestamp"], "2023-11-14T22:13:20.123Z");
    assert_eq!(v["host"]["name"], "db-1");
    assert_eq!(v["user"]["name"], "alice");
    assert_eq!(v["threat"]["technique"]["id"][0], "T1021.004");
    assert_eq!(v["rule"]["name"], "SSH lateral movement");
}

#[test]
fn every_kind_renders_in_every_format_with_its_seq() {
    let records = [
        alert(),
        Record::Incident(IncidentSummary {
            id: 5,
            time_ns: 1,
            severity: Severity::Critical,
            title: "chain".into(),
            summary: serde_json::json!({"hosts": ["a"]}),
        }),
        Record::Audit(AuditEntry {
            actor: "admin".into(),
            time_ns: 2,
            action: "suppression.create".into(),
            target: "alert 4".into(),
            detail: "scope=host".into(),
            seq: 77,
        }),
        Record::Checkpoint(Checkpoint {
            time_ns: 3,
            text: "vigil-audit\n12\nabc=\n\n— vigil sig".into(),
        }),
    ];
    for r in &records {
        assert_eq!(json(Format::Ocsf, r, 11)["metadata"]["sequence"], 11);
        assert_eq!(json(Format::Ecs, r, 12)["event"]["sequence"], 12);
        let cef = render(Format::Cef, r, 13, &ctx());
        assert!(cef.starts_with("CEF:0|Vigil|Vigil|0.1.0|"), "{cef}");
        assert!(cef.ends_with("cn1Label=vigilSeq cn1=13"), "{cef}");
        assert!(!cef.contains('\n'), "{cef}");
    }
}

#[test]
fn cef_escapes_header_and_extension_per_the_spec() {
    assert_eq!(cef::escape_header(r"a|b\c"), r"a\|b\\c");
    assert_eq!(cef::escape_header("a\nb"), "a b");
    assert_eq!(cef::escape_value("a=b\\c\nd\re|f"), "a\\=b\\\\c\\nd\\re|f");
}
