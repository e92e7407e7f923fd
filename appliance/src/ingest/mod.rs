//! Ingest: the QUIC endpoint ([`server`]) and the group-commit writer ([`writer`]).

pub mod frames;
pub mod limits;
pub mod rules;
pub mod server;
pub mod writer;
