//! Charts and graphs drawn as SVG on the server. Only geometry attributes
//! and classes: colours and strokes come from the stylesheet, so the CSP
//! needs no inline styles. Labels are text nodes, escaped by Leptos.

use leptos::prelude::*;

fn f(v: f64) -> String {
    format!("{v:.1}")
}

/// A series of per-window values against the host's expected band.
/// Points outside the band are marked. `labels` are shown under every
/// `label_every`-th window.
pub fn band_chart(
    values: &[f64],
    band: (f64, f64),
    labels: &[String],
    label_every: usize,
) -> AnyView {
    let (w, h, left, bottom, top) = (720.0, 190.0, 44.0, 22.0, 10.0);
    let n = values.len().max(2);
    let max = values.iter().copied().fold(band.1, f64::max).max(1.0) * 1.15;
    let x = move |i: usize| left + (w - left - 8.0) * i as f64 / (n - 1) as f64;
    let y = move |v: f64| top + (h - top - bottom) * (1.0 - v / max);
    let band_rect = (y(band.1), (y(band.0) - y(band.1)).max(1.0));
    let line: String = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{},{} ", f(x(i)), f(y(*v))))
        .collect();
    let outliers = values
        .iter()
        .enumerate()
        .filter(|(_, v)| **v > band.1 || **v < band.0)
        .map(|(i, v)| view! { <circle class="out" cx=f(x(i)) cy=f(y(*v)) r="4"></circle> })
        .collect_view();
    let xlabels = labels
        .iter()
        .enumerate()
        .filter(|(i, _)| label_every > 0 && i % label_every == 0)
        .map(|(i, l)| view! { <text class="axis mid" x=f(x(i)) y=f(h - 6.0)>{l.clone()}</text> })
        .collect_view();
    let grid = [0.0, 0.5, 1.0]
        .into_iter()
        .map(|frac| {
            let v = max * frac;
            view! {
                <line class="grid" x1=f(left) x2=f(w - 8.0) y1=f(y(v)) y2=f(y(v))></line>
                <text class="axis end" x=f(left - 6.0) y=f(y(v) + 4.0)>{axis_label(v, max)}</text>
            }
        })
        .collect_view();
    view! {
        <svg class="chart" viewBox=format!("0 0 {w} {h}") role="img">
            {grid}
            <rect class="band" x=f(left) width=f(w - left - 8.0) y=f(band_rect.0) height=f(band_rect.1)></rect>
            <polyline class="series" points=line></polyline>
            {outliers}
            {xlabels}
        </svg>
    }
    .into_any()
}

/// A horizontal usage bar (`used` of `total`), e.g. disk against retention.
pub fn usage_bar(used: f64, total: f64) -> AnyView {
    let frac = if total > 0.0 {
        (used / total).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let class = if frac > 0.9 { "fill hot" } else { "fill" };
    view! {
        <svg class="bar" viewBox="0 0 200 10" preserveAspectRatio="none" role="img">
            <rect class="track" x="0" y="0" width="200" height="10"></rect>
            <rect class=class x="0" y="0" width=f(200.0 * frac) height="10"></rect>
        </svg>
    }
    .into_any()
}

/// One node of a drawn graph.
#[derive(Debug, Clone)]
pub struct Node {
    pub label: String,
    pub sub: String,
    pub href: String,
    /// Highlighted (part of the incident, has a new edge…).
    pub hot: bool,
}

/// The lateral-movement path: nodes left to right, one arrow per hop.
pub fn path_graph(nodes: &[Node], hops: &[String]) -> AnyView {
    let n = nodes.len().max(1);
    let spacing = 230.0;
    let w = 120.0 + spacing * (n - 1) as f64;
    let cx = |i: usize| 60.0 + spacing * i as f64;
    let arrows = (1..n)
        .map(|i| {
            let label = hops.get(i - 1).cloned().unwrap_or_default();
            view! {
                <line class="hop" x1=f(cx(i - 1) + 30.0) y1="60" x2=f(cx(i) - 34.0) y2="60"></line>
                <text class="hoplabel mid" x=f((cx(i - 1) + cx(i)) / 2.0) y="48">{label}</text>
            }
        })
        .collect_view();
    let circles = nodes
        .iter()
        .enumerate()
        .map(|(i, nd)| {
            view! {
                <a href=nd.href.clone()>
                    <circle class={if nd.hot { "node hot" } else { "node" }} cx=f(cx(i)) cy="60" r="28"></circle>
                    <text class="nodeidx mid" x=f(cx(i)) y="66">{((b'A' + (i % 26) as u8) as char).to_string()}</text>
                    <text class="nodelabel mid" x=f(cx(i)) y="110">{nd.label.clone()}</text>
                    <text class="nodesub mid" x=f(cx(i)) y="126">{nd.sub.clone()}</text>
                </a>
            }
        })
        .collect_view();
    view! {
        <svg class="graph path" viewBox=format!("0 0 {w} 140") role="img">
            <defs>
                <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
                    <path class="arrowhead" d="M0,0 L10,5 L0,10 z"></path>
                </marker>
            </defs>
            {arrows}
            {circles}
        </svg>
    }
    .into_any()
}

/// A grid label with as many decimals as the scale needs (a chart whose top
/// is 1.15 must not read "0, 1, 1").
fn axis_label(v: f64, max: f64) -> String {
    if max < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod axis_tests {
    use super::axis_label;

    #[test]
    fn small_scales_keep_a_decimal() {
        let max = 1.15;
        let labels: Vec<String> = [0.0, 0.5, 1.0]
            .iter()
            .map(|f| axis_label(max * f, max))
            .collect();
        assert_eq!(labels, ["0.0", "0.6", "1.1"]);
        assert_eq!(axis_label(57.5, 115.0), "58");
    }
}
