//! End-to-end tests of the metrics store through a real `weft` router in a host namespace
//! (issue 7): Debian's Prometheus 2.42 scrapes an exporter the test runs and `remote_write`s
//! into the router, then PromQL through the router matches Prometheus's own answers; `kill -9`
//! of the router while a writer pushes loses no acknowledged sample; tenants are isolated; bad
//! input gets the right status; `weft query` prints tables.
//!
//! Needs root, `ip`, `nft`, `prometheus` (installed by `scripts/install-deps.sh`; the test fails
//! without it) and `cargo build -p weft-router` first.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use weft_metrics::labels::{Labels, Sample, Series};
use weft_metrics::remote_write::encode_write_request;
use weft_netns_tests::{Answer, Host, Net, Prometheus, Router, poll_until, url_encode};

/// The router's Prometheus API port.
const API_PORT: u16 = 6782;
/// Prometheus's API port (in the exporter's host).
const PROM_PORT: u16 = 9090;
/// The exporter's port.
const EXPORTER_PORT: u16 = 9100;
/// The expression list compared with Prometheus.
const CASES: &str = include_str!("../metrics-cases/promql.txt");

// ---- HTTP from inside a host namespace ----

/// One HTTP/1.0 exchange (so no chunked answers) from inside `host`'s namespace.
fn http(
    host: &Host,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Answer> {
    weft_netns_tests::http(host, addr, method, path, headers, body)
        .expect("entering the host namespace")
}

/// The router's API, as seen from inside its host.
const API: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), API_PORT);

/// `POST /api/v1/push` of `series` for `tenant` (none: no header) to the router on `host`.
fn push(host: &Host, tenant: Option<&str>, series: &[Series]) -> std::io::Result<Answer> {
    let body = encode_write_request(series);
    let mut headers = push_headers(tenant.unwrap_or_default());
    if tenant.is_none() {
        headers.pop();
    }
    http(host, API, "POST", "/api/v1/push", &headers, &body)
}

/// A label as raw bytes: name, value.
type RawLabel<'a> = (&'a [u8], &'a [u8]);

/// Headers of a remote_write 1.0 push for `tenant`.
fn push_headers(tenant: &str) -> Vec<(&str, &str)> {
    vec![
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ("X-Scope-OrgID", tenant),
    ]
}

/// A remote_write body holding `good` and one more series with raw `labels` (which the typed
/// encoder would refuse to build) and one sample at `t`.
fn raw_write_request(good: &Series, labels: &[RawLabel], t: i64) -> Vec<u8> {
    use prost::Message;
    use weft_metrics::remote_write::{ProtoLabel, ProtoSample, TimeSeries, WriteRequest};
    let label = |n: &[u8], v: &[u8]| ProtoLabel {
        name: n.to_vec(),
        value: v.to_vec(),
    };
    let good = TimeSeries {
        labels: good
            .labels
            .iter()
            .map(|l| label(l.name.as_bytes(), l.value.as_bytes()))
            .collect(),
        samples: good
            .samples
            .iter()
            .map(|s| ProtoSample {
                value: s.v,
                timestamp: s.t,
            })
            .collect(),
        histograms: Vec::new(),
    };
    let bad = TimeSeries {
        labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
        samples: vec![ProtoSample {
            value: 1.0,
            timestamp: t,
        }],
        histograms: Vec::new(),
    };
    let req = WriteRequest {
        timeseries: vec![good, bad],
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

/// `GET path` on the router's API as `tenant`.
fn get(host: &Host, tenant: Option<&str>, path: &str) -> Answer {
    let headers: Vec<(&str, &str)> = tenant.map(|t| ("X-Scope-OrgID", t)).into_iter().collect();
    http(host, API, "GET", path, &headers, &[]).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("clock")
}

fn series(name: &str, extra: &[(&str, &str)], samples: Vec<Sample>) -> Series {
    let mut pairs = vec![("__name__", name)];
    pairs.extend_from_slice(extra);
    Series {
        labels: Labels::from_pairs(pairs).expect("labels"),
        samples,
    }
}

/// Starts a router on host 0 with `args` (the metrics API on its default port).
fn launch(net: &Net, args: &[&str]) -> Router {
    let r = net
        .host(0)
        .spawn_weft(args)
        .unwrap_or_else(|e| panic!("launching weft: {e}"));
    let host = net.host(0);
    net.wait_until(Duration::from_secs(20), "the metrics API to answer", || {
        http(host, API, "GET", "/api/v1/status/buildinfo", &[], &[]).is_ok_and(|r| r.status == 200)
    });
    r
}

// ---- tenants, bad input, `weft query` ----

#[test]
fn tenants_are_isolated_bad_input_is_refused_and_weft_query_prints_tables() {
    let net = Net::new(1).expect("net");
    let router = launch(&net, &[]);
    let h = net.host(0);
    let t0 = now_ms() - 60_000;
    let pts = |v: f64| {
        (0..5)
            .map(|i| Sample {
                t: t0 + i * 10_000,
                v,
            })
            .collect::<Vec<_>>()
    };
    for (tenant, v) in [("team-a", 1.0), ("team-b", 2.0)] {
        let r = push(
            h,
            Some(tenant),
            &[series("iso_m", &[("job", tenant)], pts(v))],
        )
        .expect("push");
        assert_eq!(r.status, 204, "push for {tenant}: {}", r.body);
    }
    // Each tenant sees only its own series.
    for (tenant, v) in [("team-a", 1.0), ("team-b", 2.0)] {
        let j = get(h, Some(tenant), "/api/v1/query?query=iso_m").json();
        let result = j["data"]["result"].as_array().expect("result").clone();
        assert_eq!(result.len(), 1, "{tenant}: {j}");
        assert_eq!(result[0]["metric"]["job"], tenant, "{j}");
        assert_eq!(result[0]["value"][1], format!("{v}"), "{j}");
    }
    let j = get(h, Some("team-c"), "/api/v1/label/job/values").json();
    assert_eq!(
        j["data"],
        serde_json::json!([]),
        "team-c sees other tenants: {j}"
    );

    // Bad input: the right status and a message, and nothing half-written.
    let good = series("half_m", &[("k", "v")], pts(1.0));
    let wrong_type = http(
        h,
        API,
        "POST",
        "/api/v1/push",
        &[
            ("Content-Type", "application/json"),
            ("X-Scope-OrgID", "team-a"),
        ],
        &encode_write_request(std::slice::from_ref(&good)),
    )
    .expect("push");
    assert_eq!(wrong_type.status, 415, "{wrong_type:?}");
    assert!(wrong_type.body.contains("Content-Type"), "{wrong_type:?}");
    assert!(
        wrong_type
            .head
            .to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "push errors are plain text, as from Prometheus: {wrong_type:?}"
    );
    let no_tenant = push(h, None, std::slice::from_ref(&good)).expect("push");
    assert_eq!(no_tenant.status, 401, "{no_tenant:?}");
    assert!(no_tenant.body.contains("X-Scope-OrgID"), "{no_tenant:?}");
    for bad in ["..", "a/b", "../../etc"] {
        let r = push(h, Some(bad), std::slice::from_ref(&good)).expect("push");
        assert_eq!(r.status, 400, "tenant {bad:?}: {r:?}");
        assert!(r.body.contains("X-Scope-OrgID"), "{r:?}");
    }
    assert!(
        !router.data_dir().join("etc").exists() && !router.data_dir().join("tsdb/a").exists(),
        "a bad tenant id created a directory"
    );
    let not_snappy = http(
        h,
        API,
        "POST",
        "/api/v1/push",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("X-Scope-OrgID", "team-a"),
        ],
        b"this is not snappy",
    )
    .expect("push");
    assert_eq!(not_snappy.status, 400, "{not_snappy:?}");
    // A batch with one bad series (unsorted labels, a duplicate label, an empty label name,
    // invalid UTF-8, a sample far in the future) is refused whole: nothing is half-written.
    let bad_series: [(&str, Vec<RawLabel>, i64); 5] = [
        ("unsorted", vec![(b"z", b"1"), (b"__name__", b"half_m")], t0),
        (
            "duplicate",
            vec![(b"__name__", b"half_m"), (b"k", b"1"), (b"k", b"2")],
            t0,
        ),
        (
            "empty name",
            vec![(b"", b"1"), (b"__name__", b"half_m")],
            t0,
        ),
        (
            "invalid UTF-8",
            vec![(b"__name__", b"half_m"), (b"k", b"\xff\xfe")],
            t0,
        ),
        (
            "future",
            vec![(b"__name__", b"half_m")],
            now_ms() + 86_400_000,
        ),
    ];
    for (what, labels, t) in bad_series {
        let body = raw_write_request(&good, &labels, t);
        let r = http(
            h,
            API,
            "POST",
            "/api/v1/push",
            &push_headers("team-a"),
            &body,
        )
        .expect("push");
        assert_eq!(r.status, 400, "{what}: {r:?}");
        assert!(!r.body.trim().is_empty(), "{what}: no message");
    }
    let j = get(h, Some("team-a"), "/api/v1/series?match[]=half_m").json();
    assert_eq!(
        j["data"],
        serde_json::json!([]),
        "half a refused batch was written: {j}"
    );

    let parse = get(
        h,
        Some("team-a"),
        &format!("/api/v1/query?query={}", url_encode("sum(")),
    );
    assert_eq!(parse.status, 400, "{parse:?}");
    assert_eq!(parse.json()["errorType"], "bad_data");
    let huge = get(
        h,
        Some("team-a"),
        "/api/v1/query_range?query=iso_m&start=0&end=100000&step=1",
    );
    assert_eq!(huge.status, 400, "{huge:?}");
    assert!(
        huge.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("11000")),
        "{huge:?}"
    );

    // The router's own metrics and build info.
    let own = get(h, None, "/metrics");
    assert_eq!(own.status, 200);
    assert!(
        own.body
            .contains("weft_tsdb_head_series{tenant=\"team-b\"} 1"),
        "{}",
        own.body
    );

    // `weft query`: tables for instant and range queries, errors named.
    let at = format!("{:.3}", (t0 + 45_000) as f64 / 1000.0);
    let out = router.cli_ok(&[
        "query",
        "sum by (job) (iso_m)",
        "--tenant",
        "team-b",
        "--time",
        &at,
    ]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["SERIES", "VALUE", "TIME"],
            vec!["{job=\"team-b\"}", "2", &at]
        ],
        "{out}"
    );
    let start = format!("{}", t0 / 1000 + 1);
    let end = format!("{}", t0 / 1000 + 31);
    let out = router.cli_ok(&[
        "query", "iso_m", "--tenant", "team-a", "--range", &start, &end, "10s",
    ]);
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 5, "{out}");
    assert!(
        rows[1].starts_with("iso_m{job=\"team-a\"}") && rows[1].contains(" 1 "),
        "{out}"
    );
    let err = router.cli_err(&["query", "iso_m"]);
    assert!(err.contains("X-Scope-OrgID"), "{err}");
    let err = router.cli_err(&["query", "sum(", "--tenant", "team-a"]);
    assert!(err.contains("bad_data"), "{err}");
}

// ---- kill -9 ----

#[test]
fn kill_9_mid_stream_loses_no_acknowledged_sample() {
    const SERIES: usize = 10;
    let net = Net::new(1).expect("net");
    let router = launch(&net, &[]);
    let h = net.host(0);
    let t0 = now_ms() - 30 * 60_000;
    let batch = |i: i64| -> Vec<Series> {
        (0..SERIES)
            .map(|s| {
                series(
                    "durable_m",
                    &[("s", &s.to_string())],
                    vec![Sample {
                        t: t0 + i * 100,
                        v: i as f64,
                    }],
                )
            })
            .collect()
    };
    let acked = Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut i = 0i64;
            while !stop.load(Ordering::SeqCst) {
                if let Ok(r) = push(h, Some("durable"), &batch(i))
                    && r.status == 204
                {
                    acked.lock().expect("lock").push(i);
                }
                sent.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        });
        assert!(
            poll_until(Duration::from_secs(30), || acked
                .lock()
                .expect("lock")
                .len()
                >= 100),
            "the writer got no acknowledgements"
        );
        router.kill9().expect("kill -9");
        // Let the writer run into the dead router for a while, then stop it.
        let after = sent.load(Ordering::SeqCst);
        poll_until(Duration::from_secs(5), || {
            sent.load(Ordering::SeqCst) > after + 20
        });
        stop.store(true, Ordering::SeqCst);
        writer.join().expect("writer");
    });
    let acked = acked.lock().expect("lock").clone();
    router.restart().expect("restart");
    net.wait_until(
        Duration::from_secs(20),
        "the metrics API after restart",
        || http(h, API, "GET", "/api/v1/status/buildinfo", &[], &[]).is_ok_and(|r| r.status == 200),
    );
    let at = (t0 + 20 * 60_000) as f64 / 1000.0;
    let j = get(
        h,
        Some("durable"),
        &format!(
            "/api/v1/query?query={}&time={at}",
            url_encode("durable_m[30m]")
        ),
    )
    .json();
    let result = j["data"]["result"].as_array().expect("matrix").clone();
    assert_eq!(result.len(), SERIES, "{j}");
    for s in &result {
        let have: std::collections::BTreeSet<i64> = s["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|p| {
                p[1].as_str()
                    .expect("value")
                    .parse::<f64>()
                    .expect("number") as i64
            })
            .collect();
        let lost: Vec<i64> = acked
            .iter()
            .filter(|i| !have.contains(i))
            .copied()
            .collect();
        assert!(
            lost.is_empty(),
            "series {}: acknowledged batches lost: {lost:?}",
            s["metric"]
        );
    }
    assert!(acked.len() >= 100, "{} acknowledged", acked.len());
}

// ---- comparison with Prometheus ----

/// An exporter serving counters, gauges, a classic histogram and churning series; every scrape
/// advances its state by one step.
fn exporter_page(n: u64) -> String {
    let mut p = String::new();
    p.push_str("# TYPE demo_requests_total counter\n");
    p.push_str(&format!(
        "demo_requests_total{{path=\"/a\",code=\"200\"}} {}\n",
        n * 3
    ));
    // Resets every 8 scrapes.
    p.push_str(&format!(
        "demo_requests_total{{path=\"/b\",code=\"500\"}} {}\n",
        (n % 8) * 5 + n % 3
    ));
    p.push_str(&format!(
        "demo_requests_total{{path=\"/b\",code=\"200\"}} {}\n",
        n * n
    ));
    p.push_str("# TYPE demo_temperature gauge\n");
    p.push_str(&format!(
        "demo_temperature{{room=\"kitchen\"}} {}\n",
        20.0 + (n % 7) as f64 * 0.5
    ));
    p.push_str(&format!(
        "demo_temperature{{room=\"cellar\"}} {}\n",
        18.25 + (n % 4) as f64 * 1.25
    ));
    p.push_str("# TYPE demo_latency_seconds histogram\n");
    let obs = [n % 3 + 1, n % 5 + 2, n % 2 + 1, 1];
    let mut cum = 0u64;
    let total_steps = n + 1;
    for (le, o) in ["0.1", "0.5", "1", "+Inf"].iter().zip(obs) {
        cum += o * total_steps;
        p.push_str(&format!(
            "demo_latency_seconds_bucket{{le=\"{le}\"}} {cum}\n"
        ));
    }
    p.push_str(&format!("demo_latency_seconds_sum {}\n", cum as f64 * 0.37));
    p.push_str(&format!("demo_latency_seconds_count {cum}\n"));
    p.push_str("# TYPE demo_churn gauge\n");
    p.push_str(&format!("demo_churn{{id=\"{}\"}} {}\n", n / 5, n % 5));
    p
}

/// Serves [`exporter_page`] on `listener` until `stop`.
fn serve_exporter(listener: TcpListener, stop: &AtomicBool) {
    listener.set_nonblocking(true).expect("nonblocking");
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut s, _)) => {
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let page = exporter_page(n);
                n += 1;
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A query result as series → points, for comparison.
type Points = BTreeMap<String, Vec<(i64, f64)>>;

fn parse_result(j: &Value) -> Result<Points, String> {
    if j["status"] != "success" {
        return Err(format!("{}: {}", j["errorType"], j["error"]));
    }
    let num = |s: &Value| {
        s.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let ms = |t: &Value| (t.as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
    let mut out = Points::new();
    let data = &j["data"];
    match data["resultType"].as_str() {
        Some("scalar") | Some("string") => {
            let r = &data["result"];
            out.insert(String::new(), vec![(ms(&r[0]), num(&r[1]))]);
        }
        Some("vector") | Some("matrix") => {
            for item in data["result"].as_array().into_iter().flatten() {
                let key = item["metric"].to_string();
                let pts = match item.get("value") {
                    Some(v) => vec![(ms(&v[0]), num(&v[1]))],
                    None => item["values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| (ms(&p[0]), num(&p[1])))
                        .collect(),
                };
                out.insert(key, pts);
            }
        }
        other => return Err(format!("unknown result type {other:?}")),
    }
    Ok(out)
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || ((a - b).abs() <= 1e-6 * a.abs().max(b.abs()))
}

fn compare(prom: &Points, weft: &Points) -> Result<(), String> {
    if prom.keys().ne(weft.keys()) {
        return Err(format!(
            "series differ:\n  prometheus {:?}\n  weft       {:?}",
            prom.keys().collect::<Vec<_>>(),
            weft.keys().collect::<Vec<_>>()
        ));
    }
    for (k, p) in prom {
        let w = &weft[k];
        if p.len() != w.len() {
            return Err(format!(
                "{k}: prometheus {} points, weft {}",
                p.len(),
                w.len()
            ));
        }
        for (a, b) in p.iter().zip(w) {
            if a.0 != b.0 || !same(a.1, b.1) {
                return Err(format!("{k}: prometheus {a:?} weft {b:?}"));
            }
        }
    }
    Ok(())
}

#[test]
fn prometheus_remote_write_through_the_router_gives_the_same_answers() {
    Prometheus::check_installed()
        .expect("run scripts/install-deps.sh (Debian package prometheus 2.42)");
    let net = Net::new(2).expect("net");
    // Debian's Prometheus 2.42 does not send `headers:` of remote_write, so no X-Scope-OrgID:
    // this router runs with tenancy off (tenant `anonymous`).
    let router = launch(&net, &["--metrics-tenancy=off"]);
    let (h0, h1) = (net.host(0), net.host(1));

    let listener = h1
        .run_in(|| TcpListener::bind(("127.0.0.1", EXPORTER_PORT)))
        .expect("namespace")
        .expect("exporter port");
    let stop = Arc::new(AtomicBool::new(false));
    let exporter = {
        let stop = stop.clone();
        std::thread::spawn(move || serve_exporter(listener, &stop))
    };
    let config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: ['127.0.0.1:{EXPORTER_PORT}']\n\
         remote_write:\n  - url: http://{}:{API_PORT}/api/v1/push\n\
         \x20   queue_config:\n      batch_send_deadline: 500ms\n      min_shards: 1\n      max_shards: 1\n      min_backoff: 100ms\n",
        h0.addr()
    );
    let prometheus = Prometheus::start(h1, PROM_PORT, &config, &[]).expect("start prometheus");
    let prom = prometheus.addr();
    let prom_query = |path: &str| -> Value {
        let r = http(h1, prom, "GET", path, &[], &[])
            .unwrap_or_else(|e| panic!("prometheus {path}: {e}"));
        r.json()
    };
    let weft_query = |path: &str| -> Value { get(h0, None, path).json() };

    // Scrape for a while: 30 rounds of churn, resets and histogram changes.
    let started = now_ms();
    net.wait_until(Duration::from_secs(60), "30 s of scrapes", || {
        now_ms() - started > 32_000
    });
    // The last scrape Prometheus has, and weft catching up with it.
    let last = |j: Value| -> Option<i64> {
        let r = j["data"]["result"].as_array()?.first()?.clone();
        Some((r["value"][1].as_str()?.parse::<f64>().ok()? * 1000.0).round() as i64)
    };
    let q_last = format!(
        "/api/v1/query?query={}",
        url_encode("timestamp(demo_temperature{room=\"kitchen\"})")
    );
    let cut = last(prom_query(&q_last)).expect("prometheus has scraped the exporter");
    net.wait_until(
        Duration::from_secs(30),
        "weft to receive the last scrape",
        || {
            last(weft_query(&format!(
                "{q_last}&time={:.3}",
                cut as f64 / 1000.0 + 0.5
            ))) == Some(cut)
        },
    );
    stop.store(true, Ordering::SeqCst);
    exporter.join().expect("exporter");

    // Evaluation times whose millisecond phase is far from every sample's, so that no sample
    // lies on a range boundary (2.42's windows are closed, 3.x's left-open).
    let raw = prom_query(&format!(
        "/api/v1/query?query={}&time={:.3}",
        url_encode("up[10m]"),
        cut as f64 / 1000.0
    ));
    let phases: Vec<i64> = raw["data"]["result"][0]["values"]
        .as_array()
        .expect("raw samples")
        .iter()
        .map(|p| ((p[0].as_f64().unwrap_or(0.0) * 1000.0).round() as i64).rem_euclid(1000))
        .collect();
    let distance = |a: i64, b: i64| (a - b).rem_euclid(1000).min((b - a).rem_euclid(1000));
    let phase = (0..1000)
        .step_by(10)
        .max_by_key(|c| {
            phases
                .iter()
                .map(|p| distance(*c, *p))
                .min()
                .unwrap_or(1000)
        })
        .expect("a phase");
    assert!(
        phases.iter().all(|p| distance(phase, *p) >= 20) && distance(phase, 0) >= 20,
        "no evaluation phase far from the samples' {phases:?}"
    );
    let base = (cut / 1000) * 1000 + phase - if phase > cut % 1000 { 1000 } else { 0 };
    let times: Vec<i64> = [0, 7_000, 16_000, 25_000]
        .iter()
        .map(|d| base - d)
        .collect();

    let exprs: Vec<&str> = CASES
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut with_data = 0;
    for expr in &exprs {
        let mut paths: Vec<String> = times
            .iter()
            .map(|t| {
                format!(
                    "/api/v1/query?query={}&time={:.3}",
                    url_encode(expr),
                    *t as f64 / 1000.0
                )
            })
            .collect();
        paths.push(format!(
            "/api/v1/query_range?query={}&start={:.3}&end={:.3}&step=2",
            url_encode(expr),
            times[3] as f64 / 1000.0,
            times[0] as f64 / 1000.0
        ));
        for path in paths {
            let p = parse_result(&prom_query(&path));
            let w = parse_result(&weft_query(&path));
            compared += 1;
            if p.as_ref().is_ok_and(|p| !p.is_empty()) {
                with_data += 1;
            }
            let outcome = match (&p, &w) {
                (Ok(p), Ok(w)) => compare(p, w),
                (Err(_), Err(_)) => Ok(()),
                _ => Err(format!("prometheus {p:?}\n  weft {w:?}")),
            };
            if let Err(e) = outcome {
                failures.push(format!("{expr} ({path}): {e}"));
            }
        }
    }
    assert!(exprs.len() >= 50, "only {} expressions", exprs.len());
    // Equal because both are empty proves nothing: nearly every query must return data.
    assert!(
        with_data * 10 >= compared * 9,
        "only {with_data} of {compared} queries returned data"
    );
    assert!(
        failures.is_empty(),
        "{} of {compared} queries differ from Prometheus:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Everything went to the one tenant, through the router.
    let own = get(h0, None, "/metrics").body;
    assert!(
        own.contains("weft_tsdb_head_series{tenant=\"anonymous\"}"),
        "{own}"
    );
    drop(router);
}
