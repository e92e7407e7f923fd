//! The one error type of request handlers, and how each variant answers.

use crate::store::StoreError;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use vigil_proto::query::QueryError;

/// Why a request did not produce its page.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// No valid session: send the browser to the login page.
    #[error("login required")]
    Unauthenticated,
    /// Logged in, but the role does not allow it (or CSRF check failed).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("not found: {0}")]
    NotFound(String),
    /// A form or query field was malformed; the message is shown to the user.
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Query(QueryError),
    #[error("password hashing failed")]
    Hash,
    /// The blocking render task panicked or was cancelled.
    #[error("render task failed")]
    Task,
    /// Too many password checks are already queued; try again shortly.
    #[error("busy")]
    Busy,
}

impl From<QueryError> for UiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::NotFound(what) => UiError::NotFound(what),
            QueryError::Invalid(why) => UiError::BadRequest(why),
            other => UiError::Query(other),
        }
    }
}

/// A minimal error page: fixed text plus the escaped message.
fn error_page(status: StatusCode, message: &str) -> Response {
    let html =
        crate::pages::layout::bare_page(status.canonical_reason().unwrap_or("Error"), message);
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::Unauthenticated => {
                (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response()
            }
            UiError::Forbidden(why) => error_page(StatusCode::FORBIDDEN, why),
            UiError::NotFound(what) => {
                error_page(StatusCode::NOT_FOUND, &format!("Not found: {what}"))
            }
            UiError::BadRequest(why) => error_page(StatusCode::BAD_REQUEST, &why),
            UiError::Busy => {
                let mut res = error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Too many sign-ins at once. Try again in a few seconds.",
                );
                res.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
                res
            }
            other => {
                tracing::error!(error = %other, "console request failed");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error; see the appliance log.",
                )
            }
        }
    }
}
