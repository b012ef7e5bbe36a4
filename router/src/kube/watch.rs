//! Runs one `kube::runtime::watcher` per kind (list, then watch from the list's
//! resourceVersion; a broken watch resumes from the last version seen; 410 Gone re-lists) and
//! hands its events to the kind's feed. Errors are logged and retried with back-off; nothing a
//! cluster sends stops a watcher.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_stream};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::feed::{Feed, Pods};

/// Watches `api` and feeds `feed` until the task is aborted.
pub(crate) async fn run<K, F>(what: &'static str, api: Api<K>, mut feed: F)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    F: Feed<K>,
{
    let mut stream = watch_stream(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing: Option<BTreeSet<String>> = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(Event::Init) => listing = Some(BTreeSet::new()),
            Ok(Event::InitApply(obj)) => {
                if let Some(l) = listing.as_mut() {
                    l.insert(feed.key(&obj));
                }
                feed.apply(obj).await;
            }
            Ok(Event::InitDone) => {
                let listed = listing.take().unwrap_or_default();
                info!(
                    kind = what,
                    objects = listed.len(),
                    "Kubernetes list complete"
                );
                feed.relisted(&listed).await;
            }
            Ok(Event::Apply(obj)) => feed.apply(obj).await,
            Ok(Event::Delete(obj)) => feed.delete(obj).await,
            Err(e) => warn!(kind = what, "Kubernetes watch: {e}"),
        }
    }
}

/// How often pods are matched to local workloads without a pod event or a store change.
const POD_RECONCILE: Duration = Duration::from_secs(5);

/// [`run`] for pods, also matching pods to local workloads whenever the policy store changes
/// (CNI attaches a pod's workload around the time the pod gets its address).
pub(crate) async fn run_pods(api: Api<k8s_openapi::api::core::v1::Pod>, feed: Pods) {
    let mut changes = feed.policy().applied();
    let mut tick = tokio::time::interval(POD_RECONCILE);
    let reconciler = feed.clone();
    let watch = run("Pod", api, feed);
    tokio::pin!(watch);
    loop {
        tokio::select! {
            () = &mut watch => return,
            r = changes.changed() => {
                if r.is_err() {
                    return;
                }
                reconciler.reconcile().await;
            }
            _ = tick.tick() => reconciler.reconcile().await,
        }
    }
}
