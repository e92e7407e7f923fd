//! `vigil-eval`: the evaluation CLI (the appliance exposes the same as `vigil eval`).

use anyhow::Result;
use clap::{Parser, Subcommand};
use vigil_datasets::eval::synth::{mean, run_seed};
use vigil_datasets::eval::table;
use vigil_datasets::synth::SynthConfig;
use vigil_models::DetectorConfig;

#[derive(Parser)]
#[command(
    name = "vigil-eval",
    about = "Evaluate Vigil's detector against labelled data"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The synthetic enterprise generator, one run per seed.
    Synth {
        /// Seeds, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        seeds: Vec<u64>,
        /// Days simulated (attacks in the second half).
        #[arg(long, default_value_t = 14)]
        days: u32,
        /// Print a JSON summary as the last line.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Synth { seeds, days, json } => {
            let base = SynthConfig {
                days,
                attack_from_day: days / 2,
                ..SynthConfig::default()
            };
            let det = DetectorConfig::default();
            let mut results = Vec::new();
            for s in seeds {
                let r = run_seed(&base, s, &det);
                println!(
                    "seed {s}: {} campaigns, {} alerted, {:.1} alerts/day, {} incident alerts",
                    r.campaigns, r.campaigns_alerted, r.alerts_per_day, r.incidents
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
    }
    Ok(())
}
