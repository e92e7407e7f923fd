//! Evidence exports started from the console (issue #17): each job writes
//! its bundle on its own thread (never on the async executor) into
//! `DATA/exports/` (directory 0700, files 0600), reports progress through an
//! [`ExportProgress`], and its file is deleted [`KEEP_NS`] after it
//! finished. Jobs live in memory: a restart forgets them and deletes the
//! files they left. Memory stays bounded whatever the window holds: the
//! export streams events through a temp file ([`crate::export`]).

use crate::core::Core;
use crate::export::{export_bundle_with, ExportProgress, ExportScope};
use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use vigil_web_ui::pages::export::{ExportApi, ExportJob, ExportTarget, JobState};
use vigil_web_ui::store::ConsoleStore;

/// How long a finished export's file is kept for download.
pub const KEEP_NS: u64 = 3_600 * 1_000_000_000;
/// Exports that may run at once (the appliance has few cores to spare).
pub const MAX_RUNNING: usize = 2;
/// Directory under the data dir holding finished bundles.
pub const EXPORTS_DIR: &str = "exports";

/// One job: what the console shows plus where its file is.
struct Job {
    owner: String,
    target: ExportTarget,
    started_ns: u64,
    path: PathBuf,
    progress: Arc<ExportProgress>,
    /// `Done` or `Failed` once the thread ended, with the time it did.
    outcome: Option<(JobState, u64)>,
}

/// The console's export jobs.
pub struct ExportJobs {
    core: Arc<Core>,
    dir: PathBuf,
    jobs: Arc<Mutex<HashMap<String, Job>>>,
}

impl ExportJobs {
    /// Jobs writing into `DATA/exports`; files a previous run left there are
    /// deleted (their jobs are gone with it).
    pub fn open(core: Arc<Core>) -> std::io::Result<Self> {
        let dir = core.data_dir.join(EXPORTS_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(ExportJobs {
            core,
            dir,
            jobs: Arc::default(),
        })
    }

    fn now(&self) -> u64 {
        (self.core.clock)()
    }

    /// Forget jobs finished more than [`KEEP_NS`] ago and delete their files.
    pub fn sweep(&self) {
        let now = self.now();
        let mut jobs = self.jobs.lock().expect("export jobs lock");
        jobs.retain(|_, j| match j.outcome {
            Some((_, ended)) if now.saturating_sub(ended) > KEEP_NS => {
                let _ = std::fs::remove_file(&j.path);
                false
            }
            _ => true,
        });
    }

    /// The exporter must be an enabled console user whose role exports.
    fn authorize(&self, exporter: &str) -> Result<(), String> {
        let user = self
            .core
            .console
            .user(exporter)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{exporter:?} is not a console user"))?;
        if user.disabled || !user.role.exports_evidence() {
            return Err(format!(
                "{exporter} ({}) may not export evidence",
                user.role.name()
            ));
        }
        Ok(())
    }
}

/// Write one bundle to `path` (created 0600); the file is removed on failure.
fn run_job(
    core: &Arc<Core>,
    scope: &ExportScope,
    exporter: &str,
    path: &std::path::Path,
    progress: &ExportProgress,
) -> JobState {
    let write = || -> Result<JobState, String> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let out = std::io::BufWriter::new(file);
        let now = (core.clock)();
        let summary = export_bundle_with(core, scope, exporter, now, out, progress)
            .map_err(|e| e.to_string())?;
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Ok(JobState::Done {
            bytes,
            events: summary.events,
            audit_seq: summary.audit_seq,
            content_sha256: summary.content_digest,
        })
    };
    write().unwrap_or_else(|e| {
        let _ = std::fs::remove_file(path);
        JobState::Failed(e)
    })
}

impl ExportApi for ExportJobs {
    fn start(&self, target: ExportTarget, exporter: &str) -> Result<String, String> {
        self.sweep();
        self.authorize(exporter)?;
        let id = vigil_web_ui::auth::random_token()[..24].to_string();
        let path = self.dir.join(format!("{id}.tar"));
        let progress = Arc::new(ExportProgress::default());
        {
            let mut jobs = self.jobs.lock().expect("export jobs lock");
            if jobs.values().filter(|j| j.outcome.is_none()).count() >= MAX_RUNNING {
                return Err(format!(
                    "{MAX_RUNNING} exports are running; try again when one has finished"
                ));
            }
            jobs.insert(
                id.clone(),
                Job {
                    owner: exporter.to_string(),
                    target: target.clone(),
                    started_ns: self.now(),
                    path: path.clone(),
                    progress: progress.clone(),
                    outcome: None,
                },
            );
        }
        let (core, jobs, job_id) = (self.core.clone(), self.jobs.clone(), id.clone());
        let exporter = exporter.to_string();
        let spawned = std::thread::Builder::new()
            .name("evidence-export".into())
            .spawn(move || {
                let state = run_job(&core, &target, &exporter, &path, &progress);
                if let JobState::Failed(why) = &state {
                    tracing::warn!(job = %job_id, error = %why, "evidence export failed");
                }
                let ended = (core.clock)();
                if let Some(j) = jobs.lock().expect("export jobs lock").get_mut(&job_id) {
                    j.outcome = Some((state, ended));
                }
            });
        if let Err(e) = spawned {
            self.jobs.lock().expect("export jobs lock").remove(&id);
            return Err(format!("cannot start the export: {e}"));
        }
        Ok(id)
    }

    fn job(&self, id: &str) -> Option<ExportJob> {
        self.sweep();
        let jobs = self.jobs.lock().expect("export jobs lock");
        let j = jobs.get(id)?;
        let (state, expires_ns) = match &j.outcome {
            Some((state, ended)) => (state.clone(), ended.saturating_add(KEEP_NS)),
            None => (
                JobState::Running {
                    written: j.progress.written.load(Ordering::Relaxed),
                    total: j.progress.total.load(Ordering::Relaxed),
                },
                0,
            ),
        };
        Some(ExportJob {
            id: id.to_string(),
            owner: j.owner.clone(),
            target: j.target.clone(),
            started_ns: j.started_ns,
            state,
            expires_ns,
        })
    }

    fn file(&self, id: &str) -> Option<PathBuf> {
        let jobs = self.jobs.lock().expect("export jobs lock");
        let j = jobs.get(id)?;
        matches!(j.outcome, Some((JobState::Done { .. }, _))).then(|| j.path.clone())
    }
}
