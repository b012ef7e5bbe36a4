//! Compares weft's PromQL engine with the real Prometheus on the same data.
//!
//! The test generates counters (with churn, a reset and staleness markers), gauges, an info
//! metric and a classic histogram, starts `prometheus --web.enable-remote-write-receiver` on a
//! loopback port and pushes every scrape round to it with weft's remote_write encoder (so the
//! encoder is checked against the real receiver too), writes the same batches into a weft
//! [`Storage`], and evaluates every expression of `testdata/promql_compare.txt` on both, as
//! instant queries at several times and as range queries. Results must have the same series,
//! with values equal within a relative tolerance of 1e-6 (NaN equals NaN); an expression that
//! fails on one side must fail on the other.
//!
//! Debian ships Prometheus 2.42, whose range and lookback windows are closed where 3.x's are
//! left-open: samples lie at odd milliseconds and evaluation times at whole seconds (not
//! multiples of a minute), so no sample ever sits on a window boundary. The test fails when
//! `prometheus` is not installed (`scripts/install-deps.sh` installs it).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weft_metrics::labels::{Labels, Sample, Series, stale_nan};
use weft_metrics::promql::{EngineConfig, QueryValue, instant_query, range_query};
use weft_metrics::remote_write::encode_write_request;
use weft_metrics::storage::{Storage, StorageConfig, Store};
use weft_metrics::tenant::TenantId;

const BASE_MS: i64 = 1_700_000_000_000;
const STEP_MS: i64 = 15_000;
const POINTS: i64 = 2 * 3600 * 1000 / STEP_MS;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).expect("valid labels")
}

/// Sample time of point `i` of a series with a per-series odd millisecond offset.
fn at(i: i64, offset: i64) -> i64 {
    BASE_MS + i * STEP_MS + offset
}

/// Ends a series that stops at point `to`, before the last point, with the staleness marker a
/// scrape writes when a series disappears.
fn mark_stale(samples: &mut Vec<Sample>, to: i64, offset: i64) {
    if to < POINTS {
        samples.push(Sample {
            t: at(to, offset),
            v: stale_nan(),
        });
    }
}

fn dataset() -> Vec<Series> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::new();
    for job in ["api", "web"] {
        for instance in ["i0", "i1", "i2"] {
            for code in ["200", "500"] {
                let offset = 1 + 2 * rng.below(499) as i64;
                // Churn: one series starts late, one stops early.
                let (from, to) = match (job, instance, code) {
                    ("web", "i2", "500") => (100, POINTS),
                    ("api", "i1", "500") => (0, 300),
                    _ => (0, POINTS),
                };
                let mut v = rng.below(1000) as f64;
                let mut samples = Vec::new();
                let scale = if code == "200" { 20.0 } else { 3.0 };
                for i in from..to {
                    // Fractional increments make ties (ambiguous for topk/bottomk) unlikely.
                    v = ((v + rng.unit() * scale) * 1000.0).round() / 1000.0;
                    if (job, instance, code) == ("api", "i0", "200") && i == 240 {
                        v = 0.0;
                    }
                    samples.push(Sample {
                        t: at(i, offset),
                        v,
                    });
                }
                mark_stale(&mut samples, to, offset);
                out.push(Series {
                    labels: labels(&[
                        ("__name__", "http_requests_total"),
                        ("job", job),
                        ("instance", instance),
                        ("code", code),
                    ]),
                    samples,
                });
            }
        }
    }
    for instance in ["i0", "i1", "i2", "i3"] {
        let offset = 1 + 2 * rng.below(499) as i64;
        let (from, to) = if instance == "i3" {
            (200, 400)
        } else {
            (0, POINTS)
        };
        let mut v = 20.0;
        let mut samples: Vec<Sample> = (from..to)
            .map(|i| {
                v += (rng.unit() - 0.5) * 0.8;
                Sample {
                    t: at(i, offset),
                    v: (v * 1000.0).round() / 1000.0,
                }
            })
            .collect();
        mark_stale(&mut samples, to, offset);
        out.push(Series {
            labels: labels(&[
                ("__name__", "node_temp"),
                ("job", "node"),
                ("instance", instance),
            ]),
            samples,
        });
    }
    for (instance, version) in [("i0", "1.0"), ("i1", "1.1"), ("i2", "1.0")] {
        let offset = 1 + 2 * rng.below(499) as i64;
        let samples = (0..POINTS)
            .map(|i| Sample {
                t: at(i, offset),
                v: 1.0,
            })
            .collect();
        out.push(Series {
            labels: labels(&[
                ("__name__", "build_info"),
                ("job", "api"),
                ("instance", instance),
                ("version", version),
            ]),
            samples,
        });
    }
    let bounds = ["0.05", "0.1", "0.25", "0.5", "1", "+Inf"];
    for job in ["api", "web"] {
        let offset = 1 + 2 * rng.below(499) as i64;
        let mut counts = [0.0f64; 6];
        let (mut sum, mut count) = (0.0f64, 0.0f64);
        let mut series: Vec<Vec<Sample>> = vec![Vec::new(); 8];
        for i in 0..POINTS {
            for _ in 0..rng.below(12) {
                let x = -0.3 * rng.unit().max(1e-9).ln();
                for (b, le) in bounds.iter().enumerate() {
                    if *le == "+Inf" || x <= le.parse::<f64>().unwrap_or(f64::INFINITY) {
                        counts[b] += 1.0;
                    }
                }
                sum += (x * 1000.0).round() / 1000.0;
                count += 1.0;
            }
            let t = at(i, offset);
            for (b, c) in counts.iter().enumerate() {
                series[b].push(Sample { t, v: *c });
            }
            series[6].push(Sample {
                t,
                v: (sum * 1000.0).round() / 1000.0,
            });
            series[7].push(Sample { t, v: count });
        }
        for (b, samples) in series.into_iter().enumerate() {
            let ls = match b {
                0..=5 => labels(&[
                    ("__name__", "rpc_duration_seconds_bucket"),
                    ("job", job),
                    ("le", bounds[b]),
                ]),
                6 => labels(&[("__name__", "rpc_duration_seconds_sum"), ("job", job)]),
                _ => labels(&[("__name__", "rpc_duration_seconds_count"), ("job", job)]),
            };
            out.push(Series {
                labels: ls,
                samples,
            });
        }
    }
    out
}

/// The Prometheus server started by the test; killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn installed(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn start_prometheus(dir: &Path) -> Prometheus {
    let tsdb = dir.join("tsdb");
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 15s\n").expect("write config");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=100y")
        .arg("--web.enable-remote-write-receiver")
        .arg("--log.level=error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let prom = Prometheus { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if http_get(port, "/-/ready").is_some_and(|(status, _)| status == 200) {
            return prom;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("prometheus did not become ready on port {port}");
}

/// A plain HTTP/1.0 GET on loopback (no chunked encoding, the server closes the connection).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// POSTs a remote_write body; returns the HTTP status.
fn push(port: u16, body: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "POST /api/v1/write HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n\
         Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    String::from_utf8_lossy(&raw)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A result reduced to what is compared: label sets (as text) to values.
#[derive(Debug)]
enum Res {
    Scalar(f64),
    Vector(BTreeMap<String, f64>),
    Matrix(BTreeMap<String, Vec<(i64, f64)>>),
    Error(String),
}

fn key_of(pairs: impl Iterator<Item = (String, String)>) -> String {
    let sorted: BTreeMap<String, String> = pairs.collect();
    let parts: Vec<String> = sorted
        .into_iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn parse_value(v: &serde_json::Value) -> f64 {
    match v.as_str().unwrap_or("") {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().unwrap_or(f64::NAN),
    }
}

fn parse_ts(v: &serde_json::Value) -> i64 {
    (v.as_f64().unwrap_or(0.0) * 1000.0).round() as i64
}

fn metric_key(m: &serde_json::Value) -> String {
    key_of(
        m.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned())),
    )
}

fn prometheus_result(port: u16, path: &str) -> Res {
    let Some((status, body)) = http_get(port, path) else {
        return Res::Error("no response".into());
    };
    let json: serde_json::Value = match serde_json::from_str(&body) {
        Ok(j) => j,
        Err(e) => return Res::Error(format!("status {status}: {e}: {body}")),
    };
    if json["status"] != "success" {
        return Res::Error(json["error"].as_str().unwrap_or("?").to_owned());
    }
    let data = &json["data"];
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("scalar") => Res::Scalar(parse_value(&result[1])),
        Some("vector") => Res::Vector(
            result
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| (metric_key(&e["metric"]), parse_value(&e["value"][1])))
                .collect(),
        ),
        Some("matrix") => Res::Matrix(
            result
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    let pts = e["values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| (parse_ts(&p[0]), parse_value(&p[1])))
                        .collect();
                    (metric_key(&e["metric"]), pts)
                })
                .collect(),
        ),
        other => Res::Error(format!("unexpected result type {other:?}")),
    }
}

fn labels_key(l: &Labels) -> String {
    key_of(l.iter().map(|x| (x.name.clone(), x.value.clone())))
}

fn weft_result(r: Result<QueryValue, weft_metrics::promql::QueryError>) -> Res {
    match r {
        Err(e) => Res::Error(e.to_string()),
        Ok(QueryValue::Scalar { v, .. }) => Res::Scalar(v),
        Ok(QueryValue::String { s, .. }) => Res::Error(format!("string {s}")),
        Ok(QueryValue::Vector(v)) => Res::Vector(
            v.into_iter()
                .map(|s| (labels_key(&s.labels), s.v))
                .collect(),
        ),
        Ok(QueryValue::Matrix(m)) => Res::Matrix(
            m.into_iter()
                .map(|s| {
                    (
                        labels_key(&s.labels),
                        s.samples.iter().map(|x| (x.t, x.v)).collect(),
                    )
                })
                .collect(),
        ),
    }
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan())
        || a == b
        || (a - b).abs() <= 1e-6 * a.abs().max(b.abs())
        || (a - b).abs() < 1e-9
}

fn compare(prom: &Res, weft: &Res) -> Result<(), String> {
    match (prom, weft) {
        (Res::Error(_), Res::Error(_)) => Ok(()),
        (Res::Scalar(a), Res::Scalar(b)) if same(*a, *b) => Ok(()),
        (Res::Vector(a), Res::Vector(b)) => {
            if a.keys().ne(b.keys()) {
                return Err(format!(
                    "series differ:\n  prometheus {:?}\n  weft       {:?}",
                    a.keys().collect::<Vec<_>>(),
                    b.keys().collect::<Vec<_>>()
                ));
            }
            for (k, va) in a {
                let vb = b[k];
                if !same(*va, vb) {
                    return Err(format!("{k}: prometheus {va} weft {vb}"));
                }
            }
            Ok(())
        }
        (Res::Matrix(a), Res::Matrix(b)) => {
            if a.keys().ne(b.keys()) {
                return Err(format!(
                    "series differ:\n  prometheus {:?}\n  weft       {:?}",
                    a.keys().collect::<Vec<_>>(),
                    b.keys().collect::<Vec<_>>()
                ));
            }
            for (k, pa) in a {
                let pb = &b[k];
                if pa.len() != pb.len() {
                    return Err(format!(
                        "{k}: prometheus has {} points, weft {}",
                        pa.len(),
                        pb.len()
                    ));
                }
                for ((ta, va), (tb, vb)) in pa.iter().zip(pb) {
                    if ta != tb || !same(*va, *vb) {
                        return Err(format!("{k}: prometheus ({ta}, {va}) weft ({tb}, {vb})"));
                    }
                }
            }
            Ok(())
        }
        _ => Err(format!(
            "prometheus {}\n  weft {}",
            describe(prom),
            describe(weft)
        )),
    }
}

fn describe(r: &Res) -> String {
    match r {
        Res::Error(e) => format!("error: {e}"),
        other => format!("{other:?}"),
    }
}

#[test]
fn promql_matches_real_prometheus() {
    assert!(
        installed("prometheus"),
        "prometheus is not installed: run scripts/install-deps.sh (Debian package prometheus 2.42)"
    );
    let data = dataset();
    let dir = tempfile::tempdir().expect("tempdir");
    let prom = start_prometheus(dir.path());

    let store = Storage::open(StorageConfig::default()).expect("storage");
    let tenant = TenantId::new("compare").expect("tenant");
    // Written in time order, one batch per scrape round.
    for i in 0..POINTS {
        let batch: Vec<Series> = data
            .iter()
            .filter_map(|s| {
                let x = s
                    .samples
                    .iter()
                    .find(|x| (x.t - BASE_MS).div_euclid(STEP_MS) == i)?;
                Some(Series {
                    labels: s.labels.clone(),
                    samples: vec![*x],
                })
            })
            .collect();
        assert_eq!(
            push(prom.port, &encode_write_request(&batch)),
            Some(204),
            "push round {i} to prometheus"
        );
        store
            .write(&tenant, batch, BASE_MS + 3 * 3600 * 1000)
            .expect("write");
    }

    let lines: Vec<&str> = include_str!("../testdata/promql_compare.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let (differing, exprs): (Vec<&str>, Vec<&str>) =
        lines.into_iter().partition(|l| l.starts_with('!'));
    assert!(
        exprs.len() >= 100,
        "need at least 100 expressions, have {}",
        exprs.len()
    );
    let cfg = EngineConfig::default();
    // Whole seconds that are not multiples of 5 s, so subquery steps never hit a boundary.
    let times: Vec<i64> = (0..3).map(|k| BASE_MS + (3607 + 171 * k) * 1000).collect();
    let (start, end, step) = (times[0], times[0] + 1800 * 1000, 61 * 1000);
    // Sanity: Prometheus really holds the pushed data.
    let probe = format!(
        "/api/v1/query?query={}&time={}",
        urlencode("count(http_requests_total)"),
        times[0] / 1000
    );
    match prometheus_result(prom.port, &probe) {
        Res::Vector(v) => assert_eq!(
            v.values().copied().collect::<Vec<_>>(),
            vec![12.0],
            "all counters are alive at the first evaluation time"
        ),
        other => panic!("prometheus has no data: {other:?}"),
    }
    let mut failures = Vec::new();
    let mut compared = 0;
    for expr in &exprs {
        for &t in &times {
            let p = prometheus_result(
                prom.port,
                &format!(
                    "/api/v1/query?query={}&time={}",
                    urlencode(expr),
                    t as f64 / 1000.0
                ),
            );
            let w = weft_result(instant_query(&store, &tenant, expr, t, &cfg));
            compared += 1;
            if let Err(e) = compare(&p, &w) {
                failures.push(format!("instant {expr} @ {t}: {e}"));
            }
        }
        if expr.contains(']') && !expr.contains('(') {
            continue; // a bare range selector has no range-query form
        }
        let p = prometheus_result(
            prom.port,
            &format!(
                "/api/v1/query_range?query={}&start={}&end={}&step={}",
                urlencode(expr),
                start / 1000,
                end / 1000,
                step / 1000
            ),
        );
        let w = weft_result(range_query(&store, &tenant, expr, start, end, step, &cfg));
        compared += 1;
        if let Err(e) = compare(&p, &w) {
            failures.push(format!("range {expr}: {e}"));
        }
    }
    for expr in differing.iter().map(|l| &l[1..]) {
        for &t in &times {
            if let Err(e) = instant_query(&store, &tenant, expr, t, &cfg) {
                failures.push(format!(
                    "instant {expr} @ {t} (3.x semantics, weft only): {e}"
                ));
            }
        }
    }
    eprintln!(
        "compared {compared} queries over {} expressions, {} differ",
        exprs.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
