//! Response actions carried out for the appliance: isolate (an nftables
//! table `vigil_isolate` that lets through only loopback and the appliance's
//! addresses; reversible, optionally expiring), release, kill a process,
//! collect a file (hash plus bounded bytes), list processes.
//!
//! With `--netns NAME` the host *is* that namespace, so nftables runs inside
//! it (`ip netns exec NAME nft ...`).

use std::fs;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::process::{Command as Proc, Stdio};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use vigil_proto::{Command, CommandAction, CommandResult};

/// Name of the isolation table.
pub const TABLE: &str = "vigil_isolate";
/// Most file bytes returned by `CollectFile` (fits a control frame).
pub const MAX_COLLECT_BYTES: u64 = 192 * 1024;

/// Where and for whom commands run.
#[derive(Debug, Clone)]
pub struct ResponseCtx {
    /// Appliance `HOST:PORT` (its address is always allowed when isolated).
    pub appliance: String,
    /// Network namespace the sensor watches, if any.
    pub netns: Option<String>,
}

fn result(cmd: &Command, ok: bool, message: impl Into<String>, data: Vec<u8>) -> CommandResult {
    CommandResult {
        id: cmd.id,
        ok,
        message: message.into(),
        data,
    }
}

/// Carry out one command (blocking). `now_ns` is the current wall-clock time.
pub fn execute(cmd: &Command, ctx: &ResponseCtx, now_ns: u64) -> CommandResult {
    tracing::info!(id = cmd.id, operator = %cmd.operator, reason = %cmd.reason, action = ?cmd.action, "executing response command");
    let r = match &cmd.action {
        CommandAction::Isolate { allow, expires_ns } => match isolate(ctx, allow) {
            Ok(allowed) => {
                let mut msg = format!("isolated; allowed: loopback, {}", join(&allowed));
                if let Some(exp) = expires_ns {
                    let wait = Duration::from_nanos(exp.saturating_sub(now_ns));
                    schedule_release(ctx.clone(), wait);
                    msg += &format!("; expires in {}s", wait.as_secs());
                }
                result(cmd, true, msg, Vec::new())
            }
            Err(e) => result(cmd, false, format!("isolate failed: {e}"), Vec::new()),
        },
        CommandAction::Release => match release(ctx) {
            Ok(true) => result(cmd, true, "released", Vec::new()),
            Ok(false) => result(cmd, true, "was not isolated", Vec::new()),
            Err(e) => result(cmd, false, format!("release failed: {e}"), Vec::new()),
        },
        CommandAction::Kill { pid } => kill(cmd, *pid),
        CommandAction::CollectFile { path, max_bytes } => collect_file(cmd, path, *max_bytes),
        CommandAction::ListProcesses => list_processes(cmd),
    };
    tracing::info!(id = cmd.id, ok = r.ok, message = %r.message, "response command done");
    r
}

fn join(a: &[IpAddr]) -> String {
    a.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn nft(ctx: &ResponseCtx, script: &str) -> Result<(), String> {
    let mut c = match &ctx.netns {
        Some(ns) => {
            let mut c = Proc::new("ip");
            c.args(["netns", "exec", ns, "nft", "-f", "-"]);
            c
        }
        None => {
            let mut c = Proc::new("nft");
            c.args(["-f", "-"]);
            c
        }
    };
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// The nftables script that isolates the host, allowing only `allow` and loopback.
pub fn isolate_script(allow: &[IpAddr]) -> String {
    let v4: Vec<String> = allow
        .iter()
        .filter(|a| a.is_ipv4())
        .map(|a| a.to_string())
        .collect();
    let v6: Vec<String> = allow
        .iter()
        .filter(|a| a.is_ipv6())
        .map(|a| a.to_string())
        .collect();
    let mut rules_in = String::from("    iif \"lo\" accept\n");
    let mut rules_out = String::from("    oif \"lo\" accept\n");
    if !v4.is_empty() {
        rules_in += &format!("    ip saddr {{ {} }} accept\n", v4.join(", "));
        rules_out += &format!("    ip daddr {{ {} }} accept\n", v4.join(", "));
    }
    if !v6.is_empty() {
        rules_in += &format!("    ip6 saddr {{ {} }} accept\n", v6.join(", "));
        rules_out += &format!("    ip6 daddr {{ {} }} accept\n", v6.join(", "));
    }
    format!(
        "table inet {TABLE} {{\n  chain input {{\n    type filter hook input priority -200; policy drop;\n{rules_in}  }}\n  chain output {{\n    type filter hook output priority -200; policy drop;\n{rules_out}  }}\n}}\n"
    )
}

fn appliance_ip(ctx: &ResponseCtx) -> Option<IpAddr> {
    use std::net::ToSocketAddrs;
    ctx.appliance.to_socket_addrs().ok()?.next().map(|a| a.ip())
}

/// Install (or replace) the isolation table. Returns the allowed addresses.
pub fn isolate(ctx: &ResponseCtx, allow: &[IpAddr]) -> Result<Vec<IpAddr>, String> {
    let mut allowed: Vec<IpAddr> = allow.to_vec();
    if let Some(ip) = appliance_ip(ctx) {
        allowed.push(ip);
    }
    allowed.sort();
    allowed.dedup();
    if allowed.is_empty() {
        return Err("no appliance address to allow; refusing to cut the sensor off".into());
    }
    let _ = release(ctx);
    nft(ctx, &isolate_script(&allowed))?;
    Ok(allowed)
}

/// Remove the isolation table. `Ok(false)` when there was none.
pub fn release(ctx: &ResponseCtx) -> Result<bool, String> {
    match nft(ctx, &format!("delete table inet {TABLE}\n")) {
        Ok(()) => Ok(true),
        Err(e) if e.contains("No such file") || e.contains("does not exist") => Ok(false),
        Err(e) => Err(e),
    }
}

fn schedule_release(ctx: ResponseCtx, after: Duration) {
    let spawned = std::thread::Builder::new()
        .name("isolate-expiry".into())
        .spawn(move || {
            std::thread::sleep(after);
            match release(&ctx) {
                Ok(_) => tracing::info!("isolation expired and was released"),
                Err(e) => tracing::error!(error = %e, "isolation expiry: release failed"),
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot schedule isolation expiry");
    }
}

fn kill(cmd: &Command, pid: u32) -> CommandResult {
    if pid <= 1 || pid == std::process::id() {
        return result(
            cmd,
            false,
            format!("refusing to kill pid {pid}"),
            Vec::new(),
        );
    }
    let exe = fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "?".into());
    match nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    ) {
        Ok(()) => result(cmd, true, format!("killed pid {pid} ({exe})"), Vec::new()),
        Err(e) => result(cmd, false, format!("kill pid {pid}: {e}"), Vec::new()),
    }
}

fn collect_file(cmd: &Command, path: &str, max_bytes: u64) -> CommandResult {
    let mut f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return result(cmd, false, format!("{path}: {e}"), Vec::new()),
    };
    let limit = max_bytes.min(MAX_COLLECT_BYTES);
    let mut hasher = Sha256::new();
    let mut data = Vec::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return result(cmd, false, format!("{path}: {e}"), Vec::new()),
        };
        hasher.update(&buf[..n]);
        let room = limit.saturating_sub(data.len() as u64) as usize;
        data.extend_from_slice(&buf[..n.min(room)]);
        total += n as u64;
    }
    let sha = hex::encode(hasher.finalize());
    let msg = format!("sha256={sha} size={total} sent={}", data.len());
    result(cmd, true, msg, data)
}

/// One row of the process list.
#[derive(Debug, Serialize)]
pub struct ProcRow {
    /// Process id.
    pub pid: u32,
    /// Parent pid.
    pub ppid: u32,
    /// Real uid.
    pub uid: Option<u32>,
    /// Executable.
    pub exe: Option<String>,
    /// Command line (bounded).
    pub argv: Vec<String>,
}

fn list_processes(cmd: &Command) -> CommandResult {
    let mut rows = Vec::new();
    let mut enricher = crate::collect::process::Enricher::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let p = enricher.process_start(pid);
            rows.push(ProcRow {
                pid,
                ppid: p.ppid,
                uid: p.uid,
                exe: p.exe,
                argv: p.argv.into_iter().take(16).collect(),
            });
        }
    }
    rows.sort_by_key(|r| r.pid);
    let mut data = serde_json::to_vec(&rows).unwrap_or_default();
    let mut shown = rows.len();
    while data.len() > MAX_COLLECT_BYTES as usize && shown > 0 {
        shown = shown * 3 / 4;
        data = serde_json::to_vec(&rows[..shown]).unwrap_or_default();
    }
    result(
        cmd,
        true,
        format!("{} processes ({shown} listed)", rows.len()),
        data,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(action: CommandAction) -> Command {
        Command {
            id: 9,
            operator: "op".into(),
            reason: "test".into(),
            issued_ns: 0,
            action,
        }
    }

    fn ctx() -> ResponseCtx {
        ResponseCtx {
            appliance: "127.0.0.1:7443".into(),
            netns: None,
        }
    }

    #[test]
    fn isolate_script_allows_only_given_addresses_and_loopback() {
        let s = isolate_script(&["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()]);
        assert!(s.contains("table inet vigil_isolate"));
        assert!(s.contains("policy drop"));
        assert!(s.contains("ip saddr { 10.0.0.1 } accept"));
        assert!(s.contains("ip6 daddr { fd00::1 } accept"));
        assert!(s.contains("iif \"lo\" accept"));
    }

    #[test]
    fn collect_file_hashes_all_and_sends_bounded_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let content: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        fs::write(&p, &content).unwrap();
        let r = execute(
            &cmd(CommandAction::CollectFile {
                path: p.display().to_string(),
                max_bytes: 1000,
            }),
            &ctx(),
            0,
        );
        assert!(r.ok);
        assert_eq!(r.data, content[..1000]);
        let sha = hex::encode(Sha256::digest(&content));
        assert_eq!(r.message, format!("sha256={sha} size=100000 sent=1000"));
        let missing = execute(
            &cmd(CommandAction::CollectFile {
                path: "/nonexistent/x".into(),
                max_bytes: 10,
            }),
            &ctx(),
            0,
        );
        assert!(!missing.ok);
    }

    #[test]
    fn kill_and_list_processes() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let list = execute(&cmd(CommandAction::ListProcesses), &ctx(), 0);
        assert!(list.ok);
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&list.data).unwrap();
        assert!(rows
            .iter()
            .any(|r| r["pid"] == pid && r["argv"][0] == "sleep"));
        let r = execute(&cmd(CommandAction::Kill { pid }), &ctx(), 0);
        assert!(r.ok, "{}", r.message);
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
        assert!(!execute(&cmd(CommandAction::Kill { pid: 1 }), &ctx(), 0).ok);
    }
}
