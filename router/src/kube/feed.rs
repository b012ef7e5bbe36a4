//! What each watched kind changes in the policy model. A feed sees the watcher's events; after
//! a (re-)list it is told which objects exist, so what vanished while the watch was down is
//! removed too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy as KubePolicy;
use tracing::{info, warn};

use super::convert::{self, PodInfo, object_key};
use crate::policy::PolicyService;
use crate::policy::model::WorkloadMeta;
use crate::policy::store::{Value, namespace_key, policy_key, workload_key};

/// One watched kind.
pub(crate) trait Feed<K> {
    /// The key (`NAMESPACE/NAME` or `NAME`) of an object.
    fn key(&self, obj: &K) -> String;
    /// An object was listed, added or changed.
    async fn apply(&mut self, obj: K);
    /// An object was deleted.
    async fn delete(&mut self, obj: K);
    /// A (re-)list is complete: `listed` holds the key of every object that exists.
    async fn relisted(&mut self, listed: &BTreeSet<String>);
}

/// Writes an entry, logging a failure (the watcher goes on with the next event).
async fn write(policy: &PolicyService, key: String, value: Option<Value>) {
    match policy.sync(key.clone(), value).await {
        Ok(true) => info!(%key, "changed from the Kubernetes cluster"),
        Ok(false) => {}
        Err(e) => warn!(%key, "storing a change from the Kubernetes cluster: {e}"),
    }
}

/// NetworkPolicies → the policy store.
pub(crate) struct Policies(pub(crate) PolicyService);

impl Feed<KubePolicy> for Policies {
    fn key(&self, obj: &KubePolicy) -> String {
        object_key(&obj.metadata)
    }

    async fn apply(&mut self, obj: KubePolicy) {
        match convert::network_policy(&obj) {
            Ok(np) => {
                write(
                    &self.0,
                    policy_key(&np.key()),
                    Some(Value::Policy(Box::new(np))),
                )
                .await
            }
            Err(e) => warn!("skipping NetworkPolicy {}: {e}", self.key(&obj)),
        }
    }

    async fn delete(&mut self, obj: KubePolicy) {
        write(&self.0, policy_key(&self.key(&obj)), None).await;
    }

    async fn relisted(&mut self, listed: &BTreeSet<String>) {
        for (key, _) in self.0.entries("policy/") {
            if let Some(name) = key.strip_prefix("policy/")
                && !listed.contains(name)
            {
                write(&self.0, key.clone(), None).await;
            }
        }
    }
}

/// Namespaces → the labels namespace selectors match.
pub(crate) struct Namespaces(pub(crate) PolicyService);

impl Feed<Namespace> for Namespaces {
    fn key(&self, obj: &Namespace) -> String {
        obj.metadata.name.clone().unwrap_or_default()
    }

    async fn apply(&mut self, obj: Namespace) {
        let (name, labels) = convert::namespace(&obj);
        write(
            &self.0,
            namespace_key(&name),
            Some(Value::Namespace(labels)),
        )
        .await;
    }

    async fn delete(&mut self, obj: Namespace) {
        write(&self.0, namespace_key(&self.key(&obj)), None).await;
    }

    async fn relisted(&mut self, listed: &BTreeSet<String>) {
        for (key, _) in self.0.entries("namespace/") {
            if let Some(name) = key.strip_prefix("namespace/")
                && !listed.contains(name)
            {
                write(&self.0, key.clone(), None).await;
            }
        }
    }
}

/// Pods → the labels and named ports of this router's workloads. Every router watches every
/// pod but writes only the records of its own workloads (remote ones arrive through the mesh
/// from their router), so no two routers write the same workload.
#[derive(Clone)]
pub(crate) struct Pods {
    policy: PolicyService,
    pods: Arc<Mutex<BTreeMap<String, PodInfo>>>,
}

impl Pods {
    /// A feed with no pod known yet.
    pub(crate) fn new(policy: PolicyService) -> Pods {
        Pods {
            policy,
            pods: Arc::default(),
        }
    }

    /// The policy service it writes to.
    pub(crate) fn policy(&self) -> &PolicyService {
        &self.policy
    }

    fn pods(&self) -> MutexGuard<'_, BTreeMap<String, PodInfo>> {
        // Every update leaves the map whole, so a poisoned lock is taken over.
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives each local workload that is a known pod (same address, else same namespace and
    /// name, as CNI records it from `K8S_POD_NAMESPACE`/`K8S_POD_NAME`) the pod's labels and
    /// named ports. Run after every pod event and whenever the policy store changed (a pod's
    /// workload may be attached after its pod was seen).
    pub(crate) async fn reconcile(&self) {
        let local = self.policy.local_name().to_string();
        let pods = self.pods().clone();
        for (_, value) in self.policy.entries("workload/") {
            let Value::Workload(w) = value else {
                continue;
            };
            if w.host != local {
                continue;
            }
            let Some(p) = pod_of(&pods, &w) else {
                continue;
            };
            if w.labels != p.labels || w.ports != p.ports {
                let meta = WorkloadMeta {
                    labels: p.labels.clone(),
                    ports: p.ports.clone(),
                    ..w
                };
                write(
                    &self.policy,
                    workload_key(meta.address),
                    Some(Value::Workload(meta)),
                )
                .await;
            }
        }
    }
}

/// The pod that is workload `w`: the one with its address, else the one with its namespace
/// and name that has no other address.
fn pod_of<'a>(pods: &'a BTreeMap<String, PodInfo>, w: &WorkloadMeta) -> Option<&'a PodInfo> {
    pods.values().find(|p| p.ip == Some(w.address)).or_else(|| {
        pods.get(&format!("{}/{}", w.namespace, w.name))
            .filter(|p| p.ip.is_none_or(|ip| ip == w.address))
    })
}

impl Feed<Pod> for Pods {
    fn key(&self, obj: &Pod) -> String {
        object_key(&obj.metadata)
    }

    async fn apply(&mut self, obj: Pod) {
        let key = self.key(&obj);
        self.pods().insert(key, convert::pod(&obj));
        self.reconcile().await;
    }

    async fn delete(&mut self, obj: Pod) {
        let key = self.key(&obj);
        self.pods().remove(&key);
    }

    async fn relisted(&mut self, listed: &BTreeSet<String>) {
        self.pods().retain(|k, _| listed.contains(k));
        self.reconcile().await;
    }
}
