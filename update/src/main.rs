//! `vigil-update`: the signing side (keygen, init, rotate-root, sign) and
//! the appliance side (init-appliance, verify, apply, boot, health,
//! status) as a thin shell over the `vigil_update` library.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use vigil_update::disk::{boot_entry, slot_from_cmdline};
use vigil_update::pack::{Expiries, Repo, RoleSpec, RootSpec};
use vigil_update::{
    keys, DirSlots, DiskSlots, HealthOutcome, Slot, SlotWriter, StateStore, VerifyOptions,
};

/// The appliance's update state (on the data partition, root only).
const APPLIANCE_STATE: &str = "/var/lib/vigil-update";
/// The root of trust and release number the image ships in its slot.
const SHIPPED_ROOT: &str = "/usr/lib/vigil/update/root.json";
const SHIPPED_RELEASE: &str = "/usr/lib/vigil/update/release";

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
        /// The trusted root (default: the one the image ships).
        #[arg(long, default_value = SHIPPED_ROOT)]
        root: PathBuf,
        /// Release number of the installed image (default: the image's).
        #[arg(long)]
        release: Option<u64>,
        /// Do nothing if the state exists (every boot runs this).
        #[arg(long)]
        if_missing: bool,
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
    /// At boot: choose the slot (directory slots: a pending update gets
    /// one trial), or on the appliance's disk record the slot the boot
    /// loader chose (`vigil.slot=` on the kernel command line).
    Boot {
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Print the systemd-boot entry of a slot (the image build's first one).
    BootEntry {
        #[arg(long, value_parser = parse_slot)]
        slot: Slot,
        #[arg(long)]
        release: u64,
        #[arg(long)]
        partuuid: String,
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

/// Where the slots are: directories (`--slots`, for trials and tests) or,
/// by default, the appliance's own disk (root partitions and ESP).
#[derive(Args)]
struct Dirs {
    /// Directory slots (`a/`, `b/`) instead of the appliance's disk.
    #[arg(long)]
    slots: Option<PathBuf>,
    /// Directory of `slots.json` (default: the slots directory, or
    /// /var/lib/vigil-update on the appliance).
    #[arg(long)]
    state: Option<PathBuf>,
}

impl Dirs {
    fn state_dir(&self) -> PathBuf {
        self.state
            .clone()
            .or_else(|| self.slots.clone())
            .unwrap_or_else(|| PathBuf::from(APPLIANCE_STATE))
    }

    fn store(&self) -> StateStore {
        StateStore::new(&self.state_dir())
    }

    fn writer(&self) -> Box<dyn SlotWriter> {
        match &self.slots {
            Some(dir) => Box::new(DirSlots::new(dir)),
            None => Box::new(DiskSlots::appliance(&self.state_dir())),
        }
    }
}

fn parse_slot(s: &str) -> Result<Slot, String> {
    match s {
        "a" => Ok(Slot::A),
        "b" => Ok(Slot::B),
        _ => Err(format!("{s}: a slot is a or b")),
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
            if_missing,
        } => init_appliance(&dirs, &root, release, if_missing)?,
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
            let d = match dirs.slots {
                Some(_) => vigil_update::boot(&dirs.store())?,
                None => {
                    let cmdline = std::fs::read_to_string("/proc/cmdline")?;
                    let slot = slot_from_cmdline(&cmdline)
                        .context("no vigil.slot= on the kernel command line")?;
                    vigil_update::booted(&dirs.store(), slot)?
                }
            };
            if let Some(failed) = d.rolled_back {
                println!(
                    "slot {failed} never reported healthy: rolled back to slot {}",
                    d.slot
                );
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
                // A failure exit: the health unit fails, so the boot is not
                // blessed and systemd reboots into the previous slot.
                HealthOutcome::RolledBack { failed, to } => anyhow::bail!(
                    "slot {failed} failed its health check: next boot is slot {to}, reboot"
                ),
                HealthOutcome::Unchanged => println!("no update on trial: nothing changed"),
            }
        }
        Command::BootEntry {
            slot,
            release,
            partuuid,
        } => print!("{}", boot_entry(slot, release, &partuuid)),
        Command::Status { dirs } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&vigil_update::status(&dirs.store())?)?
            );
        }
    }
    Ok(())
}

fn init_appliance(dirs: &Dirs, root: &Path, release: Option<u64>, if_missing: bool) -> Result<()> {
    let store = dirs.store();
    if if_missing && store.path().exists() {
        return Ok(());
    }
    let release = match release {
        Some(r) => r,
        None => std::fs::read_to_string(SHIPPED_RELEASE)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
    };
    let bytes = std::fs::read(root).with_context(|| root.display().to_string())?;
    store.init(&bytes, release, None)?;
    println!(
        "trusting {} with release {release} in slot a",
        root.display()
    );
    Ok(())
}

fn apply(bundle: &Path, dirs: &Dirs) -> Result<()> {
    let mut writer = dirs.writer();
    let report = vigil_update::apply_file(bundle, &dirs.store(), writer.as_mut(), &now())?;
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
