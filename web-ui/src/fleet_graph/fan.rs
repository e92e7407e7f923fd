//! Fan-out folding: a host that reaches many hosts over edges no alert is
//! behind (a vulnerability scanner, a backup or monitoring server) is drawn
//! with ONE edge to a "N hosts" node instead of one edge per target.
//!
//! Why: in a fleet with a scanner, its sweep is most of the window's new
//! edges; drawn one by one it pulls every target into the picture as a
//! focus host and swamps the few edges that matter (an incident's hops).
//! Folding happens before hosts are chosen, so the sweep's targets neither
//! become focus hosts nor neighbours through it; edges behind an alert are
//! never folded, so an incident's hop from a scanning host stays drawn.

use super::{Node, NodeKind};
use crate::pages::count;
use crate::urlenc;
use std::collections::{BTreeSet, HashMap};
use vigil_proto::event::HostId;
use vigil_proto::query::{AlertRecord, EdgeRecord, HostSummary};

/// Sources folded, each with its number of distinct targets.
#[derive(Debug, Clone, Default)]
pub(super) struct Fans {
    targets: HashMap<HostId, usize>,
}

impl Fans {
    /// Sources reaching at least `min_targets` distinct hosts over edges
    /// with no alert behind; the `most` widest (ties by id) are folded.
    pub(super) fn find(
        edges: &[EdgeRecord],
        behind: &[Vec<&AlertRecord>],
        min_targets: usize,
        most: usize,
    ) -> Fans {
        let mut reach: HashMap<HostId, BTreeSet<HostId>> = HashMap::new();
        for (e, alerts) in edges.iter().zip(behind) {
            if alerts.is_empty() {
                reach.entry(e.src).or_default().insert(e.dst);
            }
        }
        let mut wide: Vec<(HostId, usize)> = reach
            .into_iter()
            .map(|(h, t)| (h, t.len()))
            .filter(|(_, n)| *n >= min_targets.max(1))
            .collect();
        wide.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        wide.truncate(most);
        Fans {
            targets: wide.into_iter().collect(),
        }
    }

    /// Whether edge `e` (with `alerts` behind it) is folded into its
    /// source's fan-out edge.
    pub(super) fn folds(&self, e: &EdgeRecord, alerts: &[&AlertRecord]) -> bool {
        alerts.is_empty() && self.targets.contains_key(&e.src)
    }

    /// The folded sources, widest first (ties by id): one node each.
    pub(super) fn sources(&self) -> Vec<(HostId, usize)> {
        let mut v: Vec<(HostId, usize)> = self.targets.iter().map(|(h, n)| (*h, *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

/// The "N hosts" node a source's fan-out edge points at; it links to the
/// hunt for that source's connections.
pub(super) fn node(source: HostId, targets: usize, info: &HashMap<HostId, &HostSummary>) -> Node {
    let name = info
        .get(&source)
        .map_or_else(|| source.to_string(), |h| h.hostname.clone());
    Node {
        kind: NodeKind::Fan { source, targets },
        label: format!("{} hosts", count(targets as u64)),
        title: format!(
            "{name} reaches {} hosts in this window (a scan, backup or monitoring sweep): \
             its routine connections are folded into one edge; hops behind alerts are drawn apart",
            count(targets as u64)
        ),
        href: format!(
            "/hunt?{}",
            urlenc::query(&[("host", name), ("kind", "net_connect".into())])
        ),
        alert: false,
        new: false,
        x: 0.0,
        y: 0.0,
        r: 0.0,
        label_at: None,
    }
}
