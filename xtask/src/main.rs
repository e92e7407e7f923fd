//! Project automation, in the rust-analyzer `cargo xtask` convention.
//!
//! - `cargo xtask demo [--for SECS]`: the most complete end-to-end path that
//!   exists: appliance + enrolled sensor + generated activity, printed.
//! - `cargo xtask test`: formatting, supply chain (`cargo deny`), clippy, the
//!   whole test suite, the sensor package install check, the image check.
//! - `cargo xtask deny`: the supply-chain step alone.
//! - `cargo xtask bench [NAME]`: benchmarks (sensor, ingest, detect, ui, forward, evidence).
//! - `cargo xtask fuzz [SECS]`: every fuzz target for SECS seconds each.
//! - `cargo xtask package [--check]`: the sensor's `.deb` and tarball;
//!   `--check` installs both into a fresh Debian root.
//! - `cargo xtask image [--check]`: the appliance disk image (raw, qcow2)
//!   booted under QEMU; `--check` proves its parts on a reduced root.
//!
//! Each command first makes sure the system packages it needs are present,
//! installing them with `apt-get` when running as root and saying so.
//! Deliberately std-only so it builds in seconds on a fresh machine.

mod demo;
mod deny;
mod image;
mod package;
mod prereq;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

/// Debian packages the build and the test suite need.
pub const TEST_PACKAGES: &[&str] = &[
    "clang",
    "libclang-dev",
    "chromium",
    "chromium-driver",
    "openssh-server",
    "openssh-client",
    "nftables",
    "iproute2",
    // The hostile-endpoint lab tests: a real syslog daemon, curl and ping
    // from inside lab hosts.
    "rsyslog",
    "rsyslog-gnutls", // forward/tests/rsyslog.rs: imtcp over TLS (gtls driver)
    "curl",
    "iputils-ping",
];

/// Debian packages the build alone needs (RocksDB's bindgen needs libclang).
const BUILD_PACKAGES: &[&str] = &["clang", "libclang-dev"];

/// Benchmarks: name → (package, binary).
const BENCHES: &[(&str, &str, &str)] = &[
    ("sensor", "vigil-sensor", "bench-sensor"),
    ("ingest", "vigil-testkit", "bench-ingest"),
    ("detect", "vigil-tools", "bench-detect"),
    ("ui", "vigil-testkit", "bench-ui"),
    ("forward", "vigil-testkit", "bench-forward"),
    ("evidence", "vigil-testkit", "bench-evidence"),
];

/// Fuzz targets under `fuzz/fuzz_targets`.
const FUZZ_TARGETS: &[&str] = &["frame", "batch", "control"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo::run_demo(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("deny") => deny::check(),
        Some("bench") => bench(args.get(1).map(String::as_str)),
        Some("fuzz") => fuzz(args.get(1).map(String::as_str)),
        Some("package") => package::package(&args[1..]),
        Some("image") => image::image(&args[1..]),
        _ => {
            eprintln!("{}", USAGE);
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask <command>
  demo [--for SECS]   start an appliance and an enrolled sensor, show what flows
  test                fmt check, cargo deny, clippy -D warnings, the whole test suite,
                      the sensor package install check (as root)
  deny                cargo deny check (licences, bans, sources, advisories), offline
  bench [NAME]        run benchmarks: sensor, ingest, detect, ui, forward, evidence (all when omitted)
  fuzz [SECS]         run every fuzz target for SECS seconds (default 30)
  package [--check]   build the sensor .deb and tarball into target/packages;
                      --check installs both into a fresh Debian root
  image [--check]     build the appliance image (release binaries, raw + qcow2) and
                      boot it under QEMU (--no-boot: build only); --check proves units,
                      firewall, first boot and updates on a reduced root (as root)";

/// Errors are strings: xtask prints them and exits non-zero.
pub type Result<T> = std::result::Result<T, String>;

/// The repository root (xtask lives one folder below it).
pub fn repo_root() -> PathBuf {
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .parent()
    .expect("xtask has a parent folder")
    .to_path_buf()
}

/// A `cargo` command run from the repo root, with the shared target dir.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(repo_root());
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        if let Some(dir) = shared_target_dir() {
            cmd.env("CARGO_TARGET_DIR", dir);
        }
    }
    cmd
}

/// Where builds go: a cache outside the clone when we may write there, so a
/// fresh clone on the same machine reuses earlier builds.
pub fn shared_target_dir() -> Option<PathBuf> {
    let dir = PathBuf::from("/var/cache/vigil/target");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// The directory binaries land in.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(shared_target_dir)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Run a command to completion, failing with its description.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {}", describe(cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {}: {e}", describe(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed ({status})", describe(cmd)))
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn test(args: &[String]) -> Result<()> {
    prereq::ensure_packages(TEST_PACKAGES)?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    deny::check()?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // nextest runs test binaries in parallel and prints a summary CI can read;
    // fall back to cargo test where it is not installed.
    if prereq::has_cargo_subcommand("nextest") {
        let mut cmd = cargo();
        cmd.args([
            "nextest",
            "run",
            "--workspace",
            "--no-fail-fast",
            "--profile",
            "ci",
        ]);
        cmd.args(args);
        // Snapshot tests find their `.snap` files from this checkout, even
        // when the shared target dir holds a binary another checkout built
        // (insta otherwise uses the compile-time manifest dir).
        cmd.env("INSTA_WORKSPACE_ROOT", repo_root());
        run(&mut cmd)?;
        // nextest does not run doctests.
        run(cargo().args(["test", "--workspace", "--doc"]))?;
    } else {
        let mut cmd = cargo();
        cmd.args(["test", "--workspace", "--no-fail-fast"]);
        cmd.args(args);
        cmd.env("INSTA_WORKSPACE_ROOT", repo_root());
        run(&mut cmd)?;
    }
    // The sensor packages around the debug binary just built: no release
    // build, a Debian root from mmdebstrap once a day.
    package::check_debug_build()?;
    // The appliance image's parts on a reduced root, same debug binaries.
    image::check_debug_build()
}

fn bench(name: Option<&str>) -> Result<()> {
    prereq::ensure_packages(BUILD_PACKAGES)?;
    let selected: Vec<_> = match name {
        None => BENCHES.iter().collect(),
        Some(n) => {
            let found: Vec<_> = BENCHES.iter().filter(|(b, _, _)| *b == n).collect();
            if found.is_empty() {
                let names: Vec<_> = BENCHES.iter().map(|(b, _, _)| *b).collect();
                return Err(format!("unknown bench {n:?}; known: {}", names.join(", ")));
            }
            found
        }
    };
    // The same build selection as `cargo xtask test` and the demo: a `-p`
    // build would unify features differently and rebuild RocksDB's C++.
    run(cargo().args(["build", "--workspace", "--all-targets"]))?;
    if selected.iter().any(|(b, _, _)| *b == "ui") {
        // bench-ui's browser step; without them it skips that step and says so.
        if let Err(e) = prereq::ensure_packages(&["chromium", "chromium-driver"]) {
            eprintln!("xtask: {e}");
        }
    }
    for (bench, package, bin) in selected {
        eprintln!("xtask: bench {bench} ({package})");
        run(Command::new(target_dir().join("debug").join(bin)).current_dir(repo_root()))?;
    }
    Ok(())
}

fn fuzz(secs: Option<&str>) -> Result<()> {
    let secs: u64 = secs
        .unwrap_or("30")
        .parse()
        .map_err(|_| "fuzz takes a number of seconds per target".to_string())?;
    if !prereq::has_nightly() {
        return Err(
            "cargo fuzz needs a nightly toolchain and none is installed; \
                    run `rustup toolchain install nightly` and try again"
                .into(),
        );
    }
    if !prereq::has_cargo_subcommand("fuzz") {
        eprintln!("xtask: cargo-fuzz is missing; installing it with `cargo install cargo-fuzz`");
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let fuzz_dir = repo_root().join("fuzz");
    for target in FUZZ_TARGETS {
        eprintln!("xtask: fuzzing {target} for {secs} s (nightly toolchain)");
        run(Command::new("cargo")
            .current_dir(&fuzz_dir)
            .env_remove("CARGO_TARGET_DIR")
            .args(["+nightly", "fuzz", "run", target, "--"])
            .arg(format!("-max_total_time={secs}"))
            .arg("-rss_limit_mb=2048"))?;
    }
    eprintln!("xtask: all fuzz targets ran {secs} s without a crash");
    Ok(())
}
