//! Assisted remediation (issue #16), derived once for the console, the CLI
//! and the evidence bundle: an incident's root cause, its remediation
//! checklist, and its MTTD/MTTR times.
//!
//! Everything here is a pure function of what the caller hands in (an
//! [`IncidentView`]: the incident's alerts, the events behind them, the
//! host registry; the executed commands; `now`): no I/O, no clock. Inputs
//! are read in a canonical order, so the same incident gives the same
//! output whatever order its alerts, events or commands arrive in.
//!
//! - [`root_cause`]: first compromised host and account, entry time and the
//!   event that shows it, hosts reached in order, techniques, a summary.
//! - [`remediation`]: the checklist ([`RemediationStep`]), containment
//!   first, each step with the signed command one click would send;
//!   [`mark_done`] says which steps a done command already carried out.
//! - [`IncidentTimes`]: MTTD and MTTR per incident, and [`daily_trend`]
//!   for the overview's chart.
//!
//! The output types are stored as JSON in evidence bundles: field names are
//! stable, only add fields.

use crate::command::{Command, CommandAction, CommandResult, CommandState};
use crate::event::{Event, HostId, LoginInfo, Payload};
use crate::query::{AlertRecord, HostSummary};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

mod steps;
mod times;

pub use steps::{keys_owner, mark_done, remediation, RemediationStep, StepDone, StepTarget};
pub use times::{daily_trend, DurationStats, IncidentTimes, TrendBucket, DAY_NS};

/// What an incident is made of, borrowed from the caller's store.
#[derive(Debug, Clone, Copy)]
pub struct IncidentView<'a> {
    /// The incident's id (carried into the output, never used to filter).
    pub incident_id: u64,
    /// Every alert of the incident (those sharing its `incident_id`).
    pub alerts: &'a [AlertRecord],
    /// The events behind the alerts' evidence, plus, optionally, other
    /// events of the reached hosts during the incident (they let the
    /// checklist see a process exit, an account created, a key planted).
    /// `(host, seq)` is unique, as in the store.
    pub events: &'a [Event],
    /// The host registry (names, addresses, isolation).
    pub hosts: &'a [HostSummary],
    /// Accounts known on each host before the incident, when the caller has
    /// them; a logon by any other account is then a new account to disable.
    /// `None`: unknown, only accounts created during the incident are.
    pub known_accounts: Option<&'a [(HostId, String)]>,
}

/// One event, by host and sequence number (how the store names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventRef {
    /// The host the event happened on.
    pub host: HostId,
    /// Its sequence number on that host.
    pub seq: u64,
}

impl EventRef {
    /// The reference of an event.
    pub fn of(e: &Event) -> Self {
        EventRef {
            host: e.header.host,
            seq: e.header.seq,
        }
    }
}

impl std::fmt::Display for EventRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.seq)
    }
}

/// A command the appliance sent for the incident, as it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutedCommand {
    /// The command's id.
    pub id: u64,
    /// The host it ran on.
    pub host: HostId,
    /// What it did.
    pub action: CommandAction,
    /// Who issued it.
    pub operator: String,
    /// How it ended; only [`CommandState::Done`] counts.
    pub state: CommandState,
    /// When the appliance recorded its outcome, ns since the Unix epoch.
    pub finished_ns: u64,
}

impl ExecutedCommand {
    /// A command and the result its sensor answered, recorded at `finished_ns`.
    pub fn new(command: &Command, result: &CommandResult, finished_ns: u64) -> Self {
        ExecutedCommand {
            id: command.id,
            host: command.host,
            action: command.action.clone(),
            operator: command.operator.clone(),
            state: result.state,
            finished_ns,
        }
    }

    /// Whether it was carried out.
    pub fn is_done(&self) -> bool {
        self.state == CommandState::Done
    }
}

/// Why an incident happened, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootCause {
    /// The incident.
    pub incident_id: u64,
    /// Where the movement started: the first host of the incident's path.
    pub origin: HostId,
    /// Whether the origin is an enrolled host (else an unmanaged peer).
    pub origin_in_fleet: bool,
    /// Source address of the first logon into the first reached host, if
    /// the evidence has one.
    pub origin_addr: Option<IpAddr>,
    /// The first fleet host the attacker held: the origin when it is in the
    /// fleet, else the first host reached from outside.
    pub first_host: HostId,
    /// The account the attacker used first (the first move's account).
    pub first_account: Option<String>,
    /// When the attacker is first seen on `first_host`, ns since the epoch
    /// (the first alert's time when no event shows it).
    pub entry_ns: u64,
    /// The event that shows the entry, if the caller had it.
    pub entry_event: Option<EventRef>,
    /// Hosts reached after the origin, in the order they were reached.
    pub reached: Vec<ReachedHost>,
    /// ATT&CK technique ids, each once, in order of first use.
    pub techniques: Vec<String>,
    /// The paragraph an analyst reads.
    pub summary: String,
}

/// One host the attacker reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachedHost {
    /// The host.
    pub host: HostId,
    /// Where it was reached from (the hop's source), if known.
    pub from: Option<HostId>,
    /// When it was first reached, ns since the epoch.
    pub first_ns: u64,
    /// The account that reached it, if known.
    pub user: Option<String>,
    /// Techniques of the move into it, sorted.
    pub techniques: Vec<String>,
    /// The first event on (or into) it, if the caller had it.
    pub event: Option<EventRef>,
}

/// The root cause of an incident; `None` when it has no alert.
pub fn root_cause(view: &IncidentView<'_>) -> Option<RootCause> {
    let facts = Facts::new(view);
    facts.root_cause()
}

/// The incident's inputs in canonical order, indexed for the derivations.
pub(crate) struct Facts<'a> {
    pub(crate) view: IncidentView<'a>,
    /// Alerts by (created, id, path, title).
    pub(crate) alerts: Vec<&'a AlertRecord>,
    /// Every given event by (host, seq).
    pub(crate) events: BTreeMap<(HostId, u64), &'a Event>,
    /// Events named by some alert's evidence, by (ts, host, seq).
    pub(crate) evidence: Vec<&'a Event>,
    /// Every host of every alert's path, the longest path first.
    pub(crate) path: Vec<HostId>,
    /// Registry by id.
    pub(crate) hosts: BTreeMap<HostId, &'a HostSummary>,
    /// Fleet addresses and the host that owns each (the lowest id on a clash).
    pub(crate) owners: BTreeMap<IpAddr, HostId>,
}

/// The order events are read in: time, then host, then seq.
pub(crate) fn event_key(e: &Event) -> (u64, HostId, u64) {
    (e.header.ts_ns, e.header.host, e.header.seq)
}

impl<'a> Facts<'a> {
    pub(crate) fn new(view: &IncidentView<'a>) -> Self {
        let mut alerts: Vec<&AlertRecord> = view.alerts.iter().collect();
        alerts.sort_by(|a, b| {
            (a.created_ns, a.id, &a.path, &a.title).cmp(&(b.created_ns, b.id, &b.path, &b.title))
        });
        let mut events = BTreeMap::new();
        for e in view.events {
            let slot = events.entry((e.header.host, e.header.seq)).or_insert(e);
            if e.header.ts_ns < slot.header.ts_ns {
                *slot = e;
            }
        }
        let wanted: BTreeSet<(HostId, u64)> = alerts
            .iter()
            .flat_map(|a| a.evidence.iter().copied())
            .collect();
        let mut evidence: Vec<&Event> = wanted
            .iter()
            .filter_map(|k| events.get(k).copied())
            .collect();
        evidence.sort_by_key(|e| event_key(e));
        let mut by_length = alerts.clone();
        by_length.sort_by_key(|a| std::cmp::Reverse(a.path.len()));
        let mut path = Vec::new();
        for a in by_length {
            for h in &a.path {
                if !path.contains(h) {
                    path.push(*h);
                }
            }
        }
        let mut hosts = BTreeMap::new();
        let mut owners = BTreeMap::new();
        for h in view.hosts {
            hosts.entry(h.id).or_insert(h);
            if h.id.is_unmanaged() {
                continue;
            }
            for a in &h.addrs {
                let o = owners.entry(*a).or_insert(h.id);
                *o = (*o).min(h.id);
            }
        }
        Facts {
            view: *view,
            alerts,
            events,
            evidence,
            path,
            hosts,
            owners,
        }
    }

    /// The host's registered name, else its id.
    pub(crate) fn name(&self, host: HostId) -> String {
        match self.hosts.get(&host) {
            Some(h) if !h.hostname.is_empty() => h.hostname.clone(),
            _ => host.to_string(),
        }
    }

    /// Whether `addr` is outside the fleet and could be an attacker's
    /// (not a fleet address, loopback, unspecified or multicast).
    pub(crate) fn is_outside(&self, addr: IpAddr) -> bool {
        !(self.owners.contains_key(&addr)
            || addr.is_loopback()
            || addr.is_unspecified()
            || addr.is_multicast())
    }

    /// The earliest alert time; `None` without alerts.
    pub(crate) fn first_alert_ns(&self) -> Option<u64> {
        self.alerts.iter().map(|a| a.created_ns).min()
    }

    /// Hop alerts (path of two) into `host`, earliest first.
    fn hops_into(&self, host: HostId) -> impl Iterator<Item = &&'a AlertRecord> {
        self.alerts
            .iter()
            .filter(move |a| a.path.len() == 2 && a.path[1] == host)
    }

    /// The first evidence event that shows the attacker on `host`: one of
    /// its own (but a failed logon, which reached nothing), or a connection
    /// into one of its addresses.
    fn arrival(&self, host: HostId) -> Option<&'a Event> {
        self.evidence.iter().copied().find(|e| match &e.payload {
            Payload::AuthFailure(_) => false,
            Payload::NetConnect(f) if self.owners.get(&f.remote.ip()) == Some(&host) => true,
            _ => e.header.host == host,
        })
    }

    /// The first logon into `host` in the evidence.
    fn first_login(&self, host: HostId) -> Option<&'a LoginInfo> {
        self.evidence.iter().find_map(|e| match &e.payload {
            Payload::Login(l) if e.header.host == host => Some(l),
            _ => None,
        })
    }

    /// How `host` (at `pos` on the path) was reached.
    fn reached_host(&self, pos: usize) -> ReachedHost {
        let host = self.path[pos];
        let arrival = self.arrival(host);
        let hop = self.hops_into(host).next();
        let first_ns = arrival
            .map(|e| e.header.ts_ns)
            .or(hop.map(|a| a.created_ns))
            .or_else(|| {
                let on_path = |a: &&&AlertRecord| a.path.iter().skip(1).any(|h| *h == host);
                self.alerts
                    .iter()
                    .filter(on_path)
                    .map(|a| a.created_ns)
                    .min()
            })
            .unwrap_or(0);
        let login = self.first_login(host);
        let from = hop
            .map(|a| a.path[0])
            .or_else(|| {
                let addr = login?.src_addr?;
                self.owners.get(&addr).copied()
            })
            .or(Some(self.path[pos - 1]));
        let user = login
            .map(|l| l.user.clone())
            .or_else(|| hop.and_then(|a| a.users.first().cloned()));
        let techniques: BTreeSet<&String> = self
            .hops_into(host)
            .flat_map(|a| a.techniques.iter())
            .collect();
        ReachedHost {
            host,
            from,
            first_ns,
            user,
            techniques: techniques.into_iter().cloned().collect(),
            event: arrival.map(EventRef::of),
        }
    }

    /// Hosts after the origin, in the order they were reached (path order
    /// breaks ties).
    pub(crate) fn reached(&self) -> Vec<ReachedHost> {
        let mut out: Vec<(usize, ReachedHost)> = (1..self.path.len())
            .map(|i| (i, self.reached_host(i)))
            .collect();
        out.sort_by_key(|(i, r)| (r.first_ns, *i));
        out.into_iter().map(|(_, r)| r).collect()
    }

    /// Techniques in order of first use: the time of the earliest alert or
    /// reached host that names each.
    fn techniques(&self, reached: &[ReachedHost]) -> Vec<String> {
        let mut first: BTreeMap<&str, u64> = BTreeMap::new();
        let uses = self
            .alerts
            .iter()
            .flat_map(|a| a.techniques.iter().map(move |t| (t, a.created_ns)))
            .chain(
                reached
                    .iter()
                    .flat_map(|r| r.techniques.iter().map(move |t| (t, r.first_ns))),
            );
        for (t, ns) in uses {
            let slot = first.entry(t.as_str()).or_insert(ns);
            *slot = (*slot).min(ns);
        }
        let mut out: Vec<(u64, &str)> = first.into_iter().map(|(t, ns)| (ns, t)).collect();
        out.sort();
        out.into_iter().map(|(_, t)| t.to_string()).collect()
    }

    pub(crate) fn root_cause(&self) -> Option<RootCause> {
        let first_alert = self.first_alert_ns()?;
        let origin = *self.path.first()?;
        let origin_in_fleet = !origin.is_unmanaged();
        let reached = self.reached();
        let first_host = match reached.first() {
            Some(r) if !origin_in_fleet => r.host,
            _ => origin,
        };
        let entry = if origin_in_fleet {
            self.evidence
                .iter()
                .copied()
                .find(|e| e.header.host == origin)
        } else {
            self.arrival(first_host)
        }
        .or(self.evidence.first().copied());
        let entry_user = entry.and_then(|e| event_user(e).map(str::to_string));
        let first_account = reached
            .first()
            .and_then(|r| r.user.clone())
            .or(entry_user)
            .or_else(|| self.alerts.iter().find_map(|a| a.users.first().cloned()));
        let origin_addr = reached
            .first()
            .and_then(|r| self.first_login(r.host)?.src_addr);
        let mut rc = RootCause {
            incident_id: self.view.incident_id,
            origin,
            origin_in_fleet,
            origin_addr,
            first_host,
            first_account,
            entry_ns: entry.map_or(first_alert, |e| e.header.ts_ns),
            entry_event: entry.map(EventRef::of),
            techniques: self.techniques(&reached),
            reached,
            summary: String::new(),
        };
        rc.summary = self.summary(&rc);
        Some(rc)
    }

    /// One plain-English paragraph: entry, hosts reached, techniques.
    fn summary(&self, rc: &RootCause) -> String {
        let account = rc
            .first_account
            .as_deref()
            .map(|u| format!(" as {u}"))
            .unwrap_or_default();
        let event = rc
            .entry_event
            .map(|e| format!(" (event {e})"))
            .unwrap_or_default();
        let mut s = if rc.origin_in_fleet {
            format!(
                "The incident starts on {} at {}{account}{event}.",
                self.name(rc.origin),
                fmt_utc(rc.entry_ns)
            )
        } else {
            let from = rc
                .origin_addr
                .map_or_else(|| self.name(rc.origin), |a| a.to_string());
            format!(
                "The attacker came from {from}, outside the fleet, and entered {} at {}{account}{event}.",
                self.name(rc.first_host),
                fmt_utc(rc.entry_ns)
            )
        };
        let later: Vec<String> = rc
            .reached
            .iter()
            .filter(|r| r.host != rc.first_host)
            .map(|r| self.reached_phrase(r))
            .collect();
        if later.is_empty() {
            s.push_str(" It reached no other host.");
        } else {
            s.push_str(&format!(" It then reached {}.", later.join(", then ")));
        }
        if !rc.techniques.is_empty() {
            s.push_str(&format!(
                " Techniques, in order of first use: {}.",
                rc.techniques.join(", ")
            ));
        }
        s
    }

    fn reached_phrase(&self, r: &ReachedHost) -> String {
        let mut details = vec![fmt_utc(r.first_ns)];
        if let Some(u) = &r.user {
            details.push(format!("as {u}"));
        }
        if let Some(f) = r.from {
            details.push(format!("from {}", self.name(f)));
        }
        if !r.techniques.is_empty() {
            details.push(r.techniques.join("+"));
        }
        format!("{} ({})", self.name(r.host), details.join(", "))
    }
}

/// The account an event names: a logon's target, a process's user.
pub(crate) fn event_user(e: &Event) -> Option<&str> {
    match &e.payload {
        Payload::Login(l) | Payload::Logout(l) | Payload::AuthFailure(l) => Some(&l.user),
        Payload::ProcessStart(p) => p.user.as_deref(),
        _ => None,
    }
}

/// `2024-05-01 10:02:03 UTC` for ns since the Unix epoch (proleptic
/// Gregorian calendar, days-from-civil inverted).
pub fn fmt_utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (days, sod) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        sod / 3_600,
        sod % 3_600 / 60,
        sod % 60
    )
}
