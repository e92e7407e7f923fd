//! Catalogue techniques on constructed events: each one that has no public
//! sample in `../shared/datasets/` (the `NO_PUBLIC_SAMPLE` list in
//! `tools/tests/shared_datasets.rs`) is named here from the events its
//! catalogue evidence describes, and so are the single-host traces.

use super::{cold_fleet, ev, fleet, ip, login, win_proc, DAY, S};
use std::net::SocketAddr;
use vigil_models::{Alert, AlertKind, DetectorConfig};
use vigil_proto::{
    AuthMethod, FileChange, FileOp, HostId, LoginInfo, LoginService, NetFlow, Payload, Transport,
};

fn techniques(alerts: &[Alert]) -> Vec<&str> {
    alerts
        .iter()
        .flat_map(|a| &a.techniques)
        .map(String::as_str)
        .collect()
}

/// A local logon of `kind` (the adapter's label for a logon type without a
/// service of its own) by `user` on `host`.
fn local_logon(host: u64, seq: u64, ts: u64, user: &str, kind: &str) -> vigil_proto::Event {
    ev(
        host,
        seq,
        ts,
        Payload::Login(LoginInfo {
            user: user.into(),
            method: AuthMethod::Other("Negotiate".into()),
            service: LoginService::Other(kind.into()),
            src_addr: Some("::1".parse().unwrap()),
            src_port: None,
            src_host: None,
            from_user: None,
            pid: None,
        }),
    )
}

fn file(path: &str) -> Payload {
    Payload::FileChange(FileChange {
        path: path.into(),
        op: FileOp::Modified,
        size: None,
        mode: None,
        uid: None,
        sha256: None,
        pid: None,
    })
}

#[test]
fn a_new_credentials_logon_by_seclogo_alerts_alone_naming_t1550_002() {
    let mut d = cold_fleet();
    let a = d.observe(&local_logon(
        5,
        1,
        100 * S,
        "OFFSEC\\admmig",
        "logon-type-9:seclogo",
    ));
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].kind, AlertKind::Trace);
    assert_eq!(a[0].techniques, vec!["T1550.002".to_string()]);
    assert_eq!(a[0].path, vec![HostId(5)]);
    assert_eq!(a[0].users, vec!["admmig".to_string()]);
    assert!(a[0].summary.contains("sekurlsa::pth"), "{}", a[0].summary);
    // a type-9 logon by another process, or any other local logon: nothing
    let other = d.observe(&local_logon(5, 2, 200 * S, "admmig", "logon-type-9:advapi"));
    assert!(techniques(&other).is_empty(), "{other:?}");
    // while its host learns it is baseline
    let mut learning = fleet(DetectorConfig {
        learning_period_ns: 7 * DAY,
        ..Default::default()
    });
    let a = learning.observe(&local_logon(
        5,
        1,
        100 * S,
        "admmig",
        "logon-type-9:seclogo",
    ));
    assert!(a.is_empty(), "{a:?}");
}

/// An admin's routine `runas /netonly` on their own host is learnt like a
/// Sigma hit: after learning it still alerts, once an hour, one severity
/// lower and saying why; on a host where it never happened it keeps its
/// severity.
#[test]
fn a_seclogo_logon_routine_during_learning_alerts_lower_and_once_an_hour() {
    const H: u64 = 3_600 * S;
    let mut d = fleet(DetectorConfig {
        learning_period_ns: 2 * DAY,
        ..Default::default()
    });
    let pth = "logon-type-9:seclogo";
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        seq
    };
    // host 5: three uses on two days while learning; host 6 only seen
    for ts in [10 * H, 14 * H, DAY + 10 * H] {
        assert!(d
            .observe(&local_logon(5, next(), ts, "admmig", pth))
            .is_empty());
        d.tick(ts);
    }
    d.observe(&local_logon(6, next(), 10 * H, "bob", "logon-type-2"));
    let after = 3 * DAY + 9 * H;
    d.tick(after);
    let routine = d.observe(&local_logon(5, next(), after, "admmig", pth));
    assert_eq!(routine.len(), 1, "{routine:?}");
    assert_eq!(routine[0].severity, vigil_proto::query::Severity::Low);
    assert!(routine[0]
        .summary
        .contains("routine on host-5: 3 hits during learning (on 2 days)"));
    assert!(routine[0]
        .deviations
        .iter()
        .any(|d| d.feature == "sigma_routine"));
    // the same user on the same host within the hour: nothing new
    let again = d.observe(&local_logon(5, next(), after + 600 * S, "admmig", pth));
    assert!(again.is_empty(), "{again:?}");
    // an hour later it alerts again (never silenced)
    let later = d.observe(&local_logon(5, next(), after + 2 * H, "admmig", pth));
    assert_eq!(later.len(), 1, "{later:?}");
    // another user on host 5, or the same on host 6: not routine there
    for (host, user) in [(5, "mallory"), (6, "admmig")] {
        let a = d.observe(&local_logon(host, next(), after + 3 * H, user, pth));
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].severity, vigil_proto::query::Severity::Medium);
        assert!(!a[0].deviations.iter().any(|d| d.feature == "sigma_routine"));
    }
}

#[test]
fn tscon_into_an_rdp_session_after_an_rdp_hop_names_t1563_002() {
    let mut d = cold_fleet();
    // tscon as SYSTEM first, then the victim's session reconnects from the
    // attacker's client (4778 as the adapter maps it)
    let tscon = win_proc(
        r"C:\Windows\System32\tscon.exe",
        r"C:\Windows\System32\cmd.exe",
        "tscon 2 /dest:rdp-tcp#8",
    );
    let mut all = d.observe(&ev(5, 1, 100 * S, tscon));
    let mut rdp = login(5, 2, 101 * S, "victim", 2);
    if let Payload::Login(l) = &mut rdp.payload {
        l.service = LoginService::Rdp;
        l.method = AuthMethod::Other("rdp-reconnect".into());
    }
    all.extend(d.observe(&rdp));
    all.extend(d.tick(400 * S));
    let t = techniques(&all);
    assert!(
        t.contains(&"T1021.001") && t.contains(&"T1563.002"),
        "{all:?}"
    );
    // moving a session to the console is routine
    let mut d = cold_fleet();
    let console = win_proc(
        r"C:\Windows\System32\tscon.exe",
        r"C:\Windows\System32\cmd.exe",
        "tscon 1 /dest:console",
    );
    let a = d.observe(&ev(5, 1, 100 * S, console));
    assert!(!techniques(&a).contains(&"T1563.002"), "{a:?}");
}

#[test]
fn a_vnc_connection_names_t1021_005() {
    let mut d = cold_fleet();
    let mut all = d.observe(&login(5, 1, 100 * S, "admin", 2));
    let vnc = Payload::NetAccept(NetFlow {
        transport: Transport::Tcp,
        local: SocketAddr::new(ip(5), 5900),
        remote: SocketAddr::new(ip(2), 50000),
        pid: None,
        exe: None,
        repeat: 1,
    });
    all.extend(d.observe(&ev(5, 2, 101 * S, vnc)));
    assert!(techniques(&all).contains(&"T1021.005"), "{all:?}");
}

#[test]
fn a_shell_under_sqlservr_after_a_hop_names_t1210() {
    let mut d = cold_fleet();
    let mut all = d.observe(&login(5, 1, 100 * S, "sa", 2));
    let xp = win_proc(
        r"C:\Windows\System32\cmd.exe",
        r"C:\Program Files\Microsoft SQL Server\MSSQL15\MSSQL\Binn\sqlservr.exe",
        "cmd.exe /c whoami",
    );
    all.extend(d.observe(&ev(5, 2, 101 * S, xp)));
    assert!(techniques(&all).contains(&"T1210"), "{all:?}");
}

#[test]
fn an_authorized_keys_write_after_a_hop_names_t1098_004() {
    let mut d = cold_fleet();
    let mut all = d.observe(&login(5, 1, 100 * S, "deploy", 2));
    all.extend(d.observe(&ev(
        5,
        2,
        101 * S,
        file("/home/deploy/.ssh/authorized_keys"),
    )));
    assert!(techniques(&all).contains(&"T1098.004"), "{all:?}");
}

/// An SMB logon seen through a named pipe, as the data-set adapter maps
/// Security 5145 on `IPC$\<pipe>`.
fn pipe_logon(
    host: u64,
    seq: u64,
    ts: u64,
    user: &str,
    src: u64,
    pipe: &str,
) -> vigil_proto::Event {
    let mut e = login(host, seq, ts, user, src);
    if let Payload::Login(l) = &mut e.payload {
        l.method = AuthMethod::Other(format!("smb-pipe:{pipe}"));
    }
    e
}

#[test]
fn named_pipes_over_ipc_name_remote_registry_spoolsample_and_at() {
    for (pipe, want) in [
        ("winreg", "T1112"),
        ("spoolss", "T1187"),
        ("atsvc", "T1053.005"),
    ] {
        let mut d = cold_fleet();
        let a = d.observe(&pipe_logon(5, 1, 100 * S, "admin", 2, pipe));
        assert!(techniques(&a).contains(&want), "{pipe}: {a:?}");
    }
    let mut d = cold_fleet();
    let a = d.observe(&pipe_logon(5, 1, 100 * S, "admin", 2, "srvsvc"));
    let t = techniques(&a);
    assert!(!t.contains(&"T1112") && !t.contains(&"T1187"), "{a:?}");
}
