//! The replay command line behind `vigil replay` (binary `vigil-replay`):
//! a data set into a running appliance through the real sensor uplink.

use crate::replay::{
    otrf_source, replay, synth_source, BoxedSource, LanlSource, Progress, ReplayOptions,
    ReplayReport, TimeMode,
};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use vigil_datasets::synth::SynthConfig;

#[derive(Parser)]
#[command(
    name = "vigil replay",
    about = "Stream a data set into a running appliance through the real sensor uplink (one enrolled identity per data-set host)"
)]
struct ReplayCli {
    #[command(subcommand)]
    source: ReplaySource,
}

#[derive(Subcommand)]
enum ReplaySource {
    /// The synthetic enterprise generator (labelled campaigns in the second half).
    Synth {
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Days simulated (campaigns from day DAYS/2 on).
        #[arg(long, default_value_t = 14)]
        days: u32,
        /// Workstations (servers, admins and new hires scale with it).
        #[arg(long, default_value_t = 60)]
        hosts: usize,
        #[command(flatten)]
        to: ReplayArgs,
    },
    /// LANL 2015 format: DIR/auth.txt[.gz], optional proc.txt[.gz], flows.txt[.gz].
    Lanl {
        /// Folder holding the files.
        dir: PathBuf,
        #[command(flatten)]
        to: ReplayArgs,
    },
    /// OTRF Security-Datasets capture zips (or .evtx files), laid end to end.
    Otrf {
        /// Capture files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        to: ReplayArgs,
    },
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Appliance QUIC address, HOST:PORT.
    #[arg(long)]
    appliance: String,
    /// Enrollment token with one use per data-set host not enrolled yet
    /// (`vigil token create --uses N`).
    #[arg(long)]
    token: String,
    /// SHA-256 of the appliance CA certificate (hex, ':' allowed).
    #[arg(long = "ca-sha256")]
    ca_sha256: String,
    /// Identities and spools, one folder per data-set host (reused on a re-run).
    #[arg(long, default_value = "vigil-replay")]
    state: PathBuf,
    /// Data-set seconds per wall second; `max` or 0: as fast as acks allow.
    #[arg(long, default_value = "max", value_parser = parse_speedup)]
    speedup: Speedup,
    /// Event timestamps: `shift` (the first event at the replay's start,
    /// the data set's spacing kept) or `original`.
    #[arg(long, default_value = "shift", value_parser = parse_time_mode)]
    time: TimeMode,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy)]
struct Speedup(Option<f64>);

fn parse_speedup(s: &str) -> std::result::Result<Speedup, String> {
    if s.eq_ignore_ascii_case("max") {
        return Ok(Speedup(None));
    }
    match s.parse::<f64>() {
        Ok(0.0) => Ok(Speedup(None)),
        Ok(v) if v.is_finite() && v > 0.0 => Ok(Speedup(Some(v))),
        _ => Err(format!("{s:?}: a positive number, 0 or max")),
    }
}

fn parse_time_mode(s: &str) -> std::result::Result<TimeMode, String> {
    match s {
        "shift" => Ok(TimeMode::Shift),
        "original" => Ok(TimeMode::Original),
        _ => Err(format!("{s:?}: shift or original")),
    }
}

/// Parse `args` (the first one is the program name) and run the replay.
/// Progress goes to stderr every second; the totals to stdout. Fails when
/// not every event read was acknowledged.
pub fn run<I, T>(args: I) -> Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = ReplayCli::parse_from(args);
    let (source, to) = open_source(cli.source)?;
    let mut opts = ReplayOptions::new(&to.appliance, &to.token, &to.ca_sha256, &to.state);
    opts.speedup = to.speedup.0;
    opts.time = to.time;
    opts.progress = Some(std::sync::Arc::new(|p: &Progress| {
        eprintln!(
            "replay: {:>6.1}s  read {:>10}  sent {:>10}  acked {:>10}  ({:>8.0} sent/s, {:>8.0} acked/s)  {} hosts",
            p.elapsed.as_secs_f64(),
            p.read,
            p.sent,
            p.acked,
            p.sent_per_s,
            p.acked_per_s,
            p.hosts
        )
    }));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = rt
        .block_on(replay(source, opts))
        .with_context(|| format!("replaying into {}", to.appliance))?;
    print_report(&report, &to);
    anyhow::ensure!(
        report.events_acked == report.events_read,
        "{} of {} events were not acknowledged (the spools in {} keep them and send them first on the next run)",
        report.events_read - report.events_acked,
        report.events_read,
        to.state.display()
    );
    Ok(())
}

/// The data set named on the command line, and where it goes.
fn open_source(source: ReplaySource) -> Result<(BoxedSource, ReplayArgs)> {
    Ok(match source {
        ReplaySource::Synth {
            seed,
            days,
            hosts,
            to,
        } => {
            anyhow::ensure!(days >= 2, "--days: at least 2");
            anyhow::ensure!(hosts >= 2, "--hosts: at least 2");
            let cfg = SynthConfig {
                seed,
                days,
                attack_from_day: days / 2,
                workstations: hosts,
                windows_servers: (hosts / 6).clamp(4, 250),
                linux_servers: (hosts / 10).clamp(4, 250),
                admins: (hosts / 15).clamp(1, 100),
                new_hires: (hosts / 15).min(100),
                ..SynthConfig::default()
            };
            (BoxedSource::new(synth_source(cfg)), to)
        }
        ReplaySource::Lanl { dir, to } => {
            let src =
                LanlSource::new(&dir).with_context(|| format!("reading {}", dir.display()))?;
            (BoxedSource::new(src), to)
        }
        ReplaySource::Otrf { files, to } => {
            let items = otrf_source(&files).context("reading the captures")?;
            (BoxedSource::new(items), to)
        }
    })
}

fn print_report(report: &ReplayReport, to: &ReplayArgs) {
    let reused = report.hosts.values().filter(|h| h.reused).count();
    println!(
        "replayed {} hosts ({} enrolled, {} reused from {}): read {} events, sent {}, acknowledged {} in {:.1}s ({:.0} events/s acknowledged)",
        report.hosts.len(),
        report.hosts.len() - reused,
        reused,
        to.state.display(),
        report.events_read,
        report.events_sent,
        report.events_acked,
        report.streaming.as_secs_f64(),
        report.acked_per_s()
    );
    if to.json {
        println!(
            "{}",
            serde_json::json!({
                "hosts": report.hosts.len(),
                "enrolled": report.hosts.len() - reused,
                "reused": reused,
                "events_read": report.events_read,
                "events_sent": report.events_sent,
                "events_acked": report.events_acked,
                "streaming_s": report.streaming.as_secs_f64(),
                "acked_per_s": report.acked_per_s(),
            })
        );
    }
}
