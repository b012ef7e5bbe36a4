//! End-to-end tests of the replicated metrics store (issue 10 parts 2 and 3) on three routers
//! in host namespaces: writes to one router are acknowledged at quorum and read back complete
//! from another; `kill -9` of a router during sustained writes loses no acknowledged sample and
//! queries stay complete while it is down; a router cut off from its replicas answers 503, never
//! a false 2xx; invalid data gets 400; a tenant over its cluster-wide rate gets 429 on every
//! router.
//!
//! Needs root, `ip`, `nft`, `prometheus` (Debian's 2.42, installed by `scripts/install-deps.sh`)
//! and `cargo build -p weft-router` first.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use weft_metrics::labels::{Labels, Sample, Series};
use weft_metrics::remote_write::encode_write_request;
use weft_metrics::ring::Ring;
use weft_metrics::tenant::TenantId;
use weft_netns_tests::{Host, Net, Prometheus, Router, full_mesh, url_encode};

/// The router's Prometheus API, as seen from inside its host.
const API: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6782);

/// Series the writer spreads its samples over.
const SERIES: usize = 12;

/// Prometheus's API, inside its host.
const PROM: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9090);

/// Status and body of one HTTP/1.0 exchange with the router API inside `host`.
fn http(host: &Host, method: &str, path: &str, tenant: &str, body: &[u8]) -> (u16, String) {
    http_to(host, API, method, path, tenant, body)
}

/// Status and body of one HTTP/1.0 exchange with `addr` inside `host`.
fn http_to(
    host: &Host,
    addr: SocketAddr,
    method: &str,
    path: &str,
    tenant: &str,
    body: &[u8],
) -> (u16, String) {
    let mut headers = vec![("X-Scope-OrgID", tenant)];
    if method == "POST" {
        headers.push(("Content-Type", "application/x-protobuf"));
        headers.push(("Content-Encoding", "snappy"));
    }
    match weft_netns_tests::http(host, addr, method, path, &headers, body) {
        Ok(Ok(a)) => (a.status, a.body),
        // No connection or no answer: the router is down, status 0.
        Ok(Err(e)) => (0, e.to_string()),
        Err(e) => panic!("entering {}: {e}", host.ns()),
    }
}

fn push(host: &Host, tenant: &str, series: &[Series]) -> (u16, String) {
    http(
        host,
        "POST",
        "/api/v1/push",
        tenant,
        &encode_write_request(series),
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("clock")
}

fn one(name: &str, k: usize, t: i64, v: f64) -> Series {
    Series {
        labels: Labels::from_pairs([("__name__", name.to_owned()), ("k", k.to_string())])
            .expect("labels"),
        samples: vec![Sample { t, v }],
    }
}

/// Pushes one sample per push of `load` to a router, on a rotating series `k`, each timestamp
/// later than the last, and keeps what was acknowledged.
struct Writer<'a> {
    host: &'a Host,
    tenant: &'a str,
    start: i64,
    /// Pushes so far.
    pushed: usize,
    /// Acknowledged samples: series `k` → timestamps.
    acked: BTreeMap<String, BTreeSet<i64>>,
    /// Pushes refused with a retryable status (5xx, or no answer).
    refused: usize,
}

impl<'a> Writer<'a> {
    /// A writer to the router on `host` for `tenant`, its first timestamp `start`.
    fn new(host: &'a Host, tenant: &'a str, start: i64) -> Self {
        Self {
            host,
            tenant,
            start,
            pushed: 0,
            acked: BTreeMap::new(),
            refused: 0,
        }
    }

    /// Makes `n` pushes; panics on an answer other than 204 or a retryable one.
    fn write(&mut self, n: usize) {
        for _ in 0..n {
            let i = self.pushed;
            let (k, t) = (i % SERIES, self.start + i as i64);
            let (status, body) = push(self.host, self.tenant, &[one("load", k, t, i as f64)]);
            match status {
                204 => {
                    self.acked.entry(k.to_string()).or_default().insert(t);
                }
                500..=599 | 0 => self.refused += 1,
                other => panic!("push {i}: unexpected {other}: {body}"),
            }
            self.pushed += 1;
        }
    }

    /// How many samples were acknowledged.
    fn total(&self) -> usize {
        self.acked.values().map(BTreeSet::len).sum()
    }
}

/// The samples of `name` in the last `window` before `at_ms`, per series `k`, as read through
/// the router on `host`; `None` when the query fails.
fn samples(
    host: &Host,
    tenant: &str,
    name: &str,
    at_ms: i64,
    window: &str,
) -> Option<BTreeMap<String, BTreeSet<i64>>> {
    let path = format!(
        "/api/v1/query?query={name}%5B{window}%5D&time={:.3}",
        at_ms as f64 / 1000.0
    );
    let (status, body) = http(host, "GET", &path, tenant, &[]);
    if status != 200 {
        return None;
    }
    let j: Value = serde_json::from_str(&body).ok()?;
    let mut out = BTreeMap::new();
    for item in j["data"]["result"].as_array()? {
        let k = item["metric"]["k"].as_str()?.to_owned();
        let ts = item["values"]
            .as_array()?
            .iter()
            .filter_map(|p| p[0].as_f64())
            .map(|t| (t * 1000.0).round() as i64)
            .collect();
        out.insert(k, ts);
    }
    Some(out)
}

/// Acknowledged samples missing from what `host` reads back.
fn missing(
    host: &Host,
    tenant: &str,
    acked: &BTreeMap<String, BTreeSet<i64>>,
    at_ms: i64,
) -> Option<usize> {
    let got = samples(host, tenant, "load", at_ms, "10m")?;
    Some(
        acked
            .iter()
            .map(|(k, ts)| {
                let have = got.get(k);
                ts.iter()
                    .filter(|t| !have.is_some_and(|h| h.contains(t)))
                    .count()
            })
            .sum(),
    )
}

/// Three routers in a full mesh, their metrics APIs answering.
fn three(net: &Net, extra: &[&str]) -> Vec<Router> {
    let routers = vec![
        net.launch(0, &[], extra),
        net.launch(1, &[0], extra),
        net.launch(2, &[0, 1], extra),
    ];
    net.wait_until(Duration::from_secs(30), "a full mesh", || {
        full_mesh(&routers)
    });
    for h in &net.hosts()[..3] {
        net.wait_until(Duration::from_secs(20), "the metrics API", || {
            http(h, "GET", "/api/v1/status/buildinfo", "t", &[]).0 == 200
        });
    }
    routers
}

#[test]
fn kill_9_of_a_replica_during_writes_loses_no_acknowledged_sample() {
    let net = Net::new(3).expect("net");
    let routers = three(&net, &[]);
    let (h0, h1, h2) = (net.host(0), net.host(1), net.host(2));
    let tenant = "cluster";
    let mut w = Writer::new(h0, tenant, now_ms());
    w.write(200);
    assert_eq!(w.total(), 200);
    // RF=3 on three routers: every router holds the tenant on its own disk.
    for r in &routers {
        let dir = r.data_dir().join("tsdb").join(tenant);
        assert!(dir.is_dir(), "{} holds no replica", dir.display());
    }
    // Every router reads everything written to router 0.
    for h in net.hosts() {
        assert_eq!(
            missing(h, tenant, &w.acked, now_ms()),
            Some(0),
            "{}",
            h.ns()
        );
    }

    routers[1].kill9().expect("kill -9");
    w.write(200);
    // Router 1 is down: reads through router 2 are complete.
    assert_eq!(
        missing(h2, tenant, &w.acked, now_ms()),
        Some(0),
        "reads while a replica is down\n{}",
        net.log_tails()
    );
    let before = [hand_overs(&routers[0], 3), hand_overs(&routers[2], 3)];
    routers[1].restart().expect("restart");
    net.wait_until(Duration::from_secs(60), "router 1 back in the mesh", || {
        full_mesh(&routers) && http(h1, "GET", "/api/v1/status/buildinfo", "t", &[]).0 == 200
    });
    w.write(200);

    let total = w.total();
    let (acked, refused) = (w.acked, w.refused);
    println!("acknowledged {total} samples, {refused} pushes refused (retryable)");
    assert!(total >= 500, "only {total} of 600 pushes acknowledged");
    let deadline = Instant::now() + Duration::from_secs(20);
    for h in net.hosts() {
        let lost = missing(h, tenant, &acked, now_ms());
        assert_eq!(
            lost,
            Some(0),
            "acknowledged samples lost reading through {}",
            h.ns()
        );
        assert!(Instant::now() < deadline);
    }
    // Router 1 catches up on what it missed: once the others handed over to it again, it
    // alone reads every acknowledged sample.
    net.wait_until(
        Duration::from_secs(30),
        "hand-over to the restarted router",
        || hand_overs(&routers[0], 3) > before[0] && hand_overs(&routers[2], 3) > before[1],
    );
    routers[0].kill9().expect("kill -9");
    routers[2].kill9().expect("kill -9");
    net.wait_until(
        Duration::from_secs(30),
        "router 1 alone to read every acknowledged sample",
        || missing(h1, tenant, &acked, now_ms()) == Some(0),
    );
}

#[test]
fn failed_replicas_give_503_invalid_data_400_and_an_over_limit_tenant_429_everywhere() {
    let net = Net::new(3).expect("net");
    // A cluster-wide rate of 30 samples/s and burst of 90: each of the three routers admits
    // 10/s and a burst of 30.
    let _routers = three(
        &net,
        &[
            "--metrics-ingestion-rate",
            "30",
            "--metrics-ingestion-burst",
            "90",
        ],
    );
    let (h0, h1) = (net.host(0), net.host(1));
    let t = now_ms();

    // Invalid data (a sample two hours older than one every replica has, beyond the
    // out-of-order window) is a client error.
    assert_eq!(push(h0, "a", &[one("x", 0, t, 1.0)]).0, 204);
    let (status, body) = push(h0, "a", &[one("x", 0, t - 7_200_000, 1.0)]);
    assert_eq!(status, 400, "{body}");

    // Over the rate on every router: each has its share of the burst only (40 > 90 / 3).
    let big: Vec<Series> = (0..40).map(|k| one("y", k, t, 1.0)).collect();
    for h in net.hosts() {
        let (status, body) = push(h, "b", &big);
        assert_eq!(status, 429, "{}: {body}", h.ns());
    }
    // Another tenant is not affected.
    assert_eq!(push(h1, "c", &[one("y", 0, t, 1.0)]).0, 204);

    // Router 0 cut off from both replicas: its writes fail with a retryable 503, never 2xx.
    net.cut(0, 1).expect("cut");
    net.cut(0, 2).expect("cut");
    let (status, body) = push(h0, "d", &[one("z", 0, now_ms(), 1.0)]);
    assert_eq!(status, 503, "{body}");
    net.restore(0, 1).expect("restore");
    net.restore(0, 2).expect("restore");
}

/// An instant query's answer as metric → value, or `None` when it fails.
fn instant(host: &Host, addr: SocketAddr, expr: &str, at_ms: i64) -> Option<BTreeMap<String, f64>> {
    let path = format!(
        "/api/v1/query?query={}&time={:.3}",
        url_encode(expr),
        at_ms as f64 / 1000.0
    );
    let (status, body) = http_to(host, addr, "GET", &path, "anonymous", &[]);
    if status != 200 {
        return None;
    }
    let j: Value = serde_json::from_str(&body).ok()?;
    let mut out = BTreeMap::new();
    for item in j["data"]["result"].as_array()? {
        let v = item["value"][1].as_str()?.parse::<f64>().ok()?;
        out.insert(item["metric"].to_string(), v);
    }
    Some(out)
}

#[test]
fn prometheus_writing_to_router_1_reads_the_same_through_router_3() {
    Prometheus::check_installed()
        .expect("run scripts/install-deps.sh (Debian package prometheus 2.42)");
    let net = Net::new(3).expect("net");
    // Debian's Prometheus 2.42 sends no X-Scope-OrgID: tenancy off (tenant `anonymous`).
    let _routers = three(&net, &["--metrics-tenancy=off"]);
    let (h0, h2) = (net.host(0), net.host(2));
    let config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['{PROM}']\n\
         remote_write:\n  - url: http://{API}/api/v1/push\n\
         \x20   queue_config:\n      batch_send_deadline: 500ms\n      min_backoff: 100ms\n"
    );
    // In router 1's host: it writes to router 1 only.
    let _prometheus = Prometheus::start(h0, PROM.port(), &config, &[]).expect("start prometheus");
    let started = now_ms();
    net.wait_until(Duration::from_secs(40), "15 s of scrapes", || {
        now_ms() - started > 15_000
    });
    // The last scrape Prometheus has, and router 3 answering with it.
    let last = |host: &Host, addr: SocketAddr, at: i64| -> Option<i64> {
        let r = instant(host, addr, "timestamp(up)", at)?;
        r.values().next().map(|s| (s * 1000.0).round() as i64)
    };
    let cut = last(h0, PROM, now_ms()).expect("prometheus has scraped itself");
    // Half a second after a scrape: no sample on a window's edge.
    let at = cut + 500;
    net.wait_until(
        Duration::from_secs(30),
        "router 3 to have the last scrape",
        || last(h2, API, at) == Some(cut),
    );
    for expr in [
        "up",
        "count by (job) (prometheus_http_requests_total)",
        "scrape_samples_scraped",
        "max_over_time(scrape_duration_seconds[10s])",
        "sum(prometheus_tsdb_head_series)",
        "count_over_time(up[10s])",
    ] {
        let prom = instant(h0, PROM, expr, at).unwrap_or_else(|| panic!("prometheus: {expr}"));
        let weft = instant(h2, API, expr, at).unwrap_or_else(|| panic!("router 3: {expr}"));
        assert!(!prom.is_empty(), "{expr}: prometheus has no result");
        assert_eq!(
            prom.keys().collect::<Vec<_>>(),
            weft.keys().collect::<Vec<_>>(),
            "{expr}: series differ"
        );
        for (k, p) in &prom {
            let w = weft[k];
            assert!(
                (p - w).abs() <= 1e-9 * p.abs().max(w.abs()),
                "{expr} {k}: prometheus {p}, router 3 {w}"
            );
        }
    }
}

/// How many hand-overs onto a ring of `peers` routers `router` logged as complete.
fn hand_overs(router: &Router, peers: usize) -> usize {
    let want = format!("peers={peers} ");
    router.log().map_or(0, |log| {
        log.lines()
            .filter(|l| l.contains("metrics hand-over complete") && l.contains(&want))
            .count()
    })
}

#[test]
fn a_fourth_router_joins_during_writes_and_takes_over_its_share() {
    let net = Net::new(4).expect("net");
    let mut routers = three(&net, &[]);
    let (h0, h3) = (net.host(0), net.host(3));
    let tenant = "join";
    let start = now_ms();
    let mut w = Writer::new(h0, tenant, start);
    w.write(200);
    routers.push(net.launch(3, &[0], &[]));
    // Writes go on while the fourth router joins and the others hand series over to it.
    let joined = Instant::now();
    while !(full_mesh(&routers) && routers[..3].iter().all(|r| hand_overs(r, 4) > 0)) {
        assert!(
            joined.elapsed() < Duration::from_secs(60),
            "no complete hand-over to 4 routers\n{}",
            net.log_tails()
        );
        w.write(20);
    }
    w.write(100);
    let total = w.total();
    let acked = w.acked;
    println!("acknowledged {total} samples");
    assert!(total >= 300, "only {total} acknowledged");
    assert!(
        routers[3].data_dir().join("tsdb").join(tenant).is_dir(),
        "the new router holds nothing"
    );
    for h in net.hosts() {
        assert_eq!(missing(h, tenant, &acked, now_ms()), Some(0), "{}", h.ns());
    }
    // The series the ring of four places on the new router, computed as the routers do.
    let names: Vec<u64> = routers
        .iter()
        .map(|r| {
            let report = r.report().expect("report");
            let name = report.name().expect("peer name").replace(':', "");
            u64::from_str_radix(&name, 16).expect("hex peer name")
        })
        .collect();
    let ring = Ring::new(names.iter().copied());
    let tenant_id = TenantId::new(tenant).expect("tenant");
    let on_new: BTreeMap<String, BTreeSet<i64>> = acked
        .iter()
        .filter(|(k, _)| {
            let labels = one("load", k.parse().expect("k"), 0, 0.0).labels;
            ring.replicas(&tenant_id, &labels).contains(&names[3])
        })
        .map(|(k, ts)| (k.clone(), ts.clone()))
        .collect();
    assert!(!on_new.is_empty(), "the new router holds no series");
    // With the three original routers gone, the new router alone still has every sample of
    // its series, those written before it joined included: they came by hand-over.
    for r in &routers[..3] {
        r.kill9().expect("kill -9");
    }
    net.wait_until(
        Duration::from_secs(30),
        "the new router alone to read its series complete",
        || missing(h3, tenant, &on_new, now_ms()) == Some(0),
    );
    let before_join = on_new
        .values()
        .flatten()
        .filter(|t| **t < start + 200)
        .count();
    println!("the new router holds {before_join} samples written before it joined");
    assert!(before_join > 0);
}
