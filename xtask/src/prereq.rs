//! System prerequisites: detect what is missing, install it as root, or say
//! exactly what to run.

use crate::Result;
use std::process::{Command, Stdio};

/// Make sure every Debian package in `packages` is installed.
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    if !is_debian_like() {
        eprintln!(
            "xtask: not a Debian system; make sure these are installed: {}",
            packages.join(" ")
        );
        return Ok(());
    }
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        return Err(format!(
            "missing system packages: {list}\n  run as root: apt-get update && apt-get install -y {list}"
        ));
    }
    eprintln!("xtask: installing missing system packages with apt-get: {list}");
    crate::run(Command::new("apt-get").args(["update", "-q"]))?;
    crate::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
    )?;
    eprintln!("xtask: installed {list}");
    Ok(())
}

fn is_debian_like() -> bool {
    std::path::Path::new("/usr/bin/dpkg-query").exists()
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// True when running as uid 0.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// True when `cargo <name>` exists.
pub fn has_cargo_subcommand(name: &str) -> bool {
    Command::new("cargo")
        .args([name, "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// True when rustup has a nightly toolchain.
pub fn has_nightly() -> bool {
    Command::new("cargo")
        .args(["+nightly", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
