//! The `networking.k8s.io/v1` NetworkPolicy document, as Kubernetes defines it: the serde
//! shapes only (unknown fields refused), validated in [`super::validate`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The only `apiVersion` accepted.
pub const API_VERSION: &str = "networking.k8s.io/v1";
/// The only `kind` accepted.
pub const KIND: &str = "NetworkPolicy";
/// Namespace of a policy (or workload) that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// One NetworkPolicy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkPolicy {
    /// Must be [`API_VERSION`].
    pub api_version: String,
    /// Must be [`KIND`].
    pub kind: String,
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// What the policy says.
    pub spec: PolicySpec,
    /// Kubernetes' status block, kept as given and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

impl NetworkPolicy {
    /// `NAMESPACE/NAME`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace(), self.metadata.name)
    }

    /// The policy's namespace ([`DEFAULT_NAMESPACE`] when unset).
    pub fn namespace(&self) -> &str {
        self.metadata
            .namespace
            .as_deref()
            .unwrap_or(DEFAULT_NAMESPACE)
    }

    /// Whether the policy applies to ingress (explicit `policyTypes`, else always).
    pub fn has_ingress(&self) -> bool {
        match &self.spec.policy_types {
            Some(t) => t.contains(&PolicyType::Ingress),
            None => true,
        }
    }

    /// Whether the policy applies to egress (explicit `policyTypes`, else when it has egress
    /// rules).
    pub fn has_egress(&self) -> bool {
        match &self.spec.policy_types {
            Some(t) => t.contains(&PolicyType::Egress),
            None => self.spec.egress.is_some(),
        }
    }
}

/// The subset of Kubernetes' ObjectMeta a policy may carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectMeta {
    /// The policy's name.
    pub name: String,
    /// Its namespace; [`DEFAULT_NAMESPACE`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels of the policy object itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the policy object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Set by Kubernetes; kept, ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Set by Kubernetes; kept, ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Set by Kubernetes; kept, ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Set by Kubernetes; kept, ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// Set by Kubernetes; kept, ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_fields: Option<serde_json::Value>,
}

/// `spec` of a NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicySpec {
    /// The workloads of the policy's namespace it applies to; `{}` selects all of them.
    pub pod_selector: LabelSelector,
    /// Ingress, Egress or both; derived from the rules when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_types: Option<Vec<PolicyType>>,
    /// Allowed incoming traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<IngressRule>>,
    /// Allowed outgoing traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<EgressRule>>,
}

/// A direction a policy isolates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PolicyType {
    /// Incoming traffic.
    Ingress,
    /// Outgoing traffic.
    Egress,
}

/// One ingress rule: traffic from any of `from` to any of `ports`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IngressRule {
    /// Sources; absent or empty means every source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<Peer>>,
    /// Destination ports on the selected workload; absent or empty means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PolicyPort>>,
}

/// One egress rule: traffic to any of `to` on any of `ports`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressRule {
    /// Destinations; absent or empty means every destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<Peer>>,
    /// Destination ports; absent or empty means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PolicyPort>>,
}

/// One peer of a rule: workloads by selectors, or addresses by CIDR.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Peer {
    /// Workloads (of the policy's namespace, or of the namespaces `namespace_selector` picks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces whose workloads are peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

/// A CIDR with holes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpBlock {
    /// The block, `ADDR/PREFIX`.
    pub cidr: String,
    /// Sub-blocks left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

/// A port (or range) of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyPort {
    /// TCP (default), UDP or SCTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// A number or the name of a workload's port; absent means every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortValue>,
    /// Last port of a range starting at the numeric `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i64>,
}

/// A port given as a number or as a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortValue {
    /// A port number.
    Number(i64),
    /// The name of a workload's port.
    Name(String),
}

/// Kubernetes' LabelSelector: every `matchLabels` pair and every expression must hold; an
/// empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must be present with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelRequirement>,
}

/// One set-based requirement of a [`LabelSelector`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In` / `NotIn`; must be empty for the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}
