//! A real Prometheus remote-writes into weft's HTTP API.
//!
//! The test serves [`weft_metrics::http::router`] on a loopback port, starts Debian's
//! `prometheus` scraping itself every second with `remote_write` to weft's `/api/v1/push`,
//! waits until weft holds samples and checks them. Fails when `prometheus` is not installed
//! (`scripts/install-deps.sh` installs it).
//!
//! Tenancy is off here (tenant `anonymous`): Debian's Prometheus 2.42 parses `headers:` in a
//! `remote_write` block but was observed not to send them, so it cannot set `X-Scope-OrgID`.

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_metrics::http::{ApiConfig, MetricsSource, router};
use weft_metrics::index::Matcher;
use weft_metrics::storage::{Storage, StorageConfig, Store};
use weft_metrics::tenant::{ANONYMOUS, TenantId};

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_remote_writes_into_weft() {
    let installed = Command::new("prometheus")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        installed.is_ok_and(|s| s.success()),
        "prometheus is not installed: run scripts/install-deps.sh (Debian package prometheus 2.42)"
    );
    let storage = Arc::new(Storage::open(StorageConfig::default()).expect("storage"));
    let metrics: MetricsSource = Arc::new(String::new);
    let app = router(
        storage.clone(),
        ApiConfig {
            tenancy: false,
            ..ApiConfig::default()
        },
        metrics,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let weft_port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let prom_port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{prom_port}']\n\
         remote_write:\n  - url: http://127.0.0.1:{weft_port}/api/v1/push\n\
         \x20   queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n"
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).expect("config");
    let _prom = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--log.level=error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );

    let tenant = TenantId::new(ANONYMOUS).expect("tenant");
    let up = [
        Matcher::equal("__name__", "up"),
        Matcher::equal("job", "prometheus"),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while Instant::now() < deadline {
        got = storage
            .select(&tenant, &up, i64::MIN, i64::MAX)
            .expect("select");
        if got.first().is_some_and(|s| s.samples.len() >= 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(got.len(), 1, "weft received no `up` series from prometheus");
    let series = &got[0];
    assert!(
        series.samples.len() >= 3,
        "only {} samples arrived",
        series.samples.len()
    );
    assert!(series.samples.iter().all(|s| s.v == 1.0));
    assert!(series.samples.windows(2).all(|w| w[0].t < w[1].t));
    assert_eq!(
        series.labels.get("instance"),
        Some(format!("127.0.0.1:{prom_port}").as_str())
    );
    // Prometheus's own metrics arrive with their full label sets, e.g. its build info.
    let build = storage
        .series(
            &tenant,
            &[Matcher::equal("__name__", "prometheus_build_info")],
            i64::MIN,
            i64::MAX,
        )
        .expect("series");
    assert_eq!(build.len(), 1);
    assert!(
        build[0].get("version").is_some_and(|v| v.starts_with("2.")),
        "{}",
        build[0]
    );
    // Nothing went to any other tenant.
    assert_eq!(storage.tenants().expect("tenants"), vec![tenant]);
}
