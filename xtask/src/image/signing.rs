//! The update signing side of an image build: the TUF repository whose
//! root the image ships (`/usr/lib/vigil/update/root.json`) and that signs
//! the boot test's update bundles.
//!
//! A real release signs with its offline keys: `VIGIL_UPDATE_REPO=DIR`
//! names their repository (and `VIGIL_UPDATE_KEYS=DIR` the online
//! targets/snapshot/timestamp keys `t.key`, `s.key`, `ts.key`). Without
//! it the build makes a development repository once, under the build
//! directory, with three root keys (threshold 2), so the shipped root and
//! the image's hash stay the same from build to build.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::BUILD_DIR;
use crate::package::{capture, io};
use crate::Result;

/// A signing repository and the `vigil-update` tool that drives it.
pub struct Signing {
    repo: PathBuf,
    keys: PathBuf,
    tool: PathBuf,
}

impl Signing {
    /// The release repository from the environment, else the development
    /// one (made on first use).
    pub fn open(tool: &Path) -> Result<Signing> {
        if let Some(repo) = std::env::var_os("VIGIL_UPDATE_REPO") {
            let keys = std::env::var_os("VIGIL_UPDATE_KEYS")
                .ok_or("VIGIL_UPDATE_REPO needs VIGIL_UPDATE_KEYS (t.key, s.key, ts.key)")?;
            return Ok(Signing {
                repo: repo.into(),
                keys: keys.into(),
                tool: tool.to_path_buf(),
            });
        }
        let dir = Path::new(BUILD_DIR).join("update-signing");
        let s = Signing {
            repo: dir.join("repo"),
            keys: dir.clone(),
            tool: tool.to_path_buf(),
        };
        if !s.repo.join("metadata/1.root.json").is_file() {
            eprintln!(
                "xtask: making a development update signing repository in {}",
                dir.display()
            );
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            for k in ["r1", "r2", "r3", "t", "s", "ts"] {
                s.tool(&["keygen", &format!("{k}.key")], &dir)?;
            }
            s.tool(
                &[
                    "init",
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
                    "--sign",
                    "r1.key",
                    "--sign",
                    "r2.key",
                    "--expires",
                    "3650d",
                ],
                &dir,
            )?;
        }
        Ok(s)
    }

    fn tool(&self, args: &[&str], cwd: &Path) -> Result<String> {
        capture(Command::new(&self.tool).args(args).current_dir(cwd))
    }

    /// The newest root, which the image trusts.
    pub fn root_json(&self) -> Result<PathBuf> {
        let meta = self.repo.join("metadata");
        let mut n = 1;
        while meta.join(format!("{}.root.json", n + 1)).is_file() {
            n += 1;
        }
        Ok(meta.join(format!("{n}.root.json")))
    }

    /// The newest release signed (the targets version; 0 before any).
    pub fn release(&self) -> Result<u64> {
        let path = self.repo.join("metadata/targets.json");
        let Ok(text) = fs::read_to_string(&path) else {
            return Ok(0);
        };
        let after = text
            .split("\"version\":")
            .nth(1)
            .ok_or_else(|| format!("{}: no version", path.display()))?;
        after
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .map_err(|e| format!("{}: version: {e}", path.display()))
    }

    /// Sign `files` as the next release named `name` into the bundle `out`.
    pub fn pack(&self, name: &str, files: &[&Path], out: &Path) -> Result<u64> {
        let key = |k: &str| self.keys.join(k).display().to_string();
        let mut cmd = Command::new(&self.tool);
        cmd.arg("sign")
            .arg("--repo")
            .arg(&self.repo)
            .args([
                "--key",
                &key("t.key"),
                "--key",
                &key("s.key"),
                "--key",
                &key("ts.key"),
            ])
            .args(["--release", name, "--out"])
            .arg(out)
            .args(files);
        capture(&mut cmd)?;
        // The bundle holds the targets: the repository's copies (a root
        // image each) are not needed to sign the next release.
        let targets = self.repo.join("targets");
        if targets.exists() {
            fs::remove_dir_all(&targets).map_err(|e| io(&targets, e))?;
        }
        self.release()
    }
}
