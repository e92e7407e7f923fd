//! What the console writes or owns, behind one small trait.
//!
//! The appliance implements [`ConsoleStore`] over RocksDB; tests and the demo
//! use `vigil_testkit::MemoryConsoleStore`. Every method is a plain,
//! synchronous, short operation. All policy (lockout thresholds, session
//! lifetime, chain hashing) lives in this crate (suppression matching is
//! `vigil_proto::suppress`, shared with the appliance), so an
//! implementation only stores and returns records.

use serde::{Deserialize, Serialize};
use vigil_proto::query::TriageState;

/// What a console user may do. Ordered by what they may do: each role
/// may do what the ones before it may, so `role >= Role::Analyst` is "may
/// act" and an auditor, who reads everything but acts on nothing, sits
/// below the analyst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Reads everything, changes nothing but their own password.
    Viewer,
    /// Reads everything a viewer does plus the full audit log, and exports
    /// evidence bundles; acts on nothing (no triage, response, settings or
    /// users).
    Auditor,
    /// Triages alerts, writes suppressions, saves hunts.
    Analyst,
    /// Everything, including users, settings and enrollment tokens.
    Admin,
}

impl Role {
    /// All roles, weakest first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Auditor, Role::Analyst, Role::Admin];

    /// Lower-case name used in forms and the audit log.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }

    /// Whether this role reads the whole audit log (others see only their
    /// own entries): admins and auditors.
    pub fn reads_full_audit(self) -> bool {
        matches!(self, Role::Admin | Role::Auditor)
    }

    /// Whether this role may export evidence bundles: auditors and those
    /// who act (analysts, admins); not viewers.
    pub fn exports_evidence(self) -> bool {
        self >= Role::Auditor
    }

    /// Role from its lower-case name.
    pub fn from_name(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }
}

/// A console account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Login name (unique).
    pub name: String,
    pub role: Role,
    /// Argon2id hash in PHC string form (`$argon2id$v=19$...`).
    pub password_hash: String,
    pub created_ns: u64,
    /// Set for the generated first admin password and for admin resets.
    pub must_change_password: bool,
    /// A disabled user cannot log in; their sessions stop working.
    pub disabled: bool,
}

/// A server-side session. The cookie carries the random token; the store is
/// keyed by its SHA-256 (`id`), so a copy of the store cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Hex SHA-256 of the cookie token.
    pub id: String,
    pub user: String,
    /// Synchronizer token that every POST of this session must carry.
    pub csrf: String,
    pub created_ns: u64,
    /// The session is refused at or after this time. It is the idle
    /// deadline: each use slides it forward (see
    /// [`crate::auth::resolve_session`]), never past `created_ns` plus
    /// [`crate::auth::SESSION_TTL_NS`], the absolute lifetime.
    pub expires_ns: u64,
}

/// Failed-login bookkeeping for one key (a user name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LoginAttempts {
    /// Failures since `window_start_ns`.
    pub failures: u32,
    pub window_start_ns: u64,
    /// Logins are refused until this time (0 = not locked).
    pub locked_until_ns: u64,
}

/// The console's view of an alert's triage, overlaid on the store's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triage {
    pub state: TriageState,
    pub assignee: Option<String>,
    /// Free-text reason given when closing.
    pub note: Option<String>,
    pub updated_ns: u64,
    pub updated_by: String,
}

/// Suppressions: the one rule of the whole product (what a scope hides,
/// what "host" and "peer" mean, expiry) lives in `vigil_proto::suppress`.
pub use vigil_proto::suppress::{Suppression, SuppressionScope};

/// A named hunt query, stored as the query string of `/hunt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedHunt {
    /// Assigned by the store on insert.
    pub id: u64,
    pub name: String,
    /// URL query string (already percent-encoded), without the leading `?`.
    pub query: String,
    pub owner: String,
    pub created_ns: u64,
}

/// An audit record before it is chained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditDraft {
    pub ts_ns: u64,
    /// Who did it (user name, or `system`).
    pub actor: String,
    /// What (`login`, `triage.close`, `user.create`…).
    pub action: String,
    /// On what (`alert:17`, `user:bob`…).
    pub target: String,
    pub detail: String,
}

/// One link of the audit chain. See [`crate::audit`] for the hashing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// 1-based, gap-free.
    pub seq: u64,
    pub ts_ns: u64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    /// Hex SHA-256 of the previous entry (64 zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256 of this entry, over all fields above.
    pub hash: String,
}

/// Appliance settings the console edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub retention_days: u32,
    pub retention_bytes: u64,
    pub learning_period_days: u32,
    /// Most alerts per day before low-severity ones are folded into a digest.
    pub alert_budget_per_day: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            retention_days: 90,
            retention_bytes: 500 * 1024 * 1024 * 1024,
            learning_period_days: 14,
            alert_budget_per_day: 50,
        }
    }
}

/// An enrollment token as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentTokenInfo {
    pub id: u64,
    pub label: String,
    pub created_ns: u64,
    pub expires_ns: u64,
    /// Hosts enrolled with it so far.
    pub uses: u32,
    pub max_uses: u32,
    pub revoked: bool,
}

/// A fresh token: the secret is shown exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEnrollmentToken {
    pub info: EnrollmentTokenInfo,
    pub secret: String,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("storage error: {0}")]
    Backend(String),
}

/// Everything the console persists. Implementations must be safe to call
/// from many request handlers at once; `append_audit` must serialise
/// appends so the chain has no forks.
pub trait ConsoleStore: Send + Sync {
    // --- users
    /// All users, by name.
    fn users(&self) -> Result<Vec<User>, StoreError>;
    /// One user, `None` if unknown.
    fn user(&self, name: &str) -> Result<Option<User>, StoreError>;
    /// Insert or replace a user (keyed by `name`).
    fn put_user(&self, user: User) -> Result<(), StoreError>;

    // --- sessions
    /// Store a new session (keyed by `id`).
    fn put_session(&self, session: Session) -> Result<(), StoreError>;
    /// Session by id (hex SHA-256 of the cookie token).
    fn session(&self, id: &str) -> Result<Option<Session>, StoreError>;
    /// Remove one session (logout). Unknown ids are not an error.
    fn delete_session(&self, id: &str) -> Result<(), StoreError>;
    /// Remove every session of `user` (password change, disable).
    fn delete_user_sessions(&self, user: &str) -> Result<(), StoreError>;
    /// Set the `expires_ns` of session `id` if it still exists; `false` if it
    /// does not. Atomic with respect to the deletes above, so a request
    /// racing a logout never brings the session back.
    fn touch_session(&self, id: &str, expires_ns: u64) -> Result<bool, StoreError>;

    // --- login rate limiting
    /// Failed-login record for `key` (default when none).
    fn login_attempts(&self, key: &str) -> Result<LoginAttempts, StoreError>;
    /// Replace the record for `key`.
    fn put_login_attempts(&self, key: &str, attempts: LoginAttempts) -> Result<(), StoreError>;
    /// Read-modify-write the record for `key` atomically (no concurrent
    /// failure is lost) and return what was stored.
    fn update_login_attempts(
        &self,
        key: &str,
        update: &mut dyn FnMut(LoginAttempts) -> LoginAttempts,
    ) -> Result<LoginAttempts, StoreError>;

    // --- triage
    /// The console's triage of an alert, if anyone touched it.
    fn triage(&self, alert_id: u64) -> Result<Option<Triage>, StoreError>;
    /// Replace the triage of an alert.
    fn put_triage(&self, alert_id: u64, triage: Triage) -> Result<(), StoreError>;

    // --- suppressions
    /// All suppressions, oldest first.
    fn suppressions(&self) -> Result<Vec<Suppression>, StoreError>;
    /// Insert; the store assigns and returns the id.
    fn add_suppression(&self, rule: Suppression) -> Result<u64, StoreError>;

    // --- saved hunts
    /// All saved hunts, oldest first.
    fn saved_hunts(&self) -> Result<Vec<SavedHunt>, StoreError>;
    /// Insert; the store assigns and returns the id.
    fn add_saved_hunt(&self, hunt: SavedHunt) -> Result<u64, StoreError>;

    // --- audit
    /// Chain `draft` after the last entry with [`crate::audit::seal`] and
    /// store it, atomically with respect to other appends.
    fn append_audit(&self, draft: AuditDraft) -> Result<AuditEntry, StoreError>;
    /// Every entry, oldest first.
    fn audit_entries(&self) -> Result<Vec<AuditEntry>, StoreError>;

    // --- settings
    /// Current settings (defaults when never saved).
    fn settings(&self) -> Result<Settings, StoreError>;
    /// Replace the settings (the appliance applies retention from them).
    fn put_settings(&self, settings: Settings) -> Result<(), StoreError>;

    // --- enrollment (the appliance's CA issues and validates tokens)
    /// All enrollment tokens, newest first, without secrets.
    fn enrollment_tokens(&self) -> Result<Vec<EnrollmentTokenInfo>, StoreError>;
    /// Issue a token valid until `now_ns + ttl_ns` for up to `max_uses` hosts.
    fn create_enrollment_token(
        &self,
        label: &str,
        ttl_ns: u64,
        max_uses: u32,
        now_ns: u64,
    ) -> Result<NewEnrollmentToken, StoreError>;
    /// Revoke token `id` so it enrolls nothing more: `Ok(true)` if it was
    /// revoked now, `Ok(false)` if it already was, `NotFound` if unknown.
    fn revoke_enrollment_token(&self, id: u64, now_ns: u64) -> Result<bool, StoreError>;
}
