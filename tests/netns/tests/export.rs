//! End-to-end test of `--metrics-remote-write` (issue 10 point 7): a router in one host
//! namespace exports what it accepts to Debian's Prometheus 2.42 (remote-write receiver) in
//! another host, and to a destination that answers 400 to everything. Samples of two tenants
//! arrive with their values; while Prometheus is stopped the router queues and, once it is
//! back, every sample arrives; samples of tenants not listed by `--metrics-remote-write-tenant`
//! stay local; a router killed with `kill -9` with a non-empty queue sends the
//! queued samples after its restart; the 400 destination does not hold the others back.
//!
//! Needs root, `ip`, `nft`, `prometheus` (installed by `scripts/install-deps.sh`) and
//! `cargo build -p weft-router` first.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weft_metrics::labels::{Labels, Sample, Series};
use weft_metrics::remote_write::encode_write_request;
use weft_netns_tests::{Host, Net, Prometheus};

/// The router's Prometheus API port.
const API_PORT: u16 = 6782;
/// Prometheus's port (in host 1).
const PROM_PORT: u16 = 9090;
/// The port of the destination that refuses everything (in host 1).
const REFUSER_PORT: u16 = 9400;
/// Series per tenant.
const SERIES: usize = 5;
/// Samples per series in one push.
const PER_PUSH: usize = 10;
/// The two tenants.
const TENANTS: [&str; 2] = ["team-a", "team-b"];
/// How long arrivals may take.
const ARRIVAL: Duration = Duration::from_secs(60);

/// Status and body of one HTTP/1.0 exchange from inside `host`.
fn http(
    host: &Host,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    let answer = weft_netns_tests::http(host, addr, method, path, headers, body)
        .ok()?
        .ok()?;
    Some((answer.status, answer.body))
}

fn api() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], API_PORT))
}

/// Pushes `series` for `tenant` to the router on `host`; panics unless it is accepted.
fn push(host: &Host, tenant: &str, series: &[Series]) {
    let body = encode_write_request(series);
    let headers = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ("X-Scope-OrgID", tenant),
    ];
    let answer = http(host, api(), "POST", "/api/v1/push", &headers, &body);
    assert!(
        matches!(answer, Some((204 | 200, _))),
        "push for {tenant}: {answer:?}"
    );
}

/// The value of the router's `/metrics` line `name{destination="<url>"}`.
fn export_metric(host: &Host, name: &str, url: &str) -> Option<u64> {
    let (_, text) = http(host, api(), "GET", "/metrics", &[], &[])?;
    let prefix = format!("{name}{{destination=\"{url}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// The samples of push round `round` for `tenant`: series `export_test{tenant, series}`, each
/// sample `t = base + (round * PER_PUSH + i) s` with value `round * 1000 + i + series`.
fn round(tenant: &str, round: usize, base: i64) -> Vec<Series> {
    (0..SERIES)
        .map(|s| Series {
            labels: Labels::from_pairs([
                ("__name__", "export_test"),
                ("series", &s.to_string()),
                ("tenant", tenant),
            ])
            .expect("labels"),
            samples: (0..PER_PUSH)
                .map(|i| Sample {
                    t: base + ((round * PER_PUSH + i) as i64) * 1000,
                    v: (round * 1000 + i + s) as f64,
                })
                .collect(),
        })
        .collect()
}

/// Pushes the next `n` rounds of every tenant in [`TENANTS`] to the router on `host`; counts
/// them in `rounds`.
fn push_rounds(host: &Host, n: usize, rounds: &mut usize, base: i64) {
    for _ in 0..n {
        for t in TENANTS {
            push(host, t, &round(t, *rounds, base));
        }
        *rounds += 1;
    }
}

/// Sum over all rounds `< rounds` of a tenant's values (what `sum_over_time` must give).
fn expected_sum(rounds: usize) -> f64 {
    let mut sum = 0.0;
    for r in 0..rounds {
        for s in 0..SERIES {
            for i in 0..PER_PUSH {
                sum += (r * 1000 + i + s) as f64;
            }
        }
    }
    sum
}

/// The single value of an instant vector answer.
fn scalar(data: &serde_json::Value) -> Option<f64> {
    data["result"].as_array()?.first()?["value"][1]
        .as_str()?
        .parse()
        .ok()
}

/// Whether Prometheus holds exactly the first `rounds` rounds of every tenant.
fn prometheus_has(h: &Host, prom: &Prometheus, rounds: usize) -> bool {
    TENANTS.iter().all(|t| {
        let count = format!("sum(count_over_time(export_test{{tenant=\"{t}\"}}[1h]))");
        let sum = format!("sum(sum_over_time(export_test{{tenant=\"{t}\"}}[1h]))");
        let n = prom.query(h, &count).as_ref().and_then(scalar);
        let v = prom.query(h, &sum).as_ref().and_then(scalar);
        n == Some((rounds * SERIES * PER_PUSH) as f64) && v == Some(expected_sum(rounds))
    })
}

/// A destination that answers 400 to every request and records the tenant header of each.
fn serve_refuser(listener: TcpListener, stop: &AtomicBool, tenants: &Mutex<Vec<String>>) {
    listener.set_nonblocking(true).expect("nonblocking");
    while !stop.load(Ordering::Relaxed) {
        let Ok((stream, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(stream);
        // Keep-alive: answer requests on this connection until it closes.
        loop {
            let mut length = 0usize;
            let mut line = String::new();
            let mut saw_request = false;
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                let l = line.trim_end().to_owned();
                line.clear();
                if l.is_empty() {
                    break;
                }
                saw_request = true;
                if let Some((k, v)) = l.split_once(':') {
                    let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    if k == "content-length" {
                        length = v.parse().unwrap_or(0);
                    } else if k == "x-scope-orgid" {
                        tenants.lock().expect("lock").push(v);
                    }
                }
            }
            if !saw_request {
                break;
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                break;
            }
            let answer = "HTTP/1.1 400 Bad Request\r\nContent-Length: 4\r\n\r\nnope";
            if reader.get_mut().write_all(answer.as_bytes()).is_err() {
                break;
            }
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("clock")
}

#[test]
fn exported_samples_reach_prometheus_through_outages_and_a_kill_9() {
    Prometheus::check_installed()
        .expect("run scripts/install-deps.sh (Debian package prometheus 2.42)");
    let net = Net::new(2).expect("net");
    let (h0, h1) = (net.host(0), net.host(1));
    let prom = Prometheus::start(
        h1,
        PROM_PORT,
        "global:\n  scrape_interval: 1m\n",
        &["--web.enable-remote-write-receiver"],
    )
    .expect("start prometheus");

    let listener = h1
        .run_in(|| TcpListener::bind(("0.0.0.0", REFUSER_PORT)))
        .expect("namespace")
        .expect("refuser port");
    let stop = Arc::new(AtomicBool::new(false));
    let refused_tenants = Arc::new(Mutex::new(Vec::new()));
    let refuser = {
        let (stop, tenants) = (stop.clone(), refused_tenants.clone());
        std::thread::spawn(move || serve_refuser(listener, &stop, &tenants))
    };

    let good = format!("http://{}:{PROM_PORT}/api/v1/write", h1.addr());
    let bad = format!("http://{}:{REFUSER_PORT}/refuse", h1.addr());
    let router = h0
        .spawn_weft(&[
            "--metrics-remote-write",
            &bad,
            "--metrics-remote-write",
            &good,
            "--metrics-remote-write-batch=20",
            // Only the test's tenants: the router's own `weft-system` metrics stay local.
            "--metrics-remote-write-tenant=team-a",
            "--metrics-remote-write-tenant=team-b",
        ])
        .expect("launch weft");
    net.wait_until(Duration::from_secs(20), "the metrics API", || {
        http(h0, api(), "GET", "/api/v1/status/buildinfo", &[], &[]).is_some_and(|r| r.0 == 200)
    });
    let base = now_ms() - 10 * 60 * 1000;
    let mut rounds = 0;

    // 1. Two tenants: every sample arrives with its value, despite the refusing destination;
    // a third tenant, pushed first, is not exported.
    push(h0, "team-c", &round("team-c", 0, base));
    push_rounds(h0, 2, &mut rounds, base);
    net.wait_until(ARRIVAL, "both tenants' samples in Prometheus", || {
        prometheus_has(h1, &prom, rounds)
    });
    net.wait_until(ARRIVAL, "the 400 destination to be given up", || {
        export_metric(h0, "weft_export_samples_failed_total", &bad)
            == Some((rounds * 2 * SERIES * PER_PUSH) as u64)
    });
    {
        let seen = refused_tenants.lock().expect("lock");
        for t in TENANTS {
            assert!(
                seen.iter().any(|s| s == t),
                "X-Scope-OrgID {t} never sent: {seen:?}"
            );
        }
    }
    assert_eq!(
        export_metric(h0, "weft_export_samples_sent_total", &good),
        Some((rounds * 2 * SERIES * PER_PUSH) as u64)
    );
    let others = prom.query(h1, "count(export_test{tenant=\"team-c\"})");
    assert_eq!(
        others
            .as_ref()
            .and_then(|d| d["result"].as_array().map(Vec::len)),
        Some(0),
        "team-c is not a --metrics-remote-write-tenant but reached Prometheus: {others:?}"
    );

    // 2. Prometheus down: the router queues; back up: every sample arrives.
    prom.stop().expect("stop prometheus");
    push_rounds(h0, 3, &mut rounds, base);
    let queued = (3 * 2 * SERIES * PER_PUSH) as u64;
    net.wait_until(ARRIVAL, "the samples to wait in the queue", || {
        export_metric(h0, "weft_export_samples_pending", &good) == Some(queued)
            && export_metric(h0, "weft_export_retries_total", &good).is_some_and(|n| n > 0)
    });
    prom.restart(h1).expect("restart prometheus");
    net.wait_until(ARRIVAL, "the queued samples in Prometheus", || {
        prometheus_has(h1, &prom, rounds)
    });

    // 3. kill -9 with a non-empty queue: the queued samples are sent after the restart.
    prom.stop().expect("stop prometheus");
    push_rounds(h0, 2, &mut rounds, base);
    let queued = (2 * 2 * SERIES * PER_PUSH) as u64;
    net.wait_until(ARRIVAL, "a non-empty queue before the kill", || {
        export_metric(h0, "weft_export_samples_pending", &good) == Some(queued)
    });
    router.kill9().expect("kill -9");
    router.restart().expect("restart weft");
    net.wait_until(
        Duration::from_secs(20),
        "the metrics API after restart",
        || export_metric(h0, "weft_export_samples_pending", &good) == Some(queued),
    );
    prom.restart(h1).expect("restart prometheus");
    net.wait_until(
        ARRIVAL,
        "the samples queued before the kill in Prometheus",
        || prometheus_has(h1, &prom, rounds),
    );
    net.wait_until(ARRIVAL, "an empty queue", || {
        export_metric(h0, "weft_export_samples_pending", &good) == Some(0)
    });

    stop.store(true, Ordering::Relaxed);
    refuser.join().expect("refuser thread");
}
