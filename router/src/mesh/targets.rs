//! The addresses we dial: given by the user, or learned from other peers'
//! gossiped connections. Failed dials are retried with exponential backoff and
//! jitter; a target whose address turned out to be ourselves is not retried.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::peer::PeerName;

/// Where a target is in its dial cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetState {
    /// A dial is in flight.
    Connecting,
    /// A connection to the peer behind this address is up.
    Connected,
    /// Waiting for `next_attempt`.
    Retry,
    /// Will not be dialled again (the address is ourselves).
    Failed,
}

impl TargetState {
    fn as_str(self) -> &'static str {
        match self {
            TargetState::Connecting => "connecting",
            TargetState::Connected => "connected",
            TargetState::Retry => "retry",
            TargetState::Failed => "failed",
        }
    }
}

/// One dial target as shown by `weft status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// `host:port`.
    pub address: String,
    /// Given by the user (`weft launch`/`weft connect`), not only discovered.
    pub user: bool,
    /// `connected`, `connecting`, `retry` or `failed`.
    pub state: String,
    /// The last dial or connection error.
    pub last_error: Option<String>,
    /// When the next dial is due (core clock, ms).
    pub next_attempt_ms: Option<u64>,
    /// Dials since the last successful connection.
    pub attempts: u32,
}

#[derive(Debug, Clone)]
struct Target {
    user: bool,
    discovered: bool,
    state: TargetState,
    last_error: Option<String>,
    next_attempt: Option<u64>,
    attempts: u32,
    backoff: u64,
    peer: Option<PeerName>,
}

/// All dial targets of one peer.
#[derive(Debug, Clone)]
pub(super) struct Targets {
    map: BTreeMap<String, Target>,
    initial_backoff: u64,
    max_backoff: u64,
}

impl Targets {
    pub(super) fn new(initial_backoff: u64, max_backoff: u64) -> Targets {
        Targets {
            map: BTreeMap::new(),
            initial_backoff,
            max_backoff: max_backoff.max(initial_backoff),
        }
    }

    fn fresh(&self, now: u64) -> Target {
        Target {
            user: false,
            discovered: false,
            state: TargetState::Retry,
            last_error: None,
            next_attempt: Some(now),
            attempts: 0,
            backoff: self.initial_backoff,
            peer: None,
        }
    }

    /// Adds user targets, due at once; with `replace`, user targets not in
    /// `addrs` stop being user targets (and go unless discovered).
    pub(super) fn add_user(&mut self, addrs: &[String], replace: bool, now: u64) {
        if replace {
            let keep: BTreeSet<&String> = addrs.iter().collect();
            for (addr, t) in &mut self.map {
                if !keep.contains(addr) {
                    t.user = false;
                }
            }
        }
        for addr in addrs {
            let fresh = self.fresh(now);
            let t = self.map.entry(addr.clone()).or_insert(fresh);
            t.user = true;
            if t.state == TargetState::Failed {
                // The user asked again: try again.
                t.state = TargetState::Retry;
                t.next_attempt = Some(now);
            }
        }
        self.prune();
    }

    /// Removes user targets (those also discovered stay, as discovered).
    pub(super) fn forget(&mut self, addrs: &[String]) {
        for addr in addrs {
            if let Some(t) = self.map.get_mut(addr) {
                t.user = false;
            }
        }
        self.prune();
    }

    /// Sets the discovered addresses: new ones are due at once, vanished ones
    /// go unless given by the user or busy.
    pub(super) fn set_discovered(&mut self, addrs: &BTreeSet<String>, now: u64) {
        for (addr, t) in &mut self.map {
            t.discovered = addrs.contains(addr);
        }
        for addr in addrs {
            if !self.map.contains_key(addr) {
                let mut t = self.fresh(now);
                t.discovered = true;
                self.map.insert(addr.clone(), t);
            }
        }
        self.prune();
    }

    fn prune(&mut self) {
        self.map.retain(|_, t| {
            t.user
                || t.discovered
                || matches!(t.state, TargetState::Connecting | TargetState::Connected)
        });
    }

    /// Addresses due for a dial at `now`; they become `connecting`.
    pub(super) fn take_due(&mut self, now: u64) -> Vec<String> {
        let mut due = Vec::new();
        for (addr, t) in &mut self.map {
            if t.state == TargetState::Retry && t.next_attempt.is_some_and(|at| at <= now) {
                t.state = TargetState::Connecting;
                t.next_attempt = None;
                t.attempts = t.attempts.saturating_add(1);
                due.push(addr.clone());
            }
        }
        due
    }

    /// The earliest pending retry.
    pub(super) fn next_due(&self) -> Option<u64> {
        self.map
            .values()
            .filter(|t| t.state == TargetState::Retry)
            .filter_map(|t| t.next_attempt)
            .min()
    }

    fn schedule_retry(&mut self, addr: &str, reason: String, now: u64, rng: &mut impl Rng) {
        let max = self.max_backoff;
        if let Some(t) = self.map.get_mut(addr) {
            if t.state == TargetState::Failed {
                return;
            }
            let jitter = rng.gen_range(0..=t.backoff / 2);
            t.state = TargetState::Retry;
            t.next_attempt = Some(now.saturating_add(t.backoff).saturating_add(jitter));
            t.backoff = t.backoff.saturating_mul(2).min(max);
            t.last_error = Some(reason);
            t.peer = None;
        }
    }

    /// A dial (or its handshake) failed: retry after the backoff, which doubles.
    pub(super) fn dial_failed(&mut self, addr: &str, reason: String, now: u64, rng: &mut impl Rng) {
        self.schedule_retry(addr, reason, now, rng);
    }

    /// A connection to `peer` is up through `addr` (or `addr` leads to a peer
    /// we were already connected to).
    pub(super) fn connected(&mut self, addr: &str, peer: PeerName) {
        let initial = self.initial_backoff;
        if let Some(t) = self.map.get_mut(addr) {
            t.state = TargetState::Connected;
            t.next_attempt = None;
            t.attempts = 0;
            t.backoff = initial;
            t.last_error = None;
            t.peer = Some(peer);
        }
    }

    /// `addr` leads to ourselves: never dial it again (unless re-added).
    pub(super) fn is_self(&mut self, addr: &str) {
        if let Some(t) = self.map.get_mut(addr) {
            t.state = TargetState::Failed;
            t.next_attempt = None;
            t.last_error = Some("this address is our own".to_owned());
        }
    }

    /// The connection to `peer` went down: its targets are retried.
    pub(super) fn peer_lost(&mut self, peer: PeerName, reason: &str, now: u64, rng: &mut impl Rng) {
        let lost: Vec<String> = self
            .map
            .iter()
            .filter(|(_, t)| t.state == TargetState::Connected && t.peer == Some(peer))
            .map(|(a, _)| a.clone())
            .collect();
        for addr in lost {
            self.schedule_retry(&addr, reason.to_owned(), now, rng);
        }
        self.prune();
    }

    /// Status rows, by address.
    pub(super) fn status(&self) -> Vec<TargetStatus> {
        self.map
            .iter()
            .map(|(addr, t)| TargetStatus {
                address: addr.clone(),
                user: t.user,
                state: t.state.as_str().to_owned(),
                last_error: t.last_error.clone(),
                next_attempt_ms: t.next_attempt,
                attempts: t.attempts,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn addrs(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut t = Targets::new(1_000, 4_000);
        t.add_user(&addrs(&["h:1"]), false, 0);
        let mut now = 0;
        let mut delays = Vec::new();
        for _ in 0..5 {
            assert_eq!(t.take_due(now), addrs(&["h:1"]));
            t.dial_failed("h:1", "refused".into(), now, &mut rng);
            let at = t.next_due().unwrap();
            delays.push(at - now);
            now = at;
        }
        let bases = [1_000, 2_000, 4_000, 4_000, 4_000];
        for (d, base) in delays.iter().zip(bases) {
            assert!((base..=base + base / 2).contains(d), "{delays:?}");
        }
        let s = &t.status()[0];
        assert_eq!(s.state, "retry");
        assert_eq!(s.attempts, 5);
        assert_eq!(s.last_error.as_deref(), Some("refused"));
    }

    #[test]
    fn success_resets_and_loss_retries() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut t = Targets::new(1_000, 30_000);
        t.add_user(&addrs(&["h:1"]), false, 0);
        t.take_due(0);
        t.dial_failed("h:1", "x".into(), 0, &mut rng);
        t.take_due(10_000);
        t.connected("h:1", PeerName(9));
        assert_eq!(t.status()[0].state, "connected");
        assert_eq!(t.next_due(), None);
        t.peer_lost(PeerName(9), "reset", 20_000, &mut rng);
        let at = t.next_due().unwrap();
        assert!((21_000..=21_500).contains(&at), "{at}");
    }

    #[test]
    fn forget_and_replace_keep_discovered_targets() {
        let mut t = Targets::new(1_000, 30_000);
        t.add_user(&addrs(&["a:1", "b:1"]), false, 0);
        t.set_discovered(&BTreeSet::from(["b:1".to_owned(), "c:1".to_owned()]), 0);
        t.add_user(&addrs(&["d:1"]), true, 0);
        let all: Vec<String> = t.status().into_iter().map(|s| s.address).collect();
        assert_eq!(all, addrs(&["b:1", "c:1", "d:1"]));
        assert!(!t.status()[0].user);
        t.forget(&addrs(&["d:1"]));
        t.set_discovered(&BTreeSet::new(), 0);
        assert!(t.status().is_empty());
    }

    #[test]
    fn own_address_is_not_retried() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut t = Targets::new(1_000, 30_000);
        t.add_user(&addrs(&["me:1"]), false, 0);
        t.take_due(0);
        t.is_self("me:1");
        t.dial_failed("me:1", "closed".into(), 0, &mut rng);
        assert_eq!(t.next_due(), None);
        assert_eq!(t.status()[0].state, "failed");
    }
}
