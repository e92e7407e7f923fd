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

/// Permission bits of a path.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_reads_the_token_from_a_file_or_stdin_and_keeps_its_files_private() {
    use std::io::Write;
    let server = TestServer::start(TestCa::new(), "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{GOOD_TOKEN}\n")).unwrap();
    let (addr, fp) = (server.addr.to_string(), server.ca.sha256());
    let enroll = move |token_args: Vec<std::ffi::OsString>, state: std::path::PathBuf| {
        let (addr, fp) = (addr.clone(), fp.clone());
        tokio::task::spawn_blocking(move || {
            let mut child = bin()
                .args(["enroll", "--appliance", &addr, "--ca-sha256", &fp])
                .args(token_args)
                .arg("--state-dir")
                .arg(state)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let _ = stdin.write_all(format!("  {GOOD_TOKEN}\n").as_bytes());
            drop(stdin);
            child.wait_with_output().unwrap()
        })
    };
    // From a file, into a state directory whose parent does not exist yet.
    let state = dir.path().join("var/state");
    let out = enroll(
        vec!["--token-file".into(), token_file.into()],
        state.clone(),
    )
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&dir.path().join("var")), 0o700);
    assert_eq!(mode(&state), 0o700);
    for f in ["key.pem", "cert.pem", "ca.pem", "host_id"] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }
    // From stdin; an existing, wider state directory is narrowed.
    let state = dir.path().join("stdin-state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = enroll(vec!["--token".into(), "-".into()], state.clone())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&state), 0o700);
    let host = std::fs::read_to_string(state.join("host_id")).unwrap();
    assert_eq!(host.trim(), TEST_HOST.to_string());
    // An empty token file is refused before anything is sent.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let out = enroll(
        vec!["--token-file".into(), empty.into()],
        dir.path().join("x"),
    )
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));
    server.stop().await;
}

#[test]
fn spool_directory_and_files_are_private() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("data/spool");
    let mut child = bin()
        .args(["debug-spool-writer", "--dir"])
        .arg(&spool)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("appended"), "{line:?}");
    assert_eq!(mode(&dir.path().join("data")), 0o700);
    assert_eq!(mode(&spool), 0o700);
    let files: Vec<_> = std::fs::read_dir(&spool).unwrap().flatten().collect();
    assert!(!files.is_empty());
    for f in files {
        assert_eq!(mode(&f.path()) & 0o077, 0, "{}", f.path().display());
    }
}
