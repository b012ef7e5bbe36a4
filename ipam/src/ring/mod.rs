//! The address ring: a join-semilattice of tokens, each owned by one peer at a version.
//!
//! A token `t` owns the addresses from `t` up to the next token (or the end of the range). A
//! seeded ring always holds a token at the start of the range and tokens are never removed, so
//! every address of the range has exactly one owning entry in any one view.
//!
//! [`Ring::merge`] is a pure join: union of tokens, and for a token known on both sides the entry
//! with the greater `(version, owner, free)` wins; the tombstones of removed peers merge by
//! keeping the greatest `(epoch, remover)`. That makes merge commutative, associative and idempotent.
//! Safety across views comes from the single-writer rule enforced by the mutators here: only
//! the current owner of an entry changes it, and each change bumps its version.

use std::collections::{BTreeMap, btree_map};

use crate::cidr::Cidr;
use crate::error::IpamError;
use crate::peer::PeerId;

#[cfg(test)]
mod tests;

/// One token's state: who owns the segment starting there, at which version, and how many
/// addresses its owner last reported free in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) owner: PeerId,
    pub(crate) version: u64,
    pub(crate) free: u64,
}

impl Entry {
    /// The total order used by merge.
    fn rank(&self) -> (u64, PeerId, u64) {
        (self.version, self.owner, self.free)
    }
}

/// How far `rmpeer` raises the versions it writes. The remover writes entries that are not
/// its own, from a view that may miss the dead peer's last updates (free counts are bumped on
/// every allocation and only spread with periodic gossip); jumping far ahead makes the
/// takeover win over any of those instead of tying with one of them.
const RMPEER_VERSION_JUMP: u64 = 1 << 32;

/// The record that a peer's space was taken over by `rmpeer`: by whom, in which round. A peer
/// that rejoins fresh can be removed again, in a higher epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Tombstone {
    pub(crate) epoch: u64,
    pub(crate) by: PeerId,
}

/// One peer's view of the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ring {
    range: Cidr,
    entries: BTreeMap<u64, Entry>,
    seeds: Vec<PeerId>,
    removed: BTreeMap<PeerId, Tombstone>,
}

/// A segment `[start, end)` of the ring with its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) entry: Entry,
}

impl Segment {
    pub(crate) fn len(&self) -> u64 {
        self.end - self.start
    }
}

impl Ring {
    /// An empty (not yet seeded) ring over `range`.
    pub(crate) fn new(range: Cidr) -> Self {
        Ring {
            range,
            entries: BTreeMap::new(),
            seeds: Vec::new(),
            removed: BTreeMap::new(),
        }
    }

    /// Rebuilds a ring from decoded parts, checking everything a peer could get wrong.
    pub(crate) fn from_parts(
        range: Cidr,
        entries: BTreeMap<u64, Entry>,
        seeds: Vec<PeerId>,
        removed: BTreeMap<PeerId, Tombstone>,
    ) -> Result<Self, IpamError> {
        let corrupt = |why: String| Err(IpamError::Corrupt(why));
        if let Some((&last, _)) = entries.last_key_value()
            && last >= range.end()
        {
            return corrupt(format!("ring token {last} lies outside the range {range}"));
        }
        if let Some((&first, _)) = entries.first_key_value()
            && first != range.start()
        {
            return corrupt(format!("ring over {range} has no token at its start"));
        }
        if entries.is_empty() != seeds.is_empty() {
            return corrupt("ring has entries without seeds or seeds without entries".into());
        }
        if seeds.windows(2).any(|w| w[0] >= w[1]) {
            return corrupt("ring seeds are not sorted and unique".into());
        }
        Ok(Ring {
            range,
            entries,
            seeds,
            removed,
        })
    }

    pub(crate) fn range(&self) -> Cidr {
        self.range
    }

    pub(crate) fn entries(&self) -> &BTreeMap<u64, Entry> {
        &self.entries
    }

    pub(crate) fn seeds(&self) -> &[PeerId] {
        &self.seeds
    }

    pub(crate) fn removed(&self) -> &BTreeMap<PeerId, Tombstone> {
        &self.removed
    }

    /// Whether the ring has been seeded (by `seed=` or by consensus).
    pub(crate) fn is_ready(&self) -> bool {
        !self.entries.is_empty()
    }

    /// Splits the whole range between `peers` in CIDR-aligned shares. Does nothing on a ring
    /// that is already seeded or for an empty list. `peers` is sorted and de-duplicated first,
    /// so every peer that seeds with the same set computes the same ring.
    pub(crate) fn seed(&mut self, peers: &[PeerId]) {
        if self.is_ready() || peers.is_empty() {
            return;
        }
        let mut peers = peers.to_vec();
        peers.sort();
        peers.dedup();
        self.subdivide(self.range.start(), self.range.end(), &peers);
        self.seeds = peers;
    }

    fn subdivide(&mut self, from: u64, to: u64, peers: &[PeerId]) {
        let share = to - from;
        if share == 0 {
            return;
        }
        if share == 1 || peers.len() == 1 {
            let owner = peers[0];
            self.entries.insert(
                from,
                Entry {
                    owner,
                    version: 1,
                    free: share,
                },
            );
            return;
        }
        let mid = from + share / 2;
        let (left, right) = peers.split_at(peers.len() / 2);
        self.subdivide(from, mid, left);
        self.subdivide(mid, to, right);
    }

    /// The peer owning `addr`, if the ring is seeded and `addr` is in range.
    pub(crate) fn owner_of(&self, addr: u64) -> Option<PeerId> {
        if !self.range.contains_raw(addr) {
            return None;
        }
        self.entries
            .range(..=addr)
            .next_back()
            .map(|(_, e)| e.owner)
    }

    fn next_token(&self, token: u64) -> u64 {
        self.entries
            .range(token + 1..)
            .next()
            .map_or(self.range.end(), |(&t, _)| t)
    }

    /// All segments in address order.
    pub(crate) fn segments(&self) -> impl Iterator<Item = Segment> + '_ {
        self.entries.iter().map(|(&start, &entry)| Segment {
            start,
            end: self.next_token(start),
            entry,
        })
    }

    /// The segments owned by `peer`.
    pub(crate) fn segments_of(&self, peer: PeerId) -> impl Iterator<Item = Segment> + '_ {
        self.segments().filter(move |s| s.entry.owner == peer)
    }

    /// The ranges owned by `peer`, adjacent segments coalesced.
    pub(crate) fn owned_ranges(&self, peer: PeerId) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for s in self.segments_of(peer) {
            match out.last_mut() {
                Some(last) if last.1 == s.start => last.1 = s.end,
                _ => out.push((s.start, s.end)),
            }
        }
        out
    }

    /// Joins `other` into this view. Returns whether anything changed. Refused (leaving this
    /// view untouched) when the rings cover different ranges or were seeded differently.
    pub(crate) fn merge(&mut self, other: &Ring) -> Result<bool, IpamError> {
        if self.range != other.range {
            return Err(IpamError::DifferentRange {
                ours: self.range,
                theirs: other.range,
            });
        }
        if !self.seeds.is_empty() && !other.seeds.is_empty() && self.seeds != other.seeds {
            return Err(IpamError::DifferentSeeds {
                ours: list(&self.seeds),
                theirs: list(&other.seeds),
            });
        }
        let mut changed = false;
        if self.seeds.is_empty() && !other.seeds.is_empty() {
            self.seeds.clone_from(&other.seeds);
            changed = true;
        }
        for (&token, theirs) in &other.entries {
            match self.entries.entry(token) {
                btree_map::Entry::Vacant(slot) => {
                    slot.insert(*theirs);
                    changed = true;
                }
                btree_map::Entry::Occupied(mut slot) => {
                    if theirs.rank() > slot.get().rank() {
                        slot.insert(*theirs);
                        changed = true;
                    }
                }
            }
        }
        for (&peer, &tomb) in &other.removed {
            match self.removed.entry(peer) {
                btree_map::Entry::Vacant(slot) => {
                    slot.insert(tomb);
                    changed = true;
                }
                btree_map::Entry::Occupied(mut slot) => {
                    if tomb > *slot.get() {
                        slot.insert(tomb);
                        changed = true;
                    }
                }
            }
        }
        Ok(changed)
    }

    /// Whether every address of `[start, end)` is owned by `me` in this view.
    pub(crate) fn owns_all(&self, me: PeerId, start: u64, end: u64) -> bool {
        start < end
            && self.owner_of(start) == Some(me)
            && self.entries.range(start..end).all(|(_, e)| e.owner == me)
    }

    /// Hands `[start, end)`, which `me` must own entirely, to `to`. Inserts at most two tokens.
    /// Returns false (and changes nothing) when `me` does not own the whole range.
    pub(crate) fn grant(&mut self, me: PeerId, start: u64, end: u64, to: PeerId) -> bool {
        if !self.owns_all(me, start, end) || me == to {
            return false;
        }
        if end < self.range.end() && !self.entries.contains_key(&end) {
            let free = self.next_token(end) - end;
            self.entries.insert(
                end,
                Entry {
                    owner: me,
                    version: 1,
                    free,
                },
            );
        }
        // A new token starts as a placeholder at version 0: the loop below makes it version 1,
        // owned by `to`.
        self.entries.entry(start).or_insert(Entry {
            owner: me,
            version: 0,
            free: 0,
        });
        let tokens: Vec<u64> = self.entries.range(start..end).map(|(&t, _)| t).collect();
        for t in tokens {
            let len = self.next_token(t) - t;
            if let Some(e) = self.entries.get_mut(&t) {
                *e = Entry {
                    owner: to,
                    version: e.version + 1,
                    free: len,
                };
            }
        }
        true
    }

    /// Sets the free count `me` reports for its own `token`, bumping the version if it changed.
    pub(crate) fn set_free(&mut self, me: PeerId, token: u64, free: u64) -> bool {
        match self.entries.get_mut(&token) {
            Some(e) if e.owner == me && e.free != free => {
                e.free = free;
                e.version += 1;
                true
            }
            _ => false,
        }
    }

    /// `rmpeer`: `me` takes over every segment of `dead`. Refused when `dead` is `me`, and when
    /// a tombstone says another peer already took `dead`'s space (the two-hosts-at-once guard),
    /// unless that remover has itself left or been removed. The remover named by the tombstone
    /// may run it again to collect space granted to `dead` after the first run. Returns the
    /// number of addresses taken over.
    pub(crate) fn take_over(&mut self, me: PeerId, dead: PeerId) -> Result<u64, IpamError> {
        if me == dead {
            return Err(IpamError::RmpeerSelf(dead));
        }
        let previous = self.removed.get(&dead).copied();
        if let Some(t) = previous
            && t.by != me
            && !self.removed.contains_key(&t.by)
        {
            return Err(IpamError::AlreadyTakenOver {
                peer: dead,
                by: t.by,
            });
        }
        let taken = self.reassign(dead, me, RMPEER_VERSION_JUMP);
        if taken == 0 {
            return Err(IpamError::NothingToTakeOver(dead));
        }
        self.bury(dead, me);
        Ok(taken)
    }

    /// Records that `peer`'s space went to `by`.
    fn bury(&mut self, peer: PeerId, by: PeerId) {
        let epoch = self.removed.get(&peer).map_or(1, |t| t.epoch + 1);
        self.removed.insert(peer, Tombstone { epoch, by });
    }

    /// `reset`: `me` hands all its segments to `heir` and records that it left. Returns the
    /// number of addresses handed.
    pub(crate) fn transfer_all(&mut self, me: PeerId, heir: PeerId) -> u64 {
        let handed = self.reassign(me, heir, 1);
        self.bury(me, heir);
        handed
    }

    fn reassign(&mut self, from: PeerId, to: PeerId, bump: u64) -> u64 {
        let tokens: Vec<(u64, u64)> = self.segments_of(from).map(|s| (s.start, s.len())).collect();
        let mut total = 0;
        for (t, len) in tokens {
            if let Some(e) = self.entries.get_mut(&t) {
                *e = Entry {
                    owner: to,
                    version: e.version.saturating_add(bump),
                    free: len,
                };
                total += len;
            }
        }
        total
    }
}

/// Formats a list of peers for messages.
pub(crate) fn list(peers: &[PeerId]) -> String {
    peers
        .iter()
        .map(PeerId::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
