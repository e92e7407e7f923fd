//! Security middleware: CSRF check on every state-changing request, the
//! forced first-login password change, and the security headers on every
//! response (the appliance also wraps its whole HTTPS router, `/metrics`
//! and `/healthz` included, in [`security_headers`]).

use crate::auth::{cookie, ct_eq, resolve_session, LOGIN_CSRF_COOKIE};
use crate::error::UiError;
use crate::urlenc::form_value;
use crate::ConsoleState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The policy: only this origin, no inline script or style, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'";

/// Largest form body accepted.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Adds CSP, framing, sniffing, referrer and caching headers to a response.
pub async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), usb=()"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// Refuses (403) any non-GET request whose form body lacks the right `csrf`
/// field: the session's token, or for `/login` the double-submit cookie.
pub async fn csrf_guard(State(state): State<ConsoleState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response();
    };
    let submitted = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|b| form_value(b, "csrf"));
    let expected = if parts.uri.path() == "/login" {
        cookie(&parts.headers, LOGIN_CSRF_COOKIE)
    } else {
        match resolve_session(&state, &parts.headers, state.now()) {
            Ok(a) => a.map(|a| a.session.csrf),
            Err(e) => return e.into_response(),
        }
    };
    match (submitted, expected) {
        (Some(s), Some(e)) if !e.is_empty() && ct_eq(&s, &e) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        _ => {
            tracing::warn!(
                path = parts.uri.path(),
                "request refused: missing or invalid CSRF token"
            );
            UiError::Forbidden("Missing or invalid CSRF token. Reload the page and try again.")
                .into_response()
        }
    }
}

/// Paths a user who must change their password may still reach.
const PASSWORD_CHANGE_PATHS: [&str; 4] = ["/account", "/logout", "/login", "/static/console.css"];

/// Sends a user whose password must change (the generated first-admin
/// password, an admin reset) to `/account` for every other page or action,
/// until they have changed it.
pub async fn password_change_gate(
    State(state): State<ConsoleState>,
    req: Request,
    next: Next,
) -> Response {
    if PASSWORD_CHANGE_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    match resolve_session(&state, req.headers(), state.now()) {
        Ok(Some(a)) if a.user.must_change_password => {
            (StatusCode::SEE_OTHER, [(header::LOCATION, "/account")]).into_response()
        }
        // Anonymous or fine: the handler decides (login redirect, errors).
        _ => next.run(req).await,
    }
}
