//! `cargo xtask bench forward`: how fast SIEM forwarding (#17) delivers
//! OCSF alerts to a real rsyslogd on loopback, over TCP and TLS, against a
//! reference measured in the same run: the very same pre-rendered, framed
//! bytes written with one `write_all` to the same rsyslog input.
//!
//! Delivery is timed until rsyslog has written every message to its file,
//! so both sides pay rsyslog's own cost. The forwarder's path adds the
//! durable queue (one fsync per submission per receiver), the sender's
//! batching and its wait for the TCP acknowledgement of each batch.
//! Also measured: the submit rate with one alert per submission (one
//! fsync each), as the pipeline submits alerts one observation at a time.
//!
//! A table on stdout; the last line is one JSON object.

#[path = "../../../forward/tests/rsyslog/rsyslog_daemon.rs"]
mod rsyslog_daemon;

use rsyslog_daemon::{rsyslog_available, Rsyslog};
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use vigil_forward::syslog::{self, Header};
use vigil_forward::{
    AlertWithHosts, Format, Forwarder, ForwarderConfig, ReceiverConfig, Record, RecordKind,
    RenderContext, Timing, Transport,
};
use vigil_proto::query::{AlertRecord, Severity, TriageState};
use vigil_proto::HostId;

/// Alerts per delivery run.
const N: usize = 20_000;
/// Alerts per submission in the delivery runs (a busy round's worth).
const SUBMIT_BATCH: usize = 256;
/// Alerts submitted one by one for the fsync-bound submit rate.
const SINGLE: usize = 500;

fn alert(i: usize) -> Record {
    Record::Alert(AlertWithHosts {
        alert: AlertRecord {
            id: i as u64,
            created_ns: 1_765_000_000_000_000_000 + i as u64 * 1_000_000,
            severity: [Severity::Medium, Severity::High, Severity::Critical][i % 3],
            score: 0.87,
            title: format!(
                "Lateral movement: new SSH logon ws-{} → db-{}",
                i % 97,
                i % 13
            ),
            path: vec![HostId(1 + (i % 97) as u64), HostId(200 + (i % 13) as u64)],
            users: vec!["svc-backup".into()],
            techniques: vec!["T1021.004".into()],
            summary: "First SSH logon over this edge in 30 days, by a user never seen on it."
                .into(),
            deviations: vec![],
            evidence: vec![(HostId(1), i as u64)],
            state: TriageState::New,
            assignee: None,
            incident_id: None,
            model_version: Some("graph-v3".into()),
            ports: vec![22],
            processes: vec![],
            suppressed_by: None,
        },
        host_names: vec![format!("ws-{}", i % 97), format!("db-{}", i % 13)],
    })
}

fn ctx() -> RenderContext {
    RenderContext {
        product_version: env!("CARGO_PKG_VERSION").into(),
        appliance: "vigil-bench".into(),
    }
}

/// The bytes the forwarder would send for `records` (seqs from `first`).
fn prerendered(records: &[Record], first: u64) -> Vec<u8> {
    let header = Header {
        facility: 16,
        hostname: "vigil-bench".into(),
        procid: std::process::id(),
    };
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let seq = first + i as u64;
        let payload = vigil_forward::format::render(Format::Ocsf, r, seq, &ctx());
        let msg = syslog::message(
            &header,
            r.kind(),
            syslog::severity(r),
            r.time_ns(),
            Some(seq),
            &payload,
        );
        out.extend_from_slice(&syslog::frame(msg.as_bytes()));
    }
    out
}

fn lines(file: &Path) -> usize {
    std::fs::read(file)
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .unwrap_or(0)
}

/// Seconds from `start` until `file` holds `want` lines.
fn until_lines(file: &Path, want: usize, start: Instant) -> f64 {
    let deadline = start + Duration::from_secs(600);
    while lines(file) < want {
        assert!(
            Instant::now() < deadline,
            "rsyslog never wrote {want} lines"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed().as_secs_f64()
}

fn reference(bytes: &[u8], port: u16, tls: Option<&Path>, file: &Path) -> f64 {
    let base = lines(file);
    let start = Instant::now();
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect rsyslog");
    tcp.set_nodelay(true).ok();
    match tls {
        None => {
            let mut s = tcp;
            s.write_all(bytes).expect("write");
            s.flush().ok();
            let secs = until_lines(file, base + N, start);
            drop(s);
            secs
        }
        Some(ca) => {
            let cfg = vigil_forward::transport::tls_config(ca).expect("CA");
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let conn = rustls::ClientConnection::new(Arc::clone(&cfg), name).expect("TLS");
            let mut s = rustls::StreamOwned::new(conn, tcp);
            s.write_all(bytes).expect("write");
            s.flush().ok();
            let secs = until_lines(file, base + N, start);
            s.conn.send_close_notify();
            let _ = s.flush();
            secs
        }
    }
}

fn forwarder(dir: &Path, name: &str, port: u16, tls: Option<&Path>) -> Forwarder {
    let transport = match tls {
        None => Transport::Tcp,
        Some(ca) => Transport::Tls {
            ca_pem: ca.to_path_buf(),
            server_name: Some("localhost".into()),
        },
    };
    Forwarder::start(ForwarderConfig {
        queue_dir: dir.join("queues"),
        hostname: "vigil-bench".into(),
        product_version: env!("CARGO_PKG_VERSION").into(),
        receivers: vec![ReceiverConfig {
            name: name.into(),
            address: format!("127.0.0.1:{port}"),
            transport,
            format: Format::Ocsf,
            kinds: vec![RecordKind::Alert],
            facility: 16,
            max_queue_bytes: 1 << 30,
            from: vigil_forward::AuditFrom::Start,
        }],
        timing: Timing::default(),
    })
    .expect("forwarder")
}

/// `(submit seconds, delivery seconds)` of N alerts through a forwarder.
fn forwarded(fwd: &Forwarder, records: &[Record], file: &Path) -> (f64, f64) {
    let base = lines(file);
    let start = Instant::now();
    for chunk in records.chunks(SUBMIT_BATCH) {
        assert!(fwd.submit_batch(chunk).all_accepted(), "queue refused");
    }
    let submitted = start.elapsed().as_secs_f64();
    (submitted, until_lines(file, base + records.len(), start))
}

fn main() {
    if let Err(reason) = rsyslog_available() {
        eprintln!("bench forward needs rsyslog: {reason}");
        println!("{{\"bench\":\"forward\",\"skipped\":{reason:?}}}");
        std::process::exit(if std::env::var_os("CI").is_some() {
            1
        } else {
            0
        });
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = Rsyslog::start(dir.path()).expect("rsyslogd");
    let (tcp_log, tls_log) = (dir.path().join("tcp.log"), dir.path().join("tls.log"));
    let ca = dir.path().join("ca.pem");
    let records: Vec<Record> = (0..N).map(alert).collect();
    let bytes = prerendered(&records, 1);
    let avg = bytes.len() / N;

    let ref_tcp = reference(&bytes, daemon.tcp_port, None, &tcp_log);
    let ref_tls = reference(&bytes, daemon.tls_port, Some(&ca), &tls_log);
    let fwd = forwarder(dir.path(), "tcp", daemon.tcp_port, None);
    let (sub_tcp, fwd_tcp) = forwarded(&fwd, &records, &tcp_log);
    // One alert per submission: one fsync each.
    let start = Instant::now();
    for r in &records[..SINGLE] {
        assert!(fwd.submit(r).all_accepted());
    }
    let single = start.elapsed().as_secs_f64();
    until_lines(&tcp_log, 2 * N + SINGLE, Instant::now());
    let snap = fwd.snapshot(SystemTime::now());
    assert_eq!(snap[0].resent, 0, "nothing re-sent on a healthy link");
    fwd.shutdown(Duration::from_secs(5));
    let fwd = forwarder(dir.path(), "tls", daemon.tls_port, Some(&ca));
    let (sub_tls, fwd_tls) = forwarded(&fwd, &records, &tls_log);
    fwd.shutdown(Duration::from_secs(5));
    let mut daemon = daemon;
    daemon.stop();

    let rate = |secs: f64| N as f64 / secs;
    println!("SIEM forwarding: {N} OCSF alerts (~{avg} B framed each) to rsyslogd on loopback");
    println!("{:<38} {:>12} {:>10}", "path", "records/s", "vs ref");
    let row = |what: &str, r: f64, reference: f64| {
        println!("{what:<38} {r:>12.0} {:>9.2}x", r / reference);
    };
    row("reference: write_all, TCP", rate(ref_tcp), rate(ref_tcp));
    row("forwarder delivery, TCP", rate(fwd_tcp), rate(ref_tcp));
    row("reference: write_all, TLS", rate(ref_tls), rate(ref_tls));
    row("forwarder delivery, TLS", rate(fwd_tls), rate(ref_tls));
    println!(
        "{:<38} {:>12.0}",
        format!("forwarder submit ({SUBMIT_BATCH}/fsync), TCP"),
        rate(sub_tcp)
    );
    println!(
        "{:<38} {:>12.0}",
        "forwarder submit (1/fsync)",
        SINGLE as f64 / single
    );
    println!(
        "{{\"bench\":\"forward\",\"records\":{N},\"avg_bytes\":{avg},\
         \"ref_tcp_per_s\":{:.0},\"fwd_tcp_per_s\":{:.0},\"ratio_tcp\":{:.3},\
         \"ref_tls_per_s\":{:.0},\"fwd_tls_per_s\":{:.0},\"ratio_tls\":{:.3},\
         \"submit_batch_per_s\":{:.0},\"submit_tls_batch_per_s\":{:.0},\"submit_single_per_s\":{:.0}}}",
        rate(ref_tcp),
        rate(fwd_tcp),
        ref_tcp / fwd_tcp,
        rate(ref_tls),
        rate(fwd_tls),
        ref_tls / fwd_tls,
        rate(sub_tcp),
        rate(sub_tls),
        SINGLE as f64 / single
    );
}
