//! The forwarder: one queue, sender thread and set of counters per
//! receiver, and the calls the appliance makes.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::pki_types::ServerName;
use thiserror::Error;

use crate::config::{split_host_port, ConfigProblem, ForwarderConfig, ReceiverConfig, Transport};
use crate::format::{render, Format, RenderContext};
use crate::queue::{Queue, QueueError, QueueOptions};
use crate::record::{Checkpoint, Record, RecordKind};
use crate::sender::{lock, Sender, Signal};
use crate::stats::{
    Counters, InternalEvent, QueueAccepting, QueueFull, QueueWriteFailed, ReceiverSnapshot,
};
use crate::syslog::{self, Header};
use crate::transport::{tls_config, Endpoint, TransportError};

/// Why the forwarder could not start.
#[derive(Debug, Error)]
pub enum ForwardError {
    /// The configuration has problems (all of them listed).
    #[error("forwarding configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config(Vec<ConfigProblem>),
    /// A receiver's queue could not be opened.
    #[error("receiver {receiver}: {source}")]
    Queue {
        /// The receiver.
        receiver: String,
        /// Why.
        source: QueueError,
    },
    /// A receiver's TLS settings could not be loaded.
    #[error("receiver {receiver}: {source}")]
    Tls {
        /// The receiver.
        receiver: String,
        /// Why.
        source: TransportError,
    },
    /// The sender thread could not be started.
    #[error("receiver {receiver}: cannot start sender thread: {source}")]
    Thread {
        /// The receiver.
        receiver: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Records one receiver did not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The receiver.
    pub receiver: String,
    /// How many records of the submission: the last ones it has for this
    /// receiver (records are queued in order, so the accepted ones are
    /// always the first).
    pub records: usize,
    /// Stable reason label (`full`, `io`, `too_large`).
    pub reason: &'static str,
}

/// What a submission did: every receiver that takes the records accepted
/// them durably, except those listed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[must_use = "a refusal is a loss the caller must raise an alarm for"]
pub struct SubmitOutcome {
    /// Receivers that refused some of the records.
    pub refused: Vec<Refusal>,
}

impl SubmitOutcome {
    /// Whether every receiver accepted every record it takes.
    pub fn all_accepted(&self) -> bool {
        self.refused.is_empty()
    }
}

struct Receiver {
    name: String,
    format: Format,
    kinds: Vec<RecordKind>,
    facility: u8,
    queue: Arc<Mutex<Queue>>,
    counters: Arc<Counters>,
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
}

/// Forwards records to every configured receiver. Dropping it stops the
/// senders without waiting to drain (the queues keep what is unsent).
pub struct Forwarder {
    receivers: Vec<Receiver>,
    ctx: RenderContext,
    hostname: String,
    procid: u32,
}

impl Forwarder {
    /// Validates `config`, opens every queue and starts every sender.
    pub fn start(config: ForwarderConfig) -> Result<Forwarder, ForwardError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(ForwardError::Config(problems));
        }
        let mut receivers = Vec::new();
        for rc in &config.receivers {
            receivers.push(start_receiver(&config, rc)?);
        }
        Ok(Forwarder {
            receivers,
            ctx: RenderContext {
                product_version: config.product_version.clone(),
                appliance: config.hostname.clone(),
            },
            hostname: config.hostname,
            procid: std::process::id(),
        })
    }

    /// Queues `record` for every receiver that takes its kind; returns
    /// after the queues are fsync'd. Blocking (disk I/O): call it from a
    /// blocking context, not directly on an async executor thread.
    pub fn submit(&self, record: &Record) -> SubmitOutcome {
        self.submit_batch(std::slice::from_ref(record))
    }

    /// Queues many records with one fsync per receiver.
    pub fn submit_batch(&self, records: &[Record]) -> SubmitOutcome {
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut outcome = SubmitOutcome::default();
        for r in &self.receivers {
            if let Some(refusal) = self.submit_to_receiver(r, records, now_ns) {
                outcome.refused.push(refusal);
            }
        }
        outcome
    }

    /// Queues `records` for the receiver named `receiver` only (the ones
    /// of its kinds), with one fsync. For a history only that receiver
    /// still needs, such as its own position in the audit log. An unknown
    /// name accepts nothing and refuses nothing.
    pub fn submit_to(&self, receiver: &str, records: &[Record]) -> SubmitOutcome {
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let refused = self
            .receivers
            .iter()
            .filter(|r| r.name == receiver)
            .filter_map(|r| self.submit_to_receiver(r, records, now_ns))
            .collect();
        SubmitOutcome { refused }
    }

    /// Queues the audit log's signed checkpoint (signed-note text).
    pub fn submit_checkpoint(&self, text: &str) -> SubmitOutcome {
        let time_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.submit(&Record::Checkpoint(Checkpoint {
            time_ns,
            text: text.to_string(),
        }))
    }

    fn submit_to_receiver(&self, r: &Receiver, records: &[Record], now_ns: u64) -> Option<Refusal> {
        let header = Header {
            facility: r.facility,
            hostname: self.hostname.clone(),
            procid: self.procid,
        };
        let mut refused: Option<QueueError> = None;
        let mut accepted = 0;
        let mine: Vec<&Record> = records
            .iter()
            .filter(|rec| r.kinds.contains(&rec.kind()))
            .collect();
        let mut q = lock(&r.queue);
        for record in &mine {
            let appended = q.append(now_ns, |seq| {
                let payload = render(r.format, record, seq, &self.ctx);
                syslog::message(
                    &header,
                    record.kind(),
                    syslog::severity(record),
                    record.time_ns(),
                    Some(seq),
                    &payload,
                )
                .into_bytes()
            });
            match appended {
                Ok(_) => accepted += 1,
                Err(e) => {
                    // In order: nothing after a refused record is queued,
                    // so what was accepted is always a prefix.
                    refused = Some(e);
                    break;
                }
            }
        }
        if accepted > 0 {
            if let Err(e) = q.sync() {
                // Not durable, so not accepted: the caller must know.
                accepted = 0;
                refused = Some(e);
            }
        }
        let refused_count = mine.len() - accepted;
        drop(q);
        if accepted > 0 {
            r.signal.notify();
            QueueAccepting { receiver: &r.name }.emit(&r.counters);
        }
        let error = refused?;
        match &error {
            QueueError::Full { pending_bytes, .. } => {
                for _ in 0..refused_count {
                    QueueFull {
                        receiver: &r.name,
                        pending_bytes: *pending_bytes,
                    }
                    .emit(&r.counters);
                }
            }
            other => QueueWriteFailed {
                receiver: &r.name,
                error: other.to_string(),
            }
            .emit(&r.counters),
        }
        Some(Refusal {
            receiver: r.name.clone(),
            records: refused_count,
            reason: error.reason(),
        })
    }

    /// Counters and gauges of every receiver, ages measured at `now`.
    pub fn snapshot(&self, now: SystemTime) -> Vec<ReceiverSnapshot> {
        self.receivers
            .iter()
            .map(|r| {
                let q = lock(&r.queue);
                let (stats, max) = (q.stats(), q.options().max_bytes);
                drop(q);
                r.counters.snapshot(&r.name, stats, max, now)
            })
            .collect()
    }

    /// Stops every sender after it has sent what is queued, or once `drain`
    /// has passed; what is left stays queued for the next start.
    pub fn shutdown(mut self, drain: Duration) {
        self.stop(Instant::now() + drain);
    }

    fn stop(&mut self, by: Instant) {
        for r in &self.receivers {
            r.signal.stop(by);
        }
        for r in &mut self.receivers {
            if let Some(t) = r.thread.take() {
                if t.join().is_err() {
                    tracing::error!(receiver = %r.name, "forwarding sender panicked");
                }
            }
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop(Instant::now());
    }
}

fn start_receiver(config: &ForwarderConfig, rc: &ReceiverConfig) -> Result<Receiver, ForwardError> {
    let opts = QueueOptions {
        max_bytes: rc.max_queue_bytes,
        ..QueueOptions::default()
    };
    let queue = Queue::open(&config.queue_dir.join(&rc.name), opts).map_err(|source| {
        ForwardError::Queue {
            receiver: rc.name.clone(),
            source,
        }
    })?;
    let tls_err = |source| ForwardError::Tls {
        receiver: rc.name.clone(),
        source,
    };
    let tls = match &rc.transport {
        Transport::Tcp => None,
        Transport::Tls {
            ca_pem,
            server_name,
        } => {
            let cfg = tls_config(ca_pem).map_err(tls_err)?;
            let host = server_name.clone().unwrap_or_else(|| {
                split_host_port(&rc.address)
                    .map(|(h, _)| h)
                    .unwrap_or_default()
            });
            let name = ServerName::try_from(host)
                .map_err(|e| tls_err(TransportError::Tls(e.to_string())))?;
            Some((cfg, name))
        }
    };
    let queue = Arc::new(Mutex::new(queue));
    let counters = Arc::new(Counters::default());
    let signal = Arc::new(Signal::default());
    let sender = Sender {
        name: rc.name.clone(),
        endpoint: Endpoint {
            address: rc.address.clone(),
            tls,
        },
        queue: queue.clone(),
        counters: counters.clone(),
        signal: signal.clone(),
        timing: config.timing,
    };
    let thread = std::thread::Builder::new()
        .name(format!("forward-{}", rc.name))
        .spawn(move || sender.run())
        .map_err(|source| ForwardError::Thread {
            receiver: rc.name.clone(),
            source,
        })?;
    Ok(Receiver {
        name: rc.name.clone(),
        format: rc.format,
        kinds: rc.kinds.clone(),
        facility: rc.facility,
        queue,
        counters,
        signal,
        thread: Some(thread),
    })
}
