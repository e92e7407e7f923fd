//! Suppressions: THE one rule, used by the detector, the store and the
//! console alike, for which alerts an analyst's "not again" hides.
//!
//! A scope names the alert's fields; every set field must match. The
//! meaning of the two host fields follows the path of an alert (hosts in
//! movement order, `[A, B, C]` for A → B → C, or `[H]` for a single host):
//! - `host` is the host the alert is **about**: the **last** host of its
//!   path (a hop's destination, an incident's landing host, a single-host
//!   alert's host);
//! - `peer` is a host **before** the last one (where the movement came
//!   from); a single-host alert has none.
//!
//! Matching works on an [`AlertScopeView`], so `models::Alert` and
//! [`AlertRecord`] share it without converting.

use crate::event::HostId;
use crate::query::AlertRecord;
use serde::{Deserialize, Serialize};

/// What a suppression matches. Every set field must match; unset fields
/// match anything; an all-empty scope matches nothing (and
/// [`Suppression::new`] refuses it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SuppressionScope {
    /// The alert's title, exactly.
    #[serde(default)]
    pub title: Option<String>,
    /// The host the alert is about: the last host of its path.
    #[serde(default)]
    pub host: Option<HostId>,
    /// A user the alert names (case-insensitive).
    #[serde(default)]
    pub user: Option<String>,
    /// A host on the alert's path before the last one: where the movement
    /// came from.
    #[serde(default)]
    pub peer: Option<HostId>,
    /// A port the alert names.
    #[serde(default)]
    pub port: Option<u16>,
    /// A process the alert names, compared by basename, case-insensitive
    /// (`/usr/bin/SSH` and `ssh` are the same process).
    #[serde(default)]
    pub process: Option<String>,
}

/// The fields of an alert that a scope looks at, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertScopeView<'a> {
    /// One-line title.
    pub title: &'a str,
    /// Hosts in movement order; the last is the host the alert is about.
    pub path: &'a [HostId],
    /// Users the alert names.
    pub users: &'a [String],
    /// Ports the alert names.
    pub ports: &'a [u16],
    /// Processes the alert names (basenames).
    pub processes: &'a [String],
}

impl AlertRecord {
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

impl SuppressionScope {
    /// True when no field is set (such a scope would hide everything).
    pub fn is_empty(&self) -> bool {
        *self == SuppressionScope::default()
    }

    /// Whether the alert falls inside this scope. An empty scope matches
    /// nothing.
    pub fn matches(&self, v: &AlertScopeView<'_>) -> bool {
        let (about, before) = match v.path.split_last() {
            Some((last, before)) => (Some(*last), before),
            None => (None, &[][..]),
        };
        !self.is_empty()
            && self.title.as_deref().is_none_or(|t| t == v.title)
            && self.host.is_none_or(|h| about == Some(h))
            && self.peer.is_none_or(|p| before.contains(&p))
            && self
                .user
                .as_deref()
                .is_none_or(|u| v.users.iter().any(|x| same_text(x, u)))
            && self.port.is_none_or(|p| v.ports.contains(&p))
            && self.process.as_deref().is_none_or(|p| {
                v.processes
                    .iter()
                    .any(|x| same_text(basename(x), basename(p)))
            })
    }
}

/// Case-insensitive (Unicode lower case) equality, without allocating.
fn same_text(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// The last component of a Unix or Windows path.
fn basename(p: &str) -> &str {
    p.rsplit(['/', '\\']).next().unwrap_or(p)
}

/// A saved suppression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// Assigned by whoever stores it (0 until then).
    pub id: u64,
    /// What it hides.
    pub scope: SuppressionScope,
    /// Why (the analyst's words).
    pub reason: String,
    /// Who made it (console user name).
    pub created_by: String,
    /// When it was made, ns.
    pub created_ns: u64,
    /// When it stops hiding anything, ns (None = never).
    #[serde(default)]
    pub expires_ns: Option<u64>,
    /// The alert it was made from, if any.
    #[serde(default)]
    pub source_alert: Option<u64>,
}

/// Why a suppression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuppressionError {
    /// The scope would hide every alert.
    #[error("a suppression needs at least one of title, host, user, peer, port, process")]
    EmptyScope,
}

impl Suppression {
    /// A suppression with id 0, no expiry and no source alert (set those
    /// fields afterwards); refuses an empty scope.
    pub fn new(
        scope: SuppressionScope,
        reason: impl Into<String>,
        created_by: impl Into<String>,
        created_ns: u64,
    ) -> Result<Self, SuppressionError> {
        if scope.is_empty() {
            return Err(SuppressionError::EmptyScope);
        }
        Ok(Suppression {
            id: 0,
            scope,
            reason: reason.into(),
            created_by: created_by.into(),
            created_ns,
            expires_ns: None,
            source_alert: None,
        })
    }

    /// Whether it applies at `now_ns` (an expired suppression hides nothing).
    pub fn is_active(&self, now_ns: u64) -> bool {
        self.expires_ns.is_none_or(|e| now_ns < e)
    }

    /// Whether it hides the alert at `now_ns`.
    pub fn hides(&self, v: &AlertScopeView<'_>, now_ns: u64) -> bool {
        self.is_active(now_ns) && self.scope.matches(v)
    }
}

/// The first of `rules` that hides the alert at `now_ns` (its id is what
/// [`AlertRecord::suppressed_by`] records).
pub fn first_hiding<'s>(
    rules: &'s [Suppression],
    v: &AlertScopeView<'_>,
    now_ns: u64,
) -> Option<&'s Suppression> {
    rules.iter().find(|r| r.hides(v, now_ns))
}

/// Record in `alert.suppressed_by` which of `rules` hides it at `now_ns`
/// (None when none does). Readers call this on every alert they return, so
/// every view (console, CLI, counts, exports) sees the same answer.
pub fn mark(alert: &mut AlertRecord, rules: &[Suppression], now_ns: u64) {
    alert.suppressed_by = first_hiding(rules, &alert.scope_view(), now_ns).map(|r| r.id);
}

impl AlertRecord {
    /// Whether default views leave it out: a suppression hides it and it
    /// is still open (closed alerts stay visible as the record of a
    /// decision). Call [`mark`] first.
    pub fn is_hidden(&self) -> bool {
        self.suppressed_by.is_some()
            && !matches!(
                self.state,
                crate::query::TriageState::ClosedTruePositive
                    | crate::query::TriageState::ClosedFalsePositive
            )
    }
}

/// How many of `past` alerts the scope would have hidden (expiry aside).
pub fn preview<'a>(
    scope: &SuppressionScope,
    past: impl IntoIterator<Item = AlertScopeView<'a>>,
) -> usize {
    past.into_iter().filter(|v| scope.matches(v)).count()
}

#[cfg(test)]
mod tests;
