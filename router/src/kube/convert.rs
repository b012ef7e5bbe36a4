//! Kubernetes objects → what the policy model holds: a NetworkPolicy as the policy store keeps
//! it, a namespace's labels, a pod's address, labels and named container ports. Pure functions.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy as KubePolicy;

use crate::policy::PolicyError;
use crate::policy::labels::Labels;
use crate::policy::model::{NamedPort, Protocol, check_port_name};
use crate::policy::spec::{API_VERSION, KIND, NetworkPolicy, ObjectMeta};
use crate::policy::validate::validate;

/// `NAMESPACE/NAME` of a namespaced object (`default` namespace when unset).
pub fn object_key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The policy as the store keeps it: name, namespace, labels, uid and spec. The resource
/// version, annotations and managed fields are left out, so every router watching the same
/// object writes the same value (and re-listing an unchanged object writes nothing).
/// Validated as `weft policy apply` would; an invalid policy is an error naming the field.
pub fn network_policy(obj: &KubePolicy) -> Result<NetworkPolicy, PolicyError> {
    let key = object_key(&obj.metadata);
    let invalid = |field: &str, reason: String| PolicyError::Invalid {
        doc: 1,
        name: key.clone(),
        field: field.to_string(),
        reason,
    };
    let mut spec = serde_json::to_value(&obj.spec)
        .map_err(|e| invalid("spec", e.to_string()))?
        .as_object()
        .cloned()
        .unwrap_or_default();
    // An absent podSelector selects every pod, as `{}` does.
    spec.entry("podSelector")
        .or_insert_with(|| serde_json::json!({}));
    let spec = serde_path_to_error::deserialize(serde_json::Value::Object(spec)).map_err(|e| {
        let path = e.path().to_string();
        invalid(&format!("spec.{path}"), e.into_inner().to_string())
    })?;
    let np = NetworkPolicy {
        api_version: API_VERSION.to_string(),
        kind: KIND.to_string(),
        metadata: ObjectMeta {
            name: obj.metadata.name.clone().unwrap_or_default(),
            namespace: obj.metadata.namespace.clone(),
            labels: obj.metadata.labels.clone().unwrap_or_default(),
            uid: obj.metadata.uid.clone(),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    };
    validate(&np, 1)?;
    Ok(np)
}

/// A namespace's name and labels.
pub fn namespace(obj: &Namespace) -> (String, Labels) {
    (
        obj.metadata.name.clone().unwrap_or_default(),
        obj.metadata.labels.clone().unwrap_or_default(),
    )
}

/// What the watcher keeps of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its IPv4 address, once it has one (never the host's: host-network pods have none here).
    pub ip: Option<Ipv4Addr>,
    /// Its labels.
    pub labels: Labels,
    /// The named ports of its containers (invalid or duplicate names left out).
    pub ports: Vec<NamedPort>,
}

/// The pod's [`PodInfo`].
pub fn pod(obj: &Pod) -> PodInfo {
    let spec = obj.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let ip = obj
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
        .filter(|_| !host_network);
    let mut ports: BTreeMap<String, NamedPort> = BTreeMap::new();
    for c in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
        for p in c.ports.as_deref().unwrap_or_default() {
            let Some(name) = p.name.as_deref() else {
                continue;
            };
            let protocol = Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"));
            let port = u16::try_from(p.container_port).ok().filter(|p| *p > 0);
            if let (Ok(()), Some(protocol), Some(port)) = (check_port_name(name), protocol, port) {
                ports.entry(name.to_string()).or_insert(NamedPort {
                    name: name.to_string(),
                    port,
                    protocol,
                });
            }
        }
    }
    PodInfo {
        namespace: obj
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: obj.metadata.name.clone().unwrap_or_default(),
        ip,
        labels: obj.metadata.labels.clone().unwrap_or_default(),
        ports: ports.into_values().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_cluster_policy_keeps_its_spec_and_drops_what_changes_per_write() {
        let obj: KubePolicy = from_json(serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "x", "resourceVersion": "42", "uid": "u1",
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"podSelector": {"matchLabels": {"pod": "a"}},
                     "ingress": [{"ports": [{"port": "http", "protocol": "TCP"},
                                            {"port": 8000, "endPort": 8080}]}]}
        }));
        let np = network_policy(&obj).unwrap();
        assert_eq!(np.key(), "x/p");
        assert_eq!(np.metadata.resource_version, None);
        assert!(np.metadata.annotations.is_empty());
        assert_eq!(np.metadata.uid.as_deref(), Some("u1"));
        let mut bumped = obj.clone();
        bumped.metadata.resource_version = Some("43".into());
        assert_eq!(network_policy(&bumped).unwrap(), np);
        let ports = np.spec.ingress.as_ref().unwrap()[0].ports.as_ref().unwrap();
        assert_eq!(ports[1].end_port, Some(8080));

        // No podSelector: every pod of the namespace.
        let all: KubePolicy = from_json(serde_json::json!({
            "metadata": {"name": "all", "namespace": "x"}, "spec": {}
        }));
        assert!(
            network_policy(&all)
                .unwrap()
                .spec
                .pod_selector
                .match_labels
                .is_empty()
        );
    }

    #[test]
    fn an_invalid_cluster_policy_is_an_error_naming_the_field() {
        let obj: KubePolicy = from_json(serde_json::json!({
            "metadata": {"name": "bad", "namespace": "x"},
            "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "300.1.0.0/16"}}]}]}
        }));
        let e = network_policy(&obj).unwrap_err().to_string();
        assert!(e.contains("x/bad") && e.contains("ipBlock.cidr"), "{e}");
    }

    #[test]
    fn a_pod_gives_its_address_labels_and_valid_named_ports() {
        let obj: Pod = from_json(serde_json::json!({
            "metadata": {"name": "web", "namespace": "x", "labels": {"app": "web"}},
            "spec": {"containers": [
                {"name": "c", "ports": [{"name": "http", "containerPort": 80},
                                        {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                        {"containerPort": 9000},
                                        {"name": "Bad_Name", "containerPort": 81}]},
                {"name": "d", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"podIP": "10.32.0.5"}
        }));
        let p = pod(&obj);
        assert_eq!(p.ip, Some(Ipv4Addr::new(10, 32, 0, 5)));
        assert_eq!(p.labels.get("app").map(String::as_str), Some("web"));
        let named: Vec<_> = p
            .ports
            .iter()
            .map(|n| (n.name.as_str(), n.port, n.protocol))
            .collect();
        assert_eq!(
            named,
            [("dns", 53, Protocol::Udp), ("http", 80, Protocol::Tcp)]
        );

        let mut host: Pod = obj.clone();
        if let Some(s) = host.spec.as_mut() {
            s.host_network = Some(true);
        }
        assert_eq!(pod(&host).ip, None);
    }
}
