//! The queue's on-disk formats: segment records and the cursor file.
//!
//! Record: `[len u32 LE][crc32 u32 LE][seq u64 LE][enqueued_ns u64 LE][payload]`,
//! the CRC covering everything after itself. Cursor: two 16-byte slots
//! `[sent seq u64 LE][crc32 u32 LE][magic u32 LE]`, written alternately so a
//! torn cursor write leaves the other slot, one step behind, intact.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Bytes before a record's payload.
pub(crate) const RECORD_HEADER: u64 = 24;
/// Largest payload a record may hold (a syslog message is far smaller).
pub(crate) const MAX_PAYLOAD: u32 = 1 << 20;
const CURSOR_MAGIC: u32 = 0x5643_5131; // "VCQ1"
const CURSOR_SLOT: u64 = 16;

/// Creates a file readable by its owner only.
pub(crate) fn private_file(path: &Path, append: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(!append)
        .append(append)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// `seg-<first seq, 20 digits>.q` in `dir`.
pub(crate) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("seg-{first_seq:020}.q"))
}

/// First seqs of the segments in `dir`, ascending.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_prefix("seg-").and_then(|s| s.strip_suffix(".q")) {
            if let Ok(first) = n.parse::<u64>() {
                out.push(first);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// One record's bytes, ready to append.
pub(crate) fn encode_record(seq: u64, enqueued_ns: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER as usize + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&enqueued_ns.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

/// A record's header, read before its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub len: u32,
    pub crc: u32,
    pub seq: u64,
    pub enqueued_ns: u64,
}

impl RecordHeader {
    /// Bytes the whole record takes.
    pub fn size(&self) -> u64 {
        RECORD_HEADER + u64::from(self.len)
    }
}

/// Reads the header at `offset`; `None` when fewer than a header's bytes
/// remain before `file_len` or the length is impossible.
pub(crate) fn read_header(
    file: &File,
    offset: u64,
    file_len: u64,
) -> io::Result<Option<RecordHeader>> {
    if offset + RECORD_HEADER > file_len {
        return Ok(None);
    }
    let mut b = [0u8; RECORD_HEADER as usize];
    file.read_exact_at(&mut b, offset)?;
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let h = RecordHeader {
        len: u32_at(0),
        crc: u32_at(4),
        seq: u64_at(8),
        enqueued_ns: u64_at(16),
    };
    if h.len > MAX_PAYLOAD || offset + h.size() > file_len {
        return Ok(None);
    }
    Ok(Some(h))
}

/// Reads the payload of the record `h` at `offset`; `None` on a CRC mismatch.
pub(crate) fn read_payload(
    file: &File,
    offset: u64,
    h: &RecordHeader,
) -> io::Result<Option<Vec<u8>>> {
    let mut payload = vec![0u8; h.len as usize];
    file.read_exact_at(&mut payload, offset + RECORD_HEADER)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&h.seq.to_le_bytes());
    hasher.update(&h.enqueued_ns.to_le_bytes());
    hasher.update(&payload);
    Ok((hasher.finalize() == h.crc).then_some(payload))
}

/// The committed cursor: the highest seq a receiver has been sent.
pub(crate) struct Cursor {
    file: File,
    next_slot: u64,
}

impl Cursor {
    /// Opens (or creates) `path`, returning it and the sent seq (0 if none).
    pub fn open(path: &Path) -> io::Result<(Cursor, u64)> {
        let file = private_file(path, false)?;
        let len = file.metadata()?.len();
        if len == 0 {
            // Possibly just created: make its directory entry durable, or a
            // crash could lose the file with every cursor stored in it and
            // resend what receivers already have.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
        }
        let mut best: Option<(u64, u64)> = None; // (seq, slot)
        for slot in 0..2 {
            if (slot + 1) * CURSOR_SLOT > len {
                break;
            }
            let mut b = [0u8; CURSOR_SLOT as usize];
            file.read_exact_at(&mut b, slot * CURSOR_SLOT)?;
            let seq = u64::from_le_bytes(b[0..8].try_into().expect("8 bytes"));
            let crc = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
            let magic = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
            let valid = magic == CURSOR_MAGIC && crc == crc32fast::hash(&b[0..8]);
            if valid && best.is_none_or(|(b, _)| seq > b) {
                best = Some((seq, slot));
            }
        }
        // Write next to the other slot than the one holding the newest good
        // value, so a torn write never destroys it.
        let (sent, next_slot) = match best {
            Some((seq, slot)) => (seq, 1 - slot),
            None => (0, 0),
        };
        Ok((Cursor { file, next_slot }, sent))
    }

    /// Durably records `sent` (written, then fdatasync'd).
    pub fn store(&mut self, sent: u64) -> io::Result<()> {
        let mut b = [0u8; CURSOR_SLOT as usize];
        b[0..8].copy_from_slice(&sent.to_le_bytes());
        let crc = crc32fast::hash(&b[0..8]);
        b[8..12].copy_from_slice(&crc.to_le_bytes());
        b[12..16].copy_from_slice(&CURSOR_MAGIC.to_le_bytes());
        self.file.write_all_at(&b, self.next_slot * CURSOR_SLOT)?;
        self.file.sync_data()?;
        self.next_slot = 1 - self.next_slot;
        Ok(())
    }
}
