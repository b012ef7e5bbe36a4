//! The interface between the mesh and the concerns that gossip over it (IPAM,
//! DNS, policy): each registers a [`Gossiper`] under a channel name.

use super::peer::PeerName;

/// Why a gossip or unicast payload could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GossipError {
    /// The payload does not decode.
    #[error("undecodable gossip on channel {channel:?}: {reason}")]
    Decode {
        /// Channel the payload arrived on.
        channel: String,
        /// What was wrong.
        reason: String,
    },
    /// Any other failure, reported by a [`Gossiper`].
    #[error("{0}")]
    Other(String),
}

impl GossipError {
    /// A free-form error for [`Gossiper`] implementations.
    pub fn new(msg: impl Into<String>) -> GossipError {
        GossipError::Other(msg.into())
    }
}

/// One gossip channel's state, merged from what peers send.
///
/// The state must be a CRDT (or a versioned map with tombstones): merging must
/// be idempotent, commutative and associative, so floods and periodic full
/// state exchanges converge whatever the order.
pub trait Gossiper: Send {
    /// The whole local state, sent to new connections and for anti-entropy.
    fn full_state(&self) -> Vec<u8>;

    /// Merges state or an update received from neighbour `src`. Returns the
    /// part that was news to us (`Some`), which the mesh forwards to the other
    /// neighbours, or `None` when nothing changed (the flood stops here).
    fn merge(&mut self, src: PeerName, update: &[u8]) -> Result<Option<Vec<u8>>, GossipError>;

    /// A message sent to this peer only by `src`.
    fn on_unicast(&mut self, src: PeerName, payload: &[u8]) -> Result<(), GossipError>;
}
