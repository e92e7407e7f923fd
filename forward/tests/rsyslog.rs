//! Forwarding to a real rsyslog (imtcp, plain and GnuTLS with a test CA),
//! read back through a strict RFC 5424 splitter and a strict CEF parser
//! written from the ArcSight CEF specification.
//!
//! Without `rsyslogd` (or its GnuTLS driver) the rsyslog test is skipped
//! with a printed reason, and fails when `CI` is set.

#[path = "rsyslog/cef_strict.rs"]
mod cef_strict;
#[path = "rsyslog/rsyslog_daemon.rs"]
mod rsyslog_daemon;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use cef_strict::parse_cef;
use rsyslog_daemon::{rsyslog_available, Rsyslog};
use serde_json::Value;
use vigil_forward::format::cef;
use vigil_forward::{
    AlertWithHosts, AuditEntry, AuditFrom, Checkpoint, Format, Forwarder, ForwarderConfig,
    ReceiverConfig, Record, RecordKind, RenderContext, Timing, Transport,
};
use vigil_proto::query::{AlertRecord, Severity, TriageState};
use vigil_proto::HostId;

const HOSTILE: &[&str] = &[
    "plain",
    "pipe | in | it",
    r"back\slash\\double",
    "equals=sign a=b",
    "new\nline\r\nand cr",
    "ünïcödé ☃ 日本語",
    "trailing space ",
    " key=value lookalike cn1=99",
    r"\|\=\n literal escapes",
];

fn alert(i: usize) -> Record {
    let s = HOSTILE[i % HOSTILE.len()];
    Record::Alert(AlertWithHosts {
        alert: AlertRecord {
            id: i as u64,
            created_ns: 1_765_000_000_000_000_000 + i as u64 * 1_000_000,
            severity: [
                Severity::Low,
                Severity::Medium,
                Severity::High,
                Severity::Critical,
            ][i % 4],
            score: 0.5,
            title: format!("alert {i}: {s}"),
            path: vec![HostId(1), HostId(2)],
            users: vec![s.to_string()],
            techniques: vec!["T1021.004".into()],
            summary: format!("summary {s}"),
            deviations: vec![],
            evidence: vec![],
            state: TriageState::New,
            assignee: None,
            incident_id: None,
            model_version: None,
            ports: vec![],
            processes: vec![],
            suppressed_by: None,
        },
        host_names: vec!["web|1".into(), s.to_string()],
    })
}

fn audit(i: usize) -> Record {
    Record::Audit(AuditEntry {
        actor: "admin".into(),
        time_ns: 1_765_000_000_000_000_000,
        action: "suppression.create".into(),
        target: HOSTILE[i % HOSTILE.len()].into(),
        detail: "scope=host; result=ok".into(),
        seq: i as u64,
    })
}

fn ctx() -> RenderContext {
    RenderContext {
        product_version: "0.1.0".into(),
        appliance: "vigil-test".into(),
    }
}

/// One receiver per format and transport; the facility tells them apart
/// in rsyslog's output.
fn receivers(dir: &Path, tcp_port: u16, tls_port: u16) -> Vec<ReceiverConfig> {
    let tls = Transport::Tls {
        ca_pem: dir.join("ca.pem"),
        server_name: Some("localhost".into()),
    };
    let r = |name: &str, port: u16, transport: &Transport, format: Format, facility: u8| {
        ReceiverConfig {
            name: name.into(),
            address: format!("127.0.0.1:{port}"),
            transport: transport.clone(),
            format,
            kinds: vec![RecordKind::Alert, RecordKind::Audit, RecordKind::Checkpoint],
            facility,
            max_queue_bytes: 16 << 20,
            from: AuditFrom::Start,
        }
    };
    vec![
        r("ocsf-tls", tls_port, &tls, Format::Ocsf, 16),
        r("ecs-tls", tls_port, &tls, Format::Ecs, 17),
        r("cef-tls", tls_port, &tls, Format::Cef, 18),
        r("cef-tcp", tcp_port, &Transport::Tcp, Format::Cef, 19),
        r("ocsf-tcp", tcp_port, &Transport::Tcp, Format::Ocsf, 20),
    ]
}

/// A received RFC 5424 message, split strictly.
struct Syslog {
    facility: u8,
    msgid: String,
    seq: u64,
    msg: String,
}

fn parse_syslog(line: &str) -> Syslog {
    let rest = line
        .strip_prefix('<')
        .unwrap_or_else(|| panic!("no PRI: {line}"));
    let (pri, rest) = rest.split_once(">1 ").expect("PRI and version 1");
    let pri: u16 = pri.parse().expect("numeric PRI");
    let mut parts = rest.splitn(6, ' ');
    let ts = parts.next().unwrap();
    assert!(
        humantime::parse_rfc3339(ts).is_ok(),
        "RFC 3339 timestamp: {ts}"
    );
    assert_eq!(parts.next().unwrap(), "vigil-test");
    assert_eq!(parts.next().unwrap(), "vigil");
    assert!(parts.next().unwrap().parse::<u32>().is_ok(), "procid");
    let msgid = parts.next().unwrap().to_string();
    let rest = parts.next().unwrap();
    let sd_end = rest.find("] ").expect("structured data");
    let sd = &rest[..=sd_end];
    let seq = sd
        .strip_prefix("[vigil@32473 seq=\"")
        .and_then(|s| s.strip_suffix("\"]"))
        .expect("our SD element")
        .parse()
        .unwrap();
    Syslog {
        facility: (pri / 8) as u8,
        msgid,
        seq,
        msg: rest[sd_end + 2..].to_string(),
    }
}

/// Checks one received message against the record it was made from.
fn check_payload(format: Format, m: &Syslog, record: &Record) {
    assert_eq!(m.msgid, record.kind().as_str());
    match format {
        Format::Cef => {
            let parsed = parse_cef(&m.msg).unwrap_or_else(|e| panic!("{e}: {}", m.msg));
            assert_eq!(
                parsed,
                cef_strict::expected(&cef::to_record(record, m.seq, &ctx()))
            );
        }
        Format::Ocsf => {
            let v: Value = serde_json::from_str(&m.msg).unwrap();
            assert_eq!(v["metadata"]["sequence"], m.seq);
            if let Record::Alert(a) = record {
                assert_eq!(v["class_uid"], 2004);
                assert_eq!(v["finding_info"]["title"], a.alert.title);
            }
        }
        Format::Ecs => {
            let v: Value = serde_json::from_str(&m.msg).unwrap();
            assert_eq!(v["event"]["sequence"], m.seq);
            if let Record::Alert(a) = record {
                assert_eq!(v["event"]["kind"], "alert");
                assert_eq!(v["message"], a.alert.summary);
            }
        }
    }
}

/// Every message rsyslog wrote, by facility.
fn received(dir: &Path) -> BTreeMap<u8, Vec<Syslog>> {
    let mut out: BTreeMap<u8, Vec<Syslog>> = BTreeMap::new();
    for file in ["tcp.log", "tls.log"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let m = parse_syslog(line);
            out.entry(m.facility).or_default().push(m);
        }
    }
    out
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn rsyslog_receives_every_format_over_tls_and_tcp_in_order_once_across_an_outage() {
    if let Err(reason) = rsyslog_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs rsyslog: {reason}"
        );
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Rsyslog::start(dir.path()).unwrap();
    let cfgs = receivers(dir.path(), daemon.tcp_port, daemon.tls_port);
    let config = ForwarderConfig {
        queue_dir: dir.path().join("queues"),
        hostname: "vigil-test".into(),
        product_version: "0.1.0".into(),
        receivers: cfgs.clone(),
        timing: Timing {
            connect_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(5),
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_millis(400),
            batch_records: 7,
        },
    };
    let fwd = Forwarder::start(config.clone()).unwrap();
    let mut records: Vec<Record> = Vec::new();
    for i in 0..30 {
        records.push(if i % 10 == 9 { audit(i) } else { alert(i) });
    }
    records.push(Record::Checkpoint(Checkpoint {
        time_ns: 1_765_000_000_000_000_000,
        text: "vigil/audit\n31\nq83+Xw==\n\n— vigil AbCd=".into(),
    }));
    for r in &records {
        assert!(fwd.submit(r).all_accepted());
    }
    let expect_all = |n: usize| {
        let got = received(dir.path());
        cfgs.iter()
            .all(|c| got.get(&c.facility).map_or(0, Vec::len) >= n)
    };
    wait_for("the first records", Duration::from_secs(60), || {
        expect_all(records.len())
    });

    // Outage: stop rsyslog, queue more, see the senders fail, start it again.
    daemon.stop();
    for i in 30..60 {
        records.push(alert(i));
        assert!(fwd.submit(records.last().unwrap()).all_accepted());
    }
    wait_for(
        "every sender to notice the outage",
        Duration::from_secs(30),
        || {
            fwd.snapshot(SystemTime::now())
                .iter()
                .all(|s| s.failed_attempts > 0 && s.pending == 30)
        },
    );
    let snap = fwd.snapshot(SystemTime::now());
    assert!(snap
        .iter()
        .all(|s| s.oldest_pending_age.is_some() && s.queue_bytes > 0));
    daemon.restart().unwrap();
    wait_for("the queued records", Duration::from_secs(60), || {
        expect_all(records.len())
    });
    std::thread::sleep(Duration::from_millis(500)); // room for a duplicate to show

    let got = received(dir.path());
    for c in &cfgs {
        let msgs = &got[&c.facility];
        let seqs: Vec<u64> = msgs.iter().map(|m| m.seq).collect();
        let want: Vec<u64> = (1..=records.len() as u64).collect();
        assert_eq!(seqs, want, "{}: all arrive, in order, none twice", c.name);
        for m in msgs {
            check_payload(c.format, m, &records[m.seq as usize - 1]);
        }
    }
    for s in fwd.snapshot(SystemTime::now()) {
        assert_eq!(
            (s.sent, s.pending, s.queue_bytes),
            (records.len() as u64, 0, 0),
            "{}",
            s.name
        );
        assert_eq!(s.sent_seq, records.len() as u64);
        assert!(!s.full && s.full_refusals == 0);
        // The outage was seen before writing (peer closed), so nothing was
        // written without confirmation and nothing had to be sent again.
        assert_eq!(s.resent, 0, "{}", s.name);
    }
    fwd.shutdown(Duration::from_secs(5));
}

#[test]
fn records_queued_while_the_receiver_is_down_survive_a_restart_of_the_forwarder() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on: bind, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = ForwarderConfig {
        queue_dir: dir.path().join("queues"),
        hostname: "vigil-test".into(),
        product_version: "0.1.0".into(),
        receivers: vec![ReceiverConfig {
            name: "down".into(),
            address: format!("127.0.0.1:{port}"),
            transport: Transport::Tcp,
            format: Format::Cef,
            kinds: vec![RecordKind::Alert],
            facility: 16,
            max_queue_bytes: 1 << 20,
            from: AuditFrom::Start,
        }],
        timing: Timing {
            backoff_base: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            ..Timing::default()
        },
    };
    let fwd = Forwarder::start(config.clone()).unwrap();
    for i in 0..5 {
        assert!(fwd.submit(&alert(i)).all_accepted());
    }
    // Audit entries are not taken by this receiver: nothing queued, no refusal.
    assert!(fwd.submit(&audit(1)).all_accepted());
    drop(fwd);
    let fwd = Forwarder::start(config.clone()).unwrap();
    let s = &fwd.snapshot(SystemTime::now())[0];
    assert_eq!((s.pending, s.sent, s.sent_seq), (5, 0, 0));
    // Fill the queue: the alarm is raised, never silent loss.
    let mut refused = 0;
    for i in 0..10_000 {
        let out = fwd.submit(&alert(i));
        if !out.all_accepted() {
            assert_eq!(out.refused[0].reason, "full");
            refused += 1;
            if refused == 3 {
                break;
            }
        }
    }
    let s = &fwd.snapshot(SystemTime::now())[0];
    assert!(s.full && s.full_refusals == 3, "{s:?}");
    assert!(s.queue_bytes <= s.queue_max_bytes);
    // Records are queued in order: what a batch had accepted is a prefix,
    // so the refusal counts the rest.
    let out = fwd.submit_batch(&[alert(1), audit(2), alert(3)]);
    assert_eq!(out.refused[0].records, 2, "the batch's two alerts");
    fwd.shutdown(Duration::ZERO);
}

#[test]
fn a_bad_configuration_names_every_problem() {
    let config = ForwarderConfig {
        queue_dir: "/nonexistent".into(),
        hostname: "h".into(),
        product_version: "0".into(),
        receivers: vec![ReceiverConfig {
            name: "../x".into(),
            address: "nope".into(),
            transport: Transport::Tcp,
            format: Format::Ocsf,
            kinds: vec![],
            facility: 99,
            max_queue_bytes: 0,
            from: AuditFrom::Start,
        }],
        timing: Timing::default(),
    };
    let Err(err) = Forwarder::start(config) else {
        panic!("a bad configuration started");
    };
    let text = err.to_string();
    for key in ["name", "address", "facility", "kinds", "max_queue_bytes"] {
        assert!(text.contains(&format!("receivers[0].{key}")), "{text}");
    }
}

/// A CA of its own, not the one that signed rsyslog's certificate.
fn write_other_ca(path: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Someone else's CA");
    std::fs::write(path, ca.self_signed(&key).unwrap().pem()).unwrap();
}

#[test]
fn a_tls_receiver_with_the_wrong_certificate_is_refused_counted_and_loses_nothing() {
    if let Err(reason) = rsyslog_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs rsyslog: {reason}"
        );
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Rsyslog::start(dir.path()).unwrap();
    write_other_ca(&dir.path().join("other-ca.pem"));
    let receiver = |name: &str, ca: &str, server_name: &str, facility: u8| ReceiverConfig {
        name: name.into(),
        address: format!("127.0.0.1:{}", daemon.tls_port),
        transport: Transport::Tls {
            ca_pem: dir.path().join(ca),
            server_name: Some(server_name.into()),
        },
        format: Format::Ocsf,
        kinds: vec![RecordKind::Alert, RecordKind::Audit],
        facility,
        max_queue_bytes: 1 << 20,
        from: AuditFrom::Start,
    };
    let mut config = ForwarderConfig {
        queue_dir: dir.path().join("queues"),
        hostname: "vigil-test".into(),
        product_version: "0.1.0".into(),
        receivers: vec![
            receiver("wrong-ca", "other-ca.pem", "localhost", 16),
            receiver("wrong-name", "ca.pem", "siem.example", 17),
        ],
        timing: Timing {
            connect_timeout: Duration::from_secs(2),
            backoff_base: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            ..Timing::default()
        },
    };
    let fwd = Forwarder::start(config.clone()).unwrap();
    let records: Vec<Record> = (0..3).map(alert).collect();
    assert!(fwd.submit_batch(&records).all_accepted());
    // One receiver's own history: only it queues the record.
    assert!(fwd.submit_to("wrong-ca", &[audit(1)]).all_accepted());
    wait_for(
        "both handshakes to fail repeatedly",
        Duration::from_secs(30),
        || {
            fwd.snapshot(SystemTime::now())
                .iter()
                .all(|s| s.failed_attempts >= 3)
        },
    );
    let snap = fwd.snapshot(SystemTime::now());
    for (s, pending) in snap.iter().zip([4, 3]) {
        assert_eq!(
            (s.sent, s.pending),
            (0, pending),
            "{}: kept, not dropped",
            s.name
        );
        let err = s.last_error.clone().unwrap_or_default();
        assert!(err.contains("certificate"), "{}: {err}", s.name);
        assert!(!s.connected);
    }
    assert!(received(dir.path()).is_empty(), "nothing reached rsyslog");
    fwd.shutdown(Duration::ZERO);

    // The operator fixes the receivers: what was queued arrives, once.
    config.receivers = vec![
        receiver("wrong-ca", "ca.pem", "localhost", 16),
        receiver("wrong-name", "ca.pem", "localhost", 17),
    ];
    let fwd = Forwarder::start(config).unwrap();
    wait_for("the kept records", Duration::from_secs(60), || {
        let got = received(dir.path());
        got.get(&16).map_or(0, Vec::len) == 4 && got.get(&17).map_or(0, Vec::len) == 3
    });
    let got = received(dir.path());
    assert_eq!(
        got[&16].iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(
        got[&17].iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    fwd.shutdown(Duration::from_secs(5));
    daemon.stop();
}
