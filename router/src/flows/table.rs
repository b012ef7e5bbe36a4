//! The sans-IO core of flow accounting: conntrack entries in, per-flow counters and flow
//! events out. No clock is read (`now_ms` is passed in) and no socket is touched.
//!
//! A flow is (source workload, source namespace, destination workload, destination namespace,
//! destination port, protocol); its counters add up every connection of that shape. The
//! kernel's counters are per connection and cumulative, so each connection remembers what it
//! already contributed and adds only the difference: events and periodic dumps can report the
//! same connection any number of times without counting anything twice. A connection is
//! *opened* the first time it is seen and *closed* when conntrack destroys it or TCP reaches
//! `TIME_WAIT`/`CLOSE` (whichever comes first; conntrack keeps TIME_WAIT entries two minutes).
//!
//! Cardinality is bounded: beyond `max_flows` flows, new shapes are folded into one `other`
//! flow per namespace and counted in [`FlowTable::folded`].

use std::collections::{BTreeMap, HashMap};

use super::ctnetlink::{Counters, CtEvent, CtKind, TCP_CLOSE, TCP_TIME_WAIT, Tuple};
use super::directory::{Directory, Endpoint, Sides};

/// Workload, namespace and protocol label of the flow that collects flows beyond the cap.
pub(crate) const OTHER: &str = "other";

/// The labels of a flow.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct FlowKey {
    /// Namespace of the local workload (decides the tenant; not a label itself).
    pub(crate) local_namespace: String,
    /// The initiator.
    pub(crate) src: Endpoint,
    /// The responder.
    pub(crate) dst: Endpoint,
    /// Destination port; 0 for protocols without ports.
    pub(crate) dst_port: u16,
    /// Protocol name (`tcp`, `udp`, `icmp`, `sctp`) or number.
    pub(crate) protocol: String,
}

impl FlowKey {
    fn new(sides: Sides, t: &Tuple) -> FlowKey {
        FlowKey {
            local_namespace: sides.local_namespace,
            src: sides.src,
            dst: sides.dst,
            dst_port: t.dport,
            protocol: protocol_name(t.proto),
        }
    }

    fn other(local_namespace: &str) -> FlowKey {
        let other = Endpoint {
            workload: OTHER.into(),
            namespace: OTHER.into(),
        };
        FlowKey {
            local_namespace: local_namespace.to_string(),
            src: other.clone(),
            dst: other,
            dst_port: 0,
            protocol: OTHER.into(),
        }
    }
}

/// The name of IP protocol `p`.
pub(crate) fn protocol_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

/// Cumulative counters of one flow since the router started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FlowCounters {
    /// Packets and bytes from source to destination.
    pub(crate) forward: Counters,
    /// Packets and bytes from destination to source.
    pub(crate) reply: Counters,
    /// Connections seen opening.
    pub(crate) opened: u64,
    /// Connections seen closing.
    pub(crate) closed: u64,
    /// Packets dropped by policy.
    pub(crate) drops: u64,
    /// Connections of the flow in the table now.
    live: u32,
    /// Last change.
    last_ms: i64,
    /// When the flow was first seen.
    pub(crate) created_ms: i64,
    /// Not exported yet: its series start with a zero at `created_ms`, so that `rate()` sees
    /// what the first interval counted.
    pub(crate) fresh: bool,
}

impl FlowCounters {
    fn created(now_ms: i64) -> FlowCounters {
        FlowCounters {
            created_ms: now_ms,
            fresh: true,
            last_ms: now_ms,
            ..FlowCounters::default()
        }
    }
}

/// What happened to a connection, for `weft tap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlowEventKind {
    /// First seen.
    Open,
    /// Closed (destroyed, or TCP `TIME_WAIT`/`CLOSE`).
    Close,
}

/// A connection opening or closing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlowEvent {
    /// Open or close.
    pub(crate) kind: FlowEventKind,
    /// When it was seen.
    pub(crate) time_ms: i64,
    /// Its original tuple (addresses and ports).
    pub(crate) tuple: Tuple,
    /// Its flow.
    pub(crate) key: FlowKey,
    /// Its own counters so far.
    pub(crate) forward: Counters,
    /// Its own counters so far.
    pub(crate) reply: Counters,
}

#[derive(Debug)]
struct Conn {
    key: FlowKey,
    forward: Counters,
    reply: Counters,
    closed: bool,
    generation: u64,
}

/// Per-flow counters fed by conntrack entries.
#[derive(Debug)]
pub(crate) struct FlowTable {
    conns: HashMap<(Option<u32>, Tuple), Conn>,
    flows: BTreeMap<FlowKey, FlowCounters>,
    max_flows: usize,
    folded: u64,
    generation: u64,
}

fn delta(new: Counters, old: Counters) -> Counters {
    Counters {
        packets: new.packets.saturating_sub(old.packets),
        bytes: new.bytes.saturating_sub(old.bytes),
    }
}

fn add(a: &mut Counters, d: Counters) {
    a.packets = a.packets.saturating_add(d.packets);
    a.bytes = a.bytes.saturating_add(d.bytes);
}

impl FlowTable {
    /// An empty table keeping at most `max_flows` distinct flows (plus one `other` flow per
    /// namespace).
    pub(crate) fn new(max_flows: usize) -> FlowTable {
        FlowTable {
            conns: HashMap::new(),
            flows: BTreeMap::new(),
            max_flows,
            folded: 0,
            generation: 0,
        }
    }

    /// Connections folded into an `other` flow because the table was full.
    pub(crate) fn folded(&self) -> u64 {
        self.folded
    }

    /// Every flow and its counters.
    pub(crate) fn flows(&self) -> impl Iterator<Item = (&FlowKey, &FlowCounters)> {
        self.flows.iter()
    }

    /// The flow for `sides`, or the namespace's `other` flow when the table is full.
    fn flow_key(&mut self, sides: Sides, t: &Tuple) -> FlowKey {
        let key = FlowKey::new(sides, t);
        if self.flows.contains_key(&key) || self.flows.len() < self.max_flows {
            return key;
        }
        self.folded += 1;
        FlowKey::other(&key.local_namespace)
    }

    /// Accounts one conntrack entry (event or dump line); returns the open and close it
    /// reveals.
    pub(crate) fn observe(&mut self, ev: &CtEvent, dir: &Directory, now_ms: i64) -> Vec<FlowEvent> {
        let id = (ev.id, ev.orig);
        let mut out = Vec::new();
        if !self.conns.contains_key(&id) {
            let Some(sides) = dir.classify(&ev.orig) else {
                return out;
            };
            let key = self.flow_key(sides, &ev.orig);
            let flow = self
                .flows
                .entry(key.clone())
                .or_insert_with(|| FlowCounters::created(now_ms));
            flow.opened += 1;
            flow.live += 1;
            flow.last_ms = now_ms;
            out.push(FlowEvent {
                kind: FlowEventKind::Open,
                time_ms: now_ms,
                tuple: ev.orig,
                key: key.clone(),
                forward: Counters::default(),
                reply: Counters::default(),
            });
            self.conns.insert(
                id,
                Conn {
                    key,
                    forward: Counters::default(),
                    reply: Counters::default(),
                    closed: false,
                    generation: self.generation,
                },
            );
        }
        let Some(conn) = self.conns.get_mut(&id) else {
            return out;
        };
        conn.generation = self.generation;
        let Some(flow) = self.flows.get_mut(&conn.key) else {
            return out;
        };
        if let Some(c) = ev.counters_orig {
            add(&mut flow.forward, delta(c, conn.forward));
            conn.forward = c;
        }
        if let Some(c) = ev.counters_reply {
            add(&mut flow.reply, delta(c, conn.reply));
            conn.reply = c;
        }
        flow.last_ms = now_ms;
        let closing = ev.kind == CtKind::Destroy
            || matches!(ev.tcp_state, Some(TCP_TIME_WAIT) | Some(TCP_CLOSE));
        if closing && !conn.closed {
            conn.closed = true;
            flow.closed += 1;
            out.push(FlowEvent {
                kind: FlowEventKind::Close,
                time_ms: now_ms,
                tuple: ev.orig,
                key: conn.key.clone(),
                forward: conn.forward,
                reply: conn.reply,
            });
        }
        if ev.kind == CtKind::Destroy {
            flow.live = flow.live.saturating_sub(1);
            self.conns.remove(&id);
        }
        out
    }

    /// Counts `packets` of `t` dropped by policy at this router (drops are only reported by
    /// the router that dropped them: the source's for egress, the destination's for ingress);
    /// returns the flow's sides, or `None` when neither end is a local workload.
    pub(crate) fn drop_packets(
        &mut self,
        t: &Tuple,
        packets: u64,
        dir: &Directory,
        now_ms: i64,
    ) -> Option<Sides> {
        let sides = dir.classify_local(t)?;
        let key = self.flow_key(sides.clone(), t);
        let flow = self
            .flows
            .entry(key)
            .or_insert_with(|| FlowCounters::created(now_ms));
        flow.drops = flow.drops.saturating_add(packets);
        flow.last_ms = now_ms;
        Some(sides)
    }

    /// Starts a dump of the conntrack table: connections not reported by the dump or by an
    /// event until [`FlowTable::end_dump`] left the table without us hearing of it.
    pub(crate) fn begin_dump(&mut self) {
        self.generation += 1;
    }

    /// Ends a dump: connections neither dumped nor reported since [`FlowTable::begin_dump`]
    /// are closed and forgotten (their destroy event was lost).
    pub(crate) fn end_dump(&mut self, now_ms: i64) -> Vec<FlowEvent> {
        let generation = self.generation;
        let gone: Vec<(Option<u32>, Tuple)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.generation < generation)
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::new();
        for id in gone {
            let destroy = CtEvent {
                kind: CtKind::Destroy,
                id: id.0,
                orig: id.1,
                counters_orig: None,
                counters_reply: None,
                tcp_state: None,
            };
            out.extend(self.observe(&destroy, &Directory::default(), now_ms));
        }
        out
    }

    /// Marks every flow exported (their series exist now).
    pub(crate) fn exported(&mut self) {
        for f in self.flows.values_mut() {
            f.fresh = false;
        }
    }

    /// Forgets flows without connections that have not changed for `idle_ms` (their series
    /// stop; a later connection starts them from zero, a counter reset).
    pub(crate) fn expire(&mut self, now_ms: i64, idle_ms: i64) {
        self.flows
            .retain(|_, f| f.live > 0 || now_ms.saturating_sub(f.last_ms) < idle_ms);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;
    use crate::flows::directory::tests::sample;

    fn tuple(sport: u16, dport: u16) -> Tuple {
        Tuple {
            src: Ipv4Addr::new(10, 32, 0, 1),
            dst: Ipv4Addr::new(10, 32, 0, 2),
            proto: 6,
            sport,
            dport,
        }
    }

    fn ev(kind: CtKind, id: u32, t: Tuple, fwd: u64, rep: u64, state: Option<u8>) -> CtEvent {
        CtEvent {
            kind,
            id: Some(id),
            orig: t,
            counters_orig: Some(Counters {
                packets: fwd / 100,
                bytes: fwd,
            }),
            counters_reply: Some(Counters {
                packets: rep / 100,
                bytes: rep,
            }),
            tcp_state: state,
        }
    }

    fn only(table: &FlowTable) -> (FlowKey, FlowCounters) {
        let all: Vec<_> = table.flows().collect();
        assert_eq!(all.len(), 1, "{all:?}");
        (all[0].0.clone(), *all[0].1)
    }

    #[test]
    fn a_connection_counts_its_deltas_once_and_opens_and_closes_once() {
        let d = sample();
        let mut t = FlowTable::new(100);
        let c = tuple(40000, 80);
        let opened = t.observe(&ev(CtKind::New, 1, c, 60, 0, Some(1)), &d, 1);
        assert_eq!(opened.len(), 1);
        assert_eq!(opened[0].kind, FlowEventKind::Open);
        assert!(
            t.observe(&ev(CtKind::Update, 1, c, 500, 200, Some(3)), &d, 2)
                .is_empty()
        );
        // A dump repeating the same numbers adds nothing.
        t.begin_dump();
        t.observe(&ev(CtKind::Update, 1, c, 500, 200, Some(3)), &d, 3);
        assert!(t.end_dump(3).is_empty());
        let closed = t.observe(
            &ev(CtKind::Update, 1, c, 900, 300, Some(TCP_TIME_WAIT)),
            &d,
            4,
        );
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].kind, FlowEventKind::Close);
        assert_eq!(closed[0].forward.bytes, 900);
        // The destroy two minutes later adds its last bytes but does not close it again.
        assert!(
            t.observe(&ev(CtKind::Destroy, 1, c, 1000, 300, None), &d, 5)
                .is_empty()
        );
        let (key, f) = only(&t);
        assert_eq!(key.src.workload, "web");
        assert_eq!(key.dst.workload, "db");
        assert_eq!(key.dst_port, 80);
        assert_eq!(key.protocol, "tcp");
        assert_eq!((f.forward.bytes, f.reply.bytes), (1000, 300));
        assert_eq!((f.forward.packets, f.reply.packets), (10, 3));
        assert_eq!((f.opened, f.closed), (1, 1));
    }

    #[test]
    fn connections_differing_only_in_source_port_share_a_flow() {
        let d = sample();
        let mut t = FlowTable::new(100);
        for (id, sport) in [(1, 40000), (2, 40001), (3, 50000)] {
            t.observe(
                &ev(CtKind::Destroy, id, tuple(sport, 80), 100, 10, None),
                &d,
                1,
            );
        }
        let (_, f) = only(&t);
        assert_eq!((f.opened, f.closed, f.forward.bytes), (3, 3, 300));
    }

    #[test]
    fn flows_beyond_the_cap_fold_into_other() {
        let d = sample();
        let mut t = FlowTable::new(2);
        for (id, port) in [(1, 80), (2, 81), (3, 82), (4, 83), (5, 80)] {
            t.observe(&ev(CtKind::New, id, tuple(1000, port), 10, 0, None), &d, 1);
        }
        let keys: Vec<String> = t
            .flows()
            .map(|(k, _)| format!("{}:{}", k.dst.workload, k.dst_port))
            .collect();
        assert_eq!(keys, ["other:0", "db:80", "db:81"]);
        assert_eq!(t.folded(), 2);
        let other = t.flows().find(|(k, _)| k.protocol == OTHER).expect("other");
        assert_eq!(other.1.opened, 2);
    }

    #[test]
    fn connections_this_router_does_not_count_are_ignored() {
        let d = sample();
        let mut t = FlowTable::new(100);
        let reverse = Tuple {
            src: Ipv4Addr::new(10, 32, 0, 2),
            dst: Ipv4Addr::new(10, 32, 0, 1),
            proto: 17,
            sport: 5353,
            dport: 53,
        };
        assert!(
            t.observe(&ev(CtKind::New, 1, reverse, 10, 0, None), &d, 1)
                .is_empty()
        );
        assert_eq!(t.flows().count(), 0);
        let remote = Tuple {
            src: Ipv4Addr::new(10, 32, 0, 3),
            dst: Ipv4Addr::new(10, 32, 0, 2),
            ..reverse
        };
        assert_eq!(t.drop_packets(&remote, 3, &d, 1), None);
        assert_eq!(t.flows().count(), 0);
    }

    #[test]
    fn a_lost_destroy_is_noticed_by_the_next_dump() {
        let d = sample();
        let mut t = FlowTable::new(100);
        t.observe(&ev(CtKind::New, 1, tuple(1, 80), 10, 0, None), &d, 1);
        t.observe(&ev(CtKind::New, 2, tuple(2, 80), 10, 0, None), &d, 1);
        t.begin_dump();
        t.observe(&ev(CtKind::Update, 2, tuple(2, 80), 20, 0, None), &d, 2);
        let gone = t.end_dump(2);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].tuple.sport, 1);
        let (_, f) = only(&t);
        assert_eq!((f.opened, f.closed, f.forward.bytes), (2, 1, 30));
    }

    #[test]
    fn idle_flows_without_connections_expire() {
        let d = sample();
        let mut t = FlowTable::new(100);
        t.observe(
            &ev(CtKind::Destroy, 1, tuple(1, 80), 10, 0, None),
            &d,
            1_000,
        );
        t.observe(&ev(CtKind::New, 2, tuple(2, 81), 10, 0, None), &d, 1_000);
        t.expire(1_000 + 600_000, 600_000);
        let (key, _) = only(&t);
        assert_eq!(key.dst_port, 81, "the flow with a live connection stays");
    }

    #[test]
    fn drops_are_counted_on_the_flow_by_the_dropping_router() {
        let d = sample();
        let mut t = FlowTable::new(100);
        t.drop_packets(&tuple(1, 5432), 2, &d, 1)
            .expect("egress drop");
        t.drop_packets(&tuple(2, 5432), 1, &d, 2)
            .expect("egress drop");
        let (key, f) = only(&t);
        assert_eq!((key.dst_port, f.drops, f.opened), (5432, 3, 0));
        // An ingress drop of traffic from a remote workload to a local one counts here too.
        let ingress = Tuple {
            src: Ipv4Addr::new(10, 32, 0, 3),
            dst: Ipv4Addr::new(10, 32, 0, 1),
            proto: 6,
            sport: 0,
            dport: 80,
        };
        let sides = t.drop_packets(&ingress, 1, &d, 3).expect("ingress drop");
        assert_eq!(sides.src.workload, "api");
        assert_eq!(sides.local_namespace, "shop");
    }

    proptest! {
        /// Whatever the order and repetition of reports, a flow ends with the counters of the
        /// last report of each connection (counters never go backwards in the kernel).
        #[test]
        fn totals_equal_the_last_counters_of_each_connection(
            reports in proptest::collection::vec((0u32..5, 0u64..1000), 1..60)
        ) {
            let d = sample();
            let mut t = FlowTable::new(100);
            let mut last = [0u64; 5];
            for (id, inc) in reports {
                last[id as usize] += inc;
                let e = ev(CtKind::Update, id, tuple(id as u16, 80), last[id as usize], 0, None);
                t.observe(&e, &d, 1);
            }
            let (_, f) = only(&t);
            prop_assert_eq!(f.forward.bytes, last.iter().sum::<u64>());
        }
    }
}
