//! `vigil-lab`: the demo's attack lab. Builds N hosts in network namespaces
//! (each with a real sshd), enrolls one real sensor per host against a
//! running appliance, lets an attacker hop h1 → h2 → … → hN with a stolen
//! key over real `ssh`, then keeps everything up until SIGINT/SIGTERM (or
//! `--hold` seconds) so the console shows live hosts. Everything it created
//! is removed on the way out.
//!
//! ```text
//! vigil-lab --appliance 127.0.0.1:4433 --token T --ca-sha256 FP --state DIR [--hosts 3] [--hold SECS]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use vigil_sensor::{Config, EnrollParams, Sensor};
use vigil_tests::lab::{capability, Lab};

struct Args {
    appliance: String,
    token: String,
    ca_sha256: String,
    state: PathBuf,
    hosts: usize,
    hold: Option<Duration>,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut appliance, mut token, mut ca, mut state) = (None, None, None, None);
    let (mut hosts, mut hold) = (3usize, None);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--appliance" => appliance = Some(value()?),
            "--token" => token = Some(value()?),
            "--ca-sha256" => ca = Some(value()?),
            "--state" => state = Some(PathBuf::from(value()?)),
            "--hosts" => hosts = value()?.parse().map_err(|e| format!("--hosts: {e}"))?,
            "--hold" => {
                hold = Some(Duration::from_secs(
                    value()?.parse().map_err(|e| format!("--hold: {e}"))?,
                ))
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !(2..=8).contains(&hosts) {
        return Err("--hosts must be 2..=8".into());
    }
    Ok(Args {
        appliance: appliance.ok_or("--appliance is required")?,
        token: token.ok_or("--token is required")?,
        ca_sha256: ca.ok_or("--ca-sha256 is required")?,
        state: state.ok_or("--state is required")?,
        hosts,
        hold,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("vigil-lab: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(why) = capability() {
        eprintln!("vigil-lab: the attack lab cannot run here: {}", why.0);
        return ExitCode::from(3);
    }
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-lab: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let lab = Lab::new(args.hosts).map_err(|e| format!("building the lab: {e}"))?;
    let mut sensors = Vec::new();
    for host in &lab.hosts {
        let state = args.state.join(&host.name);
        let identity = vigil_sensor::enroll(&EnrollParams {
            appliance: args.appliance.clone(),
            token: args.token.clone(),
            ca_sha256: args.ca_sha256.clone(),
            state_dir: state.clone(),
        })
        .await
        .map_err(|e| format!("enrolling {}: {e}", host.name))?;
        let mut config = Config::new(args.appliance.clone(), &state);
        config.netns = Some(host.netns.clone());
        config.collectors.auth_log = host.auth_log.clone();
        config.collectors.file_paths = Some(vec![lab.dir().join(format!("{}-watched", host.name))]);
        let sensor = Sensor::start(config)
            .await
            .map_err(|e| format!("starting the sensor of {}: {e}", host.name))?;
        println!(
            "lab: {} ({}, namespace {}) enrolled as host {}",
            host.name, host.addr, host.netns, identity.host
        );
        sensors.push(sensor);
    }
    // Let every sensor say hello (names and addresses reach the appliance)
    // before the attack, as on a real network where sensors run all along.
    tokio::time::sleep(Duration::from_secs(3)).await;
    attack(&lab)?;
    println!("lab: holding the lab up (Ctrl-C or SIGTERM ends it and removes the namespaces)");
    wait_for_end(args.hold).await;
    for s in sensors {
        s.shutdown().await;
    }
    drop(lab);
    println!("lab: removed");
    Ok(())
}

/// The attacker's path: from h1, hop to each next host in turn with the
/// key found on the previous one, run a little reconnaissance at the end.
fn attack(lab: &Lab) -> Result<(), String> {
    let n = lab.hosts.len();
    let mut command = format!(
        "id; uname -n; touch {}; sleep 1",
        lab.dir().join(format!("h{n}-watched")).display()
    );
    for to in (2..n).rev() {
        command = format!(
            "ssh {} root@{} '{}'; sleep 1",
            lab.ssh_options().join(" "),
            lab.hosts[to].addr,
            command.replace('\'', r"'\''")
        );
    }
    let path: Vec<&str> = lab.hosts.iter().map(|h| h.name.as_str()).collect();
    println!(
        "lab: attacker hops {} over ssh with a stolen key",
        path.join(" → ")
    );
    let out = lab
        .ssh(0, 1, &command)
        .map_err(|e| format!("the ssh chain failed: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the ssh chain failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    println!("lab: the chain ran to the last host");
    Ok(())
}

async fn wait_for_end(hold: Option<Duration>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let sleep = async {
        match hold {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = sleep => {}
    }
}
