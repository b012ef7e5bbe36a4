//! The multi-tenant store: per tenant a head, and on disk a WAL and blocks; the write path that
//! validates a whole batch before writing any of it, the read path merging blocks and head, and
//! maintenance (see [`Storage::maintain`]).
//!
//! Both paths go through the [`Store`] trait so that placement of series on peers and the merge
//! of replicas (the metrics ring) can wrap a local [`Storage`] later without changing callers.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::block::{BLOCK_RANGE_MS, Block, BlockError};
use crate::compact::{merge_series, superseded};
use crate::head::{AppendError, Head, HeadConfig};
use crate::index::Matcher;
use crate::labels::{Labels, Series};
use crate::tenant::{Limits, RateLimiter, TenantId};
use crate::wal::{DEFAULT_SEGMENT_SIZE, Wal, WalError, WalRecord};

/// Settings of a [`Storage`].
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Data directory (one sub-directory per tenant); `None` keeps everything in memory.
    pub dir: Option<PathBuf>,
    /// Head settings (out-of-order window).
    pub head: HeadConfig,
    /// Per-tenant limits.
    pub limits: Limits,
    /// WAL segment size.
    pub segment_size: u64,
    /// How far in the future a sample may be.
    pub max_future_ms: i64,
    /// Length of the blocks cut from the head.
    pub block_range_ms: i64,
    /// Blocks entirely older than this are deleted (`--metrics-retention`, default 15 days).
    pub retention_ms: i64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            dir: None,
            head: HeadConfig::default(),
            limits: Limits::default(),
            segment_size: DEFAULT_SEGMENT_SIZE,
            max_future_ms: 10 * 60 * 1000,
            block_range_ms: BLOCK_RANGE_MS,
            retention_ms: 15 * 24 * 60 * 60 * 1000,
        }
    }
}

/// Why a write was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A sample cannot be appended (out of order, too old, duplicate): a client error.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The tenant sends faster than its ingestion rate.
    #[error("ingestion rate limit of {rate} samples/s exceeded for tenant {tenant}")]
    RateLimited {
        /// The tenant.
        tenant: TenantId,
        /// The limit.
        rate: f64,
        /// When a retry can succeed.
        retry_after_ms: u64,
    },
    /// The tenant would exceed its number of series.
    #[error("per-tenant series limit of {limit} exceeded for tenant {tenant}")]
    SeriesLimit {
        /// The tenant.
        tenant: TenantId,
        /// The limit.
        limit: usize,
    },
    /// A series has too many labels or too long a label.
    #[error("series {series}: {reason}")]
    LabelLimit {
        /// The series.
        series: String,
        /// Which limit.
        reason: String,
    },
    /// The WAL could not be written; nothing was acknowledged.
    #[error("write-ahead log failed: {0}")]
    Wal(#[from] WalError),
    /// A previous WAL failure left this tenant read-only until restart.
    #[error("tenant {0} is read-only after a write-ahead log failure")]
    Unavailable(TenantId),
    /// A replica of the metrics ring refused the batch as invalid: a client error.
    #[error("a replica refused the write: {0}")]
    Refused(String),
    /// Too few replicas of the metrics ring made the write durable: retry later.
    #[error("the write did not reach a quorum of replicas: {0}")]
    NoQuorum(String),
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A tenant could not be opened from disk.
    #[error("opening tenant {tenant}: {source}")]
    Open {
        /// The tenant.
        tenant: String,
        /// The WAL error.
        source: WalError,
    },
    /// The data directory could not be read.
    #[error("reading data directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A lock was poisoned by a panic elsewhere.
    #[error("storage lock poisoned")]
    Poisoned,
    /// Too few peers of the metrics ring answered to give a complete result: retry later.
    #[error("too few replicas answered: {0}")]
    Unavailable(String),
    /// A block could not be read or written.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// The WAL could not be checkpointed.
    #[error(transparent)]
    Wal(#[from] WalError),
}

/// What a successful write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Samples appended.
    pub samples: usize,
    /// Series created.
    pub new_series: usize,
}

/// The write and read paths, per tenant.
pub trait Store: Send + Sync {
    /// Validates the whole batch, then makes it durable and visible; nothing is written when
    /// any part is refused.
    fn write(
        &self,
        tenant: &TenantId,
        batch: Vec<Series>,
        now_ms: i64,
    ) -> Result<WriteStats, WriteError>;

    /// Series matching all matchers, with their samples in `[mint, maxt]`, sorted by labels.
    fn select(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, StorageError>;

    /// Label sets of series matching all matchers with samples in `[mint, maxt]`, sorted and
    /// without reading samples.
    fn series(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError>;

    /// Label names of series matching the matchers with samples in `[mint, maxt]`, sorted.
    fn label_names(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let series = self.series(tenant, matchers, mint, maxt)?;
        Ok(sorted_distinct(
            series
                .iter()
                .flat_map(|ls| ls.iter().map(|l| l.name.clone())),
        ))
    }

    /// Values of label `name` over series matching the matchers with samples in `[mint, maxt]`.
    fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let series = self.series(tenant, matchers, mint, maxt)?;
        Ok(sorted_distinct(
            series
                .iter()
                .filter_map(|ls| ls.get(name).map(str::to_owned)),
        ))
    }
}

/// `items` sorted, without repeats.
fn sorted_distinct(items: impl Iterator<Item = String>) -> Vec<String> {
    items.collect::<BTreeSet<_>>().into_iter().collect()
}

#[derive(Debug)]
struct Tenant {
    head: Head,
    wal: Option<Wal>,
    /// The tenant's directory, when on disk.
    dir: Option<PathBuf>,
    /// Blocks sorted by time.
    blocks: Vec<Block>,
    limiter: RateLimiter,
    broken: bool,
    samples_appended: u64,
}

impl Tenant {
    /// Blocks holding samples in `[mint, maxt]`.
    fn blocks_overlapping(&self, mint: i64, maxt: i64) -> impl Iterator<Item = &Block> {
        self.blocks
            .iter()
            .filter(move |b| b.meta().max_t > mint && b.meta().min_t <= maxt)
    }
}

/// The local store of one router.
#[derive(Debug)]
pub struct Storage {
    config: StorageConfig,
    tenants: RwLock<HashMap<TenantId, Arc<RwLock<Tenant>>>>,
}

impl Storage {
    /// Opens the store, replaying the WAL of every tenant found in the data directory.
    pub fn open(config: StorageConfig) -> Result<Self, StorageError> {
        let storage = Self {
            config,
            tenants: RwLock::new(HashMap::new()),
        };
        if let Some(dir) = &storage.config.dir {
            fs::create_dir_all(dir).map_err(|source| StorageError::Dir {
                path: dir.clone(),
                source,
            })?;
            let entries = fs::read_dir(dir).map_err(|source| StorageError::Dir {
                path: dir.clone(),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source| StorageError::Dir {
                    path: dir.clone(),
                    source,
                })?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Ok(id) = TenantId::new(&name) {
                    storage.tenant(&id)?;
                }
            }
        }
        Ok(storage)
    }

    /// The configuration.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// Tenants currently known, sorted.
    pub fn tenants(&self) -> Result<Vec<TenantId>, StorageError> {
        let map = self.tenants.read().map_err(|_| StorageError::Poisoned)?;
        let mut ids: Vec<TenantId> = map.keys().cloned().collect();
        ids.sort();
        Ok(ids)
    }

    fn existing(&self, id: &TenantId) -> Result<Option<Arc<RwLock<Tenant>>>, StorageError> {
        Ok(self
            .tenants
            .read()
            .map_err(|_| StorageError::Poisoned)?
            .get(id)
            .cloned())
    }

    /// Runs `read` under the read lock of an existing tenant; an unknown tenant has no data.
    fn read_tenant<T>(
        &self,
        id: &TenantId,
        read: impl FnOnce(&Tenant) -> Result<Vec<T>, StorageError>,
    ) -> Result<Vec<T>, StorageError> {
        let Some(handle) = self.existing(id)? else {
            return Ok(Vec::new());
        };
        let t = handle.read().map_err(|_| StorageError::Poisoned)?;
        read(&t)
    }

    /// The tenant, opened (WAL replayed) or created on first use.
    fn tenant(&self, id: &TenantId) -> Result<Arc<RwLock<Tenant>>, StorageError> {
        if let Some(t) = self.existing(id)? {
            return Ok(t);
        }
        let mut map = self.tenants.write().map_err(|_| StorageError::Poisoned)?;
        if let Some(t) = map.get(id) {
            return Ok(t.clone());
        }
        let mut head = Head::new(self.config.head);
        let tenant_dir = self.config.dir.as_ref().map(|d| d.join(id.as_str()));
        let blocks = match &tenant_dir {
            Some(dir) => open_blocks(&dir.join("blocks"))?,
            None => Vec::new(),
        };
        if let Some(end) = blocks.iter().map(|b| b.meta().max_t).max() {
            head.set_min_valid_t(end);
        }
        let wal = match &tenant_dir {
            None => None,
            Some(dir) => {
                let wal_dir = dir.join("wal");
                let (wal, report) =
                    Wal::open(&wal_dir, self.config.segment_size, |rec| match rec {
                        WalRecord::Series(series) => {
                            for (r, labels) in series {
                                head.create_series(r, labels);
                            }
                        }
                        WalRecord::Samples(samples) => {
                            // Samples already in blocks (a crash before the checkpoint) are skipped.
                            let min_valid = head.min_valid_t();
                            for (r, s) in samples.into_iter().filter(|(_, s)| s.t >= min_valid) {
                                head.append_unchecked(r, s);
                            }
                        }
                    })
                    .map_err(|source| StorageError::Open {
                        tenant: id.to_string(),
                        source,
                    })?;
                tracing::info!(tenant = %id, records = report.records, series = head.num_series(), "replayed WAL");
                Some(wal)
            }
        };
        let tenant = Arc::new(RwLock::new(Tenant {
            head,
            wal,
            dir: tenant_dir,
            blocks,
            limiter: RateLimiter::new(&self.config.limits),
            broken: false,
            samples_appended: 0,
        }));
        map.insert(id.clone(), tenant.clone());
        Ok(tenant)
    }

    /// The store's own metrics in the Prometheus text exposition format.
    pub fn exposition(&self) -> Result<String, StorageError> {
        let mut series = String::from(
            "# HELP weft_tsdb_head_series Series in the head.\n# TYPE weft_tsdb_head_series gauge\n",
        );
        let mut samples = String::from(
            "# HELP weft_tsdb_samples_appended_total Samples appended.\n# TYPE weft_tsdb_samples_appended_total counter\n",
        );
        for id in self.tenants()? {
            let Some(handle) = self.existing(&id)? else {
                continue;
            };
            let t = handle.read().map_err(|_| StorageError::Poisoned)?;
            series.push_str(&format!(
                "weft_tsdb_head_series{{tenant=\"{id}\"}} {}\n",
                t.head.num_series()
            ));
            samples.push_str(&format!(
                "weft_tsdb_samples_appended_total{{tenant=\"{id}\"}} {}\n",
                t.samples_appended
            ));
        }
        Ok(series + &samples)
    }

    fn check_label_limits(&self, batch: &[Series]) -> Result<(), WriteError> {
        let limits = &self.config.limits;
        for s in batch {
            let fail = |reason: String| WriteError::LabelLimit {
                series: s.labels.to_string(),
                reason,
            };
            if s.labels.len() > limits.max_label_names {
                return Err(fail(format!(
                    "{} labels exceed the limit of {}",
                    s.labels.len(),
                    limits.max_label_names
                )));
            }
            for l in s.labels.iter() {
                if l.name.len() > limits.max_label_name_len {
                    return Err(fail(format!(
                        "label name longer than {} bytes",
                        limits.max_label_name_len
                    )));
                }
                if l.value.len() > limits.max_label_value_len {
                    return Err(fail(format!(
                        "value of label {} longer than {} bytes",
                        l.name, limits.max_label_value_len
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Store for Storage {
    fn write(
        &self,
        tenant: &TenantId,
        batch: Vec<Series>,
        now_ms: i64,
    ) -> Result<WriteStats, WriteError> {
        self.check_label_limits(&batch)?;
        if self.existing(tenant).ok().flatten().is_none() {
            // A new tenant gets a directory only for a batch that an empty head accepts.
            Head::new(self.config.head).plan(&batch)?;
        }
        let handle = self.tenant(tenant).map_err(|e| match e {
            StorageError::Open { source, .. } => WriteError::Wal(source),
            _ => WriteError::Unavailable(tenant.clone()),
        })?;
        let mut t = handle
            .write()
            .map_err(|_| WriteError::Unavailable(tenant.clone()))?;
        if t.broken {
            return Err(WriteError::Unavailable(tenant.clone()));
        }
        let limits = self.config.limits;
        let plan = t.head.plan(&batch)?;
        if t.head.num_series() + plan.new_series.len() > limits.max_series {
            return Err(WriteError::SeriesLimit {
                tenant: tenant.clone(),
                limit: limits.max_series,
            });
        }
        let n = plan.samples.len();
        if let Err(retry_after_ms) = t.limiter.check(&limits, now_ms, n) {
            return Err(WriteError::RateLimited {
                tenant: tenant.clone(),
                rate: limits.ingestion_rate,
                retry_after_ms,
            });
        }
        let stats = WriteStats {
            samples: n,
            new_series: plan.new_series.len(),
        };
        let mut pending = None;
        if let Some(wal) = t.wal.as_mut() {
            let mut records = Vec::with_capacity(2);
            if !plan.new_series.is_empty() {
                records.push(WalRecord::Series(plan.new_series.clone()));
            }
            if !plan.samples.is_empty() {
                records.push(WalRecord::Samples(plan.samples.clone()));
            }
            match wal.append(&records) {
                Ok(pos) => pending = Some((wal.syncer(), pos)),
                Err(e) => {
                    // A partly written frame may follow; refuse further writes so it stays the tail.
                    t.broken = true;
                    return Err(e.into());
                }
            }
        }
        t.limiter.take(n);
        t.samples_appended += n as u64;
        t.head.commit(plan);
        drop(t);
        // Group commit: wait outside the tenant lock for an fsync covering this batch; the
        // batch is acknowledged only after it.
        if let Some((syncer, pos)) = pending
            && let Err(e) = syncer.sync_to(pos)
        {
            if let Ok(mut t) = handle.write() {
                t.broken = true;
            }
            return Err(e.into());
        }
        Ok(stats)
    }

    fn select(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, StorageError> {
        self.read_tenant(tenant, |t| {
            let mut parts = Vec::new();
            for b in t.blocks_overlapping(mint, maxt) {
                parts.push(b.select(matchers, mint, maxt)?);
            }
            let head = t.head.select(matchers, mint, maxt);
            if parts.is_empty() {
                return Ok(head);
            }
            // The head goes last so that it wins on equal timestamps.
            parts.push(head);
            Ok(merge_series(parts))
        })
    }

    fn series(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        self.read_tenant(tenant, |t| {
            let mut all: BTreeSet<Labels> = t
                .head
                .series_labels(matchers, mint, maxt)
                .into_iter()
                .collect();
            for b in t.blocks_overlapping(mint, maxt) {
                all.extend(b.series_labels(matchers, mint, maxt));
            }
            Ok(all.into_iter().collect())
        })
    }
}

/// Opens the blocks of a tenant, removing unfinished (`.tmp`) and superseded ones.
fn open_blocks(dir: &std::path::Path) -> Result<Vec<Block>, StorageError> {
    let dir_err = |source| StorageError::Dir {
        path: dir.to_owned(),
        source,
    };
    fs::create_dir_all(dir).map_err(dir_err)?;
    let mut blocks = Vec::new();
    for entry in fs::read_dir(dir).map_err(dir_err)? {
        let path = entry.map_err(dir_err)?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            tracing::warn!(path = %path.display(), "removing unfinished block");
            fs::remove_dir_all(&path).map_err(|source| StorageError::Dir {
                path: path.clone(),
                source,
            })?;
            continue;
        }
        blocks.push(Block::open(&path)?);
    }
    let metas: Vec<_> = blocks.iter().map(|b| b.meta().clone()).collect();
    let stale = superseded(&metas);
    let (old, mut keep): (Vec<Block>, Vec<Block>) = blocks
        .into_iter()
        .partition(|b| stale.contains(&b.meta().id));
    for b in old {
        tracing::warn!(block = %b.meta().id, "removing block superseded by a compacted one");
        b.delete()?;
    }
    keep.sort_by_key(|b| b.meta().min_t);
    Ok(keep)
}

mod maintain;

pub use maintain::MaintenanceReport;

#[cfg(test)]
mod tests;
