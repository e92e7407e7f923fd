//! The demo's fleet: a history of [`WORKSTATIONS`] workstations (and the
//! servers, admins and new hires the generator adds: 88 hosts) over
//! [`DAYS`] days from the project's synthetic enterprise generator,
//! streamed through real sensor uplinks by `vigil replay synth` and dated
//! so it ends before now (`--start -DAYSd`), before the attack lab starts.
//! At the end of a timed run the demo checks the store holds that history.
//!
//! Replayed hosts are named `ws-NNN`, `srv-…`, `adm-ws-NN` with addresses
//! in 10.1–10.3.0.0/16; the lab's are `v…h1`–`h3` in 198.18.0.0/15 and
//! 10.254.0.0/16, and every host id is assigned by the appliance at
//! enrollment, so the two never collide.

use super::{output, Enrollment};
use crate::Result;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

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
