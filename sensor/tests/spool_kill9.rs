//! A real `kill -9` of a process appending to a spool: after restart every
//! record it reported as appended and not acked is replayed, none it acked is.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use vigil_proto::{HostId, Payload};
use vigil_sensor::spool::{Spool, SpoolOptions};

#[test]
fn kill_9_loses_nothing_unacked_and_resends_nothing_acked() {
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil-sensor"))
            .args(["debug-spool-writer", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut last = (0u64, 0u64);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() == 4 {
                    last = (f[1].parse().unwrap(), f[3].parse().unwrap());
                }
            }
            last
        });
        std::thread::sleep(Duration::from_millis(150 + 100 * round));
        // SIGKILL, mid-write at some random point.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let _ = child.wait();
        let (appended, acked) = reader.join().unwrap();
        assert!(appended > 1000, "child made progress: {appended}");

        let mut sp = Spool::open(dir.path(), HostId(1), SpoolOptions::default()).unwrap();
        let mut seqs = Vec::new();
        loop {
            let chunk = sp.pending(1000).unwrap();
            if chunk.is_empty() {
                break;
            }
            for e in chunk {
                if let Payload::ProcessExit(p) = &e.payload {
                    assert_eq!(u64::from(p.pid), e.header.seq, "payload intact");
                }
                seqs.push(e.header.seq);
            }
        }
        let first = *seqs.first().unwrap();
        assert!(
            first > acked,
            "acked seq {first} replayed (acked up to {acked})"
        );
        // An ack after the last progress line can cover at most up to `appended`.
        assert!(
            first <= appended + 1,
            "unacked records lost: first replayed {first}, appended {appended}"
        );
        let last = *seqs.last().unwrap();
        assert!(
            last >= appended,
            "reported-appended seq {appended} lost (have up to {last})"
        );
        assert_eq!(seqs, (first..=last).collect::<Vec<_>>(), "gap-free replay");
        assert_eq!(sp.next_seq(), last + 1);
    }
}
