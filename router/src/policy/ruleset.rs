//! The compiled ruleset of one router, before it becomes nftables objects: named address sets
//! and one chain per isolated local workload and direction. [`Ruleset::allows`] evaluates it
//! the way the kernel evaluates the nftables table, so tests compare it with the model.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::model::{Flow, Protocol};

/// Direction of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Traffic to the workload.
    Ingress,
    /// Traffic from the workload.
    Egress,
}

impl Direction {
    /// `ingress` or `egress`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// Disjoint, sorted, non-adjacent address ranges (inclusive, as `u32`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AddrSet(pub Vec<(u32, u32)>);

impl AddrSet {
    /// Builds a set from any ranges, merging overlaps and neighbours.
    pub fn from_ranges(mut ranges: Vec<(u32, u32)>) -> AddrSet {
        ranges.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match out.last_mut() {
                Some((_, end)) if a <= end.saturating_add(1) => *end = (*end).max(b),
                _ => out.push((a, b)),
            }
        }
        AddrSet(out)
    }

    /// The set minus `holes`.
    pub fn minus(&self, holes: &AddrSet) -> AddrSet {
        let mut out = Vec::new();
        for &(mut a, b) in &self.0 {
            let mut alive = true;
            for &(ha, hb) in &holes.0 {
                if hb < a || ha > b {
                    continue;
                }
                if ha > a {
                    out.push((a, ha - 1));
                }
                if hb >= b {
                    alive = false;
                    break;
                }
                a = hb + 1;
            }
            if alive {
                out.push((a, b));
            }
        }
        AddrSet(out)
    }

    /// Whether `addr` is in the set.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let a = u32::from(addr);
        let i = self.0.partition_point(|&(_, end)| end < a);
        self.0.get(i).is_some_and(|&(start, _)| start <= a)
    }
}

/// One accepting rule of a chain: every present condition must hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Match {
    /// Set the other side's address must be in (source for ingress, destination for egress).
    pub peer_set: Option<String>,
    /// Protocol.
    pub protocol: Option<Protocol>,
    /// Destination ports, inclusive.
    pub ports: Option<(u16, u16)>,
    /// Set the destination address must be in (named ports resolved on destinations).
    pub dst_set: Option<String>,
}

/// The chain of one isolated local workload in one direction: traffic matching a rule passes
/// this side; everything else is logged, counted and dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// nftables chain name.
    pub name: String,
    /// Direction.
    pub direction: Direction,
    /// The workload's address.
    pub workload: Ipv4Addr,
    /// `NAMESPACE/NAME` of the workload.
    pub workload_name: String,
    /// Keys of the policies isolating it in this direction.
    pub policies: Vec<String>,
    /// The accepting rules.
    pub rules: Vec<Match>,
}

/// One router's compiled ruleset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruleset {
    /// Named address sets.
    pub sets: BTreeMap<String, AddrSet>,
    /// Chains, ordered by name.
    pub chains: Vec<Chain>,
}

impl Ruleset {
    /// The ruleset without set contents: when two rulesets have the same shape, a change
    /// between them is only set updates.
    pub fn shape(&self) -> (Vec<&String>, &[Chain]) {
        (self.sets.keys().collect(), &self.chains)
    }

    fn set_has(&self, name: &Option<String>, addr: Ipv4Addr) -> bool {
        match name {
            None => true,
            Some(n) => self.sets.get(n).is_some_and(|s| s.contains(addr)),
        }
    }

    fn chain_passes(&self, chain: &Chain, flow: &Flow) -> bool {
        let other = match chain.direction {
            Direction::Ingress => flow.src,
            Direction::Egress => flow.dst,
        };
        chain.rules.iter().any(|m| {
            self.set_has(&m.peer_set, other)
                && m.protocol.is_none_or(|p| p == flow.protocol)
                && m.ports.is_none_or(|(a, b)| (a..=b).contains(&flow.port))
                && self.set_has(&m.dst_set, flow.dst)
        })
    }

    /// Whether this router lets the first packet of `flow` through the given direction's
    /// check (the egress check runs for local sources, the ingress check for local
    /// destinations; a workload without a chain is not isolated).
    pub fn passes(&self, flow: &Flow, direction: Direction) -> bool {
        let subject = match direction {
            Direction::Ingress => flow.dst,
            Direction::Egress => flow.src,
        };
        self.chains
            .iter()
            .filter(|c| c.direction == direction && c.workload == subject)
            .all(|c| self.chain_passes(c, flow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    #[test]
    fn sets_merge_and_subtract() {
        let s = AddrSet::from_ranges(vec![(10, 20), (5, 9), (30, 40), (15, 25)]);
        assert_eq!(s.0, vec![(5, 25), (30, 40)]);
        let holes = AddrSet::from_ranges(vec![(5, 6), (10, 10), (25, 31), (39, 50)]);
        assert_eq!(s.minus(&holes).0, vec![(7, 9), (11, 24), (32, 38)]);
        let all = AddrSet(vec![(ip("10.0.0.0"), ip("10.255.255.255"))]);
        let hole = AddrSet(vec![(ip("10.1.0.0"), ip("10.1.255.255"))]);
        let d = all.minus(&hole);
        assert!(d.contains("10.0.255.255".parse().unwrap()));
        assert!(!d.contains("10.1.0.7".parse().unwrap()));
        assert!(d.contains("10.2.0.0".parse().unwrap()));
        assert!(!d.contains("11.0.0.0".parse().unwrap()));
        assert!(!AddrSet::default().contains("0.0.0.0".parse().unwrap()));
    }
}
