//! Control-stream and enrollment messages.
//!
//! Sensor → appliance: `Hello`, `Heartbeat`, `CommandResult`, `Enroll`, `Renew`
//! (and `UnsignedResult`, the answer to a legacy unsigned command).
//! Appliance → sensor: `Welcome`, `Ack`, `Command` (signed, see
//! [`crate::command`]), `Enrolled`/`EnrolledV2`, `Refused`, `Renewed`.
//!
//! Sensors and appliances of different builds talk to each other in postcard,
//! which writes fields in declaration order and enum variants by index:
//! never reorder, only append variants; pinned by `tests/golden.rs`. Adding
//! a struct field changes the format too (postcard has no field defaults).

use crate::bounded::{decode_exact, DecodeLimits};
use crate::command::{Command, CommandAction, CommandResult};
use crate::error::ProtoError;
use crate::event::{HostId, SensorHealth};
use crate::frame::{encode_frame, FrameKind};
use crate::limits::{MAX_CONTROL_BYTES, MAX_CONTROL_MEMORY_BYTES, MAX_EVENT_STRING_BYTES};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// One message on a control stream (or on an enrollment connection).
///
/// Never reorder, only append; pinned by `tests/golden.rs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ControlMessage {
    /// First message of a sensor on a fresh connection.
    Hello(Hello),
    /// The appliance's answer to `Hello`.
    Welcome(Welcome),
    /// Periodic liveness and health.
    Heartbeat(Heartbeat),
    /// A batch (its seq range) is durably stored.
    Ack(Ack),
    /// The pre-signing form of a response command (index 4). Sensors of
    /// this build never execute it: they answer `UnsignedResult` with the
    /// `unsigned` refusal, so an older appliance learns why.
    UnsignedCommand(UnsignedCommand),
    /// The pre-signing form of a command's outcome (index 5).
    UnsignedResult(UnsignedResult),
    /// A sensor asks for a client certificate.
    Enroll(EnrollRequest),
    /// Enrollment succeeded.
    Enrolled(EnrollResponse),
    /// The appliance refuses (bad token, unsupported version, revoked…).
    Refused(Refusal),
    /// A connected sensor asks for a new client certificate (on its control
    /// stream, after `Welcome`); answered by `Renewed` or a `Refused` whose
    /// code starts with [`RENEW_REFUSAL_PREFIX`].
    Renew(RenewRequest),
    /// The renewed client certificate.
    Renewed(RenewResponse),
    /// A signed response command to carry out (see [`crate::command`]).
    Command(Command),
    /// The sensor's receipt for a `Command`: done, failed or refused, with
    /// the proof of its effect.
    CommandResult(CommandResult),
    /// Enrollment succeeded; also carries the appliance's command key.
    /// An appliance sends it to sensors that enrolled over
    /// [`crate::ALPN_ENROLL_V2`]; `Enrolled` stays for older sensors.
    EnrolledV2(EnrollResponseV2),
    /// The sensor has received the `Command` with this id and is carrying it
    /// out (sent before it runs, so the appliance can tell *delivered* from
    /// *done*; a command without one was never received).
    CommandReceived(u64),
}

impl ControlMessage {
    /// Encode as a complete control frame (header + postcard payload).
    pub fn to_frame(&self) -> Result<Vec<u8>, ProtoError> {
        let payload = postcard::to_allocvec(self).map_err(|e| ProtoError::Encode(e.to_string()))?;
        encode_frame(FrameKind::Control, &payload)
    }

    /// Decode the payload of a control frame (see [`decode_control`]).
    pub fn from_payload(payload: &[u8]) -> Result<Self, ProtoError> {
        decode_control(payload)
    }
}

/// Bounds for everything inside a control message. Sequences are byte
/// blobs (CSR, certificates, command output) as large as the payload, so
/// their cap is the payload cap: what really bounds them is that a claim
/// longer than the bytes left is refused.
const CONTROL_LIMITS: DecodeLimits = DecodeLimits {
    max_string: MAX_EVENT_STRING_BYTES,
    max_items: MAX_CONTROL_BYTES,
    max_memory: MAX_CONTROL_MEMORY_BYTES,
};

/// Decode the payload of a control frame with every bound applied while
/// decoding: at most [`MAX_CONTROL_BYTES`] of input, strings up to
/// [`MAX_EVENT_STRING_BYTES`], no sequence claiming more items than bytes
/// left, and at most [`MAX_CONTROL_MEMORY_BYTES`] of decoded memory.
pub fn decode_control(payload: &[u8]) -> Result<ControlMessage, ProtoError> {
    if payload.len() > MAX_CONTROL_BYTES {
        return Err(ProtoError::FrameTooLarge {
            declared: payload.len(),
            limit: MAX_CONTROL_BYTES,
        });
    }
    decode_exact(payload, CONTROL_LIMITS)
}

/// A sensor introduces itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol versions the sensor can speak.
    pub protocol_versions: Vec<u8>,
    pub sensor_version: String,
    pub hostname: String,
    pub os: String,
    pub addrs: Vec<IpAddr>,
    /// The next seq the sensor will assign (its high-water mark + 1).
    pub next_seq: u64,
}

/// Settings the appliance pushes to a sensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorConfig {
    pub heartbeat_ms: u32,
    pub batch_max_events: u32,
    pub batch_max_ms: u32,
    /// CPU budget, percent of one core, above which low-value events are aggregated.
    pub cpu_budget_pct: f32,
}

impl Default for SensorConfig {
    fn default() -> Self {
        SensorConfig {
            heartbeat_ms: 10_000,
            batch_max_events: 2_000,
            batch_max_ms: 500,
            cpu_budget_pct: 1.0,
        }
    }
}

/// The appliance accepts a sensor's hello.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The version chosen for this connection.
    pub protocol_version: u8,
    /// The host id bound to the sensor's certificate.
    pub host: HostId,
    pub config: SensorConfig,
    /// Highest seq the appliance has stored for this host (0 if none); the
    /// sensor may drop spooled records at or below it.
    pub stored_up_to: u64,
}

/// Liveness plus the sensor's self-measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub ts_ns: u64,
    pub health: SensorHealth,
}

/// The events `first_seq..=last_seq` of one batch are durably stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub first_seq: u64,
    pub last_seq: u64,
    /// How many of them were already stored (retries).
    pub duplicates: u32,
}

/// A response command as sent before commands were signed (the payload of
/// [`ControlMessage::UnsignedCommand`]). Kept so its bytes still decode;
/// sensors refuse it as `unsigned`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsignedCommand {
    /// Command id.
    pub id: u64,
    /// Operator who issued it.
    pub operator: String,
    /// Why.
    pub reason: String,
    /// When it was issued, ns since the Unix epoch.
    pub issued_ns: u64,
    /// What to do.
    pub action: CommandAction,
}

/// A command's outcome as answered before receipts existed (the payload of
/// [`ControlMessage::UnsignedResult`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsignedResult {
    /// Command id.
    pub id: u64,
    /// Whether it was carried out.
    pub ok: bool,
    /// What happened.
    pub message: String,
    /// Attached output.
    pub data: Vec<u8>,
}

/// Enrollment request: a one-time token plus a CSR for the sensor's own key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub token: String,
    /// PKCS#10 certificate signing request, DER.
    pub csr_der: Vec<u8>,
    pub hostname: String,
    pub os: String,
    pub sensor_version: String,
}

/// Enrollment result: the signed client certificate and the CA to pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub host: HostId,
    pub cert_der: Vec<u8>,
    pub ca_der: Vec<u8>,
}

/// Enrollment result with the appliance's command key: what
/// [`EnrollResponse`] carries plus the Ed25519 public key whose signatures
/// the sensor accepts on [`Command`]s. A new message rather than a new
/// field, because postcard is positional: an older sensor would misread an
/// `EnrollResponse` with an extra field, while an unknown variant is a clean
/// decode error it reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponseV2 {
    /// The host id bound to the certificate.
    pub host: HostId,
    /// Client certificate, DER.
    pub cert_der: Vec<u8>,
    /// The appliance CA to pin, DER.
    pub ca_der: Vec<u8>,
    /// The appliance's command public key (Ed25519, 32 bytes).
    pub command_key: [u8; 32],
}

/// Why the appliance refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Stable machine-readable code (`token_expired`, `token_used`, `version`, `revoked`…).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// Certificate renewal request: a CSR for a NEW key. The appliance signs it
/// for the host id of the connection's certificate, never for a name in the
/// CSR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRequest {
    /// PKCS#10 certificate signing request, DER.
    pub csr_der: Vec<u8>,
}

/// Renewal result: the new client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewResponse {
    /// Client certificate for the new key, DER.
    pub cert_der: Vec<u8>,
    /// When it expires, ns since the Unix epoch.
    pub not_after_ns: u64,
}

/// Every refusal of a `Renew` has a code starting with this, so a sensor
/// can tell "no new certificate this time" (logged, retried on the next
/// connection) from a refusal that ends the connection.
pub const RENEW_REFUSAL_PREFIX: &str = "renew_";

/// Whether a certificate valid from `not_before_s` to `not_after_s` (Unix
/// seconds, as in X.509) is due for renewal at `now_s`: less than a third
/// of its lifetime is left. The sensor asks by this rule and the appliance
/// refuses earlier requests by the same rule, which also rate-limits
/// renewals. An expired certificate is due; one with no lifetime is not.
pub fn renewal_due(not_before_s: i64, not_after_s: i64, now_s: i64) -> bool {
    let life = i128::from(not_after_s) - i128::from(not_before_s);
    let left = i128::from(not_after_s) - i128::from(now_s);
    life > 0 && left * 3 < life
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_in_the_last_third_of_the_lifetime() {
        // 90 units of life: due once fewer than 30 are left.
        assert!(!renewal_due(0, 90, 0));
        assert!(!renewal_due(0, 90, 60));
        assert!(renewal_due(0, 90, 61));
        assert!(renewal_due(0, 90, 200), "expired is due");
        assert!(!renewal_due(10, 10, 10), "no lifetime");
        assert!(!renewal_due(i64::MIN, i64::MAX, 0), "no overflow");
    }
}
