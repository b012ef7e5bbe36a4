//! Counters as metric series: the flow series of each tenant and the router's health series
//! (tenant `weft-system`), one sample per series at `now_ms`, in Prometheus naming.
//!
//! Flow series carry `src_workload`, `src_namespace`, `dst_workload`, `dst_namespace`,
//! `dst_port` (absent for protocols without ports) and `protocol`; never the source port.

use std::collections::BTreeMap;

use ipnetwork::Ipv4Network;
use weft_metrics::labels::{Labels, Sample, Series};
use weft_metrics::tenant::TenantId;

use super::args::TenantFrom;
use super::table::{FlowCounters, FlowKey};

/// Bytes of a flow, label `direction="forward|reply"` (IP bytes as conntrack counts them).
pub const BYTES: &str = "weft_flow_bytes_total";
/// Packets of a flow, label `direction="forward|reply"`.
pub const PACKETS: &str = "weft_flow_packets_total";
/// Connections of a flow, label `state="opened|closed"`.
pub const CONNECTIONS: &str = "weft_flow_connections_total";
/// Packets of a flow dropped by network policy.
pub const DROPS: &str = "weft_flow_drops_total";

/// One series with one sample.
fn series(pairs: Vec<(&str, String)>, t: i64, v: f64) -> Option<Series> {
    let labels = Labels::from_pairs(pairs).ok()?;
    Some(Series {
        labels,
        samples: vec![Sample { t, v }],
    })
}

/// A counter's series; a fresh flow's starts with a zero when it was created.
fn counter(pairs: Vec<(&str, String)>, c: &FlowCounters, t: i64, v: u64) -> Option<Series> {
    let mut s = series(pairs, t, v as f64)?;
    if c.fresh {
        let start = c.created_ms.min(t - 1);
        s.samples.insert(0, Sample { t: start, v: 0.0 });
    }
    Some(s)
}

fn flow_labels<'a>(name: &'a str, key: &FlowKey) -> Vec<(&'a str, String)> {
    let mut l = vec![
        ("__name__", name.to_string()),
        ("src_workload", key.src.workload.clone()),
        ("src_namespace", key.src.namespace.clone()),
        ("dst_workload", key.dst.workload.clone()),
        ("dst_namespace", key.dst.namespace.clone()),
        ("protocol", key.protocol.clone()),
    ];
    if key.dst_port != 0 {
        l.push(("dst_port", key.dst_port.to_string()));
    }
    l
}

/// The series of one flow.
fn one_flow(key: &FlowKey, c: &FlowCounters, t: i64) -> Vec<Series> {
    let with = |name: &str, extra: (&'static str, &'static str), v: u64| {
        let mut l = flow_labels(name, key);
        l.push((extra.0, extra.1.to_string()));
        counter(l, c, t, v)
    };
    [
        with(BYTES, ("direction", "forward"), c.forward.bytes),
        with(BYTES, ("direction", "reply"), c.reply.bytes),
        with(PACKETS, ("direction", "forward"), c.forward.packets),
        with(PACKETS, ("direction", "reply"), c.reply.packets),
        with(CONNECTIONS, ("state", "opened"), c.opened),
        with(CONNECTIONS, ("state", "closed"), c.closed),
        counter(flow_labels(DROPS, key), c, t, c.drops),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The flow series by tenant, and the namespaces whose name is no valid tenant (skipped).
pub(crate) fn flow_series<'a>(
    flows: impl Iterator<Item = (&'a FlowKey, &'a FlowCounters)>,
    tenant_from: &TenantFrom,
    range: Ipv4Network,
    now_ms: i64,
) -> (BTreeMap<TenantId, Vec<Series>>, Vec<String>) {
    let mut out: BTreeMap<TenantId, Vec<Series>> = BTreeMap::new();
    let mut bad = Vec::new();
    for (key, c) in flows {
        match tenant_from.tenant(&key.local_namespace, range) {
            Ok(t) => out.entry(t).or_default().extend(one_flow(key, c, now_ms)),
            Err(_) => bad.push(key.local_namespace.clone()),
        }
    }
    bad.dedup();
    (out, bad)
}

/// What the router's health series report, read from the services' status.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Health {
    /// This router's peer name (label `router`).
    pub(crate) router: String,
    /// Peers in the mesh table, this one excluded.
    pub(crate) peers: usize,
    /// Data path connections: (`fastdp|sleeve`, encrypted).
    pub(crate) connections: Vec<(String, bool)>,
    /// Addresses allocated by this router.
    pub(crate) ipam_allocated: usize,
    /// DNS entries known (all routers).
    pub(crate) dns_entries: usize,
    /// Sleeve frames sent to peers.
    pub(crate) sleeve_tx: u64,
    /// Sleeve frames received from peers.
    pub(crate) sleeve_rx: u64,
    /// Sleeve datagrams dropped as garbage.
    pub(crate) sleeve_garbage: u64,
    /// Sleeve datagrams or frames the kernel refused.
    pub(crate) sleeve_errors: u64,
    /// Sleeve UDP GSO trains sent.
    pub(crate) sleeve_gso_trains: u64,
    /// Sleeve receive buffers coalesced by UDP GRO.
    pub(crate) sleeve_gro_batches: u64,
    /// Flows tracked.
    pub(crate) flows: usize,
    /// Connections folded into `other` flows.
    pub(crate) flows_folded: u64,
    /// Conntrack socket overruns (events lost) and undecodable messages.
    pub(crate) conntrack_errors: u64,
}

/// The health series (tenant [`super::SYSTEM_TENANT`]).
pub(crate) fn health_series(h: &Health, t: i64) -> Vec<Series> {
    let g = |name: &str, extra: Vec<(&'static str, String)>, v: f64| {
        let mut l = vec![("__name__", name.to_string()), ("router", h.router.clone())];
        l.extend(extra);
        series(l, t, v)
    };
    let mut by_path: BTreeMap<(String, bool), usize> = BTreeMap::new();
    for p in ["fastdp", "sleeve"] {
        for e in [false, true] {
            by_path.insert((p.to_string(), e), 0);
        }
    }
    for c in &h.connections {
        *by_path.entry(c.clone()).or_default() += 1;
    }
    let mut out: Vec<Option<Series>> = vec![
        g("weft_peers", vec![], h.peers as f64),
        g(
            "weft_ipam_allocated_addresses",
            vec![],
            h.ipam_allocated as f64,
        ),
        g("weft_dns_entries", vec![], h.dns_entries as f64),
        g(
            "weft_sleeve_frames_total",
            vec![("direction", "tx".into())],
            h.sleeve_tx as f64,
        ),
        g(
            "weft_sleeve_frames_total",
            vec![("direction", "rx".into())],
            h.sleeve_rx as f64,
        ),
        g(
            "weft_sleeve_errors_total",
            vec![("kind", "garbage".into())],
            h.sleeve_garbage as f64,
        ),
        g(
            "weft_sleeve_errors_total",
            vec![("kind", "kernel".into())],
            h.sleeve_errors as f64,
        ),
        g(
            "weft_sleeve_udp_offload_total",
            vec![("kind", "gso_trains".into())],
            h.sleeve_gso_trains as f64,
        ),
        g(
            "weft_sleeve_udp_offload_total",
            vec![("kind", "gro_batches".into())],
            h.sleeve_gro_batches as f64,
        ),
        g("weft_flows", vec![], h.flows as f64),
        g("weft_flow_folded_total", vec![], h.flows_folded as f64),
        g(
            "weft_flow_conntrack_errors_total",
            vec![],
            h.conntrack_errors as f64,
        ),
    ];
    for ((path, enc), n) in by_path {
        let encryption = if enc { "on" } else { "off" };
        out.push(g(
            "weft_connections",
            vec![("path", path), ("encryption", encryption.into())],
            n as f64,
        ));
    }
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::flows::ctnetlink::{Counters, CtEvent, CtKind, Tuple};
    use crate::flows::directory::tests::sample;
    use crate::flows::table::FlowTable;

    fn text(s: &Series) -> String {
        let l: Vec<String> = s
            .labels
            .iter()
            .map(|l| format!("{}={}", l.name, l.value))
            .collect();
        let last = s.samples.last().map_or(f64::NAN, |s| s.v);
        format!("{} {last}", l.join(","))
    }

    #[test]
    fn a_flow_becomes_seven_series_in_its_namespace_tenant() {
        let mut t = FlowTable::new(10);
        let ev = CtEvent {
            kind: CtKind::Destroy,
            id: Some(1),
            orig: Tuple {
                src: Ipv4Addr::new(10, 32, 0, 1),
                dst: Ipv4Addr::new(10, 32, 0, 2),
                proto: 6,
                sport: 43210,
                dport: 5432,
            },
            counters_orig: Some(Counters {
                packets: 3,
                bytes: 180,
            }),
            counters_reply: Some(Counters {
                packets: 2,
                bytes: 120,
            }),
            tcp_state: None,
        };
        t.observe(&ev, &sample(), 5);
        let range = "10.32.0.0/12".parse().expect("range");
        let (by_tenant, bad) = flow_series(t.flows(), &TenantFrom::Namespace, range, 1000);
        assert!(bad.is_empty());
        let shop = by_tenant
            .get(&TenantId::new("shop").expect("tenant"))
            .expect("tenant shop");
        let lines: Vec<String> = shop.iter().map(text).collect();
        let common = "dst_namespace=shop,dst_port=5432,dst_workload=db";
        let tail = "protocol=tcp,src_namespace=shop,src_workload=web";
        assert!(lines.contains(&format!(
            "__name__=weft_flow_bytes_total,direction=forward,{common},{tail} 180"
        )));
        assert!(lines.contains(&format!(
            "__name__=weft_flow_packets_total,direction=reply,{common},{tail} 2"
        )));
        assert!(lines.contains(&format!(
            "__name__=weft_flow_connections_total,{common},{tail},state=closed 1"
        )));
        assert!(lines.contains(&format!("__name__=weft_flow_drops_total,{common},{tail} 0")));
        assert_eq!(lines.len(), 7);
        assert!(
            !lines.iter().any(|l| l.contains("43210")),
            "source port leaked"
        );
        // A fresh flow starts from zero when first seen, so rate() sees its first interval.
        assert!(
            shop.iter()
                .all(|s| s.samples[0] == Sample { t: 5, v: 0.0 } && s.samples[1].t == 1000)
        );
        t.exported();
        let (again, _) = flow_series(t.flows(), &TenantFrom::Namespace, range, 2000);
        assert!(again.values().flatten().all(|s| s.samples.len() == 1));
    }

    #[test]
    fn health_counts_connections_by_path_and_encryption() {
        let h = Health {
            router: "aa:bb".into(),
            peers: 2,
            connections: vec![("fastdp".into(), false), ("sleeve".into(), true)],
            ipam_allocated: 3,
            ..Health::default()
        };
        let lines: Vec<String> = health_series(&h, 1).iter().map(text).collect();
        assert!(lines.contains(&"__name__=weft_peers,router=aa:bb 2".to_string()));
        assert!(lines.contains(
            &"__name__=weft_connections,encryption=on,path=sleeve,router=aa:bb 1".to_string()
        ));
        assert!(lines.contains(
            &"__name__=weft_connections,encryption=off,path=sleeve,router=aa:bb 0".to_string()
        ));
        assert!(
            lines.contains(&"__name__=weft_ipam_allocated_addresses,router=aa:bb 3".to_string())
        );
    }
}
