//! OCSF 1.3 JSON. Alerts and incidents are Detection Findings (class 2004);
//! audit entries API Activity (6003); raw events and checkpoints Base
//! Events (0) carrying the original in `unmapped`.

use serde_json::{json, Value};
use vigil_proto::query::TriageState;

use super::{ms, ocsf_severity_id, RenderContext};
use crate::record::{severity_name, Record};

/// The OCSF schema version these payloads follow.
pub const OCSF_VERSION: &str = "1.3.0";

const DETECTION_FINDING: u32 = 2004;
const API_ACTIVITY: u32 = 6003;
const BASE_EVENT: u32 = 0;
/// `activity_id` 1 (Create) for findings, 99 (Other) elsewhere.
const CREATE: u32 = 1;
const OTHER: u32 = 99;

/// The OCSF object for `record`.
pub(super) fn render(record: &Record, seq: u64, ctx: &RenderContext) -> Value {
    let time = ms(record.time_ns());
    let (class_uid, category_uid, activity_id, mut body) = match record {
        Record::Alert(a) => {
            let al = &a.alert;
            let attacks: Vec<Value> = al
                .techniques
                .iter()
                .map(|t| json!({ "technique": { "uid": t }, "version": "14" }))
                .collect();
            let resources: Vec<Value> = a
                .hosts()
                .iter()
                .zip(&al.path)
                .map(|(name, id)| json!({ "type": "host", "name": name, "uid": id.0.to_string() }))
                .collect();
            let body = json!({
                "finding_info": {
                    "uid": format!("alert-{}", al.id),
                    "title": al.title,
                    "desc": al.summary,
                    "types": ["alert"],
                    "attacks": attacks,
                    "created_time": time,
                },
                "message": al.summary,
                "severity_id": ocsf_severity_id(al.severity),
                "severity": severity_name(al.severity),
                "status_id": status_id(&al.state),
                "resources": resources,
                "unmapped": {
                    "users": al.users,
                    "score": al.score,
                    "incident_id": al.incident_id,
                    "model_version": al.model_version,
                },
            });
            (DETECTION_FINDING, 2, CREATE, body)
        }
        Record::Incident(i) => {
            let body = json!({
                "finding_info": {
                    "uid": format!("incident-{}", i.id),
                    "title": i.title,
                    "types": ["incident"],
                    "created_time": time,
                },
                "message": i.title,
                "severity_id": ocsf_severity_id(i.severity),
                "severity": severity_name(i.severity),
                "status_id": 1,
                "unmapped": { "summary": i.summary },
            });
            (DETECTION_FINDING, 2, CREATE, body)
        }
        Record::Audit(a) => {
            let body = json!({
                "activity_name": a.action,
                "actor": { "user": { "name": a.actor } },
                "api": { "operation": a.action },
                "resources": [{ "name": a.target }],
                "src_endpoint": { "hostname": ctx.appliance },
                "message": a.detail,
                "severity_id": 1,
                "unmapped": { "audit_seq": a.seq },
            });
            (API_ACTIVITY, 6, OTHER, body)
        }
        Record::Event(e) => {
            let body = json!({
                "activity_name": e.kind().name(),
                "device": { "uid": e.header.host.0.to_string() },
                "severity_id": 1,
                "unmapped": { "event": e },
            });
            (BASE_EVENT, 0, OTHER, body)
        }
        Record::Checkpoint(c) => {
            let body = json!({
                "activity_name": "audit_checkpoint",
                "message": c.text,
                "severity_id": 1,
            });
            (BASE_EVENT, 0, OTHER, body)
        }
    };
    let obj = body.as_object_mut().expect("json! object");
    obj.insert("class_uid".into(), class_uid.into());
    obj.insert("category_uid".into(), category_uid.into());
    obj.insert("activity_id".into(), activity_id.into());
    obj.insert("type_uid".into(), (class_uid * 100 + activity_id).into());
    obj.insert("time".into(), time.into());
    obj.insert(
        "metadata".into(),
        json!({
            "version": OCSF_VERSION,
            "sequence": seq,
            "log_name": record.kind().as_str(),
            "product": {
                "name": "Vigil",
                "vendor_name": "Vigil",
                "version": ctx.product_version,
            },
        }),
    );
    body
}

/// OCSF finding `status_id`: 1 New, 2 In Progress, 4 Resolved.
fn status_id(state: &TriageState) -> u8 {
    match state {
        TriageState::New => 1,
        TriageState::Acknowledged | TriageState::Investigating => 2,
        TriageState::ClosedTruePositive | TriageState::ClosedFalsePositive => 4,
    }
}
