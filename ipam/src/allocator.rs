//! The per-peer IPAM state machine: requests in, messages and results out, no I/O.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::cidr::{Cidr, from_ip, to_ip};
use crate::config::{Config, InitMode};
use crate::error::{IpamError, Result};
use crate::paxos::Paxos;
use crate::peer::PeerId;
use crate::ring::Ring;
use crate::space::Space;
use crate::status::{Share, Status};
use crate::wire::{self, Gossip, Persisted, Unicast};

/// How long a donation request may go unanswered before it is given up.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a peer that refused (or ignored) a donation request is not asked again.
const ASK_BACKOFF: Duration = Duration::from_secs(10);
/// How long to wait for consensus before proposing again (plus a per-peer jitter).
const PROPOSE_RETRY: Duration = Duration::from_secs(3);

/// Identifies a pending request; results come back in [`Event`]s carrying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The immediate answer to `allocate` or `claim`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Done: the address is the owner's.
    Ready(Ipv4Addr),
    /// Queued until the ring is ready or space arrives; the outcome comes as an [`Event`].
    Pending(RequestId),
}

/// A message for the router to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// Send to every peer on the IPAM gossip channel.
    Broadcast(Vec<u8>),
    /// Send to one peer (donation request or reply).
    Unicast {
        /// The destination.
        to: PeerId,
        /// The message.
        bytes: Vec<u8>,
    },
}

/// Something that happened, for the router to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A pending request completed.
    Allocated {
        /// The request.
        request: RequestId,
        /// Its owner id.
        owner: String,
        /// The address now held by the owner.
        addr: Ipv4Addr,
    },
    /// A pending request failed (timeout, cancel, refusal, this peer leaving).
    Failed {
        /// The request.
        request: RequestId,
        /// Its owner id.
        owner: String,
        /// Why.
        error: IpamError,
    },
    /// An address allocated here turned out to belong to another peer (only after an operator
    /// error such as `rmpeer` of a live peer, or a restart from stale state). The allocation is
    /// dropped; the workload holding it should be restarted.
    Conflict {
        /// The address.
        addr: Ipv4Addr,
        /// The owner id that held it here.
        owner: String,
        /// The peer owning it now, per the merged ring.
        owned_by: Option<PeerId>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    Active,
    Left,
    Removed(PeerId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Any(Cidr),
    Exact(u64),
}

impl Want {
    /// The range asked of donors for this want.
    fn key(&self) -> (u64, u64) {
        match self {
            Want::Any(subnet) => subnet.usable(),
            Want::Exact(addr) => (*addr, addr + 1),
        }
    }
}

#[derive(Debug, Clone)]
struct Pending {
    id: RequestId,
    owner: String,
    want: Want,
    deadline: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct Asked {
    peer: PeerId,
    at: Duration,
}

/// One peer's IPAM: its view of the ring, its allocations and its pending requests.
///
/// Sans-IO: inputs are method calls carrying `now` (time since any fixed origin); outputs are
/// pulled with [`Allocator::poll_transmit`], [`Allocator::poll_event`] and
/// [`Allocator::poll_timeout`]. Contract with the caller: after any call that changes state,
/// write [`Allocator::persist`] to disk *before* sending what `poll_transmit` returns or
/// answering the request, so that a restart never forgets space it gave away or addresses it
/// handed out.
#[derive(Debug, Clone)]
pub struct Allocator {
    cfg: Config,
    ring: Ring,
    paxos: Paxos,
    space: Space,
    lifecycle: Lifecycle,
    pending: Vec<Pending>,
    next_request: u64,
    asked: BTreeMap<(u64, u64), Asked>,
    refused: BTreeMap<((u64, u64), PeerId), Duration>,
    seen: BTreeSet<PeerId>,
    unreachable: BTreeSet<PeerId>,
    proposed_at: Option<Duration>,
    now: Duration,
    unicasts: VecDeque<(PeerId, Vec<u8>)>,
    broadcast_due: bool,
    events: VecDeque<Event>,
}

impl Allocator {
    /// A fresh allocator. With `seed=`, the ring is split at once.
    pub fn new(cfg: Config) -> Self {
        let ring = Ring::new(cfg.range);
        let paxos = Paxos::new(cfg.peer);
        let mut alloc = Self::assemble(cfg, ring, paxos, Space::default());
        alloc.seed_from_config();
        alloc
    }

    /// Rebuilds an allocator from [`Allocator::persist`] bytes. Persisted state wins over the
    /// init mode; refused if the bytes are corrupt, of another peer or of another range.
    pub fn restore(cfg: Config, bytes: &[u8]) -> Result<Self> {
        let Persisted {
            peer,
            gossip,
            allocations,
        } = wire::decode_persisted(bytes)?;
        if peer != cfg.peer {
            return Err(IpamError::WrongPeer {
                ours: cfg.peer,
                found: peer,
            });
        }
        if gossip.ring.range() != cfg.range {
            return Err(IpamError::DifferentRange {
                ours: cfg.range,
                theirs: gossip.ring.range(),
            });
        }
        let mut space = Space::default();
        for (addr, owner) in &allocations {
            space.insert(*addr, owner);
        }
        let paxos = Paxos::with_knowledge(cfg.peer, gossip.claims);
        let mut alloc = Self::assemble(cfg, gossip.ring, paxos, space);
        alloc.seed_from_config();
        alloc.detect_conflicts();
        alloc.settle();
        Ok(alloc)
    }

    fn assemble(cfg: Config, ring: Ring, paxos: Paxos, space: Space) -> Self {
        Allocator {
            cfg,
            ring,
            paxos,
            space,
            lifecycle: Lifecycle::Active,
            pending: Vec::new(),
            next_request: 1,
            asked: BTreeMap::new(),
            refused: BTreeMap::new(),
            seen: BTreeSet::new(),
            unreachable: BTreeSet::new(),
            proposed_at: None,
            now: Duration::ZERO,
            unicasts: VecDeque::new(),
            broadcast_due: false,
            events: VecDeque::new(),
        }
    }

    fn seed_from_config(&mut self) {
        if let InitMode::Seed(peers) = &self.cfg.init
            && !self.ring.is_ready()
        {
            let peers = peers.clone();
            self.ring.seed(&peers);
            self.refresh_free();
        }
    }

    fn me(&self) -> PeerId {
        self.cfg.peer
    }

    /// This peer's configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Whether the ring exists (seeded or agreed), so that allocations can complete.
    pub fn is_ready(&self) -> bool {
        self.ring.is_ready()
    }

    fn check_active(&self) -> Result<()> {
        match self.lifecycle {
            Lifecycle::Active => Ok(()),
            Lifecycle::Left => Err(IpamError::Left),
            Lifecycle::Removed(by) => Err(IpamError::Removed { by }),
        }
    }

    fn check_owner(owner: &str) -> Result<()> {
        if owner.is_empty() || owner.len() > 255 {
            return Err(IpamError::InvalidOwner {
                owner: owner.to_string(),
            });
        }
        Ok(())
    }

    /// Allocates an address for `owner` in `subnet` (the default subnet if `None`). Idempotent
    /// per owner id and subnet: an owner that already holds (or waits for) an address there
    /// gets the same one (or the same request). A request that cannot complete now is pending
    /// until the ring is ready or space is donated, and fails at `deadline` if one is given.
    pub fn allocate(
        &mut self,
        owner: &str,
        subnet: Option<Cidr>,
        deadline: Option<Duration>,
        now: Duration,
    ) -> Result<Allocation> {
        self.now = now;
        self.check_active()?;
        Self::check_owner(owner)?;
        let subnet = subnet.unwrap_or(self.cfg.default_subnet);
        if !self.cfg.range.contains_cidr(&subnet) {
            return Err(IpamError::SubnetOutsideRange {
                subnet,
                range: self.cfg.range,
            });
        }
        self.request(owner, Want::Any(subnet), deadline)
    }

    /// Claims `addr` for `owner` (restarts, static addresses). Completes at once when this peer
    /// owns the address; asks its owner for it otherwise, and fails if that peer has it in use.
    pub fn claim(
        &mut self,
        owner: &str,
        addr: Ipv4Addr,
        deadline: Option<Duration>,
        now: Duration,
    ) -> Result<Allocation> {
        self.now = now;
        self.check_active()?;
        Self::check_owner(owner)?;
        if !self.cfg.range.contains(addr) {
            return Err(IpamError::AddressOutsideRange {
                addr,
                range: self.cfg.range,
            });
        }
        self.request(owner, Want::Exact(from_ip(addr)), deadline)
    }

    fn request(
        &mut self,
        owner: &str,
        want: Want,
        deadline: Option<Duration>,
    ) -> Result<Allocation> {
        if let Some(p) = self
            .pending
            .iter()
            .find(|p| p.owner == owner && p.want == want)
        {
            return Ok(Allocation::Pending(p.id));
        }
        if self.ring.is_ready() {
            if let Some(addr) = self.try_satisfy(owner, want)? {
                self.refresh_free();
                return Ok(Allocation::Ready(to_ip(addr)));
            }
        } else {
            self.ensure_ring();
        }
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.pending.push(Pending {
            id,
            owner: owner.to_string(),
            want,
            deadline,
        });
        self.settle();
        Ok(Allocation::Pending(id))
    }

    /// Frees `addr`; returns the owner id that held it.
    pub fn free(&mut self, addr: Ipv4Addr, now: Duration) -> Result<String> {
        self.now = now;
        let owner = self
            .space
            .remove(from_ip(addr))
            .ok_or(IpamError::NotAllocated { addr })?;
        self.settle();
        Ok(owner)
    }

    /// Frees every address of `owner` and cancels its pending requests (a container is gone).
    /// Returns the freed addresses.
    pub fn free_owner(&mut self, owner: &str, now: Duration) -> Vec<Ipv4Addr> {
        self.now = now;
        let freed = self.space.remove_owner(owner);
        let (cancelled, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.owner == owner);
        self.pending = kept;
        for p in cancelled {
            self.fail(
                p,
                IpamError::Cancelled {
                    owner: owner.to_string(),
                },
            );
        }
        self.settle();
        freed.into_iter().map(to_ip).collect()
    }

    /// The addresses `owner` holds on this peer.
    pub fn lookup(&self, owner: &str) -> Vec<Ipv4Addr> {
        self.space.addrs_of(owner).map(to_ip).collect()
    }

    /// Every allocation on this peer, by address.
    pub fn allocations(&self) -> Vec<(Ipv4Addr, String)> {
        self.space
            .iter()
            .map(|(a, o)| (to_ip(a), o.to_string()))
            .collect()
    }

    /// The owner of `addr` in this peer's view of the ring.
    pub fn owner_of(&self, addr: Ipv4Addr) -> Option<PeerId> {
        self.ring.owner_of(from_ip(addr))
    }

    /// The ranges `[first, last]` that `peer` owns in this peer's view of the ring.
    pub fn ranges_of(&self, peer: PeerId) -> Vec<(Ipv4Addr, Ipv4Addr)> {
        self.ring
            .owned_ranges(peer)
            .into_iter()
            .map(|(s, e)| (to_ip(s), to_ip(e - 1)))
            .collect()
    }

    /// Cancels a pending request; it fails with [`IpamError::Cancelled`].
    pub fn cancel(&mut self, request: RequestId) -> Result<()> {
        let pos = self
            .pending
            .iter()
            .position(|p| p.id == request)
            .ok_or(IpamError::UnknownRequest(request.0))?;
        let p = self.pending.remove(pos);
        let owner = p.owner.clone();
        self.fail(p, IpamError::Cancelled { owner });
        Ok(())
    }

    /// How many requests are pending.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Starts consensus if the ring is not ready (`weft prime`); returns whether it is ready.
    pub fn prime(&mut self, now: Duration) -> bool {
        self.now = now;
        self.ensure_ring();
        self.settle();
        self.ring.is_ready()
    }

    fn ensure_ring(&mut self) {
        if self.ring.is_ready() || self.lifecycle != Lifecycle::Active {
            return;
        }
        if matches!(self.cfg.init, InitMode::Consensus(_)) && self.proposed_at.is_none() {
            self.propose();
        }
    }

    fn propose(&mut self) {
        let quorum = self.quorum();
        self.paxos.propose(quorum);
        self.proposed_at = Some(self.now);
        self.broadcast_due = true;
    }

    fn quorum(&self) -> usize {
        let n = match self.cfg.init {
            InitMode::Consensus(Some(n)) => n,
            _ => {
                let mut peers = self.seen.clone();
                peers.extend(self.paxos.knows().keys().copied());
                peers.insert(self.me());
                peers.len()
            }
        };
        n / 2 + 1
    }

    /// The whole gossip state (ring and consensus) of this peer.
    pub fn full_state(&self) -> Vec<u8> {
        wire::encode_gossip(&self.gossip())
    }

    fn gossip(&self) -> Gossip {
        Gossip {
            ring: self.ring.clone(),
            claims: self.paxos.knows().clone(),
        }
    }

    /// Merges gossip from `src`. Returns this peer's state to pass on when it changed. Bad
    /// bytes, or a ring of another range or other seeds, are refused and change nothing.
    pub fn merge(&mut self, src: PeerId, bytes: &[u8], now: Duration) -> Result<Option<Vec<u8>>> {
        self.now = now;
        let gossip = wire::decode_gossip(bytes)?;
        let changed = self.apply_gossip(src, &gossip)?;
        Ok(changed.then(|| self.full_state()))
    }

    fn apply_gossip(&mut self, src: PeerId, gossip: &Gossip) -> Result<bool> {
        let me = self.me();
        let mut ring = self.ring.clone();
        let ring_changed = ring.merge(&gossip.ring)?;
        let lost = ring_changed
            && self
                .ring
                .segments_of(me)
                .any(|s| ring.owner_of(s.start) != Some(me));
        self.ring = ring;
        self.seen.insert(src);
        let mut changed = ring_changed;
        if self.paxos.merge(&gossip.claims) {
            changed = true;
            let joins = matches!(self.cfg.init, InitMode::Consensus(_))
                && !self.ring.is_ready()
                && self.lifecycle == Lifecycle::Active;
            if joins && self.paxos.think(self.quorum()) {
                self.broadcast_due = true;
            }
        }
        if lost && let Some(t) = self.ring.removed().get(&me) {
            self.lifecycle = Lifecycle::Removed(t.by);
        }
        if ring_changed {
            self.detect_conflicts();
        }
        self.settle();
        Ok(changed)
    }

    /// Handles a unicast from `src`: a donation request (answered, with space if there is
    /// some) or a reply to ours.
    pub fn on_unicast(&mut self, src: PeerId, bytes: &[u8], now: Duration) -> Result<()> {
        self.now = now;
        match wire::decode_unicast(bytes)? {
            Unicast::Request { start, end } => {
                self.seen.insert(src);
                self.donate(src, start, end);
                Ok(())
            }
            Unicast::Reply {
                start,
                end,
                granted,
                gossip,
            } => {
                let key = (start, end);
                if self.asked.get(&key).is_some_and(|a| a.peer == src) {
                    self.asked.remove(&key);
                }
                if !granted {
                    self.refused.insert((key, src), now + ASK_BACKOFF);
                }
                // Pass the donor's news on: if the donor dies now, the mesh still learns it.
                if self.apply_gossip(src, &gossip)? {
                    self.broadcast_due = true;
                }
                Ok(())
            }
        }
    }

    fn donate(&mut self, to: PeerId, start: u64, end: u64) {
        let me = self.me();
        let mut granted = false;
        let range = self.cfg.range;
        if self.lifecycle == Lifecycle::Active
            && self.ring.is_ready()
            && to != me
            && range.start() <= start
            && end <= range.end()
        {
            let best = self
                .ring
                .owned_ranges(me)
                .into_iter()
                .filter_map(|(s, e)| {
                    let (s, e) = (s.max(start), e.min(end));
                    (s < e)
                        .then(|| self.space.largest_free_run_in(s, e))
                        .flatten()
                })
                .max_by_key(|(s, e)| (e - s, Reverse(*s)));
            if let Some((s, e)) = best {
                let give_from = if e - s >= 2 { s + (e - s) / 2 } else { s };
                granted = self.ring.grant(me, give_from, e, to);
            }
        }
        if granted {
            self.refresh_free();
            self.broadcast_due = true;
        }
        let reply = Unicast::Reply {
            start,
            end,
            granted,
            gossip: self.gossip(),
        };
        self.unicasts.push_back((to, wire::encode_unicast(&reply)));
    }

    /// The topology says `peer` cannot be reached: stop asking it for space.
    pub fn peer_unreachable(&mut self, peer: PeerId, now: Duration) {
        self.now = now;
        self.unreachable.insert(peer);
        self.asked.retain(|_, a| a.peer != peer);
        self.settle();
    }

    /// The topology says `peer` is reachable (again).
    pub fn peer_reachable(&mut self, peer: PeerId, now: Duration) {
        self.now = now;
        self.unreachable.remove(&peer);
        if peer != self.me() {
            self.seen.insert(peer);
        }
        self.settle();
    }

    /// `rmpeer`: takes over all space of `peer`, which must be gone for good. Refused when its
    /// space was already taken over (by this or another peer) once that news arrived here.
    /// Returns the number of addresses taken over.
    pub fn rmpeer(&mut self, peer: PeerId, now: Duration) -> Result<u64> {
        self.now = now;
        self.check_active()?;
        if !self.ring.is_ready() {
            return Err(IpamError::NotReady);
        }
        let taken = self.ring.take_over(self.me(), peer)?;
        self.refresh_free();
        self.broadcast_due = true;
        self.settle();
        Ok(taken)
    }

    /// `reset`: hands all of this peer's space to `heir` (or the reachable peer owning most
    /// space), drops its allocations and leaves the ring. Returns the heir (none when this
    /// peer owned nothing). The caller broadcasts, then deletes the persisted state.
    pub fn reset(&mut self, heir: Option<PeerId>, now: Duration) -> Result<Option<PeerId>> {
        self.now = now;
        self.check_active()?;
        let me = self.me();
        let heir = if self.ring.owned_ranges(me).is_empty() {
            None
        } else {
            let candidates = self.heir_candidates();
            let chosen = match heir {
                Some(h) if candidates.iter().any(|(p, _)| *p == h) => h,
                Some(h) => return Err(IpamError::BadHeir(h)),
                None => candidates
                    .iter()
                    .max_by_key(|(p, size)| (*size, Reverse(*p)))
                    .map(|(p, _)| *p)
                    .ok_or(IpamError::NoHeir)?,
            };
            self.ring.transfer_all(me, chosen);
            self.broadcast_due = true;
            Some(chosen)
        };
        self.space.clear();
        self.lifecycle = Lifecycle::Left;
        self.settle();
        Ok(heir)
    }

    fn heir_candidates(&self) -> Vec<(PeerId, u64)> {
        let mut peers: BTreeSet<PeerId> = self.seen.clone();
        peers.extend(self.ring.segments().map(|s| s.entry.owner));
        peers
            .into_iter()
            .filter(|p| *p != self.me() && !self.unreachable.contains(p))
            .filter(|p| {
                let owns = self.ring.segments_of(*p).next().is_some();
                owns || !self.ring.removed().contains_key(p)
            })
            .map(|p| (p, self.ring.segments_of(p).map(|s| s.len()).sum()))
            .collect()
    }

    /// Advances time: fails requests past their deadline, gives up on unanswered donation
    /// requests, proposes again when consensus stalls.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.now = now;
        let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.deadline.is_some_and(|d| d <= now));
        self.pending = kept;
        for p in expired {
            let error = IpamError::Timeout {
                owner: p.owner.clone(),
                reason: self.stall_reason(p.want),
            };
            self.fail(p, error);
        }
        let stale: Vec<((u64, u64), Asked)> = self
            .asked
            .iter()
            .filter(|(_, a)| a.at + ASK_TIMEOUT <= now)
            .map(|(k, a)| (*k, *a))
            .collect();
        for (key, asked) in stale {
            self.asked.remove(&key);
            self.refused.insert((key, asked.peer), now + ASK_BACKOFF);
        }
        self.refused.retain(|_, until| *until > now);
        if let Some(at) = self.propose_due()
            && at <= now
        {
            self.propose();
        }
        self.settle();
    }

    fn propose_due(&self) -> Option<Duration> {
        let jitter = Duration::from_millis(self.me().0 % 1000);
        match self.proposed_at {
            Some(at) if !self.ring.is_ready() && self.lifecycle == Lifecycle::Active => {
                Some(at + PROPOSE_RETRY + jitter)
            }
            _ => None,
        }
    }

    /// When [`Allocator::handle_timeout`] should next be called, if at all.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let deadlines = self.pending.iter().filter_map(|p| p.deadline);
        let asks = self.asked.values().map(|a| a.at + ASK_TIMEOUT);
        let backoffs = self
            .refused
            .values()
            .copied()
            .filter(|_| !self.pending.is_empty());
        deadlines
            .chain(asks)
            .chain(backoffs)
            .chain(self.propose_due())
            .min()
    }

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some((to, bytes)) = self.unicasts.pop_front() {
            return Some(Transmit::Unicast { to, bytes });
        }
        if self.broadcast_due {
            self.broadcast_due = false;
            return Some(Transmit::Broadcast(self.full_state()));
        }
        None
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// This peer's state for disk: ring, consensus and its own allocations.
    pub fn persist(&self) -> Vec<u8> {
        wire::encode_persisted(&Persisted {
            peer: self.me(),
            gossip: self.gossip(),
            allocations: self.space.iter().map(|(a, o)| (a, o.to_string())).collect(),
        })
    }

    /// What `weft status ipam` shows.
    pub fn status(&self) -> Status {
        let mut shares: BTreeMap<PeerId, Share> = BTreeMap::new();
        for s in self.ring.segments() {
            let peer = s.entry.owner;
            let share = shares.entry(peer).or_insert_with(|| Share {
                peer,
                size: 0,
                free: 0,
                ranges: Vec::new(),
                reachable: peer == self.me() || !self.unreachable.contains(&peer),
            });
            share.size += s.len();
            share.free += s.entry.free.min(s.len());
        }
        for share in shares.values_mut() {
            share.ranges = self.ranges_of(share.peer);
        }
        Status {
            peer: self.me(),
            range: self.cfg.range,
            default_subnet: self.cfg.default_subnet,
            init: self.cfg.init.clone(),
            ready: self.ring.is_ready(),
            state: match self.lifecycle {
                Lifecycle::Active => "active".into(),
                Lifecycle::Left => "left (reset)".into(),
                Lifecycle::Removed(by) => format!("removed by {by}"),
            },
            allocated: self.space.len(),
            pending: self.pending.len(),
            shares: shares.into_values().collect(),
            removed: self
                .ring
                .removed()
                .iter()
                .map(|(p, t)| (*p, t.by))
                .collect(),
        }
    }

    fn fail(&mut self, p: Pending, error: IpamError) {
        self.events.push_back(Event::Failed {
            request: p.id,
            owner: p.owner,
            error,
        });
    }

    fn stall_reason(&self, want: Want) -> String {
        if !self.ring.is_ready() {
            return match self.cfg.init {
                InitMode::Observer => {
                    "the ring is not ready: an observer waits for other peers to create it".into()
                }
                _ => format!(
                    "the ring is not ready: consensus needs {} peers and {} took part",
                    self.quorum(),
                    self.paxos.knows().len()
                ),
            };
        }
        match want {
            Want::Any(subnet) => {
                format!("no free address in {subnet} on this peer and no peer donated space")
            }
            Want::Exact(addr) => match self.ring.owner_of(addr) {
                Some(p) => format!(
                    "address {} belongs to peer {p}, which did not answer",
                    to_ip(addr)
                ),
                None => format!("address {} has no owner", to_ip(addr)),
            },
        }
    }

    /// Recomputes the free counts this peer reports for its own segments.
    fn refresh_free(&mut self) {
        let me = self.me();
        let segments: Vec<(u64, u64)> = self
            .ring
            .segments_of(me)
            .map(|s| (s.start, s.end))
            .collect();
        for (start, end) in segments {
            let free = (end - start) - self.space.count_in(start, end);
            self.ring.set_free(me, start, free);
        }
    }

    /// Drops (and reports) allocations on addresses this peer no longer owns.
    fn detect_conflicts(&mut self) {
        let me = self.me();
        let stray: Vec<u64> = self
            .space
            .iter()
            .map(|(a, _)| a)
            .filter(|a| self.ring.is_ready() && self.ring.owner_of(*a) != Some(me))
            .collect();
        for addr in stray {
            if let Some(owner) = self.space.remove(addr) {
                self.events.push_back(Event::Conflict {
                    addr: to_ip(addr),
                    owner,
                    owned_by: self.ring.owner_of(addr),
                });
            }
        }
    }

    /// After any change: seed from consensus, fail everything if this peer is gone, refresh
    /// free counts, complete what can be completed and ask for the space still missing.
    fn settle(&mut self) {
        if let Err(error) = self.check_active() {
            for p in std::mem::take(&mut self.pending) {
                self.fail(p, error.clone());
            }
            return;
        }
        if !self.ring.is_ready()
            && self.paxos.is_elector()
            && let Some(value) = self.paxos.consensus(self.quorum())
        {
            self.ring.seed(&value);
            self.broadcast_due = true;
        }
        if !self.ring.is_ready() {
            return;
        }
        let mut waiting = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            match self.try_satisfy(&p.owner, p.want) {
                Ok(Some(addr)) => self.events.push_back(Event::Allocated {
                    request: p.id,
                    owner: p.owner,
                    addr: to_ip(addr),
                }),
                Ok(None) => waiting.push(p),
                Err(error) => self.fail(p, error),
            }
        }
        self.pending = waiting;
        self.refresh_free();
        let wants: BTreeSet<(u64, u64)> = self.pending.iter().map(|p| p.want.key()).collect();
        for key in wants {
            self.ask_for(key);
        }
    }

    /// Completes `want` for `owner` from this peer's own space, if it can.
    fn try_satisfy(&mut self, owner: &str, want: Want) -> Result<Option<u64>> {
        let me = self.me();
        match want {
            Want::Any(subnet) => {
                if let Some(addr) = self.space.addrs_of(owner).find(|a| subnet.contains_raw(*a)) {
                    return Ok(Some(addr));
                }
                let (lo, hi) = subnet.usable();
                let found = self.ring.owned_ranges(me).into_iter().find_map(|(s, e)| {
                    let (s, e) = (s.max(lo), e.min(hi));
                    (s < e).then(|| self.space.first_free_in(s, e)).flatten()
                });
                if let Some(addr) = found {
                    self.space.insert(addr, owner);
                }
                Ok(found)
            }
            Want::Exact(addr) => {
                if let Some(holder) = self.space.holder(addr) {
                    if holder == owner {
                        return Ok(Some(addr));
                    }
                    return Err(IpamError::AddressInUse {
                        addr: to_ip(addr),
                        holder: holder.to_string(),
                    });
                }
                match self.ring.owner_of(addr) {
                    Some(p) if p == me => {
                        self.space.insert(addr, owner);
                        Ok(Some(addr))
                    }
                    Some(p)
                        if self.refused.contains_key(&(want.key(), p))
                            && !self.unreachable.contains(&p) =>
                    {
                        Err(IpamError::OwnedByOtherPeer {
                            addr: to_ip(addr),
                            peer: p,
                        })
                    }
                    _ => Ok(None),
                }
            }
        }
    }

    /// Sends a donation request for `key` unless one is outstanding.
    fn ask_for(&mut self, key: (u64, u64)) {
        if self.asked.contains_key(&key) {
            return;
        }
        if let Some(peer) = self.best_donor(key) {
            let msg = Unicast::Request {
                start: key.0,
                end: key.1,
            };
            self.unicasts.push_back((peer, wire::encode_unicast(&msg)));
            self.asked.insert(key, Asked { peer, at: self.now });
        }
    }

    /// The peer to ask for `key`: for a single address its owner; otherwise the reachable
    /// peer reporting the most free space in `key`. Peers that recently refused are skipped.
    fn best_donor(&self, key: (u64, u64)) -> Option<PeerId> {
        let me = self.me();
        if key.1 - key.0 == 1 {
            return self.ring.owner_of(key.0).filter(|p| {
                *p != me && !self.unreachable.contains(p) && !self.refused.contains_key(&(key, *p))
            });
        }
        let mut free: BTreeMap<PeerId, u64> = BTreeMap::new();
        for s in self.ring.segments() {
            let p = s.entry.owner;
            if p == me || self.unreachable.contains(&p) || self.refused.contains_key(&(key, p)) {
                continue;
            }
            let (lo, hi) = (s.start.max(key.0), s.end.min(key.1));
            if lo < hi {
                *free.entry(p).or_insert(0) += s.entry.free.min(hi - lo);
            }
        }
        free.into_iter()
            .filter(|(_, f)| *f > 0)
            .max_by_key(|(p, f)| (*f, Reverse(*p)))
            .map(|(p, _)| p)
    }
}
