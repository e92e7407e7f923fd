//! Evidence export from the console (issue #17): an "Export evidence" form
//! on the incident, alert and host pages, a job page that shows progress
//! (refreshing itself with a meta refresh, no script) and then a download
//! link. The bundle is written by the appliance behind [`ExportApi`], off the
//! async executor; the console only starts jobs, reads their state and
//! streams finished files. Auditors, analysts and admins export; viewers do
//! not. Starting an export and downloading its file are audit entries (the
//! appliance audits the export itself, the console the download).

use super::layout::{render, Nav};
use super::*;
use crate::time::{format_input, format_ts, parse_input};
use axum::extract::{Form, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::path::PathBuf;

/// What to export: the console's forms, the export jobs and
/// `vigil export` (as `vigil_appliance::export::ExportScope`) share it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExportTarget {
    /// An incident and its alerts.
    Incident(u64),
    /// One alert.
    Alert(u64),
    /// One host over `[from_ns, to_ns]`.
    Host {
        /// The host.
        host: HostId,
        /// Start of the range, ns.
        from_ns: u64,
        /// End of the range, ns.
        to_ns: u64,
    },
}

impl ExportTarget {
    /// `incident 12`, `alert 7`, `host 00…0a03 from … to …`.
    pub fn label(&self) -> String {
        match self {
            ExportTarget::Incident(id) => format!("incident {id}"),
            ExportTarget::Alert(id) => format!("alert {id}"),
            ExportTarget::Host {
                host,
                from_ns,
                to_ns,
            } => format!(
                "host {host} from {} to {}",
                format_ts(*from_ns),
                format_ts(*to_ns)
            ),
        }
    }
}

/// Where an export job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Writing: raw events written so far of the window's total.
    Running {
        /// Events written.
        written: u64,
        /// Events in the window (counted before writing).
        total: u64,
    },
    /// The bundle is ready to download.
    Done {
        /// Size of the bundle file.
        bytes: u64,
        /// Raw events in it.
        events: u64,
        /// The export's audit entry.
        audit_seq: u64,
        /// SHA-256 of the content files, as the audit entry records it.
        content_sha256: String,
    },
    /// The export failed; nothing to download.
    Failed(String),
}

/// One export job as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportJob {
    /// Random id (also the job page's path).
    pub id: String,
    /// Who started it.
    pub owner: String,
    /// What it exports.
    pub target: ExportTarget,
    /// When it started, ns.
    pub started_ns: u64,
    /// Progress or outcome.
    pub state: JobState,
    /// When its file is deleted, ns.
    pub expires_ns: u64,
}

/// The appliance's side of console exports.
pub trait ExportApi: Send + Sync {
    /// Start exporting `target` as `exporter` (a console user allowed to
    /// export); returns the job id at once, the bundle is written off the
    /// async executor.
    fn start(&self, target: ExportTarget, exporter: &str) -> Result<String, String>;
    /// A job, while it is kept.
    fn job(&self, id: &str) -> Option<ExportJob>;
    /// The finished bundle's file (mode 0600 in the data dir).
    fn file(&self, id: &str) -> Option<PathBuf>;
}

/// The "Export evidence" form for a page about `target`, if this user may
/// export and the console can. A host's form asks for the range, prefilled
/// with `range` (ns).
pub fn export_form(state: &ConsoleState, auth: &Authed, target: &ExportTarget) -> Option<AnyView> {
    if state.exports.is_none() || !auth.user.role.exports_evidence() {
        return None;
    }
    let fields = match target {
        ExportTarget::Incident(id) => view! {
            <input type="hidden" name="kind" value="incident"/>
            <input type="hidden" name="id" value=id.to_string()/>
        }
        .into_any(),
        ExportTarget::Alert(id) => view! {
            <input type="hidden" name="kind" value="alert"/>
            <input type="hidden" name="id" value=id.to_string()/>
        }
        .into_any(),
        ExportTarget::Host {
            host,
            from_ns,
            to_ns,
        } => view! {
            <input type="hidden" name="kind" value="host"/>
            <input type="hidden" name="host" value=host.to_string()/>
            <label>"From (UTC) " <input type="datetime-local" name="from" value=format_input(*from_ns)/></label>
            <label>"To (UTC) " <input type="datetime-local" name="to" value=format_input(*to_ns)/></label>
        }
        .into_any(),
    };
    Some(
        view! {
            <form method="post" action="/exports" class="row export-evidence">
                {csrf_field(auth)}
                {fields}
                <button type="submit">"Export evidence"</button>
            </form>
        }
        .into_any(),
    )
}

/// The export form's fields.
#[derive(Debug, Deserialize)]
pub struct ExportForm {
    kind: String,
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

fn target_of(f: &ExportForm) -> Result<ExportTarget, UiError> {
    let bad = |why: &str| UiError::BadRequest(why.into());
    match f.kind.as_str() {
        "incident" => Ok(ExportTarget::Incident(
            f.id.ok_or_else(|| bad("id missing"))?,
        )),
        "alert" => Ok(ExportTarget::Alert(f.id.ok_or_else(|| bad("id missing"))?)),
        "host" => {
            let host = f
                .host
                .as_deref()
                .and_then(|h| h.parse().ok())
                .ok_or_else(|| bad("host id must be 16 hex digits"))?;
            let time = |v: &Option<String>| v.as_deref().and_then(parse_input);
            let from_ns = time(&f.from).ok_or_else(|| bad("from: use YYYY-MM-DDTHH:MM (UTC)"))?;
            let to_ns = time(&f.to).ok_or_else(|| bad("to: use YYYY-MM-DDTHH:MM (UTC)"))?;
            if from_ns > to_ns {
                return Err(bad("the range ends before it starts"));
            }
            Ok(ExportTarget::Host {
                host,
                from_ns,
                to_ns,
            })
        }
        _ => Err(bad("unknown export kind")),
    }
}

fn exports(state: &ConsoleState) -> Result<&std::sync::Arc<dyn ExportApi>, UiError> {
    state
        .exports
        .as_ref()
        .ok_or_else(|| UiError::NotFound("this console cannot export evidence".into()))
}

/// `POST /exports`: start a job, then show its page.
pub async fn start(
    State(state): State<ConsoleState>,
    auth: Authed,
    Form(f): Form<ExportForm>,
) -> Result<Redirect, UiError> {
    if !auth.user.role.exports_evidence() {
        return Err(UiError::Forbidden(
            "Your role does not allow exporting evidence.",
        ));
    }
    let target = target_of(&f)?;
    let id = off_runtime(move || {
        exports(&state)?
            .start(target, &auth.user.name)
            .map_err(UiError::BadRequest)
    })
    .await?;
    Ok(Redirect::to(&format!("/exports/{id}")))
}

/// The job, if this user may see it: its owner, an admin or an auditor.
fn visible_job(state: &ConsoleState, auth: &Authed, id: &str) -> Result<ExportJob, UiError> {
    let job = exports(state)?.job(id).ok_or_else(|| {
        UiError::NotFound(format!("export {id} (finished exports are kept an hour)"))
    })?;
    if job.owner != auth.user.name && !auth.user.role.reads_full_audit() {
        return Err(UiError::Forbidden("This export belongs to another user."));
    }
    Ok(job)
}

/// `GET /exports/{id}`: progress, then the download link.
pub async fn show(
    State(state): State<ConsoleState>,
    auth: Authed,
    Path(id): Path<String>,
) -> PageResult {
    off_runtime(move || {
        let job = visible_job(&state, &auth, &id)?;
        Ok(job_page(&auth, &job))
    })
    .await
}

fn job_page(auth: &Authed, job: &ExportJob) -> axum::response::Html<String> {
    let (refresh, status) = match &job.state {
        JobState::Running { written, total } => (
            Some(view! { <meta http-equiv="refresh" content="1"/> }),
            view! {
                <p class="export-progress">{format!("Writing the bundle: {written} of {total} events.")}</p>
                <progress max=total.max(&1).to_string() value=written.to_string()></progress>
            }
            .into_any(),
        ),
        JobState::Done {
            bytes,
            events,
            audit_seq,
            content_sha256,
        } => (
            None,
            view! {
                <p class="export-done">{format!("Done: {events} events, {bytes} bytes; audit entry {audit_seq}.")}</p>
                <p class="mono">{format!("content sha256 {content_sha256}")}</p>
                <p><a class="button primary" id="export-download" href=format!("/exports/{}/download", job.id)>"Download bundle"</a></p>
                <p class="muted">"Check it anywhere, without the appliance: " <code>"vigil verify FILE"</code>
                    ". The file is deleted from the appliance at " {format_ts(job.expires_ns)} "."</p>
            }
            .into_any(),
        ),
        JobState::Failed(why) => (
            None,
            view! { <div class="flash err">{format!("Export failed: {why}")}</div> }.into_any(),
        ),
    };
    let body = view! {
        {refresh}
        <h1>"Evidence export"</h1>
        <section class="panel">
            <dl class="facts">
                <dt>"What"</dt><dd>{job.target.label()}</dd>
                <dt>"By"</dt><dd>{job.owner.clone()}</dd>
                <dt>"Started"</dt><dd>{format_ts(job.started_ns)}</dd>
            </dl>
            {status}
        </section>
    };
    render("Evidence export", Nav::Audit, auth, body.into_any())
}

/// `GET /exports/{id}/download`: the bundle, streamed from its file; the
/// download is an audit entry (written first: no entry, no file).
pub async fn download(
    State(state): State<ConsoleState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let (path, job) = off_runtime(move || {
        let job = visible_job(&state, &auth, &id)?;
        let JobState::Done { content_sha256, .. } = &job.state else {
            return Err(UiError::NotFound(format!("export {id} is not finished")));
        };
        let path = exports(&state)?
            .file(&id)
            .ok_or_else(|| UiError::NotFound(format!("export {id}'s file")))?;
        state.audit(
            &auth.user.name,
            "evidence.download",
            &format!("export:{id}"),
            &format!("{}; content sha256 {content_sha256}", job.target.label()),
        )?;
        Ok((path, job))
    })
    .await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| UiError::NotFound(format!("export file: {e}")))?;
    let len = file.metadata().await.map(|m| m.len()).unwrap_or_default();
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let name = format!("vigil-evidence-{}.tar", job.id);
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}
