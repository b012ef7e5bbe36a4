//! Periodic maintenance driven by the caller's clock: cut the head into 2-hour blocks (and
//! checkpoint the WAL), compact blocks into larger ones, delete blocks past retention.

use std::collections::HashSet;

use crate::block::{Block, BlockMeta, write_block};
use crate::compact::{compaction_ranges, expired, head_cut_range, merge_series, plan_compaction};
use crate::index::SeriesRef;

use super::{Storage, StorageConfig, StorageError, Tenant};

/// What one maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Blocks cut from heads.
    pub blocks_cut: usize,
    /// Compactions (each merging several blocks into one).
    pub compactions: usize,
    /// Blocks deleted past retention.
    pub blocks_deleted: usize,
}

impl Storage {
    /// Runs maintenance for every tenant at time `now_ms`.
    pub fn maintain(&self, now_ms: i64) -> Result<MaintenanceReport, StorageError> {
        let mut report = MaintenanceReport::default();
        for id in self.tenants()? {
            let Some(handle) = self.existing(&id)? else {
                continue;
            };
            let mut t = handle.write().map_err(|_| StorageError::Poisoned)?;
            t.maintain(&self.config, now_ms, &mut report)?;
        }
        Ok(report)
    }
}

impl Tenant {
    fn maintain(
        &mut self,
        config: &StorageConfig,
        now_ms: i64,
        report: &mut MaintenanceReport,
    ) -> Result<(), StorageError> {
        let Some(dir) = self.dir.clone() else {
            // In memory: only retention applies, to the head.
            let cutoff = now_ms.saturating_sub(config.retention_ms);
            if self.head.min_t().is_some_and(|m| m < cutoff) {
                self.head.truncate(cutoff);
            }
            return Ok(());
        };
        let blocks_dir = dir.join("blocks");
        while let (Some(min), Some(max)) = (self.head.min_t(), self.head.max_t()) {
            let Some((start, end)) = head_cut_range(min, max, config.block_range_ms) else {
                break;
            };
            let data = self.head.select(&[], start, end - 1);
            if !data.is_empty() {
                let meta = write_block(&blocks_dir, &data, start, end, 1, Vec::new())?;
                self.blocks.push(Block::open(&blocks_dir.join(&meta.id))?);
                report.blocks_cut += 1;
            }
            self.head.truncate(end);
            if let Some(wal) = self.wal.as_mut() {
                let live: HashSet<SeriesRef> = self.head.series_refs().map(|(r, _)| r).collect();
                wal.checkpoint(|r| live.contains(&r), end)?;
            }
        }
        let ranges = compaction_ranges(config.block_range_ms, config.retention_ms);
        loop {
            let metas: Vec<BlockMeta> = self.blocks.iter().map(|b| b.meta().clone()).collect();
            let Some(ids) = plan_compaction(&metas, &ranges) else {
                break;
            };
            let (inputs, rest): (Vec<Block>, Vec<Block>) = std::mem::take(&mut self.blocks)
                .into_iter()
                .partition(|b| ids.contains(&b.meta().id));
            self.blocks = rest;
            let parts = inputs
                .iter()
                .map(|b| b.select(&[], i64::MIN, i64::MAX))
                .collect::<Result<Vec<_>, _>>()?;
            let min_t = inputs
                .iter()
                .map(|b| b.meta().min_t)
                .min()
                .unwrap_or(i64::MIN);
            let max_t = inputs
                .iter()
                .map(|b| b.meta().max_t)
                .max()
                .unwrap_or(i64::MAX);
            let level = inputs.iter().map(|b| b.meta().level).max().unwrap_or(1) + 1;
            let sources = inputs
                .iter()
                .flat_map(|b| b.meta().sources.clone())
                .collect();
            let meta = write_block(
                &blocks_dir,
                &merge_series(parts),
                min_t,
                max_t,
                level,
                sources,
            )?;
            self.blocks.push(Block::open(&blocks_dir.join(&meta.id))?);
            for b in inputs {
                b.delete()?;
            }
            self.blocks.sort_by_key(|b| b.meta().min_t);
            report.compactions += 1;
        }
        let metas: Vec<BlockMeta> = self.blocks.iter().map(|b| b.meta().clone()).collect();
        let old = expired(&metas, now_ms, config.retention_ms);
        if !old.is_empty() {
            let (gone, keep): (Vec<Block>, Vec<Block>) = std::mem::take(&mut self.blocks)
                .into_iter()
                .partition(|b| old.contains(&b.meta().id));
            self.blocks = keep;
            for b in gone {
                b.delete()?;
                report.blocks_deleted += 1;
            }
        }
        Ok(())
    }
}
