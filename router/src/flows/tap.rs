//! `weft tap`: live flow events of every router.
//!
//! Each router keeps the recent events it hears of in a [`TapLog`] (a bounded ring with
//! sequence numbers, read by long polls of the control API). While a tap client polls, its
//! router asks every peer (unicast on mesh channel `flows`) to send it their events for the
//! next [`SUBSCRIPTION_TTL_MS`]; it renews the request while the client keeps polling. Each
//! router only reports the connections it counts (see `directory`), so no event is repeated.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::error::FlowError;
use super::table::{FlowEvent, FlowEventKind};
use crate::mesh::{GossipError, Gossiper, PeerName};

/// Name of the mesh channel of tap subscriptions and events.
pub const FLOWS_CHANNEL: &str = "flows";

/// How long a peer keeps sending events after a subscription.
pub(crate) const SUBSCRIPTION_TTL_MS: i64 = 10_000;

/// Events kept for polls.
const LOG_CAPACITY: usize = 10_000;

/// One flow event as `weft tap` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapEvent {
    /// Nickname of the router that saw it.
    pub router: String,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// `open`, `close` or `drop`.
    pub kind: String,
    /// `tcp`, `udp`, `icmp`, `sctp` or a protocol number.
    pub protocol: String,
    /// Source address.
    pub src: String,
    /// Source port (0 without ports).
    pub sport: u16,
    /// Source workload (or `unknown`/`world`).
    pub src_workload: String,
    /// Its namespace.
    pub src_namespace: String,
    /// Destination address.
    pub dst: String,
    /// Destination port (0 without ports).
    pub dport: u16,
    /// Destination workload (or `unknown`/`world`).
    pub dst_workload: String,
    /// Its namespace.
    pub dst_namespace: String,
    /// Bytes from source to destination so far (close events).
    pub bytes_forward: u64,
    /// Bytes from destination to source so far (close events).
    pub bytes_reply: u64,
}

impl TapEvent {
    /// The tap view of a table event seen by router `router`.
    pub(crate) fn from_flow(router: &str, e: &FlowEvent) -> TapEvent {
        TapEvent {
            router: router.to_string(),
            time_ms: e.time_ms,
            kind: match e.kind {
                FlowEventKind::Open => "open",
                FlowEventKind::Close => "close",
            }
            .to_string(),
            protocol: e.key.protocol.clone(),
            src: e.tuple.src.to_string(),
            sport: e.tuple.sport,
            src_workload: e.key.src.workload.clone(),
            src_namespace: e.key.src.namespace.clone(),
            dst: e.tuple.dst.to_string(),
            dport: e.tuple.dport,
            dst_workload: e.key.dst.workload.clone(),
            dst_namespace: e.key.dst.namespace.clone(),
            bytes_forward: e.forward.bytes,
            bytes_reply: e.reply.bytes,
        }
    }

    /// One line for the terminal.
    pub fn line(&self) -> String {
        let port = |p: u16| {
            if p == 0 {
                String::new()
            } else {
                format!(":{p}")
            }
        };
        let mut s = format!(
            "{:<5} {:<4} {}/{} {}{} -> {}/{} {}{}",
            self.kind,
            self.protocol,
            self.src_namespace,
            self.src_workload,
            self.src,
            port(self.sport),
            self.dst_namespace,
            self.dst_workload,
            self.dst,
            port(self.dport),
        );
        if self.kind == "close" {
            s.push_str(&format!(
                " bytes={}/{}",
                self.bytes_forward, self.bytes_reply
            ));
        }
        s.push_str(&format!(" router={}", self.router));
        s
    }
}

/// Which events a tap client wants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapFilter {
    /// Flows from or to this namespace.
    pub namespace: Option<String>,
    /// Flows from or to this workload (`NAME` or `NAMESPACE/NAME`).
    pub workload: Option<String>,
    /// Flows to this workload (`NAME` or `NAMESPACE/NAME`).
    pub to: Option<String>,
}

fn names(filter: &str, workload: &str, namespace: &str) -> bool {
    match filter.split_once('/') {
        Some((ns, name)) => ns == namespace && name == workload,
        None => filter == workload,
    }
}

impl TapFilter {
    /// Whether `e` passes every condition given.
    pub fn matches(&self, e: &TapEvent) -> bool {
        let ns_ok = self
            .namespace
            .as_ref()
            .is_none_or(|ns| *ns == e.src_namespace || *ns == e.dst_namespace);
        let w_ok = self.workload.as_ref().is_none_or(|w| {
            names(w, &e.src_workload, &e.src_namespace)
                || names(w, &e.dst_workload, &e.dst_namespace)
        });
        let to_ok = self
            .to
            .as_ref()
            .is_none_or(|w| names(w, &e.dst_workload, &e.dst_namespace));
        ns_ok && w_ok && to_ok
    }
}

/// What routers send each other on [`FLOWS_CHANNEL`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum TapMessage {
    /// "Send me your events for the next [`SUBSCRIPTION_TTL_MS`]."
    Subscribe,
    /// Events of the sender.
    Events(Vec<TapEvent>),
}

impl TapMessage {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(b: &[u8]) -> Result<TapMessage, FlowError> {
        serde_json::from_slice(b).map_err(|e| FlowError::Tap(e.to_string()))
    }
}

#[derive(Debug, Default)]
struct LogState {
    next_seq: u64,
    events: VecDeque<(u64, TapEvent)>,
    /// Peers subscribed to our events, with the expiry of their subscription.
    subscribers: BTreeMap<PeerName, i64>,
    /// Until when a local client wants events.
    wanted_until: i64,
}

/// Recent events of every router and the subscriptions to ours.
#[derive(Debug, Clone, Default)]
pub struct TapLog {
    state: Arc<Mutex<LogState>>,
    added: Arc<Notify>,
}

impl TapLog {
    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends events (local or from a peer) and wakes pollers.
    pub(crate) fn push(&self, events: impl IntoIterator<Item = TapEvent>) {
        let mut st = self.lock();
        for e in events {
            let seq = st.next_seq;
            st.next_seq += 1;
            st.events.push_back((seq, e));
            if st.events.len() > LOG_CAPACITY {
                st.events.pop_front();
            }
        }
        drop(st);
        self.added.notify_waiters();
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }

    /// Events numbered `after` and later that pass `filter`, and the number to ask from next.
    pub fn since(&self, after: u64, filter: &TapFilter) -> (Vec<TapEvent>, u64) {
        let st = self.lock();
        let events = st
            .events
            .iter()
            .filter(|(seq, e)| *seq >= after && filter.matches(e))
            .map(|(_, e)| e.clone())
            .collect();
        (events, st.next_seq)
    }

    /// Resolves when an event is added after this call (create it before checking the log).
    pub fn added(&self) -> tokio::sync::futures::Notified<'_> {
        self.added.notified()
    }

    /// A local client wants events until `until_ms`.
    pub(crate) fn want(&self, until_ms: i64) {
        let mut st = self.lock();
        st.wanted_until = st.wanted_until.max(until_ms);
    }

    /// Whether a local client wants events at `now_ms`.
    pub(crate) fn wanted(&self, now_ms: i64) -> bool {
        self.lock().wanted_until > now_ms
    }

    /// Peers subscribed at `now_ms` (expired ones are forgotten).
    pub(crate) fn subscribers(&self, now_ms: i64) -> Vec<PeerName> {
        let mut st = self.lock();
        st.subscribers.retain(|_, until| *until > now_ms);
        st.subscribers.keys().copied().collect()
    }

    fn subscribe(&self, peer: PeerName, until_ms: i64) {
        self.lock().subscribers.insert(peer, until_ms);
    }
}

/// The [`Gossiper`] of [`FLOWS_CHANNEL`]: no shared state, only unicasts.
pub(crate) struct TapGossip {
    pub(crate) log: TapLog,
    pub(crate) now_ms: fn() -> i64,
}

impl Gossiper for TapGossip {
    fn full_state(&self) -> Vec<u8> {
        Vec::new()
    }

    fn merge(&mut self, _src: PeerName, _update: &[u8]) -> Result<Option<Vec<u8>>, GossipError> {
        Ok(None)
    }

    fn on_unicast(&mut self, src: PeerName, payload: &[u8]) -> Result<(), GossipError> {
        match TapMessage::decode(payload).map_err(|e| GossipError::Decode {
            channel: FLOWS_CHANNEL.into(),
            reason: e.to_string(),
        })? {
            TapMessage::Subscribe => self
                .log
                .subscribe(src, (self.now_ms)() + SUBSCRIPTION_TTL_MS),
            TapMessage::Events(events) => self.log.push(events),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(src_ns: &str, src: &str, dst_ns: &str, dst: &str) -> TapEvent {
        TapEvent {
            router: "r".into(),
            time_ms: 1,
            kind: "open".into(),
            protocol: "tcp".into(),
            src: "10.32.0.1".into(),
            sport: 4000,
            src_workload: src.into(),
            src_namespace: src_ns.into(),
            dst: "10.32.0.2".into(),
            dport: 80,
            dst_workload: dst.into(),
            dst_namespace: dst_ns.into(),
            bytes_forward: 0,
            bytes_reply: 0,
        }
    }

    #[test]
    fn filters_select_by_namespace_workload_and_destination() {
        let e = event("a", "web", "b", "db");
        let f = |ns: Option<&str>, w: Option<&str>, to: Option<&str>| TapFilter {
            namespace: ns.map(Into::into),
            workload: w.map(Into::into),
            to: to.map(Into::into),
        };
        assert!(f(None, None, None).matches(&e));
        assert!(f(Some("b"), None, None).matches(&e));
        assert!(!f(Some("c"), None, None).matches(&e));
        assert!(f(None, Some("web"), None).matches(&e));
        assert!(f(None, Some("b/db"), None).matches(&e));
        assert!(!f(None, Some("a/db"), None).matches(&e));
        assert!(f(None, None, Some("db")).matches(&e));
        assert!(!f(None, None, Some("web")).matches(&e));
        assert!(!f(Some("a"), Some("web"), Some("nope")).matches(&e));
    }

    #[test]
    fn the_log_numbers_events_and_keeps_the_latest() {
        let log = TapLog::default();
        log.push((0..LOG_CAPACITY + 5).map(|_| event("a", "w", "a", "v")));
        let (all, next) = log.since(0, &TapFilter::default());
        assert_eq!(all.len(), LOG_CAPACITY);
        assert_eq!(next, (LOG_CAPACITY + 5) as u64);
        log.push([event("x", "y", "x", "z")]);
        let (new, next2) = log.since(next, &TapFilter::default());
        assert_eq!(new.len(), 1);
        assert_eq!(next2, next + 1);
    }

    #[test]
    fn subscriptions_expire_and_peer_events_land_in_the_log() {
        let log = TapLog::default();
        let mut g = TapGossip {
            log: log.clone(),
            now_ms: || 1_000,
        };
        let peer: PeerName = "00:00:00:00:00:01".parse().expect("peer");
        g.on_unicast(peer, &TapMessage::Subscribe.encode())
            .expect("subscribe");
        assert_eq!(log.subscribers(1_000), vec![peer]);
        assert!(log.subscribers(1_000 + SUBSCRIPTION_TTL_MS).is_empty());
        g.on_unicast(
            peer,
            &TapMessage::Events(vec![event("a", "b", "c", "d")]).encode(),
        )
        .expect("events");
        assert_eq!(log.since(0, &TapFilter::default()).0.len(), 1);
        assert!(g.on_unicast(peer, b"garbage").is_err());
    }
}
