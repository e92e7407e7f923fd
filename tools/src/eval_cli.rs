//! The evaluation command line behind `vigil eval` (binary `vigil-eval`;
//! the appliance's `vigil eval` execs it, so both honour exactly the same
//! contracts).

use crate::eval::enterprise::{self as ent, EnterpriseOptions};
use crate::eval::json_summary;
use crate::eval::lanl::{eval_lanl, write_synth_as_lanl, LanlOptions};
use crate::eval::otrf::{judge, read_labels, run_capture, CaptureResult};
use crate::eval::report::{self, report_dir};
use crate::eval::synth::{mean, run_seed};
use crate::eval::table;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use vigil_datasets::enterprise::{
    Style, HELD_OUT_SEEDS, HELD_OUT_STYLES, TUNING_SEEDS, TUNING_STYLES,
};
use vigil_datasets::synth::SynthConfig;
use vigil_models::DetectorConfig;

#[derive(Parser)]
#[command(
    name = "vigil eval",
    about = "Evaluate Vigil's detector against labelled data"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// OTRF Security-Datasets capture zips (or .evtx files), each through
    /// a cold-start detector.
    Otrf {
        /// Capture files (.zip with JSON lines, or .evtx).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Labels TSV (columns file, source_hosts, target_hosts…).
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Override the cold-start hop threshold (nats), for tuning on dev data.
        #[arg(long)]
        cold_threshold: Option<f64>,
        /// Print a JSON summary as the last line.
        #[arg(long)]
        json: bool,
    },
    /// Write a generator run in LANL format (auth.txt, redteam.txt) to DIR.
    WriteLanl {
        /// Output folder (created).
        dir: PathBuf,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Days.
        #[arg(long, default_value_t = 14)]
        days: u32,
        /// Workstations in the simulated fleet.
        #[arg(long, default_value_t = 60)]
        workstations: usize,
    },
    /// LANL 2015 format: auth.txt[.gz] (required), proc/flows (optional),
    /// redteam.txt[.gz] (labels, for metrics only).
    Lanl {
        /// Folder holding the files.
        dir: PathBuf,
        /// Days 1..=N are training; later auth events are scored.
        #[arg(long)]
        train_days: u64,
        /// CSV of scores: time,user,src,dst,score.
        #[arg(long)]
        scores: PathBuf,
        /// Print a JSON summary as the last line.
        #[arg(long)]
        json: bool,
    },
    /// The independent enterprise generator (LANL format), one run per
    /// seed through the `lanl` path, reported by operating point beside
    /// the first-time and user-aware rules.
    Enterprise {
        /// Seeds, comma-separated (default 1,2,3; with --holdout 101,102,103).
        #[arg(long, value_delimiter = ',')]
        seeds: Option<Vec<u64>>,
        /// Hosts present from the start.
        #[arg(long, default_value_t = 60)]
        hosts: usize,
        /// Days generated.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Days 1..=N train the detector; campaigns start after them.
        #[arg(long, default_value_t = 3)]
        train_days: u32,
        /// Campaign styles, comma-separated (default: the tuning styles;
        /// with --holdout the held-out ones).
        #[arg(long, value_delimiter = ',')]
        styles: Option<Vec<String>>,
        /// The held-out set: held-out styles and seeds 101,102,103.
        #[arg(long)]
        holdout: bool,
        /// Campaigns per style.
        #[arg(long, default_value_t = 2)]
        campaigns: usize,
        /// Scoring signals to switch off, comma-separated (an ablation):
        /// edge, user, host, chain, traces, fanout, spray, hour, failures.
        #[arg(long, value_delimiter = ',')]
        ablate: Vec<String>,
        /// Also generate and use flows.txt.
        #[arg(long)]
        flows: bool,
        /// Keep the data sets and scores here (seed-N/); default a temp dir
        /// that is removed.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print a JSON summary as the last line.
        #[arg(long)]
        json: bool,
        /// Learn from simulated analyst verdicts: fit the re-ranker on the
        /// tuning styles and seeds, then report Vigil and Vigil + re-ranker
        /// on the held-out set (the default set with this flag).
        #[arg(long)]
        rerank: bool,
    },
    /// The `enterprise` report for an existing `lanl` run: DIR holds
    /// auth.txt, redteam.txt (and campaigns.tsv if any), CSV its scores.
    Report {
        /// Folder of the LANL-format data set.
        dir: PathBuf,
        /// The scores CSV `vigil eval lanl` wrote for it.
        #[arg(long)]
        scores: PathBuf,
        /// Print a JSON summary as the last line.
        #[arg(long)]
        json: bool,
    },
    /// The synthetic enterprise generator, one run per seed.
    Synth {
        /// Seeds, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        seeds: Vec<u64>,
        /// Days simulated (attacks in the second half).
        #[arg(long, default_value_t = 14)]
        days: u32,
        /// Scoring signals to switch off, comma-separated (see `enterprise`).
        #[arg(long, value_delimiter = ',')]
        ablate: Vec<String>,
        /// Print a JSON summary as the last line.
        #[arg(long)]
        json: bool,
    },
}

/// Parse `args` (the first one is the program name) and run the evaluation.
pub fn run<I, T>(args: I) -> Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    match cli.cmd {
        Cmd::Otrf {
            files,
            labels,
            json,
            cold_threshold,
        } => {
            let mut cfg = DetectorConfig::default();
            if let Some(t) = cold_threshold {
                cfg.cold_start_hop_threshold = t;
            }
            otrf(&files, labels.as_deref(), json, &cfg)
        }
        Cmd::WriteLanl {
            dir,
            seed,
            days,
            workstations,
        } => write_lanl(&dir, seed, days, workstations),
        Cmd::Lanl {
            dir,
            train_days,
            scores,
            json,
        } => lanl(dir, train_days, scores, json),
        Cmd::Enterprise {
            seeds,
            hosts,
            days,
            train_days,
            styles,
            holdout,
            campaigns,
            ablate,
            flows,
            out,
            json,
            rerank,
        } => {
            let holdout = holdout || rerank;
            let styles = parse_styles(styles, holdout)?;
            let seeds = seeds.unwrap_or_else(|| {
                if holdout {
                    HELD_OUT_SEEDS.to_vec()
                } else {
                    TUNING_SEEDS.to_vec()
                }
            });
            let opts = EnterpriseOptions {
                hosts,
                days,
                train_days,
                styles,
                campaigns_per_style: campaigns,
                flows,
                detector: ablated_config(&ablate)?,
            };
            if rerank {
                return rerank_cli(&opts, &seeds, out.as_deref(), json);
            }
            enterprise(&opts, &seeds, out.as_deref(), holdout, json)
        }
        Cmd::Report { dir, scores, json } => {
            let r = report_dir(&dir, &scores).with_context(|| {
                format!("reporting {} with {}", dir.display(), scores.display())
            })?;
            println!(
                "{} events scored over {:.1} days on {} hosts ({} attack context lines left out)",
                r.scored, r.days, r.hosts, r.excluded
            );
            let all = [r];
            print!("{}", report::table(&all));
            if json {
                println!("{}", report::json(&all));
            }
            Ok(())
        }
        Cmd::Synth {
            seeds,
            days,
            ablate,
            json,
        } => {
            synth(&seeds, days, &ablated_config(&ablate)?, json);
            Ok(())
        }
    }
}

fn parse_styles(names: Option<Vec<String>>, holdout: bool) -> Result<Vec<Style>> {
    let Some(names) = names else {
        return Ok(if holdout {
            HELD_OUT_STYLES.to_vec()
        } else {
            TUNING_STYLES.to_vec()
        });
    };
    names
        .iter()
        .map(|n| {
            Style::parse(n).with_context(|| {
                let known: Vec<&str> = Style::ALL.iter().map(|s| s.name()).collect();
                format!("unknown style {n:?}; known: {}", known.join(", "))
            })
        })
        .collect()
}

fn enterprise(
    opts: &EnterpriseOptions,
    seeds: &[u64],
    out: Option<&std::path::Path>,
    holdout: bool,
    json: bool,
) -> Result<()> {
    let names: Vec<&str> = opts.styles.iter().map(|s| s.name()).collect();
    println!(
        "independent enterprise: {} hosts, {} days, training days 1..={}, styles [{}], {} campaign(s) per style, seeds {:?}",
        opts.hosts, opts.days, opts.train_days, names.join(", "), opts.campaigns_per_style, seeds
    );
    let mut reports = Vec::new();
    for &seed in seeds {
        let started = std::time::Instant::now();
        let dir = ent::seed_dir(out, seed);
        let run = ent::run_seed(opts, seed, &dir)
            .with_context(|| format!("seed {seed} in {}", dir.display()));
        if out.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let run = run?;
        println!(
            "seed {seed}: {} auth lines, {} hosts, {} campaigns, {} red-team events; scored {} events ({} context lines left out) in {:.1}s",
            run.written.auth_lines,
            run.written.hosts,
            run.written.campaigns,
            run.written.redteam_lines,
            run.report.scored,
            run.report.excluded,
            started.elapsed().as_secs_f64()
        );
        reports.push(run.report);
    }
    println!("mean over {} seed(s):", reports.len());
    print!("{}", report::table(&reports));
    if json {
        let mut j = report::json(&reports);
        j["seeds"] = serde_json::json!(seeds);
        j["styles"] = serde_json::json!(names);
        j["holdout"] = serde_json::json!(holdout);
        println!("{j}");
    }
    Ok(())
}

fn rerank_cli(
    held: &EnterpriseOptions,
    seeds: &[u64],
    out: Option<&std::path::Path>,
    json: bool,
) -> Result<()> {
    use crate::eval::rerank;
    let tuning = EnterpriseOptions {
        styles: TUNING_STYLES.to_vec(),
        ..held.clone()
    };
    println!(
        "re-ranker: verdicts simulated on the tuning styles (seeds {TUNING_SEEDS:?}), reported on seeds {seeds:?}"
    );
    let run = rerank::run(&tuning, &TUNING_SEEDS, held, seeds, out, &mut |l| {
        println!("{l}")
    })
    .context("re-ranker evaluation")?;
    println!(
        "verdicts: {} true, {} false positive; leave-one-seed-out on tuning (skipped folds: {}):",
        run.verdicts.0, run.verdicts.1, run.choice.skipped_folds
    );
    for (w, ap, tpr) in &run.choice.table {
        let c = |x: &Option<f64>| x.map_or("n/a".into(), |v| format!("{v:.4}"));
        println!("  w = {w:<5} AP {}  TPR@1% {}", c(ap), c(tpr));
    }
    match &run.reranker {
        Some(r) => {
            let mut ws: Vec<(&str, f64)> = r.weights().collect();
            ws.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
            let top: Vec<String> = ws
                .iter()
                .take(6)
                .map(|(n, w)| format!("{n} {w:+.2}"))
                .collect();
            println!(
                "chosen w = {}; re-ranker {} (largest weights: {})",
                run.choice.weight,
                r.version_tag(),
                top.join(", ")
            );
        }
        None => println!("too few verdicts of a class: no re-ranker, identity ranking"),
    }
    println!("held-out, mean over {} seed(s):", run.base.len());
    print!("{}", rerank::table(&run));
    if json {
        println!("{}", rerank::json(&run));
    }
    Ok(())
}

fn write_lanl(dir: &std::path::Path, seed: u64, days: u32, workstations: usize) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cfg = SynthConfig {
        seed,
        days,
        attack_from_day: days / 2,
        workstations,
        windows_servers: (workstations / 6).clamp(10, 250),
        linux_servers: (workstations / 10).clamp(6, 250),
        admins: (workstations / 15).clamp(4, 100),
        ..SynthConfig::default()
    };
    let n = write_synth_as_lanl(&cfg, dir).with_context(|| format!("writing {}", dir.display()))?;
    println!(
        "wrote {n} auth lines to {}/auth.txt (attacks after day {})",
        dir.display(),
        days / 2
    );
    Ok(())
}

fn lanl(dir: PathBuf, train_days: u64, scores: PathBuf, json: bool) -> Result<()> {
    let started = std::time::Instant::now();
    let opts = LanlOptions {
        dir: dir.clone(),
        train_days,
        scores: scores.clone(),
        detector: DetectorConfig::default(),
    };
    let r = eval_lanl(&opts).with_context(|| format!("evaluating {}", dir.display()))?;
    println!(
        "read {} auth lines ({} unparsable), side files: [{}]; scored {} events after day {} into {} in {:.1}s; fleet graph {} edges",
        r.auth_lines,
        r.bad_lines,
        r.side_files.join(", "),
        r.scored,
        train_days,
        scores.display(),
        started.elapsed().as_secs_f64(),
        r.graph_edges
    );
    match &r.comparison {
        Some(c) => {
            println!(
                "labels: {} red-team records, {} matched scored events ({:.1} days scored)",
                r.labels, r.positives, c.days
            );
            print!("{}", table(c));
            if json {
                println!("{}", json_summary(c));
            }
        }
        None => {
            println!(
                "no labels (redteam.txt absent or empty): scores written; metrics need labels"
            );
            if json {
                let empty = serde_json::json!({"ap": null, "roc_auc": null, "fp_per_day_at_80_recall": null});
                let out =
                    serde_json::json!({"vigil": empty.clone(), "baseline": empty, "labels": false});
                println!("{out}");
            }
        }
    }
    Ok(())
}

/// The detector configuration `--ablate` asks for; says so when it is not
/// the default (without `--ablate` the output is unchanged).
fn ablated_config(names: &[String]) -> Result<DetectorConfig> {
    let cfg = crate::eval::ablated(names)?;
    if !names.is_empty() {
        println!("ablation: signals off: {}", names.join(", "));
    }
    Ok(cfg)
}

fn synth(seeds: &[u64], days: u32, det: &DetectorConfig, json: bool) {
    let base = SynthConfig {
        days,
        attack_from_day: days / 2,
        ..SynthConfig::default()
    };
    let mut results = Vec::new();
    for &s in seeds {
        let r = run_seed(&base, s, det);
        // "0 window": window alerts were removed in session 8; the line
        // keeps its shape for the tools that parse it.
        println!(
            "seed {s}: {} campaigns, {} alerted by a hop/incident alert naming two consecutive hosts; {:.1} alerts/day ({} hop, 0 window, {} incident alerts)",
            r.campaigns, r.campaigns_alerted, r.alerts_per_day, r.hop_alerts, r.incidents
        );
        print!("{}", table(&r.comparison));
        results.push(r);
    }
    let v_ap = mean(&results, |c| c.vigil.event.ap);
    let b_ap = mean(&results, |c| c.baseline.event.ap);
    println!("mean AP vigil {:?} baseline {:?}", v_ap, b_ap);
    if json {
        let j = serde_json::json!({
            "vigil": {"ap": v_ap, "roc_auc": mean(&results, |c| c.vigil.event.roc_auc), "fp_per_day_at_80_recall": mean(&results, |c| c.vigil.event.fp_per_day_at_80_recall)},
            "baseline": {"ap": b_ap, "roc_auc": mean(&results, |c| c.baseline.event.roc_auc), "fp_per_day_at_80_recall": mean(&results, |c| c.baseline.event.fp_per_day_at_80_recall)},
        });
        println!("{j}");
    }
}

fn otrf(
    files: &[PathBuf],
    labels: Option<&std::path::Path>,
    json: bool,
    cfg: &DetectorConfig,
) -> Result<()> {
    let labels = match labels {
        Some(p) => read_labels(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        ),
        None => Vec::new(),
    };
    println!("baseline for short captures: no benign history exists, so every host starts active with a cold-start model — an empty fleet graph with a Beta prior of {} pseudo-observations per relation, hop threshold {} nats — and the graph learns online during the capture. Labels are read only to judge each run.", cfg.prior_mass, cfg.cold_start_hop_threshold);
    let mut results: Vec<CaptureResult> = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let records = if name.ends_with(".evtx") {
            vigil_datasets::evtx_file::read_evtx(f)
        } else {
            vigil_datasets::otrf::read_capture(f)
        }
        .with_context(|| format!("reading {}", f.display()))?;
        let (det, alerts, events) = run_capture(&records, cfg);
        let label = labels.iter().find(|l| l.file == name);
        let r = judge(&name, &det, &alerts, events, label);
        println!(
            "{:<70} {:<8} alerts {:>3}  targets named {}/{}  events {:>6}  techniques [{}]{}",
            name,
            if label.is_none() {
                "unlabelled"
            } else if r.detected {
                "DETECTED"
            } else {
                "missed"
            },
            r.alerts,
            r.targets_named,
            r.targets,
            r.events,
            r.techniques.join(","),
            r.detecting
                .first()
                .map(|t| format!("  e.g. {t}"))
                .unwrap_or_default()
        );
        results.push(r);
    }
    let detected = results.iter().filter(|r| r.detected).count();
    println!("detected {detected}/{} captures", results.len());
    if json {
        let caps: Vec<serde_json::Value> = results
            .iter()
            .map(|r| serde_json::json!({"file": r.file, "detected": r.detected, "alerts": r.alerts, "techniques": r.techniques}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"total": results.len(), "detected": detected, "captures": caps})
        );
    }
    Ok(())
}
