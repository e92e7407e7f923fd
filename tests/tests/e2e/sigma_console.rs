//! Sigma hits where operators look (issue #14): an operator imports a rule
//! from a directory (a USB stick) with the real `vigil rules import`, a
//! real sensor in the lab streams the process that fires it, `vigil alerts`
//! prints the hit with the rule's title and ATT&CK tag, and the console,
//! over real HTTPS in headless Chromium, lists it and shows the rule, its
//! id, level, tags and the fields that matched.

use super::{browser, eventually, shot, vigil_binary, watch};
use fantoccini::Locator;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use vigil_appliance::{Appliance, ServeConfig};
use vigil_proto::query::AlertFilter;
use vigil_tests::lab::{require_lab, Lab};

const RULE_ID: &str = "9d7c2f41-5a3e-4c1b-8e6f-2b0d4a7c9e15";
const RULE_TITLE: &str = "Local account discovery with getent";

/// An operator's rule, as a rule set on a stick carries it.
fn rule() -> String {
    format!(
        "title: {RULE_TITLE}\nid: {RULE_ID}\nstatus: experimental\n\
         description: Lists local accounts, as an intruder does after landing.\n\
         author: Vigil lab test\n\
         logsource:\n  category: process_creation\n  product: linux\n\
         detection:\n  selection:\n    CommandLine|contains: 'getent passwd'\n\
         \x20 condition: selection\n\
         level: high\ntags:\n  - attack.discovery\n  - attack.t1087.001\n"
    )
}

/// Run `vigil ARGS…`; (exit code, stdout, stderr).
fn vigil(bin: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin).args(args).output().expect("run vigil");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The appliance as installed but without a learning period (a host in
/// its learning period only counts Sigma hits, it raises none), with its
/// admin socket for the real CLI.
async fn start_appliance_with_admin_socket(dir: &Path) -> Appliance {
    let mut cfg = ServeConfig::new(dir).loopback();
    let pipeline = cfg.pipeline.as_mut().expect("detection is on");
    pipeline.poll = Duration::from_millis(200);
    pipeline.detector.learning_period_ns = 0;
    Appliance::start(cfg).await.expect("appliance starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_imported_sigma_rule_fires_in_the_lab_and_shows_in_cli_and_console() {
    if !require_lab("an_imported_sigma_rule_fires_in_the_lab_and_shows_in_cli_and_console") {
        return;
    }
    let started = Instant::now();
    let bin = vigil_binary().expect("the vigil binary is built with the tests");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("appliance");
    let app = start_appliance_with_admin_socket(&data).await;

    // The operator's stick: one rule file, imported into the running
    // appliance (validated, written 0600, audited, reloaded).
    let stick = tmp.path().join("usb");
    std::fs::create_dir_all(&stick).unwrap();
    std::fs::write(stick.join("local_account_discovery.yml"), rule()).unwrap();
    let stick_arg = stick.to_str().unwrap();
    let data_arg = data.to_str().unwrap();
    let (code, out, err) = vigil(&bin, &["rules", "check", stick_arg]);
    assert_eq!(code, 0, "rules check: {out}{err}");
    let import = [
        "rules",
        "import",
        stick_arg,
        "--data",
        data_arg,
        "--operator",
        "admin",
    ];
    let (code, out, err) = vigil(&bin, &import);
    assert_eq!(code, 0, "rules import: {out}{err}");
    assert!(out.contains("imported 1 Sigma rules"), "{out}");

    // A malformed rule on the stick is refused by the running appliance
    // with its file and line, and nothing is imported.
    let bad = tmp.path().join("usb-bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("broken.yml"), "title: broken\nlogsource: [\n").unwrap();
    let import = [
        "rules",
        "import",
        bad.to_str().unwrap(),
        "--data",
        data_arg,
        "--operator",
        "admin",
    ];
    let (code, out, err) = vigil(&bin, &import);
    assert_eq!(code, 1, "a malformed rule was imported: {out}{err}");
    assert!(
        err.contains("broken.yml:3"),
        "file and line not named: {err}"
    );
    assert!(!data.join("rules/sigma/broken.yml").exists());

    let lab = Lab::new(1).expect("lab");
    let w = watch(&app, &lab, 0, &tmp.path().join("sensor")).await;
    let reader = app.reader();
    let registered = eventually(20, || {
        reader
            .hosts()
            .unwrap_or_default()
            .iter()
            .any(|h| h.id == w.host && h.addrs.contains(&IpAddr::V4(lab.hosts[0].addr)))
    })
    .await;
    assert!(registered, "hosts: {:#?}", reader.hosts());

    // What the rule looks for, on the lab host (the shell lingers a second
    // so its command line is read whichever process backend runs).
    lab.exec(0, "sh", &["-c", "getent passwd root >/dev/null; sleep 1"])
        .expect("getent in h1");
    let is_hit = |a: &vigil_proto::query::AlertRecord| {
        a.model_version.as_deref() == Some(&format!("sigma:{RULE_ID}")) && a.path == [w.host]
    };
    let fired = eventually(30, || {
        reader
            .alerts(&AlertFilter::default())
            .unwrap_or_default()
            .iter()
            .any(is_hit)
    })
    .await;
    let alerts = reader.alerts(&AlertFilter::default()).unwrap();
    let titles: Vec<&str> = alerts.iter().map(|a| a.title.as_str()).collect();
    assert!(fired, "the imported rule did not fire; alerts: {titles:#?}");
    let hit = alerts.iter().find(|a| is_hit(a)).unwrap();
    assert_eq!(hit.techniques, ["T1087.001"]);
    assert_eq!(hit.severity, vigil_proto::query::Severity::High);

    // `vigil alerts`: the hit's line names the rule (title and id) and its
    // technique.
    let (code, out, err) = vigil(&bin, &["alerts", "--data", data_arg]);
    assert_eq!(code, 0, "vigil alerts: {err}");
    let header = format!("#{} ", hit.id);
    let mut lines = out.lines().skip_while(|l| !l.starts_with(&header));
    let (first, summary) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    assert!(first.contains("techniques=T1087.001"), "{out}");
    assert!(
        summary.contains(&format!("Sigma rule \"{RULE_TITLE}\" ({RULE_ID})")),
        "{out}"
    );
    assert!(summary.contains("getent passwd root"), "{out}");

    if let Some(walk) = console_shows_the_hit(&app, hit.id, &lab.hosts[0].netns).await {
        walk.expect("the console shows the Sigma hit");
    }
    println!(
        "Sigma rule imported, fired and shown in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    w.sensor.shutdown().await;
    app.shutdown().await;
}

/// As a viewer in headless Chromium: the alert list has a row for the hit
/// (rule title, host, technique) that links to the alert page, which shows
/// "Sigma: <title> (<id>)", the level, the tag and the matched field.
async fn console_shows_the_hit(
    app: &Appliance,
    id: u64,
    host_name: &str,
) -> Option<Result<(), String>> {
    let browser = browser().await?;
    let c = browser.client.clone();
    let base = format!("https://127.0.0.1:{}", app.https_addr.port());
    let result = async {
        let err = |e: fantoccini::error::CmdError| e.to_string();
        let viewer = vigil_web_ui::store::Role::Viewer;
        super::evidence_lab::login_as(app, &c, &base, "vera", viewer).await?;
        c.goto(&format!("{base}/alerts")).await.map_err(err)?;
        let row = c
            .find(Locator::XPath(&format!("//tr[.//a[@href='/alerts/{id}']]")))
            .await
            .map_err(|e| format!("no row for alert {id} in the list: {e}"))?
            .text()
            .await
            .map_err(err)?;
        shot(&c, "e2e-sigma-alerts").await;
        // Compared without case: the console's CSS upper-cases some labels.
        let has = |text: &str, want: &str| text.to_lowercase().contains(&want.to_lowercase());
        for want in [RULE_TITLE, host_name, "T1087.001"] {
            if !has(&row, want) {
                return Err(format!("the list row does not show {want:?}: {row}"));
            }
        }
        c.find(Locator::Css(&format!("a[href='/alerts/{id}']")))
            .await
            .map_err(err)?
            .click()
            .await
            .map_err(err)?;
        let mut page = String::new();
        let heading = format!("Sigma: {RULE_TITLE} ({RULE_ID})");
        for _ in 0..50 {
            page = c
                .find(Locator::Css("body"))
                .await
                .map_err(err)?
                .text()
                .await
                .unwrap_or_default();
            if has(&page, &heading) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        shot(&c, "e2e-sigma-alert").await;
        let panel = c
            .find(Locator::Css("section.sigma-rule"))
            .await
            .map_err(|e| format!("no Sigma rule panel: {e}\n{page}"))?
            .text()
            .await
            .map_err(err)?;
        for want in [
            heading.as_str(),
            "Level",
            "high",
            "T1087.001",
            "CommandLine",
            "getent passwd root",
        ] {
            if !has(&panel, want) {
                return Err(format!("the alert page does not show {want:?}:\n{panel}"));
            }
        }
        Ok(())
    }
    .await;
    let _ = c.close().await;
    Some(result)
}
