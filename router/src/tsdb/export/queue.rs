//! The on-disk queue of one destination: accepted writes appended to segment files
//! (`<16 digits>.seg`) and fsynced before the write is acknowledged, read back in order by the
//! sender, and a committed read position (`committed`, replaced atomically) saying what the
//! destination has taken. Fully read segments are deleted; beyond a size cap the oldest
//! segments are dropped and their unsent samples counted.
//!
//! A record is `len u32 | crc32c u32 | payload` (little endian), the payload
//! `samples u32 | tenant_len u16 | tenant | body`, where `body` is the snappy remote_write 1.0
//! `WriteRequest` as it will be sent. On open every segment is scanned: a torn or corrupt tail
//! (a crash in the middle of an append) is cut off, so the queue holds exactly the records
//! whose append completed.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tracing::warn;
use weft_metrics::tenant::TenantId;

use super::ExportError;

/// Size of a record's frame header (length and checksum).
const FRAME_HEADER: usize = 8;
/// Largest record payload accepted when reading (the API refuses larger bodies anyway).
const MAX_PAYLOAD: usize = 128 * 1024 * 1024;
/// Name of the file holding the committed read position.
const COMMITTED_FILE: &str = "committed";
/// Extension of segment files.
const SEGMENT_EXT: &str = "seg";

/// A position in the queue: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(super) struct Position {
    /// Segment number.
    pub(super) segment: u64,
    /// Byte offset in the segment.
    pub(super) offset: u64,
}

/// Sizes of a queue.
#[derive(Debug, Clone, Copy)]
pub(super) struct QueueLimits {
    /// A new segment is started once the current one is this large.
    pub(super) segment_bytes: u64,
    /// Most bytes kept; the oldest segments are dropped beyond it.
    pub(super) max_bytes: u64,
}

/// One queued write, as read back.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct QueuedWrite {
    /// The tenant the samples belong to.
    pub(super) tenant: TenantId,
    /// Number of samples in `body`.
    pub(super) samples: u32,
    /// Snappy-compressed remote_write `WriteRequest`.
    pub(super) body: Vec<u8>,
    /// The segment holding the record.
    pub(super) segment: u64,
    /// Position right after the record.
    pub(super) end: Position,
}

/// What is known about a segment.
#[derive(Debug, Clone, Copy, Default)]
struct SegmentInfo {
    /// Valid bytes in the file.
    bytes: u64,
    /// Samples in it not yet committed.
    samples_left: u64,
}

/// The queue of one destination.
#[derive(Debug)]
pub(super) struct Queue {
    dir: PathBuf,
    limits: QueueLimits,
    segments: BTreeMap<u64, SegmentInfo>,
    /// The segment appended to, open for writing.
    writer: Option<(u64, File)>,
    committed: Position,
}

impl Queue {
    /// Opens (or creates) the queue in `dir`, cutting torn tails off its segments.
    pub(super) fn open(dir: &Path, limits: QueueLimits) -> Result<Self, ExportError> {
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let committed = read_committed(&dir.join(COMMITTED_FILE))?;
        let mut segments = BTreeMap::new();
        for (id, path) in list_segments(dir)? {
            if id < committed.segment {
                fs::remove_file(&path).map_err(|e| io(&path, e))?;
                continue;
            }
            let skip = if id == committed.segment {
                committed.offset
            } else {
                0
            };
            segments.insert(id, scan_segment(&path, skip)?);
        }
        Ok(Self {
            dir: dir.to_owned(),
            limits,
            segments,
            writer: None,
            committed,
        })
    }

    /// Appends one write durably (fsynced before returning); returns how many queued samples
    /// were dropped to stay under the size cap.
    pub(super) fn append(
        &mut self,
        tenant: &TenantId,
        samples: u32,
        body: &[u8],
    ) -> Result<u64, ExportError> {
        let payload = encode_payload(tenant, samples, body)?;
        let id = self.open_writer()?;
        let mut frame = Vec::with_capacity(FRAME_HEADER + payload.len());
        frame.extend_from_slice(
            &u32::try_from(payload.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        frame.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        let path = segment_path(&self.dir, id);
        let valid = self.segments.get(&id).map_or(0, |s| s.bytes);
        let Some((_, file)) = self.writer.as_mut() else {
            return Err(ExportError::Corrupt("no segment open for writing".into()));
        };
        if let Err(e) = file.write_all(&frame).and_then(|()| file.sync_data()) {
            // Cut the partial record so later appends stay readable; start a new segment.
            let _ = file.set_len(valid);
            self.writer = None;
            return Err(io(&path, e));
        }
        let info = self.segments.entry(id).or_default();
        info.bytes += frame.len() as u64;
        info.samples_left += u64::from(samples);
        Ok(self.enforce_cap())
    }

    /// Up to `max_samples` samples of queued writes after the committed position, in order
    /// (at least one write when any is queued, even a larger one).
    pub(super) fn read(&self, max_samples: u64) -> Result<Vec<QueuedWrite>, ExportError> {
        let mut out = Vec::new();
        let mut total = 0u64;
        let start = self.read_start();
        for (&id, info) in self.segments.range(start.segment..) {
            let from = if id == start.segment { start.offset } else { 0 };
            if from >= info.bytes {
                continue;
            }
            let path = segment_path(&self.dir, id);
            let mut file = File::open(&path).map_err(|e| io(&path, e))?;
            file.seek(SeekFrom::Start(from)).map_err(|e| io(&path, e))?;
            let mut reader = BufReader::new(file.take(info.bytes - from));
            let mut at = 0usize;
            while let Some(payload) = read_frame(&mut reader).map_err(|e| io(&path, e))? {
                let len = FRAME_HEADER + payload.len();
                let (tenant, samples, body) = decode_payload(&payload).ok_or_else(|| {
                    ExportError::Corrupt(format!("{}: bad record at {}", path.display(), at))
                })?;
                if total > 0 && total + u64::from(samples) > max_samples {
                    return Ok(out);
                }
                at += len;
                total += u64::from(samples);
                out.push(QueuedWrite {
                    tenant,
                    samples,
                    body: body.to_vec(),
                    segment: id,
                    end: Position {
                        segment: id,
                        offset: from + at as u64,
                    },
                });
                if total >= max_samples {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// Marks `writes` (read by [`Queue::read`], in order) as taken by the destination: moves
    /// the committed position after the last one and deletes segments read to the end.
    pub(super) fn commit(&mut self, writes: &[QueuedWrite]) -> Result<(), ExportError> {
        let Some(last) = writes.last() else {
            return Ok(());
        };
        for w in writes {
            if let Some(info) = self.segments.get_mut(&w.segment) {
                info.samples_left = info.samples_left.saturating_sub(u64::from(w.samples));
            }
        }
        self.committed = self.committed.max(last.end);
        let text = format!("{} {}\n", self.committed.segment, self.committed.offset);
        let path = self.dir.join(COMMITTED_FILE);
        crate::state_file::write_atomic(&path, text.as_bytes()).map_err(|e| ExportError::Io {
            path: path.clone(),
            reason: format!("{e:#}"),
        })?;
        let writer = self.writer.as_ref().map(|(id, _)| *id);
        let done: Vec<u64> = self
            .segments
            .iter()
            .filter(|&(&id, info)| {
                Some(id) != writer
                    && (id < self.committed.segment
                        || (id == self.committed.segment && self.committed.offset >= info.bytes))
            })
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            self.remove_segment(id)?;
        }
        Ok(())
    }

    /// Scans the queue again after [`Queue::read`] met damage made since it was opened: a
    /// segment is cut at its first bad record. Returns the samples lost that way.
    pub(super) fn repair(&mut self) -> Result<u64, ExportError> {
        let before = self.pending_samples();
        *self = Queue::open(&self.dir, self.limits)?;
        Ok(before.saturating_sub(self.pending_samples()))
    }

    /// Samples queued and not yet committed.
    pub(super) fn pending_samples(&self) -> u64 {
        self.segments.values().map(|s| s.samples_left).sum()
    }

    /// Bytes in the segment files.
    pub(super) fn bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum()
    }

    /// Where reading starts: the committed position, or the oldest segment when the committed
    /// one was dropped.
    fn read_start(&self) -> Position {
        if self.segments.contains_key(&self.committed.segment) {
            return self.committed;
        }
        self.segments.range(self.committed.segment..).next().map_or(
            self.committed,
            |(&segment, _)| Position { segment, offset: 0 },
        )
    }

    /// The number of the segment to append to, starting a new one when it is full or none is
    /// open.
    fn open_writer(&mut self) -> Result<u64, ExportError> {
        if let Some((id, _)) = &self.writer
            && self
                .segments
                .get(id)
                .is_some_and(|s| s.bytes < self.limits.segment_bytes)
        {
            return Ok(*id);
        }
        let next = self
            .segments
            .keys()
            .next_back()
            .map_or(self.committed.segment + 1, |last| last + 1);
        let path = segment_path(&self.dir, next);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&self.dir, e))?;
        self.segments.insert(next, SegmentInfo::default());
        self.writer = Some((next, file));
        Ok(next)
    }

    /// Drops the oldest segments (never the one written to) while over the size cap; returns
    /// the samples they held that were not yet committed.
    fn enforce_cap(&mut self) -> u64 {
        let mut dropped = 0;
        while self.bytes() > self.limits.max_bytes && self.segments.len() > 1 {
            let Some((&oldest, info)) = self.segments.iter().next() else {
                break;
            };
            if self.writer.as_ref().is_some_and(|(id, _)| *id == oldest) {
                break;
            }
            let lost = info.samples_left;
            match self.remove_segment(oldest) {
                Ok(()) => dropped += lost,
                Err(e) => {
                    warn!("dropping queue segment over the size cap: {e}");
                    break;
                }
            }
        }
        dropped
    }

    /// Deletes a segment file and forgets it.
    fn remove_segment(&mut self, id: u64) -> Result<(), ExportError> {
        let path = segment_path(&self.dir, id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path, e)),
        }
        self.segments.remove(&id);
        Ok(())
    }
}

/// `<dir>/<id>.seg`.
fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.{SEGMENT_EXT}"))
}

/// The segment files of `dir`, by number.
fn list_segments(dir: &Path) -> Result<BTreeMap<u64, PathBuf>, ExportError> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        if path.extension().is_some_and(|e| e == SEGMENT_EXT)
            && let Some(id) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
        {
            out.insert(id, path);
        }
    }
    Ok(out)
}

/// The committed position in `path` (the start when the file does not exist).
fn read_committed(path: &Path) -> Result<Position, ExportError> {
    let Some(raw) = crate::state_file::read_if_exists(path).map_err(|e| ExportError::Io {
        path: path.to_owned(),
        reason: format!("{e:#}"),
    })?
    else {
        return Ok(Position::default());
    };
    let text = String::from_utf8_lossy(&raw);
    let mut parts = text.split_whitespace().map(str::parse::<u64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(segment)), Some(Ok(offset))) => Ok(Position { segment, offset }),
        _ => Err(ExportError::Corrupt(format!(
            "{}: expected \"SEGMENT OFFSET\", found {text:?}",
            path.display()
        ))),
    }
}

/// Validates a segment, truncating it after its last intact record, and counts the samples
/// of records starting at or after `skip`.
fn scan_segment(path: &Path, skip: u64) -> Result<SegmentInfo, ExportError> {
    let data = fs::read(path).map_err(|e| io(path, e))?;
    let mut at = 0usize;
    let mut samples_left = 0u64;
    while let Some((payload, len)) = next_frame(&data[at..]) {
        let Some((_, samples, _)) = decode_payload(payload) else {
            break;
        };
        if at as u64 >= skip {
            samples_left += u64::from(samples);
        }
        at += len;
    }
    if at < data.len() {
        warn!(
            file = %path.display(),
            kept = at,
            cut = data.len() - at,
            "export queue: cutting a torn or corrupt tail"
        );
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io(path, e))?;
        f.set_len(at as u64)
            .and_then(|()| f.sync_all())
            .map_err(|e| io(path, e))?;
    }
    Ok(SegmentInfo {
        bytes: at as u64,
        samples_left,
    })
}

/// The payload of the next frame of `reader`, `None` at its end; a frame that is cut short
/// or fails its checksum is an error (segments are checked on open, so this is damage since).
fn read_frame(reader: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; FRAME_HEADER];
    match reader.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
    let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    let crc = u32::from_le_bytes([c0, c1, c2, c3]);
    if len > MAX_PAYLOAD {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("record of {len} bytes"),
        ));
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload)?;
    if crc32c::crc32c(&payload) != crc {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "record checksum mismatch",
        ));
    }
    Ok(Some(payload))
}

/// The payload of the intact frame at the start of `data` and the frame's length.
fn next_frame(data: &[u8]) -> Option<(&[u8], usize)> {
    let header = data.get(..FRAME_HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len > MAX_PAYLOAD {
        return None;
    }
    let payload = data.get(FRAME_HEADER..FRAME_HEADER + len)?;
    (crc32c::crc32c(payload) == crc).then_some((payload, FRAME_HEADER + len))
}

/// `samples u32 | tenant_len u16 | tenant | body`.
fn encode_payload(tenant: &TenantId, samples: u32, body: &[u8]) -> Result<Vec<u8>, ExportError> {
    let t = tenant.as_str().as_bytes();
    let tenant_len = u16::try_from(t.len())
        .map_err(|_| ExportError::Corrupt(format!("tenant {tenant} too long")))?;
    if body.len() > MAX_PAYLOAD {
        return Err(ExportError::Corrupt(format!(
            "a write of {} bytes is larger than a queue record may be",
            body.len()
        )));
    }
    let mut p = Vec::with_capacity(6 + t.len() + body.len());
    p.extend_from_slice(&samples.to_le_bytes());
    p.extend_from_slice(&tenant_len.to_le_bytes());
    p.extend_from_slice(t);
    p.extend_from_slice(body);
    Ok(p)
}

/// Splits a payload into tenant, sample count and body.
fn decode_payload(p: &[u8]) -> Option<(TenantId, u32, &[u8])> {
    let samples = u32::from_le_bytes(p.get(..4)?.try_into().ok()?);
    let tenant_len = u16::from_le_bytes(p.get(4..6)?.try_into().ok()?) as usize;
    let tenant = std::str::from_utf8(p.get(6..6 + tenant_len)?).ok()?;
    let tenant = TenantId::new(tenant).ok()?;
    Some((tenant, samples, p.get(6 + tenant_len..)?))
}

/// An I/O error on `path`.
fn io(path: &Path, e: std::io::Error) -> ExportError {
    ExportError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: QueueLimits = QueueLimits {
        segment_bytes: 200,
        max_bytes: 1 << 20,
    };

    fn tenant(t: &str) -> TenantId {
        TenantId::new(t).expect("tenant")
    }

    /// Appends write `i` (body `b<i>` repeated, `i` samples) for tenant `t`.
    fn put(q: &mut Queue, t: &str, i: u32) -> u64 {
        let body = format!("b{i}").repeat(20);
        q.append(&tenant(t), i, body.as_bytes()).expect("append")
    }

    fn samples(ws: &[QueuedWrite]) -> Vec<u32> {
        ws.iter().map(|w| w.samples).collect()
    }

    /// Segments large enough to hold every write of a test.
    const BIG: QueueLimits = QueueLimits {
        segment_bytes: 1 << 20,
        max_bytes: 1 << 30,
    };

    /// The oldest segment file in `dir`.
    fn first_segment(dir: &Path) -> PathBuf {
        let (_, seg) = list_segments(dir)
            .expect("list")
            .into_iter()
            .next()
            .expect("a segment");
        seg
    }

    /// Leaves a closed queue in `dir` holding writes 1 and 2 in one segment; returns it.
    fn two_writes_in_one_segment(dir: &Path) -> PathBuf {
        let mut q = Queue::open(dir, BIG).expect("open");
        put(&mut q, "t", 1);
        put(&mut q, "t", 2);
        drop(q);
        first_segment(dir)
    }

    /// Flips every bit of the last byte of `seg`: its last record is damaged.
    fn damage_last_byte(seg: &Path) {
        let mut data = fs::read(seg).expect("read");
        let last = data.len() - 1;
        data[last] ^= 0xff;
        fs::write(seg, &data).expect("write");
    }

    #[test]
    fn writes_come_back_in_order_across_segments_and_commits_delete_read_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut q = Queue::open(dir.path(), SMALL).expect("open");
        assert!(q.read(100).expect("read").is_empty());
        for i in 1..=10 {
            put(&mut q, if i % 2 == 0 { "a" } else { "b" }, i);
        }
        assert!(
            list_segments(dir.path()).expect("list").len() > 2,
            "200-byte segments roll over"
        );
        assert_eq!(q.pending_samples(), 55);
        // Reads stop before exceeding the sample budget, but always return one write.
        let first = q.read(6).expect("read");
        assert_eq!(samples(&first), vec![1, 2, 3]);
        assert_eq!(first[1].tenant, tenant("a"));
        assert_eq!(first[1].body, "b2".repeat(20).into_bytes());
        // Reading again without a commit returns the same writes.
        assert_eq!(q.read(6).expect("read"), first);
        q.commit(&first).expect("commit");
        assert_eq!(q.pending_samples(), 49);
        assert_eq!(samples(&q.read(1).expect("read")), vec![4]);
        let rest = q.read(1000).expect("read");
        assert_eq!(samples(&rest), (4..=10).collect::<Vec<_>>());
        q.commit(&rest).expect("commit");
        assert_eq!(q.pending_samples(), 0);
        assert!(q.read(1000).expect("read").is_empty());
        let left = list_segments(dir.path()).expect("list");
        assert!(
            left.len() <= 1,
            "only the segment being written may stay: {left:?}"
        );
    }

    #[test]
    fn committed_position_and_queued_writes_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut q = Queue::open(dir.path(), SMALL).expect("open");
        for i in 1..=6 {
            put(&mut q, "t", i);
        }
        let first = q.read(3).expect("read");
        q.commit(&first).expect("commit");
        drop(q);
        let mut q = Queue::open(dir.path(), SMALL).expect("reopen");
        assert_eq!(q.pending_samples(), 21 - 3);
        assert_eq!(samples(&q.read(100).expect("read")), vec![3, 4, 5, 6]);
        put(&mut q, "t", 7);
        assert_eq!(samples(&q.read(100).expect("read")), vec![3, 4, 5, 6, 7]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_appends_after_it_are_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seg = two_writes_in_one_segment(dir.path());
        let intact = fs::metadata(&seg).expect("meta").len();
        // A crash in the middle of the third append: half a frame at the end.
        let mut f = OpenOptions::new().append(true).open(&seg).expect("open");
        f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 9, 9]).expect("torn");
        drop(f);
        let mut q = Queue::open(dir.path(), BIG).expect("reopen");
        assert_eq!(fs::metadata(&seg).expect("meta").len(), intact);
        assert_eq!(q.pending_samples(), 3);
        put(&mut q, "t", 3);
        assert_eq!(samples(&q.read(100).expect("read")), vec![1, 2, 3]);
    }

    #[test]
    fn a_corrupt_record_ends_its_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seg = two_writes_in_one_segment(dir.path());
        damage_last_byte(&seg);
        let q = Queue::open(dir.path(), BIG).expect("reopen");
        assert_eq!(samples(&q.read(100).expect("read")), vec![1]);
    }

    #[test]
    fn damage_after_open_fails_the_read_and_repair_cuts_it_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut q = Queue::open(dir.path(), SMALL).expect("open");
        for i in 1..=6 {
            put(&mut q, "t", i);
        }
        damage_last_byte(&first_segment(dir.path()));
        assert!(q.read(100).is_err(), "a damaged record is not handed out");
        let in_first = q.segments.values().next().expect("segment").samples_left;
        let lost = q.repair().expect("repair");
        assert!(lost > 0 && lost <= in_first, "lost {lost} of {in_first}");
        let left = q.read(100).expect("read after repair");
        assert_eq!(
            left.iter().map(|w| u64::from(w.samples)).sum::<u64>(),
            21 - lost
        );
        assert_eq!(left.last().map(|w| w.samples), Some(6));
    }

    #[test]
    fn over_the_cap_the_oldest_segments_are_dropped_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let capped = QueueLimits {
            segment_bytes: 200,
            max_bytes: 600,
        };
        let mut q = Queue::open(dir.path(), capped).expect("open");
        let mut dropped = 0;
        for _ in 0..40 {
            dropped += put(&mut q, "t", 1);
        }
        assert!(q.bytes() <= 600 + 200, "{} bytes kept", q.bytes());
        assert!(dropped > 0);
        assert_eq!(q.pending_samples() + dropped, 40);
        let left = q.read(1000).expect("read");
        assert_eq!(left.len() as u64, q.pending_samples());
        // A commit of writes from a dropped segment does not resurrect it.
        q.commit(&left).expect("commit");
        assert_eq!(q.pending_samples(), 0);
    }

    #[test]
    fn a_garbled_committed_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(COMMITTED_FILE), "x y").expect("write");
        let e = Queue::open(dir.path(), SMALL).expect_err("garbled");
        assert!(e.to_string().contains("SEGMENT OFFSET"), "{e}");
    }
}
