//! The sensor's TOML configuration, parsed once and validated as a whole:
//! [`Config::from_toml`] reports every problem at once, each with its key.
//!
//! ```toml
//! appliance = "10.0.0.1:7443"        # required, HOST:PORT
//! state_dir = "/var/lib/vigil-sensor" # holds key, cert, CA, host id, spool
//!
//! [spool]
//! max_bytes = 1073741824
//! max_age = "7d"
//!
//! [uplink]
//! batch_max_events = 2000
//! batch_max_ms = 500
//! heartbeat_ms = 10000
//! backoff_min_ms = 200
//! backoff_max_ms = 30000
//! connect_timeout_ms = 5000
//!
//! [budget]
//! cpu_pct = 1.0
//!
//! [collectors]
//! process = true
//! process_backend = "auto"           # "auto" | "ebpf" | "connector"
//! network = true
//! network_poll_ms = 1000
//! auth = true
//! auth_log = "/var/log/auth.log"
//! files = true
//! file_paths = ["/etc/passwd"]        # default: the persistence paths
//!
//! [response]
//! refuse = ["collect"]               # isolate, kill, collect, list, accounts, block
//! ```

use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key, e.g. `uplink.batch_max_events`.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Configuration could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys / wrong types.
    #[error("config syntax: {0}")]
    Syntax(String),
    /// The file parsed, but values are invalid; all of them are listed.
    #[error("invalid config:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigProblem>),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    appliance: Option<String>,
    state_dir: Option<PathBuf>,
    #[serde(default)]
    spool: RawSpool,
    #[serde(default)]
    uplink: RawUplink,
    #[serde(default)]
    budget: RawBudget,
    #[serde(default)]
    collectors: RawCollectors,
    #[serde(default)]
    response: RawResponse,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawResponse {
    refuse: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSpool {
    dir: Option<PathBuf>,
    max_bytes: Option<i64>,
    max_age: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUplink {
    batch_max_events: Option<i64>,
    batch_max_ms: Option<i64>,
    heartbeat_ms: Option<i64>,
    backoff_min_ms: Option<i64>,
    backoff_max_ms: Option<i64>,
    connect_timeout_ms: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    cpu_pct: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCollectors {
    process: Option<bool>,
    process_backend: Option<String>,
    network: Option<bool>,
    network_poll_ms: Option<i64>,
    auth: Option<bool>,
    auth_log: Option<PathBuf>,
    files: Option<bool>,
    file_paths: Option<Vec<PathBuf>>,
}

/// A validated sensor configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Appliance address, `HOST:PORT`.
    pub appliance: String,
    /// State directory (key, certificate, CA, host id, spool).
    pub state_dir: PathBuf,
    /// Spool directory (default `<state_dir>/spool`).
    pub spool_dir: PathBuf,
    /// Spool byte bound.
    pub spool_max_bytes: u64,
    /// Spool age bound.
    pub spool_max_age: Duration,
    /// Send a batch at this many events...
    pub batch_max_events: usize,
    /// ...or after this long, whichever comes first.
    pub batch_max: Duration,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Give up on a connection attempt after this long.
    pub connect_timeout: Duration,
    /// CPU budget, percent of one core.
    pub cpu_budget_pct: f32,
    /// Which collectors run and how.
    pub collectors: CollectorsConfig,
    /// Network namespace to watch as this host (`--netns`), if any.
    pub netns: Option<String>,
    /// Classes of response actions this sensor refuses (`response.refuse`).
    pub refuse: Vec<crate::response::ActionClass>,
}

/// Collector switches and parameters.
#[derive(Debug, Clone)]
pub struct CollectorsConfig {
    /// Process collector.
    pub process: bool,
    /// What the process collector runs on.
    pub process_backend: ProcessBackend,
    /// sock_diag network collector.
    pub network: bool,
    /// sock_diag poll interval (≤ 1 s).
    pub network_poll: Duration,
    /// Auth log collector.
    pub auth: bool,
    /// Auth log path.
    pub auth_log: PathBuf,
    /// inotify file collector.
    pub files: bool,
    /// Watched paths; `None` means the defaults (see [`crate::collect::files::default_paths`]).
    pub file_paths: Option<Vec<PathBuf>>,
}

/// What the process collector runs on (`collectors.process_backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessBackend {
    /// eBPF when it loads, else the netlink connector (health says why).
    #[default]
    Auto,
    /// eBPF only: the sensor does not start when it cannot load.
    Ebpf,
    /// The netlink process connector with `/proc` reads.
    Connector,
}

impl std::str::FromStr for ProcessBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(ProcessBackend::Auto),
            "ebpf" => Ok(ProcessBackend::Ebpf),
            "connector" => Ok(ProcessBackend::Connector),
            other => Err(format!(
                "{other:?} is not a backend; use \"auto\", \"ebpf\" or \"connector\""
            )),
        }
    }
}

impl Default for CollectorsConfig {
    fn default() -> Self {
        CollectorsConfig {
            process: true,
            process_backend: ProcessBackend::Auto,
            network: true,
            network_poll: Duration::from_millis(1000),
            auth: true,
            auth_log: PathBuf::from("/var/log/auth.log"),
            files: true,
            file_paths: None,
        }
    }
}

impl Config {
    /// A configuration with defaults for everything but the appliance and state dir.
    pub fn new(appliance: impl Into<String>, state_dir: impl Into<PathBuf>) -> Config {
        let state_dir = state_dir.into();
        Config {
            appliance: appliance.into(),
            spool_dir: state_dir.join("spool"),
            state_dir,
            spool_max_bytes: 1 << 30,
            spool_max_age: Duration::from_secs(7 * 24 * 3600),
            batch_max_events: 2000,
            batch_max: Duration::from_millis(500),
            heartbeat: Duration::from_secs(10),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            cpu_budget_pct: 1.0,
            collectors: CollectorsConfig::default(),
            netns: None,
            refuse: Vec::new(),
        }
    }

    /// Read and validate a config file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text)
    }

    /// Parse and validate TOML text, reporting every problem at once.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let mut problems = Problems::default();
        let appliance = appliance(raw.appliance, &mut problems);
        let state_dir = raw
            .state_dir
            .unwrap_or_else(|| PathBuf::from("/var/lib/vigil-sensor"));
        if state_dir.as_os_str().is_empty() {
            problems.add("state_dir", "must not be empty".into());
        }
        let mut cfg = Config::new(appliance, state_dir);
        // Sections in this order, so problems are listed as they always were.
        apply_spool(raw.spool, &mut cfg, &mut problems);
        apply_timings(&raw.uplink, &raw.collectors, &mut cfg, &mut problems);
        apply_uplink_limits(&raw.uplink, &mut cfg, &mut problems);
        if let Some(c) = raw.budget.cpu_pct {
            if !(0.01..=100.0).contains(&c) {
                problems.add(
                    "budget.cpu_pct",
                    format!("{c} is out of range; use 0.01..=100"),
                );
            } else {
                cfg.cpu_budget_pct = c as f32;
            }
        }
        apply_collectors(raw.collectors, &mut cfg, &mut problems);
        for (i, name) in raw.response.refuse.unwrap_or_default().iter().enumerate() {
            match name.parse() {
                Ok(class) if !cfg.refuse.contains(&class) => cfg.refuse.push(class),
                Ok(_) => {}
                Err(e) => problems.add(format!("response.refuse[{i}]"), e),
            }
        }
        if problems.0.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid(problems.0))
        }
    }
}

/// The problems found so far, each with its key.
#[derive(Debug, Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: String) {
        self.0.push(ConfigProblem {
            key: key.into(),
            message,
        });
    }

    /// Set `slot` from a millisecond value within `min..=max`, or note why not.
    fn ms(&mut self, key: &str, v: Option<i64>, (min, max): (i64, i64), slot: &mut Duration) {
        if let Some(v) = v {
            if v < min || v > max {
                self.add(key, format!("{v} is out of range; use {min}..={max}"));
            } else {
                *slot = Duration::from_millis(v as u64);
            }
        }
    }
}

/// The appliance's `HOST:PORT` (empty when missing, which is a problem).
fn appliance(raw: Option<String>, problems: &mut Problems) -> String {
    match raw {
        None => {
            problems.add(
                "appliance",
                "missing; set it to the appliance's HOST:PORT".into(),
            );
            String::new()
        }
        Some(a) => {
            if !valid_host_port(&a) {
                problems.add(
                    "appliance",
                    format!("{a:?} is not HOST:PORT (e.g. \"10.0.0.1:7443\")"),
                );
            }
            a
        }
    }
}

fn apply_spool(raw: RawSpool, cfg: &mut Config, problems: &mut Problems) {
    if let Some(d) = raw.dir {
        cfg.spool_dir = d;
    }
    if let Some(b) = raw.max_bytes {
        if b < 1 << 20 {
            problems.add(
                "spool.max_bytes",
                format!("{b} is too small; use at least 1048576 (1 MiB)"),
            );
        } else {
            cfg.spool_max_bytes = b as u64;
        }
    }
    if let Some(a) = raw.max_age {
        match humantime::parse_duration(&a) {
            Ok(d) if d >= Duration::from_secs(60) => cfg.spool_max_age = d,
            Ok(_) => problems.add("spool.max_age", format!("{a:?} is shorter than 1 minute")),
            Err(e) => problems.add("spool.max_age", format!("{a:?}: {e} (e.g. \"7d\")")),
        }
    }
}

/// Every `*_ms` setting, each within its range.
fn apply_timings(up: &RawUplink, col: &RawCollectors, cfg: &mut Config, problems: &mut Problems) {
    problems.ms(
        "uplink.batch_max_ms",
        up.batch_max_ms,
        (1, 60_000),
        &mut cfg.batch_max,
    );
    problems.ms(
        "uplink.heartbeat_ms",
        up.heartbeat_ms,
        (100, 600_000),
        &mut cfg.heartbeat,
    );
    problems.ms(
        "uplink.backoff_min_ms",
        up.backoff_min_ms,
        (10, 60_000),
        &mut cfg.backoff_min,
    );
    problems.ms(
        "uplink.backoff_max_ms",
        up.backoff_max_ms,
        (10, 3_600_000),
        &mut cfg.backoff_max,
    );
    problems.ms(
        "uplink.connect_timeout_ms",
        up.connect_timeout_ms,
        (100, 120_000),
        &mut cfg.connect_timeout,
    );
    problems.ms(
        "collectors.network_poll_ms",
        col.network_poll_ms,
        (50, 1000),
        &mut cfg.collectors.network_poll,
    );
}

fn apply_uplink_limits(up: &RawUplink, cfg: &mut Config, problems: &mut Problems) {
    if let Some(n) = up.batch_max_events {
        let max = vigil_proto::limits::MAX_BATCH_EVENTS as i64;
        if n < 1 || n > max {
            problems.add(
                "uplink.batch_max_events",
                format!("{n} is out of range; use 1..={max}"),
            );
        } else {
            cfg.batch_max_events = n as usize;
        }
    }
    if cfg.backoff_min > cfg.backoff_max {
        problems.add(
            "uplink.backoff_min_ms",
            "must not exceed uplink.backoff_max_ms".into(),
        );
    }
}

fn apply_collectors(c: RawCollectors, cfg: &mut Config, problems: &mut Problems) {
    cfg.collectors.process = c.process.unwrap_or(true);
    if let Some(b) = c.process_backend {
        match b.parse() {
            Ok(b) => cfg.collectors.process_backend = b,
            Err(message) => problems.add("collectors.process_backend", message),
        }
    }
    cfg.collectors.network = c.network.unwrap_or(true);
    cfg.collectors.auth = c.auth.unwrap_or(true);
    cfg.collectors.files = c.files.unwrap_or(true);
    if let Some(p) = c.auth_log {
        if !p.is_absolute() {
            problems.add(
                "collectors.auth_log",
                format!("{} must be an absolute path", p.display()),
            );
        }
        cfg.collectors.auth_log = p;
    }
    if let Some(paths) = c.file_paths {
        for (i, p) in paths.iter().enumerate() {
            if !p.is_absolute() {
                problems.add(
                    format!("collectors.file_paths[{i}]"),
                    format!("{} must be an absolute path", p.display()),
                );
            }
        }
        cfg.collectors.file_paths = Some(paths);
    }
}

fn valid_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c =
            Config::from_toml("appliance = \"127.0.0.1:7443\"\nstate_dir = \"/tmp/x\"").unwrap();
        assert_eq!(c.appliance, "127.0.0.1:7443");
        assert_eq!(c.spool_dir, PathBuf::from("/tmp/x/spool"));
        assert_eq!(c.spool_max_bytes, 1 << 30);
        assert_eq!(c.heartbeat, Duration::from_secs(10));
        assert_eq!(c.collectors.auth_log, PathBuf::from("/var/log/auth.log"));
        assert_eq!(c.collectors.process_backend, ProcessBackend::Auto);
    }

    #[test]
    fn full_config_parses() {
        let text = r#"
            appliance = "appliance.lan:7443"
            state_dir = "/var/lib/vs"
            [spool]
            max_bytes = 2097152
            max_age = "2h"
            [uplink]
            batch_max_events = 10
            batch_max_ms = 50
            heartbeat_ms = 1000
            [budget]
            cpu_pct = 5.0
            [collectors]
            process_backend = "connector"
            network_poll_ms = 250
            auth_log = "/tmp/auth.log"
            file_paths = ["/etc/passwd"]
            [response]
            refuse = ["collect", "accounts"]
        "#;
        let c = Config::from_toml(text).unwrap();
        use crate::response::ActionClass;
        assert_eq!(c.refuse, vec![ActionClass::Collect, ActionClass::Accounts]);
        assert_eq!(c.spool_max_age, Duration::from_secs(7200));
        assert_eq!(c.batch_max_events, 10);
        assert_eq!(c.collectors.network_poll, Duration::from_millis(250));
        assert_eq!(c.collectors.process_backend, ProcessBackend::Connector);
        assert_eq!(c.cpu_budget_pct, 5.0);
        assert_eq!(
            c.collectors.file_paths,
            Some(vec![PathBuf::from("/etc/passwd")])
        );
    }

    #[test]
    fn an_unknown_response_class_is_reported_with_its_key() {
        let text = "appliance = \"a:1\"\n[response]\nrefuse = [\"kill\", \"nuke\"]\n";
        match Config::from_toml(text) {
            Err(ConfigError::Invalid(p)) => {
                assert_eq!(p.len(), 1);
                assert_eq!(p[0].key, "response.refuse[1]");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn all_problems_reported_at_once_with_keys() {
        let text = r#"
            appliance = "nope"
            [spool]
            max_bytes = 10
            max_age = "soon"
            [uplink]
            batch_max_events = 0
            heartbeat_ms = 5
            [budget]
            cpu_pct = 500.0
            [collectors]
            process_backend = "bpf"
            network_poll_ms = 5000
            auth_log = "relative.log"
            file_paths = ["/ok", "bad"]
        "#;
        let Err(ConfigError::Invalid(problems)) = Config::from_toml(text) else {
            panic!("expected invalid");
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "appliance",
                "spool.max_bytes",
                "spool.max_age",
                "uplink.heartbeat_ms",
                "collectors.network_poll_ms",
                "uplink.batch_max_events",
                "budget.cpu_pct",
                "collectors.process_backend",
                "collectors.auth_log",
                "collectors.file_paths[1]",
            ]
        );
        let msg = ConfigError::Invalid(problems).to_string();
        assert!(msg.contains("budget.cpu_pct: 500 is out of range"), "{msg}");
        assert!(
            msg.contains("collectors.process_backend: \"bpf\" is not a backend"),
            "{msg}"
        );
    }

    #[test]
    fn missing_appliance_and_unknown_key() {
        let Err(ConfigError::Invalid(p)) = Config::from_toml("state_dir = \"/x\"") else {
            panic!()
        };
        assert_eq!(p[0].key, "appliance");
        let Err(ConfigError::Syntax(s)) = Config::from_toml("appliance = \"a:1\"\nbogus = 1")
        else {
            panic!()
        };
        assert!(s.contains("bogus"), "{s}");
    }
}
