//! EVTX files (via the `evtx` crate) flattened to the same records the
//! OTRF adapter produces: `EventID`, `Channel`, `Computer`/`Hostname` and
//! the `EventData` fields at top level.

use crate::otrf::{CaptureError, TimedRecord};
use crate::windows::Record;
use serde_json::Value;
use std::path::Path;

fn scalar(v: &Value) -> Value {
    match v {
        Value::Object(m) => m.get("#text").cloned().unwrap_or(Value::Null),
        other => other.clone(),
    }
}

/// Flattens one rendered record (`{"Event":{"System":…,"EventData":…}}`).
pub fn flatten(v: &Value) -> Option<Record> {
    let ev = v.get("Event")?;
    let sys = ev.get("System")?;
    let mut r = Record::new();
    r.insert("EventID".into(), scalar(sys.get("EventID")?));
    for k in ["Channel", "Computer"] {
        if let Some(x) = sys.get(k) {
            r.insert(k.into(), scalar(x));
        }
    }
    if let Some(c) = sys.get("Computer") {
        r.insert("Hostname".into(), scalar(c));
    }
    if let Some(name) = sys.pointer("/Provider/#attributes/Name") {
        r.insert("SourceName".into(), name.clone());
    }
    for section in ["EventData", "UserData"] {
        if let Some(Value::Object(m)) = ev.get(section) {
            for (k, x) in m {
                if k != "#attributes" {
                    r.insert(k.clone(), scalar(x));
                }
            }
        }
    }
    Some(r)
}

/// Reads an EVTX file into time-ordered records (record time from the
/// file, UTC).
pub fn read_evtx(path: &Path) -> Result<Vec<TimedRecord>, CaptureError> {
    let p = path.display().to_string();
    let mut parser = ::evtx::EvtxParser::from_path(path).map_err(|e| CaptureError::Evtx {
        path: p.clone(),
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    for rec in parser.records_json_value() {
        let rec = rec.map_err(|e| CaptureError::Evtx {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        let Some(flat) = flatten(&rec.data) else {
            continue;
        };
        let ts = u64::try_from(rec.timestamp.as_nanosecond()).unwrap_or(0);
        let hostname = crate::windows::field(&flat, "Hostname")
            .unwrap_or("unknown")
            .to_string();
        out.push(TimedRecord {
            ts_ns: ts,
            hostname,
            record: flat,
        });
    }
    out.sort_by_key(|t| t.ts_ns);
    Ok(out)
}
