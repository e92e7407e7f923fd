//! The appliance's side of response: signs operators' commands with the
//! command key, keeps every command's lifecycle durably, delivers commands
//! to their host whenever it is connected, and files the sensor's receipts.
//!
//! - Who may act is checked here, for the console and the CLI alike: a
//!   console user with the analyst or admin role, not disabled.
//! - Every issue, approval, cancellation, receipt and download is an audit
//!   entry (the Merkle-logged audit chain).
//! - A command for an offline host waits in the store; a restart loses
//!   none ([`Responder::open`] reloads the open ones). Delivery is retried
//!   on every connection until the sensor acknowledges it or it expires;
//!   the sensor executes an id once, so a repeat delivery is harmless.
//! - A sensor can only answer for its own commands: a receipt naming
//!   another host's command is refused and counted.

use crate::core::Clock;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::registry::{Registry, RegistryError};
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use vigil_proto::query::response::{
    action_name, CommandRecord, CommandRequest, CommandStatus, CommandTransition, IsolationStatus,
    KeyLine, ResponseApi, ResponseError, StoredResult,
};
use vigil_proto::{
    Command, CommandAction, CommandResult, CommandState, HostId, Receipt, RefusalReason,
};
use vigil_web_ui::store::{AuditDraft, ConsoleStore, Role};

/// How long a command waits for its host by default (the sensor refuses
/// anything expiring more than 7 days ahead).
pub const DEFAULT_DELIVERY_NS: u64 = 24 * 3600 * 1_000_000_000;
/// Longest a command may wait for its host.
pub const MAX_DELIVERY_NS: u64 = 7 * 24 * 3600 * 1_000_000_000 - 60 * 1_000_000_000;
/// Longest reason an operator may write.
pub const MAX_REASON_BYTES: usize = 1024;
/// Largest parameter (path, user, address list) a command may carry.
const MAX_PARAM_BYTES: usize = 4096;
/// `meta` key of the approval policy.
const POLICY_KEY: &[u8] = b"response/policy";

/// The command key file in `keys/`.
pub const COMMAND_KEY_FILE: &str = "command.key";

pub use vigil_proto::query::response::ApprovalPolicy;

/// Load `keys/command.key` (PKCS#8 PEM), creating it on first use.
pub fn load_or_create_command_key(path: &Path) -> Result<SigningKey, String> {
    use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
    if path.exists() {
        let pem = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return SigningKey::from_pkcs8_pem(&pem).map_err(|e| format!("{}: {e}", path.display()));
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| e.to_string())?;
    crate::pki::write_private(path, pem.as_bytes()).map_err(|e| e.to_string())?;
    Ok(key)
}

/// Signs, stores, delivers and files response commands.
pub struct Responder {
    db: Db,
    key: SigningKey,
    registry: Arc<Registry>,
    console: Arc<dyn ConsoleStore>,
    metrics: Arc<Metrics>,
    clock: Clock,
    /// Serialises read-modify-write of command records.
    lock: Mutex<()>,
    /// Ids of commands not yet final (delivery and expiry look only here).
    open: Mutex<BTreeSet<u64>>,
}

fn storage(e: impl std::fmt::Display) -> ResponseError {
    ResponseError::Storage(e.to_string())
}

impl Responder {
    /// A responder over the store, reloading the commands still open.
    pub fn open(
        db: Db,
        key: SigningKey,
        registry: Arc<Registry>,
        console: Arc<dyn ConsoleStore>,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Result<Self, ResponseError> {
        let open = db
            .commands(None, 0)
            .map_err(storage)?
            .into_iter()
            .filter(|c| !c.status.is_final())
            .map(|c| c.id())
            .collect();
        Ok(Responder {
            db,
            key,
            registry,
            console,
            metrics,
            clock,
            lock: Mutex::new(()),
            open: Mutex::new(open),
        })
    }

    /// The public half of the command key (sent to sensors at enrollment).
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The approval policy in force.
    pub fn policy(&self) -> Result<ApprovalPolicy, ResponseError> {
        Ok(self
            .db
            .store()
            .get(crate::store::Cf::Meta, POLICY_KEY)
            .map_err(storage)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default())
    }

    /// Replace the approval policy (an audit entry by `operator`).
    pub fn set_policy(&self, policy: &ApprovalPolicy, operator: &str) -> Result<(), ResponseError> {
        self.authorize(operator, Role::Admin)?;
        let json = serde_json::to_vec(policy).map_err(storage)?;
        let detail = format!(
            "approve_server_isolation={} servers={:?}",
            policy.approve_server_isolation,
            policy.servers.iter().map(|h| h.0).collect::<Vec<_>>()
        );
        // Audited first: a change the log cannot record does not happen.
        self.audit(operator, "response.policy", "response", &detail)?;
        let mut b = crate::store::WriteBatch::default();
        b.put(crate::store::Cf::Meta, POLICY_KEY.to_vec(), json);
        self.db.store().write(b, true).map_err(storage)
    }

    /// `operator` is a console user at least `min` and not disabled.
    fn authorize(&self, operator: &str, min: Role) -> Result<(), ResponseError> {
        let user = self
            .console
            .user(operator)
            .map_err(storage)?
            .ok_or_else(|| {
                ResponseError::Forbidden(format!("{operator:?} is not a console user"))
            })?;
        if user.disabled {
            return Err(ResponseError::Forbidden(format!("{operator} is disabled")));
        }
        if user.role < min {
            return Err(ResponseError::Forbidden(format!(
                "{operator} is a {}; acting needs {} or above",
                user.role.name(),
                min.name()
            )));
        }
        Ok(())
    }

    fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), ResponseError> {
        self.console
            .append_audit(AuditDraft {
                ts_ns: (self.clock)(),
                actor: actor.to_owned(),
                action: action.to_owned(),
                target: target.to_owned(),
                detail: detail.to_owned(),
            })
            .map(|_| ())
            .map_err(storage)
    }

    fn sign(&self, mut cmd: Command) -> Command {
        cmd.signature = self.key.sign(&cmd.signing_bytes()).to_bytes().to_vec();
        cmd
    }

    fn transition(
        rec: &mut CommandRecord,
        status: CommandStatus,
        by: &str,
        detail: String,
        now: u64,
    ) {
        rec.status = status;
        rec.history.push(CommandTransition {
            status,
            ts_ns: now,
            by: by.to_owned(),
            detail,
        });
    }

    fn store(&self, rec: &CommandRecord, data: Option<&[u8]>) -> Result<(), ResponseError> {
        self.db.put_command(rec, data).map_err(storage)?;
        let mut open = self.open.lock().expect("open lock");
        if rec.status.is_final() {
            open.remove(&rec.id());
        } else {
            open.insert(rec.id());
        }
        Ok(())
    }

    fn load(&self, id: u64) -> Result<CommandRecord, ResponseError> {
        self.db
            .command(id)
            .map_err(storage)?
            .ok_or_else(|| ResponseError::NotFound(format!("command {id}")))
    }

    /// Hand a queued command to its host's live connection, if there is one.
    fn try_deliver(&self, rec: &mut CommandRecord, now: u64) -> Result<(), ResponseError> {
        if rec.status != CommandStatus::Queued && rec.status != CommandStatus::Sent {
            return Ok(());
        }
        match self.registry.send_command(rec.host(), rec.command.clone()) {
            Ok(()) => {
                if rec.status == CommandStatus::Queued {
                    Self::transition(rec, CommandStatus::Sent, "appliance", String::new(), now);
                    self.metrics.commands.add("sent", 1);
                }
                self.store(rec, None)
            }
            // Offline or its queue is full: it stays queued and goes out on
            // the next connection or sweep.
            Err(RegistryError::NotConnected(_)) | Err(RegistryError::Busy(_)) => Ok(()),
            Err(e) => Err(storage(e)),
        }
    }

    /// Deliver what waits for `host` (called when it connects; `Sent`
    /// commands go again, since the previous connection may have dropped
    /// them before the sensor read them).
    pub fn host_connected(&self, host: HostId) {
        let _g = self.lock.lock().expect("responder lock");
        let now = (self.clock)();
        for mut rec in self.open_records() {
            if rec.host() == host
                && rec.status.awaits_delivery()
                && !self.expire_if_due(&mut rec, now)
            {
                if let Err(e) = self.try_deliver(&mut rec, now) {
                    tracing::warn!(command = rec.id(), error = %e, "command not delivered");
                }
            }
        }
    }

    fn open_records(&self) -> Vec<CommandRecord> {
        let ids: Vec<u64> = self
            .open
            .lock()
            .expect("open lock")
            .iter()
            .copied()
            .collect();
        ids.into_iter()
            .filter_map(|id| self.db.command(id).ok().flatten())
            .collect()
    }

    /// Mark `rec` expired if its delivery deadline passed before the sensor
    /// received it. Returns whether it did.
    fn expire_if_due(&self, rec: &mut CommandRecord, now: u64) -> bool {
        let undelivered = matches!(
            rec.status,
            CommandStatus::AwaitingApproval | CommandStatus::Queued | CommandStatus::Sent
        );
        // An acknowledged command that never answered is given up on at its
        // expiry too: the sensor refuses it past then, and a lost receipt
        // must not leave it open forever.
        if !(undelivered || rec.status == CommandStatus::Acknowledged)
            || now < rec.command.expires_ns
        {
            return false;
        }
        let detail = if undelivered {
            "not delivered before its expiry".to_owned()
        } else {
            "received but no receipt before its expiry".to_owned()
        };
        // Recorded before the state changes, so whoever sees the command
        // expired also finds why in the audit log.
        if let Err(e) = self.audit(
            "appliance",
            "command.expired",
            &format!("command:{}", rec.id()),
            &detail,
        ) {
            tracing::warn!(command = rec.id(), error = %e, "expiry not audited");
        }
        Self::transition(rec, CommandStatus::Expired, "appliance", detail, now);
        self.metrics.commands.add("expired", 1);
        if let Err(e) = self.store(rec, None) {
            tracing::warn!(command = rec.id(), error = %e, "expiry not stored");
        }
        true
    }

    /// Expire what is due and retry delivery to connected hosts; run
    /// periodically by `vigil serve`. Returns how many expired.
    pub fn sweep(&self) -> usize {
        let _g = self.lock.lock().expect("responder lock");
        let now = (self.clock)();
        let mut expired = 0;
        for mut rec in self.open_records() {
            if self.expire_if_due(&mut rec, now) {
                expired += 1;
            } else if rec.status == CommandStatus::Queued && self.registry.is_connected(rec.host())
            {
                let _ = self.try_deliver(&mut rec, now);
            }
        }
        expired
    }

    /// The sensor of `host` received command `id`.
    pub fn on_received(&self, host: HostId, id: u64) {
        let _g = self.lock.lock().expect("responder lock");
        let now = (self.clock)();
        match self.db.command(id) {
            Ok(Some(mut rec)) if rec.host() == host => {
                if rec.status.awaits_delivery() {
                    Self::transition(
                        &mut rec,
                        CommandStatus::Acknowledged,
                        "sensor",
                        String::new(),
                        now,
                    );
                    self.metrics.commands.add("acknowledged", 1);
                    if let Err(e) = self.store(&rec, None) {
                        tracing::warn!(command = id, error = %e, "acknowledgement not stored");
                    }
                }
            }
            _ => self.metrics.commands.add("result_rejected", 1),
        }
    }

    /// The key lines of a collected `authorized_keys` file, listed so the
    /// console can offer to remove one (nothing for other results).
    fn key_lines(rec: &CommandRecord, result: &CommandResult) -> Vec<KeyLine> {
        match &rec.command.action {
            CommandAction::CollectFile { path, .. }
                if result.state == CommandState::Done
                    && vigil_proto::incident::keys_owner(path).is_some() =>
            {
                crate::authorized_keys::key_lines(&result.data)
            }
            _ => Vec::new(),
        }
    }

    /// File the sensor's receipt for one of `host`'s commands.
    pub fn on_result(&self, host: HostId, result: CommandResult) {
        let _g = self.lock.lock().expect("responder lock");
        let now = (self.clock)();
        let mut rec = match self.db.command(result.id) {
            Ok(Some(rec)) if rec.host() == host => rec,
            _ => {
                // Unknown id or another host's command: a hostile or confused
                // sensor cannot touch what is not its own.
                self.metrics.commands.add("result_rejected", 1);
                tracing::warn!(host = %host, command = result.id, "receipt for a command this host was not sent");
                return;
            }
        };
        if rec.status.is_final() {
            // A repeat delivery the sensor refused as already run is the
            // replay protection at work; count it by name.
            let label = match result.state {
                CommandState::Refused(RefusalReason::Replayed) => "refused:replayed",
                _ => "result_duplicate",
            };
            self.metrics.commands.add(label, 1);
            return;
        }
        let (status, label) = match result.state {
            CommandState::Done => (CommandStatus::Done, "done".to_owned()),
            CommandState::Failed => (CommandStatus::Failed, "failed".to_owned()),
            // A repeat delivery of a command the sensor already ran: its
            // receipt was lost with the old connection.
            CommandState::Refused(RefusalReason::Replayed) => {
                (CommandStatus::Failed, "receipt_lost".to_owned())
            }
            CommandState::Refused(r) => (CommandStatus::Refused, format!("refused:{}", r.code())),
        };
        let message = if label == "receipt_lost" {
            format!(
                "the sensor ran this command before but its receipt was lost; check the host ({})",
                result.message
            )
        } else {
            result.message.clone()
        };
        let data_sha256 = if result.data.is_empty() {
            String::new()
        } else {
            hex::encode(Sha256::digest(&result.data))
        };
        rec.result = Some(StoredResult {
            state: result.state,
            message: message.clone(),
            receipt: result.receipt.clone(),
            data_len: result.data.len() as u64,
            data_sha256: data_sha256.clone(),
            received_ns: now,
            key_lines: Self::key_lines(&rec, &result),
        });
        Self::transition(&mut rec, status, "sensor", message.clone(), now);
        self.metrics.commands.add(&label, 1);
        let data = (!result.data.is_empty()).then_some(result.data.as_slice());
        if let Err(e) = self.store(&rec, data) {
            tracing::error!(command = rec.id(), error = %e, "receipt not stored");
            return;
        }
        let detail = format!(
            "{} {}: {}{}",
            status.code(),
            receipt_summary(&result.receipt),
            message,
            if data_sha256.is_empty() {
                String::new()
            } else {
                format!(" data_sha256={data_sha256}")
            }
        );
        let _ = self.audit(
            &format!("sensor:{}", host.0),
            "command.receipt",
            &format!("command:{}", rec.id()),
            &detail,
        );
    }

    fn validate(req: &CommandRequest) -> Result<(), ResponseError> {
        if req.reason.trim().is_empty() {
            return Err(ResponseError::Invalid("a reason is required".into()));
        }
        if req.reason.len() > MAX_REASON_BYTES {
            return Err(ResponseError::Invalid(format!(
                "reason longer than {MAX_REASON_BYTES} bytes"
            )));
        }
        let params = serde_json::to_vec(&req.action).map_err(storage)?.len();
        if params > MAX_PARAM_BYTES {
            return Err(ResponseError::Invalid(
                "command parameters too large".into(),
            ));
        }
        match &req.action {
            CommandAction::Isolate { .. } | CommandAction::Kill { .. } => {
                Err(ResponseError::Invalid(
                    "pre-signing action forms are not issued; use isolate / kill with a start time"
                        .into(),
                ))
            }
            CommandAction::CollectFile { path, .. } if !path.starts_with('/') => Err(
                ResponseError::Invalid("collect needs an absolute path".into()),
            ),
            CommandAction::RemoveAuthorizedKey { user, .. }
            | CommandAction::DisableAccount { user }
                if user.is_empty() || user.contains('/') =>
            {
                Err(ResponseError::Invalid(
                    "a local user name is required".into(),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// One line about what a receipt proves (audit entries, lists).
pub fn receipt_summary(r: &Receipt) -> String {
    match r {
        Receipt::None => "no receipt".into(),
        Receipt::Isolation(i) => format!(
            "isolation ruleset_sha256={} self_check={} until={:?}",
            hex::encode(i.ruleset_sha256),
            if i.self_check_ok { "ok" } else { "FAILED" },
            i.until_ns
        ),
        Receipt::Released { was_isolated } => format!("released was_isolated={was_isolated}"),
        Receipt::Kill(k) => format!(
            "killed pid={} exe={} start={} signal={} exited={}",
            k.pid, k.exe, k.start_time_ticks, k.signal, k.exited
        ),
        Receipt::Collect(c) => format!(
            "collected size={} sha256={} sent={}",
            c.size,
            hex::encode(c.sha256),
            c.sent
        ),
        Receipt::Listing { total, listed } => format!("listing total={total} listed={listed}"),
        Receipt::KeyRemoved { path, line } => format!("key removed from {path}: {line}"),
        Receipt::AccountDisabled { user, changes } => {
            format!("account {user} disabled: {}", changes.join(", "))
        }
        Receipt::PeerBlocked {
            addr,
            ruleset_sha256,
        } => format!(
            "peer {addr} blocked ruleset_sha256={}",
            hex::encode(ruleset_sha256)
        ),
    }
}

impl ResponseApi for Responder {
    fn issue(&self, req: CommandRequest) -> Result<CommandRecord, ResponseError> {
        Self::validate(&req)?;
        self.authorize(&req.operator, Role::Analyst)?;
        if self.db.host_record(req.host).map_err(storage)?.is_none() {
            return Err(ResponseError::NotFound(format!("host {}", req.host.0)));
        }
        let needs_approval = self.needs_approval(req.host, &req.action);
        let _g = self.lock.lock().expect("responder lock");
        let now = (self.clock)();
        let within = req
            .deliver_within_ns
            .unwrap_or(DEFAULT_DELIVERY_NS)
            .min(MAX_DELIVERY_NS);
        let id = self.db.next_command_id().map_err(storage)?;
        let command = self.sign(Command {
            id,
            host: req.host,
            operator: req.operator.clone(),
            reason: req.reason.clone(),
            created_ns: now,
            expires_ns: now.saturating_add(within),
            action: req.action.clone(),
            signature: Vec::new(),
        });
        let status = if needs_approval {
            CommandStatus::AwaitingApproval
        } else {
            CommandStatus::Queued
        };
        let mut rec = CommandRecord {
            command,
            status,
            history: vec![CommandTransition {
                status,
                ts_ns: now,
                by: req.operator.clone(),
                detail: req.reason.clone(),
            }],
            result: None,
            incident: req.incident,
            step: req.step.clone(),
            approved_by: None,
        };
        // The audit entry first: an action the log cannot record is not taken.
        let detail = format!(
            "{} on host {}: {:?}; reason: {}{}",
            action_name(&req.action),
            req.host.0,
            req.action,
            req.reason,
            if needs_approval {
                "; awaits approval"
            } else {
                ""
            }
        );
        self.audit(
            &req.operator,
            "command.issue",
            &format!("command:{id}"),
            &detail,
        )?;
        self.store(&rec, None)?;
        self.metrics.commands.add("issued", 1);
        if !needs_approval {
            self.try_deliver(&mut rec, now)?;
        }
        Ok(rec)
    }

    fn approve(&self, id: u64, approver: &str) -> Result<CommandRecord, ResponseError> {
        self.authorize(approver, Role::Analyst)?;
        let _g = self.lock.lock().expect("responder lock");
        let now = (self.clock)();
        let mut rec = self.load(id)?;
        if rec.status != CommandStatus::AwaitingApproval {
            return Err(ResponseError::Conflict(format!(
                "command {id} is {}",
                rec.status.code()
            )));
        }
        if rec.command.operator == approver {
            return Err(ResponseError::Forbidden(
                "a second person must approve".into(),
            ));
        }
        self.audit(
            approver,
            "command.approve",
            &format!("command:{id}"),
            &format!("approved {}'s command", rec.command.operator),
        )?;
        rec.approved_by = Some(approver.to_owned());
        Self::transition(
            &mut rec,
            CommandStatus::Queued,
            approver,
            "approved".into(),
            now,
        );
        self.store(&rec, None)?;
        if !self.expire_if_due(&mut rec, now) {
            self.try_deliver(&mut rec, now)?;
        }
        Ok(rec)
    }

    fn cancel(&self, id: u64, operator: &str) -> Result<CommandRecord, ResponseError> {
        self.authorize(operator, Role::Analyst)?;
        let _g = self.lock.lock().expect("responder lock");
        let now = (self.clock)();
        let mut rec = self.load(id)?;
        // Once sent, the sensor may already hold it: too late to withdraw.
        if !matches!(
            rec.status,
            CommandStatus::AwaitingApproval | CommandStatus::Queued
        ) {
            return Err(ResponseError::Conflict(format!(
                "command {id} is {}; too late to cancel",
                rec.status.code()
            )));
        }
        self.audit(operator, "command.cancel", &format!("command:{id}"), "")?;
        Self::transition(
            &mut rec,
            CommandStatus::Cancelled,
            operator,
            String::new(),
            now,
        );
        self.metrics.commands.add("cancelled", 1);
        self.store(&rec, None)?;
        Ok(rec)
    }

    fn commands(
        &self,
        host: Option<HostId>,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, ResponseError> {
        self.db.commands(host, limit).map_err(storage)
    }

    fn command(&self, id: u64) -> Result<CommandRecord, ResponseError> {
        self.load(id)
    }

    fn command_data(&self, id: u64, operator: &str) -> Result<Vec<u8>, ResponseError> {
        self.authorize(operator, Role::Analyst)?;
        let rec = self.load(id)?;
        let data = self
            .db
            .command_data(id)
            .map_err(storage)?
            .ok_or_else(|| ResponseError::NotFound(format!("data of command {id}")))?;
        let sha = rec.result.map(|r| r.data_sha256).unwrap_or_default();
        self.audit(
            operator,
            "command.download",
            &format!("command:{id}"),
            &format!("{} bytes sha256={sha}", data.len()),
        )?;
        Ok(data)
    }

    fn isolation(
        &self,
        host: HostId,
        now_ns: u64,
    ) -> Result<Option<IsolationStatus>, ResponseError> {
        for rec in self.db.commands(Some(host), 0).map_err(storage)? {
            let Some(res) = rec
                .result
                .as_ref()
                .filter(|r| r.state == CommandState::Done)
            else {
                continue;
            };
            match &res.receipt {
                Receipt::Isolation(i) => {
                    if i.until_ns.is_some_and(|u| u <= now_ns) {
                        return Ok(None);
                    }
                    return Ok(Some(IsolationStatus {
                        command: rec.id(),
                        since_ns: res.received_ns,
                        until_ns: i.until_ns,
                        self_check_ok: i.self_check_ok,
                    }));
                }
                Receipt::Released { .. } => return Ok(None),
                _ => {}
            }
        }
        Ok(None)
    }

    fn policy(&self) -> Result<ApprovalPolicy, ResponseError> {
        Responder::policy(self)
    }

    fn set_policy(&self, policy: &ApprovalPolicy, operator: &str) -> Result<(), ResponseError> {
        Responder::set_policy(self, policy, operator)
    }

    fn needs_approval(&self, host: HostId, action: &CommandAction) -> bool {
        let isolating = matches!(action, CommandAction::IsolateHost { .. });
        isolating
            && self
                .policy()
                .is_ok_and(|p| p.approve_server_isolation && p.servers.contains(&host))
    }
}
