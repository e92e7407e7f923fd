//! Fleet-level logon memory the graph does not hold, and the signals read
//! from it: which src → dst edges ever carried a *successful* logon (so a
//! connection cannot whiten the first logon over an edge), at which hours of
//! the day, which sources reached many new hosts in a short time (fan-out),
//! and failed logons grouped by source and by user (password spray).
//!
//! Failures never teach the graph: a spray must not make the logon that
//! follows it look routine. Every signal carries a sentence for the alert.

use super::{Detector, NS_PER_HOUR};
use crate::alert::{Alert, AlertKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, VecDeque};
use vigil_proto::query::{FeatureDeviation, Severity};
use vigil_proto::HostId;

/// Most nats added to the first successful logon over a src → dst edge;
/// less when the destination meets new logon sources all the time (a server
/// that just went live, a jump host), see [`LogonMemory::new_source_nats`].
pub(super) const NEW_LOGON_EDGE: f64 = 3.0;
/// Nats added when an edge that carried logons sees a new user on it.
pub(super) const NEW_USER_ON_EDGE: f64 = 1.5;
/// Nats added to a known edge used at an hour of the day it never was.
const UNUSUAL_HOUR: f64 = 1.5;
/// An edge needs this many logons before its hours mean anything.
const HOUR_PROFILE_MIN: u32 = 10;
/// Span over which new destinations of one source count as a fan-out.
const FANOUT_WINDOW_NS: u64 = NS_PER_HOUR;
/// New destinations within the span from which fan-out is a signal.
const FANOUT_MIN: usize = 3;
/// Span over which failed logons group into a spray.
const SPRAY_WINDOW_NS: u64 = NS_PER_HOUR;
/// Distinct (destination, user) failures of one source that make a spray…
const SPRAY_MIN_TARGETS: usize = 5;
/// …spanning at least this many users or hosts.
const SPRAY_MIN_SPREAD: usize = 3;
/// Distinct sources failing for one user that make a spray by user.
const USER_SPRAY_MIN_SOURCES: usize = 3;
/// Nats added to a successful logon from a source that just sprayed.
pub(super) const AFTER_SPRAY: f64 = 6.0;
/// Most edges remembered (bounds memory on a huge fleet).
const MAX_EDGES: usize = 200_000;
/// Most recent failures / new edges remembered.
const MAX_RECENT: usize = 4096;

/// How one src → dst edge has been used by successful logons.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(super) struct EdgeUse {
    /// Successful logons over the edge.
    pub(super) logons: u32,
    /// Bit `h` set when a logon happened at hour `h` (UTC) of a day.
    pub(super) hours: u32,
}

/// One failed logon kept for spray detection.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Failure {
    src: HostId,
    dst: HostId,
    user: String,
    ts: u64,
    ev_id: (HostId, u64),
}

/// A spray already alerted (by source, or by user), kept for dedupe and
/// for boosting the success that follows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Spray {
    src: Option<HostId>,
    user: Option<String>,
    ts: u64,
    targets: usize,
    hosts: usize,
    users: usize,
}

/// Logon memory of the fleet (part of the snapshot).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct LogonMemory {
    edges: HashMap<(HostId, HostId), EdgeUse>,
    /// Per destination: (successful remote logons, distinct sources).
    dsts: HashMap<HostId, (u32, u32)>,
    new_edges: VecDeque<(HostId, HostId, u64)>,
    failures: VecDeque<Failure>,
    sprays: VecDeque<Spray>,
}

/// One scoring signal of a hop: feature name, sentence, nats.
pub(super) type Signal = (String, String, f64);

impl LogonMemory {
    /// How the edge was used so far (default: never).
    pub(super) fn edge(&self, src: HostId, dst: HostId) -> EdgeUse {
        self.edges.get(&(src, dst)).copied().unwrap_or_default()
    }

    /// Surprise (nats) of a logon into `dst` from a source that never
    /// logged on there: `-ln P(new)` with `P(new) = (d + 1) / (n + 1 + m)`
    /// over its `n` logons from `d` sources (the graph's smoothed rarity,
    /// counted on successful logons only so connections cannot whiten it),
    /// kept between [`NEW_USER_ON_EDGE`] (a new source is never less
    /// surprising than a new user on a known edge) and [`NEW_LOGON_EDGE`]. A
    /// host with no logon history costs the full cap; a server that met a
    /// new source at most of its logons since it went live costs the floor.
    pub(super) fn new_source_nats(&self, dst: HostId, prior_mass: f64) -> f64 {
        let (n, d) = self.dsts.get(&dst).copied().unwrap_or_default();
        let p = (f64::from(d) + 1.0) / (f64::from(n) + 1.0 + prior_mass);
        (-p.min(1.0).ln()).clamp(NEW_USER_ON_EDGE, NEW_LOGON_EDGE)
    }

    /// Counts a successful logon over an edge; remembers new edges for
    /// fan-out.
    pub(super) fn learn(&mut self, src: HostId, dst: HostId, ts: u64) {
        let new = !self.edges.contains_key(&(src, dst));
        if new {
            if self.edges.len() >= MAX_EDGES {
                return;
            }
            if self.new_edges.len() >= MAX_RECENT {
                self.new_edges.pop_front();
            }
            self.new_edges.push_back((src, dst, ts));
        }
        let per_dst = self.dsts.entry(dst).or_default();
        per_dst.0 = per_dst.0.saturating_add(1);
        per_dst.1 = per_dst.1.saturating_add(u32::from(new));
        let e = self.edges.entry((src, dst)).or_default();
        e.logons = e.logons.saturating_add(1);
        e.hours |= 1 << hour_of_day(ts);
    }

    /// New destinations `src` reached within the fan-out span before `ts`
    /// (oldest first time) — `dst` included when it is new too.
    fn fanout(&self, src: HostId, dst: HostId, ts: u64) -> (BTreeSet<HostId>, u64) {
        let from = ts.saturating_sub(FANOUT_WINDOW_NS);
        let mut dsts = BTreeSet::from([dst]);
        let mut first = ts;
        for (s, d, t) in self.new_edges.iter().rev() {
            if *t < from {
                break;
            }
            if *s == src && *t <= ts {
                dsts.insert(*d);
                first = first.min(*t);
            }
        }
        (dsts, first)
    }

    /// The spray by `src` alerted within the spray span before `ts`, if any.
    fn spray_by(&self, src: HostId, ts: u64) -> Option<&Spray> {
        let from = ts.saturating_sub(SPRAY_WINDOW_NS);
        self.sprays
            .iter()
            .rev()
            .find(|s| s.src == Some(src) && s.ts >= from && s.ts <= ts)
    }

    fn prune(&mut self, ts: u64) {
        let from = ts.saturating_sub(SPRAY_WINDOW_NS.max(FANOUT_WINDOW_NS));
        while self.failures.front().is_some_and(|f| f.ts < from) {
            self.failures.pop_front();
        }
        while self.new_edges.front().is_some_and(|e| e.2 < from) {
            self.new_edges.pop_front();
        }
        while self.sprays.front().is_some_and(|s| s.ts < from) {
            self.sprays.pop_front();
        }
    }
}

/// Hour of the day (UTC) of a time.
fn hour_of_day(ts: u64) -> u32 {
    ((ts / NS_PER_HOUR) % 24) as u32
}

impl Detector {
    /// The signals of a remote logon beyond the graph's rarities: a first
    /// logon over the edge or a new user on it, fan-out of the source, a
    /// success right after a spray, an unusual hour on a known edge.
    pub(super) fn logon_signals(
        &self,
        src: HostId,
        dst: HostId,
        new_triple: bool,
        failure: bool,
        ts: u64,
    ) -> Vec<Signal> {
        let (s, d) = (self.registry.name(src), self.registry.name(dst));
        let edge = self.logons.edge(src, dst);
        let sig = self.cfg.signals;
        let mut out = Vec::new();
        if edge.logons == 0 {
            if sig.edge {
                let nats = self.logons.new_source_nats(dst, self.cfg.prior_mass);
                out.push((
                    "new_logon_edge".into(),
                    format!("no one had ever logged on to {d} from {s} before"),
                    nats,
                ));
            }
            let (dsts, first) = self.logons.fanout(src, dst, ts);
            if sig.fanout && dsts.len() >= FANOUT_MIN {
                let k = dsts.len();
                out.push((
                    "fan_out".into(),
                    format!(
                        "{s} reached {k} new hosts in {} min",
                        (ts - first).div_ceil(60_000_000_000).max(1)
                    ),
                    2.0 * ((k - 1) as f64).ln(),
                ));
            }
        } else if new_triple {
            if sig.edge {
                out.push((
                    "new_user_on_edge".into(),
                    format!(
                        "{s} → {d} carried {} logons before, never by this user",
                        edge.logons
                    ),
                    NEW_USER_ON_EDGE,
                ));
            }
        } else if sig.hour
            && edge.logons >= HOUR_PROFILE_MIN
            && edge.hours & (1 << hour_of_day(ts)) == 0
        {
            out.push((
                "unusual_hour".into(),
                format!(
                    "{s} → {d} was used {} times before, never at {:02}:00 UTC",
                    edge.logons,
                    hour_of_day(ts)
                ),
                UNUSUAL_HOUR,
            ));
        }
        if let Some(sp) = self.logons.spray_by(src, ts).filter(|_| sig.spray) {
            let what = if failure { "failed logon" } else { "logon" };
            out.push((
                "after_spray".into(),
                format!(
                    "a {what} from {s} right after it failed against {} accounts on {} hosts",
                    sp.targets, sp.hosts
                ),
                AFTER_SPRAY,
            ));
        }
        out
    }

    /// Remembers a failed logon and raises a password-spray alert (T1110.003)
    /// when one source failed against many accounts or hosts, or one user
    /// failed from many sources, within the spray span. `src` is `None` for
    /// a local failure (no remote source), which only counts by user.
    pub(super) fn note_failure(
        &mut self,
        src: Option<HostId>,
        dst: HostId,
        user: &str,
        ts: u64,
        ev_id: (HostId, u64),
    ) -> Vec<Alert> {
        self.logons.prune(ts);
        let Some(src) = src else {
            return Vec::new();
        };
        if self.logons.failures.len() >= MAX_RECENT {
            self.logons.failures.pop_front();
        }
        self.logons.failures.push_back(Failure {
            src,
            dst,
            user: user.to_string(),
            ts,
            ev_id,
        });
        // Only a fleet that is judging (some host past learning) alerts.
        let judging = self.hop_threshold(dst).is_some() || self.fleet_hop_threshold.is_some();
        if !judging || !self.cfg.signals.spray {
            return Vec::new();
        }
        let mut alerts = Vec::new();
        alerts.extend(self.spray_by_source(src, ts));
        alerts.extend(self.spray_by_user(user, ts));
        alerts
    }

    fn spray_by_source(&mut self, src: HostId, ts: u64) -> Option<Alert> {
        if self.logons.spray_by(src, ts).is_some() {
            return None;
        }
        let mine: Vec<&Failure> = self
            .logons
            .failures
            .iter()
            .filter(|f| f.src == src)
            .collect();
        let targets: BTreeSet<(HostId, &str)> =
            mine.iter().map(|f| (f.dst, f.user.as_str())).collect();
        let hosts: BTreeSet<HostId> = mine.iter().map(|f| f.dst).collect();
        let users: BTreeSet<&str> = mine.iter().map(|f| f.user.as_str()).collect();
        if targets.len() < SPRAY_MIN_TARGETS || hosts.len().max(users.len()) < SPRAY_MIN_SPREAD {
            return None;
        }
        let first = mine.first().map(|f| f.ts).unwrap_or(ts);
        let evidence: Vec<(HostId, u64)> = mine.iter().take(32).map(|f| f.ev_id).collect();
        let hosts: Vec<HostId> = hosts.into_iter().collect();
        let users: Vec<String> = users.into_iter().map(str::to_string).collect();
        let (n_targets, n_fail) = (targets.len(), mine.len());
        self.logons.sprays.push_back(Spray {
            src: Some(src),
            user: None,
            ts,
            targets: n_targets,
            hosts: hosts.len(),
            users: users.len(),
        });
        let name = self.registry.name(src);
        let sentence = format!(
            "{name} failed {n_fail} logons against {} accounts on {} hosts in {} min ({})",
            users.len(),
            hosts.len(),
            (ts - first).div_ceil(60_000_000_000).max(1),
            users.join(", ")
        );
        Some(self.spray_alert(src, hosts, users, n_targets, sentence, evidence, ts))
    }

    fn spray_by_user(&mut self, user: &str, ts: u64) -> Option<Alert> {
        let from = ts.saturating_sub(SPRAY_WINDOW_NS);
        if self
            .logons
            .sprays
            .iter()
            .any(|s| s.user.as_deref() == Some(user) && s.ts >= from)
        {
            return None;
        }
        let mine: Vec<&Failure> = self
            .logons
            .failures
            .iter()
            .filter(|f| f.user == user)
            .collect();
        let sources: BTreeSet<HostId> = mine.iter().map(|f| f.src).collect();
        if sources.len() < USER_SPRAY_MIN_SOURCES {
            return None;
        }
        let hosts: BTreeSet<HostId> = mine.iter().map(|f| f.dst).collect();
        let evidence: Vec<(HostId, u64)> = mine.iter().take(32).map(|f| f.ev_id).collect();
        let last_src = mine.last().map(|f| f.src)?;
        self.logons.sprays.push_back(Spray {
            src: None,
            user: Some(user.to_string()),
            ts,
            targets: sources.len(),
            hosts: hosts.len(),
            users: 1,
        });
        let names: Vec<String> = sources.iter().map(|h| self.registry.name(*h)).collect();
        let sentence = format!(
            "user {user} failed to log on from {} sources within an hour ({})",
            sources.len(),
            names.join(", ")
        );
        let n = sources.len();
        Some(self.spray_alert(
            last_src,
            hosts.into_iter().collect(),
            vec![user.to_string()],
            n,
            sentence,
            evidence,
            ts,
        ))
    }

    /// A password-spray alert: the source first on its path, then the hosts
    /// it failed against.
    #[allow(clippy::too_many_arguments)]
    fn spray_alert(
        &mut self,
        src: HostId,
        hosts: Vec<HostId>,
        users: Vec<String>,
        spread: usize,
        sentence: String,
        evidence: Vec<(HostId, u64)>,
        ts: u64,
    ) -> Alert {
        let id = self.alloc_id();
        let mut path = vec![src];
        path.extend(hosts.iter().copied().filter(|h| *h != src));
        let path_names: Vec<String> = path.iter().map(|h| self.registry.name(*h)).collect();
        let name = path_names[0].clone();
        Alert {
            id,
            created_ns: ts,
            kind: AlertKind::Spray,
            severity: if spread >= 10 {
                Severity::High
            } else {
                Severity::Medium
            },
            score: spread as f64,
            title: format!(
                "Password spray from {name} against {} hosts ({} users)",
                hosts.len(),
                users.len()
            ),
            host: src,
            path,
            path_names,
            users,
            ports: Vec::new(),
            processes: Vec::new(),
            techniques: vec!["T1110.003".into()],
            summary: sentence.clone(),
            deviations: vec![FeatureDeviation {
                feature: "password_spray".into(),
                observed: spread as f64,
                baseline: 0.0,
                score: spread as f64,
                sentence,
            }],
            evidence,
            incident_id: None,
            model_version: self.model_tag(src),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_source_costs_less_where_new_sources_are_routine() {
        let mut m = LogonMemory::default();
        let (srv, ws) = (HostId(1), HostId(2));
        // no history: the full cap
        assert_eq!(m.new_source_nats(srv, 20.0), NEW_LOGON_EDGE);
        // a workstation with one source over many logons: still the cap
        for i in 0..200 {
            m.learn(HostId(3), ws, i);
        }
        assert_eq!(m.new_source_nats(ws, 20.0), NEW_LOGON_EDGE);
        // a server meeting a new source at every logon: the floor
        for i in 0..60 {
            m.learn(HostId(100 + i), srv, i);
        }
        assert_eq!(m.new_source_nats(srv, 20.0), NEW_USER_ON_EDGE);
    }
}
