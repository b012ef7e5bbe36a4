//! The one error type of the crate.

use std::net::Ipv4Addr;

use crate::cidr::Cidr;
use crate::peer::PeerId;

/// Everything that can go wrong in IPAM. Each message says what is wrong and, where there is
/// one, what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// A string that should be an IPv4 CIDR is not one.
    #[error("{input} is not a valid CIDR: expected an IPv4 network such as 10.32.0.0/12")]
    InvalidCidr {
        /// What was given.
        input: String,
    },
    /// A CIDR whose address has host bits set.
    #[error("{input} is not a network address: did you mean {suggestion}?")]
    NotANetwork {
        /// What was given.
        input: String,
        /// The network that contains it.
        suggestion: Cidr,
    },
    /// A subnet that does not lie inside the allocation range.
    #[error("subnet {subnet} is not inside the allocation range {range}")]
    SubnetOutsideRange {
        /// The subnet asked for.
        subnet: Cidr,
        /// The allocation range.
        range: Cidr,
    },
    /// An address that does not lie inside the allocation range.
    #[error("address {addr} is outside the range {range}")]
    AddressOutsideRange {
        /// The address asked for.
        addr: Ipv4Addr,
        /// The allocation range.
        range: Cidr,
    },
    /// A string that should be a peer name is not one.
    #[error(
        "'{input}' is not a peer name: expected 6 hex bytes such as aa:bb:cc:dd:ee:ff or up to 12 hex digits"
    )]
    InvalidPeerName {
        /// What was given.
        input: String,
    },
    /// An `--ipalloc-init` value that cannot be understood.
    #[error(
        "'{input}' is not an IPAM init mode: {reason}; expected consensus, consensus=N, seed=PEER,... or observer"
    )]
    InvalidInitMode {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An owner id that is empty or too long.
    #[error("owner id '{owner}' is not valid: it must be 1 to 255 bytes long")]
    InvalidOwner {
        /// What was given.
        owner: String,
    },
    /// A `free` of an address this peer has not allocated.
    #[error("address {addr} is not allocated on this peer; nothing to free")]
    NotAllocated {
        /// The address.
        addr: Ipv4Addr,
    },
    /// A claim of an address that another owner holds on this peer.
    #[error(
        "address {addr} is already allocated to '{holder}'; free it first or claim another address"
    )]
    AddressInUse {
        /// The address.
        addr: Ipv4Addr,
        /// The owner id that holds it.
        holder: String,
    },
    /// A claim of an address owned by another peer, which refused to hand it over.
    #[error(
        "address {addr} belongs to peer {peer}, which has it in use; claim it on that peer or pick another"
    )]
    OwnedByOtherPeer {
        /// The address.
        addr: Ipv4Addr,
        /// Its owner.
        peer: PeerId,
    },
    /// A pending request whose deadline passed.
    #[error(
        "allocation for '{owner}' timed out: {reason}; check `weft status ipam` and that peers are reachable"
    )]
    Timeout {
        /// The owner id of the request.
        owner: String,
        /// Why it was still pending.
        reason: String,
    },
    /// A pending request that the caller cancelled (or freed by owner id).
    #[error("allocation for '{owner}' was cancelled")]
    Cancelled {
        /// The owner id of the request.
        owner: String,
    },
    /// A request id that is not pending.
    #[error("request {0} is not pending")]
    UnknownRequest(u64),
    /// An operation on a peer that handed its space away with `reset`.
    #[error(
        "this peer has left the ring (reset); remove its IPAM data and start it again to rejoin"
    )]
    Left,
    /// An operation on a peer whose space was taken over by `rmpeer` elsewhere.
    #[error(
        "this peer was removed from the ring by peer {by} (rmpeer); remove its IPAM data and start it again to rejoin"
    )]
    Removed {
        /// The peer that ran `rmpeer`.
        by: PeerId,
    },
    /// `rmpeer` of this peer itself.
    #[error("rmpeer refused: {0} is this peer; use reset to hand its space to another peer")]
    RmpeerSelf(PeerId),
    /// `rmpeer` of a peer whose space somebody already took over.
    #[error("rmpeer refused: peer {peer}'s space was already taken over by {by}")]
    AlreadyTakenOver {
        /// The peer to remove.
        peer: PeerId,
        /// The peer that took its space.
        by: PeerId,
    },
    /// `rmpeer` of a peer that owns nothing in this peer's view of the ring.
    #[error("rmpeer refused: peer {0} owns no space in the ring (is the name right?)")]
    NothingToTakeOver(PeerId),
    /// An operation that needs the ring before it exists.
    #[error("the IPAM ring is not ready yet; run `weft prime` or wait for consensus")]
    NotReady,
    /// `reset` with nobody to hand the space to.
    #[error(
        "reset refused: no reachable peer to hand this peer's space to; its addresses would be lost"
    )]
    NoHeir,
    /// `reset` towards a peer that cannot take the space.
    #[error("reset refused: peer {0} is unknown, unreachable or removed")]
    BadHeir(PeerId),
    /// Bytes that are not weft IPAM state at all.
    #[error("not weft IPAM data: {0}")]
    Corrupt(String),
    /// Bytes written by a newer (or unknown) format version.
    #[error(
        "IPAM data has format version {found}, this build reads version {supported}; upgrade weft"
    )]
    UnsupportedVersion {
        /// The version in the bytes.
        found: u8,
        /// The version this build understands.
        supported: u8,
    },
    /// Bytes of the wrong kind (for example a unicast given to `merge`).
    #[error("IPAM data of kind {found} where {expected} was expected")]
    WrongKind {
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: &'static str,
    },
    /// State from a peer whose ring covers another range.
    #[error(
        "peer's ring covers {theirs} but ours covers {ours}: all peers need the same --ipalloc-range"
    )]
    DifferentRange {
        /// Our range.
        ours: Cidr,
        /// Theirs.
        theirs: Cidr,
    },
    /// State from a peer whose ring was seeded with other peers.
    #[error(
        "peer's ring was seeded with [{theirs}] but ours with [{ours}]: peers were started with conflicting --ipalloc-init; reset one side"
    )]
    DifferentSeeds {
        /// Our seeds, formatted.
        ours: String,
        /// Theirs, formatted.
        theirs: String,
    },
    /// Persisted state of another peer.
    #[error(
        "persisted IPAM state belongs to peer {found}, not to this peer {ours}; use the right data dir"
    )]
    WrongPeer {
        /// Our name.
        ours: PeerId,
        /// The name in the state.
        found: PeerId,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = IpamError> = std::result::Result<T, E>;
