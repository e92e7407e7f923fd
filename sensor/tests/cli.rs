//! The real `vigil-sensor` binary: clear messages and exit codes.

mod common;

use std::process::Command;

use common::{TestCa, TestServer, GOOD_TOKEN, TEST_HOST};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil-sensor"))
}

#[test]
fn run_with_a_bad_config_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sensor.toml");
    std::fs::write(
        &cfg,
        "appliance = \"no-port\"\n[uplink]\nbatch_max_events = 0\n[budget]\ncpu_pct = -1.0\n",
    )
    .unwrap();
    let out = bin().arg("run").arg("--config").arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for key in ["appliance:", "uplink.batch_max_events:", "budget.cpu_pct:"] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
}

#[test]
fn run_without_enrollment_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sensor.toml");
    std::fs::write(
        &cfg,
        format!(
            "appliance = \"127.0.0.1:7443\"\nstate_dir = \"{}\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let out = bin().arg("run").arg("--config").arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vigil-sensor enroll"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_command_good_and_refused() {
    let server = TestServer::start(TestCa::new(), "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |token: &'static str, state: std::path::PathBuf| {
        let addr = server.addr.to_string();
        let fp = server.ca.sha256();
        tokio::task::spawn_blocking(move || {
            bin()
                .args([
                    "enroll",
                    "--appliance",
                    &addr,
                    "--token",
                    token,
                    "--ca-sha256",
                    &fp,
                    "--state-dir",
                ])
                .arg(state)
                .output()
                .unwrap()
        })
    };
    let bad = run("nope", dir.path().join("bad")).await.unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("refused") && err.contains("token_unknown"),
        "{err}"
    );
    let good = run(GOOD_TOKEN, dir.path().join("good")).await.unwrap();
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let host = std::fs::read_to_string(dir.path().join("good/host_id")).unwrap();
    assert_eq!(host.trim(), TEST_HOST.to_string());
    server.stop().await;
}
