//! Batches two ways from the same input:
//! 1. as a compressed batch payload, exactly what arrives on the wire;
//! 2. as the *decoded* (postcard) bytes of a batch, compressed here with zstd
//!    level 1, so the fuzzer reaches postcard decoding instead of stopping at
//!    zstd's checksum and magic.
//!
//! Whatever decodes must stay within the memory budget the decoder claims to
//! enforce, and re-encode to a stable form (bytes are compared, not values:
//! floats may be NaN).
#![no_main]
use libfuzzer_sys::fuzz_target;
use vigil_proto::limits::{MAX_BATCH_DECODED_BYTES, MAX_BATCH_MEMORY_BYTES};
use vigil_proto::{decode_batch, decode_batch_postcard, encode_batch, Batch};

fn check(batch: &Batch) {
    let accounted = batch.memory_bytes();
    assert!(
        accounted <= MAX_BATCH_MEMORY_BYTES,
        "{accounted} bytes decoded"
    );
    let once = encode_batch(batch).expect("a decoded batch re-encodes");
    let twice = encode_batch(&decode_batch(&once).expect("re-decodes")).expect("re-encodes");
    assert_eq!(once, twice);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = decode_batch(data) {
        check(&batch);
    }
    if data.len() <= MAX_BATCH_DECODED_BYTES {
        let direct = decode_batch_postcard(data);
        let compressed = zstd::bulk::compress(data, 1).expect("zstd compresses");
        let via_wire = decode_batch(&compressed);
        assert_eq!(
            direct.as_ref().err(),
            via_wire.as_ref().err(),
            "both paths agree"
        );
        if let Ok((batch, accounted)) = direct {
            assert_eq!(accounted, batch.memory_bytes(), "the account is exact");
            check(&batch);
        }
    }
});
