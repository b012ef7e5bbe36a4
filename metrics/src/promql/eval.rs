//! The evaluator: fetches every selector's samples once, then evaluates the expression tree at
//! one timestamp at a time.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher};
use promql_parser::parser::{AtModifier, Expr, Offset, SubqueryExpr, VectorSelector};

use crate::index::{MatchOp, Matcher};
use crate::labels::{METRIC_NAME, Sample, Series, is_stale_nan};
use crate::storage::Store;
use crate::tenant::TenantId;

use super::value::{Elem, Matrix, Value};
use super::{EngineConfig, QueryError, aggregate, binary, functions};

pub(super) struct Evaluator<'a> {
    pub(super) config: &'a EngineConfig,
    /// Query start and end, for `@ start()` and `@ end()`.
    start: i64,
    end: i64,
    /// Samples of each selector, keyed by the selector node's address.
    data: HashMap<usize, Vec<Series>>,
    /// Samples loaded so far, checked against `max_samples`.
    loaded: usize,
    /// Inner results of subqueries by (node address, time): subquery steps are aligned to
    /// absolute time, so consecutive outer steps share most of them.
    inner: RefCell<HashMap<(usize, i64), Value>>,
}

/// Entries the subquery cache holds before it is cleared.
const INNER_CACHE_LIMIT: usize = 100_000;

fn key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

fn too_many_samples() -> QueryError {
    QueryError::Execution(
        "query processing would load too many samples into memory in query execution".into(),
    )
}

pub(super) fn duration_ms(d: &std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(super) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => duration_ms(&d),
        Err(e) => -duration_ms(&e.duration()),
    }
}

/// Converts parsed matchers (with the metric name and `or` groups) into store matchers: one
/// list per alternative.
pub(super) fn matcher_sets(vs: &VectorSelector) -> Vec<Vec<Matcher>> {
    let convert = |m: &PMatcher| Matcher {
        name: m.name.clone(),
        op: match &m.op {
            PMatchOp::Equal => MatchOp::Equal(m.value.clone()),
            PMatchOp::NotEqual => MatchOp::NotEqual(m.value.clone()),
            // The parser's regexes are already anchored (`^(?:...)$`).
            PMatchOp::Re(r) => MatchOp::Regex(r.clone()),
            PMatchOp::NotRe(r) => MatchOp::NotRegex(r.clone()),
        },
    };
    let name = vs.name.as_ref().map(|n| Matcher::equal(METRIC_NAME, n));
    let groups: Vec<Vec<&PMatcher>> = if vs.matchers.or_matchers.is_empty() {
        vec![vs.matchers.matchers.iter().collect()]
    } else {
        vs.matchers
            .or_matchers
            .iter()
            .map(|g| g.iter().chain(vs.matchers.matchers.iter()).collect())
            .collect()
    };
    groups
        .into_iter()
        .map(|g| {
            name.iter()
                .cloned()
                .chain(g.into_iter().map(convert))
                .collect()
        })
        .collect()
}

impl<'a> Evaluator<'a> {
    pub(super) fn new(config: &'a EngineConfig, start: i64, end: i64) -> Self {
        Self {
            config,
            start,
            end,
            data: HashMap::new(),
            loaded: 0,
            inner: RefCell::new(HashMap::new()),
        }
    }

    fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.start),
            Some(AtModifier::End) => Some(self.end),
            Some(AtModifier::At(t)) => Some(system_time_ms(t)),
        }
    }

    /// Fetches the data of every selector for the whole query.
    pub(super) fn prefetch(
        &mut self,
        store: &dyn Store,
        tenant: &TenantId,
        expr: &Expr,
    ) -> Result<(), QueryError> {
        self.prefetch_in(store, tenant, expr, self.start, self.end)
    }

    /// `lo..=hi`: the evaluation timestamps at which `expr` may be evaluated.
    fn prefetch_in(
        &mut self,
        store: &dyn Store,
        tenant: &TenantId,
        expr: &Expr,
        lo: i64,
        hi: i64,
    ) -> Result<(), QueryError> {
        match expr {
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.prefetch_in(store, tenant, p, lo, hi)?;
                }
                self.prefetch_in(store, tenant, &a.expr, lo, hi)
            }
            Expr::Unary(u) => self.prefetch_in(store, tenant, &u.expr, lo, hi),
            Expr::Binary(b) => {
                self.prefetch_in(store, tenant, &b.lhs, lo, hi)?;
                self.prefetch_in(store, tenant, &b.rhs, lo, hi)
            }
            Expr::Paren(p) => self.prefetch_in(store, tenant, &p.expr, lo, hi),
            Expr::Subquery(sq) => {
                let (lo, hi) = match self.at_ms(&sq.at) {
                    Some(at) => (at, at),
                    None => (lo, hi),
                };
                let off = offset_ms(&sq.offset);
                let range = duration_ms(&sq.range);
                self.prefetch_in(store, tenant, &sq.expr, lo - off - range, hi - off)
            }
            Expr::VectorSelector(vs) => {
                self.fetch(store, tenant, vs, lo, hi, self.config.lookback_ms)
            }
            Expr::MatrixSelector(ms) => {
                self.fetch(store, tenant, &ms.vs, lo, hi, duration_ms(&ms.range))
            }
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.prefetch_in(store, tenant, a, lo, hi)?;
                }
                Ok(())
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
            Expr::Extension(_) => Err(QueryError::Unsupported("extension expressions".into())),
        }
    }

    fn fetch(
        &mut self,
        store: &dyn Store,
        tenant: &TenantId,
        vs: &VectorSelector,
        lo: i64,
        hi: i64,
        window: i64,
    ) -> Result<(), QueryError> {
        let (lo, hi) = match self.at_ms(&vs.at) {
            Some(at) => (at, at),
            None => (lo, hi),
        };
        let off = offset_ms(&vs.offset);
        let (mint, maxt) = (lo - off - window, hi - off);
        let sets = matcher_sets(vs);
        if let [matchers] = sets.as_slice() {
            // One alternative: the store's answer is already sorted and unique.
            let series = store.select(tenant, matchers, mint, maxt)?;
            self.loaded += series.iter().map(|s| s.samples.len()).sum::<usize>();
            if self.loaded > self.config.max_samples {
                return Err(too_many_samples());
            }
            self.data.insert(key(vs), series);
            return Ok(());
        }
        let mut merged: BTreeMap<crate::labels::Labels, Vec<Sample>> = BTreeMap::new();
        for matchers in sets {
            for s in store.select(tenant, &matchers, mint, maxt)? {
                self.loaded += s.samples.len();
                if self.loaded > self.config.max_samples {
                    return Err(too_many_samples());
                }
                merged.entry(s.labels).or_insert(s.samples);
            }
        }
        let series = merged
            .into_iter()
            .map(|(labels, samples)| Series { labels, samples })
            .collect();
        self.data.insert(key(vs), series);
        Ok(())
    }

    fn series_of(&self, vs: &VectorSelector) -> &[Series] {
        self.data.get(&key(vs)).map_or(&[], Vec::as_slice)
    }

    /// The reference time of a selector evaluated at `ts`.
    fn ref_time(&self, vs: &VectorSelector, ts: i64) -> i64 {
        self.at_ms(&vs.at).unwrap_or(ts) - offset_ms(&vs.offset)
    }

    /// Instant vector selector: the newest sample in `(t - lookback, t]` per series, unless it
    /// is a staleness marker.
    pub(super) fn vector_selector(&self, vs: &VectorSelector, ts: i64) -> Vec<Elem> {
        let t = self.ref_time(vs, ts);
        let lookback = self.config.lookback_ms;
        self.series_of(vs)
            .iter()
            .filter_map(|s| {
                let idx = s.samples.partition_point(|x| x.t <= t);
                let last = s.samples[..idx].last()?;
                (last.t > t - lookback && !is_stale_nan(last.v)).then(|| Elem {
                    labels: s.labels.clone(),
                    v: last.v,
                    t: last.t,
                })
            })
            .collect()
    }

    /// Range selector: samples in `(t - range, t]`, staleness markers removed.
    pub(super) fn matrix_selector(&self, vs: &VectorSelector, range: i64, ts: i64) -> Matrix {
        let eval_t = self.at_ms(&vs.at).unwrap_or(ts);
        let end = self.ref_time(vs, ts);
        let start = end - range;
        let series = self
            .series_of(vs)
            .iter()
            .filter_map(|s| {
                let lo = s.samples.partition_point(|x| x.t <= start);
                let hi = s.samples.partition_point(|x| x.t <= end);
                let samples: Vec<Sample> = s.samples[lo..hi]
                    .iter()
                    .filter(|x| !is_stale_nan(x.v))
                    .copied()
                    .collect();
                (!samples.is_empty()).then(|| Series {
                    labels: s.labels.clone(),
                    samples,
                })
            })
            .collect();
        Matrix {
            series,
            start,
            end,
            eval_t,
        }
    }

    /// Subquery: the inner expression at every step-aligned time in `(t - range, t]`.
    fn subquery(&self, sq: &SubqueryExpr, ts: i64) -> Result<Matrix, QueryError> {
        let eval_t = self.at_ms(&sq.at).unwrap_or(ts);
        let end = eval_t - offset_ms(&sq.offset);
        let range = duration_ms(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map_or(self.config.default_subquery_step_ms, duration_ms);
        if step <= 0 {
            return Err(QueryError::BadData("subquery step must be positive".into()));
        }
        let start = end - range;
        let mut t = step * start.div_euclid(step);
        if t <= start {
            t += step;
        }
        let mut series: BTreeMap<crate::labels::Labels, Vec<Sample>> = BTreeMap::new();
        let node = sq as *const SubqueryExpr as usize;
        while t <= end {
            let cached = self.inner.borrow().get(&(node, t)).cloned();
            let value = match cached {
                Some(v) => v,
                None => {
                    let v = self.eval(&sq.expr, t)?;
                    let mut cache = self.inner.borrow_mut();
                    if cache.len() >= INNER_CACHE_LIMIT {
                        cache.clear();
                    }
                    cache.insert((node, t), v.clone());
                    v
                }
            };
            match value {
                Value::Vector(elems) => {
                    for e in elems {
                        series
                            .entry(e.labels)
                            .or_default()
                            .push(Sample { t, v: e.v });
                    }
                }
                Value::Scalar(v) => series
                    .entry(crate::labels::Labels::empty())
                    .or_default()
                    .push(Sample { t, v }),
                _ => {
                    return Err(QueryError::BadData(
                        "subquery is only allowed on instant vector".into(),
                    ));
                }
            }
            t += step;
        }
        Ok(Matrix {
            series: series
                .into_iter()
                .map(|(labels, samples)| Series { labels, samples })
                .collect(),
            start,
            end,
            eval_t,
        })
    }

    /// Evaluates an expression that must yield a range vector.
    pub(super) fn eval_matrix(&self, expr: &Expr, ts: i64) -> Result<Matrix, QueryError> {
        match expr {
            Expr::MatrixSelector(ms) => {
                Ok(self.matrix_selector(&ms.vs, duration_ms(&ms.range), ts))
            }
            Expr::Subquery(sq) => self.subquery(sq, ts),
            Expr::Paren(p) => self.eval_matrix(&p.expr, ts),
            _ => Err(QueryError::BadData("expected a range vector".into())),
        }
    }

    /// Evaluates an expression that must yield a scalar.
    pub(super) fn eval_scalar(&self, expr: &Expr, ts: i64) -> Result<f64, QueryError> {
        match self.eval(expr, ts)? {
            Value::Scalar(v) => Ok(v),
            _ => Err(QueryError::BadData("expected a scalar".into())),
        }
    }

    /// Evaluates an expression that must yield an instant vector.
    pub(super) fn eval_vector(&self, expr: &Expr, ts: i64) -> Result<Vec<Elem>, QueryError> {
        match self.eval(expr, ts)? {
            Value::Vector(v) => Ok(v),
            _ => Err(QueryError::BadData("expected an instant vector".into())),
        }
    }

    /// Evaluates `expr` at timestamp `ts`.
    pub(super) fn eval(&self, expr: &Expr, ts: i64) -> Result<Value, QueryError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.vector_selector(vs, ts))),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                Ok(Value::Matrix(self.eval_matrix(expr, ts)?))
            }
            Expr::Unary(u) => match self.eval(&u.expr, ts)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(elems) => Ok(Value::Vector(
                    elems
                        .into_iter()
                        .map(|e| Elem {
                            labels: e.labels.without(METRIC_NAME),
                            v: -e.v,
                            t: e.t,
                        })
                        .collect(),
                )),
                _ => Err(QueryError::BadData(
                    "unary minus needs a scalar or an instant vector".into(),
                )),
            },
            Expr::Binary(b) => {
                let lhs = self.eval(&b.lhs, ts)?;
                let rhs = self.eval(&b.rhs, ts)?;
                binary::eval(b, lhs, rhs)
            }
            Expr::Aggregate(a) => aggregate::eval(self, a, ts),
            Expr::Call(c) => functions::eval(self, c, ts),
            Expr::Extension(_) => Err(QueryError::Unsupported("extension expressions".into())),
        }
    }
}
