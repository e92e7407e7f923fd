//! Assisted remediation on an incident's page: the root cause, the
//! checklist (each step one click into the matching command's
//! confirmation) and the incident's MTTD / MTTR. The derivation is
//! `vigil_proto::incident`, shared with the CLI and evidence bundles.

use super::respond::confirm_link;
use super::*;
use crate::store::Role;
use crate::time::{duration, format_ts};
use vigil_proto::incident::{
    remediation, root_cause, ExecutedCommand, IncidentTimes, IncidentView, RemediationStep,
};
use vigil_proto::query::response::CommandRecord;
use vigil_proto::query::{AlertFilter, HostSummary};

/// Everything the incident page derives from the store.
pub struct IncidentFacts {
    pub root: Option<vigil_proto::incident::RootCause>,
    pub steps: Vec<RemediationStep>,
    pub times: Option<IncidentTimes>,
}

/// The commands a responder ran, as the derivation reads them.
pub fn executed(commands: &[CommandRecord]) -> Vec<ExecutedCommand> {
    commands
        .iter()
        .filter_map(|c| {
            let r = c.result.as_ref()?;
            Some(ExecutedCommand {
                id: c.id(),
                host: c.host(),
                action: c.command.action.clone(),
                operator: c.command.operator.clone(),
                state: r.state,
                finished_ns: r.received_ns,
            })
        })
        .collect()
}

/// Derive root cause, checklist and times of incident `a` (an alert over
/// several hosts); its member alerts and their evidence events are read
/// from the store.
pub fn facts(state: &ConsoleState, a: &AlertRecord) -> Result<IncidentFacts, UiError> {
    let around = state.read.alerts(&AlertFilter {
        since_ns: Some(a.created_ns.saturating_sub(7 * 24 * 3600 * 1_000_000_000)),
        limit: 2000,
        include_suppressed: true,
        ..Default::default()
    })?;
    facts_among(state, a, &around, &state.read.hosts()?)
}

/// What an incident's derivations read from the store.
struct Parts {
    alerts: Vec<AlertRecord>,
    events: Vec<Event>,
    done: Vec<ExecutedCommand>,
    closed_ns: Option<u64>,
}

/// The incident's member alerts (from `around`), up to `max_events` of
/// their evidence events, the commands run on its hosts and when it closed.
fn parts(
    state: &ConsoleState,
    a: &AlertRecord,
    around: &[AlertRecord],
    max_events: usize,
) -> Result<Parts, UiError> {
    let mut alerts: Vec<AlertRecord> = around
        .iter()
        .filter(|r| r.incident_id == Some(a.id) && r.id != a.id)
        .cloned()
        .collect();
    alerts.push(a.clone());
    let mut events = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (host, seq) in alerts.iter().flat_map(|x| x.evidence.iter().copied()) {
        if events.len() >= max_events {
            break;
        }
        if seen.insert((host, seq)) {
            if let Ok(e) = state.read.event(host, seq) {
                events.push(e);
            }
        }
    }
    let commands = match &state.respond {
        Some(r) => {
            let mut all = Vec::new();
            for h in a.path.iter().copied() {
                all.extend(r.commands(Some(h), 200)?);
            }
            all
        }
        None => Vec::new(),
    };
    let closed_ns = match &a.state {
        TriageState::ClosedTruePositive | TriageState::ClosedFalsePositive => {
            state.store.triage(a.id)?.map(|t| t.updated_ns)
        }
        _ => None,
    };
    Ok(Parts {
        alerts,
        events,
        done: executed(&commands),
        closed_ns,
    })
}

impl Parts {
    fn view<'a>(&'a self, id: u64, hosts: &'a [HostSummary]) -> IncidentView<'a> {
        IncidentView {
            incident_id: id,
            alerts: &self.alerts,
            events: &self.events,
            hosts,
            known_accounts: None,
        }
    }
}

/// [`facts`] with the incident's member alerts taken from `around`.
fn facts_among(
    state: &ConsoleState,
    a: &AlertRecord,
    around: &[AlertRecord],
    hosts: &[HostSummary],
) -> Result<IncidentFacts, UiError> {
    let now = state.now();
    let p = parts(state, a, around, 2000)?;
    let view = p.view(a.id, hosts);
    let mut steps = remediation(&view);
    vigil_proto::incident::mark_done(&mut steps, &p.done, now);
    Ok(IncidentFacts {
        root: root_cause(&view),
        steps,
        times: IncidentTimes::derive(&view, &p.done, p.closed_ns, now),
    })
}

/// The root-cause, checklist and times panels.
pub fn panels(state: &ConsoleState, auth: &Authed, a: &AlertRecord) -> Result<AnyView, UiError> {
    let f = facts(state, a)?;
    let names = hostnames(state)?;
    let root = f.root.as_ref().map(|r| {
        let reached = r
            .reached
            .iter()
            .map(|h| view! {
                <li>{format!("{} at {}{}", name_of(&names, h.host), format_ts(h.first_ns),
                    h.user.as_ref().map(|u| format!(" as {u}")).unwrap_or_default())}</li>
            })
            .collect_view();
        view! {
            <section class="panel root-cause">
                <h2>"Root cause"</h2>
                <p class="lead">{r.summary.clone()}</p>
                <dl class="facts cols">
                    <dt>"First compromised"</dt><dd>{name_of(&names, r.first_host)}</dd>
                    <dt>"Account"</dt><dd>{r.first_account.clone().unwrap_or_else(|| "unknown".into())}</dd>
                    <dt>"Entry"</dt><dd>{format_ts(r.entry_ns)}</dd>
                    <dt>"Techniques"</dt><dd class="mono">{r.techniques.join(", ")}</dd>
                </dl>
                <h3>"Hosts reached, in order"</h3>
                <ol>{reached}</ol>
            </section>
        }
    });
    let can_act = auth.can(Role::Analyst) && state.respond.is_some();
    let steps = f
        .steps
        .iter()
        .map(|s| step_row(s, a.id, can_act, &names))
        .collect_view();
    let times = f.times.map(|t| {
        let mttr = |v: Option<u64>| v.map_or("not yet".to_owned(), duration);
        view! {
            <dl class="facts cols times">
                <dt>"MTTD"</dt><dd>{duration(t.mttd_ns())}</dd>
                <dt>"Time to contain"</dt><dd>{mttr(t.mttr_contain_ns())}</dd>
                <dt>"Time to close"</dt><dd>{mttr(t.mttr_close_ns())}</dd>
            </dl>
        }
    });
    Ok(view! {
        {root}
        <section class="panel checklist">
            <h2>"Remediation checklist"</h2>
            {times}
            <ol class="steps">{steps}</ol>
        </section>
    }
    .into_any())
}

fn step_row(
    s: &RemediationStep,
    incident: u64,
    can_act: bool,
    names: &std::collections::HashMap<HostId, String>,
) -> impl IntoView {
    let done = s.done.as_ref().map(|d| view! {
        <span class="badge cmd-done">{format!("done by {} at {} (command #{})", d.operator, format_ts(d.done_ns), d.command_id)}</span>
    });
    let act = match (&s.proposed, &s.done, can_act) {
        (Some((host, action)), None, true) => Some(view! {
            <a class="button" href=confirm_link(*host, action, Some(incident), Some(&s.id))>
                {format!("{} on {}", vigil_proto::query::response::action_name(action), name_of(names, *host))}
            </a>
        }),
        _ => None,
    };
    view! {
        <li class=if s.done.is_some() { "step done" } else { "step" }>
            <strong>{s.title.clone()}</strong>" "{done}" "{act}
            <p class="muted">{s.why.clone()}</p>
        </li>
    }
}

/// Most incidents the overview's MTTD / MTTR chart derives (newest first).
const TREND_INCIDENTS: usize = 100;
/// Evidence events read per incident for its MTTD on the overview.
const TREND_EVENTS: usize = 16;

/// The overview's chart: median MTTD, time to contain and time to close per
/// UTC day of the incidents among `alerts` (the overview's recent alerts).
pub fn response_times_panel(
    state: &ConsoleState,
    alerts: &[AlertRecord],
) -> Result<AnyView, UiError> {
    use crate::charts::{line_chart, Series, Unit, XAxis};
    // The registry is read once: at 10,000 hosts a read costs tens of ms.
    let hosts = state.read.hosts()?;
    let mut times = Vec::new();
    for a in alerts
        .iter()
        .filter(|a| a.path.len() > 1 && a.incident_id.is_none_or(|i| i == a.id))
        .take(TREND_INCIDENTS)
    {
        // Only the times: no checklist, and few evidence events (the
        // earliest of them dates the first malicious event).
        let p = parts(state, a, alerts, TREND_EVENTS)?;
        // Times need only the hosts on the path; the derivation indexes
        // what it is given, and the fleet can be 10,000 hosts.
        let on_path: Vec<HostSummary> = hosts
            .iter()
            .filter(|h| p.alerts.iter().any(|x| x.path.contains(&h.id)))
            .cloned()
            .collect();
        let now = state.now();
        if let Some(t) = IncidentTimes::derive(&p.view(a.id, &on_path), &p.done, p.closed_ns, now) {
            times.push(t);
        }
    }
    let days = vigil_proto::incident::daily_trend(&times);
    let body = if days.is_empty() {
        view! { <p class="muted">"No incidents in this window."</p> }.into_any()
    } else {
        let median = |f: fn(&vigil_proto::incident::TrendBucket) -> Option<u64>,
                      name: &str,
                      class: &str| Series {
            name: name.into(),
            class: class.into(),
            values: days.iter().map(|d| f(d).unwrap_or(0) as f64).collect(),
        };
        let series = [
            median(|d| d.mttd.map(|s| s.median_ns), "MTTD", "s-mttd"),
            median(
                |d| d.contain.map(|s| s.median_ns),
                "time to contain (0: not yet)",
                "s-contain",
            ),
            median(
                |d| d.close.map(|s| s.median_ns),
                "time to close (0: not yet)",
                "s-close",
            ),
        ];
        let x = XAxis {
            labels: days
                .iter()
                .map(|d| format_ts(d.day_start_ns)[5..10].to_string())
                .collect(),
            every: (days.len() / 7).max(1),
        };
        line_chart(&x, &series, Unit::DurationNs)
    };
    Ok(view! {
        <section class="panel">
            <h2>"MTTD and MTTR per day (median)"</h2>
            {body}
        </section>
    }
    .into_any())
}
