//! Data-driven tests: each `tests/data/*.case` file is a small scenario
//! (hosts, config, events, ticks); its rendered outcome — scores, alerts
//! with explanations — is compared with the insta
//! snapshot `tests/snapshots/cases__<name>.snap`. Adding a case is adding a file.
//!
//! Case syntax, one command per line (`#` comments):
//! - `host ID NAME ADDR…`            register a host
//! - `config KEY=VALUE…`             learning_s, cold_threshold, min_threshold, chain_window_s
//! - `train T`                       train at T seconds
//! - `login T HOST user=U [src=IP] [srcname=N] [service=ssh|smb|rdp|winrm|wmi|network] [method=ntlm|kerberos|password|key] [fail]`
//! - `connect T HOST dst=IP:PORT` / `accept T HOST src=IP:PORT port=P`
//! - `proc T HOST exe=PATH parent=PATH [user=U]`
//! - `file T HOST path=PATH`
//! - `tick T`                         advance time

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use vigil_models::{Alert, Detector, DetectorConfig};
use vigil_proto::{
    AuthMethod, Event, EventHeader, FileChange, FileOp, HostId, LoginInfo, LoginService, NetFlow,
    Payload, ProcessStart, Transport,
};

const NS: u64 = 1_000_000_000;

fn kv<'a>(args: &'a [&'a str], k: &str) -> Option<&'a str> {
    args.iter()
        .find_map(|a| a.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
}

fn render_alert(out: &mut String, a: &Alert) {
    writeln!(
        out,
        "  ALERT #{} {:?} {:?} score={:.2} path=[{}] users={:?} techniques={:?} incident={:?} model={:?}",
        a.id,
        a.kind,
        a.severity,
        a.score,
        a.path_names.join(" -> "),
        a.users,
        a.techniques,
        a.incident_id,
        a.model_version
    )
    .unwrap();
    writeln!(out, "    title: {}", a.title).unwrap();
    writeln!(out, "    summary: {}", a.summary).unwrap();
    for d in &a.deviations {
        writeln!(
            out,
            "    - {} observed={} baseline={:.2} score={:.2}: {}",
            d.feature, d.observed, d.baseline, d.score, d.sentence
        )
        .unwrap();
    }
    let ev: Vec<String> = a
        .evidence
        .iter()
        .map(|(h, s)| format!("{}:{}", h.0, s))
        .collect();
    writeln!(out, "    evidence: {}", ev.join(" ")).unwrap();
    let rec = a.to_record();
    assert_eq!(rec.id, a.id);
    assert_eq!(rec.deviations, a.deviations);
    assert_eq!(rec.evidence, a.evidence);
}

fn run_case(text: &str) -> String {
    let mut cfg = DetectorConfig::default();
    let mut det: Option<Detector> = None;
    let mut hosts: Vec<(u64, String, Vec<IpAddr>)> = Vec::new();
    let mut seqs = std::collections::BTreeMap::<u64, u64>::new();
    let mut out = String::new();
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let (cmd, args) = (words[0], &words[1..]);
        match cmd {
            "host" => hosts.push((
                args[0].parse().unwrap(),
                args[1].to_string(),
                args[2..].iter().map(|a| a.parse().unwrap()).collect(),
            )),
            "config" => {
                for a in args {
                    let (k, v) = a.split_once('=').unwrap();
                    let f: f64 = v.parse().unwrap();
                    match k {
                        "learning_s" => cfg.learning_period_ns = f as u64 * NS,
                        "cold_threshold" => cfg.cold_start_hop_threshold = f,
                        "min_threshold" => cfg.min_hop_threshold = f,
                        "chain_window_s" => cfg.chain_window_ns = f as u64 * NS,
                        other => panic!("unknown config key {other}"),
                    }
                }
            }
            _ => {}
        }
        if matches!(cmd, "host" | "config") {
            continue;
        }
        let d = det.get_or_insert_with(|| {
            let mut d = Detector::new(cfg.clone());
            for (id, name, addrs) in &hosts {
                d.register_host(HostId(*id), name, addrs);
            }
            d
        });
        let t: u64 = args.first().map(|a| a.parse().unwrap()).unwrap_or(0);
        let host = args.get(1).map(|h| h.parse::<u64>().unwrap()).unwrap_or(0);
        let rest = if args.len() > 2 { &args[2..] } else { &[][..] };
        let payload = match cmd {
            "train" => {
                d.train(t * NS);
                writeln!(out, "train @{t}").unwrap();
                for s in d.model_status() {
                    writeln!(
                        out,
                        "  {} {:?} threshold={:?} version={:?}",
                        s.hostname,
                        s.phase,
                        s.hop_threshold.map(|x| (x * 100.0).round() / 100.0),
                        s.version
                            .as_deref()
                            .map(|v| v.split('-').next().unwrap_or(""))
                    )
                    .unwrap();
                }
                continue;
            }
            "tick" => {
                let alerts = d.tick(t * NS);
                writeln!(out, "tick @{t}: {} alerts", alerts.len()).unwrap();
                for a in &alerts {
                    render_alert(&mut out, a);
                }
                continue;
            }
            "login" => {
                let service = match kv(rest, "service").unwrap_or("network") {
                    "ssh" => LoginService::Ssh,
                    "smb" => LoginService::Smb,
                    "rdp" => LoginService::Rdp,
                    "winrm" => LoginService::WinRm,
                    "wmi" => LoginService::Wmi,
                    "console" => LoginService::Console,
                    o => LoginService::Other(o.into()),
                };
                let method = match kv(rest, "method").unwrap_or("kerberos") {
                    "ntlm" => AuthMethod::Ntlm,
                    "password" => AuthMethod::Password,
                    "key" => AuthMethod::PublicKey,
                    _ => AuthMethod::Kerberos,
                };
                let info = LoginInfo {
                    user: kv(rest, "user").unwrap().into(),
                    method,
                    service,
                    src_addr: kv(rest, "src").map(|a| a.parse().unwrap()),
                    src_port: None,
                    src_host: kv(rest, "srcname").map(str::to_string),
                    from_user: None,
                    pid: None,
                };
                if rest.contains(&"fail") {
                    Payload::AuthFailure(info)
                } else {
                    Payload::Login(info)
                }
            }
            "connect" | "accept" => {
                let me = hosts
                    .iter()
                    .find(|h| h.0 == host)
                    .and_then(|h| h.2.first().copied());
                let me = me.unwrap_or("127.0.0.1".parse().unwrap());
                let (local, remote) = if cmd == "connect" {
                    (
                        SocketAddr::new(me, 50000),
                        kv(rest, "dst").unwrap().parse().unwrap(),
                    )
                } else {
                    let port: u16 = kv(rest, "port").unwrap().parse().unwrap();
                    (
                        SocketAddr::new(me, port),
                        kv(rest, "src").unwrap().parse().unwrap(),
                    )
                };
                let f = NetFlow {
                    transport: Transport::Tcp,
                    local,
                    remote,
                    pid: None,
                    exe: None,
                    repeat: 1,
                };
                if cmd == "connect" {
                    Payload::NetConnect(f)
                } else {
                    Payload::NetAccept(f)
                }
            }
            "proc" => Payload::ProcessStart(ProcessStart {
                exe: kv(rest, "exe").map(str::to_string),
                parent_exe: kv(rest, "parent").map(str::to_string),
                user: kv(rest, "user").map(str::to_string),
                ..Default::default()
            }),
            "file" => Payload::FileChange(FileChange {
                path: kv(rest, "path").unwrap().into(),
                op: FileOp::Modified,
                size: None,
                mode: None,
                uid: None,
                sha256: None,
                pid: None,
            }),
            other => panic!("unknown command {other}"),
        };
        let seq = seqs.entry(host).or_insert(0);
        *seq += 1;
        let ev = Event {
            header: EventHeader {
                host: HostId(host),
                seq: *seq,
                ts_ns: t * NS,
            },
            payload,
        };
        let obs = d.observe_scored(&ev);
        write!(out, "{line}").unwrap();
        if let Some(s) = obs.score {
            write!(
                out,
                "  => score {s:.2} new_edge={}",
                obs.new_edge.unwrap_or(false)
            )
            .unwrap();
        }
        writeln!(out).unwrap();
        for a in &obs.alerts {
            render_alert(&mut out, a);
        }
    }
    out
}

#[test]
fn cases() {
    let dir = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/data");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "case"))
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for p in names {
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&p).unwrap();
        let out = run_case(&text);
        insta::assert_snapshot!(name, out);
    }
}
