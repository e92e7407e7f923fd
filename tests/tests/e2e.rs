//! End to end, with every part real: the appliance (QUIC/mTLS, RocksDB on a
//! temp dir), one real sensor per lab host (netlink proc connector,
//! sock_diag inside the host's namespace, the host's sshd log), enrolled with
//! one-time tokens, and an attacker hopping h1 → h2 → h3 with real `ssh`.
//!
//! One test binary on purpose: each links RocksDB and the whole stack.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};
use vigil_appliance::ingest::rules::IngestRules;
use vigil_appliance::{Appliance, ServeConfig};
use vigil_proto::query::{AlertFilter, EventFilter, ReadApi};
use vigil_proto::{AuthMethod, Event, EventKind, HostId, LoginService, Payload};
use vigil_sensor::{Config, EnrollParams, Sensor, SensorHandle};
use vigil_tests::lab::{require_lab, Lab};

#[path = "e2e/detection_lab.rs"]
mod detection_lab;
#[path = "e2e/evidence_lab.rs"]
mod evidence_lab;
#[path = "e2e/fleet_console.rs"]
mod fleet_console;
#[path = "e2e/hostile_lab.rs"]
mod hostile_lab;
#[path = "e2e/response_lab.rs"]
mod response_lab;
#[path = "e2e/sigma_console.rs"]
mod sigma_console;

/// One lab host with its enrolled, running sensor.
struct Watched {
    host: HostId,
    sensor: SensorHandle,
}

async fn start_appliance(dir: &Path) -> Appliance {
    start_appliance_with(dir, IngestRules::default()).await
}

/// Ingest rules for replayed data sets: their events are dated by the data
/// set (years ago, or ahead of the wall clock at a speed-up), an import the
/// operator allows explicitly; live sensors keep the default bounds.
fn replay_import() -> IngestRules {
    IngestRules {
        max_future_ns: u64::MAX,
        accept_historical: true,
    }
}

async fn start_appliance_with(dir: &Path, rules: IngestRules) -> Appliance {
    let mut cfg = ServeConfig::new(dir).loopback();
    cfg.admin_socket = false;
    cfg.ingest_rules = rules;
    // A fresh lab has no history: alert from the first event (cold start).
    let pipeline = cfg.pipeline.as_mut().expect("detection is on by default");
    pipeline.detector.learning_period_ns = 0;
    pipeline.poll = Duration::from_millis(200);
    Appliance::start(cfg).await.expect("appliance starts")
}

/// Enroll a sensor for lab host `i` with a fresh one-time token and start it
/// watching that host's namespace and sshd log.
async fn watch(app: &Appliance, lab: &Lab, i: usize, state: &Path) -> Watched {
    let token = app
        .create_token(Duration::from_secs(600), 1)
        .expect("token");
    let identity = vigil_sensor::enroll(&EnrollParams {
        appliance: app.quic_addr.to_string(),
        token: token.token,
        ca_sha256: token.ca_fingerprint,
        state_dir: state.to_path_buf(),
    })
    .await
    .expect("enroll");
    Watched {
        host: identity.host,
        sensor: start_sensor(app, lab, i, state).await,
    }
}

/// Start an enrolled sensor (its state in `state`) watching lab host `i`.
async fn start_sensor(app: &Appliance, lab: &Lab, i: usize, state: &Path) -> SensorHandle {
    let host = &lab.hosts[i];
    let mut config = Config::new(app.quic_addr.to_string(), state);
    config.netns = Some(host.netns.clone());
    config.heartbeat = Duration::from_secs(1);
    config.batch_max = Duration::from_millis(100);
    config.collectors.auth_log = host.auth_log.clone();
    config.collectors.network_poll = Duration::from_millis(200);
    config.collectors.file_paths = Some(vec![lab.dir().join(format!("{}-watched", host.name))]);
    Sensor::start(config).await.expect("sensor starts")
}

fn events(reader: &dyn ReadApi, host: HostId, kind: EventKind) -> Vec<Event> {
    reader
        .events(&EventFilter {
            host: Some(host),
            kinds: vec![kind],
            limit: 10_000,
            ..EventFilter::default()
        })
        .expect("query events")
        .events
}

/// The `vigil` binary built with these tests (`target/debug/vigil`).
fn vigil_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("vigil");
    bin.is_file().then_some(bin)
}

/// Poll `check` until it holds or `secs` pass; returns whether it held.
async fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    check()
}

fn ssh_login_from(reader: &dyn ReadApi, host: HostId, from: IpAddr) -> bool {
    events(reader, host, EventKind::Login)
        .iter()
        .any(|e| match &e.payload {
            Payload::Login(l) => {
                l.user == "root"
                    && l.service == LoginService::Ssh
                    && l.method == AuthMethod::PublicKey
                    && l.src_addr == Some(from)
            }
            _ => false,
        })
}

fn connected_to(reader: &dyn ReadApi, host: HostId, to: SocketAddr) -> bool {
    events(reader, host, EventKind::NetConnect)
        .iter()
        .any(|e| match &e.payload {
            Payload::NetConnect(f) => f.remote == to,
            _ => false,
        })
}

/// Whether `host` executed the program named `exe` with an argument that
/// starts with `arg` (the ssh clients upstream carry the nested commands in
/// their own argv, so the program name and the argument's start tell the
/// hop that really ran it).
fn ran(reader: &dyn ReadApi, host: HostId, exe: &str, arg: &str) -> bool {
    events(reader, host, EventKind::ProcessStart)
        .iter()
        .any(|e| match &e.payload {
            Payload::ProcessStart(p) => {
                p.exe
                    .as_deref()
                    .and_then(|x| Path::new(x).file_name())
                    .is_some_and(|n| n == exe)
                    && p.argv.iter().any(|a| a.starts_with(arg))
            }
            _ => false,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ssh_chain_through_three_hosts_reaches_the_appliance() {
    if !require_lab("ssh_chain_through_three_hosts_reaches_the_appliance") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let app = start_appliance(&tmp.path().join("appliance")).await;
    let lab = Lab::new(3).expect("lab");
    let mut watched = Vec::new();
    for i in 0..3 {
        watched.push(watch(&app, &lab, i, &tmp.path().join(format!("sensor{i}"))).await);
    }
    let reader = app.reader();

    // Each sensor registered as its own host, named after its namespace and
    // reporting the namespace's address (so peers resolve to hosts).
    let registered = eventually(20, || {
        let hosts = reader.hosts().unwrap_or_default();
        (0..3).all(|i| {
            hosts.iter().any(|h| {
                h.id == watched[i].host
                    && h.hostname == lab.hosts[i].netns
                    && h.addrs.contains(&IpAddr::V4(lab.hosts[i].addr))
            })
        })
    })
    .await;
    assert!(registered, "hosts: {:#?}", reader.hosts());

    // The attack: h1 → h2 with a stolen key, then h2 → h3, running a marker
    // command. The last hop lingers a second: `sock_diag` polling (200 ms
    // here) cannot see a TCP session shorter than its poll interval, a
    // limit documented in the sensor's README.
    let marker = format!("vigil-e2e-{}", std::process::id());
    let hop = format!(
        "ssh {} root@{} 'echo {marker}-h3; touch {}; sleep 1'",
        lab.ssh_options().join(" "),
        lab.hosts[2].addr,
        lab.dir().join("h3-watched").display()
    );
    let out = lab
        .ssh(0, 1, &format!("echo {marker}-h2; {hop}"))
        .expect("ssh chain");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{marker}-h3")),
        "chain output: {stdout}"
    );

    let (h1, h2, h3) = (watched[0].host, watched[1].host, watched[2].host);
    let a = |i: usize| IpAddr::V4(lab.hosts[i].addr);
    let remote_h3 = format!("echo {marker}-h3");
    let arrived = eventually(30, || {
        ssh_login_from(&*reader, h2, a(0))
            && ssh_login_from(&*reader, h3, a(1))
            && ran(&*reader, h3, "bash", &remote_h3)
    })
    .await;
    assert!(arrived, "logins or remote command missing on h2/h3");
    assert!(
        connected_to(&*reader, h1, SocketAddr::new(a(1), 22)),
        "h1's ssh connection to h2:22 not seen"
    );
    assert!(
        connected_to(&*reader, h2, SocketAddr::new(a(2), 22)),
        "h2's ssh connection to h3:22 not seen"
    );
    // Process events were scoped: h3's remote shell ran on h3 only.
    assert!(!ran(&*reader, h1, "bash", &remote_h3));
    assert!(!ran(&*reader, h2, "bash", &remote_h3));
    assert!(ran(&*reader, h2, "bash", &format!("echo {marker}-h2")));
    // The attacker's write to a watched file on h3, with its hash.
    let touched = events(&*reader, h3, EventKind::FileChange)
        .iter()
        .any(|e| match &e.payload {
            Payload::FileChange(f) => f.path.ends_with("h3-watched") && f.sha256.is_some(),
            _ => false,
        });
    assert!(touched, "h3's watched-file write not seen");

    // Detection: the two hops chain into one incident over h1 → h2 → h3,
    // explained, with SSH remote services among its techniques.
    let chained = eventually(20, || {
        reader
            .alerts(&AlertFilter::default())
            .unwrap_or_default()
            .iter()
            .any(|a| a.path == vec![h1, h2, h3])
    })
    .await;
    let alerts = reader.alerts(&AlertFilter::default()).unwrap();
    assert!(chained, "no h1→h2→h3 incident among {alerts:#?}");
    let incident = alerts.iter().find(|a| a.path == vec![h1, h2, h3]).unwrap();
    // Every alert over more than one host names true sources: each step
    // of its path is a hop that really happened (h1 → h2 or h2 → h3, the
    // addresses the targets' sshd logged), never a host that merely also
    // had a recent hop.
    for a in alerts.iter().filter(|a| a.path.len() > 1) {
        for step in a.path.windows(2) {
            assert!(
                step == [h1, h2] || step == [h2, h3],
                "alert {} ({}) names a hop that did not happen: {:?}",
                a.id,
                a.title,
                a.path
            );
        }
    }
    assert!(
        incident.techniques.iter().any(|t| t == "T1021.004"),
        "techniques {:?}",
        incident.techniques
    );
    assert!(
        !incident.deviations.is_empty(),
        "incident without explanation"
    );
    assert!(!incident.evidence.is_empty(), "incident without evidence");
    let edges = reader.edges(0).unwrap();
    assert!(edges
        .iter()
        .any(|e| e.src == h1 && e.dst == h2 && e.port == 22));
    assert!(edges
        .iter()
        .any(|e| e.src == h2 && e.dst == h3 && e.port == 22));

    // Event → alert latency is measured (the figures go to the issue note;
    // targets are checked by benchmarks, never by timed assertions).
    let m = app.core().metrics.snapshot();
    assert!(m.alert_latency_p99_ms.is_some() && m.incident_latency_p99_ms.is_some());
    eprintln!(
        "event → alert latency p99 ≤ {:?} ms, event → incident p99 ≤ {:?} ms (bucket bounds)",
        m.alert_latency_p99_ms, m.incident_latency_p99_ms
    );

    // The analyst's side, in a real browser over the appliance's HTTPS: the
    // incident shows the lab's host names; closing it as a true positive
    // reaches the stored alert and the detector (left out of retraining).
    let names: Vec<String> = lab.hosts.iter().map(|h| h.netns.clone()).collect();
    if let Some(walk) = console_closes_incident(&app, incident.id, &names, h2, h3).await {
        walk.expect("the console walk");
        // The isolation the walk sent from the checklist holds: h3 cannot
        // reach h2 any more.
        let cut = lab
            .exec(2, "ping", &["-c", "1", "-W", "1", &a(1).to_string()])
            .is_err();
        assert!(cut, "isolated h3 still reaches h2");
        let closed = eventually(20, || {
            reader
                .alerts(&AlertFilter::default())
                .unwrap_or_default()
                .iter()
                .any(|a| {
                    a.id == incident.id
                        && a.state == vigil_proto::query::TriageState::ClosedTruePositive
                })
                && app
                    .core()
                    .metrics
                    .verdicts_applied
                    .load(std::sync::atomic::Ordering::Relaxed)
                    >= 1
        })
        .await;
        assert!(
            closed,
            "the true-positive verdict did not reach the store and the detector"
        );
    }

    for w in watched {
        w.sensor.shutdown().await;
    }
    app.shutdown().await;
}

/// Save a PNG of the page to `$ARTIFACTS` (default `target/ui-screenshots`).
async fn shot(c: &fantoccini::Client, name: &str) {
    let dir = std::env::var_os("ARTIFACTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(
                std::env::var_os("CARGO_MANIFEST_DIR")
                    .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
            )
            .join("../target/ui-screenshots")
        });
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

/// Headless Chromium under chromedriver, for the console over real HTTPS.
/// The driver is killed and the throwaway profile removed on drop.
struct Browser {
    client: fantoccini::Client,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

/// Start chromedriver and a headless Chromium session. `None` when no
/// browser is installed (outside CI only: under `CI` that fails).
async fn browser() -> Option<Browser> {
    use fantoccini::ClientBuilder;
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let driver = Some("/usr/bin/chromedriver").filter(|p| Path::new(p).exists());
    let (Some(chromium), Some(driver)) = (chromium, driver) else {
        let msg = "chromium/chromedriver missing (apt-get install chromium chromium-driver)";
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIPPED the console part: {msg}");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let chromedriver = tokio::process::Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver");
    eventually(10, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--no-first-run", "--disable-dev-shm-usage", "--window-size=1280,1000",
                // The appliance's certificate chains to its own CA, which
                // this throwaway profile does not trust.
                "--ignore-certificate-errors",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("WebDriver session");
    Some(Browser {
        client,
        _driver: chromedriver,
        _profile: profile,
    })
}

/// Log into the real console with the first-start password in headless
/// Chromium, open the incident, check it names every hop, close it as a
/// true positive. `None` when no browser is installed (outside CI only).
async fn console_closes_incident(
    app: &Appliance,
    incident: u64,
    host_names: &[String],
    host: HostId,
    last: HostId,
) -> Option<Result<(), String>> {
    use fantoccini::Locator;
    let browser = browser().await?;
    let c = browser.client.clone();
    let password = app
        .first_start
        .admin_password
        .clone()
        .expect("a fresh appliance prints its first admin password");
    let base = format!("https://127.0.0.1:{}", app.https_addr.port());
    let result = async {
        let text = |c: &fantoccini::Client| {
            let c = c.clone();
            async move { c.find(Locator::Css("body")).await?.text().await }
        };
        c.goto(&format!("{base}/login"))
            .await
            .map_err(|e| e.to_string())?;
        c.find(Locator::Css("input[name=username]"))
            .await
            .map_err(|e| e.to_string())?
            .send_keys("admin")
            .await
            .map_err(|e| e.to_string())?;
        c.find(Locator::Css("input[name=password]"))
            .await
            .map_err(|e| e.to_string())?
            .send_keys(&password)
            .await
            .map_err(|e| e.to_string())?;
        c.find(Locator::XPath("//button[normalize-space()='Sign in']"))
            .await
            .map_err(|e| e.to_string())?
            .click()
            .await
            .map_err(|e| e.to_string())?;
        // A first-start password must be changed before anything else:
        // the console sends the admin to the change-password form.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let new_password = "e2e-admin-chose-this-one";
        for (field, value) in [
            ("current", password.as_str()),
            ("new", new_password),
            ("confirm", new_password),
        ] {
            c.find(Locator::Css(&format!("input[name={field}]")))
                .await
                .map_err(|e| format!("change-password form: {e}"))?
                .send_keys(value)
                .await
                .map_err(|e| e.to_string())?;
        }
        c.find(Locator::XPath(
            "//button[normalize-space()='Change password']",
        ))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.goto(&format!("{base}/alerts/{incident}"))
            .await
            .map_err(|e| e.to_string())?;
        let page = text(&c).await.map_err(|e| e.to_string())?;
        shot(&c, "e2e-incident").await;
        for name in host_names {
            if !page.contains(name.as_str()) {
                return Err(format!("incident page does not name {name}:\n{page}"));
            }
        }
        if !page.contains("T1021.004") {
            return Err(format!("incident page without its technique:\n{page}"));
        }
        let hops = c
            .find_all(Locator::Css("svg.graph.path line.hop"))
            .await
            .map_err(|e| e.to_string())?;
        if hops.len() != 2 {
            return Err(format!("{} hops drawn, want 2", hops.len()));
        }
        let verdict = c
            .find(Locator::Css("select[name=verdict]"))
            .await
            .map_err(|e| e.to_string())?;
        verdict
            .select_by_value("true_positive")
            .await
            .map_err(|e| e.to_string())?;
        c.find(Locator::XPath("//button[normalize-space()='Close']"))
            .await
            .map_err(|e| e.to_string())?
            .click()
            .await
            .map_err(|e| e.to_string())?;
        let mut closed = false;
        for _ in 0..50 {
            let page = text(&c).await.unwrap_or_default();
            // Upper-cased by CSS in the visible text.
            if page.to_lowercase().contains("closed: true positive") {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !closed {
            return Err(format!(
                "closing did not show; page:\n{}",
                text(&c).await.unwrap_or_default()
            ));
        }
        // The host page shows the detector's model of the host (trained at
        // once: this lab runs without a learning period).
        c.goto(&format!("{base}/hosts/{host}"))
            .await
            .map_err(|e| e.to_string())?;
        let page = text(&c).await.map_err(|e| e.to_string())?;
        shot(&c, "e2e-host").await;
        if !(page.contains("Trained on") && page.contains("SHA-256")) {
            return Err(format!("host page without the model's status:\n{page}"));
        }
        let last_name = host_names.last().cloned().unwrap_or_default();
        response_lab::console_isolates_from_checklist(app, &c, &base, incident, last, &last_name)
            .await
            .map_err(|e| format!("response walk: {e}"))?;
        evidence_lab::console_exports_a_verifiable_bundle(app, &c, &base, incident)
            .await
            .map_err(|e| format!("evidence walk: {e}"))
    }
    .await;
    let _ = c.close().await;
    Some(result)
}

/// `vigil replay` in-process: a small synthetic enterprise (one labelled
/// campaign) streamed at a high speed-up into a real appliance through one
/// real enrolled sensor identity per data-set host (QUIC/mTLS, spool, acks).
/// Every replayed event is stored exactly once, hosts carry their data-set
/// names and addresses, and the campaign comes out as one incident over its
/// labelled path. Loopback only; no root needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replayed_synthetic_enterprise_is_stored_once_and_its_campaign_detected() {
    use std::collections::BTreeMap;
    use vigil_datasets::synth::{Generator, SynthConfig};
    use vigil_tools::replay::{replay, synth_source, ReplayItem};

    const MIN: u64 = 60_000_000_000;
    const SPEEDUP: f64 = 300.0;
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = ServeConfig::new(tmp.path().join("appliance")).loopback();
    cfg.admin_socket = false;
    cfg.ingest_rules = replay_import();
    // Partial batches leave every 50 ms, so a hop minutes after the previous
    // one (a second at this speed-up) is scored in a later round.
    cfg.sensor_config.batch_max_ms = 50;
    let pipeline = cfg.pipeline.as_mut().expect("detection is on by default");
    pipeline.detector.learning_period_ns = 0;
    pipeline.poll = Duration::from_millis(100);
    let app = Appliance::start(cfg).await.expect("appliance starts");

    let synth = SynthConfig {
        seed: 6, // one campaign, style SSH chain
        days: 2,
        attack_from_day: 1,
        workstations: 12,
        windows_servers: 4,
        linux_servers: 4,
        admins: 2,
        campaigns: 1,
        new_hires: 0,
    };
    // Ground truth, from a second generator run (labels never reach the replay).
    let mut gen = Generator::new(synth.clone());
    let campaign = gen.campaigns()[0].clone();
    let labelled: Vec<u64> = (0..synth.days)
        .flat_map(|d| gen.day(d))
        .filter(|le| le.campaign == Some(campaign.id))
        .map(|le| le.event.header.ts_ns)
        .collect();
    let (from, to) = (
        labelled.iter().min().unwrap() - 30 * MIN,
        labelled.iter().max().unwrap() + 10 * MIN,
    );
    // The replayed slice: every host, and the events of the campaign's hours.
    let items: Vec<ReplayItem> = synth_source(synth)
        .filter(|i| match i {
            ReplayItem::Host(_) => true,
            ReplayItem::Event(e) => e.header.ts_ns >= from && e.header.ts_ns <= to,
        })
        .collect();
    let mut expected: BTreeMap<HostId, Vec<Payload>> = BTreeMap::new();
    let mut hosts = 0u32;
    for i in &items {
        match i {
            ReplayItem::Host(_) => hosts += 1,
            ReplayItem::Event(e) => expected
                .entry(e.header.host)
                .or_default()
                .push(e.payload.clone()),
        }
    }
    let total: usize = expected.values().map(Vec::len).sum();
    println!(
        "campaign {campaign:?}: window {} min, {total} events",
        (to - from) / MIN
    );
    assert!(total > 50, "slice too small: {total} events");

    let mut opts = replay_options(&app, hosts, &tmp.path().join("replay"));
    opts.speedup = Some(SPEEDUP);
    opts.batch_max = Duration::from_millis(50);
    opts.stall_timeout = Duration::from_secs(20);
    opts.progress = Some(std::sync::Arc::new(|p: &vigil_tools::replay::Progress| {
        println!(
            "replay: {:.1}s read {} sent {} acked {} ({:.0} acked/s)",
            p.elapsed.as_secs_f64(),
            p.read,
            p.sent,
            p.acked,
            p.acked_per_s
        )
    }));
    let started = Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(60), replay(items, opts))
        .await
        .expect("replay finishes")
        .expect("replay");
    println!(
        "replayed {} events of {} hosts in {:.1}s ({:.0} acked/s)",
        report.events_acked,
        report.hosts.len(),
        started.elapsed().as_secs_f64(),
        report.acked_per_s()
    );
    assert_eq!(report.events_read, total as u64);
    assert_eq!(report.events_sent, total as u64);
    assert_eq!(report.events_acked, total as u64);
    assert_eq!(report.hosts.len(), hosts as usize);
    let id = |dataset: HostId| report.hosts[&dataset].host;

    // Registered under their data-set names and addresses.
    let reader = app.reader();
    let registered = reader.hosts().unwrap();
    for h in report.hosts.values() {
        let r = registered
            .iter()
            .find(|r| r.id == h.host)
            .unwrap_or_else(|| panic!("{} not registered", h.dataset.name));
        assert_eq!(r.hostname, h.dataset.name);
        assert_eq!(r.addrs, h.dataset.addrs);
    }

    // Stored exactly once: each host holds seqs 1..=n, in the data set's order.
    for (dataset, want) in &expected {
        let mut got: Vec<Event> = Vec::new();
        let mut after = None;
        loop {
            let page = reader
                .events(&EventFilter {
                    host: Some(id(*dataset)),
                    limit: 1_000,
                    after,
                    ..EventFilter::default()
                })
                .unwrap();
            got.extend(page.events);
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        got.sort_by_key(|e| e.header.seq);
        let seqs: Vec<u64> = got.iter().map(|e| e.header.seq).collect();
        assert_eq!(seqs, (1..=want.len() as u64).collect::<Vec<_>>());
        let payloads: Vec<&Payload> = got.iter().map(|e| &e.payload).collect();
        assert!(payloads == want.iter().collect::<Vec<_>>());
    }
    assert_eq!(reader.stats().unwrap().duplicates_total, 0);

    // Detection: one incident over the campaign's labelled path.
    let path: Vec<HostId> = campaign.path.iter().map(|h| id(*h)).collect();
    let found = eventually(20, || {
        reader
            .alerts(&AlertFilter::default())
            .unwrap_or_default()
            .iter()
            .any(|a| a.path == path)
    })
    .await;
    let alerts = reader.alerts(&AlertFilter::default()).unwrap();
    let names: Vec<(Vec<HostId>, &str)> = alerts
        .iter()
        .map(|a| (a.path.clone(), a.title.as_str()))
        .collect();
    assert!(
        found,
        "no incident over {path:?} ({campaign:?}) among {names:#?}"
    );
    app.shutdown().await;
}

/// Replay settings for `app`, with a token good for `hosts` enrollments.
fn replay_options(app: &Appliance, hosts: u32, state: &Path) -> vigil_tools::replay::ReplayOptions {
    let token = app
        .create_token(Duration::from_secs(600), hosts)
        .expect("token");
    vigil_tools::replay::ReplayOptions::new(
        app.quic_addr.to_string(),
        token.token,
        token.ca_fingerprint,
        state.to_path_buf(),
    )
}

/// `../shared/datasets/SUB` (outside the repo), or `None` after saying why.
fn shared_dataset(sub: &str) -> Option<std::path::PathBuf> {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let p = manifest.join("../../shared/datasets").join(sub);
    if p.is_dir() {
        return Some(p);
    }
    println!(
        "SKIPPED: data set {sub} not found at {} (it lives outside the repo)",
        p.display()
    );
    None
}

/// Real OTRF captures (Windows event logs of Empire attacks), replayed over
/// QUIC through the sensor uplink into a real appliance, one capture per
/// fresh appliance: every event is stored once and the labelled hop
/// WORKSTATION5 → WORKSTATION6 is alerted with its technique. The same
/// captures are judged offline in `tools/tests/shared_datasets.rs`;
/// this checks the online path (replay identities, ingest, pipeline) keeps
/// what the offline detector finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn otrf_captures_replayed_over_quic_alert_their_labelled_hop() {
    use vigil_tools::eval::otrf::read_labels;
    use vigil_tools::replay::{otrf_source, replay, ReplayItem};

    let Some(dir) = shared_dataset("otrf-lateral-movement") else {
        return;
    };
    let labels = read_labels(&std::fs::read_to_string(dir.join("labels.tsv")).unwrap());
    for (file, technique) in [
        ("empire_smbexec_dcerpc_smb_svcctl.zip", "T1021.002"),
        (
            "empire_wmi_dcerpc_wmi_IWbemServices_ExecMethod.zip",
            "T1047",
        ),
    ] {
        let label = labels.iter().find(|l| l.file == file).expect("labelled");
        let named = |hosts: &[vigil_tools::eval::otrf::LabelHost]| -> String {
            hosts[0]
                .name
                .clone()
                .expect("named host")
                .to_ascii_lowercase()
        };
        let (src, dst) = (named(&label.sources), named(&label.targets));

        let tmp = tempfile::tempdir().unwrap();
        let app = start_appliance_with(&tmp.path().join("appliance"), replay_import()).await;
        let items = otrf_source(&[dir.join("host").join(file)]).expect("capture reads");
        let hosts = items
            .iter()
            .filter(|i| matches!(i, ReplayItem::Host(_)))
            .count() as u32;
        let total = items.len() as u64 - hosts as u64;
        let mut opts = replay_options(&app, hosts, &tmp.path().join("replay"));
        opts.stall_timeout = Duration::from_secs(20);
        let report = tokio::time::timeout(Duration::from_secs(60), replay(items, opts))
            .await
            .expect("replay finishes")
            .expect("replay");
        assert_eq!(
            report.events_acked, total,
            "{file}: every event acknowledged"
        );
        let reader = app.reader();
        assert_eq!(
            reader.stats().unwrap().events_total,
            total,
            "{file}: stored once"
        );

        let name_of: std::collections::BTreeMap<HostId, String> = reader
            .hosts()
            .unwrap()
            .into_iter()
            .map(|h| (h.id, h.hostname.to_ascii_lowercase()))
            .collect();
        let hop_alerted = |a: &vigil_proto::query::AlertRecord| {
            let names: Vec<&str> = a
                .path
                .iter()
                .filter_map(|h| name_of.get(h).map(String::as_str))
                .collect();
            let at = |n: &str| names.iter().position(|x| *x == n);
            matches!((at(&src), at(&dst)), (Some(s), Some(d)) if s < d)
                && a.techniques.iter().any(|t| t == technique)
        };
        let found = eventually(20, || {
            reader
                .alerts(&AlertFilter::default())
                .unwrap_or_default()
                .iter()
                .any(hop_alerted)
        })
        .await;
        let alerts = reader.alerts(&AlertFilter::default()).unwrap();
        let seen: Vec<(Vec<Option<&String>>, &Vec<String>)> = alerts
            .iter()
            .map(|a| {
                (
                    a.path.iter().map(|h| name_of.get(h)).collect(),
                    &a.techniques,
                )
            })
            .collect();
        assert!(
            found,
            "{file}: no alert {src} → {dst} with {technique} among {seen:#?}"
        );
        println!(
            "{file}: {total} events replayed, {} alerts, {src} → {dst} ({technique}) alerted",
            alerts.len()
        );
        app.shutdown().await;
    }
}
