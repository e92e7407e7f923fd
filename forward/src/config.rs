//! Forwarding configuration: receivers and knobs, validated all at once.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

use crate::format::Format;
use crate::record::RecordKind;

/// How records reach a receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Transport {
    /// Plain TCP (RFC 6587 octet counting).
    Tcp,
    /// TLS (RFC 5425), the receiver's certificate checked against `ca_pem`
    /// only (no system roots), for `server_name` (default: the host of
    /// `address`).
    Tls {
        /// PEM file with the CA certificate(s) to trust.
        ca_pem: PathBuf,
        /// Name the receiver's certificate must carry.
        #[serde(default)]
        server_name: Option<String>,
    },
}

/// One SIEM receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiverConfig {
    /// Unique name: `[A-Za-z0-9_-]{1,64}` (names its queue directory).
    pub name: String,
    /// `host:port` of the receiver.
    pub address: String,
    /// TCP or TLS.
    pub transport: Transport,
    /// Payload format.
    #[serde(default)]
    pub format: Format,
    /// Which records it takes (default: all but raw events).
    #[serde(default = "default_kinds")]
    pub kinds: Vec<RecordKind>,
    /// Syslog facility, 0–23 (default 13, "log audit").
    #[serde(default = "default_facility")]
    pub facility: u8,
    /// Most bytes waiting in its queue before new records are refused.
    #[serde(default = "default_max_bytes")]
    pub max_queue_bytes: u64,
    /// Where its audit forwarding begins the first time the appliance
    /// sees it (default: the log's first entry). The forwarder itself does
    /// not read it: the appliance keeps the audit position per receiver.
    #[serde(default)]
    pub from: AuditFrom,
}

/// Where a new receiver's audit forwarding begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditFrom {
    /// The log's first entry: the SIEM gets the whole audit history.
    #[default]
    Start,
    /// The entry after the last one written when the receiver was added.
    Now,
}

impl AuditFrom {
    /// `start` or `now`, as in `forward.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditFrom::Start => "start",
            AuditFrom::Now => "now",
        }
    }
}

fn default_kinds() -> Vec<RecordKind> {
    vec![
        RecordKind::Alert,
        RecordKind::Incident,
        RecordKind::Audit,
        RecordKind::Checkpoint,
    ]
}

fn default_facility() -> u8 {
    13
}

fn default_max_bytes() -> u64 {
    256 << 20
}

/// Everything the forwarder needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwarderConfig {
    /// Directory holding one queue directory per receiver.
    pub queue_dir: PathBuf,
    /// The appliance's host name (syslog HOSTNAME, observer).
    pub hostname: String,
    /// Vigil's version, named in every payload.
    pub product_version: String,
    /// The receivers.
    pub receivers: Vec<ReceiverConfig>,
    /// Timing of the senders.
    pub timing: Timing,
}

/// Timeouts, retry backoff and batch size of the senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Connecting (and the TLS handshake) gives up after this.
    pub connect_timeout: Duration,
    /// Writing a batch and waiting for its TCP acknowledgement.
    pub write_timeout: Duration,
    /// First retry delay; doubles per failure.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Most records per write.
    pub batch_records: usize,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(60),
            batch_records: 256,
        }
    }
}

/// One problem in a configuration, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Where (`receivers[1].address`).
    pub key: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

impl ForwarderConfig {
    /// Every problem at once; empty when the configuration is usable.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut bad = |key: String, problem: &str| {
            out.push(ConfigProblem {
                key,
                problem: problem.to_string(),
            })
        };
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.receivers.iter().enumerate() {
            let key = |field: &str| format!("receivers[{i}].{field}");
            let name_ok = !r.name.is_empty()
                && r.name.len() <= 64
                && r.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !name_ok {
                bad(key("name"), "use 1-64 letters, digits, '-' or '_'");
            } else if !names.insert(r.name.clone()) {
                bad(
                    key("name"),
                    "another receiver has this name; names must be unique",
                );
            }
            if split_host_port(&r.address).is_none() {
                bad(key("address"), "use host:port (e.g. siem.example:6514)");
            }
            if r.facility > 23 {
                bad(key("facility"), "syslog facilities are 0-23");
            }
            if r.kinds.is_empty() {
                bad(key("kinds"), "name at least one record kind");
            }
            if r.max_queue_bytes < 1 << 20 {
                bad(key("max_queue_bytes"), "allow at least 1 MiB");
            }
            if let Transport::Tls { ca_pem, .. } = &r.transport {
                if !ca_pem.is_file() {
                    bad(
                        key("transport.ca_pem"),
                        "no such file: give the CA certificate PEM",
                    );
                }
            }
        }
        if self.timing.batch_records == 0 {
            bad(
                "timing.batch_records".into(),
                "send at least one record per batch",
            );
        }
        if self.timing.backoff_base.is_zero() || self.timing.backoff_max < self.timing.backoff_base
        {
            bad(
                "timing.backoff".into(),
                "base must be > 0 and not above max",
            );
        }
        out
    }
}

/// `host:port` (or `[v6]:port`) split; `None` when malformed.
pub(crate) fn split_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver(name: &str, address: &str) -> ReceiverConfig {
        ReceiverConfig {
            name: name.into(),
            address: address.into(),
            transport: Transport::Tcp,
            format: Format::Ocsf,
            kinds: default_kinds(),
            facility: 13,
            max_queue_bytes: default_max_bytes(),
            from: AuditFrom::Start,
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let mut bad = receiver("a b", "nohost");
        bad.facility = 40;
        bad.transport = Transport::Tls {
            ca_pem: "/nonexistent/ca.pem".into(),
            server_name: None,
        };
        let cfg = ForwarderConfig {
            queue_dir: "/tmp".into(),
            hostname: "h".into(),
            product_version: "1".into(),
            receivers: vec![bad, receiver("ok", "[::1]:514"), receiver("ok", "h:1")],
            timing: Timing::default(),
        };
        let keys: Vec<String> = cfg.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "receivers[0].name",
                "receivers[0].address",
                "receivers[0].facility",
                "receivers[0].transport.ca_pem",
                "receivers[2].name",
            ]
        );
    }

    #[test]
    fn host_port_splits_v6() {
        assert_eq!(split_host_port("[::1]:6514"), Some(("::1".into(), 6514)));
        assert_eq!(split_host_port("h:0"), None);
    }
}
