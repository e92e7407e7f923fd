//! The single writer: group commit across all connections.
//!
//! Connection tasks decode and encode batches in parallel and hand them to
//! a bounded queue. One thread takes whatever is queued (up to a cap),
//! dedupes every event on (host, seq) against the host's [`SeqSet`], builds
//! one RocksDB write batch (events, seq index, seq sets, counters), writes
//! it with the WAL synced, and only then answers each batch with its ack.
//! A full queue makes `submit` wait, which stops reading streams, which
//! lets QUIC flow control push back on the sensors.

use crate::db::keys::{event_key, host_key, host_tag, seq_key};
use crate::db::seqset::SeqSet;
use crate::db::{encode, events::seq_index_value, Db, HostCounts};
use crate::internal_events::{
    BatchStored, GroupCommitted, InternalEvent, LossReported, WriteFailed,
};
use crate::metrics::Metrics;
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

/// Start the writer thread. It ends when every [`IngestQueue`] clone is dropped.
pub fn spawn_writer(
    db: Db,
    metrics: Arc<Metrics>,
    queue_batches: usize,
) -> std::io::Result<(IngestQueue, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(queue_batches.max(1));
    let handle = std::thread::Builder::new()
        .name("vigil-writer".into())
        .spawn(move || Writer::new(db, metrics).run(rx))?;
    Ok((IngestQueue { tx }, handle))
}

struct Writer {
    db: Db,
    metrics: Arc<Metrics>,
    hosts: HashMap<HostId, (SeqSet, HostCounts)>,
}

impl Writer {
    fn new(db: Db, metrics: Arc<Metrics>) -> Self {
        Writer {
            db,
            metrics,
            hosts: HashMap::new(),
        }
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
            self.commit(group);
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
        let mut events_in_group = 0;
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
                new += 1;
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
                    counts.lost_total += count;
                    counts.loss_records += 1;
                    losses.push(LossReported {
                        host: batch.host,
                        from_seq: from,
                        to_seq: to,
                        count,
                    });
                }
            }
            counts.events_total += new;
            counts.duplicates_total += dups;
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
        match self.db.store().write(wb, true) {
            Ok(()) => {
                GroupCommitted {
                    batches: replies.len(),
                    events: events_in_group,
                    latency: started.elapsed(),
                }
                .emit(&self.metrics);
                self.db.mark_written(work.keys().copied());
                self.hosts.extend(work);
                for s in stored {
                    s.emit(&self.metrics);
                }
                for l in losses {
                    l.emit(&self.metrics);
                }
                for (reply, ack) in replies {
                    let _ = reply.send(Ok(ack));
                }
            }
            Err(e) => {
                let text = e.to_string();
                WriteFailed {
                    batches: replies.len(),
                    error: &text,
                }
                .emit(&self.metrics);
                for (reply, _) in replies {
                    let _ = reply.send(Err(WriteError::Store(text.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

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
        let (q, handle) = spawn_writer(db.clone(), metrics.clone(), 4).unwrap();
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
        let (q, handle) = spawn_writer(db.clone(), metrics.clone(), 4).unwrap();
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
}
