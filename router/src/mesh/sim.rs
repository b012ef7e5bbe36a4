//! A deterministic in-memory mesh of N [`MeshCore`]s, in the style of
//! quinn-proto's test `Pair`, generalised to many peers: actions are carried
//! out from queues, messages are delivered in order per connection, and when
//! everything is quiet the clock jumps to the earliest `poll_timeout`. Dials
//! succeed only over links that are up in the simulated network.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::core::{Action, ConnId, MeshConfig, MeshCore};
use super::gossip::{GossipError, Gossiper};
use super::peer::{PeerInfo, PeerName, new_uid};
use super::wire::{Body, MeshMessage};

/// Channel name of the test grow-only set.
const GSET: &str = "gset";

/// Unicasts a peer received: (source, payload).
type Received = Arc<Mutex<Vec<(PeerName, Vec<u8>)>>>;

/// A grow-only set of numbers: the simplest CRDT, shared with the test.
#[derive(Clone, Default)]
struct GSet {
    items: Arc<Mutex<BTreeSet<u64>>>,
    unicasts: Received,
}

fn encode(items: &BTreeSet<u64>) -> Vec<u8> {
    items.iter().flat_map(|i| i.to_be_bytes()).collect()
}

impl GSet {
    fn items(&self) -> BTreeSet<u64> {
        self.items.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Gossiper for GSet {
    fn full_state(&self) -> Vec<u8> {
        encode(&self.items())
    }

    fn merge(&mut self, _src: PeerName, update: &[u8]) -> Result<Option<Vec<u8>>, GossipError> {
        if !update.len().is_multiple_of(8) {
            return Err(GossipError::new(
                "gset payload is not a multiple of 8 bytes",
            ));
        }
        let mut items = self
            .items
            .lock()
            .map_err(|_| GossipError::new("poisoned"))?;
        let mut news = BTreeSet::new();
        for chunk in update.chunks_exact(8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            let item = u64::from_be_bytes(b);
            if items.insert(item) {
                news.insert(item);
            }
        }
        Ok((!news.is_empty()).then(|| encode(&news)))
    }

    fn on_unicast(&mut self, src: PeerName, payload: &[u8]) -> Result<(), GossipError> {
        let mut got = self
            .unicasts
            .lock()
            .map_err(|_| GossipError::new("poisoned"))?;
        got.push((src, payload.to_vec()));
        Ok(())
    }
}

struct SimPeer {
    core: MeshCore,
    info: PeerInfo,
    listen: SocketAddr,
    gset: GSet,
}

/// One end of a simulated connection.
#[derive(Clone, Copy)]
struct End {
    owner: usize,
    other: usize,
    other_conn: ConnId,
}

struct Sim {
    now: u64,
    rng: ChaCha8Rng,
    peers: Vec<SimPeer>,
    by_addr: BTreeMap<String, usize>,
    links: BTreeSet<(usize, usize)>,
    group: Vec<usize>,
    ends: BTreeMap<ConnId, End>,
    queue: VecDeque<(ConnId, MeshMessage)>,
    next_conn: ConnId,
    next_port: u16,
    unicasts_delivered: usize,
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Sim {
    /// `n` peers with the given undirected links; each peer is told the
    /// addresses of its linked neighbours with a smaller index (as `weft
    /// launch PEER...` would).
    fn new(n: usize, links: BTreeSet<(usize, usize)>, seed: u64) -> Sim {
        let mut sim = Sim {
            now: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            peers: Vec::new(),
            by_addr: BTreeMap::new(),
            links,
            group: vec![0; n],
            ends: BTreeMap::new(),
            queue: VecDeque::new(),
            next_conn: 1,
            next_port: 40_000,
            unicasts_delivered: 0,
        };
        for i in 0..n {
            let listen: SocketAddr = format!("127.1.{}.{}:6783", i / 256, i % 256)
                .parse()
                .unwrap_or_else(|e| {
                    panic!("bad simulated address: {e}");
                });
            let info = PeerInfo {
                name: PeerName::random(&mut sim.rng),
                nickname: format!("peer{i}"),
                uid: new_uid(0, &mut sim.rng),
                listen_port: 6783,
            };
            sim.by_addr.insert(listen.to_string(), i);
            let core = MeshCore::new(MeshConfig::new(info.clone()), 0, sim.rng.r#gen());
            sim.peers.push(SimPeer {
                core,
                info,
                listen,
                gset: GSet::default(),
            });
        }
        for i in 0..n {
            sim.start(i);
        }
        sim
    }

    /// Registers the gset channel and dials the peer's user targets.
    fn start(&mut self, i: usize) {
        let targets: Vec<String> = self
            .links
            .iter()
            .filter(|&&(_, b)| b == i)
            .map(|&(a, _)| self.peers[a].listen.to_string())
            .collect();
        let gset = self.peers[i].gset.clone();
        let now = self.now;
        let core = &mut self.peers[i].core;
        core.register_channel(GSET, Box::new(gset));
        core.add_targets(&targets, false, now);
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.links.contains(&pair(a, b)) && self.group[a] == self.group[b]
    }

    /// Carries out every action peer `i` has queued.
    fn drain(&mut self, i: usize) {
        while let Some(action) = self.peers[i].core.poll_action() {
            match action {
                Action::Send { conn, msg } => {
                    if self.ends.contains_key(&conn) {
                        self.queue.push_back((conn, msg));
                    }
                }
                Action::Dial { addr } => self.dial(i, &addr),
                Action::Close { conn, .. } => self.close(conn, "closed by peer"),
                Action::TopologyChanged => {}
            }
        }
    }

    fn dial(&mut self, i: usize, addr: &str) {
        let now = self.now;
        let j = match self.by_addr.get(addr) {
            Some(&j) if self.linked(i, j) => j,
            _ => {
                self.peers[i]
                    .core
                    .dial_failed(addr, "connection timed out".to_owned(), now);
                return;
            }
        };
        let (ci, cj) = (self.next_conn, self.next_conn + 1);
        self.next_conn += 2;
        self.next_port = self.next_port.checked_add(1).unwrap_or(40_000);
        let mut ephemeral = self.peers[i].listen;
        ephemeral.set_port(self.next_port);
        let (info_i, info_j, listen_j) = (
            self.peers[i].core.local().clone(),
            self.peers[j].core.local().clone(),
            self.peers[j].listen,
        );
        let up_i = self.peers[i].core.connection_up(
            ci,
            info_j,
            listen_j,
            true,
            Some(addr.to_owned()),
            false,
            now,
        );
        let up_j = self.peers[j]
            .core
            .connection_up(cj, info_i, ephemeral, false, None, false, now);
        match (up_i, up_j) {
            (Ok(()), Ok(())) => {
                self.ends.insert(
                    ci,
                    End {
                        owner: i,
                        other: j,
                        other_conn: cj,
                    },
                );
                self.ends.insert(
                    cj,
                    End {
                        owner: j,
                        other: i,
                        other_conn: ci,
                    },
                );
            }
            (Ok(()), Err(_)) => self.peers[i]
                .core
                .connection_down(ci, "closed by peer", now),
            (Err(_), Ok(())) => self.peers[j]
                .core
                .connection_down(cj, "closed by peer", now),
            (Err(_), Err(_)) => {}
        }
        self.drain(j);
    }

    /// Closes connection `conn` from its owner's side; the other end hears of it.
    fn close(&mut self, conn: ConnId, reason: &str) {
        let Some(end) = self.ends.remove(&conn) else {
            return;
        };
        self.ends.remove(&end.other_conn);
        let now = self.now;
        self.peers[end.other]
            .core
            .connection_down(end.other_conn, reason, now);
        self.drain(end.other);
    }

    /// Drops a connection on both sides, as a broken link would.
    fn cut(&mut self, conn: ConnId) {
        let Some(end) = self.ends.remove(&conn) else {
            return;
        };
        self.ends.remove(&end.other_conn);
        let now = self.now;
        self.peers[end.owner]
            .core
            .connection_down(conn, "link down", now);
        self.peers[end.other]
            .core
            .connection_down(end.other_conn, "link down", now);
        self.drain(end.owner);
        self.drain(end.other);
    }

    /// Processes actions and messages until nothing is left at this instant.
    fn settle(&mut self) {
        for i in 0..self.peers.len() {
            self.drain(i);
        }
        while let Some((conn, msg)) = self.queue.pop_front() {
            let Some(end) = self.ends.get(&conn).copied() else {
                continue; // the connection closed while the message was in flight
            };
            if matches!(msg.body, Some(Body::Unicast(_))) {
                self.unicasts_delivered += 1;
            }
            let now = self.now;
            let to = end.other;
            if let Err(e) = self.peers[to].core.handle_message(end.other_conn, msg, now) {
                panic!("peer {to} rejected a message: {e}");
            }
            self.drain(to);
        }
    }

    /// Runs the mesh until `until` ms, jumping the clock between timeouts.
    fn run_until(&mut self, until: u64) {
        loop {
            self.settle();
            let next = self
                .peers
                .iter()
                .filter_map(|p| p.core.poll_timeout())
                .min();
            match next {
                Some(t) if t <= until => self.now = self.now.max(t),
                _ => {
                    self.now = self.now.max(until);
                    return;
                }
            }
            let now = self.now;
            for i in 0..self.peers.len() {
                if self.peers[i].core.poll_timeout().is_some_and(|t| t <= now) {
                    self.peers[i].core.handle_timeout(now);
                    self.drain(i);
                }
            }
        }
    }

    /// Runs in 500 ms steps until `done` holds (returns the time) or `limit` ms pass.
    fn run_until_true(&mut self, limit: u64, done: impl Fn(&Sim) -> bool) -> Option<u64> {
        let end = self.now + limit;
        while self.now < end {
            let step = self.now + 500;
            self.run_until(step);
            if done(self) {
                return Some(self.now);
            }
        }
        None
    }

    /// Splits the network: a link works only inside a group. Connections
    /// across groups break.
    fn partition(&mut self, group: Vec<usize>) {
        self.group = group;
        let crossing: Vec<ConnId> = self
            .ends
            .iter()
            .filter(|(_, e)| self.group[e.owner] != self.group[e.other])
            .map(|(&c, _)| c)
            .collect();
        for conn in crossing {
            self.cut(conn);
        }
    }

    /// Kills peer `i` and starts a new incarnation of it (same name and
    /// address, new UID, empty state).
    fn restart(&mut self, i: usize) {
        let own: Vec<ConnId> = self
            .ends
            .iter()
            .filter(|(_, e)| e.owner == i)
            .map(|(&c, _)| c)
            .collect();
        for conn in own {
            if let Some(end) = self.ends.remove(&conn) {
                self.ends.remove(&end.other_conn);
                let now = self.now;
                self.peers[end.other]
                    .core
                    .connection_down(end.other_conn, "connection reset", now);
                self.drain(end.other);
            }
        }
        let info = PeerInfo {
            uid: new_uid(self.now, &mut self.rng),
            ..self.peers[i].info.clone()
        };
        let seed = self.rng.r#gen();
        self.peers[i].core = MeshCore::new(MeshConfig::new(info.clone()), self.now, seed);
        self.peers[i].info = info;
        self.peers[i].gset = GSet::default();
        self.start(i);
    }

    /// Whether every peer in `members` lists exactly `members`, each at the
    /// UID and version that peer has for itself.
    fn converged(&self, members: &[usize]) -> bool {
        let want: BTreeMap<PeerName, (u64, u64)> = members
            .iter()
            .map(|&m| {
                let own = self.peers[m].core.status();
                let me = own
                    .peers
                    .iter()
                    .find(|p| p.name == own.local.name)
                    .map(|p| (p.uid, p.version));
                (own.local.name, me.unwrap_or_default())
            })
            .collect();
        members.iter().all(|&m| {
            let got: BTreeMap<PeerName, (u64, u64)> = self.peers[m]
                .core
                .status()
                .peers
                .iter()
                .map(|p| (p.name, (p.uid, p.version)))
                .collect();
            got == want
        })
    }

    fn all(&self) -> Vec<usize> {
        (0..self.peers.len()).collect()
    }

    fn add_item(&mut self, i: usize, item: u64) {
        if let Ok(mut items) = self.peers[i].gset.items.lock() {
            items.insert(item);
        }
        self.peers[i]
            .core
            .gossip_update(GSET, item.to_be_bytes().to_vec());
    }

    fn sets_equal(&self, members: &[usize], want: &BTreeSet<u64>) -> bool {
        members.iter().all(|&m| self.peers[m].gset.items() == *want)
    }
}

/// A random connected sparse graph: a random tree plus `extra` random edges.
fn random_links(nodes: &[usize], extra: usize, rng: &mut ChaCha8Rng) -> BTreeSet<(usize, usize)> {
    let mut links = BTreeSet::new();
    for k in 1..nodes.len() {
        let parent = nodes[rng.gen_range(0..k)];
        links.insert(pair(parent, nodes[k]));
    }
    while links.len() < nodes.len() - 1 + extra {
        let a = nodes[rng.gen_range(0..nodes.len())];
        let b = nodes[rng.gen_range(0..nodes.len())];
        if a != b {
            links.insert(pair(a, b));
        }
    }
    links
}

#[test]
fn hundred_peers_in_a_sparse_mesh_converge() {
    let mut rng = ChaCha8Rng::seed_from_u64(100);
    let nodes: Vec<usize> = (0..100).collect();
    let links = random_links(&nodes, 50, &mut rng);
    let mut sim = Sim::new(100, links, 1);
    let all = sim.all();
    let t = sim.run_until_true(120_000, |s| s.converged(&all));
    assert!(
        t.is_some(),
        "100 peers did not converge within 120 s of simulated time"
    );
    for p in &sim.peers {
        assert_eq!(p.core.status().peers.len(), 100);
    }
    // Connections stay within the simulated links: discovery dials elsewhere fail.
    let conns: usize = sim
        .peers
        .iter()
        .map(|p| p.core.status().connections.len())
        .sum();
    assert_eq!(conns, 2 * sim.links.len());
}

#[test]
fn partitioned_halves_converge_apart_then_together() {
    let mut rng = ChaCha8Rng::seed_from_u64(200);
    let (left, right): (Vec<usize>, Vec<usize>) = ((0..25).collect(), (25..50).collect());
    let mut links = random_links(&left, 10, &mut rng);
    links.extend(random_links(&right, 10, &mut rng));
    links.extend([(0, 25), (3, 30), (10, 40)]);
    let mut sim = Sim::new(50, links, 2);
    let all = sim.all();
    assert!(
        sim.run_until_true(60_000, |s| s.converged(&all)).is_some(),
        "no initial convergence"
    );

    sim.partition((0..50).map(|i| usize::from(i >= 25)).collect());
    let split = sim.run_until_true(60_000, |s| s.converged(&left) && s.converged(&right));
    assert!(split.is_some(), "halves did not converge to themselves");
    for &i in &left {
        assert_eq!(
            sim.peers[i].core.status().peers.len(),
            25,
            "peer {i} kept unreachable peers"
        );
    }

    sim.partition(vec![0; 50]);
    // Redials back off up to 30 s (+ jitter), so allow a few periods.
    let healed = sim.run_until_true(120_000, |s| s.converged(&all));
    assert!(
        healed.is_some(),
        "mesh did not re-converge after the partition healed"
    );
}

#[test]
fn restarted_peer_replaces_its_old_incarnation_everywhere() {
    let mut rng = ChaCha8Rng::seed_from_u64(300);
    let nodes: Vec<usize> = (0..20).collect();
    let mut sim = Sim::new(20, random_links(&nodes, 8, &mut rng), 3);
    let all = sim.all();
    assert!(sim.run_until_true(60_000, |s| s.converged(&all)).is_some());
    let name = sim.peers[7].info.name;
    let old_uid = sim.peers[7].info.uid;
    let old_version = sim.peers[0]
        .core
        .status()
        .peers
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.version);

    sim.run_until(sim.now + 1_000);
    sim.restart(7);
    let new_uid = sim.peers[7].info.uid;
    assert!(new_uid > old_uid);
    assert!(
        sim.run_until_true(120_000, |s| s.converged(&all)).is_some(),
        "no convergence after restart"
    );
    for p in &sim.peers {
        let entry = p.core.status().peers.into_iter().find(|e| e.name == name);
        let entry = entry.unwrap_or_else(|| panic!("{} lost the restarted peer", p.info.nickname));
        assert_eq!(
            entry.uid, new_uid,
            "{} still has the old incarnation",
            p.info.nickname
        );
    }
    // The new incarnation started again from a low version, yet won.
    assert!(old_version.is_some());
}

#[test]
fn gossip_channel_converges_including_after_a_partition() {
    let mut rng = ChaCha8Rng::seed_from_u64(400);
    let (left, right): (Vec<usize>, Vec<usize>) = ((0..15).collect(), (15..30).collect());
    let mut links = random_links(&left, 5, &mut rng);
    links.extend(random_links(&right, 5, &mut rng));
    links.extend([(1, 16), (7, 22)]);
    let mut sim = Sim::new(30, links, 4);
    let all = sim.all();
    assert!(sim.run_until_true(60_000, |s| s.converged(&all)).is_some());
    for i in 0..30 {
        sim.add_item(i, i as u64);
    }
    let first: BTreeSet<u64> = (0..30).collect();
    assert!(
        sim.run_until_true(30_000, |s| s.sets_equal(&all, &first))
            .is_some(),
        "gset did not converge"
    );

    sim.partition((0..30).map(|i| usize::from(i >= 15)).collect());
    sim.run_until(sim.now + 2_000);
    sim.add_item(2, 1_000);
    sim.add_item(20, 2_000);
    let mut left_set = first.clone();
    left_set.insert(1_000);
    let mut right_set = first.clone();
    right_set.insert(2_000);
    let split = sim.run_until_true(30_000, |s| {
        s.sets_equal(&left, &left_set) && s.sets_equal(&right, &right_set)
    });
    assert!(
        split.is_some(),
        "each side should hold exactly its own additions"
    );

    sim.partition(vec![0; 30]);
    let union: BTreeSet<u64> = left_set.union(&right_set).copied().collect();
    assert!(
        sim.run_until_true(120_000, |s| s.sets_equal(&all, &union))
            .is_some(),
        "gset did not heal"
    );
}

#[test]
fn unicast_is_relayed_over_four_hops() {
    // A line 0-1-2-3-4: only neighbours can connect.
    let links: BTreeSet<(usize, usize)> = (0..4).map(|i| (i, i + 1)).collect();
    let mut sim = Sim::new(5, links, 5);
    let all = sim.all();
    assert!(sim.run_until_true(60_000, |s| s.converged(&all)).is_some());
    let dst = sim.peers[4].info.name;
    assert!(
        sim.peers[0]
            .core
            .status()
            .connections
            .iter()
            .all(|c| c.name != dst)
    );

    let before = sim.unicasts_delivered;
    assert!(
        sim.peers[0]
            .core
            .send_unicast(dst, GSET, b"hello".to_vec())
            .is_ok()
    );
    sim.settle();
    assert_eq!(
        sim.unicasts_delivered - before,
        4,
        "expected one delivery per hop"
    );
    let got = sim.peers[4]
        .gset
        .unicasts
        .lock()
        .map(|u| u.clone())
        .unwrap_or_default();
    assert_eq!(got, vec![(sim.peers[0].info.name, b"hello".to_vec())]);

    // Once peer 4 is gone and collected, it is unreachable.
    sim.partition(vec![0, 0, 0, 0, 1]);
    sim.run_until(sim.now + 1_000);
    assert!(
        sim.peers[0]
            .core
            .send_unicast(dst, GSET, b"again".to_vec())
            .is_err()
    );
}
