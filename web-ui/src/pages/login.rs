//! Login and logout.

use crate::auth::{
    self, cookie, set_cookie, Authed, LoginOutcome, LOGIN_CSRF_COOKIE, SESSION_COOKIE,
};
use crate::error::UiError;
use crate::throttle::ClientIp;
use crate::time::format_ts;
use crate::ConsoleState;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use leptos::prelude::*;
use serde::Deserialize;

fn login_page(csrf: &str, error: Option<String>, status: StatusCode) -> Response {
    let err = error.map(|e| view! { <div class="flash err">{e}</div> });
    let body = view! {
        <section class="panel">
            <h1>"Sign in"</h1>
            {err}
            <form method="post" action="/login" class="stack">
                <input type="hidden" name="csrf" value=csrf.to_string()/>
                <label>"User name" <input type="text" name="username" autocomplete="username" required autofocus/></label>
                <label>"Password" <input type="password" name="password" autocomplete="current-password" required/></label>
                <button type="submit" class="primary">"Sign in"</button>
            </form>
            <p class="muted">"Five failed attempts lock the account for 15 minutes."</p>
        </section>
    };
    let html = super::layout::bare("Sign in", body.into_any());
    let set = set_cookie(LOGIN_CSRF_COOKIE, csrf, 3600);
    (
        status,
        [(header::SET_COOKIE, set)],
        axum::response::Html(html),
    )
        .into_response()
}

/// `GET /login`: the form, with a fresh double-submit CSRF cookie.
pub async fn form(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    if auth::resolve_session(&state, &headers, state.now())?.is_some() {
        return Ok((StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response());
    }
    Ok(login_page(&auth::random_token(), None, StatusCode::OK))
}

/// Fields of the login form.
#[derive(Deserialize)]
pub struct LoginForm {
    pub username: String,
    pub password: String,
}

/// `POST /login` (CSRF already checked by the middleware). A client address
/// that failed repeatedly waits first; the password is checked on the
/// blocking pool under the Argon2 cap.
pub async fn submit(
    State(state): State<ConsoleState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, UiError> {
    let now = state.now();
    let csrf = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_else(auth::random_token);
    let name: String = f.username.trim().chars().take(64).collect();
    let sources = &state.login_guard.sources;
    if let Some(until_ns) = ip.and_then(|ip| sources.blocked_until(ip, now)) {
        let from = ip.map(|ip| ip.to_string()).unwrap_or_default();
        state.audit(&name, "login.throttled", &format!("source:{from}"), "")?;
        let msg = format!(
            "Too many failed sign-ins from your address. Try again after {}.",
            format_ts(until_ns)
        );
        return Ok(login_page(&csrf, Some(msg), StatusCode::TOO_MANY_REQUESTS));
    }
    let (store, idle) = (state.store.clone(), state.idle_timeout_ns);
    let (user_name, password) = (name.clone(), f.password);
    let outcome = match state
        .login_guard
        .argon2
        .run(move || auth::login(store.as_ref(), &user_name, &password, now, idle))
        .await
    {
        Err(UiError::Busy) => {
            let msg = "Too many sign-ins at once. Try again in a few seconds.".to_string();
            return Ok(login_page(
                &csrf,
                Some(msg),
                StatusCode::SERVICE_UNAVAILABLE,
            ));
        }
        other => other??,
    };
    match &outcome {
        LoginOutcome::Success { .. } => ip.into_iter().for_each(|ip| sources.success(ip)),
        _ => ip.into_iter().for_each(|ip| {
            sources.failure(ip, now);
        }),
    }
    login_response(&state, &csrf, &name, outcome)
}

fn login_response(
    state: &ConsoleState,
    csrf: &str,
    name: &str,
    outcome: LoginOutcome,
) -> Result<Response, UiError> {
    match outcome {
        LoginOutcome::Success { token, user } => {
            state.audit(&user.name, "login", &format!("user:{}", user.name), "")?;
            let to = if user.must_change_password {
                "/account"
            } else {
                "/"
            };
            let session = set_cookie(SESSION_COOKIE, &token, auth::SESSION_TTL_NS / 1_000_000_000);
            let clear = set_cookie(LOGIN_CSRF_COOKIE, "", 0);
            let mut res = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
            res.headers_mut().append(
                header::SET_COOKIE,
                session.parse().map_err(|_| UiError::Hash)?,
            );
            res.headers_mut().append(
                header::SET_COOKIE,
                clear.parse().map_err(|_| UiError::Hash)?,
            );
            Ok(res)
        }
        LoginOutcome::Invalid => {
            state.audit(
                name,
                "login.failed",
                &format!("user:{name}"),
                "wrong user name or password",
            )?;
            Ok(login_page(
                csrf,
                Some("Wrong user name or password.".into()),
                StatusCode::UNAUTHORIZED,
            ))
        }
        LoginOutcome::Locked { until_ns } => {
            state.audit(
                name,
                "login.locked",
                &format!("user:{name}"),
                "too many failures",
            )?;
            let msg = format!(
                "Too many failed attempts. Try again after {}.",
                format_ts(until_ns)
            );
            Ok(login_page(csrf, Some(msg), StatusCode::TOO_MANY_REQUESTS))
        }
    }
}

/// `POST /logout`: end the session and clear the cookie.
pub async fn logout(State(state): State<ConsoleState>, auth: Authed) -> Result<Response, UiError> {
    state.store.delete_session(&auth.session.id)?;
    state.audit(
        &auth.user.name,
        "logout",
        &format!("user:{}", auth.user.name),
        "",
    )?;
    let clear = set_cookie(SESSION_COOKIE, "", 0);
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/login".to_string()),
            (header::SET_COOKIE, clear),
        ],
    )
        .into_response())
}
