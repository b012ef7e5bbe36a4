//! The DNS request path on arbitrary bytes: decode as hickory's server does, plan the answer
//! from a small table, encode within the client's size limit. Must never panic.
#![no_main]

use hickory_proto::rr::{LowerName, Name};
use hickory_proto::xfer::Protocol;
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use weft_router::dns::answer::{Outcome, Zone, handle_bytes};
use weft_router::dns::{Fqdn, Store};
use weft_router::mesh::PeerName;

fuzz_target!(|data: &[u8]| {
    let zone = Zone {
        domain: LowerName::from(Name::from_ascii("weft.local.").expect("static name")),
        ttl: 1,
        clients: "10.32.0.0/12".parse().expect("static range"),
    };
    let mut store = Store::new(PeerName(1));
    let name = Fqdn::parse("web.weft.local").expect("static name");
    store.add(&name, "10.32.0.1".parse().expect("static address"), "o");
    let tables = store.tables();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    for proto in [Protocol::Udp, Protocol::Tcp] {
        if let Outcome::Reply(bytes) = handle_bytes(
            &zone,
            &tables,
            data,
            "10.32.0.7".parse().expect("static"),
            proto,
            &mut rng,
        ) && proto == Protocol::Udp
        {
            assert!(bytes.len() <= 65535);
        }
    }
});
