//! The pipeline over the in-memory store: chains become incidents,
//! cursors survive restarts, verdicts, settings, and fairness between hosts.

use super::*;
use crate::db::encode;
use crate::db::HostRecord;
use crate::store::memory::MemoryStore;
use crate::store::{Cf, WriteBatch};
use std::net::{Ipv4Addr, SocketAddr};
use vigil_proto::query::AlertFilter;
use vigil_proto::{AuthMethod, EventHeader, LoginInfo, NetFlow, Transport};

const S: u64 = 1_000_000_000;

fn host(db: &Db, id: u64, name: &str, ip: [u8; 4]) {
    db.put_host_record(
        &HostRecord {
            id,
            hostname: name.into(),
            addrs: vec![IpAddr::V4(Ipv4Addr::from(ip))],
            ..HostRecord::default()
        },
        true,
    )
    .unwrap();
}

fn store_events(db: &Db, notices: &DetectionNotices, events: &[Event]) {
    store_events_unnoticed(db, events);
    // What the ingest writer does after its write.
    notices.mark_written(events.iter().map(|e| e.header.host));
}

/// Written behind the pipeline's back (no writer notice).
fn store_events_unnoticed(db: &Db, events: &[Event]) {
    let mut wb = WriteBatch::default();
    for e in events {
        wb.put(
            Cf::Events,
            crate::db::keys::event_key(e.header.host, e.header.ts_ns, e.header.seq).to_vec(),
            crate::db::events::payload_value(&e.payload),
        );
        wb.put(
            Cf::SeqIndex,
            crate::db::keys::seq_key(e.header.host, e.header.seq).to_vec(),
            crate::db::events::seq_index_value(e.header.ts_ns),
        );
    }
    db.store().write(wb, true).unwrap();
}

fn ssh_hop(dst: u64, seq: u64, ts: u64, from: [u8; 4]) -> Event {
    Event {
        header: EventHeader {
            host: HostId(dst),
            seq,
            ts_ns: ts,
        },
        payload: Payload::Login(LoginInfo {
            user: "root".into(),
            method: AuthMethod::PublicKey,
            service: LoginService::Ssh,
            src_addr: Some(IpAddr::V4(Ipv4Addr::from(from))),
            src_port: Some(40000),
            src_host: None,
            from_user: None,
            pid: Some(1),
        }),
    }
}

fn connect(src: u64, seq: u64, ts: u64, to: [u8; 4]) -> Event {
    Event {
        header: EventHeader {
            host: HostId(src),
            seq,
            ts_ns: ts,
        },
        payload: Payload::NetConnect(NetFlow {
            transport: Transport::Tcp,
            local: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, src as u8)), 40000),
            remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(to)), 22),
            pid: Some(7),
            exe: Some("/usr/bin/ssh".into()),
            repeat: 1,
        }),
    }
}

fn cold_start() -> PipelineConfig {
    PipelineConfig {
        detector: DetectorConfig {
            learning_period_ns: 0,
            ..DetectorConfig::default()
        },
        poll: Duration::from_millis(10),
        save_every: Duration::from_secs(3600),
    }
}

/// A → B then B → C: the pipeline turns stored events into one incident
/// over the path, with graph edges, and resumes after a restart without
/// re-reading what it already scored.
#[test]
fn stored_chain_becomes_incident_and_cursor_survives_restart() {
    let db = Db::new(Arc::new(MemoryStore::default()));
    let notices = DetectionNotices::default();
    host(&db, 1, "a", [10, 0, 0, 1]);
    host(&db, 2, "b", [10, 0, 0, 2]);
    host(&db, 3, "c", [10, 0, 0, 3]);
    let t0 = 1_700_000_000 * S;
    store_events(
        &db,
        &notices,
        &[
            connect(1, 1, t0, [10, 0, 0, 2]),
            ssh_hop(2, 1, t0 + S, [10, 0, 0, 1]),
            connect(2, 2, t0 + 60 * S, [10, 0, 0, 3]),
            ssh_hop(3, 1, t0 + 61 * S, [10, 0, 0, 2]),
        ],
    );
    let cfg = cold_start();
    let mut p = Pipeline::open(db.clone(), notices.clone(), &cfg, t0).unwrap();
    let r = p.round(t0 + 62 * S).unwrap();
    assert_eq!(r.events, 4);
    let alerts = db.alerts(&Default::default()).unwrap();
    let incident = alerts
        .iter()
        .find(|a| a.path == vec![HostId(1), HostId(2), HostId(3)])
        .unwrap_or_else(|| panic!("no A→B→C incident in {alerts:#?}"));
    assert!(incident.techniques.iter().any(|t| t.starts_with("T1021")));
    let edges = db.edges(0).unwrap();
    assert!(edges
        .iter()
        .any(|e| e.src == HostId(1) && e.dst == HostId(2) && e.port == 22));
    assert!(edges
        .iter()
        .any(|e| e.src == HostId(2) && e.dst == HostId(3) && e.port == 22));

    p.save(t0 + 62 * S).unwrap();
    let mut again = Pipeline::open(db.clone(), notices.clone(), &cfg, t0 + 63 * S).unwrap();
    assert_eq!(
        again.round(t0 + 63 * S).unwrap().events,
        0,
        "scored events re-read"
    );
    store_events(&db, &notices, &[ssh_hop(3, 2, t0 + 70 * S, [10, 0, 0, 1])]);
    assert_eq!(again.round(t0 + 71 * S).unwrap().events, 1);
}

/// The analyst's triage survives the incident being re-emitted.
#[test]
fn re_emitted_alert_keeps_triage() {
    let db = Db::new(Arc::new(MemoryStore::default()));
    let notices = DetectionNotices::default();
    host(&db, 1, "a", [10, 0, 0, 1]);
    host(&db, 2, "b", [10, 0, 0, 2]);
    let t0 = 1_700_000_000 * S;
    store_events(&db, &notices, &[ssh_hop(2, 1, t0, [10, 0, 0, 1])]);
    let mut p = Pipeline::open(db.clone(), notices.clone(), &cold_start(), t0).unwrap();
    p.round(t0 + S).unwrap();
    let mut alerts = db.alerts(&Default::default()).unwrap();
    assert!(
        !alerts.is_empty(),
        "a first-ever admin hop alerts on a cold start"
    );
    let mut first = alerts.remove(0);
    first.state = vigil_proto::query::TriageState::Investigating;
    first.assignee = Some("ana".into());
    db.put_alert(&first).unwrap();
    let alert = Alert::clone(p.det.history().find(|a| a.id == first.id).unwrap());
    p.write_alerts(&[alert], t0 + 2 * S).unwrap();
    let stored = db.alert(first.id).unwrap().unwrap();
    assert_eq!(stored.state, vigil_proto::query::TriageState::Investigating);
    assert_eq!(stored.assignee.as_deref(), Some("ana"));
}

/// A true-positive verdict queued by the console reaches the detector
/// once, is counted, and leaves the queue with the next save; saved
/// console settings replace the command line's tuning; alert latency
/// is measured from the event's time.
#[test]
fn verdicts_settings_and_latency_reach_the_detector() {
    let db = Db::new(Arc::new(MemoryStore::default()));
    let notices = DetectionNotices::default();
    host(&db, 1, "a", [10, 0, 0, 1]);
    host(&db, 2, "b", [10, 0, 0, 2]);
    let t0 = 1_700_000_000 * S;
    store_events(&db, &notices, &[ssh_hop(2, 1, t0, [10, 0, 0, 1])]);
    let mut p = Pipeline::open(db.clone(), notices.clone(), &cold_start(), t0).unwrap();
    p.round(t0 + 2 * S).unwrap();
    let alert = db.alerts(&Default::default()).unwrap().remove(0);
    let lat = &p.metrics().alert_latency.0;
    assert_eq!(lat.snapshot().2, 1, "one alert latency observed");
    assert_eq!(lat.quantile_upper_us(0.99), Some(2_000_000));

    let mut wb = WriteBatch::default();
    let key = crate::db::records::id_key(crate::db::records::VERDICT, alert.id);
    wb.put(
        Cf::Models,
        key.clone(),
        encode(&TriageState::ClosedTruePositive),
    );
    db.store().write(wb, true).unwrap();
    p.round(t0 + 3 * S).unwrap();
    p.round(t0 + 4 * S).unwrap();
    assert_eq!(p.metrics().verdicts_applied.load(Ordering::Relaxed), 1);
    assert_eq!(
        p.det.verdicts_kept(),
        1,
        "the verdict joins the re-ranker's training set"
    );
    assert!(
        db.store().get(Cf::Models, &key).unwrap().is_some(),
        "kept until saved"
    );
    p.save(t0 + 5 * S).unwrap();
    assert!(
        db.store().get(Cf::Models, &key).unwrap().is_none(),
        "dequeued with the save"
    );

    let settings = vigil_web_ui::store::Settings {
        learning_period_days: 3,
        alert_budget_per_day: 7,
        ..Default::default()
    };
    db.put_record(Cf::Meta, b"console/settings", &settings)
        .unwrap();
    p.round(t0 + 6 * S).unwrap();
    assert_eq!(p.det.config().learning_period_ns, 3 * 86_400 * S);
    assert_eq!(p.det.config().alert_budget_per_day, 7.0);
}

/// Hosts are read in id order, but a chain is scored in time order:
/// here the first hop lands on the higher host id and the second on a
/// lower one, and they still chain into one incident.
#[test]
fn chain_across_hosts_is_scored_in_time_order_not_host_order() {
    let db = Db::new(Arc::new(MemoryStore::default()));
    let notices = DetectionNotices::default();
    host(&db, 3, "a", [10, 0, 0, 3]);
    host(&db, 2, "b", [10, 0, 0, 2]);
    host(&db, 1, "c", [10, 0, 0, 1]);
    let t0 = 1_700_000_000 * S;
    store_events(
        &db,
        &notices,
        &[
            ssh_hop(2, 1, t0, [10, 0, 0, 3]),
            ssh_hop(1, 1, t0 + 60 * S, [10, 0, 0, 2]),
        ],
    );
    let mut p = Pipeline::open(db.clone(), notices.clone(), &cold_start(), t0).unwrap();
    let r = p.round(t0 + 61 * S).unwrap();
    assert_eq!(r.events, 2);
    assert!(!r.backlog);
    let alerts = db.alerts(&Default::default()).unwrap();
    assert!(
        alerts
            .iter()
            .any(|a| a.path == vec![HostId(3), HostId(2), HostId(1)]),
        "no a → b → c incident in {alerts:#?}"
    );
}

/// The merge keeps each host's own order and stops every stream at the
/// watermark, so no cursor passes an unscored event.
#[test]
fn merge_respects_stream_order_and_watermark() {
    let ev = |host: u64, seq: u64, ts: u64| connect(host, seq, ts, [10, 0, 0, 9]);
    let streams = vec![
        vec![ev(1, 1, 10), ev(1, 2, 30), ev(1, 3, 50)],
        vec![ev(2, 1, 20), ev(2, 2, 15), ev(2, 3, 40)],
    ];
    let order: Vec<(u64, u64)> = merge_by_time(&streams, 40)
        .iter()
        .map(|e| (e.header.host.0, e.header.seq))
        .collect();
    assert_eq!(order, vec![(1, 1), (2, 1), (2, 2), (1, 2), (2, 3)]);
}

/// An idle fleet costs a round nothing: only hosts with new events (or
/// unscored ones left over) are read after the first round.
#[test]
fn rounds_read_only_hosts_with_new_events() {
    let db = Db::new(Arc::new(MemoryStore::default()));
    let notices = DetectionNotices::default();
    host(&db, 1, "a", [10, 0, 0, 1]);
    host(&db, 2, "b", [10, 0, 0, 2]);
    let t0 = 1_700_000_000 * S;
    let mut p = Pipeline::open(db.clone(), notices.clone(), &cold_start(), t0).unwrap();
    p.round(t0).unwrap();
    // Written behind the pipeline's back (no notice): not read until
    // the periodic full pass.
    store_events_unnoticed(&db, &[connect(1, 1, t0 + S, [10, 0, 0, 2])]);
    assert_eq!(p.round(t0 + 2 * S).unwrap().events, 0);
    // With the writer's notice it is read at once.
    store_events(&db, &notices, &[connect(2, 1, t0 + 3 * S, [10, 0, 0, 1])]);
    assert_eq!(p.round(t0 + 4 * S).unwrap().events, 1);
    // The full pass finds the unnoticed one.
    assert_eq!(p.round(t0 + 61 * S).unwrap().events, 1);
    // A new host's first events, noticed before the host is registered,
    // are read as soon as it is (not at the next full pass).
    store_events(&db, &notices, &[connect(3, 1, t0 + 62 * S, [10, 0, 0, 1])]);
    assert_eq!(p.round(t0 + 62 * S).unwrap().events, 0);
    host(&db, 3, "c", [10, 0, 0, 3]);
    assert_eq!(p.round(t0 + 65 * S).unwrap().events, 1);
}

#[test]
fn host_records_are_reread_on_identity_change_not_every_round() {
    let db = Db::new(Arc::new(MemoryStore::default()));
    let notices = DetectionNotices::default();
    host(&db, 1, "a", [10, 0, 0, 1]);
    let t0 = 1_700_000_000 * S;
    let mut p = Pipeline::open(db.clone(), notices.clone(), &cold_start(), t0).unwrap();
    p.round(t0).unwrap();
    let first_read = p.last_register_ns;
    // A renamed host without a notice: idle rounds do not read the
    // records (the health history shares their column family).
    host(&db, 1, "a-renamed", [10, 0, 0, 9]);
    p.round(t0 + 5 * S).unwrap();
    assert_eq!(p.last_register_ns, first_read);
    assert_eq!(p.registered[&1].0, "a");
    // The registry's notice (a hello with a new name or address, an
    // enrollment) makes the next round read them.
    notices.note_identity_change();
    p.round(t0 + 6 * S).unwrap();
    assert_eq!(p.registered[&1].0, "a-renamed");
    assert_eq!(p.det.host_by_addr([10, 0, 0, 9].into()), Some(HostId(1)));
    // And the periodic safety net, without any notice.
    host(&db, 1, "a-again", [10, 0, 0, 9]);
    p.round(t0 + 30 * S).unwrap();
    assert_eq!(p.registered[&1].0, "a-renamed");
    p.round(t0 + 67 * S).unwrap();
    assert_eq!(p.registered[&1].0, "a-again");
}

/// One host's backlog of old events (a sensor back from a week offline,
/// or one lying about time) never holds back scoring of the others.
#[test]
fn an_old_backlog_on_one_host_does_not_hold_back_the_others() {
    let db = Db::new(Arc::new(MemoryStore::default()));
    let notices = DetectionNotices::default();
    host(&db, 1, "late", [10, 0, 0, 1]);
    host(&db, 2, "live", [10, 0, 0, 2]);
    let now = 1_700_000_000 * S;
    let week_ago = now - 7 * 86_400 * S;
    let backlog: Vec<Event> = (1..=3 * MAX_PER_HOST as u64)
        .map(|i| connect(1, i, week_ago + i * S, [10, 0, 0, 9]))
        .collect();
    store_events(&db, &notices, &backlog);
    store_events(&db, &notices, &[connect(2, 1, now - S, [10, 0, 0, 1])]);
    let mut p = Pipeline::open(db.clone(), notices.clone(), &cold_start(), now).unwrap();
    p.round(now).unwrap();
    assert_eq!(
        p.cursors.get(&2).copied(),
        Some(1),
        "the live host's event waited for the other's backlog"
    );
}

fn wmi_shell(host: u64, seq: u64, ts: u64) -> Event {
    Event {
        header: EventHeader {
            host: HostId(host),
            seq,
            ts_ns: ts,
        },
        payload: Payload::ProcessStart(vigil_proto::ProcessStart {
            pid: 4242,
            ppid: 900,
            exe: Some(r"C:\Windows\System32\cmd.exe".into()),
            argv: vec!["cmd.exe".into(), "/c".into(), "whoami".into()],
            uid: None,
            user: Some("SYSTEM".into()),
            cwd: None,
            parent_exe: Some(r"C:\Windows\System32\wbem\WmiPrvSE.exe".into()),
            start_time_ns: None,
            netns: 0,
            exited_before_enrichment: false,
        }),
    }
}

/// The shipped Sigma rules run on stored events from the first round and
/// their hits are stored alerts naming the rule, its technique and the
/// matched fields; rules an operator imports are loaded when the import
/// notes the change, and a malformed one is left out without stopping
/// the others.
#[test]
fn sigma_rules_fire_on_stored_events_and_imports_are_reloaded() {
    let db = Db::new(Arc::new(MemoryStore::default()));
    let notices = DetectionNotices::default();
    host(&db, 1, "ws-1", [10, 0, 0, 1]);
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000 * S;
    let mut p = Pipeline::open(db.clone(), notices.clone(), &cold_start(), t0)
        .unwrap()
        .with_sigma_dir(dir.path().to_path_buf());
    store_events(&db, &notices, &[wmi_shell(1, 1, t0)]);
    p.round(t0 + S).unwrap();
    let alerts = db
        .alerts_seen(&AlertFilter::default(), t0 + 10 * S)
        .unwrap();
    let hit = alerts
        .iter()
        .find(|a| a.title.contains("Shell started by the WMI provider host"))
        .unwrap_or_else(|| panic!("no Sigma alert among {alerts:#?}"));
    assert_eq!(hit.techniques, vec!["T1047".to_string()]);
    assert_eq!(hit.path, vec![HostId(1)]);
    assert_eq!(hit.evidence, vec![(HostId(1), 1)]);
    assert!(hit.summary.contains("WmiPrvSE.exe"), "{}", hit.summary);

    // An operator's rule (and a broken one beside it) appear on the next
    // round after the import's notice, not before.
    std::fs::write(
        dir.path().join("whoami.yml"),
        "title: whoami run\nid: 3b1f0a9e-0000-4000-8000-000000000001\n\
         logsource:\n  category: process_creation\n\
         detection:\n  sel:\n    CommandLine|contains: whoami\n  condition: sel\n\
         level: low\ntags:\n  - attack.t1033\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.yml"), "title: x\ndetection: [").unwrap();
    store_events(&db, &notices, &[wmi_shell(1, 2, t0 + 2 * S)]);
    p.round(t0 + 3 * S).unwrap();
    let seen = |db: &Db| {
        db.alerts_seen(&AlertFilter::default(), t0 + 10 * S)
            .unwrap()
            .iter()
            .filter(|a| a.title.contains("whoami run"))
            .count()
    };
    assert_eq!(seen(&db), 0, "loaded before the import's notice");
    notices.note_rules_change();
    store_events(&db, &notices, &[wmi_shell(1, 3, t0 + 4 * S)]);
    p.round(t0 + 5 * S).unwrap();
    assert_eq!(seen(&db), 1, "the imported rule did not run");
}

/// A replayed week scored while learning raises no hop alert; restarted
/// without a learning period (what `cargo xtask demo` does once the
/// history is in), the pipeline takes the new period over the snapshot's
/// and trains every host on the week at once.
#[test]
fn learning_period_follows_the_configuration_across_a_restart() {
    let db = Db::new(Arc::new(MemoryStore::default()));
    let notices = DetectionNotices::default();
    host(&db, 1, "a", [10, 0, 0, 1]);
    host(&db, 2, "b", [10, 0, 0, 2]);
    let (now, day) = (1_700_000_000 * S, 86_400 * S);
    let history: Vec<Event> = (0..7)
        .flat_map(|d| {
            let t = now - 7 * day + d * day;
            [
                connect(1, d + 1, t, [10, 0, 0, 2]),
                ssh_hop(2, d + 1, t + S, [10, 0, 0, 1]),
            ]
        })
        .collect();
    store_events(&db, &notices, &history);
    let learning = PipelineConfig {
        detector: DetectorConfig {
            learning_period_ns: 8 * day,
            ..DetectorConfig::default()
        },
        ..cold_start()
    };
    let mut p = Pipeline::open(db.clone(), notices.clone(), &learning, now).unwrap();
    assert_eq!(p.round(now).unwrap().events, history.len());
    assert!(db.alerts(&AlertFilter::default()).unwrap().is_empty());
    let learning_hosts = |p: &Pipeline| {
        let m = p.model_status();
        (
            m.len(),
            m.iter()
                .filter(|m| m.phase == vigil_models::HostPhase::Learning)
                .count(),
        )
    };
    assert_eq!(learning_hosts(&p), (2, 2));
    p.save(now).unwrap();
    let mut p = Pipeline::open(db.clone(), notices, &cold_start(), now + S).unwrap();
    assert_eq!(
        p.det.config().learning_period_ns,
        0,
        "the configuration's, not the snapshot's"
    );
    p.round(now + S).unwrap();
    assert_eq!(learning_hosts(&p), (2, 0), "trained on the history at once");
}

/// Event → alert latency counts live events only: an alert on an event
/// scored long after it happened (a replayed history, a backlog) is
/// counted apart.
#[test]
fn latency_leaves_out_alerts_on_old_events() {
    let db = Db::new(Arc::new(MemoryStore::default()));
    let notices = DetectionNotices::default();
    host(&db, 1, "a", [10, 0, 0, 1]);
    host(&db, 2, "b", [10, 0, 0, 2]);
    let t0 = 1_700_000_000 * S;
    store_events(&db, &notices, &[ssh_hop(2, 1, t0, [10, 0, 0, 1])]);
    let mut p = Pipeline::open(db.clone(), notices, &cold_start(), t0).unwrap();
    p.round(t0 + LIVE_LATENCY_BOUND_NS + S).unwrap();
    assert_eq!(db.alerts(&AlertFilter::default()).unwrap().len(), 1);
    let m = p.metrics();
    assert_eq!(m.alert_latency.0.snapshot().2, 0, "no latency observed");
    assert_eq!(m.alerts_on_old_events.load(Ordering::Relaxed), 1);
    assert_eq!(m.snapshot().alerts_on_old_events, 1);
}
