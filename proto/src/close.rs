//! QUIC application close codes: why the appliance closed a sensor's
//! connection. Both ends read them from here, so a sensor can tell
//! "revoked, stop retrying" from "shutting down, retry later".
//!
//! The numbers are on the wire: never renumber, only append.

use std::fmt;

/// Why a connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CloseCode {
    /// The host's certificate is revoked.
    Revoked = 0x10,
    /// No client certificate on the ingest ALPN.
    NoCert = 0x11,
    /// Certificate valid but host unknown to this appliance.
    UnknownHost = 0x12,
    /// Protocol violation on the control stream (or unknown ALPN, or
    /// enrollment busy).
    Protocol = 0x13,
    /// The appliance is shutting down.
    Shutdown = 0x14,
    /// A newer connection of the same host replaced this one.
    Replaced = 0x15,
}

/// Close code: the host's certificate is revoked.
pub const REVOKED: u32 = CloseCode::Revoked as u32;
/// Close code: no client certificate on the ingest ALPN.
pub const NO_CERT: u32 = CloseCode::NoCert as u32;
/// Close code: certificate valid but host unknown to this appliance.
pub const UNKNOWN_HOST: u32 = CloseCode::UnknownHost as u32;
/// Close code: protocol violation on the control stream.
pub const PROTOCOL: u32 = CloseCode::Protocol as u32;
/// Close code: the appliance is shutting down.
pub const SHUTDOWN: u32 = CloseCode::Shutdown as u32;
/// Close code: a newer connection of the same host replaced this one.
pub const REPLACED: u32 = CloseCode::Replaced as u32;

impl CloseCode {
    /// All codes, in numeric order.
    pub const ALL: [CloseCode; 6] = [
        CloseCode::Revoked,
        CloseCode::NoCert,
        CloseCode::UnknownHost,
        CloseCode::Protocol,
        CloseCode::Shutdown,
        CloseCode::Replaced,
    ];

    /// The number sent in the QUIC CONNECTION_CLOSE frame.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The code for a number, if it is one of ours.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// A short, stable label for logs and counters.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Revoked => "revoked",
            CloseCode::NoCert => "no_cert",
            CloseCode::UnknownHost => "unknown_host",
            CloseCode::Protocol => "protocol",
            CloseCode::Shutdown => "shutdown",
            CloseCode::Replaced => "replaced",
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// The stable label of a close code number; `"unknown"` for numbers that
/// are not ours (0 is QUIC's own "no error", others may come from peers).
pub fn reason(code: u32) -> &'static str {
    CloseCode::from_code(code).map_or("unknown", CloseCode::reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_keep_their_numbers_and_labels() {
        let pinned = [
            (REVOKED, 0x10, "revoked"),
            (NO_CERT, 0x11, "no_cert"),
            (UNKNOWN_HOST, 0x12, "unknown_host"),
            (PROTOCOL, 0x13, "protocol"),
            (SHUTDOWN, 0x14, "shutdown"),
            (REPLACED, 0x15, "replaced"),
        ];
        assert_eq!(pinned.len(), CloseCode::ALL.len());
        for ((konst, number, label), code) in pinned.into_iter().zip(CloseCode::ALL) {
            assert_eq!(konst, number);
            assert_eq!(code.code(), number);
            assert_eq!(CloseCode::from_code(number), Some(code));
            assert_eq!(reason(number), label);
            assert_eq!(code.to_string(), label);
        }
        assert_eq!(reason(0), "unknown");
        assert_eq!(reason(0x16), "unknown");
        assert_eq!(CloseCode::from_code(0x0f), None);
    }
}
