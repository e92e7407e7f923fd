//! The replayed hosts: one enrolled sensor identity per data-set host
//! (loaded from the state dir when a previous run enrolled it), each with
//! its own durable spool and QUIC uplink, the sensor's production code.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use vigil_proto::{Command, CommandResult, CommandState, HostId, Receipt, SensorHealth};
use vigil_sensor::enroll::{EnrollError, EnrollParams, Identity};
use vigil_sensor::spool::{Spool, SpoolOptions};
use vigil_sensor::tls;
use vigil_sensor::uplink::{CommandFn, HealthFn, Uplink, UplinkSettings, UplinkStatus};

use super::{ReplayError, ReplayHost, ReplayOptions};

/// Enrollments run at once.
const ENROLL_PARALLEL: usize = 16;

/// A running replayed host.
pub(super) struct Slot {
    pub(super) dataset: ReplayHost,
    pub(super) host: HostId,
    pub(super) reused: bool,
    pub(super) spool: Arc<Mutex<Spool>>,
    appended: Arc<Notify>,
    status: Arc<UplinkStatus>,
    /// Highest seq spooled before this run.
    pub(super) base: u64,
    /// Events spooled this run (shared with the progress task).
    pub(super) events: Arc<AtomicU64>,
    /// Highest "sent" count seen (the spool cursor rewinds on reconnect).
    sent_seen: Arc<AtomicU64>,
    /// Events were appended since the uplink was last woken.
    pub(super) touched: bool,
}

impl Slot {
    /// (sent, acked) this run.
    fn counts(spool: &Mutex<Spool>, base: u64, events: u64, sent_seen: &AtomicU64) -> (u64, u64) {
        let sp = spool.lock().expect("spool lock");
        let last = sp.next_seq() - 1;
        let acked = last.saturating_sub(sp.unacked_len()).saturating_sub(base);
        let sent = last.saturating_sub(sp.unsent_len()).saturating_sub(base);
        drop(sp);
        let sent = sent_seen.fetch_max(sent, Ordering::Relaxed).max(sent);
        (sent.min(events).max(acked.min(events)), acked.min(events))
    }

    /// (sent, acked) of this host this run.
    pub(super) fn sent_acked(&self) -> (u64, u64) {
        Slot::counts(
            &self.spool,
            self.base,
            self.events.load(Ordering::Relaxed),
            &self.sent_seen,
        )
    }
}

/// What the progress task reads (the dispatcher itself stays on its task).
#[derive(Clone)]
pub(super) struct Shared {
    slots: Arc<Mutex<Vec<SlotView>>>,
    /// Events read from the source.
    pub(super) read: Arc<AtomicU64>,
    /// Original timestamp of the newest event read (ns).
    pub(super) data_ts: Arc<AtomicU64>,
}

#[derive(Clone)]
struct SlotView {
    spool: Arc<Mutex<Spool>>,
    base: u64,
    events: Arc<AtomicU64>,
    sent_seen: Arc<AtomicU64>,
}

impl Shared {
    /// No hosts yet, nothing read.
    pub(super) fn new() -> Self {
        Shared {
            slots: Arc::new(Mutex::new(Vec::new())),
            read: Arc::new(AtomicU64::new(0)),
            data_ts: Arc::new(AtomicU64::new(0)),
        }
    }

    /// (sent, acked, hosts) over every started host.
    pub(super) fn totals(&self) -> (u64, u64, usize) {
        let slots = self.slots.lock().expect("slots lock").clone();
        let (mut sent, mut acked) = (0, 0);
        for s in &slots {
            let (a, b) = Slot::counts(
                &s.spool,
                s.base,
                s.events.load(Ordering::Relaxed),
                &s.sent_seen,
            );
            sent += a;
            acked += b;
        }
        (sent, acked, slots.len())
    }
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The identity in `params.state_dir`, or a new one from the token.
async fn load_or_enroll(
    params: EnrollParams,
    pin_hex: String,
    name: String,
) -> Result<(Identity, bool), ReplayError> {
    match Identity::load(&params.state_dir) {
        Ok(id) if tls::sha256_hex(&id.ca_der) == pin_hex => Ok((id, true)),
        Ok(_) => Err(ReplayError::OtherAppliance {
            dir: params.state_dir,
        }),
        Err(EnrollError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            // The appliance caps unauthenticated enrollment connections per
            // source address; many data-set hosts enroll from this one
            // machine, so a busy answer means wait and try again.
            let mut wait = std::time::Duration::from_millis(50);
            loop {
                match vigil_sensor::enroll(&params).await {
                    Ok(id) => return Ok((id, false)),
                    Err(e)
                        if format!("{e:?}").contains("enrollment busy") && wait.as_secs() < 10 =>
                    {
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                    Err(source) => return Err(ReplayError::Enroll { name, source }),
                }
            }
        }
        Err(source) => Err(ReplayError::Enroll { name, source }),
    }
}

/// The started hosts, by data-set id, and their uplink tasks.
pub(super) struct Dispatcher {
    pub(super) opts: ReplayOptions,
    pin_hex: String,
    pub(super) slots: Vec<Slot>,
    pub(super) by_id: HashMap<HostId, usize>,
    /// Slots started but not yet confirmed welcomed.
    pub(super) connecting: Vec<usize>,
    pub(super) shutdown: watch::Receiver<bool>,
    pub(super) tasks: Vec<tokio::task::JoinHandle<()>>,
    shared: Shared,
}

impl Dispatcher {
    /// No hosts yet; identities will be pinned to `opts.ca_sha256`.
    pub(super) fn new(
        opts: ReplayOptions,
        shutdown: watch::Receiver<bool>,
        shared: Shared,
    ) -> Result<Self, ReplayError> {
        let pin_hex = hex_lower(&tls::parse_fingerprint(&opts.ca_sha256)?);
        Ok(Dispatcher {
            opts,
            pin_hex,
            slots: Vec::new(),
            by_id: HashMap::new(),
            connecting: Vec::new(),
            shutdown,
            tasks: Vec::new(),
            shared,
        })
    }

    /// Enroll (or load) and start the uplink of a data-set host.
    pub(super) async fn declare(&mut self, h: ReplayHost) -> Result<usize, ReplayError> {
        let id = h.id;
        self.declare_many(vec![h]).await?;
        Ok(self.by_id[&id])
    }

    /// Enroll (or load) hosts, [`ENROLL_PARALLEL`] at a time, and start
    /// their uplinks in the given order.
    pub(super) async fn declare_many(&mut self, hosts: Vec<ReplayHost>) -> Result<(), ReplayError> {
        let mut seen = std::collections::HashSet::new();
        let hosts: Vec<ReplayHost> = hosts
            .into_iter()
            .filter(|h| !self.by_id.contains_key(&h.id) && seen.insert(h.id))
            .collect();
        for chunk in hosts.chunks(ENROLL_PARALLEL) {
            let mut set = tokio::task::JoinSet::new();
            for (k, h) in chunk.iter().enumerate() {
                let dir = self.opts.state_dir.join("hosts").join(h.id.to_string());
                let params = EnrollParams {
                    appliance: self.opts.appliance.clone(),
                    token: self.opts.token.clone(),
                    ca_sha256: self.opts.ca_sha256.clone(),
                    state_dir: dir,
                };
                let (pin, name) = (self.pin_hex.clone(), h.name.clone());
                set.spawn(async move { (k, load_or_enroll(params, pin, name).await) });
            }
            let mut got: Vec<Option<(Identity, bool)>> = vec![None; chunk.len()];
            let mut first_err = None;
            while let Some(joined) = set.join_next().await {
                let (k, r) =
                    joined.map_err(|e| ReplayError::Source(format!("enroll task: {e}")))?;
                match r {
                    Ok(v) => got[k] = Some(v),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
            for (h, g) in chunk.iter().zip(got) {
                let (identity, reused) = g.expect("every task answered");
                self.start(h.clone(), identity, reused)?;
            }
        }
        Ok(())
    }

    /// Open the host's spool and start its uplink.
    fn start(
        &mut self,
        h: ReplayHost,
        identity: Identity,
        reused: bool,
    ) -> Result<usize, ReplayError> {
        let dir = self.opts.state_dir.join("hosts").join(h.id.to_string());
        let spool = Spool::open(
            &dir.join("spool"),
            identity.host,
            SpoolOptions {
                max_bytes: 8 << 30,
                max_age_ns: u64::MAX,
                ..SpoolOptions::default()
            },
        )?;
        let base = spool.next_seq() - 1;
        let spool = Arc::new(Mutex::new(spool));
        let appended = Arc::new(Notify::new());
        let status = Arc::new(UplinkStatus::default());
        let events = Arc::new(AtomicU64::new(0));
        let sent_seen = Arc::new(AtomicU64::new(0));
        let health: HealthFn = {
            let spool = spool.clone();
            Arc::new(move || SensorHealth {
                cpu_pct: 0.0,
                rss_bytes: 0,
                events_per_s: 0.0,
                spool_bytes: spool.lock().expect("spool lock").bytes(),
                dropped_total: 0,
                aggregated_total: 0,
                collectors: Vec::new(),
            })
        };
        let commands: CommandFn = Arc::new(|cmd: Command| CommandResult {
            id: cmd.id,
            state: CommandState::Failed,
            message: "replayed data-set host: no response executor".into(),
            receipt: Receipt::None,
            data: Vec::new(),
        });
        let uplink = Uplink {
            settings: UplinkSettings {
                appliance: self.opts.appliance.clone(),
                batch_max_events: vigil_proto::limits::MAX_BATCH_EVENTS.min(2_000),
                batch_max: self.opts.batch_max,
                heartbeat: Duration::from_secs(10),
                backoff_min: Duration::from_millis(200),
                backoff_max: Duration::from_secs(5),
                connect_timeout: Duration::from_secs(5),
                netns: None,
                hello_as: Some((h.name.clone(), h.addrs.clone())),
            },
            identity: identity.clone(),
            spool: spool.clone(),
            appended: appended.clone(),
            health,
            commands,
            status: status.clone(),
            budget_pct_bits: Arc::new(AtomicU32::new(1.0f32.to_bits())),
        };
        self.tasks
            .push(tokio::spawn(uplink.run(self.shutdown.clone())));
        tracing::debug!(name = %h.name, host = %identity.host, reused, "replay: host started");
        self.shared
            .slots
            .lock()
            .expect("slots lock")
            .push(SlotView {
                spool: spool.clone(),
                base,
                events: events.clone(),
                sent_seen: sent_seen.clone(),
            });
        let i = self.slots.len();
        self.by_id.insert(h.id, i);
        self.slots.push(Slot {
            dataset: h,
            host: identity.host,
            reused,
            spool,
            appended,
            status,
            base,
            events,
            sent_seen,
            touched: false,
        });
        self.connecting.push(i);
        Ok(i)
    }

    /// Wait (bounded) until every newly started uplink has been welcomed,
    /// so the appliance knows every declared name before events arrive.
    pub(super) async fn await_connected(&mut self) {
        if self.connecting.is_empty() {
            return;
        }
        let deadline = Instant::now() + self.opts.connect_wait;
        loop {
            self.connecting
                .retain(|&i| !self.slots[i].status.connected.load(Ordering::SeqCst));
            if self.connecting.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                let names: Vec<&str> = self
                    .connecting
                    .iter()
                    .take(5)
                    .map(|&i| self.slots[i].dataset.name.as_str())
                    .collect();
                tracing::warn!(hosts = self.connecting.len(), first = ?names, appliance = %self.opts.appliance,
                    "replay: uplinks not welcomed yet; spooling their events anyway");
                self.connecting.clear();
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Wake the uplinks of hosts that got events since the last call.
    pub(super) fn flush_notify(&mut self) {
        for s in &mut self.slots {
            if s.touched {
                s.touched = false;
                s.appended.notify_one();
            }
        }
    }

    /// (sent, acked) over every host.
    pub(super) fn totals(&self) -> (u64, u64) {
        self.slots.iter().fold((0, 0), |(a, b), s| {
            let (x, y) = s.sent_acked();
            (a + x, b + y)
        })
    }
}
