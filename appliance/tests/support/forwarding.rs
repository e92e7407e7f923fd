//! SIEM forwarding (#17) through the real appliance: a receiver from
//! `DATA/forward.toml` (TLS with a test CA) to a real rsyslogd on
//! loopback; a Sigma alert raised by the real pipeline from an event sent
//! over real QUIC, and an audit entry appended through the console store,
//! both arrive in sequence order. And the receivers page over HTTPS:
//! analysts and viewers are refused, hostile fields are refused with the
//! field named, an admin's receiver is saved 0600, audited and forwarded to.

use super::rsyslog_daemon::{rsyslog_available, Rsyslog};
use super::{ack, https_raw};
use std::path::Path;
use std::time::{Duration, Instant};
use vigil_appliance::pipeline::PipelineConfig;
use vigil_appliance::{Appliance, ServeConfig};
use vigil_proto::{ControlMessage, Event, EventHeader, HostId, Payload};
use vigil_testkit::sim_sensor::{client_endpoint, enroll, SimConn};
use vigil_web_ui::auth::{random_token, token_id, SESSION_TTL_NS};
use vigil_web_ui::store::{AuditDraft, ConsoleStore, Role, Session, User};

fn now_ns() -> u64 {
    vigil_appliance::system_clock()()
}

/// A process start the shipped Sigma rules flag (shell under WmiPrvSE).
fn wmi_shell(host: HostId, seq: u64, ts_ns: u64) -> Event {
    Event {
        header: EventHeader { host, seq, ts_ns },
        payload: Payload::ProcessStart(vigil_proto::ProcessStart {
            pid: 4242,
            ppid: 900,
            exe: Some(r"C:\Windows\System32\cmd.exe".into()),
            argv: vec!["cmd.exe".into(), "/c".into(), "whoami".into()],
            uid: None,
            user: Some("SYSTEM".into()),
            cwd: None,
            parent_exe: Some(r"C:\Windows\System32\wbem\WmiPrvSE.exe".into()),
            start_time_ns: None,
            netns: 0,
            exited_before_enrichment: false,
        }),
    }
}

async fn appliance(data: &Path) -> Appliance {
    let mut cfg = ServeConfig::new(data).loopback();
    cfg.admin_socket = false;
    let mut pipeline = PipelineConfig {
        poll: Duration::from_millis(50),
        ..PipelineConfig::default()
    };
    pipeline.detector.learning_period_ns = 0;
    cfg.pipeline = Some(pipeline);
    Appliance::start(cfg).await.unwrap()
}

/// `(msgid, seq, message)` of every line rsyslog wrote to `file`.
fn received(file: &Path) -> Vec<(String, u64, String)> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            // <PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG
            let mut parts = line.splitn(7, ' ');
            let msgid = parts.nth(5).expect("MSGID").to_string();
            let rest = parts.next().expect("SD and MSG");
            let (sd, msg) = rest.split_once("] ").expect("structured data");
            let seq = sd
                .strip_prefix("[vigil@32473 seq=\"")
                .and_then(|s| s.strip_suffix('"'))
                .expect("our SD element")
                .parse()
                .expect("numeric seq");
            (msgid, seq, msg.to_string())
        })
        .collect()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `None` (with the reason printed) when rsyslog is missing outside CI.
fn rsyslog_or_skip() -> Option<()> {
    if let Err(reason) = rsyslog_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs rsyslog: {reason}"
        );
        eprintln!("skipped: {reason}");
        return None;
    }
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_alert_and_an_audit_entry_reach_a_real_rsyslog_in_sequence() {
    let Some(()) = rsyslog_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rs = dir.path().join("rsyslog");
    std::fs::create_dir_all(&rs).unwrap();
    let daemon = Rsyslog::start(&rs).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("forward.toml"),
        format!(
            "checkpoint_every_secs = 3600\n[[receiver]]\nname = \"siem\"\n\
             address = \"127.0.0.1:{}\"\n\
             transport = {{ type = \"tls\", ca_pem = \"{}\", server_name = \"localhost\" }}\n\
             format = \"ocsf\"\nkinds = [\"alert\", \"incident\", \"audit\"]\n",
            daemon.tls_port,
            rs.join("ca.pem").display()
        ),
    )
    .unwrap();
    let app = appliance(&data).await;

    // One event over real QUIC; the pipeline's Sigma rule raises the alert.
    let ep = client_endpoint().unwrap();
    let tok = app.create_token(Duration::from_secs(60), 1).unwrap();
    let creds = enroll(&ep, app.quic_addr, &app.ca_der(), &tok.token, "ws-1")
        .await
        .unwrap()
        .expect("enrollment accepted");
    let mut conn = SimConn::connect(&ep, app.quic_addr, &creds).await.unwrap();
    assert!(matches!(
        conn.hello(1).await.unwrap(),
        ControlMessage::Welcome(_)
    ));
    let a = ack(conn
        .send_batch(&[wmi_shell(creds.host, 1, now_ns())])
        .await
        .unwrap());
    assert_eq!(a.last_seq, 1);
    let log = rs.join("tls.log");
    wait_for("the alert at rsyslog", || {
        received(&log).iter().any(|(m, _, _)| m == "alert")
    })
    .await;
    let entry = app
        .core()
        .console
        .append_audit(AuditDraft {
            ts_ns: now_ns(),
            actor: "admin".into(),
            action: "settings.update".into(),
            target: "settings".into(),
            detail: "forwarding test".into(),
        })
        .unwrap();
    wait_for("the audit entry at rsyslog", || {
        received(&log)
            .iter()
            .any(|(m, _, msg)| m == "audit" && msg.contains("forwarding test"))
    })
    .await;

    let got = received(&log);
    let seqs: Vec<u64> = got.iter().map(|(_, s, _)| *s).collect();
    let want: Vec<u64> = (1..=got.len() as u64).collect();
    assert_eq!(seqs, want, "in sequence order, none missing or twice");
    let alert = got.iter().find(|(m, _, _)| m == "alert").unwrap();
    let audit = got
        .iter()
        .find(|(m, _, msg)| m == "audit" && msg.contains("forwarding test"))
        .expect("our audit entry");
    assert!(alert.1 < audit.1, "the alert was forwarded first");
    let v: serde_json::Value = serde_json::from_str(&alert.2).unwrap();
    assert_eq!(v["class_uid"], 2004, "OCSF Detection Finding: {v}");
    assert_eq!(v["metadata"]["sequence"], alert.1);
    let title = v["finding_info"]["title"].as_str().unwrap();
    assert!(title.contains("WMI provider host"), "{title}");
    let a: serde_json::Value = serde_json::from_str(&audit.2).unwrap();
    assert_eq!(a["unmapped"]["audit_seq"], entry.seq, "{a}");
    assert_eq!(a["api"]["operation"], "settings.update");

    let sent = format!(
        "vigil_forward_records_total{{receiver=\"siem\",outcome=\"sent\"}} {}",
        got.len()
    );
    wait_for("the sent counter", || {
        app.core().forwarding.prometheus().contains(&sent)
    })
    .await;
    let metrics = app.core().forwarding.prometheus();
    assert!(metrics.contains("vigil_forward_queue_records{receiver=\"siem\"} 0"));
    assert!(metrics.contains("vigil_forward_oldest_pending_seconds{receiver=\"siem\"} 0"));
    app.shutdown().await;
    let mut daemon = daemon;
    daemon.stop();
}

/// A logged-in console user of `role`: the cookie and CSRF token (also
/// used by the Add hosts tests).
pub(crate) fn session(app: &Appliance, name: &str, role: Role) -> (String, String) {
    let console = app.core().console.clone();
    console
        .put_user(User {
            name: name.into(),
            role,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$AAAA$AAAA".into(),
            created_ns: now_ns(),
            must_change_password: false,
            disabled: false,
        })
        .unwrap();
    let (token, csrf) = (random_token(), random_token());
    console
        .put_session(Session {
            id: token_id(&token),
            user: name.into(),
            csrf: csrf.clone(),
            created_ns: now_ns(),
            expires_ns: now_ns() + SESSION_TTL_NS,
        })
        .unwrap();
    (format!("__Host-vigil_session={token}"), csrf)
}

async fn request(app: &Appliance, method: &str, path: &str, cookie: &str, form: &str) -> String {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: vigil-appliance\r\nCookie: {cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{form}",
        form.len()
    );
    https_raw(app.https_addr, &app.ca_der(), &req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_manage_receivers_and_hostile_fields_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let app = appliance(dir.path()).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let good = format!("name=siem-2&host=127.0.0.1&port={port}&transport=tcp&format=cef&kind_alert=on&kind_audit=on");

    for (user, role) in [("ana", Role::Analyst), ("vic", Role::Viewer)] {
        let (cookie, csrf) = session(&app, user, role);
        let page = request(&app, "GET", "/settings/receivers", &cookie, "").await;
        assert!(page.starts_with("HTTP/1.1 403"), "{user}: {page}");
        let add = format!("csrf={csrf}&{good}");
        let res = request(&app, "POST", "/settings/receivers", &cookie, &add).await;
        assert!(res.starts_with("HTTP/1.1 403"), "{user}: {res}");
    }
    let (cookie, csrf) = session(&app, "root", Role::Admin);
    // Without the CSRF token: refused before anything is read.
    let res = request(&app, "POST", "/settings/receivers", &cookie, &good).await;
    assert!(res.starts_with("HTTP/1.1 403"), "{res}");
    let long_host = "a".repeat(300);
    let hostile = format!(
        "csrf={csrf}&name=..%2Fetc&host={long_host}&port=99999&transport=tls&ca_pem=%3Cscript%3E&format=xml"
    );
    let res = request(&app, "POST", "/settings/receivers", &cookie, &hostile).await;
    assert!(res.starts_with("HTTP/1.1 400"), "{res}");
    for field in ["name:", "host:", "port:", "ca_pem:", "format:", "kinds:"] {
        assert!(res.contains(field), "{field} not named: {res}");
    }
    assert!(
        !res.contains("<script>"),
        "the PEM field was echoed unescaped"
    );
    assert!(app.core().forwarding.snapshot().is_empty());

    let res = request(
        &app,
        "POST",
        "/settings/receivers",
        &cookie,
        &format!("csrf={csrf}&{good}"),
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 303"), "{res}");
    let again = request(
        &app,
        "POST",
        "/settings/receivers",
        &cookie,
        &format!("csrf={csrf}&{good}"),
    )
    .await;
    assert!(
        again.starts_with("HTTP/1.1 400") && again.contains("another receiver has this name"),
        "{again}"
    );
    let snap = app.core().forwarding.snapshot();
    assert_eq!(snap.len(), 1);
    assert_eq!(snap[0].0.address, format!("127.0.0.1:{port}"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("forward/console.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let page = request(&app, "GET", "/settings/receivers", &cookie, "").await;
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("siem-2"),
        "{page}"
    );

    // The audit entry of the change is itself forwarded to the new receiver.
    let (mut sock, _) = tokio::task::spawn_blocking(move || listener.accept().unwrap())
        .await
        .unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("forward.receiver_add") {
        let n = std::io::Read::read(&mut sock, &mut buf).expect("forwarded bytes");
        assert!(n > 0, "receiver closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("CEF:0|"), "{seen}");

    let res = request(
        &app,
        "POST",
        "/settings/receivers/siem-2/remove",
        &cookie,
        &format!("csrf={csrf}"),
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 303"), "{res}");
    assert!(app.core().forwarding.snapshot().is_empty());
    let actions: Vec<String> = app
        .core()
        .console
        .audit_entries()
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .filter(|a| a.starts_with("forward."))
        .collect();
    assert_eq!(actions, ["forward.receiver_add", "forward.receiver_remove"]);
    app.shutdown().await;
}

/// The response approval policy from the settings page, over real HTTPS:
/// analysts are refused, an unknown server is named back, an admin's
/// change reaches the responder and is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_set_the_response_approval_policy_in_settings() {
    use vigil_proto::query::response::ResponseApi;
    let dir = tempfile::tempdir().unwrap();
    let app = appliance(dir.path()).await;
    let (cookie, csrf) = session(&app, "ana", Role::Analyst);
    let form = format!("csrf={csrf}&approve_server_isolation=1&servers=");
    let res = request(&app, "POST", "/settings/response", &cookie, &form).await;
    assert!(res.starts_with("HTTP/1.1 403"), "{res}");
    let (cookie, csrf) = session(&app, "root", Role::Admin);
    let page = request(&app, "GET", "/settings", &cookie, "").await;
    assert!(page.contains("Response approvals"), "{page}");
    let form = format!("csrf={csrf}&approve_server_isolation=1&servers=no-such-host");
    let res = request(&app, "POST", "/settings/response", &cookie, &form).await;
    assert!(
        res.starts_with("HTTP/1.1 400") && res.contains("no such host: no-such-host"),
        "{res}"
    );
    let responder = app.core().responder.clone();
    assert!(!responder.policy().unwrap().approve_server_isolation);
    let form = format!("csrf={csrf}&approve_server_isolation=1&servers=");
    let res = request(&app, "POST", "/settings/response", &cookie, &form).await;
    assert!(res.starts_with("HTTP/1.1 303"), "{res}");
    assert!(
        ResponseApi::policy(&*responder)
            .unwrap()
            .approve_server_isolation
    );
    let audit = app.core().console.audit_entries().unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "response.policy" && e.actor == "root"),
        "no audit entry"
    );
    app.shutdown().await;
}

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

/// `vigil ARGS --data DATA`: (exit code, stdout + stderr).
fn vigil_cli(data: &Path, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(VIGIL)
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// `vigil serve` on loopback, once its addresses are written.
fn serve(data: &Path, quic_port: u16) -> std::process::Child {
    let child = std::process::Command::new(VIGIL)
        .args(["serve", "--data"])
        .arg(data)
        .args(["--quic-listen", &format!("127.0.0.1:{quic_port}")])
        .args(["--https-listen", "127.0.0.1:0"])
        // No learning period: the Sigma hit this test sends must alert at
        // once (a host still learning only counts its Sigma hits).
        .args(["--learning-period", "0s"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while vigil_appliance::admin::read_addresses(data).is_none_or(|a| a.pid != child.id()) {
        assert!(Instant::now() < deadline, "vigil serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn wait_blocking(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Bytes waiting in the receiver's forwarding queue on disk.
fn queued_bytes(data: &Path, receiver: &str) -> u64 {
    std::fs::read_dir(data.join("forward/queues").join(receiver))
        .map(|dir| {
            dir.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
                .map(|e| e.metadata().map_or(0, |m| m.len()))
                .sum()
        })
        .unwrap_or(0)
}

/// Issue #17's crash window with the real binary: an alert is stored
/// while forwarding cannot run (its CA file not there yet) and the
/// appliance is killed (SIGKILL); restarted with the CA file but the
/// receiver down, the stored alert is queued from the store, and the
/// appliance is killed again; restarted with rsyslog up, the alert arrives
/// exactly once with its id, the whole audit log arrives from entry 1
/// (written before forwarding was configured), each entry once, and a
/// freshly signed checkpoint covering all of it, which `vigil audit
/// prove-extends` accepts.
#[test]
fn a_stored_alert_survives_sigkill_and_the_siem_gets_the_whole_audit_log() {
    let Some(()) = rsyslog_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rs = dir.path().join("rsyslog");
    std::fs::create_dir_all(&rs).unwrap();
    let mut daemon = Rsyslog::start(&rs).unwrap();
    daemon.stop();
    let data = dir.path().join("data");
    // Offline, before any forwarding: audit entries the SIEM must get too.
    let (code, out) = vigil_cli(&data, &["token", "create", "--ttl", "1h", "--uses", "1"]);
    assert_eq!(code, 0, "{out}");
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("token:"))
        .unwrap()
        .trim()
        .to_string();
    let (code, out) = vigil_cli(&data, &["user", "add", "early", "--role", "viewer"]);
    assert_eq!(code, 0, "{out}");
    let siem_ca = dir.path().join("siem-ca.pem");
    std::fs::write(
        data.join("forward.toml"),
        format!(
            "checkpoint_every_secs = 1\n[[receiver]]\nname = \"siem\"\n\
             address = \"127.0.0.1:{}\"\n\
             transport = {{ type = \"tls\", ca_pem = \"{}\", server_name = \"localhost\" }}\n",
            daemon.tls_port,
            siem_ca.display()
        ),
    )
    .unwrap();

    // 1. The CA file is missing: forwarding cannot start; an alert is stored.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = serve(&data, port);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ca = std::fs::read_to_string(data.join("keys/ca.crt")).unwrap();
    let ca_der = x509_parser::pem::parse_x509_pem(ca.as_bytes())
        .unwrap()
        .1
        .contents;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ep = client_endpoint().unwrap();
        let creds = enroll(&ep, addr, &ca_der, &token, "ws-crash")
            .await
            .unwrap()
            .expect("enrolled");
        let mut conn = SimConn::connect(&ep, addr, &creds).await.unwrap();
        assert!(matches!(
            conn.hello(1).await.unwrap(),
            ControlMessage::Welcome(_)
        ));
        let a = ack(conn
            .send_batch(&[wmi_shell(creds.host, 1, now_ns())])
            .await
            .unwrap());
        assert_eq!(a.last_seq, 1);
    });
    let mut alert_ids = Vec::new();
    wait_blocking("the alert in the store", || {
        let (_, out) = vigil_cli(&data, &["alerts", "--json", "--since", "1d"]);
        alert_ids = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["id"].as_u64())
            .collect();
        !alert_ids.is_empty()
    });
    assert_eq!(alert_ids.len(), 1, "one alert");
    assert_eq!(queued_bytes(&data, "siem"), 0, "nothing could be queued");
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();

    // 2. The CA is in place, the receiver still down: the stored alert is
    // queued from the store after the restart. Killed again.
    std::fs::copy(rs.join("ca.pem"), &siem_ca).unwrap();
    let mut server = serve(&data, port);
    wait_blocking("the alert and audit entries in the queue", || {
        queued_bytes(&data, "siem") > 0
    });
    std::thread::sleep(Duration::from_secs(2));
    server.kill().unwrap();
    server.wait().unwrap();

    // 3. rsyslog up, the appliance restarted: everything arrives.
    daemon.restart().unwrap();
    let mut server = serve(&data, port);
    let log = rs.join("tls.log");
    // One more entry, written while forwarding runs.
    let (code, out) = vigil_cli(&data, &["user", "add", "audrey", "--role", "auditor"]);
    assert_eq!(code, 0, "{out}");
    // Appends sign a checkpoint at the first entry and then every 64
    // entries: one of a larger log that is no multiple of 64 was signed
    // by forwarding, for the log as it had grown.
    wait_blocking("the alert, the audit log and a fresh checkpoint", || {
        let got = received(&log);
        let audits = audit_seqs(&got);
        got.iter().any(|(m, _, _)| m == "alert")
            && audits.iter().filter(|(_, a)| a == "user.create").count() == 2
            && last_checkpoint(&got)
                .is_some_and(|(size, _)| size > 1 && size % 64 != 1 && audits.len() as u64 >= size)
    });
    std::thread::sleep(Duration::from_millis(500)); // room for a duplicate to show
    let got = received(&log);
    let alerts: Vec<&String> = got
        .iter()
        .filter(|(m, _, _)| m == "alert")
        .map(|(_, _, msg)| msg)
        .collect();
    assert_eq!(alerts.len(), 1, "the alert exactly once: {alerts:?}");
    let v: serde_json::Value = serde_json::from_str(alerts[0]).unwrap();
    assert_eq!(
        v["finding_info"]["uid"],
        format!("alert-{}", alert_ids[0]),
        "its stable id"
    );
    let audits = audit_seqs(&got);
    let audit_log: Vec<u64> = audits.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        audit_log,
        (1..=audit_log.len() as u64).collect::<Vec<_>>(),
        "the audit log from entry 1 (written before forwarding was set up), in order, each once: {audits:?}"
    );
    let seqs: Vec<u64> = got.iter().map(|(_, s, _)| *s).collect();
    assert_eq!(seqs, (1..=got.len() as u64).collect::<Vec<_>>(), "in order");

    // The forwarded checkpoint was signed for the log as it was, and the
    // appliance proves today's log extends it.
    let (size, note) = last_checkpoint(&got).unwrap();
    assert!(
        size as usize <= audit_log.len(),
        "{size} entries checkpointed"
    );
    let saved = dir.path().join("forwarded.checkpoint");
    std::fs::write(&saved, note).unwrap();
    let (code, out) = vigil_cli(&data, &["audit", "prove-extends", saved.to_str().unwrap()]);
    assert_eq!(code, 0, "prove-extends: {out}");
    server.kill().unwrap();
    server.wait().unwrap();
    daemon.stop();
}

/// `(audit seq, action)` of every audit entry received, in arrival order.
fn audit_seqs(got: &[(String, u64, String)]) -> Vec<(u64, String)> {
    got.iter()
        .filter(|(m, _, _)| m == "audit")
        .map(|(_, _, msg)| {
            let v: serde_json::Value = serde_json::from_str(msg).unwrap();
            let seq = v["unmapped"]["audit_seq"].as_u64().unwrap();
            (
                seq,
                v["api"]["operation"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The tree size and note of the last checkpoint message received.
fn last_checkpoint(got: &[(String, u64, String)]) -> Option<(u64, String)> {
    let (_, _, msg) = got.iter().rev().find(|(m, _, _)| m == "checkpoint")?;
    let v: serde_json::Value = serde_json::from_str(msg).ok()?;
    let note = v["message"].as_str()?.to_string();
    let size = note.lines().nth(1)?.parse().ok()?;
    Some((size, note))
}

/// Everything one accepted connection sends until `marker` shows up.
fn read_until(
    listener: std::net::TcpListener,
    marker: &'static str,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while !seen.contains(marker) {
            let n = std::io::Read::read(&mut sock, &mut buf).expect("forwarded bytes");
            assert!(n > 0, "receiver closed: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        seen
    })
}

/// `from = "start"` (the default) gives a receiver the audit entries
/// written before forwarding was configured; `from = "now"` only those
/// after it was first seen. A receiver that is down keeps what it is owed
/// queued, with its oldest pending age on `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_forwarding_starts_where_each_receiver_says_and_a_down_receiver_shows_its_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let draft = |detail: &str| AuditDraft {
        ts_ns: now_ns(),
        actor: "admin".into(),
        action: "settings.update".into(),
        target: "settings".into(),
        detail: detail.into(),
    };
    let app = appliance(data).await;
    app.core()
        .console
        .append_audit(draft("before-forwarding"))
        .unwrap();
    app.shutdown().await;

    let (all, later) = (
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let receiver = |name: &str, port: u16, from: &str| {
        format!(
            "[[receiver]]\nname = \"{name}\"\naddress = \"127.0.0.1:{port}\"\n\
             transport = {{ type = \"tcp\" }}\nformat = \"cef\"\nkinds = [\"audit\"]\n{from}"
        )
    };
    std::fs::write(
        data.join("forward.toml"),
        format!(
            "checkpoint_every_secs = 3600\n{}{}{}",
            receiver("all", all.local_addr().unwrap().port(), ""),
            receiver(
                "later",
                later.local_addr().unwrap().port(),
                "from = \"now\"\n"
            ),
            receiver("down", down, ""),
        ),
    )
    .unwrap();
    let (all, later) = (
        read_until(all, "after-forwarding"),
        read_until(later, "after-forwarding"),
    );
    let app = appliance(data).await;
    app.core()
        .console
        .append_audit(draft("after-forwarding"))
        .unwrap();
    let all = tokio::task::spawn_blocking(move || all.join().unwrap())
        .await
        .unwrap();
    let later = tokio::task::spawn_blocking(move || later.join().unwrap())
        .await
        .unwrap();
    assert!(all.contains("before-forwarding"), "from start: {all}");
    assert!(!later.contains("before-forwarding"), "from now: {later}");

    use vigil_web_ui::pages::receivers::ReceiversApi;
    let from: Vec<(String, String)> = app
        .core()
        .forwarding
        .receivers()
        .into_iter()
        .map(|r| (r.name, r.audit_from))
        .collect();
    assert_eq!(
        from,
        [("all", "start"), ("later", "now"), ("down", "start")]
            .map(|(n, f)| (n.to_string(), f.to_string()))
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let metrics = app.core().forwarding.prometheus();
    let value = |name: &str| -> f64 {
        let prefix = format!("{name}{{receiver=\"down\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing: {metrics}"))
    };
    assert!(value("vigil_forward_queue_records") >= 2.0, "{metrics}");
    assert!(
        value("vigil_forward_oldest_pending_seconds") >= 1.0,
        "{metrics}"
    );
    assert!(
        value("vigil_forward_send_failures_total") >= 1.0,
        "{metrics}"
    );
    app.shutdown().await;
}
