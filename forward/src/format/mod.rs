//! Payload formats: OCSF 1.x JSON (default), ECS JSON and ArcSight CEF.
//! Pure: the record, its per-receiver sequence number and a context in,
//! one line of text out.

use serde::{Deserialize, Serialize};
use std::time::{Duration, UNIX_EPOCH};
use vigil_proto::query::Severity;

use crate::record::Record;

pub mod cef;
mod ecs;
mod ocsf;

/// Which payload a receiver gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// OCSF 1.x JSON (Detection Finding for alerts and incidents).
    #[default]
    Ocsf,
    /// Elastic Common Schema JSON.
    Ecs,
    /// ArcSight Common Event Format, for legacy SIEMs.
    Cef,
}

/// What every payload names besides the record: the product and appliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderContext {
    /// Vigil's version (CEF header, OCSF `metadata.product.version`).
    pub product_version: String,
    /// The appliance's host name (observer / device).
    pub appliance: String,
}

/// Renders `record` with its per-receiver sequence number `seq`.
pub fn render(format: Format, record: &Record, seq: u64, ctx: &RenderContext) -> String {
    match format {
        Format::Ocsf => ocsf::render(record, seq, ctx).to_string(),
        Format::Ecs => ecs::render(record, seq, ctx).to_string(),
        Format::Cef => cef::render(record, seq, ctx),
    }
}

/// Nanoseconds since the epoch to whole milliseconds.
pub(crate) fn ms(ns: u64) -> u64 {
    ns / 1_000_000
}

/// Nanoseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ns: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

/// OCSF `severity_id`: 2 Low … 5 Critical (1 Informational is unused).
pub(crate) fn ocsf_severity_id(s: Severity) -> u8 {
    match s {
        Severity::Low => 2,
        Severity::Medium => 3,
        Severity::High => 4,
        Severity::Critical => 5,
    }
}

/// CEF severity on its 0–10 scale (3 Low, 5 Medium, 8 High, 10 Very-High).
pub(crate) fn cef_severity(s: Severity) -> u8 {
    match s {
        Severity::Low => 3,
        Severity::Medium => 5,
        Severity::High => 8,
        Severity::Critical => 10,
    }
}

/// ECS `event.severity`: the risk scores Elastic's own rules use.
pub(crate) fn ecs_severity(s: Severity) -> u8 {
    match s {
        Severity::Low => 21,
        Severity::Medium => 47,
        Severity::High => 73,
        Severity::Critical => 99,
    }
}

#[cfg(test)]
mod tests;
