//! The one error type of the Kubernetes watcher.

/// Everything starting the Kubernetes watcher can fail with.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// `--kube=on` without a kubeconfig, an in-cluster service account or `KUBECONFIG`.
    #[error(
        "--kube=on but no Kubernetes configuration was found ({0}): give --kubeconfig PATH, \
         set KUBECONFIG, or run the router in a pod with a service account"
    )]
    NoConfig(String),
    /// The kubeconfig file could not be read or used.
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig {
        /// The file given with `--kubeconfig`.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The in-cluster configuration (service account token, `KUBERNETES_SERVICE_HOST`) is
    /// unusable.
    #[error("in-cluster Kubernetes configuration: {0}")]
    InCluster(String),
    /// The API client could not be built from the configuration.
    #[error("building the Kubernetes API client: {0}")]
    Client(String),
}
