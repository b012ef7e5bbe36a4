//! Prometheus API JSON: `{"status":"success","data":...}` and the error shape, with sample
//! values as strings and timestamps as seconds with millisecond precision.

use std::fmt::Write;

use crate::labels::{Labels, Sample};
use crate::promql::QueryValue;

/// A JSON string literal.
fn string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// A sample value as Prometheus writes it: a JSON string, `NaN`, `+Inf`, `-Inf` spelled out.
fn value(v: f64) -> String {
    if v.is_nan() {
        "\"NaN\"".into()
    } else if v == f64::INFINITY {
        "\"+Inf\"".into()
    } else if v == f64::NEG_INFINITY {
        "\"-Inf\"".into()
    } else {
        format!("\"{v}\"")
    }
}

/// Milliseconds as seconds with up to three decimals, like Prometheus's `MarshalTimestamp`.
fn timestamp(t: i64) -> String {
    let sign = if t < 0 { "-" } else { "" };
    let a = t.unsigned_abs();
    match a % 1000 {
        0 => format!("{sign}{}", a / 1000),
        f => format!("{sign}{}.{f:03}", a / 1000),
    }
}

/// A label set as a JSON object.
pub(super) fn labels(ls: &Labels) -> String {
    let mut out = String::from("{");
    for (i, l) in ls.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:{}", string(&l.name), string(&l.value));
    }
    out.push('}');
    out
}

fn pair(s: &Sample) -> String {
    format!("[{},{}]", timestamp(s.t), value(s.v))
}

/// The `data` object of a query response.
pub(super) fn query_data(v: &QueryValue) -> String {
    let result = match v {
        QueryValue::Scalar { t, v } => format!("[{},{}]", timestamp(*t), value(*v)),
        QueryValue::String { t, s } => format!("[{},{}]", timestamp(*t), string(s)),
        QueryValue::Vector(samples) => {
            let items: Vec<String> = samples
                .iter()
                .map(|s| {
                    format!(
                        "{{\"metric\":{},\"value\":{}}}",
                        labels(&s.labels),
                        pair(&Sample { t: s.t, v: s.v })
                    )
                })
                .collect();
            format!("[{}]", items.join(","))
        }
        QueryValue::Matrix(series) => {
            let items: Vec<String> = series
                .iter()
                .map(|s| {
                    let values: Vec<String> = s.samples.iter().map(pair).collect();
                    format!(
                        "{{\"metric\":{},\"values\":[{}]}}",
                        labels(&s.labels),
                        values.join(",")
                    )
                })
                .collect();
            format!("[{}]", items.join(","))
        }
    };
    format!(
        "{{\"resultType\":\"{}\",\"result\":{}}}",
        v.result_type(),
        result
    )
}

/// A success envelope around already encoded `data`.
pub(super) fn success(data: &str) -> String {
    format!("{{\"status\":\"success\",\"data\":{data}}}")
}

/// A list of strings as a JSON array.
pub(super) fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.into_iter().map(string).collect();
    format!("[{}]", items.join(","))
}

/// The Prometheus error envelope.
pub(super) fn error(error_type: &str, message: &str) -> String {
    format!(
        "{{\"status\":\"error\",\"errorType\":{},\"error\":{}}}",
        string(error_type),
        string(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_errors_look_like_prometheus() {
        assert_eq!(timestamp(1_435_781_451_781), "1435781451.781");
        assert_eq!(timestamp(1_435_781_451_000), "1435781451");
        assert_eq!(timestamp(5), "0.005");
        assert_eq!(value(1.0), "\"1\"");
        assert_eq!(value(0.1), "\"0.1\"");
        assert_eq!(value(f64::NAN), "\"NaN\"");
        assert_eq!(value(f64::NEG_INFINITY), "\"-Inf\"");
        assert_eq!(
            error("bad_data", "x \"y\""),
            r#"{"status":"error","errorType":"bad_data","error":"x \"y\""}"#
        );
        let parsed: serde_json::Value =
            serde_json::from_str(&success(&query_data(&QueryValue::Scalar {
                t: 1000,
                v: 2.5,
            })))
            .unwrap();
        assert_eq!(parsed["data"]["result"][1], "2.5");
        assert_eq!(parsed["data"]["resultType"], "scalar");
    }
}
