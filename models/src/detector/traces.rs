//! Remote-session traces: a process spawned by a remote-execution service or
//! a write to `authorized_keys` right after a hop is evidence the hop was
//! used. The trace adds its bonus (once per technique) to the latest hop into
//! its host; a trace that arrives before its hop waits a minute for it.

use super::{Detector, PendingTrace};
use crate::alert::{push_unique, Alert};
use vigil_proto::HostId;

impl Detector {
    /// Attaches a remote-session trace on `host` to the latest inbound hop,
    /// or keeps it a minute for a hop that is still on its way.
    pub(super) fn link_to_hop(
        &mut self,
        host: HostId,
        ts: u64,
        ev_id: (HostId, u64),
        technique: &str,
        process: Option<String>,
        bonus: f64,
    ) -> Vec<Alert> {
        let from = ts.saturating_sub(10 * 60 * 1_000_000_000);
        let Some(idx) = self.positions_into(host).into_iter().rev().find(|&i| {
            let h = &self.hops[i];
            h.last_ns >= from && h.last_ns <= ts + 60_000_000_000
        }) else {
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
        self.boost(idx, technique, process, ev_id, bonus);
        self.maybe_alert_hop(idx, ts)
    }

    /// Adds a trace to hop `idx`; its bonus counts once per technique.
    fn boost(
        &mut self,
        idx: usize,
        technique: &str,
        process: Option<String>,
        ev_id: (HostId, u64),
        bonus: f64,
    ) {
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
        if !h.boosts.iter().any(|(t, _, _)| t == technique) {
            h.boosts.push((technique.to_string(), process_note, bonus));
            h.score += bonus;
        }
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
