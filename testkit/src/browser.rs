//! The console in a real browser: headless Chromium started through
//! chromedriver and driven over WebDriver ([`fantoccini`]), and the page
//! checks the browser tests and the `bench-ui` browser step share — one
//! copy of the label-overlap and clipped-tile scripts.
//!
//! [`Walk`]'s helpers are assertions: they wait (up to 10 s, for the
//! navigation a click started) and panic with the page's path and text when
//! what they wait for never shows, the way a test reports a failure.

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// Why no browser session could be started.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// Chromium or chromedriver is not installed (callers may skip).
    #[error("chromium or chromedriver not found (install Debian `chromium` and `chromium-driver`, or set CHROMIUM/CHROMEDRIVER)")]
    Missing,
    /// chromedriver did not start or did not listen.
    #[error("chromedriver: {0}")]
    Driver(String),
    /// The WebDriver session was refused.
    #[error("WebDriver session: {0}")]
    Session(String),
}

fn find_binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

fn free_port() -> Result<u16, BrowserError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BrowserError::Driver(format!("no free port: {e}")))
}

async fn wait_for_port(port: u16) -> Result<(), BrowserError> {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BrowserError::Driver(format!("did not listen on {port}")))
}

/// A headless Chromium session over WebDriver. chromedriver (and with it
/// the browser) ends when this is dropped.
pub struct Browser {
    /// The WebDriver client.
    pub c: Client,
    /// The chromedriver process (killed on drop).
    pub chromedriver: tokio::process::Child,
    /// The browser's throw-away profile directory.
    pub profile: tempfile::TempDir,
}

impl Browser {
    /// Start chromedriver and a headless Chromium (1440×1400 window, no
    /// sandbox, no background networking). `CHROMIUM`/`CHROMEDRIVER`
    /// override where they are.
    pub async fn launch() -> Result<Browser, BrowserError> {
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
            return Err(BrowserError::Missing);
        };
        let driver_port = free_port()?;
        let chromedriver = tokio::process::Command::new(&driver)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BrowserError::Driver(format!("{}: {e}", driver.display())))?;
        wait_for_port(driver_port).await?;

        let profile = tempfile::tempdir()
            .map_err(|e| BrowserError::Driver(format!("profile directory: {e}")))?;
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
            .map_err(|e| BrowserError::Session(e.to_string()))?;
        Ok(Browser {
            c,
            chromedriver,
            profile,
        })
    }
}

/// Boxes of the fleet graph's labels that overlap (as the browser laid them
/// out), and how many labels there are: `[labels, overlapping pairs]`.
pub const LABEL_OVERLAPS: &str = r#"
const r = [...document.querySelectorAll('svg.graph.fleet text')].map(t => t.getBoundingClientRect());
const bad = [];
for (let i = 0; i < r.length; i++) for (let j = i + 1; j < r.length; j++) {
  const a = r[i], b = r[j];
  if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5) bad.push([i, j]);
}
return [r.length, bad.length];
"#;

/// Tile values wider than their tile's content box (their text).
pub const CLIPPED_TILES: &str = r#"
return [...document.querySelectorAll('.kpi .v')].filter(v => {
  const p = v.parentElement, pr = p.getBoundingClientRect(), cs = getComputedStyle(p);
  const right = pr.right - parseFloat(cs.paddingRight) + 0.5;
  return v.scrollWidth > v.clientWidth + 0.5 || v.getBoundingClientRect().right > right;
}).map(v => v.textContent);
"#;

/// A browser walking one console: where it is served and where
/// screenshots go.
pub struct Walk {
    /// The WebDriver client.
    pub c: Client,
    /// `http://localhost:PORT` (`localhost` is a secure context, so the
    /// browser keeps the console's Secure cookies over plain HTTP).
    pub base: String,
    /// Directory the screenshots are written to.
    pub shots: PathBuf,
}

impl Walk {
    /// Visible text of the page (retried while a navigation swaps the document).
    pub async fn body(&self) -> String {
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
    pub async fn expect(&self, needles: &[&str]) {
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

    /// Waits until the browser is at `want` (path and query).
    pub async fn at(&self, want: &str) {
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

    /// Saves a PNG of the window as `<shots>/<name>.png`.
    pub async fn shot(&self, name: &str) {
        let png = self.c.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Finds an element, waiting up to 10 s for a navigation to finish.
    pub async fn find(&self, loc: Locator<'_>) -> fantoccini::elements::Element {
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

    /// Clicks the link with this text.
    pub async fn click_link(&self, text: &str) {
        self.find(Locator::LinkText(text))
            .await
            .click()
            .await
            .unwrap();
    }

    /// Clicks the button with this text.
    pub async fn click_button(&self, text: &str) {
        let xp = format!("//button[normalize-space()='{text}']");
        self.find(Locator::XPath(&xp)).await.click().await.unwrap();
    }

    /// Picks `value` in the `<select>` matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        self.find(Locator::Css(css))
            .await
            .select_by_value(value)
            .await
            .unwrap();
    }

    /// Replaces the text of the input matching `css`.
    pub async fn fill(&self, css: &str, value: &str) {
        let el = self.find(Locator::Css(css)).await;
        el.clear().await.unwrap();
        el.send_keys(value).await.unwrap();
    }

    /// Path and query of the current page.
    pub async fn path(&self) -> String {
        let u = self.c.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    /// Logs in on `/login` and waits for the overview.
    pub async fn login(&self, user: &str, password: &str) {
        self.c.goto(&format!("{}/login", self.base)).await.unwrap();
        self.fill("input[name=username]", user).await;
        self.fill("input[name=password]", password).await;
        self.click_button("Sign in").await;
        self.at("/").await;
    }

    /// Runs `script` in the page and returns its value.
    pub async fn js(&self, script: &str) -> serde_json::Value {
        self.c.execute(script, vec![]).await.unwrap()
    }

    /// The fleet graph's labels never overlap; returns how many there are.
    pub async fn labels_apart(&self) -> u64 {
        self.find(Locator::Css("svg.graph.fleet")).await;
        let v = self.js(LABEL_OVERLAPS).await;
        assert_eq!(v[1], 0, "overlapping labels on {}: {v}", self.path().await);
        v[0].as_u64().unwrap()
    }

    /// The overview's tiles whose numbers clip (their text; empty when none).
    pub async fn clipped_tiles(&self) -> serde_json::Value {
        self.js(CLIPPED_TILES).await
    }
}
