//! A deterministic synthetic enterprise with injected, labelled ATT&CK
//! lateral-movement campaigns.
//!
//! The fleet has workstations (one owner each), Windows and Linux servers,
//! admins with their own admin workstations, a helpdesk, service accounts
//! (backup, monitoring), and a vulnerability scanner. Users work office
//! hours on weekdays. Legitimate novelty is built in: users slowly pick up
//! new servers, admins touch servers they never touched, helpdesk RDPs into
//! arbitrary workstations, new hires appear with new workstations, and a new
//! server goes live that everyone starts using. Campaigns (test days only)
//! start on a phished workstation and hop 2–4 times in one of six styles.
//!
//! Same seed and config → byte-identical event stream.

mod benign;
mod campaigns;
mod sessions;
mod topology;

use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::net::IpAddr;
use vigil_proto::{Event, EventHeader, HostId, Payload};

const NS: u64 = 1_000_000_000;
const DAY: u64 = 86_400 * NS;
const HOUR: u64 = 3_600 * NS;
const MIN: u64 = 60 * NS;
/// Day 0 of the simulation: Monday 2024-01-01 00:00 UTC.
pub const EPOCH_NS: u64 = 1_704_067_200 * NS;

/// Size and length of the simulated enterprise.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// RNG seed.
    pub seed: u64,
    /// Days simulated.
    pub days: u32,
    /// Campaigns are only injected on days ≥ this (the first days are the
    /// training period).
    pub attack_from_day: u32,
    /// Ordinary workstations.
    pub workstations: usize,
    /// Windows servers.
    pub windows_servers: usize,
    /// Linux servers.
    pub linux_servers: usize,
    /// Admins (each with an admin workstation).
    pub admins: usize,
    /// Campaigns injected.
    pub campaigns: usize,
    /// New hires joining during the attack period.
    pub new_hires: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            seed: 1,
            days: 14,
            attack_from_day: 7,
            workstations: 60,
            windows_servers: 10,
            linux_servers: 6,
            admins: 4,
            campaigns: 6,
            new_hires: 4,
        }
    }
}

/// What a host is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An employee's workstation.
    Workstation,
    /// An admin's workstation.
    AdminWorkstation,
    /// Windows server.
    WindowsServer,
    /// Linux server.
    LinuxServer,
    /// Backup server (service account source).
    Backup,
    /// Monitoring server (WinRM polling).
    Monitor,
    /// Vulnerability scanner.
    Scanner,
}

/// One simulated host.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthHost {
    /// Id.
    pub id: HostId,
    /// Name.
    pub name: String,
    /// Address.
    pub addr: IpAddr,
    /// Role.
    pub role: Role,
    /// First day it exists.
    pub from_day: u32,
}

/// The lateral-movement style of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// SSH hops between Linux servers with a planted key.
    SshChain,
    /// SMB admin share + service install (PsExec), pass-the-hash.
    PsExec,
    /// WMI process create.
    Wmi,
    /// WinRM / PowerShell remoting.
    WinRm,
    /// RDP with stolen credentials.
    Rdp,
    /// Plain logons with stolen valid credentials.
    StolenCreds,
}

impl Style {
    const ALL: [Style; 6] = [
        Style::SshChain,
        Style::PsExec,
        Style::Wmi,
        Style::WinRm,
        Style::Rdp,
        Style::StolenCreds,
    ];

    /// Main ATT&CK technique.
    pub fn technique(self) -> &'static str {
        match self {
            Style::SshChain => "T1021.004",
            Style::PsExec => "T1569.002",
            Style::Wmi => "T1047",
            Style::WinRm => "T1021.006",
            Style::Rdp => "T1021.001",
            Style::StolenCreds => "T1078",
        }
    }
}

/// Ground truth of one injected campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    /// Campaign number (1-based).
    pub id: u32,
    /// Style.
    pub style: Style,
    /// Hosts in hop order.
    pub path: Vec<HostId>,
    /// Start time, ns.
    pub start_ns: u64,
}

/// An event with its label (campaign id when malicious).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledEvent {
    /// The event.
    pub event: Event,
    /// Campaign it belongs to, if any.
    pub campaign: Option<u32>,
}

#[derive(Debug, Clone)]
struct User {
    name: String,
    home: usize,
    servers: Vec<usize>,
    from_day: u32,
}

/// The generator. Call [`Generator::day`] for each day in order.
pub struct Generator {
    cfg: SynthConfig,
    rng: StdRng,
    hosts: Vec<SynthHost>,
    users: Vec<User>,
    admins: Vec<User>,
    campaigns: Vec<Campaign>,
    seq: BTreeMap<HostId, u64>,
    pid: u32,
}

struct Raw {
    host: usize,
    ts: u64,
    payload: Payload,
    campaign: Option<u32>,
}

impl Generator {
    /// Builds the fleet and plans the campaigns.
    pub fn new(cfg: SynthConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let hosts = topology::hosts(&cfg);
        let users = topology::users(&hosts, &mut rng);
        let admins = topology::admins(&hosts, &mut rng);
        let mut g = Generator {
            cfg,
            rng,
            hosts,
            users,
            admins,
            campaigns: Vec::new(),
            seq: BTreeMap::new(),
            pid: 1000,
        };
        g.plan_campaigns();
        g
    }

    fn idx(&self, f: impl Fn(&SynthHost) -> bool) -> Vec<usize> {
        self.hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| f(h))
            .map(|(i, _)| i)
            .collect()
    }

    /// Every host that will ever exist (register them with the detector).
    pub fn hosts(&self) -> &[SynthHost] {
        &self.hosts
    }

    /// The planned campaigns (ground truth).
    pub fn campaigns(&self) -> &[Campaign] {
        &self.campaigns
    }

    /// Configuration.
    pub fn config(&self) -> &SynthConfig {
        &self.cfg
    }

    fn next_pid(&mut self) -> u32 {
        self.pid = self.pid.wrapping_add(1).max(1000);
        self.pid
    }

    /// All events of day `d`, time-ordered, with per-host gap-free seqs.
    pub fn day(&mut self, d: u32) -> Vec<LabelledEvent> {
        let mut raw: Vec<Raw> = Vec::new();
        let day0 = EPOCH_NS + u64::from(d) * DAY;
        let weekday = d % 7 < 5;
        self.users_day(d, day0, weekday, &mut raw);
        self.admins_day(d, day0, weekday, &mut raw);
        self.services_day(d, day0, &mut raw);
        let camps: Vec<Campaign> = self
            .campaigns
            .iter()
            .filter(|c| c.start_ns >= day0 && c.start_ns < day0 + DAY)
            .cloned()
            .collect();
        for c in camps {
            self.campaign(&c, &mut raw);
        }
        raw.sort_by_key(|r| (r.ts, r.host));
        raw.into_iter()
            .map(|r| {
                let id = self.hosts[r.host].id;
                let s = self.seq.entry(id).or_insert(0);
                *s += 1;
                LabelledEvent {
                    event: Event {
                        header: EventHeader {
                            host: id,
                            seq: *s,
                            ts_ns: r.ts,
                        },
                        payload: r.payload,
                    },
                    campaign: r.campaign,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> SynthConfig {
        SynthConfig {
            seed,
            days: 9,
            attack_from_day: 7,
            workstations: 12,
            windows_servers: 4,
            linux_servers: 3,
            admins: 2,
            campaigns: 3,
            new_hires: 1,
        }
    }

    #[test]
    fn same_seed_same_stream() {
        let mut a = Generator::new(small(7));
        let mut b = Generator::new(small(7));
        for d in 0..9 {
            assert_eq!(a.day(d), b.day(d));
        }
        let mut c = Generator::new(small(8));
        let mut a = Generator::new(small(7));
        assert_ne!(a.day(1), c.day(1));
    }

    #[test]
    fn campaigns_are_labelled_only_in_attack_days_and_seqs_are_gap_free() {
        let mut g = Generator::new(small(3));
        let mut last: BTreeMap<HostId, u64> = BTreeMap::new();
        let mut labelled = 0;
        for d in 0..9 {
            for le in g.day(d) {
                let h = le.event.header;
                assert_eq!(last.insert(h.host, h.seq).unwrap_or(0) + 1, h.seq);
                if le.campaign.is_some() {
                    labelled += 1;
                    assert!(h.ts_ns >= EPOCH_NS + 7 * DAY);
                }
            }
        }
        assert!(labelled > 10, "{labelled}");
        assert_eq!(g.campaigns().len(), 3);
    }
}
