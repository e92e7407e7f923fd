//! Arbitrary bytes as a bundle never panic, and a valid bundle with any
//! one byte changed is either refused or still carries exactly the signed
//! release (a changed byte in tar padding or a header field that does not
//! matter).

mod support;

use std::io::Cursor;

use proptest::prelude::*;
use support::*;
use vigil_update::{Bundle, TrustedState, VerifyOptions};

fn trusted(f: &Fixture) -> TrustedState {
    TrustedState::from_root_file(&std::fs::read(f.path("repo/metadata/1.root.json")).unwrap())
        .unwrap()
}

/// One repository for every case: release 2's bundle and the root.
fn shared() -> &'static (Fixture, Vec<u8>) {
    static SHARED: std::sync::OnceLock<(Fixture, Vec<u8>)> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let f = Fixture::new();
        let path = f.release("2.0", &[("appliance.img", b"image two")], at(1));
        let bytes = std::fs::read(path).unwrap();
        (f, bytes)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let (f, _) = shared();
        if let Ok(mut bundle) = Bundle::read(Cursor::new(bytes)) {
            let _ = bundle.verify(&trusted(f), &VerifyOptions::at(at(2)));
        }
    }

    #[test]
    fn one_changed_byte_is_refused_or_harmless(pos in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let (f, good) = shared();
        let mut bytes = good.clone();
        let i = pos.index(bytes.len());
        bytes[i] ^= xor;
        if let Ok(mut bundle) = Bundle::read(Cursor::new(bytes)) {
            if let Ok(v) = bundle.verify(&trusted(f), &VerifyOptions::at(at(2))) {
                let mut out = Vec::new();
                let desc = &v.targets["appliance.img"];
                bundle.copy_target("appliance.img", desc, &mut out).unwrap();
                prop_assert_eq!(out, b"image two".to_vec());
                prop_assert_eq!(v.release, 2);
            }
        }
    }
}
