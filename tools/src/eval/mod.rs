//! Evaluation driver: runs data sets through the real [`Detector`] and
//! reports metrics next to the "first time src → dst" baseline.
//!
//! Labels are read only after scoring, by [`Scoreboard::finish`]: the
//! scoring path never sees them (see the `labels_never_reach_scoring` test).

use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use vigil_models::eval::{Metrics, ScoreHistogram};
use vigil_models::{DetectorConfig, Signals};

/// `--ablate` named a signal the detector does not have.
#[derive(Debug, thiserror::Error)]
#[error("unknown signal {0:?} for --ablate (known: {known}, or host=W with W from 0 to 1)", known = Signals::NAMES.join(", "))]
pub struct UnknownSignal(pub String);

/// The default detector configuration with the named scoring signals
/// switched off (`--ablate edge,chain`); no names, the defaults unchanged.
/// `host=W` (W from 0 to 1) keeps the host relations on and sets their
/// weight in logon hops (`DetectorConfig::host_relation_weight`) instead.
pub fn ablated(names: &[String]) -> Result<DetectorConfig, UnknownSignal> {
    let mut cfg = DetectorConfig::default();
    for n in names {
        if let Some(w) = n.trim().strip_prefix("host=") {
            cfg.host_relation_weight = w
                .parse::<f64>()
                .ok()
                .filter(|w| (0.0..=1.0).contains(w))
                .ok_or_else(|| UnknownSignal(n.clone()))?;
            continue;
        }
        let on = cfg
            .signals
            .switch(n.trim())
            .ok_or_else(|| UnknownSignal(n.clone()))?;
        *on = false;
    }
    Ok(cfg)
}

/// Metrics of one method at event and host-day level.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct MethodResult {
    /// Per auth event.
    pub event: Metrics,
    /// Per (destination host, day), score = max over the day.
    pub host_day: Metrics,
}

/// Vigil and the baseline side by side.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Comparison {
    /// Vigil.
    pub vigil: MethodResult,
    /// First-time src → dst.
    pub baseline: MethodResult,
    /// Days in the scored period.
    pub days: f64,
}

/// The first-time baseline: 1 the first time src → dst is seen, else 0.
#[derive(Debug, Default)]
pub struct FirstTime {
    seen: HashSet<(u64, u64)>,
}

impl FirstTime {
    /// Scores then learns one src → dst.
    pub fn score(&mut self, src: &str, dst: &str) -> f64 {
        let k = (vigil_models::graph::key(src), vigil_models::graph::key(dst));
        if self.seen.insert(k) {
            1.0
        } else {
            0.0
        }
    }
}

/// Collects scores of both methods; labels join at the end.
#[derive(Debug, Default)]
pub struct Scoreboard {
    vigil: ScoreHistogram,
    baseline: ScoreHistogram,
    host_day: BTreeMap<(u64, u64), (f64, f64, bool)>,
    first_day: Option<u64>,
    last_day: Option<u64>,
}

impl Scoreboard {
    /// Adds one scored auth event.
    pub fn add(&mut self, day: u64, dst: &str, vigil: f64, baseline: f64, label: bool) {
        self.vigil.add(vigil, label);
        self.baseline.add(baseline, label);
        let e = self
            .host_day
            .entry((day, vigil_models::graph::key(dst)))
            .or_insert((f64::NEG_INFINITY, f64::NEG_INFINITY, false));
        e.0 = e.0.max(vigil);
        e.1 = e.1.max(baseline);
        e.2 |= label;
        self.first_day = Some(self.first_day.map_or(day, |d| d.min(day)));
        self.last_day = Some(self.last_day.map_or(day, |d| d.max(day)));
    }

    /// Days covered.
    pub fn days(&self) -> f64 {
        match (self.first_day, self.last_day) {
            (Some(a), Some(b)) => (b - a + 1) as f64,
            _ => 0.0,
        }
    }

    /// Computes both methods' metrics.
    pub fn finish(&self) -> Comparison {
        let days = self.days();
        let mut hv = ScoreHistogram::default();
        let mut hb = ScoreHistogram::default();
        for (v, b, l) in self.host_day.values() {
            hv.add(*v, *l);
            hb.add(*b, *l);
        }
        Comparison {
            vigil: MethodResult {
                event: self.vigil.metrics(days),
                host_day: hv.metrics(days),
            },
            baseline: MethodResult {
                event: self.baseline.metrics(days),
                host_day: hb.metrics(days),
            },
            days,
        }
    }
}

fn f(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "n/a".into())
}

type MetricGetter = fn(&Metrics) -> Option<f64>;

/// Human table of a comparison.
pub fn table(c: &Comparison) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:<26} {:>12} {:>12} {:>12} {:>12}\n",
        "metric", "vigil", "first-time", "vigil h-day", "first h-day"
    ));
    let rows: [(&str, MetricGetter); 5] = [
        ("average precision", |m| m.ap),
        ("ROC-AUC", |m| m.roc_auc),
        ("TPR @ FPR 0.1%", |m| m.tpr_at_fpr_0_1pct),
        ("TPR @ FPR 1%", |m| m.tpr_at_fpr_1pct),
        ("FP/day @ 80% recall", |m| m.fp_per_day_at_80_recall),
    ];
    for (name, get) in rows {
        s.push_str(&format!(
            "{:<26} {:>12} {:>12} {:>12} {:>12}\n",
            name,
            f(get(&c.vigil.event)),
            f(get(&c.baseline.event)),
            f(get(&c.vigil.host_day)),
            f(get(&c.baseline.host_day)),
        ));
    }
    s.push_str(&format!(
        "{:<26} {:>12} {:>12} {:>12} {:>12}\n",
        "items (positives)",
        format!("{}({})", c.vigil.event.n, c.vigil.event.positives),
        "",
        format!("{}({})", c.vigil.host_day.n, c.vigil.host_day.positives),
        ""
    ));
    s
}

/// The `--json` summary object of a comparison.
pub fn json_summary(c: &Comparison) -> serde_json::Value {
    let m = |r: &MethodResult| {
        serde_json::json!({
            "ap": r.event.ap,
            "roc_auc": r.event.roc_auc,
            "fp_per_day_at_80_recall": r.event.fp_per_day_at_80_recall,
            "tpr_at_fpr_0_1pct": r.event.tpr_at_fpr_0_1pct,
            "tpr_at_fpr_1pct": r.event.tpr_at_fpr_1pct,
            "host_day": {
                "ap": r.host_day.ap,
                "roc_auc": r.host_day.roc_auc,
                "fp_per_day_at_80_recall": r.host_day.fp_per_day_at_80_recall,
            }
        })
    };
    serde_json::json!({"vigil": m(&c.vigil), "baseline": m(&c.baseline)})
}

pub mod enterprise;
pub mod lanl;
pub mod otrf;
pub mod report;
pub mod rerank;
pub mod synth;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ablate_switches_off_named_signals_only() {
        assert_eq!(ablated(&[]).unwrap(), DetectorConfig::default());
        let cfg = ablated(&["edge".into(), " chain".into()]).unwrap();
        assert!(!cfg.signals.edge && !cfg.signals.chain);
        assert!(cfg.signals.user && cfg.signals.failures);
        let cfg = ablated(&["host=0.25".into()]).unwrap();
        assert!(cfg.signals.host && cfg.host_relation_weight == 0.25);
        assert!(ablated(&["host=2".into()]).is_err());
        let err = ablated(&["windows".into()]).unwrap_err().to_string();
        assert!(
            err.contains("\"windows\"") && err.contains("fanout"),
            "{err}"
        );
    }
}
