//! Length-prefixed, versioned frames: `[version u8][kind u8][len u32 BE][payload]`.
//!
//! Readers call [`FrameHeader::parse`] on the first [`HEADER_LEN`] bytes and
//! so learn — and check against the cap — the payload size before reading
//! or allocating it.

use crate::error::ProtoError;
use crate::limits::{MAX_CONTROL_BYTES, MAX_FRAME_BYTES};
use crate::PROTOCOL_VERSION;

/// Size of the fixed frame header.
pub const HEADER_LEN: usize = 6;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A postcard-encoded [`crate::ControlMessage`].
    Control = 1,
    /// A zstd-compressed, postcard-encoded [`crate::Batch`].
    Batch = 2,
}

impl FrameKind {
    /// Kind from its byte.
    pub fn from_byte(b: u8) -> Result<Self, ProtoError> {
        match b {
            1 => Ok(FrameKind::Control),
            2 => Ok(FrameKind::Batch),
            other => Err(ProtoError::UnknownFrameKind(other)),
        }
    }

    /// Largest payload accepted for this kind.
    pub fn limit(self) -> usize {
        match self {
            FrameKind::Control => MAX_CONTROL_BYTES,
            FrameKind::Batch => MAX_FRAME_BYTES,
        }
    }
}

/// A parsed and checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub version: u8,
    pub kind: FrameKind,
    /// Payload length, already checked against `kind.limit()`.
    pub len: usize,
}

impl FrameHeader {
    /// Parse and validate a header from the first [`HEADER_LEN`] bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ProtoError> {
        if bytes.len() < HEADER_LEN {
            return Err(ProtoError::TruncatedHeader {
                need: HEADER_LEN,
                have: bytes.len(),
            });
        }
        let version = bytes[0];
        if version != PROTOCOL_VERSION {
            return Err(ProtoError::UnsupportedVersion {
                got: version,
                supported: PROTOCOL_VERSION,
            });
        }
        let kind = FrameKind::from_byte(bytes[1])?;
        let len = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]) as usize;
        if len > kind.limit() {
            return Err(ProtoError::FrameTooLarge {
                declared: len,
                limit: kind.limit(),
            });
        }
        Ok(FrameHeader { version, kind, len })
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let len = (self.len as u32).to_be_bytes();
        [
            self.version,
            self.kind as u8,
            len[0],
            len[1],
            len[2],
            len[3],
        ]
    }
}

/// A decoded frame borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: FrameKind,
    pub payload: &'a [u8],
}

/// Wrap a payload in a frame; refuses payloads above the kind's cap.
pub fn encode_frame(kind: FrameKind, payload: &[u8]) -> Result<Vec<u8>, ProtoError> {
    if payload.len() > kind.limit() {
        return Err(ProtoError::FrameTooLarge {
            declared: payload.len(),
            limit: kind.limit(),
        });
    }
    let header = FrameHeader {
        version: PROTOCOL_VERSION,
        kind,
        len: payload.len(),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Decode exactly one frame occupying all of `bytes`.
pub fn decode_frame(bytes: &[u8]) -> Result<Frame<'_>, ProtoError> {
    let header = FrameHeader::parse(bytes)?;
    let body = &bytes[HEADER_LEN..];
    if body.len() < header.len {
        return Err(ProtoError::TruncatedPayload {
            declared: header.len,
            have: body.len(),
        });
    }
    if body.len() > header.len {
        return Err(ProtoError::TrailingBytes(body.len() - header.len));
    }
    Ok(Frame {
        kind: header.kind,
        payload: body,
    })
}
