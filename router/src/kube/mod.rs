//! The Kubernetes watcher: with `--kubeconfig` or in a pod (`--kube=auto|on|off`), watches
//! Pods, Namespaces and NetworkPolicies of the whole cluster and feeds them into the policy
//! model the CLI feeds otherwise, which the cluster then owns (the CLI's edits are refused).
//!
//! - NetworkPolicies → the policy store (validated; an invalid one is logged and skipped).
//! - Namespaces → namespace labels.
//! - Pods → labels and named container ports of this router's workloads, matched by address
//!   or by the namespace and name CNI recorded; remote pods' labels come from their routers
//!   through the mesh.
//!
//! Every router watches the same objects and writes only what differs from the store, so a
//! change is written at most once per router and the mesh settles on one version.

pub mod args;
pub mod convert;
pub mod error;
mod feed;
mod watch;

#[cfg(test)]
mod tests;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy as KubePolicy;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tokio::task::JoinHandle;
use tracing::info;

pub use args::{ConfigSource, KubeArgs, KubeMode};
pub use error::KubeError;

use crate::policy::PolicyService;

/// The running watchers; dropping it leaves them running, [`KubeWatcher::stop`] ends them.
pub struct KubeWatcher {
    tasks: Vec<JoinHandle<()>>,
}

impl KubeWatcher {
    /// Ends the watchers.
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Starts watching when `args` (and the environment) say so: makes the cluster the source of
/// truth of `policy` and spawns the watchers. `None` when not watching.
pub async fn start(
    args: &KubeArgs,
    policy: &PolicyService,
) -> Result<Option<KubeWatcher>, KubeError> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let Some(source) = args.source(in_cluster) else {
        return Ok(None);
    };
    let config = config(&source).await?;
    info!(cluster = %config.cluster_url, "watching Kubernetes pods, namespaces and network policies");
    let client = Client::try_from(config).map_err(|e| KubeError::Client(e.to_string()))?;
    Ok(Some(spawn(client, policy)))
}

async fn config(source: &ConfigSource) -> Result<Config, KubeError> {
    match source {
        ConfigSource::File(path) => {
            let bad = |reason: String| KubeError::Kubeconfig {
                path: path.display().to_string(),
                reason,
            };
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| bad(e.to_string()))
        }
        ConfigSource::InCluster => {
            Config::incluster().map_err(|e| KubeError::InCluster(e.to_string()))
        }
        ConfigSource::Infer => Config::infer()
            .await
            .map_err(|e| KubeError::NoConfig(e.to_string())),
    }
}

fn spawn(client: Client, policy: &PolicyService) -> KubeWatcher {
    policy.set_cluster_owned(true);
    let tasks = vec![
        tokio::spawn(watch::run(
            "NetworkPolicy",
            Api::<KubePolicy>::all(client.clone()),
            feed::Policies(policy.clone()),
        )),
        tokio::spawn(watch::run(
            "Namespace",
            Api::<Namespace>::all(client.clone()),
            feed::Namespaces(policy.clone()),
        )),
        tokio::spawn(watch::run_pods(
            Api::<Pod>::all(client),
            feed::Pods::new(policy.clone()),
        )),
    ];
    KubeWatcher { tasks }
}
