//! The response approval policy on the settings page: which hosts are
//! servers, and whether isolating one needs a second analyst's approval.
//! Everyone who reads settings sees it; only admins change it (checked by
//! the responder too), and each change is an audit entry.

use super::*;
use crate::store::Role;
use axum::extract::{Form, State};
use axum::response::Redirect;
use serde::Deserialize;
use std::collections::BTreeSet;
use vigil_proto::query::response::ApprovalPolicy;
use vigil_proto::query::HostSummary;

/// Most servers one policy names (a form field, so bounded).
const MAX_SERVERS: usize = 10_000;
/// Largest servers field accepted, bytes.
const MAX_SERVERS_FIELD: usize = 512 * 1024;

/// The settings page's "Response approvals" panel; `None` without a responder.
pub fn panel(state: &ConsoleState, auth: &Authed) -> Result<Option<AnyView>, UiError> {
    let Some(r) = &state.respond else {
        return Ok(None);
    };
    let policy = r.policy()?;
    let names: std::collections::HashMap<HostId, String> = state
        .read
        .hosts()?
        .into_iter()
        .map(|h| (h.id, h.hostname))
        .collect();
    let listed: Vec<String> = policy
        .servers
        .iter()
        .map(|h| names.get(h).cloned().unwrap_or_else(|| h.to_string()))
        .collect();
    let admin = auth.can(Role::Admin);
    Ok(Some(
        view! {
            <section class="panel">
                <h2>"Response approvals"</h2>
                <form method="post" action="/settings/response" class="stack">
                    {csrf_field(auth)}
                    <label>
                        <input type="checkbox" name="approve_server_isolation" value="1"
                            checked=policy.approve_server_isolation disabled={!admin}/>
                        " Isolating a server needs a second analyst's approval"
                    </label>
                    <label>"Servers (host names or ids, one per line)"
                        <textarea name="servers" rows="6" maxlength="524288" disabled={!admin}>{listed.join("\n")}</textarea>
                    </label>
                    {admin.then(|| view! { <button type="submit" class="primary">"Save approvals"</button> })}
                </form>
                <p class="muted">"The approval is its own audit entry; the second person cannot be the one who issued the command."</p>
            </section>
        }
        .into_any(),
    ))
}

/// Fields of the approvals form.
#[derive(Debug, Deserialize)]
pub struct PolicyForm {
    #[serde(default)]
    pub approve_server_isolation: String,
    #[serde(default)]
    pub servers: String,
}

/// The policy a form describes: every line a known host's name or id, or
/// an error naming the lines that are not.
pub fn parse_policy(f: &PolicyForm, hosts: &[HostSummary]) -> Result<ApprovalPolicy, UiError> {
    if f.servers.len() > MAX_SERVERS_FIELD {
        return Err(UiError::BadRequest("servers: too long".into()));
    }
    let mut servers = BTreeSet::new();
    let mut unknown = Vec::new();
    for line in f.servers.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let found = hosts
            .iter()
            .find(|h| h.hostname == line || h.id.to_string() == line);
        match found {
            Some(h) => {
                servers.insert(h.id);
            }
            None if unknown.len() < 10 => unknown.push(line.chars().take(64).collect::<String>()),
            None => {}
        }
    }
    if !unknown.is_empty() {
        return Err(UiError::BadRequest(format!(
            "servers: no such host: {}",
            unknown.join(", ")
        )));
    }
    if servers.len() > MAX_SERVERS {
        return Err(UiError::BadRequest(format!(
            "servers: at most {MAX_SERVERS}"
        )));
    }
    Ok(ApprovalPolicy {
        approve_server_isolation: f.approve_server_isolation == "1",
        servers,
    })
}

/// `POST /settings/response` (admin): replace the approval policy.
pub async fn save(
    State(state): State<ConsoleState>,
    auth: Authed,
    Form(f): Form<PolicyForm>,
) -> Result<Redirect, UiError> {
    auth.require(Role::Admin)?;
    off_runtime(move || {
        let r = state
            .respond
            .as_ref()
            .ok_or_else(|| UiError::BadRequest("response is not available".into()))?;
        let policy = parse_policy(&f, &state.read.hosts()?)?;
        r.set_policy(&policy, &auth.user.name)?;
        Ok::<_, UiError>(())
    })
    .await?;
    Ok(Redirect::to("/settings?msg=saved"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: u64, name: &str) -> HostSummary {
        HostSummary {
            id: HostId(id),
            hostname: name.into(),
            os: String::new(),
            addrs: Vec::new(),
            sensor_version: String::new(),
            enrolled_ns: 0,
            last_seen_ns: 0,
            state: vigil_proto::query::SensorState::Online,
            cpu_pct: 0.0,
            rss_bytes: 0,
            events_total: 0,
            lost_total: 0,
            isolated: false,
            open_alerts: 0,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn servers_are_named_by_hostname_or_id_and_unknown_ones_are_named_back() {
        let hosts = [host(1, "db-01"), host(2, "web-01")];
        let f = PolicyForm {
            approve_server_isolation: "1".into(),
            servers: format!("db-01\n\n  {}  \n", HostId(2)),
        };
        let p = parse_policy(&f, &hosts).unwrap();
        assert!(p.approve_server_isolation);
        assert_eq!(p.servers, [HostId(1), HostId(2)].into_iter().collect());
        let f = PolicyForm {
            approve_server_isolation: String::new(),
            servers: "db-01\nnope<script>".into(),
        };
        match parse_policy(&f, &hosts) {
            Err(UiError::BadRequest(m)) => assert!(m.contains("nope<script>"), "{m}"),
            other => panic!("{other:?}"),
        }
        let f = PolicyForm {
            approve_server_isolation: String::new(),
            servers: "x".repeat(MAX_SERVERS_FIELD + 1),
        };
        assert!(parse_policy(&f, &hosts).is_err());
    }
}
