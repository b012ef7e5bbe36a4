//! The policy service: owns the `policy` gossip channel and its state file, and keeps table
//! `inet weft` in line with the store (one enforcement task, re-run on every change).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast, watch};
use tracing::{info, warn};

use super::compile::compile;
use super::drops::{ChainRef, DropEvent, DropTotal, DropTotals, RecentDrops, parse_ipv4, totals};
use super::error::PolicyError;
use super::labels::LabelEdit;
use super::model::WorkloadMeta;
use super::nft::FirewallDriver;
use super::ruleset::{Direction, Ruleset};
use super::spec::NetworkPolicy;
use super::store::{Store, Value, namespace_key, policy_key, workload_key};
use super::validate::parse_documents;
use crate::mesh::driver::MeshHandle;
use crate::mesh::{GossipError, Gossiper, PeerName};
use crate::state_file;

/// Name of the mesh gossip channel of policies, namespaces and workloads.
pub const POLICY_CHANNEL: &str = "policy";
/// File in the data dir holding the channel's state.
pub const POLICY_STATE_FILE: &str = "policy.json";

/// One policy in `weft policy list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySummary {
    /// `NAMESPACE/NAME`.
    pub key: String,
    /// Directions it isolates.
    pub types: Vec<String>,
    /// Local workloads it selects.
    pub selects: Vec<String>,
}

/// What `GET /policy/status` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// Changes seen so far.
    pub generation: u64,
    /// The last generation whose ruleset is in force.
    pub applied: u64,
    /// Why the last apply failed, if it did.
    pub error: Option<String>,
    /// Policies known.
    pub policies: usize,
    /// Workloads known (all hosts).
    pub workloads: usize,
    /// Chains in force (isolated local workload × direction).
    pub chains: usize,
}

struct ChainInfo {
    workload: String,
    direction: Direction,
    policies: Vec<String>,
}

struct State {
    store: Store,
    written: Vec<u8>,
    generation: u64,
    driver: Box<dyn FirewallDriver>,
    in_force: Option<Ruleset>,
    /// Drop totals of replaced tables.
    past_drops: DropTotals,
    chains: BTreeMap<String, ChainInfo>,
    error: Option<String>,
    applied: u64,
    /// Set by `reset`: nothing is persisted or enforced any more.
    retired: bool,
    /// The last drops the NFLOG group reported.
    recent: RecentDrops,
}

impl State {
    /// The totals of the chains in force from the table's `counts`.
    fn drops_of(&self, counts: &BTreeMap<String, u64>) -> Vec<DropTotal> {
        totals(
            self.chains.iter().map(|(name, info)| ChainRef {
                chain: name,
                workload: &info.workload,
                direction: info.direction,
                policies: &info.policies,
            }),
            counts,
        )
    }
}

struct Shared {
    state: Mutex<State>,
    path: PathBuf,
    local: String,
    wake: Notify,
    applied: watch::Sender<u64>,
    /// Drop events, to whoever subscribed.
    drop_events: broadcast::Sender<DropEvent>,
}

impl Shared {
    /// A service's state before it applied anything: `store` (read from `path`), rules applied
    /// through `driver`, `local` the router's peer name.
    fn new(store: Store, driver: Box<dyn FirewallDriver>, path: PathBuf, local: String) -> Self {
        Self {
            state: Mutex::new(State {
                store,
                written: Vec::new(),
                generation: 0,
                driver,
                in_force: None,
                past_drops: DropTotals::default(),
                chains: BTreeMap::new(),
                error: None,
                applied: 0,
                retired: false,
                recent: RecentDrops::default(),
            }),
            path,
            local,
            wake: Notify::new(),
            applied: watch::channel(0).0,
            drop_events: broadcast::channel(DROP_EVENTS_QUEUE).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state whole before it can panic, so a poisoned lock is
        // taken over.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Persists a changed store and schedules enforcement; called with the lock held.
    fn settle(&self, st: &mut State) -> Result<(), PolicyError> {
        let bytes = st.store.encode();
        if bytes != st.written && !st.retired {
            state_file::write_atomic(&self.path, &bytes)
                .with_context(|| format!("saving the policy state to {}", self.path.display()))
                .map_err(PolicyError::Persist)?;
            st.written = bytes;
            st.generation += 1;
            self.wake.notify_one();
        }
        Ok(())
    }

    /// See [`PolicyService::record_drop`].
    fn record_drop(&self, prefix: &str, packet: &[u8], time_ms: u64) -> Option<DropEvent> {
        let summary = parse_ipv4(packet)?;
        let event = {
            let mut st = self.lock();
            let info = st.chains.get(prefix.trim())?;
            let event = DropEvent {
                time_ms,
                src: summary.src,
                dst: summary.dst,
                protocol: summary.protocol,
                port: summary.port,
                direction: info.direction,
                workload: info.workload.clone(),
                policies: info.policies.clone(),
            };
            st.recent.push(event.clone());
            event
        };
        // No subscriber is not an error.
        let _ = self.drop_events.send(event.clone());
        Some(event)
    }

    /// Brings the ruleset in force in line with the store.
    fn enforce(&self) {
        let mut st = self.lock();
        if st.retired {
            return;
        }
        let generation = st.generation;
        let rs = compile(&st.store.world(), &self.local);
        if st.in_force.as_ref() != Some(&rs) {
            let full = st
                .in_force
                .as_ref()
                .is_none_or(|old| old.shape() != rs.shape());
            // Replacing the table resets its counters: what they counted is kept once the
            // new table is in force (a failed replace leaves the old one counting).
            let last = if full {
                match st.driver.counters() {
                    Ok(now) => Some(st.drops_of(&now)),
                    Err(e) => {
                        warn!("reading the drop counters: {e}");
                        None
                    }
                }
            } else {
                None
            };
            let old = st.in_force.take();
            match st.driver.apply(old.as_ref(), &rs) {
                Ok(()) => {
                    if full {
                        st.past_drops.add(last.unwrap_or_default());
                        st.chains = rs
                            .chains
                            .iter()
                            .map(|c| {
                                (
                                    c.name.clone(),
                                    ChainInfo {
                                        workload: c.workload_name.clone(),
                                        direction: c.direction,
                                        policies: c.policies.clone(),
                                    },
                                )
                            })
                            .collect();
                    }
                    info!(
                        generation,
                        chains = rs.chains.len(),
                        sets = rs.sets.len(),
                        set_update_only = !full,
                        "policy ruleset in force"
                    );
                    st.in_force = Some(rs);
                    st.error = None;
                }
                Err(e) => {
                    warn!("{e}");
                    st.error = Some(e.to_string());
                    return;
                }
            }
        }
        st.applied = generation;
        drop(st);
        self.applied.send_replace(generation);
    }
}

/// Handle on the running policy service.
#[derive(Clone)]
pub struct PolicyService {
    shared: Arc<Shared>,
    mesh: MeshHandle,
    /// Set while a Kubernetes cluster is the source of truth (see `crate::kube`).
    cluster: Arc<AtomicBool>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Drop events a slow subscriber may lag behind before it misses some.
const DROP_EVENTS_QUEUE: usize = 1024;

/// How long a change waits for its ruleset to be in force before answering.
const APPLY_WAIT: Duration = Duration::from_secs(10);

impl PolicyService {
    /// Starts the service: loads the state file, forgets local workloads that are no longer
    /// attached (`attached`: addresses attached now), registers the `policy` channel and
    /// spawns the enforcement task.
    pub async fn start(
        data_dir: &Path,
        local: PeerName,
        mesh: MeshHandle,
        driver: Box<dyn FirewallDriver>,
        attached: &[Ipv4Addr],
    ) -> anyhow::Result<PolicyService> {
        let path = data_dir.join(POLICY_STATE_FILE);
        let store = match state_file::read_if_exists(&path)? {
            Some(bytes) => Store::decode(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "the policy state file {} cannot be read ({e}); move it away to start \
                     without policies (peers will send theirs back)",
                    path.display()
                )
            })?,
            None => Store::default(),
        };
        let shared = Arc::new(Shared::new(store, driver, path, local.to_string()));
        let service = PolicyService {
            shared: shared.clone(),
            mesh: mesh.clone(),
            cluster: Arc::default(),
        };
        let gone: Vec<Ipv4Addr> = {
            let st = shared.lock();
            st.store
                .live("workload/")
                .filter_map(|(_, v)| match v {
                    Value::Workload(w)
                        if w.host == shared.local && !attached.contains(&w.address) =>
                    {
                        Some(w.address)
                    }
                    _ => None,
                })
                .collect()
        };
        for addr in gone {
            service.put(workload_key(addr), None).await?;
        }
        {
            let mut st = shared.lock();
            shared.settle(&mut st)?;
        }
        mesh.register(
            POLICY_CHANNEL,
            Box::new(PolicyGossip {
                shared: shared.clone(),
            }),
        )
        .await
        .context("registering the policy gossip channel")?;
        let task = shared.clone();
        tokio::spawn(async move {
            loop {
                let s = task.clone();
                if tokio::task::spawn_blocking(move || s.enforce())
                    .await
                    .is_err()
                {
                    warn!("the policy enforcement task panicked");
                }
                task.wake.notified().await;
            }
        });
        Ok(service)
    }

    /// Writes one entry: persisted first, then gossiped, then enforced.
    async fn put(&self, key: String, value: Option<Value>) -> Result<u64, PolicyError> {
        let (update, generation) = {
            let mut st = self.shared.lock();
            let update = st.store.put(key, value, now_ms(), &self.shared.local);
            self.shared.settle(&mut st)?;
            (update, st.generation)
        };
        if self
            .mesh
            .gossip_update(POLICY_CHANNEL, update.encode())
            .await
            .is_err()
        {
            warn!("the mesh is stopped: the policy change stays local");
        }
        Ok(generation)
    }

    /// Waits until the ruleset of `generation` (or a later one) is in force.
    async fn wait_applied(&self, generation: u64) -> Result<(), PolicyError> {
        let mut rx = self.shared.applied.subscribe();
        let done = tokio::time::timeout(APPLY_WAIT, rx.wait_for(|g| *g >= generation)).await;
        match done {
            Ok(Ok(_)) => Ok(()),
            _ => Err(PolicyError::Firewall(
                self.shared.lock().error.clone().unwrap_or_else(|| {
                    format!("the ruleset was not in force within {APPLY_WAIT:?}")
                }),
            )),
        }
    }

    /// Validates every document of `text`, then stores and spreads them all (none when one is
    /// invalid) and waits for the local ruleset; returns the keys applied.
    pub async fn apply(&self, text: &str) -> Result<Vec<String>, PolicyError> {
        self.refuse_if_cluster("policies")?;
        let docs = parse_documents(text)?;
        let mut keys = Vec::new();
        let mut generation = 0;
        for (np, p) in docs {
            generation = self
                .put(policy_key(&p.key), Some(Value::Policy(Box::new(np))))
                .await?;
            keys.push(p.key);
        }
        self.wait_applied(generation).await?;
        Ok(keys)
    }

    /// Deletes policy `NS/NAME`.
    pub async fn delete(&self, key: &str) -> Result<(), PolicyError> {
        self.refuse_if_cluster("policies")?;
        self.get(key)?;
        let generation = self.put(policy_key(key), None).await?;
        self.wait_applied(generation).await
    }

    /// Policy `NS/NAME` as stored.
    pub fn get(&self, key: &str) -> Result<NetworkPolicy, PolicyError> {
        match self.shared.lock().store.get(&policy_key(key)) {
            Some(Value::Policy(np)) => Ok((**np).clone()),
            _ => Err(PolicyError::NotFound(format!(
                "no policy {key} (give NAMESPACE/NAME as `weft policy list` shows it)"
            ))),
        }
    }

    /// Every policy, with the local workloads it selects.
    pub fn list(&self) -> Vec<PolicySummary> {
        let world = self.shared.lock().store.world();
        world
            .policies
            .values()
            .map(|p| {
                let mut types = Vec::new();
                if p.ingress.is_some() {
                    types.push("Ingress".to_string());
                }
                if p.egress.is_some() {
                    types.push("Egress".to_string());
                }
                PolicySummary {
                    key: p.key.clone(),
                    types,
                    selects: world
                        .workloads
                        .values()
                        .filter(|w| {
                            w.host == self.shared.local
                                && w.namespace == p.namespace
                                && p.selector.matches(&w.labels)
                        })
                        .map(|w| format!("{}/{}", w.namespace, w.name))
                        .collect(),
                }
            })
            .collect()
    }

    /// Every workload known, of every router (for flow accounting's names).
    pub fn workloads(&self) -> Vec<WorkloadMeta> {
        self.shared
            .lock()
            .store
            .world()
            .workloads
            .into_values()
            .collect()
    }

    /// Records a local workload (after attach), or replaces its record.
    pub async fn workload_up(&self, mut meta: WorkloadMeta) -> Result<(), PolicyError> {
        meta.host = self.shared.local.clone();
        let generation = self
            .put(workload_key(meta.address), Some(Value::Workload(meta)))
            .await?;
        self.wait_applied(generation).await
    }

    /// Forgets a workload (after detach).
    pub async fn workload_down(&self, address: Ipv4Addr) -> Result<(), PolicyError> {
        if self
            .shared
            .lock()
            .store
            .get(&workload_key(address))
            .is_none()
        {
            return Ok(());
        }
        let generation = self.put(workload_key(address), None).await?;
        self.wait_applied(generation).await
    }

    /// Changes the labels of the workload named `target` (`NAME`, `NAMESPACE/NAME` or its
    /// address); returns its new record.
    pub async fn label_workload(
        &self,
        target: &str,
        edits: &[LabelEdit],
    ) -> Result<WorkloadMeta, PolicyError> {
        self.refuse_if_cluster("pod labels")?;
        let mut meta = {
            let st = self.shared.lock();
            let found: Vec<WorkloadMeta> = st
                .store
                .live("workload/")
                .filter_map(|(_, v)| match v {
                    Value::Workload(w)
                        if w.address.to_string() == target
                            || w.name == target
                            || format!("{}/{}", w.namespace, w.name) == target =>
                    {
                        Some(w.clone())
                    }
                    _ => None,
                })
                .collect();
            match found.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(PolicyError::NotFound(format!(
                        "no workload {target:?}: give its name, NAMESPACE/NAME or address"
                    )));
                }
                _ => {
                    return Err(PolicyError::Refused(format!(
                        "{target:?} names {} workloads: give NAMESPACE/NAME or the address",
                        found.len()
                    )));
                }
            }
        };
        for e in edits {
            e.apply(&mut meta.labels);
        }
        let generation = self
            .put(
                workload_key(meta.address),
                Some(Value::Workload(meta.clone())),
            )
            .await?;
        self.wait_applied(generation).await?;
        Ok(meta)
    }

    /// Changes the labels of namespace `ns`; returns them.
    pub async fn label_namespace(
        &self,
        ns: &str,
        edits: &[LabelEdit],
    ) -> Result<BTreeMap<String, String>, PolicyError> {
        self.refuse_if_cluster("namespace labels")?;
        let mut labels = match self.shared.lock().store.get(&namespace_key(ns)) {
            Some(Value::Namespace(l)) => l.clone(),
            _ => BTreeMap::new(),
        };
        for e in edits {
            e.apply(&mut labels);
        }
        let generation = self
            .put(namespace_key(ns), Some(Value::Namespace(labels.clone())))
            .await?;
        self.wait_applied(generation).await?;
        Ok(labels)
    }

    /// Makes a Kubernetes cluster the source of truth (`on`) or not: while it is, the CLI's
    /// edits of policies and labels are refused and only [`PolicyService::sync`] writes them.
    pub fn set_cluster_owned(&self, on: bool) {
        self.cluster.store(on, Ordering::SeqCst);
    }

    /// Whether a Kubernetes cluster is the source of truth.
    pub fn cluster_owned(&self) -> bool {
        self.cluster.load(Ordering::SeqCst)
    }

    fn refuse_if_cluster(&self, what: &str) -> Result<(), PolicyError> {
        if self.cluster_owned() {
            return Err(PolicyError::Refused(format!(
                "{what} come from the Kubernetes cluster this router watches (--kube): change \
                 them with kubectl (NetworkPolicy objects, pod and namespace labels)"
            )));
        }
        Ok(())
    }

    /// Writes `value` at `key` (`None` deletes) for the Kubernetes watcher, unless the store
    /// holds exactly that already: routers watching the same cluster then write each change at
    /// most once each, and an unchanged object re-listed writes nothing. Does not wait for
    /// enforcement; returns whether it wrote.
    pub async fn sync(&self, key: String, value: Option<Value>) -> Result<bool, PolicyError> {
        if self.shared.lock().store.get(&key) == value.as_ref() {
            return Ok(false);
        }
        self.put(key, value).await?;
        Ok(true)
    }

    /// The live entries whose key starts with `prefix` (`policy/`, `namespace/`, `workload/`).
    pub fn entries(&self, prefix: &str) -> Vec<(String, Value)> {
        let st = self.shared.lock();
        st.store
            .live(prefix)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// This router's peer name, as the `host` of its workloads' records.
    pub fn local_name(&self) -> &str {
        &self.shared.local
    }

    /// Follows the generation in force (it changes after every enforced change).
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.shared.applied.subscribe()
    }

    /// Exact drop counts (nftables counters) per policy, local workload, direction,
    /// protocol and port, since the start.
    pub fn drops(&self) -> Result<Vec<DropTotal>, PolicyError> {
        let mut st = self.shared.lock();
        let now = st.driver.counters()?;
        Ok(st.past_drops.with(st.drops_of(&now)))
    }

    /// Drop events from now on: one per packet the (rate-limited) NFLOG group reports, so a
    /// sample of the drops; exact counts are in [`PolicyService::drops`].
    pub fn subscribe_drops(&self) -> broadcast::Receiver<DropEvent> {
        self.shared.drop_events.subscribe()
    }

    /// The last drop events (at most [`super::drops::RECENT_DROPS`]), oldest first.
    pub fn recent_drops(&self) -> Vec<DropEvent> {
        self.shared.lock().recent.events()
    }

    /// Records a packet the NFLOG group reported with log prefix `prefix` (the chain's
    /// name) and publishes it; returns the event, or `None` when the prefix names no chain
    /// of this router or the packet is not IPv4.
    pub fn record_drop(&self, prefix: &str, packet: &[u8], time_ms: u64) -> Option<DropEvent> {
        self.shared.record_drop(prefix, packet, time_ms)
    }

    /// Generation counters and sizes.
    pub fn status(&self) -> PolicyStatus {
        let st = self.shared.lock();
        let world = st.store.world();
        PolicyStatus {
            generation: st.generation,
            applied: st.applied,
            error: st.error.clone(),
            policies: world.policies.len(),
            workloads: world.workloads.len(),
            chains: st.in_force.as_ref().map_or(0, |r| r.chains.len()),
        }
    }

    /// For `weft reset`: removes table `inet weft` and the state file, and enforces nothing
    /// from then on; returns the path of the state file removed.
    pub fn reset(&self) -> Result<Option<PathBuf>, PolicyError> {
        let mut st = self.shared.lock();
        st.retired = true;
        st.driver.remove()?;
        st.in_force = None;
        st.recent.clear();
        match std::fs::remove_file(&self.shared.path) {
            Ok(()) => Ok(Some(self.shared.path.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PolicyError::Persist(anyhow::anyhow!(
                "removing {}: {e}",
                self.shared.path.display()
            ))),
        }
    }
}

struct PolicyGossip {
    shared: Arc<Shared>,
}

impl Gossiper for PolicyGossip {
    fn full_state(&self) -> Vec<u8> {
        self.shared.lock().store.encode()
    }

    fn merge(&mut self, _src: PeerName, update: &[u8]) -> Result<Option<Vec<u8>>, GossipError> {
        let other = Store::decode(update).map_err(|reason| GossipError::Decode {
            channel: POLICY_CHANNEL.into(),
            reason,
        })?;
        let mut st = self.shared.lock();
        let news = st.store.merge(other);
        if news.is_empty() {
            return Ok(None);
        }
        self.shared
            .settle(&mut st)
            .map_err(|e| GossipError::new(e.to_string()))?;
        Ok(Some(news.encode()))
    }

    fn on_unicast(&mut self, _src: PeerName, _payload: &[u8]) -> Result<(), GossipError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::nft::recording::RecordingDriver;
    use crate::policy::validate::parse_documents;

    fn shared(dir: &Path, driver: RecordingDriver) -> Shared {
        Shared::new(
            Store::default(),
            Box::new(driver),
            dir.join(POLICY_STATE_FILE),
            "h0".into(),
        )
    }

    fn workload(last: u8, pod: &str, host: &str) -> Value {
        Value::Workload(WorkloadMeta {
            address: Ipv4Addr::new(10, 32, 0, last),
            name: pod.into(),
            namespace: "x".into(),
            labels: [("pod".to_string(), pod.to_string())].into(),
            ports: Vec::new(),
            host: host.into(),
        })
    }

    fn put(s: &Shared, key: String, value: Option<Value>) {
        let mut st = s.lock();
        st.store.put(key, value, 1, "h0");
        s.settle(&mut st).unwrap();
    }

    /// Puts policy `x/p` (pods `a` admit ingress from pods `b` only) and the local workload
    /// 10.32.0.1 (pod `a`), then enforces.
    fn enforce_a_policy_on_pod_a(s: &Shared) {
        let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]\n";
        let (np, _) = parse_documents(text).unwrap().remove(0);
        put(s, policy_key("x/p"), Some(Value::Policy(Box::new(np))));
        put(
            s,
            workload_key(Ipv4Addr::new(10, 32, 0, 1)),
            Some(workload(1, "a", "h0")),
        );
        s.enforce();
    }

    fn assert_in_force(s: &Shared) {
        let st = s.lock();
        assert_eq!(st.applied, st.generation);
        assert!(st.error.is_none());
    }

    #[test]
    fn enforcement_replaces_then_updates_sets_and_retries_after_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let driver = RecordingDriver::default();
        let s = shared(dir.path(), driver.clone());
        enforce_a_policy_on_pod_a(&s);
        assert_in_force(&s);
        let first = driver.batches.lock().unwrap().last().cloned().unwrap();
        assert!(first.contains(r#"{"delete":{"table""#), "{first}");
        assert!(first.contains("ing-10-32-0-1"), "{first}");

        // A remote workload joining the peer selector: only set elements change.
        put(
            &s,
            workload_key(Ipv4Addr::new(10, 32, 0, 2)),
            Some(workload(2, "b", "h1")),
        );
        s.enforce();
        let second = driver.batches.lock().unwrap().last().cloned().unwrap();
        assert!(!second.contains("delete"), "{second}");
        assert!(second.contains(r#""elem":["10.32.0.2"]"#), "{second}");

        // A failed apply leaves nothing recorded as in force; the next run replaces it all.
        *driver.fail.lock().unwrap() = true;
        put(
            &s,
            workload_key(Ipv4Addr::new(10, 32, 0, 3)),
            Some(workload(3, "a", "h0")),
        );
        s.enforce();
        {
            let st = s.lock();
            assert!(st.error.is_some());
            assert!(st.applied < st.generation);
        }
        let n = driver.batches.lock().unwrap().len();
        s.enforce();
        assert_eq!(driver.batches.lock().unwrap().len(), n + 1);
        assert_in_force(&s);
        let third = driver.batches.lock().unwrap().last().cloned().unwrap();
        assert!(third.contains(r#"{"delete":{"table""#), "{third}");
        assert!(third.contains("ing-10-32-0-3"), "{third}");
        // The state was persisted.
        assert!(dir.path().join(POLICY_STATE_FILE).exists());
    }

    #[test]
    fn a_logged_packet_becomes_a_drop_event_of_its_chain() {
        let dir = tempfile::tempdir().unwrap();
        let s = shared(dir.path(), RecordingDriver::default());
        enforce_a_policy_on_pod_a(&s);
        let mut rx = s.drop_events.subscribe();
        // TCP from 10.32.0.9:40000 to 10.32.0.1:80.
        let mut packet = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
        packet.extend_from_slice(&[10, 32, 0, 9, 10, 32, 0, 1]);
        packet.extend_from_slice(&[0x9c, 0x40, 0, 80, 0, 0, 0, 0]);
        let event = s.record_drop("ing-10-32-0-1", &packet, 7).unwrap();
        assert_eq!(event.direction, Direction::Ingress);
        assert_eq!(event.workload, "x/a");
        assert_eq!(event.policies, vec!["x/p".to_string()]);
        assert_eq!(event.port, Some(80));
        assert_eq!(event.src, Ipv4Addr::new(10, 32, 0, 9));
        assert_eq!(rx.try_recv().unwrap(), event);
        assert_eq!(s.lock().recent.events(), vec![event]);
        assert!(s.record_drop("ing-10-32-0-77", &packet, 8).is_none());
        assert!(s.record_drop("ing-10-32-0-1", &[0x60; 40], 8).is_none());
        assert_eq!(s.lock().recent.events().len(), 1);
    }
}
