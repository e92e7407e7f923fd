use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use vigil_proto::ProcessExit;

const HOST: HostId = HostId(7);

fn payload(i: u32) -> Payload {
    Payload::ProcessExit(ProcessExit {
        pid: i,
        exit_code: Some(0),
        exe: Some(format!("/usr/bin/prog-{i}")),
    })
}

fn all_pending(sp: &mut Spool) -> Vec<Event> {
    sp.rewind();
    let mut out = Vec::new();
    loop {
        let chunk = sp.pending(100).unwrap();
        if chunk.is_empty() {
            return out;
        }
        out.extend(chunk);
    }
}

fn small_opts() -> SpoolOptions {
    SpoolOptions {
        max_bytes: 1 << 30,
        max_age_ns: u64::MAX,
        segment_bytes: 4096,
    }
}

#[test]
fn seqs_start_at_one_and_are_gap_free() {
    let dir = tempfile::tempdir().unwrap();
    let mut sp = Spool::open(dir.path(), HOST, small_opts()).unwrap();
    for i in 0..500 {
        assert_eq!(sp.append(1, payload(i)).unwrap(), u64::from(i) + 1);
    }
    let evs = all_pending(&mut sp);
    let seqs: Vec<u64> = evs.iter().map(|e| e.header.seq).collect();
    assert_eq!(seqs, (1..=500).collect::<Vec<_>>());
    assert!(evs.iter().all(|e| e.header.host == HOST));
    assert!(sp.segments.len() > 3, "small segments roll over");
}

#[test]
fn batches_equal_one_by_one_appends_across_rolls_and_bounds() {
    for max_bytes in [1 << 30, 16 * 1024] {
        let opts = SpoolOptions {
            max_bytes,
            ..small_opts()
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut one = Spool::open(a.path(), HOST, opts.clone()).unwrap();
        let mut batch = Spool::open(b.path(), HOST, opts.clone()).unwrap();
        let mut i = 0;
        for size in [1usize, 7, 30, 64, 3, 200, 1] {
            let items: Vec<(u64, Payload)> = (i..i + size as u32)
                .map(|n| (u64::from(n), payload(n)))
                .collect();
            i += size as u32;
            for (ts, p) in items.clone() {
                one.append(ts, p).unwrap();
            }
            batch.append_batch(items).unwrap();
        }
        assert_eq!(all_pending(&mut one), all_pending(&mut batch));
        assert_eq!(one.stats(), batch.stats());
        assert_eq!(one.bytes(), batch.bytes());
        // And after a reopen (what is in the files).
        drop(batch);
        let mut batch = Spool::open(b.path(), HOST, opts).unwrap();
        assert_eq!(all_pending(&mut one), all_pending(&mut batch));
    }
}

#[test]
fn ack_deletes_segments_and_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut sp = Spool::open(dir.path(), HOST, small_opts()).unwrap();
    for i in 0..300 {
        sp.append(1, payload(i)).unwrap();
    }
    let before = sp.segments.len();
    sp.ack(1, 200).unwrap();
    assert!(sp.segments.len() < before);
    drop(sp);
    let mut sp = Spool::open(dir.path(), HOST, small_opts()).unwrap();
    let seqs: Vec<u64> = all_pending(&mut sp).iter().map(|e| e.header.seq).collect();
    assert_eq!(seqs, (201..=300).collect::<Vec<_>>());
    assert_eq!(sp.next_seq(), 301);
    // Everything acked: seq still continues after reopen.
    sp.ack(201, 300).unwrap();
    drop(sp);
    let sp = Spool::open(dir.path(), HOST, small_opts()).unwrap();
    assert_eq!(sp.next_seq(), 301);
}

#[test]
fn out_of_order_acks() {
    let dir = tempfile::tempdir().unwrap();
    let mut sp = Spool::open(dir.path(), HOST, small_opts()).unwrap();
    for i in 0..30 {
        sp.append(1, payload(i)).unwrap();
    }
    sp.ack(11, 20).unwrap();
    let seqs: Vec<u64> = all_pending(&mut sp).iter().map(|e| e.header.seq).collect();
    assert_eq!(seqs, (1..=10).chain(21..=30).collect::<Vec<_>>());
    sp.ack(1, 10).unwrap();
    assert_eq!(sp.acks.upto, 20);
}

#[test]
fn full_spool_drops_oldest_and_spools_loss_record() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SpoolOptions {
        max_bytes: 64 * 1024,
        max_age_ns: u64::MAX,
        segment_bytes: 4096,
    };
    let mut sp = Spool::open(dir.path(), HOST, opts).unwrap();
    for i in 0..5000 {
        sp.append(1, payload(i)).unwrap();
    }
    assert!(sp.bytes() <= 64 * 1024 + 8192, "bounded: {}", sp.bytes());
    let evs = all_pending(&mut sp);
    let losses: Vec<&LossRecord> = evs
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::Loss(l) => Some(l),
            _ => None,
        })
        .collect();
    assert!(!losses.is_empty());
    let lost: u64 = losses.iter().map(|l| l.count).sum();
    assert!(losses.iter().all(|l| l.reason == LossReason::SpoolFull));
    assert_eq!(sp.stats().dropped_total, lost);
    // Every seq ever assigned is either still spooled or inside a loss range.
    assert!(
        losses.iter().any(|l| l.from_seq == 1),
        "the first loss is still reported"
    );
    let mut covered = vec![false; sp.next_seq() as usize];
    for e in &evs {
        covered[e.header.seq as usize] = true;
    }
    for l in &losses {
        for s in l.from_seq..=l.to_seq {
            covered[s as usize] = true;
        }
    }
    assert!(covered[1..].iter().all(|c| *c), "no silent gap");
}

#[test]
fn age_bound_drops_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SpoolOptions {
        max_bytes: 1 << 30,
        max_age_ns: 1_000,
        segment_bytes: 4096,
    };
    let mut sp = Spool::open(dir.path(), HOST, opts).unwrap();
    for i in 0..200 {
        sp.append(100, payload(i)).unwrap();
    }
    sp.append(5_000, payload(999)).unwrap();
    sp.enforce_age(5_500).unwrap();
    let evs = all_pending(&mut sp);
    let loss = evs
        .iter()
        .find_map(|e| match &e.payload {
            Payload::Loss(l) => Some(l.clone()),
            _ => None,
        })
        .expect("loss record");
    assert_eq!(loss.reason, LossReason::SpoolAge);
    assert_eq!(loss.from_seq, 1);
    assert!(loss.count > 0);
}

#[test]
fn torn_tail_is_truncated_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut sp = Spool::open(dir.path(), HOST, small_opts()).unwrap();
    for i in 0..10 {
        sp.append(1, payload(i)).unwrap();
    }
    let path = sp.segments.last().unwrap().path.clone();
    drop(sp);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 9, 9]).unwrap();
    drop(f);
    let mut sp = Spool::open(dir.path(), HOST, small_opts()).unwrap();
    assert_eq!(sp.stats().torn_tails, 1);
    assert_eq!(sp.next_seq(), 11);
    assert_eq!(sp.append(1, payload(10)).unwrap(), 11);
    assert_eq!(all_pending(&mut sp).len(), 11);
}

#[test]
fn corrupt_middle_segment_becomes_loss_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut sp = Spool::open(dir.path(), HOST, small_opts()).unwrap();
    for i in 0..300 {
        sp.append(1, payload(i)).unwrap();
    }
    let first = sp.segments[0].clone();
    drop(sp);
    // Flip a byte in the middle of the first segment.
    let mut bytes = fs::read(&first.path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&first.path, &bytes).unwrap();
    let mut sp = Spool::open(dir.path(), HOST, small_opts()).unwrap();
    let evs = all_pending(&mut sp);
    let loss = evs
        .iter()
        .find_map(|e| match &e.payload {
            Payload::Loss(l) => Some(l.clone()),
            _ => None,
        })
        .expect("loss record for the corrupt range");
    assert_eq!(loss.reason, LossReason::Corrupt);
    assert_eq!(loss.to_seq, first.last_seq);
    assert_eq!(loss.count, loss.to_seq - loss.from_seq + 1);
}

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    Send(u8),
    AckSent(usize),
    Rewind,
    Crash(Garble),
}

#[derive(Debug, Clone)]
enum Garble {
    None,
    RandomTail(Vec<u8>),
    PartialRecord(usize),
    AckTail(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..40).prop_map(Op::Append),
        3 => (1u8..60).prop_map(Op::Send),
        3 => any::<usize>().prop_map(Op::AckSent),
        1 => Just(Op::Rewind),
        1 => prop_oneof![
            Just(Garble::None),
            proptest::collection::vec(any::<u8>(), 1..30).prop_map(Garble::RandomTail),
            (1usize..60).prop_map(Garble::PartialRecord),
            proptest::collection::vec(any::<u8>(), 1..19).prop_map(Garble::AckTail),
        ]
        .prop_map(Op::Crash),
    ]
}

fn garble(dir: &Path, g: &Garble) {
    let last_seg = list_segments(dir).unwrap().into_iter().next_back();
    let append = |path: &Path, bytes: &[u8]| {
        let mut f = OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(bytes).unwrap();
    };
    match g {
        Garble::None => {}
        Garble::RandomTail(b) => {
            if let Some(p) = last_seg {
                append(&p, b);
            }
        }
        Garble::PartialRecord(n) => {
            if let Some(p) = last_seg {
                // A prefix of a well-formed record, as a write cut by the crash.
                let body = postcard::to_allocvec(&Event {
                    header: EventHeader {
                        host: HOST,
                        seq: 1,
                        ts_ns: 1,
                    },
                    payload: payload(1),
                })
                .unwrap();
                let mut rec = (body.len() as u32).to_le_bytes().to_vec();
                rec.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
                rec.extend_from_slice(&body);
                append(&p, &rec[..(*n).min(rec.len() - 1)]);
            }
        }
        Garble::AckTail(b) => append(&dir.join("acks.log"), b),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Nothing acknowledged is re-sent, nothing unacknowledged is lost,
    /// across random crash points with torn tails.
    #[test]
    fn crash_consistency(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut sp = Spool::open(dir.path(), HOST, small_opts()).unwrap();
        let mut model: BTreeMap<u64, Payload> = BTreeMap::new();
        let mut acked: Vec<u64> = Vec::new();
        let mut sent: Vec<(u64, u64)> = Vec::new();
        let mut counter = 0u32;
        let mut next = 1u64;
        for op in ops {
            match op {
                Op::Append(n) => {
                    for _ in 0..n {
                        counter += 1;
                        let seq = sp.append(1, payload(counter)).unwrap();
                        prop_assert_eq!(seq, next, "gap-free seq");
                        next += 1;
                        model.insert(seq, payload(counter));
                    }
                }
                Op::Send(n) => {
                    let batch = sp.pending(n as usize).unwrap();
                    for e in &batch {
                        prop_assert!(!acked.contains(&e.header.seq), "acked seq {} re-sent", e.header.seq);
                        prop_assert_eq!(model.get(&e.header.seq), Some(&e.payload));
                    }
                    if let (Some(f), Some(l)) = (batch.first(), batch.last()) {
                        sent.push((f.header.seq, l.header.seq));
                    }
                }
                Op::AckSent(i) => {
                    if !sent.is_empty() {
                        let (f, l) = sent.remove(i % sent.len());
                        sp.ack(f, l).unwrap();
                        for s in f..=l {
                            if model.remove(&s).is_some() {
                                acked.push(s);
                            }
                        }
                    }
                }
                Op::Rewind => {
                    sp.rewind();
                    sent.clear();
                }
                Op::Crash(g) => {
                    drop(sp);
                    garble(dir.path(), &g);
                    sp = Spool::open(dir.path(), HOST, small_opts()).unwrap();
                    sent.clear();
                    let replay = all_pending(&mut sp);
                    let got: Vec<u64> = replay.iter().map(|e| e.header.seq).collect();
                    let want: Vec<u64> = model.keys().copied().collect();
                    prop_assert_eq!(got, want, "replay after crash");
                    for e in &replay {
                        prop_assert_eq!(model.get(&e.header.seq), Some(&e.payload));
                    }
                    let expect_next = model.keys().chain(acked.iter()).max().map_or(1, |m| m + 1);
                    prop_assert_eq!(sp.next_seq(), expect_next);
                    sp.rewind();
                }
            }
        }
    }
}
