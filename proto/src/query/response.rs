//! Response commands as the console, the CLI and the evidence bundle see
//! them: a signed [`Command`] and its lifecycle on the appliance.
//!
//! ```text
//! awaiting_approval ─▶ queued ─▶ sent ─▶ acknowledged ─▶ done | failed | refused
//!            └───────────┴────────┴──▶ expired | cancelled
//! ```
//!
//! Only the appliance moves a command along; these are plain types.

use crate::command::{Command, CommandAction, CommandState, Receipt};
use crate::event::HostId;
use serde::{Deserialize, Serialize};

/// Where a command stands on the appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    /// Waits for a second person's approval (isolating a server).
    AwaitingApproval,
    /// Stored; waits for the host to be connected.
    Queued,
    /// Handed to the host's live connection.
    Sent,
    /// The sensor said it received it and is carrying it out.
    Acknowledged,
    /// Carried out; the receipt proves the effect.
    Done,
    /// The sensor tried and failed (its error is the result's message).
    Failed,
    /// The sensor refused it (the result says why).
    Refused,
    /// Not delivered before its expiry.
    Expired,
    /// Withdrawn by an operator before the sensor received it.
    Cancelled,
}

impl CommandStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [CommandStatus; 9] = [
        CommandStatus::AwaitingApproval,
        CommandStatus::Queued,
        CommandStatus::Sent,
        CommandStatus::Acknowledged,
        CommandStatus::Done,
        CommandStatus::Failed,
        CommandStatus::Refused,
        CommandStatus::Expired,
        CommandStatus::Cancelled,
    ];

    /// Stable label (CLI, JSON, counters).
    pub fn code(self) -> &'static str {
        match self {
            CommandStatus::AwaitingApproval => "awaiting_approval",
            CommandStatus::Queued => "queued",
            CommandStatus::Sent => "sent",
            CommandStatus::Acknowledged => "acknowledged",
            CommandStatus::Done => "done",
            CommandStatus::Failed => "failed",
            CommandStatus::Refused => "refused",
            CommandStatus::Expired => "expired",
            CommandStatus::Cancelled => "cancelled",
        }
    }

    /// No further change can happen.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CommandStatus::Done
                | CommandStatus::Failed
                | CommandStatus::Refused
                | CommandStatus::Expired
                | CommandStatus::Cancelled
        )
    }

    /// Still to be delivered (on the next connection of its host).
    pub fn awaits_delivery(self) -> bool {
        matches!(self, CommandStatus::Queued | CommandStatus::Sent)
    }
}

/// One step of a command's life: what happened, when, by whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandTransition {
    /// The status entered.
    pub status: CommandStatus,
    /// When, ns since the Unix epoch.
    pub ts_ns: u64,
    /// The operator (or `appliance` / `sensor`) that moved it.
    pub by: String,
    /// Why or what (the sensor's message, a refusal code, the approver).
    #[serde(default)]
    pub detail: String,
}

/// The sensor's answer, kept with the command (its attached bytes are
/// stored apart and fetched on request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResult {
    /// Done, failed or refused.
    pub state: CommandState,
    /// The sensor's account.
    pub message: String,
    /// The typed proof of the effect.
    pub receipt: Receipt,
    /// Size of the attached data (collected file, listing).
    pub data_len: u64,
    /// SHA-256 of the attached data, lowercase hex (empty: none).
    #[serde(default)]
    pub data_sha256: String,
    /// When the appliance received it, ns.
    pub received_ns: u64,
    /// The key lines of a collected `authorized_keys` file, so an operator
    /// can remove one by clicking it (empty for anything else).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_lines: Vec<KeyLine>,
}

/// When a second person must approve a command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalPolicy {
    /// Isolating a host tagged as a server needs a second person.
    pub approve_server_isolation: bool,
    /// Hosts tagged as servers.
    pub servers: std::collections::BTreeSet<HostId>,
}

/// One public-key line of a collected `authorized_keys` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLine {
    /// 1-based line number in the collected copy.
    pub number: u32,
    /// SHA-256 of the line without its newline, lowercase hex: what
    /// `RemoveAuthorizedKey` names.
    pub line_sha256: String,
    /// `ssh-ed25519`, `ssh-rsa`, …
    pub key_type: String,
    /// `SHA256:…` as `ssh-keygen -lf` and sshd's log print it.
    pub fingerprint: String,
    /// The comment after the key (often user@host), possibly empty.
    pub comment: String,
    /// Whether the line has options (`from=`, `command=`, …) before the key.
    pub has_options: bool,
}

/// A command and everything that happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// The signed command as delivered.
    pub command: Command,
    /// Where it stands.
    pub status: CommandStatus,
    /// Every transition, oldest first.
    pub history: Vec<CommandTransition>,
    /// The sensor's receipt, once it answered.
    #[serde(default)]
    pub result: Option<StoredResult>,
    /// The incident it was issued from, if any.
    #[serde(default)]
    pub incident: Option<u64>,
    /// The remediation step it carries out, if any.
    #[serde(default)]
    pub step: Option<String>,
    /// Who approved it, when approval was required.
    #[serde(default)]
    pub approved_by: Option<String>,
}

impl CommandRecord {
    /// The command's id.
    pub fn id(&self) -> u64 {
        self.command.id
    }

    /// The host that executes it.
    pub fn host(&self) -> HostId {
        self.command.host
    }

    /// When it entered `status` last, if it did.
    pub fn entered(&self, status: CommandStatus) -> Option<u64> {
        self.history
            .iter()
            .rev()
            .find(|t| t.status == status)
            .map(|t| t.ts_ns)
    }
}

/// What an operator asks for; the appliance signs and stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRequest {
    /// The host that must execute it.
    pub host: HostId,
    /// What to do.
    pub action: CommandAction,
    /// Who asks (a console user allowed to act).
    pub operator: String,
    /// Why, in the operator's words (required).
    pub reason: String,
    /// How long the command may wait for its host before it expires, ns
    /// (`None`: the appliance's default).
    #[serde(default)]
    pub deliver_within_ns: Option<u64>,
    /// The incident it is issued from.
    #[serde(default)]
    pub incident: Option<u64>,
    /// The remediation step it carries out.
    #[serde(default)]
    pub step: Option<String>,
}

/// A host's containment as the appliance last learnt it from receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationStatus {
    /// The isolating command whose receipt is the latest.
    pub command: u64,
    /// Since when (the receipt's arrival), ns.
    pub since_ns: u64,
    /// When it lifts by itself, if it does.
    pub until_ns: Option<u64>,
    /// Whether the sensor's self-check passed.
    pub self_check_ok: bool,
}

/// Why the appliance would not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The operator may not act (unknown, disabled, a viewer, or approving
    /// their own command).
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// No such command or host.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is malformed (empty reason, oversized field…).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The command is no longer in a state that allows this.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The store failed.
    #[error("storage error: {0}")]
    Storage(String),
}

/// What the console and the CLI may ask of the appliance's responder.
pub trait ResponseApi: Send + Sync {
    /// Sign, store and (if its host is connected) deliver a command.
    fn issue(&self, req: CommandRequest) -> Result<CommandRecord, ResponseError>;
    /// A second person approves a command that awaits approval.
    fn approve(&self, id: u64, approver: &str) -> Result<CommandRecord, ResponseError>;
    /// Withdraw a command the sensor has not received yet.
    fn cancel(&self, id: u64, operator: &str) -> Result<CommandRecord, ResponseError>;
    /// Commands, newest first (one host's, or all; `limit` 0 = all).
    fn commands(
        &self,
        host: Option<HostId>,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, ResponseError>;
    /// One command.
    fn command(&self, id: u64) -> Result<CommandRecord, ResponseError>;
    /// The bytes a receipt carried (a collected file), as `operator`
    /// downloads them (an audit entry).
    fn command_data(&self, id: u64, operator: &str) -> Result<Vec<u8>, ResponseError>;
    /// Whether the host is isolated now, per its receipts.
    fn isolation(
        &self,
        host: HostId,
        now_ns: u64,
    ) -> Result<Option<IsolationStatus>, ResponseError>;
    /// The approval policy in force.
    fn policy(&self) -> Result<ApprovalPolicy, ResponseError>;
    /// Replace the approval policy (admins only; an audit entry).
    fn set_policy(&self, policy: &ApprovalPolicy, operator: &str) -> Result<(), ResponseError>;
    /// Whether this action on this host needs a second person's approval.
    fn needs_approval(&self, host: HostId, action: &CommandAction) -> bool;
}

/// A short, human-readable name for an action (lists, audit entries).
pub fn action_name(action: &CommandAction) -> &'static str {
    match action {
        CommandAction::Isolate { .. } | CommandAction::IsolateHost { .. } => "isolate",
        CommandAction::Release => "release",
        CommandAction::Kill { .. }
        | CommandAction::KillProcess { .. }
        | CommandAction::KillProcessStartedAt { .. } => "kill",
        CommandAction::CollectFile { .. } => "collect",
        CommandAction::ListProcesses => "processes",
        CommandAction::ListConnections => "connections",
        CommandAction::RemoveAuthorizedKey { .. } => "remove-key",
        CommandAction::DisableAccount { .. } => "disable-account",
        CommandAction::BlockPeer { .. } => "block",
    }
}

/// What the action will do, in one sentence an operator confirms.
pub fn describe_action(action: &CommandAction) -> String {
    match action {
        CommandAction::Isolate { allow, expires_ns }
        | CommandAction::IsolateHost {
            allow, expires_ns, ..
        } => {
            let mut s = String::from(
                "Drop every packet in and out of the host except loopback and the appliance's \
                 pinned addresses on its QUIC port",
            );
            if let CommandAction::IsolateHost {
                allow_dhcp_nd: true,
                ..
            } = action
            {
                s.push_str(", DHCP and neighbour discovery");
            }
            if !allow.is_empty() {
                let list: Vec<String> = allow.iter().map(|a| a.to_string()).collect();
                s.push_str(&format!(", and {}", list.join(", ")));
            }
            match expires_ns {
                Some(_) => s.push_str("; lifts by itself at its expiry"),
                None => s.push_str("; until released"),
            }
            s
        }
        CommandAction::Release => {
            "Delete Vigil's isolation table on the host, restoring its previous rules".into()
        }
        CommandAction::Kill { pid } => format!("Kill process {pid} (refused: no start time)"),
        CommandAction::KillProcess {
            pid,
            start_time_ticks,
        } => format!(
            "Send SIGKILL to process {pid} started at tick {start_time_ticks}, through a pidfd"
        ),
        CommandAction::KillProcessStartedAt { pid, start_time_ns } => format!(
            "Send SIGKILL to process {pid} started at {} (as its start event says), through a pidfd",
            crate::incident::fmt_utc(*start_time_ns)
        ),
        CommandAction::CollectFile { path, max_bytes } => {
            format!("Hash {path} and return up to {max_bytes} bytes of it (regular files only)")
        }
        CommandAction::ListProcesses => "List the host's live processes".into(),
        CommandAction::ListConnections => "List the host's live TCP and UDP sockets".into(),
        CommandAction::RemoveAuthorizedKey { user, line_sha256 } => format!(
            "Remove the line with SHA-256 {} from {user}'s ~/.ssh/authorized_keys",
            hex_prefix(line_sha256)
        ),
        CommandAction::DisableAccount { user } => {
            format!("Lock the password of local account {user} and expire it")
        }
        CommandAction::BlockPeer { addr } => {
            format!("Drop every packet between the host and {addr}")
        }
    }
}

fn hex_prefix(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_terminal_statuses_are_final_and_codes_are_unique() {
        let codes: std::collections::BTreeSet<_> =
            CommandStatus::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes.len(), CommandStatus::ALL.len());
        let finals: Vec<_> = CommandStatus::ALL.iter().filter(|s| s.is_final()).collect();
        assert_eq!(finals.len(), 5);
        assert!(!CommandStatus::Acknowledged.is_final());
        assert!(CommandStatus::Sent.awaits_delivery());
        assert!(!CommandStatus::Acknowledged.awaits_delivery());
    }

    #[test]
    fn descriptions_name_what_will_happen() {
        let iso = CommandAction::IsolateHost {
            allow: vec!["10.0.0.9".parse().unwrap()],
            expires_ns: Some(5),
            allow_dhcp_nd: true,
        };
        let d = describe_action(&iso);
        assert!(
            d.contains("10.0.0.9") && d.contains("DHCP") && d.contains("expiry"),
            "{d}"
        );
        let key = CommandAction::RemoveAuthorizedKey {
            user: "alice".into(),
            line_sha256: [0xab; 32],
        };
        assert!(describe_action(&key).contains(&"ab".repeat(32)));
        assert_eq!(action_name(&key), "remove-key");
    }
}
