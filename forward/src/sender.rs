//! One sender thread per receiver: reads its queue in order, sends, and
//! advances the cursor only once the receiver's TCP has acknowledged the
//! bytes; retries with bounded exponential backoff and jitter.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::config::Timing;
use crate::queue::{Batch, Queue};
use crate::stats::{Connected, Counters, InternalEvent, RecordsSent, SendFailed};
use crate::syslog::frame;
use crate::transport::{Connection, Endpoint};

/// Most bytes written per batch.
const MAX_BATCH_BYTES: u64 = 1 << 20;
/// How long an idle sender sleeps without a wake-up before looking again.
const IDLE_WAIT: Duration = Duration::from_secs(5);

/// Wakes a sender when records arrive, and tells it to stop.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    state: Mutex<SignalState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct SignalState {
    woken: bool,
    /// Stop once the queue is empty or this instant has passed.
    stop_by: Option<Instant>,
}

impl Signal {
    fn lock(&self) -> MutexGuard<'_, SignalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records were queued.
    pub(crate) fn notify(&self) {
        self.lock().woken = true;
        self.cv.notify_all();
    }

    /// Stop: drain what is queued until `by`, then end.
    pub(crate) fn stop(&self, by: Instant) {
        let mut st = self.lock();
        st.stop_by = Some(by);
        st.woken = true;
        self.cv.notify_all();
    }

    fn stop_by(&self) -> Option<Instant> {
        self.lock().stop_by
    }

    /// Sleeps up to `timeout`, never past a stop's deadline; a wake-up (or
    /// a stop) ends it early when `on_wake`.
    fn wait(&self, timeout: Duration, on_wake: bool) {
        let until = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if on_wake && st.woken {
                st.woken = false;
                break;
            }
            let limit = st.stop_by.map_or(until, |by| by.min(until));
            let now = Instant::now();
            if now >= limit {
                break;
            }
            st = self
                .cv
                .wait_timeout(st, limit - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// The delay before retry number `failures` (1-based): `base · 2^(n-1)`
/// capped at `max`, of which the upper half is jittered by `jitter` ∈ [0, 1)
/// so receivers coming back are not hit by every appliance at once.
pub fn backoff(failures: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let capped = exp.min(max);
    capped / 2 + (capped / 2).mul_f64(jitter.clamp(0.0, 1.0))
}

/// Everything a sender thread owns.
pub(crate) struct Sender {
    pub name: String,
    pub endpoint: Endpoint,
    pub queue: Arc<Mutex<Queue>>,
    pub counters: Arc<Counters>,
    pub signal: Arc<Signal>,
    pub timing: Timing,
}

/// Locks a queue; a panic elsewhere leaves its state consistent on disk,
/// so a poisoned lock is taken over rather than propagated.
pub(crate) fn lock(q: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    q.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sender {
    /// The thread's body: returns when stopped and drained (or out of time).
    pub(crate) fn run(self) {
        let mut conn: Option<Connection> = None;
        let mut failures = 0u32;
        // Highest seq written in a batch whose delivery was not confirmed:
        // the receiver may already hold those records.
        let mut unconfirmed_upto = 0u64;
        loop {
            let stop_by = self.signal.stop_by();
            if stop_by.is_some_and(|by| Instant::now() >= by) {
                break;
            }
            let batch = lock(&self.queue).peek(self.timing.batch_records, MAX_BATCH_BYTES);
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    self.failed(&mut failures, e.to_string());
                    continue;
                }
            };
            if batch.records.is_empty() {
                if stop_by.is_some() {
                    break;
                }
                self.signal.wait(IDLE_WAIT, true);
                continue;
            }
            if !conn.as_ref().is_some_and(Connection::usable) {
                conn = None;
                match Connection::open(&self.endpoint, self.timing.connect_timeout) {
                    Ok(c) => {
                        Connected {
                            receiver: &self.name,
                            address: &self.endpoint.address,
                        }
                        .emit(&self.counters);
                        conn = Some(c);
                    }
                    Err(e) => {
                        self.failed(&mut failures, e.to_string());
                        continue;
                    }
                }
            }
            let c = conn.as_mut().expect("connected above");
            match self.deliver(c, &batch, unconfirmed_upto) {
                Ok(()) => failures = 0,
                Err(e) => {
                    conn = None;
                    unconfirmed_upto =
                        unconfirmed_upto.max(batch.records.last().map_or(0, |r| r.seq));
                    self.failed(&mut failures, e);
                }
            }
        }
        tracing::debug!(receiver = %self.name, "forwarding sender stopped");
    }

    /// Sends one batch and, once acknowledged, commits it. Records up to
    /// `unconfirmed_upto` were written before without confirmation: they
    /// count as resent.
    fn deliver(
        &self,
        conn: &mut Connection,
        batch: &Batch,
        unconfirmed_upto: u64,
    ) -> Result<(), String> {
        let mut bytes = Vec::new();
        for r in &batch.records {
            bytes.extend_from_slice(&frame(&r.payload));
        }
        conn.send(&bytes, self.timing.write_timeout)
            .map_err(|e| e.to_string())?;
        lock(&self.queue)
            .commit(batch)
            .map_err(|e| format!("sent, but the cursor was not stored (will resend): {e}"))?;
        RecordsSent {
            receiver: &self.name,
            first_seq: batch.records[0].seq,
            last_seq: batch.records[batch.records.len() - 1].seq,
            records: batch.records.len() as u64,
            resent: batch
                .records
                .iter()
                .filter(|r| r.seq <= unconfirmed_upto)
                .count() as u64,
        }
        .emit(&self.counters);
        Ok(())
    }

    fn failed(&self, failures: &mut u32, error: String) {
        *failures = failures.saturating_add(1);
        let jitter = rand::thread_rng().gen::<f64>();
        let delay = backoff(
            *failures,
            self.timing.backoff_base,
            self.timing.backoff_max,
            jitter,
        );
        SendFailed {
            receiver: &self.name,
            error,
            retry_in: delay,
        }
        .emit(&self.counters);
        self.signal.wait(delay, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jitters_the_upper_half() {
        let (b, m) = (Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(backoff(1, b, m, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(1, b, m, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(3, b, m, 0.0), Duration::from_millis(200));
        assert_eq!(backoff(30, b, m, 0.999), backoff(10, b, m, 0.999));
        assert!(backoff(u32::MAX, b, m, 1.0) <= m);
    }

    #[test]
    fn a_stop_ends_a_backoff_wait_and_a_wake_does_not() {
        let s = Arc::new(Signal::default());
        s.notify();
        let t = Instant::now();
        s.wait(Duration::from_millis(50), false);
        assert!(t.elapsed() >= Duration::from_millis(50));
        let s2 = s.clone();
        let h = std::thread::spawn(move || s2.wait(Duration::from_secs(30), false));
        s.stop(Instant::now());
        h.join().unwrap();
    }
}
