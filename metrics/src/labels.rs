//! The data model: label sets kept sorted by name, float samples with millisecond timestamps and
//! the staleness marker (a special NaN, bit-exact with Prometheus).

use std::fmt;
use std::sync::{Arc, LazyLock};

/// Name of the label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// Bit pattern of the staleness marker NaN (`value.StaleNaN` in Prometheus).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker: a NaN with a fixed payload that ends a series.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the staleness marker (compared bit for bit, other NaNs are plain values).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One float sample: a millisecond timestamp and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub t: i64,
    /// The value (any float, including NaN and the staleness marker).
    pub v: f64,
}

/// A series: its labels and some of its samples in timestamp order. Both the unit of a write
/// batch and of a selection result.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series labels.
    pub labels: Labels,
    /// Samples, sorted by timestamp.
    pub samples: Vec<Sample>,
}

/// Why a label set is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelsError {
    /// A label name is the empty string.
    #[error("label name is empty")]
    EmptyName,
    /// Two labels have the same name.
    #[error("duplicate label name {0:?}")]
    Duplicate(String),
    /// Labels are not sorted by name.
    #[error("labels are not sorted by name: {0:?} comes after {1:?}")]
    Unsorted(String, String),
    /// The set has no `__name__` label.
    #[error("series has no metric name (__name__ label)")]
    MissingMetricName,
}

/// One label: a name and a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    /// The label name.
    pub name: String,
    /// The label value.
    pub value: String,
}

impl Label {
    /// A label from a name and a value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A set of labels, sorted by name, without duplicate names and without empty values
/// (an empty value means the label is absent, as in Prometheus). Shared, so cloning is cheap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Arc<[Label]>);

impl Labels {
    /// The empty label set.
    pub fn empty() -> Self {
        static EMPTY: LazyLock<Labels> = LazyLock::new(|| Labels(Arc::from(Vec::new())));
        EMPTY.clone()
    }

    /// Builds a label set from labels already sorted by name, checking order, duplicates and
    /// empty names. Labels with empty values are dropped.
    pub fn from_sorted(labels: Vec<Label>) -> Result<Self, LabelsError> {
        for pair in labels.windows(2) {
            match pair[0].name.cmp(&pair[1].name) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(LabelsError::Duplicate(pair[0].name.clone()));
                }
                std::cmp::Ordering::Greater => {
                    return Err(LabelsError::Unsorted(
                        pair[1].name.clone(),
                        pair[0].name.clone(),
                    ));
                }
            }
        }
        if labels.iter().any(|l| l.name.is_empty()) {
            return Err(LabelsError::EmptyName);
        }
        Ok(Self(
            labels
                .into_iter()
                .filter(|l| !l.value.is_empty())
                .collect::<Vec<_>>()
                .into(),
        ))
    }

    /// Builds a label set from pairs in any order (sorting them), rejecting duplicates and empty
    /// names. Labels with empty values are dropped.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Result<Self, LabelsError> {
        let mut labels: Vec<Label> = pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect();
        labels.sort();
        Self::from_sorted(labels)
    }

    /// Builds a label set from labels in any order; later labels replace earlier ones of the
    /// same name, empty values delete. Used by the query engine, never fails.
    pub fn from_unchecked(mut labels: Vec<Label>) -> Self {
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<Label> = Vec::with_capacity(labels.len());
        for l in labels {
            if out.last().is_some_and(|last| last.name == l.name) {
                out.pop();
            }
            out.push(l);
        }
        out.retain(|l| !l.value.is_empty() && !l.name.is_empty());
        Self(out.into())
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// The labels, sorted by name.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A copy with label `name` set to `value` (removed when `value` is empty).
    pub fn with(&self, name: &str, value: &str) -> Self {
        let mut labels = self.0.to_vec();
        match labels.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                labels.remove(i);
            }
            Ok(i) => labels[i].value = value.to_owned(),
            Err(_) if value.is_empty() => {}
            Err(i) => labels.insert(i, Label::new(name, value)),
        }
        Self(labels.into())
    }

    /// A copy without label `name`.
    pub fn without(&self, name: &str) -> Self {
        self.with(name, "")
    }

    /// A copy keeping only the labels for which `keep` returns true.
    pub fn filtered(&self, keep: impl Fn(&str) -> bool) -> Self {
        Self(
            self.0
                .iter()
                .filter(|l| keep(&l.name))
                .cloned()
                .collect::<Vec<_>>()
                .into(),
        )
    }

    /// The labels as a vector.
    pub fn into_vec(self) -> Vec<Label> {
        self.0.to_vec()
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name().unwrap_or("");
        write!(f, "{name}{{")?;
        let mut first = true;
        for l in self.0.iter().filter(|l| l.name != METRIC_NAME) {
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        write!(f, "}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_sorted_rejects_unsorted_duplicate_and_empty_names() {
        let l = |n: &str, v: &str| Label::new(n, v);
        assert_eq!(
            Labels::from_sorted(vec![l("b", "1"), l("a", "2")]),
            Err(LabelsError::Unsorted("a".into(), "b".into()))
        );
        assert_eq!(
            Labels::from_sorted(vec![l("a", "1"), l("a", "2")]),
            Err(LabelsError::Duplicate("a".into()))
        );
        assert_eq!(
            Labels::from_sorted(vec![l("", "1"), l("a", "2")]),
            Err(LabelsError::EmptyName)
        );
        let ok = Labels::from_sorted(vec![l("__name__", "up"), l("a", ""), l("job", "x")]).unwrap();
        assert_eq!(ok.len(), 2, "empty value dropped");
        assert_eq!(ok.metric_name(), Some("up"));
        assert_eq!(ok.get("job"), Some("x"));
        assert_eq!(ok.get("a"), None);
    }

    #[test]
    fn with_and_without_keep_order() {
        let ls = Labels::from_pairs([("b", "2"), ("a", "1")]).unwrap();
        let ls2 = ls.with("c", "3").with("a", "9").without("b");
        let names: Vec<_> = ls2
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(names, vec![("a", "9"), ("c", "3")]);
        assert_eq!(ls2.to_string(), "{a=\"9\", c=\"3\"}");
    }

    #[test]
    fn stale_nan_is_bit_exact() {
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
        assert_eq!(stale_nan().to_bits(), 0x7ff0000000000002);
    }
}
