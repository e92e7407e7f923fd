//! `vigil-sensor`: thin command-line shell over the `vigil_sensor` library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vigil_proto::{HostId, Payload};
use vigil_sensor::spool::{Spool, SpoolError, SpoolOptions};
use vigil_sensor::{Config, EnrollParams, Sensor};

#[derive(Parser)]
#[command(name = "vigil-sensor", version, about = "Vigil endpoint sensor")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Enroll with the appliance using a one-time token.
    Enroll {
        /// Appliance address, HOST:PORT.
        #[arg(long)]
        appliance: String,
        /// One-time enrollment token; `-` reads it from stdin (which keeps
        /// it out of `ps` and shell history).
        #[arg(
            long,
            required_unless_present = "token_file",
            conflicts_with = "token_file"
        )]
        token: Option<String>,
        /// Read the one-time token from this file instead.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// SHA-256 of the appliance CA certificate (hex, ':' allowed).
        #[arg(long = "ca-sha256")]
        ca_sha256: String,
        /// Where key, certificate, CA and host id are stored.
        #[arg(long, default_value = "/var/lib/vigil-sensor")]
        state_dir: PathBuf,
        /// TUF root (`root.json`) updates are verified against; default
        /// /usr/share/vigil-sensor/update-root.json if present, else
        /// updates are off.
        #[arg(long)]
        update_root: Option<PathBuf>,
        /// The appliance's console, https://HOST:PORT, to update from.
        #[arg(long)]
        updates_url: Option<String>,
    },
    /// Update this sensor's binary from the appliance, verified against
    /// the TUF root it was enrolled with.
    Update {
        /// Only report whether a newer release is available.
        #[arg(long)]
        check: bool,
        /// The state directory enrollment wrote.
        #[arg(long, default_value = "/var/lib/vigil-sensor")]
        state_dir: PathBuf,
        /// The binary to replace (default: this one).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Exit with status 10 instead of 0 when a new binary was
        /// installed, so the caller restarts the sensor only then (the
        /// update timer's unit does). Refusals still exit 1.
        #[arg(long)]
        installed_exit_code: bool,
    },
    /// Run the sensor.
    Run {
        /// TOML configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Watch this network namespace (/run/netns/NAME) as the host.
        #[arg(long)]
        netns: Option<String>,
    },
    /// Test helper: append events to a spool forever, printing progress.
    #[command(hide = true)]
    DebugSpoolWriter {
        /// Spool directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match real_main() {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("vigil-sensor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The exit status on success: 0, or what `update --installed-exit-code`
/// maps its outcome to.
fn real_main() -> anyhow::Result<u8> {
    // Everything the sensor writes (identity, spool, state) is its own:
    // no file or directory it creates is readable by anyone else.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let cli = Cli::parse();
    // One thread for the async side (pipeline, spool, uplink): collectors
    // are threads of their own, and a second worker only added cross-thread
    // wakeups (1k events/s: 0.89 % -> 0.51-0.59 % of a core with the
    // longer drain periods, `bench-sensor`).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.cmd {
        Cmd::Enroll {
            appliance,
            token,
            token_file,
            ca_sha256,
            state_dir,
            update_root,
            updates_url,
        } => {
            let token = read_token(token, token_file)?;
            // Checked before the token is spent.
            let (updates, said) =
                vigil_sensor::update::prepare(update_root.as_deref(), updates_url.as_deref())?;
            let id = rt.block_on(vigil_sensor::enroll(&EnrollParams {
                appliance,
                token,
                ca_sha256,
                state_dir: state_dir.clone(),
            }))?;
            println!(
                "enrolled as host {} (identity in {})",
                id.host,
                state_dir.display()
            );
            if let Some(u) = updates {
                u.save(&state_dir)?;
            }
            println!("{said}");
            Ok(0)
        }
        Cmd::Update {
            check,
            state_dir,
            binary,
            installed_exit_code,
        } => update(&rt, &state_dir, binary, check, installed_exit_code),
        Cmd::Run { config, netns } => {
            let mut cfg = Config::load(&config)?;
            cfg.netns = netns;
            rt.block_on(async move {
                let handle = Sensor::start(cfg).await?;
                wait_for_signal().await;
                tracing::info!("shutting down");
                handle.shutdown().await;
                anyhow::Ok(0)
            })
        }
        Cmd::DebugSpoolWriter { dir } => debug_writer(&dir).map(|()| 0).map_err(Into::into),
    }
}

/// `vigil-sensor update [--check]`: fetch, verify, install, say what
/// happened; any refusal is an error (non-zero exit) with the binary
/// untouched. Returns the exit status (`update::exit_status`).
fn update(
    rt: &tokio::runtime::Runtime,
    state_dir: &std::path::Path,
    binary: Option<PathBuf>,
    check: bool,
    installed_exit_code: bool,
) -> anyhow::Result<u8> {
    use vigil_sensor::update::{self, BaseUrl, HttpsFetcher, UpdateSettings};
    let settings = UpdateSettings::load(state_dir)?.ok_or(update::UpdateError::Off)?;
    let identity = vigil_sensor::Identity::load(state_dir)?;
    let base = BaseUrl::parse(&settings.url).map_err(anyhow::Error::msg)?;
    let mut fetcher = HttpsFetcher::new(rt, base, &identity.ca_der).map_err(anyhow::Error::msg)?;
    let binary = match binary {
        Some(b) => b,
        None => std::env::current_exe().context("locating this binary")?,
    };
    let outcome = update::run(
        state_dir,
        &mut fetcher,
        &binary,
        check,
        std::time::SystemTime::now(),
    )?;
    println!("{outcome}");
    Ok(update::exit_status(&outcome, installed_exit_code))
}

/// The token from `--token VALUE`, `--token -` (stdin) or `--token-file`,
/// without surrounding whitespace.
fn read_token(token: Option<String>, file: Option<PathBuf>) -> anyhow::Result<String> {
    let text = match (token, file) {
        (Some(t), _) if t == "-" => {
            std::io::read_to_string(std::io::stdin()).context("reading the token from stdin")?
        }
        (Some(t), _) => t,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .with_context(|| format!("reading the token from {}", path.display()))?,
        (None, None) => anyhow::bail!("give --token or --token-file"),
    };
    let token = text.trim().to_string();
    anyhow::ensure!(!token.is_empty(), "the enrollment token is empty");
    Ok(token)
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Test helper behind `vigil-sensor debug-spool-writer`: appends events
/// forever and acks every other hundred, printing `appended N acked M` after
/// each step completes, so a test can `kill -9` it at any moment and check
/// what survived.
fn debug_writer(dir: &std::path::Path) -> Result<(), SpoolError> {
    let mut sp = Spool::open(
        dir,
        HostId(1),
        SpoolOptions {
            segment_bytes: 64 * 1024,
            ..SpoolOptions::default()
        },
    )?;
    use std::io::Write;
    let mut out = std::io::stdout();
    let mut acked = 0u64;
    loop {
        let mut last = 0;
        for _ in 0..100 {
            last = sp.append(
                last + 1,
                Payload::ProcessExit(vigil_proto::ProcessExit {
                    pid: sp.next_seq() as u32,
                    exit_code: Some(0),
                    exe: Some("/bin/true".into()),
                }),
            )?;
        }
        if last % 200 == 0 {
            sp.ack(acked + 1, last - 100)?;
            acked = last - 100;
        }
        let _ = writeln!(out, "appended {last} acked {acked}");
        let _ = out.flush();
    }
}
