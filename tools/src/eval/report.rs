//! The operating-point report: Vigil's scores (an `eval lanl` scores CSV)
//! beside two rules recomputed from `auth.txt`, judged against
//! `redteam.txt` and, when present, `campaigns.tsv`.
//!
//! Rules, both scored on every auth line in file order, learning as they go
//! (like the detector, they see the training period first):
//!
//! - **first-time** ([`FirstTime`]): 1 the first time src → dst is seen;
//! - **user-aware** ([`UserAware`]): the first-time rule with ties broken
//!   by the user: 2 × [src → dst never seen] + [this user never went from
//!   this source to this destination] + [this user never logged on from
//!   this source]. A new edge always outranks a known one (so the rule is
//!   never worse than first-time at first-time's own operating point), and
//!   among new edges a credential used from a machine it was never used
//!   from (4) outranks a known user reaching a new server (3); on known
//!   edges a new user scores 1–2, known use 0. (Scoring only the
//!   user-and-source novelty ranks every first log-off and local logon of a
//!   user on a server with the attacks; we measured that variant weaker on
//!   the tuning seeds and keep the stronger baseline.)
//!
//! Metrics per method (event level): AP, ROC-AUC, TPR at FPR 0.1 % and 1 %
//! (from `models::eval`), false positives per day per 1,000 hosts at 80 %
//! recall (hosts = distinct computers in `auth.txt`), and recall per
//! campaign style at the global 1 % FPR threshold. Lines `campaigns.tsv`
//! marks `context` (attack traffic that is not a compromise event: spray
//! failures, tickets, log-offs) are neither positives nor negatives.

use super::FirstTime;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use vigil_datasets::lanl::{find, open_lines, read_redteam, AuthRecord, LanlError, RedteamRecord};
use vigil_models::eval::{Metrics, ScoreHistogram};

/// Method names, in table order.
pub const METHODS: [&str; 3] = ["vigil", "first-time", "user-aware"];
/// Style name of labelled events `campaigns.tsv` does not describe.
pub const UNSTYLED: &str = "redteam";
const DAY_S: u64 = 86_400;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading LANL files.
    #[error(transparent)]
    Lanl(#[from] LanlError),
    /// Reading another file.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A malformed line.
    #[error("{file} line {line}: {reason}")]
    Parse {
        /// File.
        file: String,
        /// 1-based line.
        line: u64,
        /// What was wrong.
        reason: String,
    },
    /// The scores CSV does not follow `auth.txt` (another data set?).
    #[error("scores row {row} is {found:?} but auth.txt has {expected:?} there")]
    Misaligned {
        /// 1-based data row of the CSV.
        row: u64,
        /// time,user,src,dst from auth.txt.
        expected: String,
        /// From the CSV.
        found: String,
    },
}

/// The user-aware rule (see the module docs).
#[derive(Debug, Default)]
pub struct UserAware {
    edges: HashSet<(u64, u64)>,
    pairs: HashSet<(u64, u64)>,
    triples: HashSet<(u64, u64, u64)>,
}

impl UserAware {
    /// Scores then learns one logon.
    pub fn score(&mut self, user: &str, src: &str, dst: &str) -> f64 {
        let key = vigil_models::graph::key;
        let (u, s, d) = (key(user), key(src), key(dst));
        let new = [
            self.edges.insert((s, d)),
            self.triples.insert((u, s, d)),
            self.pairs.insert((u, s)),
        ];
        2.0 * f64::from(new[0]) + f64::from(new[1]) + f64::from(new[2])
    }
}

/// What `campaigns.tsv` says about one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignLine {
    /// Style name.
    pub style: String,
    /// `hop` (a compromise event) or not (`context`).
    pub hop: bool,
}

/// Reads `campaigns.tsv` if present (empty when absent).
pub fn read_campaigns(dir: &Path) -> Result<HashMap<RedteamRecord, CampaignLine>, ReportError> {
    let path = dir.join("campaigns.tsv");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(source) => return Err(ReportError::Io { path, source }),
    };
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let time = f.first().and_then(|t| t.parse::<u64>().ok());
        let (Some(time), 7) = (time, f.len()) else {
            return Err(ReportError::Parse {
                file: "campaigns.tsv".into(),
                line: i as u64 + 1,
                reason: format!("expected time,user,src,dst,style,campaign,kind: {line:?}"),
            });
        };
        let key = RedteamRecord {
            time,
            user: f[1].into(),
            src: f[2].into(),
            dst: f[3].into(),
        };
        out.insert(
            key,
            CampaignLine {
                style: f[4].into(),
                hop: f[6] == "hop",
            },
        );
    }
    Ok(out)
}

/// Scores of one method, with what the per-style recall needs.
#[derive(Debug, Default)]
struct Tally {
    hist: ScoreHistogram,
    negatives: BTreeMap<i64, u64>,
    positives: Vec<(i64, String)>,
}

fn quantise(score: f64) -> i64 {
    // the same quantum as models::eval::ScoreHistogram
    (score * 1e4).round() as i64
}

impl Tally {
    fn add(&mut self, score: f64, style: Option<&str>) {
        self.hist.add(score, style.is_some());
        match style {
            Some(s) => self.positives.push((quantise(score), s.to_string())),
            None => *self.negatives.entry(quantise(score)).or_default() += 1,
        }
    }

    /// Lowest score at which FPR ≤ `max_fpr` (ties are one step, as in
    /// `models::eval::tpr_at_fpr`); None if even the top score exceeds it.
    fn cutoff(&self, max_fpr: f64) -> Option<i64> {
        let n: u64 = self.negatives.values().sum();
        let mut scores: Vec<i64> = self.negatives.keys().copied().collect();
        scores.extend(self.positives.iter().map(|p| p.0));
        scores.sort_unstable_by(|a, b| b.cmp(a));
        scores.dedup();
        let mut cut = None;
        for s in scores {
            let fp: u64 = self.negatives.range(s..).map(|(_, c)| c).sum();
            if n == 0 || fp as f64 / n as f64 <= max_fpr {
                cut = Some(s);
            } else {
                break;
            }
        }
        cut
    }

    fn result(&self, days: f64, hosts: usize) -> MethodReport {
        let metrics = self.hist.metrics(days);
        let cut = self.cutoff(0.01);
        let mut by_style: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (s, style) in &self.positives {
            let e = by_style.entry(style.clone()).or_default();
            e.0 += u64::from(cut.is_some_and(|c| *s >= c));
            e.1 += 1;
        }
        MethodReport {
            fp_per_day_per_1k_hosts_at_80_recall: metrics
                .fp_per_day_at_80_recall
                .map(|f| f * 1_000.0 / (hosts.max(1) as f64)),
            recall_at_fpr_1pct: by_style
                .into_iter()
                .map(|(k, (hit, all))| (k, hit as f64 / all as f64))
                .collect(),
            metrics,
        }
    }
}

/// One method's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodReport {
    /// AP, ROC-AUC, TPR at FPR, FP/day at 80 % recall (models::eval).
    pub metrics: Metrics,
    /// False positives per day per 1,000 hosts at 80 % recall.
    pub fp_per_day_per_1k_hosts_at_80_recall: Option<f64>,
    /// Recall per campaign style at the 1 % FPR threshold.
    pub recall_at_fpr_1pct: BTreeMap<String, f64>,
}

/// The report of one data set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Per method, in [`METHODS`] order.
    pub methods: Vec<MethodReport>,
    /// Days in the scored period.
    pub days: f64,
    /// Distinct computers in `auth.txt`.
    pub hosts: usize,
    /// Items scored (context lines excluded).
    pub scored: u64,
    /// Attack context lines left out of the metrics.
    pub excluded: u64,
    /// Positives per style.
    pub positives: BTreeMap<String, u64>,
}

/// Reads the CSV rows of `eval lanl --scores` one at a time.
struct Scores {
    lines: Box<dyn BufRead>,
    path: PathBuf,
    row: u64,
    buf: String,
}

impl Scores {
    fn open(path: &Path) -> Result<Scores, ReportError> {
        let mut s = Scores {
            lines: open_lines(path)?,
            path: path.to_path_buf(),
            row: 0,
            buf: String::new(),
        };
        let header = s.next_line()?;
        if header.as_deref() != Some("time,user,src,dst,score") {
            return Err(ReportError::Parse {
                file: path.display().to_string(),
                line: 1,
                reason: format!("expected the header time,user,src,dst,score, got {header:?}"),
            });
        }
        Ok(s)
    }

    fn next_line(&mut self) -> Result<Option<String>, ReportError> {
        self.buf.clear();
        let n = self
            .lines
            .read_line(&mut self.buf)
            .map_err(|source| ReportError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok((n > 0).then(|| self.buf.trim_end().to_string()))
    }

    /// Next row as (time,user,src,dst text, time, score).
    fn next_row(&mut self) -> Result<Option<(String, u64, f64)>, ReportError> {
        let Some(line) = self.next_line()? else {
            return Ok(None);
        };
        self.row += 1;
        let bad = |reason: &str| ReportError::Parse {
            file: self.path.display().to_string(),
            line: self.row + 1,
            reason: format!("{reason}: {line:?}"),
        };
        let (key, score) = line.rsplit_once(',').ok_or_else(|| bad("no score"))?;
        let score: f64 = score.parse().map_err(|_| bad("bad score"))?;
        let time: u64 = key
            .split(',')
            .next()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad("bad time"))?;
        Ok(Some((key.to_string(), time, score)))
    }
}

/// Computes the report of `dir` (auth.txt, redteam.txt, campaigns.tsv) and
/// the scores CSV that `eval lanl` wrote for it.
pub fn report_dir(dir: &Path, scores: &Path) -> Result<Report, ReportError> {
    let auth_path = find(dir, "auth.txt").ok_or_else(|| ReportError::Io {
        path: dir.join("auth.txt"),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "auth.txt or auth.txt.gz required",
        ),
    })?;
    let redteam = read_redteam(dir)?;
    let campaigns = read_campaigns(dir)?;
    let mut csv = Scores::open(scores)?;
    let mut pending = csv.next_row()?;
    let mut tallies: [Tally; 3] = Default::default();
    let (mut first, mut user_aware) = (FirstTime::default(), UserAware::default());
    let mut hosts: HashSet<String> = HashSet::new();
    let (mut scored, mut excluded) = (0u64, 0u64);
    let mut positives: BTreeMap<String, u64> = BTreeMap::new();
    let (mut first_day, mut last_day) = (u64::MAX, 0u64);
    let mut lines = open_lines(&auth_path)?;
    let mut line = String::new();
    loop {
        line.clear();
        let n = lines
            .read_line(&mut line)
            .map_err(|source| ReportError::Io {
                path: auth_path.clone(),
                source,
            })?;
        if n == 0 {
            break;
        }
        let Some(r) = AuthRecord::parse(&line) else {
            continue;
        };
        for h in [&r.src, &r.dst] {
            if h != "?" && !hosts.contains(h.as_str()) {
                hosts.insert(h.clone());
            }
        }
        let ft = first.score(&r.src, &r.dst);
        let ua = user_aware.score(&r.src_user, &r.src, &r.dst);
        let Some((key, time, vigil)) = pending.take_if(|p| r.time >= p.1) else {
            continue;
        };
        let expected = format!("{},{},{},{}", r.time, r.src_user, r.src, r.dst);
        if key != expected || time != r.time {
            return Err(ReportError::Misaligned {
                row: csv.row,
                expected,
                found: key,
            });
        }
        pending = csv.next_row()?;
        let rec = RedteamRecord {
            time: r.time,
            user: r.src_user,
            src: r.src,
            dst: r.dst,
        };
        let camp = campaigns.get(&rec);
        let style = if redteam.contains(&rec) {
            Some(camp.map_or(UNSTYLED, |c| c.style.as_str()))
        } else if camp.is_some() {
            excluded += 1;
            continue;
        } else {
            None
        };
        if let Some(s) = style {
            *positives.entry(s.to_string()).or_default() += 1;
        }
        for (t, score) in tallies.iter_mut().zip([vigil, ft, ua]) {
            t.add(score, style);
        }
        scored += 1;
        first_day = first_day.min(r.time / DAY_S);
        last_day = last_day.max(r.time / DAY_S);
    }
    if let Some((key, ..)) = pending {
        return Err(ReportError::Misaligned {
            row: csv.row,
            expected: "end of auth.txt".into(),
            found: key,
        });
    }
    let days = if scored == 0 {
        0.0
    } else {
        (last_day - first_day + 1) as f64
    };
    Ok(Report {
        methods: tallies
            .iter()
            .map(|t| t.result(days, hosts.len()))
            .collect(),
        days,
        hosts: hosts.len(),
        scored,
        excluded,
        positives,
    })
}

/// One method's figures, averaged over data sets (seeds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeanMethod {
    /// Average precision.
    pub ap: Option<f64>,
    /// ROC-AUC.
    pub roc_auc: Option<f64>,
    /// TPR at FPR ≤ 0.1 %.
    pub tpr_at_fpr_0_1pct: Option<f64>,
    /// TPR at FPR ≤ 1 %.
    pub tpr_at_fpr_1pct: Option<f64>,
    /// False positives per day per 1,000 hosts at 80 % recall.
    pub fp_per_day_per_1k_hosts_at_80_recall: Option<f64>,
    /// Recall per style at 1 % FPR.
    pub recall_at_fpr_1pct: BTreeMap<String, f64>,
}

fn mean_of(xs: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = xs.flatten().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Mean of each method's figures over `reports` (a metric a data set
/// cannot define, e.g. without positives, is left out of its mean).
pub fn mean(reports: &[Report]) -> Vec<MeanMethod> {
    (0..METHODS.len())
        .map(|m| {
            let each = || reports.iter().map(move |r| &r.methods[m]);
            let styles: BTreeSet<&String> =
                each().flat_map(|r| r.recall_at_fpr_1pct.keys()).collect();
            MeanMethod {
                ap: mean_of(each().map(|r| r.metrics.ap)),
                roc_auc: mean_of(each().map(|r| r.metrics.roc_auc)),
                tpr_at_fpr_0_1pct: mean_of(each().map(|r| r.metrics.tpr_at_fpr_0_1pct)),
                tpr_at_fpr_1pct: mean_of(each().map(|r| r.metrics.tpr_at_fpr_1pct)),
                fp_per_day_per_1k_hosts_at_80_recall: mean_of(
                    each().map(|r| r.fp_per_day_per_1k_hosts_at_80_recall),
                ),
                recall_at_fpr_1pct: styles
                    .into_iter()
                    .filter_map(|s| {
                        mean_of(each().map(|r| r.recall_at_fpr_1pct.get(s).copied()))
                            .map(|v| (s.clone(), v))
                    })
                    .collect(),
            }
        })
        .collect()
}

fn cell(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}"))
}

/// The readable table of the mean over `reports`.
pub fn table(reports: &[Report]) -> String {
    let means = mean(reports);
    let mut s = format!(
        "{:<22} {:>8} {:>8} {:>10} {:>10} {:>22}\n",
        "method", "AP", "ROC-AUC", "TPR@0.1%", "TPR@1%", "FP/day/1k hosts @80%"
    );
    for (name, m) in METHODS.iter().zip(&means) {
        s.push_str(&format!(
            "{:<22} {:>8} {:>8} {:>10} {:>10} {:>22}\n",
            name,
            cell(m.ap, 4),
            cell(m.roc_auc, 4),
            cell(m.tpr_at_fpr_0_1pct, 3),
            cell(m.tpr_at_fpr_1pct, 3),
            cell(m.fp_per_day_per_1k_hosts_at_80_recall, 1),
        ));
    }
    let mut positives: BTreeMap<&String, u64> = BTreeMap::new();
    for r in reports {
        for (k, v) in &r.positives {
            *positives.entry(k).or_default() += v;
        }
    }
    s.push_str(&format!(
        "{:<22} {:>8} {:>10} {:>10} {:>10}\n",
        "recall @ FPR 1%", METHODS[0], METHODS[1], METHODS[2], "positives"
    ));
    for (style, p) in positives {
        let r = |m: &MeanMethod| cell(m.recall_at_fpr_1pct.get(style).copied(), 2);
        s.push_str(&format!(
            "{:<22} {:>8} {:>10} {:>10} {:>10}\n",
            style,
            r(&means[0]),
            r(&means[1]),
            r(&means[2]),
            p
        ));
    }
    s
}

/// The JSON object of the mean over `reports` (`methods` keyed by name).
pub fn json(reports: &[Report]) -> serde_json::Value {
    let means = mean(reports);
    let methods: serde_json::Map<String, serde_json::Value> = METHODS
        .iter()
        .zip(&means)
        .map(|(n, m)| (n.to_string(), serde_json::to_value(m).unwrap_or_default()))
        .collect();
    serde_json::json!({
        "methods": methods,
        "data_sets": reports.len(),
        "scored": reports.iter().map(|r| r.scored).sum::<u64>(),
        "positives": reports.iter().map(|r| r.positives.values().sum::<u64>()).sum::<u64>(),
        "hosts": reports.iter().map(|r| r.hosts).collect::<Vec<_>>(),
        "days": reports.iter().map(|r| r.days).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests;
