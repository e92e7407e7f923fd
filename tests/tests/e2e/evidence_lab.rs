//! Evidence from the console (issue #17), at the end of the lab browser
//! walk: an auditor exports the lab incident's bundle from its page, the
//! job page shows it ready, the browser downloads it with the auditor's
//! session, and the real `vigil verify` accepts it offline; one flipped
//! byte makes it fail and name the broken file.

use super::vigil_binary;
use fantoccini::Locator;
use std::time::Duration;
use vigil_appliance::Appliance;
use vigil_web_ui::store::ConsoleStore;

fn hex_decode(s: &str) -> Result<Vec<u8>, String> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2).unwrap_or("zz"), 16).map_err(|e| e.to_string()))
        .collect()
}

/// Log out whoever is in, then log in as a fresh console user `name` of
/// `role` (created here with a test password).
pub async fn relogin_as(
    app: &Appliance,
    c: &fantoccini::Client,
    base: &str,
    name: &str,
    role: vigil_web_ui::store::Role,
) -> Result<(), String> {
    c.find(Locator::XPath("//button[normalize-space()='Log out']"))
        .await
        .map_err(|e| format!("log-out button: {e}"))?
        .click()
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    login_as(app, c, base, name, role).await
}

/// Log in as a fresh console user `name` of `role` (created here with a
/// test password).
pub async fn login_as(
    app: &Appliance,
    c: &fantoccini::Client,
    base: &str,
    name: &str,
    role: vigil_web_ui::store::Role,
) -> Result<(), String> {
    let err = |e: fantoccini::error::CmdError| e.to_string();
    let password = "console-password-for-the-test";
    app.core()
        .console
        .put_user(vigil_web_ui::store::User {
            name: name.into(),
            role,
            password_hash: vigil_web_ui::auth::hash_password(password)
                .map_err(|e| e.to_string())?,
            created_ns: vigil_web_ui::system_now_ns(),
            must_change_password: false,
            disabled: false,
        })
        .map_err(|e| e.to_string())?;
    c.goto(&format!("{base}/login")).await.map_err(err)?;
    for (field, value) in [("username", name), ("password", password)] {
        c.find(Locator::Css(&format!("input[name={field}]")))
            .await
            .map_err(err)?
            .send_keys(value)
            .await
            .map_err(err)?;
    }
    c.find(Locator::XPath("//button[normalize-space()='Sign in']"))
        .await
        .map_err(err)?
        .click()
        .await
        .map_err(err)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// The walk's evidence part; see the module doc.
pub async fn console_exports_a_verifiable_bundle(
    app: &Appliance,
    c: &fantoccini::Client,
    base: &str,
    incident: u64,
) -> Result<(), String> {
    let err = |e: fantoccini::error::CmdError| e.to_string();
    let vigil = vigil_binary().ok_or("the vigil binary is built with the tests")?;
    relogin_as(app, c, base, "audra", vigil_web_ui::store::Role::Auditor).await?;
    c.goto(&format!("{base}/alerts/{incident}"))
        .await
        .map_err(err)?;
    c.find(Locator::XPath(
        "//button[normalize-space()='Export evidence']",
    ))
    .await
    .map_err(|e| format!("export button: {e}"))?
    .click()
    .await
    .map_err(err)?;
    // The job page refreshes itself until the bundle is written.
    let started = std::time::Instant::now();
    let href = loop {
        if let Ok(link) = c.find(Locator::Id("export-download")).await {
            break link
                .attr("href")
                .await
                .map_err(err)?
                .ok_or("download link without href")?;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let page = c
                .find(Locator::Css("body"))
                .await
                .map_err(err)?
                .text()
                .await
                .map_err(err)?;
            return Err(format!("the export did not finish in 60 s:\n{page}"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!(
        "lab incident {incident}: bundle ready in {} ms",
        started.elapsed().as_millis()
    );
    super::shot(c, "e2e-export").await;
    // Downloaded by the browser, with the auditor's session.
    let hex = c
        .execute(
            "return fetch(arguments[0]).then(r => r.ok ? r.arrayBuffer() : Promise.reject(r.status))
               .then(b => Array.from(new Uint8Array(b), x => x.toString(16).padStart(2, '0')).join(''));",
            vec![serde_json::Value::String(href.clone())],
        )
        .await
        .map_err(|e| format!("download {href}: {e}"))?;
    let bytes = hex_decode(hex.as_str().ok_or("download answered no bytes")?)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let bundle = dir.path().join("incident.tar");
    std::fs::write(&bundle, &bytes).map_err(|e| e.to_string())?;
    let verify = |path: &std::path::Path| {
        std::process::Command::new(&vigil)
            .arg("verify")
            .arg(path)
            .output()
            .map_err(|e| e.to_string())
    };
    let out = verify(&bundle)?;
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "vigil verify refused the console's bundle:\n{report}"
        ));
    }
    let downloaded = app
        .core()
        .console
        .audit_entries()
        .map_err(|e| e.to_string())?
        .iter()
        .any(|e| e.actor == "audra" && e.action == "evidence.download");
    if !downloaded {
        return Err("the download is not in the audit log".into());
    }

    // One flipped byte in the raw events: verify fails and names the file.
    // (The file's ustar header is the 512-byte block named events.jsonl;
    // its bytes follow it.)
    let header = (0..bytes.len())
        .step_by(512)
        .find(|i| bytes[*i..].starts_with(b"events.jsonl\0"))
        .ok_or("no events.jsonl in the bundle")?;
    let mut tampered = bytes.clone();
    tampered[header + 512 + 1] ^= 0x20;
    let broken = dir.path().join("tampered.tar");
    std::fs::write(&broken, &tampered).map_err(|e| e.to_string())?;
    let out = verify(&broken)?;
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() || !report.contains("FAILED file events.jsonl") {
        return Err(format!("a flipped byte was not named:\n{report}"));
    }
    Ok(())
}
