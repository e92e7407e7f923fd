//! The one seeded fleet generator of the benches and the scaled fixtures:
//! hosts (ids, names, OS, addresses, sensor health, tiers of activity) and a
//! deterministic stream of realistic events per host (processes with real
//! looking command lines, connections and accepts, logins, sudo and su,
//! changes to watched files, an occasional sensor loss record), plus the
//! fleet graph and alerts that point at stored events.
//!
//! Users: `bench-ui` (a 10,000-host, 50-million-event RocksDB store),
//! [`crate::read_api::scaled_read_api`] (the same fleet in memory) and the
//! simulated sensor's [`realistic_events`] (one host's stream for any host
//! id and seq range).
//!
//! Why this is not `vigil_datasets::synth`: synth is the labelled enterprise
//! for evaluating detection. It simulates a whole fleet day by day (office
//! hours, campaigns, new hires), so the only way to a host's millionth event
//! is to simulate everything before it, and the fleet's size follows from its
//! roles. The benches need the opposite: exactly N hosts and M events, any
//! host's any batch generated on its own (`bench-ui` fills 50 M events from
//! parallel tasks, the simulated sensor sends arbitrary seq ranges), and no
//! labels. So there are exactly two generators: synth for evaluation, this
//! one for load.
//!
//! Same config and seed → identical hosts and events.

mod activity;
mod alerts;

pub use alerts::{AlertPlan, FleetAlert};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vigil_proto::event::{Event, EventHeader, LossReason, LossRecord, Payload};
use vigil_proto::query::{EdgeRecord, SensorState};
use vigil_proto::HostId;

const SEC: u64 = 1_000_000_000;
const HOUR: u64 = 3600 * SEC;
const DAY: u64 = 24 * HOUR;

/// Events per generated batch (one sensor batch).
pub const BATCH_EVENTS: u64 = 10_000;

/// Heartbeat interval every generated host reports.
pub const HEARTBEAT_MS: u32 = 10_000;

/// How big a fleet, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    /// Hosts in the fleet (at least 10 for a sensible mix of tiers).
    pub hosts: usize,
    /// Events over all hosts, loss records included.
    pub events: u64,
    /// Seed of everything.
    pub seed: u64,
    /// "Now": hosts were last seen up to this time.
    pub now_ns: u64,
    /// Events span this long before [`FleetConfig::now_ns`] (at least 6 days
    /// so every host has events: some were last seen 5 days ago).
    pub span_ns: u64,
}

/// How active a host is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Domain controllers, proxies, bastions, CI: ~0.1 % of hosts, ~10 % of events.
    VeryBusy,
    /// Servers: ~2 % of hosts, ~20 % of events.
    Busy,
    /// Workstations and small servers.
    Normal,
}

/// One host of the generated fleet: what its sensor reported and how many
/// events it stored.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetHost {
    /// Host id (never 0, unique).
    pub id: HostId,
    /// Hostname, by tier (`dc01.corp.example`, `web-prod-017`, `ws-hr-0042`).
    pub hostname: String,
    /// OS name as a sensor reports it.
    pub os: String,
    /// Addresses: a unique 10.16/12 IPv4 first, sometimes IPv6 and a docker bridge.
    pub addrs: Vec<IpAddr>,
    /// Sensor version.
    pub sensor_version: String,
    /// When the host enrolled.
    pub enrolled_ns: u64,
    /// Last heartbeat.
    pub last_seen_ns: u64,
    /// When its certificate was revoked (1 % of hosts).
    pub revoked_ns: Option<u64>,
    /// Network-isolated by an operator.
    pub isolated: bool,
    /// Sensor CPU, % of one core.
    pub cpu_pct: f32,
    /// Sensor resident memory.
    pub rss_bytes: u64,
    /// Average events per second over its active span.
    pub events_per_s: f32,
    /// Bytes waiting in the sensor's spool.
    pub spool_bytes: u64,
    /// Events the sensor dropped (the loss record's count).
    pub dropped_total: u64,
    /// How active it is.
    pub tier: Tier,
    /// Stored events, the loss record included.
    pub events: u64,
    /// `(k, m)`: seqs `k+1..=k+m` were dropped by the sensor and a loss
    /// record with seq `k+m+1` says so.
    pub loss: Option<(u64, u64)>,
    /// Time of its first event.
    pub first_ts: u64,
    /// Time of its last event.
    pub last_ts: u64,
    /// Its main user (owner of a workstation, admin of a server).
    pub user: String,
}

impl FleetHost {
    /// A single host profile for a simulated sensor with an arbitrary id.
    pub fn sensor(id: HostId) -> FleetHost {
        let ip = Ipv4Addr::new(10, 0, (id.0 % 200) as u8, (id.0 % 250) as u8 + 2);
        FleetHost {
            id,
            hostname: format!("sim-{id}"),
            os: OSES[0].into(),
            addrs: vec![IpAddr::V4(ip)],
            sensor_version: "sim-0.1".into(),
            enrolled_ns: 0,
            last_seen_ns: 0,
            revoked_ns: None,
            isolated: false,
            cpu_pct: 0.3,
            rss_bytes: 20 << 20,
            events_per_s: 0.0,
            spool_bytes: 0,
            dropped_total: 0,
            tier: Tier::Normal,
            events: 0,
            loss: None,
            first_ts: 0,
            last_ts: 0,
            user: PEOPLE[(id.0 % PEOPLE.len() as u64) as usize].into(),
        }
    }

    /// Seq of the `j`-th stored event (0-based).
    pub fn seq_of(&self, j: u64) -> u64 {
        match self.loss {
            Some((k, m)) if j >= k => j + 1 + m,
            _ => j + 1,
        }
    }

    /// Timestamp of the `j`-th stored event: increasing, jittered.
    fn ts_of(&self, j: u64, jitter: f64) -> u64 {
        let span = (self.last_ts - self.first_ts) as f64;
        self.first_ts + (span * (j as f64 + jitter) / self.events as f64) as u64
    }

    /// The address its connections come from.
    pub fn local_ip(&self) -> IpAddr {
        self.addrs[0]
    }

    /// Sensor state at `now_ns`, by the appliance's rule (online within 2
    /// heartbeats, stale up to 10, then offline; revoked wins).
    pub fn state(&self, now_ns: u64) -> SensorState {
        let hb_ns = HEARTBEAT_MS as u64 * 1_000_000;
        let age = now_ns.saturating_sub(self.last_seen_ns);
        match self.revoked_ns {
            Some(_) => SensorState::Revoked,
            None if age <= 2 * hb_ns => SensorState::Online,
            None if age <= 10 * hb_ns => SensorState::Stale,
            None => SensorState::Offline,
        }
    }

    /// Batches of [`BATCH_EVENTS`] its stored events come in.
    pub fn batch_count(&self) -> u64 {
        self.events.div_ceil(BATCH_EVENTS)
    }

    /// Its `batch`-th batch of stored events (the last one may be short),
    /// generated from `seed` and `batch` alone: any batch of any host can be
    /// generated on its own, in any order, and is always the same.
    pub fn batch(&self, batch: u64, seed: u64) -> Vec<Event> {
        let mut rng = StdRng::seed_from_u64(
            seed ^ self.id.0.rotate_left(13) ^ batch.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let from = batch * BATCH_EVENTS;
        let to = (from + BATCH_EVENTS).min(self.events);
        (from..to)
            .map(|j| {
                let ts_ns = self.ts_of(j, rng.gen());
                let payload = match self.loss {
                    Some((k, m)) if j == k => Payload::Loss(LossRecord {
                        from_seq: k + 1,
                        to_seq: k + m,
                        count: m,
                        reason: LossReason::SpoolFull,
                    }),
                    _ => activity::payload(self, &mut rng, ts_ns),
                };
                Event {
                    header: EventHeader {
                        host: self.id,
                        seq: self.seq_of(j),
                        ts_ns,
                    },
                    payload,
                }
            })
            .collect()
    }
}

/// A planned fleet: its config and hosts, sorted by id.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// What it was planned from.
    pub config: FleetConfig,
    /// The hosts, sorted by id.
    pub hosts: Vec<FleetHost>,
}

pub(crate) const OSES: [&str; 7] = [
    "Debian GNU/Linux 12 (bookworm)",
    "Ubuntu 22.04.4 LTS",
    "Ubuntu 24.04.1 LTS",
    "Red Hat Enterprise Linux 9.4 (Plow)",
    "Rocky Linux 9.3 (Blue Onyx)",
    "Debian GNU/Linux 11 (bullseye)",
    "Amazon Linux 2023",
];
const VERSIONS: [&str; 5] = ["0.1.0", "0.1.1", "0.1.2", "0.1.2", "0.2.0-rc.1"];
const VERY_BUSY: [&str; 12] = [
    "dc01",
    "dc02",
    "proxy01",
    "proxy02",
    "bastion01",
    "ci-runner01",
    "mail01",
    "fs01",
    "jump01",
    "logs01",
    "vault01",
    "git01",
];
const ROLES: [&str; 9] = [
    "web", "api", "db", "cache", "k8s-node", "kafka", "es", "etl", "auth",
];
pub(crate) const ENVS: [&str; 3] = ["prod", "stage", "dev"];
const DEPTS: [&str; 8] = [
    "finance", "eng", "sales", "hr", "legal", "ops", "support", "design",
];
pub(crate) const PEOPLE: [&str; 24] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yusuf", "zoe",
    "amir", "bea", "chen",
];

impl Fleet {
    /// Plan `cfg.hosts` hosts and spread `cfg.events` over them by tier.
    pub fn plan(cfg: &FleetConfig) -> Fleet {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let n = cfg.hosts;
        let very_busy = (n / 1000).max(1);
        let busy = (n / 50).max(2);
        let mut ids = HashSet::new();
        let mut weights = Vec::with_capacity(n);
        let mut hosts = Vec::with_capacity(n);
        for i in 0..n {
            let id = loop {
                let id = rng.gen::<u64>() >> 1;
                if id != 0 && ids.insert(id) {
                    break id;
                }
            };
            let (tier, weight) = if i < very_busy {
                (Tier::VeryBusy, 50.0 * rng.gen_range(0.6..1.4))
            } else if i < very_busy + busy {
                (Tier::Busy, 5.0 * rng.gen_range(0.4..1.6))
            } else {
                (Tier::Normal, 0.35 * rng.gen_range(0.2..1.8))
            };
            weights.push(weight);
            hosts.push(plan_host(&mut rng, cfg, i, HostId(id), tier));
        }
        // Events per host in proportion to the weights; the rounding rest goes to host 0.
        let total: f64 = weights.iter().sum();
        let mut assigned = 0;
        for (h, w) in hosts.iter_mut().zip(&weights) {
            h.events = ((cfg.events as f64 * w / total) as u64).max(2);
            assigned += h.events;
        }
        hosts[0].events = (hosts[0].events + cfg.events)
            .saturating_sub(assigned)
            .max(2);
        for h in hosts.iter_mut() {
            let span_s = ((h.last_ts - h.first_ts) / SEC).max(1) as f32;
            h.events_per_s = h.events as f32 / span_s;
            if h.events > 100 && rng.gen_bool(0.02) {
                let k = rng.gen_range(1..h.events - 1);
                let m = rng.gen_range(50..5_000);
                h.loss = Some((k, m));
                h.dropped_total = m;
            }
        }
        hosts.sort_by_key(|h| h.id);
        Fleet {
            config: cfg.clone(),
            hosts,
        }
    }

    /// Stored events over all hosts.
    pub fn events_total(&self) -> u64 {
        self.hosts.iter().map(|h| h.events).sum()
    }

    /// The fleet graph: admins and bastions reach servers over ssh, clients
    /// reach services; a few edges per host.
    pub fn edges(&self) -> Vec<EdgeRecord> {
        alerts::edges(&self.hosts, self.config.seed)
    }

    /// `n` or a few more alert records (single-host alerts, and incidents
    /// of 2–4 hosts with one alert per hop plus the incident itself), with
    /// evidence pointing at stored events and the incidents' ssh edges.
    /// Ids come from `next_id` in the order a pipeline would take them.
    pub fn alerts<E>(
        &self,
        n: usize,
        next_id: impl FnMut() -> Result<u64, E>,
    ) -> Result<AlertPlan, E> {
        alerts::alerts(self, n, next_id)
    }
}

/// One host's identity and health (everything but its event count).
fn plan_host(rng: &mut StdRng, cfg: &FleetConfig, i: usize, id: HostId, tier: Tier) -> FleetHost {
    let now = cfg.now_ns;
    let person = PEOPLE[rng.gen_range(0..PEOPLE.len())];
    let hostname = match tier {
        Tier::VeryBusy => match VERY_BUSY.get(i) {
            Some(name) => format!("{name}.corp.example"),
            None => format!("infra{i:02}.corp.example"),
        },
        Tier::Busy => format!(
            "{}-{}-{:03}",
            ROLES[i % ROLES.len()],
            ENVS[rng.gen_range(0..ENVS.len())],
            i
        ),
        Tier::Normal if i.is_multiple_of(5) => {
            format!("{}-{}-{:03}", ROLES[i % ROLES.len()], ENVS[i % 3], i)
        }
        Tier::Normal if i.is_multiple_of(3) => format!("lt-{person}{i}"),
        Tier::Normal => format!("ws-{}-{:04}", DEPTS[i % DEPTS.len()], i),
    };
    let addrs = plan_addrs(rng, i, tier);
    let enrolled_ns = if rng.gen_bool(0.05) {
        now - rng.gen_range(HOUR..6 * DAY)
    } else {
        now - rng.gen_range(8 * DAY..400 * DAY)
    };
    let roll: f64 = rng.gen();
    let (last_seen_ns, revoked_ns) = if roll < 0.90 {
        (now - rng.gen_range(0..15 * SEC), None)
    } else if roll < 0.95 {
        (now - rng.gen_range(25 * SEC..95 * SEC), None)
    } else if roll < 0.99 {
        (now - rng.gen_range(HOUR..5 * DAY), None)
    } else {
        let seen = now - rng.gen_range(DAY..5 * DAY);
        (seen, Some(seen + rng.gen_range(SEC..HOUR)))
    };
    let last_seen_ns = last_seen_ns.max(enrolled_ns + HOUR);
    // The field order is the order the generator draws from `rng`.
    FleetHost {
        id,
        hostname,
        os: OSES[rng.gen_range(0..OSES.len())].into(),
        addrs,
        sensor_version: VERSIONS[rng.gen_range(0..VERSIONS.len())].into(),
        enrolled_ns,
        last_seen_ns,
        revoked_ns,
        isolated: rng.gen_bool(0.002),
        cpu_pct: rng.gen_range(0.1f32..if tier == Tier::Normal { 2.0 } else { 6.0 }),
        rss_bytes: rng.gen_range(
            14u64 << 20..if tier == Tier::Normal {
                40 << 20
            } else {
                120 << 20
            },
        ),
        events_per_s: 0.0,
        spool_bytes: if rng.gen_bool(0.05) {
            rng.gen_range(1 << 20..200 << 20)
        } else {
            0
        },
        dropped_total: 0,
        tier,
        events: 0,
        loss: None,
        // A span shorter than the time since a host was last seen would
        // leave it no room for events; keep an hour.
        first_ts: (now - cfg.span_ns)
            .max(enrolled_ns)
            .min(last_seen_ns - HOUR),
        last_ts: last_seen_ns,
        user: person.to_owned(),
    }
}

/// A unique 10.16.0.0/12 address per host (250 per /24), sometimes an IPv6
/// ULA, and on servers sometimes the docker bridge.
fn plan_addrs(rng: &mut StdRng, i: usize, tier: Tier) -> Vec<IpAddr> {
    let block = i / 250;
    let mut addrs = vec![IpAddr::V4(Ipv4Addr::new(
        10,
        (16 + block / 256) as u8,
        (block % 256) as u8,
        (i % 250 + 2) as u8,
    ))];
    if rng.gen_bool(0.3) {
        addrs.push(IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0x0c0,
            0,
            block as u16,
            0,
            0,
            0,
            i as u16,
        )));
    }
    if tier != Tier::Normal && rng.gen_bool(0.5) {
        addrs.push(IpAddr::V4(Ipv4Addr::new(172, 17, 0, 1)));
    }
    addrs
}

/// Deterministic, realistic events of a simulated sensor for `host`: seqs
/// `first_seq..first_seq+n`, about 1 ms apart from `start_ns`, drawn from the
/// fleet's activity mix (processes, flows, logins, file changes).
pub fn realistic_events(
    host: HostId,
    first_seq: u64,
    n: usize,
    start_ns: u64,
    seed: u64,
) -> Vec<Event> {
    let profile = FleetHost::sensor(host);
    let mut rng = StdRng::seed_from_u64(seed ^ host.0 ^ first_seq.rotate_left(17));
    let mut ts_ns = start_ns;
    (0..n as u64)
        .map(|i| {
            ts_ns += rng.gen_range(200_000..1_800_000);
            Event {
                header: EventHeader {
                    host,
                    seq: first_seq + i,
                    ts_ns,
                },
                payload: activity::payload(&profile, &mut rng, ts_ns),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> FleetConfig {
        FleetConfig {
            hosts: 40,
            events: 30_000,
            seed: 7,
            now_ns: 1_780_000_000_000_000_000,
            span_ns: 7 * DAY,
        }
    }

    #[test]
    fn same_seed_same_fleet_and_every_event_planned_once() {
        let (a, b) = (Fleet::plan(&small()), Fleet::plan(&small()));
        assert_eq!(a.hosts, b.hosts);
        assert_eq!(a.events_total(), 30_000);
        let h = a.hosts.iter().max_by_key(|h| h.events).expect("hosts");
        let events: Vec<Event> = (0..h.batch_count()).flat_map(|i| h.batch(i, 7)).collect();
        assert_eq!(events.len() as u64, h.events);
        assert!(events.windows(2).all(|w| w[0].header.seq < w[1].header.seq));
        assert!(events
            .iter()
            .all(|e| (h.first_ts..=h.last_ts).contains(&e.header.ts_ns)));
    }

    #[test]
    fn alerts_cite_stored_events_and_ids_come_from_the_caller() {
        let fleet = Fleet::plan(&small());
        let mut next = 100;
        let plan = fleet
            .alerts(12, || {
                next += 1;
                Ok::<_, ()>(next)
            })
            .unwrap();
        assert!(plan.alerts.len() >= 12);
        for a in &plan.alerts {
            assert!(a.record.id > 100);
            for (host, seq) in &a.record.evidence {
                let h = fleet.hosts.iter().find(|h| h.id == *host).unwrap();
                assert!((0..h.events).any(|j| h.seq_of(j) == *seq));
            }
        }
    }

    #[test]
    fn a_simulated_sensor_sends_gap_free_seqs_about_a_millisecond_apart() {
        let ev = realistic_events(HostId(9), 401, 200, 1_000, 3);
        assert_eq!(ev.len(), 200);
        assert!(ev.iter().zip(401..).all(|(e, s)| e.header.seq == s));
        let span = ev[199].header.ts_ns - ev[0].header.ts_ns;
        assert!((100_000_000..400_000_000).contains(&span), "{span}");
        assert_eq!(ev, realistic_events(HostId(9), 401, 200, 1_000, 3));
    }
}
