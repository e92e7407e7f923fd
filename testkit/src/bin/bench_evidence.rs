//! `bench-evidence` (issue #17): evidence export and the audit log.
//!
//! (a) Export of an incident over two hosts whose window holds `--events`
//! raw events (100,000): time, bundle bytes and peak RSS of
//! `vigil_appliance::export::export_bundle` on a real RocksDB store,
//! against a reference measured in the same run on the same store: the
//! same events read the same way and written as plain JSON lines through
//! zstd (level 3), unsigned.
//!
//! (b) Audit log: `--entries` (1,000,000) entries appended to the Merkle
//! tree as the appliance stores it (entry, leaf, completed nodes and
//! frontier in one write batch; a signed checkpoint every 64 entries),
//! against a plain SHA-256 chain (the entry alone, as the log was before
//! #17), both unsynced so a million fit in a run; the synced rate of the
//! real path (`ConsoleStore::append_audit`, one fsync'd write per entry) is
//! measured over `--synced` (2,000) entries against the chain's synced
//! write. Then at full size: inclusion and consistency proof sizes, their
//! verification time, and the time of a full `vigil audit verify`.
//!
//! Peak RSS is the process's VmHWM after a reset (`/proc/self/clear_refs`
//! `5`), so each phase is measured alone. Last line: one JSON object.

use anyhow::{bail, Context, Result};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use vigil_appliance::audit_log::{self, AuditSigner};
use vigil_appliance::db::HostRecord;
use vigil_appliance::export::{export_bundle, ExportScope};
use vigil_appliance::ingest::writer::{spawn_writer_with, EncodedEvent};
use vigil_appliance::notices::DetectionNotices;
use vigil_appliance::read::StoreReader;
use vigil_appliance::store::rocks::RocksStore;
use vigil_appliance::store::{Cf, WriteBatch};
use vigil_appliance::{system_clock, Core, Db};
use vigil_evidence::merkle;
use vigil_proto::query::{AlertRecord, EventFilter, ReadApi, Severity, TriageState};
use vigil_proto::HostId;
use vigil_testkit::sim_sensor::realistic_events;
use vigil_web_ui::audit::seal;
use vigil_web_ui::store::{AuditDraft, AuditEntry, ConsoleStore};

struct Opts {
    events: usize,
    entries: u64,
    synced: u64,
}

fn parse() -> Result<Opts> {
    let mut o = Opts {
        events: 100_000,
        entries: 1_000_000,
        synced: 2_000,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let val = pair.get(1).context("a flag needs a value")?;
        match pair[0].as_str() {
            "--events" => o.events = val.parse()?,
            "--entries" => o.entries = val.parse()?,
            "--synced" => o.synced = val.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(o)
}

/// Peak resident set since the last [`reset_peak`], bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// What one export-like run cost.
struct Run {
    secs: f64,
    bytes: u64,
    peak_rss: u64,
}

/// Two hosts' events (`n` in all) through the real ingest writer, and an
/// incident whose evidence spans them, so its window holds every event.
fn fill(core: &Arc<Core>, n: usize, t0: u64) -> Result<u64> {
    let (a, b) = (HostId(0xa1), HostId(0xb2));
    for (h, name) in [(a, "ws-a"), (b, "db-b")] {
        let rec = HostRecord {
            id: h.0,
            hostname: name.into(),
            enrolled_ns: 1,
            ..HostRecord::default()
        };
        core.db.put_host_record(&rec, true)?;
    }
    let per_host = n / 2;
    let rt = tokio::runtime::Runtime::new()?;
    let mut last = Vec::new();
    rt.block_on(async {
        let (queue, writer) = spawn_writer_with(
            core.db.clone(),
            DetectionNotices::default(),
            core.metrics.clone(),
            4,
            Default::default(),
            system_clock(),
        )?;
        for (i, h) in [a, b].into_iter().enumerate() {
            let events = realistic_events(h, 1, per_host, t0, 7 + i as u64);
            last.push((h, events.last().map_or(1, |e| e.header.seq)));
            for chunk in events.chunks(2_000) {
                let encoded: Vec<EncodedEvent> =
                    chunk.iter().map(EncodedEvent::from_event).collect();
                queue.submit(h, encoded, 400_000).await?;
            }
        }
        drop(queue);
        writer
            .join()
            .map_err(|e| anyhow::anyhow!("writer: {e:?}"))?;
        anyhow::Ok(())
    })?;
    let id = core.db.next_alert_id()?;
    let mut evidence = vec![(a, 1), (b, 1)];
    evidence.extend(last);
    core.db.put_alert(&AlertRecord {
        id,
        created_ns: t0,
        severity: Severity::High,
        score: 12.0,
        title: "bench incident".into(),
        path: vec![a, b],
        users: vec!["mallory".into()],
        techniques: vec!["T1021.004".into()],
        summary: "bench".into(),
        deviations: vec![],
        evidence,
        state: TriageState::New,
        assignee: None,
        incident_id: Some(id),
        model_version: None,
        ports: vec![22],
        processes: vec![],
        suppressed_by: None,
    })?;
    Ok(id)
}

/// The reference: the same events, read the same way (pages of 5,000 per
/// host over the incident's window), as JSON lines through zstd level 3.
fn reference(core: &Arc<Core>, incident: u64, out: &Path) -> Result<(Run, u64)> {
    reset_peak();
    let start = Instant::now();
    let reader = StoreReader::new(core.clone());
    let alert = reader.alert(incident)?;
    let mut enc = zstd::Encoder::new(BufWriter::new(std::fs::File::create(out)?), 3)?;
    let mut count = 0u64;
    for host in &alert.path {
        let mut after = None;
        loop {
            let page = reader.events(&EventFilter {
                host: Some(*host),
                limit: 5_000,
                after,
                ..EventFilter::default()
            })?;
            for e in &page.events {
                serde_json::to_writer(&mut enc, e)?;
                enc.write_all(b"\n")?;
                count += 1;
            }
            match page.next {
                Some(next) if !page.events.is_empty() => after = Some(next),
                _ => break,
            }
        }
    }
    enc.finish()?.flush()?;
    let run = Run {
        secs: start.elapsed().as_secs_f64(),
        bytes: std::fs::metadata(out)?.len(),
        peak_rss: peak_rss(),
    };
    Ok((run, count))
}

fn export(core: &Arc<Core>, incident: u64, now: u64, out: &Path) -> Result<(Run, u64)> {
    reset_peak();
    let start = Instant::now();
    let file = BufWriter::new(std::fs::File::create(out)?);
    let summary = export_bundle(core, &ExportScope::Incident(incident), "bench", now, file)?;
    let run = Run {
        secs: start.elapsed().as_secs_f64(),
        bytes: std::fs::metadata(out)?.len(),
        peak_rss: peak_rss(),
    };
    Ok((run, summary.events))
}

fn draft(i: u64) -> AuditDraft {
    AuditDraft {
        ts_ns: 1_750_000_000_000_000_000 + i * 1_000_000,
        actor: "analyst".into(),
        action: "triage.ack".into(),
        target: format!("alert:{}", 1_000 + i % 5_000),
        detail: format!("note {i}: acknowledged after review"),
    }
}

/// Rates (entries/s) at each size in `marks`, appending `n` entries with
/// `append`.
fn append_run(
    n: u64,
    marks: &[u64],
    mut append: impl FnMut(&AuditEntry) -> Result<()>,
) -> Result<Vec<(u64, f64)>> {
    let mut prev: Option<AuditEntry> = None;
    let mut out = Vec::new();
    let mut lap = Instant::now();
    let mut lap_from = 0u64;
    for i in 0..n {
        let entry = seal(prev.as_ref(), draft(i));
        append(&entry)?;
        prev = Some(entry);
        if marks.contains(&(i + 1)) {
            let secs = lap.elapsed().as_secs_f64();
            out.push((i + 1, (i + 1 - lap_from) as f64 / secs));
            lap = Instant::now();
            lap_from = i + 1;
        }
    }
    Ok(out)
}

fn chain_store(dir: &Path) -> Result<Db> {
    Ok(Db::new(Arc::new(RocksStore::open(dir)?)))
}

/// The chain's write: the entry alone.
fn chain_put(db: &Db, e: &AuditEntry, sync: bool) -> Result<()> {
    let mut batch = WriteBatch::default();
    let key = vigil_appliance::db::records::id_key(vigil_appliance::db::records::AUDIT, e.seq);
    batch.put(Cf::Audit, key, serde_json::to_vec(e)?);
    db.store().write(batch, sync)?;
    Ok(())
}

/// Results of part (b).
struct AuditFigures {
    tree_rates: Vec<(u64, f64)>,
    chain_rates: Vec<(u64, f64)>,
    synced_tree: f64,
    synced_chain: f64,
    inclusion_hashes: usize,
    consistency_hashes: usize,
    proof_verify_us: f64,
    full_verify_s: f64,
    full_verify_ok: bool,
}

fn audit_bench(dir: &Path, o: &Opts) -> Result<AuditFigures> {
    let n = o.entries;
    let marks: Vec<u64> = [10_000, 100_000, n]
        .into_iter()
        .filter(|m| *m <= n)
        .collect();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let signer = AuditSigner::new(key, "bench.vigil");

    // The tree, unsynced, with its checkpoints.
    let tree = chain_store(&dir.join("tree"))?;
    let mut frontier = merkle::Frontier::new();
    let tree_rates = append_run(n, &marks, |e| {
        let mut batch = WriteBatch::default();
        tree.audit_append_to(&mut batch, &mut frontier, e)?;
        tree.store().write(batch, false)?;
        if frontier
            .size()
            .checked_rem(audit_log::CHECKPOINT_EVERY_ENTRIES)
            == Some(0)
        {
            let note = signer.sign(frontier.size(), frontier.root(), e.ts_ns)?;
            tree.put_audit_checkpoint(frontier.size(), &note)?;
        }
        Ok(())
    })?;
    eprintln!("bench-evidence: {n} tree appends done");
    let chain = chain_store(&dir.join("chain"))?;
    let chain_rates = append_run(n, &marks, |e| chain_put(&chain, e, false))?;
    drop(chain);
    std::fs::remove_dir_all(dir.join("chain"))?;

    // Synced: the real console path against the chain's synced put.
    let (core, _) = Core::open(&dir.join("synced"), system_clock())?;
    let start = Instant::now();
    for i in 0..o.synced {
        core.console.append_audit(draft(i))?;
    }
    let synced_tree = o.synced as f64 / start.elapsed().as_secs_f64();
    let chain = chain_store(&dir.join("synced-chain"))?;
    let synced_chain = append_run(o.synced, &[o.synced], |e| chain_put(&chain, e, true))?
        .first()
        .map_or(0.0, |r| r.1);

    // Proofs at full size: the middle entry's inclusion, and that the log
    // extends the one at half its size.
    let checkpoint = audit_log::checkpoint_now(&tree, &signer, 1)?;
    let leaves = tree.audit_leaves(n);
    let inclusion = merkle::inclusion_proof(&leaves, n / 2, n)?;
    let consistency = merkle::consistency_proof(&leaves, n / 2, n)?;
    let root = frontier.root();
    let old_root = merkle::root_at(&leaves, n / 2)?;
    let entry_leaf = {
        let e: AuditEntry = tree
            .record(
                Cf::Audit,
                &vigil_appliance::db::records::id_key(
                    vigil_appliance::db::records::AUDIT,
                    n / 2 + 1,
                ),
            )?
            .context("middle entry")?;
        merkle::leaf_hash(&vigil_appliance::db::audit_log::leaf_data(&e))
    };
    let start = Instant::now();
    const ROUNDS: u32 = 1_000;
    for _ in 0..ROUNDS {
        merkle::verify_inclusion(&entry_leaf, n / 2, n, &inclusion, &root)?;
        merkle::verify_consistency(n / 2, n, &consistency, &old_root, &root)?;
    }
    let proof_verify_us = start.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);
    let start = Instant::now();
    let report = audit_log::verify_stored(&tree, &signer.public_key())?;
    let full_verify_s = start.elapsed().as_secs_f64();
    drop(checkpoint);
    Ok(AuditFigures {
        tree_rates,
        chain_rates,
        synced_tree,
        synced_chain,
        inclusion_hashes: inclusion.len(),
        consistency_hashes: consistency.len(),
        proof_verify_us,
        full_verify_s,
        full_verify_ok: report.ok(),
    })
}

fn main() -> Result<()> {
    let o = parse()?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let core = Arc::new(Core::open(&data, system_clock())?.0);
    let now = vigil_web_ui::system_now_ns();
    let t0 = now - 3_600_000_000_000;
    let incident = fill(&core, o.events, t0)?;
    eprintln!("bench-evidence: {} events stored", o.events);
    let (reference, ref_events) = reference(&core, incident, &dir.path().join("ref.jsonl.zst"))?;
    let (bundle, events) = export(&core, incident, now, &dir.path().join("bundle.tar"))?;
    if events != ref_events {
        bail!("the bundle holds {events} events, the reference {ref_events}");
    }
    let check = std::process::Command::new("tar")
        .arg("-tf")
        .arg(dir.path().join("bundle.tar"))
        .output()?;
    if !check.status.success() {
        bail!("tar cannot read the bundle");
    }
    drop(core);
    std::fs::remove_dir_all(&data)?;
    let audit = audit_bench(dir.path(), &o)?;
    report(&o, events, &reference, &bundle, &audit);
    Ok(())
}

fn report(o: &Opts, events: u64, reference: &Run, bundle: &Run, a: &AuditFigures) {
    let ratio = bundle.secs / reference.secs;
    println!("evidence export: incident with {events} events (2 hosts)");
    println!("{:<44} {:>14} {:>14}", "", "bundle", "zstd jsonl ref");
    println!(
        "{:<44} {:>14.2} {:>14.2}",
        "time (s)", bundle.secs, reference.secs
    );
    println!(
        "{:<44} {:>14.1} {:>14.1}",
        "size (MiB)",
        mib(bundle.bytes),
        mib(reference.bytes)
    );
    println!(
        "{:<44} {:>14.1} {:>14.1}",
        "peak RSS (MiB)",
        mib(bundle.peak_rss),
        mib(reference.peak_rss)
    );
    println!("{:<44} {:>14.2}", "time ratio bundle / reference", ratio);
    println!();
    println!(
        "audit log: {} entries (unsynced), rate in entries/s per stretch",
        o.entries
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "up to entry", "merkle tree", "sha256 chain"
    );
    for (t, c) in a.tree_rates.iter().zip(&a.chain_rates) {
        println!("{:<44} {:>14.0} {:>14.0}", t.0, t.1, c.1);
    }
    println!(
        "{:<44} {:>14.0} {:>14.0}",
        format!("synced, {} entries", o.synced),
        a.synced_tree,
        a.synced_chain
    );
    let last = |r: &[(u64, f64)]| r.last().map_or(0.0, |x| x.1);
    println!(
        "{:<44} {:>14.2}",
        "rate ratio tree / chain (last stretch)",
        last(&a.tree_rates) / last(&a.chain_rates)
    );
    println!(
        "{:<44} {:>14}",
        "inclusion proof at full size (hashes)", a.inclusion_hashes
    );
    println!(
        "{:<44} {:>14}",
        "consistency proof half → full (hashes)", a.consistency_hashes
    );
    println!(
        "{:<44} {:>14.1}",
        "verify both proofs (µs)", a.proof_verify_us
    );
    println!("{:<44} {:>14.1}", "full audit verify (s)", a.full_verify_s);
    let json = serde_json::json!({
        "bench": "evidence",
        "events": events,
        "export_s": bundle.secs,
        "export_bytes": bundle.bytes,
        "export_peak_rss_bytes": bundle.peak_rss,
        "reference_s": reference.secs,
        "reference_bytes": reference.bytes,
        "reference_peak_rss_bytes": reference.peak_rss,
        "ratio_export_vs_reference": ratio,
        "audit_entries": o.entries,
        "audit_tree_rate": last(&a.tree_rates),
        "audit_chain_rate": last(&a.chain_rates),
        "ratio_tree_vs_chain": last(&a.tree_rates) / last(&a.chain_rates),
        "audit_synced_rate": a.synced_tree,
        "chain_synced_rate": a.synced_chain,
        "inclusion_proof_bytes": a.inclusion_hashes * 32,
        "consistency_proof_bytes": a.consistency_hashes * 32,
        "proof_verify_us": a.proof_verify_us,
        "full_verify_s": a.full_verify_s,
        "full_verify_ok": a.full_verify_ok,
    });
    println!("{json}");
}
