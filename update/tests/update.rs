//! Update scenarios, end to end through the library the CLI calls: a
//! signing repository, bundles on disk, an appliance state directory with
//! directory "partitions" and a data directory beside them.

mod support;

#[path = "cases/remote.rs"]
mod remote;

use std::path::PathBuf;

use support::*;
use vigil_update::pack::root_metadata;
use vigil_update::slots::SlotStatus;
use vigil_update::{HealthOutcome, Slot, UpdateError, VerifyError};

const IMAGE2: &[u8] = b"image two";

fn release2(f: &Fixture) -> PathBuf {
    f.release(
        "2.0",
        &[
            ("appliance.img", IMAGE2),
            ("vigil-sensor_2.0_amd64.deb", b"deb"),
        ],
        at(1),
    )
}

#[test]
fn good_update_switches_slots_and_keeps_data() {
    let f = Fixture::new();
    let data = f.tree("data");
    let report = f.apply_at(&release2(&f), at(2)).unwrap();
    assert_eq!((report.slot, report.release), (Slot::B, 2));
    assert_eq!(report.release_name.as_deref(), Some("2.0"));
    let st = vigil_update::status(&f.store).unwrap();
    assert_eq!(
        (st.active, st.next_boot, st.b.status),
        (Slot::A, Slot::B, SlotStatus::Pending)
    );

    assert_eq!(f.boot_and_check(true), HealthOutcome::Committed(Slot::B));
    let st = vigil_update::status(&f.store).unwrap();
    assert_eq!((st.active, st.booted, st.b.release), (Slot::B, Slot::B, 2));
    assert_eq!(
        std::fs::read(f.path("slots/b/appliance.img")).unwrap(),
        IMAGE2
    );
    assert_eq!(
        std::fs::read(f.path("slots/a/appliance.img")).unwrap(),
        b"image one",
        "previous slot kept"
    );
    assert_eq!(f.tree("data"), data, "data directory untouched");

    // The next release goes to the slot not running: A.
    let r3 = f.release("3.0", &[("appliance.img", b"image three")], at(3));
    assert_eq!(f.apply_at(&r3, at(3)).unwrap().slot, Slot::A);
}

#[test]
fn state_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    f.apply_at(&release2(&f), at(2)).unwrap();
    let mode = std::fs::metadata(f.store.path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn failed_health_check_rolls_back_by_itself() {
    let f = Fixture::new();
    let data = f.tree("data");
    f.apply_at(&release2(&f), at(2)).unwrap();
    assert_eq!(
        f.boot_and_check(false),
        HealthOutcome::RolledBack {
            failed: Slot::B,
            to: Slot::A
        }
    );
    let decision = vigil_update::boot(&f.store).unwrap();
    assert_eq!((decision.slot, decision.trial), (Slot::A, false));
    let st = vigil_update::status(&f.store).unwrap();
    assert_eq!(
        (st.active, st.booted, st.a.release, st.b.status),
        (Slot::A, Slot::A, 1, SlotStatus::Failed)
    );
    assert_eq!(f.tree("data"), data);
    // The failed release is not retried; a fixed one (release 3) installs.
    let again = f.apply_at(&f.path("bundle-2.0.tar"), at(2)).unwrap_err();
    assert!(
        matches!(again, UpdateError::Refused(VerifyError::NotNewer { .. })),
        "{again}"
    );
    let r3 = f.release("3.0", &[("appliance.img", b"fixed")], at(3));
    assert_eq!(f.apply_at(&r3, at(3)).unwrap().slot, Slot::B);
}

#[test]
fn release_that_never_reports_health_rolls_back_at_next_boot() {
    let f = Fixture::new();
    f.apply_at(&release2(&f), at(2)).unwrap();
    assert!(vigil_update::boot(&f.store).unwrap().trial);
    // It hung before its health check; the watchdog rebooted.
    let decision = vigil_update::boot(&f.store).unwrap();
    assert_eq!(
        (decision.slot, decision.rolled_back),
        (Slot::A, Some(Slot::B))
    );
    assert_eq!(vigil_update::status(&f.store).unwrap().active, Slot::A);
}

/// A refusal case: how to make the bundle, what the message must say.
struct Refusal {
    name: &'static str,
    bundle: fn(&Fixture) -> PathBuf,
    reason: &'static str,
    message: &'static str,
}

const REFUSALS: &[Refusal] = &[
    Refusal {
        name: "tampered target",
        bundle: tampered,
        reason: "target_altered",
        message: "target appliance.img was altered: sha256",
    },
    Refusal {
        name: "target swapped for another length",
        bundle: resized,
        reason: "target_altered",
        message: "length 4 but 9 signed",
    },
    Refusal {
        name: "signed by a stranger's keys",
        bundle: stranger,
        reason: "signatures",
        message: "timestamp.json: signed by 0 valid timestamp key(s), 1 required",
    },
    Refusal {
        name: "root rotation below threshold",
        bundle: one_root_key,
        reason: "signatures",
        message: "2.root.json: signed by 1 valid root key(s), 2 required",
    },
    Refusal {
        name: "older release (rollback)",
        bundle: older,
        reason: "rollback",
        message: "timestamp version 1 is older than the trusted version 2: rollback refused",
    },
    Refusal {
        name: "same release again",
        bundle: same_again,
        reason: "not_newer",
        message: "release 2 is not newer than release 2",
    },
    Refusal {
        name: "targets from another release",
        bundle: mix_and_match,
        reason: "mismatch",
        message: "targets.json does not match what snapshot signed",
    },
    Refusal {
        name: "unsigned extra file",
        bundle: extra_file,
        reason: "archive",
        message: "targets/evil.sh is not in the signed targets",
    },
    Refusal {
        name: "not a bundle",
        bundle: garbage,
        reason: "archive",
        message: "not an update bundle",
    },
    Refusal {
        name: "metadata file missing",
        bundle: no_snapshot,
        reason: "missing",
        message: "snapshot.json is missing from the bundle",
    },
];

#[test]
fn refused_updates_leave_the_running_system_untouched() {
    for case in REFUSALS {
        let f = Fixture::new();
        let bundle = (case.bundle)(&f);
        let state = std::fs::read(f.store.path()).unwrap();
        let (slots, data) = (f.tree("slots"), f.tree("data"));
        let err = f.apply_at(&bundle, at(2)).expect_err(case.name);
        let UpdateError::Refused(verify) = &err else {
            panic!("{}: {err}", case.name)
        };
        assert_eq!(verify.reason(), case.reason, "{}: {err}", case.name);
        assert!(
            err.to_string().contains(case.message),
            "{}: {err:?} lacks {:?}",
            case.name,
            case.message
        );
        assert_eq!(
            std::fs::read(f.store.path()).unwrap(),
            state,
            "{}: state changed",
            case.name
        );
        assert_eq!(
            (f.tree("slots"), f.tree("data")),
            (slots, data),
            "{}: files changed",
            case.name
        );
        let verify_only =
            vigil_update::verify_file(&bundle, &f.store, &vigil_update::VerifyOptions::at(at(2)));
        assert!(
            verify_only.is_err(),
            "{}: verify accepts what apply refuses",
            case.name
        );
    }
}

fn tampered(f: &Fixture) -> PathBuf {
    let mut files = unpack(&release2(f));
    replace(&mut files, "targets/appliance.img", b"image tw0".to_vec());
    let out = f.path("tampered.tar");
    repack(&files, &out);
    out
}

fn resized(f: &Fixture) -> PathBuf {
    let mut files = unpack(&release2(f));
    replace(&mut files, "targets/appliance.img", b"evil".to_vec());
    let out = f.path("resized.tar");
    repack(&files, &out);
    out
}

fn stranger(f: &Fixture) -> PathBuf {
    let other = KeySet::new(100);
    let repo =
        vigil_update::pack::Repo::create(&f.path("evil-repo"), &other.spec(), &other.root[..2])
            .unwrap();
    let img = f.path("evil.img");
    std::fs::write(&img, b"evil").unwrap();
    repo.publish(&[img], "9.9", &other.online(), &Default::default(), at(1))
        .unwrap();
    let out = f.path("stranger.tar");
    repo.write_bundle(&out).unwrap();
    out
}

fn one_root_key(f: &Fixture) -> PathBuf {
    let bundle = release2(f);
    let mut files = unpack(&bundle);
    let next = root_metadata(&KeySet::new(50).spec(), 2);
    let signed = vigil_update::metadata::sign(&next, &[&f.keys.root[0], &key(50), &key(51)]);
    files.insert(1, ("metadata/2.root.json".into(), signed));
    let out = f.path("one-root-key.tar");
    repack(&files, &out);
    out
}

fn older(f: &Fixture) -> PathBuf {
    f.apply_at(&release2(f), at(2)).unwrap();
    f.boot_and_check(true);
    f.path("bundle-1.0.tar")
}

fn same_again(f: &Fixture) -> PathBuf {
    older(f);
    f.path("bundle-2.0.tar")
}

fn mix_and_match(f: &Fixture) -> PathBuf {
    let b2 = unpack(&release2(f));
    let b3 = unpack(&f.release("3.0", &[("appliance.img", b"image three")], at(1)));
    let mut files = b2.clone();
    replace(
        &mut files,
        "metadata/targets.json",
        get(&b3, "metadata/targets.json").to_vec(),
    );
    replace(
        &mut files,
        "targets/appliance.img",
        get(&b3, "targets/appliance.img").to_vec(),
    );
    let out = f.path("mix.tar");
    repack(&files, &out);
    out
}

fn extra_file(f: &Fixture) -> PathBuf {
    let mut files = unpack(&release2(f));
    files.push(("targets/evil.sh".into(), b"#!/bin/sh".to_vec()));
    let out = f.path("extra.tar");
    repack(&files, &out);
    out
}

fn garbage(f: &Fixture) -> PathBuf {
    let out = f.path("garbage.tar");
    std::fs::write(&out, b"this is not a tar file at all, only some bytes").unwrap();
    out
}

fn no_snapshot(f: &Fixture) -> PathBuf {
    let files: Vec<_> = unpack(&release2(f))
        .into_iter()
        .filter(|(p, _)| p != "metadata/snapshot.json")
        .collect();
    let out = f.path("no-snapshot.tar");
    repack(&files, &out);
    out
}

#[test]
fn expired_metadata_is_refused_with_its_dates() {
    let f = Fixture::new();
    let bundle = release2(&f);
    // The timestamp is valid 30 days from day 1, plus one day of grace.
    f.apply_at(&bundle, at(31))
        .map(|_| ())
        .unwrap_or_else(|e| panic!("within grace: {e}"));
    let f = Fixture::new();
    let err = f.apply_at(&release2(&f), at(33)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("timestamp metadata expired at")
            && msg.contains("ask for a freshly signed bundle"),
        "{msg}"
    );
}

#[test]
fn a_clock_set_back_cannot_revive_frozen_metadata() {
    let f = Fixture::new();
    // Release 3 is signed on day 0: its timestamp expires on day 30.
    let stale = f.release("3.0", &[("appliance.img", b"three")], at(0));
    let fresh_files = [("appliance.img", b"four".as_slice())];
    let fresh = f.release("4.0", &fresh_files, at(39));
    // Release 4 is installed on day 40; later the RTC is reset to day 1.
    f.apply_at(&fresh, at(40)).unwrap();
    f.boot_and_check(true);
    let err = f.apply_at(&stale, at(1)).unwrap_err();
    assert!(err.to_string().contains("older than the trusted"), "{err}");
    // Same with an unseen release signed long ago: expired by the last
    // known time (day 40), not by the wrong clock (day 1).
    let g = Fixture::new();
    let fresh = g.release("2.0", &[("appliance.img", b"two")], at(39));
    g.apply_at(&fresh, at(40)).unwrap();
    g.boot_and_check(true);
    let old_timestamp = resign_release(&g, at(0));
    let err = g.apply_at(&old_timestamp, at(1)).unwrap_err();
    assert!(
        matches!(err, UpdateError::Refused(VerifyError::Expired { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("now 2027-02-2"),
        "names the last known time: {err}"
    );
}

/// Release 3 whose metadata all expire 30 days after `signed_at`.
fn resign_release(f: &Fixture, signed_at: std::time::SystemTime) -> PathBuf {
    f.release("3.0", &[("appliance.img", b"three")], signed_at)
}

#[test]
fn root_rotation_replaces_keys_and_old_keys_stop_signing() {
    let f = Fixture::new();
    let new = KeySet::new(30);
    let mut signers = f.keys.root[..2].to_vec();
    signers.extend_from_slice(&new.root[..2]);
    assert_eq!(f.repo.rotate_root(&new.spec(), &signers).unwrap(), 2);
    let bundle = f.release_with("2.0", &[("appliance.img", IMAGE2)], at(1), &new.online());
    let report = f.apply_at(&bundle, at(2)).unwrap();
    assert_eq!(report.root_rotation, Some((1, 2)));
    f.boot_and_check(true);
    assert_eq!(vigil_update::status(&f.store).unwrap().root_version, 2);

    // The old targets key alone (say it leaked) signs release 3, with a
    // consistent snapshot and timestamp from the genuine online keys.
    let good3 =
        unpack(&f.release_with("3.0", &[("appliance.img", b"three")], at(3), &new.online()));
    let mut files = good3.clone();
    let targets = resign(
        get(&good3, "metadata/targets.json"),
        &[&f.keys.targets],
        |_| {},
    );
    let snapshot = resign(
        get(&good3, "metadata/snapshot.json"),
        &[&new.snapshot],
        |s| {
            s["meta"]["targets.json"] = file_ref(3, &targets);
        },
    );
    let timestamp = resign(
        get(&good3, "metadata/timestamp.json"),
        &[&new.timestamp],
        |t| {
            t["meta"]["snapshot.json"] = file_ref(3, &snapshot);
        },
    );
    replace(&mut files, "metadata/targets.json", targets);
    replace(&mut files, "metadata/snapshot.json", snapshot);
    replace(&mut files, "metadata/timestamp.json", timestamp);
    let out = f.path("old-targets-key.tar");
    repack(&files, &out);
    let err = f.apply_at(&out, at(3)).unwrap_err();
    assert!(
        err.to_string()
            .contains("targets.json: signed by 0 valid targets key(s), 1 required"),
        "{err}"
    );

    // The old root keys (threshold 2 of the old root) sign a root 3 that
    // hands everything back to them: refused, they are not root 2's keys.
    let mut files = good3;
    let evil_root = vigil_update::metadata::sign(
        &root_metadata(&f.keys.spec(), 3),
        &[&f.keys.root[0], &f.keys.root[1], &f.keys.root[2]],
    );
    files.insert(2, ("metadata/3.root.json".into(), evil_root));
    let out = f.path("old-root-keys.tar");
    repack(&files, &out);
    let err = f.apply_at(&out, at(3)).unwrap_err();
    assert!(
        err.to_string()
            .contains("3.root.json: signed by 0 valid root key(s), 2 required"),
        "{err}"
    );
    assert_eq!(vigil_update::status(&f.store).unwrap().root_version, 2);
}

#[test]
fn appliance_several_roots_behind_follows_the_chain() {
    let f = Fixture::new();
    let (k2, k3) = (KeySet::new(30), KeySet::new(60));
    let both = |a: &KeySet, b: &KeySet| [&a.root[..2], &b.root[..2]].concat();
    f.repo.rotate_root(&k2.spec(), &both(&f.keys, &k2)).unwrap();
    f.repo.rotate_root(&k3.spec(), &both(&k2, &k3)).unwrap();
    let bundle = f.release_with("2.0", &[("appliance.img", IMAGE2)], at(1), &k3.online());
    assert_eq!(
        f.apply_at(&bundle, at(2)).unwrap().root_rotation,
        Some((1, 3))
    );
    // A gap in the chain is refused.
    let mut files = unpack(&bundle);
    files.retain(|(p, _)| p != "metadata/2.root.json");
    let g = Fixture::new();
    let out = g.path("gap.tar");
    repack(&files, &out);
    let err = g.apply_at(&out, at(2)).unwrap_err();
    assert!(
        err.to_string()
            .contains("3.root.json: root version 3, expected 2"),
        "{err}"
    );
}

#[test]
fn the_signing_side_refuses_too_few_keys() {
    let f = Fixture::new();
    let err = f
        .repo
        .rotate_root(&KeySet::new(30).spec(), &f.keys.root[..1])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("root: 1 of the given keys belong to the role, 2 required"),
        "{err}"
    );
}

#[test]
fn a_release_not_newer_is_refused_before_its_targets_are_hashed() {
    let f = Fixture::new();
    f.apply_at(&release2(&f), at(2)).unwrap();
    f.boot_and_check(true);
    // Release 2 again with a target altered: the cheap refusal (not newer)
    // comes first, so the altered bytes are never read.
    let mut files = unpack(&f.path("bundle-2.0.tar"));
    replace(&mut files, "targets/appliance.img", b"image tw0".to_vec());
    let out = f.path("again-tampered.tar");
    repack(&files, &out);
    let err = f.apply_at(&out, at(3)).unwrap_err();
    assert!(
        matches!(err, UpdateError::Refused(VerifyError::NotNewer { .. })),
        "{err}"
    );
}
