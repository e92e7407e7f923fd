//! Vigil test support: everything tests, benches and demos need that the
//! product must not ship. Product crates take this crate only as a
//! dev-dependency; it may depend on all of them.
//!
//! - [`fleet`]: the one seeded fleet generator of the benches and scaled
//!   fixtures (hosts, realistic events per host, fleet graph, alerts).
//! - [`read_api`]: [`MemoryReadApi`], the console's read API in memory, and
//!   the scaled fleet in it; [`demo`]: the hand-written demo fleet with its
//!   incident, [`event_writer`] to write such streams, the demo console.
//! - [`console_store`]: [`MemoryConsoleStore`], the console's own store in
//!   memory.
//! - [`sim_sensor`]: a minimal QUIC sensor speaking the real protocol.
//! - [`render_bench`]: server render timing of the console's main pages.
//! - [`browser`]: headless Chromium over WebDriver and the page checks the
//!   browser tests and `bench-ui` share (label overlap, clipped tiles).
//!
//! Binaries: `bench-ui` (console render times over a real RocksDB store),
//! `bench-ingest` (acknowledged ingest rate, bytes per event, idle CPU) and
//! `console-demo` (the console over the demo fleet on plain HTTP).

pub mod browser;
pub mod console_store;
pub mod demo;
pub mod event_writer;
pub mod fleet;
pub mod read_api;
pub mod render_bench;
pub mod sim_sensor;

pub use console_store::MemoryConsoleStore;
pub use read_api::MemoryReadApi;
