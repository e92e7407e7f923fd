//! Response in the namespace lab (issue #16): an operator isolates a lab
//! host with the real `vigil respond` CLI (admin socket → signed command →
//! real QUIC → the host's sensor → one nftables transaction in the host's
//! namespace); the host then cannot reach its peer over TCP or ICMP, IPv4
//! or IPv6, while its sensor keeps reporting. The isolation survives a
//! sensor restart, a release sent while the sensor is down is carried out
//! when it returns, an isolation with an expiry lifts by itself, and a
//! collected file comes back with its SHA-256.

use super::{events, eventually, ran, start_sensor, vigil_binary, watch};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vigil_appliance::{Appliance, ServeConfig};
use vigil_proto::query::response::{CommandRecord, CommandStatus, ResponseApi};
use vigil_proto::{CommandState, Receipt, RefusalReason};
use vigil_tests::lab::{require, require_lab, Lab, Unavailable};
use vigil_web_ui::store::ConsoleStore;

/// Run `vigil respond ARGS… --data DIR [--operator admin]`; its stdout.
fn respond(vigil: &Path, data: &Path, args: &[&str]) -> String {
    let out = Command::new(vigil)
        .arg("respond")
        .args(args)
        .arg("--data")
        .arg(data)
        // Reading needs no operator; acting does.
        .args(if matches!(args[0], "list" | "show") {
            &[][..]
        } else {
            &["--operator", "admin"][..]
        })
        .output()
        .expect("run vigil respond");
    assert!(
        out.status.success(),
        "vigil respond {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The id `vigil respond <action>` printed ("command N" on its first line).
fn command_id(stdout: &str) -> u64 {
    stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("command "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no command id in {stdout:?}"))
}

async fn finished(app: &Appliance, id: u64, secs: u64) -> CommandRecord {
    let responder = app.core().responder.clone();
    eventually(secs, || {
        responder.command(id).is_ok_and(|c| c.status.is_final())
    })
    .await;
    responder.command(id).expect("command stored")
}

/// Whether host `from` reaches `addr` by ping and by TCP on `port`.
fn reaches(lab: &Lab, from: usize, addr: &str, port: u16) -> (bool, bool) {
    let ping = lab
        .exec(from, "ping", &["-c", "1", "-W", "1", addr])
        .is_ok();
    let url = format!("/dev/tcp/{addr}/{port}");
    let tcp = lab
        .exec(
            from,
            "timeout",
            &["2", "bash", "-c", &format!("exec 3<>{url}")],
        )
        .is_ok();
    (ping, tcp)
}

/// A TCP listener on every address (v4 and v6) of lab host `i`.
fn listen_everywhere(lab: &Lab, i: usize, port: u16) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &lab.hosts[i].netns, "python3", "-c"])
        .arg(format!(
            "import socket,time\ns=socket.socket(socket.AF_INET6)\n\
             s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('::', {port}))\ns.listen(16)\n\
             while True:\n  c,_=s.accept(); c.close()\n"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 listener")
}

fn tool(path: &str) -> Result<(), Unavailable> {
    if Path::new(path).exists() {
        Ok(())
    } else {
        Err(Unavailable(format!("{path} is not installed")))
    }
}

/// The lab's appliance with its admin socket, so the real CLI reaches it.
async fn start_appliance_with_admin_socket(dir: &Path) -> Appliance {
    let mut cfg = ServeConfig::new(dir).loopback();
    cfg.pipeline.as_mut().expect("detection is on").poll = Duration::from_millis(200);
    Appliance::start(cfg).await.expect("appliance starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_isolates_a_lab_host_and_it_holds_until_released() {
    let test = "an_operator_isolates_a_lab_host_and_it_holds_until_released";
    if !require_lab(test)
        || !require(test, tool("/usr/bin/python3"))
        || !require(test, tool("/usr/sbin/nft"))
        || !require(test, tool("/usr/bin/ping"))
    {
        return;
    }
    let vigil = vigil_binary().expect("the vigil binary is built with the tests");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("appliance");
    let app = start_appliance_with_admin_socket(&data).await;
    let lab = Lab::new(2).expect("lab");
    let v6 = |i: usize| format!("fd42:{:x}::{}", lab.hosts[i].addr.octets()[2], i + 2);
    for i in 0..2 {
        let cidr = format!("{}/64", v6(i));
        lab.exec(i, "ip", &["addr", "add", &cidr, "dev", "eth0", "nodad"])
            .expect("IPv6 address");
    }
    let mut listener = listen_everywhere(&lab, 1, 8080);
    let h1 = watch(&app, &lab, 0, &tmp.path().join("sensor1")).await;
    let state2 = tmp.path().join("sensor2");
    let mut h2 = watch(&app, &lab, 1, &state2).await;
    // Lab sensors share the machine's hostname: name hosts by id.
    let h2_id = h2.host.to_string();
    let h2_id = h2_id.as_str();
    let (v4_peer, v6_peer) = (lab.hosts[1].addr.to_string(), v6(1));
    let before = eventually(10, || {
        reaches(&lab, 0, &v4_peer, 8080) == (true, true)
            && reaches(&lab, 0, &v6_peer, 8080) == (true, true)
    })
    .await;
    assert!(before, "h1 does not reach h2 before isolation");

    // Isolate h2 from the CLI; the receipt proves the ruleset installed.
    let out = respond(
        &vigil,
        &data,
        &["isolate", h2_id, "--reason", "lab: contain h2"],
    );
    let isolate = finished(&app, command_id(&out), 20).await;
    assert_eq!(isolate.status, CommandStatus::Done, "{isolate:#?}");
    let result = isolate.result.as_ref().unwrap();
    let Receipt::Isolation(receipt) = &result.receipt else {
        panic!("isolation receipt expected: {result:?}");
    };
    assert_ne!(receipt.ruleset_sha256, [0; 32]);
    let codes: Vec<_> = isolate.history.iter().map(|t| t.status.code()).collect();
    assert_eq!(
        codes,
        ["queued", "sent", "acknowledged", "done"],
        "lifecycle"
    );
    for peer in [&v4_peer, &v6_peer] {
        assert_eq!(
            reaches(&lab, 0, peer, 8080),
            (false, false),
            "h1 still reaches isolated h2 at {peer}"
        );
        assert!(
            !reaches(&lab, 1, &lab.hosts[0].addr.to_string(), 22).0,
            "isolated h2 pings out"
        );
    }
    let responder = app.core().responder.clone();
    assert!(
        responder.isolation(h2.host, now_ns()).unwrap().is_some(),
        "the host page's banner source"
    );
    // Its sensor keeps reporting while isolated.
    lab.exec(1, "sleep", &["0.31"]).unwrap();
    let reader = app.reader();
    assert!(
        eventually(20, || ran(&*reader, h2.host, "sleep", "0.31")).await,
        "no events from the isolated host"
    );

    // A restart of the sensor keeps the host isolated; a release queued
    // while the sensor is down is carried out when it is back.
    h2.sensor.shutdown().await;
    assert_eq!(
        reaches(&lab, 0, &v4_peer, 8080),
        (false, false),
        "sensor stop lifted isolation"
    );
    h2.sensor = start_sensor(&app, &lab, 1, &state2).await;
    let reconnected = eventually(20, || app.core().registry.is_connected(h2.host)).await;
    assert!(reconnected, "h2's sensor did not reconnect");
    assert_eq!(
        reaches(&lab, 0, &v4_peer, 8080),
        (false, false),
        "a sensor restart lifted isolation"
    );
    h2.sensor.shutdown().await;
    let out = respond(
        &vigil,
        &data,
        &["release", h2_id, "--reason", "lab: cleaned"],
    );
    let release_id = command_id(&out);
    assert_eq!(
        responder.command(release_id).unwrap().status,
        CommandStatus::Queued
    );
    h2.sensor = start_sensor(&app, &lab, 1, &state2).await;
    let release = finished(&app, release_id, 30).await;
    assert_eq!(release.status, CommandStatus::Done, "{release:#?}");
    assert!(matches!(
        release.result.as_ref().unwrap().receipt,
        Receipt::Released { was_isolated: true }
    ));
    let after = eventually(10, || {
        reaches(&lab, 0, &v4_peer, 8080) == (true, true)
            && reaches(&lab, 0, &v6_peer, 8080) == (true, true)
    })
    .await;
    assert!(after, "release did not restore reachability");
    assert!(responder.isolation(h2.host, now_ns()).unwrap().is_none());

    // An isolation with an expiry lifts by itself.
    let out = respond(
        &vigil,
        &data,
        &["isolate", h2_id, "--for", "4s", "--reason", "lab: brief"],
    );
    let brief = finished(&app, command_id(&out), 20).await;
    assert_eq!(brief.status, CommandStatus::Done, "{brief:#?}");
    assert_eq!(reaches(&lab, 0, &v4_peer, 8080), (false, false));
    let lifted = eventually(15, || reaches(&lab, 0, &v4_peer, 8080) == (true, true)).await;
    assert!(lifted, "expired isolation still in force");

    // Collect: a regular file comes back with its SHA-256; /dev/zero is refused.
    let file = lab.dir().join("h2-collect-me");
    std::fs::write(&file, b"evidence bytes\n").unwrap();
    let path = file.display().to_string();
    let out = respond(
        &vigil,
        &data,
        &[
            "collect",
            h2_id,
            "--path",
            &path,
            "--reason",
            "lab: collect",
        ],
    );
    let collect = finished(&app, command_id(&out), 20).await;
    let Some(Receipt::Collect(c)) = collect.result.as_ref().map(|r| &r.receipt) else {
        panic!("collect receipt expected: {collect:#?}");
    };
    let want: [u8; 32] = Sha256::digest(b"evidence bytes\n").into();
    assert_eq!(c.sha256, want);
    let saved = tmp.path().join("collected");
    let id = collect.id().to_string();
    respond(
        &vigil,
        &data,
        &["download", &id, "-o", &saved.display().to_string()],
    );
    assert_eq!(std::fs::read(&saved).unwrap(), b"evidence bytes\n");
    let out = respond(
        &vigil,
        &data,
        &[
            "collect",
            h2_id,
            "--path",
            "/dev/zero",
            "--reason",
            "lab: bad",
        ],
    );
    let zero = finished(&app, command_id(&out), 20).await;
    assert_eq!(zero.status, CommandStatus::Refused);
    assert_eq!(
        zero.result.unwrap().state,
        CommandState::Refused(RefusalReason::UnsafeTarget)
    );

    kill_names_one_process(&vigil, &data, &app, &lab, h2_id).await;
    kill_by_the_start_time_of_its_event(&vigil, &data, &app, &lab, h2.host).await;
    keys_and_accounts_of_a_real_user(&vigil, &data, &app, tmp.path(), h2_id).await;
    refused_commands_never_run(&app, &lab, h1.host, h2.host, collect.command.clone()).await;

    // A command that cannot reach its host in time expires, never runs.
    h2.sensor.shutdown().await;
    let out = respond(
        &vigil,
        &data,
        &[
            "processes",
            h2_id,
            "--deliver-within",
            "1s",
            "--reason",
            "lab: too late",
        ],
    );
    let late = finished(&app, command_id(&out), 10).await;
    assert_eq!(late.status, CommandStatus::Expired);
    let listed = respond(&vigil, &data, &["list", "--host", h2_id]);
    assert!(
        listed.contains("expired") && listed.contains("done"),
        "{listed}"
    );
    let audit = app.core().console.audit_entries().unwrap();
    for action in [
        "command.issue",
        "command.receipt",
        "command.download",
        "command.expired",
    ] {
        assert!(
            audit.iter().any(|e| e.action == action),
            "no {action} audit entry"
        );
    }

    let _ = listener.kill();
    let _ = listener.wait();
    h1.sensor.shutdown().await;
    app.shutdown().await;
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// In the real console (headless Chromium, already logged in as the
/// admin): the incident shows its root cause and checklist; the
/// checklist's "isolate" step for the last host opens the confirmation,
/// the command is sent, and its receipt appears on the command page. Then
/// a viewer sees no action and a forged POST from the viewer's session is
/// refused.
pub async fn console_isolates_from_checklist(
    app: &Appliance,
    c: &fantoccini::Client,
    base: &str,
    incident: u64,
    last: vigil_proto::HostId,
    last_name: &str,
) -> Result<(), String> {
    use fantoccini::Locator;
    let err = |e: fantoccini::error::CmdError| e.to_string();
    let text = || async { c.find(Locator::Css("body")).await?.text().await };
    c.goto(&format!("{base}/alerts/{incident}"))
        .await
        .map_err(|e| e.to_string())?;
    let page = text().await.map_err(err)?;
    for needle in ["Root cause", "Remediation checklist", "MTTD"] {
        if !page.to_lowercase().contains(&needle.to_lowercase()) {
            return Err(format!("incident page without {needle:?}:\n{page}"));
        }
    }
    super::shot(c, "e2e-incident-remediation").await;
    let step = format!("isolate on {last_name}");
    c.find(Locator::XPath(&format!("//a[normalize-space()='{step}']")))
        .await
        .map_err(|e| format!("no checklist link {step:?}: {e}\n{page}"))?
        .click()
        .await
        .map_err(err)?;
    c.find(Locator::Css("textarea[name=reason]"))
        .await
        .map_err(|e| format!("confirmation form: {e}"))?
        .send_keys("contain the last hop (browser test)")
        .await
        .map_err(err)?;
    let confirm = text().await.map_err(err)?;
    if !confirm.contains("inet vigil_isolate") {
        return Err(format!(
            "confirmation does not show the rule set:\n{confirm}"
        ));
    }
    super::shot(c, "e2e-isolate-confirm").await;
    c.find(Locator::XPath("//button[normalize-space()='Send command']"))
        .await
        .map_err(err)?
        .click()
        .await
        .map_err(err)?;
    // The command page refreshes itself until the receipt arrives.
    let mut receipt = String::new();
    for _ in 0..150 {
        receipt = text().await.unwrap_or_default();
        if receipt.contains("Ruleset SHA-256") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    if !receipt.contains("Ruleset SHA-256") {
        return Err(format!("no receipt on the command page:\n{receipt}"));
    }
    super::shot(c, "e2e-isolate-receipt").await;
    let responder = app.core().responder.clone();
    if responder.isolation(last, now_ns()).ok().flatten().is_none() {
        return Err("the appliance does not know the host is isolated".into());
    }
    c.goto(&format!("{base}/hosts/{last}"))
        .await
        .map_err(|e| e.to_string())?;
    let host_page = text().await.map_err(err)?;
    if !host_page.contains("Isolated since") {
        return Err(format!(
            "host page without the isolation banner:\n{host_page}"
        ));
    }
    // The incident's own figures once contained (docs/BENCHMARKS.md).
    c.goto(&format!("{base}/alerts/{incident}"))
        .await
        .map_err(|e| e.to_string())?;
    let page = text().await.map_err(err)?;
    let lines: Vec<&str> = page.lines().collect();
    let figures: Vec<String> = ["MTTD", "Time to contain", "Time to close"]
        .iter()
        .filter_map(|k| {
            let i = lines.iter().position(|l| l == k)?;
            Some(format!("{k}: {}", lines.get(i + 1)?))
        })
        .collect();
    let isolation = responder
        .commands(Some(last), 1)
        .map_err(|e| e.to_string())?
        .pop()
        .ok_or("no isolation command stored")?;
    let issued_to_done_ms = isolation
        .entered(CommandStatus::Done)
        .zip(isolation.entered(CommandStatus::Queued))
        .map(|(done, queued)| done.saturating_sub(queued) / 1_000_000);
    eprintln!(
        "lab incident {incident}: {}; isolation issued → receipt: {issued_to_done_ms:?} ms",
        figures.join(" | ")
    );
    // Upper-cased by CSS in the visible text.
    if !page.to_lowercase().contains("done by") {
        return Err(format!(
            "the checklist does not mark the isolation done:\n{page}"
        ));
    }

    // A viewer: no action anywhere, and a forged POST is refused.
    super::evidence_lab::relogin_as(app, c, base, "vera", vigil_web_ui::store::Role::Viewer)
        .await?;
    for path in [format!("/hosts/{last}"), format!("/alerts/{incident}")] {
        c.goto(&format!("{base}{path}"))
            .await
            .map_err(|e| e.to_string())?;
        let buttons = c
            .find_all(Locator::XPath(
                "//button[normalize-space()='Isolate host'] | //a[starts-with(normalize-space(), 'isolate on')]",
            ))
            .await
            .map_err(err)?;
        if !buttons.is_empty() {
            return Err(format!(
                "a viewer sees {} action(s) on {path}",
                buttons.len()
            ));
        }
    }
    let before = responder
        .commands(Some(last), 0)
        .map_err(|e| e.to_string())?
        .len();
    let status = c
        .execute(
            &format!(
                "const csrf = document.querySelector('input[name=csrf]').value;
                 return fetch('/hosts/{last}/respond', {{method: 'POST',
                   headers: {{'content-type': 'application/x-www-form-urlencoded'}},
                   body: 'action=release&reason=forged&csrf=' + encodeURIComponent(csrf)}})
                   .then(r => r.status);"
            ),
            vec![],
        )
        .await
        .map_err(err)?;
    if status.as_u64() != Some(403) {
        return Err(format!(
            "a viewer's forged POST answered {status}, want 403"
        ));
    }
    let after = responder
        .commands(Some(last), 0)
        .map_err(|e| e.to_string())?
        .len();
    if after != before {
        return Err("a viewer's forged POST created a command".into());
    }
    Ok(())
}

/// Commands a sensor must not run, handed to h2's live connection as an
/// attacker on the wire or a confused appliance would: a tampered copy, a
/// command signed for h1, and a replay of one already done. The real
/// sensor refuses each and the appliance counts it; nothing changes on h2.
async fn refused_commands_never_run(
    app: &Appliance,
    lab: &Lab,
    h1: vigil_proto::HostId,
    h2: vigil_proto::HostId,
    done: vigil_proto::Command,
) {
    use vigil_appliance::response::ApprovalPolicy;
    use vigil_proto::query::response::CommandRequest;
    let responder = app.core().responder.clone();
    let count = |label: &str| {
        app.core()
            .metrics
            .commands
            .snapshot()
            .get(label)
            .copied()
            .unwrap_or(0)
    };
    // Isolations of "servers" wait for approval: stored and signed, never
    // delivered, so forged copies are the only ones the sensor sees.
    let policy = ApprovalPolicy {
        approve_server_isolation: true,
        servers: [h1, h2].into_iter().collect(),
    };
    responder.set_policy(&policy, "admin").expect("policy");
    let held = |host| {
        responder
            .issue(CommandRequest {
                host,
                action: vigil_proto::CommandAction::IsolateHost {
                    allow: Vec::new(),
                    expires_ns: None,
                    allow_dhcp_nd: false,
                },
                operator: "admin".into(),
                reason: "lab: held for approval".into(),
                deliver_within_ns: None,
                incident: None,
                step: None,
            })
            .expect("issue")
    };
    let for_h2 = held(h2);
    assert_eq!(for_h2.status, CommandStatus::AwaitingApproval);
    let mut tampered = for_h2.command.clone();
    tampered.reason = "lab: tampered on the way".into();
    app.send_command(h2, tampered).expect("h2 is connected");
    let refused = eventually(20, || {
        responder
            .command(for_h2.id())
            .is_ok_and(|c| c.status == CommandStatus::Refused)
    })
    .await;
    let rec = responder.command(for_h2.id()).unwrap();
    assert!(refused, "{rec:#?}");
    assert_eq!(
        rec.result.unwrap().state,
        CommandState::Refused(RefusalReason::BadSignature)
    );
    assert!(count("refused:bad_signature") >= 1);

    let for_h1 = held(h1);
    let rejected = count("result_rejected");
    app.send_command(h2, for_h1.command.clone())
        .expect("h2 is connected");
    assert!(
        eventually(20, || count("result_rejected") > rejected).await,
        "h2's answer about h1's command was not counted"
    );
    assert_eq!(
        responder.command(for_h1.id()).unwrap().status,
        CommandStatus::AwaitingApproval,
        "h2 touched h1's command"
    );

    let replays = count("refused:replayed");
    app.send_command(h2, done).expect("h2 is connected");
    assert!(
        eventually(20, || count("refused:replayed") > replays).await,
        "a replayed command was not refused"
    );
    // None of them isolated h2.
    let v4_peer = lab.hosts[1].addr.to_string();
    assert_eq!(reaches(lab, 0, &v4_peer, 8080), (true, true));
    responder.cancel(for_h1.id(), "admin").expect("cancel");
    responder
        .set_policy(&ApprovalPolicy::default(), "admin")
        .expect("policy");
}

/// `vigil respond kill` reaches the named process through the real sensor:
/// a wrong start time (what a reused pid looks like) is refused and the
/// process lives; the right one kills it and the receipt names it.
async fn kill_names_one_process(vigil: &Path, data: &Path, app: &Appliance, lab: &Lab, h2: &str) {
    let mut victim = Command::new("ip")
        .args(["netns", "exec", &lab.hosts[1].netns, "sleep", "300"])
        .spawn()
        .expect("sleep in h2");
    // `ip netns exec` execs the program: the child's pid is sleep's.
    let pid = victim.id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let ticks: u64 = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|t| t.parse().ok())
        .expect("start time");
    let (pid_s, wrong) = (pid.to_string(), (ticks + 1).to_string());
    let out = respond(
        vigil,
        data,
        &[
            "kill",
            h2,
            "--pid",
            &pid_s,
            "--start-time",
            &wrong,
            "--reason",
            "lab: wrong start",
        ],
    );
    let refused = finished(app, command_id(&out), 20).await;
    assert_eq!(
        refused.result.as_ref().map(|r| r.state),
        Some(CommandState::Refused(RefusalReason::TargetMismatch)),
        "{refused:#?}"
    );
    assert!(victim.try_wait().unwrap().is_none(), "the process died");
    let right = ticks.to_string();
    let out = respond(
        vigil,
        data,
        &[
            "kill",
            h2,
            "--pid",
            &pid_s,
            "--start-time",
            &right,
            "--reason",
            "lab: kill",
        ],
    );
    let killed = finished(app, command_id(&out), 20).await;
    let Some(Receipt::Kill(k)) = killed.result.as_ref().map(|r| &r.receipt) else {
        panic!("kill receipt expected: {killed:#?}");
    };
    assert_eq!((k.pid, k.start_time_ticks, k.signal), (pid, ticks, 9));
    assert!(k.exe.ends_with("sleep"), "{}", k.exe);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(victim.wait().unwrap().signal(), Some(9));
}

/// The remediation checklist's one-click kill: the process is named by the
/// start time its stored `ProcessStart` event carries, and the real sensor
/// maps it back to the process's clock ticks exactly.
async fn kill_by_the_start_time_of_its_event(
    vigil: &Path,
    data: &Path,
    app: &Appliance,
    lab: &Lab,
    h2: vigil_proto::HostId,
) {
    let mut victim = Command::new("ip")
        .args(["netns", "exec", &lab.hosts[1].netns, "sleep", "301"])
        .spawn()
        .expect("sleep in h2");
    let pid = victim.id();
    let reader = app.reader();
    let started = || {
        events(&*reader, h2, vigil_proto::EventKind::ProcessStart)
            .iter()
            .find_map(|e| match &e.payload {
                vigil_proto::Payload::ProcessStart(p) if p.pid == pid => p.start_time_ns,
                _ => None,
            })
    };
    assert!(
        eventually(20, || started().is_some()).await,
        "no start event for pid {pid}"
    );
    let ns = started().unwrap().to_string();
    let out = respond(
        vigil,
        data,
        &[
            "kill",
            &h2.to_string(),
            "--pid",
            &pid.to_string(),
            "--started-at-ns",
            &ns,
            "--reason",
            "lab: kill from the checklist",
        ],
    );
    let killed = finished(app, command_id(&out), 20).await;
    let Some(Receipt::Kill(k)) = killed.result.as_ref().map(|r| &r.receipt) else {
        panic!("kill receipt expected: {killed:#?}");
    };
    assert_eq!((k.pid, k.signal), (pid, 9), "{killed:#?}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(victim.wait().unwrap().signal(), Some(9));
}

/// Removes the lab's local account when the test ends, however it ends.
struct LocalUser(String);

impl Drop for LocalUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).status();
    }
}

/// On a real local account: a collected `authorized_keys` is listed line by
/// line with fingerprints `ssh-keygen` agrees with; removing one line by the
/// hash the listing gives removes exactly it; disabling the account locks
/// its password and expires it in the real `/etc/shadow`.
async fn keys_and_accounts_of_a_real_user(
    vigil: &Path,
    data: &Path,
    app: &Appliance,
    tmp: &Path,
    h2: &str,
) {
    let name = format!("vglab{}", std::process::id() % 100_000);
    let home = tmp.join(&name);
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let made = Command::new("useradd")
        .args(["-M", "-s", "/usr/sbin/nologin", "-d"])
        .arg(&home)
        .arg(&name)
        .status()
        .expect("run useradd");
    assert!(made.success(), "useradd {name}");
    let _user = LocalUser(name.clone());
    let mut lines = Vec::new();
    let mut prints = Vec::new();
    for who in ["alice@laptop", "attacker@implant"] {
        let key = tmp.join(format!("key-{}", lines.len()));
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", who, "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(ok.success());
        let pubkey = key.with_extension("pub");
        lines.push(
            std::fs::read_to_string(&pubkey)
                .unwrap()
                .trim_end()
                .to_owned(),
        );
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(&pubkey)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        prints.push(text.split_whitespace().nth(1).unwrap().to_owned());
    }
    let keys = home.join(".ssh/authorized_keys");
    std::fs::write(&keys, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
    let path = keys.display().to_string();
    let out = respond(
        vigil,
        data,
        &["collect", h2, "--path", &path, "--reason", "lab: keys"],
    );
    let collected = finished(app, command_id(&out), 20).await;
    let listed = collected
        .result
        .as_ref()
        .map(|r| r.key_lines.clone())
        .unwrap_or_default();
    let fps: Vec<&str> = listed.iter().map(|k| k.fingerprint.as_str()).collect();
    assert_eq!(fps, prints, "{collected:#?}");
    assert_eq!(listed[1].comment, "attacker@implant");
    let out = respond(
        vigil,
        data,
        &[
            "remove-key",
            h2,
            "--user",
            &name,
            "--line-sha256",
            &listed[1].line_sha256,
            "--reason",
            "lab: the planted key",
        ],
    );
    let removed = finished(app, command_id(&out), 20).await;
    let Some(Receipt::KeyRemoved { line, .. }) = removed.result.as_ref().map(|r| &r.receipt) else {
        panic!("key removal receipt expected: {removed:#?}");
    };
    assert_eq!(line, &lines[1]);
    assert_eq!(
        std::fs::read_to_string(&keys).unwrap(),
        format!("{}\n", lines[0])
    );
    let out = respond(
        vigil,
        data,
        &[
            "disable-account",
            h2,
            "--user",
            &name,
            "--reason",
            "lab: account",
        ],
    );
    let disabled = finished(app, command_id(&out), 20).await;
    assert_eq!(disabled.status, CommandStatus::Done, "{disabled:#?}");
    let shadow = Command::new("getent")
        .args(["shadow", &name])
        .output()
        .unwrap();
    let entry = String::from_utf8(shadow.stdout).unwrap();
    let fields: Vec<&str> = entry.trim_end().split(':').collect();
    assert!(fields[1].starts_with('!'), "password not locked: {entry}");
    assert_eq!(fields[7], "1", "account not expired: {entry}");
}
