//! In-memory [`Store`] for unit tests: one `BTreeMap` per column family.

use super::{Cf, Direction, Store, StoreError, Visit, WriteBatch, WriteOp};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::RwLock;

type Table = BTreeMap<Vec<u8>, Vec<u8>>;

/// A volatile store with the same semantics as the RocksDB backend.
#[derive(Default)]
pub struct MemoryStore {
    tables: RwLock<HashMap<Cf, Table>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn range_bounds<'a>(from: &'a [u8], to: Option<&'a [u8]>) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (
        Bound::Included(from),
        to.map_or(Bound::Unbounded, Bound::Excluded),
    )
}

impl Store for MemoryStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let tables = self.tables.read().expect("memory store lock");
        Ok(tables.get(&cf).and_then(|t| t.get(key).cloned()))
    }

    fn write(&self, batch: WriteBatch, _sync: bool) -> Result<(), StoreError> {
        let mut tables = self.tables.write().expect("memory store lock");
        for op in batch.ops {
            match op {
                WriteOp::Put(cf, k, v) => {
                    tables.entry(cf).or_default().insert(k, v);
                }
                WriteOp::Delete(cf, k) => {
                    tables.entry(cf).or_default().remove(&k);
                }
            }
        }
        Ok(())
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
        let tables = self.tables.read().expect("memory store lock");
        let Some(table) = tables.get(&cf) else {
            return Ok(());
        };
        let range = table.range::<[u8], _>(range_bounds(from, to));
        let mut step = |(k, v): (&Vec<u8>, &Vec<u8>)| visit(k, v) == Visit::Continue;
        match dir {
            Direction::Forward => {
                for kv in range {
                    if !step(kv) {
                        break;
                    }
                }
            }
            Direction::Reverse => {
                for kv in range.rev() {
                    if !step(kv) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn delete_range(&self, cf: Cf, from: &[u8], to: &[u8]) -> Result<(), StoreError> {
        if to <= from {
            return Ok(());
        }
        let mut tables = self.tables.write().expect("memory store lock");
        if let Some(table) = tables.get_mut(&cf) {
            let doomed: Vec<Vec<u8>> = table
                .range::<[u8], _>(range_bounds(from, Some(to)))
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                table.remove(&k);
            }
        }
        Ok(())
    }

    fn compact(&self, _cf: Cf, _from: Option<&[u8]>, _to: Option<&[u8]>) -> Result<(), StoreError> {
        Ok(())
    }

    fn size_bytes(&self, cf: Cf) -> u64 {
        let tables = self.tables.read().expect("memory store lock");
        tables.get(&cf).map_or(0, |t| {
            t.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
        })
    }

    fn approx_range_bytes(&self, cf: Cf, from: &[u8], to: &[u8]) -> u64 {
        if to <= from {
            return 0;
        }
        let tables = self.tables.read().expect("memory store lock");
        tables.get(&cf).map_or(0, |t| {
            t.range(from.to_vec()..to.to_vec())
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum()
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
