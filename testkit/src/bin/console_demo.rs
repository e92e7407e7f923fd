//! `console-demo [ADDR]`: serve the console over the demo fleet on plain HTTP
//! (default `127.0.0.1:8080`; open it as `localhost` so Secure cookies work).
//! For local look-and-feel checks only; the appliance serves HTTPS.

use anyhow::Context;
use vigil_testkit::demo::{demo_state, DEMO_USERS};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let (state, _store) = demo_state(vigil_web_ui::system_now_ns())?;
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("bind {addr}"))?;
    eprintln!("Vigil console demo on {addr} (browse to localhost). Accounts:");
    for (name, role, pw) in DEMO_USERS {
        eprintln!("  {name:<6} {:<8} {pw}", role.name());
    }
    axum::serve(listener, vigil_web_ui::router(state)).await?;
    Ok(())
}
