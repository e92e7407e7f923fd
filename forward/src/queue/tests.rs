use super::*;
use proptest::prelude::*;
use std::os::unix::fs::MetadataExt;

fn opts(max_bytes: u64, segment_bytes: u64) -> QueueOptions {
    QueueOptions {
        max_bytes,
        segment_bytes,
    }
}

fn push(q: &mut Queue, text: &str) -> u64 {
    let seq = q.append(1_000, |_| text.as_bytes().to_vec()).unwrap();
    q.sync().unwrap();
    seq
}

fn drain(q: &mut Queue) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    loop {
        let b = q.peek(3, 1 << 20).unwrap();
        if b.records.is_empty() {
            return out;
        }
        out.extend(
            b.records
                .iter()
                .map(|r| (r.seq, String::from_utf8(r.payload.clone()).unwrap())),
        );
        q.commit(&b).unwrap();
    }
}

#[test]
fn records_come_back_in_order_once_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let mut q = Queue::open(&path, opts(1 << 20, 64)).unwrap();
    for i in 0..10 {
        assert_eq!(push(&mut q, &format!("m{i}")), i + 1);
    }
    let first = q.peek(4, 1 << 20).unwrap();
    q.commit(&first).unwrap();
    drop(q);
    let mut q = Queue::open(&path, opts(1 << 20, 64)).unwrap();
    let s = q.stats();
    assert_eq!((s.sent_seq, s.pending_records, s.next_seq), (4, 6, 11));
    let rest = drain(&mut q);
    assert_eq!(rest.first().unwrap(), &(5, "m4".to_string()));
    assert_eq!(
        rest.iter().map(|r| r.0).collect::<Vec<_>>(),
        (5..=10).collect::<Vec<_>>()
    );
    assert_eq!(q.stats().pending_bytes, 0);
    assert_eq!(q.stats().oldest_pending_ns, None);
    // Sent segments are gone; seqs go on after a reopen of an empty queue.
    drop(q);
    let mut q = Queue::open(&path, opts(1 << 20, 64)).unwrap();
    assert_eq!(push(&mut q, "after"), 11);
    assert!(list_segments(&path).unwrap().len() <= 2);
}

#[test]
fn files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let mut q = Queue::open(&path, QueueOptions::default()).unwrap();
    push(&mut q, "x");
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o700);
    for entry in fs::read_dir(&path).unwrap() {
        let mode = entry.unwrap().metadata().unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn a_full_queue_refuses_without_taking_a_seq_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let size = RECORD_HEADER + 4;
    let mut q = Queue::open(dir.path(), opts(3 * size, 1 << 20)).unwrap();
    for _ in 0..3 {
        push(&mut q, "abcd");
    }
    let err = q.append(0, |_| b"abcd".to_vec()).unwrap_err();
    assert_eq!(err.reason(), "full");
    assert_eq!(q.stats().next_seq, 4);
    let b = q.peek(1, 1).unwrap();
    q.commit(&b).unwrap();
    assert_eq!(push(&mut q, "abcd"), 4);
}

#[test]
fn a_torn_tail_is_dropped_and_counted_earlier_records_intact() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), QueueOptions::default()).unwrap();
    for i in 0..5 {
        push(&mut q, &format!("record {i}"));
    }
    drop(q);
    let seg = segment_path(dir.path(), 1);
    let len = fs::metadata(&seg).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    let mut q = Queue::open(dir.path(), QueueOptions::default()).unwrap();
    assert_eq!(q.stats().torn_records, 1);
    let got = drain(&mut q);
    assert_eq!(got.len(), 4);
    assert_eq!(got[3], (4, "record 3".to_string()));
    // The truncated seq is taken again by the next record: it never left.
    assert_eq!(push(&mut q, "new"), 5);
}

#[test]
fn a_flipped_byte_ends_the_segment_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), QueueOptions::default()).unwrap();
    for i in 0..3 {
        push(&mut q, &format!("r{i}"));
    }
    drop(q);
    let seg = segment_path(dir.path(), 1);
    let mut bytes = fs::read(&seg).unwrap();
    let second = (RECORD_HEADER + 2) as usize;
    bytes[second + RECORD_HEADER as usize] ^= 1;
    fs::write(&seg, bytes).unwrap();
    let mut q = Queue::open(dir.path(), QueueOptions::default()).unwrap();
    assert_eq!(q.stats().torn_records, 1);
    assert_eq!(drain(&mut q), vec![(1, "r0".to_string())]);
}

#[test]
fn a_torn_cursor_write_falls_back_to_the_other_slot() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), QueueOptions::default()).unwrap();
    for i in 0..4 {
        push(&mut q, &format!("r{i}"));
    }
    for _ in 0..2 {
        let b = q.peek(1, 1).unwrap();
        q.commit(&b).unwrap();
    }
    drop(q);
    // Slot 1 holds seq 2 (the newest); tear it.
    let cur = dir.path().join("cursor");
    let mut bytes = fs::read(&cur).unwrap();
    bytes[16] ^= 0xff;
    fs::write(&cur, bytes).unwrap();
    let mut q = Queue::open(dir.path(), QueueOptions::default()).unwrap();
    assert_eq!(
        q.stats().sent_seq,
        1,
        "one step behind: a resend, never a loss"
    );
    assert_eq!(drain(&mut q).first().unwrap().0, 2);
}

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    Send(u8),
    Crash { tear: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..40).prop_map(Op::Append),
        2 => (1u8..5).prop_map(Op::Send),
        1 => (0u8..30).prop_map(|tear| Op::Crash { tear }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Nothing accepted is lost or sent twice across crashes that tear an
    /// unsynced tail (only bytes after the last sync may be torn).
    #[test]
    fn accepted_records_are_delivered_once_in_order(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(1 << 20, 200);
        let mut q = Queue::open(dir.path(), o).unwrap();
        let mut accepted: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut delivered: Vec<(u64, Vec<u8>)> = Vec::new();
        for op in ops {
            match op {
                Op::Append(n) => {
                    let seq = q.append(0, |s| vec![n; (s % 7 + 1) as usize]).unwrap();
                    q.sync().unwrap();
                    accepted.push((seq, vec![n; (seq % 7 + 1) as usize]));
                }
                Op::Send(n) => {
                    let b = q.peek(n as usize, 1 << 20).unwrap();
                    delivered.extend(b.records.iter().map(|r| (r.seq, r.payload.clone())));
                    q.commit(&b).unwrap();
                }
                Op::Crash { tear } => {
                    // An append that never synced: written, then torn.
                    let _ = q.append(0, |_| vec![0xEE; 30]).unwrap();
                    let seg = q.segments.back().unwrap().first_seq;
                    drop(q);
                    let p = segment_path(dir.path(), seg);
                    let len = fs::metadata(&p).unwrap().len();
                    let cut = u64::from(tear).min(RECORD_HEADER + 29);
                    fs::OpenOptions::new().write(true).open(&p).unwrap()
                        .set_len(len - RECORD_HEADER - 30 + cut).unwrap();
                    q = Queue::open(dir.path(), o).unwrap();
                }
            }
        }
        let b = q.peek(usize::MAX, u64::MAX).unwrap();
        delivered.extend(b.records.iter().map(|r| (r.seq, r.payload.clone())));
        prop_assert_eq!(delivered, accepted);
    }
}
