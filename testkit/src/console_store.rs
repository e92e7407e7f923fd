//! [`MemoryConsoleStore`]: the console's own store (users, sessions,
//! triage, audit, settings, tokens) in memory, for tests, the demo and the
//! in-memory render bench. The appliance's is `RocksConsoleStore`.

use rand::RngCore;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use vigil_web_ui::audit;
use vigil_web_ui::store::*;

#[derive(Default)]
struct Inner {
    users: BTreeMap<String, User>,
    sessions: BTreeMap<String, Session>,
    attempts: BTreeMap<String, LoginAttempts>,
    triage: BTreeMap<u64, Triage>,
    suppressions: Vec<Suppression>,
    hunts: Vec<SavedHunt>,
    audit: Vec<AuditEntry>,
    settings: Settings,
    tokens: Vec<EnrollmentTokenInfo>,
}

/// A [`ConsoleStore`] that keeps everything in one mutex-guarded map set.
#[derive(Default)]
pub struct MemoryConsoleStore {
    inner: Mutex<Inner>,
}

impl MemoryConsoleStore {
    /// An empty store with default settings.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Backend("memory store poisoned".into()))
    }

    /// Test hook: overwrite one audit entry's detail, to show tampering is caught.
    pub fn tamper_audit(&self, seq: u64, detail: &str) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        let e = g
            .audit
            .iter_mut()
            .find(|e| e.seq == seq)
            .ok_or_else(|| StoreError::NotFound(format!("audit {seq}")))?;
        e.detail = detail.to_string();
        Ok(())
    }
}

impl ConsoleStore for MemoryConsoleStore {
    fn users(&self) -> Result<Vec<User>, StoreError> {
        Ok(self.lock()?.users.values().cloned().collect())
    }
    fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        Ok(self.lock()?.users.get(name).cloned())
    }
    fn put_user(&self, user: User) -> Result<(), StoreError> {
        self.lock()?.users.insert(user.name.clone(), user);
        Ok(())
    }
    fn put_session(&self, session: Session) -> Result<(), StoreError> {
        self.lock()?.sessions.insert(session.id.clone(), session);
        Ok(())
    }
    fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        Ok(self.lock()?.sessions.get(id).cloned())
    }
    fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        self.lock()?.sessions.remove(id);
        Ok(())
    }
    fn delete_user_sessions(&self, user: &str) -> Result<(), StoreError> {
        self.lock()?.sessions.retain(|_, s| s.user != user);
        Ok(())
    }
    fn touch_session(&self, id: &str, expires_ns: u64) -> Result<bool, StoreError> {
        Ok(self
            .lock()?
            .sessions
            .get_mut(id)
            .map(|s| s.expires_ns = expires_ns)
            .is_some())
    }
    fn login_attempts(&self, key: &str) -> Result<LoginAttempts, StoreError> {
        Ok(self.lock()?.attempts.get(key).copied().unwrap_or_default())
    }
    fn put_login_attempts(&self, key: &str, attempts: LoginAttempts) -> Result<(), StoreError> {
        self.lock()?.attempts.insert(key.to_string(), attempts);
        Ok(())
    }
    fn update_login_attempts(
        &self,
        key: &str,
        update: &mut dyn FnMut(LoginAttempts) -> LoginAttempts,
    ) -> Result<LoginAttempts, StoreError> {
        let mut g = self.lock()?;
        let next = update(g.attempts.get(key).copied().unwrap_or_default());
        g.attempts.insert(key.to_string(), next);
        Ok(next)
    }
    fn triage(&self, alert_id: u64) -> Result<Option<Triage>, StoreError> {
        Ok(self.lock()?.triage.get(&alert_id).cloned())
    }
    fn put_triage(&self, alert_id: u64, triage: Triage) -> Result<(), StoreError> {
        self.lock()?.triage.insert(alert_id, triage);
        Ok(())
    }
    fn suppressions(&self) -> Result<Vec<Suppression>, StoreError> {
        Ok(self.lock()?.suppressions.clone())
    }
    fn add_suppression(&self, mut rule: Suppression) -> Result<u64, StoreError> {
        let mut g = self.lock()?;
        rule.id = g.suppressions.len() as u64 + 1;
        let id = rule.id;
        g.suppressions.push(rule);
        Ok(id)
    }
    fn saved_hunts(&self) -> Result<Vec<SavedHunt>, StoreError> {
        Ok(self.lock()?.hunts.clone())
    }
    fn add_saved_hunt(&self, mut hunt: SavedHunt) -> Result<u64, StoreError> {
        let mut g = self.lock()?;
        hunt.id = g.hunts.len() as u64 + 1;
        let id = hunt.id;
        g.hunts.push(hunt);
        Ok(id)
    }
    fn append_audit(&self, draft: AuditDraft) -> Result<AuditEntry, StoreError> {
        let mut g = self.lock()?;
        let entry = audit::seal(g.audit.last(), draft);
        g.audit.push(entry.clone());
        Ok(entry)
    }
    fn audit_entries(&self) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.lock()?.audit.clone())
    }
    fn settings(&self) -> Result<Settings, StoreError> {
        Ok(self.lock()?.settings)
    }
    fn put_settings(&self, settings: Settings) -> Result<(), StoreError> {
        self.lock()?.settings = settings;
        Ok(())
    }
    fn enrollment_tokens(&self) -> Result<Vec<EnrollmentTokenInfo>, StoreError> {
        let mut v = self.lock()?.tokens.clone();
        v.reverse();
        Ok(v)
    }
    fn create_enrollment_token(
        &self,
        label: &str,
        ttl_ns: u64,
        max_uses: u32,
        now_ns: u64,
    ) -> Result<NewEnrollmentToken, StoreError> {
        let mut g = self.lock()?;
        let mut secret = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut secret);
        let info = EnrollmentTokenInfo {
            id: g.tokens.len() as u64 + 1,
            label: label.to_string(),
            created_ns: now_ns,
            expires_ns: now_ns.saturating_add(ttl_ns),
            uses: 0,
            max_uses,
            revoked: false,
        };
        g.tokens.push(info.clone());
        Ok(NewEnrollmentToken {
            info,
            secret: format!("vgl_{}", hex::encode(secret)),
        })
    }
    fn revoke_enrollment_token(&self, id: u64, _now_ns: u64) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        let t = g
            .tokens
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or_else(|| StoreError::NotFound(format!("enrollment token {id}")))?;
        let newly = !t.revoked;
        t.revoked = true;
        Ok(newly)
    }
}
