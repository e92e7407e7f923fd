//! The production [`Store`]: embedded RocksDB, one column family per [`Cf`].
//!
//! Events get 64 KiB blocks, LZ4 on the upper levels and zstd (level 6, no
//! dictionary) at the bottommost level, where almost all data ends up: big
//! blocks of neighbouring events from one host compress far better than
//! single records, which is how we stay under ~40 bytes per stored event.

use super::{Cf, Direction, Store, StoreError, Visit, WriteBatch, WriteOp};
use rocksdb::{
    BlockBasedOptions, BottommostLevelCompaction, ColumnFamilyDescriptor, CompactOptions,
    DBCompressionType, Options, WriteOptions, DB,
};
use std::path::Path;

/// RocksDB-backed store.
pub struct RocksStore {
    db: DB,
}

fn engine_err(e: rocksdb::Error) -> StoreError {
    let text = e.to_string();
    if text.contains("LOCK") || text.contains("lock") {
        StoreError::Locked(text)
    } else {
        StoreError::Engine(text)
    }
}

fn cf_options(cf: Cf) -> Options {
    let mut opts = Options::default();
    let mut table = BlockBasedOptions::default();
    table.set_format_version(5);
    match cf {
        Cf::Events | Cf::SeqIndex => {
            table.set_block_size(64 * 1024);
            opts.set_compression_type(DBCompressionType::Lz4);
            opts.set_bottommost_compression_type(DBCompressionType::Zstd);
            opts.set_bottommost_compression_options(-14, 6, 0, 0, true);
            opts.set_level_compaction_dynamic_level_bytes(true);
            opts.set_write_buffer_size(64 * 1024 * 1024);
        }
        _ => {
            table.set_block_size(16 * 1024);
            opts.set_compression_type(DBCompressionType::Zstd);
            opts.set_write_buffer_size(8 * 1024 * 1024);
        }
    }
    opts.set_block_based_table_factory(&table);
    opts
}

impl RocksStore {
    /// Open (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        opts.set_max_total_wal_size(256 * 1024 * 1024);
        let cfs = Cf::ALL
            .iter()
            .map(|cf| ColumnFamilyDescriptor::new(cf.name(), cf_options(*cf)));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(engine_err)?;
        Ok(RocksStore { db })
    }

    fn handle(&self, cf: Cf) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(cf.name())
            .ok_or_else(|| StoreError::Engine(format!("missing column family {}", cf.name())))
    }
}

impl Store for RocksStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf(self.handle(cf)?, key).map_err(engine_err)
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in &batch.ops {
            match op {
                WriteOp::Put(cf, k, v) => wb.put_cf(self.handle(*cf)?, k, v),
                WriteOp::Delete(cf, k) => wb.delete_cf(self.handle(*cf)?, k),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(wb, &opts).map_err(engine_err)
    }

    fn scan(
        &self,
        cf: Cf,
        from: &[u8],
        to: Option<&[u8]>,
        dir: Direction,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Visit,
    ) -> Result<(), StoreError> {
        if to.is_some_and(|to| to <= from) {
            return Ok(());
        }
        let mut it = self.db.raw_iterator_cf(self.handle(cf)?);
        match dir {
            Direction::Forward => it.seek(from),
            Direction::Reverse => match to {
                Some(to) => it.seek_for_prev(to),
                None => it.seek_to_last(),
            },
        }
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            let inside = match dir {
                Direction::Forward => to.is_none_or(|to| k < to),
                Direction::Reverse => k >= from && to.is_none_or(|to| k < to),
            };
            if inside {
                if visit(k, v) == Visit::Stop {
                    return Ok(());
                }
            } else if dir == Direction::Forward || k < from {
                break;
            }
            match dir {
                Direction::Forward => it.next(),
                Direction::Reverse => it.prev(),
            }
        }
        it.status().map_err(engine_err)
    }

    fn delete_range(&self, cf: Cf, from: &[u8], to: &[u8]) -> Result<(), StoreError> {
        if to <= from {
            return Ok(());
        }
        self.db
            .delete_range_cf(self.handle(cf)?, from, to)
            .map_err(engine_err)
    }

    fn compact(&self, cf: Cf, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<(), StoreError> {
        let mut opts = CompactOptions::default();
        opts.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        self.db
            .compact_range_cf_opt(self.handle(cf)?, from, to, &opts);
        Ok(())
    }

    fn size_bytes(&self, cf: Cf) -> u64 {
        let Ok(handle) = self.handle(cf) else {
            return 0;
        };
        let prop = |name: &str| {
            self.db
                .property_int_value_cf(handle, name)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        prop("rocksdb.total-sst-files-size") + prop("rocksdb.cur-size-all-mem-tables")
    }

    fn approx_range_bytes(&self, cf: Cf, from: &[u8], to: &[u8]) -> u64 {
        if to <= from {
            return 0;
        }
        let Ok(handle) = self.handle(cf) else {
            return 0;
        };
        self.db
            .get_approximate_sizes_cf(handle, &[rocksdb::Range::new(from, to)])
            .first()
            .copied()
            .unwrap_or(0)
    }

    fn flush(&self) -> Result<(), StoreError> {
        for cf in Cf::ALL {
            self.db.flush_cf(self.handle(cf)?).map_err(engine_err)?;
        }
        Ok(())
    }
}

/// Debian 12's RocksDB 7.8 lacks this C-API destructor, which the `rocksdb`
/// crate references (for write-buffer managers, which we never create).
/// Only compiled when linking a system RocksDB via `ROCKSDB_LIB_DIR`.
#[cfg(vigil_system_rocksdb)]
#[no_mangle]
pub extern "C" fn rocksdb_write_buffer_manager_destroy(_manager: *mut std::ffi::c_void) {}
