//! Load generator of `bench/tsdb/run.sh`: pushes remote_write 1.0 batches of a node-exporter-like
//! series set to a receiver (weft or Prometheus), then times a fixed set of range queries.
//!
//! ```text
//! loadgen push  ADDR [--series N] [--rounds R] [--interval-ms MS] [--batch B] [--threads C] [--tenant T] [--path P]
//! loadgen query ADDR [--series N] [--rounds R] [--interval-ms MS] [--repeat K] [--tenant T]
//! ```
//!
//! `push` encodes every request first (so only the receiver is timed), then sends them over
//! keep-alive connections, each thread owning a fixed share of the series so that every series'
//! samples arrive in order; it prints `samples=… seconds=… samples_per_s=… errors=…`. `query`
//! runs each range query of [`QUERIES`] `K` times over the pushed window and prints p50/p99.
//! Both commands derive the timestamps from `--end-ms` (the last round; the start of the
//! current minute by default), `--rounds` and `--interval-ms`: give both the same values.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weft_metrics::labels::{Labels, Sample, Series};
use weft_metrics::remote_write::encode_write_request;

/// Range queries timed by `query` (a dashboard's worth over node-exporter data).
const QUERIES: [&str; 5] = [
    "sum by (instance) (rate(node_cpu_seconds_total{mode!=\"idle\"}[1m]))",
    "avg(node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)",
    "topk(5, rate(node_network_receive_bytes_total[2m]))",
    "rate(node_cpu_seconds_total{instance=\"host-7:9100\"}[1m])",
    "count by (mountpoint) (node_filesystem_avail_bytes)",
];

/// Command-line settings.
struct Opts {
    addr: String,
    series: usize,
    rounds: i64,
    interval_ms: i64,
    batch: usize,
    threads: usize,
    repeat: usize,
    tenant: Option<String>,
    end_ms: i64,
    /// Push path: `/api/v1/push` (weft, Cortex) or `/api/v1/write` (Prometheus's receiver).
    path: String,
}

fn parse(args: &[String]) -> Result<(String, Opts), String> {
    let mode = args
        .first()
        .ok_or("usage: loadgen push|query ADDR [flags]")?
        .clone();
    let addr = args.get(1).ok_or("missing ADDR (host:port)")?.clone();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis() as i64;
    let mut o = Opts {
        addr,
        series: 100_000,
        rounds: 30,
        interval_ms: 10_000,
        batch: 2_000,
        threads: 2,
        repeat: 20,
        tenant: None,
        end_ms: now - now % 60_000,
        path: "/api/v1/push".to_owned(),
    };
    let mut it = args[2..].iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || {
            value
                .parse::<i64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--series" => o.series = num()? as usize,
            "--rounds" => o.rounds = num()?,
            "--interval-ms" => o.interval_ms = num()?,
            "--batch" => o.batch = num()? as usize,
            "--threads" => o.threads = num()?.max(1) as usize,
            "--repeat" => o.repeat = num()?.max(1) as usize,
            "--end-ms" => o.end_ms = num()?,
            "--tenant" => o.tenant = Some(value.clone()),
            "--path" => o.path = value.clone(),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok((mode, o))
}

/// The label sets: per host 100 series like node_exporter's (cpu, memory, filesystem, network,
/// disk), `series / 100` hosts.
fn series_set(n: usize) -> Vec<(Labels, bool)> {
    let mut out = Vec::with_capacity(n);
    let modes = [
        "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
    ];
    let mut host = 0;
    while out.len() < n {
        let instance = format!("host-{host}:9100");
        let mut add = |name: &str, extra: &[(&str, String)], counter: bool| {
            let mut pairs: Vec<(&str, String)> = vec![
                ("__name__", name.to_owned()),
                ("instance", instance.clone()),
                ("job", "node".to_owned()),
            ];
            pairs.extend(extra.iter().cloned());
            if let Ok(l) = Labels::from_pairs(pairs) {
                out.push((l, counter));
            }
        };
        for cpu in 0..8 {
            for mode in modes {
                add(
                    "node_cpu_seconds_total",
                    &[("cpu", cpu.to_string()), ("mode", mode.to_owned())],
                    true,
                );
            }
        }
        for m in [
            "MemTotal",
            "MemFree",
            "MemAvailable",
            "Buffers",
            "Cached",
            "SwapFree",
        ] {
            add(&format!("node_memory_{m}_bytes"), &[], false);
        }
        for (dev, mp) in [("sda1", "/"), ("sda2", "/var"), ("tmpfs", "/run")] {
            for m in ["avail", "size", "free"] {
                add(
                    &format!("node_filesystem_{m}_bytes"),
                    &[
                        ("device", dev.to_owned()),
                        ("fstype", "ext4".to_owned()),
                        ("mountpoint", mp.to_owned()),
                    ],
                    false,
                );
            }
        }
        for dev in ["eth0", "eth1", "lo"] {
            for m in [
                "receive_bytes",
                "transmit_bytes",
                "receive_packets",
                "transmit_packets",
            ] {
                add(
                    &format!("node_network_{m}_total"),
                    &[("device", dev.to_owned())],
                    true,
                );
            }
        }
        for dev in ["sda", "sdb"] {
            for m in ["read_bytes", "written_bytes", "io_time_seconds"] {
                add(
                    &format!("node_disk_{m}_total"),
                    &[("device", dev.to_owned())],
                    true,
                );
            }
        }
        host += 1;
    }
    out.truncate(n);
    out
}

/// The value of series `i` at round `r`: counters grow by a per-series step with jitter,
/// gauges wander around a level.
fn value(i: usize, r: i64, counter: bool) -> f64 {
    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    let jitter = ((h as i64 + r * 7919) % 13) as f64;
    if counter {
        (h % 1000) as f64 * 100.0 + r as f64 * ((h % 50) as f64 + 1.0) + jitter * 0.25
    } else {
        (h % 64 + 1) as f64 * 1_073_741_824.0 - jitter * 4096.0
    }
}

/// One HTTP/1.1 request on a keep-alive connection; returns the status.
fn post(
    conn: &mut BufReader<TcpStream>,
    addr: &str,
    path: &str,
    tenant: Option<&str>,
    body: &[u8],
) -> std::io::Result<u16> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\n\
         Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = tenant {
        head.push_str(&format!("X-Scope-OrgID: {t}\r\n"));
    }
    head.push_str("\r\n");
    let s = conn.get_mut();
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut len = 0usize;
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut sink = vec![0u8; len];
    conn.read_exact(&mut sink)?;
    Ok(status)
}

fn push(o: &Opts) -> Result<(), String> {
    let set = series_set(o.series);
    let start = o.end_ms - (o.rounds - 1) * o.interval_ms;
    // Requests per thread, in round order; thread j owns batches j, j+C, j+2C, ...
    let batches: Vec<&[(Labels, bool)]> = set.chunks(o.batch).collect();
    let mut work: Vec<Vec<Vec<u8>>> = vec![Vec::new(); o.threads];
    for r in 0..o.rounds {
        let t = start + r * o.interval_ms;
        for (k, b) in batches.iter().enumerate() {
            let base = k * o.batch;
            let series: Vec<Series> = b
                .iter()
                .enumerate()
                .map(|(j, (labels, counter))| Series {
                    labels: labels.clone(),
                    samples: vec![Sample {
                        t,
                        v: value(base + j, r, *counter),
                    }],
                })
                .collect();
            work[k % o.threads].push(encode_write_request(&series));
        }
    }
    let bytes: usize = work.iter().flatten().map(Vec::len).sum();
    eprintln!(
        "encoded {} requests, {bytes} bytes",
        work.iter().map(Vec::len).sum::<usize>()
    );
    let errors = AtomicUsize::new(0);
    let began = Instant::now();
    std::thread::scope(|scope| {
        for bodies in &work {
            let errors = &errors;
            scope.spawn(move || {
                let Ok(stream) = TcpStream::connect(&o.addr) else {
                    errors.fetch_add(bodies.len(), Ordering::Relaxed);
                    return;
                };
                let mut conn = BufReader::new(stream);
                for body in bodies {
                    match post(&mut conn, &o.addr, &o.path, o.tenant.as_deref(), body) {
                        Ok(s) if (200..300).contains(&s) => {}
                        Ok(s) => {
                            if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("push answered {s}");
                            }
                        }
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            eprintln!("push failed: {e}");
                            return;
                        }
                    }
                }
            });
        }
    });
    let secs = began.elapsed().as_secs_f64();
    let samples = o.series as f64 * o.rounds as f64;
    println!(
        "samples={samples} seconds={secs:.3} samples_per_s={:.0} errors={}",
        samples / secs,
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One GET over HTTP/1.0 (no chunked answers); returns status and body.
fn get(addr: &str, path: &str, tenant: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let tenant = tenant
        .map(|t| format!("X-Scope-OrgID: {t}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{tenant}\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn query(o: &Opts) -> Result<(), String> {
    let start = o.end_ms - (o.rounds - 1) * o.interval_ms;
    // Odd milliseconds so no step lies on a sample.
    let (qs, qe) = (
        start as f64 / 1000.0 + 60.123,
        o.end_ms as f64 / 1000.0 + 0.123,
    );
    for (n, q) in QUERIES.iter().enumerate() {
        let path = format!(
            "/api/v1/query_range?query={}&start={qs:.3}&end={qe:.3}&step=15",
            encode(q)
        );
        let mut times = Vec::with_capacity(o.repeat);
        for _ in 0..o.repeat {
            let began = Instant::now();
            let (status, body) =
                get(&o.addr, &path, o.tenant.as_deref()).map_err(|e| e.to_string())?;
            times.push(began.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                return Err(format!("query {q}: {status} {body}"));
            }
        }
        times.sort_by(f64::total_cmp);
        let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
        println!("query={n} p50_ms={:.2} p99_ms={:.2}", pct(0.5), pct(0.99));
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = parse(&args).and_then(|(mode, o)| match mode.as_str() {
        "push" => push(&o),
        "query" => query(&o),
        other => Err(format!("unknown mode {other}: push or query")),
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
