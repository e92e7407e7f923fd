//! Response commands carried out for the appliance, safely.
//!
//! A [`Command`] runs only if it is signed by the appliance's command key
//! (stored at enrollment), addressed to this host, not expired, not run
//! before, and of a class the local policy allows ([`verify`]); its id is
//! recorded durably before it runs. Every answer is a [`CommandResult`]
//! receipt: done (with the typed proof of the effect), failed, or refused
//! with a stable reason.
//!
//! - [`isolate`]: isolation and blocked peers (nftables, atomic, persisted,
//!   re-applied at start, expiring per command).
//! - [`kill`]: by pid *and* start time through a pidfd.
//! - [`collect`]: regular files only, no symlinks, hashed while read.
//! - [`accounts`]: `authorized_keys` line removal, account disabling.
//! - [`list`]: live processes and sockets.
//!
//! With `--netns NAME` the host *is* that namespace: containment and the
//! socket list apply inside it.

pub mod accounts;
pub mod collect;
pub mod isolate;
pub mod kill;
pub mod list;
pub mod verify;

use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use ed25519_dalek::VerifyingKey;
use thiserror::Error;
use vigil_proto::{
    Command, CommandAction, CommandResult, CommandState, HostId, Receipt, RefusalReason,
    UnsignedCommand, UnsignedResult,
};

pub use verify::{load_command_key, store_command_key};

/// Appliance addresses pinned at enrollment (one per line, 0600).
pub const APPLIANCE_FILE: &str = "appliance_addrs";

/// The response executor could not start.
#[derive(Debug, Error)]
pub enum ResponseError {
    /// A state file could not be read or written.
    #[error("response state: {0}")]
    Store(String),
    /// The stored command key is not an Ed25519 public key.
    #[error("command key: {0}")]
    BadKey(String),
}

/// A class of actions a sensor's configuration may refuse
/// (`response.refuse = ["collect"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionClass {
    /// Isolate and release.
    Isolate,
    /// Kill a process.
    Kill,
    /// Collect a file.
    Collect,
    /// List processes and connections.
    List,
    /// Remove an `authorized_keys` line, disable an account.
    Accounts,
    /// Block a peer.
    Block,
}

impl ActionClass {
    /// Every class with its configuration name.
    pub const ALL: [(&'static str, ActionClass); 6] = [
        ("isolate", ActionClass::Isolate),
        ("kill", ActionClass::Kill),
        ("collect", ActionClass::Collect),
        ("list", ActionClass::List),
        ("accounts", ActionClass::Accounts),
        ("block", ActionClass::Block),
    ];

    /// The class of an action.
    pub fn of(action: &CommandAction) -> ActionClass {
        match action {
            CommandAction::Isolate { .. }
            | CommandAction::IsolateHost { .. }
            | CommandAction::Release => ActionClass::Isolate,
            CommandAction::Kill { .. }
            | CommandAction::KillProcess { .. }
            | CommandAction::KillProcessStartedAt { .. } => ActionClass::Kill,
            CommandAction::CollectFile { .. } => ActionClass::Collect,
            CommandAction::ListProcesses | CommandAction::ListConnections => ActionClass::List,
            CommandAction::RemoveAuthorizedKey { .. } | CommandAction::DisableAccount { .. } => {
                ActionClass::Accounts
            }
            CommandAction::BlockPeer { .. } => ActionClass::Block,
        }
    }

    /// The configuration name.
    pub fn name(self) -> &'static str {
        ActionClass::ALL
            .iter()
            .find(|(_, c)| *c == self)
            .map_or("?", |(n, _)| n)
    }
}

impl FromStr for ActionClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ActionClass::ALL
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, c)| *c)
            .ok_or_else(|| {
                let names: Vec<&str> = ActionClass::ALL.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown action class {s:?}; use one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Where and for whom commands run.
#[derive(Debug, Clone)]
pub struct ResponseCtx {
    /// The appliance's addresses, pinned at enrollment (never resolved again).
    pub appliance_addrs: Vec<IpAddr>,
    /// The appliance's QUIC port.
    pub appliance_port: u16,
    /// Network namespace the sensor watches, if any.
    pub netns: Option<String>,
    /// State directory (command key, executed ids, containment state).
    pub state_dir: PathBuf,
}

impl ResponseCtx {
    /// The context for a sensor talking to `appliance` (`HOST:PORT`): the
    /// addresses pinned in `state_dir`, or, for a sensor enrolled before
    /// pinning existed, the address resolved now and pinned from then on.
    pub fn new(appliance: &str, netns: Option<String>, state_dir: &Path) -> ResponseCtx {
        let port = appliance
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(0);
        let appliance_addrs = load_pinned(state_dir).unwrap_or_else(|| {
            let addrs: Vec<IpAddr> = appliance
                .to_socket_addrs()
                .map(|a| a.map(|s| s.ip()).collect())
                .unwrap_or_default();
            if let Err(e) = pin_appliance(state_dir, &addrs) {
                tracing::warn!(error = %e, "cannot pin the appliance's addresses");
            }
            addrs
        });
        ResponseCtx {
            appliance_addrs,
            appliance_port: port,
            netns,
            state_dir: state_dir.to_path_buf(),
        }
    }
}

/// Pin the appliance's addresses in the state directory (at enrollment).
pub fn pin_appliance(dir: &Path, addrs: &[IpAddr]) -> Result<(), ResponseError> {
    if addrs.is_empty() {
        return Ok(());
    }
    let text: String = addrs.iter().map(|a| format!("{a}\n")).collect();
    crate::enroll::write_private(&dir.join(APPLIANCE_FILE), text.as_bytes())
        .map_err(|e| ResponseError::Store(e.to_string()))
}

fn load_pinned(dir: &Path) -> Option<Vec<IpAddr>> {
    let text = std::fs::read_to_string(dir.join(APPLIANCE_FILE)).ok()?;
    let addrs: Vec<IpAddr> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    (!addrs.is_empty()).then_some(addrs)
}

/// Verifies and executes commands for one host.
pub struct Responder {
    ctx: ResponseCtx,
    host: HostId,
    key: Option<VerifyingKey>,
    refuse: Vec<ActionClass>,
    seen: Mutex<verify::SeenIds>,
    state: Mutex<isolate::State>,
}

/// What an action produced.
type Outcome = (CommandState, String, Receipt, Vec<u8>);

fn done(message: impl Into<String>, receipt: Receipt, data: Vec<u8>) -> Outcome {
    (CommandState::Done, message.into(), receipt, data)
}

fn failed(message: impl Into<String>) -> Outcome {
    (
        CommandState::Failed,
        message.into(),
        Receipt::None,
        Vec::new(),
    )
}

fn refused(reason: RefusalReason, message: impl Into<String>) -> Outcome {
    (
        CommandState::Refused(reason),
        message.into(),
        Receipt::None,
        Vec::new(),
    )
}

impl Responder {
    /// Load the command key, executed ids and containment state of `host`.
    pub fn open(
        ctx: ResponseCtx,
        host: HostId,
        refuse: Vec<ActionClass>,
    ) -> Result<Responder, ResponseError> {
        Ok(Responder {
            key: verify::load_command_key(&ctx.state_dir)?,
            seen: Mutex::new(verify::SeenIds::load(&ctx.state_dir)?),
            state: Mutex::new(isolate::State::load(&ctx.state_dir)?),
            ctx,
            host,
            refuse,
        })
    }

    /// Verify and, if allowed, execute one command (blocking).
    pub fn handle(&self, cmd: &Command, now_ns: u64) -> CommandResult {
        tracing::info!(id = cmd.id, operator = %cmd.operator, reason = %cmd.reason, action = ?cmd.action, "response command");
        let (state, message, receipt, data) = self.admit(cmd, now_ns);
        match state {
            CommandState::Refused(r) => {
                tracing::warn!(id = cmd.id, reason = r.code(), message = %message, "response command refused")
            }
            _ => {
                tracing::info!(id = cmd.id, state = ?state, message = %message, "response command done")
            }
        }
        CommandResult {
            id: cmd.id,
            state,
            message,
            receipt,
            data,
        }
    }

    /// The checks, the durable record of the id, then the action.
    fn admit(&self, cmd: &Command, now_ns: u64) -> Outcome {
        if let Err(r) = verify::check(cmd, self.key.as_ref(), self.host, now_ns) {
            return refused(r, format!("refused: {}", r.code()));
        }
        let class = ActionClass::of(&cmd.action);
        // Release only undoes: a sensor that refuses isolation now may still
        // carry one from before the policy changed.
        let undo = cmd.action == CommandAction::Release;
        if self.refuse.contains(&class) && !undo {
            return refused(
                RefusalReason::RefusedByPolicy,
                format!(
                    "this sensor refuses {} actions (response.refuse)",
                    class.name()
                ),
            );
        }
        {
            let mut seen = self.seen.lock().expect("seen lock");
            if seen.contains(cmd.id) {
                return refused(
                    RefusalReason::Replayed,
                    format!("command {} already executed", cmd.id),
                );
            }
            if let Some(lost) = seen.maybe_ran_before_loss(cmd.created_ns) {
                return refused(
                    RefusalReason::Replayed,
                    format!(
                        "command {} was created before this sensor's record of executed commands was lost (at {lost} ns) and may have run; issue it again",
                        cmd.id
                    ),
                );
            }
            if let Err(e) = seen.record(cmd.id, cmd.expires_ns, now_ns) {
                return failed(format!("cannot record the command id, not executed: {e}"));
            }
        }
        self.execute(cmd.id, &cmd.action, now_ns)
    }

    /// Kill `pid` if it started at `ticks` (or say why the ticks are unknown).
    fn kill(pid: u32, ticks: Result<u64, kill::KillError>) -> Outcome {
        match ticks.and_then(|t| kill::kill(pid, t)) {
            Ok(r) => done(
                format!("killed pid {pid} ({})", r.exe),
                Receipt::Kill(r),
                Vec::new(),
            ),
            Err(kill::KillError::Refused(reason, m)) => refused(reason, m),
            Err(kill::KillError::Failed(m)) => failed(m),
        }
    }

    fn execute(&self, id: u64, action: &CommandAction, now_ns: u64) -> Outcome {
        match action {
            CommandAction::Isolate { allow, expires_ns } => {
                self.isolate(id, allow, *expires_ns, false, now_ns)
            }
            CommandAction::IsolateHost {
                allow,
                expires_ns,
                allow_dhcp_nd,
            } => self.isolate(id, allow, *expires_ns, *allow_dhcp_nd, now_ns),
            CommandAction::Release => {
                let mut st = self.state.lock().expect("state lock");
                match isolate::release(&self.ctx, &mut st) {
                    Ok(was) => done(
                        if was { "released" } else { "was not isolated" },
                        Receipt::Released { was_isolated: was },
                        Vec::new(),
                    ),
                    Err(e) => failed(format!("release failed: {e}")),
                }
            }
            CommandAction::Kill { pid } => refused(
                RefusalReason::Unsupported,
                format!("kill of pid {pid} without its start time: a reused pid could be hit"),
            ),
            CommandAction::KillProcess {
                pid,
                start_time_ticks,
            } => Self::kill(*pid, Ok(*start_time_ticks)),
            CommandAction::KillProcessStartedAt { pid, start_time_ns } => {
                Self::kill(*pid, kill::ticks_of_start_ns(*start_time_ns))
            }
            CommandAction::CollectFile { path, max_bytes } => {
                match collect::collect(path, *max_bytes) {
                    Ok((r, data)) => done(
                        format!(
                            "sha256={} size={} sent={}",
                            hex::encode(r.sha256),
                            r.size,
                            r.sent
                        ),
                        Receipt::Collect(r),
                        data,
                    ),
                    Err(collect::CollectError::Refused(reason, m)) => refused(reason, m),
                    Err(collect::CollectError::Failed(m)) => failed(m),
                }
            }
            CommandAction::ListProcesses => {
                let (data, total, listed) = list::processes();
                done(
                    format!("{total} processes ({listed} listed)"),
                    Receipt::Listing { total, listed },
                    data,
                )
            }
            CommandAction::ListConnections => match list::connections(self.ctx.netns.as_deref()) {
                Ok((data, total, listed)) => done(
                    format!("{total} sockets ({listed} listed)"),
                    Receipt::Listing { total, listed },
                    data,
                ),
                Err(e) => failed(e),
            },
            CommandAction::RemoveAuthorizedKey { user, line_sha256 } => {
                match accounts::remove_authorized_key(user, line_sha256) {
                    Ok((path, line)) => done(
                        format!("removed a line from {path}"),
                        Receipt::KeyRemoved { path, line },
                        Vec::new(),
                    ),
                    Err(accounts::AccountError::Refused(reason, m)) => refused(reason, m),
                    Err(accounts::AccountError::Failed(m)) => failed(m),
                }
            }
            CommandAction::DisableAccount { user } => match accounts::disable_account(user) {
                Ok(changes) => done(
                    format!("disabled {user}"),
                    Receipt::AccountDisabled {
                        user: user.clone(),
                        changes,
                    },
                    Vec::new(),
                ),
                Err(accounts::AccountError::Refused(reason, m)) => refused(reason, m),
                Err(accounts::AccountError::Failed(m)) => failed(m),
            },
            CommandAction::BlockPeer { addr } => self.block(*addr),
        }
    }

    fn isolate(
        &self,
        id: u64,
        allow: &[IpAddr],
        expires_ns: Option<u64>,
        dhcp: bool,
        now_ns: u64,
    ) -> Outcome {
        let iso = isolate::Isolation {
            id,
            expires_ns,
            allow: allow.to_vec(),
            allow_dhcp_nd: dhcp,
        };
        let mut st = self.state.lock().expect("state lock");
        match isolate::isolate(&self.ctx, &mut st, iso, now_ns) {
            Ok(r) => {
                let msg = if r.self_check_ok {
                    "isolated; self-check passed".to_string()
                } else {
                    format!(
                        "isolated; SELF-CHECK FAILED, staying isolated: {}",
                        r.self_check
                    )
                };
                done(msg, Receipt::Isolation(r), Vec::new())
            }
            Err(e) => failed(format!("isolate failed: {e}")),
        }
    }

    fn block(&self, addr: IpAddr) -> Outcome {
        if self.ctx.appliance_addrs.contains(&addr) || addr.is_loopback() {
            return refused(
                RefusalReason::UnsafeTarget,
                format!("refusing to block {addr}"),
            );
        }
        let mut st = self.state.lock().expect("state lock");
        match isolate::block_peer(&self.ctx, &mut st, addr) {
            Ok(sha) => done(
                format!("blocked {addr}"),
                Receipt::PeerBlocked {
                    addr,
                    ruleset_sha256: sha,
                },
                Vec::new(),
            ),
            Err(e) => failed(format!("block failed: {e}")),
        }
    }

    /// At start: re-install the isolation and blocks in force.
    pub fn restore(&self, now_ns: u64) -> Result<(), String> {
        let mut st = self.state.lock().expect("state lock");
        isolate::restore(&self.ctx, &mut st, now_ns)
    }

    /// Whether an isolation's expiry has passed (cheap: no I/O), so the
    /// caller only goes to a blocking thread when [`Responder::tick`] has
    /// work.
    pub fn expiry_due(&self, now_ns: u64) -> bool {
        let st = self.state.lock().expect("state lock");
        st.next_expiry().is_some_and(|e| e <= now_ns)
    }

    /// Lift isolations whose expiry passed (the sensor calls this every
    /// second); the host stays isolated while another is in force.
    pub fn tick(&self, now_ns: u64) {
        let mut st = self.state.lock().expect("state lock");
        if st.next_expiry().is_none_or(|e| e > now_ns) {
            return;
        }
        match isolate::expire(&self.ctx, &mut st, now_ns) {
            Ok(_) if st.isolations.is_empty() => tracing::info!("isolation expired and was lifted"),
            Ok(_) => tracing::info!(
                left = st.isolations.len(),
                "an isolation expired; others still hold"
            ),
            Err(e) => tracing::error!(error = %e, "isolation expiry failed"),
        }
    }

    /// Whether any isolation is in force.
    pub fn isolated(&self) -> bool {
        !self.state.lock().expect("state lock").isolations.is_empty()
    }
}

/// The answer to a command in the pre-signing form: never executed.
pub fn answer_unsigned(cmd: &UnsignedCommand) -> UnsignedResult {
    tracing::warn!(id = cmd.id, operator = %cmd.operator, "unsigned response command refused");
    UnsignedResult {
        id: cmd.id,
        ok: false,
        message: format!("refused: {}", RefusalReason::Unsigned.code()),
        data: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
