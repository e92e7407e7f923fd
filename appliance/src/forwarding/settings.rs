//! Where SIEM receivers come from: the operator's `DATA/forward.toml`
//! (read at start, never written by the appliance) and the console's
//! `DATA/forward/console.json` (admins add and remove; 0600, fsync'd and
//! renamed into place), with each console receiver's CA PEM in
//! `DATA/forward/ca/NAME.pem` (0600).
//!
//! ```toml
//! raw_events = false             # forward every stored event (default off)
//! checkpoint_every_secs = 300    # signed audit checkpoint to the receivers
//!
//! [[receiver]]
//! name = "siem"
//! address = "siem.example:6514"
//! transport = { type = "tls", ca_pem = "/etc/vigil/siem-ca.pem" }
//! format = "ocsf"                # ocsf | ecs | cef
//! kinds = ["alert", "incident", "audit", "checkpoint"]
//! from = "start"                 # audit from the log's first entry | "now"
//! ```

use crate::pki::write_private;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use vigil_forward::{ReceiverConfig, RecordKind, Transport};

/// The operator's configuration file, in the data directory.
pub const CONFIG_FILE: &str = "forward.toml";
/// Directory of the console's receivers, their CA files and the queues.
pub const FORWARD_DIR: &str = "forward";
const CONSOLE_FILE: &str = "console.json";
const CA_DIR: &str = "ca";
/// Queues, one directory per receiver name.
pub const QUEUE_DIR: &str = "queues";

/// Why receivers could not be read or saved.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{path}: {detail}")]
    File { path: PathBuf, detail: String },
}

fn file_err(path: &Path, detail: impl ToString) -> SettingsError {
    SettingsError::File {
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

/// `forward.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Forward raw events too (their volume is the fleet's event rate).
    #[serde(default)]
    pub raw_events: bool,
    /// How often the latest signed audit checkpoint is forwarded.
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_every_secs: u64,
    /// The receivers.
    #[serde(default, rename = "receiver")]
    pub receivers: Vec<ReceiverConfig>,
}

fn default_checkpoint_secs() -> u64 {
    300
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            raw_events: false,
            checkpoint_every_secs: default_checkpoint_secs(),
            receivers: Vec::new(),
        }
    }
}

/// Read `DATA/forward.toml` (defaults when absent).
pub fn load_file(data_dir: &Path) -> Result<FileConfig, SettingsError> {
    let path = data_dir.join(CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(e) => return Err(file_err(&path, e)),
    };
    let cfg: FileConfig = toml::from_str(&text).map_err(|e| file_err(&path, e))?;
    if cfg.checkpoint_every_secs == 0 {
        return Err(file_err(&path, "checkpoint_every_secs: at least 1"));
    }
    Ok(cfg)
}

/// The console's receivers (empty when none were saved).
pub fn load_console(data_dir: &Path) -> Result<Vec<ReceiverConfig>, SettingsError> {
    let path = data_dir.join(FORWARD_DIR).join(CONSOLE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| file_err(&path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(file_err(&path, e)),
    }
}

/// Save the console's receivers durably (0600, fsync, rename).
pub fn save_console(data_dir: &Path, receivers: &[ReceiverConfig]) -> Result<(), SettingsError> {
    let dir = forward_dir(data_dir)?;
    let path = dir.join(CONSOLE_FILE);
    let json = serde_json::to_vec_pretty(receivers).map_err(|e| file_err(&path, e))?;
    write_private(&path, &json).map_err(|e| file_err(&path, e))
}

/// Write a console receiver's CA PEM (0600); returns its path.
pub fn save_ca(data_dir: &Path, name: &str, pem: &str) -> Result<PathBuf, SettingsError> {
    let dir = forward_dir(data_dir)?.join(CA_DIR);
    private_dir(&dir)?;
    let path = dir.join(format!("{name}.pem"));
    write_private(&path, pem.as_bytes()).map_err(|e| file_err(&path, e))?;
    Ok(path)
}

/// Remove a console receiver's CA file, if it has one under our directory.
pub fn remove_ca(data_dir: &Path, rc: &ReceiverConfig) {
    if let Transport::Tls { ca_pem, .. } = &rc.transport {
        if ca_pem.starts_with(data_dir.join(FORWARD_DIR).join(CA_DIR)) {
            let _ = std::fs::remove_file(ca_pem);
        }
    }
}

/// `DATA/forward`, created 0700.
pub fn forward_dir(data_dir: &Path) -> Result<PathBuf, SettingsError> {
    let dir = data_dir.join(FORWARD_DIR);
    private_dir(&dir)?;
    Ok(dir)
}

/// `dir` (and its parents), created 0700.
pub(super) fn private_dir(dir: &Path) -> Result<(), SettingsError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| file_err(dir, e))
}

/// A console receiver from the console's validated form.
pub fn console_receiver(
    data_dir: &Path,
    new: &vigil_web_ui::pages::receivers::NewReceiver,
) -> Result<ReceiverConfig, SettingsError> {
    let host = if new.host.contains(':') {
        format!("[{}]", new.host)
    } else {
        new.host.clone()
    };
    let transport = match &new.tls_ca_pem {
        None => Transport::Tcp,
        Some(pem) => Transport::Tls {
            ca_pem: save_ca(data_dir, &new.name, pem)?,
            server_name: None,
        },
    };
    let mut kinds: Vec<RecordKind> = new
        .kinds
        .iter()
        .filter_map(|k| match k.as_str() {
            "alert" => Some(RecordKind::Alert),
            "incident" => Some(RecordKind::Incident),
            "audit" => Some(RecordKind::Audit),
            "event" => Some(RecordKind::Event),
            _ => None,
        })
        .collect();
    // The signed checkpoint is what lets a SIEM check the audit entries.
    kinds.push(RecordKind::Checkpoint);
    let from = match new.audit_from.as_str() {
        "now" => vigil_forward::AuditFrom::Now,
        _ => vigil_forward::AuditFrom::Start,
    };
    let format = match new.format.as_str() {
        "ecs" => vigil_forward::Format::Ecs,
        "cef" => vigil_forward::Format::Cef,
        _ => vigil_forward::Format::Ocsf,
    };
    Ok(ReceiverConfig {
        name: new.name.clone(),
        address: format!("{host}:{}", new.port),
        transport,
        format,
        kinds,
        facility: 13,
        max_queue_bytes: 256 << 20,
        from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_file_reads_receivers_and_refuses_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_file(dir.path()).unwrap(), FileConfig::default());
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "raw_events = true\n[[receiver]]\nname = \"siem\"\naddress = \"127.0.0.1:514\"\n\
             transport = { type = \"tcp\" }\nformat = \"cef\"\n\
             [[receiver]]\nname = \"late\"\naddress = \"h:1\"\ntransport = { type = \"tcp\" }\n\
             from = \"now\"\n",
        )
        .unwrap();
        let cfg = load_file(dir.path()).unwrap();
        assert!(cfg.raw_events);
        assert_eq!(cfg.receivers[0].format, vigil_forward::Format::Cef);
        assert!(cfg.receivers[0].kinds.contains(&RecordKind::Audit));
        // The audit log from its first entry unless the operator says now.
        let from: Vec<_> = cfg.receivers.iter().map(|r| r.from).collect();
        assert_eq!(
            from,
            [
                vigil_forward::AuditFrom::Start,
                vigil_forward::AuditFrom::Now
            ]
        );
        std::fs::write(dir.path().join(CONFIG_FILE), "raw_event = true\n").unwrap();
        let err = load_file(dir.path()).unwrap_err().to_string();
        assert!(err.contains("raw_event"), "{err}");
    }

    #[test]
    fn console_receivers_are_private_and_survive_a_reload() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let new = vigil_web_ui::pages::receivers::NewReceiver {
            name: "s1".into(),
            host: "::1".into(),
            port: 6514,
            tls_ca_pem: Some("-----BEGIN CERTIFICATE-----\n".into()),
            format: "ecs".into(),
            kinds: vec!["alert".into()],
            audit_from: "now".into(),
        };
        let rc = console_receiver(dir.path(), &new).unwrap();
        assert_eq!(rc.address, "[::1]:6514");
        assert_eq!(rc.from, vigil_forward::AuditFrom::Now);
        save_console(dir.path(), std::slice::from_ref(&rc)).unwrap();
        assert_eq!(load_console(dir.path()).unwrap(), vec![rc.clone()]);
        for f in ["forward/console.json", "forward/ca/s1.pem"] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        remove_ca(dir.path(), &rc);
        assert!(!dir.path().join("forward/ca/s1.pem").exists());
    }
}
