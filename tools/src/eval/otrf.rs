//! `eval otrf FILE... --labels TSV`: each capture through the detector.
//!
//! How the baseline is learned for short captures: a capture lasts minutes
//! and has no benign history, so every host starts *active with a cold-start
//! model*: the fleet graph is empty, each relation carries a Beta prior of
//! `prior_mass` pseudo-observations "nothing new" (a first-ever hop costs
//! ln(1 + prior_mass) nats per relation), hop thresholds are the cold-start
//! threshold, and the graph keeps learning online during the capture (a
//! pair alerts at most once per hour). Window models need ≥ 12 windows and
//! stay off. Labels are read only after the run, to judge it.

use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use vigil_datasets::otrf::{host_id, short_name, TimedRecord};
use vigil_datasets::windows::{own_addrs, payload};
use vigil_models::{Alert, Detector, DetectorConfig};
use vigil_proto::{Event, EventHeader, HostId};

/// One labelled host: a name and/or an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelHost {
    /// Host name (`None` for `unknown(…)`).
    pub name: Option<String>,
    /// Address, when given.
    pub addr: Option<IpAddr>,
}

/// One row of the labels TSV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptureLabel {
    /// File name (no folder).
    pub file: String,
    /// Labelled technique column.
    pub technique: String,
    /// Source hosts.
    pub sources: Vec<LabelHost>,
    /// Target hosts.
    pub targets: Vec<LabelHost>,
}

fn parse_hosts(s: &str) -> Vec<LabelHost> {
    s.split(';')
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            let x = x.trim();
            let (name, addr) = match x.split_once('(') {
                Some((n, rest)) => (n, rest.trim_end_matches(')').parse().ok()),
                None => (x, None),
            };
            LabelHost {
                name: (!name.is_empty() && name != "unknown").then(|| name.to_string()),
                addr,
            }
        })
        .collect()
}

/// Reads the labels TSV (columns by header name: `file`, `technique_id`,
/// `source_hosts`, `target_hosts`).
pub fn read_labels(text: &str) -> Vec<CaptureLabel> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let cols: Vec<&str> = header.split('\t').collect();
    let col = |n: &str| cols.iter().position(|c| *c == n);
    let (Some(f), Some(s), Some(t)) = (col("file"), col("source_hosts"), col("target_hosts"))
    else {
        return Vec::new();
    };
    let tech = col("technique_id");
    lines
        .filter_map(|l| {
            let v: Vec<&str> = l.split('\t').collect();
            Some(CaptureLabel {
                file: Path::new(v.get(f)?)
                    .file_name()?
                    .to_string_lossy()
                    .into_owned(),
                technique: tech.and_then(|i| v.get(i)).unwrap_or(&"").to_string(),
                sources: parse_hosts(v.get(s)?),
                targets: parse_hosts(v.get(t)?),
            })
        })
        .collect()
}

/// Outcome of one capture.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureResult {
    /// File name.
    pub file: String,
    /// An alert names a labelled source and a labelled target.
    pub detected: bool,
    /// Alerts raised (hop, incident, window).
    pub alerts: usize,
    /// Techniques of the detecting alerts.
    pub techniques: Vec<String>,
    /// Labelled targets named together with a source.
    pub targets_named: usize,
    /// Labelled targets.
    pub targets: usize,
    /// Events fed to the detector.
    pub events: usize,
    /// Titles of the detecting alerts.
    pub detecting: Vec<String>,
    /// Hosts seen in the capture.
    pub hosts: Vec<String>,
}

/// Runs one capture through a cold-start detector; returns all alerts.
pub fn run_capture(records: &[TimedRecord], cfg: &DetectorConfig) -> (Detector, Vec<Alert>, usize) {
    let mut det = Detector::new(DetectorConfig {
        learning_period_ns: 0,
        ..cfg.clone()
    });
    let mut addrs: BTreeMap<String, (String, Vec<IpAddr>)> = BTreeMap::new();
    for r in records {
        let e = addrs
            .entry(short_name(&r.hostname))
            .or_insert_with(|| (r.hostname.clone(), Vec::new()));
        if r.hostname.contains('.') {
            e.0 = r.hostname.clone();
        }
        for a in own_addrs(&r.record) {
            if !e.1.contains(&a) {
                e.1.push(a);
            }
        }
    }
    for (s, (full, ips)) in &addrs {
        det.register_host(host_id(s), full, ips);
    }
    let t0 = records.first().map(|r| r.ts_ns).unwrap_or(0);
    det.train(t0.saturating_sub(1));
    let mut seqs: BTreeMap<HostId, u64> = BTreeMap::new();
    let mut alerts = Vec::new();
    let mut events = 0;
    let mut next_tick = t0 + 60_000_000_000;
    for r in records {
        let Some(p) = payload(&r.record) else {
            continue;
        };
        while r.ts_ns >= next_tick {
            alerts.extend(det.tick(next_tick));
            next_tick += 60_000_000_000;
        }
        let host = host_id(&r.hostname);
        let seq = seqs.entry(host).or_insert(0);
        *seq += 1;
        let ev = Event {
            header: EventHeader {
                host,
                seq: *seq,
                ts_ns: r.ts_ns,
            },
            payload: p,
        };
        events += 1;
        alerts.extend(det.observe(&ev));
    }
    alerts.extend(det.tick(next_tick + 3_600_000_000_000));
    (det, alerts, events)
}

fn resolve(det: &Detector, h: &LabelHost) -> Option<HostId> {
    h.name
        .as_deref()
        .and_then(|n| det.host_by_name(n))
        .or_else(|| h.addr.and_then(|a| det.host_by_addr(a)))
}

/// Judges a run against its label.
pub fn judge(
    file: &str,
    det: &Detector,
    alerts: &[Alert],
    events: usize,
    label: Option<&CaptureLabel>,
) -> CaptureResult {
    let srcs: Vec<HostId> = label
        .map(|l| l.sources.iter().filter_map(|h| resolve(det, h)).collect())
        .unwrap_or_default();
    let tgts: Vec<Option<HostId>> = label
        .map(|l| l.targets.iter().map(|h| resolve(det, h)).collect())
        .unwrap_or_default();
    let mut techniques = Vec::new();
    let mut detecting = Vec::new();
    let mut targets_named = 0;
    for t in tgts.iter().flatten() {
        let hits: Vec<&Alert> = alerts
            .iter()
            .filter(|a| srcs.iter().any(|s| a.names_hosts(*s, *t)))
            .collect();
        if !hits.is_empty() {
            targets_named += 1;
        }
        for a in hits {
            for tech in &a.techniques {
                if !techniques.contains(tech) {
                    techniques.push(tech.clone());
                }
            }
            if !detecting.contains(&a.title) {
                detecting.push(a.title.clone());
            }
        }
    }
    if label.is_none() {
        // unlabelled (e.g. EVTX samples): report what every hop or incident said
        for a in alerts {
            for tech in &a.techniques {
                if !techniques.contains(tech) {
                    techniques.push(tech.clone());
                }
            }
            if !detecting.contains(&a.title) {
                detecting.push(a.title.clone());
            }
        }
    }
    techniques.sort();
    let mut hosts: Vec<String> = det.model_status().into_iter().map(|s| s.hostname).collect();
    hosts.sort();
    CaptureResult {
        file: file.to_string(),
        detected: targets_named > 0,
        alerts: alerts.len(),
        techniques,
        targets_named,
        targets: tgts.len(),
        events,
        detecting,
        hosts,
    }
}
