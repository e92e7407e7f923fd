//! The generator's contract: deterministic, structurally realistic, each
//! style has its shape, and nothing in `auth.txt` gives an attack away.

use super::fleet::{Fleet, Kind, SITE_OFFSETS};
use super::*;
use std::collections::{BTreeMap, HashMap, HashSet};

fn small(seed: u64, styles: &[Style]) -> EnterpriseConfig {
    EnterpriseConfig {
        seed,
        hosts: 30,
        days: 7,
        train_days: 3,
        styles: styles.to_vec(),
        campaigns_per_style: 1,
        flows: false,
        start_weekday: 3,
    }
}

fn benign(e: &Enterprise) -> Vec<AuthLine> {
    e.records
        .iter()
        .filter(|r| r.label.is_none())
        .map(|r| r.line)
        .collect()
}

fn user_logons(lines: &[AuthLine]) -> impl Iterator<Item = &AuthLine> {
    lines.iter().filter(|l| {
        matches!(l.src_user, Principal::User(_)) && l.ok && l.orient == Orientation::LogOn
    })
}

#[test]
fn deterministic_per_seed_and_benign_independent_of_styles() {
    let a = generate(&small(5, &Style::ALL)).unwrap();
    let b = generate(&small(5, &Style::ALL)).unwrap();
    assert_eq!(a.records, b.records);
    let c = generate(&small(6, &Style::ALL)).unwrap();
    assert_ne!(a.records, c.records);
    let none = generate(&small(5, &[])).unwrap();
    assert_eq!(
        benign(&a),
        benign(&none),
        "styles must not change benign traffic"
    );
    assert!(a
        .records
        .windows(2)
        .all(|w| w[0].line.time <= w[1].line.time));
}

#[test]
fn invalid_configs_name_every_problem() {
    let cfg = EnterpriseConfig {
        hosts: 5,
        train_days: 9,
        ..EnterpriseConfig::default()
    };
    let msg = cfg.validate().unwrap_err().to_string();
    assert!(
        msg.contains("hosts = 5") && msg.contains("train_days = 9"),
        "{msg}"
    );
}

#[test]
fn benign_structure_is_there() {
    let e = generate(&small(2, &[])).unwrap();
    let cfg = &e.config;
    let lines = benign(&e);
    // users who log on from several machines
    let mut srcs: HashMap<Principal, HashSet<u32>> = HashMap::new();
    for l in user_logons(&lines) {
        srcs.entry(l.src_user).or_default().insert(l.src);
    }
    assert!(srcs.values().filter(|s| s.len() >= 2).count() >= 3);
    // benign two-hop chains: A → J by RDP, then J → S by the same user within 10 min
    let rdp: Vec<&AuthLine> = user_logons(&lines)
        .filter(|l| l.logon == LogonType::RemoteInteractive && l.src != l.dst)
        .collect();
    let chains = rdp
        .iter()
        .filter(|a| {
            user_logons(&lines).any(|b| {
                b.src_user == a.src_user
                    && b.src == a.dst
                    && b.dst != a.dst
                    && b.time > a.time
                    && b.time - a.time <= 600
            })
        })
        .count();
    assert!(chains >= 5, "two-hop chains: {chains}");
    // failures, local logons, machine accounts, tickets
    assert!(lines.iter().filter(|l| !l.ok).count() > 20);
    assert!(user_logons(&lines).any(|l| l.src == l.dst && l.logon == LogonType::Interactive));
    assert!(lines
        .iter()
        .any(|l| matches!(l.src_user, Principal::Machine(_)) && l.src == l.dst));
    for o in [Orientation::Tgt, Orientation::Tgs, Orientation::LogOff] {
        assert!(lines.iter().any(|l| l.orient == o), "{o:?}");
    }
    // new hosts and new users appear after the training period
    let mut first: HashMap<u32, u64> = HashMap::new();
    let mut first_user: HashMap<Principal, u64> = HashMap::new();
    for l in &lines {
        first.entry(l.src).or_insert(l.time);
        first.entry(l.dst).or_insert(l.time);
        first_user.entry(l.src_user).or_insert(l.time);
    }
    assert!(first.values().filter(|&&t| t > cfg.split()).count() >= 3);
    assert!(first_user
        .iter()
        .any(|(p, &t)| matches!(p, Principal::User(_)) && t > cfg.split()));
    // weekends are quieter (day 0 is a Thursday: days 2 and 3 are the weekend)
    let mut per_day: BTreeMap<u64, usize> = BTreeMap::new();
    let people = |l: &&AuthLine| l.logon != LogonType::Network && l.logon != LogonType::Service;
    for l in user_logons(&lines).filter(people) {
        *per_day.entry(l.time / DAY_S).or_default() += 1;
    }
    let on = |d: u64| per_day.get(&d).copied().unwrap_or(0) as f64;
    let weekend = (on(2) + on(3)) / 2.0;
    let weekdays = (on(0) + on(1) + on(4)) / 3.0;
    assert!(
        weekend < 0.5 * weekdays,
        "weekend {weekend} weekdays {weekdays}"
    );
    // a scanner, a backup server: single sources reaching most hosts
    let mut dsts: HashMap<u32, HashSet<u32>> = HashMap::new();
    for l in user_logons(&lines).filter(|l| l.time < DAY_S) {
        dsts.entry(l.src).or_default().insert(l.dst);
    }
    let hosts = first.len();
    assert!(
        dsts.values().any(|d| d.len() * 10 >= hosts * 8),
        "a host reaching 80 % of {hosts}"
    );
}

/// Hops of one style's campaigns, in time order.
fn hops(e: &Enterprise, style: Style) -> BTreeMap<u32, Vec<AuthLine>> {
    let mut out: BTreeMap<u32, Vec<AuthLine>> = BTreeMap::new();
    for r in &e.records {
        if let Some(l) = r
            .label
            .filter(|l| l.style == style && l.kind == LabelKind::Hop)
        {
            out.entry(l.campaign).or_default().push(r.line);
        }
    }
    out
}

type Shape = fn(&Enterprise, &[AuthLine]) -> Result<(), String>;

fn fan_out(_: &Enterprise, h: &[AuthLine]) -> Result<(), String> {
    let dsts: HashSet<u32> = h.iter().map(|l| l.dst).collect();
    let one_src = h.iter().all(|l| l.src == h[0].src);
    let span = h.last().unwrap().time - h[0].time;
    (one_src && dsts.len() >= 4 && span <= 3_600)
        .then_some(())
        .ok_or(format!("src one {one_src}, {} dsts, {span}s", dsts.len()))
}

fn slow_chain(_: &Enterprise, h: &[AuthLine]) -> Result<(), String> {
    let ok = h.len() >= 3
        && h.windows(2)
            .all(|w| w[1].src == w[0].dst && w[1].time - w[0].time >= 2 * 3_600);
    ok.then_some(()).ok_or(format!("{h:?}"))
}

fn edge_reuse(e: &Enterprise, h: &[AuthLine]) -> Result<(), String> {
    let trained: HashSet<(u32, u32)> = benign(e)
        .iter()
        .filter(|l| l.time <= e.config.split() && matches!(l.src_user, Principal::User(_)))
        .map(|l| (l.src, l.dst))
        .collect();
    let ok = h.len() >= 2 && h.iter().all(|l| trained.contains(&(l.src, l.dst)));
    ok.then_some(()).ok_or(format!("{h:?}"))
}

fn site_of(e: &Enterprise) -> HashMap<u32, usize> {
    let fleet = Fleet::new(
        &e.config,
        &mut rand::SeedableRng::seed_from_u64(e.config.seed),
    );
    fleet.hosts.iter().map(|h| (h.num, h.site)).collect()
}

fn pth_off_hours(e: &Enterprise, h: &[AuthLine]) -> Result<(), String> {
    let site = site_of(e);
    for l in h {
        let local = l.time as i64 + SITE_OFFSETS[site[&l.src]] * 3_600;
        let hour = local.rem_euclid(86_400) / 3_600;
        let weekday = (e.config.start_weekday as i64 + local.div_euclid(86_400)) % 7;
        let off = (1..6).contains(&hour) || weekday >= 5;
        if l.auth != AuthType::Ntlm || !off {
            return Err(format!("{l:?} local hour {hour} weekday {weekday}"));
        }
    }
    (h.len() >= 2)
        .then_some(())
        .ok_or("fewer than 2 hops".into())
}

fn service_account_abuse(e: &Enterprise, h: &[AuthLine]) -> Result<(), String> {
    let fleet = Fleet::new(
        &e.config,
        &mut rand::SeedableRng::seed_from_u64(e.config.seed),
    );
    let svc: HashSet<u32> = fleet
        .users
        .iter()
        .filter(|u| u.kind == Kind::Service)
        .map(|u| u.num)
        .collect();
    let trained: HashSet<(Principal, u32, u32)> = benign(e)
        .iter()
        .filter(|l| l.time <= e.config.split())
        .map(|l| (l.src_user, l.src, l.dst))
        .collect();
    let all_svc = h
        .iter()
        .all(|l| matches!(l.src_user, Principal::User(u) if svc.contains(&u)));
    let novel = h
        .iter()
        .any(|l| !trained.contains(&(l.src_user, l.src, l.dst)));
    (all_svc && novel).then_some(()).ok_or(format!("{h:?}"))
}

fn spray_then_hop(e: &Enterprise, h: &[AuthLine]) -> Result<(), String> {
    let fails: Vec<&AuthLine> = e
        .records
        .iter()
        .filter(|r| r.label.is_some_and(|l| l.style == Style::SprayThenHop) && !r.line.ok)
        .map(|r| &r.line)
        .filter(|l| l.src == h[0].src && l.time < h[0].time)
        .collect();
    let users: HashSet<Principal> = fails.iter().map(|l| l.src_user).collect();
    let hosts: HashSet<u32> = fails.iter().map(|l| l.dst).collect();
    let ok = users.len() >= 2 && hosts.len() >= 8 && h.len() == 2 && h[1].src == h[0].dst;
    ok.then_some(()).ok_or(format!(
        "{} users, {} hosts, {h:?}",
        users.len(),
        hosts.len()
    ))
}

fn no_history(e: &Enterprise, h: &[AuthLine]) -> Result<(), String> {
    let src = h[0].src;
    let seen_benign = benign(e).iter().any(|l| l.src == src || l.dst == src);
    let first = e
        .records
        .iter()
        .find(|r| r.line.src == src || r.line.dst == src)
        .unwrap();
    (!seen_benign && first.line.time > e.config.split())
        .then_some(())
        .ok_or(format!("benign {seen_benign} first {}", first.line.time))
}

#[test]
fn every_style_has_its_shape() {
    let cases: [(Style, Shape); 7] = [
        (Style::FanOut, fan_out),
        (Style::SlowChain, slow_chain),
        (Style::EdgeReuse, edge_reuse),
        (Style::PthOffHours, pth_off_hours),
        (Style::ServiceAccountAbuse, service_account_abuse),
        (Style::SprayThenHop, spray_then_hop),
        (Style::NoHistory, no_history),
    ];
    for seed in [1, 2, 3, 101] {
        let mut cfg = small(seed, &Style::ALL);
        cfg.campaigns_per_style = 2;
        let e = generate(&cfg).unwrap();
        for (style, shape) in cases {
            let by_campaign = hops(&e, style);
            assert_eq!(by_campaign.len(), 2, "seed {seed} {style}");
            for (c, h) in by_campaign {
                assert!(
                    h[0].time > cfg.split(),
                    "seed {seed} {style} starts in training"
                );
                if let Err(why) = shape(&e, &h) {
                    panic!("seed {seed} {style} campaign {c}: {why}");
                }
            }
        }
        assert_eq!(Style::parse("spray-then-hop"), Some(Style::SprayThenHop));
    }
}

#[test]
fn attacks_look_like_benign_lines() {
    let e = generate(&small(4, &Style::ALL)).unwrap();
    let lines = benign(&e);
    let shapes: HashSet<(AuthType, LogonType, Orientation, bool)> = lines
        .iter()
        .map(|l| (l.auth, l.logon, l.orient, l.ok))
        .collect();
    let users: HashSet<Principal> = lines.iter().map(|l| l.src_user).collect();
    for r in e.records.iter().filter(|r| r.label.is_some()) {
        let l = r.line;
        assert!(shapes.contains(&(l.auth, l.logon, l.orient, l.ok)), "{l:?}");
        if matches!(l.src_user, Principal::User(_)) {
            assert!(users.contains(&l.src_user), "attack-only user {l:?}");
        }
        assert_eq!(l.src_user, l.dst_user);
        let text = l.to_lanl();
        assert_eq!(text.split(',').count(), 9, "{text}");
    }
    let dir = std::env::temp_dir().join(format!("vigil-enterprise-{}", std::process::id()));
    let sum = write_dir(&e.config, &dir).unwrap();
    let auth = std::fs::read_to_string(dir.join("auth.txt")).unwrap();
    assert_eq!(auth.lines().count() as u64, sum.auth_lines);
    assert!(auth
        .lines()
        .all(|l| crate::lanl::AuthRecord::parse(l).is_some()));
    let red = crate::lanl::read_redteam(&dir).unwrap();
    assert_eq!(red.len() as u64, sum.redteam_lines);
    let tsv = std::fs::read_to_string(dir.join("campaigns.tsv")).unwrap();
    assert!(tsv.starts_with("time\tuser\tsrc\tdst\tstyle\tcampaign\tkind\n"));
    assert_eq!(
        tsv.lines().filter(|l| l.ends_with("\thop")).count() as u64,
        sum.redteam_lines
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
