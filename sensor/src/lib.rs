//! Vigil sensor: collectors, durable spool, QUIC uplink, response executor.
//!
//! The path of one event, in the order of the modules:
//! [`collect`] (a collector thread sees an exec, a connection, a login, a
//! file write) → [`runtime`] pipeline (CPU-budget aggregation of repeated
//! flows, see [`health`]) → [`spool`] (the event gets its `seq` and is on
//! disk before anything else) → [`uplink`] (batches over mTLS QUIC, deleted
//! from the spool only when acknowledged). Commands from the appliance run
//! in [`response`]. [`enroll`] turns a one-time token into the identity the
//! uplink uses; [`config`] is the validated TOML configuration.
//!
//! # Library API
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use vigil_sensor::{enroll, Config, EnrollParams, Sensor};
//!
//! // Once per host: trade a token for a client certificate (stored 0600).
//! let identity = enroll(&EnrollParams {
//!     appliance: "10.0.0.1:7443".into(),
//!     token: "one-time-token".into(),
//!     ca_sha256: "ab:cd:...".into(), // SHA-256 of the appliance CA, hex
//!     state_dir: "/var/lib/vigil-sensor".into(),
//! })
//! .await?;
//!
//! // Then run: from a TOML file (`Config::load`) or built in code.
//! let mut config = Config::new("10.0.0.1:7443", "/var/lib/vigil-sensor");
//! config.netns = Some("lab-host-1".into()); // optional: watch a netns as the host
//! let sensor = Sensor::start(config).await?; // loads the identity from state_dir
//! // ... later:
//! sensor.shutdown().await; // stops collectors, flushes to the spool, closes the uplink
//! # let _ = identity; Ok(()) }
//! ```
//!
//! [`Sensor::start_with`] takes an explicit [`Identity`] and an optional
//! command executor; [`SensorHandle`] exposes the spool, the uplink status
//! and a [`collect::Sink`] to inject observations (replay, tests).
//!
//! Invariants: every event carries the enrolled host id and a gap-free seq
//! starting at 1 (a `Loss` record takes a seq too); nothing leaves the spool
//! unless acknowledged; every channel is bounded; every task and thread
//! stops on shutdown.

/// Collectors: each thread turns what the kernel or a log shows into payloads.
pub mod collect;

/// Wiring: collectors → pipeline (budget folding) → spool → uplink, and shutdown.
pub mod runtime;

/// The durable spool: an event gets its seq and is on disk before it is sent.
pub mod spool;

/// The QUIC uplink: batches out of the spool, deleted only once acknowledged.
pub mod uplink;

/// Proto frames on the uplink's QUIC streams.
pub mod wire;

/// TLS and QUIC client setup, trusting only the pinned appliance CA.
pub mod tls;

/// Enrollment: a one-time token becomes the identity the uplink uses.
pub mod enroll;

/// Certificate renewal over the uplink, in the last third of a certificate's life.
pub mod renew;

/// Response actions carried out for the appliance (isolate, kill, collect).
pub mod response;

/// Self-measurement, collector visibility and the CPU budget rule.
pub mod health;

/// The validated TOML configuration.
pub mod config;

/// Self-update from the appliance, verified against the enrolled TUF root.
pub mod update;

pub use config::Config;
pub use enroll::{enroll, EnrollParams, Identity};
pub use runtime::{Sensor, SensorHandle};
