//! Request and response bodies of the control API, shared by server and clients.

use serde::{Deserialize, Serialize};

use crate::mesh::MeshStatus;

/// Default path of the control socket.
pub const DEFAULT_SOCKET: &str = "/run/weft/weft.sock";

/// What `weft report` prints: everything the router knows about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// weft's version.
    pub version: String,
    /// This router.
    pub router: RouterInfo,
    /// The mesh: peers, connections and dial targets.
    pub mesh: MeshStatus,
    /// Each peer's data path and the sleeve's counters.
    #[serde(default)]
    pub data_path: crate::path::DataPathStatus,
}

/// Identity and settings of this router.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouterInfo {
    /// Peer name (MAC-like, stable across restarts).
    pub name: String,
    /// Human-friendly nickname (hostname by default).
    pub nickname: String,
    /// Per-start unique id.
    pub uid: u64,
    /// Whether a password is set, so every connection is encrypted.
    pub encryption: bool,
    /// TCP port of the mesh.
    pub port: u16,
    /// Maximum number of mesh connections.
    pub conn_limit: usize,
    /// Data directory.
    pub data_dir: String,
}

/// Body of `POST /connect`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectRequest {
    /// Peers to add as targets, `host[:port]`.
    pub peers: Vec<String>,
    /// Replace all user-given targets with these.
    #[serde(default)]
    pub replace: bool,
}

/// Body of `POST /forget`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForgetRequest {
    /// Peers to remove from the targets, `host[:port]`.
    pub peers: Vec<String>,
}

/// Error body of every failed control API call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and what to do about it.
    pub error: String,
}

/// Body of `POST /attach`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachRequest {
    /// `ADDR/PREFIX` inside the overlay range; allocated by IPAM when absent.
    #[serde(default)]
    pub address: Option<String>,
    /// Namespace path or `ip netns` name (exactly one of `netns` and `pid`).
    #[serde(default)]
    pub netns: Option<String>,
    /// A process in the namespace.
    #[serde(default)]
    pub pid: Option<u32>,
    /// The workload's name.
    #[serde(default)]
    pub name: Option<String>,
    /// Interface inside the namespace; `ethwe` when absent.
    #[serde(default)]
    pub ifname: Option<String>,
    /// IPAM owner id (e.g. a container id); the namespace path when absent.
    #[serde(default)]
    pub owner: Option<String>,
    /// Write `/etc/netns/<netns>/resolv.conf` pointing at weft's DNS (named namespaces only).
    #[serde(default)]
    pub rewrite_resolv: bool,
    /// The workload's namespace for policies (`default` when absent).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Its labels, `KEY=VALUE`.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Its named ports, `NAME=PORT/PROTO`.
    #[serde(default)]
    pub ports: Vec<String>,
}

/// Body of `POST /detach`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetachRequest {
    /// Namespace path or `ip netns` name (exactly one of `netns` and `pid`).
    #[serde(default)]
    pub netns: Option<String>,
    /// A process in the namespace.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Only this interface.
    #[serde(default)]
    pub ifname: Option<String>,
}

/// Body of `POST /expose` and `POST /hide`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExposeRequest {
    /// `ADDR/PREFIX`; for `/hide`, absent means every exposed address.
    #[serde(default)]
    pub address: Option<String>,
}

/// One attached workload, as `weft ps` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadInfo {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub netns: String,
    /// Interface inside the namespace.
    pub ifname: String,
    /// Host end of its veth.
    pub host_ifname: String,
    /// MAC of the interface inside.
    pub mac: String,
    /// Its addresses, `ADDR/PREFIX`.
    pub addresses: Vec<String>,
}

impl From<&crate::overlay::Attachment> for WorkloadInfo {
    fn from(a: &crate::overlay::Attachment) -> Self {
        WorkloadInfo {
            name: a.name.clone(),
            netns: a.netns.display().to_string(),
            ifname: a.ifname.clone(),
            host_ifname: a.host_ifname.clone(),
            mac: a.mac.clone(),
            addresses: vec![a.address.to_string()],
        }
    }
}

/// Answer of `GET /ps`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PsResponse {
    /// Attached workloads.
    pub workloads: Vec<WorkloadInfo>,
    /// The host's addresses on the overlay.
    pub exposed: Vec<String>,
    /// The overlay MTU.
    pub mtu: u32,
}

/// Answer of `/attach`, `/detach`, `/expose` and `/hide`: what changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverlayChange {
    /// Workloads attached or detached.
    #[serde(default)]
    pub workloads: Vec<WorkloadInfo>,
    /// Addresses exposed or hidden.
    #[serde(default)]
    pub addresses: Vec<String>,
}
