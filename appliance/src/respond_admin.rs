//! `vigil respond …` over the admin socket: the requests, the answers and
//! the handler, a thin layer over [`crate::response::Responder`] (the same
//! authorization and audit entries as the console's buttons).

use crate::core::Core;
use crate::read::StoreReader;
use crate::response::ApprovalPolicy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use vigil_proto::query::response::{CommandRecord, CommandRequest, ResponseApi};
use vigil_proto::query::ReadApi;
use vigil_proto::{CommandAction, HostId};

/// A response request from the CLI (hosts by id or name).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RespondRequest {
    /// Sign, store and deliver a command.
    Issue {
        host: String,
        action: CommandAction,
        operator: String,
        reason: String,
        deliver_within_ns: Option<u64>,
    },
    /// Commands, newest first.
    List { host: Option<String>, limit: usize },
    /// One command.
    Show { id: u64 },
    /// A second person approves.
    Approve { id: u64, operator: String },
    /// Withdraw before delivery.
    Cancel { id: u64, operator: String },
    /// The bytes a receipt carried (audited).
    Data { id: u64, operator: String },
    /// Show, or (with `set`) replace, the approval policy.
    Policy {
        set: Option<PolicyChange>,
        operator: String,
    },
}

/// A change to the approval policy (servers by id or name).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyChange {
    pub approve_server_isolation: Option<bool>,
    pub add_servers: Vec<String>,
    pub remove_servers: Vec<String>,
}

/// The appliance's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RespondResponse {
    /// One command (issued, approved, cancelled or shown).
    Command(Box<CommandRecord>),
    /// Commands with the names of their hosts.
    Commands {
        commands: Vec<CommandRecord>,
        host_names: BTreeMap<HostId, String>,
    },
    /// Base64 of the attached bytes.
    Data { base64: String },
    /// The approval policy in force.
    Policy(ApprovalPolicy),
}

/// Run one response request against an open appliance.
pub fn handle(core: &Arc<Core>, req: RespondRequest) -> Result<RespondResponse, String> {
    let reader = StoreReader::new(core.clone());
    let r = &core.responder;
    let err = |e: vigil_proto::query::response::ResponseError| e.to_string();
    match req {
        RespondRequest::Issue {
            host,
            action,
            operator,
            reason,
            deliver_within_ns,
        } => {
            let host = crate::admin::resolve_host(&reader, &host)?;
            let rec = r
                .issue(CommandRequest {
                    host,
                    action,
                    operator,
                    reason,
                    deliver_within_ns,
                    incident: None,
                    step: None,
                })
                .map_err(err)?;
            Ok(RespondResponse::Command(Box::new(rec)))
        }
        RespondRequest::List { host, limit } => {
            let host = host
                .map(|h| crate::admin::resolve_host(&reader, &h))
                .transpose()?;
            let commands = r.commands(host, limit).map_err(err)?;
            let host_names = reader
                .hosts()
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|h| (h.id, h.hostname))
                .collect();
            Ok(RespondResponse::Commands {
                commands,
                host_names,
            })
        }
        RespondRequest::Show { id } => r
            .command(id)
            .map(|c| RespondResponse::Command(Box::new(c)))
            .map_err(err),
        RespondRequest::Approve { id, operator } => r
            .approve(id, &operator)
            .map(|c| RespondResponse::Command(Box::new(c)))
            .map_err(err),
        RespondRequest::Cancel { id, operator } => r
            .cancel(id, &operator)
            .map(|c| RespondResponse::Command(Box::new(c)))
            .map_err(err),
        RespondRequest::Data { id, operator } => {
            use base64::Engine;
            let data = r.command_data(id, &operator).map_err(err)?;
            Ok(RespondResponse::Data {
                base64: base64::engine::general_purpose::STANDARD.encode(data),
            })
        }
        RespondRequest::Policy { set, operator } => {
            let mut policy = r.policy().map_err(err)?;
            if let Some(change) = set {
                if let Some(on) = change.approve_server_isolation {
                    policy.approve_server_isolation = on;
                }
                for h in &change.add_servers {
                    policy
                        .servers
                        .insert(crate::admin::resolve_host(&reader, h)?);
                }
                for h in &change.remove_servers {
                    policy
                        .servers
                        .remove(&crate::admin::resolve_host(&reader, h)?);
                }
                r.set_policy(&policy, &operator).map_err(err)?;
            }
            Ok(RespondResponse::Policy(policy))
        }
    }
}

/// The text `vigil respond` prints for an answer.
pub fn render(resp: &RespondResponse) -> String {
    match resp {
        RespondResponse::Command(c) => format_command(c),
        RespondResponse::Commands {
            commands,
            host_names,
        } => format_commands(commands, host_names),
        RespondResponse::Data { base64 } => format!("{base64}\n"),
        RespondResponse::Policy(p) => format!(
            "approval required to isolate servers: {}\nservers: {}\n",
            if p.approve_server_isolation {
                "yes"
            } else {
                "no"
            },
            if p.servers.is_empty() {
                "none".to_owned()
            } else {
                p.servers
                    .iter()
                    .map(|h| h.0.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
    }
}

/// One line per command: id, host, action, status, operator, reason.
pub fn format_commands(commands: &[CommandRecord], names: &BTreeMap<HostId, String>) -> String {
    if commands.is_empty() {
        return "no commands\n".into();
    }
    let mut out = format!(
        "{:<6} {:<20} {:<16} {:<18} {:<12} {:<20} reason\n",
        "id", "created", "host", "action", "status", "operator"
    );
    for c in commands {
        let host = names
            .get(&c.host())
            .cloned()
            .unwrap_or_else(|| c.host().0.to_string());
        out.push_str(&format!(
            "{:<6} {:<20} {:<16} {:<18} {:<12} {:<20} {}\n",
            c.id(),
            crate::cli::ns_to_text(c.command.created_ns),
            host,
            vigil_proto::query::response::action_name(&c.command.action),
            c.status.code(),
            c.command.operator,
            c.command.reason
        ));
    }
    out
}

/// A command, its history and its receipt.
pub fn format_command(c: &CommandRecord) -> String {
    let mut out = format!(
        "command {}\nhost:     {}\naction:   {}\n          {}\nstatus:   {}\noperator: {}\nreason:   {}\nexpires:  {}\n",
        c.id(),
        c.host().0,
        vigil_proto::query::response::action_name(&c.command.action),
        vigil_proto::query::response::describe_action(&c.command.action),
        c.status.code(),
        c.command.operator,
        c.command.reason,
        crate::cli::ns_to_text(c.command.expires_ns),
    );
    if let Some(a) = &c.approved_by {
        out.push_str(&format!("approved: {a}\n"));
    }
    for t in &c.history {
        out.push_str(&format!(
            "  {}  {:<18} by {}{}\n",
            crate::cli::ns_to_text(t.ts_ns),
            t.status.code(),
            t.by,
            if t.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", t.detail)
            }
        ));
    }
    if let Some(r) = &c.result {
        out.push_str(&format!(
            "receipt:  {}\nmessage:  {}\n",
            crate::response::receipt_summary(&r.receipt),
            r.message
        ));
        if r.data_len > 0 {
            out.push_str(&format!(
                "data:     {} bytes sha256={} (vigil respond download {} -o FILE)\n",
                r.data_len,
                r.data_sha256,
                c.id()
            ));
        }
    }
    out
}
