//! Which all-zero FDB entries the VXLAN device should have, given the mesh topology: one per
//! reachable peer's underlay IP, so broadcast and unknown unicast reach every peer.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use crate::mesh::{MeshStatus, PeerName};

/// The underlay IPs of every peer reachable from us over established connections that both
/// ends announce. A peer's IP comes from our own connection to it when there is one, else from
/// the address another peer sees it at.
pub fn flood_targets(status: &MeshStatus) -> BTreeSet<IpAddr> {
    let local = status.local.name;
    let announced: BTreeMap<PeerName, BTreeSet<PeerName>> = status
        .peers
        .iter()
        .map(|p| {
            let established = p
                .connections
                .iter()
                .filter(|c| c.established)
                .map(|c| c.name)
                .collect();
            (p.name, established)
        })
        .collect();
    let linked = |a: PeerName, b: PeerName| {
        announced.get(&a).is_some_and(|s| s.contains(&b))
            && announced.get(&b).is_some_and(|s| s.contains(&a))
    };
    let mut reached = BTreeSet::from([local]);
    let mut queue = VecDeque::from([local]);
    while let Some(name) = queue.pop_front() {
        for &next in announced.get(&name).into_iter().flatten() {
            if linked(name, next) && reached.insert(next) {
                queue.push_back(next);
            }
        }
    }
    // Our own view of an address first, then what other peers report.
    let mut ip_of: BTreeMap<PeerName, IpAddr> = BTreeMap::new();
    for c in &status.connections {
        if let Some(ip) = ip_of_address(&c.address) {
            ip_of.entry(c.name).or_insert(ip);
        }
    }
    for p in &status.peers {
        for c in p.connections.iter().filter(|c| c.established) {
            if let Some(ip) = ip_of_address(&c.address) {
                ip_of.entry(c.name).or_insert(ip);
            }
        }
    }
    reached
        .into_iter()
        .filter(|n| *n != local)
        .filter_map(|n| ip_of.get(&n).copied())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .collect()
}

fn ip_of_address(address: &str) -> Option<IpAddr> {
    address
        .parse::<SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| address.parse::<IpAddr>())
        .ok()
}

/// Entries to add and to remove to go from `current` to `desired`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FdbChanges {
    /// Missing entries.
    pub add: Vec<IpAddr>,
    /// Entries for peers no longer reachable.
    pub remove: Vec<IpAddr>,
}

/// What to change so the device's entries are exactly `desired`.
pub fn changes(current: &BTreeSet<IpAddr>, desired: &BTreeSet<IpAddr>) -> FdbChanges {
    FdbChanges {
        add: desired.difference(current).copied().collect(),
        remove: current.difference(desired).copied().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::{ConnectionStatus, PeerConnectionStatus, PeerInfo, PeerStatus};

    fn name(i: u8) -> PeerName {
        format!("00:00:00:00:00:{i:02x}").parse().unwrap()
    }

    fn peer(i: u8, links: &[(u8, &str)]) -> PeerStatus {
        PeerStatus {
            name: name(i),
            nickname: format!("h{i}"),
            uid: u64::from(i),
            version: 1,
            connections: links
                .iter()
                .map(|&(to, addr)| PeerConnectionStatus {
                    name: name(to),
                    nickname: String::new(),
                    address: addr.to_string(),
                    outbound: true,
                    established: true,
                })
                .collect(),
        }
    }

    fn status(peers: Vec<PeerStatus>, conns: &[(u8, &str)]) -> MeshStatus {
        MeshStatus {
            local: PeerInfo {
                name: name(1),
                nickname: "h1".into(),
                uid: 1,
                listen_port: 6783,
            },
            peers,
            connections: conns
                .iter()
                .enumerate()
                .map(|(i, &(to, addr))| ConnectionStatus {
                    conn: i as _,
                    address: addr.to_string(),
                    outbound: true,
                    state: "established".into(),
                    encrypted: false,
                    name: name(to),
                    nickname: String::new(),
                })
                .collect(),
            targets: Vec::new(),
        }
    }

    fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn direct_peers_by_our_connection_address() {
        let s = status(
            vec![
                peer(1, &[(2, "198.18.0.2:6783"), (3, "198.18.0.3:41000")]),
                peer(2, &[(1, "198.18.0.1:50000")]),
                peer(3, &[(1, "198.18.0.1:6783")]),
            ],
            &[(2, "198.18.0.2:6783"), (3, "198.18.0.3:41000")],
        );
        assert_eq!(flood_targets(&s), ips(&["198.18.0.2", "198.18.0.3"]));
    }

    #[test]
    fn relayed_peer_uses_address_seen_by_its_neighbour() {
        // 1 - 2 - 3 in a line: 3 is reachable through 2.
        let s = status(
            vec![
                peer(1, &[(2, "198.18.0.2:6783")]),
                peer(2, &[(1, "198.18.0.1:6783"), (3, "198.18.0.3:6783")]),
                peer(3, &[(2, "198.18.0.2:6783")]),
            ],
            &[(2, "198.18.0.2:6783")],
        );
        assert_eq!(flood_targets(&s), ips(&["198.18.0.2", "198.18.0.3"]));
    }

    #[test]
    fn one_sided_and_stale_peers_are_not_targets() {
        // 3 announces a link to 1 that 1 does not confirm; 4 is in the table but unlinked.
        let s = status(
            vec![
                peer(1, &[(2, "198.18.0.2:6783")]),
                peer(2, &[(1, "198.18.0.1:6783")]),
                peer(3, &[(1, "198.18.0.1:6783")]),
                peer(4, &[]),
            ],
            &[(2, "198.18.0.2:6783")],
        );
        assert_eq!(flood_targets(&s), ips(&["198.18.0.2"]));
    }

    #[test]
    fn unestablished_links_do_not_count() {
        let mut p1 = peer(1, &[(2, "198.18.0.2:6783")]);
        p1.connections[0].established = false;
        let s = status(vec![p1, peer(2, &[(1, "198.18.0.1:6783")])], &[]);
        assert!(flood_targets(&s).is_empty());
    }

    #[test]
    fn alone_means_no_targets() {
        let s = status(vec![peer(1, &[])], &[]);
        assert!(flood_targets(&s).is_empty());
    }

    #[test]
    fn changes_are_set_differences() {
        let c = changes(
            &ips(&["10.0.0.1", "10.0.0.2"]),
            &ips(&["10.0.0.2", "10.0.0.3"]),
        );
        assert_eq!(c.add, vec!["10.0.0.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.remove, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            changes(&ips(&["10.0.0.1"]), &ips(&["10.0.0.1"])),
            FdbChanges::default()
        );
    }
}
