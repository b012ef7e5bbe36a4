//! The request path, without sockets: what to answer for one request, from the lookup tables.
//!
//! [`plan`] decides (local answer, refusal, or forward upstream); [`response`] shapes a
//! [`Reply`] into the message hickory sends; [`handle_bytes`] runs the whole path on raw bytes
//! (decode, plan, encode) for the fuzz target and tests.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Header, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncoder};
use hickory_proto::xfer::Protocol;
use hickory_server::authority::{MessageRequest, MessageResponse, MessageResponseBuilder};
use ipnetwork::Ipv4Network;
use rand::Rng;
use rand::seq::SliceRandom;

use super::store::Tables;

/// Largest UDP answer without EDNS (RFC 1035).
pub const UDP_PLAIN_MAX: usize = 512;
/// The EDNS version this server speaks.
const EDNS_VERSION: u8 = 0;

/// The zone weft answers for and who may use the forwarder.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The weft domain, `weft.local.` by default.
    pub domain: LowerName,
    /// TTL of every answer, in seconds.
    pub ttl: u32,
    /// Clients allowed to have names forwarded upstream (the overlay range); loopback is too.
    pub clients: Ipv4Network,
}

impl Zone {
    fn may_forward(&self, src: IpAddr) -> bool {
        match src {
            IpAddr::V4(v4) => self.clients.contains(v4) || v4.is_loopback(),
            IpAddr::V6(v6) => v6.is_loopback(),
        }
    }
}

/// A complete answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Response code.
    pub code: ResponseCode,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section.
    pub authority: Vec<Record>,
    /// Additional section (without OPT).
    pub additionals: Vec<Record>,
    /// Whether weft is authoritative (names of the weft domain and the overlay's PTRs).
    pub authoritative: bool,
    /// Whether the answer did not fit and the client should retry over TCP.
    pub truncated: bool,
}

impl Reply {
    /// An answer with no records and code `code`.
    pub fn empty(code: ResponseCode, authoritative: bool) -> Reply {
        Reply {
            code,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
            authoritative,
            truncated: false,
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Answer this.
    Answer(Reply),
    /// Ask the upstream servers.
    Forward,
}

/// Decides the answer to `request` from `src` over `protocol`.
pub fn plan(
    zone: &Zone,
    tables: &Tables,
    request: &MessageRequest,
    src: IpAddr,
    protocol: Protocol,
    rng: &mut impl Rng,
) -> Plan {
    if request.message_type() != MessageType::Query {
        return Plan::Answer(Reply::empty(ResponseCode::FormErr, false));
    }
    if request.op_code() != OpCode::Query {
        return Plan::Answer(Reply::empty(ResponseCode::NotImp, false));
    }
    if request.edns().is_some_and(|e| e.version() > EDNS_VERSION) {
        return Plan::Answer(Reply::empty(ResponseCode::BADVERS, false));
    }
    let [query] = request.queries() else {
        return Plan::Answer(Reply::empty(ResponseCode::FormErr, false));
    };
    let name = query.name();
    let qtype = query.query_type();
    let local = zone.domain.zone_of(name);
    let reverse = if qtype == RecordType::PTR || qtype == RecordType::ANY {
        reverse_address(name)
    } else {
        None
    };
    let ours = local || reverse.is_some_and(|ip| is_overlay(zone, tables, ip));
    if !ours {
        if !zone.may_forward(src) {
            return Plan::Answer(Reply::empty(ResponseCode::Refused, false));
        }
        return Plan::Forward;
    }
    if query.query_class() != DNSClass::IN && query.query_class() != DNSClass::ANY {
        return Plan::Answer(Reply::empty(ResponseCode::Refused, false));
    }
    let owner: Name = query.original().name().clone();
    let mut reply = Reply::empty(ResponseCode::NoError, true);
    let exists = if let Some(ip) = reverse {
        let names = tables.names(ip);
        for n in names {
            if let Ok(target) = Name::from_ascii(n) {
                reply.answers.push(Record::from_rdata(
                    owner.clone(),
                    zone.ttl,
                    RData::PTR(PTR(target)),
                ));
            }
        }
        !names.is_empty()
    } else {
        let key = name.to_string();
        let addrs = tables.addresses(&key);
        for addr in addrs {
            let rdata = match (addr, qtype) {
                (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => RData::A(A(*v4)),
                (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(*v6)),
                _ => continue,
            };
            reply
                .answers
                .push(Record::from_rdata(owner.clone(), zone.ttl, rdata));
        }
        reply.answers.shuffle(rng);
        !addrs.is_empty() || *name == zone.domain
    };
    if !exists {
        reply.code = ResponseCode::NXDomain;
    }
    if estimated_len(request, &reply) > max_len(request, protocol) {
        reply.answers.clear();
        reply.truncated = true;
    }
    Plan::Answer(reply)
}

/// Whether `ip` is one weft answers PTR queries for: in the overlay range or named in the table.
fn is_overlay(zone: &Zone, tables: &Tables, ip: IpAddr) -> bool {
    !tables.names(ip).is_empty() || matches!(ip, IpAddr::V4(v4) if zone.clients.contains(v4))
}

/// The address of a full `in-addr.arpa.` / `ip6.arpa.` name.
fn reverse_address(name: &LowerName) -> Option<IpAddr> {
    let net = name.parse_arpa_name().ok()?;
    let full = match net.addr() {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    (net.prefix_len() == full).then(|| net.addr())
}

/// The largest answer the client takes over `protocol`.
pub fn max_len(request: &MessageRequest, protocol: Protocol) -> usize {
    match protocol {
        Protocol::Udp => request.edns().map_or(UDP_PLAIN_MAX, |e| {
            usize::from(e.max_payload()).max(UDP_PLAIN_MAX)
        }),
        _ => usize::from(u16::MAX),
    }
}

/// An upper bound of the encoded size of `reply` to `request` (answer names are the question's,
/// so they compress to a 2-byte pointer).
fn estimated_len(request: &MessageRequest, reply: &Reply) -> usize {
    let question: usize = request.queries().iter().map(|q| q.name().len() + 6).sum();
    let opt = if request.edns().is_some() { 11 } else { 0 };
    let answers: usize = reply
        .answers
        .iter()
        .map(|r| {
            2 + 10
                + match r.data() {
                    RData::A(_) => 4,
                    RData::AAAA(_) => 16,
                    RData::PTR(p) => p.0.len() + 2,
                    _ => 512,
                }
        })
        .sum();
    12 + question + opt + answers
}

/// The EDNS section of the answer to `request`: present when the request had one.
pub fn response_edns(request: &MessageRequest) -> Option<Edns> {
    request.edns().map(|req| {
        let mut edns = Edns::new();
        edns.set_max_payload(req.max_payload().max(UDP_PLAIN_MAX as u16));
        edns.set_version(EDNS_VERSION);
        edns
    })
}

/// The header of the answer to `request`.
pub fn response_header(request: &MessageRequest, reply: &Reply) -> Header {
    let mut header = Header::response_from_request(request.header());
    header.set_response_code(reply.code);
    header.set_authoritative(reply.authoritative);
    header.set_truncated(reply.truncated);
    header.set_recursion_available(true);
    header
}

/// The message hickory encodes for `reply`.
pub fn response<'q, 'a>(
    request: &'q MessageRequest,
    reply: &'a Reply,
) -> MessageResponse<
    'q,
    'a,
    std::slice::Iter<'a, Record>,
    std::slice::Iter<'a, Record>,
    std::iter::Empty<&'a Record>,
    std::slice::Iter<'a, Record>,
> {
    let mut builder = MessageResponseBuilder::from_message_request(request);
    if let Some(edns) = response_edns(request) {
        builder.edns(edns);
    }
    builder.build(
        response_header(request, reply),
        reply.answers.iter(),
        reply.authority.iter(),
        std::iter::empty(),
        reply.additionals.iter(),
    )
}

/// The outcome of [`handle_bytes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// These bytes go back to the client.
    Reply(Vec<u8>),
    /// The request goes upstream.
    Forward,
    /// The bytes are not a DNS request: nothing is sent (as hickory's server does).
    Drop,
}

/// The whole local request path on raw bytes: decode as hickory's server does, [`plan`], and
/// encode with the client's size limit.
pub fn handle_bytes(
    zone: &Zone,
    tables: &Tables,
    bytes: &[u8],
    src: IpAddr,
    protocol: Protocol,
    rng: &mut impl Rng,
) -> Outcome {
    let Ok(request) = MessageRequest::from_bytes(bytes) else {
        return Outcome::Drop;
    };
    let reply = match plan(zone, tables, &request, src, protocol, rng) {
        Plan::Answer(reply) => reply,
        Plan::Forward => return Outcome::Forward,
    };
    let mut buf = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_max_size(u16::try_from(max_len(&request, protocol)).unwrap_or(u16::MAX));
    match response(&request, &reply).destructive_emit(&mut encoder) {
        Ok(_) => Outcome::Reply(buf),
        Err(_) => Outcome::Drop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::name::Fqdn;
    use crate::dns::store::Store;
    use crate::mesh::PeerName;
    use hickory_proto::op::{Message, Query};
    use hickory_proto::serialize::binary::BinEncodable;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use std::net::Ipv4Addr;

    fn zone() -> Zone {
        Zone {
            domain: LowerName::from(Name::from_ascii("weft.local.").unwrap()),
            ttl: 1,
            clients: "10.32.0.0/12".parse().unwrap(),
        }
    }

    fn tables(names: &[(&str, &str)]) -> Tables {
        let mut s = Store::new(PeerName(1));
        for (n, a) in names {
            s.add(&Fqdn::parse(n).unwrap(), a.parse().unwrap(), "o");
        }
        (*s.tables()).clone()
    }

    fn query(name: &str, t: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(7);
        m.set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_bytes().unwrap()
    }

    fn ask(t: &Tables, bytes: &[u8], src: &str, proto: Protocol) -> Outcome {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        handle_bytes(&zone(), t, bytes, src.parse().unwrap(), proto, &mut rng)
    }

    fn answer(t: &Tables, bytes: &[u8], proto: Protocol) -> Message {
        match ask(t, bytes, "10.32.0.7", proto) {
            Outcome::Reply(b) => Message::from_bytes(&b).unwrap(),
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[test]
    fn a_aaaa_case_insensitive_nxdomain_nodata() {
        let t = tables(&[
            ("web.weft.local", "10.32.0.1"),
            ("web.weft.local", "10.32.0.2"),
            ("six.weft.local", "fd00::6"),
        ]);
        let m = answer(
            &t,
            &query("WEB.Weft.Local.", RecordType::A, None),
            Protocol::Udp,
        );
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.authoritative());
        assert_eq!(m.id(), 7);
        let mut got: Vec<_> = m.answers().iter().map(|r| r.data().clone()).collect();
        got.sort_by_key(|d| d.to_string());
        assert_eq!(
            got,
            vec![
                RData::A(A(Ipv4Addr::new(10, 32, 0, 1))),
                RData::A(A(Ipv4Addr::new(10, 32, 0, 2)))
            ]
        );
        assert!(m.answers().iter().all(|r| r.ttl() == 1));
        assert_eq!(m.answers()[0].name().to_string(), "WEB.Weft.Local.");

        let m = answer(
            &t,
            &query("six.weft.local.", RecordType::AAAA, None),
            Protocol::Udp,
        );
        assert_eq!(m.answers().len(), 1);
        let m = answer(
            &t,
            &query("six.weft.local.", RecordType::A, None),
            Protocol::Udp,
        );
        assert_eq!(m.response_code(), ResponseCode::NoError, "NODATA");
        assert!(m.answers().is_empty());
        let m = answer(
            &t,
            &query("nope.weft.local.", RecordType::A, None),
            Protocol::Udp,
        );
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        let m = answer(
            &t,
            &query("weft.local.", RecordType::A, None),
            Protocol::Udp,
        );
        assert_eq!(m.response_code(), ResponseCode::NoError, "the apex exists");
    }

    #[test]
    fn ptr_for_overlay_forward_elsewhere_refuse_outsiders() {
        let t = tables(&[("web.weft.local", "10.32.0.1")]);
        let m = answer(
            &t,
            &query("1.0.32.10.in-addr.arpa.", RecordType::PTR, None),
            Protocol::Udp,
        );
        assert_eq!(m.answers().len(), 1);
        assert_eq!(m.answers()[0].data().to_string(), "web.weft.local.");
        let m = answer(
            &t,
            &query("9.0.32.10.in-addr.arpa.", RecordType::PTR, None),
            Protocol::Udp,
        );
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        let outside = query("example.com.", RecordType::A, None);
        assert_eq!(
            ask(&t, &outside, "10.32.0.7", Protocol::Udp),
            Outcome::Forward
        );
        assert_eq!(
            ask(&t, &outside, "127.0.0.1", Protocol::Udp),
            Outcome::Forward
        );
        let Outcome::Reply(b) = ask(&t, &outside, "192.168.1.5", Protocol::Udp) else {
            panic!("an outsider gets an answer");
        };
        assert_eq!(
            Message::from_bytes(&b).unwrap().response_code(),
            ResponseCode::Refused
        );
        let ptr8 = query("8.8.8.8.in-addr.arpa.", RecordType::PTR, None);
        assert_eq!(ask(&t, &ptr8, "10.32.0.7", Protocol::Udp), Outcome::Forward);
        let Outcome::Reply(b) = ask(&t, &ptr8, "192.168.1.5", Protocol::Udp) else {
            panic!("an outsider gets an answer");
        };
        assert_eq!(
            Message::from_bytes(&b).unwrap().response_code(),
            ResponseCode::Refused
        );
    }

    #[test]
    fn large_answers_truncate_over_udp_only() {
        let addrs: Vec<String> = (1..=130).map(|i| format!("10.32.1.{i}")).collect();
        let pairs: Vec<(&str, &str)> = addrs
            .iter()
            .map(|a| ("big.weft.local", a.as_str()))
            .collect();
        let t = tables(&pairs);
        let q = query("big.weft.local.", RecordType::A, None);
        let m = answer(&t, &q, Protocol::Udp);
        assert!(m.truncated());
        assert!(m.answers().is_empty());
        let m = answer(
            &t,
            &query("big.weft.local.", RecordType::A, Some(1232)),
            Protocol::Udp,
        );
        assert!(m.truncated(), "2 000+ bytes do not fit 1232");
        let m = answer(
            &t,
            &query("big.weft.local.", RecordType::A, Some(4096)),
            Protocol::Udp,
        );
        assert!(!m.truncated());
        assert_eq!(m.answers().len(), 130);
        assert_eq!(m.extensions().as_ref().map(|e| e.max_payload()), Some(4096));
        let m = answer(&t, &q, Protocol::Tcp);
        assert!(!m.truncated());
        assert_eq!(m.answers().len(), 130);
    }

    #[test]
    fn round_robin_order_varies() {
        let addrs: Vec<String> = (1..=5).map(|i| format!("10.32.0.{i}")).collect();
        let pairs: Vec<(&str, &str)> = addrs
            .iter()
            .map(|a| ("rr.weft.local", a.as_str()))
            .collect();
        let t = tables(&pairs);
        let q = MessageRequest::from_bytes(&query("rr.weft.local.", RecordType::A, None)).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut orders = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let Plan::Answer(r) = plan(
                &zone(),
                &t,
                &q,
                "10.32.0.9".parse().unwrap(),
                Protocol::Udp,
                &mut rng,
            ) else {
                panic!("local name");
            };
            orders.insert(
                r.answers
                    .iter()
                    .map(|r| r.data().to_string())
                    .collect::<Vec<_>>(),
            );
        }
        assert!(orders.len() > 1, "order never changed");
    }

    #[test]
    fn edns_version_and_opcode() {
        let t = tables(&[]);
        let mut m = Message::new();
        m.add_query(Query::query(
            Name::from_ascii("a.weft.local.").unwrap(),
            RecordType::A,
        ));
        let mut e = Edns::new();
        e.set_version(1);
        m.set_edns(e);
        let got = answer(&t, &m.to_bytes().unwrap(), Protocol::Udp);
        // 16 is BADVERS in an OPT answer (hickory names the shared code BADSIG).
        assert_eq!(
            u16::from(got.response_code()),
            u16::from(ResponseCode::BADVERS)
        );
        let mut m = Message::new();
        m.set_op_code(OpCode::Update);
        let got = answer(&t, &m.to_bytes().unwrap(), Protocol::Udp);
        assert_eq!(got.response_code(), ResponseCode::NotImp);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let t = tables(&[("web.weft.local", "10.32.0.1")]);
            let _ = ask(&t, &bytes, "10.32.0.7", Protocol::Udp);
            let _ = ask(&t, &bytes, "192.168.0.1", Protocol::Tcp);
        }

        #[test]
        fn mutated_queries_never_panic(flips in proptest::collection::vec((0usize..64, any::<u8>()), 1..8)) {
            let t = tables(&[("web.weft.local", "10.32.0.1")]);
            let mut q = query("web.weft.local.", RecordType::A, Some(1232));
            for (i, b) in flips {
                let n = q.len();
                q[i % n] ^= b;
            }
            if let Outcome::Reply(b) = ask(&t, &q, "10.32.0.7", Protocol::Udp) {
                prop_assert!(b.len() <= 1232);
            }
        }
    }
}
