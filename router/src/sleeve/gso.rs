//! UDP segmentation offloads, the sans-IO part. Sending: outgoing datagrams are grouped into
//! GSO trains ([`plan`]), runs of consecutive datagrams to the same peer, all of one size but
//! the last (which may be shorter), that the kernel cuts apart again (`UDP_SEGMENT`), so one
//! `sendmmsg` entry carries up to [`MAX_SEGMENTS`] datagrams. Receiving: a buffer the kernel
//! coalesced (`UDP_GRO`) is cut back into its datagrams ([`segments`]).

use std::net::SocketAddr;
use std::ops::Range;

/// Most datagrams in one train (the kernel's `UDP_MAX_SEGMENTS` on older kernels).
pub const MAX_SEGMENTS: usize = 64;

/// The trains `items` are sent in, in order, covering every item once. A train of one is a
/// plain datagram. A datagram longer than `max_segment` (none when GSO is off) travels alone,
/// and a train's bytes stay within `max_bytes` (one UDP payload).
pub fn plan(
    items: &[(SocketAddr, Vec<u8>)],
    max_segment: usize,
    max_bytes: usize,
) -> Vec<Range<usize>> {
    let mut trains = Vec::new();
    let mut start = 0;
    while start < items.len() {
        let (addr, first) = &items[start];
        let segment = first.len();
        let mut end = start + 1;
        let mut bytes = segment;
        if segment <= max_segment && segment > 0 {
            while end < items.len() && end - start < MAX_SEGMENTS {
                let (to, d) = &items[end];
                if to != addr || d.len() > segment || d.is_empty() || bytes + d.len() > max_bytes {
                    break;
                }
                bytes += d.len();
                end += 1;
                if d.len() < segment {
                    // A shorter datagram can only close a train.
                    break;
                }
            }
        }
        trains.push(start..end);
        start = end;
    }
    trains
}

/// The datagrams in a received buffer: pieces of `segment` bytes (the last may be shorter)
/// when the kernel coalesced several, else the whole buffer (`segment` 0), even an empty one.
pub fn segments(buf: &mut [u8], segment: usize) -> impl Iterator<Item = &mut [u8]> {
    let size = if segment == 0 { usize::MAX } else { segment };
    let mut rest = Some(buf);
    std::iter::from_fn(move || {
        let buf = rest.take()?;
        if buf.len() <= size {
            return Some(buf);
        }
        let (head, tail) = buf.split_at_mut(size);
        rest = Some(tail);
        Some(head)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(peer: u8, len: usize) -> (SocketAddr, Vec<u8>) {
        (
            SocketAddr::from(([198, 18, 0, peer], 6783)),
            vec![peer; len],
        )
    }

    #[test]
    fn same_peer_same_size_rides_together_and_a_shorter_one_closes() {
        let items = vec![
            item(1, 1400),
            item(1, 1400),
            item(1, 900),
            item(1, 1400),
            item(2, 1400),
            item(2, 1400),
            item(1, 60),
            item(1, 1500),
        ];
        assert_eq!(
            plan(&items, 65_507, 65_507),
            vec![0..3, 3..4, 4..6, 6..7, 7..8]
        );
        assert_eq!(
            plan(&items, 1000, 65_507),
            vec![0..1, 1..2, 2..3, 3..4, 4..5, 5..6, 6..7, 7..8],
            "segments above the limit travel alone"
        );
        let many: Vec<_> = (0..150).map(|_| item(3, 100)).collect();
        assert_eq!(plan(&many, 65_507, 65_507), vec![0..64, 64..128, 128..150]);
        let big: Vec<_> = (0..5).map(|_| item(3, 30_000)).collect();
        assert_eq!(plan(&big, 65_507, 65_507), vec![0..2, 2..4, 4..5]);
        assert!(plan(&[], 1500, 65_507).is_empty());
    }

    #[test]
    fn coalesced_buffers_split_into_their_datagrams() {
        let mut buf: Vec<u8> = (0..10).collect();
        let got: Vec<Vec<u8>> = segments(&mut buf, 4).map(|d| d.to_vec()).collect();
        assert_eq!(got, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
        assert_eq!(segments(&mut buf, 0).count(), 1);
        assert_eq!(segments(&mut buf, 10).count(), 1);
        assert_eq!(
            segments(&mut [], 0).map(|d| d.len()).collect::<Vec<_>>(),
            [0]
        );
    }

    proptest! {
        #[test]
        fn trains_cover_everything_in_order_and_keep_the_rules(
            spec in proptest::collection::vec((1u8..4, 1usize..3000), 0..300),
            max_segment in 0usize..4000,
        ) {
            let items: Vec<_> = spec.iter().map(|&(p, l)| item(p, l)).collect();
            let trains = plan(&items, max_segment, 65_507);
            let mut next = 0;
            for t in &trains {
                prop_assert_eq!(t.start, next);
                prop_assert!(t.end > t.start && t.len() <= MAX_SEGMENTS);
                next = t.end;
                let train = &items[t.clone()];
                if train.len() > 1 {
                    let seg = train[0].1.len();
                    prop_assert!(seg <= max_segment);
                    prop_assert!(train.iter().all(|(a, _)| *a == train[0].0));
                    let (last, rest) = train.split_last().unwrap();
                    prop_assert!(rest.iter().all(|(_, d)| d.len() == seg));
                    prop_assert!(last.1.len() <= seg);
                    prop_assert!(train.iter().map(|(_, d)| d.len()).sum::<usize>() <= 65_507);
                }
            }
            prop_assert_eq!(next, items.len());
        }
    }
}
