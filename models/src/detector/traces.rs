//! Remote-session traces: a process spawned by a remote-execution service or
//! a write to `authorized_keys` right after a hop is evidence the hop was
//! used. The trace adds its bonus (once per technique) to the latest hop into
//! its host; a trace that arrives before its hop waits a minute for it.

use super::{Detector, PendingTrace};
use crate::alert::{push_unique, Alert, AlertKind};
use vigil_proto::HostId;

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
        let h = &mut self.hops[idx];
        let process_note = match (&process, technique) {
            (Some(p), _) => p.clone(),
            (None, "T1098.004") => "a change to an SSH authorized_keys file".to_string(),
            (None, t) => t.to_string(),
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
        let from = ts.saturating_sub(60_000_000_000);
        let (mine, rest): (Vec<PendingTrace>, Vec<PendingTrace>) = self
            .pending
            .drain(..)
            .partition(|p| p.host == dst && p.ts >= from && p.ts <= ts);
        self.pending = rest.into();
        for p in mine {
            self.boost(idx, &p.technique, p.process, p.ev_id, p.bonus);
        }
    }
}
