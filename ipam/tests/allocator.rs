//! The allocator's public API: bad input with exact errors, pending requests, donation,
//! consensus, claims, rmpeer, reset, persistence, and decoding of arbitrary bytes.

use std::net::Ipv4Addr;
use std::time::Duration;

use proptest::prelude::*;
use weft_ipam::{
    Allocation, Allocator, Cidr, Config, Event, InitMode, IpamError, PeerId, Transmit, decode,
};

const A: PeerId = PeerId(0x0a00_0000_0001);
const B: PeerId = PeerId(0x0a00_0000_0002);
const C: PeerId = PeerId(0x0a00_0000_0003);
const T0: Duration = Duration::ZERO;

fn cidr(s: &str) -> Cidr {
    s.parse().expect("cidr")
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

fn seeded(peers: &[PeerId], range: &str) -> Vec<Allocator> {
    peers
        .iter()
        .map(|&p| Allocator::new(Config::new(p, cidr(range), InitMode::Seed(peers.to_vec()))))
        .collect()
}

/// Delivers every message between the allocators until none is left; returns all events.
fn pump(nodes: &mut [Allocator], now: Duration) -> Vec<(usize, Event)> {
    let mut events = Vec::new();
    loop {
        let mut sent = Vec::new();
        for (i, n) in nodes.iter_mut().enumerate() {
            while let Some(t) = n.poll_transmit() {
                sent.push((i, t));
            }
            while let Some(e) = n.poll_event() {
                events.push((i, e));
            }
        }
        if sent.is_empty() {
            return events;
        }
        for (from, t) in sent {
            let src = nodes[from].config().peer;
            match t {
                Transmit::Broadcast(bytes) => {
                    for (j, n) in nodes.iter_mut().enumerate() {
                        if j != from {
                            n.merge(src, &bytes, now).expect("merge");
                        }
                    }
                }
                Transmit::Unicast { to, bytes } => {
                    let n = nodes
                        .iter_mut()
                        .find(|n| n.config().peer == to)
                        .expect("known peer");
                    n.on_unicast(src, &bytes, now).expect("unicast");
                }
            }
        }
    }
}

/// Every peer sends its full state to every other (the router's periodic gossip).
fn anti_entropy(nodes: &mut [Allocator]) {
    let states: Vec<(PeerId, Vec<u8>)> = nodes
        .iter()
        .map(|n| (n.config().peer, n.full_state()))
        .collect();
    for n in nodes.iter_mut() {
        for (src, bytes) in &states {
            if *src != n.config().peer {
                n.merge(*src, bytes, T0).expect("merge");
            }
        }
    }
    pump(nodes, T0);
}

fn ready(a: Result<Allocation, IpamError>) -> Ipv4Addr {
    match a {
        Ok(Allocation::Ready(addr)) => addr,
        other => panic!("expected an address, got {other:?}"),
    }
}

fn pending(a: Result<Allocation, IpamError>) -> weft_ipam::RequestId {
    match a {
        Ok(Allocation::Pending(id)) => id,
        other => panic!("expected a pending request, got {other:?}"),
    }
}

#[test]
fn bad_input_is_refused_with_exact_errors() {
    let err = |r: Result<Allocation, IpamError>| r.map_err(|e| e.to_string());
    assert_eq!(
        "10.32.0.0/33".parse::<Cidr>().map_err(|e| e.to_string()),
        Err(
            "10.32.0.0/33 is not a valid CIDR: expected an IPv4 network such as 10.32.0.0/12"
                .into()
        )
    );
    assert_eq!(
        "10.32.1.0/12".parse::<Cidr>().map_err(|e| e.to_string()),
        Err("10.32.1.0/12 is not a network address: did you mean 10.32.0.0/12?".into())
    );
    assert_eq!(
        "seed=0a:00:00:00:00:01,not-a-peer".parse::<InitMode>().map_err(|e| e.to_string()),
        Err("'seed=0a:00:00:00:00:01,not-a-peer' is not an IPAM init mode: 'not-a-peer' is not a peer name: expected 6 hex bytes such as aa:bb:cc:dd:ee:ff or up to 12 hex digits; expected consensus, consensus=N, seed=PEER,... or observer".into())
    );
    let mut a = seeded(&[A], "10.32.0.0/12").remove(0);
    assert_eq!(
        err(a.claim("c1", ip("10.48.0.1"), None, T0)),
        Err("address 10.48.0.1 is outside the range 10.32.0.0/12".into())
    );
    assert_eq!(
        err(a.allocate("c1", Some(cidr("10.64.0.0/24")), None, T0)),
        Err("subnet 10.64.0.0/24 is not inside the allocation range 10.32.0.0/12".into())
    );
    assert_eq!(
        err(a.allocate("", None, None, T0)),
        Err("owner id '' is not valid: it must be 1 to 255 bytes long".into())
    );
    assert_eq!(
        a.free(ip("10.32.0.9"), T0).map_err(|e| e.to_string()),
        Err("address 10.32.0.9 is not allocated on this peer; nothing to free".into())
    );
}

#[test]
fn corrupt_or_foreign_state_is_refused_at_restore() {
    let mut a = seeded(&[A, B], "10.32.0.0/12").remove(0);
    ready(a.allocate("c1", None, None, T0));
    let bytes = a.persist();
    let cfg = a.config().clone();

    let mut damaged = bytes.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 1;
    assert_eq!(
        Allocator::restore(cfg.clone(), &damaged)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err("not weft IPAM data: checksum mismatch (truncated or damaged)".into())
    );
    assert_eq!(
        Allocator::restore(cfg.clone(), b"")
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err("not weft IPAM data: 0 bytes is too short to hold the header and checksum".into())
    );
    assert_eq!(
        Allocator::restore(cfg.clone(), &a.full_state())
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err("IPAM data of kind gossip where persisted state was expected".into())
    );
    let other_peer = Config::new(B, cfg.range, cfg.init.clone());
    assert_eq!(
        Allocator::restore(other_peer, &bytes).map(|_| ()).map_err(|e| e.to_string()),
        Err("persisted IPAM state belongs to peer 0a:00:00:00:00:01, not to this peer 0a:00:00:00:00:02; use the right data dir".into())
    );
    let other_range = Config::new(A, cidr("10.40.0.0/16"), cfg.init.clone());
    assert_eq!(
        Allocator::restore(other_range, &bytes).map(|_| ()).map_err(|e| e.to_string()),
        Err("peer's ring covers 10.32.0.0/12 but ours covers 10.40.0.0/16: all peers need the same --ipalloc-range".into())
    );
}

#[test]
fn restart_from_persisted_bytes_keeps_allocations_and_ring() {
    let mut nodes = seeded(&[A, B], "10.32.0.0/12");
    let x = ready(nodes[0].allocate("c1", None, None, T0));
    let y = ready(nodes[0].claim("static", ip("10.32.0.77"), None, T0));
    let bytes = nodes[0].persist();
    let restored = Allocator::restore(nodes[0].config().clone(), &bytes).expect("restore");
    assert_eq!(restored.lookup("c1"), vec![x]);
    assert_eq!(restored.lookup("static"), vec![y]);
    assert_eq!(restored.full_state(), nodes[0].full_state());
    // Persisted state wins over the init mode: a different seed list does not re-split.
    let cfg = Config::new(A, cidr("10.32.0.0/12"), InitMode::Seed(vec![A]));
    let restored = Allocator::restore(cfg, &bytes).expect("restore");
    assert_eq!(restored.ranges_of(B), nodes[0].ranges_of(B));
}

#[test]
fn allocate_is_idempotent_per_owner_and_frees() {
    let mut nodes = seeded(&[A, B], "10.32.0.0/24");
    let a = &mut nodes[0];
    let x = ready(a.allocate("c1", None, None, T0));
    assert_eq!(x, ip("10.32.0.1"), "network address skipped");
    assert_eq!(ready(a.allocate("c1", None, None, T0)), x);
    let y = ready(a.allocate("c2", None, None, T0));
    assert_ne!(x, y);
    assert_eq!(a.lookup("c2"), vec![y]);
    assert_eq!(a.free(y, T0), Ok("c2".to_string()));
    assert_eq!(a.free_owner("c1", T0), vec![x]);
    assert!(a.allocations().is_empty());
}

#[test]
fn default_subnet_and_named_subnets_are_respected() {
    let cfg = Config::new(A, cidr("10.32.0.0/16"), InitMode::Seed(vec![A, B]))
        .with_default_subnet(cidr("10.32.1.0/24"))
        .expect("inside");
    let mut a = Allocator::new(cfg);
    assert_eq!(ready(a.allocate("c1", None, None, T0)), ip("10.32.1.1"));
    let named = cidr("10.32.7.0/24");
    assert_eq!(
        ready(a.allocate("c1", Some(named), None, T0)),
        ip("10.32.7.1")
    );
    assert_eq!(
        ready(a.allocate("c1", Some(named), None, T0)),
        ip("10.32.7.1"),
        "idempotent per subnet"
    );
    assert_eq!(a.lookup("c1"), vec![ip("10.32.1.1"), ip("10.32.7.1")]);
}

#[test]
fn exhausted_peer_gets_space_donated() {
    // A /28 split in two: A owns .0-.7 and can hand out .1-.7 (.0 is the network address).
    let mut nodes = seeded(&[A, B], "10.32.0.0/28");
    for i in 0..7 {
        ready(nodes[0].allocate(&format!("c{i}"), None, None, T0));
    }
    let id = pending(nodes[0].allocate("c7", None, None, T0));
    let events = pump(&mut nodes, T0);
    let got = events.iter().find_map(|(i, e)| match e {
        Event::Allocated { request, addr, .. } if *i == 0 && *request == id => Some(*addr),
        _ => None,
    });
    let addr = got.expect("allocated after donation");
    assert_eq!(nodes[0].owner_of(addr), Some(A));
    assert_eq!(
        nodes[1].owner_of(addr),
        Some(A),
        "the donor knows it gave the space"
    );
    assert!(
        nodes[1]
            .ranges_of(B)
            .iter()
            .all(|(f, l)| addr < *f || addr > *l)
    );
}

#[test]
fn pending_requests_time_out_or_are_cancelled_with_errors() {
    let mut obs = Allocator::new(Config::new(C, cidr("10.32.0.0/24"), InitMode::Observer));
    let id = pending(obs.allocate("c1", None, Some(Duration::from_secs(5)), T0));
    let id2 = pending(obs.allocate("c2", None, None, T0));
    assert_eq!(
        pending(obs.allocate("c2", None, None, T0)),
        id2,
        "same owner, same request"
    );
    assert_eq!(obs.poll_timeout(), Some(Duration::from_secs(5)));
    obs.handle_timeout(Duration::from_secs(5));
    match obs.poll_event() {
        Some(Event::Failed { request, error, .. }) => {
            assert_eq!(request, id);
            assert_eq!(
                error.to_string(),
                "allocation for 'c1' timed out: the ring is not ready: an observer waits for other peers to create it; check `weft status ipam` and that peers are reachable"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    obs.cancel(id2).expect("pending");
    assert!(matches!(
        obs.poll_event(),
        Some(Event::Failed {
            error: IpamError::Cancelled { .. },
            ..
        })
    ));
    assert_eq!(obs.cancel(id2), Err(IpamError::UnknownRequest(id2.0)));
}

#[test]
fn consensus_of_three_seeds_the_ring_and_an_observer_gets_space() {
    let range = cidr("10.32.0.0/12");
    let mut nodes: Vec<Allocator> = [A, B, C]
        .iter()
        .map(|&p| Allocator::new(Config::new(p, range, InitMode::Consensus(Some(3)))))
        .collect();
    let observer = PeerId(0x0a00_0000_0009);
    nodes.push(Allocator::new(Config::new(
        observer,
        range,
        InitMode::Observer,
    )));
    let id = pending(nodes[0].allocate("c1", None, None, T0));
    assert!(!nodes[0].is_ready());
    let events = pump(&mut nodes, T0);
    assert!(
        events.iter().any(
            |(i, e)| *i == 0 && matches!(e, Event::Allocated { request, .. } if *request == id)
        )
    );
    assert!(nodes.iter().all(Allocator::is_ready));
    anti_entropy(&mut nodes);
    let state = nodes[0].full_state();
    assert!(nodes.iter().all(|n| n.full_state() == state), "converged");
    assert!(
        nodes[0].ranges_of(observer).is_empty(),
        "observers do not vote"
    );
    let oid = pending(nodes[3].allocate("o1", None, None, T0));
    let events = pump(&mut nodes, T0);
    let addr = events
        .iter()
        .find_map(|(i, e)| match e {
            Event::Allocated { request, addr, .. } if *i == 3 && *request == oid => Some(*addr),
            _ => None,
        })
        .expect("observer got space");
    assert_eq!(nodes[0].owner_of(addr), Some(observer));
    let status = nodes[3].status().to_string();
    assert!(status.contains("init observer, ready"), "{status}");
    assert!(status.contains("(this peer)"), "{status}");
}

#[test]
fn consensus_without_a_size_uses_a_majority_of_the_peers_seen() {
    let range = cidr("10.32.0.0/24");
    let mut nodes: Vec<Allocator> = [A, B]
        .iter()
        .map(|&p| Allocator::new(Config::new(p, range, InitMode::Consensus(None))))
        .collect();
    nodes[0].peer_reachable(B, T0);
    nodes[1].peer_reachable(A, T0);
    let id = pending(nodes[0].allocate("c1", None, Some(Duration::from_secs(30)), T0));
    let events = pump(&mut nodes, T0);
    assert!(
        events
            .iter()
            .any(|(_, e)| matches!(e, Event::Allocated { request, .. } if *request == id))
    );
    assert_eq!(
        nodes[1].ranges_of(A).len() + nodes[1].ranges_of(B).len(),
        2,
        "split between both"
    );
}

#[test]
fn claim_of_another_peers_address_is_granted_or_refused() {
    let mut nodes = seeded(&[A, B], "10.32.0.0/24");
    let b_addr = ip("10.32.0.200");
    assert_eq!(nodes[0].owner_of(b_addr), Some(B));
    let id = pending(nodes[0].claim("moved", b_addr, None, T0));
    let events = pump(&mut nodes, T0);
    assert!(events.iter().any(|(_, e)| matches!(e, Event::Allocated { request, addr, .. } if *request == id && *addr == b_addr)));
    assert_eq!(nodes[1].owner_of(b_addr), Some(A));

    let used = ready(nodes[1].allocate("busy", None, None, T0));
    let id = pending(nodes[0].claim("thief", used, None, T0));
    let events = pump(&mut nodes, T0);
    let error = events
        .into_iter()
        .find_map(|(_, e)| match e {
            Event::Failed { request, error, .. } if request == id => Some(error),
            _ => None,
        })
        .expect("refused");
    assert_eq!(
        error.to_string(),
        format!(
            "address {used} belongs to peer 0a:00:00:00:00:02, which has it in use; claim it on that peer or pick another"
        )
    );
    assert_eq!(
        nodes[1]
            .claim("other", used, None, T0)
            .map_err(|e| e.to_string()),
        Err(format!(
            "address {used} is already allocated to 'busy'; free it first or claim another address"
        ))
    );
}

#[test]
fn rmpeer_takes_over_once_and_the_second_host_is_refused() {
    let mut nodes = seeded(&[A, B, C], "10.32.0.0/24");
    let mut dead = nodes.pop().expect("C");
    ready(dead.allocate("old", None, None, T0));
    let dead_state = dead.persist();
    // Three seeds split a /24 as A: .0-.127, B: .128-.191, C: .192-.255.
    assert_eq!(
        nodes[0].ranges_of(C),
        vec![(ip("10.32.0.192"), ip("10.32.0.255"))]
    );
    assert_eq!(nodes[0].rmpeer(C, T0), Ok(64));
    assert_eq!(
        nodes[0].rmpeer(C, T0).map_err(|e| e.to_string()),
        Err(
            "rmpeer refused: peer 0a:00:00:00:00:03 owns no space in the ring (is the name right?)"
                .into()
        )
    );
    pump(&mut nodes, T0);
    assert_eq!(
        nodes[1].rmpeer(C, T0).map_err(|e| e.to_string()),
        Err("rmpeer refused: peer 0a:00:00:00:00:03's space was already taken over by 0a:00:00:00:00:01".into())
    );
    assert_eq!(nodes[1].rmpeer(B, T0), Err(IpamError::RmpeerSelf(B)));
    assert!(
        nodes[1]
            .status()
            .to_string()
            .contains("0a:00:00:00:00:03  removed; space taken over by 0a:00:00:00:00:01")
    );

    // C comes back with its old state: it learns it was removed and refuses to allocate.
    let mut back = Allocator::restore(dead.config().clone(), &dead_state).expect("restore");
    back.merge(A, &nodes[0].full_state(), T0).expect("merge");
    let mut conflicts = 0;
    while let Some(e) = back.poll_event() {
        conflicts += usize::from(matches!(e, Event::Conflict { .. }));
    }
    assert_eq!(conflicts, 1, "its one stale allocation is reported");
    assert_eq!(
        back.allocate("new", None, None, T0).map_err(|e| e.to_string()),
        Err("this peer was removed from the ring by peer 0a:00:00:00:00:01 (rmpeer); remove its IPAM data and start it again to rejoin".into())
    );
    // Started afresh it may rejoin and receive space.
    let mut fresh = Allocator::new(dead.config().clone());
    fresh.merge(A, &nodes[0].full_state(), T0).expect("merge");
    assert!(fresh.is_ready());
    assert!(fresh.ranges_of(C).is_empty());
}

#[test]
fn reset_hands_space_to_a_reachable_peer_and_leaves() {
    let mut nodes = seeded(&[A, B, C], "10.32.0.0/24");
    nodes[0].peer_unreachable(C, T0);
    let b_state = nodes[1].full_state();
    nodes[0].merge(B, &b_state, T0).expect("merge");
    ready(nodes[0].allocate("c1", None, None, T0));
    assert_eq!(nodes[0].reset(Some(C), T0), Err(IpamError::BadHeir(C)));
    assert_eq!(nodes[0].reset(None, T0), Ok(Some(B)));
    assert!(nodes[0].allocations().is_empty());
    assert_eq!(
        nodes[0].allocate("c2", None, None, T0),
        Err(IpamError::Left)
    );
    pump(&mut nodes, T0);
    assert_eq!(nodes[2].owner_of(ip("10.32.0.1")), Some(B));
    assert!(nodes[2].ranges_of(A).is_empty());

    let mut lonely = seeded(&[A], "10.32.0.0/24").remove(0);
    assert_eq!(
        lonely.reset(None, T0).map_err(|e| e.to_string()),
        Err("reset refused: no reachable peer to hand this peer's space to; its addresses would be lost".into())
    );
}

#[test]
fn merge_refuses_a_ring_seeded_differently() {
    let mut a = seeded(&[A, B], "10.32.0.0/24").remove(0);
    let other = seeded(&[A, C], "10.32.0.0/24").remove(0);
    let before = a.full_state();
    assert!(matches!(
        a.merge(C, &other.full_state(), T0),
        Err(IpamError::DifferentSeeds { .. })
    ));
    assert_eq!(a.full_state(), before);
    let wide = seeded(&[A, B], "10.32.0.0/16").remove(0);
    assert!(matches!(
        a.merge(B, &wide.full_state(), T0),
        Err(IpamError::DifferentRange { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode(&bytes);
        let mut a = seeded(&[A, B], "10.32.0.0/24").remove(0);
        let _ = a.merge(B, &bytes, T0);
        let _ = a.on_unicast(B, &bytes, T0);
        let _ = Allocator::restore(a.config().clone(), &bytes);
    }

    #[test]
    fn damaged_real_state_is_rejected_and_never_panics(at in any::<usize>(), bit in 0u8..8, cut in any::<usize>()) {
        let mut a = seeded(&[A, B], "10.32.0.0/24").remove(0);
        ready(a.allocate("c1", None, None, T0));
        let bytes = a.persist();
        let mut flipped = bytes.clone();
        let i = at % flipped.len();
        flipped[i] ^= 1 << bit;
        prop_assert!(decode(&flipped).is_err(), "a flipped bit is caught");
        prop_assert!(Allocator::restore(a.config().clone(), &flipped).is_err());
        let cut = cut % bytes.len();
        prop_assert!(decode(&bytes[..cut]).is_err(), "a truncation is caught");
    }
}
