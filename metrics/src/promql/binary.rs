//! Binary operators: arithmetic, comparisons (filtering or `bool`), set operators, and vector
//! matching with `on`/`ignoring`/`group_left`/`group_right`.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB, TokenId,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use crate::labels::{Labels, METRIC_NAME};

use super::QueryError;
use super::value::{Elem, Value};

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Applies `op` to two numbers: the value and whether the element is kept (comparisons keep the
/// left value when true).
fn apply(op: TokenId, l: f64, r: f64) -> Result<(f64, bool), QueryError> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_MOD => (l % r, true),
        T_POW => (l.powf(r), true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        other => {
            return Err(QueryError::Unsupported(format!(
                "binary operator {}",
                promql_parser::parser::token::TokenType::new(other)
            )));
        }
    })
}

/// Evaluates a binary expression on already evaluated operands.
pub(super) fn eval(b: &BinaryExpr, lhs: Value, rhs: Value) -> Result<Value, QueryError> {
    let op = b.op.id();
    let return_bool = b.return_bool();
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, keep) = apply(op, l, r)?;
            Ok(Value::Scalar(if is_comparison(op) {
                f64::from(u8::from(keep))
            } else {
                v
            }))
        }
        (Value::Vector(v), Value::Scalar(s)) => {
            vector_scalar(op, v, s, false, return_bool).map(Value::Vector)
        }
        (Value::Scalar(s), Value::Vector(v)) => {
            vector_scalar(op, v, s, true, return_bool).map(Value::Vector)
        }
        (Value::Vector(l), Value::Vector(r)) => {
            vector_vector(b, op, l, r, return_bool).map(Value::Vector)
        }
        _ => Err(QueryError::BadData(
            "binary operators need scalar or instant vector operands".into(),
        )),
    }
}

fn vector_scalar(
    op: TokenId,
    v: Vec<Elem>,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Result<Vec<Elem>, QueryError> {
    let drop_name = !is_comparison(op) || return_bool;
    let mut out = Vec::with_capacity(v.len());
    for e in v {
        let (l, r) = if swap { (s, e.v) } else { (e.v, s) };
        let (mut value, mut keep) = apply(op, l, r)?;
        // A comparison keeps the vector element's value, even when the scalar is on the left.
        if is_comparison(op) && swap {
            value = e.v;
        }
        if return_bool {
            value = f64::from(u8::from(keep));
            keep = true;
        }
        if keep {
            let labels = if drop_name {
                e.labels.without(METRIC_NAME)
            } else {
                e.labels
            };
            out.push(Elem {
                labels,
                v: value,
                t: e.t,
            });
        }
    }
    Ok(out)
}

/// How two vectors are matched.
struct Matching<'a> {
    on: bool,
    labels: &'a [String],
}

impl Matching<'_> {
    fn signature(&self, labels: &Labels) -> Labels {
        if self.on {
            labels.filtered(|n| self.labels.iter().any(|l| l == n))
        } else {
            labels.filtered(|n| n != METRIC_NAME && !self.labels.iter().any(|l| l == n))
        }
    }
}

fn vector_vector(
    b: &BinaryExpr,
    op: TokenId,
    lhs: Vec<Elem>,
    rhs: Vec<Elem>,
    return_bool: bool,
) -> Result<Vec<Elem>, QueryError> {
    let (card, matching) = match &b.modifier {
        Some(m) => (m.card.clone(), m.matching.as_ref()),
        None => (VectorMatchCardinality::OneToOne, None),
    };
    let empty: [String; 0] = [];
    let matching = match matching {
        Some(LabelModifier::Include(l)) => Matching {
            on: true,
            labels: &l.labels,
        },
        Some(LabelModifier::Exclude(l)) => Matching {
            on: false,
            labels: &l.labels,
        },
        None => Matching {
            on: false,
            labels: &empty,
        },
    };
    match op {
        T_LAND => {
            let right: HashSet<Labels> =
                rhs.iter().map(|e| matching.signature(&e.labels)).collect();
            Ok(lhs
                .into_iter()
                .filter(|e| right.contains(&matching.signature(&e.labels)))
                .collect())
        }
        T_LUNLESS => {
            let right: HashSet<Labels> =
                rhs.iter().map(|e| matching.signature(&e.labels)).collect();
            Ok(lhs
                .into_iter()
                .filter(|e| !right.contains(&matching.signature(&e.labels)))
                .collect())
        }
        T_LOR => {
            let left: HashSet<Labels> = lhs.iter().map(|e| matching.signature(&e.labels)).collect();
            let mut out = lhs;
            out.extend(
                rhs.into_iter()
                    .filter(|e| !left.contains(&matching.signature(&e.labels))),
            );
            Ok(out)
        }
        _ => arithmetic(op, card, &matching, lhs, rhs, return_bool),
    }
}

fn arithmetic(
    op: TokenId,
    card: VectorMatchCardinality,
    matching: &Matching<'_>,
    lhs: Vec<Elem>,
    rhs: Vec<Elem>,
    return_bool: bool,
) -> Result<Vec<Elem>, QueryError> {
    let swapped = matches!(card, VectorMatchCardinality::OneToMany(_));
    let include: Vec<String> = card.labels().map(|l| l.labels.clone()).unwrap_or_default();
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    let one_side = if swapped { "left" } else { "right" };
    let mut one_by_sig: HashMap<Labels, &Elem> = HashMap::with_capacity(one.len());
    for e in &one {
        let sig = matching.signature(&e.labels);
        if one_by_sig.insert(sig.clone(), e).is_some() {
            return Err(QueryError::Execution(format!(
                "found duplicate series for the match group {sig} on the {one_side} hand-side of the operation: \
                 many-to-many matching not allowed: matching labels must be unique on one side"
            )));
        }
    }
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let drop_name = !is_comparison(op) || return_bool;
    let mut matched: HashSet<Labels> = HashSet::new();
    let mut out = Vec::new();
    for m in many {
        let sig = matching.signature(&m.labels);
        let Some(o) = one_by_sig.get(&sig) else {
            continue;
        };
        let (l, r) = if swapped { (o.v, m.v) } else { (m.v, o.v) };
        let (mut value, mut keep) = apply(op, l, r)?;
        if return_bool {
            value = f64::from(u8::from(keep));
            keep = true;
        }
        if !keep {
            continue;
        }
        let mut labels = if drop_name {
            m.labels.without(METRIC_NAME)
        } else {
            m.labels.clone()
        };
        if one_to_one {
            labels = if matching.on {
                labels.filtered(|n| matching.labels.iter().any(|l| l == n))
            } else {
                labels.filtered(|n| !matching.labels.iter().any(|l| l == n))
            };
        }
        for name in &include {
            labels = labels.with(name, o.labels.get(name).unwrap_or(""));
        }
        let dedup_key = if one_to_one { sig } else { labels.clone() };
        if !matched.insert(dedup_key) {
            return Err(QueryError::Execution(if one_to_one {
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into()
            } else {
                "multiple matches for labels: grouping labels must ensure unique matches".into()
            }));
        }
        out.push(Elem {
            labels,
            v: value,
            t: m.t,
        });
    }
    Ok(out)
}
