//! The event model: a common [`EventHeader`] plus a typed [`Payload`].
//!
//! Windows-sourced records (Sysmon, Security log, via the `datasets`
//! adapters) map onto the same payloads, so detection sees one model.
//!
//! Every type here is stored on disk and sent on the wire as postcard, which
//! writes fields in declaration order and enum variants by index: never
//! reorder, only append variants; pinned by `tests/golden.rs`. Adding a
//! struct field changes the format too (postcard has no field defaults), so
//! it needs a migration or a new protocol version.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Identity of one monitored host, assigned by the appliance at enrollment
/// and bound into the sensor's client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostId(pub u64);

impl HostId {
    /// Set in the ids the appliance derives for unmanaged peers (hosts it
    /// knows only as an address or a name); never set in an id assigned at
    /// enrollment, nor in the ids data sets give the hosts they simulate,
    /// so the two kinds never collide.
    pub const UNMANAGED_BIT: u64 = 1 << 63;

    /// Whether this id names an unmanaged peer rather than an enrolled host.
    pub fn is_unmanaged(self) -> bool {
        self.0 & Self::UNMANAGED_BIT != 0
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for HostId {
    type Err = std::num::ParseIntError;
    /// Parses the 16-hex-digit form printed by `Display`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(HostId)
    }
}

/// Header common to every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventHeader {
    /// Host the event happened on.
    pub host: HostId,
    /// The sensor's monotonic sequence number (gap-free per host, starts at 1).
    pub seq: u64,
    /// Wall-clock time the sensor observed the event, ns since the Unix epoch.
    pub ts_ns: u64,
}

/// One observed event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Who, which sequence number, when.
    pub header: EventHeader,
    /// What happened.
    pub payload: Payload,
}

impl Event {
    /// The event's kind, derived from its payload.
    pub fn kind(&self) -> EventKind {
        self.payload.kind()
    }
}

/// What happened, typed. The appliance reads an event's kind from the
/// postcard variant index, so variants follow [`EventKind::ALL`] order.
///
/// Never reorder, only append; pinned by `tests/golden.rs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    /// A process started (exec, or fork then exec).
    ProcessStart(ProcessStart),
    /// A process exited.
    ProcessExit(ProcessExit),
    /// This host opened a connection (or sent a UDP datagram) to a peer.
    NetConnect(NetFlow),
    /// A peer connected to a listening socket on this host.
    NetAccept(NetFlow),
    /// A successful logon.
    Login(LoginInfo),
    /// A session ended.
    Logout(LoginInfo),
    /// A failed logon attempt.
    AuthFailure(LoginInfo),
    /// A watched file changed.
    FileChange(FileChange),
    /// The sensor's own health, sent with each heartbeat.
    SensorHealth(SensorHealth),
    /// Events the sensor had to drop, and which seq range they had.
    Loss(LossRecord),
    /// The outcome of a response command.
    ResponseResult(ResponseResult),
    /// Evidence that local telemetry was forged (e.g. an auth-log line
    /// tagged sshd that no root-owned sshd wrote).
    Tamper(TamperRecord),
}

/// Kinds of event, one per [`Payload`] variant. Stable `u8` codes are used in
/// storage keys and filters.
///
/// Never reorder, only append; pinned by `tests/golden.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum EventKind {
    ProcessStart = 1,
    ProcessExit = 2,
    NetConnect = 3,
    NetAccept = 4,
    Login = 5,
    Logout = 6,
    AuthFailure = 7,
    FileChange = 8,
    SensorHealth = 9,
    Loss = 10,
    ResponseResult = 11,
    Tamper = 12,
}

impl EventKind {
    /// All kinds, in code order.
    pub const ALL: [EventKind; 12] = [
        EventKind::ProcessStart,
        EventKind::ProcessExit,
        EventKind::NetConnect,
        EventKind::NetAccept,
        EventKind::Login,
        EventKind::Logout,
        EventKind::AuthFailure,
        EventKind::FileChange,
        EventKind::SensorHealth,
        EventKind::Loss,
        EventKind::ResponseResult,
        EventKind::Tamper,
    ];

    /// The stable one-byte code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Kind from its one-byte code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.code() == code)
    }

    /// The snake_case name used on the command line and in the UI.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::ProcessStart => "process_start",
            EventKind::ProcessExit => "process_exit",
            EventKind::NetConnect => "net_connect",
            EventKind::NetAccept => "net_accept",
            EventKind::Login => "login",
            EventKind::Logout => "logout",
            EventKind::AuthFailure => "auth_failure",
            EventKind::FileChange => "file_change",
            EventKind::SensorHealth => "sensor_health",
            EventKind::Loss => "loss",
            EventKind::ResponseResult => "response_result",
            EventKind::Tamper => "tamper",
        }
    }

    /// Kind from its snake_case name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Payload {
    /// The kind of this payload.
    pub fn kind(&self) -> EventKind {
        match self {
            Payload::ProcessStart(_) => EventKind::ProcessStart,
            Payload::ProcessExit(_) => EventKind::ProcessExit,
            Payload::NetConnect(_) => EventKind::NetConnect,
            Payload::NetAccept(_) => EventKind::NetAccept,
            Payload::Login(_) => EventKind::Login,
            Payload::Logout(_) => EventKind::Logout,
            Payload::AuthFailure(_) => EventKind::AuthFailure,
            Payload::FileChange(_) => EventKind::FileChange,
            Payload::SensorHealth(_) => EventKind::SensorHealth,
            Payload::Loss(_) => EventKind::Loss,
            Payload::ResponseResult(_) => EventKind::ResponseResult,
            Payload::Tamper(_) => EventKind::Tamper,
        }
    }
}

/// A process start, enriched from `/proc/<pid>` when the process lived long
/// enough; fields the sensor could not read are `None`/empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProcessStart {
    pub pid: u32,
    pub ppid: u32,
    /// Executable path (`/proc/<pid>/exe`, or the image path on Windows).
    pub exe: Option<String>,
    /// Arguments, bounded by [`crate::limits::MAX_ARGV`].
    pub argv: Vec<String>,
    pub uid: Option<u32>,
    pub user: Option<String>,
    pub cwd: Option<String>,
    pub parent_exe: Option<String>,
    /// Process start time, ns since the Unix epoch.
    pub start_time_ns: Option<u64>,
    /// Network-namespace inode (Linux); 0 when unknown.
    pub netns: u64,
    /// True when enrichment failed because the process was already gone.
    pub exited_before_enrichment: bool,
}

/// A process exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProcessExit {
    pub pid: u32,
    pub exit_code: Option<i32>,
    pub exe: Option<String>,
}

/// Transport protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Transport {
    Tcp,
    Udp,
}

/// One network flow as seen from this host (5-tuple plus attribution).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetFlow {
    pub transport: Transport,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub pid: Option<u32>,
    pub exe: Option<String>,
    /// How many identical flows this record stands for (1 unless the sensor
    /// aggregated repeats to stay within its CPU budget).
    pub repeat: u32,
}

/// How a logon authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuthMethod {
    Password,
    PublicKey,
    KeyboardInteractive,
    Kerberos,
    Ntlm,
    Other(String),
}

/// Which service took the logon.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LoginService {
    Ssh,
    Su,
    Sudo,
    Console,
    Smb,
    Rdp,
    WinRm,
    Wmi,
    Other(String),
}

/// A logon, logoff or failed logon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginInfo {
    /// Target account (the one logged into).
    pub user: String,
    pub method: AuthMethod,
    pub service: LoginService,
    pub src_addr: Option<IpAddr>,
    pub src_port: Option<u16>,
    /// Source machine name when the log gives one (Windows workstation name).
    pub src_host: Option<String>,
    /// Account that initiated it (`su`/`sudo` caller), if different.
    pub from_user: Option<String>,
    pub pid: Option<u32>,
}

/// What happened to a watched file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileOp {
    Created,
    Modified,
    Deleted,
    Renamed,
    Attributes,
}

/// A change under a watched path. Never carries content, only metadata and a
/// hash (so `/etc/shadow` is watched without shipping secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    pub path: String,
    pub op: FileOp,
    pub size: Option<u64>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub sha256: Option<[u8; 32]>,
    pub pid: Option<u32>,
}

/// Whether a collector can see what it is meant to see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Visibility {
    Working,
    Degraded(String),
    Unavailable(String),
}

/// One collector's state and rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectorHealth {
    pub name: String,
    pub visibility: Visibility,
    pub events_per_s: f32,
    /// Things the collector knows it missed (e.g. proc-connector overruns).
    pub missed_total: u64,
}

/// The sensor's self-measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorHealth {
    /// CPU used by the sensor process, percent of one core, over the last interval.
    pub cpu_pct: f32,
    pub rss_bytes: u64,
    pub events_per_s: f32,
    pub spool_bytes: u64,
    /// Events dropped since start (all reasons).
    pub dropped_total: u64,
    /// Low-value events folded into aggregates because of the CPU budget.
    pub aggregated_total: u64,
    pub collectors: Vec<CollectorHealth>,
}

/// Why events were dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LossReason {
    /// The spool hit its byte bound and dropped its oldest records.
    SpoolFull,
    /// Records outlived the spool's age bound.
    SpoolAge,
    /// A spool record failed its checksum (torn write, bad disk).
    Corrupt,
    /// The kernel dropped notifications (e.g. netlink ENOBUFS).
    KernelOverrun,
    Other(String),
}

/// Exactly which events were lost, so loss is never silent. Receivers must
/// call [`LossRecord::validate`] before counting one, and sum counts with
/// [`LossRecord::saturating_total`] (or `saturating_add`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossRecord {
    pub from_seq: u64,
    pub to_seq: u64,
    pub count: u64,
    pub reason: LossReason,
}

/// The outcome of a response command, also kept as an event for the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseResult {
    pub command_id: u64,
    pub ok: bool,
    pub message: String,
}

/// A sensor's evidence that local telemetry was forged: e.g. an auth-log line
/// tagged `sshd` that no root-owned sshd wrote. The forged record itself is
/// not turned into an event; this record says it was seen and why it was
/// refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TamperRecord {
    /// Which telemetry source was forged (`auth_log`…).
    pub source: String,
    /// Stable label for why it is considered forged
    /// (`sshd_line_not_from_sshd`…), usable as a counter label.
    pub reason: String,
    /// A bounded excerpt of the forged input, for the analyst.
    pub detail: String,
}
