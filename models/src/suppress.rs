//! Suppressions as the detector applies them. The rule itself — what a
//! scope matches, what "host" and "peer" mean, expiry — has one home,
//! `vigil_proto::suppress`, shared with the store and the console; this
//! module only shows a detector [`Alert`] to it.

use crate::alert::Alert;
pub use vigil_proto::suppress::{AlertScopeView, Suppression, SuppressionError, SuppressionScope};

impl Alert {
    /// The fields suppressions match on.
    pub fn scope_view(&self) -> AlertScopeView<'_> {
        AlertScopeView {
            title: &self.title,
            path: &self.path,
            users: &self.users,
            ports: &self.ports,
            processes: &self.processes,
        }
    }
}

/// How many of `past` alerts a scope would have hidden.
pub fn preview(scope: &SuppressionScope, past: &[Alert]) -> usize {
    vigil_proto::suppress::preview(scope, past.iter().map(Alert::scope_view))
}
