//! Tamper tests: build a bundle and an audit log with a test key, break one
//! part at a time, and check that verification names exactly that part.
//! Also: same input → same bytes, and the README's auditor commands
//! (sha256sum, openssl) accept the bundle and reject a forged signature.

use std::collections::BTreeSet;
use std::io::Read;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use vigil_evidence::bundle::{
    InclusionProofFile, Manifest, CHECKPOINT_PATH, ENVELOPE_PATH, EXPORT_ENTRY_PATH, MANIFEST_PATH,
    PROOF_PATH, SUMS_PATH,
};
use vigil_evidence::merkle::{consistency_proof, inclusion_proof, root_at};
use vigil_evidence::statement::*;
use vigil_evidence::*;

/// The origin `audit_origin("appliance-1")` gives.
const ORIGIN: &str = "vigil-audit/appliance-1";
/// Index of the export's own entry; the checkpoint covers a few more.
const EXPORT_INDEX: usize = 10;
const LOG_SIZE: usize = 13;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn info() -> ExportInfo {
    ExportInfo {
        scope: Scope::Incident {
            id: "inc-42".into(),
        },
        hosts: vec!["web-1".into(), "db-1".into()],
        time_range: TimeRange {
            from: rfc3339_from_ns(1_700_000_000_000_000_000),
            to: "2023-11-15T00:00:00Z".into(),
        },
        exporter: "alice".into(),
        export_time: "2025-03-01T12:00:00Z".into(),
        appliance_id: "appliance-1".into(),
        custody: vec![CustodyEntry {
            time: "2025-03-01T12:00:00Z".into(),
            actor: "alice".into(),
            action: "exported".into(),
            note: String::new(),
        }],
        model: ModelInfo {
            version: "2025.02".into(),
            sha256: "ab".repeat(32),
        },
    }
}

/// Content files, out of order on purpose; one is large and streamed.
fn content() -> Vec<(String, Vec<u8>)> {
    let events: Vec<u8> = (0..5000)
        .flat_map(|i| format!("{{\"host\":\"web-1\",\"seq\":{i}}}\n").into_bytes())
        .collect();
    vec![
        ("timeline.json".into(), b"[{\"t\":1}]\n".to_vec()),
        (
            "alerts.jsonl".into(),
            b"{\"id\":\"a-1\",\"severity\":\"high\"}\n".to_vec(),
        ),
        ("events/web-1.jsonl".into(), events),
        (
            "summary.md".into(),
            b"# Root cause\nssh brute force\n".to_vec(),
        ),
    ]
}

/// The audit log: entries before the export, the export entry naming the
/// content digest, and entries after it.
fn log_entries(content_digest: &str) -> Vec<Vec<u8>> {
    (0..LOG_SIZE)
        .map(|i| {
            if i == EXPORT_INDEX {
                format!("{{\"seq\":{i},\"actor\":\"alice\",\"action\":\"export\",\"content_sha256\":\"{content_digest}\"}}").into_bytes()
            } else {
                format!("{{\"seq\":{i},\"actor\":\"admin\",\"action\":\"login\"}}").into_bytes()
            }
        })
        .collect()
}

fn sign_checkpoint(entries: &[Vec<u8>], size: usize, key: &SigningKey) -> String {
    let leaves: MemoryLeaves = entries.iter().collect();
    let root = root_at(&leaves, size as u64).unwrap();
    Checkpoint::new(ORIGIN, size as u64, root, "2025-03-01T12:00:01Z")
        .sign(key)
        .unwrap()
}

/// Build a bundle with `key`; returns it and the audit log behind it.
fn build(key: &SigningKey) -> (Vec<u8>, Vec<Vec<u8>>) {
    let files: Vec<BundleFile> = content()
        .into_iter()
        .map(|(path, bytes)| BundleFile {
            path,
            len: bytes.len() as u64,
            reader: Box::new(std::io::Cursor::new(bytes)),
        })
        .collect();
    // Streaming flow: content first, then the audit entry naming it.
    let mut sorted = content();
    sorted.sort();
    let mut probe = BundleWriter::new(std::io::sink());
    for (p, b) in &sorted {
        probe.add_bytes(p, b).unwrap();
    }
    let entries = log_entries(&probe.content_digest());
    let leaves: MemoryLeaves = entries.iter().collect();
    let audit = AuditEvidence {
        checkpoint: sign_checkpoint(&entries, LOG_SIZE, key),
        entry: entries[EXPORT_INDEX].clone(),
        entry_index: EXPORT_INDEX as u64,
        proof: inclusion_proof(&leaves, EXPORT_INDEX as u64, LOG_SIZE as u64).unwrap(),
    };
    let bundle = write_bundle(Vec::new(), files, key, info(), audit).unwrap();
    (bundle, entries)
}

fn entries_of(bundle: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(bundle);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            (path, bytes)
        })
        .collect()
}

/// Re-write the archive with the same header rules after `edit`.
fn rewrite(bundle: &[u8], edit: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> Vec<u8> {
    let mut files = entries_of(bundle);
    edit(&mut files);
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut h = tar::Header::new_ustar();
        h.set_path(&path).unwrap();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        builder.append(&h, &bytes[..]).unwrap();
    }
    builder.into_inner().unwrap()
}

fn edit_file(bundle: &[u8], path: &str, f: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    rewrite(bundle, |files| {
        let entry = files
            .iter_mut()
            .find(|(p, _)| p == path)
            .expect("file in bundle");
        entry.1 = f(std::mem::take(&mut entry.1));
    })
}

fn failed(report: &VerifyReport) -> BTreeSet<String> {
    report.failures().map(|c| c.name.clone()).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn verify(bundle: &[u8]) -> VerifyReport {
    verify_bundle(bundle, Some(&[key(1).verifying_key()]))
}

#[test]
fn clean_bundle_verifies() {
    let (bundle, _) = build(&key(1));
    assert_eq!(audit_origin("appliance-1"), ORIGIN);
    let report = verify(&bundle);
    assert!(report.ok(), "{report}");
    for name in [
        "archive",
        "envelope",
        "signature",
        "key",
        "manifest",
        "SHA256SUMS",
        "checkpoint",
        "inclusion",
        "file events/web-1.jsonl",
        "file audit/export-entry.json",
    ] {
        assert!(
            report.check(name).is_some_and(|c| c.passed),
            "{name}: {report}"
        );
    }
    assert!(report.to_string().contains("verified: all"));
}

#[test]
fn same_input_gives_same_bytes_in_fixed_layout() {
    let (a, _) = build(&key(1));
    let (b, _) = build(&key(1));
    assert_eq!(a, b);
    let mut archive = tar::Archive::new(&a[..]);
    let mut paths = Vec::new();
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!(
            (
                h.mtime().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mode().unwrap()
            ),
            (0, 0, 0, 0o644)
        );
        assert!(h.as_ustar().is_some(), "ustar header");
        paths.push(e.path().unwrap().to_string_lossy().into_owned());
    }
    assert_eq!(
        paths,
        [
            "alerts.jsonl",
            "events/web-1.jsonl",
            "summary.md",
            "timeline.json",
            CHECKPOINT_PATH,
            EXPORT_ENTRY_PATH,
            PROOF_PATH,
            MANIFEST_PATH,
            SUMS_PATH,
            ENVELOPE_PATH
        ]
    );
}

/// The parts a one-byte change of each file may fail, and must fail.
fn expected_for(path: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let file = format!("file {path}");
    match path {
        CHECKPOINT_PATH => (
            set(&[&file, "checkpoint"]),
            set(&[&file, "checkpoint", "inclusion"]),
        ),
        EXPORT_ENTRY_PATH | PROOF_PATH => (set(&[&file, "inclusion"]), set(&[&file, "inclusion"])),
        MANIFEST_PATH => (set(&["manifest"]), set(&["manifest"])),
        SUMS_PATH => (set(&["SHA256SUMS"]), set(&["SHA256SUMS"])),
        ENVELOPE_PATH => (set(&[]), set(&["envelope", "signature"])),
        _ => (set(&[&file]), set(&[&file])),
    }
}

#[test]
fn one_byte_of_each_file() {
    let (bundle, _) = build(&key(1));
    for (path, bytes) in entries_of(&bundle) {
        for at in [0, bytes.len() / 2, bytes.len() - 2] {
            let tampered = edit_file(&bundle, &path, |mut b| {
                b[at] ^= 0x01;
                b
            });
            let report = verify(&tampered);
            let got = failed(&report);
            let (must, may) = expected_for(&path);
            assert!(
                !got.is_empty() && must.is_subset(&got) && got.is_subset(&may),
                "{path} byte {at}: {got:?}\n{report}"
            );
        }
    }
}

#[test]
fn forged_signature() {
    let (bundle, _) = build(&key(1));
    let tampered = edit_file(&bundle, ENVELOPE_PATH, |b| {
        let mut env = Envelope::from_json(&b).unwrap();
        let mut sig = B64.decode(&env.signatures[0].sig).unwrap();
        sig[5] ^= 0x80;
        env.signatures[0].sig = B64.encode(sig);
        env.to_json()
    });
    let report = verify(&tampered);
    assert_eq!(failed(&report), set(&["signature"]), "{report}");
    assert!(report
        .check("signature")
        .unwrap()
        .message
        .contains("bundle.dsse.json"));
}

#[test]
fn changed_statement() {
    let (bundle, _) = build(&key(1));
    let tampered = edit_file(&bundle, ENVELOPE_PATH, |b| {
        let mut env = Envelope::from_json(&b).unwrap();
        let mut st = Statement::from_json(&env.payload_bytes().unwrap()).unwrap();
        st.predicate.exporter = "mallory".into();
        env.payload = B64.encode(st.to_json());
        env.to_json()
    });
    assert_eq!(failed(&verify(&tampered)), set(&["signature"]));
}

#[test]
fn changed_manifest() {
    let (bundle, _) = build(&key(1));
    let tampered = edit_file(&bundle, MANIFEST_PATH, |b| {
        let mut m: Manifest = serde_json::from_slice(&b).unwrap();
        m.files[1].sha256 = "00".repeat(32);
        m.files.remove(0);
        serde_json::to_vec(&m).unwrap()
    });
    let report = verify(&tampered);
    assert_eq!(failed(&report), set(&["manifest"]), "{report}");
    let msg = &report.check("manifest").unwrap().message;
    assert!(
        msg.contains("does not list alerts.jsonl")
            && msg.contains("gives events/web-1.jsonl sha256 0000"),
        "{msg}"
    );
}

#[test]
fn replaced_checkpoint() {
    let (bundle, entries) = build(&key(1));
    // A genuine checkpoint of the same key, but of another log state.
    let other = sign_checkpoint(&entries, LOG_SIZE - 1, &key(1));
    let tampered = edit_file(&bundle, CHECKPOINT_PATH, |_| other.into_bytes());
    let report = verify(&tampered);
    assert_eq!(
        failed(&report),
        set(&["file audit/checkpoint.txt", "checkpoint", "inclusion"]),
        "{report}"
    );
}

#[test]
fn changed_proof() {
    let (bundle, _) = build(&key(1));
    let tampered = edit_file(&bundle, PROOF_PATH, |b| {
        let mut p: InclusionProofFile = serde_json::from_slice(&b).unwrap();
        p.hashes[0] = B64.encode([7u8; 32]);
        serde_json::to_vec_pretty(&p).unwrap()
    });
    let report = verify(&tampered);
    assert_eq!(
        failed(&report),
        set(&["file audit/inclusion-proof.json", "inclusion"]),
        "{report}"
    );
}

#[test]
fn extra_and_missing_files_are_named() {
    let (bundle, _) = build(&key(1));
    let tampered = rewrite(&bundle, |files| {
        files.retain(|(p, _)| p != "summary.md");
        files.insert(0, ("planted.sh".into(), b"rm -rf /\n".to_vec()));
    });
    let report = verify(&tampered);
    assert_eq!(
        failed(&report),
        set(&["file planted.sh", "file summary.md"]),
        "{report}"
    );
    assert!(report
        .check("file planted.sh")
        .unwrap()
        .message
        .contains("not listed"));
    assert!(report
        .check("file summary.md")
        .unwrap()
        .message
        .contains("missing"));
}

#[test]
fn truncated_archive_is_named() {
    let (bundle, _) = build(&key(1));
    let report = verify(&bundle[..bundle.len() / 2]);
    assert!(!report.ok());
    assert!(
        report.check("archive").is_some_and(|c| !c.passed),
        "{report}"
    );
}

#[test]
fn another_appliance_verifies_with_its_own_key_and_is_reported() {
    let (bundle, _) = build(&key(2));
    let report = verify(&bundle);
    assert_eq!(failed(&report), set(&["key"]), "{report}");
    let msg = &report.check("key").unwrap().message;
    assert!(
        msg.contains("not the expected appliance key")
            && msg.contains(&fingerprint(&key(2).verifying_key())),
        "{msg}"
    );
    assert!(verify_bundle(&bundle[..], None).ok());
}

fn checkpoints(entries: &[Vec<u8>], key: &SigningKey) -> Vec<String> {
    [5, 10, LOG_SIZE]
        .iter()
        .map(|&n| sign_checkpoint(entries, n, key))
        .collect()
}

fn check_log(entries: &[Vec<u8>], cps: &[String]) -> VerifyReport {
    let cps: Vec<&str> = cps.iter().map(String::as_str).collect();
    verify_audit_log(entries, &cps, &key(1).verifying_key())
}

#[test]
fn audit_log_verifies() {
    let (_, entries) = build(&key(1));
    let report = check_log(&entries, &checkpoints(&entries, &key(1)));
    assert!(report.ok(), "{report}");
    assert_eq!(report.checks.len(), 6);
}

#[test]
fn truncated_log() {
    let (_, entries) = build(&key(1));
    let cps = checkpoints(&entries, &key(1));
    let report = check_log(&entries[..LOG_SIZE - 3], &cps);
    assert_eq!(failed(&report), set(&["log 0..13"]), "{report}");
    assert!(report
        .check("log 0..13")
        .unwrap()
        .message
        .contains("the last 3 entries are missing"));
}

#[test]
fn changed_stored_entry_is_located() {
    let (_, mut entries) = build(&key(1));
    let cps = checkpoints(&entries, &key(1));
    entries[7] = b"{\"seq\":7,\"actor\":\"admin\",\"action\":\"nothing to see\"}".to_vec();
    let report = check_log(&entries, &cps);
    assert_eq!(
        failed(&report),
        set(&["log 0..10", "log 0..13"]),
        "{report}"
    );
    assert!(report
        .check("log 0..10")
        .unwrap()
        .message
        .contains("an entry in 5..10 was changed"));
}

#[test]
fn log_rewritten_and_resigned_with_a_new_key() {
    let (_, mut entries) = build(&key(1));
    entries[3] = b"{\"seq\":3,\"actor\":\"admin\",\"action\":\"rewritten\"}".to_vec();
    let forged = checkpoints(&entries, &key(9));
    let report = check_log(&entries, &forged);
    assert_eq!(
        failed(&report),
        set(&["checkpoint 5", "checkpoint 10", "checkpoint 13", "log"]),
        "{report}"
    );
    let msg = &report.check("checkpoint 5").unwrap().message;
    assert!(
        msg.contains("no signature by key vigil-audit/appliance-1"),
        "{msg}"
    );
    // A bundle built on the rewritten log with the new key: only the key.
    let (bundle, _) = build(&key(9));
    assert_eq!(failed(&verify(&bundle)), set(&["key"]));
}

#[test]
fn prove_extends_detects_forks() {
    let (_, entries) = build(&key(1));
    let leaves: MemoryLeaves = entries.iter().collect();
    let old = sign_checkpoint(&entries, 10, &key(1));
    let new = sign_checkpoint(&entries, LOG_SIZE, &key(1));
    let proof = consistency_proof(&leaves, 10, LOG_SIZE as u64).unwrap();
    assert!(prove_extends(&old, &new, &proof, &key(1).verifying_key()).ok());

    let mut forked = entries.clone();
    forked[2] = b"{\"seq\":2,\"actor\":\"admin\",\"action\":\"forked\"}".to_vec();
    let forked_leaves: MemoryLeaves = forked.iter().collect();
    let new_forked = sign_checkpoint(&forked, LOG_SIZE, &key(1));
    let proof = consistency_proof(&forked_leaves, 10, LOG_SIZE as u64).unwrap();
    let report = prove_extends(&old, &new_forked, &proof, &key(1).verifying_key());
    assert_eq!(failed(&report), set(&["consistency"]), "{report}");
    assert!(report
        .check("consistency")
        .unwrap()
        .message
        .contains("does not extend"));
}

/// The shell block of README.md between the auditor-check markers.
fn readme_script() -> String {
    let readme = include_str!("../README.md");
    let start = readme
        .find("<!-- auditor-check:begin -->")
        .expect("begin marker");
    let end = readme
        .find("<!-- auditor-check:end -->")
        .expect("end marker");
    let block = &readme[start..end];
    let code = block.split("```sh\n").nth(1).expect("sh block");
    code.split("```").next().unwrap().to_string()
}

fn tools_missing() -> Option<String> {
    let missing: Vec<&str> = ["bash", "tar", "sha256sum", "python3", "openssl"]
        .into_iter()
        .filter(|t| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {t}"))
                .output()
                .map_or(true, |o| !o.status.success())
        })
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

fn run_readme(bundle: &[u8]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.tar");
    std::fs::write(&path, bundle).unwrap();
    std::process::Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(readme_script())
        .env("BUNDLE", &path)
        .current_dir(dir.path())
        .output()
        .unwrap()
}

#[test]
fn readme_auditor_commands_check_hashes_and_signature() {
    if let Some(missing) = tools_missing() {
        eprintln!(
            "SKIPPED readme_auditor_commands_check_hashes_and_signature: not installed: {missing}"
        );
        return;
    }
    let (bundle, _) = build(&key(1));
    let out = run_readme(&bundle);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Signature Verified Successfully"),
        "{stdout}"
    );
    assert!(stdout.contains("events/web-1.jsonl: OK"), "{stdout}");
    assert!(
        stdout.contains(&fingerprint(&key(1).verifying_key())),
        "{stdout}"
    );

    let forged = edit_file(&bundle, ENVELOPE_PATH, |b| {
        let mut env = Envelope::from_json(&b).unwrap();
        let mut sig = B64.decode(&env.signatures[0].sig).unwrap();
        sig[0] ^= 1;
        env.signatures[0].sig = B64.encode(sig);
        env.to_json()
    });
    let out = run_readme(&forged);
    assert!(!out.status.success(), "openssl accepted a forged signature");
    let changed = edit_file(&bundle, "summary.md", |mut b| {
        b[0] ^= 1;
        b
    });
    assert!(
        !run_readme(&changed).status.success(),
        "sha256sum accepted a changed file"
    );
}
