//! [`ClusterStore`]: the [`Store`] the router serves, spreading each series over its replicas on
//! the metrics ring and reading back from all peers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::debug;
use weft_metrics::compact::merge_series;
use weft_metrics::index::Matcher;
use weft_metrics::labels::{Labels, Series};
use weft_metrics::ring::Ring;
use weft_metrics::storage::{Storage, StorageError, Store, WriteError, WriteStats};
use weft_metrics::tenant::{Limits, RateLimiter, TenantId};

use super::CHANNEL;
use super::wire::{
    self, Body, Envelope, WireSelect, WireWrite, WriteStatus, labels_only_to_wire, matcher_to_wire,
    series_from_wire, series_to_wire, split_batch,
};
use crate::mesh::driver::MeshHandle;
use crate::mesh::{MeshStatus, PeerName};

/// Requests in flight to one peer at a time (flow control of the `metrics` channel).
pub(crate) const MAX_IN_FLIGHT_PER_PEER: usize = 8;

/// How long a replica has to answer a write or a read.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of a [`ClusterStore`].
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Copies of each series (`--metrics-replication`).
    pub replication: usize,
    /// Cluster-wide per-tenant limits; the ingestion rate and burst are divided by the routers.
    pub limits: Limits,
}

/// Why one replica did not store its part.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ReplicaError {
    /// It refused the data as invalid.
    #[error("{0}")]
    Invalid(String),
    /// The tenant is over a limit there.
    #[error("{0}")]
    Limited(String),
    /// It failed, did not answer in time, or is unreachable.
    #[error("{0}")]
    Failed(String),
}

impl ReplicaError {
    /// The wire status and message of a local write failure.
    pub(crate) fn of_write(e: &WriteError) -> Self {
        let msg = e.to_string();
        match e {
            WriteError::Append(_) | WriteError::LabelLimit { .. } | WriteError::Refused(_) => {
                Self::Invalid(msg)
            }
            WriteError::RateLimited { .. } | WriteError::SeriesLimit { .. } => Self::Limited(msg),
            WriteError::Wal(_) | WriteError::Unavailable(_) | WriteError::NoQuorum(_) => {
                Self::Failed(msg)
            }
        }
    }

    /// The wire status of this error.
    pub(crate) fn status(&self) -> WriteStatus {
        match self {
            Self::Invalid(_) => WriteStatus::Invalid,
            Self::Limited(_) => WriteStatus::Limited,
            Self::Failed(_) => WriteStatus::Failed,
        }
    }
}

/// State shared by the store, the channel and the replica server.
pub(crate) struct Shared {
    pub(crate) local: Arc<Storage>,
    pub(crate) local_name: PeerName,
    pub(crate) mesh: MeshHandle,
    topology: watch::Receiver<MeshStatus>,
    runtime: tokio::runtime::Handle,
    config: ClusterConfig,
    limiters: Mutex<HashMap<TenantId, RateLimiter>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Body>>>,
    next_id: AtomicU64,
    in_flight: Mutex<HashMap<PeerName, Arc<Semaphore>>>,
    ring: Mutex<Option<Arc<Ring>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Hands a response to the request waiting for it (late or unknown ones are dropped).
    pub(crate) fn complete(&self, id: u64, body: Body) {
        if let Some(tx) = lock(&self.pending).remove(&id) {
            let _ = tx.send(body);
        } else {
            debug!(id, "metrics response for no pending request dropped");
        }
    }

    /// The replication factor.
    pub(crate) fn replication(&self) -> usize {
        self.config.replication
    }

    /// The peers the mesh knows now with their incarnation (a restart changes it).
    pub(crate) fn members(&self) -> BTreeMap<u64, u64> {
        let status = self.topology.borrow();
        status.peers.iter().map(|p| (p.name.0, p.uid)).collect()
    }

    /// The ring of the peers the mesh knows now (this router included).
    pub(crate) fn ring(&self) -> Arc<Ring> {
        let peers: Vec<u64> = {
            let status = self.topology.borrow();
            let mut p: Vec<u64> = status.peers.iter().map(|p| p.name.0).collect();
            p.push(self.local_name.0);
            p.sort_unstable();
            p.dedup();
            p
        };
        let mut cached = lock(&self.ring);
        if let Some(r) = cached.as_ref()
            && r.peers() == peers.as_slice()
        {
            return r.clone();
        }
        let ring = Arc::new(Ring::with_replication(peers, self.config.replication));
        *cached = Some(ring.clone());
        ring
    }

    /// Sends one request to `peer` and waits for its response, at most
    /// [`MAX_IN_FLIGHT_PER_PEER`] at a time per peer.
    async fn request(&self, peer: PeerName, body: Body) -> Result<Body, String> {
        let sem = lock(&self.in_flight)
            .entry(peer)
            .or_insert_with(|| Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_PEER)))
            .clone();
        let work = async {
            let _permit = sem.acquire().await.map_err(|e| e.to_string())?;
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let bytes = Envelope::new(id, body)
                .encode()
                .map_err(|e| e.to_string())?;
            let (tx, rx) = oneshot::channel();
            lock(&self.pending).insert(id, tx);
            let guard = PendingGuard { shared: self, id };
            self.mesh
                .unicast(peer, CHANNEL, bytes)
                .await
                .map_err(|e| e.to_string())?;
            let answer = rx.await.map_err(|_| "request dropped".to_owned());
            drop(guard);
            answer
        };
        tokio::time::timeout(REQUEST_TIMEOUT, work)
            .await
            .map_err(|_| format!("peer {peer} did not answer within {REQUEST_TIMEOUT:?}"))?
    }

    /// Writes `batch` on `peer` (this router: straight into the local store); a `handover`
    /// copy lets the receiver skip series it cannot take.
    pub(crate) async fn write_on(
        self: &Arc<Self>,
        peer: PeerName,
        tenant: TenantId,
        batch: Vec<Series>,
        now_ms: i64,
        handover: bool,
    ) -> Result<(), ReplicaError> {
        if peer == self.local_name {
            let local = self.local.clone();
            return tokio::task::spawn_blocking(move || local.write(&tenant, batch, now_ms))
                .await
                .map_err(|e| ReplicaError::Failed(e.to_string()))?
                .map(|_| ())
                .map_err(|e| ReplicaError::of_write(&e));
        }
        for part in split_batch(batch) {
            let body = Body::Write(WireWrite {
                tenant: tenant.as_str().to_owned(),
                now_ms,
                series: part.iter().map(series_to_wire).collect(),
                handover,
            });
            match self.request(peer, body).await {
                Ok(Body::WriteResult(r)) => match WriteStatus::try_from(r.status) {
                    Ok(WriteStatus::Ok) => {}
                    Ok(WriteStatus::Invalid) => return Err(ReplicaError::Invalid(r.message)),
                    Ok(WriteStatus::Limited) => return Err(ReplicaError::Limited(r.message)),
                    _ => return Err(ReplicaError::Failed(format!("peer {peer}: {}", r.message))),
                },
                Ok(_) => {
                    return Err(ReplicaError::Failed(format!(
                        "peer {peer} answered a write with something else"
                    )));
                }
                Err(e) => return Err(ReplicaError::Failed(e)),
            }
        }
        Ok(())
    }

    /// Reads from `peer` (this router: the local store).
    async fn select_on(
        self: &Arc<Self>,
        peer: PeerName,
        tenant: TenantId,
        matchers: Arc<Vec<Matcher>>,
        mint: i64,
        maxt: i64,
        labels_only: bool,
    ) -> Result<Vec<Series>, String> {
        if peer == self.local_name {
            let local = self.local.clone();
            return tokio::task::spawn_blocking(move || {
                local_select(&local, &tenant, &matchers, mint, maxt, labels_only)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string());
        }
        let body = Body::Select(WireSelect {
            tenant: tenant.as_str().to_owned(),
            matchers: matchers.iter().map(matcher_to_wire).collect(),
            mint,
            maxt,
            labels_only,
        });
        match self.request(peer, body).await? {
            Body::SelectResult(r) if r.error.is_empty() => r
                .series
                .into_iter()
                .map(|s| series_from_wire(s).map_err(|e| format!("peer {peer}: {e}")))
                .collect(),
            Body::SelectResult(r) => Err(format!("peer {peer}: {}", r.error)),
            _ => Err(format!("peer {peer} answered a read with something else")),
        }
    }

    /// The cluster-wide ingestion limit for one router: the tenant's rate and burst divided by
    /// the number of routers (as Cortex's "global" strategy divides the rate).
    fn admit(
        &self,
        tenant: &TenantId,
        ring: &Ring,
        n: usize,
        now_ms: i64,
    ) -> Result<(), WriteError> {
        let routers = ring.peers().len().max(1) as f64;
        let limits = Limits {
            ingestion_rate: self.config.limits.ingestion_rate / routers,
            ingestion_burst: self.config.limits.ingestion_burst / routers,
            ..self.config.limits
        };
        let mut limiters = lock(&self.limiters);
        let limiter = limiters
            .entry(tenant.clone())
            .or_insert_with(|| RateLimiter::new(&limits));
        match limiter.check(&limits, now_ms, n) {
            Ok(()) => {
                limiter.take(n);
                Ok(())
            }
            Err(retry_after_ms) => Err(WriteError::RateLimited {
                tenant: tenant.clone(),
                rate: limits.ingestion_rate,
                retry_after_ms,
            }),
        }
    }

    /// The replicated write: every series is acknowledged by a quorum of its replicas.
    async fn write(
        self: &Arc<Self>,
        tenant: TenantId,
        batch: Vec<Series>,
        now_ms: i64,
    ) -> Result<WriteStats, WriteError> {
        let ring = self.ring();
        let samples: usize = batch.iter().map(|s| s.samples.len()).sum();
        self.admit(&tenant, &ring, samples, now_ms)?;
        let quorum = ring.write_quorum();
        // Series grouped by replica set; each peer gets the union of its groups.
        let mut groups: BTreeMap<Vec<u64>, usize> = BTreeMap::new();
        let mut parts: BTreeMap<u64, Vec<Series>> = BTreeMap::new();
        let series_count = batch.len();
        for s in batch {
            let mut replicas = ring.replicas(&tenant, &s.labels);
            replicas.sort_unstable();
            for &p in &replicas {
                parts.entry(p).or_default().push(s.clone());
            }
            *groups.entry(replicas).or_default() += 1;
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        for (peer, part) in parts {
            let (shared, tenant, tx) = (self.clone(), tenant.clone(), tx.clone());
            tokio::spawn(async move {
                let r = shared
                    .write_on(PeerName(peer), tenant, part, now_ms, false)
                    .await;
                let _ = tx.send((peer, r));
            });
        }
        drop(tx);
        let mut outcome = QuorumTracker::new(groups.into_keys().collect(), quorum);
        while let Some((peer, result)) = rx.recv().await {
            if let Err(e) = &result {
                debug!(peer = %PeerName(peer), "replica write failed: {e}");
            }
            match outcome.record(peer, result) {
                Progress::Waiting => {}
                Progress::Done => {
                    return Ok(WriteStats {
                        samples,
                        new_series: 0,
                    });
                }
                Progress::Failed(e) => return Err(self.failure(&tenant, e, series_count)),
            }
        }
        Err(WriteError::NoQuorum("no replica answered".into()))
    }

    fn failure(&self, tenant: &TenantId, e: ReplicaError, series: usize) -> WriteError {
        match e {
            ReplicaError::Invalid(m) => WriteError::Refused(m),
            ReplicaError::Limited(_) => WriteError::SeriesLimit {
                tenant: tenant.clone(),
                limit: self.config.limits.max_series,
            },
            ReplicaError::Failed(m) => {
                WriteError::NoQuorum(format!("{series} series in the batch: {m}"))
            }
        }
    }

    /// Reads from every peer of the ring and merges the replicas; fails when more peers fail
    /// than the replication can cover (a series written at quorum survives on another).
    async fn gather(
        self: &Arc<Self>,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        labels_only: bool,
    ) -> Result<Vec<Vec<Series>>, StorageError> {
        let ring = self.ring();
        let tolerated = ring.copies() - ring.write_quorum();
        let matchers = Arc::new(matchers.to_vec());
        let tasks: Vec<_> = ring
            .peers()
            .iter()
            .map(|&p| {
                let (shared, tenant, m) = (self.clone(), tenant.clone(), matchers.clone());
                tokio::spawn(async move {
                    shared
                        .select_on(PeerName(p), tenant, m, mint, maxt, labels_only)
                        .await
                })
            })
            .collect();
        let mut parts = Vec::new();
        let mut failures = Vec::new();
        for t in tasks {
            match t.await {
                Ok(Ok(p)) => parts.push(p),
                Ok(Err(e)) => failures.push(e),
                Err(e) => failures.push(e.to_string()),
            }
        }
        if failures.len() > tolerated {
            return Err(StorageError::Unavailable(failures.join("; ")));
        }
        if !failures.is_empty() {
            debug!(
                "metrics read complete despite failed peers: {}",
                failures.join("; ")
            );
        }
        Ok(parts)
    }
}

/// Removes a pending request when its waiter gives up.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.shared.pending).remove(&self.id);
    }
}

/// Where a replicated write stands.
#[derive(Debug)]
enum Progress {
    /// Some replica set has neither reached nor missed its quorum yet.
    Waiting,
    /// Every replica set reached its quorum.
    Done,
    /// Some replica set can no longer reach its quorum; the most telling error.
    Failed(ReplicaError),
}

/// Counts acknowledgements per replica set as replicas answer.
struct QuorumTracker {
    groups: Vec<Vec<u64>>,
    quorum: usize,
    ok: BTreeSet<u64>,
    failed: BTreeMap<u64, ReplicaError>,
}

impl QuorumTracker {
    fn new(groups: Vec<Vec<u64>>, quorum: usize) -> Self {
        Self {
            groups,
            quorum,
            ok: BTreeSet::new(),
            failed: BTreeMap::new(),
        }
    }

    fn record(&mut self, peer: u64, result: Result<(), ReplicaError>) -> Progress {
        match result {
            Ok(()) => {
                self.ok.insert(peer);
            }
            Err(e) => {
                self.failed.insert(peer, e);
            }
        }
        let mut waiting = false;
        for g in &self.groups {
            let ok = g.iter().filter(|p| self.ok.contains(p)).count();
            let failed = g.iter().filter(|p| self.failed.contains_key(p)).count();
            if ok >= self.quorum {
                continue;
            }
            if g.len() - failed < self.quorum {
                // Invalid data beats limits beats failures: it tells the client what to fix.
                let worst = g
                    .iter()
                    .filter_map(|p| self.failed.get(p))
                    .max_by_key(|e| match e {
                        ReplicaError::Invalid(_) => 2,
                        ReplicaError::Limited(_) => 1,
                        ReplicaError::Failed(_) => 0,
                    })
                    .cloned()
                    .unwrap_or_else(|| ReplicaError::Failed("no replica".into()));
                return Progress::Failed(worst);
            }
            waiting = true;
        }
        if waiting {
            Progress::Waiting
        } else {
            Progress::Done
        }
    }
}

/// The store the router serves: writes go to each series' replicas on the metrics ring
/// (acknowledged at quorum), reads fan out to every peer and merge the replicas.
///
/// The [`Store`] methods block: call them off the async executor (`spawn_blocking`), as the
/// HTTP API does.
#[derive(Clone)]
pub struct ClusterStore {
    shared: Arc<Shared>,
}

impl ClusterStore {
    /// The store over `local`, talking to the other routers through `mesh`; the channel is
    /// registered by [`super::start`].
    pub(crate) fn new(
        local: Arc<Storage>,
        local_name: PeerName,
        mesh: MeshHandle,
        config: ClusterConfig,
    ) -> Self {
        let topology = mesh.topology();
        Self {
            shared: Arc::new(Shared {
                local,
                local_name,
                mesh,
                topology,
                runtime: tokio::runtime::Handle::current(),
                config,
                limiters: Mutex::new(HashMap::new()),
                pending: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                in_flight: Mutex::new(HashMap::new()),
                ring: Mutex::new(None),
            }),
        }
    }

    /// The shared state, for the channel and the replica server.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Runs `f` to completion from a blocking caller.
    fn block<F: Future>(&self, f: F) -> F::Output {
        tokio::task::block_in_place(|| self.shared.runtime.block_on(f))
    }
}

impl Store for ClusterStore {
    fn write(
        &self,
        tenant: &TenantId,
        batch: Vec<Series>,
        now_ms: i64,
    ) -> Result<WriteStats, WriteError> {
        let shared = self.shared.clone();
        self.block(shared.write(tenant.clone(), batch, now_ms))
    }

    fn select(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, StorageError> {
        let parts = self.block(self.shared.gather(tenant, matchers, mint, maxt, false))?;
        Ok(merge_series(parts))
    }

    fn series(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        let parts = self.block(self.shared.gather(tenant, matchers, mint, maxt, true))?;
        let all: BTreeSet<Labels> = parts.into_iter().flatten().map(|s| s.labels).collect();
        Ok(all.into_iter().collect())
    }
}

/// The wire form of a local write's outcome.
pub(crate) fn write_result(r: Result<WriteStats, WriteError>) -> wire::WireWriteResult {
    match r {
        Ok(_) => wire::WireWriteResult {
            status: WriteStatus::Ok as i32,
            message: String::new(),
        },
        Err(e) => {
            let re = ReplicaError::of_write(&e);
            wire::WireWriteResult {
                status: re.status() as i32,
                message: re.to_string(),
            }
        }
    }
}

/// A read of the local store: the matching series with their samples in `[mint, maxt]`, or
/// with `labels_only` their label sets alone (no samples read).
pub(crate) fn local_select(
    local: &Storage,
    tenant: &TenantId,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
    labels_only: bool,
) -> Result<Vec<Series>, StorageError> {
    if labels_only {
        local.series(tenant, matchers, mint, maxt).map(|ls| {
            ls.into_iter()
                .map(|labels| Series {
                    labels,
                    samples: Vec::new(),
                })
                .collect()
        })
    } else {
        local.select(tenant, matchers, mint, maxt)
    }
}

/// The wire form of a local read's outcome.
pub(crate) fn select_result(
    r: Result<Vec<Series>, StorageError>,
    labels_only: bool,
) -> wire::WireSelectResult {
    match r {
        Ok(series) => wire::WireSelectResult {
            error: String::new(),
            series: series
                .iter()
                .map(|s| {
                    if labels_only {
                        labels_only_to_wire(&s.labels)
                    } else {
                        series_to_wire(s)
                    }
                })
                .collect(),
        },
        Err(e) => wire::WireSelectResult {
            error: e.to_string(),
            series: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Result<(), ReplicaError> {
        Err(ReplicaError::Failed("down".into()))
    }

    #[test]
    fn two_of_three_acknowledgements_are_a_quorum_and_one_is_not() {
        let mut t = QuorumTracker::new(vec![vec![1, 2, 3]], 2);
        assert!(matches!(t.record(2, failed()), Progress::Waiting));
        assert!(matches!(t.record(1, Ok(())), Progress::Waiting));
        assert!(matches!(t.record(3, Ok(())), Progress::Done));

        let mut t = QuorumTracker::new(vec![vec![1, 2, 3]], 2);
        assert!(matches!(t.record(1, Ok(())), Progress::Waiting));
        assert!(matches!(t.record(2, failed()), Progress::Waiting));
        assert!(matches!(
            t.record(3, failed()),
            Progress::Failed(ReplicaError::Failed(_))
        ));
    }

    #[test]
    fn every_replica_set_needs_its_own_quorum() {
        // Peer 4 acknowledging does not help the set {1,2,3}.
        let mut t = QuorumTracker::new(vec![vec![1, 2, 3], vec![2, 3, 4]], 2);
        assert!(matches!(t.record(2, Ok(())), Progress::Waiting));
        assert!(matches!(t.record(4, Ok(())), Progress::Waiting));
        assert!(matches!(t.record(1, failed()), Progress::Waiting));
        assert!(matches!(t.record(3, failed()), Progress::Failed(_)));
    }

    #[test]
    fn an_invalid_refusal_is_reported_over_a_failure() {
        let mut t = QuorumTracker::new(vec![vec![1, 2, 3]], 2);
        assert!(matches!(t.record(1, failed()), Progress::Waiting));
        let r = t.record(2, Err(ReplicaError::Invalid("out of order".into())));
        assert!(
            matches!(r, Progress::Failed(ReplicaError::Invalid(_))),
            "{r:?}"
        );
    }

    #[test]
    fn a_single_router_needs_only_itself() {
        let mut t = QuorumTracker::new(vec![vec![9]], 1);
        assert!(matches!(t.record(9, Ok(())), Progress::Done));
    }
}
