//! The spool's on-disk format: segment files of CRC'd records, the
//! segment scan at open, and the ack log with the acknowledged set it
//! replays into.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use vigil_proto::{Event, LossRecord, Payload};

use super::{io_err, SpoolError};

/// Bytes in a record header (`len` + `crc`).
pub(super) const RECORD_HEADER: usize = 8;
/// Bytes in one ack-log record.
pub(super) const ACK_RECORD: usize = 20;
/// Largest record accepted when scanning (anything larger is corruption).
pub(super) const MAX_RECORD: usize = vigil_proto::limits::MAX_CONTROL_BYTES;

#[derive(Debug, Clone)]
pub(super) struct Segment {
    pub(super) first_seq: u64,
    /// Last seq in the segment; `first_seq - 1` when empty.
    pub(super) last_seq: u64,
    pub(super) bytes: u64,
    /// Timestamp of the newest record (ns).
    pub(super) newest_ts: u64,
    pub(super) path: PathBuf,
}

/// Acknowledged seqs: everything `<= upto`, plus disjoint ranges above it.
#[derive(Debug, Clone, Default)]
pub(super) struct AckSet {
    pub(super) upto: u64,
    pub(super) extra: BTreeMap<u64, u64>,
}

impl AckSet {
    pub(super) fn insert(&mut self, first: u64, last: u64) {
        if last <= self.upto || first > last {
            return;
        }
        let mut first = first.max(self.upto + 1);
        let mut last = last;
        // Merge with every overlapping or adjacent range.
        let overlapping: Vec<(u64, u64)> = self
            .extra
            .range(..=last.saturating_add(1))
            .filter(|(_, &b)| b.saturating_add(1) >= first)
            .map(|(&a, &b)| (a, b))
            .collect();
        for (a, b) in overlapping {
            self.extra.remove(&a);
            first = first.min(a);
            last = last.max(b);
        }
        if first <= self.upto + 1 {
            self.upto = last;
            while let Some((&a, &b)) = self.extra.iter().next() {
                if a > self.upto + 1 {
                    break;
                }
                self.extra.remove(&a);
                self.upto = self.upto.max(b);
            }
        } else {
            self.extra.insert(first, last);
        }
    }

    pub(super) fn contains(&self, seq: u64) -> bool {
        seq <= self.upto
            || self
                .extra
                .range(..=seq)
                .next_back()
                .is_some_and(|(_, &b)| b >= seq)
    }

    pub(super) fn covers(&self, first: u64, last: u64) -> bool {
        if last <= self.upto {
            return true;
        }
        let start = first.max(self.upto + 1);
        self.extra
            .range(..=start)
            .next_back()
            .is_some_and(|(_, &b)| b >= last)
    }

    pub(super) fn highest(&self) -> u64 {
        self.extra
            .values()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(self.upto)
    }
}

pub(super) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("seg-{first_seq:020}.log"))
}

pub(super) fn segment_first_seq(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let seq: u64 = name
        .strip_prefix("seg-")?
        .strip_suffix(".log")?
        .parse()
        .ok()?;
    (seq >= 1).then_some(seq)
}

pub(super) fn list_segments(dir: &Path) -> Result<Vec<PathBuf>, SpoolError> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| segment_first_seq(p).is_some())
        .collect();
    out.sort();
    Ok(out)
}

/// What the scan of one segment found.
pub(super) struct Scan {
    /// Bytes of whole, valid records.
    pub(super) bytes: u64,
    /// Seq of the last valid record.
    pub(super) last_seq: u64,
    /// Timestamp of the newest record (ns).
    pub(super) newest_ts: u64,
    /// A short or corrupt record ends the segment.
    pub(super) torn: bool,
}

pub(super) fn scan_segment(path: &Path, first_seq: u64) -> Result<Scan, SpoolError> {
    let f = File::open(path).map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    let mut r = BufReader::with_capacity(64 * 1024, f);
    let mut scan = Scan {
        bytes: 0,
        last_seq: first_seq - 1,
        newest_ts: 0,
        torn: false,
    };
    loop {
        match read_record(&mut r) {
            Ok(Some((event, n))) if event.header.seq == scan.last_seq + 1 => {
                scan.bytes += n;
                scan.last_seq = event.header.seq;
                scan.newest_ts = scan.newest_ts.max(event.header.ts_ns);
            }
            Ok(None) if scan.bytes == len => break,
            _ => {
                scan.torn = true;
                break;
            }
        }
    }
    Ok(scan)
}

/// Read one record; `Ok(None)` at a clean end, or when the record is short,
/// corrupt or undecodable (the caller decides whether that is torn).
pub(super) fn read_record(r: &mut impl Read) -> io::Result<Option<(Event, u64)>> {
    let mut hdr = [0u8; RECORD_HEADER];
    if !read_full(r, &mut hdr)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes(hdr[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(hdr[4..].try_into().expect("4 bytes"));
    if len > MAX_RECORD {
        return Ok(None);
    }
    let mut body = vec![0u8; len];
    if !read_full(r, &mut body)? || crc32fast::hash(&body) != crc {
        return Ok(None);
    }
    match postcard::from_bytes::<Event>(&body) {
        Ok(ev) => Ok(Some((ev, (RECORD_HEADER + len) as u64))),
        Err(_) => Ok(None),
    }
}

/// Fill `buf` completely; false on EOF before that.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The loss records in a segment, with their seqs.
pub(super) fn read_losses(path: &Path) -> Result<Vec<(u64, LossRecord)>, SpoolError> {
    let f = File::open(path).map_err(io_err(path))?;
    let mut r = BufReader::with_capacity(64 * 1024, f);
    let mut out = Vec::new();
    while let Some((ev, _)) = read_record(&mut r).map_err(io_err(path))? {
        if let Payload::Loss(l) = ev.payload {
            out.push((ev.header.seq, l));
        }
    }
    Ok(out)
}

pub(super) fn read_ack_log(path: &Path) -> Result<(AckSet, u64), SpoolError> {
    let mut acks = AckSet::default();
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((acks, 0)),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut good = 0u64;
    for rec in bytes.chunks_exact(ACK_RECORD) {
        let crc = u32::from_le_bytes(rec[16..].try_into().expect("4 bytes"));
        if crc32fast::hash(&rec[..16]) != crc {
            break;
        }
        let first = u64::from_le_bytes(rec[..8].try_into().expect("8 bytes"));
        let last = u64::from_le_bytes(rec[8..16].try_into().expect("8 bytes"));
        acks.insert(first, last);
        good += ACK_RECORD as u64;
    }
    Ok((acks, good))
}
