//! `vigil-update`: the signing side (keygen, init, rotate-root, sign) and
//! the appliance side (init-appliance, verify, apply, boot, health,
//! status) as a thin shell over the `vigil_update` library.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use vigil_update::pack::{Expiries, Repo, RoleSpec, RootSpec};
use vigil_update::{keys, DirSlots, HealthOutcome, StateStore, VerifyOptions};

#[derive(Parser)]
#[command(
    name = "vigil-update",
    about = "Signed offline updates (TUF) with A/B rollback"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate an Ed25519 key: FILE (PKCS#8 PEM, 0600) and FILE.pub.
    Keygen { file: PathBuf },
    /// Create a signing repository with root version 1.
    Init(RootArgs),
    /// Add root version N+1 (signed by the old and the new root threshold).
    RotateRoot(RootArgs),
    /// Sign a release of FILES and write it as a bundle (also `pack`).
    #[command(alias = "pack")]
    Sign {
        #[arg(long)]
        repo: PathBuf,
        /// Private keys to sign with (targets, snapshot, timestamp).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// Release name recorded with each target.
        #[arg(long)]
        release: String,
        /// Bundle file to write.
        #[arg(long)]
        out: PathBuf,
        /// Timestamp expiry: how long the bundle may travel before use.
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        timestamp_expires: Duration,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Set up an appliance's update state from its shipped root.json.
    InitAppliance {
        #[command(flatten)]
        dirs: Dirs,
        #[arg(long)]
        root: PathBuf,
        /// Release number of the installed image.
        #[arg(long, default_value_t = 0)]
        release: u64,
    },
    /// Verify a bundle against the appliance's trust; change nothing.
    Verify {
        bundle: PathBuf,
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Verify a bundle and install it into the inactive slot.
    Apply {
        bundle: PathBuf,
        #[command(flatten)]
        dirs: Dirs,
    },
    /// At boot: choose the slot (a pending update gets one trial).
    Boot {
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Report the health check's verdict on the running slot.
    Health {
        #[command(flatten)]
        dirs: Dirs,
        /// The check failed: roll back to the previous slot.
        #[arg(long)]
        failed: bool,
    },
    /// Show both slots and the trusted versions (JSON).
    Status {
        #[command(flatten)]
        dirs: Dirs,
    },
}

#[derive(Args)]
struct Dirs {
    /// Directory of the slots (`a/`, `b/`).
    #[arg(long)]
    slots: PathBuf,
    /// Directory of `slots.json` (default: the slots directory).
    #[arg(long)]
    state: Option<PathBuf>,
}

impl Dirs {
    fn store(&self) -> StateStore {
        StateStore::new(self.state.as_deref().unwrap_or(&self.slots))
    }
}

#[derive(Args)]
struct RootArgs {
    #[arg(long)]
    repo: PathBuf,
    /// Public root keys (`.pub`).
    #[arg(long = "root-key", required = true)]
    root_keys: Vec<PathBuf>,
    #[arg(long, default_value_t = 1)]
    root_threshold: u32,
    #[arg(long = "targets-key", required = true)]
    targets_keys: Vec<PathBuf>,
    #[arg(long = "snapshot-key", required = true)]
    snapshot_keys: Vec<PathBuf>,
    #[arg(long = "timestamp-key", required = true)]
    timestamp_keys: Vec<PathBuf>,
    /// Private root keys to sign the new root with.
    #[arg(long = "sign", required = true)]
    signers: Vec<PathBuf>,
    #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
    expires: Duration,
}

impl RootArgs {
    fn spec(&self) -> Result<RootSpec> {
        let role = |paths: &[PathBuf], threshold| -> Result<RoleSpec> {
            let keys = paths
                .iter()
                .map(|p| keys::read_public(p))
                .collect::<Result<_, _>>()?;
            Ok(RoleSpec { keys, threshold })
        };
        Ok(RootSpec {
            root: role(&self.root_keys, self.root_threshold)?,
            targets: role(&self.targets_keys, 1)?,
            snapshot: role(&self.snapshot_keys, 1)?,
            timestamp: role(&self.timestamp_keys, 1)?,
            expires: SystemTime::now() + self.expires,
        })
    }
}

fn private_keys(paths: &[PathBuf]) -> Result<Vec<ed25519_dalek::SigningKey>> {
    Ok(paths
        .iter()
        .map(|p| keys::read_private(p))
        .collect::<Result<_, _>>()?)
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Keygen { file } => {
            let key = keys::generate();
            keys::write_key_pair(&key, &file)?;
            println!(
                "{} {}",
                keys::key_id_of(&key),
                keys::public_path(&file).display()
            );
        }
        Command::Init(args) => {
            Repo::create(&args.repo, &args.spec()?, &private_keys(&args.signers)?)?;
            println!("root version 1 in {}", args.repo.display());
        }
        Command::RotateRoot(args) => {
            let n = Repo::open(&args.repo)?
                .rotate_root(&args.spec()?, &private_keys(&args.signers)?)?;
            println!("root version {n} in {}", args.repo.display());
        }
        Command::Sign {
            repo,
            keys,
            release,
            out,
            timestamp_expires,
            files,
        } => {
            let repo = Repo::open(&repo)?;
            let expiries = Expiries {
                timestamp: timestamp_expires,
                ..Expiries::default()
            };
            let n = repo.publish(
                &files,
                &release,
                &private_keys(&keys)?,
                &expiries,
                SystemTime::now(),
            )?;
            repo.write_bundle(&out)?;
            println!("release {n} ({release}) written to {}", out.display());
        }
        Command::InitAppliance {
            dirs,
            root,
            release,
        } => {
            let bytes = std::fs::read(&root).with_context(|| root.display().to_string())?;
            dirs.store().init(&bytes, release, None)?;
            println!(
                "trusting {} with release {release} in slot a",
                root.display()
            );
        }
        Command::Verify { bundle, dirs } => {
            let v = vigil_update::verify_file(&bundle, &dirs.store(), &now())?;
            println!(
                "ok: release {} with {} target(s) verifies",
                v.release,
                v.targets.len()
            );
        }
        Command::Apply { bundle, dirs } => apply(&bundle, &dirs)?,
        Command::Boot { dirs } => {
            let d = vigil_update::boot(&dirs.store())?;
            if let Some(failed) = d.rolled_back {
                println!("slot {failed} never reported healthy: rolled back");
            }
            println!(
                "boot slot {}{}",
                d.slot,
                if d.trial { " (trial)" } else { "" }
            );
        }
        Command::Health { dirs, failed } => {
            match vigil_update::report_health(&dirs.store(), !failed)? {
                HealthOutcome::Committed(slot) => println!("slot {slot} committed"),
                HealthOutcome::RolledBack { failed, to } => println!(
                    "slot {failed} failed its health check: next boot is slot {to}, reboot"
                ),
                HealthOutcome::Unchanged => println!("no update on trial: nothing changed"),
            }
        }
        Command::Status { dirs } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&vigil_update::status(&dirs.store())?)?
            );
        }
    }
    Ok(())
}

fn apply(bundle: &Path, dirs: &Dirs) -> Result<()> {
    let mut writer = DirSlots::new(&dirs.slots);
    let report = vigil_update::apply_file(bundle, &dirs.store(), &mut writer, &now())?;
    if let Some((from, to)) = report.root_rotation {
        println!("root rotated from version {from} to {to}");
    }
    println!(
        "release {} written to slot {}: reboot to try it",
        report.release, report.slot
    );
    Ok(())
}

fn now() -> VerifyOptions {
    VerifyOptions::at(SystemTime::now())
}
