//! The fleet graph's promises: bounded, deterministic, alert and new edges
//! kept, labels never overlapping, at 10 hosts and at 10,000.

use super::*;
use leptos::prelude::RenderHtml;
use proptest::prelude::*;
use std::net::Ipv4Addr;
use vigil_proto::query::{SensorState, Severity, TriageState};

const DAY: u64 = 24 * 3600 * 1_000_000_000;
const NOW: u64 = 1_795_442_585_000_000_000;

fn host(i: u64) -> HostSummary {
    let roles = ["ws-hr", "ws-eng", "web-prod", "db", "jump", "build"];
    HostSummary {
        id: HostId(0x1000 + i),
        hostname: format!("{}-{i:05}", roles[(i % 6) as usize]),
        os: "Debian 12".into(),
        addrs: vec![IpAddr::V4(Ipv4Addr::new(
            10,
            16,
            (i / 200) as u8,
            (i % 200) as u8,
        ))],
        sensor_version: "0.6.0".into(),
        enrolled_ns: 0,
        last_seen_ns: NOW,
        state: SensorState::Online,
        cpu_pct: 0.5,
        rss_bytes: 1 << 24,
        events_total: 100,
        lost_total: 0,
        isolated: false,
        open_alerts: 0,
        warnings: Vec::new(),
    }
}

fn edge(src: u64, dst: u64, port: u16, first_seen_ns: u64) -> EdgeRecord {
    EdgeRecord {
        src: HostId(0x1000 + src),
        dst: HostId(0x1000 + dst),
        port,
        user: Some("svc".into()),
        first_seen_ns,
        last_seen_ns: NOW,
        count: 3 + src % 7,
    }
}

fn incident(id: u64, path: &[u64]) -> AlertRecord {
    AlertRecord {
        id,
        created_ns: NOW - 3600,
        severity: Severity::Critical,
        score: 9.0,
        title: "Lateral movement".into(),
        path: path.iter().map(|i| HostId(0x1000 + i)).collect(),
        users: vec!["svc".into()],
        techniques: vec!["T1021.004".into()],
        summary: String::new(),
        deviations: Vec::new(),
        evidence: Vec::new(),
        state: TriageState::New,
        assignee: None,
        incident_id: Some(id),
        model_version: None,
        ports: vec![22],
        processes: Vec::new(),
        suppressed_by: None,
    }
}

/// `n` hosts, each talking to a few others long before the window, a
/// handful of new edges and one incident over hosts 1 → 2 → 3.
fn fleet(n: u64) -> (Vec<HostSummary>, Vec<EdgeRecord>, Vec<AlertRecord>) {
    let hosts: Vec<HostSummary> = (0..n).map(host).collect();
    let mut edges = Vec::new();
    for i in 0..n {
        for k in [1, 7, 31] {
            edges.push(edge(
                i,
                (i * k + 13) % n,
                [443, 22, 445][(k % 3) as usize],
                NOW - 30 * DAY,
            ));
        }
    }
    for i in 0..5.min(n) {
        edges.push(edge(i + 4, (i * 97 + 5) % n, 3389, NOW - 3600));
    }
    edges.push(edge(1, 2, 22, NOW - 7200));
    edges.push(edge(2, 3, 22, NOW - 3000));
    edges.retain(|e| e.src != e.dst);
    (hosts, edges, vec![incident(101, &[1, 2, 3])])
}

fn graph(n: u64) -> FleetGraph {
    let (hosts, edges, alerts) = fleet(n);
    build(
        &Input {
            hosts: &hosts,
            edges: &edges,
            alerts: &alerts,
            since_ns: NOW - DAY,
            pinned: &HashSet::new(),
        },
        &Limits::default(),
    )
}

fn assert_labels_apart(g: &FleetGraph) {
    let boxes: Vec<labels::Rect> = g
        .nodes
        .iter()
        .filter_map(|n| n.label_at.map(|p| p.rect))
        .chain(
            g.edges
                .iter()
                .filter_map(|e| e.label_at.as_ref().map(|l| l.1.rect)),
        )
        .collect();
    for (i, a) in boxes.iter().enumerate() {
        assert!(
            a.x >= 0.0 && a.y >= 0.0 && a.x + a.w <= layout::WIDTH && a.y + a.h <= layout::HEIGHT
        );
        for b in &boxes[i + 1..] {
            assert!(!a.overlaps(b), "{a:?} overlaps {b:?}");
        }
    }
}

fn host_node_of(g: &FleetGraph, i: u64) -> Option<&Node> {
    g.nodes
        .iter()
        .find(|n| n.kind == NodeKind::Host(HostId(0x1000 + i)))
}

/// More hosts behind alerts than the focus share: every one is still drawn
/// by name (up to the host cap), none folded into its role group.
#[test]
fn hosts_behind_alerts_go_beyond_the_focus_share() {
    let (hosts, mut edges, mut alerts) = fleet(10_000);
    let limits = Limits::default();
    let pairs = (limits.focus_hosts as u64) / 2 + 10; // 80 hosts > 60
    for p in 0..pairs {
        let (a, b) = (5_000 + 2 * p, 5_001 + 2 * p);
        edges.push(edge(a, b, 22, NOW - 600));
        alerts.push(incident(1_000 + p, &[a, b]));
    }
    let input = Input {
        hosts: &hosts,
        edges: &edges,
        alerts: &alerts,
        since_ns: NOW - DAY,
        pinned: &HashSet::new(),
    };
    let g = build(&input, &limits);
    let named = (0..pairs)
        .flat_map(|p| [5_000 + 2 * p, 5_001 + 2 * p])
        .filter(|h| host_node_of(&g, *h).is_some())
        .count();
    assert_eq!(named as u64, 2 * pairs, "alert hosts drawn by name");
    assert!(2 * pairs as usize > limits.focus_hosts);
    assert!(g.nodes.len() <= limits.max_nodes());
    assert_labels_apart(&g);
}

#[test]
fn the_incident_is_drawn_and_labelled_at_every_size() {
    for n in [10, 60, 1_000, 10_000] {
        let g = graph(n);
        assert!(
            g.nodes.len() <= Limits::default().max_nodes(),
            "{n}: {} nodes",
            g.nodes.len()
        );
        assert!(g.edges.len() <= Limits::default().edges);
        for h in [1, 2, 3] {
            let node = host_node_of(&g, h).unwrap_or_else(|| panic!("{n}: host {h} drawn"));
            assert!(
                node.alert && node.label_at.is_some(),
                "{n}: host {h} labelled"
            );
        }
        let hops: Vec<&Edge> = g.edges.iter().filter(|e| e.alert).collect();
        assert_eq!(hops.len(), 2, "{n}: two hops");
        assert!(hops.iter().all(|e| e.href.contains("port=22")), "{n}");
        assert_eq!(g.hosts_in_window, n as usize);
        assert_labels_apart(&g);
    }
}

#[test]
fn routine_traffic_is_folded_into_groups_at_scale() {
    let g = graph(10_000);
    let groups: Vec<&Node> = g
        .nodes
        .iter()
        .filter(|n| matches!(n.kind, NodeKind::Group { .. }))
        .collect();
    assert!(!groups.is_empty());
    let grouped: usize = groups
        .iter()
        .map(|n| match n.kind {
            NodeKind::Group { hosts, .. } => hosts,
            NodeKind::Host(_) | NodeKind::Fan { .. } => 0,
        })
        .sum();
    assert_eq!(grouped, g.hosts_grouped);
    assert!(g.hosts_grouped > 9_000);
    assert!(groups.iter().any(|n| n.label.starts_with("ws-hr (")));
    assert!(g.edges.iter().any(|e| e.edges > 1), "aggregated edges");
}

#[test]
fn small_fleets_draw_every_host() {
    let g = graph(10);
    assert_eq!(g.hosts_grouped, 0);
    assert!(g.nodes.iter().all(|n| matches!(n.kind, NodeKind::Host(_))));
}

#[test]
fn same_input_same_picture() {
    assert_eq!(graph(300), graph(300));
}

#[test]
fn svg_is_links_and_titles() {
    let html = render(&graph(60)).to_html();
    assert!(html.contains("class=\"graph fleet\""), "{}", &html[..300]);
    assert!(html.contains("class=\"edge alert new"));
    assert!(html.contains("href=\"/hosts/0000000000001002\""));
    assert!(html.contains("href=\"/hunt?host=ws-eng-00001"));
    assert!(!html.contains("<script") && !html.contains("style="));
}

/// `fleet(n)` plus a scanner (host 0) sweeping every other host with
/// connections first seen in the window, one of them (0 → 5, port 3389) a
/// hop of a second incident.
fn scanned_fleet(n: u64) -> (Vec<HostSummary>, Vec<EdgeRecord>, Vec<AlertRecord>) {
    let (hosts, mut edges, mut alerts) = fleet(n);
    edges.retain(|e| e.src != HostId(0x1000));
    for dst in 1..n {
        edges.push(edge(
            0,
            dst,
            [22, 445, 3389][(dst % 3) as usize],
            NOW - 1800,
        ));
    }
    alerts.push(AlertRecord {
        ports: vec![3389],
        ..incident(102, &[0, 5])
    });
    (hosts, edges, alerts)
}

#[test]
fn a_scanner_is_one_fan_out_edge_and_the_incident_stands_out() {
    for n in [60, 1_000] {
        let (hosts, edges, alerts) = scanned_fleet(n);
        let input = Input {
            hosts: &hosts,
            edges: &edges,
            alerts: &alerts,
            since_ns: NOW - DAY,
            pinned: &HashSet::new(),
        };
        let g = build(&input, &Limits::default());
        let fans: Vec<(usize, &Node)> = g
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n.kind, NodeKind::Fan { .. }))
            .collect();
        assert_eq!(fans.len(), 1, "{n}: one fan-out node");
        let (fan_at, fan) = fans[0];
        // Every target but the incident's hop (0 → 5) is folded.
        assert_eq!(fan.label, format!("{} hosts", n - 2), "{n}");
        let scanner = g
            .nodes
            .iter()
            .position(|x| x.kind == NodeKind::Host(HostId(0x1000)))
            .expect("the scanner is drawn");
        let from_scanner: Vec<&Edge> = g.edges.iter().filter(|e| e.from == scanner).collect();
        assert_eq!(from_scanner.len(), 2, "{n}: the fan-out edge and the hop");
        assert!(from_scanner
            .iter()
            .any(|e| e.to == fan_at && e.edges == n as usize - 2 && !e.alert));
        assert!(
            g.edges[..3].iter().all(|e| e.alert),
            "{n}: alert hops first"
        );
        assert_eq!(g.edges.iter().filter(|e| e.alert).count(), 3, "{n}");
        for h in [1, 2, 3, 5] {
            let node = host_node_of(&g, h).unwrap_or_else(|| panic!("{n}: host {h}"));
            assert!(node.alert && node.label_at.is_some(), "{n}: host {h}");
        }
        // The sweep pulled no target in: the same hosts are drawn one by
        // one as without it.
        let unswept: Vec<EdgeRecord> = edges
            .iter()
            .filter(|e| e.src != HostId(0x1000) || e.dst == HostId(0x1005))
            .cloned()
            .collect();
        let drawn = |g: &FleetGraph| -> BTreeSet<HostId> {
            g.nodes
                .iter()
                .filter_map(|x| match x.kind {
                    NodeKind::Host(h) => Some(h),
                    _ => None,
                })
                .collect()
        };
        let without = build(
            &Input {
                edges: &unswept,
                ..input
            },
            &Limits::default(),
        );
        assert_eq!(drawn(&g), drawn(&without), "{n}");
        assert!(fan.title.contains("ws-hr-00000 reaches"), "{}", fan.title);
        assert_labels_apart(&g);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn bounded_deterministic_and_labels_apart(
        n in 2u64..400,
        pairs in prop::collection::vec((0u64..400, 0u64..400, 0u16..4, any::<bool>()), 0..600),
        limit_hosts in 1usize..60,
    ) {
        let hosts: Vec<HostSummary> = (0..n).map(host).collect();
        let edges: Vec<EdgeRecord> = pairs
            .iter()
            .filter(|(a, b, _, _)| a % n != b % n)
            .map(|(a, b, p, new)| edge(a % n, b % n, [22, 443, 445, 3389][*p as usize], if *new { NOW } else { NOW - 30 * DAY }))
            .collect();
        let limits = Limits { focus_hosts: limit_hosts / 2 + 1, hosts: limit_hosts, groups: 12, edges: 150, fan_out: 8, fans: 3 };
        let input = Input { hosts: &hosts, edges: &edges, alerts: &[], since_ns: NOW - DAY, pinned: &HashSet::new() };
        let g = build(&input, &limits);
        prop_assert!(g.nodes.len() <= limits.max_nodes());
        prop_assert!(g.edges.len() <= limits.edges);
        prop_assert_eq!(&g, &build(&input, &limits));
        assert_labels_apart(&g);
        for e in &g.edges {
            prop_assert!(e.from < g.nodes.len() && e.to < g.nodes.len() && e.from != e.to);
        }
    }
}
