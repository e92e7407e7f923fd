//! Numbers that fit: compact counts (`631.7k`, `1.2M`, `1.0G`) for tiles and
//! tables, with the exact value kept for a hover `title`, so a fleet's
//! counters never overflow the box they are shown in.

use crate::pages::count;
use leptos::prelude::*;

/// `999`, `1.0k`, `631.7k`, `1.2M`, `1.0G`, `18.4T`: at most six characters
/// for any `u64`, one decimal from a thousand up.
pub fn compact(n: u64) -> String {
    const UNITS: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    if n < 1000 {
        return n.to_string();
    }
    let mut v = n as f64;
    let mut i = 0;
    // 999.95 and up would print as "1000.0": move to the next unit instead.
    while v >= 999.95 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.1}{}", UNITS[i])
}

/// A compact count as a `<span>` whose `title` holds the exact value
/// (`631 713`), for tiles and table cells.
pub fn compact_span(n: u64, class: &'static str) -> AnyView {
    view! { <span class=class title=count(n)>{compact(n)}</span> }.into_any()
}

/// A rate (`12.3`, `4.5k`) with its exact value to one decimal on hover.
pub fn compact_rate(v: f64, class: &'static str) -> AnyView {
    let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
    let shown = if v < 1000.0 {
        format!("{v:.0}")
    } else {
        compact(v.round() as u64)
    };
    view! { <span class=class title=format!("{v:.1}")>{shown}</span> }.into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_counts() {
        let cases = [
            (0, "0"),
            (999, "999"),
            (1000, "1.0k"),
            (631_713, "631.7k"),
            (999_949, "999.9k"),
            (999_950, "1.0M"),
            (1_234_567, "1.2M"),
            (1_000_000_000, "1.0G"),
            (18_400_000_000_000, "18.4T"),
        ];
        for (n, want) in cases {
            assert_eq!(compact(n), want, "{n}");
        }
    }

    #[test]
    fn compact_is_short_for_every_magnitude() {
        let mut n: u64 = 1;
        while let Some(next) = n.checked_mul(7) {
            assert!(compact(n).len() <= 6, "{n} → {}", compact(n));
            n = next;
        }
        assert_eq!(compact(u64::MAX), "18.4E");
    }

    #[test]
    fn spans_carry_the_exact_value() {
        let html = compact_span(631_713, "v").to_html();
        assert!(html.contains("title=\"631\u{202f}713\""), "{html}");
        assert!(html.contains(">631.7k<"), "{html}");
        assert!(compact_rate(f64::NAN, "v").to_html().contains(">0<"));
        assert!(compact_rate(12_345.0, "v").to_html().contains(">12.3k<"));
    }
}
