//! A deterministic force-directed layout (Fruchterman–Reingold with a fixed
//! cooling schedule), computed on the server.
//!
//! Stable between refreshes: each node starts where a hash of its own key
//! puts it (never where its index does), the schedule is fixed and nothing
//! reads a clock or a random source, so the same graph is drawn the same
//! way every time and adding one host only nudges its neighbours instead of
//! reshuffling the picture. Cost is `O(n² · ITERATIONS)`; callers cap `n`.

/// Drawing width (SVG user units).
pub const WIDTH: f64 = 1000.0;
/// Drawing height.
pub const HEIGHT: f64 = 680.0;
/// Space kept free along every side.
pub const MARGIN: f64 = 30.0;
const ITERATIONS: usize = 120;
/// Gap kept between two circles after the overlap pass.
const GAP: f64 = 6.0;

/// What the layout needs to know about a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayoutNode {
    /// Hash of the node's stable key: its starting point.
    pub seed: u64,
    /// Circle radius; circles end up apart.
    pub radius: f64,
}

/// An edge pulling two nodes together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayoutEdge {
    pub a: usize,
    pub b: usize,
    /// Events or edges behind it (pull grows with its log).
    pub weight: f64,
}

/// A stable 64-bit hash (FNV-1a folded through splitmix64) of a key.
pub fn seed_of(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix(h)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Centre of every node, inside `[MARGIN + r, WIDTH - MARGIN - r]` ×
/// `[MARGIN + r, HEIGHT - MARGIN - r]`.
pub fn layout(nodes: &[LayoutNode], edges: &[LayoutEdge]) -> Vec<(f64, f64)> {
    let n = nodes.len();
    let mut pos: Vec<(f64, f64)> = nodes
        .iter()
        .map(|nd| {
            let (u, v) = (unit(nd.seed), unit(splitmix(nd.seed)));
            (
                MARGIN + u * (WIDTH - 2.0 * MARGIN),
                MARGIN + v * (HEIGHT - 2.0 * MARGIN),
            )
        })
        .collect();
    if n < 2 {
        return clamp_all(nodes, pos);
    }
    let k = ((WIDTH - 2.0 * MARGIN) * (HEIGHT - 2.0 * MARGIN) / n as f64).sqrt();
    let edges: Vec<LayoutEdge> = edges
        .iter()
        .copied()
        .filter(|e| e.a < n && e.b < n && e.a != e.b)
        .collect();
    let centre = (WIDTH / 2.0, HEIGHT / 2.0);
    for it in 0..ITERATIONS {
        // A cool start keeps nodes near their seeded places: stable pictures.
        let temp = WIDTH / 20.0 * (1.0 - it as f64 / ITERATIONS as f64) + 0.5;
        let mut disp = vec![(0.0f64, 0.0f64); n];
        for i in 0..n {
            for j in (i + 1)..n {
                let (dx, dy, d) = delta(pos[i], pos[j], i, j);
                let f = k * k / d;
                let (fx, fy) = (dx / d * f, dy / d * f);
                disp[i].0 += fx;
                disp[i].1 += fy;
                disp[j].0 -= fx;
                disp[j].1 -= fy;
            }
        }
        for e in &edges {
            let (dx, dy, d) = delta(pos[e.a], pos[e.b], e.a, e.b);
            // Heavy edges pull harder, but only a little: group-to-group edges
            // carry thousands of connections and must not crush the groups together.
            let f = d * d / k * (1.0 + e.weight.max(1.0).ln() / 8.0).min(2.0);
            let (fx, fy) = (dx / d * f, dy / d * f);
            disp[e.a].0 -= fx;
            disp[e.a].1 -= fy;
            disp[e.b].0 += fx;
            disp[e.b].1 += fy;
        }
        for (p, d) in pos.iter_mut().zip(&mut disp) {
            // A weak pull to the centre keeps unconnected parts on the canvas.
            d.0 += (centre.0 - p.0) * 0.03 * k / 50.0;
            d.1 += (centre.1 - p.1) * 0.03 * k / 50.0;
            let len = (d.0 * d.0 + d.1 * d.1).sqrt();
            if len > 0.0 {
                let step = len.min(temp);
                p.0 += d.0 / len * step;
                p.1 += d.1 / len * step;
            }
        }
        pos = clamp_all(nodes, pos);
    }
    separate(nodes, clamp_all(nodes, pos))
}

/// Vector from `b` to `a` and its length, never zero: coincident points are
/// split along a direction fixed by their indices (deterministic).
fn delta(a: (f64, f64), b: (f64, f64), i: usize, j: usize) -> (f64, f64, f64) {
    let (mut dx, mut dy) = (a.0 - b.0, a.1 - b.1);
    let mut d = (dx * dx + dy * dy).sqrt();
    if d < 0.01 {
        let angle = (i * 31 + j * 17) as f64;
        (dx, dy, d) = (angle.cos() * 0.01, angle.sin() * 0.01, 0.01);
    }
    (dx, dy, d)
}

fn clamp_all(nodes: &[LayoutNode], pos: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    pos.into_iter()
        .zip(nodes)
        .map(|(p, nd)| {
            let r = nd.radius;
            (
                p.0.clamp(MARGIN + r, WIDTH - MARGIN - r),
                p.1.clamp(MARGIN + r, HEIGHT - MARGIN - r),
            )
        })
        .collect()
}

/// Push overlapping circles apart (a few passes; the force layout already
/// spreads them, this only removes what is left).
fn separate(nodes: &[LayoutNode], mut pos: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let n = nodes.len();
    for _ in 0..40 {
        let mut moved = false;
        for i in 0..n {
            for j in (i + 1)..n {
                let want = nodes[i].radius + nodes[j].radius + GAP;
                let (dx, dy, d) = delta(pos[i], pos[j], i, j);
                if d < want {
                    let push = (want - d) / 2.0 + 0.01;
                    pos[i].0 += dx / d * push;
                    pos[i].1 += dy / d * push;
                    pos[j].0 -= dx / d * push;
                    pos[j].1 -= dy / d * push;
                    moved = true;
                }
            }
        }
        pos = clamp_all(nodes, pos);
        if !moved {
            break;
        }
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: usize) -> (Vec<LayoutNode>, Vec<LayoutEdge>) {
        let nodes = (0..n)
            .map(|i| LayoutNode {
                seed: seed_of(format!("host-{i}").as_bytes()),
                radius: 8.0,
            })
            .collect();
        let edges = (0..n)
            .map(|i| LayoutEdge {
                a: i,
                b: (i + 1) % n,
                weight: 3.0,
            })
            .collect();
        (nodes, edges)
    }

    #[test]
    fn deterministic_and_inside_the_canvas() {
        let (nodes, edges) = ring(50);
        let a = layout(&nodes, &edges);
        assert_eq!(a, layout(&nodes, &edges));
        for (p, nd) in a.iter().zip(&nodes) {
            assert!(p.0 >= MARGIN + nd.radius && p.0 <= WIDTH - MARGIN - nd.radius);
            assert!(p.1 >= MARGIN + nd.radius && p.1 <= HEIGHT - MARGIN - nd.radius);
        }
    }

    #[test]
    fn circles_do_not_overlap() {
        let (nodes, edges) = ring(120);
        let p = layout(&nodes, &edges);
        for i in 0..p.len() {
            for j in (i + 1)..p.len() {
                let d = ((p[i].0 - p[j].0).powi(2) + (p[i].1 - p[j].1).powi(2)).sqrt();
                assert!(d >= 16.0, "{i} and {j} overlap ({d:.1})");
            }
        }
    }

    #[test]
    fn adding_a_host_barely_moves_the_others() {
        let (mut nodes, edges) = ring(40);
        let before = layout(&nodes, &edges);
        nodes.push(LayoutNode {
            seed: seed_of(b"host-new"),
            radius: 8.0,
        });
        let after = layout(&nodes, &edges);
        let mut moved: Vec<f64> = before
            .iter()
            .zip(&after)
            .map(|(a, b)| ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt())
            .collect();
        moved.sort_by(f64::total_cmp);
        let median = moved[moved.len() / 2];
        assert!(median < WIDTH * 0.05, "median move {median:.1}");
    }
}
