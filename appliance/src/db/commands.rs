//! Durable response commands (`cases` column family).
//!
//! | what | key | value |
//! | --- | --- | --- |
//! | a command | `command/{id u64 BE}` | JSON [`CommandRecord`] |
//! | per-host index | `command-host/{host u64 BE}{id u64 BE}` | empty |
//! | attached data | `command-data/{id u64 BE}` | raw bytes (collected file, listing) |
//! | next id | `meta`: `command/next` | postcard u64 |
//!
//! Records are JSON, not postcard like the rest of the store: a command
//! record gains fields as response grows, and serde defaults keep records
//! written by an older build readable. Every write is synced: a queued
//! command is an operator's decision and must survive a crash.

use super::records::{id_key, key};
use super::{decode, encode, Db};
use crate::store::{Cf, Direction, StoreError, Visit, WriteBatch};
use vigil_proto::query::response::CommandRecord;
use vigil_proto::HostId;

/// `cases`: `command/{id}`.
pub const COMMAND: &[u8] = b"command/";
/// `cases`: `command-host/{host}{id}`.
pub const COMMAND_HOST: &[u8] = b"command-host/";
/// `cases`: `command-data/{id}`.
pub const COMMAND_DATA: &[u8] = b"command-data/";
/// `meta`: the next command id.
const NEXT_COMMAND: &[u8] = b"command/next";

fn host_index_key(host: HostId, id: u64) -> Vec<u8> {
    let mut rest = host.0.to_be_bytes().to_vec();
    rest.extend_from_slice(&id.to_be_bytes());
    key(COMMAND_HOST, &rest)
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt {
        cf: Cf::Cases.name(),
        detail,
    }
}

impl Db {
    /// Allocate the next command id (1, 2, …), durably.
    pub fn next_command_id(&self) -> Result<u64, StoreError> {
        let _guard = self.id_lock.lock().expect("id lock");
        let next: u64 = match self.store.get(Cf::Meta, NEXT_COMMAND)? {
            Some(v) => decode(Cf::Meta, &v)?,
            None => 1,
        };
        let mut b = WriteBatch::default();
        b.put(Cf::Meta, NEXT_COMMAND.to_vec(), encode(&(next + 1)));
        self.store.write(b, true)?;
        Ok(next)
    }

    /// Store (create or replace) a command record, with its host index and,
    /// when given, its attached data, in one synced batch.
    pub fn put_command(&self, rec: &CommandRecord, data: Option<&[u8]>) -> Result<(), StoreError> {
        let json = serde_json::to_vec(rec).map_err(|e| corrupt(e.to_string()))?;
        let mut b = WriteBatch::default();
        b.put(Cf::Cases, id_key(COMMAND, rec.id()), json);
        b.put(Cf::Cases, host_index_key(rec.host(), rec.id()), Vec::new());
        if let Some(data) = data {
            b.put(Cf::Cases, id_key(COMMAND_DATA, rec.id()), data.to_vec());
        }
        self.store.write(b, true)
    }

    /// One command.
    pub fn command(&self, id: u64) -> Result<Option<CommandRecord>, StoreError> {
        self.store
            .get(Cf::Cases, &id_key(COMMAND, id))?
            .map(|v| serde_json::from_slice(&v).map_err(|e| corrupt(format!("command {id}: {e}"))))
            .transpose()
    }

    /// The data a sensor attached to command `id`'s receipt.
    pub fn command_data(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(Cf::Cases, &id_key(COMMAND_DATA, id))
    }

    /// Commands, newest first: all of them, or one host's (`limit` 0 = all).
    pub fn commands(
        &self,
        host: Option<HostId>,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        let prefix = match host {
            Some(h) => key(COMMAND_HOST, &h.0.to_be_bytes()),
            None => COMMAND.to_vec(),
        };
        let mut out = Vec::new();
        for id in self.ids_under(&prefix, limit)? {
            if let Some(rec) = self.command(id)? {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// The ids that end the keys under `prefix` (`command/{id}` or
    /// `command-host/{host}{id}`), highest first.
    fn ids_under(&self, prefix: &[u8], limit: usize) -> Result<Vec<u64>, StoreError> {
        let end = super::keys::prefix_end(prefix);
        let mut ids = Vec::new();
        self.store.scan(
            Cf::Cases,
            prefix,
            end.as_deref(),
            Direction::Reverse,
            &mut |k, _| {
                if let Ok(b) = <[u8; 8]>::try_from(&k[prefix.len()..]) {
                    ids.push(u64::from_be_bytes(b));
                }
                if limit != 0 && ids.len() >= limit {
                    Visit::Stop
                } else {
                    Visit::Continue
                }
            },
        )?;
        Ok(ids)
    }
}
