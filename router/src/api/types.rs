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
