//! Typed access to the store: what each column family holds and how its
//! keys and values are encoded. Values are postcard (compact, no field
//! names); keys are big-endian (see [`keys`]).

pub mod audit_log;
pub mod commands;
pub mod events;
#[cfg(test)]
mod golden;
pub mod keys;
pub mod quarantine;
pub mod records;
pub mod seqset;
pub mod suppressions;
pub mod trends;

use crate::store::{Cf, Direction, Store, StoreError, Visit, WriteBatch};
use keys::{host_key, host_tag};
use seqset::SeqSet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use vigil_proto::query::{AlertFilter, AlertRecord, EdgeRecord, TriageState};
use vigil_proto::HostId;

/// A host as the registry stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HostRecord {
    pub id: u64,
    pub hostname: String,
    pub os: String,
    pub addrs: Vec<IpAddr>,
    pub sensor_version: String,
    pub enrolled_ns: u64,
    pub last_seen_ns: u64,
    /// Heartbeat interval pushed to the sensor (for online/stale/offline).
    pub heartbeat_ms: u32,
    /// When the certificate was revoked, if it was.
    pub revoked_ns: Option<u64>,
    pub isolated: bool,
    pub cpu_pct: f32,
    pub rss_bytes: u64,
    pub events_per_s: f32,
    pub spool_bytes: u64,
    /// Sensor-reported drops since its start.
    pub dropped_total: u64,
}

/// Per-host ingest counters, written in the same batch as the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HostCounts {
    pub events_total: u64,
    pub duplicates_total: u64,
    /// Sum of `count` over loss records.
    pub lost_total: u64,
    pub loss_records: u64,
}

/// One health-history sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HealthSample {
    pub ts_ns: u64,
    pub cpu_pct: f32,
    pub rss_bytes: u64,
    pub events_per_s: f32,
    pub spool_bytes: u64,
    pub dropped_total: u64,
}

/// An enrollment token, stored under the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub created_ns: u64,
    pub expires_ns: u64,
    pub uses_total: u32,
    pub uses_left: u32,
}

/// Retention policy: events older than `max_age_days` or beyond `max_bytes` go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// 0 disables the age bound.
    pub max_age_days: u32,
    /// 0 disables the size bound.
    pub max_bytes: u64,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            max_age_days: 30,
            max_bytes: 100 * 1024 * 1024 * 1024,
        }
    }
}

const META_RETENTION: &[u8] = b"retention";
const META_NEXT_ALERT: &[u8] = b"next_alert_id";
const META_RETENTION_RUN: &[u8] = b"retention_last_run";

/// What the last retention pass did (shown by `vigil status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RetentionRun {
    pub ran_ns: u64,
    /// Events older than this were deleted (0: none).
    pub cutoff_ns: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Encode a value for storage.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // postcard only fails on types it cannot represent; ours are all plain data.
    postcard::to_allocvec(value).expect("postcard encodes plain data")
}

/// Decode a stored value.
pub fn decode<T: DeserializeOwned>(cf: Cf, bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        cf: cf.name(),
        detail: e.to_string(),
    })
}

/// The typed database over any [`Store`].
#[derive(Clone)]
pub struct Db {
    store: Arc<dyn Store>,
    id_lock: Arc<Mutex<()>>,
}

impl Db {
    /// Wrap a store.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Db {
            store,
            id_lock: Arc::new(Mutex::new(())),
        }
    }

    /// The underlying engine.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn get<T: DeserializeOwned>(&self, cf: Cf, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.store.get(cf, key)?.map(|v| decode(cf, &v)).transpose()
    }

    fn put<T: Serialize>(
        &self,
        cf: Cf,
        key: &[u8],
        value: &T,
        sync: bool,
    ) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.put(cf, key.to_vec(), encode(value));
        self.store.write(b, sync)
    }

    // ---- hosts ----

    /// A host's registry record.
    pub fn host_record(&self, host: HostId) -> Result<Option<HostRecord>, StoreError> {
        self.get(Cf::Hosts, &host_key(host, host_tag::RECORD))
    }

    /// Store a host's registry record.
    pub fn put_host_record(&self, rec: &HostRecord, sync: bool) -> Result<(), StoreError> {
        self.put(
            Cf::Hosts,
            &host_key(HostId(rec.id), host_tag::RECORD),
            rec,
            sync,
        )
    }

    /// Every host's registry record, by host id.
    pub fn host_records(&self) -> Result<Vec<HostRecord>, StoreError> {
        let mut out = Vec::new();
        let mut err = None;
        self.store
            .scan(Cf::Hosts, &[], None, Direction::Forward, &mut |k, v| {
                if k.len() == 9 && k[8] == host_tag::RECORD {
                    match decode(Cf::Hosts, v) {
                        Ok(r) => out.push(r),
                        Err(e) => {
                            err = Some(e);
                            return Visit::Stop;
                        }
                    }
                }
                Visit::Continue
            })?;
        err.map_or(Ok(out), Err)
    }

    /// A host's ingest counters.
    pub fn host_counts(&self, host: HostId) -> Result<HostCounts, StoreError> {
        Ok(self
            .get(Cf::Hosts, &host_key(host, host_tag::COUNTS))?
            .unwrap_or_default())
    }

    /// The seqs stored for a host.
    pub fn seqset(&self, host: HostId) -> Result<SeqSet, StoreError> {
        Ok(self
            .get(Cf::Hosts, &host_key(host, host_tag::SEQS))?
            .unwrap_or_default())
    }

    /// Append a health sample (not synced: health is advisory).
    pub fn put_health(&self, host: HostId, sample: &HealthSample) -> Result<(), StoreError> {
        self.put(
            Cf::Hosts,
            &keys::health_key(host, sample.ts_ns),
            sample,
            false,
        )
    }

    /// Health samples of a host in `[since_ns, ∞)`, oldest first.
    pub fn health_history(
        &self,
        host: HostId,
        since_ns: u64,
    ) -> Result<Vec<HealthSample>, StoreError> {
        let from = keys::health_key(host, since_ns);
        let to = host_key(host, host_tag::HEALTH + 1);
        let mut out = Vec::new();
        self.store.scan(
            Cf::Hosts,
            &from,
            Some(&to),
            Direction::Forward,
            &mut |_, v| {
                if let Ok(s) = decode(Cf::Hosts, v) {
                    out.push(s);
                }
                Visit::Continue
            },
        )?;
        Ok(out)
    }

    // ---- enrollment and users ----

    /// A token by the SHA-256 of its secret.
    pub fn token(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        self.get(Cf::Enrollment, hash)
    }

    /// Store a token (synced: a token must not come back after a crash).
    pub fn put_token(&self, hash: &[u8; 32], rec: &TokenRecord) -> Result<(), StoreError> {
        self.put(Cf::Enrollment, hash, rec, true)
    }

    // ---- keyed records (the web console's store) ----

    /// A record stored under `key` in `cf` by [`Db::put_record`].
    pub fn record<T: DeserializeOwned>(&self, cf: Cf, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.get(cf, key)
    }

    /// Store a record under `key` (synced: console writes are operator actions).
    pub fn put_record<T: Serialize>(
        &self,
        cf: Cf,
        key: &[u8],
        value: &T,
    ) -> Result<(), StoreError> {
        self.put(cf, key, value, true)
    }

    /// Remove the records under `keys` in one batch (unknown keys are fine).
    pub fn delete_records(&self, cf: Cf, keys: Vec<Vec<u8>>) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut b = WriteBatch::default();
        for k in keys {
            b.delete(cf, k);
        }
        self.store.write(b, true)
    }

    /// Every record whose key starts with `prefix`, in key order
    /// (`Reverse`: last first; `limit` 0 = all), with its key.
    pub fn records_with_prefix<T: DeserializeOwned>(
        &self,
        cf: Cf,
        prefix: &[u8],
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        let end = keys::prefix_end(prefix);
        self.records_in_range(cf, prefix, end.as_deref(), dir, limit)
    }

    /// Every record with a key in `[from, to)` (`None`: to the family's
    /// end), in key order (`Reverse`: last first; `limit` 0 = all), with
    /// its key. A record that does not decode stops the scan with its error.
    pub fn records_in_range<T: DeserializeOwned>(
        &self,
        cf: Cf,
        from: &[u8],
        to: Option<&[u8]>,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        let mut out = Vec::new();
        let mut err = None;
        self.store
            .scan(cf, from, to, dir, &mut |k, v| match decode(cf, v) {
                Ok(r) => {
                    out.push((k.to_vec(), r));
                    if limit != 0 && out.len() >= limit {
                        Visit::Stop
                    } else {
                        Visit::Continue
                    }
                }
                Err(e) => {
                    err = Some(e);
                    Visit::Stop
                }
            })?;
        err.map_or(Ok(out), Err)
    }

    // ---- alerts and edges ----

    /// Allocate the next alert id (1, 2, …), durably.
    pub fn next_alert_id(&self) -> Result<u64, StoreError> {
        let _guard = self.id_lock.lock().expect("id lock");
        let next: u64 = self.get(Cf::Meta, META_NEXT_ALERT)?.unwrap_or(1);
        self.put(Cf::Meta, META_NEXT_ALERT, &(next + 1), true)?;
        Ok(next)
    }

    /// Insert or replace an alert (keyed by its id).
    pub fn put_alert(&self, alert: &AlertRecord) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        Self::put_alert_in(&mut b, alert);
        self.store.write(b, true)
    }

    /// Queue [`Db::put_alert`]'s write in `batch`, to be written atomically
    /// with other records (SIEM forwarding's outbox entry).
    pub fn put_alert_in(batch: &mut WriteBatch, alert: &AlertRecord) {
        batch.put(Cf::Alerts, alert.id.to_be_bytes().to_vec(), encode(alert));
    }

    /// One alert.
    pub fn alert(&self, id: u64) -> Result<Option<AlertRecord>, StoreError> {
        self.get(Cf::Alerts, &id.to_be_bytes())
    }

    /// Alerts matching `filter`, newest (highest id) first.
    pub fn alerts(&self, filter: &AlertFilter) -> Result<Vec<AlertRecord>, StoreError> {
        let limit = if filter.limit == 0 {
            1000
        } else {
            filter.limit
        };
        let mut out = Vec::new();
        self.store
            .scan(Cf::Alerts, &[], None, Direction::Reverse, &mut |_, v| {
                if let Ok(a) = decode::<AlertRecord>(Cf::Alerts, v) {
                    if alert_matches(&a, filter) {
                        out.push(a);
                    }
                }
                if out.len() >= limit {
                    Visit::Stop
                } else {
                    Visit::Continue
                }
            })?;
        Ok(out)
    }

    /// Insert or replace an edge of the fleet graph.
    pub fn put_edge(&self, edge: &EdgeRecord) -> Result<(), StoreError> {
        self.put(
            Cf::Edges,
            &edge_key(edge.src, edge.dst, edge.port, edge.user.as_deref()),
            edge,
            false,
        )
    }

    /// Count one more observation of src → dst:port as `user` at `ts_ns`.
    pub fn record_edge(
        &self,
        src: HostId,
        dst: HostId,
        port: u16,
        user: Option<&str>,
        ts_ns: u64,
    ) -> Result<EdgeRecord, StoreError> {
        let _guard = self.id_lock.lock().expect("id lock");
        let key = edge_key(src, dst, port, user);
        let edge = match self.get::<EdgeRecord>(Cf::Edges, &key)? {
            Some(mut e) => {
                e.first_seen_ns = e.first_seen_ns.min(ts_ns);
                e.last_seen_ns = e.last_seen_ns.max(ts_ns);
                e.count += 1;
                e
            }
            None => EdgeRecord {
                src,
                dst,
                port,
                user: user.map(str::to_owned),
                first_seen_ns: ts_ns,
                last_seen_ns: ts_ns,
                count: 1,
            },
        };
        self.put(Cf::Edges, &key, &edge, false)?;
        Ok(edge)
    }

    /// Edges last seen at or after `since_ns`.
    pub fn edges(&self, since_ns: u64) -> Result<Vec<EdgeRecord>, StoreError> {
        let mut out = Vec::new();
        self.store
            .scan(Cf::Edges, &[], None, Direction::Forward, &mut |_, v| {
                if let Ok(e) = decode::<EdgeRecord>(Cf::Edges, v) {
                    if e.last_seen_ns >= since_ns {
                        out.push(e);
                    }
                }
                Visit::Continue
            })?;
        Ok(out)
    }

    // ---- meta ----

    /// The retention policy in force.
    pub fn retention(&self) -> Result<RetentionPolicy, StoreError> {
        Ok(self.get(Cf::Meta, META_RETENTION)?.unwrap_or_default())
    }

    /// Record the identity claims of `host` that another host owns (an
    /// empty list clears them).
    pub fn put_identity_conflicts(
        &self,
        host: HostId,
        conflicts: &[crate::identity::Conflict],
    ) -> Result<(), StoreError> {
        let key = host_key(host, host_tag::CONFLICTS);
        if conflicts.is_empty() {
            if self.store().get(Cf::Hosts, &key)?.is_none() {
                return Ok(());
            }
            let mut wb = WriteBatch::default();
            wb.delete(Cf::Hosts, key.to_vec());
            return self.store().write(wb, false);
        }
        self.put(Cf::Hosts, &key, &conflicts.to_vec(), false)
    }

    /// The identity claims of `host` that another host owns.
    pub fn identity_conflicts(
        &self,
        host: HostId,
    ) -> Result<Vec<crate::identity::Conflict>, StoreError> {
        Ok(self
            .get(Cf::Hosts, &host_key(host, host_tag::CONFLICTS))?
            .unwrap_or_default())
    }

    /// Set the retention policy.
    pub fn put_retention(&self, policy: &RetentionPolicy) -> Result<(), StoreError> {
        self.put(Cf::Meta, META_RETENTION, policy, true)
    }

    /// What the last retention pass did.
    pub fn retention_run(&self) -> Result<Option<RetentionRun>, StoreError> {
        self.get(Cf::Meta, META_RETENTION_RUN)
    }

    /// Record a retention pass.
    pub fn put_retention_run(&self, run: &RetentionRun) -> Result<(), StoreError> {
        self.put(Cf::Meta, META_RETENTION_RUN, run, false)
    }
}

fn edge_key(src: HostId, dst: HostId, port: u16, user: Option<&str>) -> Vec<u8> {
    let mut k = Vec::with_capacity(18 + user.map_or(0, str::len));
    k.extend_from_slice(&src.0.to_be_bytes());
    k.extend_from_slice(&dst.0.to_be_bytes());
    k.extend_from_slice(&port.to_be_bytes());
    if let Some(u) = user {
        k.extend_from_slice(u.as_bytes());
    }
    k
}

fn alert_matches(a: &AlertRecord, f: &AlertFilter) -> bool {
    let open = !matches!(
        a.state,
        TriageState::ClosedTruePositive | TriageState::ClosedFalsePositive
    );
    f.since_ns.is_none_or(|s| a.created_ns >= s)
        && f.host.is_none_or(|h| a.path.contains(&h))
        && (!f.open_only || open)
        && f.min_severity.is_none_or(|s| a.severity >= s)
}

/// Whether an alert is still open (not closed either way).
pub fn alert_is_open(a: &AlertRecord) -> bool {
    !matches!(
        a.state,
        TriageState::ClosedTruePositive | TriageState::ClosedFalsePositive
    )
}
