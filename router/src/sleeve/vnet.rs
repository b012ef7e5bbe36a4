//! The virtio-net header the TAP port puts before every frame (`IFF_VNET_HDR`, little-endian
//! by `TUNSETVNETLE`). With the TAP's offloads on, the kernel hands the sleeve TCP segments of
//! up to 64 KiB whose checksum is still to be done, and this header says how to finish them
//! (checksum start and offset, segment size). The sleeve carries header and frame across as one
//! datagram, and the receiving TAP port gives the kernel the same header, so segmentation and
//! checksumming happen at most once, after the sleeve, or never when the receiver is local.
//! Sans-IO: only the check of a header that came from a peer.

use super::error::SleeveError;

/// Length of the header (`struct virtio_net_hdr`, without `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;
/// `flags`: the checksum from `csum_start` on is still to be computed.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was already checked.
pub const F_DATA_VALID: u8 = 2;
/// `gso_type`: a single frame.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: a TCP/IPv4 super-segment.
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: a TCP/IPv6 super-segment.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type` bit: the segments carry ECN's CWR.
pub const GSO_ECN: u8 = 0x80;

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VnetHeader {
    /// `F_*` bits.
    pub flags: u8,
    /// `GSO_*` value.
    pub gso_type: u8,
    /// Length of the headers to repeat in each segment.
    pub hdr_len: u16,
    /// Payload bytes per segment (0 for a single frame).
    pub gso_size: u16,
    /// Where the checksummed part starts.
    pub csum_start: u16,
    /// Where in it the checksum goes.
    pub csum_offset: u16,
}

impl VnetHeader {
    /// The header of a plain frame: nothing to finish.
    pub const PLAIN: VnetHeader = VnetHeader {
        flags: 0,
        gso_type: GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// The header's bytes.
    pub fn encode(&self) -> [u8; VNET_HDR_LEN] {
        let mut out = [0; VNET_HDR_LEN];
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        out
    }

    /// Reads the header at the start of `packet`.
    pub fn decode(packet: &[u8]) -> Option<VnetHeader> {
        let h = packet.get(..VNET_HDR_LEN)?;
        let word = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
        Some(VnetHeader {
            flags: h[0],
            gso_type: h[1],
            hdr_len: word(2),
            gso_size: word(4),
            csum_start: word(6),
            csum_offset: word(8),
        })
    }
}

/// The Ethernet frame of a packet read from or written to the TAP port.
pub fn frame(packet: &[u8]) -> &[u8] {
    packet.get(VNET_HDR_LEN..).unwrap_or_default()
}

/// Checks a packet (header and frame) that came from a peer before it is given to the TAP
/// port: known flags and segmentation types only, a segment size exactly when segmented, and a
/// checksum position inside the frame.
pub fn check(packet: &[u8]) -> Result<(), SleeveError> {
    let Some(h) = VnetHeader::decode(packet) else {
        return Err(SleeveError::ShortFrame(packet.len()));
    };
    let frame_len = packet.len() - VNET_HDR_LEN;
    if frame_len < super::codec::MIN_FRAME {
        return Err(SleeveError::ShortFrame(frame_len));
    }
    let gso = h.gso_type & !GSO_ECN;
    let known_flags = h.flags & !(F_NEEDS_CSUM | F_DATA_VALID) == 0;
    let known_gso = match gso {
        GSO_NONE => h.gso_size == 0 && h.gso_type & GSO_ECN == 0,
        GSO_TCPV4 | GSO_TCPV6 => h.gso_size > 0 && h.flags & F_NEEDS_CSUM != 0,
        _ => false,
    };
    let csum_inside = h.flags & F_NEEDS_CSUM == 0
        || usize::from(h.csum_start) + usize::from(h.csum_offset) + 2 <= frame_len;
    if known_flags && known_gso && csum_inside {
        Ok(())
    } else {
        Err(SleeveError::BadOffload(h.flags, h.gso_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packet(h: VnetHeader, frame_len: usize) -> Vec<u8> {
        let mut p = h.encode().to_vec();
        p.extend(std::iter::repeat_n(0xab, frame_len));
        p
    }

    #[test]
    fn plain_and_segmented_packets_pass_and_odd_ones_do_not() {
        assert_eq!(check(&packet(VnetHeader::PLAIN, 60)), Ok(()));
        let tso = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1398,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(check(&packet(tso, 60_000)), Ok(()));
        assert_eq!(
            check(&packet(
                VnetHeader {
                    gso_type: GSO_TCPV6 | GSO_ECN,
                    ..tso
                },
                60_000
            )),
            Ok(())
        );
        let refused = [
            VnetHeader { flags: 4, ..tso },
            VnetHeader { gso_type: 3, ..tso },
            VnetHeader { gso_size: 0, ..tso },
            VnetHeader { flags: 0, ..tso },
            VnetHeader {
                gso_size: 10,
                ..VnetHeader::PLAIN
            },
            VnetHeader {
                csum_start: 59_990,
                ..tso
            },
        ];
        for h in refused {
            assert!(
                matches!(check(&packet(h, 60_000)), Err(SleeveError::BadOffload(..))),
                "{h:?} accepted"
            );
        }
        assert_eq!(
            check(&packet(VnetHeader::PLAIN, 13)),
            Err(SleeveError::ShortFrame(13))
        );
        assert_eq!(check(&[0; 9]), Err(SleeveError::ShortFrame(9)));
        assert_eq!(frame(&packet(VnetHeader::PLAIN, 20)).len(), 20);
        assert!(frame(&[1, 2]).is_empty());
    }

    proptest! {
        #[test]
        fn header_round_trips(flags: u8, gso_type: u8, hdr_len: u16, gso_size: u16, csum_start: u16, csum_offset: u16) {
            let h = VnetHeader { flags, gso_type, hdr_len, gso_size, csum_start, csum_offset };
            prop_assert_eq!(VnetHeader::decode(&h.encode()), Some(h));
        }

        #[test]
        fn check_never_panics(d in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = check(&d);
        }
    }
}
