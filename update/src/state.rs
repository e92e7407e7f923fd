//! The appliance's update state on disk: `DIR/slots.json` holds the slot
//! state machine and the TUF trust (newest root, role versions), written
//! 0600 through a temporary file, fsync and rename, so a power cut leaves
//! the old state or the new one, never half of each.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::UpdateError;
use crate::slots::Slots;
use crate::verify::TrustedState;

/// Format version of `slots.json`.
pub const STATE_FORMAT: u32 = 1;

/// Everything `slots.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateState {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// The A/B slots.
    pub slots: Slots,
    /// What updates are verified against.
    pub trusted: TrustedState,
}

/// The state file in a directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
}

impl StateStore {
    /// The store `dir/slots.json`.
    pub fn new(dir: &Path) -> Self {
        StateStore {
            path: dir.join("slots.json"),
        }
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// First install: trust the shipped root (`root.json`, checked against
    /// its own signatures) with `release` in slot A. Refuses to overwrite.
    pub fn init(
        &self,
        root_json: &[u8],
        release: u64,
        release_name: Option<String>,
    ) -> Result<UpdateState, UpdateError> {
        if self.path.exists() {
            return Err(self.err("already initialised".into()));
        }
        let mut trusted = TrustedState::from_root_file(root_json)?;
        trusted.targets_version = release;
        let state = UpdateState {
            format: STATE_FORMAT,
            slots: Slots::new(release, release_name),
            trusted,
        };
        self.save(&state)?;
        Ok(state)
    }

    /// Reads the state.
    pub fn load(&self) -> Result<UpdateState, UpdateError> {
        let bytes = std::fs::read(&self.path).map_err(|e| self.err(e.to_string()))?;
        let state: UpdateState =
            serde_json::from_slice(&bytes).map_err(|e| self.err(e.to_string()))?;
        if state.format != STATE_FORMAT {
            return Err(self.err(format!(
                "format {} (this build reads {STATE_FORMAT})",
                state.format
            )));
        }
        Ok(state)
    }

    /// Replaces the state atomically and durably.
    pub fn save(&self, state: &UpdateState) -> Result<(), UpdateError> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.err(e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(state).expect("the state always serialises");
        let write = || -> std::io::Result<()> {
            let _ = std::fs::remove_file(&tmp);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| self.err(e.to_string()))
    }

    fn err(&self, reason: String) -> UpdateError {
        UpdateError::State {
            path: self.path.display().to_string(),
            reason,
        }
    }
}
