//! Planning of head cuts, compaction and retention (pure functions over block metas and a
//! caller-supplied clock), and the merge of block contents. [`crate::storage::Storage`]
//! executes the plans.

use std::collections::BTreeMap;

use crate::block::BlockMeta;
use crate::labels::{Labels, Sample, Series};

/// Longest block compaction produces, whatever the retention (31 days, as in Prometheus).
pub const MAX_BLOCK_MS: i64 = 31 * 24 * 60 * 60 * 1000;

/// Block lengths compaction builds: 3×, 9×, 27×… the head block range, up to a tenth of the
/// retention (Prometheus's defaults: 2 h, 6 h, 18 h, … with 15 d retention up to 36 h).
pub fn compaction_ranges(block_range_ms: i64, retention_ms: i64) -> Vec<i64> {
    let max = (retention_ms / 10).min(MAX_BLOCK_MS);
    let mut out = Vec::new();
    let mut r = block_range_ms.saturating_mul(3);
    while block_range_ms > 0 && r <= max {
        out.push(r);
        r = r.saturating_mul(3);
    }
    out
}

/// The aligned range to cut from a head spanning `[min_t, max_t]`, once it spans more than
/// 1.5 block ranges (so the head keeps at least half a range for late samples).
pub fn head_cut_range(min_t: i64, max_t: i64, block_range_ms: i64) -> Option<(i64, i64)> {
    if block_range_ms <= 0 || max_t - min_t <= block_range_ms + block_range_ms / 2 {
        return None;
    }
    let start = min_t.div_euclid(block_range_ms) * block_range_ms;
    Some((start, start + block_range_ms))
}

/// Ids of blocks to merge next: the oldest group of at least two blocks inside one aligned
/// window of one of `ranges`, once newer data exists past the window's end.
pub fn plan_compaction(metas: &[BlockMeta], ranges: &[i64]) -> Option<Vec<String>> {
    let newest = metas.iter().map(|m| m.max_t).max()?;
    for &r in ranges {
        let mut windows: BTreeMap<i64, Vec<&BlockMeta>> = BTreeMap::new();
        for m in metas {
            let k = m.min_t.div_euclid(r);
            if m.max_t <= (k + 1) * r {
                windows.entry(k).or_default().push(m);
            }
        }
        for (k, group) in windows {
            if group.len() >= 2 && (k + 1) * r <= newest {
                return Some(group.iter().map(|m| m.id.clone()).collect());
            }
        }
    }
    None
}

/// Ids of blocks entirely older than `now_ms - retention_ms`.
pub fn expired(metas: &[BlockMeta], now_ms: i64, retention_ms: i64) -> Vec<String> {
    metas
        .iter()
        .filter(|m| m.max_t <= now_ms.saturating_sub(retention_ms))
        .map(|m| m.id.clone())
        .collect()
}

/// Ids of blocks whose data another block already holds (left behind by a compaction that
/// stopped before deleting its inputs).
pub fn superseded(metas: &[BlockMeta]) -> Vec<String> {
    metas
        .iter()
        .filter(|m| {
            metas.iter().any(|o| {
                o.id != m.id && o.level > m.level && m.sources.iter().all(|s| o.sources.contains(s))
            })
        })
        .map(|m| m.id.clone())
        .collect()
}

/// Merges the series of several blocks: one series per label set, samples sorted, one sample
/// per timestamp (the later part wins).
pub fn merge_series(parts: Vec<Vec<Series>>) -> Vec<Series> {
    let mut merged: BTreeMap<Labels, BTreeMap<i64, f64>> = BTreeMap::new();
    for part in parts {
        for s in part {
            merged
                .entry(s.labels)
                .or_default()
                .extend(s.samples.into_iter().map(|x| (x.t, x.v)));
        }
    }
    merged
        .into_iter()
        .map(|(labels, samples)| Series {
            labels,
            samples: samples.into_iter().map(|(t, v)| Sample { t, v }).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{BLOCK_RANGE_MS, BlockStats, block_id};

    const H: i64 = 60 * 60 * 1000;

    fn meta(min_t: i64, max_t: i64, level: u32, sources: &[&str]) -> BlockMeta {
        let id = block_id(min_t, max_t, level);
        let sources = if sources.is_empty() {
            vec![id.clone()]
        } else {
            sources.iter().map(|s| s.to_string()).collect()
        };
        BlockMeta {
            id,
            min_t,
            max_t,
            stats: BlockStats::default(),
            level,
            sources,
        }
    }

    #[test]
    fn ranges_follow_retention() {
        assert_eq!(
            compaction_ranges(BLOCK_RANGE_MS, 15 * 24 * H),
            vec![6 * H, 18 * H]
        );
        assert_eq!(compaction_ranges(BLOCK_RANGE_MS, 10 * H), Vec::<i64>::new());
    }

    #[test]
    fn head_is_cut_after_one_and_a_half_ranges() {
        assert_eq!(head_cut_range(0, 3 * H, BLOCK_RANGE_MS), None);
        assert_eq!(
            head_cut_range(30 * 60 * 1000, 3 * H + 31 * 60 * 1000, BLOCK_RANGE_MS),
            Some((0, 2 * H))
        );
        assert_eq!(
            head_cut_range(5 * H, 9 * H, BLOCK_RANGE_MS),
            Some((4 * H, 6 * H))
        );
    }

    #[test]
    fn compaction_waits_for_complete_windows() {
        let ranges = [6 * H, 18 * H];
        let two = [meta(0, 2 * H, 1, &[]), meta(2 * H, 4 * H, 1, &[])];
        // The 6 h window [0, 6h) is not complete yet.
        assert_eq!(plan_compaction(&two, &ranges), None);
        let four = [
            two[0].clone(),
            two[1].clone(),
            meta(4 * H, 6 * H, 1, &[]),
            meta(6 * H, 8 * H, 1, &[]),
        ];
        let plan = plan_compaction(&four, &ranges).unwrap();
        assert_eq!(
            plan,
            vec![four[0].id.clone(), four[1].id.clone(), four[2].id.clone()]
        );
    }

    #[test]
    fn retention_and_supersession() {
        let metas = [meta(0, 2 * H, 1, &[]), meta(2 * H, 4 * H, 1, &[])];
        assert_eq!(expired(&metas, 10 * H, 7 * H), vec![metas[0].id.clone()]);
        assert!(expired(&metas, 10 * H, 8 * H).len() == 1);
        assert!(expired(&metas, 10 * H, 9 * H).is_empty());
        let merged = meta(0, 4 * H, 2, &[&metas[0].id, &metas[1].id]);
        let all = [metas[0].clone(), metas[1].clone(), merged];
        assert_eq!(
            superseded(&all),
            vec![metas[0].id.clone(), metas[1].id.clone()]
        );
    }

    #[test]
    fn merge_dedups_timestamps() {
        let l = Labels::from_pairs([("__name__", "a")]).unwrap();
        let s = |pts: &[(i64, f64)]| Series {
            labels: l.clone(),
            samples: pts.iter().map(|&(t, v)| Sample { t, v }).collect(),
        };
        let out = merge_series(vec![
            vec![s(&[(1, 1.0), (2, 2.0)])],
            vec![s(&[(2, 9.0), (3, 3.0)])],
        ]);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].samples,
            vec![
                Sample { t: 1, v: 1.0 },
                Sample { t: 2, v: 9.0 },
                Sample { t: 3, v: 3.0 }
            ]
        );
    }
}
