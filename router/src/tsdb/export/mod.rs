//! Export to external Prometheus-compatible stores (`--metrics-remote-write URL`): every
//! sample this router's API or its own writers get accepted by the store is forwarded to each
//! destination as Prometheus remote_write 1.0, with `X-Scope-OrgID` set to the sample's
//! tenant.
//!
//! [`ExportingStore`] wraps the served store: after the inner store accepted a write, the
//! batch is appended to a per-destination queue on disk (`<data-dir>/export/<url hash>/`,
//! fsynced before the write is acknowledged), so samples accepted before a crash are sent
//! after the restart. One sender task per destination drains its queue in order, retrying
//! with backoff while the destination is down. Counters are on the metrics API's `/metrics`.
//! Writes replicated to this router by peers never pass through the wrapper, so each sample
//! is exported once, by the router that accepted it.

mod client;
mod destination;
mod queue;
mod sender;
mod stats;
mod store;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use weft_metrics::tenant::TenantId;

pub use destination::{HeaderPair, RemoteWriteUrl};
pub use store::ExportingStore;

use super::args::ExportArgs;
use queue::{Queue, QueueLimits};
use stats::{Snapshot, Stats};

/// Sub-directory of the data dir holding one queue directory per destination.
pub const EXPORT_DIR: &str = "export";

/// Size of a queue segment file.
const SEGMENT_BYTES: u64 = 8 << 20;

/// What can go wrong with the export queues.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A queue file could not be read or written.
    #[error("export queue {path}: {reason}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A queue file holds something that is not a queue.
    #[error("export queue corrupt: {0}")]
    Corrupt(String),
    /// The same URL was given twice.
    #[error("--metrics-remote-write {0} is given twice")]
    Duplicate(String),
}

/// One destination: its queue, the counters and the wake-up of its sender.
#[derive(Debug)]
struct Destination {
    url: RemoteWriteUrl,
    queue: Mutex<Queue>,
    wake: Notify,
    stats: Stats,
}

impl Destination {
    /// The queue (a panic elsewhere while holding it leaves it usable: it is on disk).
    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The destinations of `--metrics-remote-write`, their queues and settings.
#[derive(Debug)]
pub struct Exporter {
    destinations: Vec<Arc<Destination>>,
    headers: Vec<HeaderPair>,
    tenants: Vec<TenantId>,
    batch: u32,
}

impl Exporter {
    /// Opens the queue of every destination under `<data_dir>/export` (blocking file I/O);
    /// `None` when no destination is configured.
    pub fn open(args: &ExportArgs, data_dir: &Path) -> Result<Option<Self>, ExportError> {
        if args.urls.is_empty() {
            return Ok(None);
        }
        let limits = QueueLimits {
            segment_bytes: SEGMENT_BYTES.min(args.queue_bytes / 4).max(1),
            max_bytes: args.queue_bytes,
        };
        let mut destinations: Vec<Arc<Destination>> = Vec::new();
        for url in &args.urls {
            if destinations.iter().any(|d| d.url == *url) {
                return Err(ExportError::Duplicate(url.to_string()));
            }
            let dir = data_dir.join(EXPORT_DIR).join(url.dir_name());
            let queue = Queue::open(&dir, limits)?;
            info!(
                destination = %url,
                pending = queue.pending_samples(),
                "exporting samples with remote_write"
            );
            destinations.push(Arc::new(Destination {
                url: url.clone(),
                queue: Mutex::new(queue),
                wake: Notify::new(),
                stats: Stats::default(),
            }));
        }
        Ok(Some(Self {
            destinations,
            headers: args.headers.clone(),
            tenants: args.tenants.clone(),
            batch: args.batch_samples,
        }))
    }

    /// Starts one sender task per destination; aborting them loses nothing (the queues are on
    /// disk and committed only after a destination took the samples).
    pub fn start(&self) -> Vec<JoinHandle<()>> {
        self.destinations
            .iter()
            .map(|d| {
                let client = client::Client::new(d.url.clone(), self.headers.clone());
                tokio::spawn(sender::run(d.clone(), client, self.batch))
            })
            .collect()
    }

    /// Whether samples of `tenant` are exported.
    fn wants(&self, tenant: &TenantId) -> bool {
        self.tenants.is_empty() || self.tenants.contains(tenant)
    }

    /// Queues an accepted write (snappy remote_write `body` of `samples` samples) for every
    /// destination and wakes the senders. Blocking: fsyncs each queue.
    fn enqueue(&self, tenant: &TenantId, samples: u32, body: &[u8]) {
        for d in &self.destinations {
            let outcome = d.lock_queue().append(tenant, samples, body);
            match outcome {
                Ok(0) => {}
                Ok(dropped) => {
                    warn!(
                        destination = %d.url,
                        dropped,
                        "export queue over --metrics-remote-write-queue-bytes: dropped the oldest samples"
                    );
                    Stats::add(&d.stats.dropped, dropped);
                }
                Err(e) => {
                    warn!(destination = %d.url, "queueing {samples} samples for export: {e}");
                    Stats::add(&d.stats.dropped, u64::from(samples));
                }
            }
            d.wake.notify_one();
        }
    }

    /// The export counters in the Prometheus exposition format.
    pub fn exposition(&self) -> String {
        let snapshots: Vec<Snapshot> = self
            .destinations
            .iter()
            .map(|d| {
                let pending = d.lock_queue().pending_samples();
                Snapshot::of(d.url.to_string(), &d.stats, pending)
            })
            .collect();
        stats::exposition(&snapshots)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::Duration;

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use weft_metrics::labels::{Labels, Sample, Series};
    use weft_metrics::remote_write::decode_write_request;
    use weft_metrics::storage::{Storage, StorageConfig, Store};

    use super::*;

    /// What the fake destination saw: (tenant, extra header, samples as (name, t, v)).
    type Seen = Vec<(String, String, Vec<(String, i64, f64)>)>;

    #[derive(Clone, Default)]
    struct Fake {
        /// Statuses to answer, in order; 204 once they run out.
        answers: Arc<Mutex<VecDeque<u16>>>,
        seen: Arc<Mutex<Seen>>,
    }

    async fn receive(State(f): State<Fake>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let status = f.answers.lock().expect("lock").pop_front().unwrap_or(204);
        let header = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("content-encoding"), "snappy");
        assert_eq!(header("x-prometheus-remote-write-version"), "0.1.0");
        if status == 204 {
            let series = decode_write_request(&body, 0, i64::MAX).expect("remote_write body");
            let samples = series
                .iter()
                .flat_map(|s| {
                    let name = s.labels.metric_name().unwrap_or_default().to_owned();
                    s.samples.iter().map(move |p| (name.clone(), p.t, p.v))
                })
                .collect();
            f.seen
                .lock()
                .expect("lock")
                .push((header("x-scope-orgid"), header("x-test"), samples));
        }
        StatusCode::from_u16(status).expect("status")
    }

    fn series(name: &str, points: &[(i64, f64)]) -> Vec<Series> {
        vec![Series {
            labels: Labels::from_pairs([("__name__", name)]).expect("labels"),
            samples: points.iter().map(|&(t, v)| Sample { t, v }).collect(),
        }]
    }

    #[tokio::test]
    async fn accepted_writes_reach_the_destination_in_order_after_retries_and_refused_ones_never() {
        let fake = Fake::default();
        fake.answers.lock().expect("lock").extend([503, 429]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new()
            .route("/write", post(receive))
            .with_state(fake.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let dir = tempfile::tempdir().expect("tempdir");
        let args = ExportArgs {
            urls: vec![RemoteWriteUrl::parse(&format!("http://{addr}/write")).expect("url")],
            headers: vec![HeaderPair::parse("X-Test=yes").expect("header")],
            tenants: vec![
                TenantId::new("a").expect("tenant"),
                TenantId::new("b").expect("tenant"),
            ],
            batch_samples: 2,
            queue_bytes: 1 << 20,
        };
        let exporter = Arc::new(
            Exporter::open(&args, dir.path())
                .expect("open")
                .expect("a destination"),
        );
        let inner = Arc::new(Storage::open(StorageConfig::default()).expect("storage"));
        let store = ExportingStore::new(inner, exporter.clone());
        let (a, b, c) = ["a", "b", "c"]
            .map(|t| TenantId::new(t).expect("tenant"))
            .into();
        let now = 10_000;
        store
            .write(
                &a,
                series("x", &[(1_000, 1.0), (2_000, 2.0), (3_000, 3.0)]),
                now,
            )
            .expect("accepted");
        // Out of order: refused by the inner store, so never exported.
        assert!(store.write(&a, series("x", &[(500, 9.0)]), now).is_err());
        store
            .write(&b, series("y", &[(1_000, 5.0)]), now)
            .expect("accepted");
        // Tenant c is not listed: stored, not exported.
        store
            .write(&c, series("z", &[(1_000, 7.0)]), now)
            .expect("accepted");
        assert_eq!(exporter.destinations[0].lock_queue().pending_samples(), 4);

        let senders = exporter.start();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while exporter.destinations[0].lock_queue().pending_samples() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "queue not drained");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for s in senders {
            s.abort();
        }
        server.abort();

        let seen = fake.seen.lock().expect("lock").clone();
        let x = |t, v| ("x".to_owned(), t, v);
        assert_eq!(
            seen,
            vec![
                ("a".into(), "yes".into(), vec![x(1_000, 1.0), x(2_000, 2.0)]),
                ("a".into(), "yes".into(), vec![x(3_000, 3.0)]),
                ("b".into(), "yes".into(), vec![("y".into(), 1_000, 5.0)]),
            ]
        );
        let text = exporter.exposition();
        let url = &args.urls[0];
        for line in [
            format!("weft_export_samples_sent_total{{destination=\"{url}\"}} 4"),
            format!("weft_export_retries_total{{destination=\"{url}\"}} 2"),
            format!("weft_export_samples_pending{{destination=\"{url}\"}} 0"),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn the_same_url_twice_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = RemoteWriteUrl::parse("http://h/w").expect("url");
        let args = ExportArgs {
            urls: vec![url.clone(), url],
            headers: Vec::new(),
            tenants: Vec::new(),
            batch_samples: 10,
            queue_bytes: 1 << 20,
        };
        let e = Exporter::open(&args, dir.path()).expect_err("duplicate");
        assert!(matches!(e, ExportError::Duplicate(_)), "{e}");
    }
}
