//! Vigil sensor: collectors, durable spool, QUIC uplink, response executor.
