//! RFC 5424 syslog messages and RFC 6587 / RFC 5425 octet-counting framing.
//! Pure: every field is passed in.

use vigil_proto::query::Severity;

use crate::format::rfc3339_ms;
use crate::record::{Record, RecordKind};

/// Our structured-data id. 32473 is the private enterprise number RFC 5612
/// reserves for documentation; a registered one replaces it if Vigil gets one.
pub const SD_ID: &str = "vigil@32473";

/// The RFC 5424 NILVALUE.
pub const NIL: &str = "-";

/// The fields of one RFC 5424 header that do not come from the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Syslog facility, 0–23 (16 = local0).
    pub facility: u8,
    /// HOSTNAME: the appliance's name (sanitised; `-` when empty).
    pub hostname: String,
    /// PROCID: the appliance's process id.
    pub procid: u32,
}

/// Syslog severity for a record: alerts by their own severity, the rest
/// notice (audit) or informational.
pub fn severity(record: &Record) -> u8 {
    let by = |s: Severity| match s {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
    };
    match record {
        Record::Alert(a) => by(a.alert.severity),
        Record::Incident(i) => by(i.severity),
        Record::Audit(_) => 5,
        Record::Event(_) | Record::Checkpoint(_) => 6,
    }
}

/// One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME vigil PROCID MSGID SD MSG`.
///
/// MSG is sent without a BOM (RFC 5424 `MSG-ANY`): CEF parsers expect the
/// line to start with `CEF:`. `seq` goes into structured data; `None`
/// writes the NILVALUE.
pub fn message(
    header: &Header,
    kind: RecordKind,
    severity: u8,
    time_ns: u64,
    seq: Option<u64>,
    payload: &str,
) -> String {
    let pri = u16::from(header.facility.min(23)) * 8 + u16::from(severity.min(7));
    let sd = match seq {
        Some(seq) => format!("[{SD_ID} seq=\"{seq}\"]"),
        None => NIL.to_string(),
    };
    format!(
        "<{pri}>1 {} {} vigil {} {} {sd} {payload}",
        rfc3339_ms(time_ns),
        header_field(&header.hostname, 255),
        header.procid,
        kind.as_str(),
    )
}

/// A header field as RFC 5424 allows it: printable US-ASCII without
/// spaces, at most `max` characters, NILVALUE when nothing is left.
pub fn header_field(s: &str, max: usize) -> String {
    let cleaned: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if cleaned.is_empty() {
        NIL.to_string()
    } else {
        cleaned
    }
}

/// Octet-counting framing: `MSG-LEN SP SYSLOG-MSG`.
pub fn frame(msg: &[u8]) -> Vec<u8> {
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Checkpoint;

    #[test]
    fn message_has_every_rfc5424_field() {
        let h = Header {
            facility: 16,
            hostname: "vigil appliance".into(),
            procid: 42,
        };
        let r = Record::Checkpoint(Checkpoint {
            time_ns: 1_700_000_000_123_000_000,
            text: "x".into(),
        });
        let m = message(&h, r.kind(), severity(&r), r.time_ns(), Some(7), "{}");
        assert_eq!(
            m,
            "<134>1 2023-11-14T22:13:20.123Z vigilappliance vigil 42 checkpoint [vigil@32473 seq=\"7\"] {}"
        );
        let nil = message(&h, r.kind(), 6, 0, None, "p");
        assert!(nil.contains(" checkpoint - p"), "{nil}");
    }

    #[test]
    fn framing_counts_octets_not_chars() {
        assert_eq!(frame("é".as_bytes()), b"2 \xc3\xa9".to_vec());
    }

    #[test]
    fn empty_hostname_is_nil() {
        assert_eq!(header_field(" \n", 255), "-");
    }
}
