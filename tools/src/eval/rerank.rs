//! `eval enterprise --rerank`: does learning from analysts' verdicts help
//! on campaign styles the verdicts never saw?
//!
//! 1. Each TUNING seed (tuning styles) runs through the `eval lanl` path;
//!    every alert raised on a scored event gets a simulated verdict: true
//!    positive when its evidence holds a red-team event, else false
//!    positive (labels are read after the run, never by the detector).
//! 2. How the re-ranker's log-odds join the detector's score — `score + w ·
//!    logit` on the events that raised an alert, the others unchanged — is
//!    chosen on tuning data only: leave one tuning seed out, fit on the
//!    other seeds' verdicts, take the `w` of [`WEIGHTS`] with the best mean
//!    average precision on the left-out seed (ties: the smaller `w`).
//! 3. A re-ranker fitted on every tuning verdict re-ranks the HELD-OUT
//!    seeds (held-out styles); both Vigil and Vigil + re-ranker are
//!    reported by operating point beside the two rules.

use super::enterprise::{seed_dir, EnterpriseEvalError, EnterpriseOptions};
use super::lanl::{eval_lanl_with, LanlOptions};
use super::report::{mean, report_dir, MeanMethod, Report, ReportError};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use vigil_datasets::enterprise::write_dir;
use vigil_datasets::lanl::{read_redteam, RedteamRecord};
use vigil_models::rerank::{combine, Features, Reranker};
use vigil_proto::HostId;

/// Weights of the re-ranker's log-odds tried on the tuning seeds (0 is
/// the detector alone).
pub const WEIGHTS: [f64; 7] = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0];

/// One scored auth event.
#[derive(Debug, Clone)]
struct Row {
    /// `time,user,src,dst` as `eval lanl` writes it.
    key: String,
    /// The detector's score.
    score: f64,
    /// Explanations of the alerts this event raised.
    alerts: Vec<Features>,
}

/// One seed's data set, scores and simulated verdicts.
#[derive(Debug)]
pub struct SeedData {
    /// Seed.
    pub seed: u64,
    dir: PathBuf,
    rows: Vec<Row>,
    /// (explanation, analysts would confirm) of every alert raised.
    pub verdicts: Vec<(Features, bool)>,
}

/// Generates `seed` into `dir` and runs it, keeping what re-ranking needs.
pub fn collect_seed(
    opts: &EnterpriseOptions,
    seed: u64,
    dir: &Path,
) -> Result<SeedData, EnterpriseEvalError> {
    let cfg = opts.generator_config(seed);
    write_dir(&cfg, dir)?;
    let mut rows = Vec::new();
    let mut events: HashMap<(HostId, u64), RedteamRecord> = HashMap::new();
    let mut raised: Vec<(Features, Vec<(HostId, u64)>)> = Vec::new();
    eval_lanl_with(
        &LanlOptions {
            dir: dir.to_path_buf(),
            train_days: u64::from(opts.train_days),
            scores: dir.join("scores.csv"),
            detector: opts.detector.clone(),
        },
        &mut |r, ev, obs, score| {
            let record = RedteamRecord {
                time: r.time,
                user: r.src_user.clone(),
                src: r.src.clone(),
                dst: r.dst.clone(),
            };
            events.insert((ev.header.host, ev.header.seq), record);
            let alerts: Vec<Features> = obs.alerts.iter().map(Features::from_alert).collect();
            for (a, f) in obs.alerts.iter().zip(&alerts) {
                raised.push((*f, a.evidence.clone()));
            }
            rows.push(Row {
                key: format!("{},{},{},{}", r.time, r.src_user, r.src, r.dst),
                score,
                alerts,
            });
            score
        },
    )?;
    // Labels join only now, as an analyst's verdict would, after the fact.
    let labels = read_redteam(dir)?;
    let verdicts = raised
        .into_iter()
        .map(|(f, evidence)| {
            let tp = evidence
                .iter()
                .any(|id| events.get(id).is_some_and(|r| labels.contains(r)));
            (f, tp)
        })
        .collect();
    Ok(SeedData {
        seed,
        dir: dir.to_path_buf(),
        rows,
        verdicts,
    })
}

/// Writes `seed`'s scores re-ranked by `rr` with weight `w` (identity
/// without a re-ranker) and reports them.
pub fn report_reranked(
    data: &SeedData,
    rr: Option<&Reranker>,
    w: f64,
) -> Result<Report, ReportError> {
    let path = data.dir.join(format!("scores-rerank-{w}.csv"));
    let io = |source| ReportError::Io {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::create(&path).map_err(io)?;
    let mut csv = std::io::BufWriter::new(file);
    writeln!(csv, "time,user,src,dst,score").map_err(io)?;
    for r in &data.rows {
        let logit = rr.and_then(|m| {
            r.alerts
                .iter()
                .map(|f| m.logit(f))
                .max_by(|a, b| a.total_cmp(b))
        });
        let s = logit.map_or(r.score, |l| combine(r.score, l, w));
        writeln!(csv, "{},{s:.4}", r.key).map_err(io)?;
    }
    csv.flush().map_err(io)?;
    drop(csv);
    let report = report_dir(&data.dir, &path);
    let _ = std::fs::remove_file(&path);
    report
}

/// Mean AP and TPR@1 % of each weight over leave-one-seed-out folds.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightChoice {
    /// The chosen weight.
    pub weight: f64,
    /// (weight, mean AP, mean TPR@1 %) over the folds that could fit.
    pub table: Vec<(f64, Option<f64>, Option<f64>)>,
    /// Folds whose training seeds had too few verdicts of a class.
    pub skipped_folds: usize,
}

/// Chooses the weight on tuning data only (leave one seed out).
pub fn choose_weight(tuning: &[SeedData]) -> Result<WeightChoice, ReportError> {
    let mut per_w: BTreeMap<usize, Vec<Report>> = BTreeMap::new();
    let mut skipped = 0;
    for (i, held) in tuning.iter().enumerate() {
        let train: Vec<(Features, bool)> = tuning
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, d)| d.verdicts.iter().copied())
            .collect();
        let Ok(rr) = Reranker::fit(&train) else {
            skipped += 1;
            continue;
        };
        for (k, w) in WEIGHTS.iter().enumerate() {
            per_w
                .entry(k)
                .or_default()
                .push(report_reranked(held, Some(&rr), *w)?);
        }
    }
    let table: Vec<(f64, Option<f64>, Option<f64>)> = per_w
        .iter()
        .map(|(k, reports)| {
            let m = &mean(reports)[0];
            (WEIGHTS[*k], m.ap, m.tpr_at_fpr_1pct)
        })
        .collect();
    let mut weight = 0.0;
    let mut best = f64::NEG_INFINITY;
    for (w, ap, _) in &table {
        if let Some(ap) = ap {
            if *ap > best + 1e-9 {
                best = *ap;
                weight = *w;
            }
        }
    }
    Ok(WeightChoice {
        weight,
        table,
        skipped_folds: skipped,
    })
}

/// What `--rerank` measured.
#[derive(Debug)]
pub struct RerankRun {
    /// The weight chosen on tuning data and how each did.
    pub choice: WeightChoice,
    /// The re-ranker fitted on every tuning verdict (None: too few).
    pub reranker: Option<Reranker>,
    /// Held-out reports of the detector alone (methods: vigil, rules).
    pub base: Vec<Report>,
    /// Held-out reports re-ranked (method 0 is Vigil + re-ranker).
    pub reranked: Vec<Report>,
    /// Verdicts simulated on the tuning seeds: (true, false) positives.
    pub verdicts: (usize, usize),
}

/// Runs tuning seeds, chooses the weight, fits, and reports held-out seeds.
pub fn run(
    tuning_opts: &EnterpriseOptions,
    tuning_seeds: &[u64],
    held_opts: &EnterpriseOptions,
    held_seeds: &[u64],
    out: Option<&Path>,
    progress: &mut dyn FnMut(&str),
) -> Result<RerankRun, EnterpriseEvalError> {
    let mut dirs = Vec::new();
    let result = (|| {
        let mut tuning = Vec::new();
        for &s in tuning_seeds {
            let dir = seed_dir(out, s);
            dirs.push(dir.clone());
            let d = collect_seed(tuning_opts, s, &dir)?;
            let tp = d.verdicts.iter().filter(|v| v.1).count();
            progress(&format!(
                "tuning seed {s}: {} alerts on scored events, {tp} would be confirmed",
                d.verdicts.len()
            ));
            tuning.push(d);
        }
        let choice = choose_weight(&tuning)?;
        let all: Vec<(Features, bool)> = tuning
            .iter()
            .flat_map(|d| d.verdicts.iter().copied())
            .collect();
        let tp = all.iter().filter(|v| v.1).count();
        let reranker = Reranker::fit(&all).ok();
        let mut base = Vec::new();
        let mut reranked = Vec::new();
        for &s in held_seeds {
            let dir = seed_dir(out, s);
            dirs.push(dir.clone());
            let d = collect_seed(held_opts, s, &dir)?;
            base.push(report_reranked(&d, None, 0.0)?);
            reranked.push(report_reranked(&d, reranker.as_ref(), choice.weight)?);
            progress(&format!(
                "held-out seed {s}: {} scored events",
                d.rows.len()
            ));
        }
        Ok(RerankRun {
            choice,
            reranker,
            base,
            reranked,
            verdicts: (tp, all.len() - tp),
        })
    })();
    if out.is_none() {
        for d in dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    result
}

fn cell(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}"))
}

/// The held-out methods in table order: Vigil, Vigil + re-ranker, rules.
pub fn methods(run: &RerankRun) -> Vec<(&'static str, MeanMethod)> {
    let base = mean(&run.base);
    let rr = mean(&run.reranked);
    let mut it = base.into_iter();
    let vigil = it.next();
    let mut v = Vec::new();
    if let Some(m) = vigil {
        v.push(("vigil", m));
    }
    if let Some(m) = rr.into_iter().next() {
        v.push(("vigil+rerank", m));
    }
    for (name, m) in ["first-time", "user-aware"].into_iter().zip(it) {
        v.push((name, m));
    }
    v
}

/// The readable held-out table (mean over seeds) with per-style recall.
pub fn table(run: &RerankRun) -> String {
    let ms = methods(run);
    let mut s = format!(
        "{:<14} {:>8} {:>8} {:>10} {:>10} {:>22}\n",
        "method", "AP", "ROC-AUC", "TPR@0.1%", "TPR@1%", "FP/day/1k hosts @80%"
    );
    for (name, m) in &ms {
        s.push_str(&format!(
            "{:<14} {:>8} {:>8} {:>10} {:>10} {:>22}\n",
            name,
            cell(m.ap, 4),
            cell(m.roc_auc, 4),
            cell(m.tpr_at_fpr_0_1pct, 3),
            cell(m.tpr_at_fpr_1pct, 3),
            cell(m.fp_per_day_per_1k_hosts_at_80_recall, 1),
        ));
    }
    let styles: Vec<&String> = ms
        .first()
        .map(|(_, m)| m.recall_at_fpr_1pct.keys().collect())
        .unwrap_or_default();
    s.push_str(&format!("{:<14}", "recall @1%"));
    for (name, _) in &ms {
        s.push_str(&format!(" {name:>13}"));
    }
    s.push('\n');
    for st in styles {
        s.push_str(&format!("{st:<14}"));
        for (_, m) in &ms {
            s.push_str(&format!(
                " {:>13}",
                cell(m.recall_at_fpr_1pct.get(st).copied(), 2)
            ));
        }
        s.push('\n');
    }
    s
}

/// The JSON object of a run (the last line of `--json`).
pub fn json(run: &RerankRun) -> serde_json::Value {
    let methods: serde_json::Map<String, serde_json::Value> = methods(run)
        .into_iter()
        .map(|(n, m)| (n.to_string(), serde_json::to_value(m).unwrap_or_default()))
        .collect();
    serde_json::json!({
        "methods": methods,
        "weight": run.choice.weight,
        "weights_tried": run.choice.table.iter().map(|(w, ap, tpr)| serde_json::json!({"w": w, "ap": ap, "tpr_at_fpr_1pct": tpr})).collect::<Vec<_>>(),
        "skipped_folds": run.choice.skipped_folds,
        "verdicts": {"true_positive": run.verdicts.0, "false_positive": run.verdicts.1},
        "reranker": run.reranker.as_ref().map(|r| r.version_tag()),
    })
}
