//! The single writer: group commit across all connections.
//!
//! Connection tasks decode and encode batches in parallel and hand them to
//! a bounded queue. One thread takes whatever is queued (up to a cap),
//! dedupes every event on (host, seq) against the host's [`SeqSet`], builds
//! one RocksDB write batch (events, seq index, seq sets, counters), writes
//! it with the WAL synced, and only then answers each batch with its ack.
//! A full queue makes `submit` wait, which stops reading streams, which
//! lets QUIC flow control push back on the sensors.

use super::rules::{loss_is_valid, IngestRules};
use crate::core::{system_clock, Clock};
use crate::db::keys::{event_key, host_key, host_tag, seq_key};
use crate::db::quarantine::{self, QuarantineReason, QuarantineRecord};
use crate::db::seqset::SeqSet;
use crate::db::{encode, events::seq_index_value, Db, HostCounts};
use crate::internal_events::{
    BatchStored, EventQuarantined, GroupCommitted, InternalEvent, LossReported, WriteFailed,
    WriterRestarted,
};
use crate::metrics::Metrics;
use crate::notices::DetectionNotices;
use crate::store::{Cf, StoreError, WriteBatch};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use vigil_proto::control::Ack;
use vigil_proto::HostId;

/// Most events merged into one synced write.
pub const MAX_GROUP_EVENTS: usize = 200_000;

/// One event, already encoded by the connection task.
#[derive(Debug, Clone)]
pub struct EncodedEvent {
    pub seq: u64,
    pub ts_ns: u64,
    /// postcard of the payload.
    pub value: Vec<u8>,
    /// (from_seq, to_seq, count) when the event is a loss record.
    pub loss: Option<(u64, u64, u64)>,
}

impl EncodedEvent {
    /// An event as a connection task hands it to the writer.
    pub fn from_event(e: &vigil_proto::Event) -> Self {
        EncodedEvent {
            seq: e.header.seq,
            ts_ns: e.header.ts_ns,
            value: crate::db::events::payload_value(&e.payload),
            loss: match &e.payload {
                vigil_proto::Payload::Loss(l) => Some((l.from_seq, l.to_seq, l.count)),
                _ => None,
            },
        }
    }
}

/// Why a batch could not be stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The store refused the write.
    #[error("store write failed: {0}")]
    Store(String),
    /// The writer has stopped (shutdown).
    #[error("writer stopped")]
    Stopped,
}

struct PendingBatch {
    host: HostId,
    events: Vec<EncodedEvent>,
    wire_bytes: u64,
    reply: oneshot::Sender<Result<Ack, WriteError>>,
}

/// Handle to the writer; cheap to clone, one per connection task.
#[derive(Clone)]
pub struct IngestQueue {
    tx: mpsc::Sender<PendingBatch>,
}

impl IngestQueue {
    /// Queue a batch and wait until it is durably stored (or refused).
    pub async fn submit(
        &self,
        host: HostId,
        events: Vec<EncodedEvent>,
        wire_bytes: u64,
    ) -> Result<Ack, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(PendingBatch {
                host,
                events,
                wire_bytes,
                reply,
            })
            .await
            .map_err(|_| WriteError::Stopped)?;
        rx.await.map_err(|_| WriteError::Stopped)?
    }
}

/// Start the writer thread with the default [`IngestRules`] and the wall
/// clock. It ends when every [`IngestQueue`] clone is dropped.
pub fn spawn_writer(
    db: Db,
    notices: DetectionNotices,
    metrics: Arc<Metrics>,
    queue_batches: usize,
) -> std::io::Result<(IngestQueue, std::thread::JoinHandle<()>)> {
    spawn_writer_with(
        db,
        notices,
        metrics,
        queue_batches,
        IngestRules::default(),
        system_clock(),
    )
}

/// Start the writer thread with explicit rules and clock.
pub fn spawn_writer_with(
    db: Db,
    notices: DetectionNotices,
    metrics: Arc<Metrics>,
    queue_batches: usize,
    rules: IngestRules,
    clock: Clock,
) -> std::io::Result<(IngestQueue, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(queue_batches.max(1));
    let handle = std::thread::Builder::new()
        .name("vigil-writer".into())
        .spawn(move || Writer::new(db, notices, metrics, rules, clock).run(rx))?;
    Ok((IngestQueue { tx }, handle))
}

/// How often the writer re-reads the retention age bound it checks
/// timestamps against.
const POLICY_REFRESH_NS: u64 = 1_000_000_000;

struct Writer {
    db: Db,
    /// Tells the detection pipeline which hosts have new events.
    notices: DetectionNotices,
    metrics: Arc<Metrics>,
    hosts: HashMap<HostId, (SeqSet, HostCounts)>,
    rules: IngestRules,
    clock: Clock,
    /// (read at, retention max_age_days).
    age_bound: (u64, u32),
}

impl Writer {
    fn new(
        db: Db,
        notices: DetectionNotices,
        metrics: Arc<Metrics>,
        rules: IngestRules,
        clock: Clock,
    ) -> Self {
        Writer {
            db,
            notices,
            metrics,
            hosts: HashMap::new(),
            rules,
            clock,
            age_bound: (0, 0),
        }
    }

    /// The retention age bound, re-read at most once a second.
    fn max_age_days(&mut self, now_ns: u64) -> u32 {
        if self.age_bound.0 == 0 || now_ns.saturating_sub(self.age_bound.0) >= POLICY_REFRESH_NS {
            if let Ok(p) = self.db.retention() {
                self.age_bound = (now_ns.max(1), p.max_age_days);
            }
        }
        self.age_bound.1
    }

    /// Why `ev` must go to quarantine instead of `events`, if it must.
    fn quarantine_reason(
        &self,
        ev: &EncodedEvent,
        now_ns: u64,
        max_age_days: u32,
    ) -> Option<QuarantineReason> {
        if let Some((from, to, count)) = ev.loss {
            if !loss_is_valid(from, to, count) {
                return Some(QuarantineReason::InvalidLoss);
            }
        }
        self.rules.check_time(ev.ts_ns, now_ns, max_age_days)
    }

    fn run(mut self, mut rx: mpsc::Receiver<PendingBatch>) {
        while let Some(first) = rx.blocking_recv() {
            let mut total = first.events.len();
            let mut group = vec![first];
            while total < MAX_GROUP_EVENTS {
                match rx.try_recv() {
                    Ok(b) => {
                        total += b.events.len();
                        group.push(b);
                    }
                    Err(_) => break,
                }
            }
            // Supervised: a panic in one commit (a bug, or a store that
            // fails in a way we did not foresee) must not stop ingest for
            // every sensor. Nothing of that group was acknowledged (acks
            // go out only after the synced write), its batches are refused
            // so their sensors resend, and the cached per-host state is
            // dropped and re-read from the store.
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit(group)));
            if outcome.is_err() {
                self.hosts.clear();
                WriterRestarted.emit(&self.metrics);
            }
        }
        tracing::debug!("writer stopped");
    }

    fn host_state(&mut self, host: HostId) -> Result<(SeqSet, HostCounts), StoreError> {
        if let Some(s) = self.hosts.get(&host) {
            return Ok(s.clone());
        }
        let state = (self.db.seqset(host)?, self.db.host_counts(host)?);
        self.hosts.insert(host, state.clone());
        Ok(state)
    }

    fn commit(&mut self, group: Vec<PendingBatch>) {
        let mut wb = WriteBatch::default();
        let mut work: HashMap<HostId, (SeqSet, HostCounts)> = HashMap::new();
        let mut replies = Vec::with_capacity(group.len());
        let mut stored = Vec::with_capacity(group.len());
        let mut losses = Vec::new();
        let mut quarantined = Vec::new();
        let mut events_in_group = 0;
        // Stored events by the minute of their own time, for the trend charts.
        let mut by_minute = std::collections::BTreeMap::new();
        let now_ns = (self.clock)();
        let max_age_days = self.max_age_days(now_ns);
        for batch in group {
            let (set, counts) = match work.entry(batch.host) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => match self.host_state(batch.host) {
                    Ok(s) => v.insert(s),
                    Err(e) => {
                        let _ = batch.reply.send(Err(WriteError::Store(e.to_string())));
                        continue;
                    }
                },
            };
            let first_seq = batch.events.first().map_or(0, |e| e.seq);
            let last_seq = batch.events.last().map_or(0, |e| e.seq);
            let (mut new, mut dups) = (0u64, 0u64);
            for ev in batch.events {
                if !set.insert(ev.seq) {
                    dups += 1;
                    continue;
                }
                if let Some(reason) = self.quarantine_reason(&ev, now_ns, max_age_days) {
                    let rec = QuarantineRecord {
                        reason,
                        ts_ns: ev.ts_ns,
                        payload: ev.value,
                    };
                    quarantine::put(&mut wb, batch.host, ev.seq, &rec);
                    quarantined.push(EventQuarantined {
                        host: batch.host,
                        seq: ev.seq,
                        reason,
                    });
                    continue;
                }
                new += 1;
                *by_minute
                    .entry(crate::trends::minute_of(ev.ts_ns))
                    .or_insert(0u64) += 1;
                wb.put(
                    Cf::Events,
                    event_key(batch.host, ev.ts_ns, ev.seq),
                    ev.value,
                );
                wb.put(
                    Cf::SeqIndex,
                    seq_key(batch.host, ev.seq),
                    seq_index_value(ev.ts_ns),
                );
                if let Some((from, to, count)) = ev.loss {
                    set.insert_range(from, to);
                    counts.lost_total = counts.lost_total.saturating_add(count);
                    counts.loss_records = counts.loss_records.saturating_add(1);
                    losses.push(LossReported {
                        host: batch.host,
                        from_seq: from,
                        to_seq: to,
                        count,
                    });
                }
            }
            counts.events_total = counts.events_total.saturating_add(new);
            counts.duplicates_total = counts.duplicates_total.saturating_add(dups);
            events_in_group += new as usize;
            let ack = Ack {
                first_seq,
                last_seq,
                duplicates: dups.min(u32::MAX as u64) as u32,
            };
            stored.push(BatchStored {
                host: batch.host,
                first_seq,
                last_seq,
                new_events: new,
                duplicates: dups,
                wire_bytes: batch.wire_bytes,
            });
            replies.push((batch.reply, ack));
        }
        if replies.is_empty() {
            return;
        }
        for (host, (set, counts)) in &work {
            wb.put(Cf::Hosts, host_key(*host, host_tag::SEQS), encode(set));
            wb.put(Cf::Hosts, host_key(*host, host_tag::COUNTS), encode(counts));
        }
        let started = Instant::now();
        let written = self.db.store().write(wb, true);
        let outcome = Outcome {
            events: events_in_group,
            by_minute,
            stored,
            losses,
            quarantined,
            replies,
        };
        match written {
            Ok(()) => self.acknowledge(outcome, work, started),
            Err(e) => self.refuse(outcome, &e.to_string()),
        }
    }

    /// The group is durable: count it, remember the hosts' state, ack.
    fn acknowledge(
        &mut self,
        o: Outcome,
        work: HashMap<HostId, (SeqSet, HostCounts)>,
        started: Instant,
    ) {
        GroupCommitted {
            batches: o.replies.len(),
            events: o.events,
            by_minute: o.by_minute,
            latency: started.elapsed(),
        }
        .emit(&self.metrics);
        self.notices.mark_written(work.keys().copied());
        self.hosts.extend(work);
        for s in o.stored {
            s.emit(&self.metrics);
        }
        for l in o.losses {
            l.emit(&self.metrics);
        }
        for q in o.quarantined {
            q.emit(&self.metrics);
        }
        for (reply, ack) in o.replies {
            let _ = reply.send(Ok(ack));
        }
    }

    /// The write failed: nothing was acknowledged, every batch is refused.
    fn refuse(&self, o: Outcome, error: &str) {
        WriteFailed {
            batches: o.replies.len(),
            error,
        }
        .emit(&self.metrics);
        for (reply, _) in o.replies {
            let _ = reply.send(Err(WriteError::Store(error.to_owned())));
        }
    }
}

/// What one group commit will report once the write is done.
struct Outcome {
    events: usize,
    by_minute: std::collections::BTreeMap<u64, u64>,
    stored: Vec<BatchStored>,
    losses: Vec<LossReported>,
    quarantined: Vec<EventQuarantined>,
    replies: Vec<(oneshot::Sender<Result<Ack, WriteError>>, Ack)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    /// The writer with a fixed clock just after the test events' times.
    fn writer(db: &Db, metrics: &Arc<Metrics>) -> (IngestQueue, std::thread::JoinHandle<()>) {
        spawn_writer_with(
            db.clone(),
            DetectionNotices::default(),
            metrics.clone(),
            4,
            IngestRules::default(),
            Arc::new(|| 10_000),
        )
        .unwrap()
    }

    fn ev(seq: u64) -> EncodedEvent {
        EncodedEvent {
            seq,
            ts_ns: 1_000 + seq,
            value: encode(&vigil_proto::Payload::ProcessExit(Default::default())),
            loss: None,
        }
    }

    #[tokio::test]
    async fn resent_batches_are_stored_once_and_counted_as_duplicates() {
        let db = Db::new(Arc::new(MemoryStore::new()));
        let metrics = Arc::new(Metrics::default());
        let (q, handle) = writer(&db, &metrics);
        let host = HostId(7);
        let a = q
            .submit(host, (1..=10).map(ev).collect(), 100)
            .await
            .unwrap();
        assert_eq!((a.first_seq, a.last_seq, a.duplicates), (1, 10, 0));
        let b = q
            .submit(host, (5..=15).map(ev).collect(), 100)
            .await
            .unwrap();
        assert_eq!(b.duplicates, 6);
        drop(q);
        handle.join().unwrap();
        assert_eq!(db.count_events(host).unwrap(), 15);
        assert_eq!(db.host_counts(host).unwrap().duplicates_total, 6);
        assert_eq!(db.seqset(host).unwrap().contiguous_from_one(), 15);
        assert_eq!(db.event(host, 12).unwrap().unwrap().header.ts_ns, 1_012);
    }

    #[tokio::test]
    async fn loss_records_are_counted_and_close_the_gap() {
        let db = Db::new(Arc::new(MemoryStore::new()));
        let metrics = Arc::new(Metrics::default());
        let (q, handle) = writer(&db, &metrics);
        let host = HostId(9);
        let mut loss = ev(11);
        loss.loss = Some((1, 10, 10));
        q.submit(host, vec![loss, ev(12)], 10).await.unwrap();
        drop(q);
        handle.join().unwrap();
        let counts = db.host_counts(host).unwrap();
        assert_eq!((counts.lost_total, counts.loss_records), (10, 1));
        assert_eq!(db.seqset(host).unwrap().contiguous_from_one(), 12);
        assert_eq!(metrics.snapshot().events_lost, 10);
    }

    /// A hostile sensor's impossible claims are acknowledged (its spool
    /// drains) but kept out of `events` and out of every counter, with the
    /// reason; two huge loss records cannot overflow anything.
    #[tokio::test]
    async fn impossible_timestamps_and_losses_go_to_quarantine() {
        let db = Db::new(Arc::new(MemoryStore::new()));
        db.put_retention(&crate::db::RetentionPolicy {
            max_age_days: 1,
            max_bytes: 0,
        })
        .unwrap();
        let metrics = Arc::new(Metrics::default());
        let day = 86_400 * 1_000_000_000u64;
        let now = 100 * day;
        let (q, handle) = spawn_writer_with(
            db.clone(),
            DetectionNotices::default(),
            metrics.clone(),
            4,
            IngestRules::default(),
            Arc::new(move || now),
        )
        .unwrap();
        let host = HostId(3);
        let at = |seq: u64, ts_ns: u64| EncodedEvent { ts_ns, ..ev(seq) };
        let mut huge1 = at(4, now);
        huge1.loss = Some((100, 50, u64::MAX));
        // Two valid but huge losses (their own seqs outside the ranges):
        // together they would overflow the counter.
        let mut huge2 = at(5, now);
        huge2.loss = Some((10, u64::MAX, u64::MAX - 10));
        let mut huge3 = at(6, now);
        huge3.loss = Some((10, u64::MAX, u64::MAX - 10));
        let ack = q
            .submit(
                host,
                vec![
                    at(1, now),
                    at(2, u64::MAX - 1),
                    at(3, 1),
                    huge1,
                    huge2,
                    huge3,
                ],
                10,
            )
            .await
            .unwrap();
        assert_eq!(
            (ack.first_seq, ack.last_seq),
            (1, 6),
            "everything acknowledged"
        );
        drop(q);
        handle.join().unwrap();
        assert_eq!(
            db.count_events(host).unwrap(),
            3,
            "the good event and two loss records"
        );
        let reasons: Vec<(u64, &str)> = db
            .quarantined(host, 10)
            .unwrap()
            .iter()
            .map(|(seq, r)| (*seq, r.reason.label()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (2, "future_timestamp"),
                (3, "past_timestamp"),
                (4, "invalid_loss")
            ]
        );
        assert_eq!(
            db.host_counts(host).unwrap().lost_total,
            u64::MAX,
            "saturated"
        );
        let snap = metrics.snapshot();
        assert_eq!(snap.quarantined.get("future_timestamp"), Some(&1));
        assert_eq!(snap.events_lost, u64::MAX);
    }

    /// A store whose first write panics, to exercise the supervisor.
    struct PanicOnce {
        inner: MemoryStore,
        armed: std::sync::atomic::AtomicBool,
    }

    impl crate::store::Store for PanicOnce {
        fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(cf, key)
        }
        fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
            if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                panic!("injected writer failure");
            }
            self.inner.write(batch, sync)
        }
        fn scan(
            &self,
            cf: Cf,
            from: &[u8],
            to: Option<&[u8]>,
            dir: crate::store::Direction,
            visit: &mut dyn FnMut(&[u8], &[u8]) -> crate::store::Visit,
        ) -> Result<(), StoreError> {
            self.inner.scan(cf, from, to, dir, visit)
        }
        fn delete_range(&self, cf: Cf, from: &[u8], to: &[u8]) -> Result<(), StoreError> {
            self.inner.delete_range(cf, from, to)
        }
        fn compact(
            &self,
            cf: Cf,
            from: Option<&[u8]>,
            to: Option<&[u8]>,
        ) -> Result<(), StoreError> {
            self.inner.compact(cf, from, to)
        }
        fn size_bytes(&self, cf: Cf) -> u64 {
            self.inner.size_bytes(cf)
        }
        fn approx_range_bytes(&self, cf: Cf, from: &[u8], to: &[u8]) -> u64 {
            self.inner.approx_range_bytes(cf, from, to)
        }
        fn flush(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_panicking_commit_refuses_its_batches_and_the_writer_carries_on() {
        let db = Db::new(Arc::new(PanicOnce {
            inner: MemoryStore::new(),
            armed: true.into(),
        }));
        let metrics = Arc::new(Metrics::default());
        let (q, handle) = writer(&db, &metrics);
        let host = HostId(5);
        let first = q.submit(host, (1..=3).map(ev).collect(), 10).await;
        assert!(first.is_err(), "the failed group must not be acknowledged");
        let again = q.submit(host, (1..=3).map(ev).collect(), 10).await.unwrap();
        assert_eq!(
            (again.first_seq, again.last_seq, again.duplicates),
            (1, 3, 0)
        );
        drop(q);
        handle.join().unwrap();
        assert_eq!(db.count_events(host).unwrap(), 3);
        assert_eq!(
            metrics.snapshot().rejected_frames.get("writer_restarted"),
            Some(&1)
        );
    }
}
