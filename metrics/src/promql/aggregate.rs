//! Aggregation operators with `by`/`without`: sum, avg, count, min, max, group, stddev,
//! stdvar, topk, bottomk, quantile, count_values.

use std::collections::HashMap;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use crate::labels::{Labels, METRIC_NAME};

use super::QueryError;
use super::eval::Evaluator;
use super::value::{Elem, Value};

/// The group key of a series under `by`/`without`.
fn group_key(labels: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        None => Labels::empty(),
        Some(LabelModifier::Include(l)) => labels.filtered(|n| l.labels.iter().any(|x| x == n)),
        Some(LabelModifier::Exclude(l)) => {
            labels.filtered(|n| n != METRIC_NAME && !l.labels.iter().any(|x| x == n))
        }
    }
}

/// Kahan-compensated sum.
#[derive(Default, Clone, Copy)]
pub(super) struct KahanSum {
    sum: f64,
    c: f64,
}

impl KahanSum {
    pub(super) fn add(&mut self, v: f64) {
        let t = self.sum + v;
        if self.sum.abs() >= v.abs() {
            self.c += (self.sum - t) + v;
        } else {
            self.c += (v - t) + self.sum;
        }
        self.sum = t;
    }

    pub(super) fn value(&self) -> f64 {
        if self.sum.is_infinite() {
            self.sum
        } else {
            self.sum + self.c
        }
    }
}

/// φ-quantile of values (Prometheus's `quantile`: linear interpolation between closest ranks).
pub(super) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaNs sort first in Prometheus (they are "less" than everything).
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0) as usize;
    let upper = (lower + 1).min(values.len() - 1);
    let weight = rank - rank.floor();
    values[lower] * (1.0 - weight) + values[upper] * weight
}

/// Formats a float as Go's `strconv.FormatFloat(f, 'f', -1, 64)`.
pub(super) fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Running state of one group.
struct Group {
    labels: Labels,
    sum: KahanSum,
    count: f64,
    min: f64,
    max: f64,
    mean: f64,
    m2: f64,
    members: Vec<Elem>,
}

pub(super) fn eval(ev: &Evaluator<'_>, a: &AggregateExpr, ts: i64) -> Result<Value, QueryError> {
    let op = a.op.id();
    let input = ev.eval_vector(&a.expr, ts)?;
    let param = match &a.param {
        Some(p) => Some(ev.eval(p, ts)?),
        None => None,
    };
    let scalar_param = || match &param {
        Some(Value::Scalar(v)) => Ok(*v),
        _ => Err(QueryError::BadData(format!(
            "{} needs a scalar parameter",
            a.op
        ))),
    };
    match op {
        T_TOPK | T_BOTTOMK => {
            let k = scalar_param()?;
            if k.is_nan() {
                return Err(QueryError::Execution("Parameter value is NaN".into()));
            }
            let k = if k >= usize::MAX as f64 {
                usize::MAX
            } else if k < 1.0 {
                0
            } else {
                k as usize
            };
            let mut groups: HashMap<Labels, Vec<Elem>> = HashMap::new();
            for e in input {
                groups
                    .entry(group_key(&e.labels, &a.modifier))
                    .or_default()
                    .push(e);
            }
            let mut out = Vec::new();
            for (_, mut members) in groups {
                // NaN always loses.
                members.sort_by(|x, y| match (x.v.is_nan(), y.v.is_nan()) {
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ if op == T_TOPK => y.v.total_cmp(&x.v),
                    _ => x.v.total_cmp(&y.v),
                });
                out.extend(members.into_iter().take(k));
            }
            Ok(Value::Vector(out))
        }
        T_COUNT_VALUES => {
            let label = match &param {
                Some(Value::Str(s)) => s.clone(),
                _ => {
                    return Err(QueryError::BadData(
                        "count_values needs a string parameter".into(),
                    ));
                }
            };
            if label.is_empty() {
                return Err(QueryError::Execution(format!(
                    "invalid label name {label:?}"
                )));
            }
            let mut counts: HashMap<Labels, f64> = HashMap::new();
            for e in input {
                let key = group_key(&e.labels, &a.modifier).with(&label, &format_float(e.v));
                *counts.entry(key).or_default() += 1.0;
            }
            Ok(Value::Vector(
                counts
                    .into_iter()
                    .map(|(labels, v)| Elem { labels, v, t: ts })
                    .collect(),
            ))
        }
        T_SUM | T_AVG | T_COUNT | T_MIN | T_MAX | T_GROUP | T_STDDEV | T_STDVAR | T_QUANTILE => {
            let q = if op == T_QUANTILE {
                Some(scalar_param()?)
            } else {
                None
            };
            let mut groups: HashMap<Labels, Group> = HashMap::new();
            let mut order: Vec<Labels> = Vec::new();
            for e in input {
                let key = group_key(&e.labels, &a.modifier);
                let g = groups.entry(key.clone()).or_insert_with(|| {
                    order.push(key.clone());
                    Group {
                        labels: key,
                        sum: KahanSum::default(),
                        count: 0.0,
                        min: e.v,
                        max: e.v,
                        mean: 0.0,
                        m2: 0.0,
                        members: Vec::new(),
                    }
                });
                g.count += 1.0;
                g.sum.add(e.v);
                if g.max < e.v || g.max.is_nan() {
                    g.max = e.v;
                }
                if g.min > e.v || g.min.is_nan() {
                    g.min = e.v;
                }
                let delta = e.v - g.mean;
                g.mean += delta / g.count;
                g.m2 += delta * (e.v - g.mean);
                if op == T_QUANTILE {
                    g.members.push(e);
                }
            }
            let out = order
                .into_iter()
                .filter_map(|k| groups.remove(&k))
                .map(|g| {
                    let v = match op {
                        T_SUM => g.sum.value(),
                        T_AVG => g.sum.value() / g.count,
                        T_COUNT => g.count,
                        T_MIN => g.min,
                        T_MAX => g.max,
                        T_GROUP => 1.0,
                        T_STDVAR => g.m2 / g.count,
                        T_STDDEV => (g.m2 / g.count).sqrt(),
                        _ => {
                            let mut values: Vec<f64> = g.members.iter().map(|e| e.v).collect();
                            quantile(q.unwrap_or(f64::NAN), &mut values)
                        }
                    };
                    Elem {
                        labels: g.labels,
                        v,
                        t: ts,
                    }
                })
                .collect();
            Ok(Value::Vector(out))
        }
        _ => Err(QueryError::Unsupported(format!("aggregation {}", a.op))),
    }
}
