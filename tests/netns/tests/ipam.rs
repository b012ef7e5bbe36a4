//! End-to-end IPAM tests (issue 4, point 4): real `weft` routers in network namespaces share one
//! address ring. Parallel allocation, donation, a partition during allocation, `kill -9`,
//! `rmpeer` on two hosts, `reset`, and bad input through the real daemon.
//! Needs root, `ip`, `nft`, `ping`, and `cargo build -p weft-router` first.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use weft_netns_tests::{Net, Router, full_mesh, output_text};

/// The allocation range of these tests: 512 addresses, so a 3-peer ring splits it 256/128/128
/// and a peer runs out of its share after about 128 allocations.
const RANGE: &str = "10.32.0.0/23";
/// Network address and size of [`RANGE`].
const RANGE_START: Ipv4Addr = Ipv4Addr::new(10, 32, 0, 0);
const RANGE_SIZE: u32 = 512;
/// Time a fresh mesh of three routers gets to connect and agree on the ring.
const CONVERGE: Duration = Duration::from_secs(30);
/// Time the mesh gets to notice a cut link or a dead peer (TCP user timeout 15 s, keepalive).
const NOTICE: Duration = Duration::from_secs(60);
/// CLI calls in flight at once per router when allocating in parallel.
const THREADS: usize = 6;

// ---- helpers ----

/// Starts a router on host `i` with the IPAM flags of these tests and `init`, dialling `peers`.
fn launch(net: &Net, i: usize, init: &str, peers: &[usize]) -> Router {
    let mut args = vec![
        "--ipalloc-range".to_owned(),
        RANGE.to_owned(),
        "--ipalloc-init".to_owned(),
        init.to_owned(),
    ];
    args.extend(peers.iter().map(|&p| net.host(p).addr().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    net.host(i)
        .spawn_weft(&args)
        .unwrap_or_else(|e| panic!("launching weft on h{i}: {e}"))
}

/// Three routers with `consensus=3`, fully meshed, each with the ring ready (`weft prime`).
fn three_routers(net: &Net) -> Vec<Router> {
    let routers = vec![
        launch(net, 0, "consensus=3", &[]),
        launch(net, 1, "consensus=3", &[0]),
        launch(net, 2, "consensus=3", &[0, 1]),
    ];
    net.wait_until(CONVERGE, "a full mesh of 3", || full_mesh(&routers));
    for r in &routers {
        r.cli_ok(&["prime"]);
    }
    net.wait_until(CONVERGE, "the 3 views of the ring to agree", || {
        converged(&routers)
    });
    routers
}

/// `GET path` on the router's control socket, as JSON.
fn api_get(router: &Router, path: &str) -> Value {
    let mut stream = UnixStream::connect(router.socket())
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", router.socket().display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: weft\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read answer");
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "GET {path} on {}: {head}\n{body}",
        router.host()
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// The router's IPAM status (`GET /ipam/status`).
fn ipam_status(router: &Router) -> Value {
    api_get(router, "/ipam/status")
}

/// Each peer's share of the ring in `status`: peer name → (size, ranges).
fn shares(status: &Value) -> BTreeMap<String, (u64, Vec<(Ipv4Addr, Ipv4Addr)>)> {
    status["shares"]
        .as_array()
        .expect("shares")
        .iter()
        .map(|s| {
            let ranges = s["ranges"]
                .as_array()
                .expect("ranges")
                .iter()
                .map(|r| {
                    let (a, b) = r.as_str().and_then(|r| r.split_once('-')).expect("a-b");
                    (a.parse().expect("first"), b.parse().expect("last"))
                })
                .collect();
            (
                s["peer"].as_str().expect("peer").to_owned(),
                (s["size"].as_u64().expect("size"), ranges),
            )
        })
        .collect()
}

/// The share of `peer` in `status` (0 when it owns nothing).
fn size_of(status: &Value, peer: &str) -> u64 {
    shares(status).get(peer).map_or(0, |(size, _)| *size)
}

/// Whether the routers' views of the ring are identical and cover the whole range.
fn converged(routers: &[Router]) -> bool {
    let views: Vec<_> = routers.iter().map(|r| shares(&ipam_status(r))).collect();
    let total: u64 = views[0].values().map(|(size, _)| size).sum();
    total == u64::from(RANGE_SIZE) && views.iter().all(|v| *v == views[0])
}

/// Host label → peer name of each router.
fn names(routers: &[Router]) -> BTreeMap<String, String> {
    routers
        .iter()
        .map(|r| (r.host().to_owned(), names_of(r)))
        .collect()
}

/// The router's peer name.
fn names_of(router: &Router) -> String {
    let report = router.report().expect("report");
    report.name().expect("name").to_owned()
}

/// Whether the router's mesh knows exactly `n` peers (itself included), so IPAM sees the
/// others as unreachable once the mesh dropped them.
fn knows_peers(router: &Router, n: usize) -> bool {
    router.report().is_ok_and(|r| r.peer_names().len() == n)
}

/// Parses the `ADDR/PREFIX` that `weft ipam allocate|claim` prints.
fn parse_allocated(out: &str) -> Ipv4Addr {
    let (addr, prefix) = out.trim().split_once('/').expect("ADDR/PREFIX");
    assert_eq!(prefix, "23", "prefix of {out}");
    addr.parse().expect("address")
}

/// Whether `addr` is a usable address of [`RANGE`] (not its network or broadcast address).
fn usable(addr: Ipv4Addr) -> bool {
    let offset = u32::from(addr).wrapping_sub(u32::from(RANGE_START));
    (1..RANGE_SIZE - 1).contains(&offset)
}

/// Calls `allocate(owner)` for each owner `PREFIX-0` .. `PREFIX-(n-1)` with [`THREADS`] calls
/// in flight, a thread stopping at its first `None`, and runs `meanwhile` on this thread while
/// they run. Returns owner → address of the calls that gave one.
fn allocate_parallel(
    prefix: &str,
    n: usize,
    allocate: impl Fn(&str) -> Option<Ipv4Addr> + Sync,
    meanwhile: impl FnOnce(),
) -> BTreeMap<String, Ipv4Addr> {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    let mut got = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= n {
                            return got;
                        }
                        let owner = format!("{prefix}-{k}");
                        let Some(addr) = allocate(&owner) else {
                            return got;
                        };
                        got.push((owner, addr));
                    }
                })
            })
            .collect();
        meanwhile();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("allocating thread"))
            .collect()
    })
}

/// Allocates one address for each owner `PREFIX-0` .. `PREFIX-(n-1)` on `router`, with
/// [`THREADS`] CLI calls in flight. Every call must succeed; returns owner → address.
fn allocate_many(router: &Router, prefix: &str, n: usize) -> BTreeMap<String, Ipv4Addr> {
    allocate_parallel(
        prefix,
        n,
        |owner| {
            let out = router.cli_ok(&["ipam", "allocate", owner]);
            Some(parse_allocated(&out))
        },
        || {},
    )
}

/// [`allocate_many`] on several routers at once, `n` owners `PREFIX-…` on each `(router, n)`;
/// returns host label → owner → address.
fn allocate_on_each(
    wants: &[(&Router, usize)],
    prefix: &str,
) -> BTreeMap<String, BTreeMap<String, Ipv4Addr>> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = wants
            .iter()
            .map(|&(r, n)| scope.spawn(move || (r.host().to_owned(), allocate_many(r, prefix, n))))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("router thread"))
            .collect()
    })
}

/// Whether `addr` lies in one of the inclusive `ranges`.
fn in_ranges(ranges: &[(Ipv4Addr, Ipv4Addr)], addr: &Ipv4Addr) -> bool {
    ranges.iter().any(|(a, b)| a <= addr && addr <= b)
}

/// `weft ipam lookup OWNER`: the addresses of `owner` on `router`.
fn lookup(router: &Router, owner: &str) -> Vec<Ipv4Addr> {
    router
        .cli_ok(&["ipam", "lookup", owner])
        .lines()
        .map(|l| l.parse().expect("address"))
        .collect()
}

/// Asserts that no address appears twice in `allocations` (host label → owner → address) and
/// that each is usable and lies in a range its host owns in `status` (a converged view).
#[track_caller]
fn assert_unique_and_owned(
    allocations: &BTreeMap<String, BTreeMap<String, Ipv4Addr>>,
    names: &BTreeMap<String, String>,
    status: &Value,
) {
    let ring = shares(status);
    let mut seen: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    for (host, owners) in allocations {
        let ranges = ring
            .get(&names[host])
            .map(|(_, r)| r.clone())
            .unwrap_or_default();
        for (owner, addr) in owners {
            assert!(
                usable(*addr),
                "{host}/{owner}: {addr} is not usable in {RANGE}"
            );
            if let Some(other) = seen.insert(*addr, format!("{host}/{owner}")) {
                panic!("{addr} was given to both {other} and {host}/{owner}");
            }
            assert!(
                in_ranges(&ranges, addr),
                "{host}/{owner}: {addr} is not in {host}'s ranges {ranges:?}"
            );
        }
    }
}

// ---- the tests ----

/// 300 parallel allocations on 3 routers are unique; a peer that exhausts its share gets more.
#[test]
fn parallel_allocations_are_unique_and_donation_extends_a_share() {
    let net = Net::new(3).expect("net");
    let routers = three_routers(&net);
    let names = names(&routers);
    let initial = ipam_status(&routers[0]);

    let wants: Vec<(&Router, usize)> = routers.iter().map(|r| (r, 100)).collect();
    let mut allocations = allocate_on_each(&wants, "c");
    assert_eq!(
        allocations.values().map(BTreeMap::len).sum::<usize>(),
        300,
        "every allocation must succeed"
    );
    net.wait_until(CONVERGE, "the ring views to agree", || converged(&routers));
    assert_unique_and_owned(&allocations, &names, &ipam_status(&routers[0]));

    // The peer with the smallest initial share (consensus may leave a peer with none) ends up
    // holding at least 40 addresses more than that share, which only donation can give it.
    let small = routers
        .iter()
        .min_by_key(|r| size_of(&initial, &names[r.host()]))
        .expect("three routers");
    let host = small.host().to_owned();
    let initial_size = usize::try_from(size_of(&initial, &names[&host])).expect("size");
    assert!(
        initial_size <= 128,
        "the smallest of 3 shares of 512: {initial}"
    );
    let extra = (initial_size + 40).saturating_sub(100).max(20);
    let more = allocate_many(small, "more", extra);
    let held = {
        let mine = allocations.get_mut(&host).expect("host");
        mine.extend(more);
        mine.len()
    };
    assert_eq!(held, 100 + extra);
    net.wait_until(CONVERGE, "the ring views to agree after donations", || {
        converged(&routers)
    });
    let after = ipam_status(small);
    let grown = usize::try_from(size_of(&after, &names[&host])).expect("size");
    assert!(
        grown >= held && grown > initial_size,
        "{host} holds {held} addresses in a share of {grown} (was {initial_size}):\n{}",
        small.cli_ok(&["status", "ipam"])
    );
    assert_unique_and_owned(&allocations, &names, &after);
    // Lookups agree with what allocate answered.
    for r in &routers {
        for (owner, addr) in allocations[r.host()].iter().step_by(17) {
            assert_eq!(lookup(r, owner), vec![*addr], "{}/{owner}", r.host());
        }
    }
    // The text status shows every share; they now cover the range between the three peers.
    let shown = small.cli_ok(&["status", "ipam"]);
    for n in names.values() {
        assert!(
            shown.contains(n.as_str()),
            "status ipam lacks {n}:\n{shown}"
        );
    }
    assert!(shown.contains(&format!("{grown} IPs")), "{shown}");
}

/// The router owning the most space is cut off from the other two while all three allocate
/// (one of the pair beyond its share, so the other donates); after healing, the views agree and
/// no address was given twice.
#[test]
fn partition_during_allocation_then_heal_gives_no_duplicates() {
    let net = Net::new(3).expect("net");
    let routers = three_routers(&net);
    let names = names(&routers);
    let initial = ipam_status(&routers[0]);
    let share = |i: usize| size_of(&initial, &names[routers[i].host()]);
    let isolated = (0..3).max_by_key(|&i| share(i)).expect("routers");
    let mut pair: Vec<usize> = (0..3).filter(|&i| i != isolated).collect();
    pair.sort_by_key(|&i| share(i));
    let (needy, donor) = (pair[0], pair[1]);
    assert!(share(needy) <= 128, "{initial}");

    for &o in &pair {
        net.cut(isolated, o).expect("cut");
    }
    net.wait_until(NOTICE, "both sides of the cut to lose the other", || {
        knows_peers(&routers[isolated], 1) && pair.iter().all(|&o| knows_peers(&routers[o], 2))
    });

    let wants = [
        (&routers[isolated], 80),
        (&routers[needy], 150),
        (&routers[donor], 40),
    ];
    let allocations = allocate_on_each(&wants, "p");
    // During the cut the isolated router still sees its old view of the pair's shares.
    let donor_view = ipam_status(&routers[donor]);
    assert!(
        size_of(&donor_view, &names[routers[needy].host()]) >= 150,
        "the needy router's share did not grow by donation: {donor_view}"
    );

    for &o in &pair {
        net.restore(isolated, o).expect("restore");
    }
    net.wait_until(NOTICE, "the mesh to heal", || full_mesh(&routers));
    net.wait_until(CONVERGE, "the ring views to agree after healing", || {
        converged(&routers)
    });
    assert_unique_and_owned(&allocations, &names, &ipam_status(&routers[isolated]));
    // Every router still holds what it handed out.
    for r in &routers {
        for (owner, addr) in &allocations[r.host()] {
            assert_eq!(lookup(r, owner), vec![*addr], "{}/{owner}", r.host());
        }
    }
}

/// Allocations acknowledged before a `kill -9` are all there after the restart.
#[test]
fn kill9_and_restart_keeps_every_allocation() {
    let net = Net::new(3).expect("net");
    let routers = three_routers(&net);
    let names = names(&routers);
    let victim = &routers[1];

    // Allocate continuously from several threads and kill the router in the middle.
    let done = AtomicUsize::new(0);
    let acked = allocate_parallel(
        "k",
        100,
        |owner| match victim.cli(&["ipam", "allocate", owner]) {
            Ok(out) if out.status.success() => {
                let addr = parse_allocated(&String::from_utf8_lossy(&out.stdout));
                done.fetch_add(1, Ordering::Relaxed);
                Some(addr)
            }
            // Once the router is dead, calls fail: stop.
            _ => None,
        },
        || {
            net.wait_until(CONVERGE, "30 allocations to be acknowledged", || {
                done.load(Ordering::Relaxed) >= 30
            });
            victim.kill9().expect("kill -9");
        },
    );
    assert!(acked.len() >= 30, "only {} acknowledged", acked.len());
    assert!(
        acked.len() < 100,
        "the kill came too late to interrupt anything"
    );

    victim.restart().expect("restart");
    for (owner, addr) in &acked {
        assert_eq!(
            lookup(victim, owner),
            vec![*addr],
            "{owner} lost its address"
        );
    }
    // Allocate is still idempotent, and new addresses do not collide with the old ones.
    let (owner, addr) = acked.iter().next().expect("one");
    assert_eq!(
        parse_allocated(&victim.cli_ok(&["ipam", "allocate", owner])),
        *addr
    );
    let taken: BTreeSet<Ipv4Addr> = acked.values().copied().collect();
    let fresh = allocate_many(victim, "after", 20);
    for (o, a) in &fresh {
        assert!(
            !taken.contains(a),
            "{o} got {a}, which was held before the kill"
        );
    }
    net.wait_until(NOTICE, "the restarted router to rejoin", || {
        full_mesh(&routers)
    });
    net.wait_until(
        CONVERGE,
        "the ring views to agree after the restart",
        || converged(&routers),
    );
    let mut all = acked;
    all.extend(fresh);
    let allocations = BTreeMap::from([(victim.host().to_owned(), all)]);
    assert_unique_and_owned(&allocations, &names, &ipam_status(&routers[0]));
}

/// `rmpeer` of a stopped peer gives its space to the caller; a second `rmpeer` of the same
/// peer on another host, once the first one's gossip arrived there, is refused.
#[test]
fn rmpeer_takes_over_once_and_a_second_rmpeer_is_refused() {
    let net = Net::new(3).expect("net");
    let routers = three_routers(&net);
    let names = names(&routers);
    let before = ipam_status(&routers[0]);
    // The victim must own space: consensus may leave one peer without any.
    let v = (0..3)
        .max_by_key(|&i| size_of(&before, &names[routers[i].host()]))
        .expect("routers");
    let (a, b) = ((v + 1) % 3, (v + 2) % 3);
    let (victim, first, second) = (&routers[v], &routers[a], &routers[b]);
    let (nv, na) = (&names[victim.host()], &names[first.host()]);
    allocate_many(victim, "gone", 10);
    let (size_a, size_v) = (size_of(&before, na), size_of(&before, nv));

    victim.kill9().expect("kill -9");
    net.wait_until(NOTICE, "the other two to lose the stopped router", || {
        knows_peers(first, 2) && knows_peers(second, 2)
    });
    let out = first.cli_ok(&["rmpeer", nv]);
    assert_eq!(
        out.trim(),
        format!("{size_v} addresses taken over from {nv}")
    );
    let after = ipam_status(first);
    assert_eq!(size_of(&after, na), size_a + size_v, "{after}");
    assert_eq!(size_of(&after, nv), 0, "{after}");
    assert_eq!(after["removed"], serde_json::json!([[nv, na]]));

    net.wait_until(CONVERGE, "the second host to learn of the rmpeer", || {
        ipam_status(second)["removed"] == serde_json::json!([[nv, na]])
    });
    let refused =
        format!("weft: rmpeer refused: peer {nv}'s space was already taken over by {na}\n");
    assert_eq!(second.cli_err(&["rmpeer", nv]), refused);
    // The remover itself may run it again (to collect space granted to the dead peer later);
    // here there is nothing left.
    assert_eq!(
        first.cli_err(&["rmpeer", nv]),
        format!("weft: rmpeer refused: peer {nv} owns no space in the ring (is the name right?)\n")
    );
    let shown = second.cli_ok(&["status", "ipam"]);
    assert!(
        shown.contains(&format!("{nv:<18} removed by {na} (rmpeer)")),
        "{shown}"
    );
    // The new owner allocates from the space it took over.
    assert_eq!(allocate_many(first, "taken", 5).len(), 5);
}

/// `weft reset` hands the space to a reachable peer, removes `ipam.state` and `peer-name`, and
/// stops the router; started again in the same data dir it is a new peer that gets space by
/// donation.
#[test]
fn reset_hands_space_over_removes_state_and_stops() {
    let net = Net::new(3).expect("net");
    let routers = three_routers(&net);
    let names = names(&routers);
    let before = ipam_status(&routers[0]);
    let l = (0..3)
        .max_by_key(|&i| size_of(&before, &names[routers[i].host()]))
        .expect("routers");
    let (leaver, stay) = (&routers[l], [(l + 1) % 3, (l + 2) % 3]);
    let nl = &names[leaver.host()];
    let size_l = size_of(&before, nl);
    allocate_many(leaver, "r", 5);

    let (state, name_file) = (
        leaver.data_dir().join("ipam.state"),
        leaver.data_dir().join("peer-name"),
    );
    let out = leaver.cli_ok(&["reset"]);
    let heir = stay
        .iter()
        .map(|&i| names[routers[i].host()].clone())
        .find(|n| out.starts_with(&format!("handed {size_l} addresses to {n};")))
        .unwrap_or_else(|| panic!("reset did not name a remaining peer as heir: {out}"));
    // The policy store's file is removed too when the router had written one (it does on the
    // first policy gossip, so whether it exists yet depends on timing).
    let policy_file = leaver.data_dir().join("policy.json");
    let removed = |files: &[&std::path::Path]| {
        let list: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        format!(
            "handed {size_l} addresses to {heir}; removed {}; the router is stopping\n",
            list.join(", ")
        )
    };
    assert!(
        out == removed(&[&state, &name_file])
            || out == removed(&[&state, &policy_file, &name_file]),
        "unexpected reset output: {out}"
    );
    let status = leaver
        .wait_exit(Duration::from_secs(10))
        .expect("the router still runs after `weft reset`");
    assert!(
        status.success(),
        "weft launch exited with {status} after reset"
    );
    assert!(!state.exists(), "{} is still there", state.display());
    assert!(
        !name_file.exists(),
        "{} is still there",
        name_file.display()
    );

    let remaining: Vec<Router> = stay.iter().map(|&i| routers[i].clone()).collect();
    net.wait_until(CONVERGE, "the others to see the hand-over", || {
        remaining.iter().all(|r| {
            let s = ipam_status(r);
            size_of(&s, nl) == 0 && size_of(&s, &heir) == size_of(&before, &heir) + size_l
        })
    });
    assert!(converged(&remaining));

    // Started again in the same data dir, it is a new peer and gets space by donation.
    leaver.restart().expect("restart after reset");
    let new_name = names_of(leaver);
    assert_ne!(&new_name, nl, "reset must drop the peer name");
    let got = allocate_many(leaver, "again", 3);
    assert_eq!(got.len(), 3);
    net.wait_until(CONVERGE, "the ring views to agree again", || {
        converged(&routers)
    });
    let mine = shares(&ipam_status(leaver));
    let ranges = &mine.get(&new_name).expect("the new peer owns space").1;
    for addr in got.values() {
        assert!(in_ranges(ranges, addr), "{addr} not in {ranges:?}");
    }
}

/// `weft reset` is refused while workloads are attached and when no peer can take the space;
/// either way the router keeps running with its state. A peer that owns nothing may leave.
#[test]
fn reset_without_heir_or_with_workloads_is_refused() {
    let net = Net::new(2).expect("net");
    let lone = launch(&net, 0, "consensus=1", &[]);
    lone.cli_ok(&["prime"]);
    let addr = parse_allocated(&lone.cli_ok(&["ipam", "allocate", "w1"]));
    let w = net.add_workload(0, "w1").expect("workload");
    // Attach without an address: IPAM allocates one for the workload's namespace.
    lone.cli_ok(&["attach", "--netns", w.ns(), "--name", "w1"]);
    assert_eq!(
        lone.cli_err(&["reset"]),
        "weft: reset refused: 1 workload(s) still attached (w1); detach them first with `weft \
         detach`, or their addresses would be given out again\n"
    );
    lone.cli_ok(&["detach", "--netns", w.ns()]);
    let state = std::fs::read(lone.data_dir().join("ipam.state")).expect("ipam.state");
    assert_eq!(
        lone.cli_err(&["reset"]),
        "weft: reset refused: no reachable peer to hand this peer's space to; its addresses \
         would be lost\n"
    );
    assert!(lone.is_running());
    assert_eq!(lookup(&lone, "w1"), vec![addr]);
    assert_eq!(
        std::fs::read(lone.data_dir().join("ipam.state")).expect("ipam.state"),
        state,
        "a refused reset changed the state"
    );

    // consensus=3 on a lone router never makes a ring: it owns nothing and may leave.
    let empty = launch(&net, 1, "consensus=3", &[]);
    let out = empty.cli_ok(&["reset"]);
    assert!(
        out.starts_with("this peer owned no address space; removed "),
        "{out}"
    );
    assert!(
        empty
            .wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success()),
        "the router did not stop after reset"
    );
}

// ---- bad input through the real daemon ----

/// `weft launch ARGS` on host 0 with a data dir and socket under `dir`; must fail with `code`.
fn launch_fails(net: &Net, dir: &str, args: &[&str], code: i32) -> String {
    let dir = net.dir().join(dir);
    let (data, socket) = (dir.join("data"), dir.join("weft.sock"));
    let mut all = vec![
        "launch",
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--socket",
        socket.to_str().expect("utf-8"),
    ];
    all.extend_from_slice(args);
    let out = net.host(0).weft(&all).expect("weft launch");
    assert_eq!(
        out.status.code(),
        Some(code),
        "weft {all:?}: {}",
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_launch_flags_are_refused_with_exact_errors() {
    let net = Net::new(1).expect("net");
    let stderr = launch_fails(&net, "range", &["--ipalloc-range", "10.32.0.1/12"], 2);
    assert_eq!(
        stderr.lines().next(),
        Some(
            "error: invalid value '10.32.0.1/12' for '--ipalloc-range <IPALLOC_RANGE>': \
             10.32.0.1/12 has host bits set; the range starts at 10.32.0.0/12"
        ),
        "{stderr}"
    );
    let stderr = launch_fails(&net, "seed", &["--ipalloc-init", "seed=bogus"], 2);
    assert_eq!(
        stderr.lines().next(),
        Some(
            "error: invalid value 'seed=bogus' for '--ipalloc-init <IPALLOC_INIT>': \
             'seed=bogus' is not an IPAM init mode: 'bogus' is not a peer name: expected 6 hex \
             bytes such as aa:bb:cc:dd:ee:ff or up to 12 hex digits; expected consensus, \
             consensus=N, seed=PEER,... or observer"
        ),
        "{stderr}"
    );
    let stderr = launch_fails(
        &net,
        "subnet",
        &[
            "--ipalloc-range",
            RANGE,
            "--ipalloc-default-subnet",
            "10.64.0.0/24",
        ],
        1,
    );
    assert_eq!(
        stderr,
        "weft: --ipalloc-default-subnet: subnet 10.64.0.0/24 is not inside the allocation \
         range 10.32.0.0/23\n"
    );
}

#[test]
fn bad_ipam_requests_get_exact_errors() {
    let net = Net::new(1).expect("net");
    let router = launch(&net, 0, "consensus=1", &[]);
    router.cli_ok(&["prime"]);
    assert_eq!(
        router.cli_err(&["ipam", "claim", "c1", "10.99.0.1"]),
        "weft: address 10.99.0.1 is outside the range 10.32.0.0/23\n"
    );
    let addr = parse_allocated(&router.cli_ok(&["ipam", "claim", "c1", "10.32.1.7"]));
    assert_eq!(addr, Ipv4Addr::new(10, 32, 1, 7));
    assert_eq!(
        router.cli_err(&["ipam", "claim", "c2", "10.32.1.7"]),
        "weft: address 10.32.1.7 is already allocated to 'c1'; free it first or claim another \
         address\n"
    );
    assert_eq!(
        router.cli_err(&["ipam", "allocate", "c3", "--subnet", "10.64.0.0/24"]),
        "weft: subnet 10.64.0.0/24 is not inside the allocation range 10.32.0.0/23\n"
    );
    assert_eq!(
        router.cli_err(&["rmpeer", "bogus"]),
        "weft: 'bogus' is not a peer name: expected 6 hex bytes such as aa:bb:cc:dd:ee:ff or \
         up to 12 hex digits\n"
    );
    assert_eq!(router.cli_ok(&["ipam", "free", "c1"]).trim(), "10.32.1.7");
    assert_eq!(lookup(&router, "c1"), Vec::<Ipv4Addr>::new());
    assert!(router.is_running());
}

/// A damaged `ipam.state` stops the start, the error names the file and why, and the file is
/// left as it was.
#[test]
fn corrupt_state_file_refuses_to_start_and_is_kept() {
    let net = Net::new(1).expect("net");
    let router = launch(&net, 0, "consensus=1", &[]);
    router.cli_ok(&["prime"]);
    router.cli_ok(&["ipam", "allocate", "keep-me"]);
    router.cli_ok(&["stop"]);
    router
        .wait_exit(Duration::from_secs(10))
        .expect("the router still runs after `weft stop`");
    let path = router.data_dir().join("ipam.state");
    let good = std::fs::read(&path).expect("ipam.state exists after an allocation");

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "a flipped byte",
            flipped,
            "not weft IPAM data: checksum mismatch (truncated or damaged)",
        ),
        (
            "a truncated file",
            good[..good.len() - 3].to_vec(),
            "not weft IPAM data: checksum mismatch (truncated or damaged)",
        ),
        (
            "a text file",
            b"this is not an IPAM state file\n".to_vec(),
            "not weft IPAM data: bad magic (expected WEFTIPAM)",
        ),
        (
            "an empty file",
            Vec::new(),
            "not weft IPAM data: 0 bytes is too short to hold the header and checksum",
        ),
    ];
    for (what, bytes, why) in cases {
        std::fs::write(&path, &bytes).expect("write the damaged state");
        let err = router.restart().expect_err("started with a corrupt state");
        let log = router.log().expect("log");
        let expected = format!(
            "weft: the IPAM state file {} cannot be used: {why}. Move it away to start with a \
             fresh ring (addresses handed out from it may then be given out twice), or fix the \
             flags to match it",
            path.display()
        );
        assert_eq!(log.lines().last(), Some(expected.as_str()), "{what}: {err}");
        assert_eq!(
            std::fs::read(&path).expect("still there"),
            bytes,
            "{what}: the state file was changed"
        );
    }

    // The intact file starts the router again with the allocation.
    std::fs::write(&path, &good).expect("restore");
    router.restart().expect("restart with the good state");
    assert_eq!(lookup(&router, "keep-me").len(), 1);
}

/// `weft attach` without an address takes one from IPAM for the workload's namespace, a failed
/// attach gives it back, and `weft detach` frees it.
#[test]
fn attach_without_address_allocates_and_detach_frees() {
    let net = Net::new(1).expect("net");
    let r = launch(&net, 0, "consensus=1", &[]);
    r.cli_ok(&["prime"]);
    let w = net.add_workload(0, "wa").expect("workload");
    let owner = format!("netns:/run/netns/{}", w.ns());
    let out = r.cli_ok(&["attach", "--netns", w.ns(), "--name", "wa"]);
    let got = lookup(&r, &owner);
    assert_eq!(got.len(), 1, "one address for {owner}: {got:?}");
    assert!(
        out.contains(&got[0].to_string()),
        "attach printed {out:?}, IPAM holds {got:?}"
    );
    let inside = output_text(
        &w.exec(&["ip", "-4", "addr", "show", "ethwe"])
            .expect("ip addr"),
    );
    assert!(
        inside.contains(&format!("{}/", got[0])),
        "workload has {inside}"
    );

    // A second attach of the same namespace fails on the interface name; the address it took
    // for the same owner is the same one, and stays allocated for the first attachment.
    r.cli_err(&["attach", "--netns", w.ns()]);
    assert_eq!(lookup(&r, &owner), got);

    r.cli_ok(&["detach", "--netns", w.ns()]);
    assert!(lookup(&r, &owner).is_empty(), "detach freed the address");
}
