//! Per-host feature windows (5 min and 1 h).
//!
//! Events are first turned into [`Facts`] by the detector (which knows the
//! fleet graph), then folded into a [`WindowAccum`]. Only counts and
//! deviations become features — never host or user ids.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use vigil_proto::HostId;

/// Number of features in a window vector.
pub const NF: usize = 10;

/// Feature names, in vector order.
pub const FEATURE_NAMES: [&str; NF] = [
    "internal_peers",
    "new_peers",
    "admin_port_peers",
    "distinct_users",
    "new_logon_triples",
    "auth_failures",
    "remote_spawned_processes",
    "new_parent_child",
    "rare_binaries",
    "hour_of_week_deviation",
];

/// Human wording of each feature, for explanation sentences.
pub const FEATURE_WORDS: [&str; NF] = [
    "internal peers contacted",
    "peers never seen before",
    "peers on admin ports",
    "distinct users",
    "new (user, source, destination) logons",
    "failed logons",
    "processes spawned by remote sessions",
    "new parent→child pairs",
    "globally rare binaries",
    "activity deviation for this hour of the week",
];

/// The two window lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WindowLen {
    /// Five minutes.
    FiveMin,
    /// One hour.
    Hour,
}

impl WindowLen {
    /// Length in nanoseconds.
    pub fn ns(self) -> u64 {
        match self {
            WindowLen::FiveMin => 300 * 1_000_000_000,
            WindowLen::Hour => 3600 * 1_000_000_000,
        }
    }

    /// Short label (`5m`, `1h`).
    pub fn label(self) -> &'static str {
        match self {
            WindowLen::FiveMin => "5m",
            WindowLen::Hour => "1h",
        }
    }
}

/// One closed window's feature values (raw counts, not transformed).
pub type FeatureVector = [f32; NF];

/// What one event contributes to its host's windows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Internal peer key (either direction).
    pub peer: Option<u64>,
    /// The peer was never seen with this host before.
    pub new_peer: bool,
    /// The peer was reached on (or came in on) an admin port.
    pub admin_port: bool,
    /// User key, for logons and processes.
    pub user: Option<u64>,
    /// A new (user, src, dst) logon triple.
    pub new_triple: bool,
    /// A failed logon.
    pub auth_failure: bool,
    /// A process whose parent is a remote-session host process.
    pub remote_spawned: bool,
    /// A parent→child pair this host never ran.
    pub new_parent_child: bool,
    /// A binary few hosts in the fleet ever ran.
    pub rare_binary: bool,
}

/// Most evidence ids a window keeps.
pub const MAX_WINDOW_EVIDENCE: usize = 32;

/// Accumulates one window of one host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowAccum {
    /// Window start, ns (aligned to the window length).
    pub start_ns: u64,
    peers: BTreeSet<u64>,
    new_peers: BTreeSet<u64>,
    admin_peers: BTreeSet<u64>,
    users: BTreeSet<u64>,
    new_triples: u32,
    failures: u32,
    remote_spawned: u32,
    new_parent_child: u32,
    rare_binaries: u32,
    /// Events folded in.
    pub events: u32,
    /// (host, seq) of the events that moved a feature, first ones kept.
    pub evidence: Vec<(HostId, u64)>,
}

/// Most distinct peers or users a window tracks (bounds memory under a scan).
const MAX_SET: usize = 512;

fn bounded_insert(set: &mut BTreeSet<u64>, k: u64) {
    if set.len() < MAX_SET {
        set.insert(k);
    }
}

impl WindowAccum {
    /// An empty window starting at `start_ns`.
    pub fn new(start_ns: u64) -> Self {
        WindowAccum {
            start_ns,
            ..Default::default()
        }
    }

    /// Folds one event's facts in.
    pub fn add(&mut self, f: &Facts, evidence: (HostId, u64)) {
        self.events = self.events.saturating_add(1);
        let mut moved = false;
        if let Some(p) = f.peer {
            bounded_insert(&mut self.peers, p);
            if f.new_peer {
                bounded_insert(&mut self.new_peers, p);
                moved = true;
            }
            if f.admin_port {
                bounded_insert(&mut self.admin_peers, p);
                moved = true;
            }
        }
        if let Some(u) = f.user {
            bounded_insert(&mut self.users, u);
        }
        let flags = [
            (f.new_triple, &mut self.new_triples),
            (f.auth_failure, &mut self.failures),
            (f.remote_spawned, &mut self.remote_spawned),
            (f.new_parent_child, &mut self.new_parent_child),
            (f.rare_binary, &mut self.rare_binaries),
        ];
        for (on, counter) in flags {
            if on {
                *counter = counter.saturating_add(1);
                moved = true;
            }
        }
        if moved && self.evidence.len() < MAX_WINDOW_EVIDENCE {
            self.evidence.push(evidence);
        }
    }

    /// The window's feature vector; `how_deviation` comes from the host's
    /// hour-of-week profile.
    pub fn vector(&self, how_deviation: f32) -> FeatureVector {
        [
            self.peers.len() as f32,
            self.new_peers.len() as f32,
            self.admin_peers.len() as f32,
            self.users.len() as f32,
            self.new_triples as f32,
            self.failures as f32,
            self.remote_spawned as f32,
            self.new_parent_child as f32,
            self.rare_binaries as f32,
            how_deviation,
        ]
    }
}

/// Hour of the week (0 = Thursday 00:00 UTC, the epoch's weekday) of a time.
pub fn hour_of_week(ts_ns: u64) -> usize {
    ((ts_ns / 3_600_000_000_000) % 168) as usize
}

/// Typical activity per hour of the week (log1p of events per 5-min window,
/// exponentially averaged), to tell a 3 a.m. burst from a Monday morning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HourOfWeekProfile {
    level: Vec<f32>,
    seen: Vec<u16>,
}

impl Default for HourOfWeekProfile {
    fn default() -> Self {
        HourOfWeekProfile {
            level: vec![0.0; 168],
            seen: vec![0; 168],
        }
    }
}

impl HourOfWeekProfile {
    /// Deviation of `events` in a window at `ts_ns` from this slot's norm
    /// (0 while the slot has never been seen), then learns it.
    pub fn deviation_then_learn(&mut self, ts_ns: u64, events: u32) -> f32 {
        let slot = hour_of_week(ts_ns);
        let x = (events as f32).ln_1p();
        let dev = if self.seen[slot] == 0 {
            0.0
        } else {
            (x - self.level[slot]).max(0.0)
        };
        let alpha = 1.0 / f32::from(self.seen[slot].saturating_add(1).min(20));
        self.level[slot] += alpha * (x - self.level[slot]);
        self.seen[slot] = self.seen[slot].saturating_add(1);
        dev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_distinct_peers_and_flags() {
        let mut w = WindowAccum::new(0);
        let h = HostId(1);
        let f = Facts {
            peer: Some(7),
            new_peer: true,
            admin_port: true,
            ..Default::default()
        };
        w.add(&f, (h, 1));
        w.add(&f, (h, 2));
        w.add(
            &Facts {
                auth_failure: true,
                user: Some(3),
                ..Default::default()
            },
            (h, 3),
        );
        let v = w.vector(0.5);
        assert_eq!(v, [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.5]);
        assert_eq!(w.evidence, vec![(h, 1), (h, 2), (h, 3)]);
    }

    #[test]
    fn hour_of_week_profile_learns_then_flags_bursts() {
        let mut p = HourOfWeekProfile::default();
        let hour = 3_600_000_000_000u64;
        assert_eq!(p.deviation_then_learn(5 * hour, 10), 0.0);
        for week in 1..5 {
            p.deviation_then_learn(5 * hour + week * 168 * hour, 10);
        }
        let quiet = p.deviation_then_learn(5 * hour + 6 * 168 * hour, 10);
        let burst = p.deviation_then_learn(5 * hour + 7 * 168 * hour, 500);
        assert!(quiet < 0.01 && burst > 3.0, "{quiet} {burst}");
    }
}
