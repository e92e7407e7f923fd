//! `vigil respond …` (part of the `vigil` binary): flags → a
//! [`RespondRequest`] over the admin socket (or the store when no server
//! runs: the command then waits there for `vigil serve`).

use super::print_first_password;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use vigil_appliance::admin::{AdminRequest, AdminResponse};
use vigil_appliance::cli;
use vigil_appliance::respond_admin::{render, PolicyChange, RespondRequest, RespondResponse};
use vigil_proto::CommandAction;

/// Flags every response action takes.
#[derive(Args)]
pub struct Acting {
    /// Host id or name.
    host: String,
    /// Why (recorded in the command, the audit log and the host timeline).
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    who: Who,
    /// How long the command may wait for an offline host (at most 7 days).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    deliver_within: Duration,
}

/// The data directory and the acting console user.
#[derive(Args)]
pub struct Who {
    #[arg(long, default_value = "/var/lib/vigil")]
    data: PathBuf,
    /// The console user acting (analyst or admin); default $VIGIL_OPERATOR,
    /// else $SUDO_USER, else $USER.
    #[arg(long)]
    operator: Option<String>,
}

impl Who {
    fn operator(&self) -> String {
        self.operator.clone().unwrap_or_else(|| {
            ["VIGIL_OPERATOR", "SUDO_USER", "USER"]
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
                .unwrap_or_else(|| "unknown".into())
        })
    }
}

#[derive(Subcommand)]
pub enum RespondCmd {
    /// Cut a host off from everything but the appliance (one nftables transaction).
    Isolate {
        #[command(flatten)]
        acting: Acting,
        /// Lift by itself after this long (default: until released).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Also allow this address (repeatable), e.g. a forensic workstation.
        #[arg(long)]
        allow: Vec<IpAddr>,
        /// Also allow DHCP and IPv6 neighbour/router discovery.
        #[arg(long)]
        dhcp: bool,
    },
    /// Lift every isolation of a host.
    Release {
        #[command(flatten)]
        acting: Acting,
    },
    /// Kill one process, named by pid and start time: clock ticks after
    /// boot (`--start-time`, as `processes` lists them) or the start time
    /// its start event carries (`--started-at-ns`).
    Kill {
        #[command(flatten)]
        acting: Acting,
        #[arg(long)]
        pid: u32,
        #[arg(
            long,
            required_unless_present = "started_at_ns",
            conflicts_with = "started_at_ns"
        )]
        start_time: Option<u64>,
        #[arg(long)]
        started_at_ns: Option<u64>,
    },
    /// Hash a regular file and bring it to the appliance.
    Collect {
        #[command(flatten)]
        acting: Acting,
        #[arg(long)]
        path: String,
        #[arg(long, default_value_t = 8 * 1024 * 1024)]
        max_bytes: u64,
    },
    /// List the host's live processes.
    Processes {
        #[command(flatten)]
        acting: Acting,
    },
    /// List the host's live TCP and UDP sockets.
    Connections {
        #[command(flatten)]
        acting: Acting,
    },
    /// Remove one line from a user's ~/.ssh/authorized_keys.
    RemoveKey {
        #[command(flatten)]
        acting: Acting,
        #[arg(long)]
        user: String,
        /// The line as it is in the file.
        #[arg(long, group = "key", required = true)]
        line: Option<String>,
        /// Or its SHA-256 (hex, without the newline).
        #[arg(long, group = "key")]
        line_sha256: Option<String>,
    },
    /// Lock a local account's password and expire it.
    DisableAccount {
        #[command(flatten)]
        acting: Acting,
        #[arg(long)]
        user: String,
    },
    /// Drop all traffic between the host and one address.
    Block {
        #[command(flatten)]
        acting: Acting,
        #[arg(long)]
        peer: IpAddr,
    },
    /// Commands, newest first.
    List {
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
        #[arg(long)]
        host: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// One command: state, history and receipt.
    Show {
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
        id: u64,
        #[arg(long)]
        json: bool,
    },
    /// Approve another operator's command (isolating a server).
    Approve {
        #[command(flatten)]
        who: Who,
        id: u64,
    },
    /// Withdraw a command its sensor has not received yet.
    Cancel {
        #[command(flatten)]
        who: Who,
        id: u64,
    },
    /// Write the bytes a receipt carried (a collected file) to FILE (0600).
    Download {
        #[command(flatten)]
        who: Who,
        id: u64,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Show or change when a second person must approve.
    Policy {
        #[command(flatten)]
        who: Who,
        /// Require approval to isolate hosts tagged as servers (on/off).
        #[arg(long)]
        approve_server_isolation: Option<OnOff>,
        /// Tag a host as a server (repeatable).
        #[arg(long)]
        server: Vec<String>,
        /// Remove a host's server tag (repeatable).
        #[arg(long)]
        not_server: Vec<String>,
    },
}

/// `on` or `off`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn issue(acting: Acting, action: CommandAction) -> Result<()> {
    let req = RespondRequest::Issue {
        host: acting.host,
        action,
        operator: acting.who.operator(),
        reason: acting.reason,
        deliver_within_ns: Some(acting.deliver_within.as_nanos() as u64),
    };
    let resp = run(&acting.who.data, req)?;
    print!("{}", render(&resp));
    Ok(())
}

fn run(data: &std::path::Path, req: RespondRequest) -> Result<RespondResponse> {
    let (resp, pw) = cli::execute(data, AdminRequest::Respond(req))?;
    print_first_password(pw);
    match resp {
        AdminResponse::Respond(r) => Ok(r),
        AdminResponse::Error(e) => bail!("{e}"),
        _ => bail!("unexpected answer from the appliance"),
    }
}

fn key_line_hash(line: Option<String>, sha: Option<String>) -> Result<[u8; 32]> {
    if let Some(line) = line {
        return Ok(Sha256::digest(line.trim_end_matches(['\n', '\r']).as_bytes()).into());
    }
    let hex_text = sha.context("--line or --line-sha256")?;
    let bytes = hex::decode(hex_text.trim()).context("--line-sha256 is not hex")?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("--line-sha256 must be 32 bytes"))
}

/// Run `vigil respond …`.
pub fn respond(cmd: RespondCmd) -> Result<()> {
    match cmd {
        RespondCmd::Isolate {
            acting,
            duration,
            allow,
            dhcp,
        } => {
            let expires_ns = duration.map(|d| now_ns().saturating_add(d.as_nanos() as u64));
            issue(
                acting,
                CommandAction::IsolateHost {
                    allow,
                    expires_ns,
                    allow_dhcp_nd: dhcp,
                },
            )
        }
        RespondCmd::Release { acting } => issue(acting, CommandAction::Release),
        RespondCmd::Kill {
            acting,
            pid,
            start_time,
            started_at_ns,
        } => {
            let action = match (start_time, started_at_ns) {
                (Some(start_time_ticks), _) => CommandAction::KillProcess {
                    pid,
                    start_time_ticks,
                },
                (None, Some(start_time_ns)) => {
                    CommandAction::KillProcessStartedAt { pid, start_time_ns }
                }
                (None, None) => anyhow::bail!("kill needs --start-time or --started-at-ns"),
            };
            issue(acting, action)
        }
        RespondCmd::Collect {
            acting,
            path,
            max_bytes,
        } => issue(acting, CommandAction::CollectFile { path, max_bytes }),
        RespondCmd::Processes { acting } => issue(acting, CommandAction::ListProcesses),
        RespondCmd::Connections { acting } => issue(acting, CommandAction::ListConnections),
        RespondCmd::RemoveKey {
            acting,
            user,
            line,
            line_sha256,
        } => {
            let line_sha256 = key_line_hash(line, line_sha256)?;
            issue(
                acting,
                CommandAction::RemoveAuthorizedKey { user, line_sha256 },
            )
        }
        RespondCmd::DisableAccount { acting, user } => {
            issue(acting, CommandAction::DisableAccount { user })
        }
        RespondCmd::Block { acting, peer } => {
            issue(acting, CommandAction::BlockPeer { addr: peer })
        }
        RespondCmd::List {
            data,
            host,
            limit,
            json,
        } => {
            let resp = run(&data, RespondRequest::List { host, limit })?;
            match (&resp, json) {
                (RespondResponse::Commands { commands, .. }, true) => {
                    for c in commands {
                        println!("{}", serde_json::to_string(c)?);
                    }
                }
                _ => print!("{}", render(&resp)),
            }
            Ok(())
        }
        RespondCmd::Show { data, id, json } => {
            let resp = run(&data, RespondRequest::Show { id })?;
            match (&resp, json) {
                (RespondResponse::Command(c), true) => {
                    println!("{}", serde_json::to_string_pretty(c)?)
                }
                _ => print!("{}", render(&resp)),
            }
            Ok(())
        }
        RespondCmd::Approve { who, id } => {
            let operator = who.operator();
            print!(
                "{}",
                render(&run(&who.data, RespondRequest::Approve { id, operator })?)
            );
            Ok(())
        }
        RespondCmd::Cancel { who, id } => {
            let operator = who.operator();
            print!(
                "{}",
                render(&run(&who.data, RespondRequest::Cancel { id, operator })?)
            );
            Ok(())
        }
        RespondCmd::Download { who, id, output } => {
            let operator = who.operator();
            let RespondResponse::Data { base64 } =
                run(&who.data, RespondRequest::Data { id, operator })?
            else {
                bail!("unexpected answer from the appliance");
            };
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(base64)
                .context("data is not base64")?;
            vigil_appliance::pki::write_private(&output, &bytes)
                .with_context(|| format!("write {}", output.display()))?;
            println!(
                "{} bytes, sha256 {} → {}",
                bytes.len(),
                hex::encode(Sha256::digest(&bytes)),
                output.display()
            );
            Ok(())
        }
        RespondCmd::Policy {
            who,
            approve_server_isolation,
            server,
            not_server,
        } => {
            let changing =
                approve_server_isolation.is_some() || !server.is_empty() || !not_server.is_empty();
            let set = changing.then(|| PolicyChange {
                approve_server_isolation: approve_server_isolation.map(|o| matches!(o, OnOff::On)),
                add_servers: server,
                remove_servers: not_server,
            });
            let operator = who.operator();
            print!(
                "{}",
                render(&run(&who.data, RespondRequest::Policy { set, operator })?)
            );
            Ok(())
        }
    }
}
