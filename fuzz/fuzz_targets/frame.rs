//! Arbitrary bytes as a whole frame, then as whatever its kind says it holds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vigil_proto::{decode_batch, decode_frame, ControlMessage, FrameKind};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = decode_frame(data) {
        match frame.kind {
            FrameKind::Control => {
                let _ = ControlMessage::from_payload(frame.payload);
            }
            FrameKind::Batch => {
                let _ = decode_batch(frame.payload);
            }
        }
    }
});
