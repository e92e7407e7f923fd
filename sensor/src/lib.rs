//! Vigil sensor: collectors, durable spool, QUIC uplink, response executor.

pub mod collect;
pub mod config;
pub mod enroll;
pub mod health;
pub mod response;
pub mod runtime;
pub mod spool;
pub mod tls;
pub mod uplink;
pub mod wire;

pub use config::Config;
pub use enroll::{enroll, EnrollParams, Identity};
pub use runtime::{Sensor, SensorHandle};
