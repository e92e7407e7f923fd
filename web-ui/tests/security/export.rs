//! The auditor role and console evidence exports: who reads the full audit
//! log, who may start an export, see its job and download it, and that an
//! auditor acts on nothing. The appliance side ([`ExportApi`]) is a small
//! fake here; the lab browser walk exports from a real appliance.

use super::*;
use std::path::PathBuf;
use std::sync::Mutex;
use vigil_web_ui::pages::export::{ExportApi, ExportJob, ExportTarget, JobState};
use vigil_web_ui::store::{AuditDraft, Role, User};

/// Finishes every job at once with a fixed file; remembers what it was asked.
struct FakeExports {
    dir: tempfile::TempDir,
    started: Mutex<Vec<(ExportTarget, String)>>,
}

impl FakeExports {
    fn new() -> Self {
        FakeExports {
            dir: tempfile::tempdir().unwrap(),
            started: Mutex::default(),
        }
    }
}

impl ExportApi for FakeExports {
    fn start(&self, target: ExportTarget, exporter: &str) -> Result<String, String> {
        let mut started = self.started.lock().unwrap();
        started.push((target, exporter.to_string()));
        let id = format!("job{}", started.len());
        std::fs::write(self.dir.path().join(&id), b"bundle bytes").unwrap();
        Ok(id)
    }

    fn job(&self, id: &str) -> Option<ExportJob> {
        let started = self.started.lock().unwrap();
        let n: usize = id.strip_prefix("job")?.parse().ok()?;
        let (target, owner) = started.get(n.checked_sub(1)?)?.clone();
        Some(ExportJob {
            id: id.to_string(),
            owner,
            target,
            started_ns: NOW,
            state: JobState::Done {
                bytes: 12,
                events: 3,
                audit_seq: 9,
                content_sha256: "ab".repeat(32),
            },
            expires_ns: NOW + 3_600_000_000_000,
        })
    }

    fn file(&self, id: &str) -> Option<PathBuf> {
        self.job(id).map(|_| self.dir.path().join(id))
    }
}

/// The demo console with exports and an auditor `audrey`; audit entries by
/// `ana` and `admin`.
fn console() -> (Router, Arc<MemoryConsoleStore>, Arc<FakeExports>) {
    let (state, store) = demo_state(NOW).unwrap();
    let exports = Arc::new(FakeExports::new());
    let state = state.with_exports(exports.clone());
    store
        .put_user(User {
            name: "audrey".into(),
            role: Role::Auditor,
            password_hash: String::new(),
            created_ns: NOW - 1,
            must_change_password: false,
            disabled: false,
        })
        .unwrap();
    for (actor, action) in [("ana", "triage.ack"), ("admin", "settings.update")] {
        store
            .append_audit(AuditDraft {
                ts_ns: NOW - 10,
                actor: actor.into(),
                action: action.into(),
                target: "alert:101".into(),
                detail: String::new(),
            })
            .unwrap();
    }
    (router(state), store, exports)
}

#[tokio::test]
async fn admins_and_auditors_read_the_full_audit_log_others_their_own() {
    let (app, store, _) = console();
    for (user, full) in [
        ("admin", true),
        ("audrey", true),
        ("ana", false),
        ("viv", false),
    ] {
        let c = session(&store, user, NOW);
        let (res, html) = send(&app, get("/audit", Some(&c))).await;
        assert_eq!(res.status(), StatusCode::OK, "{user}");
        assert!(html.contains("Chain verified: 2 entries"), "{user}: {html}");
        assert_eq!(
            html.contains("settings.update"),
            full,
            "{user}: admin's entry"
        );
        assert_eq!(
            html.contains("triage.ack"),
            full || user == "ana",
            "{user}: ana's entry"
        );
        assert_eq!(html.contains("Your own actions only"), !full, "{user}");
    }
}

#[tokio::test]
async fn auditors_export_and_download_viewers_cannot_and_auditors_do_not_act() {
    let (app, store, exports) = console();
    let auditor = session(&store, "audrey", NOW);
    let viewer = session(&store, "viv", NOW);

    // The button: on an incident and a host for an auditor, never for a viewer.
    let (_, html) = send(&app, get("/alerts/101", Some(&auditor))).await;
    assert!(
        html.contains("Export evidence") && html.contains("value=\"incident\""),
        "{html}"
    );
    let (_, html) = send(&app, get("/hosts/0000000000000a03", Some(&auditor))).await;
    assert!(html.contains("Export evidence") && html.contains("name=\"from\""));
    let (_, html) = send(&app, get("/alerts/101", Some(&viewer))).await;
    assert!(!html.contains("Export evidence"));

    // The endpoint: a viewer is refused, without CSRF everyone is.
    let form = |c: &Client| format!("kind=incident&id=101&csrf={}", c.csrf);
    let (res, _) = send(&app, post("/exports", &viewer.cookie, &form(&viewer))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let (res, _) = send(
        &app,
        post("/exports", &auditor.cookie, "kind=incident&id=101"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "no CSRF token");
    assert!(exports.started.lock().unwrap().is_empty());
    let (res, _) = send(&app, post("/exports", &auditor.cookie, &form(&auditor))).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/exports/job1");
    let host_form = format!(
        "kind=host&host=0000000000000a03&from=2026-11-20T10%3A00&to=2026-11-20T12%3A00&csrf={}",
        auditor.csrf
    );
    let (res, _) = send(&app, post("/exports", &auditor.cookie, &host_form)).await;
    assert_eq!(location(&res), "/exports/job2");
    {
        let started = exports.started.lock().unwrap();
        assert_eq!(started[0], (ExportTarget::Incident(101), "audrey".into()));
        assert!(
            matches!(started[1].0, ExportTarget::Host { from_ns, to_ns, .. }
            if to_ns - from_ns == 2 * 3_600_000_000_000)
        );
    }

    // The job page and the download: the owner, not a viewer; audited.
    let (res, html) = send(&app, get("/exports/job1", Some(&auditor))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(html.contains("/exports/job1/download"), "{html}");
    let (res, _) = send(&app, get("/exports/job1", Some(&viewer))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let (res, _) = send(&app, get("/exports/job1/download", Some(&viewer))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let (res, body) = send(&app, get("/exports/job1/download", Some(&auditor))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body, "bundle bytes");
    assert!(res.headers()[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let last = store.audit_entries().unwrap().pop().unwrap();
    assert_eq!(
        (
            last.actor.as_str(),
            last.action.as_str(),
            last.target.as_str()
        ),
        ("audrey", "evidence.download", "export:job1")
    );

    // An auditor acts on nothing: triage, users, settings are refused.
    for (path, body) in [
        ("/alerts/101/triage", "action=ack"),
        (
            "/users",
            "name=eve&role=admin&password=long-enough-password",
        ),
        (
            "/settings",
            "retention_days=1&retention_gib=1&learning_period_days=1&alert_budget_per_day=1",
        ),
    ] {
        let (res, _) = send(
            &app,
            post(
                path,
                &auditor.cookie,
                &format!("{body}&csrf={}", auditor.csrf),
            ),
        )
        .await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let (res, _) = send(&app, get("/users", Some(&auditor))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn admins_create_auditors() {
    let (app, store, _) = console();
    let admin = session(&store, "admin", NOW);
    let (_, html) = send(&app, get("/users", Some(&admin))).await;
    assert!(html.contains("<option value=\"auditor\""), "{html}");
    let form = format!(
        "name=aud2&role=auditor&password=long-enough-password&csrf={}",
        admin.csrf
    );
    let (res, _) = send(&app, post("/users", &admin.cookie, &form)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(store.user("aud2").unwrap().unwrap().role, Role::Auditor);
}
