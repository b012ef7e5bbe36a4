//! Labels and label selectors with Kubernetes' syntax and matching rules, and the `k=v` /
//! `k-` edits of `weft label` and `weft namespace label`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::PolicyError;
use super::spec::LabelSelector;

/// A label set.
pub type Labels = BTreeMap<String, String>;

/// The label Kubernetes puts on every namespace, holding its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// One validated set-based requirement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Requirement {
    /// The label is present with one of the values.
    In(String, Vec<String>),
    /// The label is absent, or present with none of the values.
    NotIn(String, Vec<String>),
    /// The label is present.
    Exists(String),
    /// The label is absent.
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

/// A validated label selector: all requirements must hold; none selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Selector(pub Vec<Requirement>);

impl Selector {
    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|r| r.matches(labels))
    }

    /// Validates a Kubernetes selector; `field` is its path, for errors (returned as
    /// `(field, reason)`).
    pub fn from_spec(sel: &LabelSelector, field: &str) -> Result<Selector, (String, String)> {
        let mut reqs = Vec::new();
        for (k, v) in &sel.match_labels {
            let f = format!("{field}.matchLabels");
            check_key(k).map_err(|r| (f.clone(), r))?;
            check_value(v).map_err(|r| (format!("{f}.{k}"), r))?;
            reqs.push(Requirement::In(k.clone(), vec![v.clone()]));
        }
        for (i, e) in sel.match_expressions.iter().enumerate() {
            let f = format!("{field}.matchExpressions[{i}]");
            check_key(&e.key).map_err(|r| (format!("{f}.key"), r))?;
            for (j, v) in e.values.iter().enumerate() {
                check_value(v).map_err(|r| (format!("{f}.values[{j}]"), r))?;
            }
            let key = e.key.clone();
            let need_values = |op: &str| {
                if e.values.is_empty() {
                    Err((
                        format!("{f}.values"),
                        format!("must be non-empty when operator is {op}"),
                    ))
                } else {
                    Ok(e.values.clone())
                }
            };
            let no_values = |op: &str| {
                if e.values.is_empty() {
                    Ok(())
                } else {
                    Err((
                        format!("{f}.values"),
                        format!("must be empty when operator is {op}"),
                    ))
                }
            };
            reqs.push(match e.operator.as_str() {
                "In" => Requirement::In(key, need_values("In")?),
                "NotIn" => Requirement::NotIn(key, need_values("NotIn")?),
                "Exists" => {
                    no_values("Exists")?;
                    Requirement::Exists(key)
                }
                "DoesNotExist" => {
                    no_values("DoesNotExist")?;
                    Requirement::DoesNotExist(key)
                }
                other => {
                    return Err((
                        format!("{f}.operator"),
                        format!(
                            "unsupported operator {other:?}: use In, NotIn, Exists or DoesNotExist"
                        ),
                    ));
                }
            });
        }
        Ok(Selector(reqs))
    }
}

/// Checks a label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters of alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
pub fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !ok {
            return Err(format!(
                "invalid label key {key:?}: the prefix must be a DNS subdomain such as example.com"
            ));
        }
    }
    if name.is_empty() {
        return Err(format!("invalid label key {key:?}: the name part is empty"));
    }
    check_name(name).map_err(|r| format!("invalid label key {key:?}: {r}"))
}

/// Checks a label value: empty, or like a key's name part.
pub fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_name(value).map_err(|r| format!("invalid label value {value:?}: {r}"))
}

fn check_name(s: &str) -> Result<(), String> {
    if s.len() > 63 {
        return Err("must be at most 63 characters".into());
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge_ok(s.chars().next()) || !edge_ok(s.chars().last()) {
        return Err("must start and end with a letter or digit".into());
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("may hold only letters, digits, '-', '_' and '.'".into());
    }
    Ok(())
}

/// One edit of a label set: `k=v` sets, `k-` removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LabelEdit {
    /// Set the label to the value.
    Set(String, String),
    /// Remove the label.
    Remove(String),
}

impl LabelEdit {
    /// Parses `k=v` or `k-`.
    pub fn parse(arg: &str) -> Result<LabelEdit, PolicyError> {
        let bad = |reason: String| PolicyError::Label {
            arg: arg.to_string(),
            reason,
        };
        if let Some((k, v)) = arg.split_once('=') {
            check_key(k).map_err(bad)?;
            check_value(v).map_err(bad)?;
            Ok(LabelEdit::Set(k.to_string(), v.to_string()))
        } else if let Some(k) = arg.strip_suffix('-') {
            check_key(k).map_err(bad)?;
            Ok(LabelEdit::Remove(k.to_string()))
        } else {
            Err(bad(
                "give KEY=VALUE to set a label or KEY- to remove one".into()
            ))
        }
    }

    /// Applies the edit to `labels`.
    pub fn apply(&self, labels: &mut Labels) {
        match self {
            LabelEdit::Set(k, v) => {
                labels.insert(k.clone(), v.clone());
            }
            LabelEdit::Remove(k) => {
                labels.remove(k);
            }
        }
    }
}

/// Parses `k=v` labels (no removals), as `weft attach --label` takes them.
pub fn parse_labels<S: AsRef<str>>(args: &[S]) -> Result<Labels, PolicyError> {
    let mut labels = Labels::new();
    for a in args {
        match LabelEdit::parse(a.as_ref())? {
            LabelEdit::Set(k, v) => {
                labels.insert(k, v);
            }
            LabelEdit::Remove(_) => {
                return Err(PolicyError::Label {
                    arg: a.as_ref().to_string(),
                    reason: "give KEY=VALUE".into(),
                });
            }
        }
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::spec::LabelRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelRequirement {
        LabelRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn operators_follow_kubernetes() {
        let sel = LabelSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: vec![
                expr("tier", "In", &["a", "b"]),
                expr("env", "NotIn", &["prod"]),
                expr("team", "Exists", &[]),
                expr("legacy", "DoesNotExist", &[]),
            ],
        };
        let s = Selector::from_spec(&sel, "spec.podSelector").unwrap();
        let base = [("app", "web"), ("tier", "a"), ("team", "x")];
        assert!(s.matches(&labels(&base)));
        assert!(s.matches(&labels(&[
            ("app", "web"),
            ("tier", "b"),
            ("team", ""),
            ("env", "dev")
        ])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "c"), ("team", "x")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "a"),
            ("team", "x"),
            ("env", "prod")
        ])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "a")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "a"),
            ("team", "x"),
            ("legacy", "1")
        ])));
        assert!(!s.matches(&labels(&[("app", "db"), ("tier", "a"), ("team", "x")])));
        assert!(Selector::default().matches(&Labels::new()));
    }

    #[test]
    fn bad_selectors_name_the_field() {
        let sel = LabelSelector {
            match_labels: Labels::new(),
            match_expressions: vec![expr("a", "Exists", &[]), expr("b", "Maybe", &[])],
        };
        let (f, r) = Selector::from_spec(&sel, "spec.podSelector").unwrap_err();
        assert_eq!(f, "spec.podSelector.matchExpressions[1].operator");
        assert!(r.contains("Maybe"), "{r}");
        let sel = LabelSelector {
            match_labels: Labels::new(),
            match_expressions: vec![expr("a", "In", &[])],
        };
        let (f, _) = Selector::from_spec(&sel, "x").unwrap_err();
        assert_eq!(f, "x.matchExpressions[0].values");
        let sel = LabelSelector {
            match_labels: labels(&[("-bad", "v")]),
            match_expressions: vec![],
        };
        let (f, _) = Selector::from_spec(&sel, "x").unwrap_err();
        assert_eq!(f, "x.matchLabels");
    }

    #[test]
    fn label_edits() {
        let mut l = labels(&[("a", "1"), ("b", "2")]);
        LabelEdit::parse("a=3").unwrap().apply(&mut l);
        LabelEdit::parse("b-").unwrap().apply(&mut l);
        LabelEdit::parse("example.com/c=").unwrap().apply(&mut l);
        assert_eq!(l, labels(&[("a", "3"), ("example.com/c", "")]));
        assert!(LabelEdit::parse("novalue").is_err());
        assert!(LabelEdit::parse("k=bad value").is_err());
        assert!(parse_labels(&["a-"]).is_err());
        assert_eq!(parse_labels(&["pod=a"]).unwrap(), labels(&[("pod", "a")]));
    }
}
