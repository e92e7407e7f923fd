//! Suppressions as stored, and alerts as every reader sees them through
//! the suppressions in force: `suppressed_by` filled, hidden ones left out
//! unless asked for. The rule itself is `vigil_proto::suppress`; the
//! console writes the records (`crate::console`), everyone reads them here.

use super::Db;
use crate::store::{Cf, Direction, StoreError};
use vigil_proto::query::{AlertFilter, AlertRecord};
use vigil_proto::suppress::{mark, Suppression};

/// `suppressions` key prefix: `rule/{id u64 BE}` → postcard [`Suppression`].
pub const RULE: &[u8] = b"rule/";

impl Db {
    /// Every saved suppression, oldest first.
    pub fn suppressions(&self) -> Result<Vec<Suppression>, StoreError> {
        Ok(self
            .records_with_prefix::<Suppression>(Cf::Suppressions, RULE, Direction::Forward, 0)?
            .into_iter()
            .map(|(_, s)| s)
            .collect())
    }

    /// Alerts as readers show them at `now_ns`: each marked with the
    /// suppression that hides it, hidden ones (open and suppressed) left
    /// out unless `filter.include_suppressed`. The stored alerts are never
    /// changed: a suppression hides, it does not delete.
    pub fn alerts_seen(
        &self,
        filter: &AlertFilter,
        now_ns: u64,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        let rules = self.suppressions()?;
        let wanted = if filter.limit == 0 {
            1000
        } else {
            filter.limit
        };
        if rules.is_empty() || filter.include_suppressed {
            let mut alerts = self.alerts(filter)?;
            for a in &mut alerts {
                mark(a, &rules, now_ns);
            }
            return Ok(alerts);
        }
        // Hidden alerts do not count towards the limit: read unbounded and
        // cut after filtering.
        let mut all = self.alerts(&AlertFilter {
            limit: usize::MAX,
            ..filter.clone()
        })?;
        all.retain_mut(|a| {
            mark(a, &rules, now_ns);
            !a.is_hidden()
        });
        all.truncate(wanted);
        Ok(all)
    }
}
