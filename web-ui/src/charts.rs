//! Trend charts drawn on the server as SVG: a line chart and a stacked bar
//! chart with axes, units and a hover `<title>` on every point and bar.
//! Pure (values in, markup out); colours come from the stylesheet by series
//! class, so the CSP needs no inline style. Units include durations, so the
//! same code draws MTTD/MTTR and event → alert latency.

use crate::format::compact;
use leptos::prelude::*;

// Sized for a third of the page: text stays legible once scaled down.
const W: f64 = 480.0;
const H: f64 = 210.0;
const LEFT: f64 = 50.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 24.0;
/// Half the width of a date label ("05-27" at the axis font size).
const LABEL_HALF_WIDTH: f64 = 18.0;

/// What the values measure, for axis labels and titles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Plain counts (`1.2k`).
    Count,
    /// A rate per second (`1.2k/s`).
    PerSecond,
    /// Nanoseconds, shown as `850 ms`, `4.2 s`, `3.5 min`, `2.0 h`, `1.5 d`.
    DurationNs,
}

impl Unit {
    /// A value as an axis or a title shows it.
    pub fn format(self, v: f64) -> String {
        let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
        match self {
            Unit::Count if v < 10.0 && v.fract() != 0.0 => format!("{v:.1}"),
            Unit::Count => compact(v.round() as u64),
            Unit::PerSecond if v < 10.0 && v.fract() != 0.0 => format!("{v:.1}/s"),
            Unit::PerSecond => format!("{}/s", compact(v.round() as u64)),
            Unit::DurationNs => duration(v),
        }
    }
}

fn duration(ns: f64) -> String {
    let s = ns / 1e9;
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{:.1} min", s / 60.0)
    } else if s < 86_400.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86_400.0)
    }
}

/// One named series; `class` picks its colour in the stylesheet.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub class: String,
    pub values: Vec<f64>,
}

/// The x axis: one label per bucket, every `every`-th shown under the axis
/// (all of them in titles).
#[derive(Debug, Clone, PartialEq)]
pub struct XAxis {
    pub labels: Vec<String>,
    pub every: usize,
}

/// The top of the y axis: the next 1, 2 or 5 × 10ⁿ at or above `v` (1 for
/// an empty chart), so gridlines fall on round values.
pub fn nice_max(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|c| *c >= v * 0.999_999)
        .unwrap_or(10.0 * p)
}

/// Sum of every series per bucket: what a stacked bar's top shows.
pub fn stack_totals(series: &[Series]) -> Vec<f64> {
    let n = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    (0..n)
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0.0))
                .sum()
        })
        .collect()
}

fn f(v: f64) -> String {
    format!("{v:.1}")
}

fn frame(max: f64, unit: Unit, x: &XAxis, xpos: &dyn Fn(usize) -> f64) -> AnyView {
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - v / max);
    let grid = [0.0, 0.25, 0.5, 0.75, 1.0]
        .into_iter()
        .map(|fr| {
            let v = max * fr;
            view! {
                <line class="grid" x1=f(LEFT) x2=f(W - RIGHT) y1=f(y(v)) y2=f(y(v))></line>
                <text class="taxis end" x=f(LEFT - 6.0) y=f(y(v) + 4.0)>{unit.format(v)}</text>
            }
        })
        .collect_view();
    let xlabels = x
        .labels
        .iter()
        .enumerate()
        .filter(|(i, _)| x.every > 0 && i % x.every == 0)
        .map(|(i, l)| {
            // a label centred on the last bucket would run past the edge
            // and be cut ("05-2"): end it at the edge instead
            let (class, at) = if xpos(i) + LABEL_HALF_WIDTH > W {
                ("taxis end", W - 1.0)
            } else {
                ("taxis mid", xpos(i))
            };
            view! { <text class=class x=f(at) y=f(H - 6.0)>{l.clone()}</text> }
        })
        .collect_view();
    view! {
        {grid}
        <line class="axisline" x1=f(LEFT) x2=f(W - RIGHT) y1=f(H - BOTTOM) y2=f(H - BOTTOM)></line>
        {xlabels}
    }
    .into_any()
}

fn legend(series: &[Series]) -> AnyView {
    legend_of(series.iter().map(|s| (s.name.as_str(), s.class.as_str())))
}

fn legend_of<'a>(series: impl Iterator<Item = (&'a str, &'a str)>) -> AnyView {
    let items = series
        .map(|(name, class)| view! { <span class=format!("key {class}")>{name.to_owned()}</span> })
        .collect_view();
    view! { <div class="chartkeys">{items}</div> }.into_any()
}

/// One bucket of a [`GappedSeries`]: a value, or no value and why.
#[derive(Debug, Clone, PartialEq)]
pub enum Point {
    /// A plotted value.
    Value(f64),
    /// Nothing to plot (e.g. "no incident" that day): the line breaks
    /// there and the bucket's hover title gives this reason, so an empty
    /// day never reads as a zero.
    Gap(String),
}

/// A line-chart series whose buckets may be empty; `class` picks its colour.
#[derive(Debug, Clone, PartialEq)]
pub struct GappedSeries {
    pub name: String,
    pub class: String,
    pub points: Vec<Point>,
}

/// Lines over the buckets, one per series, with a dot per point that
/// carries its value in a hover title.
pub fn line_chart(x: &XAxis, series: &[Series], unit: Unit) -> AnyView {
    let gapped: Vec<GappedSeries> = series
        .iter()
        .map(|s| GappedSeries {
            name: s.name.clone(),
            class: s.class.clone(),
            points: s.values.iter().map(|v| Point::Value(*v)).collect(),
        })
        .collect();
    gapped_line_chart(x, &gapped, unit)
}

/// [`line_chart`] over series with empty buckets: each run of values is
/// its own polyline (no segment crosses a gap, and no gap is drawn as 0),
/// and a bucket where any series has a gap gets a faint full-height band
/// whose hover title names the reasons.
pub fn gapped_line_chart(x: &XAxis, series: &[GappedSeries], unit: Unit) -> AnyView {
    let n = series
        .iter()
        .map(|s| s.points.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let value = |p: &Point| match p {
        Point::Value(v) if v.is_finite() => Some(*v),
        _ => None,
    };
    let max = nice_max(
        series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(value))
            .fold(0.0, f64::max),
    );
    let xpos = move |i: usize| LEFT + (W - LEFT - RIGHT) * i as f64 / (n - 1) as f64;
    let y = move |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - v.max(0.0) / max);
    let when = |i: usize| x.labels.get(i).cloned().unwrap_or_default();
    let bands = gap_bands(series, n, &xpos, &when);
    let lines = series
        .iter()
        .map(|s| {
            let runs = s
                .points
                .split(|p| value(p).is_none())
                .scan(0, |start, run| {
                    let first = *start;
                    *start += run.len() + 1;
                    Some((first, run))
                })
                .filter(|(_, run)| run.len() >= 2)
                .map(|(first, run)| {
                    let points: String = run
                        .iter()
                        .enumerate()
                        .filter_map(|(k, p)| value(p).map(|v| (first + k, v)))
                        .map(|(i, v)| format!("{},{} ", f(xpos(i)), f(y(v))))
                        .collect();
                    view! { <polyline class=format!("series {}", s.class) points=points></polyline> }
                })
                .collect_view();
            let dots = s
                .points
                .iter()
                .enumerate()
                .filter_map(|(i, p)| value(p).map(|v| (i, v)))
                .map(|(i, v)| {
                    view! {
                        <g>
                            <title>{format!("{} · {}: {}", when(i), s.name, unit.format(v))}</title>
                            <circle class=format!("pt {}", s.class) cx=f(xpos(i)) cy=f(y(v)) r="3"></circle>
                        </g>
                    }
                })
                .collect_view();
            view! { {runs} {dots} }
        })
        .collect_view();
    view! {
        <svg class="chart trend" viewBox=format!("0 0 {W} {H}") role="img">
            {frame(max, unit, x, &xpos)}
            {bands}
            {lines}
        </svg>
        {legend_of(series.iter().map(|s| (s.name.as_str(), s.class.as_str())))}
    }
    .into_any()
}

/// One hoverable band per bucket where a series has no value; the title
/// says why ("05-12: no incident", or per series when reasons differ).
fn gap_bands(
    series: &[GappedSeries],
    n: usize,
    xpos: &dyn Fn(usize) -> f64,
    when: &dyn Fn(usize) -> String,
) -> AnyView {
    let width = ((W - LEFT - RIGHT) / (n - 1) as f64 * 0.6).min(24.0);
    (0..n)
        .filter_map(|i| {
            let gaps: Vec<(&str, &str)> = series
                .iter()
                .filter_map(|s| match s.points.get(i) {
                    Some(Point::Gap(why)) => Some((s.name.as_str(), why.as_str())),
                    Some(Point::Value(v)) if !v.is_finite() => Some((s.name.as_str(), "no value")),
                    _ => None,
                })
                .collect();
            if gaps.is_empty() {
                return None;
            }
            let all_same = gaps.len() == series.len() && gaps.iter().all(|g| g.1 == gaps[0].1);
            let title = if all_same {
                format!("{}: {}", when(i), gaps[0].1)
            } else {
                let each: Vec<String> = gaps.iter().map(|(n, w)| format!("{n}: {w}")).collect();
                format!("{} · {}", when(i), each.join(" · "))
            };
            Some(view! {
                <g class="gap">
                    <title>{title}</title>
                    <rect class="gapband" x=f(xpos(i) - width / 2.0) width=f(width) y=f(TOP) height=f(H - TOP - BOTTOM)></rect>
                </g>
            })
        })
        .collect_view()
        .into_any()
}

/// Bars per bucket, the series stacked bottom to top in order; each
/// segment's title names its bucket, series and value, and the bar's total.
pub fn stacked_bars(x: &XAxis, series: &[Series], unit: Unit) -> AnyView {
    let totals = stack_totals(series);
    let n = totals.len().max(1);
    let max = nice_max(totals.iter().copied().fold(0.0, f64::max));
    let slot = (W - LEFT - RIGHT) / n as f64;
    let xpos = move |i: usize| LEFT + slot * (i as f64 + 0.5);
    let scale = (H - TOP - BOTTOM) / max;
    let bars = (0..n)
        .map(|i| {
            let when = x.labels.get(i).cloned().unwrap_or_default();
            let mut base = H - BOTTOM;
            let segs = series
                .iter()
                .filter_map(|s| {
                    let v = s.values.get(i).copied().unwrap_or(0.0).max(0.0);
                    if v <= 0.0 {
                        return None;
                    }
                    let h = v * scale;
                    base -= h;
                    let title = format!(
                        "{when} · {}: {} (total {})",
                        s.name,
                        unit.format(v),
                        unit.format(totals[i])
                    );
                    Some(view! {
                        <g>
                            <title>{title}</title>
                            <rect class=format!("seg {}", s.class) x=f(xpos(i) - slot * 0.35) width=f(slot * 0.7) y=f(base) height=f(h)></rect>
                        </g>
                    })
                })
                .collect_view();
            view! { <g class="bar">{segs}</g> }
        })
        .collect_view();
    view! {
        <svg class="chart trend" viewBox=format!("0 0 {W} {H}") role="img">
            {frame(max, unit, x, &xpos)}
            {bars}
        </svg>
        {legend(series)}
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(n: usize) -> XAxis {
        XAxis {
            labels: (0..n).map(|i| format!("d{i}")).collect(),
            every: 2,
        }
    }

    #[test]
    fn round_axis_tops() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.0), 5.0);
        assert_eq!(nice_max(10.0), 10.0);
        assert_eq!(nice_max(11.0), 20.0);
        assert_eq!(nice_max(631_713.0), 1_000_000.0);
        assert_eq!(nice_max(f64::NAN), 1.0);
    }

    #[test]
    fn units() {
        assert_eq!(Unit::Count.format(1_200.0), "1.2k");
        assert_eq!(Unit::PerSecond.format(2.5), "2.5/s");
        assert_eq!(Unit::PerSecond.format(52_000.0), "52.0k/s");
        assert_eq!(Unit::DurationNs.format(850e6), "850 ms");
        assert_eq!(Unit::DurationNs.format(210e9), "3.5 min");
        assert_eq!(Unit::DurationNs.format(2.0 * 86_400e9), "2.0 d");
    }

    #[test]
    fn stacked_bars_add_up_and_carry_titles() {
        let series = vec![
            Series {
                name: "critical".into(),
                class: "s-critical".into(),
                values: vec![1.0, 0.0, 2.0],
            },
            Series {
                name: "low".into(),
                class: "s-low".into(),
                values: vec![4.0, 3.0],
            },
        ];
        assert_eq!(stack_totals(&series), vec![5.0, 3.0, 2.0]);
        let html = stacked_bars(&axis(3), &series, Unit::Count).to_html();
        assert_eq!(
            html.matches("<rect").count(),
            4,
            "zero segments are not drawn"
        );
        assert_eq!(html.matches("<title>").count(), 4);
        assert!(html.contains("d0 · critical: 1 (total 5)"), "{html}");
        assert!(html.contains(">d2<"));
    }

    #[test]
    fn a_label_on_the_last_bucket_ends_at_the_edge_instead_of_being_cut() {
        let series = vec![Series {
            name: "events/s".into(),
            class: "s-events".into(),
            values: vec![1.0; 7],
        }];
        let x = XAxis {
            labels: (0..7).map(|i| format!("05-2{i}")).collect(),
            every: 1,
        };
        let html = line_chart(&x, &series, Unit::PerSecond).to_html();
        let last = format!(
            "x=\"{}\" y=\"{}\" class=\"taxis end\">05-26<",
            f(W - 1.0),
            f(H - 6.0)
        );
        assert!(html.contains(&last), "{html}");
        assert!(
            html.contains("class=\"taxis mid\""),
            "inner labels stay centred"
        );
    }

    #[test]
    fn line_chart_has_a_dot_per_point() {
        let series = vec![Series {
            name: "events/s".into(),
            class: "s-events".into(),
            values: vec![0.0, 12.0, 8.5],
        }];
        let html = line_chart(&axis(3), &series, Unit::PerSecond).to_html();
        assert_eq!(html.matches("<circle").count(), 3);
        assert!(html.contains("d1 · events/s: 12/s"));
        assert!(!html.contains("style="));
    }

    #[test]
    fn gaps_break_the_line_and_say_why() {
        let series = vec![
            GappedSeries {
                name: "MTTD".into(),
                class: "s-mttd".into(),
                points: vec![
                    Point::Value(2e9),
                    Point::Value(4e9),
                    Point::Gap("no incident".into()),
                    Point::Value(3e9),
                    Point::Value(5e9),
                ],
            },
            GappedSeries {
                name: "time to close".into(),
                class: "s-close".into(),
                points: vec![
                    Point::Gap("not yet".into()),
                    Point::Value(60e9),
                    Point::Gap("no incident".into()),
                    Point::Value(90e9),
                    Point::Gap("not yet".into()),
                ],
            },
        ];
        let html = gapped_line_chart(&axis(5), &series, Unit::DurationNs).to_html();
        // MTTD: two runs of two points; close: two lone points, no line.
        assert_eq!(html.matches("<polyline").count(), 2, "{html}");
        assert_eq!(html.matches("<circle").count(), 6, "one dot per value only");
        // No dot sits on the zero line: an empty day is not a zero.
        let zero_y = format!("cy=\"{}\"", f(H - BOTTOM));
        assert!(!html.contains(&zero_y), "{html}");
        // Every polyline stays left or right of the gap at bucket 2.
        let gap_x = LEFT + (W - LEFT - RIGHT) * 2.0 / 4.0;
        for line in html.split("points=\"").skip(1) {
            let xs: Vec<f64> = line[..line.find('"').unwrap()]
                .split_whitespace()
                .map(|p| p.split(',').next().unwrap().parse().unwrap())
                .collect();
            assert!(xs.iter().all(|x| *x < gap_x) || xs.iter().all(|x| *x > gap_x));
        }
        assert_eq!(html.matches("class=\"gapband\"").count(), 3);
        assert!(html.contains("<title>d2: no incident</title>"), "{html}");
        assert!(html.contains("d0 · time to close: not yet"), "{html}");
        assert!(html.contains("d1 · time to close: 1.0 min"));
    }
}
