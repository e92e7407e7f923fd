//! Storage engine behind a small trait (in the spirit of TiKV's
//! `engine_traits`): ordered key-value column families, atomic write batches,
//! range scans and range deletes. [`rocks::RocksStore`] is the production
//! backend, [`memory::MemoryStore`] backs unit tests. Everything that knows
//! what the bytes mean lives in [`crate::db`], above this trait.

pub mod memory;
pub mod rocks;

use thiserror::Error;

/// Column families. Keys are big-endian so range scans follow (host, time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cf {
    /// (host u64, ts_ns u64, seq u64) → postcard `Payload`.
    Events,
    /// (host u64, seq u64) → ts_ns varint: finds an event by seq.
    SeqIndex,
    /// (host u64, tag u8, …) → registry record, seq ranges, counters, health history.
    Hosts,
    /// (src u64, dst u64, port u16, user) → edge record.
    Edges,
    /// (host u64, window_end u64) → feature vector.
    Features,
    /// (host u64, version u64) → model params, metrics, hash.
    Models,
    /// (alert id u64) → `AlertRecord`.
    Alerts,
    /// (case id u64) → case record.
    Cases,
    /// (suppression id u64) → suppression rule.
    Suppressions,
    /// (index u64) → hash-chained audit entry.
    Audit,
    /// (username) → user record with Argon2id hash.
    Users,
    /// (session id) → session record.
    Sessions,
    /// (sha256 of token) → token record.
    Enrollment,
    /// Small appliance-wide settings (retention policy, id counters).
    Meta,
    /// (host u64, seq u64) → an acknowledged event kept out of `events`
    /// because it broke an ingest rule (timestamp out of bounds, invalid
    /// loss record), with the reason. Never read by detection or retention.
    Quarantine,
}

impl Cf {
    /// Every column family, in a fixed order.
    pub const ALL: [Cf; 15] = [
        Cf::Events,
        Cf::SeqIndex,
        Cf::Hosts,
        Cf::Edges,
        Cf::Features,
        Cf::Models,
        Cf::Alerts,
        Cf::Cases,
        Cf::Suppressions,
        Cf::Audit,
        Cf::Users,
        Cf::Sessions,
        Cf::Enrollment,
        Cf::Meta,
        Cf::Quarantine,
    ];

    /// The column family's on-disk name.
    pub fn name(self) -> &'static str {
        match self {
            Cf::Events => "events",
            Cf::SeqIndex => "seq_index",
            Cf::Hosts => "hosts",
            Cf::Edges => "edges",
            Cf::Features => "features",
            Cf::Models => "models",
            Cf::Alerts => "alerts",
            Cf::Cases => "cases",
            Cf::Suppressions => "suppressions",
            Cf::Audit => "audit",
            Cf::Users => "users",
            Cf::Sessions => "sessions",
            Cf::Enrollment => "enrollment",
            Cf::Meta => "meta",
            Cf::Quarantine => "quarantine",
        }
    }
}

/// A storage failure.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The engine reported an error.
    #[error("storage engine: {0}")]
    Engine(String),
    /// Another process holds the database.
    #[error("database is locked by another process (is `vigil serve` running?): {0}")]
    Locked(String),
    /// A stored value failed to decode.
    #[error("corrupt value in {cf}: {detail}")]
    Corrupt { cf: &'static str, detail: String },
}

/// One write in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Insert or overwrite.
    Put(Cf, Vec<u8>, Vec<u8>),
    /// Remove one key.
    Delete(Cf, Vec<u8>),
}

/// Writes applied atomically by [`Store::write`].
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// Queue an insert.
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Put(cf, key.into(), value.into()));
    }

    /// Queue a delete.
    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Delete(cf, key.into()));
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Scan direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
}

/// What a scan visitor wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    Continue,
    Stop,
}

/// An ordered, column-family key-value engine.
pub trait Store: Send + Sync + 'static {
    /// Read one key.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Apply a batch atomically; with `sync` the WAL is fsynced before returning.
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StoreError>;
    /// Visit keys in `[from, to)` (`to = None`: to the end) in `dir` order.
    fn scan(
        &self,
        cf: Cf,
        from: &[u8],
        to: Option<&[u8]>,
        dir: Direction,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Visit,
    ) -> Result<(), StoreError>;
    /// Delete every key in `[from, to)`.
    fn delete_range(&self, cf: Cf, from: &[u8], to: &[u8]) -> Result<(), StoreError>;
    /// Compact `[from, to)` (all of `cf` when both are `None`) so deletes free space.
    fn compact(&self, cf: Cf, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<(), StoreError>;
    /// Bytes the column family occupies on disk (SST files, plus memtables).
    fn size_bytes(&self, cf: Cf) -> u64;
    /// Approximate bytes the keys in `[from, to)` of `cf` occupy (SST files;
    /// call [`Store::flush`] first to include recent writes). Used to give
    /// each host its own share of the byte bound.
    fn approx_range_bytes(&self, cf: Cf, from: &[u8], to: &[u8]) -> u64;
    /// Bytes of all column families, including the WAL where known.
    fn total_bytes(&self) -> u64 {
        Cf::ALL.iter().map(|cf| self.size_bytes(*cf)).sum()
    }
    /// Persist memtables (used before measuring size on disk).
    fn flush(&self) -> Result<(), StoreError>;
}
