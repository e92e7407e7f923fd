//! Arbitrary bytes as a control-message payload; valid ones must re-encode
//! to a stable form (bytes are compared, not values: floats may be NaN).
#![no_main]
use libfuzzer_sys::fuzz_target;
use vigil_proto::{decode_frame, ControlMessage};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = ControlMessage::from_payload(data) {
        let once = msg.to_frame().expect("a decoded message re-encodes");
        let payload = decode_frame(&once).expect("its frame decodes").payload;
        let again = ControlMessage::from_payload(payload).expect("re-decodes");
        assert_eq!(once, again.to_frame().expect("re-encodes"));
    }
});
