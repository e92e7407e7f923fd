//! Enrollment: one-time (or N-use), expiring tokens stored as SHA-256
//! hashes; a valid token plus a CSR buys a client certificate bound to a
//! newly assigned host id.

use crate::db::{Db, HostRecord, TokenRecord};
use crate::pki::Pki;
use crate::registry::Registry;
use crate::store::{Cf, StoreError};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_proto::control::Refusal;
use vigil_proto::{EnrollRequest, EnrollResponse, HostId};

/// A freshly created token (the secret is shown once, never stored).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewToken {
    pub token: String,
    pub expires_ns: u64,
    pub uses: u32,
    /// SHA-256 of the CA certificate, lowercase hex, for the sensor to pin.
    pub ca_fingerprint: String,
    /// The number `vigil token list|revoke` and the console know it by
    /// (0: created without a listing entry, e.g. by the library API).
    #[serde(default)]
    pub id: u64,
}

/// The key a token is stored under: SHA-256 of its (trimmed) secret.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// Create a token valid for `ttl` and `uses` enrollments.
pub fn create_token(
    db: &Db,
    pki: &Pki,
    ttl: Duration,
    uses: u32,
    now_ns: u64,
) -> Result<NewToken, StoreError> {
    let secret: [u8; 20] = rand::random();
    let token = format!("vgl_{}", hex::encode(secret));
    let expires_ns = now_ns.saturating_add(ttl.as_nanos().min(u64::MAX as u128) as u64);
    let uses = uses.max(1);
    db.put_token(
        &token_hash(&token),
        &TokenRecord {
            created_ns: now_ns,
            expires_ns,
            uses_total: uses,
            uses_left: uses,
        },
    )?;
    Ok(NewToken {
        token,
        expires_ns,
        uses,
        ca_fingerprint: pki.ca_fingerprint(),
        id: 0,
    })
}

/// Where a token's revocation is recorded (`meta` cf, value: when, ns).
/// Kept beside the token record rather than in it so the stored token
/// format does not change.
const REVOKED: &[u8] = b"enroll/revoked/";

fn revoked_key(hash: &[u8; 32]) -> Vec<u8> {
    [REVOKED, hash.as_slice()].concat()
}

/// When the token with secret hash `hash` was revoked, if it was.
pub fn token_revoked_ns(db: &Db, hash: &[u8; 32]) -> Result<Option<u64>, StoreError> {
    db.record(Cf::Meta, &revoked_key(hash))
}

/// Revoke the token with secret hash `hash`: it enrolls nothing from now
/// on. Returns whether it was revoked now (`false`: it already was).
pub fn revoke_token(db: &Db, hash: &[u8; 32], now_ns: u64) -> Result<bool, StoreError> {
    if token_revoked_ns(db, hash)?.is_some() {
        return Ok(false);
    }
    db.put_record(Cf::Meta, &revoked_key(hash), &now_ns)?;
    Ok(true)
}

fn refusal(code: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        code: code.to_owned(),
        message: message.into(),
    }
}

/// Serves enrollment requests (serialised: token use counts must not race).
pub struct Enrollment {
    db: Db,
    pki: Arc<Pki>,
    registry: Arc<Registry>,
    lock: Mutex<()>,
}

impl Enrollment {
    /// Build the service.
    pub fn new(db: Db, pki: Arc<Pki>, registry: Arc<Registry>) -> Self {
        Enrollment {
            db,
            pki,
            registry,
            lock: Mutex::new(()),
        }
    }

    /// Check the token, sign the CSR, record the new host; or say why not.
    pub fn enroll(
        &self,
        req: &EnrollRequest,
        peer: Option<std::net::IpAddr>,
        now_ns: u64,
    ) -> Result<EnrollResponse, Refusal> {
        let _guard = self.lock.lock().expect("enrollment lock");
        let hash = token_hash(&req.token);
        let internal = |e: StoreError| refusal("internal", e.to_string());
        let mut tok = self
            .db
            .token(&hash)
            .map_err(internal)?
            .ok_or_else(|| refusal("token_unknown", "this enrollment token is not known"))?;
        if token_revoked_ns(&self.db, &hash)
            .map_err(internal)?
            .is_some()
        {
            return Err(refusal(
                "token_revoked",
                "this enrollment token was revoked; create a new one with `vigil token create`",
            ));
        }
        if now_ns >= tok.expires_ns {
            return Err(refusal(
                "token_expired",
                "this enrollment token has expired; create a new one with `vigil token create`",
            ));
        }
        if tok.uses_left == 0 {
            return Err(refusal(
                "token_used_up",
                "this enrollment token has already been used as often as allowed",
            ));
        }
        let host = loop {
            let id = HostId(rand::random::<u64>() >> 1);
            if id.0 != 0 && !self.registry.contains(id) {
                break id;
            }
        };
        let cert_der = self
            .pki
            .sign_client_csr(&req.csr_der, host, std::time::SystemTime::now())
            .map_err(|e| refusal("bad_csr", e.to_string()))?;
        tok.uses_left -= 1;
        let rec = HostRecord {
            id: host.0,
            hostname: req.hostname.clone(),
            os: req.os.clone(),
            addrs: peer.into_iter().collect(),
            sensor_version: req.sensor_version.clone(),
            enrolled_ns: now_ns,
            last_seen_ns: now_ns,
            ..HostRecord::default()
        };
        // Token first: a crash between the two writes wastes a use, never grants an extra one.
        self.db.put_token(&hash, &tok).map_err(internal)?;
        self.db.put_host_record(&rec, true).map_err(internal)?;
        self.registry.insert_enrolled(rec);
        Ok(EnrollResponse {
            host,
            cert_der,
            ca_der: self.pki.ca_der().to_vec(),
        })
    }
}
