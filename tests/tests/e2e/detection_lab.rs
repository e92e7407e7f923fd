//! Detection in the namespace lab with real sshd logs (issue #14): a
//! password spray from one lab host against the others is alerted as
//! T1110.003 and names its source host; a stolen-key chain that lands on
//! the backup host is one incident over exactly the attack's hops, while
//! that host's routine backup logons (learnt, and still running after the
//! attack) stay out of it.

use super::{eventually, start_appliance, watch, Watched};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vigil_appliance::{Appliance, ServeConfig};
use vigil_proto::query::{AlertFilter, AlertRecord, ReadApi};
use vigil_proto::{EventKind, HostId, Payload};
use vigil_tests::lab::{require_lab, Lab, LabUser};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_password_spray_across_lab_hosts_is_named_with_its_source() {
    if !require_lab("a_password_spray_across_lab_hosts_is_named_with_its_source") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let app = start_appliance(&tmp.path().join("appliance")).await;
    let lab = Lab::new(4).expect("lab");
    let mut watched = Vec::new();
    for i in 0..4 {
        watched.push(watch(&app, &lab, i, &tmp.path().join(format!("sensor{i}"))).await);
    }
    let reader = app.reader();
    let registered = eventually(20, || {
        let hosts = reader.hosts().unwrap_or_default();
        (0..4).all(|i| {
            hosts.iter().any(|h| {
                h.id == watched[i].host && h.addrs.contains(&IpAddr::V4(lab.hosts[i].addr))
            })
        })
    })
    .await;
    assert!(registered, "hosts: {:#?}", reader.hosts());

    // h1 tries accounts that do not exist on h2..h4: every attempt is an
    // "Invalid user" line in the target's real sshd log.
    for target in 1..4 {
        for user in ["admin", "test", "oracle"] {
            let to = format!("{user}@{}", lab.hosts[target].addr);
            let mut args: Vec<String> = lab.ssh_options();
            args.push(to);
            args.push("true".into());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let refused = lab.exec(0, "ssh", &args).is_err();
            assert!(refused, "{user} logged in to h{}", target + 1);
        }
    }
    let source = watched[0].host;
    let named = eventually(40, || {
        reader
            .alerts(&AlertFilter::default())
            .unwrap_or_default()
            .iter()
            .any(|a| {
                a.techniques.iter().any(|t| t == "T1110.003") && a.path.first() == Some(&source)
            })
    })
    .await;
    let alerts = reader.alerts(&AlertFilter::default()).unwrap();
    assert!(
        named,
        "no T1110.003 alert from h1 among {:#?}",
        alerts
            .iter()
            .map(|a| (&a.title, &a.path, &a.techniques))
            .collect::<Vec<_>>()
    );
    for w in watched {
        w.sensor.shutdown().await;
    }
    app.shutdown().await;
}

/// How long each lab host only learns: long enough for a dozen rounds of
/// routine logons, set through the same knob as `vigil serve
/// --learning-period`.
const LEARNING: Duration = Duration::from_secs(20);

/// An appliance whose hosts learn for `learning` before they may alert.
async fn start_appliance_learning(dir: &std::path::Path, learning: Duration) -> Appliance {
    let mut cfg = ServeConfig::new(dir).loopback();
    cfg.admin_socket = false;
    let pipeline = cfg.pipeline.as_mut().expect("detection is on by default");
    pipeline.detector.learning_period_ns = learning.as_nanos() as u64;
    pipeline.poll = Duration::from_millis(200);
    Appliance::start(cfg).await.expect("appliance starts")
}

/// Routine ssh in the lab: one thread per schedule, each logging on as its
/// user from its host to its targets, round after round, until stopped.
struct Routine {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<u64>>,
}

impl Routine {
    fn new() -> Routine {
        Routine {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }

    /// Log on as `user` from `from` to each of `to` every `every`; the
    /// returned counter says how many rounds have completed.
    fn every(
        &mut self,
        lab: &Arc<Lab>,
        from: usize,
        to: &[usize],
        user: &str,
        every: Duration,
    ) -> Arc<AtomicU64> {
        let rounds = Arc::new(AtomicU64::new(0));
        let (lab, stop, done) = (lab.clone(), self.stop.clone(), rounds.clone());
        let (to, user) = (to.to_vec(), user.to_string());
        self.threads.push(std::thread::spawn(move || {
            let mut failed = 0;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                for t in &to {
                    if let Err(e) = lab.ssh_as(from, *t, &user, "true") {
                        eprintln!("routine logon failed: {e}");
                        failed += 1;
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
                // A schedule, not a wait for a condition: sleep out the period.
                while started.elapsed() < every && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            failed
        }));
        rounds
    }

    /// Stop every schedule; the number of logons that failed.
    fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.drain(..).map(|t| t.join().unwrap_or(1)).sum()
    }
}

impl Drop for Routine {
    /// A failing test stops its schedules too, so their handles on the lab
    /// go and the lab's namespaces are removed.
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `host` stored an ssh login by `user` from `from` after `after_ns`.
fn logged_on(reader: &dyn ReadApi, host: HostId, user: &str, from: IpAddr, after_ns: u64) -> bool {
    super::events(reader, host, EventKind::Login)
        .iter()
        .any(|e| match &e.payload {
            Payload::Login(l) => {
                e.header.ts_ns > after_ns && l.user == user && l.src_addr == Some(from)
            }
            _ => false,
        })
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// h4 is the backup server: as a service account it logs on to every other
/// host on a schedule, through the learning period and after it, while two
/// users ssh between workstations. The attacker then takes h1 → h2 → h4
/// with a stolen root key and lands on the backup server, whose backups go
/// on. One incident's path is exactly h1, h2, h4; every hop any alert names
/// is one that sshd logged (its true source); no alert chains a routine
/// backup logon onto the attack.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attack_landing_on_the_backup_host_keeps_its_routine_out_of_the_incident() {
    let test = "an_attack_landing_on_the_backup_host_keeps_its_routine_out_of_the_incident";
    if !require_lab(test) {
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let app = start_appliance_learning(&tmp.path().join("appliance"), LEARNING).await;
    let lab = Arc::new(Lab::new(4).expect("lab"));
    // Accounts are machine-wide: names of this test run only.
    let tag = std::process::id() % 100_000;
    let users: Vec<LabUser> = ["svcbk", "alice", "bob"]
        .iter()
        .map(|u| lab.add_user(&format!("{u}{tag}")).expect("local account"))
        .collect();
    let (backup_user, alice, bob) = (&users[0].0, &users[1].0, &users[2].0);
    let mut watched: Vec<Watched> = Vec::new();
    for i in 0..4 {
        watched.push(watch(&app, &lab, i, &tmp.path().join(format!("sensor{i}"))).await);
    }
    let ids: Vec<HostId> = watched.iter().map(|w| w.host).collect();
    let (h1, h2, h3, h4) = (ids[0], ids[1], ids[2], ids[3]);
    let reader = app.reader();
    let registered = eventually(20, || {
        let hosts = reader.hosts().unwrap_or_default();
        (0..4).all(|i| {
            hosts
                .iter()
                .any(|h| h.id == ids[i] && h.addrs.contains(&IpAddr::V4(lab.hosts[i].addr)))
        })
    })
    .await;
    assert!(registered, "hosts: {:#?}", reader.hosts());

    // Routine: backups from h4 to everyone, alice h1 → h3, bob h3 → h2.
    let mut routine = Routine::new();
    let backups = routine.every(&lab, 3, &[0, 1, 2], backup_user, Duration::from_secs(2));
    routine.every(&lab, 0, &[2], alice, Duration::from_millis(2500));
    routine.every(&lab, 2, &[1], bob, Duration::from_secs(3));
    let learnt = eventually(LEARNING.as_secs() + 30, || {
        ids.iter().all(|h| {
            reader
                .host_model(*h)
                .ok()
                .flatten()
                .is_some_and(|m| m.active)
        })
    })
    .await;
    assert!(learnt, "hosts still learning after {LEARNING:?}");
    let learnt_at = started.elapsed();

    // The attack: h1 → h2 → h4 with the stolen root key.
    let attack_ns = now_ns();
    let hop = format!(
        "ssh {} root@{} 'echo landed; sleep 1'",
        lab.ssh_options().join(" "),
        lab.hosts[3].addr
    );
    let out = lab.ssh(0, 1, &hop).expect("ssh chain");
    assert!(String::from_utf8_lossy(&out.stdout).contains("landed"));
    let landed_ns = now_ns();

    // The backup host's routine goes on: two more full rounds, stored and
    // scored, before anything is judged.
    let rounds = backups.load(Ordering::SeqCst);
    assert!(
        eventually(20, || backups.load(Ordering::SeqCst) >= rounds + 2).await,
        "backup rounds stalled"
    );
    // A second later than the landing whatever the log's time resolution.
    let after_landing = landed_ns + 1_000_000_000;
    let addr = |i: usize| IpAddr::V4(lab.hosts[i].addr);
    let stored = eventually(20, || {
        (0..3).all(|i| logged_on(&*reader, ids[i], backup_user, addr(3), after_landing))
            && logged_on(&*reader, h4, "root", addr(1), 0)
    })
    .await;
    assert!(stored, "post-attack logons not stored");
    let metrics = &app.core().metrics;
    let ingested = metrics.events_ingested.load(Ordering::SeqCst);
    let scored = eventually(20, || {
        metrics.detection_events.load(Ordering::SeqCst) >= ingested
    })
    .await;
    assert!(scored, "the pipeline did not catch up");
    let attack = vec![h1, h2, h4];
    let found = eventually(20, || {
        reader
            .alerts(&AlertFilter::default())
            .unwrap_or_default()
            .iter()
            .any(|a| a.path == attack)
    })
    .await;
    let failed = routine.stop();
    let alerts = reader.alerts(&AlertFilter::default()).unwrap();
    let names = |a: &AlertRecord| -> Vec<String> {
        a.path
            .iter()
            .map(|h| {
                ids.iter()
                    .position(|x| x == h)
                    .map_or(h.to_string(), |i| format!("h{}", i + 1))
            })
            .collect()
    };
    let shown: Vec<(String, Vec<String>, &Vec<String>)> = alerts
        .iter()
        .map(|a| (a.title.clone(), names(a), &a.users))
        .collect();
    assert_eq!(failed, 0, "routine logons failed (see stderr)");
    if !found {
        // What each alert said and when, relative to the attack: enough to
        // tell a weak benign predecessor from a wrong correlation.
        for a in &alerts {
            eprintln!(
                "{:+.1}s #{} {:?} score {:.1} {:?} {:?} incident {:?}",
                (a.created_ns as f64 - attack_ns as f64) / 1e9,
                a.id,
                a.title,
                a.score,
                names(a),
                a.users,
                a.incident_id
            );
            for d in &a.deviations {
                eprintln!("    {} {:.1}: {}", d.feature, d.score, d.sentence);
            }
        }
        for (i, h) in ids.iter().enumerate() {
            let logins = super::events(&*reader, *h, EventKind::Login);
            let mut seen: std::collections::BTreeMap<(String, String), (usize, f64)> =
                Default::default();
            for e in &logins {
                if let Payload::Login(l) = &e.payload {
                    let at = (e.header.ts_ns as f64 - attack_ns as f64) / 1e9;
                    let k = (l.user.clone(), format!("{:?}", l.src_addr));
                    let v = seen.entry(k).or_insert((0, at));
                    v.0 += 1;
                    v.1 = v.1.min(at);
                }
            }
            eprintln!("h{} logins (user, src) -> (count, first): {seen:?}", i + 1);
        }
    }
    assert!(found, "no incident over h1 → h2 → h4 among {shown:#?}");

    // Every hop an alert names was logged by the target's sshd from that
    // source: the attack's two, or a routine one.
    let real = [
        (h1, h2),
        (h2, h4),
        (h4, h1),
        (h4, h2),
        (h4, h3),
        (h1, h3),
        (h3, h2),
    ];
    for a in &alerts {
        for step in a.path.windows(2) {
            assert!(
                real.contains(&(step[0], step[1])),
                "alert {} ({}) names a hop that did not happen: {:?} among {shown:#?}",
                a.id,
                a.title,
                names(a)
            );
        }
        // The backup server's routine never extends the attack: wherever
        // the path reaches h4 from h2, it ends there.
        if let Some(at) = a.path.windows(2).position(|s| s == [h2, h4]) {
            assert_eq!(
                at + 2,
                a.path.len(),
                "alert {} chains h4's routine onto the attack: {:?}",
                a.id,
                names(a)
            );
        }
    }
    println!(
        "learnt after {:.1}s; attack to checked: {:.1}s; total {:.1}s; {} alerts",
        learnt_at.as_secs_f64(),
        Duration::from_nanos(now_ns() - attack_ns).as_secs_f64(),
        started.elapsed().as_secs_f64(),
        alerts.len()
    );
    for w in watched {
        w.sensor.shutdown().await;
    }
    app.shutdown().await;
    drop(users);
}
