//! `eval synth`: the generator through the detector, several seeds.

use super::{Comparison, FirstTime, Scoreboard};
use serde::Serialize;
use vigil_datasets::synth::{Generator, SynthConfig, EPOCH_NS};
use vigil_models::{AlertKind, Detector, DetectorConfig};
use vigil_proto::{HostId, Payload};

const DAY: u64 = 86_400_000_000_000;
const HOUR: u64 = 3_600_000_000_000;

/// Result of one seed.
#[derive(Debug, Clone, Serialize)]
pub struct SeedResult {
    /// Seed.
    pub seed: u64,
    /// Metrics.
    pub comparison: Comparison,
    /// Campaigns injected.
    pub campaigns: usize,
    /// Campaigns with at least one alert naming two consecutive hosts of their path.
    pub campaigns_alerted: usize,
    /// Alerts (hop, incident updates, spray, trace, Sigma) per day in the
    /// scored period.
    pub alerts_per_day: f64,
    /// Incident alerts raised (including updates of a growing chain).
    pub incidents: usize,
    /// Hop alerts raised.
    pub hop_alerts: usize,
}

/// Runs one seed.
pub fn run_seed(base: &SynthConfig, seed: u64, det_cfg: &DetectorConfig) -> SeedResult {
    let cfg = SynthConfig {
        seed,
        ..base.clone()
    };
    let mut gen = Generator::new(cfg.clone());
    let mut det = Detector::new(DetectorConfig {
        learning_period_ns: u64::from(cfg.attack_from_day) * DAY - HOUR,
        ..det_cfg.clone()
    });
    for h in gen.hosts() {
        det.register_host(h.id, &h.name, &[h.addr]);
    }
    let names: std::collections::BTreeMap<HostId, String> =
        gen.hosts().iter().map(|h| (h.id, h.name.clone())).collect();
    let test_from = EPOCH_NS + u64::from(cfg.attack_from_day) * DAY;
    let mut board = Scoreboard::default();
    let mut first = FirstTime::default();
    let mut next_tick = EPOCH_NS + HOUR;
    let mut alerts = Vec::new();
    let mut labels_in_test = Vec::new();
    for d in 0..cfg.days {
        for le in gen.day(d) {
            let ev = &le.event;
            while ev.header.ts_ns >= next_tick {
                let a = det.tick(next_tick);
                if next_tick >= test_from {
                    alerts.extend(a);
                }
                next_tick += HOUR;
            }
            let obs = det.observe_scored(ev);
            if ev.header.ts_ns >= test_from {
                alerts.extend(obs.alerts);
            }
            let (Payload::Login(l) | Payload::AuthFailure(l)) = &ev.payload else {
                continue;
            };
            let src = l
                .src_addr
                .map(|a| a.to_string())
                .or_else(|| l.src_host.clone())
                .unwrap_or_else(|| names[&ev.header.host].clone());
            let dst = &names[&ev.header.host];
            let base = first.score(&src, dst);
            if ev.header.ts_ns >= test_from {
                let day = (ev.header.ts_ns - EPOCH_NS) / DAY;
                // labels are collected apart and joined after scoring
                labels_in_test.push(le.campaign.is_some());
                board.add(
                    day,
                    dst,
                    obs.score.unwrap_or(0.0),
                    base,
                    le.campaign.is_some(),
                );
            }
        }
    }
    let campaigns = gen.campaigns().to_vec();
    let campaigns_alerted = campaigns
        .iter()
        .filter(|c| {
            alerts
                .iter()
                .any(|a| c.path.windows(2).any(|w| a.names_hosts(w[0], w[1])))
        })
        .count();
    let comparison = board.finish();
    SeedResult {
        seed,
        alerts_per_day: alerts.len() as f64 / comparison.days.max(1.0),
        incidents: alerts
            .iter()
            .filter(|a| a.kind == AlertKind::Incident)
            .count(),
        hop_alerts: alerts.iter().filter(|a| a.kind == AlertKind::Hop).count(),
        comparison,
        campaigns: campaigns.len(),
        campaigns_alerted,
    }
}

/// Mean of an optional metric over seeds.
pub fn mean(results: &[SeedResult], get: impl Fn(&Comparison) -> Option<f64>) -> Option<f64> {
    let v: Vec<f64> = results.iter().filter_map(|r| get(&r.comparison)).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}
