//! Vigil end-to-end tests: real sensors, real QUIC, real RocksDB, real sshd, real browser.
