//! PromQL evaluation with Prometheus 3.x semantics on top of `promql-parser`.
//!
//! Queries are evaluated step by step: every selector's data is fetched once for the whole
//! query, then each step evaluates the expression tree at one timestamp. Vector
//! selectors look back 5 minutes by default, and both the lookback window and range selectors
//! are left-open (a sample exactly at the start is excluded), as in Prometheus 3. Features not
//! implemented (native histograms, experimental functions, `limitk`) return
//! [`QueryError::Unsupported`] instead of a wrong answer.

mod aggregate;
mod binary;
mod dates;
mod eval;
mod functions;
mod value;

use crate::labels::{Labels, Sample};
use crate::storage::{StorageError, Store};
use crate::tenant::TenantId;

pub use value::{InstantSample, QueryValue};

/// Settings of the query engine.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// How far back an instant vector selector looks for a sample.
    pub lookback_ms: i64,
    /// Step of a subquery written without one (Prometheus's default evaluation interval).
    pub default_subquery_step_ms: i64,
    /// Most points a range query may return per series.
    pub max_points_per_series: i64,
    /// Most samples a query may load from storage (Prometheus's `--query.max-samples`).
    pub max_samples: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            lookback_ms: 5 * 60 * 1000,
            default_subquery_step_ms: 60 * 1000,
            max_points_per_series: 11_000,
            max_samples: 50_000_000,
        }
    }
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query does not parse, or its parameters are invalid (`bad_data`).
    #[error("{0}")]
    BadData(String),
    /// The query uses a feature this engine does not implement (`bad_data`).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Evaluation failed, e.g. duplicate label sets or many-to-many matching (`execution`).
    #[error("{0}")]
    Execution(String),
    /// Reading the storage failed (`internal`).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The store matchers of a parsed series selector: one matcher list per `or` alternative, the
/// metric name included (used for `match[]` parameters).
pub fn selector_matchers(
    vs: &promql_parser::parser::VectorSelector,
) -> Vec<Vec<crate::index::Matcher>> {
    eval::matcher_sets(vs)
}

fn parse(query: &str) -> Result<promql_parser::parser::Expr, QueryError> {
    promql_parser::parser::parse(query)
        .map_err(|e| QueryError::BadData(format!("invalid parameter \"query\": {e}")))
}

/// Evaluates `query` at `t_ms` for one tenant.
pub fn instant_query(
    store: &dyn Store,
    tenant: &TenantId,
    query: &str,
    t_ms: i64,
    config: &EngineConfig,
) -> Result<QueryValue, QueryError> {
    let expr = parse(query)?;
    let mut ev = eval::Evaluator::new(config, t_ms, t_ms);
    ev.prefetch(store, tenant, &expr)?;
    let v = ev.eval(&expr, t_ms)?;
    Ok(v.into_query_value(t_ms))
}

/// Evaluates `query` at every step from `start_ms` to `end_ms` for one tenant, returning a
/// matrix (one series per label set, sorted by labels).
pub fn range_query(
    store: &dyn Store,
    tenant: &TenantId,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    config: &EngineConfig,
) -> Result<QueryValue, QueryError> {
    if step_ms <= 0 {
        return Err(QueryError::BadData(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer"
                .into(),
        ));
    }
    if end_ms < start_ms {
        return Err(QueryError::BadData(
            "invalid parameter \"end\": end timestamp must not be before start time".into(),
        ));
    }
    if (end_ms - start_ms) / step_ms + 1 > config.max_points_per_series {
        return Err(QueryError::BadData(format!(
            "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
            config.max_points_per_series
        )));
    }
    let expr = parse(query)?;
    use promql_parser::parser::value::ValueType;
    match expr.value_type() {
        ValueType::Vector | ValueType::Scalar => {}
        other => {
            return Err(QueryError::BadData(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                match other {
                    ValueType::Matrix => "range vector",
                    _ => "string",
                }
            )));
        }
    }
    let mut ev = eval::Evaluator::new(config, start_ms, end_ms);
    ev.prefetch(store, tenant, &expr)?;
    let mut series: std::collections::BTreeMap<Labels, Vec<Sample>> =
        std::collections::BTreeMap::new();
    let mut ts = start_ms;
    while ts <= end_ms {
        match ev.eval(&expr, ts)? {
            value::Value::Scalar(v) => series
                .entry(Labels::empty())
                .or_default()
                .push(Sample { t: ts, v }),
            value::Value::Vector(elems) => {
                value::check_unique(&elems)?;
                for e in elems {
                    series
                        .entry(e.labels)
                        .or_default()
                        .push(Sample { t: ts, v: e.v });
                }
            }
            _ => {
                return Err(QueryError::Execution(
                    "range query step did not yield a vector or scalar".into(),
                ));
            }
        }
        ts += step_ms;
    }
    Ok(QueryValue::Matrix(
        series
            .into_iter()
            .map(|(labels, samples)| crate::labels::Series { labels, samples })
            .collect(),
    ))
}

#[cfg(test)]
mod tests;
