//! The fleet graph and alerts over a planned fleet, as the detection
//! pipeline and analysts would have left them: single-host alerts,
//! incidents across 2–4 hosts with their ssh edges, some triaged.

use super::{Fleet, FleetHost, Tier};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vigil_proto::query::{AlertRecord, EdgeRecord, FeatureDeviation, Severity, TriageState};
use vigil_proto::HostId;

const SEC: u64 = 1_000_000_000;

/// One generated alert record.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetAlert {
    /// The record as the pipeline stores it (its `state` and `assignee`
    /// already say how it was triaged).
    pub record: AlertRecord,
    /// Whether an analyst's triage record exists for it in the console
    /// store (about half of the triaged alerts).
    pub triaged: bool,
}

/// Alerts in the order they were raised (an incident's per-host alerts
/// before the incident) and the ssh edges the incidents walked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertPlan {
    /// Alert records, children before their incident.
    pub alerts: Vec<FleetAlert>,
    /// One edge per incident hop; write them after [`Fleet::edges`].
    pub edges: Vec<EdgeRecord>,
}

/// The fleet graph: admins and bastions reach servers over ssh, clients
/// reach services; a few edges per host.
pub(super) fn edges(plan: &[FleetHost], seed: u64) -> Vec<EdgeRecord> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xed6e);
    let servers: Vec<&FleetHost> = plan.iter().filter(|h| h.tier != Tier::Normal).collect();
    let mut out = Vec::new();
    for h in plan {
        let fanout = match h.tier {
            Tier::VeryBusy => 40,
            Tier::Busy => 6,
            Tier::Normal => rng.gen_range(0..4),
        };
        for _ in 0..fanout {
            let dst = if rng.gen_bool(0.7) {
                servers[rng.gen_range(0..servers.len())]
            } else {
                &plan[rng.gen_range(0..plan.len())]
            };
            if dst.id == h.id {
                continue;
            }
            let port = [22, 22, 445, 5432, 443, 3389, 5985][rng.gen_range(0..7)];
            let first = h.first_ts + rng.gen_range(0..(h.last_ts - h.first_ts).max(1));
            out.push(EdgeRecord {
                src: h.id,
                dst: dst.id,
                port,
                user: (port == 22 || port == 445).then(|| h.user.clone()),
                first_seen_ns: first,
                last_seen_ns: first + rng.gen_range(0..(h.last_ts - first).max(1)),
                count: rng.gen_range(1..5_000),
            });
        }
    }
    out
}

/// Where the alert generator is: its rng, the hosts it picks from, and what
/// it produced so far.
struct Raiser<'a, F> {
    rng: StdRng,
    plan: &'a [FleetHost],
    busy: Vec<&'a FleetHost>,
    next_id: F,
    out: AlertPlan,
}

impl<'a, E, F: FnMut() -> Result<u64, E>> Raiser<'a, F> {
    /// A host, busy ones three times likelier than their share.
    fn pick(&mut self) -> &'a FleetHost {
        if self.rng.gen_bool(0.3) && !self.busy.is_empty() {
            self.busy[self.rng.gen_range(0..self.busy.len())]
        } else {
            &self.plan[self.rng.gen_range(0..self.plan.len())]
        }
    }

    /// `n` events among the last tenth of `h`'s stored events.
    fn evidence(&mut self, h: &FleetHost, n: usize) -> Vec<(HostId, u64)> {
        let recent = (h.events / 10).max(1);
        (0..n)
            .map(|_| (h.id, h.seq_of(h.events - 1 - self.rng.gen_range(0..recent))))
            .collect()
    }

    /// The alert every generated alert starts from.
    fn base(&mut self, created_ns: u64, state: TriageState) -> AlertRecord {
        let (title, techniques) = TITLES[self.rng.gen_range(0..TITLES.len())];
        AlertRecord {
            ports: Vec::new(),
            processes: Vec::new(),
            id: 0,
            created_ns,
            severity: [
                Severity::Low,
                Severity::Medium,
                Severity::Medium,
                Severity::High,
                Severity::Critical,
            ][self.rng.gen_range(0..5)],
            score: self.rng.gen_range(0.5..1.0),
            title: title.into(),
            path: Vec::new(),
            users: Vec::new(),
            techniques: techniques.iter().map(|t| (*t).to_owned()).collect(),
            summary: String::new(),
            deviations: deviations(&mut self.rng),
            evidence: Vec::new(),
            state: state.clone(),
            assignee: (state != TriageState::New).then(|| "admin".to_owned()),
            incident_id: None,
            model_version: Some("baseline-v3+graph-novelty".into()),
            suppressed_by: None,
        }
    }

    /// A chain of 2–4 hosts walked over ssh by one user: its edges, one
    /// alert per host, then the incident itself (returned, not yet pushed).
    fn incident(&mut self, mut base: AlertRecord) -> Result<AlertRecord, E> {
        let hops: usize = self.rng.gen_range(2..5);
        let hops = hops.min(self.plan.len());
        let mut path: Vec<&FleetHost> = Vec::new();
        while path.len() < hops {
            let h = self.pick();
            if !path.iter().any(|p| p.id == h.id) {
                path.push(h);
            }
        }
        let user = path[0].user.clone();
        let incident_id = (self.next_id)()?;
        for (n, w) in path.windows(2).enumerate() {
            let ts = base.created_ns - (hops - n) as u64 * 600 * SEC;
            self.out.edges.push(EdgeRecord {
                src: w[0].id,
                dst: w[1].id,
                port: 22,
                user: Some(user.clone()),
                first_seen_ns: ts,
                last_seen_ns: ts + 30 * SEC,
                count: self.rng.gen_range(1..4),
            });
        }
        let mut ev = Vec::new();
        for h in &path {
            let child_id = (self.next_id)()?;
            let n_ev = self.rng.gen_range(3..15);
            let child_ev = self.evidence(h, n_ev);
            ev.extend(child_ev.iter().copied());
            let record = AlertRecord {
                id: child_id,
                title: "New SSH destination outside the host's baseline".into(),
                path: vec![h.id],
                users: vec![user.clone()],
                summary: format!(
                    "{} reached a host it never reached before as {user}.",
                    h.hostname
                ),
                evidence: child_ev,
                incident_id: Some(incident_id),
                ..base.clone()
            };
            self.out.alerts.push(FleetAlert {
                record,
                triaged: false,
            });
        }
        base.id = incident_id;
        base.title = format!("Lateral movement chain across {hops} hosts");
        base.techniques = vec!["T1021.004".into(), "T1078".into(), "T1570".into()];
        base.severity = Severity::Critical;
        base.summary = format!(
            "{user} moved {}.",
            path.iter()
                .map(|h| h.hostname.as_str())
                .collect::<Vec<_>>()
                .join(" → ")
        );
        base.path = path.iter().map(|h| h.id).collect();
        base.users = vec![user];
        base.evidence = ev;
        Ok(base)
    }

    /// One alert on one host.
    fn single(&mut self, mut base: AlertRecord) -> Result<AlertRecord, E> {
        let h = self.pick();
        base.id = (self.next_id)()?;
        base.path = vec![h.id];
        base.users = vec![h.user.clone(), "root".into()];
        base.summary = format!("{} on {}.", base.title, h.hostname);
        let n_ev = self.rng.gen_range(3..60);
        base.evidence = self.evidence(h, n_ev);
        Ok(base)
    }
}

/// See [`Fleet::alerts`].
pub(super) fn alerts<E>(
    fleet: &Fleet,
    n: usize,
    next_id: impl FnMut() -> Result<u64, E>,
) -> Result<AlertPlan, E> {
    let (now, span) = (fleet.config.now_ns, fleet.config.span_ns);
    let mut r = Raiser {
        rng: StdRng::seed_from_u64(fleet.config.seed ^ 0xa1e7),
        plan: &fleet.hosts,
        busy: fleet
            .hosts
            .iter()
            .filter(|h| h.tier != Tier::Normal)
            .collect(),
        next_id,
        out: AlertPlan::default(),
    };
    while r.out.alerts.len() < n {
        let created_ns = now - (span as f64 * r.rng.gen::<f64>().powi(2)) as u64;
        let state = match r.rng.gen_range(0..20) {
            0..=11 => TriageState::New,
            12..=14 => TriageState::Acknowledged,
            15..=16 => TriageState::Investigating,
            17 => TriageState::ClosedTruePositive,
            _ => TriageState::ClosedFalsePositive,
        };
        let incident = r.rng.gen_bool(0.15);
        let base = r.base(created_ns, state.clone());
        let record = if incident {
            r.incident(base)?
        } else {
            r.single(base)?
        };
        let triaged = state != TriageState::New && r.rng.gen_bool(0.5);
        r.out.alerts.push(FleetAlert { record, triaged });
    }
    Ok(r.out)
}

const TITLES: [(&str, &[&str]); 8] = [
    (
        "New SSH destination outside the host's baseline",
        &["T1021.004"],
    ),
    ("Burst of authentication failures", &["T1110.001"]),
    (
        "Rare process opened outbound connections",
        &["T1059.004", "T1071.001"],
    ),
    ("Credential use from an unusual source", &["T1078"]),
    ("New admin-port peers", &["T1046", "T1021"]),
    ("Tool transfer then execution", &["T1105", "T1059.004"]),
    (
        "Persistence: cron or systemd unit changed",
        &["T1053.003", "T1543.002"],
    ),
    ("SSH keys added for root", &["T1098.004"]),
];

/// 1–5 feature deviations with a sentence each.
fn deviations(rng: &mut StdRng) -> Vec<FeatureDeviation> {
    const FEATURES: [(&str, &str); 6] = [
        ("new_peers", "new outbound peers in the window"),
        ("admin_port_peers", "distinct peers on admin ports"),
        ("auth_failures", "failed logins"),
        ("rare_exe", "processes rarely seen on this host"),
        ("bytes_out", "outbound flows"),
        ("new_users", "users not seen on this host before"),
    ];
    (0..rng.gen_range(1..6))
        .map(|_| {
            let (f, what) = FEATURES[rng.gen_range(0..FEATURES.len())];
            let baseline: f64 = rng.gen_range(0.0..5.0);
            let observed = baseline + rng.gen_range(3.0..40.0);
            FeatureDeviation {
                feature: f.into(),
                observed,
                baseline,
                score: rng.gen_range(2.0..12.0),
                sentence: format!(
                    "{observed:.0} {what} against a usual {baseline:.1} for this host at this hour."
                ),
            }
        })
        .collect()
}
