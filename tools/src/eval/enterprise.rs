//! `eval enterprise`: generate an independent enterprise per seed
//! (`vigil_datasets::enterprise`), score it with exactly the `eval lanl`
//! path ([`eval_lanl`]), and report it by operating point ([`report_dir`])
//! beside the first-time and user-aware rules.
//!
//! The split between tuning and reporting is fixed here so nobody moves it
//! after seeing results: tune on `TUNING_STYLES` (fan-out, edge-reuse,
//! service-account-abuse) with seeds 1–3; report on `HELD_OUT_STYLES`
//! (slow-chain, pth-off-hours, spray-then-hop, no-history) with seeds
//! 101–103 (`--holdout`). The detector's learning period comes from
//! `--train-days`, never from where an attack starts.

use super::lanl::{eval_lanl, LanlOptions, LanlReport};
use super::report::{report_dir, Report, ReportError};
use std::path::{Path, PathBuf};
use vigil_datasets::enterprise::{
    write_dir, EnterpriseConfig, EnterpriseError, Style, WriteSummary,
};
use vigil_datasets::lanl::LanlError;
use vigil_models::DetectorConfig;

/// Why an enterprise evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum EnterpriseEvalError {
    /// Generating or writing the data set.
    #[error(transparent)]
    Generate(#[from] EnterpriseError),
    /// Scoring it.
    #[error(transparent)]
    Score(#[from] LanlError),
    /// Reporting it.
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// What to generate and how to score it.
#[derive(Debug, Clone)]
pub struct EnterpriseOptions {
    /// Hosts present from the start.
    pub hosts: usize,
    /// Days generated.
    pub days: u32,
    /// Training days (the detector's and the campaigns' split).
    pub train_days: u32,
    /// Styles injected.
    pub styles: Vec<Style>,
    /// Campaigns per style.
    pub campaigns_per_style: usize,
    /// Write and use `flows.txt`.
    pub flows: bool,
    /// Detector configuration (as `eval lanl` uses it).
    pub detector: DetectorConfig,
}

/// One seed's run.
#[derive(Debug, Clone)]
pub struct SeedRun {
    /// Seed.
    pub seed: u64,
    /// What the generator wrote.
    pub written: WriteSummary,
    /// What `eval lanl` did.
    pub scored: LanlReport,
    /// The operating-point report.
    pub report: Report,
}

impl EnterpriseOptions {
    /// The generator's configuration for `seed` under these options (one
    /// definition for the scored runs and the re-ranker's runs).
    pub fn generator_config(&self, seed: u64) -> EnterpriseConfig {
        EnterpriseConfig {
            seed,
            hosts: self.hosts,
            days: self.days,
            train_days: self.train_days,
            styles: self.styles.clone(),
            campaigns_per_style: self.campaigns_per_style,
            flows: self.flows,
            ..EnterpriseConfig::default()
        }
    }
}

/// Generates seed `seed` into `dir`, scores it into `dir/scores.csv`, and
/// reports it.
pub fn run_seed(
    opts: &EnterpriseOptions,
    seed: u64,
    dir: &Path,
) -> Result<SeedRun, EnterpriseEvalError> {
    let cfg = opts.generator_config(seed);
    let written = write_dir(&cfg, dir)?;
    let scores = dir.join("scores.csv");
    let scored = eval_lanl(&LanlOptions {
        dir: dir.to_path_buf(),
        train_days: u64::from(opts.train_days),
        scores: scores.clone(),
        detector: opts.detector.clone(),
    })?;
    let report = report_dir(dir, &scores)?;
    Ok(SeedRun {
        seed,
        written,
        scored,
        report,
    })
}

/// Folder of one seed: `out/seed-N`, or a fresh folder under the system
/// temp dir (removed by the caller) when no `out` was given.
pub fn seed_dir(out: Option<&Path>, seed: u64) -> PathBuf {
    match out {
        Some(o) => o.join(format!("seed-{seed}")),
        None => std::env::temp_dir().join(format!(
            "vigil-eval-enterprise-{}-seed-{seed}",
            std::process::id()
        )),
    }
}
