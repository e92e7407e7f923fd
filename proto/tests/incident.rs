//! Assisted remediation as a specification: a table of small incidents,
//! each with the root cause, checklist and times it must give
//! (`incident/cases.rs`, `incident/times.rs`), then properties (never
//! panics, same input in any order → same output: `incident/props.rs`).
//! One test binary; this file holds the fixtures the others share.

#[path = "incident/cases.rs"]
mod cases;
#[path = "incident/props.rs"]
mod props;
#[path = "incident/times.rs"]
mod times;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use vigil_proto::command::{CommandAction, CommandState};
use vigil_proto::incident::*;
use vigil_proto::query::{AlertRecord, HostSummary, SensorState, Severity, TriageState};
use vigil_proto::*;

const S: u64 = 1_000_000_000;
/// 2024-05-01 10:02:03 UTC.
const T0: u64 = 1_714_557_723 * S;
const INC: u64 = 100;
const A: HostId = HostId(1);
const B: HostId = HostId(2);
const C: HostId = HostId(3);
/// A peer outside the fleet, as the appliance names unmanaged hosts.
const X: HostId = HostId(HostId::UNMANAGED_BIT | 9);
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));

fn addr(h: HostId) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, h.0 as u8))
}

fn host(id: HostId, name: &str, isolated: bool) -> HostSummary {
    HostSummary {
        id,
        hostname: name.into(),
        os: "linux".into(),
        addrs: vec![addr(id)],
        sensor_version: "1".into(),
        enrolled_ns: 0,
        last_seen_ns: 0,
        state: SensorState::Online,
        cpu_pct: 0.0,
        rss_bytes: 0,
        events_total: 0,
        lost_total: 0,
        isolated,
        open_alerts: 0,
        warnings: Vec::new(),
    }
}

fn fleet() -> Vec<HostSummary> {
    vec![
        host(A, "web-01", false),
        host(B, "jump-02", false),
        host(C, "db-03", true),
    ]
}

fn ev(host: HostId, seq: u64, at_s: u64, payload: Payload) -> Event {
    Event {
        header: EventHeader {
            host,
            seq,
            ts_ns: T0 + at_s * S,
        },
        payload,
    }
}

fn login(user: &str, method: AuthMethod, src: IpAddr) -> Payload {
    Payload::Login(LoginInfo {
        user: user.into(),
        method,
        service: LoginService::Ssh,
        src_addr: Some(src),
        src_port: Some(50_000),
        src_host: None,
        from_user: None,
        pid: Some(4000),
    })
}

fn connect(to: HostId) -> Payload {
    Payload::NetConnect(NetFlow {
        transport: Transport::Tcp,
        local: SocketAddr::new(addr(HostId(0)), 50_000),
        remote: SocketAddr::new(addr(to), 22),
        pid: Some(321),
        exe: Some("/usr/bin/ssh".into()),
        repeat: 1,
    })
}

fn exec(pid: u32, argv: &[&str], user: &str, start_s: u64) -> Payload {
    Payload::ProcessStart(ProcessStart {
        pid,
        ppid: 4000,
        exe: Some(argv[0].into()),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        uid: Some(1000),
        user: Some(user.into()),
        start_time_ns: Some(T0 + start_s * S),
        ..ProcessStart::default()
    })
}

fn exit(pid: u32) -> Payload {
    Payload::ProcessExit(ProcessExit {
        pid,
        exit_code: Some(0),
        exe: None,
    })
}

fn keys_written(user: &str) -> Payload {
    Payload::FileChange(FileChange {
        path: format!("/home/{user}/.ssh/authorized_keys"),
        op: FileOp::Modified,
        size: Some(200),
        mode: Some(0o600),
        uid: Some(1000),
        sha256: Some([0xab; 32]),
        pid: Some(4001),
    })
}

fn alert(id: u64, at_s: u64, path: &[HostId], users: &[&str], techs: &[&str]) -> AlertRecord {
    AlertRecord {
        id,
        created_ns: T0 + at_s * S,
        severity: Severity::High,
        score: 10.0,
        title: format!("alert {id}"),
        path: path.to_vec(),
        users: users.iter().map(|s| s.to_string()).collect(),
        techniques: techs.iter().map(|s| s.to_string()).collect(),
        summary: String::new(),
        deviations: Vec::new(),
        evidence: Vec::new(),
        state: TriageState::New,
        assignee: None,
        incident_id: Some(INC),
        model_version: None,
        ports: vec![22],
        processes: Vec::new(),
        suppressed_by: None,
    }
}

fn with_evidence(mut a: AlertRecord, evidence: &[(HostId, u64)]) -> AlertRecord {
    a.evidence = evidence.to_vec();
    a
}

fn r(host: HostId, seq: u64) -> EventRef {
    EventRef { host, seq }
}

/// A reached host as expected: (host, from, seconds after T0, user,
/// techniques).
fn done(id: u64, host: HostId, at_s: u64, action: CommandAction) -> ExecutedCommand {
    ExecutedCommand {
        id,
        host,
        action,
        operator: format!("op{id}"),
        state: CommandState::Done,
        finished_ns: T0 + at_s * S,
    }
}

fn isolate(expires_s: Option<u64>) -> CommandAction {
    CommandAction::IsolateHost {
        allow: vec![],
        expires_ns: expires_s.map(|s| T0 + s * S),
        allow_dhcp_nd: true,
    }
}
