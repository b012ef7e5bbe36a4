//! Request and answer bodies of the `/cni/*` routes, shared by the daemon and the plugin.

use serde::{Deserialize, Serialize};

/// Body of `POST /cni/add`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CniAddRequest {
    /// `CNI_CONTAINERID`: the IPAM owner.
    pub container_id: String,
    /// `CNI_NETNS`: path of the container's network namespace.
    pub netns: String,
    /// `CNI_IFNAME`: interface to create inside.
    pub ifname: String,
    /// `ADDR/PREFIX` from a delegated IPAM plugin; weft's IPAM allocates when absent.
    #[serde(default)]
    pub address: Option<String>,
    /// `K8S_POD_NAMESPACE`.
    #[serde(default)]
    pub pod_namespace: Option<String>,
    /// `K8S_POD_NAME`.
    #[serde(default)]
    pub pod_name: Option<String>,
    /// The network config's `hairpinMode`.
    #[serde(default)]
    pub hairpin: bool,
}

/// Answer of `POST /cni/add` and `POST /cni/check`: what the container got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniAttachment {
    /// Interface inside the container.
    pub ifname: String,
    /// Its MAC.
    pub mac: String,
    /// The namespace path.
    pub sandbox: String,
    /// `ADDR/PREFIX`.
    pub address: String,
    /// Routes the interface got beyond its own subnet, as CIDRs.
    pub routes: Vec<String>,
    /// The overlay MTU.
    pub mtu: u32,
    /// The router's DNS server and search domain, when it serves DNS.
    #[serde(default)]
    pub dns: Option<CniDns>,
}

/// DNS settings for the container: the router's server and the weft domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniDns {
    /// Server addresses.
    pub nameservers: Vec<String>,
    /// The weft domain, e.g. `weft.local`.
    pub domain: String,
}

/// Body of `POST /cni/del` and `POST /cni/check`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CniDelRequest {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS`; may be absent on DEL (the namespace is gone).
    #[serde(default)]
    pub netns: Option<String>,
}

/// Answer of `POST /cni/del`: the addresses given back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CniDelResponse {
    /// Addresses freed in IPAM.
    pub freed: Vec<String>,
}

/// One attachment a runtime still uses (`cni.dev/valid-attachments` of GC).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CniAttachmentKey {
    /// The container id.
    pub container_id: String,
    /// The interface name.
    pub ifname: String,
}

/// Body of `POST /cni/gc`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CniGcRequest {
    /// Attachments to keep; every other CNI attachment is removed.
    pub valid: Vec<CniAttachmentKey>,
}

/// Answer of `POST /cni/gc`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CniGcResponse {
    /// Attachments removed.
    pub removed: Vec<CniAttachmentKey>,
}

/// Answer of `GET /cni/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CniStatusResponse {
    /// Whether the address ring is ready (before, an ADD first waits for consensus).
    pub ipam_ready: bool,
    /// The overlay MTU every weft interface gets.
    pub mtu: u32,
}
