//! PromQL functions: math and label functions on instant vectors, range-vector functions
//! (`rate`, `*_over_time`, ...), `histogram_quantile` over classic buckets, and date functions.

use std::cmp::Ordering;
use std::collections::HashMap;

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Call, Expr};

use crate::labels::{Labels, METRIC_NAME, Sample};

use super::QueryError;
use super::aggregate::{KahanSum, quantile};
use super::dates;
use super::eval::Evaluator;
use super::value::{Elem, Matrix, Value, check_unique};

/// Functions of Prometheus 3.x that this engine does not implement.
const UNSUPPORTED: &[&str] = &[
    "histogram_count",
    "histogram_sum",
    "histogram_avg",
    "histogram_fraction",
    "histogram_stddev",
    "histogram_stdvar",
    "double_exponential_smoothing",
    "holt_winters",
    "info",
    "mad_over_time",
    "first_over_time",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
    "limitk",
    "limit_ratio",
];

fn math_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => f64::to_degrees,
        "rad" => f64::to_radians,
        "sgn" => |v: f64| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        _ => return None,
    })
}

fn date_fn(name: &str) -> Option<fn(&dates::DateTime) -> f64> {
    Some(match name {
        "year" => |d| d.year as f64,
        "month" => |d| f64::from(d.month),
        "day_of_month" => |d| f64::from(d.day),
        "day_of_week" => |d| f64::from(d.weekday),
        "day_of_year" => |d| f64::from(d.yday),
        "hour" => |d| f64::from(d.hour),
        "minute" => |d| f64::from(d.minute),
        "days_in_month" => |d| f64::from(dates::days_in_month(d.year, d.month)),
        _ => return None,
    })
}

/// Applies `f` to every value, dropping the metric name.
fn map_values(v: Vec<Elem>, f: impl Fn(f64) -> f64) -> Vec<Elem> {
    v.into_iter()
        .map(|e| Elem {
            labels: e.labels.without(METRIC_NAME),
            v: f(e.v),
            t: e.t,
        })
        .collect()
}

/// `label_replace` and `label_join` (`func`): sets label `dst` of each element to what `value`
/// makes of its labels, leaving the elements where it makes nothing unchanged. An empty `dst` is
/// an error.
fn set_label(
    func: &str,
    v: Vec<Elem>,
    dst: &str,
    value: impl Fn(&Labels) -> Option<String>,
) -> Result<Value, QueryError> {
    if dst.is_empty() {
        return Err(QueryError::BadData(format!(
            "invalid destination label name in {func}(): {dst}"
        )));
    }
    Ok(Value::Vector(
        v.into_iter()
            .map(|e| match value(&e.labels) {
                Some(new) => Elem {
                    labels: e.labels.with(dst, &new),
                    ..e
                },
                None => e,
            })
            .collect(),
    ))
}

fn string_arg(args: &[Box<Expr>], i: usize) -> Result<String, QueryError> {
    match args.get(i).map(|a| a.as_ref()) {
        Some(Expr::StringLiteral(s)) => Ok(s.val.clone()),
        _ => Err(QueryError::BadData(format!(
            "argument {} must be a string literal",
            i + 1
        ))),
    }
}

fn arg(args: &[Box<Expr>], i: usize) -> Result<&Expr, QueryError> {
    args.get(i)
        .map(|a| a.as_ref())
        .ok_or_else(|| QueryError::BadData(format!("missing argument {}", i + 1)))
}

/// `absent` and `absent_over_time` of `expr`: one element of value 1 at `ts` with the labels
/// of its equality matchers when it selected nothing (`empty`), else nothing.
fn absent(expr: &Expr, empty: bool, ts: i64) -> Value {
    Value::Vector(if empty {
        vec![Elem {
            labels: absent_labels(expr),
            v: 1.0,
            t: ts,
        }]
    } else {
        Vec::new()
    })
}

/// Labels `absent()` derives from a selector: its equality matchers (except the name).
fn absent_labels(expr: &Expr) -> Labels {
    let vs = match expr {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::empty(),
    };
    let mut seen: HashMap<&str, bool> = HashMap::new();
    let mut out = Labels::empty();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, PMatchOp::Equal) && !seen.contains_key(m.name.as_str()) {
            out = out.with(&m.name, &m.value);
        } else {
            out = out.without(&m.name);
        }
        seen.insert(&m.name, true);
    }
    out
}

/// Natural ordering of strings (digit runs compare as numbers), for `sort_by_label`.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (da, db) = (&a[..na], &b[..nb]);
                let ta: &[u8] = &da[da
                    .iter()
                    .take_while(|&&c| c == b'0')
                    .count()
                    .min(na.saturating_sub(1))..];
                let tb: &[u8] = &db[db
                    .iter()
                    .take_while(|&&c| c == b'0')
                    .count()
                    .min(nb.saturating_sub(1))..];
                let ord = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

pub(super) fn eval(ev: &Evaluator<'_>, c: &Call, ts: i64) -> Result<Value, QueryError> {
    let name = c.func.name;
    let args = &c.args.args;
    if UNSUPPORTED.contains(&name) {
        return Err(QueryError::Unsupported(format!(
            "function {name}() (native histograms and experimental functions are not implemented)"
        )));
    }
    let value = match name {
        "time" => Value::Scalar(ts as f64 / 1000.0),
        "pi" => Value::Scalar(std::f64::consts::PI),
        "vector" => Value::Vector(vec![Elem {
            labels: Labels::empty(),
            v: ev.eval_scalar(arg(args, 0)?, ts)?,
            t: ts,
        }]),
        "scalar" => {
            let v = ev.eval_vector(arg(args, 0)?, ts)?;
            Value::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN })
        }
        "round" => {
            let v = ev.eval_vector(arg(args, 0)?, ts)?;
            let to_nearest = match args.get(1) {
                Some(a) => ev.eval_scalar(a, ts)?,
                None => 1.0,
            };
            let inv = 1.0 / to_nearest;
            Value::Vector(map_values(v, |x| (x * inv + 0.5).floor() / inv))
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let v = ev.eval_vector(arg(args, 0)?, ts)?;
            let (lo, hi) = match name {
                "clamp" => (
                    ev.eval_scalar(arg(args, 1)?, ts)?,
                    ev.eval_scalar(arg(args, 2)?, ts)?,
                ),
                "clamp_min" => (ev.eval_scalar(arg(args, 1)?, ts)?, f64::INFINITY),
                _ => (f64::NEG_INFINITY, ev.eval_scalar(arg(args, 1)?, ts)?),
            };
            if hi < lo {
                Value::Vector(Vec::new())
            } else {
                Value::Vector(map_values(v, |x| lo.max(hi.min(x))))
            }
        }
        "timestamp" => {
            let mut inner = arg(args, 0)?;
            while let Expr::Paren(p) = inner {
                inner = &p.expr;
            }
            let v = match inner {
                // Of a selector: the timestamps of the samples themselves.
                Expr::VectorSelector(vs) => ev.vector_selector(vs, ts),
                other => ev
                    .eval_vector(other, ts)?
                    .into_iter()
                    .map(|e| Elem { t: ts, ..e })
                    .collect(),
            };
            Value::Vector(
                v.into_iter()
                    .map(|e| Elem {
                        labels: e.labels.without(METRIC_NAME),
                        v: e.t as f64 / 1000.0,
                        t: ts,
                    })
                    .collect(),
            )
        }
        "sort" | "sort_desc" => {
            let mut v = ev.eval_vector(arg(args, 0)?, ts)?;
            let desc = name == "sort_desc";
            v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                _ if desc => b.v.total_cmp(&a.v),
                _ => a.v.total_cmp(&b.v),
            });
            Value::Vector(v)
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = ev.eval_vector(arg(args, 0)?, ts)?;
            let names: Vec<String> = (1..args.len())
                .map(|i| string_arg(args, i))
                .collect::<Result<_, _>>()?;
            v.sort_by(|a, b| {
                let ord = names
                    .iter()
                    .map(|n| {
                        natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""))
                    })
                    .find(|o| *o != Ordering::Equal)
                    .unwrap_or_else(|| a.labels.cmp(&b.labels));
                if name == "sort_by_label_desc" {
                    ord.reverse()
                } else {
                    ord
                }
            });
            Value::Vector(v)
        }
        "label_replace" => {
            let v = ev.eval_vector(arg(args, 0)?, ts)?;
            let (dst, repl, src, re) = (
                string_arg(args, 1)?,
                string_arg(args, 2)?,
                string_arg(args, 3)?,
                string_arg(args, 4)?,
            );
            let regex = regex::Regex::new(&format!("^(?s:{re})$")).map_err(|_| {
                QueryError::BadData(format!(
                    "invalid regular expression in label_replace(): {re}"
                ))
            })?;
            set_label("label_replace", v, &dst, |labels| {
                let caps = regex.captures(labels.get(&src).unwrap_or(""))?;
                let mut res = String::new();
                caps.expand(&repl, &mut res);
                Some(res)
            })?
        }
        "label_join" => {
            let v = ev.eval_vector(arg(args, 0)?, ts)?;
            let dst = string_arg(args, 1)?;
            let sep = string_arg(args, 2)?;
            let srcs: Vec<String> = (3..args.len())
                .map(|i| string_arg(args, i))
                .collect::<Result<_, _>>()?;
            set_label("label_join", v, &dst, |labels| {
                let values: Vec<&str> = srcs.iter().map(|s| labels.get(s).unwrap_or("")).collect();
                Some(values.join(&sep))
            })?
        }
        "absent" => {
            let a = arg(args, 0)?;
            let v = ev.eval_vector(a, ts)?;
            absent(a, v.is_empty(), ts)
        }
        "absent_over_time" => {
            let a = arg(args, 0)?;
            let m = ev.eval_matrix(a, ts)?;
            absent(a, m.series.is_empty(), ts)
        }
        "histogram_quantile" => {
            let q = ev.eval_scalar(arg(args, 0)?, ts)?;
            let v = ev.eval_vector(arg(args, 1)?, ts)?;
            Value::Vector(histogram_quantile(q, v, ts))
        }
        _ => {
            if let Some(f) = math_fn(name) {
                Value::Vector(map_values(ev.eval_vector(arg(args, 0)?, ts)?, f))
            } else if let Some(f) = date_fn(name) {
                match args.first() {
                    None => Value::Vector(vec![Elem {
                        labels: Labels::empty(),
                        v: f(&dates::from_unix(ts.div_euclid(1000))),
                        t: ts,
                    }]),
                    Some(a) => Value::Vector(map_values(ev.eval_vector(a, ts)?, |x| {
                        if x.is_finite() {
                            f(&dates::from_unix(x.trunc() as i64))
                        } else {
                            f64::NAN
                        }
                    })),
                }
            } else {
                range_function(ev, name, args, ts)?
            }
        }
    };
    if let Value::Vector(v) = &value {
        check_unique(v)?;
    }
    Ok(value)
}

/// Functions taking a range vector.
fn range_function(
    ev: &Evaluator<'_>,
    name: &str,
    args: &[Box<Expr>],
    ts: i64,
) -> Result<Value, QueryError> {
    let (matrix_idx, scalar) = match name {
        "quantile_over_time" => (1, Some(ev.eval_scalar(arg(args, 0)?, ts)?)),
        "predict_linear" => (0, Some(ev.eval_scalar(arg(args, 1)?, ts)?)),
        _ => (0, None),
    };
    let m = ev.eval_matrix(arg(args, matrix_idx)?, ts)?;
    let f: fn(&Matrix, &[Sample], Option<f64>) -> Option<f64> =
        match name {
            "rate" => |m, s, _| extrapolated_rate(m, s, true, true),
            "increase" => |m, s, _| extrapolated_rate(m, s, true, false),
            "delta" => |m, s, _| extrapolated_rate(m, s, false, false),
            "irate" => |_, s, _| instant_value(s, true),
            "idelta" => |_, s, _| instant_value(s, false),
            "deriv" => |_, s, _| (s.len() >= 2).then(|| linear_regression(s, s[0].t).0),
            "predict_linear" => |m, s, d| {
                (s.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(s, m.eval_t);
                    slope * d.unwrap_or(0.0) + intercept
                })
            },
            "changes" => |_, s, _| {
                Some(
                    s.windows(2)
                        .filter(|w| w[0].v != w[1].v && !(w[0].v.is_nan() && w[1].v.is_nan()))
                        .count() as f64,
                )
            },
            "resets" => |_, s, _| Some(s.windows(2).filter(|w| w[1].v < w[0].v).count() as f64),
            "avg_over_time" => |_, s, _| {
                let mut k = KahanSum::default();
                s.iter().for_each(|x| k.add(x.v));
                Some(k.value() / s.len() as f64)
            },
            "sum_over_time" => |_, s, _| {
                let mut k = KahanSum::default();
                s.iter().for_each(|x| k.add(x.v));
                Some(k.value())
            },
            "count_over_time" => |_, s, _| Some(s.len() as f64),
            "min_over_time" => |_, s, _| {
                Some(s.iter().skip(1).fold(s[0].v, |acc, x| {
                    if x.v < acc || acc.is_nan() { x.v } else { acc }
                }))
            },
            "max_over_time" => |_, s, _| {
                Some(s.iter().skip(1).fold(s[0].v, |acc, x| {
                    if x.v > acc || acc.is_nan() { x.v } else { acc }
                }))
            },
            "last_over_time" => |_, s, _| s.last().map(|x| x.v),
            "present_over_time" => |_, _, _| Some(1.0),
            "quantile_over_time" => |_, s, q| {
                let mut values: Vec<f64> = s.iter().map(|x| x.v).collect();
                Some(quantile(q.unwrap_or(f64::NAN), &mut values))
            },
            "stddev_over_time" => |_, s, _| Some(variance(s).sqrt()),
            "stdvar_over_time" => |_, s, _| Some(variance(s)),
            other => return Err(QueryError::Unsupported(format!("function {other}()"))),
        };
    let keep_name = name == "last_over_time";
    let out = m
        .series
        .iter()
        .filter(|s| !s.samples.is_empty())
        .filter_map(|s| {
            let v = f(&m, &s.samples, scalar)?;
            let labels = if keep_name {
                s.labels.clone()
            } else {
                s.labels.without(METRIC_NAME)
            };
            Some(Elem { labels, v, t: ts })
        })
        .collect();
    Ok(Value::Vector(out))
}

fn variance(s: &[Sample]) -> f64 {
    let (mut count, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for x in s {
        count += 1.0;
        let delta = x.v - mean;
        mean += delta / count;
        m2 += delta * (x.v - mean);
    }
    m2 / count
}

/// `rate`, `increase` and `delta` with Prometheus's extrapolation to the window boundaries.
fn extrapolated_rate(m: &Matrix, s: &[Sample], is_counter: bool, is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (first, last) = (s[0], s[s.len() - 1]);
    let mut result = last.v - first.v;
    if is_counter {
        for w in s.windows(2) {
            if w[1].v < w[0].v {
                result += w[0].v;
            }
        }
    }
    let mut to_start = (first.t - m.start) as f64 / 1000.0;
    let mut to_end = (m.end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_step = sampled / (s.len() - 1) as f64;
    let threshold = avg_step * 1.1;
    if to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if is_counter && result > 0.0 && first.v >= 0.0 {
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= (m.end - m.start) as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate` and `idelta`: from the last two samples.
fn instant_value(s: &[Sample], is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (prev, last) = (s[s.len() - 2], s[s.len() - 1]);
    let interval = last.t - prev.t;
    if interval == 0 {
        return None;
    }
    let mut v = last.v;
    if !is_rate || last.v >= prev.v || last.v.is_nan() || prev.v.is_nan() {
        v = last.v - prev.v;
    }
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

/// Least-squares slope and intercept at `intercept_t` (ms).
fn linear_regression(s: &[Sample], intercept_t: i64) -> (f64, f64) {
    let init = s[0].v;
    if s.iter().all(|x| x.v == init) {
        return if init.is_infinite() {
            (f64::NAN, f64::NAN)
        } else {
            (0.0, init)
        };
    }
    let (mut sx, mut sy, mut sxy, mut sx2) = (
        KahanSum::default(),
        KahanSum::default(),
        KahanSum::default(),
        KahanSum::default(),
    );
    let n = s.len() as f64;
    for x in s {
        let dx = (x.t - intercept_t) as f64 / 1000.0;
        sx.add(dx);
        sy.add(x.v);
        sxy.add(dx * x.v);
        sx2.add(dx * dx);
    }
    let (sx, sy, sxy, sx2) = (sx.value(), sy.value(), sxy.value(), sx2.value());
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// `histogram_quantile` over classic buckets (series with an `le` label).
fn histogram_quantile(q: f64, v: Vec<Elem>, ts: i64) -> Vec<Elem> {
    let mut groups: HashMap<Labels, Vec<(f64, f64)>> = HashMap::new();
    let mut order = Vec::new();
    for e in v {
        let Some(le) = e.labels.get("le").and_then(|s| s.parse::<f64>().ok()) else {
            continue;
        };
        let key = e.labels.without("le");
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push((le, e.v));
    }
    order
        .into_iter()
        .filter_map(|k| {
            let buckets = groups.remove(&k)?;
            Some(Elem {
                labels: k.without(METRIC_NAME),
                v: bucket_quantile(q, buckets),
                t: ts,
            })
        })
        .collect()
}

fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < eps * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

/// Prometheus's `BucketQuantile`: linear interpolation inside the bucket holding the rank.
fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Merge buckets with the same upper bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == b.0 => last.1 += b.1,
            _ => merged.push(b),
        }
    }
    let mut buckets = merged;
    // Force monotonicity and ignore tiny floating-point differences.
    let mut prev = buckets[0].1;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.1;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, 1e-12) || curr < prev {
            b.1 = prev;
            continue;
        }
        prev = curr;
    }
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = buckets.len();
    let b = buckets[..n - 1].partition_point(|x| x.1 < rank);
    if b == n - 1 {
        return buckets[n - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let bucket_end = buckets[b].0;
    let mut count = buckets[b].1;
    let mut bucket_start = 0.0;
    if b > 0 {
        bucket_start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}
