//! The real `vigil-update` binary, as an operator would run it: keys,
//! repository, bundle, then verify, apply, boot, health and status on an
//! appliance directory.

use std::path::Path;
use std::process::{Command, Output};

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil-update"))
        .current_dir(dir)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn operator_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for k in ["r1", "r2", "r3", "t", "s", "ts"] {
        ok(d, &["keygen", &format!("{k}.key")]);
    }
    let role_keys = [
        "--repo",
        "repo",
        "--root-key",
        "r1.key.pub",
        "--root-key",
        "r2.key.pub",
        "--root-key",
        "r3.key.pub",
        "--root-threshold",
        "2",
        "--targets-key",
        "t.key.pub",
        "--snapshot-key",
        "s.key.pub",
        "--timestamp-key",
        "ts.key.pub",
    ];
    let one_signer = run(
        d,
        &[&["init"], &role_keys[..], &["--sign", "r1.key"]].concat(),
    );
    assert!(String::from_utf8_lossy(&one_signer.stderr)
        .contains("1 of the given keys belong to the role, 2 required"));
    ok(
        d,
        &[
            &["init"],
            &role_keys[..],
            &["--sign", "r1.key", "--sign", "r3.key"],
        ]
        .concat(),
    );
    std::fs::write(d.join("appliance.img"), b"image").unwrap();
    std::fs::write(d.join("vigil-sensor.deb"), b"deb").unwrap();
    let sign = [
        "sign", "--repo", "repo", "--key", "t.key", "--key", "s.key", "--key", "ts.key",
    ];
    let args = [
        &sign[..],
        &[
            "--release",
            "2.0",
            "--out",
            "u.tar",
            "appliance.img",
            "vigil-sensor.deb",
        ],
    ]
    .concat();
    ok(d, &args);
    ok(
        d,
        &[
            "init-appliance",
            "--slots",
            "slots",
            "--root",
            "repo/metadata/1.root.json",
        ],
    );
    assert!(ok(d, &["verify", "u.tar", "--slots", "slots"])
        .contains("release 1 with 2 target(s) verifies"));
    assert!(ok(d, &["apply", "u.tar", "--slots", "slots"]).contains("written to slot b"));
    assert!(ok(d, &["boot", "--slots", "slots"]).contains("boot slot b (trial)"));
    assert!(ok(d, &["health", "--slots", "slots"]).contains("slot b committed"));
    let status: serde_json::Value =
        serde_json::from_str(&ok(d, &["status", "--slots", "slots"])).unwrap();
    assert_eq!(status["active"], "b");
    assert_eq!(
        std::fs::read(d.join("slots/b/vigil-sensor.deb")).unwrap(),
        b"deb"
    );

    let again = run(d, &["apply", "u.tar", "--slots", "slots"]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(
        stderr.matches("not newer").count(),
        1,
        "said once: {stderr}"
    );
}

/// `vigil update pack` (the name the image's README and issue #18 use)
/// is `sign`.
#[test]
fn pack_is_sign() {
    let tmp = tempfile::tempdir().unwrap();
    let help = ok(tmp.path(), &["pack", "--help"]);
    assert!(help.contains("Sign a release of FILES"), "{help}");
}
