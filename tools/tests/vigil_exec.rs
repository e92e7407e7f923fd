//! `vigil eval …` and `vigil replay …` run this crate's tools: the
//! appliance binary execs the `vigil-eval` / `vigil-replay` next to it
//! (usage messages still say `vigil eval` / `vigil replay`), and says how
//! to get them when they are not installed.
//!
//! The `vigil` binary comes from the appliance package: a workspace build
//! (`cargo xtask test`, `cargo build --workspace`) puts it next to this
//! crate's binaries. When it is absent these tests say so and pass, except
//! under `CI`, where they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `vigil` binary of this build, next to `vigil-eval`.
fn vigil() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_BIN_EXE_vigil-eval")).parent()?;
    let vigil = dir.join(format!("vigil{}", std::env::consts::EXE_SUFFIX));
    if vigil.is_file() {
        return Some(vigil);
    }
    let why = format!("{} not built (build the workspace first)", vigil.display());
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("skipped: {why}");
    None
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn vigil_eval_and_replay_run_the_tools_under_their_vigil_names() {
    let Some(vigil) = vigil() else { return };
    let out = Command::new(&vigil)
        .args(["eval", "synth", "--help"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    // Only the tool knows the synth flags; the usage line names `vigil eval`.
    assert!(stdout.contains("Usage: vigil eval synth"), "{stdout}");
    assert!(stdout.contains("Seeds, comma-separated"), "{stdout}");

    let out = Command::new(&vigil)
        .args(["replay", "lanl", "--help"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("Usage: vigil replay lanl"), "{stdout}");
    assert!(stdout.contains("--ca-sha256"), "{stdout}");

    // The tool's own failures and exit codes come through unchanged.
    let out = Command::new(&vigil)
        .args(["eval", "otrf", "/nonexistent/capture.zip"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("/nonexistent/capture.zip"), "{stderr}");
}

#[test]
fn vigil_without_the_tools_says_which_package_it_needs() {
    let Some(vigil) = vigil() else { return };
    // A copy of `vigil` alone in a folder, with nothing on PATH. A hard link
    // when the file system allows it (the binary is large), else a copy.
    let dir = tempfile::tempdir_in(vigil.parent().unwrap()).unwrap();
    let lone = dir.path().join("vigil");
    if std::fs::hard_link(&vigil, &lone).is_err() {
        std::fs::copy(&vigil, &lone).unwrap();
    }
    for (cmd, tool) in [("eval", "vigil-eval"), ("replay", "vigil-replay")] {
        let out = Command::new(&lone)
            .args([cmd, "--help"])
            .env("PATH", "")
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
        let want = format!(
            "vigil {cmd} needs the {tool} tool (package vigil-tools), which is not installed next to this binary"
        );
        assert!(stderr.contains(&want), "{stderr}");
    }
}
