//! The IPAM service's state, its gossip channel and its driver task.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{Notify, oneshot, watch};
use tracing::{info, warn};
use weft_ipam::{
    Allocation, Allocator, Cidr, Config, Event, IpamError, PeerId, RequestId, Status, Transmit,
};

use crate::mesh::driver::MeshHandle;
use crate::mesh::{GossipError, Gossiper, MeshStatus, PeerName};
use crate::state_file;

/// Name of the mesh gossip channel that carries IPAM messages.
pub const IPAM_CHANNEL: &str = "ipam";
/// File in the data dir holding the allocator's persisted state.
pub const IPAM_STATE_FILE: &str = "ipam.state";
/// Time the connection writers get to put the hand-over of `reset` on the wire once the mesh
/// has queued it (the mesh has no delivery acknowledgement).
const RESET_GRACE: Duration = Duration::from_millis(300);

/// Builds the allocator: from the state file when there is one (persisted state wins over
/// `--ipalloc-init`), else fresh from `cfg`. A state file that cannot be read back stops the
/// start with the file's path and the reason; it is never overwritten.
pub fn load_allocator(cfg: Config, data_dir: &Path) -> anyhow::Result<Allocator> {
    let path = data_dir.join(IPAM_STATE_FILE);
    match state_file::read_if_exists(&path)? {
        Some(bytes) => Allocator::restore(cfg, &bytes).map_err(|e| {
            anyhow::anyhow!(
                "the IPAM state file {} cannot be used: {e}. Move it away to start with a fresh ring \
                 (addresses handed out from it may then be given out twice), or fix the flags to match it",
                path.display()
            )
        }),
        None => Ok(Allocator::new(cfg)),
    }
}

struct State {
    alloc: Allocator,
    written: Vec<u8>,
    outbox: Vec<Transmit>,
    /// Messages ever put in the outbox; compared with [`Shared::sent`].
    queued: u64,
    waiters: HashMap<RequestId, oneshot::Sender<Result<Ipv4Addr, IpamError>>>,
    reachable: BTreeSet<PeerId>,
    /// Set once `reset` handed the space away, so a repeated `reset` only finishes the job.
    reset: Option<ResetOutcome>,
    /// Set once the state file is removed for good: nothing is persisted any more.
    retired: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    /// Messages handed to the mesh so far.
    sent: watch::Sender<u64>,
    path: PathBuf,
    epoch: Instant,
    mesh: MeshHandle,
}

impl Shared {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent allocator (it has no partial
        // updates visible to us), so a poisoned lock is taken over.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Persists when the allocator's state changed, then moves its messages to the outbox and
    /// completes waiters. Called with the lock held, after every change.
    fn settle(&self, st: &mut State) -> anyhow::Result<()> {
        let bytes = st.alloc.persist();
        if bytes != st.written && !st.retired {
            state_file::write_atomic(&self.path, &bytes)
                .with_context(|| format!("saving the IPAM state to {}", self.path.display()))?;
            st.written = bytes;
        }
        while let Some(t) = st.alloc.poll_transmit() {
            st.outbox.push(t);
            st.queued += 1;
        }
        while let Some(ev) = st.alloc.poll_event() {
            match ev {
                Event::Allocated {
                    request,
                    addr,
                    owner,
                } => {
                    info!(%addr, %owner, "address allocated");
                    if let Some(w) = st.waiters.remove(&request) {
                        let _ = w.send(Ok(addr));
                    }
                }
                Event::Failed {
                    request,
                    owner,
                    error,
                } => {
                    warn!(%owner, "allocation failed: {error}");
                    if let Some(w) = st.waiters.remove(&request) {
                        let _ = w.send(Err(error));
                    }
                }
                Event::Conflict {
                    addr,
                    owner,
                    owned_by,
                } => {
                    let by = owned_by
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "nobody".into());
                    warn!(%addr, %owner, owned_by = %by, "address conflict: the workload holding it should be restarted");
                }
            }
        }
        if !st.outbox.is_empty() {
            self.wake.notify_one();
        }
        Ok(())
    }
}

/// A failed IPAM call.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The allocator refused the request.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// The state could not be saved, so nothing was answered.
    #[error("{0:#}")]
    Persist(anyhow::Error),
    /// The request was still pending when the caller's time ran out.
    #[error(
        "no address became available within {0:?}: the ring may not be ready yet (see `weft status ipam`) \
         or no reachable peer has free space"
    )]
    Timeout(Duration),
    /// `reset` handed the space over, but the message did not reach the mesh in time.
    #[error(
        "reset: this peer's space was handed to {heir}, but the message did not leave within {wait:?} \
         (is the mesh stuck?); the state file {path} is kept so the hand-over is not lost; run \
         `weft reset` again"
    )]
    ResetUndelivered {
        /// The heir.
        heir: String,
        /// How long we waited.
        wait: Duration,
        /// The state file kept.
        path: PathBuf,
    },
    /// The state file could not be removed after the hand-over.
    #[error("reset: removing {path}: {source}")]
    Remove {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What `reset` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetOutcome {
    /// The peer that received this peer's space; `None` when it owned none.
    pub heir: Option<PeerId>,
    /// How many addresses were handed over.
    pub addresses: u64,
}

/// Handle on the running IPAM service.
#[derive(Clone)]
pub struct IpamService {
    shared: Arc<Shared>,
}

impl IpamService {
    /// Starts the service: registers the `ipam` gossip channel on `mesh` and spawns the task
    /// that sends the allocator's messages, fires its timers and follows the topology.
    pub async fn start(
        alloc: Allocator,
        data_dir: &Path,
        mesh: MeshHandle,
    ) -> anyhow::Result<IpamService> {
        let path = data_dir.join(IPAM_STATE_FILE);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                alloc,
                written: Vec::new(),
                outbox: Vec::new(),
                queued: 0,
                waiters: HashMap::new(),
                reachable: BTreeSet::new(),
                reset: None,
                retired: false,
            }),
            wake: Notify::new(),
            sent: watch::Sender::new(0),
            path,
            epoch: Instant::now(),
            mesh: mesh.clone(),
        });
        {
            let mut st = shared.lock();
            shared
                .settle(&mut st)
                .map_err(|e| e.context("starting IPAM"))?;
        }
        let service = IpamService { shared };
        mesh.register(
            IPAM_CHANNEL,
            Box::new(IpamGossip {
                service: service.clone(),
            }),
        )
        .await
        .context("registering the IPAM gossip channel")?;
        tokio::spawn(service.clone().drive(mesh));
        Ok(service)
    }

    /// Runs `f` on the allocator, then persists and queues what it produced.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Allocator, Duration) -> T,
    ) -> Result<T, ServiceError> {
        let now = self.shared.now();
        let mut st = self.shared.lock();
        let out = f(&mut st.alloc, now);
        self.shared.settle(&mut st).map_err(ServiceError::Persist)?;
        Ok(out)
    }

    /// Allocates (or, with `addr`, claims) an address for `owner`, waiting up to `wait` for a
    /// pending request to complete.
    pub async fn allocate(
        &self,
        owner: &str,
        subnet: Option<Cidr>,
        addr: Option<Ipv4Addr>,
        wait: Duration,
    ) -> Result<Ipv4Addr, ServiceError> {
        let rx = {
            let now = self.shared.now();
            let mut st = self.shared.lock();
            let result = match addr {
                Some(a) => st.alloc.claim(owner, a, Some(now + wait), now),
                None => st.alloc.allocate(owner, subnet, Some(now + wait), now),
            };
            let rx = match result {
                Ok(Allocation::Ready(a)) => {
                    self.shared.settle(&mut st).map_err(ServiceError::Persist)?;
                    return Ok(a);
                }
                Ok(Allocation::Pending(id)) => {
                    let (tx, rx) = oneshot::channel();
                    st.waiters.insert(id, tx);
                    rx
                }
                Err(e) => return Err(e.into()),
            };
            self.shared.settle(&mut st).map_err(ServiceError::Persist)?;
            rx
        };
        self.shared.wake.notify_one();
        match tokio::time::timeout(wait + Duration::from_secs(1), rx).await {
            Ok(Ok(r)) => r.map_err(ServiceError::from),
            _ => Err(ServiceError::Timeout(wait)),
        }
    }

    /// The subnet allocations use when none is named.
    pub fn default_subnet(&self) -> Cidr {
        self.shared.lock().alloc.config().default_subnet
    }

    /// Whether `ip` lies in the allocation range.
    pub fn range_contains(&self, ip: Ipv4Addr) -> bool {
        self.shared.lock().alloc.config().range.contains(ip)
    }

    /// The allocator's view, for `weft status ipam`.
    pub fn status(&self) -> Status {
        self.shared.lock().alloc.status()
    }

    /// Waits until the ring is ready (consensus reached or seeded), up to `wait`.
    pub async fn prime(&self, wait: Duration) -> Result<(), ServiceError> {
        let deadline = Instant::now() + wait;
        loop {
            if self.with(|a, now| a.prime(now))? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ServiceError::Timeout(wait));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `weft reset`: hands this peer's space to the reachable peer owning most space, waits
    /// (up to `wait`) until that message has been handed to the mesh and queued on its
    /// connections, then removes the state file for good. Refused, changing nothing, when no
    /// reachable peer can take the space. Calling it again after a timeout finishes the job.
    pub async fn reset(&self, wait: Duration) -> Result<ResetOutcome, ServiceError> {
        let (outcome, target) = {
            let now = self.shared.now();
            let mut st = self.shared.lock();
            let outcome = match &st.reset {
                Some(done) => done.clone(),
                None => {
                    let me = st.alloc.config().peer;
                    let addresses = st
                        .alloc
                        .ranges_of(me)
                        .iter()
                        .map(|(first, last)| u64::from(u32::from(*last) - u32::from(*first)) + 1)
                        .sum();
                    let heir = st.alloc.reset(None, now)?;
                    let outcome = ResetOutcome { heir, addresses };
                    st.reset = Some(outcome.clone());
                    outcome
                }
            };
            self.shared.settle(&mut st).map_err(ServiceError::Persist)?;
            (outcome, st.queued)
        };
        self.shared.wake.notify_one();
        let mut sent = self.shared.sent.subscribe();
        let delivered = tokio::time::timeout(wait, async {
            // The mesh queues commands in order: once it answers a status request, it has
            // passed the hand-over to the connections' writers.
            sent.wait_for(|n| *n >= target).await.is_ok() && self.shared.mesh.status().await.is_ok()
        })
        .await;
        if !matches!(delivered, Ok(true)) {
            return Err(ServiceError::ResetUndelivered {
                heir: outcome
                    .heir
                    .map_or_else(|| "nobody".into(), |h| h.to_string()),
                wait,
                path: self.shared.path.clone(),
            });
        }
        if outcome.heir.is_some() {
            tokio::time::sleep(RESET_GRACE).await;
        }
        self.shared.lock().retired = true;
        match std::fs::remove_file(&self.shared.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ServiceError::Remove {
                    path: self.shared.path.clone(),
                    source,
                });
            }
        }
        info!(
            heir = ?outcome.heir.map(|h| h.to_string()),
            addresses = outcome.addresses,
            "IPAM reset: space handed over, {} removed",
            self.shared.path.display()
        );
        Ok(outcome)
    }

    /// The IPAM state file.
    pub fn state_path(&self) -> &Path {
        &self.shared.path
    }

    async fn drive(self, mesh: MeshHandle) {
        let mut topology = mesh.topology();
        self.follow_topology(&topology.borrow_and_update());
        loop {
            let outbox = {
                let now = self.shared.now();
                let mut st = self.shared.lock();
                st.alloc.handle_timeout(now);
                if let Err(e) = self.shared.settle(&mut st) {
                    warn!("{e:#}");
                }
                std::mem::take(&mut st.outbox)
            };
            for t in outbox {
                let sent = match t {
                    Transmit::Broadcast(bytes) => mesh.gossip_update(IPAM_CHANNEL, bytes).await,
                    Transmit::Unicast { to, bytes } => {
                        mesh.unicast(PeerName(to.0), IPAM_CHANNEL, bytes).await
                    }
                };
                if sent.is_err() {
                    return;
                }
                self.shared.sent.send_modify(|n| *n += 1);
            }
            let sleep = {
                let st = self.shared.lock();
                st.alloc
                    .poll_timeout()
                    .map(|t| t.saturating_sub(self.shared.now()))
                    .unwrap_or(Duration::from_secs(60))
            };
            tokio::select! {
                _ = self.shared.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                changed = topology.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.follow_topology(&topology.borrow_and_update());
                }
            }
        }
    }

    fn follow_topology(&self, mesh: &MeshStatus) {
        let now_reachable: BTreeSet<PeerId> = mesh
            .peers
            .iter()
            .filter(|p| p.name != mesh.local.name)
            .map(|p| PeerId(p.name.0))
            .collect();
        let now = self.shared.now();
        let mut st = self.shared.lock();
        let before = std::mem::replace(&mut st.reachable, now_reachable.clone());
        for gone in before.difference(&now_reachable) {
            st.alloc.peer_unreachable(*gone, now);
        }
        for new in now_reachable.difference(&before) {
            st.alloc.peer_reachable(*new, now);
        }
        if let Err(e) = self.shared.settle(&mut st) {
            warn!("{e:#}");
        }
    }
}

/// The allocator as a gossip channel of the mesh.
struct IpamGossip {
    service: IpamService,
}

impl IpamGossip {
    fn run<T>(
        &self,
        f: impl FnOnce(&mut Allocator, Duration) -> Result<T, IpamError>,
    ) -> Result<T, GossipError> {
        match self.service.with(f) {
            Ok(r) => r.map_err(|e| GossipError::new(e.to_string())),
            Err(e) => Err(GossipError::new(e.to_string())),
        }
    }
}

impl Gossiper for IpamGossip {
    fn full_state(&self) -> Vec<u8> {
        self.service.shared.lock().alloc.full_state()
    }

    fn merge(&mut self, src: PeerName, update: &[u8]) -> Result<Option<Vec<u8>>, GossipError> {
        self.run(|a, now| a.merge(PeerId(src.0), update, now))
    }

    fn on_unicast(&mut self, src: PeerName, payload: &[u8]) -> Result<(), GossipError> {
        self.run(|a, now| a.on_unicast(PeerId(src.0), payload, now))
    }
}
