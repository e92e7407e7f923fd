//! Bounds that keep one sensor (or an unauthenticated peer) from taking the
//! appliance's memory or ingest capacity away from everyone else.
//!
//! - Batch decoding runs on the blocking pool, off the QUIC thread that
//!   serves every sensor, under one global memory budget: a decode first
//!   takes permits for its worst case, so concurrent decompression bombs
//!   wait instead of multiplying.
//! - Handshakes in progress and enrollment connections (both before any
//!   certificate is checked) are capped; over the cap a peer is refused at
//!   once and counted.
//! - Each host has an events-per-second budget (a token bucket). A sensor
//!   over it is throttled (its batch waits, so QUIC flow control pushes
//!   back on it alone) and counted; other hosts are unaffected.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use vigil_proto::limits::MAX_BATCH_DECODED_BYTES;
use vigil_proto::HostId;

/// Unit of the decode budget's permits.
const BUDGET_UNIT: usize = 1024 * 1024;

/// Configurable bounds (defaults fit a 24 GiB appliance with 10,000 sensors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Memory all batch decodes may hold at once.
    pub decode_budget_bytes: usize,
    /// Handshakes in progress at once.
    pub max_handshakes: usize,
    /// Enrollment connections open at once.
    pub max_enrollments: usize,
    /// Enrollment connections open at once from one address (so a flood
    /// from one machine cannot keep every other machine from enrolling).
    pub max_enrollments_per_addr: usize,
    /// Sustained events per second per host.
    pub host_events_per_s: u64,
    /// Events a host may send at once above the sustained rate (a sensor
    /// back from a long outage drains its spool in bursts of this size).
    pub host_burst_events: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            decode_budget_bytes: 512 * 1024 * 1024,
            max_handshakes: 1024,
            max_enrollments: 32,
            max_enrollments_per_addr: 8,
            host_events_per_s: 50_000,
            host_burst_events: 1_000_000,
        }
    }
}

/// Worst-case memory of decoding one batch: the decompressed bytes plus the
/// decoded events (bounded by the decoder) plus their re-encoded values.
pub fn batch_decode_cost() -> usize {
    MAX_BATCH_DECODED_BYTES * 4
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ns: u64,
}

/// The shared limiter state of one QUIC endpoint.
pub struct IngestLimits {
    cfg: LimitsConfig,
    decode: Arc<Semaphore>,
    handshakes: Arc<Semaphore>,
    enrollments: Arc<Semaphore>,
    enrolling_from: Arc<Mutex<HashMap<IpAddr, usize>>>,
    buckets: Mutex<HashMap<HostId, Bucket>>,
}

/// An enrollment slot; frees itself (globally and for its address) on drop.
pub struct EnrollmentSlot {
    _global: OwnedSemaphorePermit,
    addr: IpAddr,
    from: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for EnrollmentSlot {
    fn drop(&mut self) {
        let mut from = self.from.lock().expect("enrollment slots lock");
        if let Some(n) = from.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                from.remove(&self.addr);
            }
        }
    }
}

impl IngestLimits {
    /// Limiter state for `cfg`.
    pub fn new(cfg: LimitsConfig) -> Self {
        let units = (cfg.decode_budget_bytes / BUDGET_UNIT).max(batch_decode_cost() / BUDGET_UNIT);
        IngestLimits {
            cfg,
            decode: Arc::new(Semaphore::new(units)),
            handshakes: Arc::new(Semaphore::new(cfg.max_handshakes.max(1))),
            enrollments: Arc::new(Semaphore::new(cfg.max_enrollments.max(1))),
            enrolling_from: Arc::default(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Wait for room to decode one batch; the permit frees it when dropped.
    pub async fn decode_permit(&self) -> Option<OwnedSemaphorePermit> {
        let units = (batch_decode_cost() / BUDGET_UNIT) as u32;
        self.decode.clone().acquire_many_owned(units).await.ok()
    }

    /// A handshake slot, or `None` when too many are in progress.
    pub fn try_handshake(&self) -> Option<OwnedSemaphorePermit> {
        self.handshakes.clone().try_acquire_owned().ok()
    }

    /// An enrollment slot for a peer at `addr`, or `None` when too many are
    /// open in all or from that address.
    pub fn try_enrollment(&self, addr: IpAddr) -> Option<EnrollmentSlot> {
        let mut from = self.enrolling_from.lock().expect("enrollment slots lock");
        let n = from.entry(addr).or_insert(0);
        if *n >= self.cfg.max_enrollments_per_addr.max(1) {
            return None;
        }
        let global = self.enrollments.clone().try_acquire_owned().ok()?;
        *n += 1;
        Some(EnrollmentSlot {
            _global: global,
            addr,
            from: self.enrolling_from.clone(),
        })
    }

    /// Take `events` from `host`'s bucket at `now_ns`; returns how long the
    /// batch must wait first (zero when within budget).
    pub fn throttle(&self, host: HostId, events: u64, now_ns: u64) -> Duration {
        let rate = self.cfg.host_events_per_s.max(1) as f64;
        let burst = self.cfg.host_burst_events.max(1) as f64;
        let mut buckets = self.buckets.lock().expect("rate buckets lock");
        let b = buckets.entry(host).or_insert(Bucket {
            tokens: burst,
            at_ns: now_ns,
        });
        let elapsed = now_ns.saturating_sub(b.at_ns) as f64 / 1e9;
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at_ns = b.at_ns.max(now_ns);
        b.tokens -= events as f64;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((-b.tokens / rate).min(60.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_host_over_its_rate_waits_and_others_do_not() {
        let l = IngestLimits::new(LimitsConfig {
            host_events_per_s: 1_000,
            host_burst_events: 2_000,
            ..LimitsConfig::default()
        });
        let (a, b) = (HostId(1), HostId(2));
        assert_eq!(l.throttle(a, 2_000, S), Duration::ZERO, "the burst is free");
        let wait = l.throttle(a, 1_000, S);
        assert!(wait >= Duration::from_millis(990), "{wait:?}");
        assert_eq!(
            l.throttle(b, 2_000, S),
            Duration::ZERO,
            "another host is unaffected"
        );
        // Tokens come back at the sustained rate.
        assert_eq!(l.throttle(b, 1_000, 2 * S), Duration::ZERO);
    }

    #[test]
    fn handshake_and_enrollment_slots_are_capped() {
        let l = IngestLimits::new(LimitsConfig {
            max_handshakes: 2,
            max_enrollments: 1,
            ..LimitsConfig::default()
        });
        let h1 = l.try_handshake();
        let h2 = l.try_handshake();
        assert!(h1.is_some() && h2.is_some());
        assert!(l.try_handshake().is_none());
        drop(h1);
        assert!(l.try_handshake().is_some());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let e = l.try_enrollment(a);
        assert!(e.is_some() && l.try_enrollment(b).is_none(), "global cap");
        drop(e);
        let per_addr = IngestLimits::new(LimitsConfig {
            max_enrollments_per_addr: 2,
            ..LimitsConfig::default()
        });
        let held: Vec<_> = (0..2)
            .map(|_| per_addr.try_enrollment(a).unwrap())
            .collect();
        assert!(per_addr.try_enrollment(a).is_none(), "one address's cap");
        assert!(
            per_addr.try_enrollment(b).is_some(),
            "another address still enrolls"
        );
        drop(held);
        assert!(per_addr.try_enrollment(a).is_some(), "slots come back");
    }
}
