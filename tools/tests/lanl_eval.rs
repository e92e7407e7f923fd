//! `eval lanl` on a generator run written in LANL format.

use vigil_datasets::synth::SynthConfig;
use vigil_models::DetectorConfig;
use vigil_tools::eval::lanl::{eval_lanl, write_synth_as_lanl, LanlOptions};

fn small() -> SynthConfig {
    SynthConfig {
        seed: 11,
        days: 10,
        attack_from_day: 6,
        workstations: 20,
        windows_servers: 5,
        linux_servers: 3,
        admins: 2,
        campaigns: 4,
        new_hires: 2,
    }
}

fn run(dir: &std::path::Path, out: &std::path::Path) -> vigil_tools::eval::lanl::LanlReport {
    eval_lanl(&LanlOptions {
        dir: dir.to_path_buf(),
        train_days: 6,
        scores: out.to_path_buf(),
        detector: DetectorConfig::default(),
    })
    .expect("eval runs")
}

#[test]
fn labels_never_reach_scoring() {
    let with = tempfile::tempdir().unwrap();
    let n = write_synth_as_lanl(&small(), with.path()).unwrap();
    assert!(n > 1000);
    let without = tempfile::tempdir().unwrap();
    std::fs::copy(
        with.path().join("auth.txt"),
        without.path().join("auth.txt"),
    )
    .unwrap();
    let out_a = with.path().join("scores.csv");
    let out_b = without.path().join("scores.csv");
    let a = run(with.path(), &out_a);
    let b = run(without.path(), &out_b);
    let csv_a = std::fs::read(&out_a).unwrap();
    assert_eq!(
        csv_a,
        std::fs::read(&out_b).unwrap(),
        "scores must not depend on labels"
    );
    assert!(b.comparison.is_none(), "no labels → no metrics");
    let c = a.comparison.expect("labels → metrics");
    assert!(a.positives > 0);
    assert!(c.vigil.event.ap.unwrap() > c.baseline.event.ap.unwrap());
    // contract: header, one row per auth event after the split
    let text = String::from_utf8(csv_a).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("time,user,src,dst,score"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len() as u64, a.scored);
    assert!(rows
        .iter()
        .all(|r| r.split(',').next().unwrap().parse::<u64>().unwrap() > 6 * 86_400));
    assert!(rows[0].split(',').nth(1).unwrap().ends_with("@DOM1"));
}

#[test]
fn gz_input_gives_the_same_scores() {
    use std::io::Write;
    let plain = tempfile::tempdir().unwrap();
    write_synth_as_lanl(&small(), plain.path()).unwrap();
    let gz = tempfile::tempdir().unwrap();
    for f in ["auth.txt", "redteam.txt"] {
        let data = std::fs::read(plain.path().join(f)).unwrap();
        let file = std::fs::File::create(gz.path().join(format!("{f}.gz"))).unwrap();
        let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        enc.write_all(&data).unwrap();
        enc.finish().unwrap();
    }
    let (oa, ob) = (plain.path().join("s.csv"), gz.path().join("s.csv"));
    let a = run(plain.path(), &oa);
    let b = run(gz.path(), &ob);
    assert_eq!(std::fs::read(oa).unwrap(), std::fs::read(ob).unwrap());
    assert_eq!(a.positives, b.positives);
}

/// `eval enterprise`: the independent generator through the `lanl` path.
/// Labels never reach scoring, every campaign's compromise events are
/// positives, attack context is left out, and the per-style recalls add up
/// to the overall TPR at 1 % FPR.
#[test]
fn enterprise_runs_through_the_lanl_path() {
    use vigil_datasets::enterprise::Style;
    use vigil_tools::eval::enterprise::{run_seed, EnterpriseOptions};
    let opts = EnterpriseOptions {
        hosts: 24,
        days: 5,
        train_days: 2,
        styles: Style::ALL.to_vec(),
        campaigns_per_style: 1,
        flows: true,
        detector: DetectorConfig::default(),
    };
    let with = tempfile::tempdir().unwrap();
    let run = run_seed(&opts, 3, with.path()).unwrap();
    assert_eq!(run.written.campaigns, 7);
    assert!(run.written.flow_lines > 0);
    assert_eq!(run.scored.side_files, vec!["flows.txt".to_string()]);
    let r = &run.report;
    assert_eq!(r.positives.values().sum::<u64>(), run.written.redteam_lines);
    assert_eq!(r.positives.len(), 7, "{:?}", r.positives);
    assert!(r.excluded > 0, "spray failures are context");
    for m in &r.methods {
        let p = m.metrics.positives as f64;
        let sum: f64 = m
            .recall_at_fpr_1pct
            .iter()
            .map(|(s, rec)| rec * r.positives[s] as f64 / p)
            .sum();
        assert!((sum - m.metrics.tpr_at_fpr_1pct.unwrap()).abs() < 1e-9);
    }
    let without = tempfile::tempdir().unwrap();
    for f in ["auth.txt", "flows.txt"] {
        std::fs::copy(with.path().join(f), without.path().join(f)).unwrap();
    }
    let out = without.path().join("scores.csv");
    eval_lanl(&LanlOptions {
        dir: without.path().to_path_buf(),
        train_days: 2,
        scores: out.clone(),
        detector: DetectorConfig::default(),
    })
    .unwrap();
    assert_eq!(
        std::fs::read(with.path().join("scores.csv")).unwrap(),
        std::fs::read(out).unwrap(),
        "scores must not depend on labels"
    );
}
