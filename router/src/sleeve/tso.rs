//! TCP segmentation in userspace: a TCP super-segment from the TAP port (offload header with
//! `GSO_TCPV4`/`GSO_TCPV6`, up to 64 KiB) is cut into the frames a NIC would have sent — the
//! headers copied, the payload cut at the segment size, IPv4 total length, identification and
//! header checksum, IPv6 payload length, TCP sequence number, flags (FIN and PSH on the last
//! segment only, CWR on the first only) and checksum set for each — so every sleeve datagram
//! fits the underlay MTU and none is IP-fragmented. Sans-IO.

use super::error::SleeveError;
use super::vnet::{GSO_ECN, GSO_TCPV4, GSO_TCPV6, VNET_HDR_LEN, VnetHeader};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const PROTO_TCP: u8 = 6;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Where a super-segment's headers are.
struct Layout {
    /// Offset of the IP header.
    ip: usize,
    /// Offset of the TCP header.
    tcp: usize,
    /// Offset of the payload (the headers' total length).
    payload: usize,
    /// IPv4 (else IPv6).
    v4: bool,
}

/// Whether `packet` (offload header, then frame) is a TCP super-segment [`segment`] cuts.
pub fn is_tcp_super_segment(packet: &[u8]) -> bool {
    VnetHeader::decode(packet)
        .is_some_and(|h| matches!(h.gso_type & !GSO_ECN, GSO_TCPV4 | GSO_TCPV6) && h.gso_size > 0)
}

/// Cuts the TCP super-segment `packet` (offload header, then frame) into whole frames with
/// their checksums done, appended to `out` one after the other; pushes each frame's length to
/// `lens`. A packet this cannot cut (not TCP over IPv4 or IPv6 without extension headers,
/// inconsistent lengths) is an error and leaves `out` and `lens` as they were.
pub fn segment(packet: &[u8], out: &mut Vec<u8>, lens: &mut Vec<usize>) -> Result<(), SleeveError> {
    let bad = |h: &VnetHeader| SleeveError::BadOffload(h.flags, h.gso_type);
    let h = VnetHeader::decode(packet).ok_or(SleeveError::ShortFrame(packet.len()))?;
    let frame = &packet[VNET_HDR_LEN..];
    let mss = usize::from(h.gso_size);
    let layout = layout(frame).ok_or_else(|| bad(&h))?;
    let wants_v4 = h.gso_type & !GSO_ECN == GSO_TCPV4;
    if mss == 0 || layout.v4 != wants_v4 {
        return Err(bad(&h));
    }
    let ip_len = if layout.v4 {
        usize::from(be16(frame, layout.ip + 2))
    } else {
        40 + usize::from(be16(frame, layout.ip + 4))
    };
    // Ethernet padding is allowed after the IP packet, nothing is allowed to be missing.
    if layout.ip + ip_len > frame.len() || layout.ip + ip_len < layout.payload {
        return Err(bad(&h));
    }
    let headers = &frame[..layout.payload];
    let payload = &frame[layout.payload..layout.ip + ip_len];
    let seq =
        (u32::from(be16(frame, layout.tcp + 4)) << 16) | u32::from(be16(frame, layout.tcp + 6));
    let id = be16(frame, layout.ip + 4);
    let flags = frame[layout.tcp + 13];
    let count = payload.len().div_ceil(mss).max(1);
    out.reserve(count * headers.len() + payload.len());
    for (i, chunk) in payload
        .chunks(mss)
        .chain(payload.is_empty().then_some(&[][..]))
        .enumerate()
    {
        let start = out.len();
        out.extend_from_slice(headers);
        out.extend_from_slice(chunk);
        let seg = &mut out[start..];
        let last = i + 1 == count;
        let tcp_len = layout.payload - layout.tcp + chunk.len();
        if layout.v4 {
            let total = (layout.payload - layout.ip + chunk.len()) as u16;
            put16(seg, layout.ip + 2, total);
            put16(seg, layout.ip + 4, id.wrapping_add(i as u16));
            put16(seg, layout.ip + 10, 0);
            let ihl = layout.tcp - layout.ip;
            let sum = !fold(sum(&seg[layout.ip..layout.ip + ihl]));
            put16(seg, layout.ip + 10, sum);
        } else {
            put16(seg, layout.ip + 4, tcp_len as u16);
        }
        let t = layout.tcp;
        let offset = (i * mss) as u32;
        seg[t + 4..t + 8].copy_from_slice(&seq.wrapping_add(offset).to_be_bytes());
        let mut f = flags;
        if !last {
            f &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            f &= !TCP_CWR;
        }
        seg[t + 13] = f;
        put16(seg, t + 16, 0);
        let pseudo = pseudo_sum(&seg[layout.ip..], layout.v4, tcp_len);
        put16(seg, t + 16, !fold(pseudo + sum(&seg[t..])));
        lens.push(out.len() - start);
    }
    Ok(())
}

/// The headers of an Ethernet frame carrying TCP over IPv4 (any options) or IPv6 (no extension
/// headers), with at most one VLAN tag.
fn layout(frame: &[u8]) -> Option<Layout> {
    let mut ip = 14;
    let mut ethertype = be16(frame.get(..14)?, 12);
    if ethertype == ETHERTYPE_VLAN {
        ethertype = be16(frame.get(..18)?, 16);
        ip = 18;
    }
    let (v4, tcp) = match ethertype {
        ETHERTYPE_IPV4 => {
            let ver_ihl = *frame.get(ip)?;
            let ihl = usize::from(ver_ihl & 0x0f) * 4;
            // Not a fragment, TCP, and a whole header.
            let frag = be16(frame.get(..ip + 20)?, ip + 6) & 0x3fff;
            if ver_ihl >> 4 != 4 || ihl < 20 || frag != 0 || frame[ip + 9] != PROTO_TCP {
                return None;
            }
            (true, ip + ihl)
        }
        ETHERTYPE_IPV6 => {
            if frame.get(ip)? >> 4 != 6 || *frame.get(ip + 6)? != PROTO_TCP {
                return None;
            }
            (false, ip + 40)
        }
        _ => return None,
    };
    let doff = usize::from(frame.get(tcp + 12)? >> 4) * 4;
    if doff < 20 || tcp + doff > frame.len() {
        return None;
    }
    Some(Layout {
        ip,
        tcp,
        payload: tcp + doff,
        v4,
    })
}

/// The sum of the TCP pseudo-header of the IP packet `ip` for a TCP length of `tcp_len`.
fn pseudo_sum(ip: &[u8], v4: bool, tcp_len: usize) -> u64 {
    let addrs = if v4 { &ip[12..20] } else { &ip[8..40] };
    sum(addrs) + u64::from(PROTO_TCP) + tcp_len as u64
}

/// The ones' complement sum of `data` as big-endian 16-bit words, unfolded (read 32 bits at a
/// time; `data` up to 64 KiB cannot overflow it).
fn sum(data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(4);
    let mut acc: u64 = words
        .by_ref()
        .map(|w| u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]])))
        .sum();
    let rest = words.remainder();
    for (k, b) in rest.iter().enumerate() {
        acc += u64::from(*b) << (if k % 2 == 0 { 8 } else { 0 });
    }
    acc
}

/// Folds a sum to 16 bits.
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sleeve::vnet::F_NEEDS_CSUM;
    use proptest::prelude::*;

    /// A TAP super-segment: offload header, Ethernet (VLAN-tagged when `vlan`), IPv4 or IPv6,
    /// TCP with `opts` option bytes and `flags`, then `payload`; checksums left undone.
    fn super_segment(
        v4: bool,
        vlan: bool,
        opts: usize,
        flags: u8,
        mss: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        if vlan {
            f.extend([0x81, 0x00, 0x00, 0x07]);
        }
        let tcp_len = 20 + opts + payload.len();
        if v4 {
            f.extend([0x08, 0x00, 0x45, 0]);
            f.extend(((20 + tcp_len) as u16).to_be_bytes());
            f.extend([
                0x12, 0x34, 0x40, 0, 64, PROTO_TCP, 0, 0, 10, 32, 0, 1, 10, 32, 0, 2,
            ]);
        } else {
            f.extend([0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend((tcp_len as u16).to_be_bytes());
            f.extend([PROTO_TCP, 64]);
            f.extend([0xfd; 16]);
            f.extend([0xfe; 16]);
        }
        f.extend([0x30, 0x39, 0x13, 0x88, 0xff, 0xff, 0xff, 0x00, 0, 0, 0, 9]);
        f.extend([
            (((20 + opts) / 4) << 4) as u8,
            flags,
            0xff,
            0xff,
            0xab,
            0xcd,
            0,
            0,
        ]);
        f.extend(std::iter::repeat_n(1u8, opts));
        f.extend_from_slice(payload);
        let h = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: if v4 { GSO_TCPV4 } else { GSO_TCPV6 },
            hdr_len: 0,
            gso_size: mss,
            csum_start: 0,
            csum_offset: 16,
        };
        let mut p = h.encode().to_vec();
        p.extend(f);
        p
    }

    fn cut(p: &[u8]) -> Vec<Vec<u8>> {
        let (mut out, mut lens) = (Vec::new(), Vec::new());
        segment(p, &mut out, &mut lens).expect("segments");
        let mut at = 0;
        lens.iter()
            .map(|&l| {
                at += l;
                out[at - l..at].to_vec()
            })
            .collect()
    }

    #[test]
    fn odd_packets_are_refused_and_leave_nothing() {
        let good = super_segment(true, false, 0, 0x18, 1000, &[7; 3000]);
        let (mut out, mut lens) = (Vec::new(), Vec::new());
        let mut v6_claimed = good.clone();
        v6_claimed[1] = GSO_TCPV6;
        let mut udp = good.clone();
        udp[VNET_HDR_LEN + 23] = 17;
        let mut short = good.clone();
        short.truncate(good.len() - 10);
        let mut zero_mss = good.clone();
        zero_mss[4..6].copy_from_slice(&[0, 0]);
        for p in [v6_claimed, udp, short, zero_mss, good[..40].to_vec()] {
            assert!(segment(&p, &mut out, &mut lens).is_err());
        }
        assert!(out.is_empty() && lens.is_empty());
        assert!(is_tcp_super_segment(&good));
        assert!(!is_tcp_super_segment(&VnetHeader::PLAIN.encode()));
    }

    proptest! {
        #[test]
        fn segments_verify_and_reassemble_to_the_original(
            v4: bool,
            vlan: bool,
            opts in (0usize..=10).prop_map(|n| n * 4),
            flags in any::<u8>(),
            mss in 1u16..2000,
            payload in proptest::collection::vec(any::<u8>(), 0..20_000),
            id_high: bool,
        ) {
            let mut p = super_segment(v4, vlan, opts, flags, mss, &payload);
            let ip = VNET_HDR_LEN + if vlan { 18 } else { 14 };
            if v4 && id_high {
                p[ip + 4] = 0xff;
                p[ip + 5] = 0xfe;
            }
            let segs = cut(&p);
            let mss = usize::from(mss);
            prop_assert_eq!(segs.len(), payload.len().div_ceil(mss).max(1));
            let ip = ip - VNET_HDR_LEN;
            let tcp = ip + if v4 { 20 } else { 40 };
            let hdrs = tcp + 20 + opts;
            let mut joined = Vec::new();
            for (i, s) in segs.iter().enumerate() {
                let last = i + 1 == segs.len();
                let body = &s[hdrs..];
                prop_assert!(body.len() <= mss);
                prop_assert!(last || body.len() == mss);
                joined.extend_from_slice(body);
                // Headers other than the fixed fields are copied.
                prop_assert_eq!(&s[..ip], &p[VNET_HDR_LEN..VNET_HDR_LEN + ip]);
                let tcp_len = s.len() - tcp;
                if v4 {
                    prop_assert_eq!(usize::from(be16(s, ip + 2)), s.len() - ip);
                    prop_assert_eq!(be16(s, ip + 4), be16(&p[VNET_HDR_LEN..], ip + 4).wrapping_add(i as u16));
                    prop_assert_eq!(fold(sum(&s[ip..tcp])), 0xffff, "IPv4 header checksum");
                } else {
                    prop_assert_eq!(usize::from(be16(s, ip + 4)), tcp_len);
                }
                let pseudo = pseudo_sum(&s[ip..], v4, tcp_len);
                prop_assert_eq!(fold(pseudo + sum(&s[tcp..])), 0xffff, "TCP checksum");
                let seq = u32::from_be_bytes(s[tcp + 4..tcp + 8].try_into().unwrap());
                prop_assert_eq!(seq, 0xffff_ff00u32.wrapping_add((i * mss) as u32));
                let f = s[tcp + 13];
                let mut want = flags;
                if !last { want &= !(TCP_FIN | TCP_PSH); }
                if i > 0 { want &= !TCP_CWR; }
                prop_assert_eq!(f, want);
                prop_assert_eq!(&s[tcp + 14..tcp + 16], &[0xff, 0xff][..], "window copied");
            }
            prop_assert_eq!(joined, payload);
        }

        #[test]
        fn garbage_never_panics(d in proptest::collection::vec(any::<u8>(), 0..200), gso in prop_oneof![Just(GSO_TCPV4), Just(GSO_TCPV6)]) {
            let mut p = VnetHeader { flags: F_NEEDS_CSUM, gso_type: gso, hdr_len: 0, gso_size: 40, csum_start: 0, csum_offset: 0 }.encode().to_vec();
            p.extend(d);
            let _ = segment(&p, &mut Vec::new(), &mut Vec::new());
        }
    }
}
