//! Consensus on the set of peers that seed the ring: single-decree Paxos run over gossip.
//!
//! Every elector keeps what it knows of every elector's claims (its promise and what it has
//! accepted) and gossips that map. Merging keeps, per elector, the highest promise and the
//! highest accepted proposal, so the map itself merges like a CRDT. [`Paxos::think`] plays the
//! acceptor and proposer roles on the local view: copy the highest promise, accept our own
//! proposal once a quorum has promised it (keeping any value already accepted by the quorum),
//! and accept whatever proposal we promised once someone accepted it. A value is chosen once a
//! quorum has accepted proposals of one origin. Observers never appear in the map.

use std::collections::BTreeMap;

use crate::peer::PeerId;

/// A proposal number; round 0 means "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ProposalId {
    pub(crate) round: u64,
    pub(crate) proposer: PeerId,
}

impl ProposalId {
    pub(crate) const NONE: ProposalId = ProposalId {
        round: 0,
        proposer: PeerId(0),
    };

    fn is_some(&self) -> bool {
        self.round > 0
    }
}

/// What one elector has promised and accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claims {
    pub(crate) promise: ProposalId,
    pub(crate) accepted: ProposalId,
    pub(crate) origin: ProposalId,
    pub(crate) value: Vec<PeerId>,
}

impl Claims {
    const EMPTY: Claims = Claims {
        promise: ProposalId::NONE,
        accepted: ProposalId::NONE,
        origin: ProposalId::NONE,
        value: Vec::new(),
    };
}

/// One peer's Paxos state: its view of every elector's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Paxos {
    me: PeerId,
    knows: BTreeMap<PeerId, Claims>,
}

impl Paxos {
    pub(crate) fn new(me: PeerId) -> Self {
        Paxos {
            me,
            knows: BTreeMap::new(),
        }
    }

    pub(crate) fn with_knowledge(me: PeerId, knows: BTreeMap<PeerId, Claims>) -> Self {
        Paxos { me, knows }
    }

    pub(crate) fn knows(&self) -> &BTreeMap<PeerId, Claims> {
        &self.knows
    }

    /// Whether this peer takes part (has claims of its own).
    pub(crate) fn is_elector(&self) -> bool {
        self.knows.contains_key(&self.me)
    }

    /// Merges another view; returns whether ours changed.
    pub(crate) fn merge(&mut self, other: &BTreeMap<PeerId, Claims>) -> bool {
        let mut changed = false;
        for (node, theirs) in other {
            let mine = self.knows.entry(*node).or_insert_with(|| {
                changed = true;
                Claims::EMPTY
            });
            if mine.promise < theirs.promise {
                mine.promise = theirs.promise;
                changed = true;
            }
            if mine.accepted < theirs.accepted {
                mine.accepted = theirs.accepted;
                mine.origin = theirs.origin;
                mine.value.clone_from(&theirs.value);
                changed = true;
            }
        }
        changed
    }

    /// The "prepare" step: promise a proposal higher than any seen, then think.
    pub(crate) fn propose(&mut self, quorum: usize) {
        let round = self
            .knows
            .values()
            .map(|c| c.promise.round.max(c.accepted.round))
            .max()
            .unwrap_or(0);
        let me = self.me;
        let ours = self.knows.entry(me).or_insert(Claims::EMPTY);
        ours.promise = ProposalId {
            round: round + 1,
            proposer: me,
        };
        self.think(quorum);
    }

    /// Joins as an acceptor (if not yet) and runs the acceptor/proposer steps. Returns whether
    /// our claims changed.
    pub(crate) fn think(&mut self, quorum: usize) -> bool {
        let before = self.knows.get(&self.me).cloned();
        let mut ours = before.clone().unwrap_or(Claims::EMPTY);

        if let Some(highest) = self.knows.values().map(|c| c.promise).max()
            && ours.promise < highest
        {
            ours.promise = highest;
        }

        if ours.promise.proposer == self.me && ours.promise.is_some() {
            let promised: Vec<&Claims> = self
                .knows
                .iter()
                .filter(|(node, c)| **node != self.me && c.promise == ours.promise)
                .map(|(_, c)| c)
                .collect();
            if promised.len() + 1 >= quorum {
                let best = promised
                    .iter()
                    .copied()
                    .chain(std::iter::once(&ours))
                    .filter(|c| c.accepted.is_some())
                    .max_by_key(|c| c.accepted);
                let (origin, value) = match best {
                    Some(c) => (c.origin, c.value.clone()),
                    None => (
                        ours.promise,
                        self.knows.keys().copied().chain([self.me]).collect(),
                    ),
                };
                ours.accepted = ours.promise;
                ours.origin = origin;
                ours.value = sorted(value);
            }
        }

        if let Some(c) = self
            .knows
            .iter()
            .find(|(node, c)| {
                **node != self.me && c.accepted == ours.promise && c.accepted.is_some()
            })
            .map(|(_, c)| c.clone())
            && ours.accepted < c.accepted
        {
            ours.accepted = c.accepted;
            ours.origin = c.origin;
            ours.value = c.value;
        }

        let changed = before.as_ref() != Some(&ours);
        self.knows.insert(self.me, ours);
        changed
    }

    /// The chosen set of peers, once a quorum accepted proposals of one origin.
    pub(crate) fn consensus(&self, quorum: usize) -> Option<Vec<PeerId>> {
        let mut counts: BTreeMap<ProposalId, usize> = BTreeMap::new();
        for c in self.knows.values().filter(|c| c.accepted.is_some()) {
            let n = counts.entry(c.origin).or_insert(0);
            *n += 1;
            if *n >= quorum {
                return Some(c.value.clone());
            }
        }
        None
    }
}

fn sorted(mut peers: Vec<PeerId>) -> Vec<PeerId> {
    peers.sort();
    peers.dedup();
    peers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(nodes: &mut [Paxos], quorum: usize) {
        for _ in 0..4 {
            for i in 0..nodes.len() {
                for j in 0..nodes.len() {
                    if i != j {
                        let other = nodes[j].knows.clone();
                        if nodes[i].merge(&other) {
                            nodes[i].think(quorum);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn three_electors_agree_on_one_value() {
        let mut nodes: Vec<Paxos> = (1..=3).map(|i| Paxos::new(PeerId(i))).collect();
        nodes[0].propose(2);
        nodes[2].propose(2);
        exchange(&mut nodes, 2);
        let chosen: Vec<_> = nodes.iter().map(|n| n.consensus(2)).collect();
        let first = chosen[0].clone().expect("consensus reached");
        assert!(first.len() >= 2, "value holds at least a quorum: {first:?}");
        assert!(
            chosen.iter().all(|c| c.as_ref() == Some(&first)),
            "{chosen:?}"
        );
    }

    #[test]
    fn no_consensus_without_quorum() {
        let mut nodes: Vec<Paxos> = (1..=3).map(|i| Paxos::new(PeerId(i))).collect();
        nodes[0].propose(3);
        // Only node 1 hears about it: two of three is below a quorum of three.
        let view = nodes[0].knows.clone();
        nodes[1].merge(&view);
        nodes[1].think(3);
        let view = nodes[1].knows.clone();
        nodes[0].merge(&view);
        nodes[0].think(3);
        assert_eq!(nodes[0].consensus(3), None);
        assert_eq!(nodes[1].consensus(3), None);
    }
}
