//! Vigil appliance: QUIC ingest with an enrollment CA, RocksDB storage with
//! retention, counters, and the read API shared with the web UI.
//!
//! # Path of one batch
//! [`ingest::server`] accepts a QUIC connection (mTLS, host id = client
//! certificate CN) → reads a frame header, checks its size, reads the
//! payload → decodes the batch, checks every event is from that host →
//! [`ingest::writer`] dedupes on (host, seq) and group-commits one synced
//! RocksDB write → the sensor gets `Ack`.
//!
//! # Library API (for the lead's end-to-end tests and demo)
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use vigil_appliance::{Appliance, ServeConfig};
//! let mut cfg = ServeConfig::new("/var/lib/vigil").loopback();
//! cfg.extra_router = Some(axum::Router::new()); // the web UI, merged into HTTPS
//! let app = Appliance::start(cfg).await?;
//! let token = app.create_token(std::time::Duration::from_secs(3600), 5)?; // token.token, token.ca_fingerprint
//! let reader = app.reader();           // Arc<dyn vigil_proto::query::ReadApi>
//! let db = app.db();                   // write alerts / edges:
//! let id = db.next_alert_id()?;        // db.put_alert(&AlertRecord { id, .. })?
//! // db.record_edge(src, dst, port, Some("alice"), ts_ns)?  or db.put_edge(&EdgeRecord {..})?
//! println!("{} {} {:?}", app.quic_addr, app.https_addr, reader.stats()?);
//! app.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Modules, in the order an event passes them: [`tls`] and [`pki`]
//! (who may connect), [`enroll`], [`ingest`], [`db`] over [`store`],
//! [`notices`] (what ingest tells the detection [`pipeline`]),
//! [`retention`], [`read`] ([`ReadApi`](vigil_proto::query::ReadApi)),
//! [`metrics`] and [`internal_events`], [`https`], [`admin`] (the CLI's
//! channel to a running server).

pub mod admin;
pub mod appliance;
pub mod audit_log;
pub mod authorized_keys;
pub mod cli;
pub mod console;
pub mod core;
pub mod db;
pub mod enroll;
pub mod export;
pub mod export_jobs;
pub mod forwarding;
pub mod https;
pub mod identity;
pub mod ingest;
pub mod internal_events;
pub mod metrics;
pub mod model_board;
pub mod notices;
pub mod packages;
pub mod pipeline;
pub mod pki;
pub mod read;
pub mod registry;
pub mod respond_admin;
pub mod response;
pub mod retention;
pub mod sensor_updates;
pub mod shutdown;
pub mod store;
pub mod tls;
pub mod trends;

pub use appliance::{Appliance, ApplianceError, ServeConfig};
pub use core::{system_clock, Clock, Core};
pub use db::Db;
pub use read::StoreReader;
