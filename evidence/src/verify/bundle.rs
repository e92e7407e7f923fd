//! Verify a bundle offline: archive, envelope, signature, key, every file,
//! manifest views, audit checkpoint and the export entry's inclusion proof.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use super::VerifyReport;
use crate::bundle::{
    check_path, InclusionProofFile, Manifest, CHECKPOINT_PATH, ENVELOPE_PATH, EXPORT_ENTRY_PATH,
    MANIFEST_FORMAT, MANIFEST_PATH, PROOF_PATH, RESERVED_PATHS, SUMS_PATH,
};
use crate::checkpoint::Checkpoint;
use crate::dsse::{fingerprint, Envelope, INTOTO_PAYLOAD_TYPE};
use crate::merkle::{self, Hash};
use crate::statement::Statement;

/// Most entries read from an archive.
pub const MAX_ARCHIVE_ENTRIES: usize = 1_000_000;
/// Largest manifest, `SHA256SUMS` or envelope read (about 1M files).
pub const MAX_META_FILE_BYTES: u64 = 256 << 20;
/// Largest `audit/` file read.
pub const MAX_AUDIT_FILE_BYTES: u64 = 1 << 20;
/// Problems listed in one message before the rest are counted.
const MAX_LISTED: usize = 10;

/// What was read from the archive: every file's size and digest, and the
/// bundle's own small files in full.
#[derive(Default)]
struct Archive {
    files: BTreeMap<String, (u64, String)>,
    order: Vec<String>,
    kept: BTreeMap<String, Vec<u8>>,
    problems: Vec<String>,
}

struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The size cap of a file kept in memory, `None` for content (streamed).
fn kept_cap(path: &str) -> Option<u64> {
    if RESERVED_PATHS.contains(&path) {
        Some(MAX_META_FILE_BYTES)
    } else if path.starts_with("audit/") {
        Some(MAX_AUDIT_FILE_BYTES)
    } else {
        None
    }
}

fn read_archive(reader: impl Read) -> Archive {
    let mut out = Archive::default();
    let mut archive = tar::Archive::new(reader);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            out.problems.push(format!("not a tar archive: {e}"));
            return out;
        }
    };
    for (n, entry) in entries.enumerate() {
        if n >= MAX_ARCHIVE_ENTRIES {
            out.problems
                .push(format!("more than {MAX_ARCHIVE_ENTRIES} entries"));
            break;
        }
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                out.problems
                    .push(format!("malformed after {n} entries: {e}"));
                break;
            }
        };
        if let Err(problem) = read_entry(entry, &mut out) {
            out.problems.push(problem);
            break;
        }
    }
    out
}

/// Read one entry; `Err` stops reading (the archive cannot be trusted
/// past it), problems that still allow reading on are recorded.
fn read_entry<R: Read>(mut entry: tar::Entry<'_, R>, out: &mut Archive) -> Result<(), String> {
    let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    if let Err(why) = check_path(&path) {
        out.problems.push(format!("entry {path:?}: {why}"));
        return Ok(());
    }
    let kind = entry.header().entry_type();
    if kind != tar::EntryType::Regular {
        out.problems.push(format!(
            "entry {path} is {kind:?}; only regular files are allowed"
        ));
        return Ok(());
    }
    if out.files.contains_key(&path) {
        out.problems.push(format!("entry {path} appears twice"));
        return Ok(());
    }
    let size = entry.size();
    let mut hasher = HashWriter(Sha256::new());
    match kept_cap(&path) {
        Some(cap) if size > cap => {
            out.problems
                .push(format!("entry {path} is {size} bytes, more than {cap}"));
            return Ok(());
        }
        Some(_) => {
            let mut bytes = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| format!("entry {path} is truncated: {e}"))?;
            hasher.0.update(&bytes);
            out.kept.insert(path.clone(), bytes);
        }
        None => {
            io::copy(&mut entry, &mut hasher)
                .map_err(|e| format!("entry {path} is truncated: {e}"))?;
        }
    }
    out.files
        .insert(path.clone(), (size, hex::encode(hasher.0.finalize())));
    out.order.push(path);
    Ok(())
}

/// Verify a bundle read from `reader`. With `trusted_keys`, the signing
/// key must be one of them (the `key` check); without, the key is only
/// reported by fingerprint. A bundle of another appliance thus verifies
/// with its own key and fails only the `key` check, naming its fingerprint.
pub fn verify_bundle(reader: impl Read, trusted_keys: Option<&[VerifyingKey]>) -> VerifyReport {
    let mut report = VerifyReport::default();
    let archive = read_archive(reader);
    if archive.problems.is_empty() {
        let msg = format!("well-formed tar, {} files", archive.order.len());
        report.pass("archive", msg);
    } else {
        report.fail("archive", listed(&archive.problems));
    }
    let Some((envelope, statement, key)) = check_envelope(&mut report, &archive) else {
        return report;
    };
    match envelope.verify(&key) {
        Ok(_) => report.pass(
            "signature",
            format!("Ed25519 signature by key {} verifies", fingerprint(&key)),
        ),
        Err(e) => report.fail("signature", format!("{ENVELOPE_PATH}: {e}")),
    }
    check_key(&mut report, &statement, &key, trusted_keys);
    check_files(&mut report, &archive, &statement);
    check_manifest(&mut report, &archive, &statement);
    check_sums(&mut report, &archive, &statement);
    let checkpoint = check_checkpoint(&mut report, &archive, &statement, &key);
    check_inclusion(&mut report, &archive, &statement, checkpoint.as_ref());
    report
}

fn listed(problems: &[String]) -> String {
    let mut msg = problems
        .iter()
        .take(MAX_LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > MAX_LISTED {
        msg.push_str(&format!("; and {} more", problems.len() - MAX_LISTED));
    }
    msg
}

fn check_envelope(
    report: &mut VerifyReport,
    archive: &Archive,
) -> Option<(Envelope, Statement, VerifyingKey)> {
    let parsed = (|| {
        let bytes = archive
            .kept
            .get(ENVELOPE_PATH)
            .ok_or(format!("{ENVELOPE_PATH} is missing"))?;
        let envelope = Envelope::from_json(bytes).map_err(|e| format!("{ENVELOPE_PATH}: {e}"))?;
        if envelope.payload_type != INTOTO_PAYLOAD_TYPE {
            return Err(format!(
                "payloadType is {:?}, expected {INTOTO_PAYLOAD_TYPE}",
                envelope.payload_type
            ));
        }
        let payload = envelope.payload_bytes().map_err(|e| e.to_string())?;
        let statement = Statement::from_json(&payload).map_err(|e| format!("statement: {e}"))?;
        let key = statement
            .predicate
            .key
            .key()
            .map_err(|e| format!("statement key: {e}"))?;
        Ok((envelope, statement, key))
    })();
    match parsed {
        Ok(p) => {
            let msg = format!(
                "in-toto Statement v1 from appliance {:?}, {} subjects",
                p.1.predicate.appliance_id,
                p.1.subject.len()
            );
            report.pass("envelope", msg);
            Some(p)
        }
        Err(e) => {
            report.fail("envelope", e);
            None
        }
    }
}

fn check_key(
    report: &mut VerifyReport,
    statement: &Statement,
    key: &VerifyingKey,
    trusted: Option<&[VerifyingKey]>,
) {
    let fp = fingerprint(key);
    if statement.predicate.key.fingerprint != fp {
        let claimed = &statement.predicate.key.fingerprint;
        report.fail(
            "key",
            format!("statement gives fingerprint {claimed}, its key's is {fp}"),
        );
        return;
    }
    let appliance = &statement.predicate.appliance_id;
    match trusted {
        None => report.pass("key", format!("signed by appliance {appliance:?}'s key, fingerprint {fp} (no trusted key given: compare it with the published fingerprint)")),
        Some(keys) if keys.contains(key) => report.pass("key", format!("the expected appliance key (fingerprint {fp})")),
        Some(_) => report.fail("key", format!("not the expected appliance key (fingerprint {fp}, appliance {appliance:?}): the bundle verifies only with its own key")),
    }
}

fn check_files(report: &mut VerifyReport, archive: &Archive, statement: &Statement) {
    let mut listed_names = BTreeSet::new();
    for s in &statement.subject {
        let name = format!("file {}", s.name);
        if !listed_names.insert(s.name.as_str()) {
            report.fail(name, "listed twice in the signed statement");
            continue;
        }
        if RESERVED_PATHS.contains(&s.name.as_str()) {
            report.fail(name, "the statement lists a file that cannot be a subject");
            continue;
        }
        match (archive.files.get(&s.name), s.sha256_hex()) {
            (None, _) => report.fail(
                name,
                "listed in the signed statement but missing from the archive",
            ),
            (_, None) => report.fail(name, "no sha256 digest in the signed statement"),
            (Some((_, actual)), Some(want)) if actual == want => {
                report.pass(name, format!("sha256 {want}"))
            }
            (Some((_, actual)), Some(want)) => report.fail(
                name,
                format!(
                    "sha256 is {actual}, the signed statement says {want}: the file was changed"
                ),
            ),
        }
    }
    for path in &archive.order {
        if !RESERVED_PATHS.contains(&path.as_str()) && !listed_names.contains(path.as_str()) {
            report.fail(
                format!("file {path}"),
                "present in the archive but not listed in the signed statement",
            );
        }
    }
}

/// Compare a list of (path, sha256, size?) with the statement's subjects.
fn compare_with_subjects(
    rows: &[(String, String, Option<u64>)],
    archive: &Archive,
    statement: &Statement,
) -> Vec<String> {
    let want: BTreeMap<&str, &str> = statement
        .subject
        .iter()
        .map(|s| (s.name.as_str(), s.sha256_hex().unwrap_or("")))
        .collect();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (path, sha, size) in rows {
        if !seen.insert(path.as_str()) {
            problems.push(format!("lists {path} twice"));
        }
        match want.get(path.as_str()) {
            None => problems.push(format!("lists {path}, which the signed statement does not")),
            Some(w) if w != sha => problems.push(format!(
                "gives {path} sha256 {sha}, the signed statement {w}"
            )),
            Some(_) => {}
        }
        // Sizes are compared for intact files only: a changed file is the
        // file's failure, not the manifest's.
        let intact = archive
            .files
            .get(path)
            .filter(|f| want.get(path.as_str()) == Some(&f.1.as_str()));
        if let (Some(size), Some((actual, _))) = (size, intact) {
            if size != actual {
                problems.push(format!(
                    "gives {path} size {size}, the archive has {actual}"
                ));
            }
        }
    }
    for path in want.keys().filter(|p| !seen.contains(*p)) {
        problems.push(format!("does not list {path}"));
    }
    problems
}

fn check_manifest(report: &mut VerifyReport, archive: &Archive, statement: &Statement) {
    let rows = (|| {
        let bytes = archive
            .kept
            .get(MANIFEST_PATH)
            .ok_or(format!("{MANIFEST_PATH} is missing"))?;
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| format!("{MANIFEST_PATH} is not a manifest: {e}"))?;
        if m.format != MANIFEST_FORMAT {
            return Err(format!(
                "{MANIFEST_PATH} format is {:?}, expected {MANIFEST_FORMAT}",
                m.format
            ));
        }
        Ok(m.files
            .into_iter()
            .map(|f| (f.path, f.sha256, Some(f.size)))
            .collect::<Vec<_>>())
    })();
    finish_view(report, "manifest", MANIFEST_PATH, rows, archive, statement);
}

fn check_sums(report: &mut VerifyReport, archive: &Archive, statement: &Statement) {
    let rows = (|| {
        let bytes = archive
            .kept
            .get(SUMS_PATH)
            .ok_or(format!("{SUMS_PATH} is missing"))?;
        let text = std::str::from_utf8(bytes).map_err(|_| format!("{SUMS_PATH} is not UTF-8"))?;
        text.lines()
            .enumerate()
            .map(|(i, line)| {
                let (sha, path) = line.split_once("  ").ok_or(format!(
                    "{SUMS_PATH} line {} is not `<sha256>  <path>`",
                    i + 1
                ))?;
                Ok((path.to_string(), sha.to_string(), None))
            })
            .collect::<Result<Vec<_>, String>>()
    })();
    finish_view(report, "SHA256SUMS", SUMS_PATH, rows, archive, statement);
}

fn finish_view(
    report: &mut VerifyReport,
    name: &str,
    path: &str,
    rows: Result<Vec<(String, String, Option<u64>)>, String>,
    archive: &Archive,
    statement: &Statement,
) {
    match rows {
        Err(e) => report.fail(name, e),
        Ok(rows) => {
            let problems = compare_with_subjects(&rows, archive, statement);
            if problems.is_empty() {
                report.pass(
                    name,
                    format!(
                        "{path}: {} entries, identical to the signed statement",
                        rows.len()
                    ),
                );
            } else {
                report.fail(name, format!("{path} {}", listed(&problems)));
            }
        }
    }
}

fn kept_text<'a>(archive: &'a Archive, path: &str) -> Result<&'a str, String> {
    let bytes = archive.kept.get(path).ok_or(format!("{path} is missing"))?;
    std::str::from_utf8(bytes).map_err(|_| format!("{path} is not UTF-8"))
}

fn check_checkpoint(
    report: &mut VerifyReport,
    archive: &Archive,
    statement: &Statement,
    key: &VerifyingKey,
) -> Option<Checkpoint> {
    let text = match kept_text(archive, CHECKPOINT_PATH) {
        Ok(t) => t,
        Err(e) => {
            report.fail("checkpoint", e);
            return None;
        }
    };
    let mut problems = Vec::new();
    if text != statement.predicate.audit.checkpoint {
        problems.push(format!(
            "{CHECKPOINT_PATH} differs from the checkpoint in the signed statement"
        ));
    }
    let parsed = match Checkpoint::open(text, key) {
        Ok(cp) => Some(cp),
        Err(e) => {
            problems.push(format!("{CHECKPOINT_PATH}: {e}"));
            Checkpoint::parse_unverified(text).ok().map(|(cp, _)| cp)
        }
    };
    if problems.is_empty() {
        let cp = parsed.as_ref().expect("opened");
        let time = cp.time().unwrap_or("no time");
        report.pass(
            "checkpoint",
            format!(
                "signed by {} (the bundle's key), tree size {}, {time}",
                cp.origin, cp.size
            ),
        );
    } else {
        report.fail("checkpoint", listed(&problems));
    }
    parsed
}

fn check_inclusion(
    report: &mut VerifyReport,
    archive: &Archive,
    statement: &Statement,
    checkpoint: Option<&Checkpoint>,
) {
    let result = (|| {
        let cp = checkpoint.ok_or("cannot be checked without a readable checkpoint")?;
        let entry = archive
            .kept
            .get(EXPORT_ENTRY_PATH)
            .ok_or(format!("{EXPORT_ENTRY_PATH} is missing"))?;
        let text = kept_text(archive, PROOF_PATH)?;
        let proof: InclusionProofFile =
            serde_json::from_str(text).map_err(|e| format!("{PROOF_PATH}: {e}"))?;
        let anchor = &statement.predicate.audit;
        let mut problems = Vec::new();
        if proof.leaf_index != anchor.entry_index || proof.hashes != anchor.inclusion_proof {
            problems.push(format!(
                "{PROOF_PATH} differs from the proof in the signed statement"
            ));
        }
        if proof.tree_size != cp.size {
            problems.push(format!(
                "{PROOF_PATH} is for tree size {}, the checkpoint has {}",
                proof.tree_size, cp.size
            ));
        }
        let hashes: Option<Vec<Hash>> = proof
            .hashes
            .iter()
            .map(|h| B64.decode(h).ok().and_then(|b| b.try_into().ok()))
            .collect();
        match hashes {
            None => problems.push(format!(
                "{PROOF_PATH} has a hash that is not base64 of 32 bytes"
            )),
            Some(hashes) => {
                let leaf = merkle::leaf_hash(entry);
                if let Err(e) =
                    merkle::verify_inclusion(&leaf, proof.leaf_index, cp.size, &hashes, &cp.root)
                {
                    problems.push(format!(
                        "{EXPORT_ENTRY_PATH} is not entry {} of the checkpoint's log: {e}",
                        proof.leaf_index
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(format!(
                "export entry {} is in the audit log of size {}",
                proof.leaf_index, cp.size
            ))
        } else {
            Err(listed(&problems))
        }
    })();
    match result {
        Ok(msg) => report.pass("inclusion", msg),
        Err(e) => report.fail("inclusion", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::is_reserved;

    #[test]
    fn garbage_is_reported_not_panicked() {
        let report = verify_bundle(&b"not a tar archive at all, just text"[..], None);
        assert!(!report.ok());
        assert!(report.check("envelope").is_some_and(|c| !c.passed));
        assert!(is_reserved(CHECKPOINT_PATH));
    }
}
