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
