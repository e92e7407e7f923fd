//! Host registry: what each enrolled host is, when it was last seen, its
//! health, whether it is revoked, and its live connection (to close it on
//! revocation and to push commands). In memory, written through to the
//! `hosts` column family.

use crate::db::{Db, HealthSample, HostRecord};
use crate::identity;
use crate::notices::DetectionNotices;
use crate::store::StoreError;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::mpsc;
use vigil_models::registry::canonical_ip;
use vigil_proto::control::{Heartbeat, Hello};
use vigil_proto::{Command, HostId};

/// QUIC close codes: one definition, shared with the sensor.
pub use vigil_proto::close::{
    NO_CERT as CLOSE_NO_CERT, PROTOCOL as CLOSE_PROTOCOL, REPLACED as CLOSE_REPLACED,
    REVOKED as CLOSE_REVOKED, SHUTDOWN as CLOSE_SHUTDOWN, UNKNOWN_HOST as CLOSE_UNKNOWN_HOST,
};

/// Least time between two stored health samples of one host.
pub const HEALTH_SAMPLE_EVERY_NS: u64 = 60_000_000_000;

/// Revoked host ids, shared with the TLS client-certificate verifier.
pub type RevokedSet = Arc<RwLock<HashSet<u64>>>;

/// A registry failure.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown host {0}")]
    UnknownHost(HostId),
    #[error("host {0} is not connected")]
    NotConnected(HostId),
    #[error("command queue of host {0} is full")]
    Busy(HostId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Live {
    conn_id: usize,
    conn: quinn::Connection,
    commands: Option<mpsc::Sender<Command>>,
}

/// The registry.
pub struct Registry {
    db: Db,
    notices: DetectionNotices,
    hosts: Mutex<HashMap<HostId, HostRecord>>,
    last_sample: Mutex<HashMap<HostId, u64>>,
    revoked: RevokedSet,
    live: Mutex<HashMap<HostId, Live>>,
}

impl Registry {
    /// Load every host record from the store.
    pub fn load(db: Db, notices: DetectionNotices) -> Result<Self, StoreError> {
        let records = db.host_records()?;
        let revoked = records
            .iter()
            .filter(|r| r.revoked_ns.is_some())
            .map(|r| r.id)
            .collect();
        Ok(Registry {
            db,
            notices,
            hosts: Mutex::new(records.into_iter().map(|r| (HostId(r.id), r)).collect()),
            last_sample: Mutex::new(HashMap::new()),
            revoked: Arc::new(RwLock::new(revoked)),
            live: Mutex::new(HashMap::new()),
        })
    }

    /// The revoked set, for the TLS verifier.
    pub fn revoked_set(&self) -> RevokedSet {
        self.revoked.clone()
    }

    /// Whether a host is revoked.
    pub fn is_revoked(&self, host: HostId) -> bool {
        self.revoked.read().expect("revoked lock").contains(&host.0)
    }

    /// One host's record.
    pub fn get(&self, host: HostId) -> Option<HostRecord> {
        self.hosts.lock().expect("hosts lock").get(&host).cloned()
    }

    /// All records, by host id.
    pub fn all(&self) -> Vec<HostRecord> {
        let mut v: Vec<_> = self
            .hosts
            .lock()
            .expect("hosts lock")
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|r| r.id);
        v
    }

    /// Whether a host id is already taken.
    pub fn contains(&self, host: HostId) -> bool {
        self.hosts.lock().expect("hosts lock").contains_key(&host)
    }

    /// Remember a record already written by enrollment.
    pub fn insert_enrolled(&self, rec: HostRecord) {
        self.hosts
            .lock()
            .expect("hosts lock")
            .insert(HostId(rec.id), rec);
        self.notices.note_identity_change();
    }

    fn update(
        &self,
        host: HostId,
        sync: bool,
        f: impl FnOnce(&mut HostRecord),
    ) -> Result<(), RegistryError> {
        self.update_maybe_persist(host, true, sync, f)
    }

    /// Apply `f` in memory; write the record through when `persist`.
    fn update_maybe_persist(
        &self,
        host: HostId,
        persist: bool,
        sync: bool,
        f: impl FnOnce(&mut HostRecord),
    ) -> Result<(), RegistryError> {
        let mut hosts = self.hosts.lock().expect("hosts lock");
        let rec = hosts
            .get_mut(&host)
            .ok_or(RegistryError::UnknownHost(host))?;
        f(rec);
        if persist {
            self.db.put_host_record(rec, sync)?;
        }
        Ok(())
    }

    /// A sensor said hello: record what it says it is, except addresses
    /// another host owns. Returns the refused claims.
    pub fn on_hello(
        &self,
        host: HostId,
        hello: &Hello,
        heartbeat_ms: u32,
        now_ns: u64,
    ) -> Result<Vec<identity::Conflict>, RegistryError> {
        // A claim of another host's address is refused (kept out of the
        // record) and recorded; a name is kept for display, and the
        // pipeline resolves who owns it (see `crate::identity`).
        // Most hellos repeat what the record already says (a reconnect):
        // nothing to check, and no scan of every host on the QUIC thread
        // when a whole fleet reconnects after a restart.
        let unchanged = self
            .get(host)
            .is_some_and(|r| r.hostname == hello.hostname && r.addrs == hello.addrs);
        let conflicts = if unchanged {
            Vec::new()
        } else {
            identity::conflicts_of(&self.all(), host, &hello.hostname, &hello.addrs)
        };
        let refused: Vec<IpAddr> = conflicts
            .iter()
            .filter_map(|c| match c.claim {
                identity::Claim::Addr(a) => Some(a),
                identity::Claim::Name(_) => None,
            })
            .collect();
        let addrs: Vec<IpAddr> = hello
            .addrs
            .iter()
            .copied()
            .filter(|a| !refused.contains(&canonical_ip(*a)))
            .collect();
        let mut renamed = false;
        self.update(host, false, |r| {
            renamed = r.hostname != hello.hostname || r.addrs != addrs;
            r.hostname = hello.hostname.clone();
            r.os = hello.os.clone();
            r.addrs = addrs;
            r.sensor_version = hello.sensor_version.clone();
            r.heartbeat_ms = heartbeat_ms;
            r.last_seen_ns = now_ns;
        })?;
        if !unchanged {
            self.db.put_identity_conflicts(host, &conflicts)?;
        }
        if renamed {
            self.notices.note_identity_change();
        }
        Ok(conflicts)
    }

    /// A heartbeat arrived: update last seen and health; persist the record
    /// and a health sample at most every [`HEALTH_SAMPLE_EVERY_NS`].
    pub fn on_heartbeat(
        &self,
        host: HostId,
        hb: &Heartbeat,
        now_ns: u64,
    ) -> Result<(), RegistryError> {
        let h = &hb.health;
        let due = {
            let mut last = self.last_sample.lock().expect("sample lock");
            let prev = last.get(&host).copied().unwrap_or(0);
            if now_ns.saturating_sub(prev) >= HEALTH_SAMPLE_EVERY_NS {
                last.insert(host, now_ns);
                true
            } else {
                false
            }
        };
        // In memory every time; written through (with a health sample) at most
        // every HEALTH_SAMPLE_EVERY_NS, so 10k sensors do not mean 1k writes/s.
        self.update_maybe_persist(host, due, false, |r| {
            r.last_seen_ns = now_ns;
            r.cpu_pct = h.cpu_pct;
            r.rss_bytes = h.rss_bytes;
            r.events_per_s = h.events_per_s;
            r.spool_bytes = h.spool_bytes;
            r.dropped_total = h.dropped_total;
        })?;
        if due {
            self.db.put_health(
                host,
                &HealthSample {
                    ts_ns: now_ns,
                    cpu_pct: h.cpu_pct,
                    rss_bytes: h.rss_bytes,
                    events_per_s: h.events_per_s,
                    spool_bytes: h.spool_bytes,
                    dropped_total: h.dropped_total,
                },
            )?;
        }
        Ok(())
    }

    /// Any sign of life from a host (e.g. a batch).
    pub fn touch(&self, host: HostId, now_ns: u64) {
        if let Some(r) = self.hosts.lock().expect("hosts lock").get_mut(&host) {
            r.last_seen_ns = r.last_seen_ns.max(now_ns);
        }
    }

    /// Revoke a host: persisted (synced), refused at every later handshake,
    /// and its live connection is closed now. Returns false if already revoked.
    pub fn revoke(&self, host: HostId, now_ns: u64) -> Result<bool, RegistryError> {
        let mut first = false;
        self.update(host, true, |r| {
            if r.revoked_ns.is_none() {
                r.revoked_ns = Some(now_ns);
                first = true;
            }
        })?;
        self.revoked.write().expect("revoked lock").insert(host.0);
        if let Some(live) = self.live.lock().expect("live lock").remove(&host) {
            live.conn
                .close(CLOSE_REVOKED.into(), b"certificate revoked");
        }
        Ok(first)
    }

    /// Record a host's live connection (replacing and closing an older one).
    pub fn connected(&self, host: HostId, conn: quinn::Connection) -> usize {
        let conn_id = conn.stable_id();
        let old = self.live.lock().expect("live lock").insert(
            host,
            Live {
                conn_id,
                conn,
                commands: None,
            },
        );
        if let Some(old) = old {
            old.conn
                .close(CLOSE_REPLACED.into(), b"replaced by a newer connection");
        }
        conn_id
    }

    /// Attach the command channel of a live connection.
    pub fn attach_commands(&self, host: HostId, conn_id: usize, tx: mpsc::Sender<Command>) {
        if let Some(live) = self.live.lock().expect("live lock").get_mut(&host) {
            if live.conn_id == conn_id {
                live.commands = Some(tx);
            }
        }
    }

    /// Forget a connection when it ends.
    pub fn disconnected(&self, host: HostId, conn_id: usize) {
        let mut live = self.live.lock().expect("live lock");
        if live.get(&host).is_some_and(|l| l.conn_id == conn_id) {
            live.remove(&host);
        }
    }

    /// How many hosts are connected now.
    pub fn connected_count(&self) -> usize {
        self.live.lock().expect("live lock").len()
    }

    /// Whether a host is connected now.
    pub fn is_connected(&self, host: HostId) -> bool {
        self.live.lock().expect("live lock").contains_key(&host)
    }

    /// Queue a response command for a connected host.
    pub fn send_command(&self, host: HostId, cmd: Command) -> Result<(), RegistryError> {
        let live = self.live.lock().expect("live lock");
        let tx = live
            .get(&host)
            .and_then(|l| l.commands.clone())
            .ok_or(RegistryError::NotConnected(host))?;
        tx.try_send(cmd).map_err(|_| RegistryError::Busy(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn hello(name: &str, ip: [u8; 4]) -> Hello {
        Hello {
            protocol_versions: vec![1],
            sensor_version: "test".into(),
            hostname: name.into(),
            os: "linux".into(),
            addrs: vec![std::net::IpAddr::from(ip)],
            next_seq: 1,
        }
    }

    #[test]
    fn identity_changes_are_noted_and_heartbeat_fields_are_not() {
        let db = Db::new(Arc::new(MemoryStore::default()));
        let notices = DetectionNotices::default();
        let reg = Registry::load(db.clone(), notices.clone()).unwrap();
        let g0 = notices.identity_generation();
        reg.insert_enrolled(HostRecord {
            id: 7,
            hostname: "h".into(),
            ..HostRecord::default()
        });
        let g1 = notices.identity_generation();
        assert_ne!(g1, g0, "enrollment is an identity change");
        reg.on_hello(HostId(7), &hello("h", [10, 0, 0, 7]), 10_000, 1)
            .unwrap();
        let g2 = notices.identity_generation();
        assert_ne!(g2, g1, "a new address is an identity change");
        reg.on_hello(HostId(7), &hello("h", [10, 0, 0, 7]), 10_000, 2)
            .unwrap();
        assert_eq!(notices.identity_generation(), g2, "a reconnect is not");
        reg.on_hello(HostId(7), &hello("h2", [10, 0, 0, 7]), 10_000, 3)
            .unwrap();
        assert_ne!(notices.identity_generation(), g2, "a rename is");
    }
}
