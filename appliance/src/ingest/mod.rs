//! Ingest: the QUIC endpoint ([`server`]) and the group-commit writer ([`writer`]).

pub mod frames;
pub mod server;
pub mod writer;
