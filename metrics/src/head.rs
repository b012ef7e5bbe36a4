//! The head: the in-memory part of one tenant's store. Series with their Gorilla chunks, the
//! inverted index, and the append rules (in-order, out-of-order window, duplicates).
//!
//! Appending is split in two so that a batch is never half-written: [`Head::plan`] validates a
//! whole batch against the current state without changing it and assigns refs to new series;
//! the caller logs the plan to the WAL, then [`Head::commit`] applies it and cannot fail.

use std::collections::{BTreeMap, HashMap};

use crate::chunk::{SAMPLES_PER_CHUNK, XorChunk};
use crate::index::{Matcher, PostingsIndex, SeriesRef};
use crate::labels::{Labels, Sample, Series};

/// Samples older than the newest sample in the head minus this are out of bounds even for new
/// series (half of Prometheus's 2-hour block range).
pub const IN_ORDER_WINDOW_MS: i64 = 60 * 60 * 1000;

/// Settings of a head.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadConfig {
    /// How far behind the newest sample of the head an out-of-order sample may be (0: none).
    pub ooo_window_ms: i64,
}

/// Why a sample was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AppendError {
    /// Older than the newest sample of its series and out-of-order samples are not accepted.
    #[error("out of order sample for series {labels} at {t}")]
    OutOfOrder {
        /// The series.
        labels: Labels,
        /// The refused timestamp.
        t: i64,
    },
    /// Older than the head accepts at all.
    #[error("sample too old for series {labels} at {t}: earliest accepted is {min_t}")]
    TooOld {
        /// The series.
        labels: Labels,
        /// The refused timestamp.
        t: i64,
        /// The earliest timestamp accepted now.
        min_t: i64,
    },
    /// A different value for a timestamp the series already has.
    #[error("duplicate sample for timestamp {t} with a different value in series {labels}")]
    Duplicate {
        /// The series.
        labels: Labels,
        /// The timestamp.
        t: i64,
    },
}

/// The validated effect of a batch: series to create (with their refs) and samples to append.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// New series in ref order.
    pub new_series: Vec<(SeriesRef, Labels)>,
    /// Samples to append, in batch order.
    pub samples: Vec<(SeriesRef, Sample)>,
}

#[derive(Debug)]
struct MemSeries {
    labels: Labels,
    /// In-order chunks, the last one being appended to.
    chunks: Vec<XorChunk>,
    /// Out-of-order samples accepted within the window.
    ooo: BTreeMap<i64, f64>,
}

impl MemSeries {
    fn last(&self) -> Option<Sample> {
        self.chunks.last()?.last()
    }

    fn value_at(&self, t: i64) -> Option<f64> {
        if let Some(v) = self.ooo.get(&t) {
            return Some(*v);
        }
        self.chunks
            .iter()
            .filter(|c| c.min_t() <= t && t <= c.max_t())
            .flat_map(|c| c.samples())
            .find(|s| s.t == t)
            .map(|s| s.v)
    }

    fn push(&mut self, s: Sample) {
        let last_max = self.chunks.last().map_or(i64::MIN, XorChunk::max_t);
        if s.t <= last_max {
            self.ooo.insert(s.t, s.v);
            return;
        }
        if self
            .chunks
            .last()
            .is_none_or(|c| c.len() >= SAMPLES_PER_CHUNK)
        {
            self.chunks.push(XorChunk::new());
        }
        if let Some(c) = self.chunks.last_mut() {
            // Cannot fail: t is after the chunk's last timestamp and the chunk is not full.
            let _ = c.append(s.t, s.v);
        }
    }

    fn range(&self, mint: i64, maxt: i64) -> Vec<Sample> {
        let in_order = self
            .chunks
            .iter()
            .filter(|c| c.max_t() >= mint && c.min_t() <= maxt)
            .flat_map(|c| c.samples())
            .filter(|s| s.t >= mint && s.t <= maxt);
        let mut out: Vec<Sample> = in_order.collect();
        if !self.ooo.is_empty() {
            out.extend(self.ooo.range(mint..=maxt).map(|(&t, &v)| Sample { t, v }));
            out.sort_by_key(|s| s.t);
        }
        out
    }
}

/// One tenant's in-memory series.
#[derive(Debug, Default)]
pub struct Head {
    config: HeadConfig,
    series: HashMap<SeriesRef, MemSeries>,
    by_labels: HashMap<Labels, SeriesRef>,
    index: PostingsIndex,
    next_ref: SeriesRef,
    max_t: Option<i64>,
    /// Samples before this are in blocks already and refused.
    min_valid_t: i64,
}

/// Per-series state a plan tracks while walking a batch.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    last: Option<Sample>,
}

impl Head {
    /// An empty head.
    pub fn new(config: HeadConfig) -> Self {
        Self {
            config,
            next_ref: 1,
            ..Self::default()
        }
    }

    /// Number of series.
    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    /// Newest timestamp in the head.
    pub fn max_t(&self) -> Option<i64> {
        self.max_t
    }

    /// Oldest timestamp in the head.
    pub fn min_t(&self) -> Option<i64> {
        self.series
            .values()
            .flat_map(|m| {
                m.chunks
                    .first()
                    .map(XorChunk::min_t)
                    .into_iter()
                    .chain(m.ooo.keys().next().copied())
            })
            .min()
    }

    /// Earliest timestamp accepted (the end of the newest block).
    pub fn min_valid_t(&self) -> i64 {
        self.min_valid_t
    }

    /// Refuses samples before `t` from now on (used when blocks exist on disk).
    pub fn set_min_valid_t(&mut self, t: i64) {
        self.min_valid_t = self.min_valid_t.max(t);
    }

    /// Drops every sample before `before` (now in a block), and series left without samples;
    /// samples before `before` are refused from now on.
    pub fn truncate(&mut self, before: i64) {
        self.set_min_valid_t(before);
        let mut old = std::mem::take(&mut self.series);
        self.index = PostingsIndex::default();
        self.by_labels.clear();
        let mut refs: Vec<SeriesRef> = old.keys().copied().collect();
        refs.sort_unstable();
        for r in refs {
            let Some(mut m) = old.remove(&r) else {
                continue;
            };
            let keep_ooo = m.ooo.split_off(&before);
            let in_order: Vec<Sample> = m
                .chunks
                .iter()
                .flat_map(XorChunk::samples)
                .filter(|s| s.t >= before)
                .collect();
            if in_order.is_empty() && keep_ooo.is_empty() {
                continue;
            }
            let mut fresh = MemSeries {
                labels: m.labels,
                chunks: Vec::new(),
                ooo: BTreeMap::new(),
            };
            for s in in_order {
                fresh.push(s);
            }
            fresh.ooo = keep_ooo;
            self.index.add(r, &fresh.labels);
            self.by_labels.insert(fresh.labels.clone(), r);
            self.series.insert(r, fresh);
        }
    }

    /// The ref of a series, if it exists.
    pub fn series_ref(&self, labels: &Labels) -> Option<SeriesRef> {
        self.by_labels.get(labels).copied()
    }

    /// Validates a batch without changing the head: every sample must be appendable (in order,
    /// or out of order within the window, not a conflicting duplicate). Identical duplicates are
    /// dropped from the plan, as Prometheus ignores them.
    pub fn plan(&self, batch: &[Series]) -> Result<Plan, AppendError> {
        let mut plan = Plan::default();
        let mut new_refs: HashMap<&Labels, SeriesRef> = HashMap::new();
        let mut cursors: HashMap<SeriesRef, Cursor> = HashMap::new();
        let mut ooo_added: HashMap<(SeriesRef, i64), u64> = HashMap::new();
        let mut head_max = self.max_t;
        let mut next_ref = self.next_ref;
        for series in batch {
            let r = match self
                .by_labels
                .get(&series.labels)
                .or_else(|| new_refs.get(&series.labels))
            {
                Some(&r) => r,
                None => {
                    let r = next_ref;
                    next_ref += 1;
                    new_refs.insert(&series.labels, r);
                    plan.new_series.push((r, series.labels.clone()));
                    r
                }
            };
            let existing = self.series.get(&r);
            for &s in &series.samples {
                if s.t < self.min_valid_t {
                    return Err(AppendError::TooOld {
                        labels: series.labels.clone(),
                        t: s.t,
                        min_t: self.min_valid_t,
                    });
                }
                let cursor = cursors.entry(r).or_insert_with(|| Cursor {
                    last: existing.and_then(MemSeries::last),
                });
                if let Some(max) = head_max {
                    let min_t = max - self.config.ooo_window_ms.max(IN_ORDER_WINDOW_MS);
                    if s.t < min_t {
                        return Err(AppendError::TooOld {
                            labels: series.labels.clone(),
                            t: s.t,
                            min_t,
                        });
                    }
                }
                match cursor.last {
                    Some(last) if s.t == last.t => {
                        if last.v.to_bits() != s.v.to_bits() {
                            return Err(AppendError::Duplicate {
                                labels: series.labels.clone(),
                                t: s.t,
                            });
                        }
                        continue;
                    }
                    Some(last) if s.t < last.t => {
                        let min_ooo = head_max.unwrap_or(i64::MIN) - self.config.ooo_window_ms;
                        if self.config.ooo_window_ms <= 0 {
                            return Err(AppendError::OutOfOrder {
                                labels: series.labels.clone(),
                                t: s.t,
                            });
                        }
                        if s.t < min_ooo {
                            return Err(AppendError::TooOld {
                                labels: series.labels.clone(),
                                t: s.t,
                                min_t: min_ooo,
                            });
                        }
                        let before = ooo_added
                            .get(&(r, s.t))
                            .copied()
                            .or_else(|| existing.and_then(|m| m.value_at(s.t)).map(f64::to_bits));
                        match before {
                            Some(bits) if bits == s.v.to_bits() => continue,
                            Some(_) => {
                                return Err(AppendError::Duplicate {
                                    labels: series.labels.clone(),
                                    t: s.t,
                                });
                            }
                            None => {
                                ooo_added.insert((r, s.t), s.v.to_bits());
                            }
                        }
                    }
                    _ => {
                        cursor.last = Some(s);
                        head_max = Some(head_max.map_or(s.t, |m| m.max(s.t)));
                    }
                }
                plan.samples.push((r, s));
            }
        }
        Ok(plan)
    }

    /// Applies a plan made by [`Head::plan`] on this same state.
    pub fn commit(&mut self, plan: Plan) {
        for (r, labels) in plan.new_series {
            self.create_series(r, labels);
        }
        for (r, s) in plan.samples {
            self.append_unchecked(r, s);
        }
    }

    /// Creates a series with a given ref (WAL replay and commit). An existing ref is kept.
    pub fn create_series(&mut self, r: SeriesRef, labels: Labels) {
        if self.series.contains_key(&r) {
            return;
        }
        self.index.add(r, &labels);
        self.by_labels.insert(labels.clone(), r);
        self.series.insert(
            r,
            MemSeries {
                labels,
                chunks: Vec::new(),
                ooo: BTreeMap::new(),
            },
        );
        self.next_ref = self.next_ref.max(r + 1);
    }

    /// Appends a sample already validated (or replayed from the WAL): in order when newer than
    /// the series' last sample, else into its out-of-order buffer. Unknown refs are ignored and
    /// reported as `false`.
    pub fn append_unchecked(&mut self, r: SeriesRef, s: Sample) -> bool {
        let Some(series) = self.series.get_mut(&r) else {
            return false;
        };
        series.push(s);
        self.max_t = Some(self.max_t.map_or(s.t, |m| m.max(s.t)));
        true
    }

    /// Series matching all matchers with their samples in `[mint, maxt]` (staleness markers
    /// included), sorted by labels. Series without samples in the range are left out.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series> {
        let mut out: Vec<Series> = self
            .index
            .select(matchers)
            .into_iter()
            .filter_map(|r| self.series.get(&r))
            .map(|m| Series {
                labels: m.labels.clone(),
                samples: m.range(mint, maxt),
            })
            .filter(|s| !s.samples.is_empty())
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Label sets of series matching all matchers with a sample in `[mint, maxt]` (judged from
    /// chunk bounds, without decoding).
    pub fn series_labels(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        self.index
            .select(matchers)
            .into_iter()
            .filter_map(|r| self.series.get(&r))
            .filter(|m| {
                m.chunks
                    .iter()
                    .any(|c| c.max_t() >= mint && c.min_t() <= maxt)
                    || m.ooo.range(mint..=maxt).next().is_some()
            })
            .map(|m| m.labels.clone())
            .collect()
    }

    /// All series with their refs (for checkpoints).
    pub fn series_refs(&self) -> impl Iterator<Item = (SeriesRef, &Labels)> {
        self.series.iter().map(|(&r, m)| (r, &m.labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, samples: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::from_pairs([("__name__", name), ("job", "j")]).unwrap(),
            samples: samples.iter().map(|&(t, v)| Sample { t, v }).collect(),
        }
    }

    fn append(head: &mut Head, batch: &[Series]) -> Result<(), AppendError> {
        let plan = head.plan(batch)?;
        head.commit(plan);
        Ok(())
    }

    #[test]
    fn in_order_appends_cut_chunks_and_select_by_range() {
        let mut head = Head::new(HeadConfig::default());
        let samples: Vec<(i64, f64)> = (0..300).map(|i| (i * 1000, i as f64)).collect();
        append(
            &mut head,
            &[series("a", &samples), series("b", &[(5, 1.0)])],
        )
        .unwrap();
        assert_eq!(head.num_series(), 2);
        let got = head.select(&[Matcher::equal("__name__", "a")], 100_000, 250_000);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].samples.len(), 151);
        assert_eq!(
            got[0].samples[0],
            Sample {
                t: 100_000,
                v: 100.0
            }
        );
        assert_eq!(head.series.values().map(|m| m.chunks.len()).max(), Some(3));
        let all = head.select(&[Matcher::equal("job", "j")], 0, 10);
        assert_eq!(
            all.iter()
                .map(|s| s.labels.metric_name().unwrap())
                .collect::<Vec<_>>(),
            vec!["a", "b"]
        );
    }

    #[test]
    fn out_of_order_rejected_without_window_and_batch_is_atomic() {
        let mut head = Head::new(HeadConfig::default());
        append(&mut head, &[series("a", &[(10_000, 1.0)])]).unwrap();
        let err = append(
            &mut head,
            &[series("b", &[(20_000, 1.0)]), series("a", &[(5_000, 2.0)])],
        )
        .unwrap_err();
        assert!(matches!(err, AppendError::OutOfOrder { t: 5_000, .. }));
        // Nothing of the failed batch was applied, not even the new series b.
        assert_eq!(head.num_series(), 1);
        assert_eq!(head.max_t(), Some(10_000));
    }

    #[test]
    fn out_of_order_window_and_duplicates() {
        let mut head = Head::new(HeadConfig {
            ooo_window_ms: 60_000,
        });
        append(&mut head, &[series("a", &[(100_000, 1.0), (110_000, 2.0)])]).unwrap();
        append(&mut head, &[series("a", &[(105_000, 1.5)])]).unwrap();
        let got = head.select(&[], 0, i64::MAX);
        let ts: Vec<i64> = got[0].samples.iter().map(|s| s.t).collect();
        assert_eq!(ts, vec![100_000, 105_000, 110_000]);
        // Same value again: ignored. Different value: duplicate error.
        append(&mut head, &[series("a", &[(105_000, 1.5), (110_000, 2.0)])]).unwrap();
        assert!(matches!(
            append(&mut head, &[series("a", &[(105_000, 9.0)])]),
            Err(AppendError::Duplicate { t: 105_000, .. })
        ));
        assert!(matches!(
            append(&mut head, &[series("a", &[(110_000, 9.0)])]),
            Err(AppendError::Duplicate { t: 110_000, .. })
        ));
        // Within the batch too.
        assert!(matches!(
            append(
                &mut head,
                &[series("a", &[(90_000, 1.0)]), series("a", &[(90_000, 2.0)])]
            ),
            Err(AppendError::Duplicate { t: 90_000, .. })
        ));
        // Beyond the window: too old.
        assert!(matches!(
            append(&mut head, &[series("a", &[(40_000, 1.0)])]),
            Err(AppendError::TooOld { .. })
        ));
        // After truncation, samples before the cut are refused and older data is gone.
        let mut head2 = Head::new(HeadConfig {
            ooo_window_ms: 60_000,
        });
        append(
            &mut head2,
            &[
                series("a", &[(1_000, 1.0), (2_000, 2.0), (3_000, 3.0)]),
                series("b", &[(1_000, 1.0)]),
            ],
        )
        .unwrap();
        head2.truncate(2_000);
        assert_eq!(head2.num_series(), 1);
        assert_eq!(head2.min_t(), Some(2_000));
        assert_eq!(head2.select(&[], 0, i64::MAX)[0].samples.len(), 2);
        assert!(matches!(
            append(&mut head2, &[series("b", &[(1_500, 1.0)])]),
            Err(AppendError::TooOld { .. })
        ));
        append(&mut head2, &[series("b", &[(2_500, 1.0)])]).unwrap();
        assert_eq!(
            head2.select(&[Matcher::equal("__name__", "b")], 0, i64::MAX)[0]
                .samples
                .len(),
            1
        );
        // A new series far behind the head is out of bounds.
        assert!(matches!(
            append(
                &mut head,
                &[series("c", &[(110_000 - IN_ORDER_WINDOW_MS - 1, 1.0)])]
            ),
            Err(AppendError::TooOld { .. })
        ));
    }
}
