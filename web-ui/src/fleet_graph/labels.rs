//! Collision-aware label placement: labels are placed greedily in priority
//! order, each at the first candidate spot around its anchor whose box hits
//! no placed label, no node circle and no canvas edge. A label with no free
//! spot is not drawn; its text stays in the element's hover `<title>`.
//!
//! Boxes are estimated from the text length: the stylesheet draws graph
//! labels in a monospace font of [`FONT_PX`], whose advance is at most
//! 0.62 em, so the estimate is an upper bound of the rendered box and
//! boxes that do not overlap here do not overlap in the browser.

/// Font size of graph labels (the stylesheet's `svg .glabel`).
pub const FONT_PX: f64 = 11.0;
/// Upper bound of a character's advance in that font.
pub const CHAR_W: f64 = FONT_PX * 0.62;
/// Height of a label box: ascent above the baseline plus descent.
pub const BOX_H: f64 = FONT_PX * 1.3;
/// Baseline offset from the box top.
pub const ASCENT: f64 = FONT_PX * 1.0;
/// Longest label drawn, in characters (longer ones are cut with `...`).
pub const MAX_CHARS: usize = 24;

/// An axis-aligned box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    /// Whether the interiors of two boxes intersect.
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }

    fn inside(&self, w: f64, h: f64) -> bool {
        self.x >= 0.0 && self.y >= 0.0 && self.x + self.w <= w && self.y + self.h <= h
    }
}

/// What a label is attached to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Anchor {
    /// Beside a circle (centre, radius).
    Node { x: f64, y: f64, r: f64 },
    /// Near a point on an edge (its midpoint) with the edge's direction.
    Edge { x: f64, y: f64, dx: f64, dy: f64 },
}

/// One label to place.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelRequest {
    pub text: String,
    pub anchor: Anchor,
}

/// Where a placed label's text starts (`text-anchor: start`, baseline) and its box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placed {
    pub x: f64,
    pub y: f64,
    pub rect: Rect,
}

/// The text as drawn: at most [`MAX_CHARS`] characters.
pub fn fit(text: &str) -> String {
    if text.chars().count() <= MAX_CHARS {
        text.to_string()
    } else {
        // ASCII, so the monospace advance bound holds for every character.
        let mut s: String = text.chars().take(MAX_CHARS - 3).collect();
        s.push_str("...");
        s
    }
}

/// Box width of `text` once fitted.
pub fn text_width(text: &str) -> f64 {
    fit(text).chars().count() as f64 * CHAR_W
}

fn candidates(anchor: Anchor, w: f64) -> Vec<Rect> {
    let h = BOX_H;
    match anchor {
        Anchor::Node { x, y, r } => {
            let g = 3.0;
            [
                (x + r + g, y - h / 2.0),
                (x - r - g - w, y - h / 2.0),
                (x - w / 2.0, y - r - g - h),
                (x - w / 2.0, y + r + g),
                (x + r * 0.7 + g, y - r * 0.7 - h),
                (x - r * 0.7 - g - w, y - r * 0.7 - h),
                (x + r * 0.7 + g, y + r * 0.7),
                (x - r * 0.7 - g - w, y + r * 0.7),
                // Further out, for crowded places.
                (x + r + 4.0 * g, y - h / 2.0),
                (x - r - 4.0 * g - w, y - h / 2.0),
                (x - w / 2.0, y - r - 4.0 * g - h),
                (x - w / 2.0, y + r + 4.0 * g),
            ]
            .into_iter()
            .map(|(x, y)| Rect { x, y, w, h })
            .collect()
        }
        Anchor::Edge { x, y, dx, dy } => {
            let len = (dx * dx + dy * dy).sqrt().max(1e-9);
            let (nx, ny) = (-dy / len, dx / len);
            let (tx, ty) = (dx / len, dy / len);
            let mut out = Vec::new();
            for along in [0.0, -18.0, 18.0] {
                for side in [6.0 + h / 2.0, -(6.0 + h / 2.0)] {
                    let (cx, cy) = (x + tx * along + nx * side, y + ty * along + ny * side);
                    out.push(Rect {
                        x: cx - w / 2.0,
                        y: cy - h / 2.0,
                        w,
                        h,
                    });
                }
            }
            out
        }
    }
}

/// Place `labels` (highest priority first) avoiding each other and the
/// `circles` (centre, radius) on a `width` × `height` canvas.
pub fn place(
    labels: &[LabelRequest],
    circles: &[(f64, f64, f64)],
    width: f64,
    height: f64,
) -> Vec<Option<Placed>> {
    let obstacles: Vec<Rect> = circles
        .iter()
        .map(|&(x, y, r)| Rect {
            x: x - r,
            y: y - r,
            w: 2.0 * r,
            h: 2.0 * r,
        })
        .collect();
    let mut placed: Vec<Rect> = Vec::new();
    labels
        .iter()
        .map(|l| {
            let w = text_width(&l.text);
            let spot = candidates(l.anchor, w).into_iter().find(|r| {
                r.inside(width, height)
                    && !placed.iter().any(|p| p.overlaps(r))
                    && !obstacles.iter().any(|o| o.overlaps(r))
            })?;
            placed.push(spot);
            Some(Placed {
                x: spot.x,
                y: spot.y + ASCENT,
                rect: spot,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crowded_labels_give_way() {
        let labels: Vec<LabelRequest> = (0..10)
            .map(|i| LabelRequest {
                text: format!("host-{i:04}"),
                anchor: Anchor::Node {
                    x: 100.0,
                    y: 100.0 + f64::from(i),
                    r: 5.0,
                },
            })
            .collect();
        let out = place(&labels, &[], 400.0, 400.0);
        let shown: Vec<Rect> = out.iter().flatten().map(|p| p.rect).collect();
        assert!(shown.len() >= 2 && shown.len() < 10, "{}", shown.len());
        for (i, a) in shown.iter().enumerate() {
            for b in &shown[i + 1..] {
                assert!(!a.overlaps(b));
            }
        }
    }

    #[test]
    fn long_names_are_cut() {
        assert_eq!(fit("short"), "short");
        let long = "a-very-long-hostname-for-a-small-graph.corp.example";
        assert_eq!(fit(long).chars().count(), MAX_CHARS);
        assert!(fit(long).ends_with("..."));
    }
}
