//! Hostile endpoints in the namespace lab (issue #15): a local user forging
//! sshd lines through the machine's real syslog daemon, and a lab host
//! trying to reach the console of an appliance that serves it on its
//! management network only.

use super::{events, eventually, start_appliance, vigil_binary, watch};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use vigil_proto::{EventKind, Payload};
use vigil_tests::lab::{require, require_lab, Lab, Unavailable};

/// Whether the tool at `path` (from Debian package `package`) is installed.
fn tool(path: &str, package: &str) -> Result<(), Unavailable> {
    if Path::new(path).exists() {
        Ok(())
    } else {
        Err(Unavailable(format!(
            "{path} missing (apt-get install {package})"
        )))
    }
}

/// A child process killed when dropped (also when an assertion fails).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real rsyslogd of the lab host's own: local programs log through its
/// socket (as `logger` does through `/dev/log`) and it appends the auth
/// facility to the host's auth log, the file the sensor reads.
fn start_rsyslog(dir: &Path, auth_log: &Path) -> (Reaped, PathBuf) {
    // The socket's folder must be reachable by an unprivileged user, as
    // /dev/log is; the lab's own folder is private.
    let sock_dir = dir.join("syslog");
    std::fs::create_dir_all(&sock_dir).unwrap();
    std::fs::set_permissions(&sock_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    let sock = sock_dir.join("log.sock");
    let work = dir.join("rsyslog-work");
    std::fs::create_dir_all(&work).unwrap();
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{work}\")\n\
             module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
             input(type=\"imuxsock\" Socket=\"{sock}\")\n\
             auth,authpriv.* action(type=\"omfile\" file=\"{log}\" \
             template=\"RSYSLOG_TraditionalFileFormat\")\n",
            work = work.display(),
            sock = sock.display(),
            log = auth_log.display(),
        ),
    )
    .unwrap();
    let child = Command::new("/usr/sbin/rsyslogd")
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslog.pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rsyslogd");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "rsyslogd did not create {}",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // As /dev/log: any local user may log.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    (Reaped(child), sock)
}

/// `logger` run by user `nobody` on lab host `netns`.
fn logger_as_nobody(netns: &str, sock: &Path, tag: &str, message: &str) -> Output {
    Command::new("ip")
        .args(["netns", "exec", netns, "setpriv"])
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["logger", "--id", "-p", "auth.info", "-t", tag, "-u"])
        .arg(sock)
        .arg(message)
        .output()
        .expect("run logger")
}

/// A local user on a lab host writes an sshd "Accepted" line into the
/// host's auth log through its real syslog daemon. The sensor reports it
/// as tampering, never as a login, while the genuine sshd login that
/// follows on the same host is still a login.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_sshd_line_from_logger_is_tamper_not_a_login() {
    let test = "a_forged_sshd_line_from_logger_is_tamper_not_a_login";
    if !require_lab(test) || !require(test, tool("/usr/sbin/rsyslogd", "rsyslog")) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let app = start_appliance(&tmp.path().join("appliance")).await;
    let lab = Lab::new(2).expect("lab");
    let victim = watch(&app, &lab, 0, &tmp.path().join("sensor0")).await;
    let (_rsyslog, sock) = start_rsyslog(lab.dir(), &lab.hosts[0].auth_log);
    let reader = app.reader();

    // The forgery claims a key login for root from an address no lab host
    // has, so any login event from it can only come from the forged line.
    let forged_from: IpAddr = [198, 18, 254, 77].into();
    let line = format!(
        "Accepted publickey for root from {forged_from} port 4242 ssh2: ED25519 SHA256:forged"
    );
    let out = logger_as_nobody(&lab.hosts[0].netns, &sock, "sshd", &line);
    assert!(out.status.success(), "logger: {out:?}");

    let tampered = eventually(30, || {
        events(&*reader, victim.host, EventKind::Tamper)
            .iter()
            .any(|e| match &e.payload {
                Payload::Tamper(t) => t.source == "auth_log" && t.detail.contains("forged"),
                _ => false,
            })
    })
    .await;
    let logged = std::fs::read_to_string(&lab.hosts[0].auth_log).unwrap_or_default();
    assert!(
        tampered,
        "no tamper event for the forged line; auth log:\n{logged}"
    );

    // The genuine login through the same host's real sshd still counts.
    lab.ssh(1, 0, "true").expect("genuine ssh login");
    let genuine_from = IpAddr::V4(lab.hosts[1].addr);
    let genuine = eventually(30, || {
        events(&*reader, victim.host, EventKind::Login)
            .iter()
            .any(|e| matches!(&e.payload, Payload::Login(l) if l.src_addr == Some(genuine_from)))
    })
    .await;
    assert!(genuine, "the genuine sshd login was not reported");
    let forged_logins: Vec<_> = events(&*reader, victim.host, EventKind::Login)
        .into_iter()
        .filter(|e| matches!(&e.payload, Payload::Login(l) if l.src_addr == Some(forged_from)))
        .collect();
    assert!(
        forged_logins.is_empty(),
        "the forged line became a login: {forged_logins:#?}"
    );

    victim.sensor.shutdown().await;
    app.shutdown().await;
}

/// curl inside `netns`: the HTTP status, or the failure.
fn https_status_from(netns: &str, url: &str) -> Result<String, String> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "curl", "-sk", "--max-time", "3"])
        .args(["-o", "/dev/null", "-w", "%{http_code}", url])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "curl exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// An appliance on two networks started the way an administrator does it
/// (`vigil serve --management-address`): a lab host reaches its sensor
/// address but not its console; the administrator's workstation on the
/// management network does; nothing listens on TCP beyond the console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_unreachable_from_a_lab_host_when_bound_to_the_management_address() {
    let test = "the_console_is_unreachable_from_a_lab_host_when_bound_to_the_management_address";
    if !require_lab(test) || !require(test, tool("/usr/bin/curl", "curl")) {
        return;
    }
    let Some(vigil) = vigil_binary() else {
        let why = "the vigil binary is not built next to this test (cargo build --workspace --all-targets)";
        require(test, Err(Unavailable(why.into())));
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = Lab::new(1).expect("lab");
    let split = lab.add_split_appliance().expect("appliance networks");
    let data = tmp.path().join("data");
    let quic = format!("{}:4433", split.sensor_addr);
    let _serve = Reaped(
        Command::new("ip")
            .args(["netns", "exec", &split.netns])
            .arg(&vigil)
            .args(["serve", "--data"])
            .arg(&data)
            .args(["--quic-listen", &quic, "--https-port", "8443"])
            .args(["--management-address", &split.management_addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start vigil serve"),
    );
    let console = format!("https://{}:8443/healthz", split.management_addr);
    let up = eventually(60, || {
        https_status_from(&split.admin_netns, &console).is_ok_and(|s| s == "200")
    })
    .await;
    assert!(
        up,
        "the console never answered the admin workstation: {:?}",
        https_status_from(&split.admin_netns, &console)
    );

    // The lab host reaches the appliance machine …
    let lab_host = &lab.hosts[0].netns;
    let ping = lab
        .exec(
            0,
            "ping",
            &["-c", "1", "-W", "2", &split.sensor_addr.to_string()],
        )
        .map(|o| o.status.success());
    assert!(
        matches!(ping, Ok(true)),
        "lab host cannot reach the appliance: {ping:?}"
    );
    // … but not its console, on either of its addresses.
    for addr in [split.sensor_addr, split.management_addr] {
        let url = format!("https://{addr}:8443/healthz");
        let got = https_status_from(lab_host, &url);
        assert!(
            got.is_err(),
            "a lab host reached the console at {url}: {got:?}"
        );
    }
    // The QUIC port is on the sensor network, and the only TCP listener
    // of the appliance machine is the console on the management address.
    let ss = |args: &[&str]| {
        let out = Command::new("ip")
            .args(["netns", "exec", &split.netns, "ss", "-H"])
            .args(args)
            .output()
            .expect("ss");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let udp = ss(&["-lun"]);
    assert!(udp.contains(&quic), "QUIC not on {quic}: {udp}");
    let tcp = ss(&["-ltn"]);
    let listeners: Vec<&str> = tcp
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    assert_eq!(
        listeners,
        vec![format!("{}:8443", split.management_addr)],
        "unexpected TCP listeners: {tcp}"
    );
    drop(lab);
}
