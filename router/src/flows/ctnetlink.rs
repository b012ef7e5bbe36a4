//! A small, sans-IO reader of ctnetlink (conntrack over `NETLINK_NETFILTER`): the datagrams
//! the kernel sends for conntrack events and table dumps become [`Message`]s, and
//! [`dump_request`] builds the request for a dump of the IPv4 table.
//!
//! Only what flow accounting needs is decoded: the original and reply tuples (IPv4 addresses,
//! protocol, ports), the per-direction counters (`nf_conntrack_acct=1`), the conntrack id and
//! the TCP state. Anything malformed is an error for that message only; nothing here panics on
//! input (see the property test).

use std::net::Ipv4Addr;

use super::error::FlowError;

/// Length of `struct nlmsghdr`.
const NLMSG_HDR: usize = 16;
/// Length of `struct nfgenmsg`.
const NFGEN_HDR: usize = 4;
/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`.
const NLMSG_DONE: u16 = 3;
/// `NFNL_SUBSYS_CTNETLINK`.
const SUBSYS_CTNETLINK: u16 = 1;
/// `IPCTNL_MSG_CT_NEW`.
const MSG_CT_NEW: u16 = 0;
/// `IPCTNL_MSG_CT_GET`.
const MSG_CT_GET: u16 = 1;
/// `IPCTNL_MSG_CT_DELETE`.
const MSG_CT_DELETE: u16 = 2;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_MULTI` (part of a dump).
const NLM_F_MULTI: u16 = 0x2;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_CREATE`: set on the event of a new connection.
const NLM_F_CREATE: u16 = 0x400;
/// Attribute type bits that are flags, not the type.
const NLA_TYPE_MASK: u16 = !(0x8000 | 0x4000);

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_PROTOINFO: u16 = 4;
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_ID: u16 = 12;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_COUNTERS_PACKETS: u16 = 1;
const CTA_COUNTERS_BYTES: u16 = 2;
const CTA_COUNTERS32_PACKETS: u16 = 3;
const CTA_COUNTERS32_BYTES: u16 = 4;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;

/// Multicast groups of conntrack events: `NFNLGRP_CONNTRACK_{NEW,UPDATE,DESTROY}`.
pub(crate) const EVENT_GROUPS: [u32; 3] = [1, 2, 3];

/// Conntrack's TCP state `TIME_WAIT`.
pub(crate) const TCP_TIME_WAIT: u8 = 7;
/// Conntrack's TCP state `CLOSE`.
pub(crate) const TCP_CLOSE: u8 = 8;

/// What a conntrack message reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CtKind {
    /// A new connection (event with `NLM_F_CREATE`).
    New,
    /// A change of a known connection, or one entry of a dump.
    Update,
    /// The connection left the table.
    Destroy,
}

/// One direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Tuple {
    /// Source address.
    pub(crate) src: Ipv4Addr,
    /// Destination address.
    pub(crate) dst: Ipv4Addr,
    /// IP protocol number.
    pub(crate) proto: u8,
    /// Source port (0 for protocols without ports).
    pub(crate) sport: u16,
    /// Destination port (0 for protocols without ports).
    pub(crate) dport: u16,
}

/// Packets and bytes counted in one direction (IP bytes, headers included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Packets.
    pub(crate) packets: u64,
    /// Bytes.
    pub(crate) bytes: u64,
}

/// One conntrack entry as an event or dump message describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CtEvent {
    /// New, update or destroy.
    pub(crate) kind: CtKind,
    /// The conntrack id (`CTA_ID`), when given.
    pub(crate) id: Option<u32>,
    /// The original direction (the initiator's view).
    pub(crate) orig: Tuple,
    /// Counters of the original direction, when accounting is on.
    pub(crate) counters_orig: Option<Counters>,
    /// Counters of the reply direction, when accounting is on.
    pub(crate) counters_reply: Option<Counters>,
    /// Conntrack's TCP state, for TCP.
    pub(crate) tcp_state: Option<u8>,
}

/// One netlink message of a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message {
    /// A conntrack entry of the IPv4 table.
    Conntrack(CtEvent),
    /// A conntrack entry of another family (IPv6), ignored.
    OtherFamily,
    /// The end of a dump.
    Done,
    /// An error answer (`NLMSG_ERROR` with a non-zero code: a negative errno).
    Error(i32),
    /// Anything else (acknowledgements, other subsystems).
    Other,
}

/// Splits one datagram into its netlink messages and decodes each.
pub(crate) fn parse_datagram(buf: &[u8]) -> Vec<Result<Message, FlowError>> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < NLMSG_HDR || len > rest.len() {
            out.push(Err(FlowError::Decode(format!(
                "netlink message length {len} with {} bytes left",
                rest.len()
            ))));
            break;
        }
        let ty = u16::from_ne_bytes([rest[4], rest[5]]);
        let flags = u16::from_ne_bytes([rest[6], rest[7]]);
        out.push(parse_message(ty, flags, &rest[NLMSG_HDR..len]));
        rest = &rest[align(len).min(rest.len())..];
    }
    out
}

/// The request for a dump of the IPv4 conntrack table, with sequence number `seq`.
pub(crate) fn dump_request(seq: u32) -> Vec<u8> {
    let len = (NLMSG_HDR + NFGEN_HDR) as u32;
    let mut b = Vec::with_capacity(len as usize);
    b.extend_from_slice(&len.to_ne_bytes());
    b.extend_from_slice(&((SUBSYS_CTNETLINK << 8) | MSG_CT_GET).to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
    b
}

/// Rounds up to the netlink alignment of 4 bytes.
fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn parse_message(ty: u16, flags: u16, body: &[u8]) -> Result<Message, FlowError> {
    match ty {
        NLMSG_DONE => return Ok(Message::Done),
        NLMSG_ERROR => {
            let code = body
                .get(..4)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| FlowError::Decode("short netlink error message".into()))?;
            return Ok(if code == 0 {
                Message::Other
            } else {
                Message::Error(code)
            });
        }
        _ => {}
    }
    if ty >> 8 != SUBSYS_CTNETLINK {
        return Ok(Message::Other);
    }
    let kind = match ty & 0xff {
        MSG_CT_NEW if flags & NLM_F_CREATE != 0 && flags & NLM_F_MULTI == 0 => CtKind::New,
        MSG_CT_NEW => CtKind::Update,
        MSG_CT_DELETE => CtKind::Destroy,
        _ => return Ok(Message::Other),
    };
    let family = *body
        .first()
        .ok_or_else(|| FlowError::Decode("conntrack message without nfgenmsg".into()))?;
    if i32::from(family) != libc::AF_INET {
        return Ok(Message::OtherFamily);
    }
    let attrs = body
        .get(NFGEN_HDR..)
        .ok_or_else(|| FlowError::Decode("short nfgenmsg".into()))?;
    parse_entry(kind, attrs).map(Message::Conntrack)
}

/// Iterates over the attributes of `buf` as `(type, payload)`.
fn attributes(buf: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), FlowError>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let ty = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            rest = &[];
            return Some(Err(FlowError::Decode(format!(
                "attribute {ty} of length {len} does not fit"
            ))));
        }
        let payload = &rest[4..len];
        rest = &rest[align(len).min(rest.len())..];
        Some(Ok((ty, payload)))
    })
}

fn parse_entry(kind: CtKind, buf: &[u8]) -> Result<CtEvent, FlowError> {
    let mut orig = None;
    let mut ev = CtEvent {
        kind,
        id: None,
        orig: Tuple {
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            proto: 0,
            sport: 0,
            dport: 0,
        },
        counters_orig: None,
        counters_reply: None,
        tcp_state: None,
    };
    for attr in attributes(buf) {
        let (ty, payload) = attr?;
        match ty {
            CTA_TUPLE_ORIG => orig = Some(parse_tuple(payload)?),
            CTA_TUPLE_REPLY => {
                parse_tuple(payload)?;
            }
            CTA_COUNTERS_ORIG => ev.counters_orig = Some(parse_counters(payload)?),
            CTA_COUNTERS_REPLY => ev.counters_reply = Some(parse_counters(payload)?),
            CTA_ID => ev.id = Some(be_u32(payload)?),
            CTA_PROTOINFO => ev.tcp_state = parse_tcp_state(payload)?,
            _ => {}
        }
    }
    ev.orig = orig.ok_or_else(|| FlowError::Decode("conntrack entry without a tuple".into()))?;
    Ok(ev)
}

fn parse_tuple(buf: &[u8]) -> Result<Tuple, FlowError> {
    let (mut src, mut dst, mut proto) = (None, None, None);
    let (mut sport, mut dport) = (0, 0);
    for attr in attributes(buf) {
        let (ty, payload) = attr?;
        match ty {
            CTA_TUPLE_IP => {
                for a in attributes(payload) {
                    let (t, p) = a?;
                    match t {
                        CTA_IP_V4_SRC => src = Some(Ipv4Addr::from(be_u32(p)?)),
                        CTA_IP_V4_DST => dst = Some(Ipv4Addr::from(be_u32(p)?)),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for a in attributes(payload) {
                    let (t, p) = a?;
                    match t {
                        CTA_PROTO_NUM => {
                            proto = Some(
                                *p.first()
                                    .ok_or_else(|| FlowError::Decode("empty protocol".into()))?,
                            );
                        }
                        CTA_PROTO_SRC_PORT => sport = be_u16(p)?,
                        CTA_PROTO_DST_PORT => dport = be_u16(p)?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    match (src, dst, proto) {
        (Some(src), Some(dst), Some(proto)) => Ok(Tuple {
            src,
            dst,
            proto,
            sport,
            dport,
        }),
        _ => Err(FlowError::Decode(
            "tuple without IPv4 addresses or protocol".into(),
        )),
    }
}

fn parse_counters(buf: &[u8]) -> Result<Counters, FlowError> {
    let mut c = Counters::default();
    for attr in attributes(buf) {
        let (ty, payload) = attr?;
        match ty {
            CTA_COUNTERS_PACKETS => c.packets = be_u64(payload)?,
            CTA_COUNTERS_BYTES => c.bytes = be_u64(payload)?,
            CTA_COUNTERS32_PACKETS => c.packets = u64::from(be_u32(payload)?),
            CTA_COUNTERS32_BYTES => c.bytes = u64::from(be_u32(payload)?),
            _ => {}
        }
    }
    Ok(c)
}

fn parse_tcp_state(buf: &[u8]) -> Result<Option<u8>, FlowError> {
    for attr in attributes(buf) {
        let (ty, payload) = attr?;
        if ty == CTA_PROTOINFO_TCP {
            for a in attributes(payload) {
                let (t, p) = a?;
                if t == CTA_PROTOINFO_TCP_STATE {
                    return Ok(p.first().copied());
                }
            }
        }
    }
    Ok(None)
}

fn be_u16(p: &[u8]) -> Result<u16, FlowError> {
    p.get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| FlowError::Decode("short 16-bit attribute".into()))
}

fn be_u32(p: &[u8]) -> Result<u32, FlowError> {
    p.get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| FlowError::Decode("short 32-bit attribute".into()))
}

fn be_u64(p: &[u8]) -> Result<u64, FlowError> {
    p.get(..8)
        .map(|b| u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .ok_or_else(|| FlowError::Decode("short 64-bit attribute".into()))
}

/// Builders of ctnetlink messages as the kernel sends them, for tests here and in `table`.
#[cfg(test)]
pub(crate) mod build {
    use super::*;

    /// An attribute with `payload`, padded.
    pub(crate) fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let len = (4 + payload.len()) as u16;
        let mut b = len.to_ne_bytes().to_vec();
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(payload);
        b.resize(align(b.len()), 0);
        b
    }

    /// A nested attribute.
    pub(crate) fn nested(ty: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        attr(ty | 0x8000, &parts.concat())
    }

    fn tuple(ty: u16, t: &Tuple) -> Vec<u8> {
        nested(
            ty,
            &[
                nested(
                    CTA_TUPLE_IP,
                    &[
                        attr(CTA_IP_V4_SRC, &t.src.octets()),
                        attr(CTA_IP_V4_DST, &t.dst.octets()),
                    ],
                ),
                nested(
                    CTA_TUPLE_PROTO,
                    &[
                        attr(CTA_PROTO_NUM, &[t.proto]),
                        attr(CTA_PROTO_SRC_PORT, &t.sport.to_be_bytes()),
                        attr(CTA_PROTO_DST_PORT, &t.dport.to_be_bytes()),
                    ],
                ),
            ],
        )
    }

    fn counters(ty: u16, c: Counters) -> Vec<u8> {
        nested(
            ty,
            &[
                attr(CTA_COUNTERS_PACKETS, &c.packets.to_be_bytes()),
                attr(CTA_COUNTERS_BYTES, &c.bytes.to_be_bytes()),
            ],
        )
    }

    /// The message the kernel sends for `ev` (a dump entry when `dump`).
    pub(crate) fn message(ev: &CtEvent, dump: bool) -> Vec<u8> {
        let reply = Tuple {
            src: ev.orig.dst,
            dst: ev.orig.src,
            proto: ev.orig.proto,
            sport: ev.orig.dport,
            dport: ev.orig.sport,
        };
        let mut attrs = vec![
            tuple(CTA_TUPLE_ORIG, &ev.orig),
            tuple(CTA_TUPLE_REPLY, &reply),
        ];
        if let Some(c) = ev.counters_orig {
            attrs.push(counters(CTA_COUNTERS_ORIG, c));
        }
        if let Some(c) = ev.counters_reply {
            attrs.push(counters(CTA_COUNTERS_REPLY, c));
        }
        if let Some(id) = ev.id {
            attrs.push(attr(CTA_ID, &id.to_be_bytes()));
        }
        if let Some(s) = ev.tcp_state {
            attrs.push(nested(
                CTA_PROTOINFO,
                &[nested(
                    CTA_PROTOINFO_TCP,
                    &[attr(CTA_PROTOINFO_TCP_STATE, &[s])],
                )],
            ));
        }
        let (msg, flags) = match (ev.kind, dump) {
            (_, true) => (MSG_CT_NEW, NLM_F_MULTI),
            (CtKind::New, false) => (MSG_CT_NEW, NLM_F_CREATE | 0x200),
            (CtKind::Update, false) => (MSG_CT_NEW, 0),
            (CtKind::Destroy, false) => (MSG_CT_DELETE, 0),
        };
        let body = attrs.concat();
        let len = (NLMSG_HDR + NFGEN_HDR + body.len()) as u32;
        let mut b = len.to_ne_bytes().to_vec();
        b.extend_from_slice(&((SUBSYS_CTNETLINK << 8) | msg).to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
        b.extend_from_slice(&body);
        b
    }

    /// `NLMSG_DONE`.
    pub(crate) fn done() -> Vec<u8> {
        let mut b = 20u32.to_ne_bytes().to_vec();
        b.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        b.extend_from_slice(&NLM_F_MULTI.to_ne_bytes());
        b.extend_from_slice(&[0; 12]);
        b
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::build::*;
    use super::*;

    fn event(kind: CtKind) -> CtEvent {
        CtEvent {
            kind,
            id: Some(77),
            orig: Tuple {
                src: Ipv4Addr::new(10, 32, 0, 1),
                dst: Ipv4Addr::new(10, 32, 0, 2),
                proto: 6,
                sport: 40000,
                dport: 80,
            },
            counters_orig: Some(Counters {
                packets: 10,
                bytes: 10_000_000_000,
            }),
            counters_reply: Some(Counters {
                packets: 5,
                bytes: 300,
            }),
            tcp_state: Some(3),
        }
    }

    #[test]
    fn events_of_each_kind_decode_with_tuple_counters_id_and_state() {
        for kind in [CtKind::New, CtKind::Update, CtKind::Destroy] {
            let ev = event(kind);
            let got = parse_datagram(&message(&ev, false));
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].as_ref().expect("decodes"), &Message::Conntrack(ev));
        }
    }

    #[test]
    fn a_dump_datagram_holds_several_entries_then_done() {
        let a = event(CtKind::Update);
        let mut b = event(CtKind::Update);
        b.id = Some(78);
        b.counters_orig = None;
        b.counters_reply = None;
        b.tcp_state = None;
        let mut buf = message(&a, true);
        buf.extend(message(&b, true));
        buf.extend(done());
        let got: Vec<Message> = parse_datagram(&buf)
            .into_iter()
            .map(|m| m.expect("decodes"))
            .collect();
        assert_eq!(
            got,
            vec![Message::Conntrack(a), Message::Conntrack(b), Message::Done]
        );
    }

    #[test]
    fn dump_request_asks_ctnetlink_for_the_ipv4_table() {
        let r = dump_request(9);
        assert_eq!(r.len(), 20);
        assert_eq!(u32::from_ne_bytes([r[0], r[1], r[2], r[3]]), 20);
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), 0x0101);
        assert_eq!(u16::from_ne_bytes([r[6], r[7]]), 0x301);
        assert_eq!(u32::from_ne_bytes([r[8], r[9], r[10], r[11]]), 9);
        assert_eq!(r[16], libc::AF_INET as u8);
    }

    #[test]
    fn truncated_messages_never_decode_as_the_whole_entry() {
        let ev = event(CtKind::New);
        let full = message(&ev, false);
        for cut in 0..full.len() {
            let mut b = full[..cut].to_vec();
            if b.len() >= 4 {
                b[..4].copy_from_slice(&(cut as u32).to_ne_bytes());
            }
            for m in parse_datagram(&b) {
                assert_ne!(
                    m.ok(),
                    Some(Message::Conntrack(ev.clone())),
                    "cut at {cut} decoded whole"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_datagram(&bytes);
        }

        #[test]
        fn corrupted_messages_never_panic(flip in 0usize..400, value: u8) {
            let mut b = message(&event(CtKind::Destroy), false);
            let i = flip % b.len();
            b[i] = value;
            let _ = parse_datagram(&b);
        }
    }
}
