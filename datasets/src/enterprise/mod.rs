//! An independent enterprise generator in LANL 2015 format, for an
//! evaluation the detector's authors cannot tune themselves into.
//!
//! It is designed from how Windows enterprise networks behave (the LANL 2015
//! auth data, Windows logon types, Kerberos), not from how Vigil scores:
//!
//! - users log on at one or two machines of their own, sometimes at a shared
//!   or a colleague's machine; helpdesk staff RDP into anyone's workstation;
//! - admins work from admin workstations, mostly through jump hosts (benign
//!   two-hop chains admin → jump → server, minutes apart), sometimes at night;
//! - machine accounts (`C123$`) and `SYSTEM` log on locally and to the domain
//!   controllers all day; every session brings Kerberos TGT/TGS records;
//! - shared service accounts run from application servers to databases day
//!   and night; a backup server logs on to every host each night and a
//!   monitoring server to every server every half hour; a vulnerability
//!   scanner sweeps a fifth of the fleet each weekday evening;
//! - failed logons: typos, expired passwords, a service account with a stale
//!   password failing for hours, scanner failures;
//! - sites in four time zones, working hours, quiet weekends;
//! - new hires with new workstations, a new server that users adopt, and a
//!   contractor laptop that appears once, all after the training period.
//!
//! Names are anonymised the way LANL's are (`U4821@DOM1`, `C1733`), with
//! numbers drawn at random so that a name says nothing about a role.
//!
//! # Campaigns and labels
//!
//! Campaigns ([`Style`]) start after the training period (`train_days`,
//! from the configuration, never from the attack), at a random time. Their
//! successful logons go to `redteam.txt` (LANL semantics: the compromise
//! events) and are the positives. Every line an attack writes, including
//! the spray's failures and the Kerberos tickets of each hop, is listed in
//! `campaigns.tsv` (`time, user, src, dst, style, campaign, kind` with kind
//! `hop` or `context`), which only the scorer reads: `context` lines are
//! attack traffic but not compromise events, so the scorer counts them
//! neither as positives nor as false positives. Nothing in `auth.txt` marks
//! an attack: attackers use existing accounts, the same authentication and
//! logon types as benign traffic and the same naming.
//!
//! # Tuning and held-out split
//!
//! Tune on [`TUNING_STYLES`] with seeds 1–3; report on [`HELD_OUT_STYLES`]
//! with seeds 101–103 (`vigil eval enterprise --holdout`). Benign traffic
//! depends only on the seed and the fleet size (its own RNG stream), so the
//! styles chosen never change the benign lines.
//!
//! Same configuration → byte-identical files.

mod benign;
mod campaigns;
mod fleet;
mod write;

#[cfg(test)]
mod tests;

use rand::rngs::StdRng;
use rand::SeedableRng;
use std::fmt;
use std::path::Path;

pub use write::WriteSummary;

/// Seconds per day.
pub const DAY_S: u64 = 86_400;
const HOUR_S: u64 = 3_600;
const MIN_S: u64 = 60;

/// A campaign style. Names are stable: they appear in `campaigns.tsv`, on
/// the command line and in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Style {
    /// One source reaches four or more new destinations within an hour.
    FanOut,
    /// A chain of hops two hours to more than a day apart.
    SlowChain,
    /// Moves only over src → dst edges that benign traffic used in training,
    /// sometimes with another user's account.
    EdgeReuse,
    /// An admin's NTLM hash used at night or on a weekend.
    PthOffHours,
    /// A shared service account used from a host it never runs on.
    ServiceAccountAbuse,
    /// Many failed logons from one source across hosts and users, then a
    /// success and a hop onwards.
    SprayThenHop,
    /// Attack from a host that first appears during the test period.
    NoHistory,
}

/// Styles used for tuning (seeds 1–3).
pub const TUNING_STYLES: [Style; 3] = [Style::FanOut, Style::EdgeReuse, Style::ServiceAccountAbuse];
/// Styles held out from tuning (seeds 101–103).
pub const HELD_OUT_STYLES: [Style; 4] = [
    Style::SlowChain,
    Style::PthOffHours,
    Style::SprayThenHop,
    Style::NoHistory,
];
/// Seeds used for tuning.
pub const TUNING_SEEDS: [u64; 3] = [1, 2, 3];
/// Seeds used for held-out reporting.
pub const HELD_OUT_SEEDS: [u64; 3] = [101, 102, 103];

impl Style {
    /// Every style, in a fixed order.
    pub const ALL: [Style; 7] = [
        Style::FanOut,
        Style::SlowChain,
        Style::EdgeReuse,
        Style::PthOffHours,
        Style::ServiceAccountAbuse,
        Style::SprayThenHop,
        Style::NoHistory,
    ];

    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Style::FanOut => "fan-out",
            Style::SlowChain => "slow-chain",
            Style::EdgeReuse => "edge-reuse",
            Style::PthOffHours => "pth-off-hours",
            Style::ServiceAccountAbuse => "service-account-abuse",
            Style::SprayThenHop => "spray-then-hop",
            Style::NoHistory => "no-history",
        }
    }

    /// Parses a stable name.
    pub fn parse(name: &str) -> Option<Style> {
        Style::ALL.into_iter().find(|s| s.name() == name.trim())
    }
}

impl fmt::Display for Style {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Size, length and campaigns of one generated enterprise.
#[derive(Debug, Clone, PartialEq)]
pub struct EnterpriseConfig {
    /// RNG seed.
    pub seed: u64,
    /// Hosts present from the start (new ones appear later on top).
    pub hosts: usize,
    /// Days generated.
    pub days: u32,
    /// Days 1..=N are the training period; campaigns start after it.
    pub train_days: u32,
    /// Campaign styles injected.
    pub styles: Vec<Style>,
    /// Campaigns per style.
    pub campaigns_per_style: usize,
    /// Also write `flows.txt` (one TCP flow per remote logon plus
    /// background traffic to the domain controllers).
    pub flows: bool,
    /// Weekday of day 0 (0 = Monday). Default Thursday, so that the default
    /// 3 training days hold two workdays and a Saturday.
    pub start_weekday: u32,
}

impl Default for EnterpriseConfig {
    fn default() -> Self {
        EnterpriseConfig {
            seed: 1,
            hosts: 60,
            days: 7,
            train_days: 3,
            styles: TUNING_STYLES.to_vec(),
            campaigns_per_style: 2,
            flows: false,
            start_weekday: 3,
        }
    }
}

/// Why a configuration cannot be generated.
#[derive(Debug, thiserror::Error)]
pub enum EnterpriseError {
    /// The configuration is inconsistent.
    #[error("invalid enterprise config: {0}")]
    Config(String),
    /// Writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: std::path::PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

impl EnterpriseConfig {
    /// Checks the configuration, naming every problem at once.
    pub fn validate(&self) -> Result<(), EnterpriseError> {
        let mut problems = Vec::new();
        if self.hosts < 20 {
            problems.push(format!("hosts = {}: at least 20 are needed", self.hosts));
        }
        if self.train_days == 0 || self.train_days + 1 > self.days {
            problems.push(format!(
                "train_days = {} with days = {}: need 1 ≤ train_days < days",
                self.train_days, self.days
            ));
        }
        if self.start_weekday > 6 {
            problems.push(format!("start_weekday = {}: 0..=6", self.start_weekday));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(EnterpriseError::Config(problems.join("; ")))
        }
    }

    /// First second of the test period.
    pub fn split(&self) -> u64 {
        u64::from(self.train_days) * DAY_S
    }

    /// End of the data (exclusive).
    pub fn end(&self) -> u64 {
        u64::from(self.days) * DAY_S
    }
}

/// Who authenticates: LANL writes users, machine accounts, `SYSTEM` and
/// anonymous logons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Principal {
    /// `U{n}@DOM1` (people and service accounts alike).
    User(u32),
    /// `C{n}$@DOM1`, the computer account of host n.
    Machine(u32),
    /// `SYSTEM@C{n}`.
    System(u32),
    /// `ANONYMOUS LOGON@C{n}`.
    Anonymous(u32),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::User(n) => write!(f, "U{n}@DOM1"),
            Principal::Machine(n) => write!(f, "C{n}$@DOM1"),
            Principal::System(n) => write!(f, "SYSTEM@C{n}"),
            Principal::Anonymous(n) => write!(f, "ANONYMOUS LOGON@C{n}"),
        }
    }
}

/// Authentication package as LANL writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthType {
    /// `Kerberos`.
    Kerberos,
    /// `NTLM`.
    Ntlm,
    /// `Negotiate`.
    Negotiate,
    /// `?`.
    Unknown,
}

/// Logon type as LANL writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogonType {
    /// `Network` (type 3).
    Network,
    /// `Interactive` (type 2).
    Interactive,
    /// `RemoteInteractive` (type 10, RDP).
    RemoteInteractive,
    /// `Unlock` (type 7).
    Unlock,
    /// `Service` (type 5).
    Service,
    /// `?` (Kerberos ticket records, log-offs).
    Unknown,
}

/// Orientation as LANL writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Orientation {
    /// `LogOn`.
    LogOn,
    /// `LogOff`.
    LogOff,
    /// `TGT`.
    Tgt,
    /// `TGS`.
    Tgs,
}

/// One `auth.txt` line (host fields are host numbers, `C{n}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLine {
    /// Seconds since the start of the data.
    pub time: u64,
    /// Source principal.
    pub src_user: Principal,
    /// Destination principal.
    pub dst_user: Principal,
    /// Source computer number.
    pub src: u32,
    /// Destination computer number.
    pub dst: u32,
    /// Authentication package.
    pub auth: AuthType,
    /// Logon type.
    pub logon: LogonType,
    /// Orientation.
    pub orient: Orientation,
    /// Success (false: `Fail`).
    pub ok: bool,
}

/// What an attack line is to the scorer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelKind {
    /// A compromise event: in `redteam.txt`, a positive.
    Hop,
    /// Attack traffic that is not a compromise event (failures, tickets,
    /// log-offs): neither positive nor negative.
    Context,
}

/// The label of an attack line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    /// Style of the campaign.
    pub style: Style,
    /// Campaign number (0-based, unique within a data set).
    pub campaign: u32,
    /// Hop or context.
    pub kind: LabelKind,
}

/// A generated line and, for attack traffic, its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// The line.
    pub line: AuthLine,
    /// Label (None: benign).
    pub label: Option<Label>,
}

/// A generated enterprise: records sorted by time.
#[derive(Debug, Clone)]
pub struct Enterprise {
    /// Configuration it came from.
    pub config: EnterpriseConfig,
    /// Every auth line, sorted by time (stable).
    pub records: Vec<Record>,
    /// Number of campaigns injected.
    pub campaigns: usize,
}

/// Generates an enterprise (deterministic per configuration).
pub fn generate(cfg: &EnterpriseConfig) -> Result<Enterprise, EnterpriseError> {
    cfg.validate()?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let fleet = fleet::Fleet::new(cfg, &mut rng);
    let mut records: Vec<Record> = benign::generate(cfg, &fleet, &mut rng)
        .into_iter()
        .map(|line| Record { line, label: None })
        .collect();
    records.sort_by_key(|r| r.line.time);
    // A separate stream: the styles chosen never change benign traffic.
    let mut crng = StdRng::seed_from_u64(cfg.seed ^ 0x5EED_C0DE_A77A_C4ED);
    let (attacks, campaigns) = campaigns::generate(cfg, &fleet, &records, &mut crng);
    records.extend(attacks);
    records.sort_by_key(|r| r.line.time);
    Ok(Enterprise {
        config: cfg.clone(),
        records,
        campaigns,
    })
}

/// Generates and writes `auth.txt`, `redteam.txt`, `campaigns.tsv` (and
/// `flows.txt` when configured) to `dir` (created).
pub fn write_dir(cfg: &EnterpriseConfig, dir: &Path) -> Result<WriteSummary, EnterpriseError> {
    let e = generate(cfg)?;
    write::write(&e, dir)
}
