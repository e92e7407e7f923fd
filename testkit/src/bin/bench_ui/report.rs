//! What the bench prints: a table for humans, then one JSON line.

use crate::look::Look;
use crate::measure::PageTimes;
use crate::{Manifest, Opts};
use std::path::Path;
use vigil_testkit::render_bench::{p95, BenchReport};

/// Print the table and, last, the JSON object.
pub(crate) fn print(
    o: &Opts,
    manifest: &Manifest,
    pages: &[PageTimes],
    n_alerts: usize,
    look: &Look,
) {
    let on_disk = dir_bytes(&o.store.join("db"));
    println!(
        "== vigil console render bench over RocksDB: {} hosts, {} events, {} alerts ==",
        manifest.hosts, manifest.events, n_alerts
    );
    println!("store      {}", o.store.display());
    println!(
        "fill       {:.0} s total, events at {:.0} events/s through the ingest writer",
        manifest.fill_secs, manifest.fill_events_per_s
    );
    println!(
        "on disk    {} after fill, {} after compaction ({:.0} s), {} now ({:.1} bytes/event)",
        gib(manifest.bytes_after_fill),
        gib(manifest.bytes_on_disk),
        manifest.compact_secs,
        gib(on_disk),
        on_disk as f64 / manifest.events as f64
    );
    println!(
        "{:<38} {:>9} {:>9} {:>9}",
        "page (target p95 ≤ 200 ms) / read call", "p50 ms", "p95 ms", "max ms"
    );
    for p in pages {
        let label = if p.name.starts_with("read.") {
            if p.name == "read.hosts()" {
                println!("where the time goes (each read call alone, 20 calls):");
            }
            format!("  {}", p.name)
        } else {
            format!("{} ({} renders)", p.name, p.samples.len())
        };
        println!(
            "{label:<38} {:>9.2} {:>9.2} {:>9.2}",
            p.p(0.5),
            p95(&mut p.samples.clone()),
            p.p(1.0)
        );
    }
    let (checks, labels, alert_edges) = match look {
        Look::Passed(s) => {
            println!(
                "browser checks (/graph {} h, Chromium): passed · {} labels, none overlapping · \
                 {} alert edges highlighted ({} with an end in a group) covering the store's {} \
                 host pairs behind alerts · {} nodes (cap {}), {} groups · {} edges, {} under \
                 technique=T1021 · host click-through · overview tiles unclipped",
                crate::look::HOURS,
                s.labels,
                s.alert_edges,
                s.alert_edges_grouped,
                s.alert_pairs,
                s.nodes,
                s.max_nodes,
                s.groups,
                s.edges,
                s.edges_filtered
            );
            ("passed", s.labels, s.alert_edges)
        }
        Look::Skipped(why) => {
            println!("browser checks: skipped ({why})");
            ("skipped", 0, 0)
        }
    };
    let get = |name: &str| {
        pages
            .iter()
            .find(|p| p.name == name)
            .map_or(0.0, |p| p95(&mut p.samples.clone()))
    };
    let report = BenchReport {
        iterations: o.iterations,
        p95_ms_overview: get("overview"),
        p95_ms_hosts: get("hosts"),
        p95_ms_host: get("host"),
        p95_ms_alert: get("alert"),
        p95_ms_graph: get("graph"),
    };
    // The shared report's keys first, unchanged; the browser step's after.
    let json = report.json();
    println!(
        "{},\"browser_checks\":\"{checks}\",\"browser_labels\":{labels},\"browser_alert_edges\":{alert_edges}}}",
        json.strip_suffix('}').unwrap_or(&json)
    );
}

/// Bytes of all files under `path`.
pub(crate) fn dir_bytes(path: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(path) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// `b` in GiB, two decimals.
pub(crate) fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}
