//! Property tests for every message of the wire protocol: round trips,
//! arbitrary bytes never panic, and limits are enforced with the right error.

use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use vigil_proto::control::{Ack, Heartbeat, Hello, Refusal, Welcome};
use vigil_proto::frame::{FrameHeader, HEADER_LEN};
use vigil_proto::limits::{
    MAX_BATCH_DECODED_BYTES, MAX_BATCH_EVENTS, MAX_BATCH_MEMORY_BYTES, MAX_CONTROL_BYTES,
    MAX_EVENT_SEQUENCE_ITEMS, MAX_EVENT_STRING_BYTES, MAX_FRAME_BYTES,
};
use vigil_proto::*;

fn text() -> impl Strategy<Value = String> {
    // Printable and arbitrary Unicode both: sensor fields are attacker-controlled.
    prop_oneof![".{0,24}", "[a-z/._-]{0,24}"]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ]
}

fn sock() -> impl Strategy<Value = SocketAddr> {
    (ip(), any::<u16>()).prop_map(|(i, p)| SocketAddr::new(i, p))
}

fn process_start() -> impl Strategy<Value = ProcessStart> {
    (
        (any::<u32>(), any::<u32>(), proptest::option::of(text())),
        proptest::collection::vec(text(), 0..4),
        (
            proptest::option::of(any::<u32>()),
            proptest::option::of(text()),
        ),
        (proptest::option::of(text()), proptest::option::of(text())),
        (
            proptest::option::of(any::<u64>()),
            any::<u64>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |((pid, ppid, exe), argv, (uid, user), (cwd, parent_exe), (st, netns, gone))| {
                ProcessStart {
                    pid,
                    ppid,
                    exe,
                    argv,
                    uid,
                    user,
                    cwd,
                    parent_exe,
                    start_time_ns: st,
                    netns,
                    exited_before_enrichment: gone,
                }
            },
        )
}

fn flow() -> impl Strategy<Value = NetFlow> {
    (
        prop_oneof![Just(Transport::Tcp), Just(Transport::Udp)],
        sock(),
        sock(),
        proptest::option::of(any::<u32>()),
        proptest::option::of(text()),
        any::<u32>(),
    )
        .prop_map(|(transport, local, remote, pid, exe, repeat)| NetFlow {
            transport,
            local,
            remote,
            pid,
            exe,
            repeat,
        })
}

fn login() -> impl Strategy<Value = LoginInfo> {
    let method = prop_oneof![
        Just(AuthMethod::Password),
        Just(AuthMethod::PublicKey),
        Just(AuthMethod::KeyboardInteractive),
        Just(AuthMethod::Kerberos),
        Just(AuthMethod::Ntlm),
        text().prop_map(AuthMethod::Other),
    ];
    let service = prop_oneof![
        Just(LoginService::Ssh),
        Just(LoginService::Su),
        Just(LoginService::Sudo),
        Just(LoginService::Console),
        Just(LoginService::Smb),
        Just(LoginService::Rdp),
        Just(LoginService::WinRm),
        Just(LoginService::Wmi),
        text().prop_map(LoginService::Other),
    ];
    (
        text(),
        method,
        service,
        proptest::option::of(ip()),
        proptest::option::of(any::<u16>()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(
            |(user, method, service, src_addr, src_port, src_host, from_user, pid)| LoginInfo {
                user,
                method,
                service,
                src_addr,
                src_port,
                src_host,
                from_user,
                pid,
            },
        )
}

fn visibility() -> impl Strategy<Value = Visibility> {
    prop_oneof![
        Just(Visibility::Working),
        text().prop_map(Visibility::Degraded),
        text().prop_map(Visibility::Unavailable),
    ]
}

fn health() -> impl Strategy<Value = SensorHealth> {
    let collector = (text(), visibility(), 0f32..1e6, any::<u64>()).prop_map(
        |(name, visibility, events_per_s, missed_total)| CollectorHealth {
            name,
            visibility,
            events_per_s,
            missed_total,
        },
    );
    (
        (0f32..400.0, any::<u64>(), 0f32..1e6),
        (any::<u64>(), any::<u64>(), any::<u64>()),
        proptest::collection::vec(collector, 0..5),
    )
        .prop_map(
            |((cpu_pct, rss_bytes, eps), (spool, dropped, agg), collectors)| SensorHealth {
                cpu_pct,
                rss_bytes,
                events_per_s: eps,
                spool_bytes: spool,
                dropped_total: dropped,
                aggregated_total: agg,
                collectors,
            },
        )
}

fn payload() -> impl Strategy<Value = Payload> {
    let file_op = prop_oneof![
        Just(FileOp::Created),
        Just(FileOp::Modified),
        Just(FileOp::Deleted),
        Just(FileOp::Renamed),
        Just(FileOp::Attributes),
    ];
    let file = (
        text(),
        file_op,
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<[u8; 32]>()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(path, op, size, mode, uid, sha256, pid)| FileChange {
            path,
            op,
            size,
            mode,
            uid,
            sha256,
            pid,
        });
    let loss_reason = prop_oneof![
        Just(LossReason::SpoolFull),
        Just(LossReason::SpoolAge),
        Just(LossReason::Corrupt),
        Just(LossReason::KernelOverrun),
        text().prop_map(LossReason::Other),
    ];
    let loss = (any::<u64>(), any::<u64>(), any::<u64>(), loss_reason).prop_map(
        |(from_seq, to_seq, count, reason)| LossRecord {
            from_seq,
            to_seq,
            count,
            reason,
        },
    );
    let exit = (
        any::<u32>(),
        proptest::option::of(any::<i32>()),
        proptest::option::of(text()),
    )
        .prop_map(|(pid, exit_code, exe)| ProcessExit {
            pid,
            exit_code,
            exe,
        });
    let result = (any::<u64>(), any::<bool>(), text()).prop_map(|(command_id, ok, message)| {
        ResponseResult {
            command_id,
            ok,
            message,
        }
    });
    let tamper = (text(), text(), text()).prop_map(|(source, reason, detail)| TamperRecord {
        source,
        reason,
        detail,
    });
    prop_oneof![
        process_start().prop_map(Payload::ProcessStart),
        exit.prop_map(Payload::ProcessExit),
        flow().prop_map(Payload::NetConnect),
        flow().prop_map(Payload::NetAccept),
        login().prop_map(Payload::Login),
        login().prop_map(Payload::Logout),
        login().prop_map(Payload::AuthFailure),
        file.prop_map(Payload::FileChange),
        health().prop_map(Payload::SensorHealth),
        loss.prop_map(Payload::Loss),
        result.prop_map(Payload::ResponseResult),
        tamper.prop_map(Payload::Tamper),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (any::<u64>(), any::<u64>(), any::<u64>(), payload()).prop_map(|(host, seq, ts_ns, payload)| {
        Event {
            header: EventHeader {
                host: HostId(host),
                seq,
                ts_ns,
            },
            payload,
        }
    })
}

fn command_action() -> impl Strategy<Value = CommandAction> {
    prop_oneof![
        (
            proptest::collection::vec(ip(), 0..3),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(allow, expires_ns)| CommandAction::Isolate { allow, expires_ns }),
        Just(CommandAction::Release),
        any::<u32>().prop_map(|pid| CommandAction::Kill { pid }),
        (text(), any::<u64>())
            .prop_map(|(path, max_bytes)| CommandAction::CollectFile { path, max_bytes }),
        Just(CommandAction::ListProcesses),
        Just(CommandAction::ListConnections),
        (text(), any::<[u8; 32]>()).prop_map(|(user, line_sha256)| {
            CommandAction::RemoveAuthorizedKey { user, line_sha256 }
        }),
        text().prop_map(|user| CommandAction::DisableAccount { user }),
        ip().prop_map(|addr| CommandAction::BlockPeer { addr }),
        (
            proptest::collection::vec(ip(), 0..3),
            proptest::option::of(any::<u64>()),
            any::<bool>()
        )
            .prop_map(
                |(allow, expires_ns, allow_dhcp_nd)| CommandAction::IsolateHost {
                    allow,
                    expires_ns,
                    allow_dhcp_nd
                }
            ),
        (any::<u32>(), any::<u64>()).prop_map(|(pid, start_time_ticks)| {
            CommandAction::KillProcess {
                pid,
                start_time_ticks,
            }
        }),
        (any::<u32>(), any::<u64>()).prop_map(|(pid, start_time_ns)| {
            CommandAction::KillProcessStartedAt { pid, start_time_ns }
        }),
    ]
}

fn control() -> impl Strategy<Value = ControlMessage> {
    let config = (any::<u32>(), any::<u32>(), any::<u32>(), 0f32..100.0).prop_map(
        |(heartbeat_ms, batch_max_events, batch_max_ms, cpu_budget_pct)| SensorConfig {
            heartbeat_ms,
            batch_max_events,
            batch_max_ms,
            cpu_budget_pct,
        },
    );
    let bytes = || proptest::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        (
            proptest::collection::vec(any::<u8>(), 0..4),
            text(),
            text(),
            text(),
            proptest::collection::vec(ip(), 0..3),
            any::<u64>()
        )
            .prop_map(|(pv, sv, hostname, os, addrs, next_seq)| {
                ControlMessage::Hello(Hello {
                    protocol_versions: pv,
                    sensor_version: sv,
                    hostname,
                    os,
                    addrs,
                    next_seq,
                })
            }),
        (any::<u8>(), any::<u64>(), config, any::<u64>()).prop_map(|(v, h, config, s)| {
            ControlMessage::Welcome(Welcome {
                protocol_version: v,
                host: HostId(h),
                config,
                stored_up_to: s,
            })
        }),
        (any::<u64>(), health())
            .prop_map(|(ts_ns, health)| ControlMessage::Heartbeat(Heartbeat { ts_ns, health })),
        (any::<u64>(), any::<u64>(), any::<u32>()).prop_map(|(a, b, d)| {
            ControlMessage::Ack(Ack {
                first_seq: a,
                last_seq: b,
                duplicates: d,
            })
        }),
        (any::<u64>(), text(), text(), any::<u64>(), command_action()).prop_map(
            |(id, operator, reason, issued_ns, action)| ControlMessage::UnsignedCommand(
                UnsignedCommand {
                    id,
                    operator,
                    reason,
                    issued_ns,
                    action,
                }
            )
        ),
        (any::<u64>(), any::<bool>(), text(), bytes()).prop_map(|(id, ok, message, data)| {
            ControlMessage::UnsignedResult(UnsignedResult {
                id,
                ok,
                message,
                data,
            })
        }),
        (text(), bytes(), text(), text(), text()).prop_map(|(token, csr_der, hostname, os, sv)| {
            ControlMessage::Enroll(EnrollRequest {
                token,
                csr_der,
                hostname,
                os,
                sensor_version: sv,
            })
        }),
        (any::<u64>(), bytes(), bytes()).prop_map(|(h, cert_der, ca_der)| {
            ControlMessage::Enrolled(EnrollResponse {
                host: HostId(h),
                cert_der,
                ca_der,
            })
        }),
        (text(), text())
            .prop_map(|(code, message)| ControlMessage::Refused(Refusal { code, message })),
        bytes().prop_map(|csr_der| ControlMessage::Renew(RenewRequest { csr_der })),
        (bytes(), any::<u64>()).prop_map(|(cert_der, not_after_ns)| {
            ControlMessage::Renewed(RenewResponse {
                cert_der,
                not_after_ns,
            })
        }),
        (
            (any::<u64>(), any::<u64>(), text(), text()),
            (any::<u64>(), any::<u64>(), command_action(), bytes())
        )
            .prop_map(
                |((id, h, operator, reason), (created_ns, expires_ns, action, signature))| {
                    ControlMessage::Command(Command {
                        id,
                        host: HostId(h),
                        operator,
                        reason,
                        created_ns,
                        expires_ns,
                        action,
                        signature,
                    })
                }
            ),
        (any::<u64>(), text(), bytes(), any::<[u8; 32]>()).prop_map(
            |(id, message, data, sha256)| {
                ControlMessage::CommandResult(CommandResult {
                    id,
                    state: CommandState::Refused(RefusalReason::Replayed),
                    message,
                    receipt: Receipt::Collect(CollectReceipt {
                        size: 1,
                        sha256,
                        sent: 1,
                    }),
                    data,
                })
            }
        ),
        (any::<u64>(), bytes(), bytes(), any::<[u8; 32]>()).prop_map(
            |(h, cert_der, ca_der, command_key)| {
                ControlMessage::EnrolledV2(EnrollResponseV2 {
                    host: HostId(h),
                    cert_der,
                    ca_der,
                    command_key,
                })
            }
        ),
        any::<u64>().prop_map(ControlMessage::CommandReceived),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn batch_round_trips(events in proptest::collection::vec(event(), 0..40)) {
        let batch = Batch { events };
        let frame = batch.to_frame().unwrap();
        let decoded = decode_frame(&frame).unwrap();
        prop_assert_eq!(decoded.kind, FrameKind::Batch);
        prop_assert_eq!(decode_batch(decoded.payload).unwrap(), batch);
    }

    #[test]
    fn control_round_trips(msg in control()) {
        let frame = msg.to_frame().unwrap();
        let decoded = decode_frame(&frame).unwrap();
        prop_assert_eq!(decoded.kind, FrameKind::Control);
        prop_assert_eq!(ControlMessage::from_payload(decoded.payload).unwrap(), msg);
    }

    #[test]
    fn event_kind_codes_and_names_round_trip(e in event()) {
        let kind = e.kind();
        prop_assert_eq!(EventKind::from_code(kind.code()), Some(kind));
        prop_assert_eq!(EventKind::from_name(kind.name()), Some(kind));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode_frame(&bytes);
        let _ = decode_batch(&bytes);
        let _ = ControlMessage::from_payload(&bytes);
        let _ = FrameHeader::parse(&bytes);
    }

    #[test]
    fn decoder_accounts_exactly_what_batches_hold(events in proptest::collection::vec(event(), 0..40)) {
        let batch = Batch { events };
        let raw = postcard::to_allocvec(&batch).unwrap();
        let (decoded, accounted) = decode_batch_postcard(&raw).unwrap();
        prop_assert_eq!(&decoded, &batch);
        prop_assert_eq!(accounted, batch.memory_bytes());
    }

    #[test]
    fn arbitrary_decoded_bytes_stay_within_the_budget(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        // Uncompressed input reaches postcard; whatever decodes was accounted.
        if let Ok((batch, accounted)) = decode_batch_postcard(&bytes) {
            prop_assert_eq!(accounted, batch.memory_bytes());
            prop_assert!(accounted <= MAX_BATCH_MEMORY_BYTES);
        }
        let _ = decode_control(&bytes);
    }

    #[test]
    fn corrupted_frames_are_errors_or_valid(msg in control(), flip in any::<usize>(), bit in 0u8..8) {
        let mut frame = msg.to_frame().unwrap();
        let i = flip % frame.len();
        frame[i] ^= 1 << bit;
        // Either rejected with a typed error, or decodes to *some* message: never a panic.
        if let Ok(f) = decode_frame(&frame) {
            let _ = ControlMessage::from_payload(f.payload);
        }
    }

    #[test]
    fn truncated_frames_are_rejected(msg in control(), cut in any::<usize>()) {
        let frame = msg.to_frame().unwrap();
        let cut = cut % frame.len();
        let err = decode_frame(&frame[..cut]).unwrap_err();
        let expected = matches!(
            err,
            ProtoError::TruncatedHeader { .. } | ProtoError::TruncatedPayload { .. }
        );
        prop_assert!(expected, "unexpected error {err:?}");
    }
}

#[test]
fn wrong_version_is_rejected() {
    let mut frame = ControlMessage::Refused(Refusal {
        code: "x".into(),
        message: "y".into(),
    })
    .to_frame()
    .unwrap();
    frame[0] = PROTOCOL_VERSION + 1;
    assert_eq!(
        decode_frame(&frame).unwrap_err(),
        ProtoError::UnsupportedVersion {
            got: PROTOCOL_VERSION + 1,
            supported: PROTOCOL_VERSION
        }
    );
}

#[test]
fn unknown_kind_is_rejected() {
    let header = [PROTOCOL_VERSION, 77, 0, 0, 0, 0];
    assert_eq!(
        FrameHeader::parse(&header).unwrap_err(),
        ProtoError::UnknownFrameKind(77)
    );
}

#[test]
fn oversize_headers_are_rejected_before_reading_payload() {
    let too_big = (MAX_FRAME_BYTES as u32 + 1).to_be_bytes();
    let header = [
        PROTOCOL_VERSION,
        FrameKind::Batch as u8,
        too_big[0],
        too_big[1],
        too_big[2],
        too_big[3],
    ];
    assert_eq!(
        FrameHeader::parse(&header).unwrap_err(),
        ProtoError::FrameTooLarge {
            declared: MAX_FRAME_BYTES + 1,
            limit: MAX_FRAME_BYTES
        }
    );
    let ctl = (MAX_CONTROL_BYTES as u32 + 1).to_be_bytes();
    let header = [
        PROTOCOL_VERSION,
        FrameKind::Control as u8,
        ctl[0],
        ctl[1],
        ctl[2],
        ctl[3],
    ];
    assert!(matches!(
        FrameHeader::parse(&header),
        Err(ProtoError::FrameTooLarge { .. })
    ));
    assert_eq!(HEADER_LEN, header.len());
}

#[test]
fn oversize_payloads_are_refused_by_the_encoder() {
    let payload = vec![0u8; MAX_CONTROL_BYTES + 1];
    assert!(matches!(
        encode_frame(FrameKind::Control, &payload),
        Err(ProtoError::FrameTooLarge { .. })
    ));
}

#[test]
fn zstd_bombs_are_rejected() {
    // 64 MiB of zeros compresses to a few KiB; decoding must stop at the cap.
    let zeros = vec![0u8; MAX_BATCH_DECODED_BYTES * 4];
    let bomb = zstd::bulk::compress(&zeros, 3).unwrap();
    assert!(bomb.len() < MAX_FRAME_BYTES);
    assert_eq!(
        decode_batch(&bomb).unwrap_err(),
        ProtoError::BatchTooLarge {
            limit: MAX_BATCH_DECODED_BYTES
        }
    );
}

#[test]
fn trailing_bytes_are_rejected() {
    let msg = ControlMessage::Ack(Ack {
        first_seq: 1,
        last_seq: 2,
        duplicates: 0,
    });
    let mut payload = postcard::to_allocvec(&msg).unwrap();
    payload.push(0);
    assert_eq!(
        ControlMessage::from_payload(&payload).unwrap_err(),
        ProtoError::TrailingBytes(1)
    );
}

#[test]
fn garbage_batches_are_compression_errors() {
    assert!(matches!(
        decode_batch(b"definitely not zstd"),
        Err(ProtoError::Compression(_))
    ));
}

#[test]
fn host_id_display_parses_back() {
    let id = HostId(0x00ab_cdef_0123_4567);
    assert_eq!(id.to_string(), "00abcdef01234567");
    assert_eq!(id.to_string().parse::<HostId>().unwrap(), id);
}

/// A postcard varint, for crafting inputs that lie about lengths.
fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn exec_with(argv: Vec<String>, exe: Option<String>) -> Event {
    Event {
        header: EventHeader {
            host: HostId(1),
            seq: 1,
            ts_ns: 1,
        },
        payload: Payload::ProcessStart(ProcessStart {
            argv,
            exe,
            ..ProcessStart::default()
        }),
    }
}

#[test]
fn a_million_claimed_events_are_refused_before_decoding() {
    let mut raw = varint(1_000_000);
    raw.extend_from_slice(&[0; 64]);
    let compressed = zstd::bulk::compress(&raw, 1).unwrap();
    assert_eq!(
        decode_batch(&compressed).unwrap_err(),
        ProtoError::TooManyEvents {
            count: 1_000_000,
            limit: MAX_BATCH_EVENTS
        }
    );
    // A claim within the cap but beyond the bytes present is refused too,
    // before the events vector is allocated.
    let mut raw = varint(MAX_BATCH_EVENTS as u64);
    raw.extend_from_slice(&[0; 10]);
    assert_eq!(
        decode_batch_postcard(&raw).unwrap_err(),
        ProtoError::SequenceTooLong { limit: 10 }
    );
    assert_eq!(
        decode_batch_postcard(&[0xff; 11]).unwrap_err().reason(),
        "malformed"
    );
}

#[test]
fn many_tiny_items_hit_the_memory_budget() {
    // An empty argument is 1 byte on the wire and a 24-byte String in memory.
    let event = exec_with(vec![String::new(); MAX_EVENT_SEQUENCE_ITEMS], None);
    let per_event = event.memory_bytes();
    let fits = MAX_BATCH_MEMORY_BYTES / per_event;
    let batch = |n: usize| Batch {
        events: vec![event.clone(); n],
    };
    let raw = postcard::to_allocvec(&batch(fits)).unwrap();
    let (_, accounted) = decode_batch_postcard(&raw).unwrap();
    assert!(accounted <= MAX_BATCH_MEMORY_BYTES);

    let over = batch(fits + 1);
    let raw = postcard::to_allocvec(&over).unwrap();
    assert!(raw.len() < MAX_BATCH_DECODED_BYTES, "within the size cap");
    let err = decode_batch_postcard(&raw).unwrap_err();
    assert_eq!(
        err,
        ProtoError::MemoryBudget {
            limit: MAX_BATCH_MEMORY_BYTES
        }
    );
    assert_eq!(err.reason(), "memory_budget");
    // The sender refuses to produce it in the first place.
    assert_eq!(encode_batch(&over).unwrap_err(), err);
}

#[test]
fn long_strings_and_sequences_inside_events_are_refused() {
    let decode = |e: Event| {
        decode_batch_postcard(&postcard::to_allocvec(&Batch { events: vec![e] }).unwrap())
    };
    let at_cap = "x".repeat(MAX_EVENT_STRING_BYTES);
    assert!(decode(exec_with(vec![], Some(at_cap.clone()))).is_ok());
    let err = decode(exec_with(vec![], Some(at_cap + "x"))).unwrap_err();
    assert_eq!(
        err,
        ProtoError::StringTooLong {
            len: MAX_EVENT_STRING_BYTES + 1,
            limit: MAX_EVENT_STRING_BYTES
        }
    );
    assert_eq!(err.reason(), "string_too_long");

    assert!(decode(exec_with(
        vec![String::new(); MAX_EVENT_SEQUENCE_ITEMS],
        None
    ))
    .is_ok());
    let err = decode(exec_with(
        vec![String::new(); MAX_EVENT_SEQUENCE_ITEMS + 1],
        None,
    ))
    .unwrap_err();
    assert_eq!(
        err,
        ProtoError::SequenceTooLong {
            limit: MAX_EVENT_SEQUENCE_ITEMS
        }
    );
    assert_eq!(err.reason(), "sequence_too_long");
}

#[test]
fn a_length_claim_beyond_the_input_is_refused() {
    // One ProcessStart whose argv claims 1000 items (within the item cap)
    // with nothing behind the claim.
    let mut raw = varint(1);
    raw.extend_from_slice(&[1, 1, 1]); // host, seq, ts
    raw.extend_from_slice(&[0, 1, 1, 0]); // ProcessStart, pid, ppid, exe None
    raw.extend_from_slice(&varint(1000));
    assert_eq!(
        decode_batch_postcard(&raw).unwrap_err(),
        ProtoError::SequenceTooLong {
            limit: MAX_EVENT_SEQUENCE_ITEMS
        }
    );
    // A string claiming 2^40 bytes is refused by postcard before copying.
    let mut raw = varint(1);
    raw.extend_from_slice(&[1, 1, 1, 0, 1, 1, 1]); // exe Some
    raw.extend_from_slice(&varint(1 << 40));
    assert_eq!(
        decode_batch_postcard(&raw).unwrap_err().reason(),
        "malformed"
    );
}

#[test]
fn control_messages_are_bounded_while_decoding() {
    let hello = |addrs: Vec<IpAddr>| {
        ControlMessage::Hello(Hello {
            protocol_versions: vec![1],
            sensor_version: "v".into(),
            hostname: "h".into(),
            os: "linux".into(),
            addrs,
            next_seq: 1,
        })
    };
    // addrs claims a million entries; the payload holds none of them.
    let mut payload = postcard::to_allocvec(&hello(vec![])).unwrap();
    let at = payload.len() - 2; // [.., addrs len 0, next_seq 1]
    payload.truncate(at);
    payload.extend_from_slice(&varint(1_000_000));
    payload.push(1);
    assert_eq!(
        decode_control(&payload).unwrap_err(),
        ProtoError::SequenceTooLong {
            limit: MAX_CONTROL_BYTES
        }
    );

    let result = |message: String| {
        ControlMessage::UnsignedResult(UnsignedResult {
            id: 1,
            ok: true,
            message,
            data: vec![7; 1000],
        })
    };
    let ok = result("m".repeat(MAX_EVENT_STRING_BYTES));
    let bytes = postcard::to_allocvec(&ok).unwrap();
    assert_eq!(decode_control(&bytes).unwrap(), ok);
    let bytes = postcard::to_allocvec(&result("m".repeat(MAX_EVENT_STRING_BYTES + 1))).unwrap();
    assert_eq!(
        ControlMessage::from_payload(&bytes).unwrap_err().reason(),
        "string_too_long"
    );
}
