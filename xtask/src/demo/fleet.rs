//! The demo's fleet: a history of [`WORKSTATIONS`] workstations (and the
//! servers, admins and new hires the generator adds: 88 hosts) over
//! [`DAYS`] days from the project's synthetic enterprise generator,
//! streamed through real sensor uplinks by `vigil replay synth` and dated
//! so it ends before now (`--start -DAYSd`), before the attack lab starts.
//! At the end of a timed run the demo checks the store holds that history.
//!
//! The history is the detector's learning period: the appliance first runs
//! with a learning period longer than the history ([`LEARNING_WHILE_REPLAYING`]),
//! so every replayed host only learns while its week streams in; once the
//! pipeline has scored all of it ([`wait_scored`]) the demo restarts the
//! appliance with none, the detector trains every host on its week and
//! calibrates the fleet's hop threshold to the alert budget from it
//! ([`wait_trained`]), and hosts enrolled afterwards (this machine, the
//! lab) are scored from their first event against that baseline.
//!
//! Replayed hosts are named `ws-NNN`, `srv-…`, `adm-ws-NN` with addresses
//! in 10.1–10.3.0.0/16; the lab's are `v…h1`–`h3` in 198.18.0.0/15 and
//! 10.254.0.0/16, and every host id is assigned by the appliance at
//! enrollment, so the two never collide.

use super::{output, Enrollment};
use crate::Result;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Workstations the generator simulates (`vigil replay synth --hosts`).
pub const WORKSTATIONS: usize = 60;
/// Days of history: a week, what the host page's activity panel draws
/// (the generator's campaigns start halfway).
pub const DAYS: u32 = 7;
/// Hosts with history the demo must end with.
pub const MIN_HOSTS: usize = 60;
/// Events a replayed host must have in the store to count as having
/// history (a generated workstation logs on a few dozen times a week).
const MIN_EVENTS_PER_HOST: u64 = 10;
/// Token uses for the replay: one per generated host, with room to spare.
pub const TOKEN_USES: u32 = 200;
/// The appliance's learning period while the history streams: longer than
/// [`DAYS`], so no replayed host finishes learning before its week is in.
pub const LEARNING_WHILE_REPLAYING: &str = "8d";
/// Longest wait for the pipeline to score the history, or to train on it.
const SCORE_TIMEOUT: Duration = Duration::from_secs(300);

/// What the replay reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Replayed {
    /// Data-set hosts replayed.
    pub hosts: u64,
    /// Events acknowledged by the appliance.
    pub events: u64,
    /// Wall seconds it took.
    pub secs: f64,
}

/// Streams the fleet's history into the appliance at `quic_port`, the
/// replay's own progress (one line a second with a bar) on the terminal.
pub fn replay(
    vigil: &Path,
    data: &Path,
    quic_port: u16,
    enrollment: &Enrollment,
) -> Result<Replayed> {
    eprintln!(
        "demo: streaming {DAYS} days of a {WORKSTATIONS}-workstation enterprise (synthetic generator) through real sensor uplinks"
    );
    let started = Instant::now();
    let out = Command::new(vigil)
        .args(["replay", "synth", "--days", &DAYS.to_string()])
        .args(["--hosts", &WORKSTATIONS.to_string()])
        .args(["--start", &format!("-{DAYS}d")])
        .args(["--appliance", &format!("127.0.0.1:{quic_port}")])
        .args(["--token", &enrollment.token])
        .args(["--ca-sha256", &enrollment.fingerprint, "--json", "--state"])
        .arg(data.join("replay-state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("run {} replay: {e}", vigil.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("vigil replay failed ({}): {stdout}", out.status));
    }
    let json = stdout.lines().last().unwrap_or_default();
    let replayed = Replayed {
        hosts: json_u64(json, "hosts").ok_or_else(|| format!("no hosts in {json:?}"))?,
        events: json_u64(json, "events_acked").ok_or_else(|| format!("no events in {json:?}"))?,
        secs: started.elapsed().as_secs_f64(),
    };
    println!(
        "demo: fleet history stored: {} hosts, {} events in {:.1} s ({:.0} events/s)",
        replayed.hosts,
        replayed.events,
        replayed.secs,
        replayed.events as f64 / replayed.secs.max(1e-9)
    );
    Ok(replayed)
}

/// Waits until the detection pipeline has scored `events` events (`vigil
/// status`: `detection_events`); returns the seconds it waited.
pub fn wait_scored(vigil: &Path, data: &Path, events: u64) -> Result<f64> {
    let started = Instant::now();
    loop {
        let status = output(Command::new(vigil).args(["status", "--data"]).arg(data))?;
        let scored = counter(&status, "detection_events").unwrap_or(0);
        if scored >= events {
            let secs = started.elapsed().as_secs_f64();
            println!("demo: the detector learned from all {scored} history events ({secs:.1} s after they were stored)");
            return Ok(secs);
        }
        if started.elapsed() > SCORE_TIMEOUT {
            return Err(format!(
                "the pipeline scored {scored} of {events} history events in {SCORE_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until at least `hosts` host models are active (`vigil model
/// status`), i.e. the detector trained on the history; returns how many.
pub fn wait_trained(vigil: &Path, data: &Path, hosts: usize) -> Result<usize> {
    let started = Instant::now();
    loop {
        let models = output(
            Command::new(vigil)
                .args(["model", "status", "--data"])
                .arg(data),
        )?;
        let active = active_models(&models);
        if active >= hosts {
            println!(
                "demo: trained on the history: {active} host models active ({:.1} s after the restart)",
                started.elapsed().as_secs_f64()
            );
            return Ok(active);
        }
        if started.elapsed() > SCORE_TIMEOUT {
            return Err(format!(
                "only {active} of {hosts} host models active:\n{models}"
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Rows of `vigil model status` whose state is `active` (the column is
/// found from the header: a host without a name leaves its column blank).
fn active_models(table: &str) -> usize {
    let mut lines = table.lines();
    let Some(at) = lines.next().and_then(|h| h.find("STATE")) else {
        return 0;
    };
    lines
        .filter(|l| l.get(at..).is_some_and(|s| s.starts_with("active ")))
        .count()
}

/// A counter line of `vigil status` (`  name   value`).
fn counter(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some(name))
            .then(|| words.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

/// The alerts in the store dated before `before_ns` (the history's, when
/// `before_ns` is when the live hosts started) and all alerts, from
/// `vigil alerts --json` over the history's span.
pub fn alerts_before(vigil: &Path, data: &Path, before_ns: u64) -> Result<(usize, usize)> {
    let alerts = output(
        Command::new(vigil)
            .args(["alerts", "--json", "--data"])
            .arg(data)
            .args(["--since", &format!("{}d", DAYS + 1), "--limit", "1000000"]),
    )?;
    let created: Vec<u64> = alerts
        .lines()
        .filter_map(|l| json_u64(l, "created_ns"))
        .collect();
    let old = created.iter().filter(|t| **t < before_ns).count();
    Ok((old, created.len()))
}

/// An unsigned integer field of a flat JSON object line.
fn json_u64(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = line[at..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Fails unless the store has at least [`MIN_HOSTS`] hosts with history
/// (`vigil sensor list`: hosts other than the lab's and this machine's
/// with at least [`MIN_EVENTS_PER_HOST`] events stored).
pub fn check(vigil: &Path, data: &Path, local: &str) -> Result<usize> {
    let list = output(
        Command::new(vigil)
            .args(["sensor", "list", "--data"])
            .arg(data),
    )?;
    let hosts = hosts_with_history(&list, local)?;
    if hosts < MIN_HOSTS {
        return Err(format!(
            "only {hosts} hosts have history in the store (want at least {MIN_HOSTS}):\n{list}"
        ));
    }
    println!("demo: {hosts} hosts with history in the store (at least {MIN_HOSTS} wanted)");
    Ok(hosts)
}

/// Counts the rows of `vigil sensor list` that are replayed hosts with
/// history: not this machine (`local`), not a lab host, enough events.
/// Columns are found from the header, since the state and last-seen
/// columns hold spaces.
fn hosts_with_history(list: &str, local: &str) -> Result<usize> {
    let mut lines = list.lines();
    let header = lines.next().ok_or("empty sensor list")?;
    let name_at = header.find("HOSTNAME").ok_or("no HOSTNAME column")?;
    let events_end = header.find("EVENTS").ok_or("no EVENTS column")? + "EVENTS".len();
    let mut n = 0;
    for row in lines {
        let (Some(name), Some(events)) = (row.get(name_at..), row.get(..events_end)) else {
            continue;
        };
        let name = name.split_whitespace().next().unwrap_or_default();
        let events: u64 = events
            .split_whitespace()
            .last()
            .and_then(|e| e.parse().ok())
            .unwrap_or(0);
        if name != local && !super::is_lab_host(name) && events >= MIN_EVENTS_PER_HOST {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_replay_summary() {
        let line = r#"{"acked_per_s":9.5,"enrolled":87,"events_acked":123456,"hosts":87}"#;
        assert_eq!(json_u64(line, "hosts"), Some(87));
        assert_eq!(json_u64(line, "events_acked"), Some(123_456));
        assert_eq!(json_u64(line, "missing"), None);
    }

    #[test]
    fn reads_status_counters_and_active_models() {
        let status = "  |   detection_events      23479\n  alerts_written   12\n";
        assert_eq!(counter(status, "alerts_written"), Some(12));
        assert_eq!(
            counter(status, "detection_events"),
            None,
            "prefixed lines are not ours"
        );
        assert_eq!(
            counter("  detection_events   23479\n", "detection_events"),
            Some(23479)
        );
        let models = "\
HOST              NAME                  STATE     VERSION           TRAINING WINDOW                            SHA-256
00000000000000a1  ws-000                active    v1                2026-11-30 .. 2026-12-07                   ab
00000000000000a2  ws-001                learning  -                 -                                          -
00000000000000a3  srv-01                active    v1                2026-11-30 .. 2026-12-07                   cd
";
        assert_eq!(active_models(models), 2);
    }

    #[test]
    fn counts_replayed_hosts_with_history_only() {
        let list = "\
HOST              HOSTNAME              STATE     LAST SEEN                 EVENTS      LOST  VERSION     
00000000000000a1  ws-000                Online    2026-12-07 14:00:00        5000         0  0.1.0       
00000000000000a2  ws-001                Offline   2026-12-07 14:00:00           9         0  0.1.0       
00000000000000a3  v1x0h1                Online    2026-12-07 14:00:00        9000         0  0.1.0       
00000000000000a4  demo-box              Online    2026-12-07 14:00:00        9000         0  0.1.0       
00000000000000a5  srv-win-00            Online    2026-12-07 14:00:00       70000         0  
";
        assert_eq!(hosts_with_history(list, "demo-box").unwrap(), 2);
    }
}
