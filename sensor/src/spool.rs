//! Durable on-disk spool: every event is appended here (and gets its `seq`)
//! before anything tries to send it, and is deleted only once acknowledged.
//!
//! Layout of the spool directory:
//! - `seg-<first seq, 20 digits>.log`: segment files of records
//!   `[len u32 LE][crc32 u32 LE][postcard(Event)]`. Only the newest segment
//!   is appended to; a segment is deleted when all its seqs are acknowledged.
//! - `acks.log`: fixed 20-byte records `[first u64 LE][last u64 LE][crc32 u32 LE]`,
//!   one per acknowledged (or deliberately dropped) seq range. Replayed at open
//!   so that nothing acknowledged is ever sent again, and compacted when large.
//!
//! Crash safety: a completed `append` is in the page cache, so it survives
//! `kill -9`; [`Spool::sync`] (called before a batch is sent) makes it survive
//! power loss too. At open, every segment is scanned; the first record that is
//! short or fails its checksum ends the segment, the file is truncated there,
//! and the event is counted in [`SpoolStats::torn_tails`].
//!
//! Bounds: when the segments exceed `max_bytes`, or the newest record of a
//! segment is older than `max_age`, the oldest segment is dropped and a
//! [`LossRecord`] naming the dropped unacknowledged seq range is spooled, so
//! loss is never silent.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;
use vigil_proto::{Event, EventHeader, HostId, LossReason, LossRecord, Payload};

mod format;

use format::{
    list_segments, read_ack_log, read_losses, read_record, scan_segment, segment_first_seq,
    segment_path, AckSet, Segment, ACK_RECORD, MAX_RECORD, RECORD_HEADER,
};

/// Ack log size that triggers compaction.
const ACK_LOG_COMPACT_BYTES: u64 = 64 * 1024;

/// Spool failures.
#[derive(Debug, Error)]
pub enum SpoolError {
    /// A file operation failed (full disk, permissions, ...).
    #[error("spool I/O on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An event could not be encoded (never expected for well-formed events).
    #[error("cannot encode event: {0}")]
    Encode(String),
    /// An event is larger than a spool record may be.
    #[error("event of {0} bytes is larger than the spool record limit")]
    TooLarge(usize),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Spool bounds and layout knobs.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// Total bytes of segment files kept before the oldest is dropped.
    pub max_bytes: u64,
    /// Records older than this (ns) are dropped by [`Spool::enforce_age`].
    pub max_age_ns: u64,
    /// A segment is closed and a new one started at this size.
    pub segment_bytes: u64,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        SpoolOptions {
            max_bytes: 1 << 30,
            max_age_ns: 7 * 24 * 3600 * 1_000_000_000,
            segment_bytes: 8 << 20,
        }
    }
}

impl SpoolOptions {
    /// Segment size actually used: never more than an eighth of the bound,
    /// so that dropping one segment frees a small share of the spool.
    fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.min(self.max_bytes / 8).max(4096)
    }
}

/// Counters the spool exposes for health reporting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Segments whose tail was torn (short or failing its checksum) at open.
    pub torn_tails: u64,
    /// Unacknowledged events dropped because of the byte or age bound or corruption.
    pub dropped_total: u64,
    /// Events appended since open.
    pub appended_total: u64,
}

/// The durable spool. Single owner; wrap it in a mutex to share.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    host: HostId,
    opts: SpoolOptions,
    segments: Vec<Segment>,
    active: Option<File>,
    acks: AckSet,
    ack_log: File,
    ack_log_bytes: u64,
    next_seq: u64,
    /// Next seq [`Spool::pending`] will consider.
    cursor: u64,
    /// Where the cursor is on disk: (segment first seq, byte offset, next seq there).
    cursor_pos: Option<(u64, u64, u64)>,
    stats: SpoolStats,
    dirty: bool,
}

impl Spool {
    /// Open (or create) the spool in `dir`, repairing torn tails and
    /// forgetting everything already acknowledged.
    pub fn open(dir: &Path, host: HostId, opts: SpoolOptions) -> Result<Spool, SpoolError> {
        crate::enroll::create_private_dir(dir).map_err(io_err(dir))?;
        let mut stats = SpoolStats::default();
        let ack_path = dir.join("acks.log");
        let (acks, ack_good_len) = read_ack_log(&ack_path)?;
        let ack_log = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&ack_path)
            .map_err(io_err(&ack_path))?;
        ack_log.set_len(ack_good_len).map_err(io_err(&ack_path))?;
        let mut segments = Vec::new();
        for path in list_segments(dir)? {
            let Some(first_seq) = segment_first_seq(&path) else {
                continue;
            };
            let scan = scan_segment(&path, first_seq)?;
            if scan.torn {
                stats.torn_tails += 1;
                tracing::warn!(path = %path.display(), good_bytes = scan.bytes, "spool: torn tail truncated");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                f.set_len(scan.bytes).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
            }
            segments.push(Segment {
                first_seq,
                last_seq: scan.last_seq,
                bytes: scan.bytes,
                newest_ts: scan.newest_ts,
                path,
            });
        }
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            host,
            opts,
            segments,
            active: None,
            acks,
            ack_log,
            ack_log_bytes: ack_good_len,
            next_seq: 1,
            cursor: 1,
            cursor_pos: None,
            stats,
            dirty: false,
        };
        spool.recover_gaps()?;
        let last_record = spool.segments.iter().map(|s| s.last_seq).max().unwrap_or(0);
        spool.next_seq = last_record.max(spool.acks.highest()) + 1;
        spool.delete_acked_segments()?;
        Ok(spool)
    }

    /// Corruption inside a non-final segment leaves a seq gap before the next
    /// segment: spool a loss record for it and mark it done.
    fn recover_gaps(&mut self) -> Result<(), SpoolError> {
        let mut gaps = Vec::new();
        for pair in self.segments.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let from = a.last_seq + 1;
            if from < b.first_seq && !self.acks.covers(from, b.first_seq - 1) {
                gaps.push((from, b.first_seq - 1));
            }
        }
        let last_record = self.segments.iter().map(|s| s.last_seq).max().unwrap_or(0);
        self.next_seq = last_record.max(self.acks.highest()) + 1;
        for (from, to) in gaps {
            let count = (from..=to).filter(|s| !self.acks.contains(*s)).count() as u64;
            self.mark_done(from, to)?;
            self.stats.dropped_total += count;
            self.append_loss(from, to, count, LossReason::Corrupt, 0)?;
        }
        Ok(())
    }

    /// The seq the next appended event will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Counters for health reporting.
    pub fn stats(&self) -> SpoolStats {
        self.stats.clone()
    }

    /// Bytes of segment files on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Number of spooled events not yet acknowledged (approximate for
    /// out-of-order acks: counts seqs between the contiguous ack mark and the
    /// newest record).
    pub fn unacked_len(&self) -> u64 {
        (self.next_seq - 1).saturating_sub(self.acks.upto)
    }

    /// Events not yet handed out by [`Spool::pending`] since the last rewind
    /// (an upper bound: acknowledged seqs past the cursor are counted too).
    pub fn unsent_len(&self) -> u64 {
        self.next_seq.saturating_sub(self.cursor)
    }

    /// Append one event observed at `ts_ns`; returns its seq. The record is
    /// written before this returns, so it survives a crash of the process.
    pub fn append(&mut self, ts_ns: u64, payload: Payload) -> Result<u64, SpoolError> {
        let seq = self.write_record(ts_ns, payload)?;
        self.stats.appended_total += 1;
        self.enforce_bytes(ts_ns)?;
        Ok(seq)
    }

    /// Append several events, in order, with one write(2) when they all fit
    /// in the active segment and under the byte bound (otherwise one
    /// [`Spool::append`] each). Every event is in the file when this
    /// returns, as with `append`. On failure, returns how many events were
    /// not spooled and the last error.
    pub fn append_batch(
        &mut self,
        items: impl IntoIterator<Item = (u64, Payload)>,
    ) -> Result<(), (u64, SpoolError)> {
        let mut records = Vec::new();
        let mut newest = 0;
        let mut seq = self.next_seq;
        let mut rest = Vec::new();
        for (ts_ns, payload) in items {
            if !rest.is_empty() {
                rest.push((ts_ns, payload));
                continue;
            }
            let event = Event {
                header: EventHeader {
                    host: self.host,
                    seq,
                    ts_ns,
                },
                payload,
            };
            match postcard::to_allocvec(&event) {
                Ok(body) if body.len() <= MAX_RECORD => {
                    records.extend_from_slice(&(body.len() as u32).to_le_bytes());
                    records.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
                    records.extend_from_slice(&body);
                    newest = newest.max(ts_ns);
                    seq += 1;
                }
                // Left to `append`, which reports it.
                _ => rest.push((event.header.ts_ns, event.payload)),
            }
        }
        let count = seq - self.next_seq;
        let fits = match (self.segments.last(), &self.active) {
            (Some(s), Some(_)) => {
                s.last_seq + 1 == self.next_seq
                    && s.bytes + records.len() as u64 <= self.opts.effective_segment_bytes()
                    && self.bytes() + records.len() as u64 <= self.opts.max_bytes
            }
            _ => false,
        };
        let mut failed = 0;
        let mut last_err = None;
        if count > 0 && fits {
            let seg = self.segments.last_mut().expect("checked");
            let file = self.active.as_mut().expect("checked");
            if let Err(e) = file.write_all(&records) {
                // Keep the file record-aligned: cut off whatever part was written.
                let _ = file.set_len(seg.bytes);
                let _ = file.seek(SeekFrom::Start(seg.bytes));
                failed += count;
                last_err = Some(SpoolError::Io {
                    path: seg.path.clone(),
                    source: e,
                });
            } else {
                seg.bytes += records.len() as u64;
                seg.last_seq = seq - 1;
                seg.newest_ts = seg.newest_ts.max(newest);
                self.next_seq = seq;
                self.stats.appended_total += count;
                self.dirty = true;
            }
        } else if count > 0 {
            // Decode nothing: re-encode through the one-by-one path, which
            // rolls segments and enforces the byte bound between records.
            let mut off = 0;
            let mut events = Vec::new();
            while off < records.len() {
                let len = u32::from_le_bytes(records[off..off + 4].try_into().expect("4")) as usize;
                let body = &records[off + RECORD_HEADER..off + RECORD_HEADER + len];
                let event: Event = postcard::from_bytes(body).expect("encoded above");
                events.push((event.header.ts_ns, event.payload));
                off += RECORD_HEADER + len;
            }
            rest.splice(0..0, events);
        }
        for (ts_ns, payload) in rest {
            if let Err(e) = self.append(ts_ns, payload) {
                failed += 1;
                last_err = Some(e);
            }
        }
        match last_err {
            Some(e) => Err((failed, e)),
            None => Ok(()),
        }
    }

    fn write_record(&mut self, ts_ns: u64, payload: Payload) -> Result<u64, SpoolError> {
        let seq = self.next_seq;
        let event = Event {
            header: EventHeader {
                host: self.host,
                seq,
                ts_ns,
            },
            payload,
        };
        let body = postcard::to_allocvec(&event).map_err(|e| SpoolError::Encode(e.to_string()))?;
        if body.len() > MAX_RECORD {
            return Err(SpoolError::TooLarge(body.len()));
        }
        let needs_new = match self.segments.last() {
            None => true,
            Some(s) => {
                s.bytes >= self.opts.effective_segment_bytes()
                    || self.active.is_none()
                    || s.last_seq + 1 != seq
            }
        };
        if needs_new {
            self.roll_segment(seq)?;
        }
        let mut rec = Vec::with_capacity(RECORD_HEADER + body.len());
        rec.extend_from_slice(&(body.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        rec.extend_from_slice(&body);
        let seg = self.segments.last_mut().expect("segment exists after roll");
        let file = self.active.as_mut().expect("active file after roll");
        if let Err(e) = file.write_all(&rec) {
            // Keep the file record-aligned: cut off whatever part was written.
            let _ = file.set_len(seg.bytes);
            let _ = file.seek(SeekFrom::Start(seg.bytes));
            return Err(SpoolError::Io {
                path: seg.path.clone(),
                source: e,
            });
        }
        seg.bytes += rec.len() as u64;
        seg.last_seq = seq;
        seg.newest_ts = seg.newest_ts.max(ts_ns);
        self.next_seq += 1;
        self.dirty = true;
        Ok(seq)
    }

    fn roll_segment(&mut self, first_seq: u64) -> Result<(), SpoolError> {
        if let Some(f) = self.active.take() {
            f.sync_data().ok();
        }
        // Reuse the newest segment if it is still empty (e.g. after a restart).
        let path = match self.segments.last() {
            Some(s) if s.bytes == 0 => {
                let old = s.path.clone();
                self.segments.pop();
                fs::remove_file(&old).map_err(io_err(&old))?;
                segment_path(&self.dir, first_seq)
            }
            Some(s)
                if s.bytes < self.opts.effective_segment_bytes() && s.last_seq + 1 == first_seq =>
            {
                // Reopen the last, not-yet-full segment for appending.
                let path = s.path.clone();
                let f = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                self.active = Some(f);
                return Ok(());
            }
            _ => segment_path(&self.dir, first_seq),
        };
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        self.active = Some(f);
        self.segments.push(Segment {
            first_seq,
            last_seq: first_seq - 1,
            bytes: 0,
            newest_ts: 0,
            path,
        });
        if let Ok(d) = File::open(&self.dir) {
            d.sync_all().ok();
        }
        Ok(())
    }

    /// Make every appended record durable against power loss. Called before
    /// records are sent, so the appliance never holds a seq the spool could
    /// reassign after a power cut.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if self.dirty {
            if let (Some(f), Some(s)) = (&self.active, self.segments.last()) {
                f.sync_data().map_err(io_err(&s.path))?;
            }
            self.dirty = false;
        }
        Ok(())
    }

    /// Up to `max` unacknowledged events after the ones already returned
    /// since the last [`Spool::rewind`], in seq order.
    pub fn pending(&mut self, max: usize) -> Result<Vec<Event>, SpoolError> {
        let mut out = Vec::new();
        while out.len() < max && self.cursor < self.next_seq {
            let Some(idx) = self
                .segments
                .iter()
                .position(|s| s.last_seq >= self.cursor && s.bytes > 0)
            else {
                self.cursor = self.next_seq;
                break;
            };
            let seg = self.segments[idx].clone();
            let (mut offset, mut seq_at) = match self.cursor_pos {
                Some((first, off, next)) if first == seg.first_seq && next <= self.cursor => {
                    (off, next)
                }
                _ => (0, seg.first_seq),
            };
            let f = File::open(&seg.path).map_err(io_err(&seg.path))?;
            let mut r = BufReader::with_capacity(64 * 1024, f);
            r.seek(SeekFrom::Start(offset)).map_err(io_err(&seg.path))?;
            let mut broken = false;
            while offset < seg.bytes && out.len() < max {
                let Some((event, len)) = read_record(&mut r).map_err(io_err(&seg.path))? else {
                    broken = true;
                    break;
                };
                offset += len;
                seq_at = event.header.seq + 1;
                if event.header.seq >= self.cursor && !self.acks.contains(event.header.seq) {
                    out.push(event);
                }
            }
            self.cursor = seq_at.max(self.cursor);
            self.cursor_pos = Some((seg.first_seq, offset, seq_at));
            if broken {
                // Unreadable despite the scan at open (disk changed under us): skip it.
                tracing::error!(path = %seg.path.display(), offset, "spool: unreadable record, skipping segment");
                self.cursor = seg.last_seq + 1;
                self.cursor_pos = None;
            }
        }
        Ok(out)
    }

    /// Start handing out unacknowledged events from the oldest again (after a
    /// reconnect, or when sent batches were not acknowledged).
    pub fn rewind(&mut self) {
        self.cursor = 1;
        self.cursor_pos = None;
    }

    /// The appliance durably stored `first..=last`: never send them again and
    /// delete segments that hold nothing else.
    pub fn ack(&mut self, first: u64, last: u64) -> Result<(), SpoolError> {
        self.mark_done(first, last)?;
        if last >= self.next_seq {
            // The appliance holds seqs we no longer have (state dir reset):
            // continue above them so nothing new is taken for a duplicate.
            self.next_seq = last + 1;
        }
        self.delete_acked_segments()
    }

    fn mark_done(&mut self, first: u64, last: u64) -> Result<(), SpoolError> {
        if first > last || self.acks.covers(first, last) {
            return Ok(());
        }
        self.acks.insert(first, last);
        let mut rec = [0u8; ACK_RECORD];
        rec[..8].copy_from_slice(&first.to_le_bytes());
        rec[8..16].copy_from_slice(&last.to_le_bytes());
        let crc = crc32fast::hash(&rec[..16]);
        rec[16..].copy_from_slice(&crc.to_le_bytes());
        let path = self.dir.join("acks.log");
        self.ack_log.seek(SeekFrom::End(0)).map_err(io_err(&path))?;
        self.ack_log.write_all(&rec).map_err(io_err(&path))?;
        self.ack_log_bytes += ACK_RECORD as u64;
        if self.ack_log_bytes > ACK_LOG_COMPACT_BYTES {
            self.compact_ack_log()?;
        }
        Ok(())
    }

    fn compact_ack_log(&mut self) -> Result<(), SpoolError> {
        let tmp = self.dir.join("acks.log.tmp");
        let path = self.dir.join("acks.log");
        let mut ranges = vec![(1, self.acks.upto)];
        ranges.extend(self.acks.extra.iter().map(|(&a, &b)| (a, b)));
        let mut buf = Vec::new();
        for (a, b) in ranges.into_iter().filter(|(a, b)| a <= b) {
            let mut rec = [0u8; ACK_RECORD];
            rec[..8].copy_from_slice(&a.to_le_bytes());
            rec[8..16].copy_from_slice(&b.to_le_bytes());
            let crc = crc32fast::hash(&rec[..16]);
            rec[16..].copy_from_slice(&crc.to_le_bytes());
            buf.extend_from_slice(&rec);
        }
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(&buf).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        self.ack_log = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        self.ack_log_bytes = buf.len() as u64;
        Ok(())
    }

    fn delete_acked_segments(&mut self) -> Result<(), SpoolError> {
        let n = self.segments.len();
        let mut keep = Vec::with_capacity(n);
        for (i, seg) in std::mem::take(&mut self.segments).into_iter().enumerate() {
            let is_active = i + 1 == n && self.active.is_some();
            let done = seg.bytes > 0 && self.acks.covers(seg.first_seq, seg.last_seq);
            if done && !is_active {
                fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
                if self.cursor_pos.is_some_and(|(f, _, _)| f == seg.first_seq) {
                    self.cursor_pos = None;
                }
            } else {
                keep.push(seg);
            }
        }
        self.segments = keep;
        Ok(())
    }

    /// Drop the oldest segment while the spool is above its byte bound.
    fn enforce_bytes(&mut self, now_ns: u64) -> Result<(), SpoolError> {
        while self.bytes() > self.opts.max_bytes && self.segments.len() > 1 {
            self.drop_oldest(LossReason::SpoolFull, now_ns)?;
        }
        Ok(())
    }

    /// Drop segments whose newest record is older than the age bound.
    pub fn enforce_age(&mut self, now_ns: u64) -> Result<(), SpoolError> {
        let cutoff = now_ns.saturating_sub(self.opts.max_age_ns);
        while self.segments.len() > 1
            && self.segments[0].newest_ts < cutoff
            && self.segments[0].bytes > 0
        {
            self.drop_oldest(LossReason::SpoolAge, now_ns)?;
        }
        Ok(())
    }

    fn drop_oldest(&mut self, reason: LossReason, now_ns: u64) -> Result<(), SpoolError> {
        let seg = self.segments.remove(0);
        if self.cursor_pos.is_some_and(|(f, _, _)| f == seg.first_seq) {
            self.cursor_pos = None;
        }
        // Unacknowledged loss records inside the dropped segment are folded
        // into the new one, so earlier losses stay reported.
        let inner = read_losses(&seg.path)?;
        let inner: Vec<(u64, LossRecord)> = inner
            .into_iter()
            .filter(|(seq, _)| !self.acks.contains(*seq))
            .collect();
        let unacked = (seg.first_seq..=seg.last_seq)
            .filter(|s| !self.acks.contains(*s))
            .count() as u64;
        let dropped_now = unacked - inner.len() as u64;
        let count = dropped_now + inner.iter().map(|(_, l)| l.count).sum::<u64>();
        let from_seq = inner
            .iter()
            .map(|(_, l)| l.from_seq)
            .min()
            .unwrap_or(seg.first_seq)
            .min(seg.first_seq);
        // Order matters for crashes in between: mark done, record the loss,
        // then delete, so the worst case is a loss reported for records that
        // are still sent, never a silent gap.
        self.mark_done(seg.first_seq, seg.last_seq)?;
        if count > 0 {
            self.stats.dropped_total += dropped_now;
            tracing::warn!(
                from_seq,
                to_seq = seg.last_seq,
                count,
                ?reason,
                "spool: dropped oldest records"
            );
            self.append_loss(from_seq, seg.last_seq, count, reason, now_ns)?;
        }
        fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
        Ok(())
    }

    fn append_loss(
        &mut self,
        from_seq: u64,
        to_seq: u64,
        count: u64,
        reason: LossReason,
        now_ns: u64,
    ) -> Result<(), SpoolError> {
        self.write_record(
            now_ns,
            Payload::Loss(LossRecord {
                from_seq,
                to_seq,
                count,
                reason,
            }),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
