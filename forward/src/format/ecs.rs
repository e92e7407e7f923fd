//! Elastic Common Schema JSON: `event.kind=alert` for alerts and
//! incidents, `event` for audit entries, raw events and checkpoints.

use serde_json::{json, Value};

use super::{ecs_severity, rfc3339_ms, RenderContext};
use crate::record::{severity_name, Record};

/// The ECS version these payloads follow.
pub const ECS_VERSION: &str = "8.11.0";

/// The ECS document for `record`.
pub(super) fn render(record: &Record, seq: u64, ctx: &RenderContext) -> Value {
    let kind = record.kind().as_str();
    let mut doc = match record {
        Record::Alert(a) => {
            let al = &a.alert;
            let hosts = a.hosts();
            json!({
                "event": {
                    "kind": "alert",
                    "category": ["intrusion_detection"],
                    "type": ["info"],
                    "id": al.id.to_string(),
                    "severity": ecs_severity(al.severity),
                    "risk_score": al.score,
                },
                "message": al.summary,
                "rule": { "name": al.title },
                // The alert's host is the last of its path (as in proto::suppress).
                "host": { "name": hosts.last() },
                "user": { "name": al.users.first() },
                "related": { "hosts": hosts, "user": al.users },
                "threat": {
                    "framework": "MITRE ATT&CK",
                    "technique": { "id": al.techniques },
                },
                "vigil": {
                    "severity": severity_name(al.severity),
                    "triage": format!("{:?}", al.state),
                    "incident_id": al.incident_id,
                    "model_version": al.model_version,
                },
            })
        }
        Record::Incident(i) => json!({
            "event": {
                "kind": "alert",
                "category": ["intrusion_detection"],
                "type": ["info"],
                "id": format!("incident-{}", i.id),
                "severity": ecs_severity(i.severity),
            },
            "message": i.title,
            "vigil": { "severity": severity_name(i.severity), "incident": i.summary },
        }),
        Record::Audit(a) => json!({
            "event": {
                "kind": "event",
                "category": ["configuration"],
                "type": ["change"],
                "action": a.action,
            },
            "user": { "name": a.actor },
            "message": a.detail,
            "vigil": { "audit": { "target": a.target, "seq": a.seq } },
        }),
        Record::Event(e) => json!({
            "event": { "kind": "event", "action": e.kind().name() },
            "host": { "id": e.header.host.0.to_string() },
            "vigil": { "event": e },
        }),
        Record::Checkpoint(c) => json!({
            "event": { "kind": "event", "action": "audit_checkpoint" },
            "message": c.text,
        }),
    };
    let obj = doc.as_object_mut().expect("json! object");
    obj.insert("@timestamp".into(), rfc3339_ms(record.time_ns()).into());
    obj.insert("ecs".into(), json!({ "version": ECS_VERSION }));
    obj.insert(
        "observer".into(),
        json!({
            "vendor": "Vigil",
            "product": "Vigil",
            "version": ctx.product_version,
            "hostname": ctx.appliance,
        }),
    );
    let event = obj
        .get_mut("event")
        .and_then(Value::as_object_mut)
        .expect("every document has an event object");
    event.insert("sequence".into(), seq.into());
    event.insert("dataset".into(), format!("vigil.{kind}").into());
    event.insert("module".into(), "vigil".into());
    doc
}
