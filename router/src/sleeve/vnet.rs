//! The virtio-net header the TAP port puts before every frame (`IFF_VNET_HDR`, little-endian
//! by `TUNSETVNETLE`). With the TAP's offloads on, the kernel hands the sleeve TCP segments of
//! up to 64 KiB whose checksum is still to be done, and this header says how to finish them
//! (checksum start and offset, segment size). The sender cuts such a super-segment into
//! MTU-sized frames with their checksums done ([`super::tso`]), and a single frame's checksum is
//! finished here, as a NIC would ([`settle`]): both cross bare, so the sleeve adds nothing to
//! full-size frames. A super-segment that cannot be cut crosses whole with its header (one large
//! datagram), and the receiving TAP port gives the kernel the same header. Sans-IO.

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

/// A TAP packet as a datagram carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried<'a> {
    /// A frame that asks nothing of the receiving kernel (its header would be all zero).
    Bare(&'a [u8]),
    /// The offload header, then the frame.
    Offload(&'a [u8]),
}

impl<'a> Carried<'a> {
    /// The Ethernet frame.
    pub fn frame(&self) -> &'a [u8] {
        match self {
            Carried::Bare(f) => f,
            Carried::Offload(p) => p.get(VNET_HDR_LEN..).unwrap_or_default(),
        }
    }

    /// The offload header the TAP port is given with the frame.
    pub fn header(&self) -> [u8; VNET_HDR_LEN] {
        match self {
            Carried::Bare(_) => VnetHeader::PLAIN.encode(),
            Carried::Offload(p) => VnetHeader::decode(p).unwrap_or(VnetHeader::PLAIN).encode(),
        }
    }

    /// The bytes on the wire (before sealing).
    pub fn bytes(&self) -> &'a [u8] {
        match self {
            Carried::Bare(b) | Carried::Offload(b) => b,
        }
    }
}

/// Makes a packet read from the TAP port ready to carry: a single frame whose checksum is still
/// to be done gets it, and a single frame crosses bare; a segmented packet keeps its header.
pub fn settle(packet: &mut [u8]) -> Carried<'_> {
    let Some(h) = VnetHeader::decode(packet) else {
        return Carried::Offload(packet);
    };
    let needs_csum = h.flags & F_NEEDS_CSUM != 0;
    let start = usize::from(h.csum_start);
    let at = start + usize::from(h.csum_offset);
    if h.gso_type != GSO_NONE || (needs_csum && at + 2 > packet.len() - VNET_HDR_LEN) {
        return Carried::Offload(packet);
    }
    let frame = &mut packet[VNET_HDR_LEN..];
    if needs_csum {
        // The field holds the pseudo-header's sum; the checksum covers it, as in the kernel's
        // skb_checksum_help (a zero result is sent as 0xffff, its other form).
        let sum = match !fold(&frame[start..]) {
            0 => 0xffff,
            s => s,
        };
        frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }
    Carried::Bare(frame)
}

/// The ones' complement sum of `data` as big-endian 16-bit words, folded.
fn fold(data: &[u8]) -> u16 {
    let mut sum: u64 = data
        .chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Checks a packet that came from a peer before it is given to the TAP port: a bare frame must
/// hold an Ethernet header; an offload header must have known flags and segmentation types
/// only, a segment size exactly when segmented, and a checksum position inside the frame.
pub fn check(carried: Carried<'_>) -> Result<(), SleeveError> {
    let packet = match carried {
        Carried::Bare(f) if f.len() < super::codec::MIN_FRAME => {
            return Err(SleeveError::ShortFrame(f.len()));
        }
        Carried::Bare(_) => return Ok(()),
        Carried::Offload(p) => p,
    };
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

    fn check_packet(p: &[u8]) -> Result<(), SleeveError> {
        check(Carried::Offload(p))
    }

    /// An Ethernet + IPv4 + UDP frame carrying `payload`, its UDP checksum left for the NIC
    /// (the field holds the pseudo-header's folded sum, as the kernel leaves it).
    fn udp_needing_checksum(payload: &[u8]) -> (Vec<u8>, u16) {
        let (src, dst) = ([10, 32, 0, 1], [10, 32, 0, 2]);
        let udp_len = (8 + payload.len()) as u16;
        let mut f = vec![0xff; 12];
        f.extend([0x08, 0x00]);
        f.extend([0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        f.extend(src);
        f.extend(dst);
        f.extend([0x30, 0x39, 0x13, 0x88]);
        f.extend(udp_len.to_be_bytes());
        let mut pseudo = [src, dst].concat();
        pseudo.extend([0, 17]);
        pseudo.extend(udp_len.to_be_bytes());
        f.extend(fold(&pseudo).to_be_bytes());
        f.extend_from_slice(payload);
        let h = VnetHeader {
            flags: F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VnetHeader::PLAIN
        };
        let mut p = h.encode().to_vec();
        p.extend(f);
        (p, fold(&pseudo))
    }

    #[test]
    fn a_single_frame_gets_its_checksum_and_crosses_bare() {
        for payload in [&b"odd-length payload!"[..], b"even payload"] {
            let (mut p, pseudo) = udp_needing_checksum(payload);
            let Carried::Bare(frame) = settle(&mut p) else {
                panic!("a single frame must cross bare");
            };
            // Verifying as a receiver does: pseudo-header + segment sums to all ones.
            let mut whole = pseudo.to_be_bytes().to_vec();
            whole.extend_from_slice(&frame[34..]);
            assert_eq!(fold(&whole), 0xffff, "{payload:?}");
            assert_ne!(&frame[40..42], &[0, 0]);
            let c = Carried::Bare(frame);
            assert_eq!(c.header(), VnetHeader::PLAIN.encode());
            assert_eq!(check(c), Ok(()));
        }
        let mut tso = packet(
            VnetHeader {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV4,
                hdr_len: 66,
                gso_size: 1398,
                csum_start: 34,
                csum_offset: 16,
            },
            3000,
        );
        let before = tso.clone();
        assert_eq!(settle(&mut tso), Carried::Offload(&before));
        assert_eq!(Carried::Offload(&before).frame().len(), 3000);
        let mut bad = packet(
            VnetHeader {
                flags: F_NEEDS_CSUM,
                csum_start: 50,
                csum_offset: 16,
                ..VnetHeader::PLAIN
            },
            60,
        );
        assert!(matches!(settle(&mut bad), Carried::Offload(_)));
        assert_eq!(
            check(Carried::Bare(&[0; 13])),
            Err(SleeveError::ShortFrame(13))
        );
    }

    #[test]
    fn plain_and_segmented_packets_pass_and_odd_ones_do_not() {
        assert_eq!(check_packet(&packet(VnetHeader::PLAIN, 60)), Ok(()));
        let tso = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1398,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(check_packet(&packet(tso, 60_000)), Ok(()));
        assert_eq!(
            check_packet(&packet(
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
                matches!(
                    check_packet(&packet(h, 60_000)),
                    Err(SleeveError::BadOffload(..))
                ),
                "{h:?} accepted"
            );
        }
        assert_eq!(
            check_packet(&packet(VnetHeader::PLAIN, 13)),
            Err(SleeveError::ShortFrame(13))
        );
        assert_eq!(check_packet(&[0; 9]), Err(SleeveError::ShortFrame(9)));
    }

    proptest! {
        #[test]
        fn header_round_trips(flags: u8, gso_type: u8, hdr_len: u16, gso_size: u16, csum_start: u16, csum_offset: u16) {
            let h = VnetHeader { flags, gso_type, hdr_len, gso_size, csum_start, csum_offset };
            prop_assert_eq!(VnetHeader::decode(&h.encode()), Some(h));
        }

        #[test]
        fn check_never_panics(d in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = check_packet(&d);
            let _ = check(Carried::Bare(&d));
            let mut d = d;
            let _ = settle(&mut d);
        }
    }
}
