//! `bench-detect`: scoring throughput, training time and model size per
//! host on a generator run. Last line: one JSON object.

use std::time::Instant;
use vigil_datasets::synth::{Generator, SynthConfig};
use vigil_models::{Detector, DetectorConfig};
use vigil_proto::Event;

const DAY: u64 = 86_400_000_000_000;

fn main() {
    let cfg = SynthConfig {
        seed: 42,
        days: 14,
        attack_from_day: 7,
        workstations: 200,
        windows_servers: 20,
        linux_servers: 10,
        admins: 6,
        campaigns: 6,
        new_hires: 6,
    };
    let mut gen = Generator::new(cfg.clone());
    let gen_start = Instant::now();
    let events: Vec<Event> = (0..cfg.days)
        .flat_map(|d| gen.day(d))
        .map(|le| le.event)
        .collect();
    let gen_s = gen_start.elapsed().as_secs_f64();
    let mut det = Detector::new(DetectorConfig {
        learning_period_ns: 6 * DAY,
        ..DetectorConfig::default()
    });
    for h in gen.hosts() {
        det.register_host(h.id, &h.name, &[h.addr]);
    }
    let split =
        events.partition_point(|e| e.header.ts_ns < vigil_datasets::synth::EPOCH_NS + 7 * DAY);
    let t = Instant::now();
    let mut alerts = 0usize;
    for e in &events[..split] {
        alerts += det.observe(e).len();
    }
    let learn_s = t.elapsed().as_secs_f64();
    let train_at = events[split].header.ts_ns;
    let t = Instant::now();
    det.train(train_at);
    let train_ms = t.elapsed().as_secs_f64() * 1e3;
    let status = det.model_status();
    let trained: Vec<_> = status.iter().filter(|s| s.version.is_some()).collect();
    let train_ms_per_host = train_ms / trained.len().max(1) as f64;
    let t = Instant::now();
    for e in &events[split..] {
        alerts += det.observe(e).len();
    }
    let score_s = t.elapsed().as_secs_f64();
    let scored = events.len() - split;
    let eps = scored as f64 / score_s.max(1e-9);
    let model_bytes: Vec<usize> = trained.iter().map(|s| s.model_bytes).collect();
    let mean_model = model_bytes.iter().sum::<usize>() as f64 / model_bytes.len().max(1) as f64;
    let max_model = model_bytes.iter().copied().max().unwrap_or(0);
    let state_bytes: Vec<usize> = trained
        .iter()
        .map(|s| det.host_state_bytes(s.host))
        .collect();
    let mean_state = state_bytes.iter().sum::<usize>() as f64 / state_bytes.len().max(1) as f64;
    let max_state = state_bytes.iter().copied().max().unwrap_or(0);
    let snap = det.snapshot().map(|b| b.len()).unwrap_or(0);
    println!("bench detect: generator seed 42, {} hosts, {} events over {} days (generated in {gen_s:.1}s)", gen.hosts().len(), events.len(), cfg.days);
    println!("{:<44} {:>14}", "metric", "value");
    println!(
        "{:<44} {:>14.0}",
        "learning-phase events/s (days 1-7)",
        split as f64 / learn_s.max(1e-9)
    );
    println!(
        "{:<44} {:>14.0}",
        "scoring events/s (days 8-14, active)", eps
    );
    println!("{:<44} {:>14.2}", "train ms per host", train_ms_per_host);
    println!("{:<44} {:>14}", "hosts trained", trained.len());
    println!("{:<44} {:>14.0}", "model bytes per host (mean)", mean_model);
    println!("{:<44} {:>14}", "model bytes per host (max)", max_model);
    println!(
        "{:<44} {:>14.0}",
        "full host state bytes (mean)", mean_state
    );
    println!("{:<44} {:>14}", "full host state bytes (max)", max_state);
    println!("{:<44} {:>14}", "detector snapshot bytes", snap);
    println!("{:<44} {:>14}", "alerts raised", alerts);
    println!(
        "{}",
        serde_json::json!({
            "bench": "detect",
            "score_events_per_s": eps.round(),
            "train_ms_per_host": (train_ms_per_host * 1000.0).round() / 1000.0,
            "model_bytes_per_host": mean_model.round(),
            "model_bytes_per_host_max": max_model,
            "host_state_bytes_max": max_state,
        })
    );
}
