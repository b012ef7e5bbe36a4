//! The sleeve's receive path on arbitrary bytes: an unencrypted and a sealed codec decode the
//! datagram, and the path probe decoder reads it as a frame. Must never panic, and a sealed
//! codec must never accept bytes it did not seal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_router::mesh::PeerName;
use weft_router::path::probe;
use weft_router::sleeve::codec::Codec;
use weft_router::sleeve::{Session, SessionConfig};

fuzz_target!(|data: &[u8]| {
    let _ = Codec::Plain.decode(data);
    let mut sealed = Codec::Sealed(Box::new(Session::new(
        &[3u8; 64],
        PeerName(1),
        PeerName(2),
        SessionConfig::default(),
    )));
    assert!(sealed.decode(data).is_err(), "forged datagram accepted");
    let _ = probe::decode(data);
});
