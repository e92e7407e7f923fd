//! Arbitrary bytes as a control-message payload through the bounded decoder
//! (`decode_control`, which `ControlMessage::from_payload` uses): never a
//! panic, every refusal a typed error with a stable label, and valid
//! messages re-encode to a stable form (bytes are compared, not values:
//! floats may be NaN).
#![no_main]
use libfuzzer_sys::fuzz_target;
use vigil_proto::{decode_control, decode_frame, ControlMessage};

fuzz_target!(|data: &[u8]| {
    match decode_control(data) {
        Ok(msg) => {
            let once = msg.to_frame().expect("a decoded message re-encodes");
            let payload = decode_frame(&once).expect("its frame decodes").payload;
            let again = ControlMessage::from_payload(payload).expect("re-decodes");
            assert_eq!(once, again.to_frame().expect("re-encodes"));
        }
        Err(e) => assert!(!e.reason().is_empty()),
    }
});
