//! ArcSight Common Event Format (CEF) version 0:
//! `CEF:0|Vigil|Vigil|<version>|<signature id>|<name>|<severity 0-10>|<extension>`.
//!
//! Escaping follows the ArcSight CEF specification: in the header a
//! backslash and a pipe are escaped with a backslash; in extension values a
//! backslash and an equals sign are, and CR / LF become `\r` / `\n`. The
//! header has no escape for line breaks, so they become spaces there.
//! Extension keys are fixed ASCII names chosen here, never data.

use super::{cef_severity, ms, RenderContext};
use crate::record::Record;

/// Escapes one header field (`\` → `\\`, `|` → `\|`, CR/LF → space).
pub fn escape_header(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Escapes one extension value (`\` → `\\`, `=` → `\=`, CR → `\r`, LF → `\n`).
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// One CEF record: header fields and extension pairs, before escaping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CefRecord {
    /// Device version (Vigil's).
    pub version: String,
    /// Signature id: what kind of thing this is.
    pub signature: String,
    /// Human-readable name.
    pub name: String,
    /// Severity, 0–10.
    pub severity: u8,
    /// Extension `key=value` pairs in output order.
    pub extension: Vec<(&'static str, String)>,
}

impl CefRecord {
    /// The escaped CEF line.
    pub fn to_line(&self) -> String {
        let mut out = format!(
            "CEF:0|Vigil|Vigil|{}|{}|{}|{}|",
            escape_header(&self.version),
            escape_header(&self.signature),
            escape_header(&self.name),
            self.severity.min(10)
        );
        for (i, (key, value)) in self.extension.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(key);
            out.push('=');
            out.push_str(&escape_value(value));
        }
        out
    }
}

/// The CEF line for `record`.
pub(super) fn render(record: &Record, seq: u64, ctx: &RenderContext) -> String {
    to_record(record, seq, ctx).to_line()
}

/// The unescaped CEF fields for `record` (tests compare a parse to this).
pub fn to_record(record: &Record, seq: u64, ctx: &RenderContext) -> CefRecord {
    let mut ext: Vec<(&'static str, String)> = vec![("rt", ms(record.time_ns()).to_string())];
    let (signature, name, severity) = match record {
        Record::Alert(a) => {
            let al = &a.alert;
            ext.push(("externalId", al.id.to_string()));
            ext.push(("msg", al.summary.clone()));
            ext.push(("dhost", a.hosts().last().cloned().unwrap_or_default()));
            ext.push(("suser", al.users.join(",")));
            ext.push(("cs1Label", "techniques".into()));
            ext.push(("cs1", al.techniques.join(",")));
            ext.push(("cs2Label", "hosts".into()));
            ext.push(("cs2", a.hosts().join(",")));
            ext.push(("cfp1Label", "score".into()));
            ext.push(("cfp1", format!("{:.3}", al.score)));
            let sig = match al.techniques.first() {
                Some(t) => format!("alert:{t}"),
                None => "alert".to_string(),
            };
            (sig, al.title.clone(), cef_severity(al.severity))
        }
        Record::Incident(i) => {
            ext.push(("externalId", format!("incident-{}", i.id)));
            ext.push(("msg", i.summary.to_string()));
            (
                "incident".to_string(),
                i.title.clone(),
                cef_severity(i.severity),
            )
        }
        Record::Audit(a) => {
            ext.push(("suser", a.actor.clone()));
            ext.push(("act", a.action.clone()));
            ext.push(("cs3Label", "target".into()));
            ext.push(("cs3", a.target.clone()));
            ext.push(("msg", a.detail.clone()));
            ext.push(("cn2Label", "auditSeq".into()));
            ext.push(("cn2", a.seq.to_string()));
            (format!("audit:{}", a.action), a.action.clone(), 1)
        }
        Record::Event(e) => {
            let kind = e.kind().name();
            ext.push(("deviceExternalId", e.header.host.0.to_string()));
            ext.push(("msg", serde_json::to_string(e).unwrap_or_default()));
            (format!("event:{kind}"), kind.to_string(), 0)
        }
        Record::Checkpoint(c) => {
            ext.push(("msg", c.text.clone()));
            ("checkpoint".to_string(), "audit checkpoint".to_string(), 0)
        }
    };
    ext.push(("dvchost", ctx.appliance.clone()));
    ext.push(("cn1Label", "vigilSeq".into()));
    ext.push(("cn1", seq.to_string()));
    CefRecord {
        version: ctx.product_version.clone(),
        signature,
        name,
        severity,
        extension: ext,
    }
}
