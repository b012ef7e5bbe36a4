//! Values flowing through evaluation and the public query result.

use std::collections::HashSet;

use crate::labels::{Labels, Series};

use super::QueryError;

/// One element of an instant vector during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Elem {
    pub(super) labels: Labels,
    pub(super) v: f64,
    /// Timestamp of the underlying sample (for `timestamp()`), else the evaluation time.
    pub(super) t: i64,
}

/// A range vector: series with their samples in the window `(start, end]`.
#[derive(Debug, Clone, Default)]
pub(super) struct Matrix {
    pub(super) series: Vec<Series>,
    /// Exclusive window start.
    pub(super) start: i64,
    /// Inclusive window end.
    pub(super) end: i64,
    /// The evaluation time the window belongs to (the `@` time if any, else the step).
    pub(super) eval_t: i64,
}

/// A value during evaluation.
#[derive(Debug, Clone)]
pub(super) enum Value {
    Scalar(f64),
    Str(String),
    Vector(Vec<Elem>),
    Matrix(Matrix),
}

impl Value {
    pub(super) fn into_query_value(self, t: i64) -> QueryValue {
        match self {
            Value::Scalar(v) => QueryValue::Scalar { t, v },
            Value::Str(s) => QueryValue::String { t, s },
            Value::Vector(elems) => QueryValue::Vector(
                elems
                    .into_iter()
                    .map(|e| InstantSample {
                        labels: e.labels,
                        t,
                        v: e.v,
                    })
                    .collect(),
            ),
            Value::Matrix(m) => QueryValue::Matrix(m.series),
        }
    }
}

/// Errors when two elements of a vector have the same labels (Prometheus does too).
pub(super) fn check_unique(elems: &[Elem]) -> Result<(), QueryError> {
    let mut seen = HashSet::with_capacity(elems.len());
    for e in elems {
        if !seen.insert(&e.labels) {
            return Err(QueryError::Execution(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(())
}

/// One sample of an instant vector result.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    /// The series labels.
    pub labels: Labels,
    /// The evaluation timestamp (ms).
    pub t: i64,
    /// The value.
    pub v: f64,
}

/// A query result, shaped like Prometheus's `resultType`s.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    /// `scalar`: one number at a time.
    Scalar {
        /// Evaluation time (ms).
        t: i64,
        /// The value.
        v: f64,
    },
    /// `string`: a string literal.
    String {
        /// Evaluation time (ms).
        t: i64,
        /// The string.
        s: String,
    },
    /// `vector`: one sample per series.
    Vector(Vec<InstantSample>),
    /// `matrix`: samples over time per series.
    Matrix(Vec<Series>),
}

impl QueryValue {
    /// The Prometheus `resultType` name.
    pub fn result_type(&self) -> &'static str {
        match self {
            QueryValue::Scalar { .. } => "scalar",
            QueryValue::String { .. } => "string",
            QueryValue::Vector(_) => "vector",
            QueryValue::Matrix(_) => "matrix",
        }
    }
}
