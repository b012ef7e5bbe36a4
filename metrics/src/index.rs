//! Label matchers and the inverted index (label pair → sorted postings list of series refs).
//!
//! Matching follows Prometheus: regular expressions are fully anchored, and a matcher that
//! matches the empty string also selects series that lack the label.

use std::collections::BTreeMap;

use regex::Regex;

use crate::labels::Labels;

/// Identifies a series inside one tenant's head.
pub type SeriesRef = u64;

/// Why a matcher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    /// The regular expression does not compile.
    #[error("invalid regular expression {pattern:?}: {source}")]
    BadRegex {
        /// The pattern as given.
        pattern: String,
        /// The compile error.
        source: regex::Error,
    },
}

/// How a matcher compares a label value.
#[derive(Debug, Clone)]
pub enum MatchOp {
    /// `=`: equal to the string.
    Equal(String),
    /// `!=`: not equal to the string.
    NotEqual(String),
    /// `=~`: matches the anchored regex.
    Regex(Regex),
    /// `!~`: does not match the anchored regex.
    NotRegex(Regex),
}

/// A label matcher such as `job=~"api|web"`.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// The comparison.
    pub op: MatchOp,
}

fn anchored(pattern: &str) -> Result<Regex, MatcherError> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|source| MatcherError::BadRegex {
        pattern: pattern.to_owned(),
        source,
    })
}

impl Matcher {
    /// `name="value"`.
    pub fn equal(name: &str, value: &str) -> Self {
        Self {
            name: name.to_owned(),
            op: MatchOp::Equal(value.to_owned()),
        }
    }

    /// `name!="value"`.
    pub fn not_equal(name: &str, value: &str) -> Self {
        Self {
            name: name.to_owned(),
            op: MatchOp::NotEqual(value.to_owned()),
        }
    }

    /// `name=~"pattern"` (anchored at both ends).
    pub fn regex(name: &str, pattern: &str) -> Result<Self, MatcherError> {
        Ok(Self {
            name: name.to_owned(),
            op: MatchOp::Regex(anchored(pattern)?),
        })
    }

    /// `name!~"pattern"` (anchored at both ends).
    pub fn not_regex(name: &str, pattern: &str) -> Result<Self, MatcherError> {
        Ok(Self {
            name: name.to_owned(),
            op: MatchOp::NotRegex(anchored(pattern)?),
        })
    }

    /// Whether a label value (empty when the label is absent) matches.
    pub fn matches(&self, value: &str) -> bool {
        match &self.op {
            MatchOp::Equal(v) => v == value,
            MatchOp::NotEqual(v) => v != value,
            MatchOp::Regex(r) => r.is_match(value),
            MatchOp::NotRegex(r) => !r.is_match(value),
        }
    }

    /// Whether a whole label set matches.
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }
}

/// Intersection of two sorted lists.
fn intersect(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Sorted union of several sorted lists.
fn union<'a>(lists: impl Iterator<Item = &'a Vec<SeriesRef>>) -> Vec<SeriesRef> {
    let mut out: Vec<SeriesRef> = lists.flatten().copied().collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Elements of sorted `a` not in sorted `b`.
fn difference(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let mut j = 0;
    let mut out = Vec::with_capacity(a.len());
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}

/// Inverted index over the series of one head: label name → value → sorted series refs.
#[derive(Debug, Default)]
pub struct PostingsIndex {
    postings: BTreeMap<String, BTreeMap<String, Vec<SeriesRef>>>,
    all: Vec<SeriesRef>,
}

impl PostingsIndex {
    /// Adds a series; refs must be added in increasing order.
    pub fn add(&mut self, series: SeriesRef, labels: &Labels) {
        for l in labels.iter() {
            let list = self
                .postings
                .entry(l.name.clone())
                .or_default()
                .entry(l.value.clone())
                .or_default();
            insert_sorted(list, series);
        }
        insert_sorted(&mut self.all, series);
    }

    /// Series matching every matcher, sorted by ref. No matcher selects every series.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<SeriesRef> {
        let mut result: Option<Vec<SeriesRef>> = None;
        for m in matchers {
            let values = self.postings.get(&m.name);
            let matching = if m.matches("") {
                // Series lacking the label match: all series minus those whose value does not match.
                let excluded = union(
                    values
                        .into_iter()
                        .flat_map(|vals| vals.iter())
                        .filter(|(v, _)| !m.matches(v))
                        .map(|(_, list)| list),
                );
                difference(&self.all, &excluded)
            } else {
                let lists: Box<dyn Iterator<Item = &Vec<SeriesRef>>> = match (&m.op, values) {
                    (_, None) => Box::new(std::iter::empty()),
                    (MatchOp::Equal(v), Some(vals)) => Box::new(vals.get(v).into_iter()),
                    (_, Some(vals)) => {
                        Box::new(vals.iter().filter(|(v, _)| m.matches(v)).map(|(_, l)| l))
                    }
                };
                union(lists)
            };
            result = Some(match result {
                None => matching,
                Some(prev) => intersect(&prev, &matching),
            });
            if result.as_ref().is_some_and(Vec::is_empty) {
                break;
            }
        }
        result.unwrap_or_else(|| self.all.clone())
    }

    /// All label names, sorted.
    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.postings.keys().map(String::as_str)
    }

    /// All values of label `name`, sorted.
    pub fn label_values(&self, name: &str) -> impl Iterator<Item = &str> {
        self.postings
            .get(name)
            .into_iter()
            .flat_map(|v| v.keys().map(String::as_str))
    }
}

fn insert_sorted(list: &mut Vec<SeriesRef>, series: SeriesRef) {
    if list.last().is_none_or(|&last| last < series) {
        list.push(series);
    } else if let Err(i) = list.binary_search(&series) {
        list.insert(i, series);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> PostingsIndex {
        let mut idx = PostingsIndex::default();
        let sets = [
            vec![("__name__", "up"), ("job", "api"), ("instance", "a")],
            vec![("__name__", "up"), ("job", "web"), ("instance", "b")],
            vec![("__name__", "up"), ("job", "apiserver")],
            vec![("__name__", "errors"), ("job", "api"), ("code", "500")],
        ];
        for (i, s) in sets.iter().enumerate() {
            idx.add(
                i as SeriesRef,
                &Labels::from_pairs(s.iter().copied()).unwrap(),
            );
        }
        idx
    }

    #[test]
    fn equality_and_inequality() {
        let idx = index();
        assert_eq!(idx.select(&[Matcher::equal("job", "api")]), vec![0, 3]);
        assert_eq!(
            idx.select(&[
                Matcher::equal("__name__", "up"),
                Matcher::not_equal("job", "api")
            ]),
            vec![1, 2]
        );
        // `!=` selects series lacking the label too.
        assert_eq!(
            idx.select(&[Matcher::not_equal("instance", "a")]),
            vec![1, 2, 3]
        );
        // `=""` selects series without the label.
        assert_eq!(idx.select(&[Matcher::equal("instance", "")]), vec![2, 3]);
        assert_eq!(idx.select(&[]), vec![0, 1, 2, 3]);
    }

    #[test]
    fn regexes_are_anchored() {
        let idx = index();
        // "api" must not match "apiserver" (anchored), as in Prometheus.
        assert_eq!(
            idx.select(&[Matcher::regex("job", "api").unwrap()]),
            vec![0, 3]
        );
        assert_eq!(
            idx.select(&[Matcher::regex("job", "api.*").unwrap()]),
            vec![0, 2, 3]
        );
        assert_eq!(
            idx.select(&[Matcher::not_regex("job", "api|web").unwrap()]),
            vec![2]
        );
        // A regex matching "" selects series lacking the label.
        assert_eq!(
            idx.select(&[Matcher::regex("code", "5..|").unwrap()]),
            vec![0, 1, 2, 3]
        );
        assert_eq!(
            idx.select(&[Matcher::regex("code", ".+").unwrap()]),
            vec![3]
        );
        assert!(Matcher::regex("job", "(").is_err());
    }

    #[test]
    fn label_names_and_values_are_sorted() {
        let idx = index();
        assert_eq!(
            idx.label_names().collect::<Vec<_>>(),
            vec!["__name__", "code", "instance", "job"]
        );
        assert_eq!(
            idx.label_values("job").collect::<Vec<_>>(),
            vec!["api", "apiserver", "web"]
        );
        assert_eq!(idx.label_values("nope").count(), 0);
    }
}
