//! Detection notices: the in-memory signals ingest and the host registry
//! send the detection pipeline, so an idle fleet costs a detection round
//! nothing and host records are re-read only when they may have changed.
//!
//! They are hints, never data: everything they point at is in the store,
//! and the pipeline also reads every host once a minute, so a notice lost
//! in a restart only delays detection by that minute.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use vigil_proto::HostId;

/// Shared between the ingest writer (hosts written), the registry
/// (identity changes) and the pipeline (which takes them). Cloning shares.
#[derive(Clone, Default)]
pub struct DetectionNotices {
    /// Hosts whose events were written since the pipeline last looked.
    written: Arc<Mutex<BTreeSet<u64>>>,
    /// Bumped whenever a host's name or addresses may have changed: the
    /// `hosts` family also holds every host's health history, so the
    /// pipeline re-reads it only then, not on every round.
    identity_generation: Arc<AtomicU64>,
    /// Bumped when an operator changed the Sigma rules directory.
    rules_generation: Arc<AtomicU64>,
}

impl DetectionNotices {
    /// Note that `hosts` have new events (called after the write is durable).
    pub fn mark_written(&self, hosts: impl IntoIterator<Item = HostId>) {
        let mut w = self.written.lock().unwrap_or_else(|p| p.into_inner());
        w.extend(hosts.into_iter().map(|h| h.0));
    }

    /// The hosts with new events since the last call.
    pub fn take_written(&self) -> BTreeSet<u64> {
        std::mem::take(&mut *self.written.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Note that some host's name or addresses may have changed.
    pub fn note_identity_change(&self) {
        self.identity_generation.fetch_add(1, Ordering::Release);
    }

    /// Changes with every [`DetectionNotices::note_identity_change`].
    pub fn identity_generation(&self) -> u64 {
        self.identity_generation.load(Ordering::Acquire)
    }

    /// Note that the Sigma rules directory changed (an import).
    pub fn note_rules_change(&self) {
        self.rules_generation.fetch_add(1, Ordering::Release);
    }

    /// Changes with every [`DetectionNotices::note_rules_change`].
    pub fn rules_generation(&self) -> u64 {
        self.rules_generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_hosts_are_taken_once_and_clones_share_them() {
        let notices = DetectionNotices::default();
        let writer_side = notices.clone();
        writer_side.mark_written([HostId(3), HostId(1), HostId(3)]);
        assert_eq!(notices.take_written(), BTreeSet::from([1, 3]));
        assert!(notices.take_written().is_empty(), "taken means gone");
    }

    #[test]
    fn identity_generation_moves_on_every_change() {
        let notices = DetectionNotices::default();
        let before = notices.identity_generation();
        notices.clone().note_identity_change();
        assert_ne!(notices.identity_generation(), before);
    }
}
