//! The peers table: every known peer, its incarnation and version, and the
//! connections it announces. Gossiped on [`TOPOLOGY_CHANNEL`](super::wire::TOPOLOGY_CHANNEL).
//!
//! Merging keeps, per peer name, the entry with the larger `(uid, version)`
//! (ties broken by content, so merge is a join: idempotent, commutative,
//! associative). A restarted peer has a larger UID, so its new incarnation
//! replaces the old one everywhere. Peers no longer reachable from us are
//! garbage-collected; unicast routes are shortest paths over established
//! connections that both ends announce.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use prost::Message;

use super::peer::{PeerInfo, PeerName, PeerNameError};
use super::wire::{ConnRecord, PeerRecord, TopologyUpdate};

/// Why a topology update was rejected.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The payload is not a `TopologyUpdate`.
    #[error("topology update does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A peer name does not fit in 48 bits.
    #[error("topology update has an invalid peer name: {0}")]
    BadName(#[from] PeerNameError),
    /// A listen port is out of range.
    #[error("topology update has listen port {0}, which is out of range")]
    BadPort(u32),
}

/// One connection as its owner announces it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConnSummary {
    /// The remote peer.
    pub name: PeerName,
    /// The remote TCP address as the owner sees it.
    pub address: String,
    /// Whether the owner dialled.
    pub outbound: bool,
    /// Whether the handshake completed.
    pub established: bool,
}

/// One peer's entry in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEntry {
    /// Identity of the incarnation.
    pub info: PeerInfo,
    /// Version within the incarnation; bumped on every change by the owner.
    pub version: u64,
    /// Connections, sorted by remote name, at most one per remote.
    pub connections: Vec<ConnSummary>,
}

impl PeerEntry {
    /// The total order merge uses: larger wins.
    fn rank(&self) -> (u64, u64, &PeerInfo, &[ConnSummary]) {
        (self.info.uid, self.version, &self.info, &self.connections)
    }

    fn to_record(&self) -> PeerRecord {
        PeerRecord {
            name: self.info.name.0,
            nickname: self.info.nickname.clone(),
            uid: self.info.uid,
            version: self.version,
            listen_port: u32::from(self.info.listen_port),
            connections: self
                .connections
                .iter()
                .map(|c| ConnRecord {
                    name: c.name.0,
                    address: c.address.clone(),
                    outbound: c.outbound,
                    established: c.established,
                })
                .collect(),
        }
    }

    fn from_record(r: PeerRecord) -> Result<PeerEntry, TopologyError> {
        let name = PeerName::from_u64(r.name)?;
        let listen_port =
            u16::try_from(r.listen_port).map_err(|_| TopologyError::BadPort(r.listen_port))?;
        let mut connections = Vec::with_capacity(r.connections.len());
        for c in r.connections {
            connections.push(ConnSummary {
                name: PeerName::from_u64(c.name)?,
                address: c.address,
                outbound: c.outbound,
                established: c.established,
            });
        }
        Ok(PeerEntry {
            info: PeerInfo {
                name,
                nickname: r.nickname,
                uid: r.uid,
                listen_port,
            },
            version: r.version,
            connections: normalize(name, connections),
        })
    }

    /// The connection to `name`, if announced.
    pub fn connection_to(&self, name: PeerName) -> Option<&ConnSummary> {
        self.connections
            .binary_search_by_key(&name, |c| c.name)
            .ok()
            .map(|i| &self.connections[i])
    }
}

/// Sorts by remote name, keeps one connection per remote, drops self-loops.
fn normalize(owner: PeerName, mut conns: Vec<ConnSummary>) -> Vec<ConnSummary> {
    conns.retain(|c| c.name != owner);
    conns.sort();
    conns.dedup_by(|later, earlier| later.name == earlier.name);
    conns
}

/// What a merge changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Peers whose entry we replaced or learned: the news to forward.
    pub improved: Vec<PeerName>,
    /// Someone had a newer-looking entry for our own name; we bumped ours
    /// above it (it is in `improved` too).
    pub local_bumped: bool,
}

/// The peers table of one peer.
#[derive(Debug, Clone)]
pub struct Topology {
    local: PeerName,
    peers: BTreeMap<PeerName, PeerEntry>,
}

impl Topology {
    /// A table that knows only us, at version 1 with no connections.
    pub fn new(local: PeerInfo) -> Topology {
        let name = local.name;
        let entry = PeerEntry {
            info: local,
            version: 1,
            connections: Vec::new(),
        };
        Topology {
            local: name,
            peers: BTreeMap::from([(name, entry)]),
        }
    }

    /// Our own entry.
    pub fn local(&self) -> &PeerEntry {
        // The local entry is inserted by `new` and never removed.
        &self.peers[&self.local]
    }

    /// The entry of `name`.
    pub fn get(&self, name: PeerName) -> Option<&PeerEntry> {
        self.peers.get(&name)
    }

    /// All entries, by name.
    pub fn entries(&self) -> impl Iterator<Item = &PeerEntry> {
        self.peers.values()
    }

    /// Replaces our connections; bumps our version when they changed.
    pub fn set_local_connections(&mut self, conns: Vec<ConnSummary>) -> bool {
        let local = self.local;
        let conns = normalize(local, conns);
        let Some(entry) = self.peers.get_mut(&local) else {
            return false;
        };
        if entry.connections == conns {
            return false;
        }
        entry.connections = conns;
        entry.version += 1;
        true
    }

    /// Encodes every entry (full state).
    pub fn encode_all(&self) -> Vec<u8> {
        TopologyUpdate {
            peers: self.peers.values().map(PeerEntry::to_record).collect(),
        }
        .encode_to_vec()
    }

    /// Encodes the entries of `names` that we know (an update).
    pub fn encode(&self, names: &[PeerName]) -> Vec<u8> {
        TopologyUpdate {
            peers: names
                .iter()
                .filter_map(|n| self.peers.get(n))
                .map(PeerEntry::to_record)
                .collect(),
        }
        .encode_to_vec()
    }

    /// Decodes a payload into entries.
    pub fn decode(bytes: &[u8]) -> Result<Vec<PeerEntry>, TopologyError> {
        TopologyUpdate::decode(bytes)?
            .peers
            .into_iter()
            .map(PeerEntry::from_record)
            .collect()
    }

    /// Decodes and merges a gossiped payload.
    pub fn merge(&mut self, update: &[u8]) -> Result<MergeOutcome, TopologyError> {
        Ok(self.merge_entries(Topology::decode(update)?))
    }

    /// Merges entries: per name the larger `(uid, version)` wins. An entry for
    /// our own name never replaces ours; if it outranks ours we bump ours past it.
    pub fn merge_entries(&mut self, entries: Vec<PeerEntry>) -> MergeOutcome {
        let mut out = MergeOutcome::default();
        for entry in entries {
            let name = entry.info.name;
            if name == self.local {
                if self.bump_local_past(&entry) {
                    out.local_bumped = true;
                    out.improved.push(name);
                }
                continue;
            }
            match self.peers.get_mut(&name) {
                Some(existing) if entry.rank() <= existing.rank() => {}
                Some(existing) => {
                    *existing = entry;
                    out.improved.push(name);
                }
                None => {
                    self.peers.insert(name, entry);
                    out.improved.push(name);
                }
            }
        }
        out.improved.sort();
        out.improved.dedup();
        out
    }

    fn bump_local_past(&mut self, other: &PeerEntry) -> bool {
        let Some(local) = self.peers.get_mut(&self.local) else {
            return false;
        };
        if (other.info.uid, other.version) < (local.info.uid, local.version) || other == local {
            return false;
        }
        local.info.uid = local.info.uid.max(other.info.uid);
        local.version = local.version.max(other.version) + 1;
        true
    }

    /// Removes peers not reachable from us over any announced connection;
    /// returns their names.
    pub fn garbage_collect(&mut self) -> Vec<PeerName> {
        let mut reached = BTreeSet::from([self.local]);
        let mut queue = VecDeque::from([self.local]);
        while let Some(name) = queue.pop_front() {
            let Some(entry) = self.peers.get(&name) else {
                continue;
            };
            for conn in &entry.connections {
                if self.peers.contains_key(&conn.name) && reached.insert(conn.name) {
                    queue.push_back(conn.name);
                }
            }
        }
        let removed: Vec<PeerName> = self
            .peers
            .keys()
            .filter(|n| !reached.contains(n))
            .copied()
            .collect();
        for name in &removed {
            self.peers.remove(name);
        }
        removed
    }

    /// Whether `a` and `b` both announce an established connection to each other.
    fn symmetric(&self, a: &PeerEntry, b: PeerName) -> bool {
        a.connection_to(b).is_some_and(|c| c.established)
            && self
                .peers
                .get(&b)
                .and_then(|e| e.connection_to(a.info.name))
                .is_some_and(|c| c.established)
    }

    /// Next hop for every reachable peer: breadth-first over established,
    /// symmetric connections, visiting peers in name order, so every peer
    /// computing over the same table gets the same routes.
    pub fn routes(&self) -> BTreeMap<PeerName, PeerName> {
        let mut next_hop = BTreeMap::new();
        let mut level = vec![self.local];
        let mut seen = BTreeSet::from([self.local]);
        while !level.is_empty() {
            let mut next_level = Vec::new();
            for name in &level {
                let Some(entry) = self.peers.get(name) else {
                    continue;
                };
                for conn in &entry.connections {
                    if seen.contains(&conn.name) || !self.symmetric(entry, conn.name) {
                        continue;
                    }
                    seen.insert(conn.name);
                    let hop = if *name == self.local {
                        conn.name
                    } else {
                        next_hop.get(name).copied().unwrap_or(conn.name)
                    };
                    next_hop.insert(conn.name, hop);
                    next_level.push(conn.name);
                }
            }
            next_level.sort();
            level = next_level;
        }
        next_hop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn info(name: u64, uid: u64) -> PeerInfo {
        PeerInfo {
            name: PeerName(name),
            nickname: format!("n{name}"),
            uid,
            listen_port: 6783,
        }
    }

    fn conn(name: u64) -> ConnSummary {
        ConnSummary {
            name: PeerName(name),
            address: format!("127.0.0.{name}:6783"),
            outbound: true,
            established: true,
        }
    }

    fn entry(name: u64, uid: u64, version: u64, conns: &[u64]) -> PeerEntry {
        PeerEntry {
            info: info(name, uid),
            version,
            connections: conns.iter().map(|&c| conn(c)).collect(),
        }
    }

    /// A table for peer 1 holding `entries` (peer 1's own connections set from its entry).
    fn table(entries: Vec<PeerEntry>) -> Topology {
        let mut t = Topology::new(info(1, 1));
        for e in &entries {
            if e.info.name == PeerName(1) {
                t.set_local_connections(e.connections.clone());
            }
        }
        t.merge_entries(entries);
        t
    }

    #[test]
    fn newer_version_and_newer_uid_win() {
        let mut t = table(vec![entry(2, 5, 3, &[1])]);
        assert!(
            t.merge_entries(vec![entry(2, 5, 2, &[])])
                .improved
                .is_empty()
        );
        assert_eq!(
            t.merge_entries(vec![entry(2, 5, 4, &[])]).improved,
            vec![PeerName(2)]
        );
        // A restarted incarnation (larger uid) wins even at version 1.
        assert_eq!(
            t.merge_entries(vec![entry(2, 6, 1, &[])]).improved,
            vec![PeerName(2)]
        );
        assert_eq!(t.get(PeerName(2)).unwrap().info.uid, 6);
        // The old incarnation never comes back.
        assert!(
            t.merge_entries(vec![entry(2, 5, 99, &[])])
                .improved
                .is_empty()
        );
    }

    #[test]
    fn own_entry_is_never_replaced_but_bumped_past() {
        let mut t = Topology::new(info(1, 10));
        let out = t.merge_entries(vec![entry(1, 10, 7, &[3])]);
        assert!(out.local_bumped);
        assert_eq!(t.local().version, 8);
        assert!(t.local().connections.is_empty());
        // An older incarnation of ourselves changes nothing.
        let out = t.merge_entries(vec![entry(1, 9, 100, &[])]);
        assert_eq!(out, MergeOutcome::default());
    }

    #[test]
    fn encode_decode_round_trip_and_bad_input() {
        let t = table(vec![entry(1, 1, 2, &[2]), entry(2, 3, 4, &[1, 3])]);
        let decoded = Topology::decode(&t.encode_all()).unwrap();
        assert_eq!(decoded, t.entries().cloned().collect::<Vec<_>>());
        assert_eq!(
            Topology::decode(&t.encode(&[PeerName(2)])).unwrap().len(),
            1
        );
        assert!(Topology::decode(&[0xff, 0xff]).is_err());
        let wide = TopologyUpdate {
            peers: vec![PeerRecord {
                name: 1 << 50,
                ..Default::default()
            }],
        };
        assert!(matches!(
            Topology::decode(&wide.encode_to_vec()),
            Err(TopologyError::BadName(_))
        ));
    }

    #[test]
    fn unreachable_peers_are_collected() {
        // 1-2-3 connected; 4-5 connected only to each other.
        let mut t = table(vec![
            entry(1, 1, 2, &[2]),
            entry(2, 1, 1, &[1, 3]),
            entry(3, 1, 1, &[2]),
            entry(4, 1, 1, &[5]),
            entry(5, 1, 1, &[4]),
        ]);
        assert_eq!(t.garbage_collect(), vec![PeerName(4), PeerName(5)]);
        assert_eq!(t.entries().count(), 3);
    }

    #[test]
    fn routes_use_symmetric_connections_only() {
        // Line 1-2-3-4, plus 1->5 that 5 does not announce back.
        let t = table(vec![
            entry(1, 1, 2, &[2, 5]),
            entry(2, 1, 1, &[1, 3]),
            entry(3, 1, 1, &[2, 4]),
            entry(4, 1, 1, &[3]),
            entry(5, 1, 1, &[]),
        ]);
        let routes = t.routes();
        assert_eq!(routes.get(&PeerName(4)), Some(&PeerName(2)));
        assert_eq!(routes.get(&PeerName(3)), Some(&PeerName(2)));
        assert_eq!(routes.get(&PeerName(2)), Some(&PeerName(2)));
        assert_eq!(routes.get(&PeerName(5)), None);
    }

    #[test]
    fn routes_prefer_shortest_path() {
        // 1-2-3-4 and 1-5-4: 4 is two hops via 5.
        let t = table(vec![
            entry(1, 1, 2, &[2, 5]),
            entry(2, 1, 1, &[1, 3]),
            entry(3, 1, 1, &[2, 4]),
            entry(4, 1, 1, &[3, 5]),
            entry(5, 1, 1, &[1, 4]),
        ]);
        assert_eq!(t.routes().get(&PeerName(4)), Some(&PeerName(5)));
    }

    fn arb_entry() -> impl Strategy<Value = PeerEntry> {
        (
            2u64..6,
            1u64..3,
            1u64..4,
            prop::sample::select(vec!["a", "b"]),
            prop::collection::vec((1u64..6, any::<bool>()), 0..4),
        )
            .prop_map(|(name, uid, version, nick, conns)| {
                let connections = conns
                    .into_iter()
                    .map(|(c, est)| ConnSummary {
                        established: est,
                        ..conn(c)
                    })
                    .collect();
                PeerEntry {
                    info: PeerInfo {
                        nickname: nick.to_owned(),
                        ..info(name, uid)
                    },
                    version,
                    connections: normalize(PeerName(name), connections),
                }
            })
    }

    fn arb_update() -> impl Strategy<Value = Vec<PeerEntry>> {
        prop::collection::vec(arb_entry(), 0..6)
    }

    fn merged(updates: &[&Vec<PeerEntry>]) -> Vec<PeerEntry> {
        let mut t = Topology::new(info(100, 1));
        for u in updates {
            t.merge_entries((*u).clone());
        }
        t.entries().cloned().collect()
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in arb_update(), b in arb_update()) {
            prop_assert_eq!(merged(&[&a, &b]), merged(&[&b, &a]));
        }

        #[test]
        fn merge_is_associative(a in arb_update(), b in arb_update(), c in arb_update()) {
            // (a then b) merged as one update with c, against a then (b with c).
            let mut ab = Topology::new(info(100, 1));
            ab.merge_entries(a.clone());
            ab.merge_entries(b.clone());
            let mut bc = Topology::new(info(100, 1));
            bc.merge_entries(b.clone());
            bc.merge_entries(c.clone());
            let mut left = Topology::new(info(100, 1));
            left.merge_entries(ab.entries().cloned().collect());
            left.merge_entries(c.clone());
            let mut right = Topology::new(info(100, 1));
            right.merge_entries(a.clone());
            right.merge_entries(bc.entries().cloned().collect());
            prop_assert_eq!(
                left.entries().cloned().collect::<Vec<_>>(),
                right.entries().cloned().collect::<Vec<_>>()
            );
        }

        #[test]
        fn merge_is_idempotent(a in arb_update(), b in arb_update()) {
            let mut t = Topology::new(info(100, 1));
            t.merge_entries(a.clone());
            t.merge_entries(b.clone());
            let before: Vec<PeerEntry> = t.entries().cloned().collect();
            prop_assert!(t.merge_entries(a).improved.is_empty());
            prop_assert!(t.merge_entries(before.clone()).improved.is_empty());
            prop_assert_eq!(t.entries().cloned().collect::<Vec<_>>(), before);
        }

        #[test]
        fn wire_round_trip(a in arb_update()) {
            let mut t = Topology::new(info(100, 1));
            t.merge_entries(a);
            let entries: Vec<PeerEntry> = t.entries().cloned().collect();
            prop_assert_eq!(Topology::decode(&t.encode_all()).unwrap(), entries);
        }
    }
}
