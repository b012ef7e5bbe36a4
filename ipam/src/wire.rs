//! Bytes on the wire and on disk.
//!
//! Every blob is `MAGIC (8) | format version (1) | kind (1) | protobuf payload | CRC-32C (4, LE)`,
//! the checksum covering everything before it. Payloads are `prost` messages written by hand
//! (no protoc). Decoding checks the envelope, then the payload, then the meaning (tokens in
//! range, seeds sorted, ...), and never panics on any input.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::cidr::Cidr;
use crate::error::IpamError;
use crate::paxos::{Claims, ProposalId};
use crate::peer::PeerId;
use crate::ring::{Entry, Ring, Tombstone};

const MAGIC: &[u8; 8] = b"WEFTIPAM";
const FORMAT_VERSION: u8 = 1;
const HEADER: usize = MAGIC.len() + 2;
const TRAILER: usize = 4;

/// What a blob of IPAM bytes is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Ring and consensus state gossiped to every peer (`full_state`, `merge`).
    Gossip,
    /// A donation request or reply between two peers (`on_unicast`).
    Unicast,
    /// A peer's persisted state: ring, consensus and its own allocations.
    Persisted,
}

impl MessageKind {
    fn tag(self) -> u8 {
        match self {
            MessageKind::Gossip => 1,
            MessageKind::Unicast => 2,
            MessageKind::Persisted => 3,
        }
    }

    fn name(self) -> &'static str {
        match self {
            MessageKind::Gossip => "gossip",
            MessageKind::Unicast => "unicast",
            MessageKind::Persisted => "persisted state",
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(MessageKind::Gossip),
            2 => Some(MessageKind::Unicast),
            3 => Some(MessageKind::Persisted),
            _ => None,
        }
    }
}

/// Checks any IPAM bytes completely (envelope, payload and meaning) and says what they are.
/// Never panics, whatever the input.
pub fn decode(bytes: &[u8]) -> Result<MessageKind, IpamError> {
    let (kind, _) = open(bytes)?;
    match kind {
        MessageKind::Gossip => decode_gossip(bytes).map(|_| kind),
        MessageKind::Unicast => decode_unicast(bytes).map(|_| kind),
        MessageKind::Persisted => decode_persisted(bytes).map(|_| kind),
    }
}

fn seal(kind: MessageKind, payload: &impl prost::Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.encoded_len() + TRAILER);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.push(kind.tag());
    payload.encode_raw(&mut out);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn open(bytes: &[u8]) -> Result<(MessageKind, &[u8]), IpamError> {
    if bytes.len() < HEADER + TRAILER {
        return Err(IpamError::Corrupt(format!(
            "{} bytes is too short to hold the header and checksum",
            bytes.len()
        )));
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(IpamError::Corrupt("bad magic (expected WEFTIPAM)".into()));
    }
    let version = bytes[MAGIC.len()];
    if version != FORMAT_VERSION {
        return Err(IpamError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let (body, trailer) = bytes.split_at(bytes.len() - TRAILER);
    let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if crc32c::crc32c(body) != stored {
        return Err(IpamError::Corrupt(
            "checksum mismatch (truncated or damaged)".into(),
        ));
    }
    let kind = MessageKind::from_tag(bytes[MAGIC.len() + 1])
        .ok_or_else(|| IpamError::Corrupt(format!("unknown kind {}", bytes[MAGIC.len() + 1])))?;
    Ok((kind, &body[HEADER..]))
}

fn open_as<M: prost::Message + Default>(bytes: &[u8], want: MessageKind) -> Result<M, IpamError> {
    let (kind, payload) = open(bytes)?;
    if kind != want {
        return Err(IpamError::WrongKind {
            expected: want.name(),
            found: kind.name(),
        });
    }
    M::decode(payload).map_err(|e| IpamError::Corrupt(format!("bad {} payload: {e}", want.name())))
}

#[derive(Clone, PartialEq, prost::Message)]
struct EntryMsg {
    #[prost(uint64, tag = "1")]
    token: u64,
    #[prost(uint64, tag = "2")]
    owner: u64,
    #[prost(uint64, tag = "3")]
    version: u64,
    #[prost(uint64, tag = "4")]
    free: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RemovedMsg {
    #[prost(uint64, tag = "1")]
    peer: u64,
    #[prost(uint64, tag = "2")]
    by: u64,
    #[prost(uint64, tag = "3")]
    epoch: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RingMsg {
    #[prost(uint32, tag = "1")]
    network: u32,
    #[prost(uint32, tag = "2")]
    prefix: u32,
    #[prost(message, repeated, tag = "3")]
    entries: Vec<EntryMsg>,
    #[prost(uint64, repeated, tag = "4")]
    seeds: Vec<u64>,
    #[prost(message, repeated, tag = "5")]
    removed: Vec<RemovedMsg>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProposalMsg {
    #[prost(uint64, tag = "1")]
    round: u64,
    #[prost(uint64, tag = "2")]
    proposer: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ClaimsMsg {
    #[prost(uint64, tag = "1")]
    node: u64,
    #[prost(message, optional, tag = "2")]
    promise: Option<ProposalMsg>,
    #[prost(message, optional, tag = "3")]
    accepted: Option<ProposalMsg>,
    #[prost(message, optional, tag = "4")]
    origin: Option<ProposalMsg>,
    #[prost(uint64, repeated, tag = "5")]
    value: Vec<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GossipMsg {
    #[prost(message, optional, tag = "1")]
    ring: Option<RingMsg>,
    #[prost(message, repeated, tag = "2")]
    claims: Vec<ClaimsMsg>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SpaceRequestMsg {
    #[prost(uint64, tag = "1")]
    start: u64,
    #[prost(uint64, tag = "2")]
    end: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SpaceReplyMsg {
    #[prost(uint64, tag = "1")]
    start: u64,
    #[prost(uint64, tag = "2")]
    end: u64,
    #[prost(bool, tag = "3")]
    granted: bool,
    #[prost(message, optional, tag = "4")]
    gossip: Option<GossipMsg>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum UnicastBody {
    #[prost(message, tag = "1")]
    Request(SpaceRequestMsg),
    #[prost(message, tag = "2")]
    Reply(SpaceReplyMsg),
}

#[derive(Clone, PartialEq, prost::Message)]
struct UnicastMsg {
    #[prost(oneof = "UnicastBody", tags = "1, 2")]
    body: Option<UnicastBody>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct AllocationMsg {
    #[prost(uint64, tag = "1")]
    addr: u64,
    #[prost(string, tag = "2")]
    owner: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PersistMsg {
    #[prost(uint64, tag = "1")]
    peer: u64,
    #[prost(message, optional, tag = "2")]
    gossip: Option<GossipMsg>,
    #[prost(message, repeated, tag = "3")]
    allocations: Vec<AllocationMsg>,
}

/// Ring plus consensus claims: what peers gossip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gossip {
    pub(crate) ring: Ring,
    pub(crate) claims: BTreeMap<PeerId, Claims>,
}

/// A unicast between two peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unicast {
    /// "Please give me space in `[start, end)`."
    Request { start: u64, end: u64 },
    /// The answer, with the donor's state; `granted` says whether space was handed over.
    Reply {
        start: u64,
        end: u64,
        granted: bool,
        gossip: Gossip,
    },
}

/// A peer's state on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Persisted {
    pub(crate) peer: PeerId,
    pub(crate) gossip: Gossip,
    pub(crate) allocations: Vec<(u64, String)>,
}

fn ring_msg(ring: &Ring) -> RingMsg {
    RingMsg {
        network: u32::from(ring.range().network()),
        prefix: u32::from(ring.range().prefix()),
        entries: ring
            .entries()
            .iter()
            .map(|(&token, e)| EntryMsg {
                token,
                owner: e.owner.0,
                version: e.version,
                free: e.free,
            })
            .collect(),
        seeds: ring.seeds().iter().map(|p| p.0).collect(),
        removed: ring
            .removed()
            .iter()
            .map(|(p, t)| RemovedMsg {
                peer: p.0,
                by: t.by.0,
                epoch: t.epoch,
            })
            .collect(),
    }
}

fn ring_from(msg: RingMsg) -> Result<Ring, IpamError> {
    let prefix = u8::try_from(msg.prefix)
        .map_err(|_| IpamError::Corrupt(format!("ring prefix {} is out of range", msg.prefix)))?;
    let range = Cidr::new(Ipv4Addr::from(msg.network), prefix)
        .map_err(|e| IpamError::Corrupt(format!("ring range: {e}")))?;
    let mut entries = BTreeMap::new();
    for e in msg.entries {
        if e.free > range.size() {
            return Err(IpamError::Corrupt(format!(
                "ring entry at {} claims {} free addresses in {range}",
                e.token, e.free
            )));
        }
        let entry = Entry {
            owner: PeerId(e.owner),
            version: e.version,
            free: e.free,
        };
        if entries.insert(e.token, entry).is_some() {
            return Err(IpamError::Corrupt(format!(
                "ring token {} appears twice",
                e.token
            )));
        }
    }
    let mut removed = BTreeMap::new();
    for r in msg.removed {
        let tomb = Tombstone {
            epoch: r.epoch,
            by: PeerId(r.by),
        };
        if removed.insert(PeerId(r.peer), tomb).is_some() {
            return Err(IpamError::Corrupt(format!(
                "removed peer {} appears twice",
                PeerId(r.peer)
            )));
        }
    }
    let seeds = msg.seeds.into_iter().map(PeerId).collect();
    Ring::from_parts(range, entries, seeds, removed)
}

fn proposal_msg(p: ProposalId) -> Option<ProposalMsg> {
    Some(ProposalMsg {
        round: p.round,
        proposer: p.proposer.0,
    })
}

fn proposal_from(p: Option<ProposalMsg>) -> ProposalId {
    p.map_or(ProposalId::NONE, |p| ProposalId {
        round: p.round,
        proposer: PeerId(p.proposer),
    })
}

fn gossip_msg(gossip: &Gossip) -> GossipMsg {
    GossipMsg {
        ring: Some(ring_msg(&gossip.ring)),
        claims: gossip
            .claims
            .iter()
            .map(|(node, c)| ClaimsMsg {
                node: node.0,
                promise: proposal_msg(c.promise),
                accepted: proposal_msg(c.accepted),
                origin: proposal_msg(c.origin),
                value: c.value.iter().map(|p| p.0).collect(),
            })
            .collect(),
    }
}

fn gossip_from(msg: Option<GossipMsg>) -> Result<Gossip, IpamError> {
    let msg = msg.ok_or_else(|| IpamError::Corrupt("state without a ring".into()))?;
    let ring = ring_from(
        msg.ring
            .ok_or_else(|| IpamError::Corrupt("state without a ring".into()))?,
    )?;
    let mut claims = BTreeMap::new();
    for c in msg.claims {
        let value = c.value.into_iter().map(PeerId).collect();
        let claim = Claims {
            promise: proposal_from(c.promise),
            accepted: proposal_from(c.accepted),
            origin: proposal_from(c.origin),
            value,
        };
        if claims.insert(PeerId(c.node), claim).is_some() {
            return Err(IpamError::Corrupt(format!(
                "consensus claims of {} appear twice",
                PeerId(c.node)
            )));
        }
    }
    Ok(Gossip { ring, claims })
}

pub(crate) fn encode_gossip(gossip: &Gossip) -> Vec<u8> {
    seal(MessageKind::Gossip, &gossip_msg(gossip))
}

pub(crate) fn decode_gossip(bytes: &[u8]) -> Result<Gossip, IpamError> {
    gossip_from(Some(open_as::<GossipMsg>(bytes, MessageKind::Gossip)?))
}

pub(crate) fn encode_unicast(msg: &Unicast) -> Vec<u8> {
    let body = match msg {
        Unicast::Request { start, end } => UnicastBody::Request(SpaceRequestMsg {
            start: *start,
            end: *end,
        }),
        Unicast::Reply {
            start,
            end,
            granted,
            gossip,
        } => UnicastBody::Reply(SpaceReplyMsg {
            start: *start,
            end: *end,
            granted: *granted,
            gossip: Some(gossip_msg(gossip)),
        }),
    };
    seal(MessageKind::Unicast, &UnicastMsg { body: Some(body) })
}

pub(crate) fn decode_unicast(bytes: &[u8]) -> Result<Unicast, IpamError> {
    let msg = open_as::<UnicastMsg>(bytes, MessageKind::Unicast)?;
    let check = |start: u64, end: u64| {
        if start < end && end <= 1 << 32 {
            Ok(())
        } else {
            Err(IpamError::Corrupt(format!(
                "bad space range {start}..{end}"
            )))
        }
    };
    match msg.body {
        Some(UnicastBody::Request(r)) => {
            check(r.start, r.end)?;
            Ok(Unicast::Request {
                start: r.start,
                end: r.end,
            })
        }
        Some(UnicastBody::Reply(r)) => {
            check(r.start, r.end)?;
            Ok(Unicast::Reply {
                start: r.start,
                end: r.end,
                granted: r.granted,
                gossip: gossip_from(r.gossip)?,
            })
        }
        None => Err(IpamError::Corrupt("unicast without a body".into())),
    }
}

pub(crate) fn encode_persisted(state: &Persisted) -> Vec<u8> {
    let msg = PersistMsg {
        peer: state.peer.0,
        gossip: Some(gossip_msg(&state.gossip)),
        allocations: state
            .allocations
            .iter()
            .map(|(addr, owner)| AllocationMsg {
                addr: *addr,
                owner: owner.clone(),
            })
            .collect(),
    };
    seal(MessageKind::Persisted, &msg)
}

pub(crate) fn decode_persisted(bytes: &[u8]) -> Result<Persisted, IpamError> {
    let msg = open_as::<PersistMsg>(bytes, MessageKind::Persisted)?;
    let gossip = gossip_from(msg.gossip)?;
    let range = gossip.ring.range();
    let mut seen = std::collections::BTreeSet::new();
    let mut allocations = Vec::with_capacity(msg.allocations.len());
    for a in msg.allocations {
        if !range.contains_raw(a.addr) || !seen.insert(a.addr) {
            return Err(IpamError::Corrupt(format!(
                "allocation of {} is outside {range} or repeated",
                a.addr
            )));
        }
        allocations.push((a.addr, a.owner));
    }
    Ok(Persisted {
        peer: PeerId(msg.peer),
        gossip,
        allocations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Gossip {
        let mut ring = Ring::new("10.32.0.0/12".parse().expect("cidr"));
        ring.seed(&[PeerId(1), PeerId(2)]);
        Gossip {
            ring,
            claims: BTreeMap::new(),
        }
    }

    #[test]
    fn gossip_round_trips() {
        let g = sample();
        let bytes = encode_gossip(&g);
        assert_eq!(&bytes[..8], b"WEFTIPAM");
        assert_eq!(decode_gossip(&bytes), Ok(g));
        assert_eq!(decode(&bytes), Ok(MessageKind::Gossip));
    }

    #[test]
    fn corrupt_and_unknown_bytes_are_rejected_with_reasons() {
        let bytes = encode_gossip(&sample());
        let mut flipped = bytes.clone();
        flipped[12] ^= 0x40;
        assert_eq!(
            decode(&flipped).map_err(|e| e.to_string()),
            Err("not weft IPAM data: checksum mismatch (truncated or damaged)".into())
        );
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]).map_err(|e| e.to_string()),
            Err("not weft IPAM data: checksum mismatch (truncated or damaged)".into())
        );
        let mut newer = bytes.clone();
        newer[8] = 9;
        assert_eq!(
            decode(&newer).map_err(|e| e.to_string()),
            Err("IPAM data has format version 9, this build reads version 1; upgrade weft".into())
        );
        assert_eq!(
            decode(b"{\"ring\": [], \"peers\": []}").map_err(|e| e.to_string()),
            Err("not weft IPAM data: bad magic (expected WEFTIPAM)".into())
        );
        assert_eq!(
            decode_unicast(&bytes),
            Err(IpamError::WrongKind {
                expected: "unicast",
                found: "gossip"
            })
        );
    }

    #[test]
    fn well_sealed_but_meaningless_payload_is_rejected() {
        let msg = GossipMsg {
            ring: Some(RingMsg {
                network: u32::from(Ipv4Addr::new(10, 32, 0, 0)),
                prefix: 12,
                entries: vec![EntryMsg {
                    token: u64::from(u32::from(Ipv4Addr::new(10, 48, 0, 0))),
                    owner: 1,
                    version: 1,
                    free: 1,
                }],
                seeds: vec![1],
                removed: vec![],
            }),
            claims: vec![],
        };
        let bytes = seal(MessageKind::Gossip, &msg);
        assert!(
            matches!(decode(&bytes), Err(IpamError::Corrupt(m)) if m.contains("outside the range"))
        );
    }
}
