//! Immutable on-disk blocks (after Prometheus `tsdb/docs/format`): one directory per block with
//! `meta.json` (time range, stats, compaction level and sources), `chunks` (CRC-checked Gorilla
//! chunks) and `index` (series labels and chunk references, CRC-checked). A block covers
//! `[min_t, max_t)`. It is written to `<id>.tmp` and renamed into place once complete.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chunk::{SAMPLES_PER_CHUNK, XorChunk, XorIter};
use crate::codec::{CodecError, Reader, put_str, put_uvarint, put_varint};
use crate::index::{Matcher, PostingsIndex, SeriesRef};
use crate::labels::{Label, Labels, Series};

/// Length of a block cut from the head (2 hours, as in Prometheus).
pub const BLOCK_RANGE_MS: i64 = 2 * 60 * 60 * 1000;

const CHUNKS_MAGIC: &[u8; 8] = b"WEFTCHK1";
const INDEX_MAGIC: &[u8; 8] = b"WEFTIDX1";
const CHUNK_HEADER: usize = 8;

/// Errors reading or writing blocks.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// A file operation failed.
    #[error("block I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file's content is invalid.
    #[error("block file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BlockError + '_ {
    move |source| BlockError::Io {
        path: path.to_owned(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> BlockError {
    BlockError::Corrupt {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Counts stored in a block's meta.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    /// Series.
    #[serde(rename = "numSeries")]
    pub num_series: u64,
    /// Samples.
    #[serde(rename = "numSamples")]
    pub num_samples: u64,
    /// Chunks.
    #[serde(rename = "numChunks")]
    pub num_chunks: u64,
}

/// A block's `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// The block id (also its directory name).
    pub id: String,
    /// First timestamp covered (inclusive).
    #[serde(rename = "minTime")]
    pub min_t: i64,
    /// End of the covered range (exclusive).
    #[serde(rename = "maxTime")]
    pub max_t: i64,
    /// Counts.
    pub stats: BlockStats,
    /// 1 for a block cut from the head, one more per compaction.
    pub level: u32,
    /// Ids of the level-1 blocks merged into this one.
    pub sources: Vec<String>,
}

/// Id of a block: its range and level, unique among the blocks of one tenant.
pub fn block_id(min_t: i64, max_t: i64, level: u32) -> String {
    format!("{:016x}-{:016x}-{level}", min_t as u64, max_t as u64)
}

#[derive(Debug, Clone, Copy)]
struct ChunkMeta {
    offset: u64,
    min_t: i64,
    max_t: i64,
}

#[derive(Debug)]
struct BlockSeries {
    labels: Labels,
    chunks: Vec<ChunkMeta>,
}

/// An open block: index in memory, chunks read from disk on demand.
#[derive(Debug)]
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    series: Vec<BlockSeries>,
    index: PostingsIndex,
    chunks: File,
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), BlockError> {
    File::create(path)
        .and_then(|mut f| f.write_all(data).and_then(|()| f.sync_all()))
        .map_err(io_err(path))
}

fn sync_dir(dir: &Path) -> Result<(), BlockError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Writes a block of `series` (sorted by labels, samples in `[min_t, max_t)`) under `parent`,
/// returning its meta. An existing complete block with the same id is replaced.
pub fn write_block(
    parent: &Path,
    series: &[Series],
    min_t: i64,
    max_t: i64,
    level: u32,
    sources: Vec<String>,
) -> Result<BlockMeta, BlockError> {
    let id = block_id(min_t, max_t, level);
    let sources = if sources.is_empty() {
        vec![id.clone()]
    } else {
        sources
    };
    let tmp = parent.join(format!("{id}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let mut chunks = CHUNKS_MAGIC.to_vec();
    let mut index = Vec::new();
    let mut stats = BlockStats::default();
    let live: Vec<&Series> = series.iter().filter(|s| !s.samples.is_empty()).collect();
    put_uvarint(&mut index, live.len() as u64);
    for s in live {
        stats.num_series += 1;
        put_uvarint(&mut index, s.labels.len() as u64);
        for l in s.labels.iter() {
            put_str(&mut index, &l.name);
            put_str(&mut index, &l.value);
        }
        let groups: Vec<&[crate::labels::Sample]> = s.samples.chunks(SAMPLES_PER_CHUNK).collect();
        put_uvarint(&mut index, groups.len() as u64);
        for g in groups {
            let mut c = XorChunk::new();
            for x in g {
                c.append(x.t, x.v)
                    .map_err(|e| corrupt(&tmp, format!("unsorted input: {e}")))?;
            }
            let bytes = c.bytes();
            let offset = chunks.len() as u64;
            chunks.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            chunks.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
            chunks.extend_from_slice(&bytes);
            put_uvarint(&mut index, offset);
            put_varint(&mut index, c.min_t());
            put_varint(&mut index, c.max_t());
            stats.num_chunks += 1;
            stats.num_samples += g.len() as u64;
        }
    }
    let mut index_file = INDEX_MAGIC.to_vec();
    index_file.extend_from_slice(&index);
    index_file.extend_from_slice(&crc32c::crc32c(&index).to_le_bytes());
    let meta = BlockMeta {
        id: id.clone(),
        min_t,
        max_t,
        stats,
        level,
        sources,
    };
    let meta_json = serde_json::to_vec_pretty(&meta).map_err(|e| corrupt(&tmp, e.to_string()))?;
    write_file(&tmp.join("chunks"), &chunks)?;
    write_file(&tmp.join("index"), &index_file)?;
    write_file(&tmp.join("meta.json"), &meta_json)?;
    sync_dir(&tmp)?;
    let dir = parent.join(&id);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    }
    fs::rename(&tmp, &dir).map_err(io_err(&dir))?;
    sync_dir(parent)?;
    Ok(meta)
}

fn decode_index(path: &Path, data: &[u8]) -> Result<Vec<BlockSeries>, BlockError> {
    let body = data
        .strip_prefix(INDEX_MAGIC.as_slice())
        .filter(|b| b.len() >= 4)
        .ok_or_else(|| corrupt(path, "bad magic or too short"))?;
    let (payload, crc) = body.split_at(body.len() - 4);
    if crc32c::crc32c(payload).to_le_bytes() != crc {
        return Err(corrupt(path, "checksum mismatch"));
    }
    let mut r = Reader { buf: payload };
    let parse = |r: &mut Reader<'_>| -> Result<Vec<BlockSeries>, CodecError> {
        let n = r.count(2)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let nl = r.count(2)?;
            let mut labels = Vec::with_capacity(nl);
            for _ in 0..nl {
                let name = r.string()?;
                let value = r.string()?;
                labels.push(Label { name, value });
            }
            let nc = r.count(3)?;
            let mut chunks = Vec::with_capacity(nc);
            for _ in 0..nc {
                chunks.push(ChunkMeta {
                    offset: r.uvarint()?,
                    min_t: r.varint()?,
                    max_t: r.varint()?,
                });
            }
            out.push((labels, chunks));
        }
        Ok(out
            .into_iter()
            .map(|(labels, chunks)| BlockSeries {
                labels: Labels::from_unchecked(labels),
                chunks,
            })
            .collect())
    };
    let series = parse(&mut r).map_err(|e| corrupt(path, e.to_string()))?;
    if !r.buf.is_empty() {
        return Err(corrupt(path, "trailing bytes"));
    }
    Ok(series)
}

impl Block {
    /// Opens a block directory, reading its meta and index.
    pub fn open(dir: &Path) -> Result<Self, BlockError> {
        let meta_path = dir.join("meta.json");
        let meta_bytes = fs::read(&meta_path).map_err(io_err(&meta_path))?;
        let meta: BlockMeta =
            serde_json::from_slice(&meta_bytes).map_err(|e| corrupt(&meta_path, e.to_string()))?;
        let index_path = dir.join("index");
        let series = decode_index(
            &index_path,
            &fs::read(&index_path).map_err(io_err(&index_path))?,
        )?;
        let mut index = PostingsIndex::default();
        for (i, s) in series.iter().enumerate() {
            index.add(i as SeriesRef, &s.labels);
        }
        let chunks_path = dir.join("chunks");
        let chunks = File::open(&chunks_path).map_err(io_err(&chunks_path))?;
        Ok(Self {
            dir: dir.to_owned(),
            meta,
            series,
            index,
            chunks,
        })
    }

    /// The block's meta.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// The block's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read_chunk(&self, c: &ChunkMeta) -> Result<Vec<crate::labels::Sample>, BlockError> {
        let path = self.dir.join("chunks");
        let mut header = [0u8; CHUNK_HEADER];
        self.chunks
            .read_exact_at(&mut header, c.offset)
            .map_err(io_err(&path))?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let mut bytes = vec![0u8; len];
        self.chunks
            .read_exact_at(&mut bytes, c.offset + CHUNK_HEADER as u64)
            .map_err(io_err(&path))?;
        if crc32c::crc32c(&bytes) != crc {
            return Err(corrupt(
                &path,
                format!("chunk at {} fails its checksum", c.offset),
            ));
        }
        let it = XorIter::new(&bytes).map_err(|e| corrupt(&path, e.to_string()))?;
        it.collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(&path, e.to_string()))
    }

    /// Series matching all matchers with their samples in `[mint, maxt]`, sorted by labels.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, BlockError> {
        let mut out = Vec::new();
        for r in self.index.select(matchers) {
            let Some(s) = self.series.get(r as usize) else {
                continue;
            };
            let mut samples = Vec::new();
            for c in s
                .chunks
                .iter()
                .filter(|c| c.max_t >= mint && c.min_t <= maxt)
            {
                samples.extend(
                    self.read_chunk(c)?
                        .into_iter()
                        .filter(|x| x.t >= mint && x.t <= maxt),
                );
            }
            if !samples.is_empty() {
                out.push(Series {
                    labels: s.labels.clone(),
                    samples,
                });
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// Label sets of series matching all matchers with a chunk overlapping `[mint, maxt]`.
    pub fn series_labels(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        self.index
            .select(matchers)
            .into_iter()
            .filter_map(|r| self.series.get(r as usize))
            .filter(|s| s.chunks.iter().any(|c| c.max_t >= mint && c.min_t <= maxt))
            .map(|s| s.labels.clone())
            .collect()
    }

    /// Deletes the block's directory.
    pub fn delete(self) -> Result<(), BlockError> {
        fs::remove_dir_all(&self.dir).map_err(io_err(&self.dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{Sample, stale_nan};

    fn series(name: &str, n: i64) -> Series {
        Series {
            labels: Labels::from_pairs([("__name__", name), ("job", "j")]).unwrap(),
            samples: (0..n)
                .map(|i| Sample {
                    t: i * 1000,
                    v: i as f64,
                })
                .collect(),
        }
    }

    #[test]
    fn write_open_select_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let mut input = vec![series("a", 300), series("b", 5), series("empty", 0)];
        input[1].samples.push(Sample {
            t: 9_000,
            v: stale_nan(),
        });
        let meta = write_block(dir.path(), &input, 0, BLOCK_RANGE_MS, 1, vec![]).unwrap();
        assert_eq!(
            meta.stats,
            BlockStats {
                num_series: 2,
                num_samples: 306,
                num_chunks: 4
            }
        );
        assert_eq!(meta.sources, vec![meta.id.clone()]);
        let block = Block::open(&dir.path().join(&meta.id)).unwrap();
        assert_eq!(block.meta(), &meta);
        let all = block.select(&[], i64::MIN, i64::MAX).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], input[0]);
        assert_eq!(all[1].samples.len(), 6);
        assert!(crate::labels::is_stale_nan(all[1].samples[5].v));
        let some = block
            .select(&[Matcher::equal("__name__", "a")], 150_000, 160_000)
            .unwrap();
        assert_eq!(some[0].samples.len(), 11);
        assert!(!dir.path().join(format!("{}.tmp", meta.id)).exists());
    }

    #[test]
    fn corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let meta =
            write_block(dir.path(), &[series("a", 10)], 0, BLOCK_RANGE_MS, 1, vec![]).unwrap();
        let bdir = dir.path().join(&meta.id);
        let mut chunks = fs::read(bdir.join("chunks")).unwrap();
        let last = chunks.len() - 1;
        chunks[last] ^= 1;
        fs::write(bdir.join("chunks"), &chunks).unwrap();
        let block = Block::open(&bdir).unwrap();
        assert!(matches!(
            block.select(&[], 0, i64::MAX),
            Err(BlockError::Corrupt { .. })
        ));
        let mut index = fs::read(bdir.join("index")).unwrap();
        index[10] ^= 1;
        fs::write(bdir.join("index"), &index).unwrap();
        assert!(matches!(
            Block::open(&bdir),
            Err(BlockError::Corrupt { .. })
        ));
    }
}
