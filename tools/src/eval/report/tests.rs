//! The report on a hand-made data set, with figures computed by hand, and
//! its agreement with `models::eval`.

use super::*;
use vigil_models::eval::group_scores;

const AUTH: &str = "\
1,U1@D,U1@D,A,B,Kerberos,Network,LogOn,Success
2,U2@D,U2@D,C,B,Kerberos,Network,LogOn,Success
11,U1@D,U1@D,A,B,Kerberos,Network,LogOn,Success
12,U2@D,U2@D,A,B,NTLM,Network,LogOn,Success
13,U1@D,U1@D,A,C,Kerberos,Network,LogOn,Success
14,U3@D,U3@D,D,D,Kerberos,Interactive,LogOn,Success
15,U3@D,U3@D,D,E,NTLM,Network,LogOn,Fail
86500,U1@D,U1@D,A,B,Kerberos,Network,LogOn,Success
86600,U4@D,U4@D,E,A,NTLM,Network,LogOn,Success
";

/// Vigil's scores for the lines after time 10 (the split).
const SCORES: &str = "\
time,user,src,dst,score
11,U1@D,A,B,0.5000
12,U2@D,A,B,3.0000
13,U1@D,A,C,1.0000
14,U3@D,D,D,2.0000
15,U3@D,D,E,9.0000
86500,U1@D,A,B,0.0000
86600,U4@D,E,A,2.5000
";

const REDTEAM: &str = "12,U2@D,A,B\n86600,U4@D,E,A\n";
const CAMPAIGNS: &str = "time\tuser\tsrc\tdst\tstyle\tcampaign\tkind
12\tU2@D\tA\tB\tx\t0\thop
15\tU3@D\tD\tE\ty\t1\tcontext
86600\tU4@D\tE\tA\ty\t1\thop
";

fn write(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    d
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn hand_computed_report() {
    let d = write(&[
        ("auth.txt", AUTH),
        ("scores.csv", SCORES),
        ("redteam.txt", REDTEAM),
        ("campaigns.tsv", CAMPAIGNS),
    ]);
    let r = report_dir(d.path(), &d.path().join("scores.csv")).unwrap();
    // the context line (time 15) is neither positive nor negative
    assert_eq!((r.scored, r.excluded, r.hosts, r.days), (6, 1, 5, 2.0));
    assert_eq!(r.positives.get("x"), Some(&1));
    assert_eq!(r.positives.get("y"), Some(&1));
    // Vigil: 3.0+ 2.5+ 2.0- 1.0- 0.5- 0.0- → perfect
    let v = &r.methods[0];
    assert!(close(v.metrics.ap, 1.0) && close(v.metrics.roc_auc, 1.0));
    assert!(close(v.metrics.tpr_at_fpr_1pct, 1.0));
    assert!(close(v.fp_per_day_per_1k_hosts_at_80_recall, 0.0));
    assert_eq!(v.recall_at_fpr_1pct.get("x"), Some(&1.0));
    // first-time: 1 for {y+, 13-, 14-}, 0 for {x+, 11-, 86500-}
    // AP = ½·⅓ + ½·2/6 = ⅓; AUC = (2·½ + 2·1½)/8 = ½; at 80 % recall all
    // 4 negatives pass: 4 FP / 2 days / 5 hosts × 1000 = 400
    let f = &r.methods[1];
    assert!(close(f.metrics.ap, 1.0 / 3.0) && close(f.metrics.roc_auc, 0.5));
    assert!(close(f.metrics.tpr_at_fpr_1pct, 0.0));
    assert!(close(f.fp_per_day_per_1k_hosts_at_80_recall, 400.0));
    assert_eq!(f.recall_at_fpr_1pct.get("y"), Some(&0.0));
    // user-aware = 2·new edge + new (user, src, dst) + new (user, src):
    // 4 for {14-, y+}, 3 for 13- (known user, new destination), 2 for x+
    // (known edge, new user on it), 0 for 11- and 86500-.
    // AP = ½·½ + ½·2/4 = ½; AUC = (½ + 1 + 2 + 2)/8 = 0.6875; at 80 %
    // recall 2 FP / 2 days × 200 = 200
    let u = &r.methods[2];
    assert!(close(u.metrics.ap, 0.5) && close(u.metrics.roc_auc, 0.6875));
    assert!(close(u.fp_per_day_per_1k_hosts_at_80_recall, 200.0));
    // the same figures as models::eval on the same items
    let items: [[(f64, bool); 6]; 3] = [
        [
            (0.5, false),
            (3.0, true),
            (1.0, false),
            (2.0, false),
            (0.0, false),
            (2.5, true),
        ],
        [
            (0.0, false),
            (0.0, true),
            (1.0, false),
            (1.0, false),
            (0.0, false),
            (1.0, true),
        ],
        [
            (0.0, false),
            (2.0, true),
            (3.0, false),
            (4.0, false),
            (0.0, false),
            (4.0, true),
        ],
    ];
    for (m, it) in r.methods.iter().zip(items) {
        assert_eq!(m.metrics, Metrics::from_groups(&group_scores(&it), 2.0));
    }
    let text = table(std::slice::from_ref(&r));
    assert!(
        text.contains("user-aware") && text.lines().count() == 7,
        "{text}"
    );
    assert_eq!(
        json(&[r])["methods"]["first-time"]["ap"],
        serde_json::json!(1.0 / 3.0)
    );
}

#[test]
fn without_campaigns_every_label_is_one_style_and_nothing_is_excluded() {
    let d = write(&[
        ("auth.txt", AUTH),
        ("scores.csv", SCORES),
        ("redteam.txt", REDTEAM),
    ]);
    let r = report_dir(d.path(), &d.path().join("scores.csv")).unwrap();
    assert_eq!((r.scored, r.excluded), (7, 0));
    assert_eq!(r.positives.get(UNSTYLED), Some(&2));
}

#[test]
fn scores_of_another_data_set_are_refused() {
    let wrong = SCORES.replace("13,U1@D,A,C", "13,U9@D,A,C");
    let d = write(&[("auth.txt", AUTH), ("scores.csv", &wrong)]);
    let e = report_dir(d.path(), &d.path().join("scores.csv")).unwrap_err();
    assert!(matches!(e, ReportError::Misaligned { row: 3, .. }), "{e}");
}

#[test]
fn per_style_recall_adds_up_to_the_tpr_of_models_eval() {
    // data-driven: a pseudo-random ranking with three styles
    let mut t = Tally::default();
    let mut items = Vec::new();
    for i in 0..2_000u64 {
        let score = ((i * 7_919) % 1_000) as f64 / 10.0;
        let style = (i % 97 == 0).then(|| ["a", "b", "c"][(i % 3) as usize]);
        let score = if style.is_some() { score + 20.0 } else { score };
        t.add(score, style);
        items.push((score, style.is_some()));
    }
    let r = t.result(1.0, 100);
    let p = r.metrics.positives as f64;
    let mut positives: BTreeMap<&str, f64> = BTreeMap::new();
    for (_, s) in &t.positives {
        *positives.entry(s.as_str()).or_default() += 1.0;
    }
    let weighted: f64 = r
        .recall_at_fpr_1pct
        .iter()
        .map(|(s, rec)| rec * positives[s.as_str()] / p)
        .sum();
    let expected = vigil_models::eval::tpr_at_fpr(&group_scores(&items), 0.01).unwrap();
    assert!(
        (weighted - expected).abs() < 1e-9,
        "{weighted} vs {expected}"
    );
    assert!(expected > 0.0 && expected < 1.0);
}
