//! Golden bytes of every record the appliance stores and every key layout.
//!
//! These bytes are on disk in every appliance's RocksDB. postcard writes
//! fields in declaration order, without names, and enum variants by index:
//! reordering a field or a variant, or changing a type, silently corrupts
//! every stored record. A failing case here means a format change that
//! needs a migration — never just new hex. (Wire and event encodings are
//! pinned in `proto/tests/golden.rs`.)

use super::keys::{event_key, health_key, host_key, host_tag, seq_key};
use super::quarantine::{QuarantineReason, QuarantineRecord};
use super::records::PipelineState;
use super::seqset::SeqSet;
use super::{encode, HealthSample, HostCounts, HostRecord, RetentionPolicy, RetentionRun};
use crate::identity::{Claim, Conflict};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vigil_proto::HostId;

fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let mut seqs = SeqSet::default();
    for s in [1, 2, 3, 7] {
        seqs.insert(s);
    }
    vec![
        (
            "HostRecord",
            encode(&HostRecord {
                id: 0x0102,
                hostname: "h1".into(),
                os: "linux".into(),
                addrs: vec![
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                    IpAddr::V6(Ipv6Addr::LOCALHOST),
                ],
                sensor_version: "0.1".into(),
                enrolled_ns: 5,
                last_seen_ns: 6,
                heartbeat_ms: 10_000,
                revoked_ns: Some(7),
                isolated: true,
                cpu_pct: 1.5,
                rss_bytes: 300,
                events_per_s: 2.5,
                spool_bytes: 400,
                dropped_total: 8,
            }),
        ),
        (
            "HostCounts",
            encode(&HostCounts {
                events_total: 1,
                duplicates_total: 2,
                lost_total: 300,
                loss_records: 4,
            }),
        ),
        (
            "HealthSample",
            encode(&HealthSample {
                ts_ns: 1,
                cpu_pct: 0.5,
                rss_bytes: 2,
                events_per_s: 3.0,
                spool_bytes: 4,
                dropped_total: 5,
            }),
        ),
        (
            "RetentionPolicy",
            encode(&RetentionPolicy {
                max_age_days: 30,
                max_bytes: 1 << 40,
            }),
        ),
        (
            "RetentionRun",
            encode(&RetentionRun {
                ran_ns: 1,
                cutoff_ns: 2,
                bytes_before: 3,
                bytes_after: 4,
            }),
        ),
        ("SeqSet", encode(&seqs)),
        (
            "QuarantineRecord",
            encode(&QuarantineRecord {
                reason: QuarantineReason::InvalidLoss,
                ts_ns: 9,
                payload: vec![1, 2],
            }),
        ),
        (
            "Conflicts",
            encode(&vec![
                Conflict {
                    host: HostId(2),
                    claim: Claim::Addr(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))),
                    held_by: HostId(1),
                },
                Conflict {
                    host: HostId(2),
                    claim: Claim::Name("db01".into()),
                    held_by: HostId(1),
                },
            ]),
        ),
        (
            "PipelineState",
            encode(&PipelineState {
                detector: vec![0xaa, 0xbb],
                cursors: BTreeMap::from([(1, 10), (2, 20)]),
            }),
        ),
        ("event_key", event_key(HostId(1), 2, 3).to_vec()),
        ("seq_key", seq_key(HostId(1), 2).to_vec()),
        (
            "host_key(counts)",
            host_key(HostId(1), host_tag::COUNTS).to_vec(),
        ),
        ("health_key", health_key(HostId(1), 2).to_vec()),
    ]
}

/// (name, hex) as stored today.
const GOLDEN: &[(&str, &str)] = &[
    ("HostRecord", "8202026831056c696e757802000a000001010000000000000000000000000000000103302e310506904e0107010000c03fac0200002040900308"),
    ("HostCounts", "0102ac0204"),
    ("HealthSample", "010000003f02000040400405"),
    ("RetentionPolicy", "1e808080808020"),
    ("RetentionRun", "01020304"),
    ("SeqSet", "0201030707"),
    ("QuarantineRecord", "0209020102"),
    ("Conflicts", "020200000a000005010201046462303101"),
    ("PipelineState", "02aabb02010a0214"),
    ("event_key", "000000000000000100000000000000020000000000000003"),
    ("seq_key", "00000000000000010000000000000002"),
    ("host_key(counts)", "000000000000000102"),
    ("health_key", "0000000000000001030000000000000002"),
];

#[test]
fn stored_records_and_keys_keep_their_bytes() {
    let got: Vec<(&str, String)> = cases()
        .into_iter()
        .map(|(n, b)| (n, hex::encode(b)))
        .collect();
    let table: String = got
        .iter()
        .map(|(n, h)| format!("    (\"{n}\", \"{h}\"),\n"))
        .collect();
    assert_eq!(
        got.len(),
        GOLDEN.len(),
        "cases and golden table differ:\n{table}"
    );
    for ((name, hex), (gname, ghex)) in got.iter().zip(GOLDEN) {
        assert_eq!(name, gname, "case order changed");
        assert_eq!(
            hex, ghex,
            "{name}: stored bytes changed (a format change needs a migration)"
        );
    }
}
