//! The ruleset as nftables objects, and the drivers that apply it: [`NftDriver`] hands one
//! `nftables::batch::Batch` to `nft` (one transaction: the old table goes and the new one
//! comes at once), tests use a recording driver.
//!
//! Layout of table `inet weft`: a `forward` base chain (bridged traffic crosses it thanks to
//! br_netfilter) accepts replies (`ct state established,related`), then sends a packet from an
//! isolated local workload to its egress chain (which returns when allowed) and a packet to an
//! isolated local workload to its ingress chain (which accepts when allowed). Chains end with a
//! rate-limited NFLOG line and per-protocol named counters before the drop. Address sets are
//! named per selector; when only their members change, the batch only rewrites set elements.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;

use nftables::batch::Batch;
use nftables::expr::{
    CT, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Range, SetItem, Verdict,
};
use nftables::schema::{self, FlushObject, NfCmd, NfListObject, SetFlag, SetType, SetTypeValue};
use nftables::stmt::{self, Counter, JumpTarget, Log, Match, Operator, Statement, VerdictMap};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::error::PolicyError;
use super::model::Protocol;
use super::ruleset::{AddrSet, Chain, Direction, Ruleset};

/// The table weft owns.
pub const TABLE: &str = "weft";
/// NFLOG group of dropped packets (read with `tcpdump -i nflog:27`).
pub const NFLOG_GROUP: u32 = 27;
/// Log lines per second, at most, across the table.
const LOG_RATE: u32 = 10;
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

/// The batch that replaces table `inet weft` by `new`, or only rewrites set elements when
/// `old` has the same shape.
pub fn batch(old: Option<&Ruleset>, new: &Ruleset) -> Batch<'static> {
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
        for r in chain_rules(chain) {
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

fn chain_rules(chain: &Chain) -> Vec<schema::Rule<'static>> {
    let (other, verdict) = match chain.direction {
        Direction::Ingress => ("saddr", Statement::Accept(None)),
        Direction::Egress => ("daddr", Statement::Return(None)),
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
                prefix: Some(
                    format!(
                        "weft-drop {} {} ",
                        chain.direction.name(),
                        chain.workload_name
                    )
                    .into(),
                ),
                group: Some(NFLOG_GROUP),
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
pub struct NftDriver;

impl NftDriver {
    /// Makes bridged traffic of this network namespace cross table `inet weft`: loads
    /// br_netfilter when needed and sets `net.bridge.bridge-nf-call-iptables=1` (per
    /// namespace).
    pub fn new() -> Result<NftDriver, PolicyError> {
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
        Ok(NftDriver)
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
        let b = batch(old, new);
        nftables::helper::apply_ruleset(&b.to_nftables()).map_err(nft_error)
    }

    fn counters(&mut self) -> Result<BTreeMap<String, u64>, PolicyError> {
        let args = ["list", "counters", "table", "inet", TABLE];
        let rs = match nftables::helper::get_current_ruleset_with_args(
            nftables::helper::DEFAULT_NFT,
            args,
        ) {
            Ok(rs) => rs,
            // No table yet (nothing enforced): no counters.
            Err(nftables::helper::NftablesError::NftFailed { .. }) => return Ok(BTreeMap::new()),
            Err(e) => return Err(nft_error(e)),
        };
        Ok(rs
            .objects
            .iter()
            .filter_map(|o| match o {
                schema::NfObject::ListObject(NfListObject::Counter(c)) => {
                    Some((c.name.to_string(), u64::from(c.packets.unwrap_or(0))))
                }
                _ => None,
            })
            .collect())
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
            let json = serde_json::to_string(&batch(old, new).to_nftables())
                .map_err(|e| PolicyError::Firewall(e.to_string()))?;
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
        let json = serde_json::to_string(&batch(None, &rs).to_nftables()).unwrap();
        let add = json.find(r#"{"add":{"table""#).unwrap();
        let del = json.find(r#"{"delete":{"table""#).unwrap();
        assert!(add < del, "{json}");
        assert!(json.contains(r#""hook":"forward""#), "{json}");
        assert!(json.contains(r#""right":"@p-1""#), "{json}");
        assert!(json.contains(r#"{"range":[80,81]}"#), "{json}");
        assert!(json.contains(r#""target":"ing-10-32-0-1""#), "{json}");
        assert!(json.contains(r#""group":27"#), "{json}");
        assert!(
            json.contains(r#""right":["established","related"],"op":"in""#),
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
        let json = serde_json::to_string(&batch(Some(&old), &new).to_nftables()).unwrap();
        assert!(
            !json.contains("table\":{") || !json.contains("delete"),
            "{json}"
        );
        assert!(json.contains(r#"{"flush":{"set""#), "{json}");
        assert!(json.contains(r#""elem":["0.0.0.1","0.0.0.7"]"#), "{json}");
        assert!(!json.contains("chain"), "{json}");
        let empty = serde_json::to_string(&batch(Some(&new), &new).to_nftables()).unwrap();
        assert!(!empty.contains("flush"), "{empty}");
    }
}
