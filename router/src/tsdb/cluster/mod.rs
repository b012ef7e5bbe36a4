//! The mesh hosts the metrics (issue 10): every router stores part of every tenant's series
//! and any router answers the Prometheus API for all of them.
//!
//! - **Ring.** The metrics ring ([`weft_metrics::ring`]) is derived from the peers the mesh
//!   topology knows (this router included, sorted, so every router computes the same ring).
//!   Each series lives on `--metrics-replication` peers (default 3, fewer in smaller meshes).
//! - **Writes.** [`ClusterStore`] splits a batch by placement and writes each peer's part: the
//!   local part straight into the local [`Storage`](weft_metrics::storage::Storage), the others
//!   as requests on the `metrics` mesh channel (at most 8 in flight per peer, parts of about
//!   1 MiB, 5 s to answer). The write is acknowledged once every series has a quorum (a majority
//!   of its replicas, 2 of 3) of durable writes; when some series cannot reach it the client
//!   gets 503 (retryable), or 400 when a replica refused the data as invalid. The per-tenant
//!   ingestion rate and burst are cluster-wide: each router admits them divided by the number
//!   of routers (as Cortex's "global" strategy), so an over-limit tenant gets 429 on every router.
//!   Writes from peers go to the local store only (never to exporters).
//! - **Reads.** `select`, `series` and the label queries ask every peer of the ring (matchers and
//!   time range pushed down), merge series by labels and keep one sample per timestamp, so a
//!   replica missing data leaves no gap. Up to `copies - quorum` failing peers (1 of 3) are
//!   tolerated: every series acknowledged at quorum still has a live replica; more give 503.
//! - **Hand-over and catch-up** ([`handover`]). When the ring changes, every router copies the
//!   last hour of raw samples of the series that gained replicas to those new replicas, in the
//!   background, retrying until acknowledged; old replicas keep their data. A restarted router
//!   catches up the same way (hand-over, not hinted hand-off or read repair): its co-replicas
//!   see it rejoin the ring and copy what it missed. Reads merge every peer, so they are
//!   complete before, during and after a move.

mod channel;
mod handover;
mod store;
mod wire;

use std::sync::Arc;

use weft_metrics::storage::Storage;

pub(crate) use handover::WINDOW_MS as OUT_OF_ORDER_WINDOW_MS;
pub use store::{ClusterConfig, ClusterStore};

use crate::mesh::PeerName;
use crate::mesh::driver::{MeshHandle, MeshStopped};

/// The mesh channel of replica requests.
pub(crate) const CHANNEL: &str = "metrics";

/// Registers the `metrics` channel on `mesh`, starts serving peers' requests against `local`,
/// and returns the store that replicates over them.
pub(super) async fn start(
    local: Arc<Storage>,
    local_name: PeerName,
    mesh: MeshHandle,
    config: ClusterConfig,
) -> Result<ClusterStore, MeshStopped> {
    let store = ClusterStore::new(local, local_name, mesh.clone(), config);
    let (channel, requests) = channel::MetricsChannel::new(store.shared());
    mesh.register(CHANNEL, Box::new(channel)).await?;
    tokio::spawn(channel::serve(store.shared(), requests));
    tokio::spawn(handover::run(store.shared()));
    Ok(store)
}
/// A mesh of one router (on a loopback port), for tests of the replicated store.
#[cfg(test)]
pub(crate) fn test_mesh() -> (MeshHandle, PeerName) {
    let name = PeerName(0x02_00_00_00_00_01);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("mesh port");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let handle = crate::mesh::driver::start(crate::mesh::driver::MeshDriverConfig {
        local: crate::mesh::PeerInfo {
            name,
            nickname: "test".into(),
            uid: 1,
            listen_port: port,
        },
        password: None,
        conn_limit: 10,
        targets: Vec::new(),
        listener: tokio::net::TcpListener::from_std(listener).expect("tokio listener"),
        links: None,
    });
    (handle, name)
}
