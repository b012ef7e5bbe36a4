//! What `weft status ipam` shows: the ring's shares per peer, like `weave status ipam`.

use std::fmt;
use std::net::Ipv4Addr;

use crate::cidr::Cidr;
use crate::config::InitMode;
use crate::peer::PeerId;

/// One peer's share of the ring, as seen by the peer asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The peer.
    pub peer: PeerId,
    /// How many addresses it owns.
    pub size: u64,
    /// How many of them it last reported free.
    pub free: u64,
    /// Its ranges, `[first, last]`.
    pub ranges: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Whether the topology reports it reachable.
    pub reachable: bool,
}

/// A peer's view of IPAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The peer asked.
    pub peer: PeerId,
    /// The allocation range.
    pub range: Cidr,
    /// The default subnet.
    pub default_subnet: Cidr,
    /// The init mode.
    pub init: InitMode,
    /// Whether the ring exists.
    pub ready: bool,
    /// `active`, `left (reset)` or `removed by PEER`.
    pub state: String,
    /// Addresses allocated on this peer.
    pub allocated: usize,
    /// Requests waiting for the ring or for space.
    pub pending: usize,
    /// Every owner's share, by peer.
    pub shares: Vec<Share>,
    /// Peers removed by `rmpeer`, with who took their space.
    pub removed: Vec<(PeerId, PeerId)>,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "range {} (default subnet {}), init {}, {}",
            self.range,
            self.default_subnet,
            self.init,
            if self.ready {
                "ready"
            } else {
                "not ready: awaiting consensus or seed"
            }
        )?;
        writeln!(
            f,
            "this peer {}: {}, {} allocated, {} pending",
            self.peer, self.state, self.allocated, self.pending
        )?;
        let total = self.range.size() as f64;
        for s in &self.shares {
            let pct = s.size as f64 * 100.0 / total;
            let used = s.size - s.free;
            let mark = if s.peer == self.peer {
                " (this peer)"
            } else if !s.reachable {
                " - unreachable!"
            } else {
                ""
            };
            writeln!(
                f,
                "{}  {} IPs ({pct:.1}% of total) ({used} used){mark}",
                s.peer, s.size
            )?;
        }
        for (peer, by) in &self.removed {
            writeln!(f, "{peer}  removed; space taken over by {by}")?;
        }
        Ok(())
    }
}
