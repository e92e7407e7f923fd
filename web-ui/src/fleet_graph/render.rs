//! The fleet graph as server-rendered SVG: geometry in attributes, paint in
//! the stylesheet (CSP-clean, no script). Every edge and node is a link with
//! a hover `<title>`; labels are drawn only where [`super::labels`] found room.

use super::{Edge, FleetGraph, Node, NodeKind};
use crate::fleet_graph::layout::{HEIGHT, WIDTH};
use leptos::prelude::*;

fn f(v: f64) -> String {
    format!("{v:.1}")
}

fn edge_class(e: &Edge) -> String {
    let mut c = String::from("edge");
    if e.alert {
        c.push_str(" alert");
    }
    if e.new {
        c.push_str(" new");
    }
    if e.edges > 1 {
        c.push_str(" agg");
    }
    // Stroke width by volume: w1 … w4.
    let w = 1 + (e.events.max(1) as f64).log10().clamp(0.0, 3.0) as u8;
    c.push_str(&format!(" w{w}"));
    c
}

fn node_class(n: &Node) -> &'static str {
    match (&n.kind, n.alert, n.new) {
        (NodeKind::Group { .. }, true, _) => "gnode group alert",
        (NodeKind::Group { .. }, false, true) => "gnode group new",
        (NodeKind::Group { .. }, false, false) => "gnode group",
        (NodeKind::Host(_), true, _) => "gnode alert",
        (NodeKind::Host(_), false, true) => "gnode new",
        (NodeKind::Host(_), false, false) => "gnode",
        // Its one edge carries the colour; the node reads as a group.
        (NodeKind::Fan { .. }, _, _) => "gnode group fan",
    }
}

fn edge_view(g: &FleetGraph, e: &Edge) -> impl IntoView {
    let (a, b) = (&g.nodes[e.from], &g.nodes[e.to]);
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let len = (dx * dx + dy * dy).sqrt().max(1.0);
    // Start and stop at the circles' rims so the arrowhead shows. The ends'
    // node links ride along (data-from/-to): two nodes drawn close together
    // make the geometry alone ambiguous for anything reading the picture.
    let (x1, y1) = (a.x + dx / len * a.r, a.y + dy / len * a.r);
    let (x2, y2) = (b.x - dx / len * (b.r + 3.0), b.y - dy / len * (b.r + 3.0));
    let label = e.label_at.as_ref().map(|(text, p)| {
        view! { <text class="glabel edgelabel" x=f(p.x) y=f(p.y)>{text.clone()}</text> }
    });
    view! {
        <a href=e.href.clone()>
            <title>{e.title.clone()}</title>
            <line class=edge_class(e) x1=f(x1) y1=f(y1) x2=f(x2) y2=f(y2)
                data-from=a.href.clone() data-to=b.href.clone()></line>
            {label}
        </a>
    }
}

fn node_view(n: &Node) -> impl IntoView {
    let label = n.label_at.map(|p| {
        view! { <text class="glabel" x=f(p.x) y=f(p.y)>{super::labels::fit(&n.label)}</text> }
    });
    view! {
        <a href=n.href.clone()>
            <title>{n.title.clone()}</title>
            <circle class=node_class(n) cx=f(n.x) cy=f(n.y) r=f(n.r)></circle>
            {label}
        </a>
    }
}

/// The graph as an `<svg class="graph fleet">`.
pub fn render(g: &FleetGraph) -> AnyView {
    // Routine edges first so alert and new edges are drawn on top.
    let mut order: Vec<&Edge> = g.edges.iter().collect();
    order.sort_by_key(|e| (e.alert, e.new));
    let edges = order.into_iter().map(|e| edge_view(g, e)).collect_view();
    let nodes = g.nodes.iter().map(node_view).collect_view();
    view! {
        <svg class="graph fleet" viewBox=format!("0 0 {WIDTH} {HEIGHT}") role="img">
            <defs>
                <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="8" markerHeight="8" orient="auto">
                    <path class="arrowhead" d="M0,0 L10,5 L0,10 z"></path>
                </marker>
            </defs>
            <g class="edges">{edges}</g>
            <g class="nodes">{nodes}</g>
        </svg>
    }
    .into_any()
}
