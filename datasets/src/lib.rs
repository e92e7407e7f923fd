//! Vigil data sets: a deterministic synthetic enterprise with labelled
//! lateral movement, adapters for public formats (LANL 2015, OTRF
//! Security-Datasets JSON, EVTX) into `proto` events, and the evaluation
//! driver behind `vigil eval` (it lives here, not in `models`, because it
//! reads files; `models` stays pure).

pub mod cli;
pub mod eval;
pub mod evtx_file;
pub mod lanl;
pub mod otrf;
pub mod replay;
pub mod synth;
pub mod windows;
