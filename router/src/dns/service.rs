//! The DNS service: the record [`Store`] behind a lock, its `dns` gossip channel, its state file
//! (written before anything leaves), and the reachability it follows from the mesh topology.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::watch;
use tracing::warn;

use super::error::DnsError;
use super::name::Fqdn;
use super::store::{Entry, Store, Tables};
use crate::mesh::driver::MeshHandle;
use crate::mesh::{GossipError, Gossiper, MeshStatus, PeerName};
use crate::state_file;

/// Name of the mesh gossip channel that carries DNS records.
pub const DNS_CHANNEL: &str = "dns";
/// File in the data dir holding the records.
pub const DNS_STATE_FILE: &str = "dns.state";
/// Owner id of records added with `weft dns-add -h` (as weaveDNS's `weave:extern`).
pub const EXTERN_OWNER: &str = "weft:extern";
/// How often expired tombstones are dropped.
const EXPIRY_PERIOD: Duration = Duration::from_secs(60);

/// Loads the store from the data dir; a state file that cannot be read back stops the start,
/// naming the file.
pub fn load_store(local: PeerName, data_dir: &Path) -> Result<Store, DnsError> {
    let path = data_dir.join(DNS_STATE_FILE);
    let bytes = state_file::read_if_exists(&path).map_err(|e| DnsError::Corrupt {
        path: path.clone(),
        reason: format!("{e:#}"),
    })?;
    match bytes {
        None => Ok(Store::new(local)),
        Some(b) => Store::from_file(local, &b, now_ms())
            .map_err(|reason| DnsError::Corrupt { path, reason }),
    }
}

/// Wall-clock milliseconds: tombstone times are compared across peers.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Shared {
    store: Mutex<Store>,
    tables: RwLock<Arc<Tables>>,
    path: PathBuf,
    domain: Fqdn,
    listen: watch::Sender<Option<SocketAddr>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `f` to the store; when it produced news, persists before anything leaves. A
    /// failed write restores the store as it was.
    fn change(&self, f: impl FnOnce(&mut Store) -> Vec<Entry>) -> Result<Vec<Entry>, DnsError> {
        let mut store = self.lock();
        let before = store.clone();
        let news = f(&mut store);
        if news.is_empty() {
            return Ok(news);
        }
        if let Err(e) = state_file::write_atomic(&self.path, &store.to_file()) {
            *store = before;
            return Err(DnsError::Persist(e.context(format!(
                "saving the DNS records to {}",
                self.path.display()
            ))));
        }
        self.publish(&store);
        Ok(news)
    }

    fn publish(&self, store: &Store) {
        *self.tables.write().unwrap_or_else(|p| p.into_inner()) = store.tables();
    }
}

/// Handle on the running DNS record service.
#[derive(Clone)]
pub struct DnsService {
    shared: Arc<Shared>,
    mesh: MeshHandle,
}

impl DnsService {
    /// Starts the service: registers the `dns` gossip channel and spawns the task that follows
    /// the topology and expires tombstones.
    pub async fn start(
        store: Store,
        data_dir: &Path,
        domain: Fqdn,
        mesh: MeshHandle,
    ) -> anyhow::Result<DnsService> {
        let shared = Arc::new(Shared {
            tables: RwLock::new(store.tables()),
            store: Mutex::new(store),
            path: data_dir.join(DNS_STATE_FILE),
            domain,
            listen: watch::Sender::new(None),
        });
        let service = DnsService { shared, mesh };
        service
            .mesh
            .register(
                DNS_CHANNEL,
                Box::new(DnsGossip {
                    shared: service.shared.clone(),
                }),
            )
            .await
            .context("registering the DNS gossip channel")?;
        tokio::spawn(service.clone().follow());
        Ok(service)
    }

    /// The weft domain.
    pub fn domain(&self) -> &Fqdn {
        &self.shared.domain
    }

    /// The tables the server answers from (live records of reachable peers).
    pub fn tables(&self) -> Arc<Tables> {
        self.shared
            .tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every live record, including those of peers now unreachable.
    pub fn entries(&self) -> Vec<Entry> {
        self.shared.lock().live().cloned().collect()
    }

    /// This peer.
    pub fn local(&self) -> PeerName {
        self.shared.lock().local()
    }

    /// Registers `name` → each of `addrs` for `owner`; returns the records that are new.
    pub async fn add(
        &self,
        name: &Fqdn,
        addrs: &[IpAddr],
        owner: &str,
    ) -> Result<Vec<Entry>, DnsError> {
        if !name.is_in(&self.shared.domain) {
            return Err(super::NameError::OutsideDomain {
                name: name.to_string(),
                domain: self.shared.domain.to_string(),
            }
            .into());
        }
        let news = self.shared.change(|s| {
            addrs
                .iter()
                .filter_map(|a| s.add(name, *a, owner))
                .collect()
        })?;
        self.gossip(&news).await;
        Ok(news)
    }

    /// Removes this peer's live records matching `pred`; returns them.
    pub async fn remove(&self, pred: impl Fn(&Entry) -> bool) -> Result<Vec<Entry>, DnsError> {
        let news = self.shared.change(|s| s.remove(pred, now_ms()))?;
        self.gossip(&news).await;
        Ok(news)
    }

    /// The address the server listens on now, if any.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        *self.shared.listen.borrow()
    }

    /// Records the address the server listens on.
    pub fn set_listen_addr(&self, addr: Option<SocketAddr>) {
        self.shared.listen.send_replace(addr);
    }

    async fn gossip(&self, news: &[Entry]) {
        if news.is_empty() {
            return;
        }
        if self
            .mesh
            .gossip_update(DNS_CHANNEL, Store::encode(news))
            .await
            .is_err()
        {
            warn!("the mesh has stopped: DNS records not gossiped");
        }
    }

    async fn follow(self) {
        let mut topology = self.mesh.topology();
        self.set_reachable(&topology.borrow_and_update());
        let mut expiry = tokio::time::interval(EXPIRY_PERIOD);
        loop {
            tokio::select! {
                changed = topology.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.set_reachable(&topology.borrow_and_update());
                }
                _ = expiry.tick() => {
                    let mut store = self.shared.lock();
                    if store.expire(now_ms()) > 0
                        && let Err(e) = state_file::write_atomic(&self.shared.path, &store.to_file())
                    {
                        warn!("saving the DNS records after expiry: {e:#}");
                    }
                }
            }
        }
    }

    fn set_reachable(&self, mesh: &MeshStatus) {
        let peers: BTreeSet<PeerName> = mesh
            .peers
            .iter()
            .map(|p| p.name)
            .filter(|n| *n != mesh.local.name)
            .collect();
        let mut store = self.shared.lock();
        if store.set_reachable(peers) {
            self.shared.publish(&store);
        }
    }
}

/// The store as a gossip channel of the mesh.
struct DnsGossip {
    shared: Arc<Shared>,
}

impl Gossiper for DnsGossip {
    fn full_state(&self) -> Vec<u8> {
        self.shared.lock().full_state()
    }

    fn merge(&mut self, _src: PeerName, update: &[u8]) -> Result<Option<Vec<u8>>, GossipError> {
        let entries = Store::decode(update).map_err(|e| GossipError::Decode {
            channel: DNS_CHANNEL.into(),
            reason: e.to_string(),
        })?;
        let news = self
            .shared
            .change(|s| s.merge(entries, now_ms()))
            .map_err(|e| GossipError::new(e.to_string()))?;
        Ok((!news.is_empty()).then(|| Store::encode(&news)))
    }

    fn on_unicast(&mut self, src: PeerName, _payload: &[u8]) -> Result<(), GossipError> {
        Err(GossipError::new(format!(
            "the DNS channel has no unicast messages (from {src})"
        )))
    }
}
