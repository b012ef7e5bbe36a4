//! `weft query EXPR`: asks the router's Prometheus API (TCP, `127.0.0.1:6782` by default) and
//! prints the result as a table.
//!
//! The verb talks to the same HTTP API that Grafana and Prometheus clients use, rather than to
//! the control socket, so what it prints is exactly what they see (tenant header included).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

use super::args::QueryArgs;
use super::error::TsdbError;

/// A Prometheus API answer (`/api/v1/query` or `/api/v1/query_range`).
#[derive(Debug, Deserialize)]
struct Answer {
    status: String,
    data: Option<QueryData>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

/// The `data` of a query answer.
#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum QueryData {
    Vector(Vec<VectorItem>),
    Matrix(Vec<MatrixItem>),
    Scalar(Point),
    String((f64, String)),
}

/// A `[seconds, "value"]` pair.
type Point = (f64, String);

#[derive(Debug, Deserialize)]
struct VectorItem {
    metric: BTreeMap<String, String>,
    value: Point,
}

#[derive(Debug, Deserialize)]
struct MatrixItem {
    metric: BTreeMap<String, String>,
    values: Vec<Point>,
}

/// Runs the query of `args` and returns the table to print.
pub async fn run(args: &QueryArgs) -> Result<String, TsdbError> {
    let path = request_path(args);
    let body = get(args.metrics_addr, &path, args.tenant.as_deref()).await?;
    render(&body)
}

/// The request path and query string for `args`.
fn request_path(args: &QueryArgs) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("query", &args.expr);
    match &args.range {
        Some(r) => {
            let names = ["start", "end", "step"];
            for (name, value) in names.iter().zip(r) {
                q.append_pair(name, value);
            }
            format!("/api/v1/query_range?{}", q.finish())
        }
        None => {
            if let Some(t) = &args.time {
                q.append_pair("time", t);
            }
            format!("/api/v1/query?{}", q.finish())
        }
    }
}

/// `GET path` on the API at `addr`; the body of any answer (errors carry Prometheus JSON too).
async fn get(addr: SocketAddr, path: &str, tenant: Option<&str>) -> Result<Bytes, TsdbError> {
    let transport = |e: &dyn std::fmt::Display| TsdbError::Transport {
        addr,
        reason: e.to_string(),
    };
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| TsdbError::NotRunning {
            addr,
            reason: e.to_string(),
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| transport(&e))?;
    tokio::spawn(conn);
    let mut req = Request::get(path).header(hyper::header::HOST, addr.to_string());
    if let Some(t) = tenant {
        req = req.header(weft_metrics::http::TENANT_HEADER, t);
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| transport(&e))?;
    let resp = sender.send_request(req).await.map_err(|e| transport(&e))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| transport(&e))?
        .to_bytes();
    if !status.is_success() && serde_json::from_slice::<Answer>(&body).is_err() {
        return Err(TsdbError::Query {
            error_type: status.to_string(),
            message: String::from_utf8_lossy(&body).trim().to_owned(),
        });
    }
    Ok(body)
}

/// Turns an API answer into a table, or its error into [`TsdbError::Query`].
fn render(body: &[u8]) -> Result<String, TsdbError> {
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| TsdbError::Answer(e.to_string()))?;
    if answer.status != "success" {
        return Err(TsdbError::Query {
            error_type: answer.error_type.unwrap_or_else(|| "error".into()),
            message: answer.error.unwrap_or_default(),
        });
    }
    let data = answer
        .data
        .ok_or_else(|| TsdbError::Answer("success without data".into()))?;
    let rows: Vec<Vec<String>> = match data {
        QueryData::Vector(items) => {
            let mut rows = vec![header(&["SERIES", "VALUE", "TIME"])];
            rows.extend(
                items
                    .into_iter()
                    .map(|i| vec![series_name(&i.metric), i.value.1, seconds(i.value.0)]),
            );
            rows
        }
        QueryData::Matrix(items) => {
            let mut rows = vec![header(&["SERIES", "VALUE", "TIME"])];
            for item in items {
                let name = series_name(&item.metric);
                rows.extend(
                    item.values
                        .into_iter()
                        .map(|(t, v)| vec![name.clone(), v, seconds(t)]),
                );
            }
            rows
        }
        QueryData::Scalar((t, v)) => vec![header(&["SCALAR", "TIME"]), vec![v, seconds(t)]],
        QueryData::String((t, v)) => vec![header(&["STRING", "TIME"]), vec![v, seconds(t)]],
    };
    Ok(table(&rows))
}

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// A timestamp in seconds as the API gives it (millisecond precision).
fn seconds(t: f64) -> String {
    format!("{t:.3}")
}

/// `name{a="b", c="d"}`, as Prometheus prints a series; `{}` for no labels.
fn series_name(metric: &BTreeMap<String, String>) -> String {
    let name = metric.get("__name__").map_or("", String::as_str);
    let labels: Vec<String> = metric
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if labels.is_empty() && !name.is_empty() {
        return name.to_owned();
    }
    format!("{name}{{{}}}", labels.join(", "))
}

/// Rows with columns padded to a common width (the last column unpadded).
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let last = row.len().saturating_sub(1);
        for (c, cell) in row.iter().enumerate() {
            if c == last {
                out.push_str(cell);
            } else {
                let pad = widths[c] - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(expr: &str) -> QueryArgs {
        QueryArgs {
            expr: expr.into(),
            tenant: None,
            time: None,
            range: None,
            metrics_addr: "127.0.0.1:6782".parse().expect("addr"),
        }
    }

    #[test]
    fn paths_encode_the_expression_time_and_range() {
        let mut a = args("sum(rate(x{a=\"b c\"}[5m]))");
        a.time = Some("1700000000".into());
        assert_eq!(
            request_path(&a),
            "/api/v1/query?query=sum%28rate%28x%7Ba%3D%22b+c%22%7D%5B5m%5D%29%29&time=1700000000"
        );
        a.time = None;
        a.range = Some(vec!["10".into(), "20".into(), "5s".into()]);
        assert_eq!(
            request_path(&a),
            "/api/v1/query_range?query=sum%28rate%28x%7Ba%3D%22b+c%22%7D%5B5m%5D%29%29&start=10&end=20&step=5s"
        );
    }

    #[test]
    fn vector_is_a_table_with_series_value_time() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","job":"api"},"value":[1.5,"1"]},
            {"metric":{"job":"db"},"value":[1.5,"0.25"]}]}}"#;
        assert_eq!(
            render(body).expect("renders"),
            "SERIES         VALUE  TIME\n\
             up{job=\"api\"}  1      1.500\n\
             {job=\"db\"}     0.25   1.500\n"
        );
    }

    #[test]
    fn matrix_has_one_row_per_point_and_scalar_one_row() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"m"},"values":[[10,"1"],[20,"2"]]}]}}"#;
        assert_eq!(
            render(body).expect("renders"),
            "SERIES  VALUE  TIME\nm       1      10.000\nm       2      20.000\n"
        );
        let body = br#"{"status":"success","data":{"resultType":"scalar","result":[3,"NaN"]}}"#;
        assert_eq!(
            render(body).expect("renders"),
            "SCALAR  TIME\nNaN     3.000\n"
        );
    }

    #[test]
    fn api_errors_keep_their_type_and_message() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        let e = render(body).expect_err("an error answer");
        assert_eq!(e.to_string(), "bad_data: parse error at char 3");
        assert!(matches!(render(b"<html>"), Err(TsdbError::Answer(_))));
    }
}
