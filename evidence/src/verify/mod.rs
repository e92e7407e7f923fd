//! Offline verification: bundles, the audit log against its checkpoints,
//! and that a newer checkpoint extends an older one.
//!
//! Every function returns a [`VerifyReport`]: each check with pass or fail
//! and a message naming the part it is about, so `vigil verify` can print
//! exactly what is broken. Nothing here needs the appliance.

mod bundle;
mod log;

use std::fmt;

use serde::Serialize;

pub use bundle::{verify_bundle, MAX_ARCHIVE_ENTRIES, MAX_AUDIT_FILE_BYTES, MAX_META_FILE_BYTES};
pub use log::{prove_extends, verify_audit_log};

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked: `archive`, `envelope`, `signature`, `key`,
    /// `file <path>`, `manifest`, `SHA256SUMS`, `checkpoint`, `inclusion`,
    /// `log`, `consistency`…
    pub name: String,
    /// Whether it holds.
    pub passed: bool,
    /// What was found, naming the broken part on failure.
    pub message: String,
}

/// The outcome of a verification: every check made, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
}

impl VerifyReport {
    /// True only when there is at least one check and all passed.
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }

    /// The check called `name`, if made.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    pub(crate) fn pass(&mut self, name: impl Into<String>, message: impl Into<String>) {
        self.push(name, true, message);
    }

    pub(crate) fn fail(&mut self, name: impl Into<String>, message: impl Into<String>) {
        self.push(name, false, message);
    }

    pub(crate) fn push(
        &mut self,
        name: impl Into<String>,
        passed: bool,
        message: impl Into<String>,
    ) {
        self.checks.push(Check {
            name: name.into(),
            passed,
            message: message.into(),
        });
    }
}

impl fmt::Display for VerifyReport {
    /// One line per check, `ok` or `FAILED`, then a verdict line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            let mark = if c.passed { "ok    " } else { "FAILED" };
            writeln!(f, "{mark} {}: {}", c.name, c.message)?;
        }
        let failed = self.failures().count();
        if self.ok() {
            writeln!(f, "verified: all {} checks passed", self.checks.len())
        } else {
            writeln!(
                f,
                "NOT verified: {failed} of {} checks failed",
                self.checks.len()
            )
        }
    }
}
