//! Adapter for OTRF Security-Datasets captures: a zip holding one JSON-lines
//! file of flattened Windows records (NXLog/Logstash or flat export).
//!
//! Time: NXLog's `EventTime` is the host's local creation time without a
//! zone and `@timestamp` the collector's UTC receive time (seconds late).
//! The zone offset is estimated per capture as the median whole-hour gap
//! between the two; event time is `EventTime` + offset, with the
//! sub-second part of `@timestamp` kept only to order events within a second.

use crate::windows::{field, Record};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use vigil_proto::HostId;

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a readable zip.
    #[error("{path}: bad zip: {reason}")]
    Zip {
        /// File.
        path: String,
        /// Cause.
        reason: String,
    },
    /// EVTX parse failure.
    #[error("{path}: bad evtx: {reason}")]
    Evtx {
        /// File.
        path: String,
        /// Cause.
        reason: String,
    },
}

/// One record with its event time (ns since the epoch) and host name.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedRecord {
    /// Event time, ns.
    pub ts_ns: u64,
    /// Host that logged it (`Hostname` / `Computer`).
    pub hostname: String,
    /// The flat record.
    pub record: Record,
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DD[T ]HH:MM:SS[.fff…][Z]` as UTC ns (zone suffix ignored).
pub fn parse_time(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.len() < 19 {
        return None;
    }
    let num = |a: usize, b: usize| s.get(a..b)?.parse::<u32>().ok();
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, se) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let mut frac_ns = 0u64;
    if let Some(rest) = s.get(19..) {
        if let Some(digits) = rest.strip_prefix('.') {
            let ds: String = digits
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .take(9)
                .collect();
            if !ds.is_empty() {
                frac_ns = ds.parse::<u64>().ok()? * 10u64.pow(9 - ds.len() as u32);
            }
        }
    }
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(se);
    u64::try_from(secs)
        .ok()
        .map(|s| s * 1_000_000_000 + frac_ns)
}

/// Reads every record of a capture zip, time-ordered.
pub fn read_capture(path: &Path) -> Result<Vec<TimedRecord>, CaptureError> {
    let p = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|source| CaptureError::Io {
        path: p.clone(),
        source,
    })?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| CaptureError::Zip {
        path: p.clone(),
        reason: e.to_string(),
    })?;
    let mut records = Vec::new();
    for i in 0..zip.len() {
        let member = zip.by_index(i).map_err(|e| CaptureError::Zip {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        if member.is_dir() {
            continue;
        }
        records.extend(read_json_lines(member, &p)?);
    }
    Ok(order(records))
}

/// Parses JSON lines (tolerating blank and non-object lines).
pub fn read_json_lines(r: impl Read, path: &str) -> Result<Vec<Record>, CaptureError> {
    let mut out = Vec::new();
    for line in BufReader::new(r).lines() {
        let line = line.map_err(|source| CaptureError::Io {
            path: path.to_string(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        if let Ok(serde_json::Value::Object(m)) = serde_json::from_str(&line) {
            out.push(m);
        }
    }
    Ok(out)
}

/// A Windows host name without its domain, lowercased: captures name the
/// same host `WECServer` in one record and `wecserver.theshire.local` in
/// another.
pub fn short_name(name: &str) -> String {
    name.split('.').next().unwrap_or(name).to_ascii_lowercase()
}

/// Stable host id of a Windows host name in these captures (by its
/// [`short_name`]).
pub fn host_id(name: &str) -> HostId {
    crate::host_ids::host_id("win", &short_name(name))
}

/// Assigns event times (with the capture's zone offset) and sorts.
pub fn order(records: Vec<Record>) -> Vec<TimedRecord> {
    let mut gaps: Vec<i64> = records
        .iter()
        .filter_map(|r| {
            let local = parse_time(field(r, "EventTime")?)? as i64;
            let utc = parse_time(field(r, "@timestamp")?)? as i64;
            Some(((utc - local) as f64 / 3.6e12).round() as i64)
        })
        .collect();
    gaps.sort_unstable();
    let offset_h = gaps.get(gaps.len() / 2).copied().unwrap_or(0);
    let mut out: Vec<TimedRecord> = records
        .into_iter()
        .filter_map(|r| {
            let at = field(&r, "@timestamp").and_then(parse_time);
            let ts = match field(&r, "EventTime").and_then(parse_time) {
                Some(local) => {
                    let sub = at.map(|a| a % 1_000_000_000).unwrap_or(0);
                    (local as i64 + offset_h * 3_600_000_000_000) as u64 + sub
                }
                None => at.or_else(|| field(&r, "TimeCreated").and_then(parse_time))?,
            };
            let hostname = field(&r, "Hostname")
                .or_else(|| field(&r, "Computer"))?
                .to_string();
            Some(TimedRecord {
                ts_ns: ts,
                hostname,
                record: r,
            })
        })
        .collect();
    out.sort_by_key(|t| t.ts_ns);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(
            parse_time("2020-09-20T16:16:58.210Z"),
            Some(1_600_618_618_210_000_000)
        );
        assert_eq!(
            parse_time("2020-09-20 12:16:56"),
            Some(1_600_604_216_000_000_000)
        );
        assert_eq!(parse_time("garbage"), None);
    }

    #[test]
    fn estimates_zone_offset() {
        let recs: Vec<Record> = (0..3)
            .map(|i| {
                serde_json::json!({"Hostname":"H","EventTime":format!("2020-09-20 12:16:5{i}"),
                    "@timestamp":format!("2020-09-20T16:16:5{}.500Z", i + 2)})
                .as_object()
                .unwrap()
                .clone()
            })
            .collect();
        let t = order(recs);
        assert_eq!(t[0].ts_ns, parse_time("2020-09-20T16:16:50.500Z").unwrap());
    }
}
