//! The ruleset as nftables objects, and the drivers that apply it: [`NftDriver`] hands one
//! `nftables::batch::Batch` to `nft` (one transaction: the old table goes and the new one
//! comes at once), tests use a recording driver.
//!
//! Layout of table `inet weft`: a `forward` base chain (bridged traffic crosses it thanks to
//! br_netfilter) accepts replies (`ct state established,related`), then sends a packet from an
//! isolated local workload to its egress chain (which returns when allowed) and a packet to an
//! isolated local workload to its ingress chain (which accepts when allowed). Chains end with
//! the drop accounting: a per-port counter (an element of the dynamic set `drops-ingress` or
//! `drops-egress`, keyed by workload address, protocol and destination port, bounded to
//! [`PORT_COUNTERS`] elements), a rate-limited NFLOG line whose prefix is the chain's name, and
//! per-protocol named counters before the drop. Address sets are named per selector; when only
//! their members change, the batch only rewrites set elements.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;

use nftables::batch::Batch;
use nftables::expr::{
    CT, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Range, SetItem, Verdict,
};
use nftables::schema::{self, FlushObject, NfCmd, NfListObject, SetFlag, SetType, SetTypeValue};
use nftables::stmt::{
    self, Counter, JumpTarget, Log, Match, Operator, SetOp, Statement, VerdictMap,
};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::error::PolicyError;
use super::model::Protocol;
use super::ruleset::{AddrSet, Chain, Direction, Ruleset};

/// The table weft owns.
pub const TABLE: &str = "weft";
/// Log lines per second, at most, of each chain.
const LOG_RATE: u32 = 10;
/// Elements of each per-port drop counter set: ports past it are counted in the protocol's
/// counter only.
pub const PORT_COUNTERS: u32 = 1024;
/// Counter suffix of packets that are neither TCP, UDP nor SCTP.
pub const OTHER_PROTOCOL: &str = "other";

/// Something that puts a ruleset in place.
pub trait FirewallDriver: Send {
    /// Replaces what is in force with `new`; `old` is what the previous call put in place
    /// (`None` at start or after a failure), so a driver may send only the difference.
    fn apply(&mut self, old: Option<&Ruleset>, new: &Ruleset) -> Result<(), PolicyError>;
    /// Packet counts of the drop counters in force, by counter name.
    fn counters(&mut self) -> Result<BTreeMap<String, u64>, PolicyError>;
    /// Removes the table.
    fn remove(&mut self) -> Result<(), PolicyError>;
}

/// Name of the drop counter of `chain` for `protocol` (`None`: other protocols).
pub fn counter_name(chain: &str, protocol: Option<Protocol>) -> String {
    format!(
        "{chain}-{}",
        protocol.map_or(OTHER_PROTOCOL, Protocol::name)
    )
}

/// Key of the per-port drop count of `chain`, `protocol` and destination `port` in
/// [`FirewallDriver::counters`].
pub fn port_counter_name(chain: &str, protocol: Protocol, port: u16) -> String {
    format!("{}/{port}", counter_name(chain, Some(protocol)))
}

/// Name of the dynamic set counting drops per workload, protocol and port in `direction`.
pub fn port_set_name(direction: Direction) -> String {
    format!("drops-{}", direction.name())
}

/// The batch as the JSON `nft -j -f -` reads, with a counter on each element the per-port
/// sets learn (`update @drops-… { … counter }`, which the `nftables` crate cannot express).
pub fn batch_json(
    old: Option<&Ruleset>,
    new: &Ruleset,
    nflog_group: u16,
) -> Result<String, PolicyError> {
    let mut json = serde_json::to_value(batch(old, new, nflog_group).to_nftables())
        .map_err(|e| PolicyError::Firewall(format!("encoding the ruleset: {e}")))?;
    add_element_counters(&mut json);
    Ok(json.to_string())
}

fn add_element_counters(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(set)) = map.get_mut("set")
                && set.get("op").and_then(|o| o.as_str()) == Some("update")
                && set
                    .get("set")
                    .and_then(|s| s.as_str())
                    .is_some_and(|s| s.starts_with("@drops-"))
            {
                set.insert("stmt".into(), serde_json::json!([{ "counter": null }]));
            }
            map.values_mut().for_each(add_element_counters);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(add_element_counters),
        _ => {}
    }
}

/// Drop counts in the JSON of an `nft -j list` of table `inet weft` (or of its counters or
/// sets): named counters by name, and per-port set elements by [`port_counter_name`].
pub fn parse_counts(json: &str) -> Result<BTreeMap<String, u64>, PolicyError> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| PolicyError::Firewall(format!("reading nft's listing: {e}")))?;
    let mut out = BTreeMap::new();
    let objects = v["nftables"].as_array().map_or(&[][..], Vec::as_slice);
    for o in objects {
        if let Some(c) = o.get("counter") {
            if let (Some(name), Some(packets)) = (c["name"].as_str(), c["packets"].as_u64()) {
                out.insert(name.to_string(), packets);
            }
            continue;
        }
        let Some(set) = o.get("set") else { continue };
        let direction = match set["name"].as_str() {
            Some("drops-ingress") => Direction::Ingress,
            Some("drops-egress") => Direction::Egress,
            _ => continue,
        };
        for e in set["elem"].as_array().map_or(&[][..], Vec::as_slice) {
            let elem = &e["elem"];
            let key = elem["val"]["concat"]
                .as_array()
                .map_or(&[][..], Vec::as_slice);
            let (Some(addr), Some(protocol), Some(port), Some(packets)) = (
                key.first()
                    .and_then(|a| a.as_str())
                    .and_then(|a| a.parse::<Ipv4Addr>().ok()),
                key.get(1).and_then(protocol_of),
                key.get(2)
                    .and_then(|p| p.as_u64())
                    .and_then(|p| u16::try_from(p).ok()),
                elem["counter"]["packets"].as_u64(),
            ) else {
                continue;
            };
            let chain = super::compile::chain_name(direction, addr);
            out.insert(port_counter_name(&chain, protocol, port), packets);
        }
    }
    Ok(out)
}

fn protocol_of(v: &serde_json::Value) -> Option<Protocol> {
    match v {
        serde_json::Value::String(s) => match s.as_str() {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "sctp" => Some(Protocol::Sctp),
            _ => None,
        },
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(6) => Some(Protocol::Tcp),
            Some(17) => Some(Protocol::Udp),
            Some(132) => Some(Protocol::Sctp),
            _ => None,
        },
        _ => None,
    }
}

/// The batch that replaces table `inet weft` by `new`, or only rewrites set elements when
/// `old` has the same shape.
pub fn batch(old: Option<&Ruleset>, new: &Ruleset, nflog_group: u16) -> Batch<'static> {
    let mut b = Batch::new();
    if let Some(old) = old
        && old.shape() == new.shape()
    {
        for (name, set) in &new.sets {
            if old.sets.get(name) != Some(set) {
                b.add_cmd(NfCmd::Flush(FlushObject::Set(Box::new(set_object(
                    name, None,
                )))));
                if !set.0.is_empty() {
                    b.add(NfListObject::Element(schema::Element {
                        family: NfFamily::INet,
                        table: TABLE.into(),
                        name: name.clone().into(),
                        elem: elements(set).into(),
                    }));
                }
            }
        }
        return b;
    }
    // Adding first makes the delete valid whether or not the table exists.
    b.add(NfListObject::Table(table()));
    b.delete(NfListObject::Table(table()));
    b.add(NfListObject::Table(table()));
    for (name, set) in &new.sets {
        b.add(NfListObject::Set(Box::new(set_object(name, Some(set)))));
    }
    for direction in [Direction::Ingress, Direction::Egress] {
        b.add(NfListObject::Set(Box::new(schema::Set {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: port_set_name(direction).into(),
            set_type: SetTypeValue::Concatenated(
                vec![SetType::Ipv4Addr, SetType::InetProto, SetType::InetService].into(),
            ),
            size: Some(PORT_COUNTERS),
            ..Default::default()
        })));
    }
    for chain in &new.chains {
        for p in [
            Some(Protocol::Tcp),
            Some(Protocol::Udp),
            Some(Protocol::Sctp),
            None,
        ] {
            b.add(NfListObject::Counter(schema::Counter {
                family: NfFamily::INet,
                table: TABLE.into(),
                name: counter_name(&chain.name, p).into(),
                handle: None,
                packets: None,
                bytes: None,
            }));
        }
        b.add(NfListObject::Chain(schema::Chain {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: chain.name.clone().into(),
            ..Default::default()
        }));
        for r in chain_rules(chain, nflog_group) {
            b.add(NfListObject::Rule(r));
        }
    }
    b.add(NfListObject::Chain(schema::Chain {
        family: NfFamily::INet,
        table: TABLE.into(),
        name: "forward".into(),
        _type: Some(NfChainType::Filter),
        hook: Some(NfHook::Forward),
        prio: Some(0),
        policy: Some(NfChainPolicy::Accept),
        ..Default::default()
    }));
    for r in forward_rules(new) {
        b.add(NfListObject::Rule(r));
    }
    b
}

fn table() -> schema::Table<'static> {
    schema::Table {
        family: NfFamily::INet,
        name: TABLE.into(),
        handle: None,
    }
}

fn set_object(name: &str, set: Option<&AddrSet>) -> schema::Set<'static> {
    schema::Set {
        family: NfFamily::INet,
        table: TABLE.into(),
        name: name.to_string().into(),
        set_type: SetTypeValue::Single(SetType::Ipv4Addr),
        flags: Some(HashSet::from([SetFlag::Interval])),
        elem: set.filter(|s| !s.0.is_empty()).map(|s| elements(s).into()),
        ..Default::default()
    }
}

fn addr(a: u32) -> Expression<'static> {
    Expression::String(Ipv4Addr::from(a).to_string().into())
}

fn elements(set: &AddrSet) -> Vec<Expression<'static>> {
    set.0
        .iter()
        .map(|&(a, b)| {
            if a == b {
                addr(a)
            } else {
                Expression::Range(Box::new(Range {
                    range: [addr(a), addr(b)],
                }))
            }
        })
        .collect()
}

fn field(protocol: &'static str, name: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: name.into(),
        },
    )))
}

fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn in_set(left: Expression<'static>, set: &str) -> Statement<'static> {
    eq(left, Expression::String(format!("@{set}").into()))
}

fn l4proto(p: Protocol) -> Statement<'static> {
    eq(
        Expression::Named(NamedExpression::Meta(Meta {
            key: MetaKey::L4proto,
        })),
        Expression::String(p.name().into()),
    )
}

fn rule(chain: &str, expr: Vec<Statement<'static>>) -> schema::Rule<'static> {
    schema::Rule {
        family: NfFamily::INet,
        table: TABLE.into(),
        chain: chain.to_string().into(),
        expr: Cow::Owned(expr),
        ..Default::default()
    }
}

fn chain_rules(chain: &Chain, nflog_group: u16) -> Vec<schema::Rule<'static>> {
    let (other, own, verdict) = match chain.direction {
        Direction::Ingress => ("saddr", "daddr", Statement::Accept(None)),
        Direction::Egress => ("daddr", "saddr", Statement::Return(None)),
    };
    let mut out = Vec::new();
    for m in &chain.rules {
        let mut expr = Vec::new();
        if let Some(set) = &m.peer_set {
            expr.push(in_set(field("ip", other), set));
        }
        if let Some(set) = &m.dst_set {
            expr.push(in_set(field("ip", "daddr"), set));
        }
        if let Some(p) = m.protocol {
            expr.push(l4proto(p));
            if let Some((a, b)) = m.ports {
                let right = if a == b {
                    Expression::Number(u32::from(a))
                } else {
                    Expression::Range(Box::new(Range {
                        range: [
                            Expression::Number(u32::from(a)),
                            Expression::Number(u32::from(b)),
                        ],
                    }))
                };
                expr.push(eq(field("th", "dport"), right));
            }
        }
        expr.push(verdict.clone());
        out.push(rule(&chain.name, expr));
    }
    let meta_l4proto = || {
        Expression::Named(NamedExpression::Meta(Meta {
            key: MetaKey::L4proto,
        }))
    };
    // When the set is full the update fails and ends this rule only: the rules below still
    // log, count and drop.
    out.push(rule(
        &chain.name,
        vec![
            Statement::Match(Match {
                left: meta_l4proto(),
                right: Expression::Named(NamedExpression::Set(
                    [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
                        .map(|p| SetItem::Element(Expression::String(p.name().into())))
                        .into(),
                )),
                op: Operator::EQ,
            }),
            Statement::Set(stmt::Set {
                op: SetOp::Update,
                elem: Expression::Named(NamedExpression::Concat(vec![
                    field("ip", own),
                    meta_l4proto(),
                    field("th", "dport"),
                ])),
                set: format!("@{}", port_set_name(chain.direction)).into(),
            }),
        ],
    ));
    out.push(rule(
        &chain.name,
        vec![
            Statement::Limit(stmt::Limit {
                rate: LOG_RATE,
                per: Some("second".into()),
                rate_unit: None,
                burst: None,
                burst_unit: None,
                inv: None,
            }),
            Statement::Log(Some(Log {
                // The chain's name (a few dozen bytes at most, under nft's 127).
                prefix: Some(chain.name.clone().into()),
                group: Some(u32::from(nflog_group)),
                snaplen: None,
                queue_threshold: None,
                level: None,
                flags: None,
            })),
        ],
    ));
    for p in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
        out.push(rule(
            &chain.name,
            vec![
                l4proto(p),
                Statement::Counter(Counter::Named(counter_name(&chain.name, Some(p)).into())),
                Statement::Drop(None),
            ],
        ));
    }
    out.push(rule(
        &chain.name,
        vec![
            Statement::Counter(Counter::Named(counter_name(&chain.name, None).into())),
            Statement::Drop(None),
        ],
    ));
    out
}

fn forward_rules(rs: &Ruleset) -> Vec<schema::Rule<'static>> {
    // `in` tests flags (`ct state established,related`); `==` would want both bits at once.
    let mut out = vec![rule(
        "forward",
        vec![
            Statement::Match(Match {
                left: Expression::Named(NamedExpression::CT(CT {
                    key: "state".into(),
                    family: None,
                    dir: None,
                })),
                right: Expression::List(vec![
                    Expression::String("established".into()),
                    Expression::String("related".into()),
                ]),
                op: Operator::IN,
            }),
            Statement::Accept(None),
        ],
    )];
    for (direction, key) in [(Direction::Egress, "saddr"), (Direction::Ingress, "daddr")] {
        let items: Vec<SetItem<'static>> = rs
            .chains
            .iter()
            .filter(|c| c.direction == direction)
            .map(|c| {
                SetItem::Mapping(
                    Expression::String(c.workload.to_string().into()),
                    Expression::Verdict(Verdict::Jump(JumpTarget {
                        target: c.name.clone().into(),
                    })),
                )
            })
            .collect();
        if items.is_empty() {
            continue;
        }
        out.push(rule(
            "forward",
            vec![Statement::VerdictMap(VerdictMap {
                key: field("ip", key),
                data: Expression::Named(NamedExpression::Set(items)),
            })],
        ));
    }
    out
}

/// The sysctl that makes bridged IPv4 traffic cross the `inet` hooks.
const BRIDGE_NF_CALL: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// The driver that runs `nft`.
#[derive(Debug)]
pub struct NftDriver {
    nflog_group: u16,
}

impl NftDriver {
    /// Makes bridged traffic of this network namespace cross table `inet weft`: loads
    /// br_netfilter when needed and sets `net.bridge.bridge-nf-call-iptables=1` (per
    /// namespace). Drop chains log to NFLOG group `nflog_group`.
    pub fn new(nflog_group: u16) -> Result<NftDriver, PolicyError> {
        if !Path::new(BRIDGE_NF_CALL).exists() {
            let status = std::process::Command::new("modprobe")
                .arg("br_netfilter")
                .status()
                .map_err(|e| {
                    PolicyError::Firewall(format!("running modprobe br_netfilter: {e}"))
                })?;
            if !status.success() {
                return Err(PolicyError::Firewall(
                    "modprobe br_netfilter failed: bridged traffic cannot be filtered".into(),
                ));
            }
        }
        std::fs::write(BRIDGE_NF_CALL, "1")
            .map_err(|e| PolicyError::Firewall(format!("setting {BRIDGE_NF_CALL} to 1: {e}")))?;
        Ok(NftDriver { nflog_group })
    }
}

fn nft_error(e: nftables::helper::NftablesError) -> PolicyError {
    match e {
        nftables::helper::NftablesError::NftFailed { stderr, hint, .. } => {
            PolicyError::Firewall(format!("nft failed while {hint}: {}", stderr.trim()))
        }
        other => PolicyError::Firewall(other.to_string()),
    }
}

impl FirewallDriver for NftDriver {
    fn apply(&mut self, old: Option<&Ruleset>, new: &Ruleset) -> Result<(), PolicyError> {
        let json = batch_json(old, new, self.nflog_group)?;
        nftables::helper::apply_ruleset_raw(&json, nftables::helper::DEFAULT_NFT, [] as [&str; 0])
            .map(drop)
            .map_err(nft_error)
    }

    fn counters(&mut self) -> Result<BTreeMap<String, u64>, PolicyError> {
        // The named counters and the two per-port sets only: listing the whole table would
        // print every address set too.
        let ingress = port_set_name(Direction::Ingress);
        let egress = port_set_name(Direction::Egress);
        let mut out = BTreeMap::new();
        for args in [
            ["list", "counters", "table", "inet", TABLE],
            ["list", "set", "inet", TABLE, &ingress],
            ["list", "set", "inet", TABLE, &egress],
        ] {
            match nftables::helper::get_current_ruleset_raw(nftables::helper::DEFAULT_NFT, args) {
                Ok(json) => out.extend(parse_counts(&json)?),
                // No table yet (nothing enforced): no counters.
                Err(nftables::helper::NftablesError::NftFailed { .. }) => {}
                Err(e) => return Err(nft_error(e)),
            }
        }
        Ok(out)
    }

    fn remove(&mut self) -> Result<(), PolicyError> {
        let mut b = Batch::new();
        b.add(NfListObject::Table(table()));
        b.delete(NfListObject::Table(table()));
        nftables::helper::apply_ruleset(&b.to_nftables()).map_err(nft_error)
    }
}

#[cfg(test)]
pub(crate) mod recording {
    //! A driver that records what it was asked to do, for unit tests.

    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records every batch as JSON text; `fail` set makes the next apply fail.
    #[derive(Debug, Default, Clone)]
    pub(crate) struct RecordingDriver {
        pub(crate) batches: Arc<Mutex<Vec<String>>>,
        pub(crate) fail: Arc<Mutex<bool>>,
    }

    impl FirewallDriver for RecordingDriver {
        fn apply(&mut self, old: Option<&Ruleset>, new: &Ruleset) -> Result<(), PolicyError> {
            if std::mem::take(&mut *self.fail.lock().unwrap()) {
                return Err(PolicyError::Firewall("refused by the test".into()));
            }
            let json = batch_json(old, new, crate::policy::nflog::DEFAULT_NFLOG_GROUP)?;
            self.batches.lock().unwrap().push(json);
            Ok(())
        }

        fn counters(&mut self) -> Result<BTreeMap<String, u64>, PolicyError> {
            Ok(BTreeMap::new())
        }

        fn remove(&mut self) -> Result<(), PolicyError> {
            self.batches.lock().unwrap().push("remove".into());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ruleset::Match as RMatch;

    fn ruleset(members: Vec<(u32, u32)>) -> Ruleset {
        Ruleset {
            sets: [("p-1".to_string(), AddrSet(members))].into(),
            chains: vec![Chain {
                name: "ing-10-32-0-1".into(),
                direction: Direction::Ingress,
                workload: Ipv4Addr::new(10, 32, 0, 1),
                workload_name: "x/a".into(),
                policies: vec!["x/p".into()],
                rules: vec![RMatch {
                    peer_set: Some("p-1".into()),
                    protocol: Some(Protocol::Tcp),
                    ports: Some((80, 81)),
                    dst_set: None,
                }],
            }],
        }
    }

    #[test]
    fn full_batch_replaces_the_table_in_one_transaction() {
        let rs = ruleset(vec![(1, 1), (5, 9)]);
        let json = batch_json(None, &rs, 86).unwrap();
        let add = json.find(r#"{"add":{"table""#).unwrap();
        let del = json.find(r#"{"delete":{"table""#).unwrap();
        assert!(add < del, "{json}");
        assert!(json.contains(r#""hook":"forward""#), "{json}");
        assert!(json.contains(r#""right":"@p-1""#), "{json}");
        assert!(json.contains(r#"{"range":[80,81]}"#), "{json}");
        assert!(json.contains(r#""target":"ing-10-32-0-1""#), "{json}");
        assert!(json.contains(r#""group":86"#), "{json}");
        assert!(json.contains(r#""prefix":"ing-10-32-0-1""#), "{json}");
        assert!(
            json.contains(r#""set":"@drops-ingress","stmt":[{"counter":null}]"#),
            "{json}"
        );
        assert!(json.contains(r#""name":"drops-egress""#), "{json}");
        assert!(
            json.contains(r#""op":"in","right":["established","related"]"#),
            "{json}"
        );
        assert!(json.contains(r#""ing-10-32-0-1-tcp""#), "{json}");
        assert!(
            json.contains(r#"{"range":["0.0.0.5","0.0.0.9"]}"#),
            "{json}"
        );
    }

    #[test]
    fn membership_change_only_rewrites_sets() {
        let old = ruleset(vec![(1, 1)]);
        let new = ruleset(vec![(1, 1), (7, 7)]);
        let json = batch_json(Some(&old), &new, 86).unwrap();
        assert!(
            !json.contains("table\":{") || !json.contains("delete"),
            "{json}"
        );
        assert!(json.contains(r#"{"flush":{"set""#), "{json}");
        assert!(json.contains(r#""elem":["0.0.0.1","0.0.0.7"]"#), "{json}");
        assert!(!json.contains("chain"), "{json}");
        let empty = batch_json(Some(&new), &new, 86).unwrap();
        assert!(!empty.contains("flush"), "{empty}");
    }

    #[test]
    fn counts_come_from_named_counters_and_per_port_elements() {
        let listing = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"counter": {"family": "inet", "name": "ing-10-32-0-1-tcp", "table": "weft", "handle": 3, "packets": 5, "bytes": 300}},
          {"counter": {"family": "inet", "name": "egr-10-32-0-2-other", "table": "weft", "handle": 4, "packets": 0, "bytes": 0}},
          {"set": {"family": "inet", "name": "drops-ingress", "table": "weft", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 5, "size": 1024, "flags": ["dynamic"],
            "elem": [{"elem": {"val": {"concat": ["10.32.0.1", "tcp", 80]}, "counter": {"packets": 4, "bytes": 240}}},
                     {"elem": {"val": {"concat": ["10.32.0.1", 6, 81]}, "counter": {"packets": 1, "bytes": 60}}},
                     {"elem": {"val": {"concat": ["10.32.0.1", "icmp", 0]}, "counter": {"packets": 9, "bytes": 60}}}]}},
          {"set": {"family": "inet", "name": "drops-egress", "table": "weft", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 6, "size": 1024,
            "elem": [{"elem": {"val": {"concat": ["10.32.0.2", "udp", 53]}, "counter": {"packets": 2, "bytes": 100}}}]}},
          {"set": {"family": "inet", "name": "p-1", "table": "weft", "type": "ipv4_addr", "elem": ["10.32.0.9"]}}]}"#;
        let counts = parse_counts(listing).unwrap();
        let expected: BTreeMap<String, u64> = [
            ("ing-10-32-0-1-tcp", 5),
            ("egr-10-32-0-2-other", 0),
            ("ing-10-32-0-1-tcp/80", 4),
            ("ing-10-32-0-1-tcp/81", 1),
            ("egr-10-32-0-2-udp/53", 2),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(counts, expected);
        assert!(parse_counts("not json").is_err());
    }
}
