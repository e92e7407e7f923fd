//! Vigil's operator tools: the evaluation driver behind `vigil eval` (the
//! real detector over labelled data sets, metrics next to a baseline) and
//! `vigil replay` (a data set streamed into a running appliance through the
//! sensor's own spool and uplink, one enrolled identity per data-set host).
//!
//! They live outside the appliance so the server binary links neither the
//! sensor nor the data-set adapters; `vigil eval …` / `vigil replay …` exec
//! the `vigil-eval` / `vigil-replay` binaries of this crate.

pub mod eval;
pub mod eval_cli;
pub mod replay;
pub mod replay_cli;
