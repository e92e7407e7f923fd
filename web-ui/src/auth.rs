//! Passwords, sessions, CSRF tokens, login lockout and role checks.

use crate::error::UiError;
use crate::store::{ConsoleStore, LoginAttempts, Role, Session, User};
use crate::ConsoleState;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Session cookie name. The `__Host-` prefix makes browsers refuse it
/// unless it is `Secure`, has `Path=/` and no `Domain`, so no sibling host
/// or plain-HTTP page can plant or shadow it.
pub const SESSION_COOKIE: &str = "__Host-vigil_session";
/// Cookie carrying the login form's CSRF token (double submit; no session
/// yet). `__Host-` like the session cookie, hence `Path=/`.
pub const LOGIN_CSRF_COOKIE: &str = "__Host-vigil_login_csrf";
/// Absolute session lifetime.
pub const SESSION_TTL_NS: u64 = 8 * 3600 * 1_000_000_000;
/// Default idle timeout: a session unused this long is refused.
pub const DEFAULT_IDLE_TIMEOUT_NS: u64 = 30 * 60 * 1_000_000_000;
/// A session's idle deadline is written at most this often (a store write
/// per request would be wasted work), so it ends between the idle timeout
/// minus this and the idle timeout after its last use.
pub const TOUCH_EVERY_NS: u64 = 60 * 1_000_000_000;
/// Name of the account created at first start.
pub const FIRST_ADMIN: &str = "admin";
/// Failures allowed inside [`FAILURE_WINDOW_NS`] before the account locks.
pub const MAX_FAILURES: u32 = 5;
/// Window over which failures are counted.
pub const FAILURE_WINDOW_NS: u64 = 15 * 60 * 1_000_000_000;
/// How long a locked account refuses logins.
pub const LOCKOUT_NS: u64 = 15 * 60 * 1_000_000_000;
/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;

/// 32 random bytes, hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Hex SHA-256, used to key sessions by their token.
pub fn token_id(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Argon2id (default parameters: 19 MiB, 2 passes) PHC string.
pub fn hash_password(password: &str) -> Result<String, UiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| UiError::Hash)
}

/// Whether `password` matches a PHC hash; a malformed hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Equal-time comparison for tokens.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Value of cookie `name` from the request headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

/// `Set-Cookie` value with every protection the console needs (`Path=/`,
/// `Secure` and no `Domain`, as the `__Host-` prefix requires).
pub fn set_cookie(name: &str, value: &str, max_age_s: u64) -> String {
    format!("{name}={value}; Path=/; Max-Age={max_age_s}; HttpOnly; Secure; SameSite=Strict")
}

/// Result of a login attempt.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Credentials good; a session was created. Holds the cookie token.
    Success { token: String, user: User },
    /// Wrong name or password (indistinguishable on purpose).
    Invalid,
    /// Too many failures; try again after this time.
    Locked { until_ns: u64 },
}

fn lockout_key(name: &str) -> String {
    let n: String = name.trim().to_lowercase().chars().take(64).collect();
    format!("user:{n}")
}

/// A hash to verify against when the user does not exist, so timing does not
/// reveal which names are valid.
fn dummy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| hash_password("not-a-real-password-0").unwrap_or_default())
}

/// The failure record after one more failure at `now_ns`: a new window
/// when the old one is over, a lock at [`MAX_FAILURES`].
fn next_failure(a: LoginAttempts, now_ns: u64) -> LoginAttempts {
    if a.locked_until_ns > now_ns {
        // Another request locked the account meanwhile; keep that lock.
        return a;
    }
    let mut a = if now_ns.saturating_sub(a.window_start_ns) > FAILURE_WINDOW_NS {
        LoginAttempts {
            failures: 0,
            window_start_ns: now_ns,
            locked_until_ns: 0,
        }
    } else {
        a
    };
    a.failures += 1;
    if a.failures >= MAX_FAILURES {
        a = LoginAttempts {
            failures: 0,
            window_start_ns: now_ns,
            locked_until_ns: now_ns + LOCKOUT_NS,
        };
    }
    a
}

/// Check credentials under the lockout policy and open a session on success
/// (idle deadline `idle_ns` from now). Runs Argon2: call it through
/// [`crate::throttle::Argon2Pool::run`], never on an async worker.
pub fn login(
    store: &dyn ConsoleStore,
    name: &str,
    password: &str,
    now_ns: u64,
    idle_ns: u64,
) -> Result<LoginOutcome, UiError> {
    let key = lockout_key(name);
    let attempts = store.login_attempts(&key)?;
    if attempts.locked_until_ns > now_ns {
        return Ok(LoginOutcome::Locked {
            until_ns: attempts.locked_until_ns,
        });
    }
    let user = store.user(name.trim())?.filter(|u| !u.disabled);
    let ok = match &user {
        Some(u) => verify_password(password, &u.password_hash),
        None => {
            verify_password(password, dummy_hash());
            false
        }
    };
    match (ok, user) {
        (true, Some(user)) => {
            store.put_login_attempts(&key, LoginAttempts::default())?;
            let token = random_token();
            store.put_session(Session {
                id: token_id(&token),
                user: user.name.clone(),
                csrf: random_token(),
                created_ns: now_ns,
                expires_ns: now_ns + idle_ns.min(SESSION_TTL_NS),
            })?;
            Ok(LoginOutcome::Success { token, user })
        }
        _ => {
            // Read-modify-write in the store: concurrent failures all count.
            let after = store.update_login_attempts(&key, &mut |a| next_failure(a, now_ns))?;
            if after.locked_until_ns > now_ns {
                Ok(LoginOutcome::Locked {
                    until_ns: after.locked_until_ns,
                })
            } else {
                Ok(LoginOutcome::Invalid)
            }
        }
    }
}

/// Create the first admin with a random password if there are no users.
/// Returns the password so the appliance can print it once at setup.
pub fn bootstrap_admin(store: &dyn ConsoleStore, now_ns: u64) -> Result<Option<String>, UiError> {
    if !store.users()?.is_empty() {
        return Ok(None);
    }
    let password = random_token()[..20].to_string();
    store.put_user(User {
        name: FIRST_ADMIN.into(),
        role: Role::Admin,
        password_hash: hash_password(&password)?,
        created_ns: now_ns,
        must_change_password: true,
        disabled: false,
    })?;
    Ok(Some(password))
}

/// The logged-in user of a request, resolved from the session cookie.
#[derive(Debug, Clone)]
pub struct Authed {
    pub user: User,
    pub session: Session,
}

impl Authed {
    /// 403 unless the user's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), UiError> {
        if self.user.role >= role {
            Ok(())
        } else {
            Err(UiError::Forbidden("Your role does not allow this action."))
        }
    }

    /// Whether the user may do what `role` may (for showing forms).
    pub fn can(&self, role: Role) -> bool {
        self.user.role >= role
    }
}

/// The session behind a request's cookie, if valid at `now_ns`: before its
/// idle deadline and within its absolute lifetime. A use slides the idle
/// deadline to `now_ns` plus the console's idle timeout (written at most
/// every [`TOUCH_EVERY_NS`]).
pub fn resolve_session(
    state: &ConsoleState,
    headers: &HeaderMap,
    now_ns: u64,
) -> Result<Option<Authed>, UiError> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(mut session) = state.store.session(&token_id(&token))? else {
        return Ok(None);
    };
    let end_of_life = session.created_ns.saturating_add(SESSION_TTL_NS);
    if session.expires_ns <= now_ns || end_of_life <= now_ns {
        state.store.delete_session(&session.id)?;
        return Ok(None);
    }
    let user = match state.store.user(&session.user)? {
        Some(user) if !user.disabled => user,
        _ => return Ok(None),
    };
    let deadline = now_ns
        .saturating_add(state.idle_timeout_ns)
        .min(end_of_life);
    if deadline.abs_diff(session.expires_ns) >= TOUCH_EVERY_NS {
        if !state.store.touch_session(&session.id, deadline)? {
            return Ok(None); // logged out meanwhile
        }
        session.expires_ns = deadline;
    }
    Ok(Some(Authed { user, session }))
}

impl FromRequestParts<ConsoleState> for Authed {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &ConsoleState) -> Result<Self, UiError> {
        resolve_session(state, &parts.headers, state.now())?.ok_or(UiError::Unauthenticated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_argon2id_and_verifies() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }
}
