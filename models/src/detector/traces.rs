//! Remote-session traces: a process spawned by a remote-execution service or
//! a write to `authorized_keys` right after a hop is evidence the hop was
//! used. The trace adds its bonus (once per technique) to the latest hop into
//! its host; a trace that arrives before its hop waits a minute for it. A
//! strong trace whose hop never came (the other side is not monitored)
//! alerts on its own, naming the technique from the catalogue; so does a
//! logon that is a technique's trace by itself (`logon` evidence).

use super::sigma::{routine_lowered, Gate};
use super::{normalise_user, Detector, PendingTrace};
use crate::alert::{push_unique, Alert, AlertKind};
use crate::catalogue::catalogue;
use crate::classify::{is_shell, logon_technique};
use vigil_proto::query::{FeatureDeviation, Severity};
use vigil_proto::{HostId, LoginInfo, LoginService};

/// How long a trace waits for its hop, ns.
const PENDING_WAIT_NS: u64 = 60_000_000_000;

impl Detector {
    /// Attaches a remote-session trace on `host` to the inbound hop that
    /// explains it, or keeps it a minute for a hop still on its way. Among
    /// the hops of the last 10 minutes a logon by the trace's user wins,
    /// else the latest hop (a Windows service child runs as SYSTEM, not as
    /// the user who logged on): a host that merely also connected must not
    /// take a session's trace from the logon that started it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn link_to_hop(
        &mut self,
        host: HostId,
        ts: u64,
        ev_id: (HostId, u64),
        technique: &str,
        process: Option<String>,
        user: Option<&str>,
        bonus: f64,
    ) -> Vec<Alert> {
        let from = ts.saturating_sub(10 * 60 * 1_000_000_000);
        let best = self
            .positions_into(host)
            .into_iter()
            .filter(|&i| {
                let h = &self.hops[i];
                h.last_ns >= from && h.last_ns <= ts + 60_000_000_000
            })
            .max_by_key(|&i| {
                let h = &self.hops[i];
                let same_user = user.is_some() && h.user.as_deref() == user;
                (same_user, h.last_ns, i)
            });
        let Some(idx) = best else {
            while self.pending.len() >= 256 {
                self.pending.pop_front();
            }
            self.pending.push_back(PendingTrace {
                host,
                ts,
                technique: technique.to_string(),
                process,
                ev_id,
                bonus,
            });
            return Vec::new();
        };
        let added = self.boost(idx, technique, process, ev_id, bonus);
        let mut alerts = self.maybe_alert_hop(idx, ts);
        // A hop that already alerted (a first logon over an edge often
        // does) is re-emitted with the same id when a trace names a new
        // technique, as incidents are when they grow.
        if added && !alerts.iter().any(|a| a.kind == AlertKind::Hop) {
            let h = &self.hops[idx];
            if let (Some(id), Some(thr)) = (h.alert_id, self.hop_threshold(h.dst)) {
                alerts.insert(0, self.hop_alert(idx, id, thr, ts));
            }
        }
        alerts
    }

    /// Adds a trace to hop `idx`; its bonus counts once per technique.
    /// True when the technique was new to the hop.
    fn boost(
        &mut self,
        idx: usize,
        technique: &str,
        process: Option<String>,
        ev_id: (HostId, u64),
        bonus: f64,
    ) -> bool {
        // An ablation run without traces keeps their technique, not their weight.
        let bonus = if self.cfg.signals.traces { bonus } else { 0.0 };
        let h = &mut self.hops[idx];
        let process_note = match (&process, technique) {
            (Some(p), _) => p.clone(),
            (None, "T1098.004") => "a change to an SSH authorized_keys file".to_string(),
            (None, t) => catalogue().label(t),
        };
        push_unique(&mut h.techniques, technique.to_string());
        if let Some(p) = process {
            push_unique(&mut h.processes, p);
        }
        if h.evidence.len() < 16 {
            push_unique(&mut h.evidence, ev_id);
        }
        if h.boosts.iter().any(|(t, _, _)| t == technique) {
            return false;
        }
        h.boosts.push((technique.to_string(), process_note, bonus));
        h.score += bonus;
        true
    }

    /// Gives a new hop the traces on its destination that waited for it
    /// (at most a minute old).
    pub(super) fn apply_pending(&mut self, idx: usize, ts: u64) {
        let dst = self.hops[idx].dst;
        let from = ts.saturating_sub(PENDING_WAIT_NS);
        let (mine, rest): (Vec<PendingTrace>, Vec<PendingTrace>) = self
            .pending
            .drain(..)
            .partition(|p| p.host == dst && p.ts >= from && p.ts <= ts);
        self.pending = rest.into();
        for p in mine {
            self.boost(idx, &p.technique, p.process, p.ev_id, p.bonus);
        }
    }

    /// Ends the wait of traces whose hop did not come within a minute. A
    /// strong one — a technique the catalogue lets stand `alone`, with a
    /// shell under its parent or a process that only a remote session
    /// starts — becomes an alert on its host with the source unknown.
    pub(super) fn expire_pending(&mut self, now_ns: u64) -> Vec<Alert> {
        let (expired, rest): (Vec<PendingTrace>, Vec<PendingTrace>) = self
            .pending
            .drain(..)
            .partition(|p| p.ts.saturating_add(PENDING_WAIT_NS) < now_ns);
        self.pending = rest.into();
        let cat = catalogue();
        expired
            .into_iter()
            .filter(|p| {
                cat.alone(&p.technique)
                    && p.process
                        .as_deref()
                        .is_some_and(|x| is_shell(x) || cat.is_child_evidence(x))
            })
            .map(|p| self.trace_alert(p))
            .collect()
    }

    /// The alert for a strong trace with no seen hop.
    fn trace_alert(&mut self, p: PendingTrace) -> Alert {
        let name = self.registry.name(p.host);
        let what = p.process.clone().unwrap_or_default();
        let label = catalogue().label(&p.technique);
        let title = format!("Remote execution on {name}: {label}, source unseen");
        let sentence = format!(
            "{name} ran {what} from a remote session ({label}) and no inbound hop was seen within a minute: the source is not monitored or not logged"
        );
        self.single_host_alert(p, None, title, sentence)
    }

    /// A logon that is by itself a technique's trace (the catalogue's
    /// `logon` evidence, e.g. logon type 9 by `seclogo`: pass-the-hash)
    /// alerts on its host at once: that host is the source side of what
    /// follows, so there is no inbound hop to wait for. Learned per host
    /// and user like a Sigma hit ([`Detector::learned_gate`]): counted
    /// while the host learns, at most one alert an hour per host and user,
    /// one severity lower when it was routine there (an admin's daily
    /// `runas /netonly`), never silenced.
    pub(super) fn logon_trace(
        &mut self,
        host: HostId,
        ts: u64,
        ev_id: (HostId, u64),
        l: &LoginInfo,
    ) -> Vec<Alert> {
        let Some((technique, note)) = logon_technique(&l.service) else {
            return Vec::new();
        };
        let user = normalise_user(&l.user);
        let Gate::Alert(routine) =
            self.learned_gate(&format!("logon:{technique}:{user}"), host, ts)
        else {
            return Vec::new();
        };
        let name = self.registry.name(host);
        let label = catalogue().label(technique);
        let kind = match &l.service {
            LoginService::Other(k) => k.as_str(),
            _ => "",
        };
        let title = format!("{label} on {name} by {user}");
        let why = note.map(|n| format!(": {n}")).unwrap_or_default();
        let mut sentence = format!("{name} logged {user} on with a {kind} logon ({label}){why}");
        let mut routine_deviations = Vec::new();
        let severity = match routine {
            Some(r) => routine_lowered(
                &name,
                r,
                Severity::Medium,
                &mut sentence,
                &mut routine_deviations,
            ),
            None => Severity::Medium,
        };
        let p = PendingTrace {
            host,
            ts,
            technique: technique.to_string(),
            process: None,
            ev_id,
            bonus: self.cfg.spawn_bonus,
        };
        let mut alert = self.single_host_alert(p, Some(user), title, sentence);
        alert.severity = severity;
        alert.deviations.extend(routine_deviations);
        vec![alert]
    }

    /// A trace alert on one host, the other side of the hop unknown.
    fn single_host_alert(
        &mut self,
        p: PendingTrace,
        user: Option<String>,
        title: String,
        sentence: String,
    ) -> Alert {
        let id = self.alloc_id();
        let name = self.registry.name(p.host);
        Alert {
            id,
            created_ns: p.ts,
            kind: AlertKind::Trace,
            severity: Severity::Medium,
            score: p.bonus,
            title,
            host: p.host,
            path: vec![p.host],
            path_names: vec![name],
            users: user.into_iter().collect(),
            processes: p.process.into_iter().collect(),
            ports: Vec::new(),
            techniques: vec![p.technique],
            summary: sentence.clone(),
            // the same signal as a remote-session trace (a catalogue
            // technique standing alone): the re-ranker weighs it alike
            deviations: vec![FeatureDeviation {
                feature: "remote_session_trace".into(),
                observed: 1.0,
                baseline: 0.0,
                score: p.bonus,
                sentence,
            }],
            evidence: vec![p.ev_id],
            incident_id: None,
            model_version: self.model_tag(p.host),
        }
    }
}
