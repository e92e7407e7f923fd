//! `eval lanl DIR --train-days N --scores OUT.csv`: stream LANL 2015 data
//! through the detector; write one score per test-period auth event.
//!
//! The red-team file is read into a small set that only the [`Scoreboard`]
//! consults after each event is scored; the detector never sees it.

use super::{Comparison, FirstTime, Scoreboard};
use std::collections::HashSet;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use vigil_datasets::lanl::{
    auth_event, find, host_addr, host_id, open_lines, read_redteam, AuthRecord, LanlError,
    RedteamRecord, Sequencer, SideKind, SideStream,
};
use vigil_models::{Detector, DetectorConfig, Observed};
use vigil_proto::{Event, HostId};

const DAY_S: u64 = 86_400;
const NS: u64 = 1_000_000_000;

/// Options of one LANL run.
#[derive(Debug, Clone)]
pub struct LanlOptions {
    /// Folder with `auth.txt[.gz]` etc.
    pub dir: PathBuf,
    /// Days 1..=N train; events with time > N × 86400 are scored.
    pub train_days: u64,
    /// Where the CSV of scores goes.
    pub scores: PathBuf,
    /// Detector configuration.
    pub detector: DetectorConfig,
}

/// What a LANL run produced.
#[derive(Debug, Clone)]
pub struct LanlReport {
    /// Auth lines read.
    pub auth_lines: u64,
    /// Auth lines that did not parse (skipped).
    pub bad_lines: u64,
    /// Rows written to the CSV.
    pub scored: u64,
    /// Red-team records in the label file.
    pub labels: usize,
    /// Scored rows that matched a red-team record.
    pub positives: u64,
    /// Metrics, when there were labels.
    pub comparison: Option<Comparison>,
    /// Side files used.
    pub side_files: Vec<String>,
    /// Distinct edges in the fleet graph at the end.
    pub graph_edges: usize,
}

struct Feed {
    det: Detector,
    registered: HashSet<HostId>,
}

impl Feed {
    fn register(&mut self, name: &str) {
        let id = host_id(name);
        if self.registered.insert(id) {
            self.det.register_host(id, name, &[host_addr(name)]);
        }
    }
}

/// Runs the evaluation.
pub fn eval_lanl(opts: &LanlOptions) -> Result<LanlReport, LanlError> {
    eval_lanl_with(opts, &mut |_, _, _, score| score)
}

/// Sees every scored auth event with what the detector made of it and its
/// score, and returns the score to write and judge (`eval enterprise
/// --rerank` re-ranks alerted events with it). It never sees labels.
pub type ScoreHook<'a> = dyn FnMut(&AuthRecord, &Event, &Observed, f64) -> f64 + 'a;

/// [`eval_lanl`] with a [`ScoreHook`] on every scored auth event.
pub fn eval_lanl_with(opts: &LanlOptions, hook: &mut ScoreHook) -> Result<LanlReport, LanlError> {
    let auth_path = find(&opts.dir, "auth.txt").ok_or_else(|| LanlError::Io {
        path: opts.dir.join("auth.txt"),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "auth.txt or auth.txt.gz required",
        ),
    })?;
    let labels: HashSet<RedteamRecord> = read_redteam(&opts.dir)?;
    let mut sides = Vec::new();
    let mut side_files = Vec::new();
    for (name, kind) in [("proc.txt", SideKind::Proc), ("flows.txt", SideKind::Flows)] {
        if let Some(s) = SideStream::open(&opts.dir, name, kind)? {
            sides.push(s);
            side_files.push(name.to_string());
        }
    }
    // "Training uses days 1..N": one full training at the split, no
    // scheduled retrain inside the scored period (hosts first seen later
    // still get their first model when their learning period ends).
    let cfg = DetectorConfig {
        learning_period_ns: (opts.train_days * DAY_S * NS / 2).max(3_600 * NS),
        retrain_interval_ns: u64::MAX,
        ..opts.detector.clone()
    };
    let mut feed = Feed {
        det: Detector::new(cfg),
        registered: HashSet::new(),
    };
    let out = std::fs::File::create(&opts.scores).map_err(|source| LanlError::Io {
        path: opts.scores.clone(),
        source,
    })?;
    let mut csv = BufWriter::with_capacity(1 << 20, out);
    let io_err = |source| LanlError::Io {
        path: opts.scores.clone(),
        source,
    };
    writeln!(csv, "time,user,src,dst,score").map_err(io_err)?;
    let split = opts.train_days * DAY_S;
    let mut trained = false;
    let mut next_tick = 3_600u64;
    let mut seq = Sequencer::default();
    let mut board = Scoreboard::default();
    let mut first = FirstTime::default();
    let mut report = LanlReport {
        auth_lines: 0,
        bad_lines: 0,
        scored: 0,
        labels: labels.len(),
        positives: 0,
        comparison: None,
        side_files,
        graph_edges: 0,
    };
    let mut side_buf: Vec<Event> = Vec::new();
    let mut line = String::new();
    let mut lines = open_lines(&auth_path)?;
    loop {
        line.clear();
        let n = lines.read_line(&mut line).map_err(|source| LanlError::Io {
            path: auth_path.clone(),
            source,
        })?;
        if n == 0 {
            break;
        }
        report.auth_lines += 1;
        let Some(r) = AuthRecord::parse(&line) else {
            report.bad_lines += 1;
            continue;
        };
        while r.time >= next_tick {
            feed.det.tick(next_tick * NS);
            next_tick += 3_600;
        }
        if !trained && r.time > split {
            feed.det.train(split * NS);
            trained = true;
        }
        for s in &mut sides {
            s.drain_until(r.time, &mut seq, &mut side_buf);
        }
        for e in side_buf.drain(..) {
            feed.det.observe(&e);
        }
        feed.register(&r.dst);
        if r.src != "?" {
            feed.register(&r.src);
        }
        let ev = auth_event(&r, &mut seq);
        let obs = feed.det.observe_scored(&ev);
        let base = first.score(&r.src, &r.dst);
        if r.time > split {
            let score = hook(&r, &ev, &obs, obs.score.unwrap_or(0.0));
            writeln!(
                csv,
                "{},{},{},{},{:.4}",
                r.time, r.src_user, r.src, r.dst, score
            )
            .map_err(io_err)?;
            report.scored += 1;
            let label = labels.contains(&RedteamRecord {
                time: r.time,
                user: r.src_user.clone(),
                src: r.src.clone(),
                dst: r.dst.clone(),
            });
            report.positives += u64::from(label);
            board.add(r.time / DAY_S, &r.dst, score, base, label);
        }
    }
    csv.flush().map_err(io_err)?;
    report.graph_edges = feed.det.graph_edges();
    if !labels.is_empty() {
        report.comparison = Some(board.finish());
    }
    Ok(report)
}

/// Writes a generator run in LANL format (`auth.txt`, `redteam.txt`), for
/// tests and for trying `eval lanl` without the real data set.
pub fn write_synth_as_lanl(
    cfg: &vigil_datasets::synth::SynthConfig,
    dir: &Path,
) -> std::io::Result<u64> {
    use vigil_datasets::synth::{Generator, EPOCH_NS};
    use vigil_proto::{AuthMethod, LoginService, Payload};
    let mut g = Generator::new(cfg.clone());
    let names: std::collections::BTreeMap<HostId, (String, std::net::IpAddr)> = g
        .hosts()
        .iter()
        .map(|h| (h.id, (h.name.to_uppercase(), h.addr)))
        .collect();
    let by_addr: std::collections::HashMap<std::net::IpAddr, String> =
        names.values().map(|(n, a)| (*a, n.clone())).collect();
    let mut auth = BufWriter::new(std::fs::File::create(dir.join("auth.txt"))?);
    let mut red = BufWriter::new(std::fs::File::create(dir.join("redteam.txt"))?);
    let mut n = 0;
    for d in 0..cfg.days {
        for le in g.day(d) {
            let (Payload::Login(l) | Payload::AuthFailure(l)) = &le.event.payload else {
                continue;
            };
            let t = (le.event.header.ts_ns - EPOCH_NS) / NS + 1;
            let dst = &names[&le.event.header.host].0;
            let src = l
                .src_addr
                .and_then(|a| by_addr.get(&a).cloned())
                .unwrap_or_else(|| dst.clone());
            let user = format!("{}@DOM1", l.user.to_uppercase());
            let at = if l.method == AuthMethod::Ntlm {
                "NTLM"
            } else {
                "Kerberos"
            };
            let lt = match l.service {
                LoginService::Console => "Interactive",
                LoginService::Rdp => "RemoteInteractive",
                _ => "Network",
            };
            let ok = if matches!(le.event.payload, Payload::Login(_)) {
                "Success"
            } else {
                "Fail"
            };
            writeln!(auth, "{t},{user},{user},{src},{dst},{at},{lt},LogOn,{ok}")?;
            if le.campaign.is_some() {
                writeln!(red, "{t},{user},{src},{dst}")?;
            }
            n += 1;
        }
    }
    auth.flush()?;
    red.flush()?;
    Ok(n)
}
