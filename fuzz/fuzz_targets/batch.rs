//! Arbitrary bytes as a compressed batch payload; valid ones must re-encode
//! to a stable form (bytes are compared, not values: floats may be NaN).
#![no_main]
use libfuzzer_sys::fuzz_target;
use vigil_proto::{decode_batch, encode_batch};

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = decode_batch(data) {
        let once = encode_batch(&batch).expect("a decoded batch re-encodes");
        let twice = encode_batch(&decode_batch(&once).expect("re-decodes")).expect("re-encodes");
        assert_eq!(once, twice);
    }
});
