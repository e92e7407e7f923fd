//! The replay command line behind `vigil replay` (binary `vigil-replay`):
//! a data set into a running appliance through the real sensor uplink.

use crate::replay::{
    otrf_source, replay, synth_config, synth_source, BoxedSource, LanlSource, Progress,
    ReplayOptions, ReplayReport, TimeMode,
};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vigil_datasets::synth::EPOCH_NS;

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
    /// With `--time shift`: stamp the first event this long before now
    /// instead (e.g. `-3d`), so a history shorter than that lies wholly in
    /// the past. `synth` refuses a start later than `--days` ago.
    #[arg(long, allow_hyphen_values = true, value_parser = parse_ago)]
    start: Option<Duration>,
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

/// `-3d`, `-36h` (or without the sign): how long before now.
fn parse_ago(s: &str) -> std::result::Result<Duration, String> {
    let d = humantime::parse_duration(s.strip_prefix('-').unwrap_or(s))
        .map_err(|e| format!("{s:?}: a duration before now such as -3d ({e})"))?;
    if d.is_zero() {
        return Err(format!("{s:?}: a duration before now such as -3d"));
    }
    Ok(d)
}

/// The time mode the arguments ask for, with `--start` resolved against
/// the wall clock now.
fn time_mode(to: &ReplayArgs) -> Result<TimeMode> {
    let Some(ago) = to.start else {
        return Ok(to.time);
    };
    anyhow::ensure!(
        to.time == TimeMode::Shift,
        "--start goes with --time shift (the default)"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?;
    let first = now.checked_sub(ago).context("--start is before 1970")?;
    Ok(TimeMode::StartAt(first.as_nanos() as u64))
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
    let (source, to, span) = open_source(cli.source)?;
    let mut opts = ReplayOptions::new(&to.appliance, &to.token, &to.ca_sha256, &to.state);
    opts.speedup = to.speedup.0;
    opts.time = time_mode(&to)?;
    opts.progress = Some(std::sync::Arc::new(move |p: &Progress| {
        eprintln!(
            "replay: {:>6.1}s  read {:>10}  sent {:>10}  acked {:>10}  ({:>8.0} sent/s, {:>8.0} acked/s)  {} hosts{}",
            p.elapsed.as_secs_f64(),
            p.read,
            p.sent,
            p.acked,
            p.sent_per_s,
            p.acked_per_s,
            p.hosts,
            span.map(|s| progress_bar(s, p.data_ts_ns)).unwrap_or_default()
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

/// The data set's time range `(first, end)` in its own ns, when known
/// before reading it (the generator's days).
type Span = (u64, u64);

/// `  [#######·············]  35% of the data set's time` for a progress
/// line: how far the newest event read is into the data set's span.
fn progress_bar((first, end): Span, data_ts_ns: u64) -> String {
    const WIDTH: u64 = 24;
    let done = data_ts_ns.clamp(first, end) - first;
    let pct = (u128::from(done) * 100 / u128::from((end - first).max(1))) as u64;
    let filled = (pct * WIDTH / 100) as usize;
    format!(
        "  [{}{}] {pct:>3}% of the data set's time",
        "#".repeat(filled),
        "·".repeat(WIDTH as usize - filled)
    )
}

/// The data set named on the command line, where it goes, and its span
/// when known.
fn open_source(source: ReplaySource) -> Result<(BoxedSource, ReplayArgs, Option<Span>)> {
    Ok(match source {
        ReplaySource::Synth {
            seed,
            days,
            hosts,
            to,
        } => {
            anyhow::ensure!(days >= 2, "--days: at least 2");
            anyhow::ensure!(hosts >= 2, "--hosts: at least 2");
            // The generator's days start at midnight of day 0: a start at
            // least DAYS ago keeps every event before now.
            if let Some(ago) = to.start {
                anyhow::ensure!(
                    ago >= Duration::from_secs(u64::from(days) * 86_400),
                    "--start -{}: the {days} days of history would run past now; start at least -{days}d",
                    humantime::format_duration(ago)
                );
            }
            let cfg = synth_config(seed, days, hosts);
            let span = (
                EPOCH_NS,
                EPOCH_NS + u64::from(days) * 86_400 * 1_000_000_000,
            );
            (BoxedSource::new(synth_source(cfg)), to, Some(span))
        }
        ReplaySource::Lanl { dir, to } => {
            let src =
                LanlSource::new(&dir).with_context(|| format!("reading {}", dir.display()))?;
            (BoxedSource::new(src), to, None)
        }
        ReplaySource::Otrf { files, to } => {
            let items = otrf_source(&files).context("reading the captures")?;
            (BoxedSource::new(items), to, None)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_is_a_duration_before_now() {
        assert_eq!(parse_ago("-3d"), Ok(Duration::from_secs(3 * 86_400)));
        assert_eq!(parse_ago("36h"), Ok(Duration::from_secs(36 * 3_600)));
        assert!(parse_ago("-0s").is_err());
        assert!(parse_ago("yesterday").is_err());
    }

    #[test]
    fn synth_history_must_end_before_now() {
        let args = |start: &'static str| {
            vec![
                "vigil replay",
                "synth",
                "--days",
                "3",
                "--appliance",
                "127.0.0.1:1",
                "--token",
                "t",
                "--ca-sha256",
                "00",
                "--start",
                start,
            ]
        };
        let cli = ReplayCli::parse_from(args("-2d"));
        let err = open_source(cli.source).err().expect("2 days cannot hold 3");
        assert!(err.to_string().contains("run past now"), "{err}");
        let cli = ReplayCli::parse_from(args("-3d"));
        let (_, to, span) = open_source(cli.source).expect("3 days fit");
        let TimeMode::StartAt(first) = time_mode(&to).expect("time mode") else {
            panic!("--start gives StartAt");
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let ago = now.as_nanos() as u64 - first;
        assert!(
            (3 * 86_400 * 1_000_000_000..3 * 86_400 * 1_000_000_000 + 60_000_000_000)
                .contains(&ago)
        );
        let (begin, end) = span.expect("the generator's span is known");
        assert!(
            first + (end - begin) <= now.as_nanos() as u64,
            "ends before now"
        );
    }

    #[test]
    fn progress_bar_follows_the_data_time() {
        assert!(progress_bar((100, 200), 50).contains("[························]   0%"));
        assert!(progress_bar((100, 200), 150).contains(" 50%"));
        assert!(progress_bar((100, 200), 999).contains("[########################] 100%"));
    }
}
