//! Ring unit tests and property tests of the merge laws.

use proptest::prelude::*;

use super::*;

const PEERS: usize = 4;

fn range() -> Cidr {
    "10.0.0.0/24".parse().expect("cidr")
}

fn peer(i: usize) -> PeerId {
    PeerId(i as u64 + 1)
}

fn seeded() -> Ring {
    let mut r = Ring::new(range());
    r.seed(&(0..PEERS).map(peer).collect::<Vec<_>>());
    r
}

fn merged(a: &Ring, b: &Ring) -> Ring {
    let mut out = a.clone();
    out.merge(b).expect("same range and seeds");
    out
}

#[test]
fn seeding_is_deterministic_and_covers_the_range() {
    let mut a = Ring::new(range());
    a.seed(&[peer(2), peer(0), peer(1)]);
    let mut b = Ring::new(range());
    b.seed(&[peer(1), peer(2), peer(0), peer(1)]);
    assert_eq!(a, b);
    let total: u64 = a.segments().map(|s| s.len()).sum();
    assert_eq!(total, 256);
    assert_eq!(a.owner_of(range().start()), Some(peer(0)));
    assert_eq!(a.owner_of(range().end() - 1), Some(peer(2)));
    assert_eq!(a.owner_of(range().end()), None);
}

#[test]
fn grant_splits_and_only_the_owner_may_grant() {
    let mut r = seeded();
    let (s, e) = r.owned_ranges(peer(0))[0];
    assert!(
        !r.grant(peer(1), s, e, peer(2)),
        "peer 1 does not own peer 0's range"
    );
    assert!(r.grant(peer(0), s + 10, s + 20, peer(3)));
    assert_eq!(r.owner_of(s + 9), Some(peer(0)));
    assert_eq!(r.owner_of(s + 10), Some(peer(3)));
    assert_eq!(r.owner_of(s + 19), Some(peer(3)));
    assert_eq!(r.owner_of(s + 20), Some(peer(0)));
    assert!(
        !r.grant(peer(0), s + 5, s + 15, peer(1)),
        "straddles peer 3's new segment"
    );
}

#[test]
fn take_over_is_guarded_once_the_news_arrives() {
    let mut a = seeded();
    let mut b = seeded();
    let dead = peer(3);
    let taken = a.take_over(peer(0), dead).expect("first rmpeer works");
    assert_eq!(taken, 64);
    assert_eq!(
        a.take_over(peer(1), dead),
        Err(IpamError::AlreadyTakenOver {
            peer: dead,
            by: peer(0)
        })
    );
    b.merge(&a).expect("merge");
    assert_eq!(
        b.take_over(peer(1), dead).map_err(|e| e.to_string()),
        Err("rmpeer refused: peer 00:00:00:00:00:04's space was already taken over by 00:00:00:00:00:01".into())
    );
    assert_eq!(
        b.take_over(peer(1), peer(1)),
        Err(IpamError::RmpeerSelf(peer(1)))
    );
    assert_eq!(
        b.take_over(peer(1), PeerId(99)),
        Err(IpamError::NothingToTakeOver(PeerId(99)))
    );
}

#[test]
fn only_the_named_remover_collects_leftovers_unless_it_is_gone_too() {
    let mut r = seeded();
    let (dead, first, other) = (peer(3), peer(0), peer(1));
    r.take_over(first, dead).expect("first rmpeer");
    // Space donated to the dead peer after the first rmpeer (a late donation).
    let (s, _) = r.owned_ranges(other)[0];
    assert!(r.grant(other, s, s + 4, dead));
    assert_eq!(
        r.clone().take_over(other, dead),
        Err(IpamError::AlreadyTakenOver {
            peer: dead,
            by: first
        })
    );
    let mut again = r.clone();
    assert_eq!(again.take_over(first, dead), Ok(4));
    assert_eq!(
        again.removed()[&dead],
        Tombstone {
            epoch: 2,
            by: first
        }
    );
    // Once the first remover has left, anyone may collect.
    r.transfer_all(first, peer(2));
    assert_eq!(r.take_over(other, dead), Ok(4));
}

#[test]
fn concurrent_take_overs_resolve_to_one_winner_everywhere() {
    let mut a = seeded();
    let mut b = seeded();
    a.take_over(peer(0), peer(3)).expect("a");
    b.take_over(peer(1), peer(3)).expect("b");
    let ab = merged(&a, &b);
    assert_eq!(ab, merged(&b, &a));
    let winner = ab.owned_ranges(peer(1));
    let dead_share = range().start() + 192;
    assert!(
        winner.iter().any(|&(s, _)| s == dead_share),
        "higher name wins: {winner:?}"
    );
    assert_eq!(ab.removed()[&peer(3)].by, peer(1));
}

#[test]
fn merge_refuses_other_ranges_and_seeds() {
    let mut a = seeded();
    let other = Ring::new("10.1.0.0/24".parse().expect("cidr"));
    assert!(matches!(
        a.merge(&other),
        Err(IpamError::DifferentRange { .. })
    ));
    let mut b = Ring::new(range());
    b.seed(&[peer(0)]);
    assert_eq!(
        a.merge(&b).map_err(|e| e.to_string()),
        Err("peer's ring was seeded with [00:00:00:00:00:01] but ours with [00:00:00:00:00:01, 00:00:00:00:00:02, 00:00:00:00:00:03, 00:00:00:00:00:04]: peers were started with conflicting --ipalloc-init; reset one side".into())
    );
    assert_eq!(a, seeded(), "a refused merge changes nothing");
}

/// A step of a ring-only history: each replica belongs to one peer.
#[derive(Debug, Clone)]
enum Op {
    /// Replica `from` grants part of one of its segments to `to`.
    Grant {
        from: usize,
        to: usize,
        seg: u8,
        a: u8,
        b: u8,
    },
    /// Replica `who` reports a new free count on one of its segments.
    Free { who: usize, seg: u8, free: u8 },
    /// Replica `to` merges replica `from`'s view.
    Sync { to: usize, from: usize },
    /// Replica `who` runs rmpeer of `dead` (which then stops acting).
    TakeOver { who: usize, dead: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PEERS;
    prop_oneof![
        3 => (p.clone(), p.clone(), any::<u8>(), any::<u8>(), any::<u8>())
            .prop_map(|(from, to, seg, a, b)| Op::Grant { from, to, seg, a, b }),
        2 => (p.clone(), any::<u8>(), any::<u8>()).prop_map(|(who, seg, free)| Op::Free { who, seg, free }),
        5 => (p.clone(), p.clone()).prop_map(|(to, from)| Op::Sync { to, from }),
        1 => (p.clone(), p).prop_map(|(who, dead)| Op::TakeOver { who, dead }),
    ]
}

struct History {
    views: Vec<Ring>,
    dead: Vec<bool>,
}

impl History {
    fn new() -> Self {
        History {
            views: vec![seeded(); PEERS],
            dead: vec![false; PEERS],
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Grant {
                from,
                to,
                seg,
                a,
                b,
            } if !self.dead[from] && !self.dead[to] => {
                let segs: Vec<Segment> = self.views[from].segments_of(peer(from)).collect();
                if segs.is_empty() {
                    return;
                }
                let s = segs[seg as usize % segs.len()];
                let start = s.start + u64::from(a) % s.len();
                let end = start + 1 + u64::from(b) % (s.end - start);
                self.views[from].grant(peer(from), start, end, peer(to));
            }
            Op::Free { who, seg, free } if !self.dead[who] => {
                let segs: Vec<Segment> = self.views[who].segments_of(peer(who)).collect();
                if let Some(s) = segs.get(seg as usize % segs.len().max(1)) {
                    let free = u64::from(free) % (s.len() + 1);
                    self.views[who].set_free(peer(who), s.start, free);
                }
            }
            Op::Sync { to, from } if !self.dead[to] => {
                let theirs = self.views[from].clone();
                self.views[to].merge(&theirs).expect("same range and seeds");
            }
            // The documented precondition of rmpeer: one operator, a peer that is gone, and a
            // remover that has heard the dead peer's last state (here: merges it first).
            Op::TakeOver { who, dead } if who != dead && !self.dead[who] && !self.dead[dead] => {
                self.dead[dead] = true;
                let last = self.views[dead].clone();
                self.views[who].merge(&last).expect("same range and seeds");
                self.views[who].take_over(peer(who), peer(dead)).ok();
            }
            _ => {}
        }
    }

    /// No address is owned by two live peers in their own views, and the merge of all views
    /// agrees with every live peer about what it owns.
    fn check_safety(&self) -> Result<(), String> {
        let mut all = self.views[0].clone();
        for v in &self.views[1..] {
            all.merge(v).map_err(|e| e.to_string())?;
        }
        for x in range().start()..range().end() {
            let claimants: Vec<usize> = (0..PEERS)
                .filter(|&i| !self.dead[i] && self.views[i].owner_of(x) == Some(peer(i)))
                .collect();
            if claimants.len() > 1 {
                return Err(format!("address {x} owned by peers {claimants:?}"));
            }
            if let Some(&i) = claimants.first()
                && all.owner_of(x) != Some(peer(i))
            {
                return Err(format!(
                    "merge gives {x} to {:?}, its owner {i} disagrees",
                    all.owner_of(x)
                ));
            }
        }
        Ok(())
    }
}

fn arbitrary_ring() -> impl Strategy<Value = Ring> {
    let entry = (0..PEERS, 1u64..5, 0u64..300);
    (
        proptest::collection::btree_map(1u64..256, entry.clone(), 0..12),
        entry,
        proptest::collection::btree_map(0..PEERS, (0u64..3, 0..PEERS), 0..3),
    )
        .prop_map(|(tokens, first, removed)| {
            let mk = |(o, version, free): (usize, u64, u64)| Entry {
                owner: peer(o),
                version,
                free,
            };
            let start = range().start();
            let mut entries: BTreeMap<u64, Entry> = tokens
                .into_iter()
                .map(|(t, e)| (start + t, mk(e)))
                .collect();
            entries.insert(start, mk(first));
            let removed = removed
                .into_iter()
                .map(|(p, (epoch, by))| {
                    (
                        peer(p),
                        Tombstone {
                            epoch,
                            by: peer(by),
                        },
                    )
                })
                .collect();
            let seeds = (0..PEERS).map(peer).collect();
            Ring::from_parts(range(), entries, seeds, removed).expect("valid")
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn merge_laws_hold_for_arbitrary_rings(a in arbitrary_ring(), b in arbitrary_ring(), c in arbitrary_ring()) {
        prop_assert_eq!(merged(&a, &b), merged(&b, &a), "commutative");
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)), "associative");
        prop_assert_eq!(merged(&a, &a), a.clone(), "idempotent");
        let ab = merged(&a, &b);
        prop_assert_eq!(merged(&ab, &a), ab.clone(), "absorbs its inputs");
        let total: u64 = ab.segments().map(|s| s.len()).sum();
        prop_assert_eq!(total, range().size(), "every address has exactly one owner");
    }

    #[test]
    fn histories_never_give_an_address_to_two_peers(ops in proptest::collection::vec(op(), 1..80), pick in any::<[u8; 3]>()) {
        let mut h = History::new();
        for op in &ops {
            h.apply(op);
            prop_assert_eq!(h.check_safety(), Ok(()), "after {:?}", op);
        }
        let [a, b, c] = pick.map(|i| h.views[i as usize % PEERS].clone());
        prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        prop_assert_eq!(merged(&a, &a), a);
    }
}
