//! Flags of the Kubernetes watcher: `weft launch --kube auto|on|off --kubeconfig PATH`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Whether the router watches a Kubernetes API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KubeMode {
    /// Watch when `--kubeconfig` is given or the router runs in a pod
    /// (`KUBERNETES_SERVICE_HOST` set).
    Auto,
    /// Always watch; the start fails without a usable configuration.
    On,
    /// Never watch: policies and labels come from the command line.
    Off,
}

/// `weft launch` flags of the Kubernetes watcher.
#[derive(Debug, Clone, Args)]
pub struct KubeArgs {
    /// Watch Pods, Namespaces and NetworkPolicies of a Kubernetes cluster, which then owns
    /// policies and labels (the CLI refuses to edit them).
    #[arg(long = "kube", value_enum, default_value_t = KubeMode::Auto)]
    pub mode: KubeMode,
    /// kubeconfig file of the cluster to watch (else in-cluster, or `KUBECONFIG` with
    /// `--kube=on`).
    #[arg(long, env = "WEFT_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

/// Where the watcher's configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// The file given with `--kubeconfig`.
    File(PathBuf),
    /// The pod's service account.
    InCluster,
    /// Whatever the environment offers (`KUBECONFIG`, `~/.kube/config`, in-cluster).
    Infer,
}

impl KubeArgs {
    /// Whether to watch and with which configuration; `in_cluster` tells whether
    /// `KUBERNETES_SERVICE_HOST` is set.
    pub fn source(&self, in_cluster: bool) -> Option<ConfigSource> {
        match (self.mode, &self.kubeconfig) {
            (KubeMode::Off, _) => None,
            (_, Some(path)) => Some(ConfigSource::File(path.clone())),
            (KubeMode::Auto, None) if in_cluster => Some(ConfigSource::InCluster),
            (KubeMode::Auto, None) => None,
            (KubeMode::On, None) if in_cluster => Some(ConfigSource::InCluster),
            (KubeMode::On, None) => Some(ConfigSource::Infer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(mode: KubeMode, path: Option<&str>) -> KubeArgs {
        KubeArgs {
            mode,
            kubeconfig: path.map(PathBuf::from),
        }
    }

    #[test]
    fn auto_watches_only_with_a_kubeconfig_or_in_a_pod() {
        let file = Some(ConfigSource::File("/k".into()));
        assert_eq!(args(KubeMode::Auto, None).source(false), None);
        assert_eq!(
            args(KubeMode::Auto, None).source(true),
            Some(ConfigSource::InCluster)
        );
        assert_eq!(args(KubeMode::Auto, Some("/k")).source(true), file);
        assert_eq!(args(KubeMode::On, Some("/k")).source(false), file);
        assert_eq!(
            args(KubeMode::On, None).source(false),
            Some(ConfigSource::Infer)
        );
        assert_eq!(args(KubeMode::Off, Some("/k")).source(true), None);
    }
}
