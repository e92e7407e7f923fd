//! Switches for each scoring signal, so an evaluation can measure what one
//! signal contributes (an ablation). The appliance always runs with all on.

use serde::{Deserialize, Serialize};

/// The scoring signals, each switchable so an evaluation can measure what
/// one contributes (`vigil-eval … --ablate NAME`). All on by default; the
/// appliance never switches one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signals {
    /// `new_logon_edge` / `new_user_on_edge`: the first successful logon
    /// over a src → dst edge, or a new user on it.
    pub edge: bool,
    /// The graph's user relations (where this user logs on, where they come
    /// from, who logs on here).
    pub user: bool,
    /// The graph's host relations (who reaches this host, where this source
    /// goes, which admin services it uses).
    pub host: bool,
    /// The chain bonus of a hop out of a host an anomalous hop just reached.
    pub chain: bool,
    /// Remote-session traces (a process under a remote-execution service,
    /// a key write) raising the hop they follow.
    pub traces: bool,
    /// One source reaching many new hosts in a short time.
    pub fanout: bool,
    /// Password-spray alerts and `after_spray` on the logon that follows.
    pub spray: bool,
    /// A known edge used at an hour of the day it never was.
    pub hour: bool,
    /// Failed logons never teach the graph (off: they are learned like
    /// successes, as before session 5).
    pub failures: bool,
}

impl Signals {
    /// Every signal's name, as `--ablate` takes it.
    pub const NAMES: [&'static str; 9] = [
        "edge", "user", "host", "chain", "traces", "fanout", "spray", "hour", "failures",
    ];

    /// Every signal on.
    pub const ALL: Signals = Signals {
        edge: true,
        user: true,
        host: true,
        chain: true,
        traces: true,
        fanout: true,
        spray: true,
        hour: true,
        failures: true,
    };

    /// The switch of the signal called `name`, if there is one.
    pub fn switch(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "edge" => &mut self.edge,
            "user" => &mut self.user,
            "host" => &mut self.host,
            "chain" => &mut self.chain,
            "traces" => &mut self.traces,
            "fanout" => &mut self.fanout,
            "spray" => &mut self.spray,
            "hour" => &mut self.hour,
            "failures" => &mut self.failures,
            _ => return None,
        })
    }

    /// Whether a graph relation counts in the hop score.
    pub fn relation(&self, k: crate::graph::RelationKind) -> bool {
        use crate::graph::RelationKind as K;
        match k {
            K::UserToDst | K::UserFromSrc | K::DstUser => self.user,
            K::DstFromSrc | K::SrcToDst | K::SrcPort => self.host,
        }
    }

    /// The weight of relation `k` in a hop's score: its own weight, times
    /// `host_weight` for a host relation of a logon hop (`logon`: the hop
    /// carries a user), zero when its signal is off. A user-less hop (an
    /// admin-port connection) keeps full host relations: they are all it
    /// is scored by.
    pub fn relation_weight(
        &self,
        k: crate::graph::RelationKind,
        host_weight: f64,
        logon: bool,
    ) -> f64 {
        use crate::graph::RelationKind as K;
        if !self.relation(k) {
            return 0.0;
        }
        match k {
            K::DstFromSrc | K::SrcToDst | K::SrcPort if logon => k.weight() * host_weight,
            _ => k.weight(),
        }
    }
}

impl Default for Signals {
    fn default() -> Self {
        Signals::ALL
    }
}
