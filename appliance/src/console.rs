//! The web console's store over the appliance's RocksDB.
//!
//! Every record is a postcard value (like the rest of [`Db`]) under a key
//! whose layout is defined once in [`crate::db::records`] (and
//! [`crate::db::suppressions`]), where the detection pipeline reads the
//! triage, settings and verdicts this store writes.
//!
//! Enrollment tokens themselves are the appliance's real tokens
//! ([`crate::enroll::create_token`], stored by secret hash in `enrollment`);
//! the console keeps only a label and the hash, and reads the use count
//! from the real record. Retention settings are written through to the
//! policy the retention task enforces.

use crate::db::records::{
    id_key, key, AUDIT, HUNT, LOGIN, SESSION, SETTINGS, TOKEN, TRIAGE, USER, VERDICT,
};
use crate::db::suppressions::RULE;
use crate::db::{Db, RetentionPolicy};
use crate::enroll::{create_token, revoke_token, token_hash, token_revoked_ns};
use crate::pki::Pki;
use crate::store::{Cf, Direction, StoreError as DbError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use vigil_proto::query::TriageState;
use vigil_web_ui::audit;
use vigil_web_ui::store::{
    AuditDraft, AuditEntry, ConsoleStore, EnrollmentTokenInfo, LoginAttempts, NewEnrollmentToken,
    SavedHunt, Session, Settings, StoreError, Suppression, Triage, User,
};

/// What the console remembers about an enrollment token it issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct TokenLabel {
    id: u64,
    label: String,
    created_ns: u64,
    expires_ns: u64,
    max_uses: u32,
    /// Key of the real token record (SHA-256 of the secret).
    hash: [u8; 32],
}

fn backend(e: DbError) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// [`ConsoleStore`] over the appliance's typed database.
pub struct RocksConsoleStore {
    db: Db,
    pki: Arc<Pki>,
    /// The detection pipeline's tuning in force (for unsaved settings).
    models: Option<Arc<crate::model_board::ModelBoard>>,
    /// Serialises audit appends, id allocation, login-failure updates and
    /// session touches against deletes.
    lock: Mutex<()>,
    /// Signs the audit log's checkpoints (none in unit tests).
    signer: Option<Arc<crate::audit_log::AuditSigner>>,
    /// Told after each audit append (SIEM forwarding); never blocks.
    on_audit: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl RocksConsoleStore {
    /// A store over `db`; `pki` supplies the CA fingerprint of new tokens.
    pub fn new(db: Db, pki: Arc<Pki>) -> Self {
        RocksConsoleStore {
            db,
            pki,
            models: None,
            lock: Mutex::new(()),
            signer: None,
            on_audit: None,
        }
    }

    /// Sign audit checkpoints with `signer`.
    pub fn with_audit_signer(mut self, signer: Arc<crate::audit_log::AuditSigner>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Call `listener` after every audit entry is durably appended.
    pub fn with_audit_listener(mut self, listener: Arc<dyn Fn() + Send + Sync>) -> Self {
        self.on_audit = Some(listener);
        self
    }

    /// Show the detection pipeline's tuning until an admin saves settings.
    pub fn with_models(mut self, models: Arc<crate::model_board::ModelBoard>) -> Self {
        self.models = Some(models);
        self
    }

    fn lock(&self) -> Result<MutexGuard<'_, ()>, StoreError> {
        self.lock
            .lock()
            .map_err(|_| StoreError::Backend("console store lock poisoned".into()))
    }

    fn get<T: DeserializeOwned>(&self, cf: Cf, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.db.record(cf, key).map_err(backend)
    }

    fn put<T: Serialize>(&self, cf: Cf, key: &[u8], value: &T) -> Result<(), StoreError> {
        self.db.put_record(cf, key, value).map_err(backend)
    }

    fn all<T: DeserializeOwned>(&self, cf: Cf, prefix: &[u8]) -> Result<Vec<T>, StoreError> {
        Ok(self
            .db
            .records_with_prefix(cf, prefix, Direction::Forward, 0)
            .map_err(backend)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    fn last<T: DeserializeOwned>(&self, cf: Cf, prefix: &[u8]) -> Result<Option<T>, StoreError> {
        Ok(self
            .db
            .records_with_prefix(cf, prefix, Direction::Reverse, 1)
            .map_err(backend)?
            .pop()
            .map(|(_, v)| v))
    }

    /// The id after the highest one under `prefix` (keys end in a BE u64).
    /// Call with the lock held.
    fn next_id<T: DeserializeOwned>(&self, cf: Cf, prefix: &[u8]) -> Result<u64, StoreError> {
        let last = self
            .db
            .records_with_prefix::<T>(cf, prefix, Direction::Reverse, 1)
            .map_err(backend)?;
        Ok(match last.first() {
            Some((k, _)) if k.len() == prefix.len() + 8 => {
                crate::db::keys::be64(&k[prefix.len()..]) + 1
            }
            _ => 1,
        })
    }
}

impl ConsoleStore for RocksConsoleStore {
    fn users(&self) -> Result<Vec<User>, StoreError> {
        self.all(Cf::Users, USER)
    }

    fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.get(Cf::Users, &key(USER, name.as_bytes()))
    }

    fn put_user(&self, user: User) -> Result<(), StoreError> {
        self.put(Cf::Users, &key(USER, user.name.as_bytes()), &user)
    }

    fn put_session(&self, session: Session) -> Result<(), StoreError> {
        self.put(Cf::Sessions, &key(SESSION, session.id.as_bytes()), &session)
    }

    fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.get(Cf::Sessions, &key(SESSION, id.as_bytes()))
    }

    fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        let _g = self.lock()?;
        self.db
            .delete_records(Cf::Sessions, vec![key(SESSION, id.as_bytes())])
            .map_err(backend)
    }

    fn delete_user_sessions(&self, user: &str) -> Result<(), StoreError> {
        let _g = self.lock()?;
        let doomed = self
            .db
            .records_with_prefix::<Session>(Cf::Sessions, SESSION, Direction::Forward, 0)
            .map_err(backend)?
            .into_iter()
            .filter(|(_, s)| s.user == user)
            .map(|(k, _)| k)
            .collect();
        self.db
            .delete_records(Cf::Sessions, doomed)
            .map_err(backend)
    }

    fn touch_session(&self, id: &str, expires_ns: u64) -> Result<bool, StoreError> {
        let _g = self.lock()?;
        let k = key(SESSION, id.as_bytes());
        let Some(mut s): Option<Session> = self.get(Cf::Sessions, &k)? else {
            return Ok(false);
        };
        s.expires_ns = expires_ns;
        self.put(Cf::Sessions, &k, &s)?;
        Ok(true)
    }

    fn login_attempts(&self, k: &str) -> Result<LoginAttempts, StoreError> {
        Ok(self
            .get(Cf::Sessions, &key(LOGIN, k.as_bytes()))?
            .unwrap_or_default())
    }

    fn put_login_attempts(&self, k: &str, attempts: LoginAttempts) -> Result<(), StoreError> {
        self.put(Cf::Sessions, &key(LOGIN, k.as_bytes()), &attempts)
    }

    fn update_login_attempts(
        &self,
        k: &str,
        update: &mut dyn FnMut(LoginAttempts) -> LoginAttempts,
    ) -> Result<LoginAttempts, StoreError> {
        let _g = self.lock()?;
        let k = key(LOGIN, k.as_bytes());
        let next = update(self.get(Cf::Sessions, &k)?.unwrap_or_default());
        self.put(Cf::Sessions, &k, &next)?;
        Ok(next)
    }

    fn triage(&self, alert_id: u64) -> Result<Option<Triage>, StoreError> {
        self.get(Cf::Cases, &id_key(TRIAGE, alert_id))
    }

    /// The triage record is the console's; it is also written through to
    /// the stored alert (so `vigil alerts` and the pipeline see it), and a
    /// closing verdict is queued for the detector (true positives are left
    /// out of the next training).
    fn put_triage(&self, alert_id: u64, triage: Triage) -> Result<(), StoreError> {
        self.put(Cf::Cases, &id_key(TRIAGE, alert_id), &triage)?;
        if let Some(mut rec) = self.db.alert(alert_id).map_err(backend)? {
            rec.state = triage.state.clone();
            rec.assignee = triage.assignee.clone();
            self.db.put_alert(&rec).map_err(backend)?;
        }
        if matches!(
            triage.state,
            TriageState::ClosedTruePositive | TriageState::ClosedFalsePositive
        ) {
            self.put(Cf::Models, &id_key(VERDICT, alert_id), &triage.state)?;
        }
        Ok(())
    }

    fn suppressions(&self) -> Result<Vec<Suppression>, StoreError> {
        self.all(Cf::Suppressions, RULE)
    }

    fn add_suppression(&self, mut rule: Suppression) -> Result<u64, StoreError> {
        let _g = self.lock()?;
        rule.id = self.next_id::<Suppression>(Cf::Suppressions, RULE)?;
        self.put(Cf::Suppressions, &id_key(RULE, rule.id), &rule)?;
        Ok(rule.id)
    }

    fn saved_hunts(&self) -> Result<Vec<SavedHunt>, StoreError> {
        self.all(Cf::Meta, HUNT)
    }

    fn add_saved_hunt(&self, mut hunt: SavedHunt) -> Result<u64, StoreError> {
        let _g = self.lock()?;
        hunt.id = self.next_id::<SavedHunt>(Cf::Meta, HUNT)?;
        self.put(Cf::Meta, &id_key(HUNT, hunt.id), &hunt)?;
        Ok(hunt.id)
    }

    fn append_audit(&self, draft: AuditDraft) -> Result<AuditEntry, StoreError> {
        let _g = self.lock()?;
        let last: Option<AuditEntry> = self.last(Cf::Audit, AUDIT)?;
        let entry = audit::seal(last.as_ref(), draft);
        // The entry and its Merkle leaf in one synced write; a failure here
        // fails the action the entry records.
        crate::audit_log::append(&self.db, self.signer.as_deref(), &entry)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        if let Some(listener) = &self.on_audit {
            listener();
        }
        Ok(entry)
    }

    fn audit_entries(&self) -> Result<Vec<AuditEntry>, StoreError> {
        self.all(Cf::Audit, AUDIT)
    }

    fn settings(&self) -> Result<Settings, StoreError> {
        let saved: Option<Settings> = self.get(Cf::Meta, SETTINGS)?;
        let mut s = saved.unwrap_or_default();
        if saved.is_none() {
            // Not saved yet: show what the detector actually uses.
            if let Some((learning_ns, budget)) = self.models.as_ref().and_then(|m| m.tuning()) {
                s.learning_period_days = learning_ns.div_ceil(86_400 * 1_000_000_000) as u32;
                s.alert_budget_per_day = budget.round() as u32;
            }
        }
        // Show the policy actually enforced (the CLI or `serve` may have set it).
        let policy = self.db.retention().map_err(backend)?;
        s.retention_days = policy.max_age_days;
        s.retention_bytes = policy.max_bytes;
        Ok(s)
    }

    fn put_settings(&self, settings: Settings) -> Result<(), StoreError> {
        self.put(Cf::Meta, SETTINGS, &settings)?;
        self.db
            .put_retention(&RetentionPolicy {
                max_age_days: settings.retention_days,
                max_bytes: settings.retention_bytes,
            })
            .map_err(backend)
    }

    fn enrollment_tokens(&self) -> Result<Vec<EnrollmentTokenInfo>, StoreError> {
        let labels = self
            .db
            .records_with_prefix::<TokenLabel>(Cf::Meta, TOKEN, Direction::Reverse, 0)
            .map_err(backend)?;
        labels
            .into_iter()
            .map(|(_, t)| {
                let real = self.db.token(&t.hash).map_err(backend)?;
                let revoked_ns = token_revoked_ns(&self.db, &t.hash).map_err(backend)?;
                let (uses, revoked) = match real {
                    Some(r) => (
                        r.uses_total.saturating_sub(r.uses_left),
                        revoked_ns.is_some(),
                    ),
                    // The real record is gone: it can no longer enroll anything.
                    None => (0, true),
                };
                Ok(EnrollmentTokenInfo {
                    id: t.id,
                    label: t.label,
                    created_ns: t.created_ns,
                    expires_ns: t.expires_ns,
                    uses,
                    max_uses: t.max_uses,
                    revoked,
                })
            })
            .collect()
    }

    fn create_enrollment_token(
        &self,
        label: &str,
        ttl_ns: u64,
        max_uses: u32,
        now_ns: u64,
    ) -> Result<NewEnrollmentToken, StoreError> {
        let _g = self.lock()?;
        let id = self.next_id::<TokenLabel>(Cf::Meta, TOKEN)?;
        let new = create_token(
            &self.db,
            &self.pki,
            Duration::from_nanos(ttl_ns),
            max_uses,
            now_ns,
        )
        .map_err(backend)?;
        let rec = TokenLabel {
            id,
            label: label.to_owned(),
            created_ns: now_ns,
            expires_ns: new.expires_ns,
            max_uses: new.uses,
            hash: token_hash(&new.token),
        };
        self.put(Cf::Meta, &id_key(TOKEN, id), &rec)?;
        Ok(NewEnrollmentToken {
            info: EnrollmentTokenInfo {
                id,
                label: rec.label,
                created_ns: now_ns,
                expires_ns: new.expires_ns,
                uses: 0,
                max_uses: new.uses,
                revoked: false,
            },
            secret: new.token,
        })
    }

    fn revoke_enrollment_token(&self, id: u64, now_ns: u64) -> Result<bool, StoreError> {
        let label: TokenLabel = self
            .get(Cf::Meta, &id_key(TOKEN, id))?
            .ok_or_else(|| StoreError::NotFound(format!("enrollment token {id}")))?;
        revoke_token(&self.db, &label.hash, now_ns).map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rocks::RocksStore;
    use vigil_web_ui::audit::ChainStatus;
    use vigil_web_ui::store::Role;

    fn open(dir: &std::path::Path) -> RocksConsoleStore {
        let db = Db::new(Arc::new(RocksStore::open(&dir.join("db")).unwrap()));
        let (pki, _) = Pki::load_or_create(&dir.join("keys")).unwrap();
        RocksConsoleStore::new(db, Arc::new(pki))
    }

    fn draft(i: u64) -> AuditDraft {
        AuditDraft {
            ts_ns: 1_000 + i,
            actor: "alice".into(),
            action: "triage.close".into(),
            target: format!("alert:{i}"),
            detail: format!("step {i}"),
        }
    }

    #[test]
    fn audit_chain_of_three_verifies_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path());
            let a = s.append_audit(draft(1)).unwrap();
            let b = s.append_audit(draft(2)).unwrap();
            let c = s.append_audit(draft(3)).unwrap();
            assert_eq!((a.seq, b.seq, c.seq), (1, 2, 3));
            assert_eq!(b.prev_hash, a.hash);
            assert_eq!(c.prev_hash, b.hash);
            let all = s.audit_entries().unwrap();
            assert_eq!(all, vec![a, b, c]);
            assert_eq!(audit::verify(&all), ChainStatus::Intact { entries: 3 });
        }
        let s = open(dir.path());
        let d = s.append_audit(draft(4)).unwrap();
        assert_eq!(d.seq, 4);
        let all = s.audit_entries().unwrap();
        assert_eq!(audit::verify(&all), ChainStatus::Intact { entries: 4 });
    }

    #[test]
    fn concurrent_appends_do_not_fork_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(open(dir.path()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..10 {
                        s.append_audit(draft(t * 100 + i)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let all = s.audit_entries().unwrap();
        assert_eq!(audit::verify(&all), ChainStatus::Intact { entries: 40 });
    }

    #[test]
    fn records_round_trip_with_ids_sessions_and_settings() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let user = |name: &str| User {
            name: name.into(),
            role: Role::Analyst,
            password_hash: "$argon2id$x".into(),
            created_ns: 5,
            must_change_password: false,
            disabled: false,
        };
        s.put_user(user("bob")).unwrap();
        s.put_user(user("alice")).unwrap();
        let names: Vec<_> = s.users().unwrap().into_iter().map(|u| u.name).collect();
        assert_eq!(names, ["alice", "bob"]);
        assert_eq!(s.user("bob").unwrap(), Some(user("bob")));
        assert_eq!(s.user("carol").unwrap(), None);

        let sess = |id: &str, user: &str| Session {
            id: id.into(),
            user: user.into(),
            csrf: "c".into(),
            created_ns: 1,
            expires_ns: 2,
        };
        s.put_session(sess("s1", "bob")).unwrap();
        s.put_session(sess("s2", "bob")).unwrap();
        s.put_session(sess("s3", "alice")).unwrap();
        s.delete_session("s1").unwrap();
        s.delete_session("unknown").unwrap();
        assert_eq!(s.session("s1").unwrap(), None);
        s.delete_user_sessions("bob").unwrap();
        assert_eq!(s.session("s2").unwrap(), None);
        assert_eq!(s.session("s3").unwrap(), Some(sess("s3", "alice")));

        assert_eq!(
            s.login_attempts("user:x").unwrap(),
            LoginAttempts::default()
        );
        let la = LoginAttempts {
            failures: 2,
            window_start_ns: 9,
            locked_until_ns: 0,
        };
        s.put_login_attempts("user:x", la).unwrap();
        assert_eq!(s.login_attempts("user:x").unwrap(), la);

        let rule = Suppression {
            id: 0,
            scope: vigil_web_ui::store::SuppressionScope {
                title: Some("t".into()),
                port: Some(22),
                ..Default::default()
            },
            reason: "noise".into(),
            created_by: "bob".into(),
            created_ns: 3,
            expires_ns: None,
            source_alert: Some(7),
        };
        assert_eq!(s.add_suppression(rule.clone()).unwrap(), 1);
        assert_eq!(s.add_suppression(rule).unwrap(), 2);
        assert_eq!(
            s.suppressions()
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>(),
            [1, 2]
        );
        let hunt = SavedHunt {
            id: 0,
            name: "ssh".into(),
            query: "q=ssh".into(),
            owner: "bob".into(),
            created_ns: 4,
        };
        assert_eq!(s.add_saved_hunt(hunt.clone()).unwrap(), 1);
        assert_eq!(s.add_saved_hunt(hunt).unwrap(), 2);
        assert_eq!(s.saved_hunts().unwrap().len(), 2);

        let tri = Triage {
            state: vigil_proto::query::TriageState::Investigating,
            assignee: Some("bob".into()),
            note: None,
            updated_ns: 8,
            updated_by: "bob".into(),
        };
        assert_eq!(s.triage(7).unwrap(), None);
        s.put_triage(7, tri.clone()).unwrap();
        assert_eq!(s.triage(7).unwrap(), Some(tri));

        let settings = Settings {
            retention_days: 12,
            retention_bytes: 3 << 30,
            learning_period_days: 7,
            alert_budget_per_day: 20,
        };
        s.put_settings(settings).unwrap();
        assert_eq!(s.settings().unwrap(), settings);
        assert_eq!(
            s.db.retention().unwrap(),
            RetentionPolicy {
                max_age_days: 12,
                max_bytes: 3 << 30
            }
        );
    }

    #[test]
    fn console_tokens_are_real_enrollment_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let a = s
            .create_enrollment_token("lab", 60_000_000_000, 2, 1_000)
            .unwrap();
        let b = s
            .create_enrollment_token("office", 60_000_000_000, 1, 2_000)
            .unwrap();
        assert_eq!((a.info.id, b.info.id), (1, 2));
        assert!(a.secret.starts_with("vgl_"));
        let real = s.db.token(&token_hash(&a.secret)).unwrap().unwrap();
        assert_eq!((real.uses_total, real.uses_left), (2, 2));
        assert_eq!(real.expires_ns, 1_000 + 60_000_000_000);
        let listed = s.enrollment_tokens().unwrap();
        assert_eq!(listed, vec![b.info, a.info]);
        // A use recorded by the enrollment service shows in the listing.
        s.db.put_token(
            &token_hash(&a.secret),
            &crate::db::TokenRecord {
                uses_left: 1,
                ..real
            },
        )
        .unwrap();
        assert_eq!(s.enrollment_tokens().unwrap()[1].uses, 1);
    }

    /// Until an admin saves settings, the page shows the tuning the
    /// detector really runs with (e.g. `--learning-period 0s`); saved
    /// settings then win.
    #[test]
    fn unsaved_settings_show_the_detectors_tuning() {
        let dir = tempfile::tempdir().unwrap();
        let board = Arc::new(crate::model_board::ModelBoard::default());
        let s = open(dir.path()).with_models(board.clone());
        assert_eq!(
            s.settings().unwrap().learning_period_days,
            Settings::default().learning_period_days
        );
        board.publish(Vec::new(), 0, 20.0);
        let shown = s.settings().unwrap();
        assert_eq!(
            (shown.learning_period_days, shown.alert_budget_per_day),
            (0, 20)
        );
        board.publish(Vec::new(), 36 * 3_600 * 1_000_000_000, 20.0);
        assert_eq!(
            s.settings().unwrap().learning_period_days,
            2,
            "rounded up to whole days"
        );
        let mine = Settings {
            learning_period_days: 9,
            alert_budget_per_day: 5,
            ..s.settings().unwrap()
        };
        s.put_settings(mine).unwrap();
        let shown = s.settings().unwrap();
        assert_eq!(
            (shown.learning_period_days, shown.alert_budget_per_day),
            (9, 5)
        );
    }

    /// Failure updates from many threads are read-modify-writes under the
    /// store's lock: none is lost.
    #[test]
    fn concurrent_login_failure_updates_are_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(open(dir.path()));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        s.update_login_attempts("user:bob", &mut |mut a| {
                            a.failures += 1;
                            a
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.login_attempts("user:bob").unwrap().failures, 100);
    }

    #[test]
    fn touching_a_deleted_session_does_not_bring_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let sess = Session {
            id: "s1".into(),
            user: "bob".into(),
            csrf: "c".into(),
            created_ns: 1,
            expires_ns: 2,
        };
        s.put_session(sess.clone()).unwrap();
        assert!(s.touch_session("s1", 99).unwrap());
        assert_eq!(s.session("s1").unwrap().unwrap().expires_ns, 99);
        s.delete_session("s1").unwrap();
        assert!(!s.touch_session("s1", 100).unwrap());
        assert_eq!(s.session("s1").unwrap(), None);
    }

    #[test]
    fn revoked_tokens_are_listed_as_revoked_and_refuse_enrollment_marks() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let a = s
            .create_enrollment_token("lab", 60_000_000_000, 2, 1_000)
            .unwrap();
        assert!(s.revoke_enrollment_token(a.info.id, 5_000).unwrap());
        assert!(!s.revoke_enrollment_token(a.info.id, 6_000).unwrap());
        assert!(matches!(
            s.revoke_enrollment_token(99, 6_000),
            Err(StoreError::NotFound(_))
        ));
        assert!(s.enrollment_tokens().unwrap()[0].revoked);
        assert_eq!(
            token_revoked_ns(&s.db, &token_hash(&a.secret)).unwrap(),
            Some(5_000)
        );
    }
}
