//! Vigil data sets: a deterministic synthetic enterprise with labelled
//! lateral movement, and adapters for public formats (LANL 2015, OTRF
//! Security-Datasets JSON, EVTX) into `proto` events.
//!
//! Pure data: no detector, no sensor, no network. The evaluation and the
//! replay that use these data sets are the `vigil-tools` crate.

pub mod enterprise;
pub mod evtx_file;
pub mod host_ids;
pub mod lanl;
pub mod otrf;
pub mod synth;
pub mod windows;
