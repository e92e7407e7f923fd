//! Response commands: what the appliance asks a sensor to do, the canonical
//! bytes its command key signs, and the receipt the sensor answers with.
//!
//! The appliance signs [`Command::signing_bytes`] with its Ed25519 command
//! key and puts the 64-byte signature in [`Command::signature`]; the sensor
//! verifies it against the key it stored at enrollment
//! ([`crate::control::EnrollResponseV2`]). Verification lives in the sensor
//! so this crate keeps no crypto dependency; the one rule both sides share
//! is the byte string signed, defined here once and pinned by
//! `tests/golden.rs`.
//!
//! Like every control type, these are postcard-encoded: never reorder
//! fields or variants, only append variants.

use crate::event::HostId;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Domain-separation prefix of [`Command::signing_bytes`], so a command
/// signature can never be replayed as a signature over anything else.
pub const SIGNING_DOMAIN: &[u8] = b"vigil-command-v1\0";

/// The nftables table (family `inet`) a sensor's isolation lives in: the
/// sensor installs it, the console names it when an operator confirms.
pub const ISOLATION_TABLE: &str = "vigil_isolate";
/// The nftables table (family `inet`) of a sensor's blocked peers.
pub const BLOCK_TABLE: &str = "vigil_block";

/// A signed response command (appliance → sensor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Unique id, chosen by the appliance; a sensor executes an id once.
    pub id: u64,
    /// The host that must execute it; any other host refuses it.
    pub host: HostId,
    /// Operator who issued it (audit log, host timeline).
    pub operator: String,
    /// Why, as the operator wrote it.
    pub reason: String,
    /// When it was created, ns since the Unix epoch.
    pub created_ns: u64,
    /// After this (ns since the Unix epoch) the sensor refuses it as `expired`.
    pub expires_ns: u64,
    /// What to do.
    pub action: CommandAction,
    /// Ed25519 signature by the appliance's command key over
    /// [`Command::signing_bytes`]; empty means unsigned.
    pub signature: Vec<u8>,
}

/// The fields a command signature covers, in this order: every field of
/// [`Command`] except the signature itself. An explicit struct, so adding
/// a field to `Command` cannot silently leave it unsigned.
#[derive(Serialize)]
struct SigningPayload<'a> {
    id: u64,
    host: HostId,
    operator: &'a str,
    reason: &'a str,
    created_ns: u64,
    expires_ns: u64,
    action: &'a CommandAction,
}

impl Command {
    /// The canonical bytes the command key signs: [`SIGNING_DOMAIN`] then
    /// the postcard encoding of all fields but the signature.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let payload = SigningPayload {
            id: self.id,
            host: self.host,
            operator: &self.operator,
            reason: &self.reason,
            created_ns: self.created_ns,
            expires_ns: self.expires_ns,
            action: &self.action,
        };
        let mut out = SIGNING_DOMAIN.to_vec();
        // Encoding into a Vec cannot fail for these types (no maps, no
        // unsized sequences).
        out.extend(postcard::to_allocvec(&payload).expect("postcard encodes a command"));
        out
    }
}

/// What the sensor should do.
///
/// Never reorder, only append; pinned by `tests/golden.rs`. Indices 0–4 are
/// the pre-signing forms: `Isolate` is executed as `IsolateHost` without
/// DHCP, `Kill` (no start time) is refused as `unsupported`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandAction {
    /// Pre-signing isolation (0): see [`CommandAction::IsolateHost`].
    Isolate {
        /// Addresses allowed besides the appliance.
        allow: Vec<IpAddr>,
        /// When it lifts by itself, ns since the Unix epoch.
        expires_ns: Option<u64>,
    },
    /// Lift every isolation (1): the sensor deletes its own table only.
    Release,
    /// Pre-signing kill by pid alone (2): refused, a reused pid could be hit.
    Kill {
        /// Process id.
        pid: u32,
    },
    /// Hash and return a regular file (3): size and SHA-256 of all of it,
    /// its bytes up to `max_bytes` (and the frame cap).
    CollectFile {
        /// Absolute path; a symlink as last component is refused.
        path: String,
        /// Most bytes returned.
        max_bytes: u64,
    },
    /// Report the live process list (4).
    ListProcesses,
    /// Report the live TCP/UDP sockets (5).
    ListConnections,
    /// Remove one line from a user's `~/.ssh/authorized_keys` (6).
    RemoveAuthorizedKey {
        /// Local user whose file is edited.
        user: String,
        /// SHA-256 of the line to remove, without its newline.
        line_sha256: [u8; 32],
    },
    /// Lock a local account's password and expire it (7).
    DisableAccount {
        /// Local user name.
        user: String,
    },
    /// Drop all traffic to and from one address (8), in a table of its own.
    BlockPeer {
        /// The peer.
        addr: IpAddr,
    },
    /// Cut the host off from everything but loopback and the appliance (9).
    IsolateHost {
        /// Addresses allowed besides the appliance (e.g. a forensic host).
        allow: Vec<IpAddr>,
        /// When this isolation lifts by itself, ns since the Unix epoch;
        /// another isolation still in force keeps the host isolated.
        expires_ns: Option<u64>,
        /// Also allow DHCP (v4/v6) and router discovery.
        allow_dhcp_nd: bool,
    },
    /// Kill one process (10), identified by pid and start time so a reused
    /// pid is never hit.
    KillProcess {
        /// Process id.
        pid: u32,
        /// Start time in clock ticks after boot (`/proc/PID/stat` field 22).
        start_time_ticks: u64,
    },
    /// Kill one process (11) named by pid and the start time its
    /// `ProcessStart` event carries (ns since the Unix epoch), so the
    /// remediation checklist can propose it from stored events. The sensor
    /// maps the time back to clock ticks with the boot time it reads when it
    /// executes: a time off that boot's tick grid (another boot, or a clock
    /// step since) is refused as a mismatch, never approximated.
    KillProcessStartedAt {
        /// Process id.
        pid: u32,
        /// Start time, ns since the Unix epoch, as in `ProcessStart::start_time_ns`.
        start_time_ns: u64,
    },
}

/// A command's outcome with the proof of its effect (sensor → appliance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The command's id.
    pub id: u64,
    /// Done, failed or refused.
    pub state: CommandState,
    /// Human-readable account (the error for `Failed`).
    pub message: String,
    /// What the action did, typed per action.
    pub receipt: Receipt,
    /// Attached output (process list, file bytes), bounded by the frame cap.
    pub data: Vec<u8>,
}

/// How a command ended on the sensor.
///
/// Never reorder, only append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandState {
    /// Carried out; the receipt shows the effect.
    Done,
    /// Tried and failed; the message says why.
    Failed,
    /// Not carried out, for this reason.
    Refused(RefusalReason),
}

/// Why a sensor refused a command. `code()` is a stable label for counters
/// and the appliance's store.
///
/// Never reorder, only append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RefusalReason {
    /// No signature.
    Unsigned,
    /// The signature does not verify with the stored command key (tampered
    /// or signed by another key).
    BadSignature,
    /// Addressed to another host.
    WrongHost,
    /// Past its expiry.
    Expired,
    /// Its id was executed before.
    Replayed,
    /// The sensor's configuration refuses this class of action.
    RefusedByPolicy,
    /// The sensor has no command key (enrolled by an older appliance).
    NoCommandKey,
    /// This sensor does not execute this action (e.g. kill without start time).
    Unsupported,
    /// Its expiry is further ahead than the sensor remembers ids for.
    ExpiryTooFar,
    /// The target is not the one named (a pid reused by another process).
    TargetMismatch,
    /// The target is unsafe to act on (a symlink, FIFO or device to
    /// collect, pid 1 or the sensor itself, root's account, the appliance).
    UnsafeTarget,
}

impl RefusalReason {
    /// Stable machine-readable label.
    pub fn code(self) -> &'static str {
        match self {
            RefusalReason::Unsigned => "unsigned",
            RefusalReason::BadSignature => "bad_signature",
            RefusalReason::WrongHost => "wrong_host",
            RefusalReason::Expired => "expired",
            RefusalReason::Replayed => "replayed",
            RefusalReason::RefusedByPolicy => "refused_by_policy",
            RefusalReason::NoCommandKey => "no_command_key",
            RefusalReason::Unsupported => "unsupported",
            RefusalReason::ExpiryTooFar => "expiry_too_far",
            RefusalReason::TargetMismatch => "target_mismatch",
            RefusalReason::UnsafeTarget => "unsafe_target",
        }
    }
}

/// The typed proof of what an action did.
///
/// Never reorder, only append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Receipt {
    /// Nothing to prove (refusals, failures, listings).
    None,
    /// An isolation is in force.
    Isolation(IsolationReceipt),
    /// Isolation lifted: whether our table existed.
    Released {
        /// An isolation table was there and was deleted.
        was_isolated: bool,
    },
    /// A process was signalled.
    Kill(KillReceipt),
    /// A file was read.
    Collect(CollectReceipt),
    /// A listing (processes or connections).
    Listing {
        /// Rows found.
        total: u32,
        /// Rows in `data` (the rest did not fit).
        listed: u32,
    },
    /// An `authorized_keys` line was removed.
    KeyRemoved {
        /// The file edited.
        path: String,
        /// The removed line.
        line: String,
    },
    /// An account was disabled.
    AccountDisabled {
        /// The account.
        user: String,
        /// What changed, one entry per change.
        changes: Vec<String>,
    },
    /// A peer is blocked.
    PeerBlocked {
        /// The peer.
        addr: IpAddr,
        /// SHA-256 of the block table's ruleset text installed.
        ruleset_sha256: [u8; 32],
    },
}

/// What an isolation installed and whether the appliance stayed reachable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationReceipt {
    /// SHA-256 of the nftables ruleset text installed (one transaction).
    pub ruleset_sha256: [u8; 32],
    /// Addresses allowed (the pinned appliance addresses and `allow`).
    pub allowed: Vec<IpAddr>,
    /// The latest expiry among the isolations in force (`None`: until released).
    pub until_ns: Option<u64>,
    /// Whether the self-check passed; the host stays isolated either way.
    pub self_check_ok: bool,
    /// What the self-check did and saw.
    pub self_check: String,
}

/// Which process was killed, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillReceipt {
    /// Process id.
    pub pid: u32,
    /// Its executable, read through `/proc` while the pidfd held it.
    pub exe: String,
    /// Its start time in clock ticks after boot (matched the command's).
    pub start_time_ticks: u64,
    /// The signal sent (9).
    pub signal: i32,
    /// Whether it had exited when the sensor stopped waiting.
    pub exited: bool,
}

/// What a collected file was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectReceipt {
    /// Its size in bytes (all of it was hashed).
    pub size: u64,
    /// SHA-256 of its content.
    pub sha256: [u8; 32],
    /// Bytes returned in `data`.
    pub sent: u64,
}
