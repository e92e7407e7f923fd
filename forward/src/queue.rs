//! The durable queue of one receiver: records wait here, in order, until
//! the sender has delivered them.
//!
//! Layout of the receiver's directory (0700, files 0600):
//! - `seg-<first seq, 20 digits>.q`: segments of records (see `disk`). Only
//!   the newest is appended to; older ones are deleted once every record in
//!   them has been sent.
//! - `cursor`: the highest seq delivered to the receiver.
//!
//! A record is *accepted* once [`Queue::sync`] has returned after its
//! [`Queue::append`]: it survives a crash or power loss from then on. At
//! open every segment is scanned; the first record that is short, fails
//! its CRC or breaks the seq order ends its segment, which is truncated
//! there, and counts in [`QueueStats::torn_records`].
//!
//! Bounds: pending (unsent) bytes never exceed `max_bytes`; an append that
//! would is refused with [`QueueError::Full`] and takes no seq. Disk use is
//! at most `max_bytes` plus one segment of already-sent records.

use std::collections::VecDeque;
use std::fs::{self, DirBuilder, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

mod disk;

use disk::{
    encode_record, list_segments, private_file, read_header, read_payload, segment_path, Cursor,
    MAX_PAYLOAD, RECORD_HEADER,
};

/// Queue failures.
#[derive(Debug, Error)]
pub enum QueueError {
    /// A file operation failed (full disk, permissions…).
    #[error("forwarding queue I/O on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Accepting the record would exceed the queue's byte bound.
    #[error("forwarding queue full ({pending_bytes} of {max_bytes} bytes pending)")]
    Full {
        /// Bytes waiting to be sent.
        pending_bytes: u64,
        /// The bound.
        max_bytes: u64,
    },
    /// A record is larger than a queue record may be.
    #[error("record of {0} bytes is larger than the queue record limit")]
    TooLarge(usize),
    /// A record written earlier no longer matches its CRC.
    #[error("forwarding queue record {seq} in {path} is corrupt")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// The record's seq.
        seq: u64,
    },
}

impl QueueError {
    /// Stable label for counters and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            QueueError::Io { .. } => "io",
            QueueError::Full { .. } => "full",
            QueueError::TooLarge(_) => "too_large",
            QueueError::Corrupt { .. } => "corrupt",
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Queue bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueOptions {
    /// Most bytes (records and their headers) waiting to be sent.
    pub max_bytes: u64,
    /// A new segment is started once the newest reaches this size.
    pub segment_bytes: u64,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            max_bytes: 256 << 20,
            segment_bytes: 8 << 20,
        }
    }
}

/// What the queue holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Records accepted and not yet sent.
    pub pending_records: u64,
    /// Their bytes on disk.
    pub pending_bytes: u64,
    /// When the oldest of them was accepted (ns since the epoch).
    pub oldest_pending_ns: Option<u64>,
    /// Highest seq sent (0: none yet).
    pub sent_seq: u64,
    /// The seq the next accepted record gets.
    pub next_seq: u64,
    /// Records found torn or corrupt (and dropped) when the queue was opened.
    pub torn_records: u64,
}

/// One record read back for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Its per-receiver sequence number.
    pub seq: u64,
    /// When it was accepted, ns since the epoch.
    pub enqueued_ns: u64,
    /// The bytes to send.
    pub payload: Vec<u8>,
}

/// Records read in order, and where the read ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The records, seqs ascending.
    pub records: Vec<Queued>,
    end: Position,
    bytes: u64,
}

/// A place in the queue: a segment (by first seq) and a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    segment: u64,
    offset: u64,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    first_seq: u64,
    len: u64,
    last_seq: Option<u64>,
}

/// A durable FIFO of byte records with per-queue sequence numbers.
pub struct Queue {
    dir: PathBuf,
    opts: QueueOptions,
    segments: VecDeque<Segment>,
    /// Append handle of the newest segment, if it may still grow.
    active: Option<File>,
    /// A segment file was created since the last directory sync.
    dir_dirty: bool,
    cursor: Cursor,
    read: Position,
    reader: Option<(u64, File)>,
    stats: QueueStats,
}

impl Queue {
    /// Opens (or creates) the queue in `dir`, dropping torn tail records.
    pub fn open(dir: &Path, opts: QueueOptions) -> Result<Queue, QueueError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
        let cursor_path = dir.join("cursor");
        let (cursor, sent_seq) = Cursor::open(&cursor_path).map_err(io_err(&cursor_path))?;
        let mut q = Queue {
            dir: dir.to_path_buf(),
            opts,
            segments: VecDeque::new(),
            active: None,
            // The cursor file may just have been created: its directory
            // entry must be durable before anything relies on it.
            dir_dirty: true,
            cursor,
            read: Position {
                segment: 0,
                offset: 0,
            },
            reader: None,
            stats: QueueStats {
                sent_seq,
                ..QueueStats::default()
            },
        };
        for first in list_segments(dir).map_err(io_err(dir))? {
            q.load_segment(first)?;
        }
        q.finish_open()?;
        Ok(q)
    }

    /// Scans one segment at open: truncates it at its first bad record and
    /// counts what is pending in it.
    fn load_segment(&mut self, first_seq: u64) -> Result<(), QueueError> {
        let path = segment_path(&self.dir, first_seq);
        let file = private_file(&path, false).map_err(io_err(&path))?;
        let file_len = file.metadata().map_err(io_err(&path))?.len();
        let (mut offset, mut expected, mut last_seq) = (0u64, first_seq, None);
        while offset < file_len {
            let header = read_header(&file, offset, file_len).map_err(io_err(&path))?;
            let good = match header {
                Some(h) if h.seq == expected => read_payload(&file, offset, &h)
                    .map_err(io_err(&path))?
                    .map(|_| h),
                _ => None,
            };
            let Some(h) = good else {
                tracing::warn!(path = %path.display(), offset, "torn forwarding queue record dropped");
                file.set_len(offset).map_err(io_err(&path))?;
                file.sync_all().map_err(io_err(&path))?;
                self.stats.torn_records += 1;
                break;
            };
            if h.seq > self.stats.sent_seq {
                if self.stats.pending_records == 0 {
                    self.read = Position {
                        segment: first_seq,
                        offset,
                    };
                    self.stats.oldest_pending_ns = Some(h.enqueued_ns);
                }
                self.stats.pending_records += 1;
                self.stats.pending_bytes += h.size();
            }
            last_seq = Some(h.seq);
            expected = h.seq + 1;
            offset += h.size();
        }
        self.segments.push_back(Segment {
            first_seq,
            len: offset,
            last_seq,
        });
        Ok(())
    }

    /// After the scan: settles the next seq and the read position, deletes
    /// segments that hold nothing pending, reopens the newest for appends.
    fn finish_open(&mut self) -> Result<(), QueueError> {
        let last = self.segments.iter().filter_map(|s| s.last_seq).max();
        self.stats.next_seq = last.unwrap_or(0).max(self.stats.sent_seq) + 1;
        if self.stats.pending_records == 0 {
            self.read = Position {
                segment: self.stats.next_seq,
                offset: 0,
            };
        }
        // Every segment before the read position, and empty ones, go.
        let keep_from = self.read.segment;
        let mut kept = VecDeque::new();
        for seg in std::mem::take(&mut self.segments) {
            let is_newest = seg.last_seq.is_some() && seg.last_seq == last;
            if (seg.first_seq < keep_from && !is_newest) || seg.last_seq.is_none() {
                let path = segment_path(&self.dir, seg.first_seq);
                fs::remove_file(&path).map_err(io_err(&path))?;
                self.dir_dirty = true;
            } else {
                kept.push_back(seg);
            }
        }
        self.segments = kept;
        if self.stats.pending_records == 0 {
            // Nothing pending: the read position follows the next append.
            self.read = match self.segments.back() {
                Some(s) => Position {
                    segment: s.first_seq,
                    offset: s.len,
                },
                None => Position {
                    segment: self.stats.next_seq,
                    offset: 0,
                },
            };
        }
        if let Some(seg) = self.segments.back() {
            if seg.last_seq.map(|l| l + 1) == Some(self.stats.next_seq) {
                let path = segment_path(&self.dir, seg.first_seq);
                self.active = Some(private_file(&path, true).map_err(io_err(&path))?);
            }
        }
        self.sync_dir()
    }

    /// Counters and gauges of the queue now.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// The queue's bounds.
    pub fn options(&self) -> QueueOptions {
        self.opts
    }

    /// Appends one record; `render` gets its seq and returns its bytes.
    /// Not durable until [`Queue::sync`]. Refused (no seq taken) when full.
    pub fn append(
        &mut self,
        enqueued_ns: u64,
        render: impl FnOnce(u64) -> Vec<u8>,
    ) -> Result<u64, QueueError> {
        let seq = self.stats.next_seq;
        let payload = render(seq);
        if payload.len() > MAX_PAYLOAD as usize {
            return Err(QueueError::TooLarge(payload.len()));
        }
        let size = RECORD_HEADER + payload.len() as u64;
        if self.stats.pending_bytes + size > self.opts.max_bytes {
            return Err(QueueError::Full {
                pending_bytes: self.stats.pending_bytes,
                max_bytes: self.opts.max_bytes,
            });
        }
        let needs_new = match (&self.active, self.segments.back()) {
            (Some(_), Some(seg)) => seg.len >= self.opts.segment_bytes,
            _ => true,
        };
        if needs_new {
            self.roll(seq)?;
        }
        let seg = self.segments.back_mut().expect("roll made a segment");
        let path = segment_path(&self.dir, seg.first_seq);
        let file = self.active.as_mut().expect("roll opened the segment");
        let bytes = encode_record(seq, enqueued_ns, &payload);
        if let Err(e) = file.write_all(&bytes) {
            // A partial write would break the segment: cut it back.
            let _ = file.set_len(seg.len);
            return Err(io_err(&path)(e));
        }
        seg.len += size;
        seg.last_seq = Some(seq);
        if self.stats.pending_records == 0 {
            self.stats.oldest_pending_ns = Some(enqueued_ns);
        }
        self.stats.pending_records += 1;
        self.stats.pending_bytes += size;
        self.stats.next_seq = seq + 1;
        Ok(seq)
    }

    /// Closes the newest segment (durably) and starts one at `first_seq`.
    fn roll(&mut self, first_seq: u64) -> Result<(), QueueError> {
        if let (Some(file), Some(seg)) = (self.active.take(), self.segments.back()) {
            let path = segment_path(&self.dir, seg.first_seq);
            file.sync_data().map_err(io_err(&path))?;
        }
        let path = segment_path(&self.dir, first_seq);
        let file = private_file(&path, true).map_err(io_err(&path))?;
        file.set_len(0).map_err(io_err(&path))?;
        self.segments.push_back(Segment {
            first_seq,
            len: 0,
            last_seq: None,
        });
        if self.stats.pending_records == 0 {
            self.read = Position {
                segment: first_seq,
                offset: 0,
            };
        }
        self.active = Some(file);
        self.dir_dirty = true;
        Ok(())
    }

    /// Makes every appended record durable (fdatasync, and the directory
    /// when a segment was created).
    pub fn sync(&mut self) -> Result<(), QueueError> {
        if let (Some(file), Some(seg)) = (&self.active, self.segments.back()) {
            let path = segment_path(&self.dir, seg.first_seq);
            file.sync_data().map_err(io_err(&path))?;
        }
        self.sync_dir()
    }

    fn sync_dir(&mut self) -> Result<(), QueueError> {
        if self.dir_dirty {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&self.dir))?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Reads up to `max_records` pending records (and about `max_bytes`,
    /// at least one) from the oldest, without consuming them.
    pub fn peek(&mut self, max_records: usize, max_bytes: u64) -> Result<Batch, QueueError> {
        let mut pos = self.read;
        let mut batch = Batch {
            records: Vec::new(),
            end: pos,
            bytes: 0,
        };
        let pending = self.stats.pending_records as usize;
        while batch.records.len() < max_records.min(pending) && batch.bytes < max_bytes.max(1) {
            let Some(seg) = self
                .segments
                .iter()
                .find(|s| s.first_seq == pos.segment)
                .copied()
            else {
                break;
            };
            if pos.offset >= seg.len {
                match self.segments.iter().find(|s| s.first_seq > seg.first_seq) {
                    Some(next) => {
                        pos = Position {
                            segment: next.first_seq,
                            offset: 0,
                        };
                        continue;
                    }
                    None => break,
                }
            }
            let path = segment_path(&self.dir, seg.first_seq);
            let file = self.reader_for(seg.first_seq)?;
            let corrupt = || QueueError::Corrupt {
                path: path.clone(),
                seq: 0,
            };
            let h = read_header(file, pos.offset, seg.len)
                .map_err(io_err(&path))?
                .ok_or_else(corrupt)?;
            let payload = read_payload(file, pos.offset, &h)
                .map_err(io_err(&path))?
                .ok_or(QueueError::Corrupt {
                    path: path.clone(),
                    seq: h.seq,
                })?;
            pos.offset += h.size();
            batch.bytes += h.size();
            batch.records.push(Queued {
                seq: h.seq,
                enqueued_ns: h.enqueued_ns,
                payload,
            });
        }
        batch.end = pos;
        Ok(batch)
    }

    fn reader_for(&mut self, first_seq: u64) -> Result<&File, QueueError> {
        if self.reader.as_ref().map(|(f, _)| *f) != Some(first_seq) {
            let path = segment_path(&self.dir, first_seq);
            let file = File::open(&path).map_err(io_err(&path))?;
            self.reader = Some((first_seq, file));
        }
        Ok(&self.reader.as_ref().expect("just set").1)
    }

    /// Marks `batch` delivered: stores the cursor durably, then deletes
    /// segments that hold nothing pending any more.
    pub fn commit(&mut self, batch: &Batch) -> Result<(), QueueError> {
        let Some(last) = batch.records.last() else {
            return Ok(());
        };
        let path = self.dir.join("cursor");
        self.cursor.store(last.seq).map_err(io_err(&path))?;
        self.stats.sent_seq = last.seq;
        self.stats.pending_records -= batch.records.len() as u64;
        self.stats.pending_bytes -= batch.bytes;
        self.read = batch.end;
        while self.segments.len() > 1 && self.segments[0].first_seq < self.read.segment {
            let seg = self.segments.pop_front().expect("len > 1");
            if self.reader.as_ref().map(|(f, _)| *f) == Some(seg.first_seq) {
                self.reader = None;
            }
            let path = segment_path(&self.dir, seg.first_seq);
            fs::remove_file(&path).map_err(io_err(&path))?;
            self.dir_dirty = true;
        }
        self.stats.oldest_pending_ns = if self.stats.pending_records == 0 {
            None
        } else {
            self.peek(1, 1)?.records.first().map(|r| r.enqueued_ns)
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests;
