//! Verify the audit log against its signed checkpoints, and that a newer
//! checkpoint extends an older one.

use ed25519_dalek::VerifyingKey;

use super::VerifyReport;
use crate::checkpoint::Checkpoint;
use crate::merkle::{self, Frontier, Hash};

/// Check the audit log `entries` (leaf data, in log order, streamed)
/// against signed `checkpoints` (note texts, any order) by `key`.
///
/// Each checkpoint is one `checkpoint <size>` check (signature) and one
/// `log 0..<size>` check (root of that prefix). With checkpoints every N
/// entries, a changed entry is located between the last matching and the
/// first failing checkpoint; a truncated log fails the checkpoints beyond
/// its end; a log rewritten and re-signed with another key fails every
/// checkpoint signature, naming the key ids found.
pub fn verify_audit_log<I>(entries: I, checkpoints: &[&str], key: &VerifyingKey) -> VerifyReport
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut report = VerifyReport::default();
    let mut valid: Vec<Checkpoint> = Vec::new();
    for (i, text) in checkpoints.iter().enumerate() {
        match Checkpoint::open(text, key) {
            Ok(cp) => {
                let msg = format!(
                    "signed by {}, tree size {}, {}",
                    cp.origin,
                    cp.size,
                    cp.time().unwrap_or("no time")
                );
                report.pass(format!("checkpoint {}", cp.size), msg);
                valid.push(cp);
            }
            Err(e) => {
                let name = match Checkpoint::parse_unverified(text) {
                    Ok((cp, _)) => format!("checkpoint {}", cp.size),
                    Err(_) => format!("checkpoint #{}", i + 1),
                };
                report.fail(name, e.to_string());
            }
        }
    }
    valid.sort_by_key(|c| c.size);
    if valid.is_empty() {
        report.fail(
            "log",
            "no checkpoint verified with the trusted key: the log cannot be checked",
        );
        return report;
    }
    let count = compare_prefixes(&mut report, entries, &valid);
    let latest = valid.last().map_or(0, |c| c.size);
    if count > latest {
        let msg = format!("{} entries after the latest checkpoint (size {latest}) are not covered by a checkpoint yet", count - latest);
        report.pass("log", msg);
    }
    report
}

/// Stream the entries, comparing the root at each checkpoint's size.
/// Returns the number of entries.
fn compare_prefixes<I>(report: &mut VerifyReport, entries: I, valid: &[Checkpoint]) -> u64
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut frontier = Frontier::new();
    let mut next = 0usize;
    let mut last_good = 0u64;
    let mut entries = entries.into_iter();
    loop {
        while let Some(cp) = valid.get(next).filter(|c| c.size == frontier.size()) {
            compare_one(report, cp, &frontier.root(), &mut last_good);
            next += 1;
        }
        match entries.next() {
            Some(e) => frontier.push(merkle::leaf_hash(e.as_ref())),
            None => break,
        }
    }
    let count = frontier.size();
    for cp in &valid[next..] {
        let msg = format!(
            "the log has {count} entries but the checkpoint of size {} covers {}: the last {} entries are missing",
            cp.size,
            cp.size,
            cp.size - count
        );
        report.fail(format!("log 0..{}", cp.size), msg);
    }
    count
}

fn compare_one(report: &mut VerifyReport, cp: &Checkpoint, root: &Hash, last_good: &mut u64) {
    let name = format!("log 0..{}", cp.size);
    if *root == cp.root {
        report.pass(
            name,
            format!(
                "entries 0..{} give the signed root {}",
                cp.size,
                hex::encode(cp.root)
            ),
        );
        *last_good = cp.size;
    } else {
        let msg = format!(
            "entries 0..{} do not give the signed root {}: an entry in {}..{} was changed, removed or inserted",
            cp.size,
            hex::encode(cp.root),
            *last_good,
            cp.size
        );
        report.fail(name, msg);
    }
}

/// Check that the log of `new_checkpoint` extends the one an auditor saved
/// as `old_checkpoint`, with the consistency `proof` between their sizes.
pub fn prove_extends(
    old_checkpoint: &str,
    new_checkpoint: &str,
    proof: &[Hash],
    key: &VerifyingKey,
) -> VerifyReport {
    let mut report = VerifyReport::default();
    let mut open = |name: &str, text: &str| match Checkpoint::open(text, key) {
        Ok(cp) => {
            report.pass(
                name,
                format!("signed by {}, tree size {}", cp.origin, cp.size),
            );
            Some(cp)
        }
        Err(e) => {
            report.fail(name, e.to_string());
            None
        }
    };
    let (Some(old), Some(new)) = (
        open("old checkpoint", old_checkpoint),
        open("new checkpoint", new_checkpoint),
    ) else {
        report.fail(
            "consistency",
            "cannot be checked without both checkpoints verified",
        );
        return report;
    };
    if old.origin != new.origin {
        report.fail(
            "consistency",
            format!(
                "the checkpoints are of different logs ({} and {})",
                old.origin, new.origin
            ),
        );
        return report;
    }
    match merkle::verify_consistency(old.size, new.size, proof, &old.root, &new.root) {
        Ok(()) => report.pass(
            "consistency",
            format!(
                "the log of size {} extends the saved log of size {}",
                new.size, old.size
            ),
        ),
        Err(e) => report.fail(
            "consistency",
            format!(
                "the log of size {} does not extend the saved log of size {}: {e}",
                new.size, old.size
            ),
        ),
    }
    report
}
