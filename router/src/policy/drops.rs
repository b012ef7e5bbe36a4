//! Dropped packets: the events published for each packet the NFLOG group reports
//! ([`DropEvent`]), the bounded list of recent ones ([`RecentDrops`]), the parsing of a
//! logged IPv4 packet into addresses, protocol and destination port, and the exact totals
//! per policy, workload, direction, protocol and port read from the nftables counters
//! ([`DropTotal`]), also as Prometheus text.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::model::Protocol;
use super::nft::counter_name;
use super::ruleset::Direction;

/// Recent drops kept for `weft policy drops`.
pub const RECENT_DROPS: usize = 256;

/// IANA protocol numbers of the protocols policies name.
const TCP: u8 = 6;
const UDP: u8 = 17;
const SCTP: u8 = 132;
const ICMP: u8 = 1;

/// One packet dropped by policy on this host, as reported by the (rate-limited) NFLOG group:
/// a sample of the drops, not a count of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropEvent {
    /// When the router read it, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP, ...).
    pub protocol: u8,
    /// Destination port (TCP, UDP and SCTP only).
    pub port: Option<u16>,
    /// The check that dropped it: `Ingress` of the destination, `Egress` of the source.
    pub direction: Direction,
    /// `NAMESPACE/NAME` of the isolated local workload whose chain dropped it.
    pub workload: String,
    /// Keys (`NAMESPACE/NAME`) of the policies isolating that workload in that direction.
    pub policies: Vec<String>,
}

impl DropEvent {
    /// `tcp`, `udp`, `sctp`, `icmp`, or the protocol number.
    pub fn protocol_name(&self) -> String {
        protocol_name(self.protocol)
    }
}

/// `tcp`, `udp`, `sctp`, `icmp`, or the number.
pub fn protocol_name(protocol: u8) -> String {
    match protocol {
        TCP => "tcp".into(),
        UDP => "udp".into(),
        SCTP => "sctp".into(),
        ICMP => "icmp".into(),
        n => n.to_string(),
    }
}

/// What the logged packet says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketSummary {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub protocol: u8,
    /// Destination port, for TCP, UDP and SCTP when the header is there (first fragment).
    pub port: Option<u16>,
}

/// Reads an IPv4 packet (from its IP header on); `None` when it is not IPv4 or too short.
pub fn parse_ipv4(packet: &[u8]) -> Option<PacketSummary> {
    let first = *packet.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < 20 || packet.len() < header_len {
        return None;
    }
    let protocol = packet[9];
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let fragment_offset = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
    let port = match protocol {
        TCP | UDP | SCTP if fragment_offset == 0 => packet
            .get(header_len + 2..header_len + 4)
            .map(|p| u16::from_be_bytes([p[0], p[1]])),
        _ => None,
    };
    Some(PacketSummary {
        src,
        dst,
        protocol,
        port,
    })
}

/// The last [`RECENT_DROPS`] drop events, oldest first.
#[derive(Debug, Clone, Default)]
pub struct RecentDrops(VecDeque<DropEvent>);

impl RecentDrops {
    /// Adds one event, forgetting the oldest when full.
    pub fn push(&mut self, event: DropEvent) {
        if self.0.len() == RECENT_DROPS {
            self.0.pop_front();
        }
        self.0.push_back(event);
    }

    /// The events kept, oldest first.
    pub fn events(&self) -> Vec<DropEvent> {
        self.0.iter().cloned().collect()
    }

    /// Forgets every event.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Exact count of packets dropped by policy on this host (from the nftables counters) for one
/// policy, workload, direction, protocol and destination port. A drop counts for every policy
/// isolating the workload in that direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropTotal {
    /// `NAMESPACE/NAME` of the policy.
    pub policy: String,
    /// `NAMESPACE/NAME` of the local workload.
    pub workload: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `tcp`, `udp`, `sctp` or `other`.
    pub protocol: String,
    /// Destination port; `None` for other protocols, and for TCP/UDP/SCTP ports counted past
    /// the per-port counters' bound.
    pub port: Option<u16>,
    /// Packets dropped since the router started.
    pub packets: u64,
}

/// A chain in force, as the totals need it.
#[derive(Debug, Clone, Copy)]
pub struct ChainRef<'a> {
    /// Chain name.
    pub chain: &'a str,
    /// `NAMESPACE/NAME` of its workload.
    pub workload: &'a str,
    /// Its direction.
    pub direction: Direction,
    /// Policies isolating the workload in that direction.
    pub policies: &'a [String],
}

/// The non-zero totals of `chains` from `counts` (see [`super::nft::FirewallDriver::counters`]).
pub fn totals<'a>(
    chains: impl IntoIterator<Item = ChainRef<'a>>,
    counts: &BTreeMap<String, u64>,
) -> Vec<DropTotal> {
    let mut out = Vec::new();
    for c in chains {
        let mut rows: Vec<(&str, Option<u16>, u64)> = Vec::new();
        for p in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
            let total = counts
                .get(&counter_name(c.chain, Some(p)))
                .copied()
                .unwrap_or(0);
            let prefix = format!("{}/", counter_name(c.chain, Some(p)));
            let mut counted = 0;
            for (key, &n) in counts.range(prefix.clone()..) {
                let Some(port) = key.strip_prefix(&prefix) else {
                    break;
                };
                let Ok(port) = port.parse::<u16>() else {
                    continue;
                };
                if n > 0 {
                    rows.push((p.name(), Some(port), n));
                    counted += n;
                }
            }
            // Both come from one listing; the port's counter is bumped first, so it may be
            // one packet ahead.
            let rest = total.saturating_sub(counted);
            if rest > 0 {
                rows.push((p.name(), None, rest));
            }
        }
        let other = counts
            .get(&counter_name(c.chain, None))
            .copied()
            .unwrap_or(0);
        if other > 0 {
            rows.push((super::nft::OTHER_PROTOCOL, None, other));
        }
        for policy in c.policies {
            for &(protocol, port, packets) in &rows {
                out.push(DropTotal {
                    policy: policy.clone(),
                    workload: c.workload.to_string(),
                    direction: c.direction.name().to_string(),
                    protocol: protocol.to_string(),
                    port,
                    packets,
                });
            }
        }
    }
    out
}

/// Totals of tables no longer in force (replacing the table resets its counters), each
/// charged to the policies of its time.
#[derive(Debug, Clone, Default)]
pub struct DropTotals(BTreeMap<(String, String, String, String, Option<u16>), u64>);

impl DropTotals {
    /// Adds `rows` (the last reading of a table about to be replaced).
    pub fn add(&mut self, rows: Vec<DropTotal>) {
        for r in rows {
            *self
                .0
                .entry((r.policy, r.workload, r.direction, r.protocol, r.port))
                .or_default() += r.packets;
        }
    }

    /// These totals plus `current` (the table in force), ordered by policy, workload,
    /// direction, protocol and port.
    pub fn with(&self, current: Vec<DropTotal>) -> Vec<DropTotal> {
        let mut all = self.clone();
        all.add(current);
        all.0
            .into_iter()
            .map(
                |((policy, workload, direction, protocol, port), packets)| DropTotal {
                    policy,
                    workload,
                    direction,
                    protocol,
                    port,
                    packets,
                },
            )
            .collect()
    }
}

/// Name of the drop counter exported on `/metrics`.
pub const DROPS_METRIC: &str = "weft_policy_drops_total";

fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `totals` in the Prometheus text format (0.0.4). Cardinality is bounded by the chains in
/// force, their policies and the per-port counters' bound.
pub fn prometheus_text(totals: &[DropTotal]) -> String {
    let mut out = format!(
        "# HELP {DROPS_METRIC} Packets dropped by network policy on this host (nftables \
         counters; a drop counts for every policy isolating the workload).\n# TYPE {DROPS_METRIC} counter\n"
    );
    for t in totals {
        let (namespace, workload) = t.workload.split_once('/').unwrap_or(("", &t.workload));
        let port = t.port.map(|p| p.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "{DROPS_METRIC}{{policy=\"{}\",direction=\"{}\",protocol=\"{}\",port=\"{port}\",workload=\"{}\",namespace=\"{}\"}} {}",
            label_value(&t.policy),
            t.direction,
            t.protocol,
            label_value(workload),
            label_value(namespace),
            t.packets
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(protocol: u8, flags_offset: u16, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0];
        p.extend_from_slice(&flags_offset.to_be_bytes());
        p.extend_from_slice(&[64, protocol, 0, 0, 10, 32, 0, 2, 10, 40, 0, 9]);
        p.extend_from_slice(l4);
        p
    }

    #[test]
    fn reads_addresses_protocol_and_port() {
        let tcp = packet(TCP, 0x4000, &[0x9c, 0x40, 0, 80, 0, 0, 0, 0]);
        assert_eq!(
            parse_ipv4(&tcp),
            Some(PacketSummary {
                src: Ipv4Addr::new(10, 32, 0, 2),
                dst: Ipv4Addr::new(10, 40, 0, 9),
                protocol: TCP,
                port: Some(80),
            })
        );
        let udp = packet(UDP, 0, &[0, 1, 0, 53]);
        assert_eq!(parse_ipv4(&udp).and_then(|s| s.port), Some(53));
        // ICMP has no port; a later fragment carries no transport header.
        assert_eq!(
            parse_ipv4(&packet(ICMP, 0, &[8, 0, 0, 0])).unwrap().port,
            None
        );
        assert_eq!(
            parse_ipv4(&packet(TCP, 0x0010, &[0, 1, 0, 80]))
                .unwrap()
                .port,
            None
        );
        // Truncated transport header: addresses, no port.
        assert_eq!(parse_ipv4(&packet(TCP, 0, &[0, 1])).unwrap().port, None);
    }

    #[test]
    fn refuses_what_is_not_ipv4() {
        assert_eq!(parse_ipv4(&[]), None);
        assert_eq!(parse_ipv4(&[0x60; 40]), None);
        assert_eq!(parse_ipv4(&packet(TCP, 0, &[])[..12]), None);
        // IHL below 5.
        let mut bad = packet(TCP, 0, &[0, 1, 0, 80]);
        bad[0] = 0x44;
        assert_eq!(parse_ipv4(&bad), None);
    }

    #[test]
    fn recent_drops_are_bounded_and_keep_the_newest() {
        let mut r = RecentDrops::default();
        for i in 0..RECENT_DROPS as u64 + 10 {
            r.push(DropEvent {
                time_ms: i,
                src: Ipv4Addr::new(10, 0, 0, 1),
                dst: Ipv4Addr::new(10, 0, 0, 2),
                protocol: TCP,
                port: Some(80),
                direction: Direction::Ingress,
                workload: "x/a".into(),
                policies: vec!["x/p".into()],
            });
        }
        let events = r.events();
        assert_eq!(events.len(), RECENT_DROPS);
        assert_eq!(events[0].time_ms, 10);
        assert_eq!(events.last().unwrap().time_ms, RECENT_DROPS as u64 + 9);
        assert_eq!(events[0].protocol_name(), "tcp");
        r.clear();
        assert!(r.events().is_empty());
    }

    #[test]
    fn totals_split_protocol_counters_by_port_and_policy() {
        let counts: BTreeMap<String, u64> = [
            ("ing-10-32-0-1-tcp", 7),
            ("ing-10-32-0-1-tcp/80", 4),
            ("ing-10-32-0-1-tcp/81", 1),
            ("ing-10-32-0-1-tcp/x", 100),
            ("ing-10-32-0-1-udp", 0),
            ("ing-10-32-0-1-other", 3),
            ("ing-10-32-0-10-tcp/80", 50),
            ("egr-10-32-0-1-udp", 2),
            ("egr-10-32-0-1-udp/53", 2),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let two = ["x/p".to_string(), "x/q".to_string()];
        let one = ["x/e".to_string()];
        let t = totals(
            [
                ChainRef {
                    chain: "ing-10-32-0-1",
                    workload: "x/a",
                    direction: Direction::Ingress,
                    policies: &two,
                },
                ChainRef {
                    chain: "egr-10-32-0-1",
                    workload: "x/a",
                    direction: Direction::Egress,
                    policies: &one,
                },
            ],
            &counts,
        );
        let rows: Vec<(&str, &str, &str, Option<u16>, u64)> = t
            .iter()
            .map(|d| {
                (
                    d.policy.as_str(),
                    d.direction.as_str(),
                    d.protocol.as_str(),
                    d.port,
                    d.packets,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("x/p", "ingress", "tcp", Some(80), 4),
                ("x/p", "ingress", "tcp", Some(81), 1),
                ("x/p", "ingress", "tcp", None, 2),
                ("x/p", "ingress", "other", None, 3),
                ("x/q", "ingress", "tcp", Some(80), 4),
                ("x/q", "ingress", "tcp", Some(81), 1),
                ("x/q", "ingress", "tcp", None, 2),
                ("x/q", "ingress", "other", None, 3),
                ("x/e", "egress", "udp", Some(53), 2),
            ]
        );
        let text = prometheus_text(&t);
        assert!(
            text.contains("# TYPE weft_policy_drops_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "weft_policy_drops_total{policy=\"x/q\",direction=\"ingress\",protocol=\"tcp\",port=\"80\",workload=\"a\",namespace=\"x\"} 4\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("protocol=\"other\",port=\"\",workload=\"a\",namespace=\"x\"} 3\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 2 + 9);

        // Totals of a replaced table stay with the policies of their time.
        let mut past = DropTotals::default();
        past.add(t.clone());
        let later = DropTotal {
            policy: "x/new".into(),
            ..t[0].clone()
        };
        let all = past.with(vec![later.clone(), t[0].clone()]);
        assert_eq!(all.len(), 10);
        let p80 = all
            .iter()
            .find(|d| d.policy == "x/p" && d.port == Some(80))
            .unwrap();
        assert_eq!(p80.packets, 8);
        assert!(all.contains(&later));
    }
}
