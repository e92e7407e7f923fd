//! The fleet graph at any fleet size, as a pure function from the window's
//! hosts, edges and alerts to positioned nodes, edges and labels (drawn by
//! [`render`]; no I/O, no clock).
//!
//! What is drawn, so 10 hosts and 10,000 read the same way:
//! - *focus* hosts: the ends of edges behind an alert (a hop of an
//!   incident's path) and of edges first seen in the window, plus hosts the
//!   analyst filtered on, at most [`Limits::focus_hosts`] — except that
//!   hosts behind alerts may fill every one of [`Limits::hosts`];
//! - their *neighbourhood*: the hosts they talk to over routine edges, the
//!   busiest first, until [`Limits::hosts`] hosts are drawn;
//! - every other host folded into its *group* ([`group`]: role from the
//!   host name, else its subnet), at most [`Limits::groups`] groups plus
//!   `other`, each drawn once with its host count; routine edges between
//!   groups become one edge with counts;
//! - at most [`Limits::edges`] edges, alert and new edges first;
//! - a host reaching at least [`Limits::fan_out`] hosts over edges no alert
//!   is behind (a scanner's sweep) drawn with one edge to an "N hosts" node
//!   ([`fan`]), so its sweep neither swamps the picture nor pulls its
//!   targets in as focus hosts.
//!
//! So a graph never has more than [`Limits::max_nodes`] nodes.

mod fan;
pub mod group;
pub mod labels;
pub mod layout;
mod render;

pub use render::render;

use crate::pages::count;
use crate::time::format_input;
use crate::urlenc;
use group::{group_of, GroupKey};
use labels::{Anchor, LabelRequest, Placed};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use vigil_proto::event::HostId;
use vigil_proto::query::{AlertRecord, EdgeRecord, HostSummary};

/// How much is drawn at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Hosts drawn for their new edges (or a filter); hosts behind alerts
    /// may go beyond it, up to `hosts`.
    pub focus_hosts: usize,
    /// Hosts drawn one by one, focus included.
    pub hosts: usize,
    /// Group nodes besides `other`.
    pub groups: usize,
    /// Edges drawn.
    pub edges: usize,
    /// A source reaching this many distinct hosts over edges with no alert
    /// behind has them folded into one fan-out edge.
    pub fan_out: usize,
    /// Fan-out nodes at most (the widest sources).
    pub fans: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            focus_hosts: 60,
            hosts: 90,
            groups: 30,
            edges: 400,
            fan_out: 12,
            fans: 6,
        }
    }
}

impl Limits {
    /// Most nodes a graph can have: hosts, groups, `other` and fan-outs.
    pub fn max_nodes(&self) -> usize {
        self.hosts + self.groups + 1 + self.fans
    }
}

/// What the graph is built from.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The registry (names, addresses); hosts not in it are drawn by id.
    pub hosts: &'a [HostSummary],
    /// The window's edges, already filtered.
    pub edges: &'a [EdgeRecord],
    /// Alerts of the window: their path steps mark edges as anomalous.
    pub alerts: &'a [AlertRecord],
    /// Start of the window: an edge first seen at or after it is new.
    pub since_ns: u64,
    /// Hosts the analyst asked for: drawn first.
    pub pinned: &'a HashSet<HostId>,
}

/// A drawn node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// One host.
    Host(HostId),
    /// Hosts folded together, with the edges among them.
    Group {
        key: GroupKey,
        hosts: usize,
        inner_edges: usize,
    },
    /// The hosts one source reaches over routine edges, drawn as one node
    /// at the end of its one fan-out edge.
    Fan { source: HostId, targets: usize },
}

/// A node with its place on the canvas.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    /// Text beside the circle (if there is room).
    pub label: String,
    /// Hover text: always the full story.
    pub title: String,
    /// Host page, or the host list searched for the group.
    pub href: String,
    /// Has an edge behind an alert.
    pub alert: bool,
    /// Has an edge first seen in the window.
    pub new: bool,
    pub x: f64,
    pub y: f64,
    pub r: f64,
    /// Where its label went; `None` when there was no room.
    pub label_at: Option<Placed>,
}

/// A drawn edge: one host pair, or routine traffic between groups.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    /// A hop of an alert's path.
    pub alert: bool,
    /// First seen in the window.
    pub new: bool,
    pub ports: BTreeSet<u16>,
    pub users: BTreeSet<String>,
    /// Connections behind it.
    pub events: u64,
    /// Stored host-to-host edges folded into it.
    pub edges: usize,
    /// Alerts behind it.
    pub alert_ids: BTreeSet<u64>,
    /// The hunt for the events behind it.
    pub href: String,
    /// Hover text.
    pub title: String,
    /// Port label of an alert or new edge, where there was room.
    pub label_at: Option<(String, Placed)>,
}

/// The positioned graph and what it left out.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FleetGraph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// Hosts with an edge in the window.
    pub hosts_in_window: usize,
    /// Of those, drawn one by one.
    pub hosts_drawn: usize,
    /// Of those, folded into groups.
    pub hosts_grouped: usize,
    /// Edges in the window (after filters).
    pub edges_in_window: usize,
    /// Aggregated edges beyond [`Limits::edges`], not drawn.
    pub edges_not_drawn: usize,
}

/// Which of the window's edges are hops of an alert's path: (src, dst) →
/// alerts, an alert naming ports only counting edges on them.
pub fn alert_hops(alerts: &[AlertRecord]) -> HashMap<(HostId, HostId), Vec<&AlertRecord>> {
    let mut hops: HashMap<(HostId, HostId), Vec<&AlertRecord>> = HashMap::new();
    for a in alerts {
        for w in a.path.windows(2) {
            if w[0] != w[1] {
                hops.entry((w[0], w[1])).or_default().push(a);
            }
        }
    }
    hops
}

/// The alerts behind edge `e`, if any.
pub fn alerts_behind<'a>(
    hops: &HashMap<(HostId, HostId), Vec<&'a AlertRecord>>,
    e: &EdgeRecord,
) -> Vec<&'a AlertRecord> {
    hops.get(&(e.src, e.dst))
        .into_iter()
        .flatten()
        .filter(|a| a.ports.is_empty() || a.ports.contains(&e.port))
        .copied()
        .collect()
}

/// Build and lay out the graph.
pub fn build(input: &Input, limits: &Limits) -> FleetGraph {
    let info: HashMap<HostId, &HostSummary> = input.hosts.iter().map(|h| (h.id, h)).collect();
    let hops = alert_hops(input.alerts);
    let behind: Vec<Vec<&AlertRecord>> = input
        .edges
        .iter()
        .map(|e| alerts_behind(&hops, e))
        .collect();
    let is_new = |e: &EdgeRecord| e.first_seen_ns >= input.since_ns;
    let fans = fan::Fans::find(input.edges, &behind, limits.fan_out, limits.fans);
    let drawn = choose_hosts(input, limits, &behind, &fans);
    let in_window: BTreeSet<HostId> = input.edges.iter().flat_map(|e| [e.src, e.dst]).collect();
    let (mut nodes, slot) = make_nodes(&info, &drawn, &in_window, limits);
    let mut fan_slot: HashMap<HostId, usize> = HashMap::new();
    for (source, targets) in fans.sources() {
        fan_slot.insert(source, nodes.len());
        nodes.push(fan::node(source, targets, &info));
    }
    let mut agg: BTreeMap<(usize, usize), Edge> = BTreeMap::new();
    for (e, alerts) in input.edges.iter().zip(&behind) {
        let to = if fans.folds(e, alerts) {
            fan_slot.get(&e.src)
        } else {
            slot.get(&e.dst)
        };
        let (Some(&a), Some(&b)) = (slot.get(&e.src), to) else {
            continue;
        };
        if a == b {
            if let NodeKind::Group { inner_edges, .. } = &mut nodes[a].kind {
                *inner_edges += 1;
            }
            continue;
        }
        let ed = agg.entry((a, b)).or_insert_with(|| Edge {
            from: a,
            to: b,
            alert: false,
            new: false,
            ports: BTreeSet::new(),
            users: BTreeSet::new(),
            events: 0,
            edges: 0,
            alert_ids: BTreeSet::new(),
            href: String::new(),
            title: String::new(),
            label_at: None,
        });
        ed.alert |= !alerts.is_empty();
        ed.new |= is_new(e);
        ed.ports.insert(e.port);
        ed.users.extend(e.user.clone());
        ed.events = ed.events.saturating_add(e.count);
        ed.edges += 1;
        ed.alert_ids.extend(alerts.iter().map(|a| a.id));
    }
    let mut edges: Vec<Edge> = agg.into_values().collect();
    edges.sort_by(|x, y| {
        (y.alert, y.new, y.events, x.from, x.to).cmp(&(x.alert, x.new, x.events, y.from, y.to))
    });
    let edges_not_drawn = edges.len().saturating_sub(limits.edges);
    edges.truncate(limits.edges);
    let mut nodes = prune(nodes, &mut edges, input.pinned);
    for e in &edges {
        nodes[e.from].alert |= e.alert;
        nodes[e.to].alert |= e.alert;
        nodes[e.from].new |= e.new;
        nodes[e.to].new |= e.new;
    }
    for n in &mut nodes {
        n.r = radius(n);
        n.title = node_title(n, &info);
    }
    for e in &mut edges {
        e.href = edge_href(&nodes[e.from], &nodes[e.to], e, &info, input.since_ns);
        e.title = edge_title(&nodes[e.from], &nodes[e.to], e);
    }
    position(&mut nodes, &edges);
    let hosts_drawn = nodes
        .iter()
        .filter(|n| matches!(n.kind, NodeKind::Host(_)))
        .count();
    let hosts_grouped = nodes
        .iter()
        .map(|n| match n.kind {
            NodeKind::Group { hosts, .. } => hosts,
            NodeKind::Host(_) | NodeKind::Fan { .. } => 0,
        })
        .sum();
    let mut g = FleetGraph {
        hosts_drawn,
        nodes,
        edges,
        hosts_in_window: in_window.len(),
        hosts_grouped,
        edges_in_window: input.edges.len(),
        edges_not_drawn,
    };
    place_labels(&mut g);
    g
}

/// Drop host nodes left without a drawn edge (their edges were beyond the
/// edge cap) unless the analyst asked for them; renumber the edges.
fn prune(nodes: Vec<Node>, edges: &mut [Edge], pinned: &HashSet<HostId>) -> Vec<Node> {
    let mut used = vec![false; nodes.len()];
    for e in edges.iter() {
        used[e.from] = true;
        used[e.to] = true;
    }
    let mut slot = vec![usize::MAX; nodes.len()];
    let mut kept = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.into_iter().enumerate() {
        let keep = used[i]
            || match &n.kind {
                NodeKind::Host(h) => pinned.contains(h),
                NodeKind::Group { .. } => true,
                NodeKind::Fan { .. } => false,
            };
        if keep {
            slot[i] = kept.len();
            kept.push(n);
        }
    }
    for e in edges.iter_mut() {
        e.from = slot[e.from];
        e.to = slot[e.to];
    }
    kept
}

/// A host's focus score per alert edge it is on (pinned hosts score 2^40,
/// new edges 1 each).
const ALERT_SCORE: u64 = 1 << 20;

/// Focus hosts (alert hops, new edges, pinned), then their busiest routine
/// neighbours, up to the limits. A folded fan-out edge counts for its
/// source only, and makes no neighbours.
fn choose_hosts(
    input: &Input,
    limits: &Limits,
    behind: &[Vec<&AlertRecord>],
    fans: &fan::Fans,
) -> Vec<HostId> {
    let mut score: HashMap<HostId, u64> = HashMap::new();
    for h in input.pinned {
        *score.entry(*h).or_default() += 1 << 40;
    }
    for (e, alerts) in input.edges.iter().zip(behind) {
        if fans.folds(e, alerts) {
            if e.first_seen_ns >= input.since_ns {
                score.entry(e.src).or_insert(1);
            }
            continue;
        }
        let s = if !alerts.is_empty() {
            ALERT_SCORE
        } else if e.first_seen_ns >= input.since_ns {
            1
        } else {
            0
        };
        if s > 0 {
            for h in [e.src, e.dst] {
                *score.entry(h).or_default() += s;
            }
        }
    }
    let mut focus: Vec<(HostId, u64)> = score.into_iter().collect();
    focus.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    // Hosts behind alerts may take every drawn slot, not just the focus
    // share: an analyst must see the attacked host named, not folded into
    // "ws-hr (540)" (the 10,000-host bench store has ~90 such hosts a week).
    let mut drawn: Vec<HostId> = focus
        .into_iter()
        .enumerate()
        .take_while(|(i, (_, s))| {
            *i < limits.hosts && (*i < limits.focus_hosts || *s >= ALERT_SCORE)
        })
        .map(|(_, (h, _))| h)
        .collect();
    let chosen: HashSet<HostId> = drawn.iter().copied().collect();
    let mut near: HashMap<HostId, u64> = HashMap::new();
    for (e, alerts) in input.edges.iter().zip(behind) {
        if fans.folds(e, alerts) {
            continue;
        }
        match (chosen.contains(&e.src), chosen.contains(&e.dst)) {
            (true, false) => *near.entry(e.dst).or_default() += e.count.max(1),
            (false, true) => *near.entry(e.src).or_default() += e.count.max(1),
            _ => {}
        }
    }
    let mut near: Vec<(HostId, u64)> = near.into_iter().collect();
    near.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let room = limits.hosts.saturating_sub(drawn.len());
    drawn.extend(near.into_iter().take(room).map(|(h, _)| h));
    drawn
}

fn host_node(id: HostId, info: &HashMap<HostId, &HostSummary>) -> Node {
    let name = info
        .get(&id)
        .map_or_else(|| id.to_string(), |h| h.hostname.clone());
    Node {
        kind: NodeKind::Host(id),
        label: name,
        title: String::new(),
        href: format!("/hosts/{id}"),
        alert: false,
        new: false,
        x: 0.0,
        y: 0.0,
        r: 0.0,
        label_at: None,
    }
}

/// Nodes for the drawn hosts and the groups of all other hosts in the
/// window, and which node each host is drawn as.
fn make_nodes(
    info: &HashMap<HostId, &HostSummary>,
    drawn: &[HostId],
    in_window: &BTreeSet<HostId>,
    limits: &Limits,
) -> (Vec<Node>, HashMap<HostId, usize>) {
    let mut nodes: Vec<Node> = drawn.iter().map(|h| host_node(*h, info)).collect();
    let mut slot: HashMap<HostId, usize> = drawn.iter().enumerate().map(|(i, h)| (*h, i)).collect();
    let mut members: BTreeMap<GroupKey, Vec<HostId>> = BTreeMap::new();
    for h in in_window.iter().filter(|h| !slot.contains_key(h)) {
        let key = info
            .get(h)
            .map_or_else(group::other, |s| group_of(&s.hostname, &s.addrs));
        members.entry(key).or_default().push(*h);
    }
    let mut ranked: Vec<(GroupKey, Vec<HostId>)> = members.into_iter().collect();
    ranked.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    let mut rest: Vec<HostId> = Vec::new();
    let mut kept: Vec<(GroupKey, Vec<HostId>)> = Vec::new();
    for (i, (key, hosts)) in ranked.into_iter().enumerate() {
        if i < limits.groups && key != group::other() {
            kept.push((key, hosts));
        } else {
            rest.extend(hosts);
        }
    }
    if !rest.is_empty() {
        rest.sort();
        kept.push((group::other(), rest));
    }
    for (key, hosts) in kept {
        let i = nodes.len();
        if let [only] = hosts[..] {
            // A group of one is just that host.
            nodes.push(host_node(only, info));
        } else {
            nodes.push(Node {
                label: format!("{} ({})", key.label, hosts.len()),
                href: format!("/hosts?{}", urlenc::query(&[("q", key.search.clone())])),
                kind: NodeKind::Group {
                    key,
                    hosts: hosts.len(),
                    inner_edges: 0,
                },
                ..host_node(HostId(0), info)
            });
        }
        for h in hosts {
            slot.insert(h, i);
        }
    }
    (nodes, slot)
}

fn radius(n: &Node) -> f64 {
    match &n.kind {
        NodeKind::Host(_) if n.alert => 10.0,
        NodeKind::Host(_) => 7.0,
        NodeKind::Group { hosts, .. } => (8.0 + 2.5 * (*hosts as f64).log2()).min(24.0),
        NodeKind::Fan { targets, .. } => (6.0 + 2.0 * (*targets as f64).log2()).min(20.0),
    }
}

fn node_title(n: &Node, info: &HashMap<HostId, &HostSummary>) -> String {
    match &n.kind {
        NodeKind::Host(id) => {
            let addrs = info.get(id).map_or(String::new(), |h| {
                h.addrs
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            format!("{} ({id}) {addrs}", n.label).trim_end().to_string()
        }
        NodeKind::Group {
            key,
            hosts,
            inner_edges,
        } => format!(
            "group {}: {} hosts, {} edges among them (routine traffic folded together)",
            key.label,
            count(*hosts as u64),
            count(*inner_edges as u64)
        ),
        // Written with the node (it names its source).
        NodeKind::Fan { .. } => n.title.clone(),
    }
}

fn list<T: ToString>(items: impl Iterator<Item = T>, most: usize) -> String {
    let all: Vec<String> = items.map(|i| i.to_string()).collect();
    let mut s = all
        .iter()
        .take(most)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > most {
        s.push_str(&format!(" and {} more", all.len() - most));
    }
    s
}

fn edge_title(a: &Node, b: &Node, e: &Edge) -> String {
    let mut t = format!(
        "{} → {} · port {} · {} connections",
        a.label,
        b.label,
        list(e.ports.iter(), 6),
        count(e.events)
    );
    if e.edges > 1 {
        t.push_str(&format!(" over {} host pairs", count(e.edges as u64)));
    }
    if !e.users.is_empty() {
        t.push_str(&format!(" · users {}", list(e.users.iter(), 4)));
    }
    if e.alert {
        t.push_str(&format!(
            " · alerts {}",
            list(e.alert_ids.iter().map(|i| format!("#{i}")), 4)
        ));
    } else if e.new {
        t.push_str(" · first seen in this window");
    }
    t
}

/// The hunt for the connections behind an edge: source host, the
/// destination's first address as peer, the port when there is one.
fn edge_href(
    a: &Node,
    b: &Node,
    e: &Edge,
    info: &HashMap<HostId, &HostSummary>,
    since_ns: u64,
) -> String {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if let NodeKind::Host(_) = a.kind {
        pairs.push(("host", a.label.clone()));
    }
    if let NodeKind::Host(dst) = b.kind {
        let peer: Option<&IpAddr> = info.get(&dst).and_then(|h| h.addrs.first());
        if let Some(p) = peer {
            pairs.push(("peer", p.to_string()));
        }
    }
    if let [port] = e.ports.iter().collect::<Vec<_>>()[..] {
        pairs.push(("port", port.to_string()));
    }
    pairs.push(("kind", "net_connect".into()));
    pairs.push(("since", format_input(since_ns)));
    format!("/hunt?{}", urlenc::query(&pairs))
}

fn position(nodes: &mut [Node], edges: &[Edge]) {
    let lnodes: Vec<layout::LayoutNode> = nodes
        .iter()
        .map(|n| layout::LayoutNode {
            seed: layout::seed_of(
                match &n.kind {
                    NodeKind::Host(id) => id.to_string().into_bytes(),
                    NodeKind::Group { key, .. } => format!("group:{}", key.label).into_bytes(),
                    NodeKind::Fan { source, .. } => format!("fan:{source}").into_bytes(),
                }
                .as_slice(),
            ),
            radius: n.r,
        })
        .collect();
    let ledges: Vec<layout::LayoutEdge> = edges
        .iter()
        .map(|e| layout::LayoutEdge {
            a: e.from,
            b: e.to,
            weight: e.events as f64,
        })
        .collect();
    for (n, (x, y)) in nodes.iter_mut().zip(layout::layout(&lnodes, &ledges)) {
        n.x = x;
        n.y = y;
    }
}

/// At most this many ports labels of new edges (beyond it they are only
/// in the edges' titles: on a fresh store every edge is new).
const NEW_EDGE_LABELS: usize = 40;

/// Labels in priority order: alert hosts, groups (largest first), alert
/// edges' ports, hosts with new edges, new edges' ports (when few), other hosts.
fn place_labels(g: &mut FleetGraph) {
    enum Who {
        Node(usize),
        Edge(usize),
    }
    let mut order: Vec<(u8, u64, Who)> = Vec::new();
    for (i, n) in g.nodes.iter().enumerate() {
        let (rank, size) = match &n.kind {
            NodeKind::Host(_) if n.alert => (0, 0),
            NodeKind::Group { hosts, .. } => (1, u64::MAX - *hosts as u64),
            NodeKind::Fan { targets, .. } => (1, u64::MAX - *targets as u64),
            NodeKind::Host(_) if n.new => (3, 0),
            NodeKind::Host(_) => (5, 0),
        };
        order.push((rank, size, Who::Node(i)));
    }
    let new_edges = g.edges.iter().filter(|e| e.new && !e.alert).count();
    for (i, e) in g.edges.iter().enumerate() {
        if e.alert {
            order.push((2, 0, Who::Edge(i)));
        } else if e.new && new_edges <= NEW_EDGE_LABELS {
            order.push((4, 0, Who::Edge(i)));
        }
    }
    order.sort_by_key(|(rank, size, _)| (*rank, *size));
    let requests: Vec<LabelRequest> = order
        .iter()
        .map(|(_, _, who)| match *who {
            Who::Node(i) => {
                let n = &g.nodes[i];
                LabelRequest {
                    text: n.label.clone(),
                    anchor: Anchor::Node {
                        x: n.x,
                        y: n.y,
                        r: n.r,
                    },
                }
            }
            Who::Edge(i) => {
                let e = &g.edges[i];
                let (a, b) = (&g.nodes[e.from], &g.nodes[e.to]);
                LabelRequest {
                    text: format!(":{}", list(e.ports.iter(), 3)),
                    anchor: Anchor::Edge {
                        x: (a.x + b.x) / 2.0,
                        y: (a.y + b.y) / 2.0,
                        dx: b.x - a.x,
                        dy: b.y - a.y,
                    },
                }
            }
        })
        .collect();
    let circles: Vec<(f64, f64, f64)> = g.nodes.iter().map(|n| (n.x, n.y, n.r)).collect();
    let spots = labels::place(&requests, &circles, layout::WIDTH, layout::HEIGHT);
    for (((_, _, who), req), spot) in order.iter().zip(&requests).zip(spots) {
        match *who {
            Who::Node(i) => g.nodes[i].label_at = spot,
            Who::Edge(i) => g.edges[i].label_at = spot.map(|p| (labels::fit(&req.text), p)),
        }
    }
}

#[cfg(test)]
mod tests;
