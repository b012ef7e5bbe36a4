//! The mesh as one peer sees it, for `weft status` and `weft report`.

use serde::{Deserialize, Serialize};

pub use super::targets::TargetStatus;

use super::core::ConnId;
use super::peer::{PeerInfo, PeerName};

/// Snapshot of a peer's view of the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshStatus {
    /// This peer.
    pub local: PeerInfo,
    /// Every peer in the table (including us), by name.
    pub peers: Vec<PeerStatus>,
    /// Our own connections.
    pub connections: Vec<ConnectionStatus>,
    /// Addresses we dial.
    pub targets: Vec<TargetStatus>,
}

/// One peer of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Name.
    pub name: PeerName,
    /// Nickname.
    pub nickname: String,
    /// Incarnation UID.
    pub uid: u64,
    /// Entry version.
    pub version: u64,
    /// The connections it announces.
    pub connections: Vec<PeerConnectionStatus>,
}

/// A connection announced by some peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerConnectionStatus {
    /// Remote peer name.
    pub name: PeerName,
    /// Remote nickname (empty when the remote is not in our table).
    pub nickname: String,
    /// Remote address as the announcing peer sees it.
    pub address: String,
    /// Whether the announcing peer dialled.
    pub outbound: bool,
    /// Whether the handshake completed.
    pub established: bool,
}

/// One of our own connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionStatus {
    /// The driver's id of the connection.
    pub conn: ConnId,
    /// Remote TCP address.
    pub address: String,
    /// Whether we dialled.
    pub outbound: bool,
    /// Always `established`: the core learns of connections after their handshake.
    pub state: String,
    /// Whether frames are encrypted.
    pub encrypted: bool,
    /// Remote peer name.
    pub name: PeerName,
    /// Remote nickname.
    pub nickname: String,
}
