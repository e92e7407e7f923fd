//! Golden bytes: the exact postcard encoding of one fixed value per message.
//!
//! These encodings are stored on disk (the appliance keeps each event's
//! `Payload` as postcard, and reads its kind from the first byte, which is
//! the variant index) and sent on the wire between sensors and the
//! appliance. Reordering a variant or a field, or changing a field's type,
//! silently changes what old bytes mean. A failing test here therefore means
//! a format change that needs a migration (or a new protocol version) —
//! never an update of the hex. New variants and kinds are appended at the
//! end and get a new row.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use vigil_proto::control::{Ack, Heartbeat, Hello, Refusal, Welcome};
use vigil_proto::*;

/// Lower-case hex, two digits per byte.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks one row: `value` encodes to exactly `want` and `want` decodes back
/// to `value`. Returns a readable mismatch instead of panicking, so one run
/// lists every row that changed.
fn row<T>(name: &str, value: &T, want: &str) -> Option<String>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let got = hex(&postcard::to_allocvec(value).expect("encodes"));
    if got != want {
        return Some(format!(
            "{name}: encodes to\n    {got}\n  pinned\n    {want}"
        ));
    }
    let bytes: Vec<u8> = (0..want.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&want[i..i + 2], 16).expect("hex"))
        .collect();
    match postcard::from_bytes::<T>(&bytes) {
        Ok(back) if back == *value => None,
        other => Some(format!("{name}: pinned bytes decode to {other:?}")),
    }
}

/// Panics with every mismatching row.
fn assert_rows(rows: Vec<Option<String>>) {
    let failures: Vec<String> = rows.into_iter().flatten().collect();
    assert!(
        failures.is_empty(),
        "format changed (needs a migration, not new hex):\n{}",
        failures.join("\n")
    );
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn login() -> LoginInfo {
    LoginInfo {
        user: "alice".into(),
        method: AuthMethod::PublicKey,
        service: LoginService::Ssh,
        src_addr: Some(v4(10, 0, 0, 2)),
        src_port: Some(50022),
        src_host: Some("ws1".into()),
        from_user: Some("bob".into()),
        pid: Some(300),
    }
}

fn flow() -> NetFlow {
    NetFlow {
        transport: Transport::Tcp,
        local: SocketAddr::new(v4(10, 0, 0, 1), 40000),
        remote: SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 22),
        pid: Some(77),
        exe: Some("/usr/bin/ssh".into()),
        repeat: 1,
    }
}

fn process_start() -> ProcessStart {
    ProcessStart {
        pid: 4242,
        ppid: 1,
        exe: Some("/bin/sh".into()),
        argv: vec!["sh".into(), "-c".into()],
        uid: Some(1000),
        user: Some("alice".into()),
        cwd: Some("/".into()),
        parent_exe: Some("/sbin/init".into()),
        start_time_ns: Some(1_700_000_000_000_000_000),
        netns: 4026531840,
        exited_before_enrichment: true,
    }
}

fn health() -> SensorHealth {
    SensorHealth {
        cpu_pct: 0.5,
        rss_bytes: 35_000_000,
        events_per_s: 1000.0,
        spool_bytes: 4096,
        dropped_total: 3,
        aggregated_total: 9,
        collectors: vec![CollectorHealth {
            name: "process".into(),
            visibility: Visibility::Working,
            events_per_s: 2.5,
            missed_total: 1,
        }],
    }
}

/// One value per `Payload` variant, in declaration order.
fn payloads() -> Vec<(&'static str, Payload)> {
    vec![
        ("ProcessStart", Payload::ProcessStart(process_start())),
        (
            "ProcessExit",
            Payload::ProcessExit(ProcessExit {
                pid: 4242,
                exit_code: Some(-1),
                exe: Some("/bin/sh".into()),
            }),
        ),
        ("NetConnect", Payload::NetConnect(flow())),
        ("NetAccept", Payload::NetAccept(flow())),
        ("Login", Payload::Login(login())),
        ("Logout", Payload::Logout(login())),
        ("AuthFailure", Payload::AuthFailure(login())),
        (
            "FileChange",
            Payload::FileChange(FileChange {
                path: "/etc/shadow".into(),
                op: FileOp::Modified,
                size: Some(1024),
                mode: Some(0o640),
                uid: Some(0),
                sha256: Some([0xab; 32]),
                pid: Some(9),
            }),
        ),
        ("SensorHealth", Payload::SensorHealth(health())),
        (
            "Loss",
            Payload::Loss(LossRecord {
                from_seq: 10,
                to_seq: 19,
                count: 10,
                reason: LossReason::SpoolFull,
            }),
        ),
        (
            "ResponseResult",
            Payload::ResponseResult(ResponseResult {
                command_id: 77,
                ok: true,
                message: "done".into(),
            }),
        ),
        (
            "Tamper",
            Payload::Tamper(TamperRecord {
                source: "auth_log".into(),
                reason: "sshd_line_not_from_sshd".into(),
                detail: "sshd[1]: Accepted".into(),
            }),
        ),
    ]
}

#[test]
fn every_payload_variant_has_pinned_bytes() {
    let pinned: &[&str] = &[
        // ProcessStart
        "0092210101072f62696e2f736802027368022d6301e8070105616c69636501012f010a2f7362696e2f696e6974018080a8b1e39fe7cb17808080800f01",
        // ProcessExit
        "019221010101072f62696e2f7368",
        // NetConnect
        "0200000a000001c0b802010000000000000000000000000000000116014d010c2f7573722f62696e2f73736801",
        // NetAccept
        "0300000a000001c0b802010000000000000000000000000000000116014d010c2f7573722f62696e2f73736801",
        // Login
        "0405616c696365010001000a00000201e6860301037773310103626f6201ac02",
        // Logout
        "0505616c696365010001000a00000201e6860301037773310103626f6201ac02",
        // AuthFailure
        "0605616c696365010001000a00000201e6860301037773310103626f6201ac02",
        // FileChange
        "070b2f6574632f736861646f770101800801a003010001abababababababababababababababababababababababababababababababab0109",
        // SensorHealth
        "080000003fc09dd81000007a4480200309010770726f63657373000000204001",
        // Loss
        "090a130a00",
        // ResponseResult
        "0a4d0104646f6e65",
        // Tamper
        "0b08617574685f6c6f6717737368645f6c696e655f6e6f745f66726f6d5f7373686411737368645b315d3a204163636570746564",
    ];
    let values = payloads();
    assert_eq!(values.len(), pinned.len(), "one pinned row per variant");
    assert_eq!(values.len(), EventKind::ALL.len(), "one payload per kind");
    for ((_, p), kind) in values.iter().zip(EventKind::ALL) {
        assert_eq!(p.kind(), kind, "variants are declared in kind order");
    }
    assert_rows(
        values
            .iter()
            .zip(pinned)
            .map(|((name, p), hex)| row(name, p, hex))
            .collect(),
    );
}

#[test]
fn nested_enums_have_pinned_bytes() {
    assert_rows(vec![
        row("Transport::Tcp", &Transport::Tcp, "00"),
        row("Transport::Udp", &Transport::Udp, "01"),
        row("AuthMethod::Password", &AuthMethod::Password, "00"),
        row("AuthMethod::PublicKey", &AuthMethod::PublicKey, "01"),
        row(
            "AuthMethod::KeyboardInteractive",
            &AuthMethod::KeyboardInteractive,
            "02",
        ),
        row("AuthMethod::Kerberos", &AuthMethod::Kerberos, "03"),
        row("AuthMethod::Ntlm", &AuthMethod::Ntlm, "04"),
        row(
            "AuthMethod::Other",
            &AuthMethod::Other("x".into()),
            "050178",
        ),
        row("LoginService::Ssh", &LoginService::Ssh, "00"),
        row("LoginService::Su", &LoginService::Su, "01"),
        row("LoginService::Sudo", &LoginService::Sudo, "02"),
        row("LoginService::Console", &LoginService::Console, "03"),
        row("LoginService::Smb", &LoginService::Smb, "04"),
        row("LoginService::Rdp", &LoginService::Rdp, "05"),
        row("LoginService::WinRm", &LoginService::WinRm, "06"),
        row("LoginService::Wmi", &LoginService::Wmi, "07"),
        row(
            "LoginService::Other",
            &LoginService::Other("x".into()),
            "080178",
        ),
        row("FileOp::Created", &FileOp::Created, "00"),
        row("FileOp::Modified", &FileOp::Modified, "01"),
        row("FileOp::Deleted", &FileOp::Deleted, "02"),
        row("FileOp::Renamed", &FileOp::Renamed, "03"),
        row("FileOp::Attributes", &FileOp::Attributes, "04"),
        row("Visibility::Working", &Visibility::Working, "00"),
        row(
            "Visibility::Degraded",
            &Visibility::Degraded("x".into()),
            "010178",
        ),
        row(
            "Visibility::Unavailable",
            &Visibility::Unavailable("x".into()),
            "020178",
        ),
        row("LossReason::SpoolFull", &LossReason::SpoolFull, "00"),
        row("LossReason::SpoolAge", &LossReason::SpoolAge, "01"),
        row("LossReason::Corrupt", &LossReason::Corrupt, "02"),
        row(
            "LossReason::KernelOverrun",
            &LossReason::KernelOverrun,
            "03",
        ),
        row(
            "LossReason::Other",
            &LossReason::Other("x".into()),
            "040178",
        ),
    ]);
}

/// One value per `ControlMessage` variant, in declaration order.
fn control_messages() -> Vec<(&'static str, ControlMessage, &'static str)> {
    vec![
        (
            "Hello",
            ControlMessage::Hello(Hello {
                protocol_versions: vec![1],
                sensor_version: "0.1.0".into(),
                hostname: "h1".into(),
                os: "linux".into(),
                addrs: vec![v4(10, 0, 0, 1)],
                next_seq: 300,
            }),
            "00010105302e312e30026831056c696e757801000a000001ac02",
        ),
        (
            "Welcome",
            ControlMessage::Welcome(Welcome {
                protocol_version: 1,
                host: HostId(0x0102_0304_0506_0708),
                config: SensorConfig::default(),
                stored_up_to: 299,
            }),
            "0101888e98a8c0e0808101904ed00ff4030000803fab02",
        ),
        (
            "Heartbeat",
            ControlMessage::Heartbeat(Heartbeat {
                ts_ns: 1_700_000_000_000_000_000,
                health: health(),
            }),
            "028080a8b1e39fe7cb170000003fc09dd81000007a4480200309010770726f63657373000000204001",
        ),
        (
            "Ack",
            ControlMessage::Ack(Ack {
                first_seq: 1,
                last_seq: 200,
                duplicates: 3,
            }),
            "0301c80103",
        ),
        (
            "UnsignedCommand",
            ControlMessage::UnsignedCommand(UnsignedCommand {
                id: 5,
                operator: "admin".into(),
                reason: "ir".into(),
                issued_ns: 1000,
                action: CommandAction::Isolate {
                    allow: vec![v4(10, 0, 0, 254)],
                    expires_ns: Some(2000),
                },
            }),
            "04050561646d696e026972e8070001000a0000fe01d00f",
        ),
        (
            "UnsignedResult",
            ControlMessage::UnsignedResult(UnsignedResult {
                id: 5,
                ok: false,
                message: "no".into(),
                data: vec![1, 2, 3],
            }),
            "050500026e6f03010203",
        ),
        (
            "Enroll",
            ControlMessage::Enroll(EnrollRequest {
                token: "tok".into(),
                csr_der: vec![0x30, 0x82],
                hostname: "h1".into(),
                os: "linux".into(),
                sensor_version: "0.1.0".into(),
            }),
            "0603746f6b023082026831056c696e757805302e312e30",
        ),
        (
            "Enrolled",
            ControlMessage::Enrolled(EnrollResponse {
                host: HostId(7),
                cert_der: vec![0x30],
                ca_der: vec![0x31],
            }),
            "070701300131",
        ),
        (
            "Refused",
            ControlMessage::Refused(Refusal {
                code: "revoked".into(),
                message: "no".into(),
            }),
            "08077265766f6b6564026e6f",
        ),
        (
            "Renew",
            ControlMessage::Renew(RenewRequest {
                csr_der: vec![0x30, 0x82],
            }),
            "09023082",
        ),
        (
            "Renewed",
            ControlMessage::Renewed(RenewResponse {
                cert_der: vec![0x30],
                not_after_ns: 1_700_000_000_000_000_000,
            }),
            "0a01308080a8b1e39fe7cb17",
        ),
        ("Command", ControlMessage::Command(signed_command()), "0b05070561646d696e026972e807d00f0901000a0000fe01dc0b0140eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"),
        (
            "CommandResult",
            ControlMessage::CommandResult(CommandResult {
                id: 5,
                state: CommandState::Refused(RefusalReason::Expired),
                message: "no".into(),
                receipt: Receipt::None,
                data: vec![1],
            }),
            "0c050203026e6f000101",
        ),
        (
            "EnrolledV2",
            ControlMessage::EnrolledV2(EnrollResponseV2 {
                host: HostId(7),
                cert_der: vec![0x30],
                ca_der: vec![0x31],
                command_key: [0xab; 32],
            }),
            "0d0701300131abababababababababababababababababababababababababababababababab",
        ),
        ("CommandReceived", ControlMessage::CommandReceived(300), "0eac02"),
    ]
}

/// One fixed signed command: its encoding and its signing bytes are pinned.
fn signed_command() -> Command {
    Command {
        id: 5,
        host: HostId(7),
        operator: "admin".into(),
        reason: "ir".into(),
        created_ns: 1000,
        expires_ns: 2000,
        action: CommandAction::IsolateHost {
            allow: vec![v4(10, 0, 0, 254)],
            expires_ns: Some(1500),
            allow_dhcp_nd: true,
        },
        signature: vec![0xee; 64],
    }
}

/// The bytes the appliance signs and the sensor verifies: a change here
/// invalidates every command in flight, so it is a new domain version.
#[test]
fn command_signing_bytes_are_pinned() {
    let got = hex(&signed_command().signing_bytes());
    assert!(got.starts_with(&hex(b"vigil-command-v1\0")));
    assert_eq!(
        got,
        "766967696c2d636f6d6d616e642d76310005070561646d696e026972e807d00f0901000a0000fe01dc0b01"
    );
}

#[test]
fn every_receipt_has_pinned_bytes() {
    let sha = [0x11; 32];
    assert_rows(vec![
        row("Receipt::None", &Receipt::None, "00"),
        row(
            "Receipt::Isolation",
            &Receipt::Isolation(IsolationReceipt {
                ruleset_sha256: sha,
                allowed: vec![v4(10, 0, 0, 1)],
                until_ns: Some(9),
                self_check_ok: true,
                self_check: "ok".into(),
            }),
            "01111111111111111111111111111111111111111111111111111111111111111101000a000001010901026f6b",
        ),
        row(
            "Receipt::Released",
            &Receipt::Released { was_isolated: true },
            "0201",
        ),
        row(
            "Receipt::Kill",
            &Receipt::Kill(KillReceipt {
                pid: 42,
                exe: "/x".into(),
                start_time_ticks: 77,
                signal: 9,
                exited: true,
            }),
            "032a022f784d1201",
        ),
        row(
            "Receipt::Collect",
            &Receipt::Collect(CollectReceipt {
                size: 3,
                sha256: sha,
                sent: 3,
            }),
            "0403111111111111111111111111111111111111111111111111111111111111111103",
        ),
        row(
            "Receipt::Listing",
            &Receipt::Listing {
                total: 2,
                listed: 1,
            },
            "050201",
        ),
        row(
            "Receipt::KeyRemoved",
            &Receipt::KeyRemoved {
                path: "/k".into(),
                line: "l".into(),
            },
            "06022f6b016c",
        ),
        row(
            "Receipt::AccountDisabled",
            &Receipt::AccountDisabled {
                user: "u".into(),
                changes: vec!["c".into()],
            },
            "070175010163",
        ),
        row(
            "Receipt::PeerBlocked",
            &Receipt::PeerBlocked {
                addr: v4(10, 0, 0, 9),
                ruleset_sha256: sha,
            },
            "08000a0000091111111111111111111111111111111111111111111111111111111111111111",
        ),
        row("CommandState::Done", &CommandState::Done, "00"),
        row("CommandState::Failed", &CommandState::Failed, "01"),
    ]);
}

#[test]
fn every_refusal_reason_has_pinned_bytes_and_code() {
    let all = [
        (RefusalReason::Unsigned, "unsigned"),
        (RefusalReason::BadSignature, "bad_signature"),
        (RefusalReason::WrongHost, "wrong_host"),
        (RefusalReason::Expired, "expired"),
        (RefusalReason::Replayed, "replayed"),
        (RefusalReason::RefusedByPolicy, "refused_by_policy"),
        (RefusalReason::NoCommandKey, "no_command_key"),
        (RefusalReason::Unsupported, "unsupported"),
        (RefusalReason::ExpiryTooFar, "expiry_too_far"),
        (RefusalReason::TargetMismatch, "target_mismatch"),
        (RefusalReason::UnsafeTarget, "unsafe_target"),
    ];
    for (i, (reason, code)) in all.iter().enumerate() {
        assert_eq!(reason.code(), *code);
        assert_eq!(
            postcard::to_allocvec(reason).unwrap(),
            vec![i as u8],
            "{code}"
        );
    }
}

#[test]
fn every_control_message_has_pinned_bytes() {
    assert_rows(
        control_messages()
            .iter()
            .map(|(name, m, hex)| row(name, m, hex))
            .collect(),
    );
}

#[test]
fn every_command_action_has_pinned_bytes() {
    assert_rows(vec![
        row(
            "CommandAction::Isolate",
            &CommandAction::Isolate {
                allow: vec![],
                expires_ns: None,
            },
            "000000",
        ),
        row("CommandAction::Release", &CommandAction::Release, "01"),
        row(
            "CommandAction::Kill",
            &CommandAction::Kill { pid: 9 },
            "0209",
        ),
        row(
            "CommandAction::CollectFile",
            &CommandAction::CollectFile {
                path: "/x".into(),
                max_bytes: 10,
            },
            "03022f780a",
        ),
        row(
            "CommandAction::ListProcesses",
            &CommandAction::ListProcesses,
            "04",
        ),
        row(
            "CommandAction::ListConnections",
            &CommandAction::ListConnections,
            "05",
        ),
        row(
            "CommandAction::RemoveAuthorizedKey",
            &CommandAction::RemoveAuthorizedKey {
                user: "u".into(),
                line_sha256: [0x22; 32],
            },
            "0601752222222222222222222222222222222222222222222222222222222222222222",
        ),
        row(
            "CommandAction::DisableAccount",
            &CommandAction::DisableAccount { user: "u".into() },
            "070175",
        ),
        row(
            "CommandAction::BlockPeer",
            &CommandAction::BlockPeer {
                addr: v4(10, 0, 0, 9),
            },
            "08000a000009",
        ),
        row(
            "CommandAction::IsolateHost",
            &CommandAction::IsolateHost {
                allow: vec![],
                expires_ns: None,
                allow_dhcp_nd: true,
            },
            "09000001",
        ),
        row(
            "CommandAction::KillProcess",
            &CommandAction::KillProcess {
                pid: 9,
                start_time_ticks: 300,
            },
            "0a09ac02",
        ),
        row(
            "CommandAction::KillProcessStartedAt",
            &CommandAction::KillProcessStartedAt {
                pid: 9,
                start_time_ns: 300,
            },
            "0b09ac02",
        ),
    ]);
}

fn batch() -> Batch {
    let event = |seq: u64, payload: Payload| Event {
        header: EventHeader {
            host: HostId(0xabcd),
            seq,
            ts_ns: 1_700_000_000_000_000_000 + seq,
        },
        payload,
    };
    Batch {
        events: vec![
            event(1, Payload::ProcessExit(ProcessExit::default())),
            event(2, Payload::NetAccept(flow())),
        ],
    }
}

#[test]
fn a_batch_has_pinned_bytes_before_compression() {
    let batch = batch();
    assert_rows(vec![row("Batch", &batch, "02cdd702018180a8b1e39fe7cb1701000000cdd702028280a8b1e39fe7cb170300000a000001c0b802010000000000000000000000000000000116014d010c2f7573722f62696e2f73736801")]);
    // And the whole path (zstd included) still decodes to the same batch.
    let compressed = encode_batch(&batch).unwrap();
    assert_eq!(decode_batch(&compressed).unwrap(), batch);
}

#[test]
fn a_frame_has_pinned_bytes() {
    let msg = ControlMessage::Ack(Ack {
        first_seq: 1,
        last_seq: 2,
        duplicates: 0,
    });
    let frame = msg.to_frame().unwrap();
    // [version 1][kind 1 = control][len u32 BE][postcard of the Ack].
    assert_eq!(hex(&frame), "01010000000403010200");
    let header = frame::FrameHeader {
        version: PROTOCOL_VERSION,
        kind: FrameKind::Batch,
        len: 0x0102_0304,
    };
    assert_eq!(hex(&header.to_bytes()), "010201020304");
    assert_eq!(FrameKind::Control as u8, 1);
    assert_eq!(FrameKind::Batch as u8, 2);
}

#[test]
fn event_kind_codes_and_names_are_pinned() {
    let pinned: [(EventKind, u8, &str); 12] = [
        (EventKind::ProcessStart, 1, "process_start"),
        (EventKind::ProcessExit, 2, "process_exit"),
        (EventKind::NetConnect, 3, "net_connect"),
        (EventKind::NetAccept, 4, "net_accept"),
        (EventKind::Login, 5, "login"),
        (EventKind::Logout, 6, "logout"),
        (EventKind::AuthFailure, 7, "auth_failure"),
        (EventKind::FileChange, 8, "file_change"),
        (EventKind::SensorHealth, 9, "sensor_health"),
        (EventKind::Loss, 10, "loss"),
        (EventKind::ResponseResult, 11, "response_result"),
        (EventKind::Tamper, 12, "tamper"),
    ];
    assert_eq!(EventKind::ALL.len(), pinned.len(), "a new kind needs a row");
    for ((kind, code, name), listed) in pinned.iter().zip(EventKind::ALL) {
        assert_eq!(*kind, listed, "ALL is in code order");
        assert_eq!(kind.code(), *code, "{kind:?}");
        assert_eq!(kind.name(), *name, "{kind:?}");
    }
}
