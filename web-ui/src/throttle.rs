//! Login throttling that does not depend on the user name: Argon2 runs on
//! the blocking pool under a small concurrency cap (so a burst of logins
//! neither stalls the async workers that also serve ingest nor exhausts
//! memory: each hash takes 19 MiB), and each client address backs off
//! exponentially after repeated failures (so one source cannot lock out
//! every account by guessing names, nor guess fast across many names).

use crate::error::UiError;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Argon2 computations allowed at once (each takes 19 MiB and a core).
pub const ARGON2_PERMITS: usize = 2;
/// Requests allowed to wait for a permit; more are refused as busy, so an
/// unauthenticated flood cannot queue unbounded work.
pub const MAX_ARGON2_WAITING: usize = 32;
/// Failures a source may make before it has to wait.
pub const FREE_FAILURES: u32 = 3;
/// The first wait; each further failure doubles it.
pub const BASE_BACKOFF_NS: u64 = 1_000_000_000;
/// The longest wait.
pub const MAX_BACKOFF_NS: u64 = 15 * 60 * 1_000_000_000;
/// A source without failures for this long starts from zero again.
pub const FORGET_AFTER_NS: u64 = 15 * 60 * 1_000_000_000;
/// Sources tracked at most; beyond it the stalest is forgotten, so memory
/// stays bounded whatever addresses an attacker uses.
pub const MAX_TRACKED_SOURCES: usize = 4096;

/// Everything the login path shares across requests.
pub struct LoginGuard {
    /// Where password hashing and verification run.
    pub argon2: Argon2Pool,
    /// Failed logins per client address.
    pub sources: SourceBackoff,
}

impl Default for LoginGuard {
    fn default() -> Self {
        LoginGuard {
            argon2: Argon2Pool::new(ARGON2_PERMITS),
            sources: SourceBackoff::new(MAX_TRACKED_SOURCES),
        }
    }
}

struct PoolInner {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

/// Runs Argon2 work on the blocking pool, at most `permits` at a time.
pub struct Argon2Pool {
    inner: Arc<PoolInner>,
}

/// Decrements a counter when dropped (also when the request is cancelled).
struct CountGuard<'a>(&'a AtomicUsize);

impl Drop for CountGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Argon2Pool {
    /// A pool that runs at most `permits` computations at once.
    pub fn new(permits: usize) -> Self {
        Argon2Pool {
            inner: Arc::new(PoolInner {
                permits: Arc::new(Semaphore::new(permits.max(1))),
                waiting: AtomicUsize::new(0),
                in_flight: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
            }),
        }
    }

    /// Run `f` (hashing or verifying) on the blocking pool once a permit is
    /// free; [`UiError::Busy`] when too many requests already wait.
    pub async fn run<T, F>(&self, f: F) -> Result<T, UiError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let inner = &self.inner;
        if inner.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_ARGON2_WAITING {
            inner.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(UiError::Busy);
        }
        let waiting = CountGuard(&inner.waiting);
        let permit = inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| UiError::Task)?;
        drop(waiting);
        let pool = inner.clone();
        // The permit moves into the blocking task: if the request is
        // cancelled the work still holds it until it really ends.
        tokio::task::spawn_blocking(move || {
            let out = {
                let n = pool.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                pool.peak.fetch_max(n, Ordering::SeqCst);
                let _running = CountGuard(&pool.in_flight);
                f()
            };
            // Only after the count went down: the next holder of the
            // permit must never see this run still counted.
            drop(permit);
            out
        })
        .await
        .map_err(|_| UiError::Task)
    }

    /// Most computations that ever ran at once (for tests and health).
    pub fn peak_in_flight(&self) -> usize {
        self.inner.peak.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone, Copy)]
struct Source {
    failures: u32,
    last_failure_ns: u64,
    blocked_until_ns: u64,
}

/// Per-source failure counts with exponential backoff, bounded in size.
pub struct SourceBackoff {
    map: Mutex<HashMap<IpAddr, Source>>,
    cap: usize,
}

/// The key a client address is tracked under: IPv4 as is, IPv6 by its /64
/// (one subscriber typically holds a whole /64).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// How long a source waits after its `failures`-th failure (0: not at all).
pub fn backoff_ns(failures: u32) -> u64 {
    if failures <= FREE_FAILURES {
        return 0;
    }
    let doublings = (failures - FREE_FAILURES - 1).min(30);
    BASE_BACKOFF_NS
        .saturating_mul(1u64 << doublings)
        .min(MAX_BACKOFF_NS)
}

impl SourceBackoff {
    /// Track at most `cap` sources.
    pub fn new(cap: usize) -> Self {
        SourceBackoff {
            map: Mutex::new(HashMap::new()),
            cap: cap.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Source>> {
        // The map holds counters only: a panic elsewhere cannot leave it
        // inconsistent, so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Some(until)` while `ip` must wait before its next attempt.
    pub fn blocked_until(&self, ip: IpAddr, now_ns: u64) -> Option<u64> {
        let g = self.lock();
        g.get(&source_key(ip))
            .map(|s| s.blocked_until_ns)
            .filter(|&until| until > now_ns)
    }

    /// Count a failure; returns until when `ip` must now wait (0: it need not).
    pub fn failure(&self, ip: IpAddr, now_ns: u64) -> u64 {
        let key = source_key(ip);
        let mut g = self.lock();
        if !g.contains_key(&key) && g.len() >= self.cap {
            g.retain(|_, s| now_ns.saturating_sub(s.last_failure_ns) <= FORGET_AFTER_NS);
            if g.len() >= self.cap {
                if let Some(stalest) = g
                    .iter()
                    .min_by_key(|(_, s)| s.last_failure_ns)
                    .map(|(k, _)| *k)
                {
                    g.remove(&stalest);
                }
            }
        }
        let s = g.entry(key).or_insert(Source {
            failures: 0,
            last_failure_ns: now_ns,
            blocked_until_ns: 0,
        });
        if now_ns.saturating_sub(s.last_failure_ns) > FORGET_AFTER_NS {
            s.failures = 0;
        }
        s.failures = s.failures.saturating_add(1);
        s.last_failure_ns = now_ns;
        let wait = backoff_ns(s.failures);
        s.blocked_until_ns = if wait == 0 { 0 } else { now_ns + wait };
        s.blocked_until_ns
    }

    /// A successful login from `ip`: its count starts over.
    pub fn success(&self, ip: IpAddr) {
        self.lock().remove(&source_key(ip));
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

/// The client's address from axum's `ConnectInfo`, when the server provides
/// it (the appliance's HTTPS listener does; router-level tests may not).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_after_the_free_failures_and_caps() {
        assert_eq!(
            (1..=FREE_FAILURES).map(backoff_ns).max(),
            Some(0),
            "the first failures are free"
        );
        assert_eq!(backoff_ns(FREE_FAILURES + 1), BASE_BACKOFF_NS);
        assert_eq!(backoff_ns(FREE_FAILURES + 2), 2 * BASE_BACKOFF_NS);
        assert_eq!(backoff_ns(FREE_FAILURES + 3), 4 * BASE_BACKOFF_NS);
        assert_eq!(backoff_ns(200), MAX_BACKOFF_NS);
    }

    #[test]
    fn sources_are_tracked_apart_and_ipv6_by_its_64() {
        let b = SourceBackoff::new(16);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..=FREE_FAILURES {
            b.failure(a, 1_000);
        }
        assert!(b.blocked_until(a, 1_000).is_some());
        assert!(b.blocked_until(other, 1_000).is_none());
        assert!(b.blocked_until(a, 1_000 + BASE_BACKOFF_NS).is_none());
        let v6a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        for _ in 0..=FREE_FAILURES {
            b.failure(v6a, 5);
        }
        assert!(b.blocked_until(v6b, 5).is_some(), "same /64");
        b.success(v6b);
        assert!(b.blocked_until(v6a, 5).is_none());
    }

    #[test]
    fn tracked_sources_stay_bounded() {
        let b = SourceBackoff::new(8);
        for i in 0..100u32 {
            b.failure(IpAddr::from(i.to_be_bytes()), u64::from(i));
        }
        assert_eq!(b.tracked(), 8);
        // The most recent sources are the ones kept.
        assert!(b
            .blocked_until(IpAddr::from(99u32.to_be_bytes()), 0)
            .is_none());
        for _ in 0..FREE_FAILURES {
            b.failure(IpAddr::from(99u32.to_be_bytes()), 200);
        }
        assert!(b
            .blocked_until(IpAddr::from(99u32.to_be_bytes()), 200)
            .is_some());
    }
}
