//! The fast-path probe and the per-peer path choice. Sans-IO.
//!
//! Every router sends each sleeve peer a probe as a real VXLAN packet to the peer's UDP 6784:
//! the peer's kernel decapsulates it like any workload frame, and the bridge hands the inner
//! broadcast frame (ethertype [`ETHERTYPE`]) up to the router. So a probe arriving proves the
//! whole fast path from sender to receiver. Each probe also says whether the sender has heard
//! the receiver's probes lately, so both ends learn about a one-way block and choose alike.

use std::collections::HashMap;

use crate::mesh::PeerName;

/// Ethertype of probe frames (IEEE local experimental).
pub const ETHERTYPE: u16 = 0x88b5;
/// VXLAN header length.
const VXLAN_HEADER: usize = 8;
/// Marker at the start of a probe payload.
const MAGIC: &[u8; 8] = b"weftprb1";
/// A peer whose probes stopped for this long (or who stopped hearing ours) is on the sleeve.
pub const DEAD_AFTER_MS: u64 = 1500;

/// What a probe says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Its sender.
    pub from: PeerName,
    /// Whether the sender hears the receiver's probes.
    pub heard_you: bool,
}

fn name_bytes(name: PeerName) -> [u8; 6] {
    let b = name.0.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// The UDP payload of a probe to a VXLAN device with network id `vni`.
pub fn encode(vni: u32, probe: Probe) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0x08, 0, 0, 0]);
    out.extend_from_slice(&(vni << 8).to_be_bytes());
    out.extend_from_slice(&[0xff; 6]);
    // Source: the sender's name as a locally administered unicast MAC.
    let mut src = name_bytes(probe.from);
    src[0] = (src[0] & 0xfe) | 0x02;
    out.extend_from_slice(&src);
    out.extend_from_slice(&ETHERTYPE.to_be_bytes());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&name_bytes(probe.from));
    out.push(u8::from(probe.heard_you));
    debug_assert!(out.len() > VXLAN_HEADER);
    out
}

/// The probe in an Ethernet frame as received on the bridge, if it is one.
pub fn decode(frame: &[u8]) -> Option<Probe> {
    if frame.get(12..14)? != ETHERTYPE.to_be_bytes() || frame.get(14..22)? != MAGIC {
        return None;
    }
    let name = frame.get(22..28)?;
    let mut b = [0u8; 8];
    b[2..].copy_from_slice(name);
    Some(Probe {
        from: PeerName(u64::from_be_bytes(b)),
        heard_you: *frame.get(28)? == 1,
    })
}

#[derive(Debug, Clone, Copy)]
struct PeerPath {
    added: u64,
    heard: Option<u64>,
    acked: Option<u64>,
}

/// The path choice: for each peer, whether the fast path works both ways.
#[derive(Debug, Default)]
pub struct PathChoice {
    peers: HashMap<PeerName, PeerPath>,
}

impl PathChoice {
    /// Tracks exactly `peers`; new ones start on the fast path with a grace period.
    pub fn retain(&mut self, peers: &[PeerName], now: u64) {
        self.peers.retain(|p, _| peers.contains(p));
        for p in peers {
            self.peers.entry(*p).or_insert(PeerPath {
                added: now,
                heard: None,
                acked: None,
            });
        }
    }

    /// A probe arrived.
    pub fn on_probe(&mut self, probe: Probe, now: u64) {
        if let Some(p) = self.peers.get_mut(&probe.from) {
            p.heard = Some(now);
            if probe.heard_you {
                p.acked = Some(now);
            }
        }
    }

    /// Whether we heard `peer`'s probes lately (what our probe to it says).
    pub fn hears(&self, peer: PeerName, now: u64) -> bool {
        self.peers
            .get(&peer)
            .and_then(|p| p.heard)
            .is_some_and(|t| now.saturating_sub(t) < DEAD_AFTER_MS)
    }

    /// Whether `peer`'s traffic should use the fast path: we hear its probes and it hears
    /// ours (or it was added less than [`DEAD_AFTER_MS`] ago).
    pub fn fastdp(&self, peer: PeerName, now: u64) -> bool {
        self.peers.get(&peer).is_some_and(|p| {
            let fresh = |t: Option<u64>| now.saturating_sub(t.unwrap_or(p.added)) < DEAD_AFTER_MS;
            fresh(p.heard) && fresh(p.acked)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(i: u8) -> PeerName {
        format!("00:00:00:00:00:{i:02x}").parse().unwrap()
    }

    #[test]
    fn probes_round_trip_through_the_vxlan_payload() {
        let p = Probe {
            from: "12:34:56:78:9a:bc".parse().unwrap(),
            heard_you: true,
        };
        let udp = encode(0x57ef7, p);
        assert_eq!(&udp[4..8], &[0x05, 0x7e, 0xf7, 0]);
        assert_eq!(decode(&udp[VXLAN_HEADER..]), Some(p));
        let mut other = udp[VXLAN_HEADER..].to_vec();
        other[12] = 0x08;
        assert_eq!(decode(&other), None);
        assert_eq!(decode(&udp[VXLAN_HEADER..VXLAN_HEADER + 20]), None);
    }

    #[test]
    fn fast_path_needs_both_directions_and_recovers() {
        let (a, b) = (name(2), name(3));
        let mut c = PathChoice::default();
        c.retain(&[a, b], 0);
        assert!(c.fastdp(a, 1000), "grace period");
        assert!(!c.fastdp(a, DEAD_AFTER_MS), "never heard");
        // a hears us and we hear it; b's probes arrive but b does not hear ours.
        c.on_probe(
            Probe {
                from: a,
                heard_you: true,
            },
            2000,
        );
        c.on_probe(
            Probe {
                from: b,
                heard_you: false,
            },
            2000,
        );
        assert!(c.fastdp(a, 2100) && c.hears(a, 2100));
        assert!(!c.fastdp(b, 2100) && c.hears(b, 2100));
        // a goes quiet: sleeve after DEAD_AFTER_MS.
        assert!(!c.fastdp(a, 2000 + DEAD_AFTER_MS));
        c.on_probe(
            Probe {
                from: a,
                heard_you: true,
            },
            5000,
        );
        assert!(c.fastdp(a, 5001), "back");
        c.retain(&[b], 5001);
        assert!(!c.fastdp(a, 5001), "forgotten");
        c.on_probe(
            Probe {
                from: a,
                heard_you: true,
            },
            5002,
        );
        assert!(!c.hears(a, 5002), "probes of unknown peers are ignored");
    }
}
