//! Vigil web console: Leptos server-side rendered pages served by axum inside
//! the appliance.
//!
//! The appliance mounts [`router`] on its HTTPS listener with a
//! [`ConsoleState`]: the read-only [`ReadApi`] over its store plus a
//! [`ConsoleStore`] for what the console itself writes (users, sessions,
//! triage, suppressions, saved hunts, audit, settings, enrollment tokens).
//! Every page works without JavaScript; every response carries a strict CSP.

pub mod audit;
pub mod auth;
pub mod charts;
pub mod error;
pub mod fleet_graph;
pub mod format;
pub mod pages;
pub mod security;
pub mod store;
pub mod svg;
pub mod throttle;
pub mod time;
pub mod trends;
pub mod urlenc;

pub use store::ConsoleStore;

use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use vigil_proto::query::ReadApi;

/// Nanoseconds since the Unix epoch, as the console's clock reads it.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Everything a request handler needs.
#[derive(Clone)]
pub struct ConsoleState {
    /// The appliance's stored hosts, events, alerts, edges and counters.
    pub read: Arc<dyn ReadApi>,
    /// What the console writes.
    pub store: Arc<dyn ConsoleStore>,
    /// Time source (system clock by default; fixed in tests).
    pub clock: Clock,
    /// A session unused this long is refused (default 30 minutes).
    pub idle_timeout_ns: u64,
    /// Argon2 concurrency cap and per-address login backoff.
    pub login_guard: Arc<throttle::LoginGuard>,
    /// File holding the first admin's generated password; deleted once
    /// that account has chosen its own.
    pub first_password_file: Option<Arc<std::path::Path>>,
    /// The appliance's responder (signs and delivers commands); `None` in
    /// a console without hosts to act on (fixtures, benches).
    pub respond: Option<Arc<dyn vigil_proto::query::response::ResponseApi>>,
    /// The appliance's SIEM forwarding (#17); `None` hides the receivers page.
    pub receivers: Option<Arc<dyn pages::receivers::ReceiversApi>>,
    /// Writes evidence bundles for console exports; `None`: no export.
    pub exports: Option<Arc<dyn pages::export::ExportApi>>,
    /// Packages and CA for enrolling hosts (#18); `None` hides the page.
    pub add_hosts: Option<Arc<dyn pages::add_hosts::AddHostsApi>>,
}

impl ConsoleState {
    /// State with the system clock.
    pub fn new(read: Arc<dyn ReadApi>, store: Arc<dyn ConsoleStore>) -> Self {
        ConsoleState {
            read,
            store,
            clock: Arc::new(system_now_ns),
            idle_timeout_ns: auth::DEFAULT_IDLE_TIMEOUT_NS,
            login_guard: Arc::default(),
            first_password_file: None,
            respond: None,
            receivers: None,
            exports: None,
            add_hosts: None,
        }
    }

    /// Replace the idle timeout (at least one minute).
    pub fn with_idle_timeout(mut self, idle: std::time::Duration) -> Self {
        self.idle_timeout_ns = (idle.as_nanos() as u64).max(auth::TOUCH_EVERY_NS);
        self
    }

    /// Delete `path` once the first admin has changed the generated password.
    pub fn with_first_password_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.first_password_file = Some(Arc::from(path.into()));
        self
    }

    /// Let the console act on hosts through the appliance's responder.
    pub fn with_responder(
        mut self,
        respond: Arc<dyn vigil_proto::query::response::ResponseApi>,
    ) -> Self {
        self.respond = Some(respond);
        self
    }

    /// Let admins manage SIEM receivers through the appliance's forwarder.
    pub fn with_receivers(mut self, receivers: Arc<dyn pages::receivers::ReceiversApi>) -> Self {
        self.receivers = Some(receivers);
        self
    }

    /// Let the console export evidence bundles through the appliance.
    pub fn with_exports(mut self, exports: Arc<dyn pages::export::ExportApi>) -> Self {
        self.exports = Some(exports);
        self
    }

    /// Let admins enroll hosts from the packages the appliance serves.
    pub fn with_add_hosts(mut self, api: Arc<dyn pages::add_hosts::AddHostsApi>) -> Self {
        self.add_hosts = Some(api);
        self
    }

    /// Replace the clock (tests, replays).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Current time in ns since the epoch.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Append an operator action to the audit chain.
    pub fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), store::StoreError> {
        self.store
            .append_audit(store::AuditDraft {
                ts_ns: self.now(),
                actor: actor.into(),
                action: action.into(),
                target: target.into(),
                detail: detail.into(),
            })
            .map(|_| ())
    }
}

/// The system clock in ns since the Unix epoch (0 if the clock is before it).
pub fn system_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// All console routes, with CSRF checking on every POST, the first-login
/// password change enforced, and security headers on every response. Mount at `/` of the appliance's HTTPS listener.
pub fn router(state: ConsoleState) -> Router {
    use pages::*;
    Router::new()
        .route("/static/console.css", get(layout::stylesheet))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/", get(overview::handler))
        .route("/hosts", get(hosts::list))
        .route("/hosts/{id}", get(host::handler))
        .route(
            "/hosts/{id}/respond",
            get(respond::confirm).post(respond::send),
        )
        .route("/commands/{id}", get(respond::show))
        .route("/commands/{id}/approve", post(respond::approve))
        .route("/commands/{id}/cancel", post(respond::cancel))
        .route("/commands/{id}/data", get(respond::data))
        .route("/alerts", get(alerts::list))
        .route("/alerts/{id}", get(alerts::detail))
        .route("/alerts/{id}/triage", post(triage::triage))
        .route(
            "/alerts/{id}/suppress",
            get(triage::suppress_preview).post(triage::suppress_save),
        )
        .route("/graph", get(graph::handler))
        .route("/hunt", get(hunt::handler))
        .route("/hunt.csv", get(hunt::csv))
        .route("/hunt/save", post(hunt::save))
        .route("/audit", get(admin::audit_page))
        .route("/exports", post(export::start))
        .route("/exports/{id}", get(export::show))
        .route("/exports/{id}/download", get(export::download))
        .route("/users", get(admin::users_page).post(admin::users_create))
        .route("/users/{name}", post(admin::users_update))
        .route(
            "/account",
            get(admin::account_page).post(admin::account_password),
        )
        .route(
            "/settings",
            get(admin::settings_page).post(admin::settings_save),
        )
        .route("/settings/response", post(respond_policy::save))
        .route("/settings/tokens", post(admin::token_create))
        .route("/settings/tokens/{id}/revoke", post(admin::token_revoke))
        .route(
            "/settings/receivers",
            get(receivers::page).post(receivers::add),
        )
        .route("/settings/receivers/{name}/remove", post(receivers::remove))
        .route("/add-hosts", get(add_hosts::page).post(add_hosts::create))
        // No login: a host being enrolled has no console account.
        .route("/enroll/ca.pem", get(add_hosts::ca_pem))
        .route("/enroll/packages/{name}", get(add_hosts::package))
        .fallback(layout::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::csrf_guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::password_change_gate,
        ))
        .layer(axum::middleware::map_response(security::security_headers))
        .with_state(state)
}
