//! Dropped packets: the events published for each packet the NFLOG group reports
//! ([`DropEvent`]), the bounded list of recent ones ([`RecentDrops`]), and the parsing of a
//! logged IPv4 packet into addresses, protocol and destination port.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

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
        assert_eq!(parse_ipv4(&packet(ICMP, 0, &[8, 0, 0, 0])).unwrap().port, None);
        assert_eq!(parse_ipv4(&packet(TCP, 0x0010, &[0, 1, 0, 80])).unwrap().port, None);
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
}
