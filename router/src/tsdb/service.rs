//! The running metrics store: a [`Storage`] under `<data-dir>/tsdb`, the Prometheus API served
//! on its TCP listener, and maintenance (head cut into blocks, compaction, retention) about
//! once a minute.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use weft_metrics::head::HeadConfig;
use weft_metrics::http::{ApiConfig, MetricsSource, router};
use weft_metrics::storage::{Storage, StorageConfig, Store};
use weft_metrics::tenant::Limits;

use super::args::{MetricsArgs, Tenancy};
use super::cluster::{self, ClusterConfig};
use super::error::TsdbError;
use super::export::{Exporter, ExportingStore};
use crate::mesh::PeerName;
use crate::mesh::driver::MeshHandle;

/// Sub-directory of the data dir that holds the store (one directory per tenant below it).
pub const TSDB_DIR: &str = "tsdb";

/// How often [`Storage::maintain`] runs.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The store, opened and with its listener bound, not yet serving.
pub struct Tsdb {
    storage: Arc<Storage>,
    listener: TcpListener,
    api: ApiConfig,
    exporter: Option<Arc<Exporter>>,
    cluster: ClusterConfig,
}

impl Tsdb {
    /// Opens the store under `<data_dir>/tsdb` (replaying its WAL) and binds the API address.
    pub async fn open(args: &MetricsArgs, data_dir: &Path) -> Result<Self, TsdbError> {
        let dir = data_dir.join(TSDB_DIR);
        // The ingestion rate is enforced cluster-wide by the replicated store, not per replica;
        // replicas take out-of-order samples as far back as hand-over copies them.
        let cluster = ClusterConfig {
            replication: args.metrics_replication,
            limits: args.limits(),
        };
        let config = StorageConfig {
            dir: Some(dir.clone()),
            head: HeadConfig {
                ooo_window_ms: cluster::OUT_OF_ORDER_WINDOW_MS,
            },
            limits: Limits {
                ingestion_rate: f64::MAX,
                ingestion_burst: f64::MAX,
                ..args.limits()
            },
            retention_ms: args.metrics_retention.0,
            ..StorageConfig::default()
        };
        let api = ApiConfig {
            tenancy: args.metrics_tenancy == Tenancy::On,
            max_future_ms: config.max_future_ms,
            ..ApiConfig::default()
        };
        let storage = tokio::task::spawn_blocking(move || Storage::open(config))
            .await
            .map_err(|e| TsdbError::Task(e.to_string()))?
            .map_err(|source| TsdbError::Open { dir, source })?;
        let (export, data) = (args.export.clone(), data_dir.to_owned());
        let exporter = tokio::task::spawn_blocking(move || Exporter::open(&export, &data))
            .await
            .map_err(|e| TsdbError::Task(e.to_string()))??
            .map(Arc::new);
        let listener = TcpListener::bind(args.metrics_addr)
            .await
            .map_err(|source| TsdbError::Bind {
                addr: args.metrics_addr,
                source,
            })?;
        Ok(Self {
            storage: Arc::new(storage),
            listener,
            api,
            exporter,
            cluster,
        })
    }

    /// The address the API listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, TsdbError> {
        self.listener
            .local_addr()
            .map_err(|e| TsdbError::Task(format!("listener address: {e}")))
    }

    /// Starts serving the API and the periodic maintenance, with the series replicated over
    /// the routers of `mesh` (this one is `name`) on the metrics ring.
    pub async fn serve(self, mesh: MeshHandle, name: PeerName) -> Result<TsdbHandle, TsdbError> {
        let storage = self.storage.clone();
        let own = storage.clone();
        let exporter = self.exporter.clone();
        let metrics: MetricsSource = Arc::new(move || {
            let mut text = own.exposition().unwrap_or_else(|e| {
                warn!("rendering the store's metrics: {e}");
                String::new()
            });
            if let Some(e) = &exporter {
                text.push_str(&e.exposition());
            }
            text
        });
        // Only writes accepted through this store (the API, the router's own writers) are
        // exported; the exporter wraps the store they use.
        // Local storage, then replication over the mesh, then the exporter.
        let replicated: Arc<dyn Store> = Arc::new(
            cluster::start(storage.clone(), name, mesh, self.cluster)
                .await
                .map_err(|e| TsdbError::Task(format!("registering the metrics channel: {e}")))?,
        );
        let store: Arc<dyn Store> = match &self.exporter {
            Some(e) => Arc::new(ExportingStore::new(replicated, e.clone())),
            None => replicated,
        };
        let senders = self
            .exporter
            .as_ref()
            .map(|e| e.start())
            .unwrap_or_default();
        let app = router(store.clone(), self.api, metrics);
        let addr = self.listener.local_addr().ok();
        info!(?addr, "metrics API listening");
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(self.listener, app).with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            });
            if let Err(e) = serve.await {
                warn!("metrics API stopped: {e}");
            }
        });
        let maintenance = tokio::spawn(maintain_forever(storage.clone()));
        Ok(TsdbHandle {
            storage,
            store,
            senders,
            stop: stop_tx,
            server,
            maintenance,
        })
    }
}

/// A serving store; [`TsdbHandle::shutdown`] stops it cleanly.
pub struct TsdbHandle {
    storage: Arc<Storage>,
    store: Arc<dyn Store>,
    senders: Vec<JoinHandle<()>>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
    maintenance: JoinHandle<()>,
}

impl TsdbHandle {
    /// The store (for the router's own writers, e.g. flow metrics).
    pub fn storage(&self) -> Arc<Storage> {
        self.storage.clone()
    }

    /// The store the API serves (exporting accepted writes when `--metrics-remote-write` is
    /// set): what the router's own writers (flow metrics) write to.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Stops accepting requests, lets those in flight finish (every acknowledged write is
    /// already durable in the WAL) and stops maintenance.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        self.maintenance.abort();
        // Queued samples are on disk; the senders resume after a restart.
        for sender in &self.senders {
            sender.abort();
        }
        let mut server = self.server;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
            .await
            .is_err()
        {
            warn!("metrics API requests still running after {SHUTDOWN_GRACE:?}; dropping them");
            server.abort();
        }
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs [`Storage::maintain`] every [`MAINTENANCE_INTERVAL`], off the async executor.
async fn maintain_forever(storage: Arc<Storage>) {
    let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = storage.clone();
        match tokio::task::spawn_blocking(move || s.maintain(now_ms())).await {
            Ok(Ok(report)) => debug!(?report, "metrics store maintenance"),
            Ok(Err(e)) => warn!("metrics store maintenance failed: {e}"),
            Err(e) => warn!("metrics store maintenance task failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use weft_metrics::labels::{Labels, Sample, Series};
    use weft_metrics::storage::Store;
    use weft_metrics::tenant::TenantId;

    use super::*;
    use crate::tsdb::{QueryArgs, run_query};

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        metrics: MetricsArgs,
    }

    async fn serve(tsdb: Tsdb) -> TsdbHandle {
        let (mesh, name) = cluster::test_mesh();
        tsdb.serve(mesh, name).await.expect("serve")
    }

    fn flags() -> MetricsArgs {
        Flags::try_parse_from(["x", "--metrics-addr", "127.0.0.1:0"])
            .expect("flags")
            .metrics
    }

    fn query(addr: SocketAddr, expr: &str, tenant: Option<&str>) -> QueryArgs {
        QueryArgs {
            expr: expr.into(),
            tenant: tenant.map(str::to_owned),
            time: Some("100".into()),
            range: None,
            metrics_addr: addr,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_queries_over_tcp_and_keeps_data_across_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tsdb = Tsdb::open(&flags(), dir.path()).await.expect("open");
        let addr = tsdb.local_addr().expect("addr");
        let handle = serve(tsdb).await;
        let tenant = TenantId::new("t1").expect("tenant");
        let up = Labels::from_pairs([("__name__", "up"), ("job", "api")]).expect("labels");
        let batch = vec![Series {
            labels: up,
            samples: vec![Sample { t: 90_000, v: 1.0 }],
        }];
        handle
            .storage()
            .write(&tenant, batch, 90_000)
            .expect("write");
        let table = run_query(&query(addr, "up", Some("t1")))
            .await
            .expect("query");
        assert_eq!(
            table,
            "SERIES         VALUE  TIME\nup{job=\"api\"}  1      100.000\n"
        );
        // Another tenant sees nothing; no tenant is refused (tenancy is on by default).
        let other = run_query(&query(addr, "up", Some("t2")))
            .await
            .expect("query");
        assert_eq!(other, "SERIES  VALUE  TIME\n");
        let err = run_query(&query(addr, "up", None)).await.expect_err("401");
        assert!(err.to_string().contains("X-Scope-OrgID"), "{err}");
        handle.shutdown().await;
        assert!(
            run_query(&query(addr, "up", Some("t1"))).await.is_err(),
            "the API still answers after shutdown"
        );

        assert!(dir.path().join(TSDB_DIR).join("t1").is_dir());
        let tsdb = Tsdb::open(&flags(), dir.path()).await.expect("reopen");
        let addr = tsdb.local_addr().expect("addr");
        let handle = serve(tsdb).await;
        let table = run_query(&query(addr, "sum(up)", Some("t1")))
            .await
            .expect("query");
        assert_eq!(table, "SERIES  VALUE  TIME\n{}      1      100.000\n");
        handle.shutdown().await;
    }

    #[tokio::test]
    async fn a_busy_address_fails_the_open_with_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Tsdb::open(&flags(), dir.path()).await.expect("open");
        let mut args = flags();
        args.metrics_addr = first.local_addr().expect("addr");
        let other = tempfile::tempdir().expect("tempdir");
        let err = match Tsdb::open(&args, other.path()).await {
            Ok(_) => panic!("bound the same address twice"),
            Err(e) => e,
        };
        assert!(matches!(err, TsdbError::Bind { .. }), "{err}");
        assert!(err.to_string().contains("--metrics-addr"), "{err}");
    }
}
