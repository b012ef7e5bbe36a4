//! Every message that crosses a mesh connection, as hand-written `prost`
//! messages (no `.proto` compilation step).
//!
//! After the handshake a connection carries length-prefixed [`MeshMessage`]s
//! (see `frame.rs`). Topology gossip travels as a [`Gossip`] on the reserved
//! channel [`TOPOLOGY_CHANNEL`] with a [`TopologyUpdate`] payload.

use prost::{Message, Oneof};

/// Largest frame body accepted on a mesh connection.
pub const MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

/// The gossip channel that carries the peers table; no [`crate::mesh::gossip::Gossiper`] may use it.
pub const TOPOLOGY_CHANNEL: &str = "topology";

/// One message on an established mesh connection.
#[derive(Clone, PartialEq, Message)]
pub struct MeshMessage {
    /// What the message is.
    #[prost(oneof = "Body", tags = "1, 2")]
    pub body: Option<Body>,
}

impl MeshMessage {
    /// A gossip message (full state or update) for `channel`.
    pub fn gossip(channel: &str, payload: Vec<u8>) -> MeshMessage {
        MeshMessage {
            body: Some(Body::Gossip(Gossip {
                channel: channel.to_owned(),
                payload,
            })),
        }
    }
}

/// The kinds of [`MeshMessage`].
#[derive(Clone, PartialEq, Oneof)]
pub enum Body {
    /// Gossip, flooded to neighbours while it carries news.
    #[prost(message, tag = "1")]
    Gossip(Gossip),
    /// A message for one peer, relayed hop by hop along routes.
    #[prost(message, tag = "2")]
    Unicast(Unicast),
}

/// Full state or an update of one gossip channel.
#[derive(Clone, PartialEq, Message)]
pub struct Gossip {
    /// Channel name (`topology`, `ipam`, `dns`, ...).
    #[prost(string, tag = "1")]
    pub channel: String,
    /// Channel-specific encoding of the state or update.
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
}

/// A message from one peer to another, relayed by peers in between.
#[derive(Clone, PartialEq, Message)]
pub struct Unicast {
    /// Originating peer name.
    #[prost(uint64, tag = "1")]
    pub src: u64,
    /// Destination peer name.
    #[prost(uint64, tag = "2")]
    pub dst: u64,
    /// Channel whose gossiper receives it at `dst`.
    #[prost(string, tag = "3")]
    pub channel: String,
    /// Channel-specific payload.
    #[prost(bytes = "vec", tag = "4")]
    pub payload: Vec<u8>,
    /// Relays left before the message is dropped (guards against loops).
    #[prost(uint32, tag = "5")]
    pub hops_left: u32,
}

/// Payload of topology gossip: some or all entries of the peers table.
#[derive(Clone, PartialEq, Message)]
pub struct TopologyUpdate {
    /// The peer entries.
    #[prost(message, repeated, tag = "1")]
    pub peers: Vec<PeerRecord>,
}

/// One peer's entry in the peers table.
#[derive(Clone, PartialEq, Message)]
pub struct PeerRecord {
    /// Peer name (48 bits).
    #[prost(uint64, tag = "1")]
    pub name: u64,
    /// Nickname.
    #[prost(string, tag = "2")]
    pub nickname: String,
    /// Incarnation UID.
    #[prost(uint64, tag = "3")]
    pub uid: u64,
    /// Version of this entry within the incarnation.
    #[prost(uint64, tag = "4")]
    pub version: u64,
    /// Mesh TCP port the peer listens on.
    #[prost(uint32, tag = "5")]
    pub listen_port: u32,
    /// The peer's connections.
    #[prost(message, repeated, tag = "6")]
    pub connections: Vec<ConnRecord>,
}

/// One connection as announced by the peer that has it.
#[derive(Clone, PartialEq, Message)]
pub struct ConnRecord {
    /// Remote peer name.
    #[prost(uint64, tag = "1")]
    pub name: u64,
    /// Remote TCP address as seen by the announcing peer.
    #[prost(string, tag = "2")]
    pub address: String,
    /// Whether the announcing peer dialled it.
    #[prost(bool, tag = "3")]
    pub outbound: bool,
    /// Whether the handshake completed.
    #[prost(bool, tag = "4")]
    pub established: bool,
}

/// The handshake greeting body (after the fixed `weft` + version + length header).
#[derive(Clone, PartialEq, Message)]
pub struct Hello {
    /// Sender's peer name.
    #[prost(uint64, tag = "1")]
    pub name: u64,
    /// Sender's nickname.
    #[prost(string, tag = "2")]
    pub nickname: String,
    /// Sender's incarnation UID.
    #[prost(uint64, tag = "3")]
    pub uid: u64,
    /// Sender's mesh listen port.
    #[prost(uint32, tag = "4")]
    pub listen_port: u32,
    /// Whether the sender has a password (and so requires encryption).
    #[prost(bool, tag = "5")]
    pub encrypted: bool,
    /// X25519 ephemeral public key (32 bytes) when `encrypted`.
    #[prost(bytes = "vec", tag = "6")]
    pub ephemeral_public: Vec<u8>,
    /// 32 random bytes, making every transcript unique.
    #[prost(bytes = "vec", tag = "7")]
    pub random: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_message_round_trips() {
        let msg = MeshMessage {
            body: Some(Body::Unicast(Unicast {
                src: 1,
                dst: 2,
                channel: "ipam".into(),
                payload: vec![1, 2, 3],
                hops_left: 9,
            })),
        };
        let bytes = msg.encode_to_vec();
        assert_eq!(MeshMessage::decode(bytes.as_slice()).unwrap(), msg);
        let gossip = MeshMessage::gossip("dns", vec![4]);
        let bytes = gossip.encode_to_vec();
        assert_eq!(MeshMessage::decode(bytes.as_slice()).unwrap(), gossip);
    }

    #[test]
    fn truncated_message_is_an_error() {
        let msg = MeshMessage::gossip("dns", vec![7; 40]);
        let bytes = msg.encode_to_vec();
        assert!(MeshMessage::decode(&bytes[..bytes.len() - 3]).is_err());
    }
}
