//! The remote workflow ([`vigil_update::remote`]) as a sensor runs it
//! against the appliance, here over an in-memory repository built by the
//! real signing side: good, tampered target, tampered metadata, wrong key,
//! rollback, freeze, root rotation.

use sha2::{Digest, Sha256};
use vigil_update::remote::{fetch_target, refresh, MemoryRepo};
use vigil_update::verify::TrustedState;
use vigil_update::{VerifyError, VerifyOptions};

use crate::support::*;

const SENSOR: &str = "vigil-sensor-linux-x86_64";

/// A sensor's trust: the repository's root 1, nothing else seen.
fn enrolled(f: &Fixture) -> TrustedState {
    TrustedState::from_root_file(&std::fs::read(f.path("repo/metadata/1.root.json")).unwrap())
        .unwrap()
}

fn served(f: &Fixture) -> MemoryRepo {
    MemoryRepo::from_dir(&f.path("repo")).unwrap()
}

fn release(f: &Fixture, name: &str, sensor: &[u8], days: u64) {
    f.release(
        name,
        &[(SENSOR, sensor), ("appliance.img", b"img")],
        at(days),
    );
}

#[test]
fn good_release_verifies_and_its_target_is_fetched_alone() {
    let f = Fixture::new();
    release(&f, "2.0", b"sensor two", 1);
    let mut repo = served(&f);
    let v = refresh(&mut repo, &enrolled(&f), &VerifyOptions::at(at(2))).unwrap();
    assert_eq!((v.release, v.release_name.as_deref()), (2, Some("2.0")));
    let bytes = fetch_target(&mut repo, &v, SENSOR).unwrap();
    assert_eq!(bytes, b"sensor two");
    assert_eq!(
        v.targets[SENSOR].hashes["sha256"],
        hex::encode(Sha256::digest(&bytes))
    );
    assert_eq!(
        repo.requests,
        [
            "metadata/2.root.json",
            "metadata/timestamp.json",
            "metadata/snapshot.json",
            "metadata/targets.json",
            &format!("targets/{SENSOR}"),
        ],
        "one file at a time, in TUF order, and only the named target"
    );
    // The new state is what the caller persists: the same set again is
    // accepted (nothing newer), an older one is not (below).
    let again = refresh(&mut served(&f), &v.state, &VerifyOptions::at(at(3))).unwrap();
    assert_eq!(again.release, 2);
}

#[test]
fn tampered_or_oversized_target_is_refused() {
    let f = Fixture::new();
    release(&f, "2.0", b"sensor two", 1);
    let opts = VerifyOptions::at(at(2));
    let mut repo = served(&f);
    repo.files
        .insert(format!("targets/{SENSOR}"), b"sensor tw0".to_vec());
    let v = refresh(&mut repo, &enrolled(&f), &opts).unwrap();
    let err = fetch_target(&mut repo, &v, SENSOR).unwrap_err();
    assert_eq!(err.reason(), "target_altered", "{err}");
    assert!(err.to_string().contains("sha256"), "{err}");
    repo.files.insert(
        format!("targets/{SENSOR}"),
        b"sensor two and a payload".to_vec(),
    );
    let err = fetch_target(&mut repo, &v, SENSOR).unwrap_err();
    assert_eq!(err.reason(), "target_altered", "{err}");
    assert!(
        err.to_string().contains("longer than the 10 bytes"),
        "{err}"
    );
    let err = fetch_target(&mut repo, &v, "evil.sh").unwrap_err();
    assert_eq!(err.reason(), "missing", "{err}");
}

#[test]
fn tampered_metadata_is_refused() {
    let f = Fixture::new();
    release(&f, "2.0", b"sensor two", 1);
    let mut repo = served(&f);
    let targets = repo.files.get_mut("metadata/targets.json").unwrap();
    let text = String::from_utf8(targets.clone()).unwrap();
    *targets = text.replace("\"2.0\"", "\"2.1\"").into_bytes();
    let err = refresh(&mut repo, &enrolled(&f), &VerifyOptions::at(at(2))).unwrap_err();
    assert_eq!(err.reason(), "mismatch", "{err}");
    assert!(
        err.to_string()
            .contains("targets.json does not match what snapshot signed"),
        "{err}"
    );
}

#[test]
fn metadata_signed_with_another_key_is_refused() {
    let f = Fixture::new();
    release(&f, "2.0", b"sensor two", 1);
    let stranger = KeySet::new(100);
    let mut repo = served(&f);
    let ts = repo.files["metadata/timestamp.json"].clone();
    repo.files.insert(
        "metadata/timestamp.json".into(),
        resign(&ts, &[&stranger.timestamp], |_| {}),
    );
    let err = refresh(&mut repo, &enrolled(&f), &VerifyOptions::at(at(2))).unwrap_err();
    assert_eq!(err.reason(), "signatures", "{err}");
    assert!(
        repo.requests.last().unwrap().ends_with("timestamp.json"),
        "nothing fetched past the refusal: {:?}",
        repo.requests
    );
}

#[test]
fn an_older_metadata_set_is_refused_once_a_newer_one_was_trusted() {
    let f = Fixture::new();
    release(&f, "2.0", b"sensor two", 1);
    let old = served(&f);
    release(&f, "3.0", b"sensor three", 2);
    let v3 = refresh(&mut served(&f), &enrolled(&f), &VerifyOptions::at(at(3))).unwrap();
    assert_eq!(v3.release, 3);
    let err = refresh(&mut old.clone(), &v3.state, &VerifyOptions::at(at(3))).unwrap_err();
    assert_eq!(err.reason(), "rollback", "{err}");
    assert!(
        err.to_string()
            .contains("timestamp version 2 is older than the trusted version 3"),
        "{err}"
    );
}

#[test]
fn frozen_metadata_expires() {
    let f = Fixture::new();
    release(&f, "2.0", b"sensor two", 1);
    // The timestamp expires 30 days after day 1, with one day of grace.
    refresh(&mut served(&f), &enrolled(&f), &VerifyOptions::at(at(31))).unwrap();
    let err = refresh(&mut served(&f), &enrolled(&f), &VerifyOptions::at(at(33))).unwrap_err();
    assert!(matches!(err, VerifyError::Expired { .. }), "{err}");
    assert!(
        err.to_string().contains("timestamp metadata expired at"),
        "{err}"
    );
}

#[test]
fn root_rotation_is_followed_until_the_next_root_is_absent() {
    let f = Fixture::new();
    let new = KeySet::new(30);
    let mut signers = f.keys.root[..2].to_vec();
    signers.extend_from_slice(&new.root[..2]);
    f.repo.rotate_root(&new.spec(), &signers).unwrap();
    f.release_with("2.0", &[(SENSOR, b"two")], at(1), &new.online());
    let mut repo = served(&f);
    let v = refresh(&mut repo, &enrolled(&f), &VerifyOptions::at(at(2))).unwrap();
    assert_eq!(v.root_rotation, Some((1, 2)));
    assert_eq!(v.state.root().unwrap().version, 2);
    assert_eq!(
        &repo.requests[..2],
        ["metadata/2.root.json", "metadata/3.root.json"]
    );
    assert_eq!(fetch_target(&mut repo, &v, SENSOR).unwrap(), b"two");

    // A root 2 the old root keys did not sign: refused, trust stays at 1.
    let g = Fixture::new();
    let evil = KeySet::new(50);
    g.release_with("2.0", &[(SENSOR, b"evil")], at(1), &g.keys.online());
    let mut repo = served(&g);
    let root2 = vigil_update::metadata::sign(
        &vigil_update::pack::root_metadata(&evil.spec(), 2),
        &[&evil.root[0], &evil.root[1]],
    );
    repo.files.insert("metadata/2.root.json".into(), root2);
    let err = refresh(&mut repo, &enrolled(&g), &VerifyOptions::at(at(2))).unwrap_err();
    assert!(
        err.to_string()
            .contains("2.root.json: signed by 0 valid root key(s), 2 required"),
        "{err}"
    );
}
