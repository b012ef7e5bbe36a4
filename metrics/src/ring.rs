//! The metrics ring: on which peers a series lives (issue 10).
//!
//! Pure functions of a peer list, no IO and no clock: every peer derives the same ring from the
//! same list (the mesh topology), so any router can place a write or fan out a query. Each peer
//! owns [`TOKENS_PER_PEER`] points ("virtual nodes") on a 64-bit hash circle; a series hashes
//! (tenant, then its sorted labels) to a point and lives on the owners of the next
//! [`REPLICATION_FACTOR`] distinct peers clockwise. A peer joining or leaving moves only the
//! series next to its points, about 1/N of them.
//!
//! The hashes (FNV-1a over the bytes, finished with the splitmix64 mixer) are fixed here, not
//! taken from `std`, so placement is stable across Rust versions and architectures.

use crate::labels::Labels;
use crate::tenant::TenantId;

/// Copies of each series (as DESIGN.md: RF=3), fewer when the ring has fewer peers.
pub const REPLICATION_FACTOR: usize = 3;

/// Points each peer owns on the circle; enough for a ±10% balance with ten peers.
pub const TOKENS_PER_PEER: usize = 256;

/// A peer on the ring: the mesh's 48-bit peer name as an integer.
pub type PeerId = u64;

/// The ring derived from one peer list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    /// (token, peer) sorted by token.
    tokens: Vec<(u64, PeerId)>,
    /// The distinct peers, sorted.
    peers: Vec<PeerId>,
    /// Copies of each series (`--metrics-replication`).
    replication: usize,
}

impl Ring {
    /// Builds the ring of `peers` (order and duplicates do not matter) with
    /// [`REPLICATION_FACTOR`] copies of each series.
    pub fn new(peers: impl IntoIterator<Item = PeerId>) -> Self {
        Self::with_replication(peers, REPLICATION_FACTOR)
    }

    /// Builds the ring of `peers` with `replication` copies of each series (at least one).
    pub fn with_replication(peers: impl IntoIterator<Item = PeerId>, replication: usize) -> Self {
        let mut peers: Vec<PeerId> = peers.into_iter().collect();
        peers.sort_unstable();
        peers.dedup();
        let mut tokens: Vec<(u64, PeerId)> = peers
            .iter()
            .flat_map(|&p| (0..TOKENS_PER_PEER as u64).map(move |v| (token(p, v), p)))
            .collect();
        tokens.sort_unstable();
        Self {
            tokens,
            peers,
            replication: replication.max(1),
        }
    }

    /// The peers of the ring, sorted.
    pub fn peers(&self) -> &[PeerId] {
        &self.peers
    }

    /// Copies of each series this ring places: the replication factor, capped by the peers.
    pub fn copies(&self) -> usize {
        self.replication.min(self.peers.len())
    }

    /// Acknowledgements a write needs: a majority of [`Ring::copies`] (2 of 3, 1 of 1).
    pub fn write_quorum(&self) -> usize {
        self.copies() / 2 + 1
    }

    /// The peers holding the series with hash `key`: the replication factor's number of
    /// distinct peers (all of them when there are fewer), the first being the owner of the
    /// next token clockwise.
    pub fn replicas_of_key(&self, key: u64) -> Vec<PeerId> {
        let want = self.copies();
        let mut out = Vec::with_capacity(want);
        if want == 0 {
            return out;
        }
        let start = self.tokens.partition_point(|&(t, _)| t < key);
        for i in 0..self.tokens.len() {
            let (_, peer) = self.tokens[(start + i) % self.tokens.len()];
            if !out.contains(&peer) {
                out.push(peer);
                if out.len() == want {
                    break;
                }
            }
        }
        out
    }

    /// The peers holding series `labels` of `tenant`.
    pub fn replicas(&self, tenant: &TenantId, labels: &Labels) -> Vec<PeerId> {
        self.replicas_of_key(series_key(tenant, labels))
    }
}

/// The position of a series on the circle: a hash of its tenant and its sorted labels.
pub fn series_key(tenant: &TenantId, labels: &Labels) -> u64 {
    let mut h = Fnv::new();
    h.write(tenant.as_str().as_bytes());
    h.write(&[0xff]);
    for l in labels.iter() {
        h.write(l.name.as_bytes());
        h.write(&[0xfe]);
        h.write(l.value.as_bytes());
        h.write(&[0xff]);
    }
    mix(h.0)
}

/// The position of a peer's `v`-th token.
fn token(peer: PeerId, v: u64) -> u64 {
    let mut h = Fnv::new();
    h.write(&peer.to_le_bytes());
    h.write(&v.to_le_bytes());
    mix(h.0)
}

/// FNV-1a, 64 bits.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The splitmix64 finaliser: spreads FNV's output over the whole circle.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use super::*;

    fn peers(n: u64) -> Vec<PeerId> {
        (1..=n).map(|i| 0x02_42_ac_00_00_00 + i * 7919).collect()
    }

    /// Series keys of a realistic series set: node-exporter-like labels over many hosts.
    fn keys(n: usize) -> Vec<u64> {
        let tenant = TenantId::new("team-a").expect("tenant");
        (0..n)
            .map(|i| {
                let labels = Labels::from_pairs([
                    ("__name__", format!("metric_{}", i % 100)),
                    ("instance", format!("host-{}:9100", i / 100)),
                    ("job", "node".to_owned()),
                ])
                .expect("labels");
                series_key(&tenant, &labels)
            })
            .collect()
    }

    #[test]
    fn replicas_are_three_distinct_peers_whatever_the_peer_order() {
        let ring = Ring::new(peers(10));
        let mut shuffled = peers(10);
        shuffled.reverse();
        shuffled.push(shuffled[0]);
        assert_eq!(Ring::new(shuffled), ring);
        for key in keys(1000) {
            let r = ring.replicas_of_key(key);
            assert_eq!(r.len(), REPLICATION_FACTOR);
            assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), REPLICATION_FACTOR);
        }
    }

    #[test]
    fn small_rings_place_on_every_peer_and_empty_rings_nowhere() {
        assert!(Ring::new([]).replicas_of_key(42).is_empty());
        assert_eq!(Ring::new([7]).replicas_of_key(42), vec![7]);
        let two = Ring::new([7, 9]).replicas_of_key(42);
        assert_eq!(two.iter().collect::<BTreeSet<_>>(), [7, 9].iter().collect());
    }

    #[test]
    fn the_replication_factor_is_configurable_and_sets_the_quorum() {
        let one = Ring::with_replication(peers(5), 1);
        let five = Ring::with_replication(peers(5), 5);
        for key in keys(100) {
            assert_eq!(one.replicas_of_key(key).len(), 1);
            assert_eq!(five.replicas_of_key(key).len(), 5);
            // The first replica does not depend on the factor.
            assert_eq!(one.replicas_of_key(key)[0], five.replicas_of_key(key)[0]);
        }
        assert_eq!((one.copies(), one.write_quorum()), (1, 1));
        assert_eq!((five.copies(), five.write_quorum()), (5, 3));
        let three = Ring::new(peers(3));
        assert_eq!((three.copies(), three.write_quorum()), (3, 2));
        let two = Ring::new(peers(2));
        assert_eq!((two.copies(), two.write_quorum()), (2, 2));
        assert_eq!(Ring::with_replication(peers(2), 0).copies(), 1);
    }

    #[test]
    fn tenant_and_every_label_change_the_key() {
        let a = TenantId::new("a").expect("tenant");
        let b = TenantId::new("b").expect("tenant");
        let l = Labels::from_pairs([("__name__", "up"), ("job", "x")]).expect("labels");
        let l2 = Labels::from_pairs([("__name__", "up"), ("job", "y")]).expect("labels");
        // Moving bytes between name and value must not collide either.
        let l3 = Labels::from_pairs([("__name__", "up"), ("jo", "bx")]).expect("labels");
        let k = series_key(&a, &l);
        assert_ne!(k, series_key(&b, &l));
        assert_ne!(k, series_key(&a, &l2));
        assert_ne!(k, series_key(&a, &l3));
        assert_eq!(k, series_key(&a, &l.clone()));
    }

    #[test]
    fn one_million_series_on_ten_peers_balance_within_ten_percent() {
        let ring = Ring::new(peers(10));
        let mut load: HashMap<PeerId, usize> = HashMap::new();
        let n = 1_000_000;
        for key in keys(n) {
            for p in ring.replicas_of_key(key) {
                *load.entry(p).or_default() += 1;
            }
        }
        let expected = (n * REPLICATION_FACTOR) as f64 / 10.0;
        assert_eq!(load.len(), 10);
        for (peer, l) in load {
            let dev = (l as f64 - expected) / expected;
            assert!(
                dev.abs() <= 0.10,
                "peer {peer:x} holds {l}, {:.1}% off",
                dev * 100.0
            );
        }
    }

    /// Fraction of replica slots that change between two rings.
    fn moved(a: &Ring, b: &Ring, keys: &[u64]) -> f64 {
        let mut changed = 0usize;
        for &k in keys {
            let before: BTreeSet<PeerId> = a.replicas_of_key(k).into_iter().collect();
            let after = b.replicas_of_key(k);
            changed += after.iter().filter(|p| !before.contains(p)).count();
        }
        changed as f64 / (keys.len() * REPLICATION_FACTOR) as f64
    }

    #[test]
    fn a_join_or_a_leave_moves_about_one_nth_of_the_replicas() {
        let keys = keys(200_000);
        let ten = Ring::new(peers(10));
        let eleven = Ring::new(peers(11));
        let nine = Ring::new(peers(10).into_iter().skip(1));
        let join = moved(&ten, &eleven, &keys);
        let leave = moved(&ten, &nine, &keys);
        // Ideal: 1/11 of the slots go to the newcomer; the leaver's 1/10 is re-homed.
        assert!((0.06..=0.12).contains(&join), "a join moved {join:.3}");
        assert!((0.07..=0.13).contains(&leave), "a leave moved {leave:.3}");
        // A leave only moves the replicas the leaver held.
        let gone = peers(10)[0];
        for &k in keys.iter().take(20_000) {
            let before = ten.replicas_of_key(k);
            if !before.contains(&gone) {
                assert_eq!(
                    before.iter().collect::<BTreeSet<_>>(),
                    nine.replicas_of_key(k).iter().collect()
                );
            }
        }
    }
}
