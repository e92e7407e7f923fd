//! `cargo xtask demo`: the most complete end-to-end path that exists.
//!
//! Starts the appliance on a fresh embedded store (web console on HTTPS),
//! enrolls a real sensor with a one-time token and lets it watch this
//! machine while the demo makes some activity (processes, connections, a
//! write to a watched file). As root it also builds the attack lab
//! (`vigil-lab`: three hosts in network namespaces with real sshd and one
//! sensor each) and lets an attacker hop h1 → h2 → h3 over ssh; the
//! appliance's detection turns that into one lateral-movement incident,
//! which the demo prints (`vigil alerts`) and the console shows. Runs until
//! Ctrl-C, or `--for SECS` (then it fails if the incident never appeared).
//!
//! Before any of that it streams a fleet's history into the appliance
//! ([`fleet`]: 88 hosts over a week of the synthetic generator,
//! through real sensor uplinks, dated so it ends before now), so every
//! page has content and the lab incident stands out against a baseline
//! the detector learned: the history is the learning period (the
//! appliance runs with one longer than the history while it streams, then
//! restarts with none, and trains on the week). `--no-fleet` skips it and
//! starts cold (`--no-build` skips the build and runs what an earlier one
//! left). A timed run also fails unless at least [`fleet::MIN_HOSTS`]
//! hosts have history in the store.

mod fleet;

use crate::{cargo, prereq, run, target_dir, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child processes it holds when the demo ends, however it ends.
struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (name, child) in self.0.iter_mut().rev() {
            // SIGTERM first so both sides shut down gracefully and flush.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("demo: stopped {name}");
        }
    }
}

struct Options {
    run_for: Option<Duration>,
    /// Stream the fleet's history first (`--no-fleet` skips it).
    fleet: bool,
    /// Build first (`--no-build` runs the binaries an earlier build left).
    build: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut run_for = None;
    let mut fleet = true;
    let mut build = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--no-fleet" => fleet = false,
            "--no-build" => build = false,
            "--for" => {
                let secs: u64 = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--for takes a number of seconds")?;
                run_for = Some(Duration::from_secs(secs));
            }
            other => return Err(format!("unknown demo option {other:?}")),
        }
    }
    Ok(Options {
        run_for,
        fleet,
        build,
    })
}

/// Entry point of `cargo xtask demo`.
pub fn run_demo(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    let demo_started = Instant::now();
    if opts.build {
        build()?;
    }
    let bin = target_dir().join("debug");
    let vigil = bin.join("vigil");
    let sensor_bin = bin.join("vigil-sensor");
    let lab_bin = bin.join("vigil-lab");
    let lab_hosts = match lab_capability() {
        Ok(()) => 3,
        Err(why) => {
            eprintln!("demo: no attack lab ({why}); showing this machine's own sensor only");
            0
        }
    };

    let data = target_dir().join("vigil-demo");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).map_err(|e| format!("create {}: {e}", data.display()))?;
    let mut children = Children(Vec::new());

    let quic_port = free_port()?;
    let https_port = free_port()?;
    // With a history to learn from, the history is the learning period;
    // without one, score from the first event (cold start).
    let learning = if opts.fleet {
        fleet::LEARNING_WHILE_REPLAYING
    } else {
        "0s"
    };
    let appliance = start_appliance(&vigil, &data, quic_port, https_port, learning)?;
    children.0.push(("appliance".into(), appliance));
    let admin_password = read_admin_password(&mut children.0[0].1, &data)?;
    wait_for_port(quic_port, https_port)?;

    if opts.fleet {
        let replay_token = create_token(&vigil, &data, fleet::TOKEN_USES)?;
        let replayed = fleet::replay(&vigil, &data, quic_port, &replay_token)?;
        fleet::wait_scored(&vigil, &data, replayed.events)?;
        // The history is in: its span was the learning period. Without
        // one from now on, the detector trains every host on its week at
        // once and scores hosts that enroll later from their first event.
        eprintln!("demo: restarting the appliance without a learning period");
        if let Some(old) = children.0.pop() {
            drop(Children(vec![old]));
        }
        let mut appliance = start_appliance(&vigil, &data, quic_port, https_port, "0s")?;
        echo_output(&mut appliance);
        children.0.push(("appliance".into(), appliance));
        wait_for_port(quic_port, https_port)?;
        fleet::wait_trained(&vigil, &data, fleet::MIN_HOSTS)?;
    }
    let live_from_ns = now_ns();
    let enrollment = create_token(&vigil, &data, 1 + lab_hosts)?;
    let state = data.join("sensor-state");
    enroll_sensor(&sensor_bin, quic_port, &enrollment, &state)?;
    let config = write_sensor_config(&data, &state, quic_port)?;
    let watched = data.join("watched");
    let sensor = Command::new(&sensor_bin)
        .args(["run", "--config"])
        .arg(&config)
        .spawn()
        .map_err(|e| format!("start sensor: {e}"))?;
    children.0.push(("sensor".into(), sensor));
    if lab_hosts > 0 {
        let lab = start_lab(&lab_bin, &data, quic_port, &enrollment, lab_hosts)?;
        children.0.push(("attack lab".into(), lab));
    }

    print_banner(&data, https_port, &admin_password);
    let started = Instant::now();
    let mut round = 0u32;
    let mut incident_seen = lab_hosts == 0;
    loop {
        make_activity(&watched, round)?;
        std::thread::sleep(Duration::from_secs(3));
        show_progress(&vigil, &data)?;
        if !incident_seen && lab_incident_stored(&vigil, &data)? {
            incident_seen = true;
            println!(
                "demo: the lab incident appeared {:.0} s after the lab started",
                started.elapsed().as_secs_f64()
            );
        }
        round += 1;
        if let Some(limit) = opts.run_for {
            if started.elapsed() >= limit {
                break;
            }
        } else if round == 1 {
            println!("demo: running until Ctrl-C (or pass --for SECS)");
        }
    }
    let timed = opts.run_for.is_some();
    check_outcome(&vigil, &data, lab_hosts > 0 && timed)?;
    if opts.fleet && timed {
        fleet::check(&vigil, &data, &local_hostname())?;
    }
    if opts.fleet {
        let (history, all) = fleet::alerts_before(&vigil, &data, live_from_ns)?;
        println!("demo: {history} alerts dated in the history, {all} alerts in the store");
    }
    println!(
        "demo: end to end {:.0} s",
        demo_started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Now, ns since the epoch.
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// This machine's name, as its own sensor reports it.
fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Installs what the demo needs and builds every binary it runs.
fn build() -> Result<()> {
    // As root, everything the attack lab needs too (sshd, iproute2).
    if prereq::is_root() {
        prereq::ensure_packages(crate::TEST_PACKAGES)?;
    } else {
        prereq::ensure_packages(crate::BUILD_PACKAGES)?;
    }
    // The same selection as `cargo xtask test`, so neither rebuilds RocksDB
    // for the other's feature set.
    run(cargo().args(["build", "--workspace", "--all-targets"]))
}

/// Starts `vigil serve` on the store in `data` with `learning` as its
/// learning period, stdout piped so the first admin password's location
/// can be read from it.
fn start_appliance(
    vigil: &Path,
    data: &Path,
    quic_port: u16,
    https_port: u16,
    learning: &str,
) -> Result<Child> {
    eprintln!(
        "demo: starting the appliance on the store in {} (learning period {learning})",
        data.display()
    );
    Command::new(vigil)
        .args(["serve", "--data"])
        .arg(data)
        .args(["--quic-listen", &format!("127.0.0.1:{quic_port}")])
        .args(["--https-listen", &format!("127.0.0.1:{https_port}")])
        .args(["--learning-period", learning])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start {}: {e}", vigil.display()))
}

/// A one-time enrollment token and the CA fingerprint that goes with it.
struct Enrollment {
    token: String,
    fingerprint: String,
}

/// Creates one token with `uses` uses (this machine's sensor and one per
/// lab host, or one per replayed host).
fn create_token(vigil: &Path, data: &Path, uses: u32) -> Result<Enrollment> {
    let token_out = output(
        Command::new(vigil)
            .args(["token", "create", "--data"])
            .arg(data)
            .args(["--ttl", "1h", "--uses", &uses.to_string()]),
    )?;
    let token = field(&token_out, "token")?;
    let fingerprint = field(&token_out, "CA fingerprint")?;
    eprintln!("demo: created a one-time enrollment token; CA fingerprint {fingerprint}");
    Ok(Enrollment { token, fingerprint })
}

/// Enrolls this machine's sensor, its identity kept in `state`.
fn enroll_sensor(
    sensor_bin: &Path,
    quic_port: u16,
    enrollment: &Enrollment,
    state: &Path,
) -> Result<()> {
    run(Command::new(sensor_bin)
        .args(["enroll", "--appliance", &format!("127.0.0.1:{quic_port}")])
        .args([
            "--token",
            &enrollment.token,
            "--ca-sha256",
            &enrollment.fingerprint,
            "--state-dir",
        ])
        .arg(state))
}

/// Starts `vigil-lab`: `hosts` hosts in network namespaces, each enrolling
/// its own sensor with the same token.
fn start_lab(
    lab_bin: &Path,
    data: &Path,
    quic_port: u16,
    enrollment: &Enrollment,
    hosts: u32,
) -> Result<Child> {
    eprintln!("demo: building the attack lab ({hosts} hosts in network namespaces)");
    Command::new(lab_bin)
        .args(["--appliance", &format!("127.0.0.1:{quic_port}")])
        .args([
            "--token",
            &enrollment.token,
            "--ca-sha256",
            &enrollment.fingerprint,
        ])
        .args(["--hosts", &hosts.to_string(), "--state"])
        .arg(data.join("lab-state"))
        .spawn()
        .map_err(|e| format!("start {}: {e}", lab_bin.display()))
}

/// Where to look: the console, the first admin, metrics and the data.
fn print_banner(data: &Path, https_port: u16, admin_password: &str) {
    println!();
    println!("  Vigil demo is running");
    println!("  console     : https://127.0.0.1:{https_port}/  (signed by the appliance CA: {}/keys/ca.crt)", data.display());
    println!(
        "  first admin : admin / {admin_password}  (from {}; the console asks for a new one at first login)",
        data.join("first-admin-password").display()
    );
    println!(
        "  metrics     : https://127.0.0.1:{https_port}/metrics (bearer token in {})",
        data.join("metrics.token").display()
    );
    println!("  data        : {}", data.display());
    println!();
}

/// One round's report through the CLI: latest events, status lines about
/// detection, and the alerts of the last hour.
fn show_progress(vigil: &Path, data: &Path) -> Result<()> {
    let events = recent_events(vigil, data)?;
    let lines: Vec<&str> = events.lines().collect();
    println!("demo: {} events stored so far; latest:", lines.len());
    for line in lines.iter().rev().take(8).rev() {
        println!("    {line}");
    }
    let status = output(Command::new(vigil).args(["status", "--data"]).arg(data))?;
    let detection = ["detection_events", "alerts_written", "latency_p99"];
    for (i, line) in status.lines().enumerate() {
        if i < 8 || detection.iter().any(|d| line.contains(d)) {
            println!("  | {line}");
        }
    }
    let alerts = output(
        Command::new(vigil)
            .args(["alerts", "--data"])
            .arg(data)
            .args(["--since", "1h", "--limit", "5"]),
    )?;
    println!("demo: alerts and incidents (`vigil alerts --since 1h`):");
    for line in alerts.lines() {
        println!("  ! {line}");
    }
    Ok(())
}

/// `vigil events --since 10m`, one event a line.
fn recent_events(vigil: &Path, data: &Path) -> Result<String> {
    output(
        Command::new(vigil)
            .args(["events", "--data"])
            .arg(data)
            .args(["--since", "10m"]),
    )
}

/// Fails unless some event was stored and, when `expect_incident` (a timed
/// run with the lab), the lab's h1 → h2 → h3 incident is among the alerts.
fn check_outcome(vigil: &Path, data: &Path, expect_incident: bool) -> Result<()> {
    if lines_of(&recent_events(vigil, data)?) == 0 {
        return Err("no event reached the appliance".into());
    }
    if expect_incident {
        if !lab_incident_stored(vigil, data)? {
            return Err("the lab's h1 → h2 → h3 incident never appeared".into());
        }
        println!("demo: the h1 → h2 → h3 incident is in the store and on the console");
    }
    Ok(())
}

/// Whether the lab's h1 → h2 → h3 incident is among the last hour's alerts.
fn lab_incident_stored(vigil: &Path, data: &Path) -> Result<bool> {
    let alerts = output(
        Command::new(vigil)
            .args(["alerts", "--json", "--data"])
            .arg(data)
            .args(["--since", "1h"]),
    )?;
    Ok(alerts.lines().any(is_lab_chain))
}

/// Whether a host name is a lab host's (`v<run>x<n>h<i>`, after its
/// network namespace), so the fleet check never counts one.
fn is_lab_host(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('v') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match rest.split_once('x').map(|(a, b)| (a, b.split_once('h'))) {
        Some((run, Some((n, i)))) => digits(run) && digits(n) && digits(i),
        _ => false,
    }
}

/// Whether one `vigil alerts --json` line is the lab's h1 → h2 → h3
/// incident (lab hosts are named after their namespaces, `…h1` to `…h3`).
fn is_lab_chain(line: &str) -> bool {
    let Some(start) = line.find("\"path_names\":[") else {
        return false;
    };
    let rest = &line[start + "\"path_names\":[".len()..];
    let Some(end) = rest.find(']') else {
        return false;
    };
    let names: Vec<&str> = rest[..end]
        .split(',')
        .map(|n| n.trim_matches('"'))
        .collect();
    names.len() == 3
        && ["h1", "h2", "h3"]
            .iter()
            .zip(&names)
            .all(|(h, n)| n.ends_with(h))
}

/// Whether the attack lab can run here (root, sshd), without changing
/// anything; `vigil-lab` itself probes `ip netns` and says why it cannot.
fn lab_capability() -> std::result::Result<(), String> {
    if !prereq::is_root() {
        return Err("needs root for network namespaces".into());
    }
    for tool in ["/usr/sbin/sshd", "/usr/bin/ssh"] {
        if !Path::new(tool).exists() {
            return Err(format!("{tool} missing"));
        }
    }
    Ok(())
}

fn lines_of(s: &str) -> usize {
    s.lines().count()
}

/// Make activity the sensor should see: processes, TCP connections, a file write.
fn make_activity(watched: &Path, round: u32) -> Result<()> {
    for _ in 0..3 {
        let _ = Command::new("/bin/true").status();
    }
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let accept = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 5];
            let _ = s.read(&mut buf);
        }
    });
    if let Ok(mut s) = TcpStream::connect(addr) {
        let _ = s.write_all(b"hello");
        // Keep it open past one sock_diag poll so the network collector sees it.
        std::thread::sleep(Duration::from_millis(1200));
    }
    let _ = accept.join();
    std::fs::create_dir_all(watched).map_err(|e| e.to_string())?;
    std::fs::write(
        watched.join("authorized_keys"),
        format!("ssh-ed25519 AAAA demo-{round}\n"),
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

fn write_sensor_config(data: &Path, state: &Path, quic_port: u16) -> Result<PathBuf> {
    let path = data.join("sensor.toml");
    let watched = data.join("watched");
    let config = format!(
        "appliance = \"127.0.0.1:{quic_port}\"\nstate_dir = \"{}\"\n\n[collectors]\nfile_paths = [\"{}\"]\n",
        state.display(),
        watched.display()
    );
    std::fs::write(&path, config).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(path)
}

/// On its first start the appliance writes the first admin password to a
/// 0600 file and prints only that file's path; read the password from there.
fn read_admin_password(child: &mut Child, data: &Path) -> Result<String> {
    let stdout = child.stdout.take().ok_or("appliance stdout not captured")?;
    let mut reader = BufReader::new(stdout);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("appliance exited before saying where the admin password is".into());
        }
        print!("  appliance: {line}");
        if line.contains("one-time password is in") {
            // Keep draining the pipe so the appliance never blocks on stdout.
            std::thread::spawn(move || {
                for l in reader.lines().map_while(|l| l.ok()) {
                    println!("  appliance: {l}");
                }
            });
            let file = data.join("first-admin-password");
            let pw = std::fs::read_to_string(&file)
                .map_err(|e| format!("read {}: {e}", file.display()))?;
            return Ok(pw.trim().to_string());
        }
    }
    Err("appliance did not say where the first admin password is".into())
}

/// Echoes a restarted appliance's output, so it never blocks on stdout.
fn echo_output(child: &mut Child) {
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                println!("  appliance: {l}");
            }
        });
    }
}

fn wait_for_port(_quic: u16, https: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", https)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err("appliance did not start listening within 60 s".into())
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `key: value` from a command's output.
fn field(out: &str, key: &str) -> Result<String> {
    out.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_string())
        })
        .ok_or_else(|| format!("no `{key}:` line in:\n{out}"))
}

#[cfg(test)]
mod tests {
    use super::{is_lab_chain, is_lab_host};

    #[test]
    fn lab_hosts_are_told_from_replayed_ones() {
        assert!(is_lab_host("v1x0h1") && is_lab_host("v12x3h2"));
        for name in [
            "ws-001",
            "srv-win-00",
            "adm-ws-01",
            "vx0h1",
            "v1x0h",
            "vault",
        ] {
            assert!(!is_lab_host(name), "{name}");
        }
    }

    #[test]
    fn recognises_the_lab_incident_line() {
        let line = r#"{"id":2,"path":[1,2,3],"path_names":["v1x0h1","v1x0h2","v1x0h3"]}"#;
        assert!(is_lab_chain(line));
        assert!(!is_lab_chain(r#"{"path_names":["v1x0h1","v1x0h2"]}"#));
        assert!(!is_lab_chain(
            r#"{"path_names":["v1x0h2","v1x0h1","v1x0h3"]}"#
        ));
        assert!(!is_lab_chain(r#"{"id":2}"#));
    }
}
