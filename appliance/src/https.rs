//! The HTTPS server (axum over rustls): `/healthz`, `/metrics` (Prometheus
//! text, bearer token from `DATA/metrics.token`), plus any router the caller
//! merges in (the web UI). Every response, whichever route made it, carries
//! the console's security headers, and handlers see the client's address
//! (`ConnectInfo<SocketAddr>`, used by the login backoff).

use crate::core::Core;
use crate::shutdown::Shutdown;
use crate::store::Cf;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
struct HttpState {
    core: Arc<Core>,
    token: Arc<str>,
}

/// The appliance's own routes.
pub fn router(core: Arc<Core>, metrics_token: String) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(HttpState {
            core,
            token: metrics_token.into(),
        })
}

fn bearer_ok(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(given) = value.strip_prefix("Bearer ") else {
        return false;
    };
    // Constant-time compare: the token is a secret.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn metrics(State(s): State<HttpState>, headers: HeaderMap) -> Response {
    if !bearer_ok(&headers, &s.token) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "metrics need the bearer token from DATA/metrics.token\n",
        )
            .into_response();
    }
    let core = s.core.clone();
    let body = tokio::task::spawn_blocking(move || {
        let store = core.db.store();
        let events_bytes = (store.size_bytes(Cf::Events) + store.size_bytes(Cf::SeqIndex)) as f64;
        core.metrics.render_prometheus(&[
            (
                "vigil_hosts",
                "Enrolled hosts.",
                core.registry.all().len() as f64,
            ),
            (
                "vigil_hosts_connected",
                "Hosts connected now.",
                core.registry.connected_count() as f64,
            ),
            (
                "vigil_disk_bytes",
                "Bytes on disk, all column families.",
                store.total_bytes() as f64,
            ),
            (
                "vigil_events_disk_bytes",
                "Bytes on disk of stored events.",
                events_bytes,
            ),
            (
                "vigil_events_per_second",
                "Recent ingest rate.",
                core.metrics.events_per_s(),
            ),
        ]) + &core.forwarding.prometheus()
            + &crate::trends::prometheus(&core.db).unwrap_or_default()
    })
    .await
    .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Serve `app` over TLS on `listener` until shutdown (5 s grace), with the
/// security headers on every response and the peer address available to
/// handlers.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.wait().await;
        stopper.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
    let app = app.layer(axum::middleware::map_response(
        vigil_web_ui::security::security_headers,
    ));
    axum_server::from_tcp_rustls(listener, config)
        .handle(handle)
        .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .await
}
