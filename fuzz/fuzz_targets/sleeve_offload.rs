//! The sleeve's offload paths on arbitrary bytes: cutting a TCP super-segment read from the TAP
//! port into frames ([`tso::segment`]) and cutting a buffer the kernel coalesced with UDP GRO
//! back into datagrams ([`gso::segments`]). Must never panic; a cut super-segment's frames
//! cover exactly what was appended, a refused one appends nothing, and the GRO pieces cover
//! the whole buffer, none longer than the segment size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_router::sleeve::{gso, tso};

fuzz_target!(|data: &[u8]| {
    let (mut out, mut lens) = (Vec::new(), Vec::new());
    match tso::segment(data, &mut out, &mut lens) {
        Ok(()) => assert_eq!(lens.iter().sum::<usize>(), out.len()),
        Err(_) => assert!(out.is_empty() && lens.is_empty()),
    }
    if let [hi, lo, rest @ ..] = data {
        let segment = usize::from(u16::from_be_bytes([*hi, *lo]));
        let mut buf = rest.to_vec();
        let mut total = 0;
        for piece in gso::segments(&mut buf, segment) {
            assert!(segment == 0 || piece.len() <= segment);
            total += piece.len();
        }
        assert_eq!(total, rest.len());
    }
});
