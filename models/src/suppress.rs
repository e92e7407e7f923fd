//! Scoped suppressions made from false-positive verdicts.

use crate::alert::Alert;
use serde::{Deserialize, Serialize};
use vigil_proto::HostId;

/// What a suppression matches. Every set field must match; unset fields
/// match anything. An all-empty scope is refused by [`Suppression::new`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressionScope {
    /// The alert's host (destination, window host).
    pub host: Option<HostId>,
    /// A user named by the alert (case-insensitive).
    pub user: Option<String>,
    /// Another host on the alert's path (the hop's source).
    pub peer: Option<HostId>,
    /// A port named by the alert.
    pub port: Option<u16>,
    /// A process basename named by the alert (case-insensitive).
    pub process: Option<String>,
}

impl SuppressionScope {
    /// True when nothing is set (would hide everything).
    pub fn is_empty(&self) -> bool {
        *self == SuppressionScope::default()
    }

    /// Whether the alert falls inside this scope.
    pub fn matches(&self, a: &Alert) -> bool {
        let host = self.host.is_none_or(|h| a.host == h);
        let peer = self
            .peer
            .is_none_or(|p| a.path.iter().any(|h| *h == p && *h != a.host));
        let user = self
            .user
            .as_ref()
            .is_none_or(|u| a.users.iter().any(|x| x.eq_ignore_ascii_case(u)));
        let port = self.port.is_none_or(|p| a.ports.contains(&p));
        let process = self
            .process
            .as_ref()
            .is_none_or(|p| a.processes.iter().any(|x| x.eq_ignore_ascii_case(p)));
        host && peer && user && port && process
    }
}

/// A saved suppression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// Assigned by the detector.
    pub id: u64,
    /// What it hides.
    pub scope: SuppressionScope,
    /// Why (the analyst's words).
    pub reason: String,
    /// When it was saved, ns.
    pub created_ns: u64,
    /// When it stops applying, ns (None = never).
    pub expires_ns: Option<u64>,
}

/// Why a suppression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuppressionError {
    /// The scope would hide every alert.
    #[error("a suppression needs at least one of host, user, peer, port, process")]
    EmptyScope,
}

impl Suppression {
    /// A suppression (id assigned when added to a detector).
    pub fn new(
        scope: SuppressionScope,
        reason: impl Into<String>,
        created_ns: u64,
        expires_ns: Option<u64>,
    ) -> Result<Self, SuppressionError> {
        if scope.is_empty() {
            return Err(SuppressionError::EmptyScope);
        }
        Ok(Suppression {
            id: 0,
            scope,
            reason: reason.into(),
            created_ns,
            expires_ns,
        })
    }

    /// Whether it hides `a` at time `now_ns`.
    pub fn hides(&self, a: &Alert, now_ns: u64) -> bool {
        self.expires_ns.is_none_or(|e| now_ns < e) && self.scope.matches(a)
    }
}

/// How many of `past` alerts a scope would have hidden.
pub fn preview(scope: &SuppressionScope, past: &[Alert]) -> usize {
    past.iter().filter(|a| scope.matches(a)).count()
}
