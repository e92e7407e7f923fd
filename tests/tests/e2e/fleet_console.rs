//! The console at fleet scale on a REPLAYED store (issue #19): two days
//! of the project's synthetic 60-workstation enterprise (88 hosts with its
//! servers, admins and new hires) streamed by `vigil replay`'s engine
//! through one real enrolled sensor identity per host (QUIC/mTLS, spool,
//! acks) into a real appliance (RocksDB on a temp dir), dated to end now.
//!
//! The hosts learn on the first day and are scored on the second, where
//! the generator plants its lateral-movement campaigns. The detector
//! trains a host once its learning period has passed by the wall clock,
//! and a history days old has passed it at once: so, as `cargo xtask demo`
//! does, the first day streams into an appliance whose learning period is
//! longer than the history, then the appliance restarts with the
//! configured one ([`LEARNING_PERIOD_NS`]), trains every host on its whole
//! first day and scores the second day as it streams in. Neither period
//! is derived from when the campaigns start.
//!
//! Then, over real HTTPS in headless Chromium: the fleet graph draws the
//! edges behind the stored alerts highlighted between the right hosts
//! (planted hops among them), folds routine traffic, keeps every label
//! apart, narrows under a technique filter and clicks through to host
//! pages and hunts; the overview draws its trend charts without clipping
//! a tile. Screenshots `24-fleet-graph-60-replayed` and
//! `25-overview-60-replayed`.
//!
//! Loopback only; no root or namespaces needed.

use super::{browser, eventually, replay_options, shot};
use fantoccini::Locator;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use vigil_appliance::{Appliance, ServeConfig};
use vigil_datasets::synth::EPOCH_NS;
use vigil_proto::query::{AlertFilter, AlertRecord, ReadApi};
use vigil_proto::HostId;
use vigil_testkit::browser::{CLIPPED_TILES, LABEL_OVERLAPS};
use vigil_tools::replay::{replay, synth_config, synth_source, ReplayItem, TimeMode};

/// Workstations (`vigil replay synth --hosts`; the generator adds
/// servers, admins and new hires: 88 hosts).
const WORKSTATIONS: usize = 60;
/// Days of history; the generator plants its campaigns from day `DAYS / 2`.
const DAYS: u32 = 2;
/// The generator's seed (`vigil replay synth`'s default).
const SEED: u64 = 1;
const DAY_NS: u64 = 86_400 * 1_000_000_000;
/// The operator's learning period: a host learns for half a day from its
/// first event (so all of its first day is learning for most hosts) and
/// is scored after.
const LEARNING_PERIOD_NS: u64 = DAY_NS / 2;
/// While the first day streams: longer than the history, so no host is
/// trained on a part of its day (as `cargo xtask demo` streams its week).
const LEARNING_WHILE_REPLAYING_NS: u64 = 8 * DAY_NS;
/// Graph window: the whole history (it starts `DAYS` days ago). Not one
/// of the form's choices, so the form must keep it.
const GRAPH_HOURS: u32 = DAYS * 24 + 1;

async fn start_appliance(dir: &Path, learning_period_ns: u64) -> Appliance {
    let mut cfg = ServeConfig::new(dir).loopback();
    cfg.admin_socket = false;
    let pipeline = cfg.pipeline.as_mut().expect("detection is on by default");
    pipeline.detector.learning_period_ns = learning_period_ns;
    pipeline.poll = Duration::from_millis(200);
    Appliance::start(cfg).await.expect("appliance starts")
}

/// Streams the generator's events of data-set days `days` (every host
/// declared) into `app` over real uplinks, dated so the data set's first
/// midnight is `start_ns`; waits until the pipeline scored them all.
/// Returns (hosts, events acknowledged).
async fn replay_days(
    app: &Appliance,
    state: &Path,
    days: std::ops::Range<u32>,
    start_ns: u64,
) -> (usize, u64) {
    let (from, to) = (
        EPOCH_NS + u64::from(days.start) * DAY_NS,
        EPOCH_NS + u64::from(days.end) * DAY_NS,
    );
    let items: Vec<ReplayItem> = synth_source(synth_config(SEED, DAYS, WORKSTATIONS))
        .filter(|i| match i {
            ReplayItem::Host(_) => true,
            ReplayItem::Event(e) => e.header.ts_ns >= from && e.header.ts_ns < to,
        })
        .collect();
    let first = items
        .iter()
        .find_map(|i| match i {
            ReplayItem::Event(e) => Some(e.header.ts_ns),
            ReplayItem::Host(_) => None,
        })
        .expect("events on those days");
    let before = app.core().metrics.detection_events.load(Ordering::Relaxed);
    let mut opts = replay_options(app, 200, state);
    opts.time = TimeMode::StartAt(start_ns + (first - EPOCH_NS));
    opts.stall_timeout = Duration::from_secs(20);
    let report = tokio::time::timeout(Duration::from_secs(60), replay(items, opts))
        .await
        .expect("replay finishes")
        .expect("replay");
    assert_eq!(report.events_acked, report.events_read, "every event acked");
    let metrics = &app.core().metrics;
    let scored = eventually(60, || {
        metrics.detection_events.load(Ordering::Relaxed) >= before + report.events_acked
    })
    .await;
    assert!(scored, "the pipeline did not score days {days:?}");
    (report.hosts.len(), report.events_acked)
}

/// The planted campaigns' hops as (source name, target name), regenerated
/// from the generator with the replay's own configuration (the labels
/// never travel with the replay).
fn campaign_hops() -> BTreeSet<(String, String)> {
    let gen = vigil_datasets::synth::Generator::new(vigil_tools::replay::synth_config(
        SEED,
        DAYS,
        WORKSTATIONS,
    ));
    let name: BTreeMap<HostId, &str> = gen
        .hosts()
        .iter()
        .map(|h| (h.id, h.name.as_str()))
        .collect();
    gen.campaigns()
        .iter()
        .flat_map(|c| c.path.windows(2))
        .map(|w| (name[&w[0]].to_string(), name[&w[1]].to_string()))
        .collect()
}

/// Each alert's path steps, by host name.
fn named_hops(alert: &AlertRecord, names: &BTreeMap<HostId, String>) -> Vec<(String, String)> {
    let name = |h: &HostId| names.get(h).cloned().unwrap_or_else(|| h.to_string());
    alert
        .path
        .windows(2)
        .map(|w| (name(&w[0]), name(&w[1])))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_replayed_hosts_fleet_graph_and_overview_in_chromium() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let (data, state) = (tmp.path().join("appliance"), tmp.path().join("replay"));
    // The history's first midnight, so its last day ends about now.
    let start_ns = vigil_web_ui::system_now_ns() - u64::from(DAYS) * DAY_NS;

    let app = start_appliance(&data, LEARNING_WHILE_REPLAYING_NS).await;
    let (hosts, learned) = replay_days(&app, &state, 0..DAYS / 2, start_ns).await;
    app.shutdown().await;
    let learn_secs = started.elapsed().as_secs_f64();
    let app = start_appliance(&data, LEARNING_PERIOD_NS).await;
    let (hosts2, scored) = replay_days(&app, &state, DAYS / 2..DAYS, start_ns).await;
    let scored_secs = started.elapsed().as_secs_f64();
    let hosts = hosts.max(hosts2);
    assert!(hosts >= 60, "{hosts} hosts replayed");

    // From the store: alerts name planted campaign hops.
    let reader = app.reader();
    let names: BTreeMap<HostId, String> = reader
        .hosts()
        .unwrap()
        .into_iter()
        .map(|h| (h.id, h.hostname))
        .collect();
    let planted = campaign_hops();
    let all = AlertFilter {
        limit: 100_000,
        ..AlertFilter::default()
    };
    let on_campaign = |alerts: &[AlertRecord]| -> Vec<(String, String)> {
        alerts
            .iter()
            .flat_map(|a| named_hops(a, &names))
            .filter(|hop| planted.contains(hop))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let found = eventually(20, || {
        !on_campaign(&reader.alerts(&all).unwrap_or_default()).is_empty()
    })
    .await;
    let alerts = reader.alerts(&all).unwrap();
    let caught = on_campaign(&alerts);
    assert!(
        found,
        "no alert on a planted hop {planted:?}; alerts: {:#?}",
        alerts
            .iter()
            .map(|a| (named_hops(a, &names), &a.title))
            .collect::<Vec<_>>()
    );
    println!(
        "replayed {hosts} hosts: day 1 {learned} events (learning) in {learn_secs:.1}s, \
         day 2 {scored} events scored at {scored_secs:.1}s; \
         {} alerts, planted hops alerted {}/{}: {caught:?}",
        alerts.len(),
        caught.len(),
        planted.len()
    );

    if let Some(walk) = console_at_fleet_scale(&app, &caught, &names).await {
        walk.expect("the console on the replayed store");
    }
    println!(
        "fleet console on {hosts} replayed hosts checked in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    app.shutdown().await;
}

/// Lines of the fleet graph as `[class, from node href, to node href,
/// edge href]`, the ends' node links as the line carries them
/// (`data-from`/`data-to`, `fleet_graph::render`): matching ends to
/// circles by geometry mistook two nodes drawn close together.
const EDGE_ENDS: &str = r#"
return [...document.querySelectorAll('svg.graph.fleet line.edge')].map(l => [
  l.getAttribute('class'),
  l.getAttribute('data-from'),
  l.getAttribute('data-to'),
  l.parentElement.getAttribute('href'),
]);
"#;

/// One drawn edge (see [`EDGE_ENDS`]).
#[derive(Debug)]
struct DrawnEdge {
    alert: bool,
    from: String,
    to: String,
    href: String,
}

async fn drawn_edges(c: &fantoccini::Client) -> Result<Vec<DrawnEdge>, String> {
    let v = c
        .execute(EDGE_ENDS, vec![])
        .await
        .map_err(|e| e.to_string())?;
    let rows = v.as_array().ok_or("edge list is not an array")?;
    Ok(rows
        .iter()
        .map(|r| {
            let s = |i: usize| r[i].as_str().unwrap_or_default().to_string();
            DrawnEdge {
                alert: s(0).split(' ').any(|c| c == "alert"),
                from: s(1),
                to: s(2),
                href: s(3),
            }
        })
        .collect())
}

/// Waits for the fleet graph, then checks no two labels overlap; returns
/// how many labels there are.
async fn labels_apart(c: &fantoccini::Client) -> Result<u64, String> {
    for _ in 0..100 {
        if c.find(Locator::Css("svg.graph.fleet")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v = c
        .execute(LABEL_OVERLAPS, vec![])
        .await
        .map_err(|e| e.to_string())?;
    if v[1] != 0 {
        return Err(format!("overlapping labels ([labels, pairs]): {v}"));
    }
    v[0].as_u64().ok_or_else(|| format!("label count: {v}"))
}

/// Visible text of the page once it holds every needle (case-insensitive:
/// the stylesheet upper-cases headings), or an error naming what is missing.
async fn page_with(c: &fantoccini::Client, needles: &[&str]) -> Result<String, String> {
    let mut text = String::new();
    for _ in 0..100 {
        if let Ok(body) = c.find(Locator::Css("body")).await {
            text = body.text().await.unwrap_or_default();
            let lower = text.to_lowercase();
            if needles.iter().all(|n| lower.contains(&n.to_lowercase())) {
                return Ok(text);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("expected {needles:?} on the page:\n{text}"))
}

async fn path_of(c: &fantoccini::Client) -> Result<String, String> {
    let u = c.current_url().await.map_err(|e| e.to_string())?;
    Ok(match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    })
}

/// The analyst's walk over the replayed store (see the module doc).
/// `None` when no browser is installed (outside CI only).
async fn console_at_fleet_scale(
    app: &Appliance,
    caught: &[(String, String)],
    names: &BTreeMap<HostId, String>,
) -> Option<Result<(), String>> {
    let browser = browser().await?;
    let c = browser.client.clone();
    let base = format!("https://127.0.0.1:{}", app.https_addr.port());
    let result = async {
        let viewer = vigil_web_ui::store::Role::Viewer;
        super::evidence_lab::login_as(app, &c, &base, "fleet-viewer", viewer).await?;
        fleet_graph_walk(&c, &base, &*app.reader(), caught, names).await?;
        overview_walk(&c, &base).await
    }
    .await;
    let _ = c.close().await;
    Some(result)
}

/// `/graph` over the history: alert edges between the stored alerts'
/// hosts, the planted hops among them, routine traffic folded, labels
/// apart, a technique filter, click-through to a host and a hunt.
async fn fleet_graph_walk(
    c: &fantoccini::Client,
    base: &str,
    reader: &dyn ReadApi,
    caught: &[(String, String)],
    names: &BTreeMap<HostId, String>,
) -> Result<(), String> {
    let err = |e: fantoccini::error::CmdError| e.to_string();
    let graph = format!("{base}/graph?hours={GRAPH_HOURS}");
    c.goto(&graph).await.map_err(err)?;
    page_with(c, &["Fleet graph", "Edges behind alerts"]).await?;
    let labels = labels_apart(c).await?;
    let edges = drawn_edges(c).await?;
    // Read after the page: the pipeline may still be closing windows, and
    // alerts are only ever added, so every alert the page drew is here.
    let alerts = reader
        .alerts(&AlertFilter {
            limit: 100_000,
            ..AlertFilter::default()
        })
        .map_err(|e| e.to_string())?;
    let hop_hrefs: BTreeSet<(String, String)> = alerts
        .iter()
        .flat_map(|a| a.path.windows(2))
        .map(|w| (format!("/hosts/{}", w[0]), format!("/hosts/{}", w[1])))
        .collect();
    // Host to host: an alert edge into or out of a group (beyond the focus
    // hosts' cap) has no single host at that end to compare.
    let host_end = |h: &str| h.starts_with("/hosts/");
    let alert_edges: Vec<&DrawnEdge> = edges
        .iter()
        .filter(|e| e.alert && host_end(&e.from) && host_end(&e.to))
        .collect();
    if alert_edges.is_empty() {
        return Err("no edge between hosts highlighted as behind an alert".into());
    }
    for e in &alert_edges {
        if !hop_hrefs.contains(&(e.from.clone(), e.to.clone())) {
            return Err(format!("highlighted edge {e:?} is no stored alert's hop"));
        }
    }
    let href_of = |name: &str| {
        names
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(id, _)| format!("/hosts/{id}"))
            .unwrap_or_default()
    };
    let planted_drawn: Vec<&(String, String)> = caught
        .iter()
        .filter(|(s, d)| {
            let (s, d) = (href_of(s), href_of(d));
            alert_edges.iter().any(|e| e.from == s && e.to == d)
        })
        .collect();
    if planted_drawn.is_empty() {
        return Err(format!(
            "no alerted campaign hop {caught:?} drawn highlighted among {alert_edges:#?}"
        ));
    }
    let folded = c
        .find_all(Locator::Css("svg.graph.fleet circle.gnode.group"))
        .await
        .map_err(err)?
        .len();
    if folded == 0 {
        return Err("routine traffic not folded into a group or fan-out node".into());
    }
    shot(c, "24-fleet-graph-60-replayed").await;
    println!(
        "fleet graph: {} edges drawn, {} highlighted, planted hops drawn {planted_drawn:?}, \
         {folded} group/fan nodes, {labels} labels apart",
        edges.len(),
        alert_edges.len()
    );

    // A technique filter keeps only the edges behind its alerts.
    let technique = alerts
        .iter()
        .filter(|a| a.path.len() > 1)
        .flat_map(|a| a.techniques.iter())
        .next()
        .cloned()
        .ok_or("no technique on a multi-host alert")?;
    // Through the form, as an analyst does: the window asked for in the
    // URL stays selected, so "Apply" keeps it.
    let field = c
        .find(Locator::Css("input[name=technique]"))
        .await
        .map_err(err)?;
    field.send_keys(&technique).await.map_err(err)?;
    c.find(Locator::XPath("//button[normalize-space()='Apply']"))
        .await
        .map_err(err)?
        .click()
        .await
        .map_err(err)?;
    let mut filtered = String::new();
    for _ in 0..100 {
        filtered = path_of(c).await?;
        if filtered.contains("technique=") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !filtered.contains(&format!("hours={GRAPH_HOURS}&"))
        || !filtered.contains(&format!("technique={technique}"))
    {
        return Err(format!("the filter form submitted {filtered}"));
    }
    page_with(c, &["Fleet graph"]).await?;
    labels_apart(c).await?;
    let narrowed = drawn_edges(c).await?;
    if narrowed.is_empty() || narrowed.len() >= edges.len() || narrowed.iter().any(|e| !e.alert) {
        return Err(format!(
            "technique {technique}: {} of {} edges drawn, {} not behind an alert",
            narrowed.len(),
            edges.len(),
            narrowed.iter().filter(|e| !e.alert).count()
        ));
    }

    // Click-through: a highlighted host opens its page, an alert edge the
    // hunt for its events.
    let known: BTreeSet<String> = names.keys().map(|id| format!("/hosts/{id}")).collect();
    let edge = narrowed
        .iter()
        .find(|e| known.contains(&e.to))
        .ok_or("no highlighted edge into a registered host")?;
    let host = edge.to.clone();
    c.find(Locator::Css(&format!(
        "svg.graph.fleet a[href='{host}'] circle"
    )))
    .await
    .map_err(err)?
    .click()
    .await
    .map_err(err)?;
    page_with(c, &["Baseline status"]).await?;
    if path_of(c).await? != host {
        return Err(format!("host click went to {}", path_of(c).await?));
    }
    c.goto(&format!("{base}{}", edge.href)).await.map_err(err)?;
    page_with(c, &["Export CSV"]).await?;
    if !path_of(c).await?.starts_with("/hunt?host=") {
        return Err(format!("edge link went to {}", path_of(c).await?));
    }
    Ok(())
}

/// The overview over the replayed store: trend charts drawn, no tile
/// clips its number.
async fn overview_walk(c: &fantoccini::Client, base: &str) -> Result<(), String> {
    let err = |e: fantoccini::error::CmdError| e.to_string();
    c.goto(&format!("{base}/")).await.map_err(err)?;
    page_with(c, &["events stored", "Alerts per day by severity"]).await?;
    let bars = c
        .find_all(Locator::Css("svg.chart.trend g.bar rect"))
        .await
        .map_err(err)?
        .len();
    if bars == 0 {
        return Err("the overview's trend charts draw no bars".into());
    }
    let clipped = c
        .execute(CLIPPED_TILES, vec![])
        .await
        .map_err(|e| e.to_string())?;
    if clipped != serde_json::json!([]) {
        return Err(format!("tiles clip their numbers: {clipped}"));
    }
    shot(c, "25-overview-60-replayed").await;
    Ok(())
}
