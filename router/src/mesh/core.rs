//! [`MeshCore`]: the sans-IO mesh. It owns the peers table, the gossip
//! channels, our connections and the dial targets; the driver feeds it
//! connection events, messages and the time, and carries out its [`Action`]s.
//!
//! Gossip: a new connection gets the full state of every channel; news found
//! by a merge is flooded to every neighbour except the one it came from, and a
//! merge with no news stops the flood. Every `gossip_interval_ms` a few random
//! neighbours get the full state again (anti-entropy), which heals anything a
//! lost connection dropped. Unicasts follow shortest-path routes hop by hop.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::gossip::{GossipError, Gossiper};
use super::peer::{PeerInfo, PeerName};
use super::status::{ConnectionStatus, MeshStatus, PeerConnectionStatus, PeerStatus};
use super::targets::Targets;
use super::topology::{ConnSummary, Topology};
use super::wire::{Body, Gossip, MeshMessage, TOPOLOGY_CHANNEL, Unicast};

/// The driver's identifier of one connection.
pub type ConnId = u64;

/// Relays a unicast may take before it is dropped.
const MAX_HOPS: u32 = 64;

/// Tunables of the mesh core.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// This peer.
    pub local: PeerInfo,
    /// Most connections we keep.
    pub conn_limit: usize,
    /// Period of anti-entropy full-state gossip.
    pub gossip_interval_ms: u64,
    /// First redial delay.
    pub initial_backoff_ms: u64,
    /// Largest redial delay.
    pub max_backoff_ms: u64,
}

impl MeshConfig {
    /// Defaults: 200 connections, gossip every 5 s, redial backoff 1 s to 30 s.
    pub fn new(local: PeerInfo) -> MeshConfig {
        MeshConfig {
            local,
            conn_limit: 200,
            gossip_interval_ms: 5_000,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 30_000,
        }
    }
}

/// Why [`MeshCore::connection_up`] refused a connection; the driver closes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnRefused {
    /// The remote is this very peer (we dialled our own address).
    #[error("connection to ourselves")]
    ToSelf,
    /// We already have `conn_limit` connections.
    #[error("connection limit of {0} reached")]
    LimitReached(usize),
    /// We already have a connection to that peer and keep the other one
    /// (it reaches a newer incarnation, or was dialled by the smaller name).
    #[error("already connected to {0}: keeping the other connection")]
    Duplicate(PeerName),
}

/// No connection or route leads to the destination of a unicast.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no route to peer {0}")]
pub struct Unreachable(pub PeerName);

/// Something for the driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write `msg` on `conn`.
    Send {
        /// Connection.
        conn: ConnId,
        /// Message.
        msg: MeshMessage,
    },
    /// Dial `addr` (`host:port`); report the result with
    /// [`MeshCore::connection_up`] or [`MeshCore::dial_failed`].
    Dial {
        /// Address.
        addr: String,
    },
    /// Close `conn`; the core has already forgotten it.
    Close {
        /// Connection.
        conn: ConnId,
        /// Why, for the log.
        reason: String,
    },
    /// The peers table or the routes changed (emitted after garbage
    /// collection and route computation, so [`MeshCore::status`] is current).
    TopologyChanged,
}

/// One of our connections.
struct Conn {
    remote: PeerInfo,
    addr: SocketAddr,
    outbound: bool,
    encrypted: bool,
}

/// The sans-IO mesh of one peer.
pub struct MeshCore {
    cfg: MeshConfig,
    rng: ChaCha8Rng,
    topology: Topology,
    routes: BTreeMap<PeerName, PeerName>,
    channels: BTreeMap<String, Box<dyn Gossiper>>,
    conns: BTreeMap<ConnId, Conn>,
    by_peer: BTreeMap<PeerName, ConnId>,
    targets: Targets,
    actions: VecDeque<Action>,
    next_gossip: u64,
    /// The table changed since routes, garbage and discovery were last refreshed.
    dirty: bool,
    /// The latest `now` the driver gave us.
    last_now: u64,
}

impl MeshCore {
    /// A core that knows only itself; `seed` drives all its randomness.
    pub fn new(cfg: MeshConfig, now: u64, seed: u64) -> MeshCore {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let next_gossip = now + jittered(cfg.gossip_interval_ms, &mut rng);
        MeshCore {
            topology: Topology::new(cfg.local.clone()),
            targets: Targets::new(cfg.initial_backoff_ms, cfg.max_backoff_ms),
            cfg,
            rng,
            routes: BTreeMap::new(),
            channels: BTreeMap::new(),
            conns: BTreeMap::new(),
            by_peer: BTreeMap::new(),
            actions: VecDeque::new(),
            next_gossip,
            dirty: false,
            last_now: now,
        }
    }

    /// This peer as it currently announces itself.
    pub fn local(&self) -> &PeerInfo {
        &self.topology.local().info
    }

    fn local_name(&self) -> PeerName {
        self.cfg.local.name
    }

    /// Adds a gossip channel and sends its full state to every neighbour.
    /// [`TOPOLOGY_CHANNEL`] is the mesh's own and cannot be registered.
    pub fn register_channel(&mut self, name: &str, g: Box<dyn Gossiper>) {
        if name == TOPOLOGY_CHANNEL {
            tracing::warn!("gossip channel name {name:?} is reserved for the mesh; ignoring it");
            return;
        }
        let state = g.full_state();
        self.channels.insert(name.to_owned(), g);
        self.flood(name, state, None);
    }

    /// Adds user-given dial targets (`host:port`), dialled at once; with
    /// `replace`, user targets not listed are dropped.
    pub fn add_targets(&mut self, addrs: &[String], replace: bool, now: u64) {
        self.targets.add_user(addrs, replace, now);
        self.dial_due(now);
    }

    /// Stops dialling these user-given targets (connections stay up).
    pub fn forget_targets(&mut self, addrs: &[String]) {
        self.targets.forget(addrs);
    }

    /// A dial of `addr` failed (connect, handshake or timeout): retry later
    /// with exponential backoff and jitter.
    pub fn dial_failed(&mut self, addr: &str, reason: String, now: u64) {
        self.targets.dial_failed(addr, reason, now, &mut self.rng);
    }

    /// A connection finished its handshake. On success its neighbour gets the
    /// full state of every channel. Refused connections (ourselves, the limit,
    /// a duplicate) must be closed by the driver; their target bookkeeping is
    /// done here, so do not call [`MeshCore::dial_failed`] for them.
    #[allow(clippy::too_many_arguments)] // the API the driver is written against
    pub fn connection_up(
        &mut self,
        conn: ConnId,
        remote: PeerInfo,
        remote_addr: SocketAddr,
        outbound: bool,
        target: Option<String>,
        encrypted: bool,
        now: u64,
    ) -> Result<(), ConnRefused> {
        let local = self.local_name();
        if remote.name == local {
            if let Some(t) = &target {
                self.targets.is_self(t);
            }
            return Err(ConnRefused::ToSelf);
        }
        if let Some(&existing) = self.by_peer.get(&remote.name) {
            let initiator = |outbound: bool| if outbound { local } else { remote.name };
            let (existing_outbound, existing_uid) = self
                .conns
                .get(&existing)
                .map_or((false, 0), |c| (c.outbound, c.remote.uid));
            // A larger UID is a restarted peer: the old connection is dead.
            // Within one incarnation, both ends keep the connection dialled by
            // the smaller name.
            let keep_existing = match remote.uid.cmp(&existing_uid) {
                Ordering::Greater => false,
                Ordering::Less => true,
                Ordering::Equal => initiator(outbound) >= initiator(existing_outbound),
            };
            if keep_existing {
                if let Some(t) = &target {
                    self.targets.connected(t, remote.name);
                }
                return Err(ConnRefused::Duplicate(remote.name));
            }
            self.conns.remove(&existing);
            self.actions.push_back(Action::Close {
                conn: existing,
                reason: format!("replaced by a newer connection to {}", remote.name),
            });
        } else if self.conns.len() >= self.cfg.conn_limit {
            if let Some(t) = &target {
                let reason = format!("connection limit of {} reached", self.cfg.conn_limit);
                self.targets.dial_failed(t, reason, now, &mut self.rng);
            }
            return Err(ConnRefused::LimitReached(self.cfg.conn_limit));
        }
        if let Some(t) = &target {
            self.targets.connected(t, remote.name);
        }
        self.by_peer.insert(remote.name, conn);
        self.conns.insert(
            conn,
            Conn {
                remote,
                addr: remote_addr,
                outbound,
                encrypted,
            },
        );
        self.update_local_connections(Some(conn));
        self.send_full_state(conn);
        self.topology_changed(now);
        Ok(())
    }

    /// A connection ended (or the driver closed it after an error). Its
    /// targets are redialled after the backoff.
    pub fn connection_down(&mut self, conn: ConnId, reason: &str, now: u64) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let name = c.remote.name;
        if self.by_peer.get(&name) == Some(&conn) {
            self.by_peer.remove(&name);
            self.targets.peer_lost(name, reason, now, &mut self.rng);
        }
        self.update_local_connections(None);
        self.topology_changed(now);
    }

    /// A message arrived on `conn`. An error means the neighbour sent
    /// something undecodable (or a channel rejected it): close the connection.
    /// Gossip for channels not registered here is dropped silently.
    pub fn handle_message(
        &mut self,
        conn: ConnId,
        msg: MeshMessage,
        now: u64,
    ) -> Result<(), GossipError> {
        let Some(src) = self.conns.get(&conn).map(|c| c.remote.name) else {
            return Ok(());
        };
        match msg.body {
            None => Ok(()),
            Some(Body::Gossip(Gossip { channel, payload })) if channel == TOPOLOGY_CHANNEL => {
                self.merge_topology(conn, &payload, now)
            }
            Some(Body::Gossip(Gossip { channel, payload })) => {
                let Some(g) = self.channels.get_mut(&channel) else {
                    tracing::debug!(%src, %channel, "gossip for an unregistered channel dropped");
                    return Ok(());
                };
                if let Some(delta) = g.merge(src, &payload)? {
                    self.flood(&channel, delta, Some(conn));
                }
                Ok(())
            }
            Some(Body::Unicast(u)) => self.handle_unicast(u),
        }
    }

    fn merge_topology(
        &mut self,
        from: ConnId,
        payload: &[u8],
        now: u64,
    ) -> Result<(), GossipError> {
        let outcome = self
            .topology
            .merge(payload)
            .map_err(|e| GossipError::Decode {
                channel: TOPOLOGY_CHANNEL.to_owned(),
                reason: e.to_string(),
            })?;
        if outcome.improved.is_empty() {
            return Ok(());
        }
        let local = self.local_name();
        let others: Vec<PeerName> = outcome
            .improved
            .iter()
            .copied()
            .filter(|n| *n != local)
            .collect();
        if !others.is_empty() {
            let update = self.topology.encode(&others);
            self.flood(TOPOLOGY_CHANNEL, update, Some(from));
        }
        if outcome.local_bumped {
            // The sender holds the stale entry of us too: everyone gets ours.
            let update = self.topology.encode(&[local]);
            self.flood(TOPOLOGY_CHANNEL, update, None);
        }
        self.topology_changed(now);
        Ok(())
    }

    fn handle_unicast(&mut self, u: Unicast) -> Result<(), GossipError> {
        let bad = |e: super::peer::PeerNameError| GossipError::Decode {
            channel: u.channel.clone(),
            reason: e.to_string(),
        };
        let src = PeerName::from_u64(u.src).map_err(bad)?;
        let dst = PeerName::from_u64(u.dst).map_err(bad)?;
        if dst == self.local_name() {
            return match self.channels.get_mut(&u.channel) {
                Some(g) => g.on_unicast(src, &u.payload),
                None => {
                    tracing::debug!(%src, channel = %u.channel, "unicast for an unregistered channel dropped");
                    Ok(())
                }
            };
        }
        if u.hops_left == 0 {
            tracing::debug!(%src, %dst, "unicast dropped: hop limit reached");
            return Ok(());
        }
        let Some(conn) = self.conn_towards(dst) else {
            tracing::debug!(%src, %dst, "unicast dropped: no route");
            return Ok(());
        };
        let msg = MeshMessage {
            body: Some(Body::Unicast(Unicast {
                hops_left: u.hops_left - 1,
                ..u
            })),
        };
        self.actions.push_back(Action::Send { conn, msg });
        Ok(())
    }

    /// The connection to `dst`, or to the next hop on the route to it.
    fn conn_towards(&mut self, dst: PeerName) -> Option<ConnId> {
        if let Some(&conn) = self.by_peer.get(&dst) {
            return Some(conn);
        }
        if self.dirty {
            self.refresh(self.last_now);
        }
        let hop = self.routes.get(&dst)?;
        self.by_peer.get(hop).copied()
    }

    /// Periodic work: anti-entropy gossip and due redials.
    pub fn handle_timeout(&mut self, now: u64) {
        self.last_now = self.last_now.max(now);
        self.refresh(now);
        if now >= self.next_gossip {
            self.anti_entropy();
            self.next_gossip = now + jittered(self.cfg.gossip_interval_ms, &mut self.rng);
        }
        self.dial_due(now);
    }

    /// When [`MeshCore::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.dirty {
            return Some(self.last_now);
        }
        Some(match self.targets.next_due() {
            Some(due) => due.min(self.next_gossip),
            None => self.next_gossip,
        })
    }

    /// The next thing for the driver to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// A local change of `channel`: flood it to every neighbour.
    pub fn gossip_update(&mut self, channel: &str, update: Vec<u8>) {
        self.flood(channel, update, None);
    }

    /// Sends `payload` to `dst`'s `channel`, directly or via the next hop.
    /// A peer does not unicast to itself: that is [`Unreachable`] too.
    pub fn send_unicast(
        &mut self,
        dst: PeerName,
        channel: &str,
        payload: Vec<u8>,
    ) -> Result<(), Unreachable> {
        if dst == self.local_name() {
            return Err(Unreachable(dst));
        }
        let conn = self.conn_towards(dst).ok_or(Unreachable(dst))?;
        let msg = MeshMessage {
            body: Some(Body::Unicast(Unicast {
                src: self.local_name().0,
                dst: dst.0,
                channel: channel.to_owned(),
                payload,
                hops_left: MAX_HOPS,
            })),
        };
        self.actions.push_back(Action::Send { conn, msg });
        Ok(())
    }

    /// Snapshot for `weft status`.
    pub fn status(&self) -> MeshStatus {
        let nickname = |name: PeerName| {
            self.topology
                .get(name)
                .map(|e| e.info.nickname.clone())
                .unwrap_or_default()
        };
        MeshStatus {
            local: self.local().clone(),
            peers: self
                .topology
                .entries()
                .map(|e| PeerStatus {
                    name: e.info.name,
                    nickname: e.info.nickname.clone(),
                    uid: e.info.uid,
                    version: e.version,
                    connections: e
                        .connections
                        .iter()
                        .map(|c| PeerConnectionStatus {
                            name: c.name,
                            nickname: nickname(c.name),
                            address: c.address.clone(),
                            outbound: c.outbound,
                            established: c.established,
                        })
                        .collect(),
                })
                .collect(),
            connections: self
                .conns
                .iter()
                .map(|(&conn, c)| ConnectionStatus {
                    conn,
                    address: c.addr.to_string(),
                    outbound: c.outbound,
                    state: "established".to_owned(),
                    encrypted: c.encrypted,
                    name: c.remote.name,
                    nickname: c.remote.nickname.clone(),
                })
                .collect(),
            targets: self.targets.status(),
        }
    }

    /// Queues `payload` on `channel` to every connection but `except`.
    fn flood(&mut self, channel: &str, payload: Vec<u8>, except: Option<ConnId>) {
        for &conn in self.conns.keys() {
            if Some(conn) != except {
                self.actions.push_back(Action::Send {
                    conn,
                    msg: MeshMessage::gossip(channel, payload.clone()),
                });
            }
        }
    }

    /// Queues the full state of the topology and every channel to `conn`.
    fn send_full_state(&mut self, conn: ConnId) {
        let mut msgs = vec![MeshMessage::gossip(
            TOPOLOGY_CHANNEL,
            self.topology.encode_all(),
        )];
        for (name, g) in &self.channels {
            msgs.push(MeshMessage::gossip(name, g.full_state()));
        }
        self.actions
            .extend(msgs.into_iter().map(|msg| Action::Send { conn, msg }));
    }

    /// Sends full state to about log2(peers) random neighbours.
    fn anti_entropy(&mut self) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        if conns.is_empty() {
            return;
        }
        let peers = self.topology.entries().count();
        let fanout = (usize::BITS - peers.leading_zeros()) as usize;
        let chosen = sample(&mut self.rng, conns.len(), fanout.clamp(1, conns.len()));
        for i in chosen {
            self.send_full_state(conns[i]);
        }
    }

    /// Writes our connections into our topology entry and floods it when it changed.
    fn update_local_connections(&mut self, except: Option<ConnId>) {
        let conns = self
            .conns
            .values()
            .map(|c| ConnSummary {
                name: c.remote.name,
                address: c.addr.to_string(),
                outbound: c.outbound,
                established: true,
            })
            .collect();
        if self.topology.set_local_connections(conns) {
            let update = self.topology.encode(&[self.local_name()]);
            self.flood(TOPOLOGY_CHANNEL, update, except);
        }
    }

    /// The table changed: derived state is refreshed at the next
    /// [`MeshCore::handle_timeout`], which [`MeshCore::poll_timeout`] makes due
    /// at once, so a burst of gossip costs one refresh.
    fn topology_changed(&mut self, now: u64) {
        self.last_now = self.last_now.max(now);
        self.dirty = true;
    }

    /// Collects garbage, recomputes routes, refreshes discovered targets and
    /// tells the driver ([`Action::TopologyChanged`]).
    fn refresh(&mut self, now: u64) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.topology.garbage_collect();
        self.routes = self.topology.routes();
        let discovered = self.discovered_addresses();
        self.targets.set_discovered(&discovered, now);
        self.actions.push_back(Action::TopologyChanged);
    }

    /// Addresses of peers we are not connected to, learned from the
    /// connections others announce, with the peer's own listen port.
    fn discovered_addresses(&self) -> BTreeSet<String> {
        let local = self.local_name();
        let mut out = BTreeSet::new();
        for entry in self.topology.entries() {
            for c in entry.connections.iter().filter(|c| c.established) {
                if c.name == local || self.by_peer.contains_key(&c.name) {
                    continue;
                }
                let (Some(peer), Ok(mut addr)) =
                    (self.topology.get(c.name), c.address.parse::<SocketAddr>())
                else {
                    continue;
                };
                addr.set_port(peer.info.listen_port);
                out.insert(addr.to_string());
            }
        }
        out
    }

    fn dial_due(&mut self, now: u64) {
        for addr in self.targets.take_due(now) {
            self.actions.push_back(Action::Dial { addr });
        }
    }
}

/// `interval` ± 10 %, so peers do not gossip in lock-step.
fn jittered(interval: u64, rng: &mut impl Rng) -> u64 {
    let spread = interval / 10;
    interval - spread + rng.gen_range(0..=2 * spread)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts merges and applies nothing: every update is news once.
    struct Echo {
        seen: Vec<Vec<u8>>,
    }

    impl Gossiper for Echo {
        fn full_state(&self) -> Vec<u8> {
            b"full".to_vec()
        }

        fn merge(&mut self, _src: PeerName, update: &[u8]) -> Result<Option<Vec<u8>>, GossipError> {
            if update == b"bad" {
                return Err(GossipError::new("bad update"));
            }
            let news = !self.seen.iter().any(|s| s == update);
            self.seen.push(update.to_vec());
            Ok(news.then(|| update.to_vec()))
        }

        fn on_unicast(&mut self, _src: PeerName, _payload: &[u8]) -> Result<(), GossipError> {
            Ok(())
        }
    }

    fn info(name: u64) -> PeerInfo {
        PeerInfo {
            name: PeerName(name),
            nickname: format!("p{name}"),
            uid: 1,
            listen_port: 6783,
        }
    }

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], 6783))
    }

    fn core(name: u64) -> MeshCore {
        MeshCore::new(MeshConfig::new(info(name)), 0, name)
    }

    fn drain(core: &mut MeshCore) -> Vec<Action> {
        std::iter::from_fn(|| core.poll_action()).collect()
    }

    fn sends_on(actions: &[Action], channel: &str) -> Vec<ConnId> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send {
                    conn,
                    msg:
                        MeshMessage {
                            body: Some(Body::Gossip(g)),
                        },
                } if g.channel == channel => Some(*conn),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn new_connection_gets_full_state_of_every_channel() {
        let mut a = core(1);
        a.register_channel("echo", Box::new(Echo { seen: vec![] }));
        a.connection_up(7, info(2), addr(2), true, None, false, 0)
            .unwrap();
        let actions = drain(&mut a);
        assert_eq!(sends_on(&actions, TOPOLOGY_CHANNEL), vec![7]);
        assert_eq!(sends_on(&actions, "echo"), vec![7]);
        assert_eq!(a.status().connections.len(), 1);
        // Routes and the rest are refreshed, and the driver told, at the next timeout.
        assert!(!actions.contains(&Action::TopologyChanged));
        assert_eq!(a.poll_timeout(), Some(0));
        a.handle_timeout(0);
        assert!(drain(&mut a).contains(&Action::TopologyChanged));
    }

    #[test]
    fn refuses_self_and_marks_the_target_failed() {
        let mut a = core(1);
        a.add_targets(&["127.0.0.1:6783".to_owned()], false, 0);
        assert_eq!(
            drain(&mut a),
            vec![Action::Dial {
                addr: "127.0.0.1:6783".to_owned()
            }]
        );
        let r = a.connection_up(
            3,
            info(1),
            addr(1),
            true,
            Some("127.0.0.1:6783".to_owned()),
            false,
            0,
        );
        assert_eq!(r, Err(ConnRefused::ToSelf));
        assert_eq!(a.status().targets[0].state, "failed");
    }

    #[test]
    fn refuses_beyond_the_limit() {
        let mut cfg = MeshConfig::new(info(1));
        cfg.conn_limit = 1;
        let mut a = MeshCore::new(cfg, 0, 1);
        a.connection_up(1, info(2), addr(2), false, None, false, 0)
            .unwrap();
        assert_eq!(
            a.connection_up(2, info(3), addr(3), false, None, false, 0),
            Err(ConnRefused::LimitReached(1))
        );
    }

    /// Both ends of a simultaneous connect keep the connection dialled by the smaller name.
    #[test]
    fn duplicates_are_resolved_the_same_way_on_both_ends() {
        for first_by_small in [true, false] {
            let (mut small, mut big) = (core(1), core(2));
            // Connection X dialled by `small` (conn 10 at small, 20 at big);
            // connection Y dialled by `big` (conn 11 at small, 21 at big).
            let order: [(ConnId, ConnId, bool); 2] = if first_by_small {
                [(10, 20, true), (11, 21, false)]
            } else {
                [(11, 21, false), (10, 20, true)]
            };
            let mut results = Vec::new();
            for (cs, cb, small_dials) in order {
                results.push((
                    small.connection_up(cs, info(2), addr(2), small_dials, None, false, 0),
                    big.connection_up(cb, info(1), addr(1), !small_dials, None, false, 0),
                ));
            }
            let kept_small: Vec<ConnId> =
                small.status().connections.iter().map(|c| c.conn).collect();
            let kept_big: Vec<ConnId> = big.status().connections.iter().map(|c| c.conn).collect();
            assert_eq!(kept_small, vec![10], "order {first_by_small}: {results:?}");
            assert_eq!(kept_big, vec![20], "order {first_by_small}: {results:?}");
            if !first_by_small {
                // The earlier connection is closed by the core on both ends.
                let closes = |actions: Vec<Action>| -> Vec<ConnId> {
                    actions
                        .into_iter()
                        .filter_map(|a| match a {
                            Action::Close { conn, .. } => Some(conn),
                            _ => None,
                        })
                        .collect()
                };
                assert_eq!(closes(drain(&mut small)), vec![11]);
                assert_eq!(closes(drain(&mut big)), vec![21]);
                assert!(results[1].0.is_ok() && results[1].1.is_ok());
            } else {
                assert_eq!(results[1].0, Err(ConnRefused::Duplicate(PeerName(2))));
                assert_eq!(results[1].1, Err(ConnRefused::Duplicate(PeerName(1))));
            }
        }
    }

    #[test]
    fn connection_from_a_restarted_peer_replaces_the_dead_one() {
        let mut a = core(1);
        a.connection_up(1, info(2), addr(2), true, None, false, 0)
            .unwrap();
        drain(&mut a);
        let reborn = PeerInfo { uid: 2, ..info(2) };
        // Peer 2 (larger name) dials again as a new incarnation: accepted.
        a.connection_up(2, reborn.clone(), addr(2), false, None, false, 0)
            .unwrap();
        assert!(
            drain(&mut a)
                .iter()
                .any(|x| matches!(x, Action::Close { conn: 1, .. }))
        );
        assert_eq!(a.status().connections[0].conn, 2);
        // A late connection from the old incarnation is refused.
        assert_eq!(
            a.connection_up(3, info(2), addr(2), true, None, false, 0),
            Err(ConnRefused::Duplicate(PeerName(2)))
        );
    }

    #[test]
    fn news_floods_to_all_but_the_sender_and_stale_news_stops() {
        let mut a = core(1);
        a.register_channel("echo", Box::new(Echo { seen: vec![] }));
        for (conn, peer) in [(1, 2), (2, 3), (3, 4)] {
            a.connection_up(conn, info(peer), addr(peer as u8), false, None, false, 0)
                .unwrap();
        }
        drain(&mut a);
        a.handle_message(2, MeshMessage::gossip("echo", b"x".to_vec()), 0)
            .unwrap();
        assert_eq!(sends_on(&drain(&mut a), "echo"), vec![1, 3]);
        a.handle_message(3, MeshMessage::gossip("echo", b"x".to_vec()), 0)
            .unwrap();
        assert!(sends_on(&drain(&mut a), "echo").is_empty());
        // Unknown channels are ignored; a channel's error is reported.
        assert!(
            a.handle_message(1, MeshMessage::gossip("other", b"x".to_vec()), 0)
                .is_ok()
        );
        assert!(
            a.handle_message(1, MeshMessage::gossip("echo", b"bad".to_vec()), 0)
                .is_err()
        );
        assert!(
            a.handle_message(1, MeshMessage::gossip(TOPOLOGY_CHANNEL, vec![0xff]), 0)
                .is_err()
        );
    }

    #[test]
    fn lost_connection_redials_its_target_after_backoff() {
        let mut a = core(1);
        let target = "127.0.0.2:6783".to_owned();
        a.add_targets(std::slice::from_ref(&target), false, 0);
        drain(&mut a);
        a.connection_up(5, info(2), addr(2), true, Some(target.clone()), false, 0)
            .unwrap();
        a.connection_down(5, "reset", 10_000);
        let due = a.targets.next_due().unwrap();
        assert!((11_000..=11_500).contains(&due), "{due}");
        a.handle_timeout(due);
        assert!(drain(&mut a).contains(&Action::Dial { addr: target }));
    }
}
