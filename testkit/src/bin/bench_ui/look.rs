//! The browser step, after timing: the real console (web-ui's router, as
//! the appliance mounts it) served on loopback over the bench store, looked
//! at in headless Chromium ([`vigil_testkit::browser`]). On `/graph` over
//! the bench's week: the edges behind the store's alerts drawn highlighted
//! and no others, routine traffic in group nodes, no two labels
//! overlapping, at most the graph's node cap, a technique filter that
//! narrows it and a host node that opens its page; on the overview, no tile
//! clipping its number. Screenshots 26 and 27 go to `docs/screenshots/`.
//!
//! The store gains one console user (`bench-browser`, fresh random password
//! each run); events, alerts and the manifest are untouched.

use crate::fill::fixed_clock;
use crate::{Opts, HOUR, NOW};
use anyhow::{bail, Context, Result};
use fantoccini::Locator;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use vigil_appliance::{Core, StoreReader};
use vigil_proto::query::{AlertFilter, ReadApi};
use vigil_testkit::browser::{Browser, BrowserError, Walk};
use vigil_web_ui::fleet_graph::{alert_hops, alerts_behind, Limits};
use vigil_web_ui::store::{Role, User};
use vigil_web_ui::{ConsoleState, ConsoleStore};

/// The window looked at: the bench's whole week of events and alerts.
pub(crate) const HOURS: u64 = 168;
const USER: &str = "bench-browser";

/// What the browser step found.
pub(crate) enum Look {
    /// No Chromium/chromedriver on this machine (the reason).
    Skipped(String),
    /// Every check passed; what was counted.
    Passed(Seen),
}

/// Counts from the checked pages.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Labels drawn on the unfiltered graph (none overlapping).
    pub(crate) labels: u64,
    /// Edges drawn highlighted as behind an alert.
    pub(crate) alert_edges: usize,
    /// Of those, with an end folded into a group (beyond the focus cap).
    pub(crate) alert_edges_grouped: usize,
    /// Host pairs the store has an alert behind in the window.
    pub(crate) alert_pairs: usize,
    /// Nodes (circles) drawn, and the cap.
    pub(crate) nodes: usize,
    pub(crate) max_nodes: usize,
    /// Group nodes folding routine traffic.
    pub(crate) groups: usize,
    /// Edges drawn without and with the technique filter.
    pub(crate) edges: usize,
    pub(crate) edges_filtered: usize,
}

/// Serve the console over the store and run the checks; an error names the
/// failed check.
pub(crate) fn look(o: &Opts) -> Result<Look> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(serve_and_look(o))
}

async fn serve_and_look(o: &Opts) -> Result<Look> {
    let (core, _) = Core::open(&o.store, fixed_clock())?;
    let core = Arc::new(core);
    let reader = Arc::new(StoreReader::new(core.clone()));
    let state =
        ConsoleState::new(reader.clone(), core.console.clone()).with_clock(Arc::new(|| NOW));
    let password = hex::encode(rand::random::<[u8; 16]>());
    core.console.put_user(User {
        name: USER.into(),
        role: Role::Admin,
        password_hash: vigil_web_ui::auth::hash_password(&password)?,
        created_ns: NOW,
        must_change_password: false,
        disabled: false,
    })?;
    let pairs = alert_pairs(&state, reader.as_ref())?;
    if pairs.is_empty() {
        bail!("browser checks: the store has no edge behind an alert in the last {HOURS} h");
    }
    let browser = match Browser::launch().await {
        Ok(b) => b,
        Err(e @ BrowserError::Missing) => return Ok(Look::Skipped(e.to_string())),
        Err(e) => bail!("browser checks: {e}"),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = vigil_web_ui::router(state);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    std::fs::create_dir_all(&shots).context("docs/screenshots")?;
    let w = Walk {
        c: browser.c.clone(),
        base: format!("http://localhost:{port}"),
        shots,
    };
    // In a task of its own: a failed check panics (the Walk helpers are
    // assertions) and comes back here as an error; the browser still ends.
    let checked = tokio::spawn(checks(w, password, pairs)).await;
    drop(browser);
    server.abort();
    match checked {
        Ok(result) => result.map(Look::Passed),
        Err(e) if e.is_panic() => {
            let p = e.into_panic();
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            bail!("browser checks failed: {msg}")
        }
        Err(e) => bail!("browser checks: {e}"),
    }
}

/// (source, destination) host names of the window's edges with an alert
/// behind them, by the console's own rule ([`alerts_behind`]).
fn alert_pairs(state: &ConsoleState, reader: &StoreReader) -> Result<BTreeSet<(String, String)>> {
    let since = NOW - HOURS * HOUR;
    let alerts = vigil_web_ui::pages::seen_alerts(
        state,
        &AlertFilter {
            since_ns: Some(since),
            limit: 5000,
            ..AlertFilter::default()
        },
        false,
    )
    .map_err(|e| anyhow::anyhow!("alerts: {e}"))?;
    let hops = alert_hops(&alerts);
    let names: HashMap<_, _> = reader
        .hosts()?
        .into_iter()
        .map(|h| (h.id, h.hostname))
        .collect();
    let name = |h| names.get(&h).cloned().unwrap_or_else(|| h.to_string());
    Ok(reader
        .edges(since)?
        .iter()
        .filter(|e| !alerts_behind(&hops, e).is_empty())
        .map(|e| (name(e.src), name(e.dst)))
        .collect())
}

/// `[from, to]` of every highlighted edge, from its hover title
/// ("a → b · port …").
const ALERT_EDGES: &str = r#"
return [...document.querySelectorAll('svg.graph.fleet line.edge.alert')].map(l => {
  const t = l.parentElement.querySelector('title').textContent.split(' · ')[0];
  return t.split(' → ');
});
"#;

/// The group part of a group node's label (`ws-hr (540)` → `ws-hr`), or
/// `None` for a host.
fn group_label(label: &str) -> Option<&str> {
    let (key, n) = label.rsplit_once(" (")?;
    n.strip_suffix(')')?
        .chars()
        .all(|c| c.is_ascii_digit())
        .then_some(key)
}

/// Whether a drawn end (host name or group) stands for host `name`: the
/// host itself, its role group (the name's prefix), a subnet group or
/// `other`.
fn covers(drawn: &str, name: &str) -> bool {
    match group_label(drawn) {
        None => drawn == name,
        Some(key) => name.starts_with(key) || key.contains('/') || key == "other",
    }
}

async fn count(w: &Walk, css: &str) -> usize {
    w.c.find_all(Locator::Css(css)).await.unwrap().len()
}

/// The checks themselves; a failure panics with what was wrong.
async fn checks(w: Walk, password: String, pairs: BTreeSet<(String, String)>) -> Result<Seen> {
    w.login(USER, &password).await;
    w.expect(&["Overview", "events stored", "Alerts per day by severity"])
        .await;
    let clipped = w.clipped_tiles().await;
    assert_eq!(
        clipped,
        serde_json::json!([]),
        "overview tiles clip their numbers"
    );
    w.shot("27-overview-10k-bench").await;

    let mut seen = Seen {
        alert_pairs: pairs.len(),
        max_nodes: Limits::default().max_nodes(),
        ..Seen::default()
    };
    w.c.goto(&format!("{}/graph?hours={HOURS}", w.base)).await?;
    w.expect(&["Fleet graph", "in groups", "Edges behind alerts"])
        .await;
    seen.labels = w.labels_apart().await;
    seen.nodes = count(&w, "svg.graph.fleet circle").await;
    seen.groups = count(&w, "svg.graph.fleet circle.gnode.group").await;
    seen.edges = count(&w, "svg.graph.fleet line.edge").await;
    assert!(
        seen.groups > 0,
        "no group node: routine traffic not aggregated"
    );
    assert!(
        seen.nodes <= seen.max_nodes,
        "{} nodes drawn, cap {}",
        seen.nodes,
        seen.max_nodes
    );
    let drawn: Vec<(String, String)> = serde_json::from_value(w.js(ALERT_EDGES).await)?;
    seen.alert_edges = drawn.len();
    seen.alert_edges_grouped = drawn
        .iter()
        .filter(|(a, b)| group_label(a).is_some() || group_label(b).is_some())
        .count();
    let wrong: Vec<_> = drawn
        .iter()
        .filter(|(a, b)| !pairs.iter().any(|(x, y)| covers(a, x) && covers(b, y)))
        .collect();
    let missing: Vec<_> = pairs
        .iter()
        .filter(|(x, y)| !drawn.iter().any(|(a, b)| covers(a, x) && covers(b, y)))
        .collect();
    assert!(
        wrong.is_empty() && missing.is_empty(),
        "highlighted edges differ from the store's alert edges: {} drawn that no alert is \
         behind {wrong:?}; {} behind alerts not drawn highlighted {missing:?}",
        wrong.len(),
        missing.len()
    );
    w.shot("26-fleet-graph-10k-bench").await;

    // A technique filter keeps only the edges behind its alerts.
    w.fill("input[name=technique]", "T1021").await;
    w.click_button("Apply").await;
    w.expect(&["Edges behind alerts"]).await;
    assert!(
        w.path().await.contains("technique=T1021"),
        "filter not applied"
    );
    w.labels_apart().await;
    seen.edges_filtered = count(&w, "svg.graph.fleet line.edge").await;
    let routine = count(&w, "svg.graph.fleet line.edge:not(.alert)").await;
    assert_eq!(routine, 0, "routine edges under a technique filter");
    assert!(
        seen.edges_filtered > 0 && seen.edges_filtered < seen.edges,
        "technique filter did not narrow the graph: {} edges of {}",
        seen.edges_filtered,
        seen.edges
    );
    // Click-through: a host node opens its page.
    w.find(Locator::Css("svg.graph.fleet a[href^='/hosts/'] circle"))
        .await
        .click()
        .await?;
    w.expect(&["Baseline status"]).await;
    assert!(
        w.path().await.starts_with("/hosts/"),
        "host node did not open /hosts/…"
    );
    w.c.clone().close().await?;
    Ok(seen)
}
