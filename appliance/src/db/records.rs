//! Key layouts of the records the console and the detection pipeline keep
//! in the store, and the typed reads they share. The bytes are defined here
//! once: the console (`crate::console`) writes them, the pipeline reads
//! them, neither knows the other's code.
//!
//! | what | cf | key |
//! | --- | --- | --- |
//! | users | `users` | `user/{name}` |
//! | sessions | `sessions` | `session/{hex sha256 of token}` |
//! | failed logins | `sessions` | `login/{key}` |
//! | triage | `cases` | `triage/{alert id u64 BE}` |
//! | suppressions | `suppressions` | `rule/{id u64 BE}` ([`super::suppressions`]) |
//! | saved hunts | `meta` | `console/hunt/{id u64 BE}` |
//! | audit chain | `audit` | `audit/{seq u64 BE}` |
//! | settings | `meta` | `console/settings` |
//! | enrollment token labels | `meta` | `console/token/{id u64 BE}` |
//! | verdicts for the detector | `models` | `verdict/{alert id u64 BE}` |
//! | detector state and cursors | `models` | `pipeline/state` |

use super::{decode, encode, Db};
use crate::store::{Cf, Direction, StoreError, WriteBatch};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use vigil_proto::query::TriageState;
use vigil_web_ui::store::{Settings, Triage};

/// `users`: `user/{name}`.
pub const USER: &[u8] = b"user/";
/// `sessions`: `session/{hex sha256 of token}`.
pub const SESSION: &[u8] = b"session/";
/// `sessions`: `login/{key}` (failed-login counters).
pub const LOGIN: &[u8] = b"login/";
/// `cases`: `triage/{alert id u64 BE}`.
pub const TRIAGE: &[u8] = b"triage/";
/// `meta`: `console/hunt/{id u64 BE}`.
pub const HUNT: &[u8] = b"console/hunt/";
/// `audit`: `audit/{seq u64 BE}`.
pub const AUDIT: &[u8] = b"audit/";
/// `meta`: the console's settings.
pub const SETTINGS: &[u8] = b"console/settings";
/// `meta`: `console/token/{id u64 BE}`.
pub const TOKEN: &[u8] = b"console/token/";
/// `models`: `verdict/{alert id u64 BE}` → the closing [`TriageState`],
/// queued for the detection pipeline.
pub const VERDICT: &[u8] = b"verdict/";
/// `models`: the detection pipeline's saved state.
const PIPELINE_STATE: &[u8] = b"pipeline/state";

/// `prefix` followed by `rest`.
pub fn key(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    [prefix, rest].concat()
}

/// `prefix` followed by a big-endian id.
pub fn id_key(prefix: &[u8], id: u64) -> Vec<u8> {
    key(prefix, &id.to_be_bytes())
}

/// The detection settings an admin saved in the console.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectionTuning {
    pub learning_period_ns: u64,
    pub alert_budget_per_day: f64,
}

/// What the pipeline saves: the detector snapshot and how far it has read
/// each host, in one record so a restart never skips or double-scores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineState {
    pub detector: Vec<u8>,
    pub cursors: BTreeMap<u64, u64>,
}

/// A closing verdict waiting for the detector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedVerdict {
    /// The record's key (removed once applied, see [`Db::save_pipeline_state`]).
    pub key: Vec<u8>,
    pub alert_id: u64,
    pub state: TriageState,
}

impl Db {
    /// The console's triage of an alert, if any (the analyst's word wins
    /// over whatever state a re-emitted alert carries).
    pub fn triage_of(&self, alert_id: u64) -> Result<Option<Triage>, StoreError> {
        self.record(Cf::Cases, &id_key(TRIAGE, alert_id))
    }

    /// The settings an admin saved in the console, if any.
    pub fn saved_settings(&self) -> Result<Option<Settings>, StoreError> {
        self.record(Cf::Meta, SETTINGS)
    }

    /// The detection tuning an admin saved in the console, if any.
    pub fn detection_tuning(&self) -> Result<Option<DetectionTuning>, StoreError> {
        Ok(self.saved_settings()?.map(|s| DetectionTuning {
            learning_period_ns: u64::from(s.learning_period_days) * 86_400 * 1_000_000_000,
            alert_budget_per_day: f64::from(s.alert_budget_per_day),
        }))
    }

    /// Queue a closing verdict for the detector (in `wb`, with the triage).
    pub fn queue_verdict(wb: &mut WriteBatch, alert_id: u64, state: &TriageState) {
        wb.put(Cf::Models, id_key(VERDICT, alert_id), encode(state));
    }

    /// Every verdict waiting for the detector, oldest alert first.
    pub fn queued_verdicts(&self) -> Result<Vec<QueuedVerdict>, StoreError> {
        Ok(self
            .records_with_prefix::<TriageState>(Cf::Models, VERDICT, Direction::Forward, 0)?
            .into_iter()
            .filter(|(k, _)| k.len() == VERDICT.len() + 8)
            .map(|(key, state)| QueuedVerdict {
                alert_id: super::keys::be64(&key[VERDICT.len()..]),
                key,
                state,
            })
            .collect())
    }

    /// The pipeline's saved state, if any.
    pub fn pipeline_state(&self) -> Result<Option<PipelineState>, StoreError> {
        self.store()
            .get(Cf::Models, PIPELINE_STATE)?
            .map(|b| decode(Cf::Models, &b))
            .transpose()
    }

    /// Save the pipeline's state and drop the verdicts it has applied, in
    /// one synced write: a verdict leaves the queue only with the detector
    /// state that applied it.
    pub fn save_pipeline_state(
        &self,
        state: &PipelineState,
        applied_verdicts: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        wb.put(Cf::Models, PIPELINE_STATE.to_vec(), encode(state));
        for key in applied_verdicts {
            wb.delete(Cf::Models, key.clone());
        }
        self.store().write(wb, true)
    }
}
