//! Reading and writing frames on QUIC streams: the header is parsed and
//! size-checked before a single payload byte is read or allocated.

use quinn::{RecvStream, SendStream};
use std::time::Duration;
use vigil_proto::frame::{FrameHeader, FrameKind, HEADER_LEN};
use vigil_proto::{ControlMessage, ProtoError};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameReadError {
    /// The stream ended cleanly before any byte of a new frame.
    #[error("stream finished")]
    Finished,
    /// The bytes were wrong.
    #[error(transparent)]
    Proto(#[from] ProtoError),
    /// A frame of another kind than expected.
    #[error("unexpected frame kind {0:?}")]
    UnexpectedKind(FrameKind),
    /// The peer went away or reset the stream.
    #[error("stream: {0}")]
    Stream(String),
    /// Nothing arrived in time.
    #[error("timed out")]
    Timeout,
}

impl FrameReadError {
    /// Short label for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            FrameReadError::Finished => "finished",
            FrameReadError::Proto(e) => e.reason(),
            FrameReadError::UnexpectedKind(_) => "unexpected_kind",
            FrameReadError::Stream(_) => "stream_error",
            FrameReadError::Timeout => "timeout",
        }
    }
}

/// Most bytes taken from the stream per read.
const READ_CHUNK: usize = 64 * 1024;

/// Read one frame of `kind`; returns its payload.
pub async fn read_frame(
    recv: &mut RecvStream,
    kind: FrameKind,
    timeout: Duration,
) -> Result<Vec<u8>, FrameReadError> {
    tokio::time::timeout(timeout, read_frame_inner(recv, kind))
        .await
        .map_err(|_| FrameReadError::Timeout)?
}

async fn read_frame_inner(
    recv: &mut RecvStream,
    kind: FrameKind,
) -> Result<Vec<u8>, FrameReadError> {
    let mut header = [0u8; HEADER_LEN];
    let mut have = 0;
    while have < HEADER_LEN {
        match recv.read(&mut header[have..]).await {
            Ok(Some(n)) => have += n,
            Ok(None) if have == 0 => return Err(FrameReadError::Finished),
            Ok(None) => {
                return Err(ProtoError::TruncatedHeader {
                    need: HEADER_LEN,
                    have,
                }
                .into())
            }
            Err(e) => return Err(FrameReadError::Stream(e.to_string())),
        }
    }
    let header = FrameHeader::parse(&header)?;
    if header.kind != kind {
        return Err(FrameReadError::UnexpectedKind(header.kind));
    }
    // The buffer grows as bytes arrive: a peer that announces 16 MiB and
    // sends nothing costs us nothing (this runs before the peer is known
    // on enrollment connections).
    let mut payload = Vec::with_capacity(header.len.min(READ_CHUNK));
    while payload.len() < header.len {
        let want = (header.len - payload.len()).min(READ_CHUNK);
        match recv.read_chunk(want, true).await {
            Ok(Some(chunk)) => payload.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                return Err(FrameReadError::Proto(ProtoError::TruncatedPayload {
                    declared: header.len,
                    have: payload.len(),
                }))
            }
            Err(e) => return Err(FrameReadError::Stream(e.to_string())),
        }
    }
    Ok(payload)
}

/// Read one control message.
pub async fn read_control(
    recv: &mut RecvStream,
    timeout: Duration,
) -> Result<ControlMessage, FrameReadError> {
    let payload = read_frame(recv, FrameKind::Control, timeout).await?;
    Ok(ControlMessage::from_payload(&payload)?)
}

/// Write one control message.
pub async fn write_control(send: &mut SendStream, msg: &ControlMessage) -> Result<(), String> {
    let frame = msg.to_frame().map_err(|e| e.to_string())?;
    send.write_all(&frame).await.map_err(|e| e.to_string())
}
