//! Reading and writing proto frames on QUIC streams.

use thiserror::Error;
use vigil_proto::frame::HEADER_LEN;
use vigil_proto::{ControlMessage, FrameHeader, FrameKind, ProtoError};

/// A frame could not be read.
#[derive(Debug, Error)]
pub enum WireError {
    /// The stream failed or ended early.
    #[error("stream read: {0}")]
    Read(#[from] quinn::ReadExactError),
    /// The stream could not be written.
    #[error("stream write: {0}")]
    Write(#[from] quinn::WriteError),
    /// The stream was already closed.
    #[error("stream closed: {0}")]
    Closed(#[from] quinn::ClosedStream),
    /// The bytes are not a valid frame or message.
    #[error("bad frame: {0}")]
    Proto(#[from] ProtoError),
    /// A frame of an unexpected kind arrived.
    #[error("expected a control frame, got {0:?}")]
    UnexpectedKind(FrameKind),
}

/// Read one frame: the 6-byte header, checked, then exactly `len` bytes.
pub async fn read_frame(recv: &mut quinn::RecvStream) -> Result<(FrameKind, Vec<u8>), WireError> {
    let mut hdr = [0u8; HEADER_LEN];
    recv.read_exact(&mut hdr).await?;
    let header = FrameHeader::parse(&hdr)?;
    let mut payload = vec![0u8; header.len];
    recv.read_exact(&mut payload).await?;
    Ok((header.kind, payload))
}

/// Read one control frame and decode its message.
pub async fn read_control(recv: &mut quinn::RecvStream) -> Result<ControlMessage, WireError> {
    let (kind, payload) = read_frame(recv).await?;
    if kind != FrameKind::Control {
        return Err(WireError::UnexpectedKind(kind));
    }
    Ok(ControlMessage::from_payload(&payload)?)
}

/// Write one control message as a frame.
pub async fn write_control(
    send: &mut quinn::SendStream,
    msg: &ControlMessage,
) -> Result<(), WireError> {
    send.write_all(&msg.to_frame()?).await?;
    Ok(())
}
