//! Sensor updates (#18) with the real parts: a TUF repository made with
//! the real `vigil-update` (keygen, init, sign), the appliance verifying
//! and publishing it (the admin channel's handler, the path `vigil update
//! publish-sensors` takes), and the real `vigil-sensor enroll` and
//! `vigil-sensor update` over HTTPS. A good release installs (exit 0, or
//! 10 with `--installed-exit-code`, the update timer's cue to restart the
//! sensor; 0 when up to date); a tampered target, an older release and a
//! stranger's keys are refused by the sensor itself (the appliance is made
//! to serve them, as a compromised one would) and the installed binary
//! stays as it was.

use super::https_raw;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};
use vigil_appliance::admin::{self, AdminRequest, AdminResponse};
use vigil_appliance::sensor_updates::{
    request_from_bundle, write_published, Files, Published, PublishedFile,
};
use vigil_appliance::{Appliance, ServeConfig};
use vigil_web_ui::store::ConsoleStore;

/// The target `vigil-sensor update` installs on this machine.
fn target() -> String {
    format!("vigil-sensor-linux-{}", std::env::consts::ARCH)
}

/// `target/debug`, where the workspace build puts the binaries.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_owned()
}

fn run(bin: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(bin_dir().join(bin))
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(bin: &str, dir: &Path, args: &[&str]) -> String {
    let out = run(bin, dir, args);
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A signing repository (root threshold 1 for brevity) under `dir/NAME`.
fn repo(dir: &Path, name: &str) {
    let k = |role: &str| format!("{name}-{role}.key");
    for role in ["root", "targets", "snapshot", "timestamp"] {
        ok("vigil-update", dir, &["keygen", &k(role)]);
    }
    let pubk = |role: &str| format!("{}.pub", k(role));
    ok(
        "vigil-update",
        dir,
        &[
            "init",
            "--repo",
            name,
            "--root-key",
            &pubk("root"),
            "--targets-key",
            &pubk("targets"),
            "--snapshot-key",
            &pubk("snapshot"),
            "--timestamp-key",
            &pubk("timestamp"),
            "--sign",
            &k("root"),
        ],
    );
}

/// Signs `sensor` (and an appliance image) as the repository's next
/// release; returns the bundle.
fn sign(dir: &Path, name: &str, release: &str, sensor: &[u8]) -> PathBuf {
    let src = dir.join(format!("src-{name}-{release}"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join(target()), sensor).unwrap();
    std::fs::write(src.join("appliance.img"), b"an image sensors never see").unwrap();
    let out = dir.join(format!("{name}-{release}.tar"));
    let k = |role: &str| format!("{name}-{role}.key");
    let (t, s, ts) = (k("targets"), k("snapshot"), k("timestamp"));
    let (tgt, img) = (src.join(target()), src.join("appliance.img"));
    ok(
        "vigil-update",
        dir,
        &[
            "sign",
            "--repo",
            name,
            "--key",
            &t,
            "--key",
            &s,
            "--key",
            &ts,
            "--release",
            release,
            "--out",
            out.to_str().unwrap(),
            tgt.to_str().unwrap(),
            img.to_str().unwrap(),
        ],
    );
    out
}

/// The repository's current files, as a compromised appliance could serve
/// them again later.
fn snapshot(dir: &Path) -> Files {
    let read = |sub: &str| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name() != "appliance.img")
            .map(|e| {
                let name = e.file_name().into_string().unwrap();
                (name, std::fs::read(e.path()).unwrap())
            })
            .collect();
        v.sort();
        v
    };
    Files {
        metadata: read("metadata"),
        targets: read("targets"),
    }
}

/// Serves `files` without any verification: what a compromised appliance
/// (or one whose disk was edited) would do.
fn serve_raw(data: &Path, files: &Files) {
    let entry = |b: &Vec<u8>| PublishedFile {
        size: b.len() as u64,
        sha256: hex::encode(Sha256::digest(b)),
    };
    let index = Published {
        release: 0,
        release_name: None,
        metadata: files
            .metadata
            .iter()
            .map(|(n, b)| (n.clone(), entry(b)))
            .collect(),
        targets: files
            .targets
            .iter()
            .map(|(n, b)| (n.clone(), entry(b)))
            .collect(),
        published_ns: 0,
    };
    write_published(data, &index, files).unwrap();
}

fn publish(app: &Appliance, bundle: &Path, state: &Path) -> Result<Published, String> {
    let req = request_from_bundle(bundle, state, "cli:root".into(), SystemTime::now())?;
    match admin::handle(&app.core(), AdminRequest::PublishSensorUpdates(req), true) {
        AdminResponse::SensorUpdatesPublished(p) => Ok(p),
        AdminResponse::Error(e) => Err(e),
        other => panic!("unexpected answer {other:?}"),
    }
}

fn sha(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensors_update_from_the_appliance_and_refuse_what_their_root_did_not_sign() {
    let (sensor, tool) = (
        bin_dir().join("vigil-sensor"),
        bin_dir().join("vigil-update"),
    );
    if !sensor.is_file() || !tool.is_file() {
        let why = format!(
            "needs {} and {} (cargo build --workspace --all-targets)",
            sensor.display(),
            tool.display()
        );
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("skipping: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let data = d.join("data");
    let mut cfg = ServeConfig::new(&data).loopback();
    cfg.admin_socket = false;
    cfg.pipeline = None;
    let app = Appliance::start(cfg).await.unwrap();

    // The vendor's repository; the appliance trusts its root at release 0.
    repo(d, "repo");
    let root = d.join("repo/metadata/1.root.json");
    let state = d.join("update-state");
    let st = state.to_str().unwrap();
    ok(
        "vigil-update",
        d,
        &[
            "init-appliance",
            "--state",
            st,
            "--root",
            root.to_str().unwrap(),
            "--release",
            "0",
        ],
    );
    let b1 = sign(d, "repo", "1.0", b"sensor release one\n");
    let release1 = snapshot(&d.join("repo"));
    let p = publish(&app, &b1, &state).unwrap();
    assert_eq!((p.release, p.targets.len()), (1, 1), "{p:?}");
    let audit = app.core().console.audit_entries().unwrap();
    let last = audit.last().unwrap();
    assert_eq!(
        (
            last.actor.as_str(),
            last.action.as_str(),
            last.target.as_str()
        ),
        ("cli:root", "sensor_updates.publish", "release:1")
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let served = data.join("sensor-updates");
        assert_eq!(mode(&served.join("targets")), 0o755);
        assert_eq!(mode(&served.join("targets").join(target())), 0o644);
        assert!(
            !served.join("targets/appliance.img").exists(),
            "sensor targets only"
        );
    }

    // A real sensor enrolls with the root and the console's URL.
    let host = d.join("host");
    let (sstate, bin) = (host.join("state"), host.join("bin/vigil-sensor"));
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::write(&bin, b"the enrolled sensor\n").unwrap();
    let token = app.create_token(Duration::from_secs(60), 1).unwrap();
    let said = ok(
        "vigil-sensor",
        d,
        &[
            "enroll",
            "--appliance",
            &format!("127.0.0.1:{}", app.quic_addr.port()),
            "--token",
            &token.token,
            "--ca-sha256",
            &app.ca_fingerprint(),
            "--state-dir",
            sstate.to_str().unwrap(),
            "--update-root",
            root.to_str().unwrap(),
            "--updates-url",
            &format!("https://127.0.0.1:{}", app.https_addr.port()),
        ],
    );
    assert!(said.contains("updates: from https://127.0.0.1:"), "{said}");
    let update = |check: bool| {
        let mut args = vec!["update", "--state-dir", sstate.to_str().unwrap()];
        args.extend(["--binary", bin.to_str().unwrap()]);
        if check {
            args.push("--check");
        }
        run("vigil-sensor", d, &args)
    };
    // As the update timer's unit runs it: 10 after an install, else 0 or 1.
    let update_coded = || {
        let mut args = vec!["update", "--state-dir", sstate.to_str().unwrap()];
        args.extend(["--binary", bin.to_str().unwrap(), "--installed-exit-code"]);
        run("vigil-sensor", d, &args)
    };
    let text = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    let checked = update(true);
    assert!(
        text(&checked).contains("release 1 available"),
        "{}",
        text(&checked)
    );
    assert_eq!(std::fs::read(&bin).unwrap(), b"the enrolled sensor\n");
    let done = update(false);
    assert!(done.status.success(), "{}", text(&done));
    assert_eq!(done.status.code(), Some(0), "without the flag, as before");
    assert!(
        text(&done).contains("installed release 1"),
        "{}",
        text(&done)
    );
    assert_eq!(std::fs::read(&bin).unwrap(), b"sensor release one\n");
    assert_eq!(p.targets[&target()].sha256, sha(&bin), "file hash = target");
    assert_eq!(
        std::fs::read(host.join("bin/vigil-sensor.prev")).unwrap(),
        b"the enrolled sensor\n"
    );
    assert!(text(&update(false)).contains("up to date"));
    let current = update_coded();
    assert_eq!(current.status.code(), Some(0), "{}", text(&current));
    assert!(text(&current).contains("up to date"), "{}", text(&current));

    // Each refusal: non-zero, a clear message, the binary untouched.
    let refused = |what: &str, want: &str| {
        let before = sha(&bin);
        let out = update(false);
        assert!(!out.status.success(), "{what}: {}", text(&out));
        assert!(text(&out).contains(want), "{what}: {}", text(&out));
        assert_eq!(sha(&bin), before, "{what}: binary changed");
    };

    // Release 2 with its target swapped on the appliance's disk.
    let b2 = sign(d, "repo", "2.0", b"sensor release two\n");
    publish(&app, &b2, &state).unwrap();
    let served = data.join("sensor-updates/targets").join(target());
    std::fs::write(&served, b"sensor release tw0\n").unwrap();
    refused(
        "tampered target",
        "target vigil-sensor-linux-x86_64 was altered",
    );
    publish(&app, &b2, &state).unwrap();
    let installed = update_coded();
    assert_eq!(installed.status.code(), Some(10), "{}", text(&installed));
    assert!(
        text(&installed).contains("installed release 2"),
        "{}",
        text(&installed)
    );
    assert_eq!(std::fs::read(&bin).unwrap(), b"sensor release two\n");

    // Release 1 served again: a rollback.
    serve_raw(&data, &release1);
    refused("older release", "rollback refused");
    let coded = update_coded();
    assert_eq!(coded.status.code(), Some(1), "{}", text(&coded));

    // A stranger's repository: the appliance will not publish it, and a
    // sensor refuses it when served anyway.
    repo(d, "evil");
    let evil = sign(d, "evil", "9.0", b"evil\n");
    let err = publish(&app, &evil, &state).unwrap_err();
    assert!(err.contains("update refused"), "{err}");
    serve_raw(&data, &snapshot(&d.join("evil")));
    refused("wrong key", "valid timestamp key(s)");
    assert_eq!(std::fs::read(&bin).unwrap(), b"sensor release two\n");

    // Only published names are served.
    publish(&app, &b2, &state).unwrap();
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: vigil-appliance\r\nConnection: close\r\n\r\n")
    };
    let ca = app.ca_der();
    let path = "/enroll/updates/metadata/timestamp.json";
    let res = https_raw(app.https_addr, &ca, &get(path)).await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    for hostile in [
        "/enroll/updates/metadata/index.json",
        "/enroll/updates/targets/index.json",
        "/enroll/updates/metadata/..%2Findex.json",
        "/enroll/updates/targets/..%2F..%2Fkeys%2Fca.key",
        "/enroll/updates/targets/appliance.img",
        "/enroll/updates/targets/.tmp-vigil-sensor-linux-x86_64",
        "/enroll/updates/metadata/9.root.json",
        "/enroll/updates/metadata/",
    ] {
        let res = https_raw(app.https_addr, &ca, &get(hostile)).await;
        assert!(res.starts_with("HTTP/1.1 404"), "{hostile}: {res}");
    }
    app.shutdown().await;
}
