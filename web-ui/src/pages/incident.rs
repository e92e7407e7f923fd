//! Assisted remediation on an incident's page: the root cause, the
//! checklist (each step one click into the matching command's
//! confirmation) and the incident's MTTD / MTTR. The derivation is
//! `vigil_proto::incident`, shared with the CLI and evidence bundles.

use super::respond::confirm_link;
use super::*;
use crate::store::Role;
use crate::time::{duration, format_ts};
use vigil_proto::incident::{
    keys_owner, remediation, root_cause, ExecutedCommand, IncidentTimes, IncidentView,
    RemediationStep, StepTarget,
};
use vigil_proto::query::response::{CommandRecord, KeyLine};
use vigil_proto::query::{AlertFilter, HostSummary};
use vigil_proto::CommandAction;

/// Everything the incident page derives from the store.
pub struct IncidentFacts {
    pub root: Option<vigil_proto::incident::RootCause>,
    pub steps: Vec<RemediationStep>,
    pub times: Option<IncidentTimes>,
    /// Collected `authorized_keys` files of the incident's hosts, newest
    /// first, whose lines the key-removal steps offer to remove.
    pub keys: Vec<CollectedKeys>,
}

/// The key lines of one collected `authorized_keys` file.
pub struct CollectedKeys {
    pub host: HostId,
    /// The account the file belongs to.
    pub user: String,
    pub path: String,
    /// The collect command that brought it.
    pub command_id: u64,
    pub lines: Vec<KeyLine>,
}

/// The collected `authorized_keys` files among `commands`, newest first.
fn collected_keys(commands: &[CommandRecord]) -> Vec<CollectedKeys> {
    let mut out: Vec<CollectedKeys> = commands
        .iter()
        .filter_map(|c| {
            let CommandAction::CollectFile { path, .. } = &c.command.action else {
                return None;
            };
            let r = c.result.as_ref().filter(|r| !r.key_lines.is_empty())?;
            Some(CollectedKeys {
                host: c.host(),
                user: keys_owner(path)?,
                path: path.clone(),
                command_id: c.id(),
                lines: r.key_lines.clone(),
            })
        })
        .collect();
    out.sort_by_key(|k| std::cmp::Reverse(k.command_id));
    out
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
    keys: Vec<CollectedKeys>,
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
        keys: collected_keys(&commands),
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
        keys: p.keys,
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
        .map(|s| step_row(s, a.id, can_act, &names, &f))
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
    f: &IncidentFacts,
) -> impl IntoView {
    let keys = (can_act && s.done.is_none())
        .then(|| key_choices(s, incident, f))
        .flatten();
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
            {keys}
        </li>
    }
}

/// For a key-removal step: each line of the newest collected copy of the
/// account's `authorized_keys` on that host, one click from removing it;
/// without a copy, the collection that brings one (unless another step
/// of the checklist already offers it).
fn key_choices(s: &RemediationStep, incident: u64, f: &IncidentFacts) -> Option<AnyView> {
    let StepTarget::RemoveKey { host, user } = &s.target else {
        return None;
    };
    let Some(copy) = f.keys.iter().find(|k| k.host == *host && k.user == *user) else {
        let offered = f.steps.iter().any(|o| {
            matches!(&o.target, StepTarget::CollectFile { host: h, path }
                if h == host && keys_owner(path).as_deref() == Some(user.as_str()))
        });
        if offered {
            return Some(view! { <p class="muted">"Collect the file (step above) to choose the line to remove."</p> }.into_any());
        }
        let home = if user == "root" {
            "/root".to_owned()
        } else {
            format!("/home/{user}")
        };
        let action = CommandAction::CollectFile {
            path: format!("{home}/.ssh/authorized_keys"),
            max_bytes: 1024 * 1024,
        };
        return Some(
            view! {
                <p class="muted">"Collect the file to choose the line to remove: "
                    <a class="button" href=confirm_link(*host, &action, Some(incident), None)>
                        {format!("collect {home}/.ssh/authorized_keys")}
                    </a>
                </p>
            }
            .into_any(),
        );
    };
    let rows = copy
        .lines
        .iter()
        .map(|k| {
            let sha: [u8; 32] = hex::decode(&k.line_sha256)
                .ok()
                .and_then(|b| b.try_into().ok())
                .unwrap_or_default();
            let action = CommandAction::RemoveAuthorizedKey { user: user.clone(), line_sha256: sha };
            view! {
                <tr>
                    <td class="num">{k.number}</td>
                    <td class="mono">{k.key_type.clone()}</td>
                    <td class="mono">{k.fingerprint.clone()}</td>
                    <td>{k.comment.clone()}{k.has_options.then_some(" (with options)")}</td>
                    <td><a class="button" href=confirm_link(*host, &action, Some(incident), Some(&s.id))>"remove"</a></td>
                </tr>
            }
        })
        .collect_view();
    Some(view! {
        <table class="key-lines">
            <caption>{format!("{} as collected by command #{} — match the fingerprint with sshd's “Accepted publickey” log line", copy.path, copy.command_id)}</caption>
            <thead><tr><th>"line"</th><th>"type"</th><th>"fingerprint"</th><th>"comment"</th><th></th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }.into_any())
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
    hosts: &[HostSummary],
) -> Result<AnyView, UiError> {
    // `hosts` is the caller's registry read: at 10,000 hosts a read costs
    // tens of ms, and the overview has already paid for one.
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
        response_times_chart(&days, state.now())
    };
    Ok(view! {
        <section class="panel">
            <h2>"MTTD and MTTR per day (median)"</h2>
            {body}
        </section>
    }
    .into_any())
}

/// The most days the MTTD/MTTR chart spans (ending at its last day).
const TREND_MAX_DAYS: u64 = 60;

/// One point per UTC day from the first incident's day to today: a day
/// without an incident is a gap titled "no incident" (never a 0), and a
/// day whose incidents are not yet contained or closed is a gap titled
/// "not yet" in that series.
fn response_times_chart(days: &[vigil_proto::incident::TrendBucket], now_ns: u64) -> AnyView {
    use crate::charts::{gapped_line_chart, GappedSeries, Point, Unit, XAxis};
    const DAY: u64 = 86_400 * 1_000_000_000;
    let last = days
        .last()
        .map_or(0, |d| d.day_start_ns / DAY)
        .max(now_ns / DAY);
    let first = days
        .first()
        .map_or(last, |d| d.day_start_ns / DAY)
        .max(last.saturating_sub(TREND_MAX_DAYS - 1));
    let by_day: std::collections::HashMap<u64, &vigil_proto::incident::TrendBucket> =
        days.iter().map(|d| (d.day_start_ns / DAY, d)).collect();
    let series =
        |name: &str, class: &str, f: fn(&vigil_proto::incident::TrendBucket) -> Option<u64>| {
            GappedSeries {
                name: name.into(),
                class: class.into(),
                points: (first..=last)
                    .map(|day| match by_day.get(&day) {
                        None => Point::Gap("no incident".into()),
                        Some(d) => {
                            f(d).map_or(Point::Gap("not yet".into()), |v| Point::Value(v as f64))
                        }
                    })
                    .collect(),
            }
        };
    let series = [
        series("MTTD", "s-mttd", |d| d.mttd.map(|s| s.median_ns)),
        series("time to contain", "s-contain", |d| {
            d.contain.map(|s| s.median_ns)
        }),
        series("time to close", "s-close", |d| d.close.map(|s| s.median_ns)),
    ];
    let n = (last - first + 1) as usize;
    let x = XAxis {
        labels: (first..=last)
            .map(|day| format_ts(day * DAY)[5..10].to_string())
            .collect(),
        every: (n / 7).max(1),
    };
    gapped_line_chart(&x, &series, Unit::DurationNs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::query::response::{CommandStatus, StoredResult};
    use vigil_proto::{Command, CommandState, Receipt};

    fn key(number: u32, comment: &str) -> KeyLine {
        KeyLine {
            number,
            line_sha256: format!("{number:02x}").repeat(32),
            key_type: "ssh-ed25519".into(),
            fingerprint: format!("SHA256:fp{number}"),
            comment: comment.into(),
            has_options: false,
        }
    }

    fn collect(id: u64, host: HostId, path: &str, lines: Vec<KeyLine>) -> CommandRecord {
        CommandRecord {
            command: Command {
                id,
                host,
                operator: "ana".into(),
                reason: "r".into(),
                created_ns: 1,
                expires_ns: 2,
                action: CommandAction::CollectFile {
                    path: path.into(),
                    max_bytes: 10,
                },
                signature: Vec::new(),
            },
            status: CommandStatus::Done,
            history: Vec::new(),
            result: Some(StoredResult {
                state: CommandState::Done,
                message: String::new(),
                receipt: Receipt::None,
                data_len: 0,
                data_sha256: String::new(),
                received_ns: 3,
                key_lines: lines,
            }),
            incident: None,
            step: None,
            approved_by: None,
        }
    }

    fn remove_step(host: HostId, user: &str) -> RemediationStep {
        RemediationStep {
            id: format!("remove-key:{host}:{user}"),
            target: StepTarget::RemoveKey {
                host,
                user: user.into(),
            },
            title: "Remove".into(),
            why: String::new(),
            evidence: Vec::new(),
            proposed: None,
            done: None,
        }
    }

    #[test]
    fn a_key_step_offers_each_line_of_the_newest_collected_copy() {
        let h = HostId(7);
        let commands = vec![
            collect(1, h, "/home/svc/.ssh/authorized_keys", vec![key(1, "old")]),
            collect(
                2,
                h,
                "/home/svc/.ssh/authorized_keys",
                vec![key(1, "a@x"), key(2, "evil@y")],
            ),
            collect(3, h, "/etc/passwd", Vec::new()),
            collect(
                4,
                HostId(8),
                "/home/svc/.ssh/authorized_keys",
                vec![key(9, "other host")],
            ),
        ];
        let f = IncidentFacts {
            root: None,
            steps: vec![remove_step(h, "svc")],
            times: None,
            keys: collected_keys(&commands),
        };
        let html = key_choices(&f.steps[0], 42, &f).unwrap().to_html();
        assert!(
            html.contains("command #2") && html.contains("evil@y"),
            "{html}"
        );
        assert!(
            !html.contains("old") && !html.contains("other host"),
            "{html}"
        );
        // Each line is one click from its removal, by the listed hash.
        let want = format!("line_sha256={}", "02".repeat(32));
        assert!(
            html.contains(&want) && html.contains("incident=42"),
            "{html}"
        );
        assert_eq!(html.matches(">remove<").count(), 2);
    }

    #[test]
    fn without_a_copy_the_step_offers_the_collection() {
        let f = IncidentFacts {
            root: None,
            steps: vec![remove_step(HostId(7), "svc")],
            times: None,
            keys: Vec::new(),
        };
        let html = key_choices(&f.steps[0], 1, &f).unwrap().to_html();
        assert!(html.contains("action=collect"), "{html}");
        assert!(
            html.contains("%2Fhome%2Fsvc%2F.ssh%2Fauthorized_keys"),
            "{html}"
        );
        assert!(key_choices(&remove_step(HostId(7), "svc"), 1, &f).is_some());
    }

    #[test]
    fn response_chart_leaves_quiet_days_empty() {
        use vigil_proto::incident::{DurationStats, TrendBucket};
        const DAY: u64 = 86_400 * 1_000_000_000;
        let stats = |s: u64| {
            Some(DurationStats {
                count: 1,
                median_ns: s * 1_000_000_000,
                p90_ns: s * 1_000_000_000,
            })
        };
        let bucket = |day: u64, close| TrendBucket {
            day_start_ns: day * DAY,
            incidents: 1,
            mttd: stats(4),
            contain: None,
            close,
        };
        // Incidents on days 20,000 and 20,003; "now" is day 20,004.
        let days = [bucket(20_000, stats(60)), bucket(20_003, None)];
        let html = response_times_chart(&days, 20_004 * DAY + 5).to_html();
        assert_eq!(html.matches("<circle").count(), 3, "{html}");
        assert_eq!(html.matches("class=\"gapband\"").count(), 5, "{html}");
        assert_eq!(html.matches(": no incident</title>").count(), 3, "{html}");
        assert!(html.contains("time to contain: not yet"), "{html}");
        assert!(
            !html.contains("<polyline"),
            "no line across a quiet day: {html}"
        );
    }
}
