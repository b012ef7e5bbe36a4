//! Write-ahead log: numbered segment files of framed records, after Prometheus `tsdb/wlog`.
//!
//! Each frame is `len: u32 LE | crc32c: u32 LE | record`, where the CRC (Castagnoli, as in
//! Prometheus) covers the record bytes. [`Wal::log`] writes records and `fsync`s
//! (`sync_data`) before returning. For group commit, writers call [`Wal::append`] under their
//! lock and then [`WalSyncer::sync_to`] outside it: one `fsync` covers every writer waiting at
//! that moment, and each acknowledges only after its own bytes are durable (no timer: the
//! commit interval is the duration of one `fsync`).
//!
//! On open, the newest checkpoint then every later segment is replayed. A torn or corrupt
//! *last* frame of the *last* segment (one that reaches the end of the file) is what a crash
//! mid-write leaves: it is truncated away with a warning. Any other bad frame is corruption in
//! the middle of the log and is reported as [`WalError::Corrupt`], never skipped.

mod record;
mod sync;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use record::{RecordError, WalRecord};
pub use sync::WalSyncer;

use crate::index::SeriesRef;

/// Default size at which a new segment is started.
pub const DEFAULT_SEGMENT_SIZE: u64 = 128 * 1024 * 1024;

const FRAME_HEADER: usize = 8;
const CHECKPOINT_PREFIX: &str = "checkpoint.";

/// Errors of the write-ahead log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file operation failed.
    #[error("wal I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A record in the middle of the log is corrupt.
    #[error("wal corrupt in {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the bad frame.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A lock was poisoned by a panic elsewhere.
    #[error("wal lock poisoned")]
    Poisoned,
    /// Segment numbers are not contiguous.
    #[error("wal segments not contiguous: {0} follows {1}")]
    Gap(u32, u32),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What happened during replay.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records replayed.
    pub records: usize,
    /// Torn tail truncated: the segment and the offset it was cut at.
    pub truncated: Option<(u32, u64)>,
    /// The checkpoint replayed first, if any.
    pub checkpoint: Option<u32>,
}

/// Frames a record.
fn frame(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER + record.len());
    out.extend_from_slice(&(record.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(record).to_le_bytes());
    out.extend_from_slice(record);
    out
}

/// How the bytes of a segment end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// Every frame was valid.
    Clean,
    /// The last frame is incomplete or corrupt and reaches the end: valid up to `offset`.
    TornTail {
        /// Length of the valid prefix.
        offset: u64,
        /// What is wrong with the last frame.
        reason: String,
    },
    /// A frame in the middle is corrupt.
    Corrupt {
        /// Offset of the bad frame.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Decodes the records of one segment's bytes, stopping at the first bad frame (the fuzzing
/// entry point for the WAL reader: never panics).
pub fn read_segment(data: &[u8]) -> (Vec<WalRecord>, Scan) {
    let mut records = Vec::new();
    let mut count = 0;
    let end = scan_frames(data, &mut |r| records.push(r), &mut count);
    (records, end)
}

/// Walks the frames of a segment, handing each valid record to `on_record`.
fn scan_frames(data: &[u8], on_record: &mut dyn FnMut(WalRecord), count: &mut usize) -> Scan {
    let mut off = 0usize;
    while off < data.len() {
        let rest = &data[off..];
        if rest.len() < FRAME_HEADER {
            return Scan::TornTail {
                offset: off as u64,
                reason: "incomplete frame header".into(),
            };
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let end = FRAME_HEADER.saturating_add(len);
        if end > rest.len() {
            return Scan::TornTail {
                offset: off as u64,
                reason: format!("frame of {len} bytes past end of file"),
            };
        }
        let body = &rest[FRAME_HEADER..end];
        let at_end = end == rest.len();
        let bad = if len == 0 {
            Some("empty frame".to_owned())
        } else if crc32c::crc32c(body) != crc {
            Some("checksum mismatch".to_owned())
        } else {
            match WalRecord::decode(body) {
                Ok(rec) => {
                    on_record(rec);
                    *count += 1;
                    None
                }
                Err(e) => Some(format!("bad record: {e}")),
            }
        };
        if let Some(reason) = bad {
            return if at_end {
                Scan::TornTail {
                    offset: off as u64,
                    reason,
                }
            } else {
                Scan::Corrupt {
                    offset: off as u64,
                    reason,
                }
            };
        }
        off += end;
    }
    Scan::Clean
}

fn segment_name(n: u32) -> String {
    format!("{n:08}")
}

/// Numbers of the segment files in `dir`, sorted, checked contiguous.
fn list_segments(dir: &Path) -> Result<Vec<u32>, WalError> {
    let mut segs = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.len() == 8
            && let Ok(n) = name.parse::<u32>()
        {
            segs.push(n);
        }
    }
    segs.sort_unstable();
    for pair in segs.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(WalError::Gap(pair[1], pair[0]));
        }
    }
    Ok(segs)
}

/// The newest complete checkpoint (`checkpoint.N`), removing leftover temporary ones.
fn latest_checkpoint(dir: &Path) -> Result<Option<u32>, WalError> {
    let mut best = None;
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(suffix) = name.strip_prefix(CHECKPOINT_PREFIX) else {
            continue;
        };
        if suffix.ends_with(".tmp") {
            fs::remove_dir_all(entry.path()).map_err(io_err(&entry.path()))?;
            continue;
        }
        if let Ok(n) = suffix.parse::<u32>() {
            best = best.max(Some(n));
        }
    }
    Ok(best)
}

fn read_file(path: &Path) -> Result<Vec<u8>, WalError> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(io_err(path))?;
    Ok(data)
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// An open write-ahead log in one directory.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    segment_size: u64,
    current: u32,
    file: Arc<File>,
    /// Bytes in the current segment.
    written: u64,
    syncer: Arc<WalSyncer>,
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`, replaying the newest checkpoint and every
    /// later segment into `on_record` in order, then positions for appending.
    pub fn open(
        dir: &Path,
        segment_size: u64,
        mut on_record: impl FnMut(WalRecord),
    ) -> Result<(Self, ReplayReport), WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut report = ReplayReport::default();
        let checkpoint = latest_checkpoint(dir)?;
        if let Some(n) = checkpoint {
            let cp_dir = dir.join(format!("{CHECKPOINT_PREFIX}{}", segment_name(n)));
            for seg in list_segments(&cp_dir)? {
                let path = cp_dir.join(segment_name(seg));
                match scan_frames(&read_file(&path)?, &mut on_record, &mut report.records) {
                    Scan::Clean => {}
                    Scan::TornTail { offset, reason } | Scan::Corrupt { offset, reason } => {
                        return Err(WalError::Corrupt {
                            path,
                            offset,
                            reason,
                        });
                    }
                }
            }
            report.checkpoint = Some(n);
        }
        let segs: Vec<u32> = list_segments(dir)?
            .into_iter()
            .filter(|&s| checkpoint.is_none_or(|c| s > c))
            .collect();
        for (i, &seg) in segs.iter().enumerate() {
            let path = dir.join(segment_name(seg));
            let last = i + 1 == segs.len();
            match scan_frames(&read_file(&path)?, &mut on_record, &mut report.records) {
                Scan::Clean => {}
                Scan::TornTail { offset, reason } if last => {
                    tracing::warn!(segment = %path.display(), offset, %reason, "wal: truncating torn tail");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io_err(&path))?;
                    f.set_len(offset)
                        .and_then(|()| f.sync_all())
                        .map_err(io_err(&path))?;
                    report.truncated = Some((seg, offset));
                }
                Scan::TornTail { offset, reason } | Scan::Corrupt { offset, reason } => {
                    return Err(WalError::Corrupt {
                        path,
                        offset,
                        reason,
                    });
                }
            }
        }
        let current = match (segs.last(), checkpoint) {
            (Some(&s), _) => s,
            (None, Some(c)) => c + 1,
            (None, None) => 0,
        };
        let path = dir.join(segment_name(current));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let written = file.metadata().map_err(io_err(&path))?.len();
        sync_dir(dir)?;
        let file = Arc::new(file);
        let syncer = Arc::new(WalSyncer::new(file.clone(), path));
        Ok((
            Self {
                dir: dir.to_owned(),
                segment_size,
                current,
                file,
                written,
                syncer,
            },
            report,
        ))
    }

    /// The segment being written.
    pub fn current_segment(&self) -> u32 {
        self.current
    }

    /// Appends records and makes them durable (`fsync`) before returning.
    pub fn log(&mut self, records: &[WalRecord]) -> Result<(), WalError> {
        let pos = self.append(records)?;
        self.syncer.sync_to(pos)
    }

    /// Appends records without waiting for them to be durable; returns the position to pass to
    /// [`WalSyncer::sync_to`] before acknowledging them (group commit).
    pub fn append(&mut self, records: &[WalRecord]) -> Result<u64, WalError> {
        let mut buf = Vec::new();
        for r in records {
            buf.extend_from_slice(&frame(&r.encode()));
        }
        if self.written > 0 && self.written + buf.len() as u64 > self.segment_size {
            self.cut()?;
        }
        let path = self.dir.join(segment_name(self.current));
        (&*self.file).write_all(&buf).map_err(io_err(&path))?;
        self.written += buf.len() as u64;
        Ok(self.syncer.appended(buf.len() as u64))
    }

    /// The group-commit handle of this log.
    pub fn syncer(&self) -> Arc<WalSyncer> {
        self.syncer.clone()
    }

    /// Closes the current segment and starts the next one.
    pub fn cut(&mut self) -> Result<(), WalError> {
        let next = self.current + 1;
        let path = self.dir.join(segment_name(next));
        let file = Arc::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_err(&path))?,
        );
        sync_dir(&self.dir)?;
        self.syncer.cut(file.clone(), path)?;
        self.file = file;
        self.current = next;
        self.written = 0;
        Ok(())
    }

    /// Writes a checkpoint of everything logged so far, keeping series for which `keep` is true
    /// and samples at or after `min_t` of kept series, then deletes the segments and older
    /// checkpoints it replaces (as Prometheus `wlog.Checkpoint`). Returns the checkpoint number.
    pub fn checkpoint(
        &mut self,
        keep: impl Fn(SeriesRef) -> bool,
        min_t: i64,
    ) -> Result<u32, WalError> {
        self.cut()?;
        let upto = self.current - 1;
        let mut series = Vec::new();
        let mut samples = Vec::new();
        let mut collect = |rec: WalRecord| match rec {
            WalRecord::Series(s) => series.extend(s.into_iter().filter(|(r, _)| keep(*r))),
            WalRecord::Samples(s) => {
                samples.extend(s.into_iter().filter(|(r, s)| s.t >= min_t && keep(*r)))
            }
        };
        let mut count = 0;
        let previous = latest_checkpoint(&self.dir)?;
        let mut sources = Vec::new();
        if let Some(p) = previous {
            let cp_dir = self
                .dir
                .join(format!("{CHECKPOINT_PREFIX}{}", segment_name(p)));
            sources.extend(
                list_segments(&cp_dir)?
                    .into_iter()
                    .map(|s| cp_dir.join(segment_name(s))),
            );
        }
        let segs = list_segments(&self.dir)?;
        sources.extend(
            segs.iter()
                .filter(|&&s| s <= upto && previous.is_none_or(|p| s > p))
                .map(|&s| self.dir.join(segment_name(s))),
        );
        for path in sources {
            match scan_frames(&read_file(&path)?, &mut collect, &mut count) {
                Scan::Clean => {}
                Scan::TornTail { offset, reason } | Scan::Corrupt { offset, reason } => {
                    return Err(WalError::Corrupt {
                        path,
                        offset,
                        reason,
                    });
                }
            }
        }
        let name = format!("{CHECKPOINT_PREFIX}{}", segment_name(upto));
        let tmp = self.dir.join(format!("{name}.tmp"));
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let mut buf = Vec::new();
        for chunk in series.chunks(1000) {
            buf.extend_from_slice(&frame(&WalRecord::Series(chunk.to_vec()).encode()));
        }
        for chunk in samples.chunks(10_000) {
            buf.extend_from_slice(&frame(&WalRecord::Samples(chunk.to_vec()).encode()));
        }
        let file_path = tmp.join(segment_name(0));
        File::create(&file_path)
            .and_then(|mut f| f.write_all(&buf).and_then(|()| f.sync_all()))
            .map_err(io_err(&file_path))?;
        sync_dir(&tmp)?;
        let final_dir = self.dir.join(&name);
        fs::rename(&tmp, &final_dir).map_err(io_err(&final_dir))?;
        sync_dir(&self.dir)?;
        for s in segs.into_iter().filter(|&s| s <= upto) {
            let p = self.dir.join(segment_name(s));
            fs::remove_file(&p).map_err(io_err(&p))?;
        }
        if let Some(p) = previous {
            let old = self
                .dir
                .join(format!("{CHECKPOINT_PREFIX}{}", segment_name(p)));
            fs::remove_dir_all(&old).map_err(io_err(&old))?;
        }
        sync_dir(&self.dir)?;
        Ok(upto)
    }
}

#[cfg(test)]
mod tests;
