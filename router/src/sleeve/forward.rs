//! Where a frame read from the TAP port goes: to the one peer its destination MAC was learned
//! from, else (broadcast, multicast, unknown) to every peer whose traffic rides the sleeve. The
//! caller sends only to peers on the sleeve.
//! Peers on the fast path get flooded frames through the kernel VXLAN device instead, so no
//! peer receives a frame twice. Sans-IO.

use std::collections::HashMap;

use crate::mesh::PeerName;

/// An Ethernet address.
pub type Mac = [u8; 6];

/// Where a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// The peer its destination was learned from.
    Peer(PeerName),
    /// Every sleeve peer.
    Flood,
    /// Nowhere: not an Ethernet frame.
    Drop,
}

/// Destination MAC of a frame.
pub fn dst_mac(frame: &[u8]) -> Option<Mac> {
    frame.get(..6)?.try_into().ok()
}

/// Source MAC of a frame.
pub fn src_mac(frame: &[u8]) -> Option<Mac> {
    frame.get(6..12)?.try_into().ok()
}

/// MACs learned from frames received from peers.
#[derive(Debug, Default)]
pub struct MacTable {
    learned: HashMap<Mac, PeerName>,
}

impl MacTable {
    /// Whether `mac` is already known to be behind `peer` (cheap check before taking a write
    /// lock).
    pub fn knows(&self, mac: &Mac, peer: PeerName) -> bool {
        self.learned.get(mac) == Some(&peer)
    }

    /// Records that `mac` is behind `peer`. Group addresses are never learned.
    pub fn learn(&mut self, mac: Mac, peer: PeerName) {
        if mac[0] & 1 == 0 {
            self.learned.insert(mac, peer);
        }
    }

    /// Forgets every MAC behind `peer`.
    pub fn forget_peer(&mut self, peer: PeerName) {
        self.learned.retain(|_, p| *p != peer);
    }

    /// Where `frame` goes.
    pub fn destination(&self, frame: &[u8]) -> Destination {
        match dst_mac(frame) {
            None => Destination::Drop,
            Some(mac) if mac[0] & 1 == 1 => Destination::Flood,
            Some(mac) => match self.learned.get(&mac) {
                Some(peer) => Destination::Peer(*peer),
                None => Destination::Flood,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: Mac, src: Mac) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00, 0x45]);
        f
    }

    #[test]
    fn learned_unicast_goes_to_its_peer_and_the_rest_floods() {
        let p: PeerName = "00:00:00:00:00:02".parse().unwrap();
        let q: PeerName = "00:00:00:00:00:03".parse().unwrap();
        let (w1, w2) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let mut t = MacTable::default();
        assert_eq!(t.destination(&frame(w1, w2)), Destination::Flood);
        t.learn(w1, p);
        assert!(t.knows(&w1, p) && !t.knows(&w1, q));
        assert_eq!(t.destination(&frame(w1, w2)), Destination::Peer(p));
        assert_eq!(t.destination(&frame([0xff; 6], w2)), Destination::Flood);
        assert_eq!(
            t.destination(&frame([1, 0, 0x5e, 0, 0, 1], w2)),
            Destination::Flood
        );
        t.learn([1, 0, 0x5e, 0, 0, 1], p);
        assert_eq!(
            t.destination(&frame([1, 0, 0x5e, 0, 0, 1], w2)),
            Destination::Flood,
            "group addresses are not learned"
        );
        t.learn(w1, q);
        assert_eq!(t.destination(&frame(w1, w2)), Destination::Peer(q), "moved");
        t.forget_peer(q);
        assert_eq!(t.destination(&frame(w1, w2)), Destination::Flood);
        assert_eq!(t.destination(&[1, 2, 3]), Destination::Drop);
    }
}
