//! The peer mesh: identity ([`peer`]), handshake and framing ([`handshake`],
//! [`frame`], [`wire`]), the peers table ([`topology`]), gossip channels
//! ([`gossip`]) and the sans-IO [`MeshCore`] that ties them together; the
//! tokio shell around it lives in [`driver`].

pub mod core;
pub mod driver;
pub mod frame;
pub mod gossip;
pub mod handshake;
pub mod peer;
pub mod status;
mod targets;
pub mod topology;
pub mod wire;

#[cfg(test)]
mod sim;

pub use self::core::{Action, ConnId, ConnRefused, MeshConfig, MeshCore, Unreachable};
pub use frame::{FrameError, FrameReceiver, FrameSender};
pub use gossip::{GossipError, Gossiper};
pub use handshake::{Established, Handshake, HandshakeConfig, HandshakeError, PROTOCOL_VERSION};
pub use peer::{PeerInfo, PeerName, new_uid};
pub use status::{ConnectionStatus, MeshStatus, PeerConnectionStatus, PeerStatus, TargetStatus};
pub use wire::{MAX_FRAME_LEN, MeshMessage};
