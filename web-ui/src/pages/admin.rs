//! Audit log, users and roles, own password, settings and enrollment tokens.

use super::layout::{render, Nav};
use super::*;
use crate::audit::{verify, ChainStatus};
use crate::auth::{hash_password, verify_password, FIRST_ADMIN, MIN_PASSWORD_LEN};
use crate::store::{Role, Settings, User};
use crate::time::format_ts;
use axum::extract::{Form, Path, Query, State};
use axum::response::Redirect;
use serde::Deserialize;

/// Audit entries per page.
pub const AUDIT_PAGE: usize = 100;

/// `?page=` and `?msg=` of the admin pages.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    pub page: usize,
    pub msg: Option<String>,
}

/// Render the audit log, newest first, with the chain status.
pub fn audit_view(state: &ConsoleState, auth: &Authed, q: &PageQuery) -> PageResult {
    let entries = state.store.audit_entries()?;
    let status = match verify(&entries) {
        ChainStatus::Intact { entries } => view! {
            <div class="flash ok">{format!("Chain verified: {entries} entries, every hash links to the previous one.")}</div>
        }
        .into_any(),
        ChainStatus::Broken { seq, why } => view! {
            <div class="flash err">{format!("Chain BROKEN at entry {seq}: {why}. The audit log was altered outside the console.")}</div>
        }
        .into_any(),
    };
    // The chain is verified over every entry; only admins and auditors
    // read them all, others see their own actions.
    let full = auth.user.role.reads_full_audit();
    let shown: Vec<&crate::store::AuditEntry> = entries
        .iter()
        .filter(|e| full || e.actor == auth.user.name)
        .collect();
    let scope = if full {
        view! { <p class="muted">"The full log."</p> }.into_any()
    } else {
        view! { <p class="muted audit-own">"Your own actions only: admins and auditors read the full log."</p> }.into_any()
    };
    let pages = shown.len().div_ceil(AUDIT_PAGE).max(1);
    let page_no = q.page.min(pages - 1);
    let rows = shown
        .iter()
        .rev()
        .skip(page_no * AUDIT_PAGE)
        .take(AUDIT_PAGE)
        .map(|e| {
            view! {
                <tr>
                    <td class="num">{e.seq}</td>
                    <td class="mono nowrap">{format_ts(e.ts_ns)}</td>
                    <td>{e.actor.clone()}</td>
                    <td class="mono">{e.action.clone()}</td>
                    <td class="mono">{e.target.clone()}</td>
                    <td class="wrap">{e.detail.clone()}</td>
                    <td class="mono hash">{e.hash[..16].to_string()}</td>
                </tr>
            }
        })
        .collect_view();
    let body = view! {
        <h1>"Audit log"</h1>
        {status}
        {scope}
        <section class="panel flush">
            <table class="dense">
                <thead><tr><th>"#"</th><th>"Time"</th><th>"Actor"</th><th>"Action"</th><th>"Target"</th><th>"Detail"</th><th>"Hash"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
        {pager("/audit", page_no, pages)}
    };
    Ok(render("Audit log", Nav::Audit, auth, body.into_any()))
}

/// `GET /audit`.
pub async fn audit_page(
    State(state): State<ConsoleState>,
    auth: Authed,
    Query(q): Query<PageQuery>,
) -> PageResult {
    audit_view(&state, &auth, &q)
}

fn role_options(selected: Role) -> impl IntoView {
    Role::ALL
        .into_iter()
        .map(|r| view! { <option value=r.name() selected={r == selected}>{r.name()}</option> })
        .collect_view()
}

/// `GET /users` (admin).
pub async fn users_page(
    State(state): State<ConsoleState>,
    auth: Authed,
    Query(q): Query<PageQuery>,
) -> PageResult {
    auth.require(Role::Admin)?;
    let rows = state
        .store
        .users()?
        .into_iter()
        .map(|u| {
            let action = format!("/users/{}", crate::urlenc::encode(&u.name));
            view! {
                <tr>
                    <td>{u.name.clone()}</td>
                    <td>{format_ts(u.created_ns)}</td>
                    <td>{if u.disabled { "disabled" } else if u.must_change_password { "must change password" } else { "active" }}</td>
                    <td>
                        <form method="post" action=action class="row">
                            {csrf_field(&auth)}
                            <select name="role">{role_options(u.role)}</select>
                            <label><input type="checkbox" name="disabled" value="1" checked={u.disabled}/>" disabled"</label>
                            <button type="submit">"Save"</button>
                        </form>
                    </td>
                </tr>
            }
        })
        .collect_view();
    let body = view! {
        <h1>"Users and roles"</h1>
        {flash(q.msg.as_deref())}
        <p class="muted">"Viewers read everything. Analysts also triage, suppress and save hunts. Admins also manage users, settings and enrollment tokens."</p>
        <section class="panel flush">
            <table class="dense">
                <thead><tr><th>"User"</th><th>"Created"</th><th>"Status"</th><th>"Role"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
        <section class="panel">
            <h2>"Add a user"</h2>
            <form method="post" action="/users" class="row">
                {csrf_field(&auth)}
                <input type="text" name="name" placeholder="user name" maxlength="64" required/>
                <select name="role">{role_options(Role::Viewer)}</select>
                <input type="password" name="password" placeholder="initial password (12+ characters)" required/>
                <button type="submit" class="primary">"Add user"</button>
            </form>
            <p class="muted">"New users must change the initial password at first login."</p>
        </section>
    };
    Ok(render("Users", Nav::Users, &auth, body.into_any()))
}

/// Fields of the add-user form.
#[derive(Debug, Deserialize)]
pub struct NewUserForm {
    pub name: String,
    pub role: String,
    pub password: String,
}

/// Whether `n` is an acceptable user name (the console and `vigil user
/// add` apply the same rule).
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// `POST /users` (admin).
pub async fn users_create(
    State(state): State<ConsoleState>,
    auth: Authed,
    Form(f): Form<NewUserForm>,
) -> Result<Redirect, UiError> {
    auth.require(Role::Admin)?;
    let name = f.name.trim().to_string();
    if !valid_name(&name) {
        return Err(UiError::BadRequest(
            "User names use letters, digits, '.', '_' or '-' (at most 64).".into(),
        ));
    }
    let role =
        Role::from_name(&f.role).ok_or_else(|| UiError::BadRequest("Unknown role.".into()))?;
    if f.password.chars().count() < MIN_PASSWORD_LEN {
        return Err(UiError::BadRequest(format!(
            "Passwords need at least {MIN_PASSWORD_LEN} characters."
        )));
    }
    if state.store.user(&name)?.is_some() {
        return Err(UiError::BadRequest("That user already exists.".into()));
    }
    let password = f.password;
    let password_hash = state
        .login_guard
        .argon2
        .run(move || hash_password(&password))
        .await??;
    state.store.put_user(User {
        name: name.clone(),
        role,
        password_hash,
        created_ns: state.now(),
        must_change_password: true,
        disabled: false,
    })?;
    state.audit(
        &auth.user.name,
        "user.create",
        &format!("user:{name}"),
        &format!("role={}", role.name()),
    )?;
    Ok(Redirect::to("/users?msg=user"))
}

/// Fields of the per-user form.
#[derive(Debug, Deserialize)]
pub struct UpdateUserForm {
    pub role: String,
    #[serde(default)]
    pub disabled: String,
}

/// `POST /users/{name}` (admin): role and disabled flag.
pub async fn users_update(
    State(state): State<ConsoleState>,
    auth: Authed,
    Path(name): Path<String>,
    Form(f): Form<UpdateUserForm>,
) -> Result<Redirect, UiError> {
    auth.require(Role::Admin)?;
    let mut user = state
        .store
        .user(&name)?
        .ok_or_else(|| UiError::NotFound(format!("user {name}")))?;
    let role =
        Role::from_name(&f.role).ok_or_else(|| UiError::BadRequest("Unknown role.".into()))?;
    let disabled = f.disabled == "1";
    if name == auth.user.name && (role != Role::Admin || disabled) {
        return Err(UiError::BadRequest(
            "You cannot demote or disable yourself.".into(),
        ));
    }
    user.role = role;
    user.disabled = disabled;
    state.store.put_user(user)?;
    if disabled {
        state.store.delete_user_sessions(&name)?;
    }
    state.audit(
        &auth.user.name,
        "user.update",
        &format!("user:{name}"),
        &format!("role={} disabled={disabled}", role.name()),
    )?;
    Ok(Redirect::to("/users?msg=user"))
}

/// `GET /account`: change own password.
pub async fn account_page(
    State(_state): State<ConsoleState>,
    auth: Authed,
    Query(q): Query<PageQuery>,
) -> PageResult {
    let body = view! {
        <h1>"Your account"</h1>
        {flash(q.msg.as_deref())}
        <section class="panel narrowpanel">
            <p>{format!("Signed in as {} ({}).", auth.user.name, auth.user.role.name())}</p>
            <h2>"Change password"</h2>
            <form method="post" action="/account" class="stack">
                {csrf_field(&auth)}
                <label>"Current password" <input type="password" name="current" autocomplete="current-password" required/></label>
                <label>"New password (12+ characters)" <input type="password" name="new" autocomplete="new-password" required/></label>
                <label>"Repeat new password" <input type="password" name="confirm" autocomplete="new-password" required/></label>
                <button type="submit" class="primary">"Change password"</button>
            </form>
        </section>
    };
    Ok(render("Account", Nav::Account, &auth, body.into_any()))
}

/// Fields of the change-password form.
#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    pub current: String,
    pub new: String,
    pub confirm: String,
}

/// `POST /account`: any role may change their own password.
pub async fn account_password(
    State(state): State<ConsoleState>,
    auth: Authed,
    Form(f): Form<PasswordForm>,
) -> Result<Redirect, UiError> {
    if f.new != f.confirm {
        return Err(UiError::BadRequest("The new passwords differ.".into()));
    }
    if f.new.chars().count() < MIN_PASSWORD_LEN || f.new == f.current {
        return Err(UiError::BadRequest(format!(
            "Pick a new password of at least {MIN_PASSWORD_LEN} characters."
        )));
    }
    let phc = auth.user.password_hash.clone();
    let (current, new) = (f.current, f.new);
    // Both Argon2 runs on the blocking pool, under the same cap as logins.
    let new_hash = state
        .login_guard
        .argon2
        .run(move || {
            verify_password(&current, &phc)
                .then(|| hash_password(&new))
                .transpose()
        })
        .await??
        .ok_or_else(|| UiError::BadRequest("The current password is wrong.".into()))?;
    let mut user = auth.user.clone();
    user.password_hash = new_hash;
    user.must_change_password = false;
    state.store.put_user(user)?;
    // Other sessions of this user end; this one stays.
    state.store.delete_user_sessions(&auth.user.name)?;
    state.store.put_session(auth.session.clone())?;
    state.audit(
        &auth.user.name,
        "user.password",
        &format!("user:{}", auth.user.name),
        "",
    )?;
    if auth.user.name == FIRST_ADMIN {
        remove_first_password_file(&state);
    }
    Ok(Redirect::to("/account?msg=password"))
}

/// The generated password is no longer valid: its file goes.
fn remove_first_password_file(state: &ConsoleState) {
    let Some(path) = &state.first_password_file else {
        return;
    };
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "first admin password changed; file removed")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not remove the first admin password file")
        }
    }
}

/// `GET /settings`: everyone reads, admins edit.
pub async fn settings_page(
    State(state): State<ConsoleState>,
    auth: Authed,
    Query(q): Query<PageQuery>,
) -> PageResult {
    settings_view(&state, &auth, q.msg.as_deref(), None)
}

/// Render the settings page; `secret` is a just-created enrollment token.
pub fn settings_view(
    state: &ConsoleState,
    auth: &Authed,
    msg: Option<&str>,
    secret: Option<String>,
) -> PageResult {
    let s = state.store.settings()?;
    let admin = auth.can(Role::Admin);
    let gib = s.retention_bytes / (1 << 30);
    let tokens = state
        .store
        .enrollment_tokens()?
        .into_iter()
        .map(|t| {
            let status = if t.revoked {
                "revoked"
            } else if t.expires_ns <= state.now() {
                "expired"
            } else if t.uses >= t.max_uses {
                "used up"
            } else {
                "valid"
            };
            let revoke = (admin && !t.revoked).then(|| {
                let action = format!("/settings/tokens/{}/revoke", t.id);
                view! {
                    <form method="post" action=action class="row">
                        {csrf_field(auth)}
                        <button type="submit">"Revoke"</button>
                    </form>
                }
            });
            view! {
                <tr>
                    <td class="num">{t.id}</td>
                    <td>{t.label.clone()}</td>
                    <td class="mono">{format_ts(t.created_ns)}</td>
                    <td class="mono">{format_ts(t.expires_ns)}</td>
                    <td class="num">{format!("{} / {}", t.uses, t.max_uses)}</td>
                    <td>{status}</td>
                    <td>{revoke}</td>
                </tr>
            }
        })
        .collect_view();
    let new_secret = secret.map(|secret| {
        view! {
            <div class="flash ok">
                "New enrollment token (shown once; copy it now): "
                <code class="secret">{secret}</code>
            </div>
        }
    });
    let approvals = super::respond_policy::panel(state, auth)?;
    let body = view! {
        <h1>"Settings"</h1>
        {flash(msg)}
        {new_secret}
        <div class="grid2">
            <section class="panel">
                <h2>"Retention and detection"</h2>
                <form method="post" action="/settings" class="stack">
                    {csrf_field(auth)}
                    <label>"Keep events for (days)" <input type="number" name="retention_days" min="1" max="3650" value=s.retention_days.to_string() disabled={!admin}/></label>
                    <label>"Keep at most (GiB)" <input type="number" name="retention_gib" min="1" max="1000000" value=gib.to_string() disabled={!admin}/></label>
                    <label>"Learning period (days)" <input type="number" name="learning_period_days" min="1" max="90" value=s.learning_period_days.to_string() disabled={!admin}/></label>
                    <label>"Alert budget (per day)" <input type="number" name="alert_budget_per_day" min="1" max="10000" value=s.alert_budget_per_day.to_string() disabled={!admin}/></label>
                    {admin.then(|| view! { <button type="submit" class="primary">"Save settings"</button> })}
                </form>
                <p class="muted">"Retention is enforced automatically: whichever limit is reached first removes the oldest events."</p>
            </section>
            <section class="panel">
                <h2>"Enrollment tokens"</h2>
                <table class="dense">
                    <thead><tr><th>"#"</th><th>"Label"</th><th>"Created"</th><th>"Expires"</th><th>"Uses"</th><th>"Status"</th><th></th></tr></thead>
                    <tbody>{tokens}</tbody>
                </table>
                {admin.then(|| view! {
                    <form method="post" action="/settings/tokens" class="row">
                        {csrf_field(auth)}
                        <input type="text" name="label" placeholder="label, e.g. datacenter-2" maxlength="80" required/>
                        <label>"valid (hours) " <input type="number" name="ttl_hours" min="1" max="720" value="24"/></label>
                        <label>"max hosts " <input type="number" name="max_uses" min="1" max="100000" value="100"/></label>
                        <button type="submit">"Create token"</button>
                    </form>
                })}
            </section>
            {approvals}
        </div>
    };
    Ok(render("Settings", Nav::Settings, auth, body.into_any()))
}

/// Fields of the settings form.
#[derive(Debug, Deserialize)]
pub struct SettingsForm {
    pub retention_days: u32,
    pub retention_gib: u64,
    pub learning_period_days: u32,
    pub alert_budget_per_day: u32,
}

/// Every problem with a settings form, each naming its field.
pub fn validate_settings(f: &SettingsForm) -> Result<Settings, Vec<String>> {
    let mut errs = Vec::new();
    if !(1..=3650).contains(&f.retention_days) {
        errs.push("retention_days: between 1 and 3650".to_string());
    }
    if !(1..=1_000_000).contains(&f.retention_gib) {
        errs.push("retention_gib: between 1 and 1000000".to_string());
    }
    if !(1..=90).contains(&f.learning_period_days) {
        errs.push("learning_period_days: between 1 and 90".to_string());
    }
    if !(1..=10_000).contains(&f.alert_budget_per_day) {
        errs.push("alert_budget_per_day: between 1 and 10000".to_string());
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Settings {
        retention_days: f.retention_days,
        retention_bytes: f.retention_gib << 30,
        learning_period_days: f.learning_period_days,
        alert_budget_per_day: f.alert_budget_per_day,
    })
}

/// `POST /settings` (admin).
pub async fn settings_save(
    State(state): State<ConsoleState>,
    auth: Authed,
    Form(f): Form<SettingsForm>,
) -> Result<Redirect, UiError> {
    auth.require(Role::Admin)?;
    let s = validate_settings(&f).map_err(|e| UiError::BadRequest(e.join("; ")))?;
    state.store.put_settings(s)?;
    state.audit(
        &auth.user.name,
        "settings.update",
        "settings",
        &format!("{s:?}"),
    )?;
    Ok(Redirect::to("/settings?msg=saved"))
}

/// Fields of the new-token form.
#[derive(Debug, Deserialize)]
pub struct TokenForm {
    pub label: String,
    pub ttl_hours: u64,
    pub max_uses: u32,
}

/// The label of a new token (trimmed, at most 80 characters), once the
/// token's fields are within bounds; the settings page and the add-hosts
/// page check them the same way.
pub fn token_label(label: &str, ttl_hours: u64, max_uses: u32) -> Result<String, UiError> {
    let label: String = label.trim().chars().take(80).collect();
    if label.is_empty() || !(1..=720).contains(&ttl_hours) || !(1..=100_000).contains(&max_uses) {
        return Err(UiError::BadRequest(
            "label: required; ttl_hours: 1 to 720; max_uses: 1 to 100000".into(),
        ));
    }
    Ok(label)
}

/// Create an enrollment token of `label` (already checked by
/// [`token_label`]) and audit it with `detail`: the one write path of the
/// settings page and the Add hosts page, so both are audited alike.
pub(crate) fn create_token(
    state: &ConsoleState,
    auth: &Authed,
    label: &str,
    ttl_hours: u64,
    max_uses: u32,
    detail: &str,
) -> Result<crate::store::NewEnrollmentToken, UiError> {
    let t = state.store.create_enrollment_token(
        label,
        ttl_hours * 3600 * 1_000_000_000,
        max_uses,
        state.now(),
    )?;
    state.audit(
        &auth.user.name,
        "enrollment.token_create",
        &format!("token:{}", t.info.id),
        detail,
    )?;
    Ok(t)
}

/// `POST /settings/tokens` (admin): the secret is shown once on the next page.
pub async fn token_create(
    State(state): State<ConsoleState>,
    auth: Authed,
    Form(f): Form<TokenForm>,
) -> PageResult {
    auth.require(Role::Admin)?;
    let label = token_label(&f.label, f.ttl_hours, f.max_uses)?;
    let t = create_token(&state, &auth, &label, f.ttl_hours, f.max_uses, &label)?;
    // Rendered directly (not redirected) so the secret never appears in a URL.
    settings_view(&state, &auth, None, Some(t.secret))
}

/// `POST /settings/tokens/{id}/revoke` (admin): the token enrolls nothing more.
pub async fn token_revoke(
    State(state): State<ConsoleState>,
    auth: Authed,
    Path(id): Path<u64>,
) -> Result<Redirect, UiError> {
    auth.require(Role::Admin)?;
    let newly = match state.store.revoke_enrollment_token(id, state.now()) {
        Err(crate::store::StoreError::NotFound(_)) => {
            return Err(UiError::NotFound(format!("enrollment token {id}")))
        }
        other => other?,
    };
    if newly {
        state.audit(
            &auth.user.name,
            "enrollment.token_revoke",
            &format!("token:{id}"),
            "",
        )?;
    }
    Ok(Redirect::to("/settings?msg=revoked"))
}
