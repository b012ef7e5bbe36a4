//! The validated form of a policy that enforcement works from, the workloads and namespaces it
//! is evaluated against, and the reference evaluation of Kubernetes semantics ([`allows`]) that
//! the compiled ruleset must agree with.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use super::error::PolicyError;
use super::labels::{Labels, NAMESPACE_NAME_LABEL, Selector};

/// A transport protocol a rule can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Parses `TCP`, `UDP` or `SCTP` (any case).
    pub fn parse(s: &str) -> Option<Protocol> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// Lower-case name, as nftables spells it.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// Which ports of a protocol a rule allows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PortSpec {
    /// Every port.
    Any,
    /// `first..=last`.
    Range(u16, u16),
    /// The port the destination workload names so.
    Named(String),
}

/// One entry of a rule's `ports`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortRule {
    /// Protocol.
    pub protocol: Protocol,
    /// Ports.
    pub port: PortSpec,
}

/// Which namespaces a workload peer may be in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NamespaceScope {
    /// Only the policy's own namespace.
    Own(String),
    /// Namespaces whose labels match.
    Matching(Selector),
}

/// One peer of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PeerRule {
    /// Workloads matching `pods` in the namespaces of `namespaces`.
    Workloads {
        /// Namespaces.
        namespaces: NamespaceScope,
        /// Workload labels.
        pods: Selector,
    },
    /// Addresses of `cidr` outside every `except`.
    Block {
        /// The block.
        cidr: Ipv4Network,
        /// Holes.
        except: Vec<Ipv4Network>,
    },
}

/// One rule: traffic with a peer of `peers` (all peers when `None`) on a port of `ports` (all
/// ports when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// Peers.
    pub peers: Option<Vec<PeerRule>>,
    /// Ports.
    pub ports: Option<Vec<PortRule>>,
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// `NAMESPACE/NAME`.
    pub key: String,
    /// Namespace.
    pub namespace: String,
    /// Workloads of `namespace` it applies to.
    pub selector: Selector,
    /// Ingress rules when it isolates ingress (empty: deny all).
    pub ingress: Option<Vec<Rule>>,
    /// Egress rules when it isolates egress.
    pub egress: Option<Vec<Rule>>,
}

/// A named port of a workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NamedPort {
    /// The name, as rules use it.
    pub name: String,
    /// The number.
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

impl NamedPort {
    /// Parses `NAME=PORT[/PROTO]` (TCP when no protocol is given).
    pub fn parse(arg: &str) -> Result<NamedPort, PolicyError> {
        let bad = |reason: String| PolicyError::Port {
            arg: arg.to_string(),
            reason,
        };
        let (name, rest) = arg
            .split_once('=')
            .ok_or_else(|| bad("give NAME=PORT/PROTO, e.g. http=80/TCP".into()))?;
        check_port_name(name).map_err(bad)?;
        let (num, proto) = match rest.split_once('/') {
            Some((n, p)) => (n, p),
            None => (rest, "TCP"),
        };
        let protocol = Protocol::parse(proto)
            .ok_or_else(|| bad(format!("unknown protocol {proto:?}: use TCP, UDP or SCTP")))?;
        let port = num
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(format!("{num:?} is not a port number from 1 to 65535")))?;
        Ok(NamedPort {
            name: name.to_string(),
            port,
            protocol,
        })
    }
}

/// Checks a port name as Kubernetes does (IANA service name): at most 15 lower-case letters,
/// digits and `-`, at least one letter, no `-` at either end nor `--`.
pub fn check_port_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid port name {name:?}: at most 15 lower-case letters, digits and '-', with at least one letter"
        ))
    }
}

/// What the policy concern knows of a workload, local or learned through the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadMeta {
    /// Its overlay address.
    pub address: Ipv4Addr,
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its labels.
    #[serde(default)]
    pub labels: Labels,
    /// Its named ports.
    #[serde(default)]
    pub ports: Vec<NamedPort>,
    /// The peer (router) it is attached to.
    pub host: String,
}

impl WorkloadMeta {
    /// The number of the port named `name` for `protocol`, if it has one.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == name && p.protocol == protocol)
            .map(|p| p.port)
    }
}

/// Everything policy decisions depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct World {
    /// Policies by key.
    pub policies: BTreeMap<String, Policy>,
    /// Labels of namespaces given labels explicitly.
    pub namespaces: BTreeMap<String, Labels>,
    /// Workloads by address.
    pub workloads: BTreeMap<Ipv4Addr, WorkloadMeta>,
}

impl World {
    /// Labels of namespace `ns`: its own plus [`NAMESPACE_NAME_LABEL`], as Kubernetes sets.
    pub fn namespace_labels(&self, ns: &str) -> Labels {
        let mut l = self.namespaces.get(ns).cloned().unwrap_or_default();
        l.insert(NAMESPACE_NAME_LABEL.to_string(), ns.to_string());
        l
    }

    /// Whether workload `w` is a peer of `peer` in a policy of namespace `policy_ns`.
    pub fn peer_has_workload(&self, peer: &PeerRule, w: &WorkloadMeta) -> bool {
        match peer {
            PeerRule::Workloads { namespaces, pods } => {
                let ns_ok = match namespaces {
                    NamespaceScope::Own(ns) => &w.namespace == ns,
                    NamespaceScope::Matching(sel) => {
                        sel.matches(&self.namespace_labels(&w.namespace))
                    }
                };
                ns_ok && pods.matches(&w.labels)
            }
            PeerRule::Block { cidr, except } => block_contains(cidr, except, w.address),
        }
    }

    /// The policies selecting `w` for a direction (`ingress` true) that isolate it.
    pub fn isolating<'a>(
        &'a self,
        w: &'a WorkloadMeta,
        ingress: bool,
    ) -> impl Iterator<Item = (&'a Policy, &'a [Rule])> + 'a {
        self.policies.values().filter_map(move |p| {
            let rules = if ingress { &p.ingress } else { &p.egress };
            match rules {
                Some(r) if p.namespace == w.namespace && p.selector.matches(&w.labels) => {
                    Some((p, r.as_slice()))
                }
                _ => None,
            }
        })
    }
}

/// Whether `addr` is in `cidr` and in none of `except`.
pub fn block_contains(cidr: &Ipv4Network, except: &[Ipv4Network], addr: Ipv4Addr) -> bool {
    cidr.contains(addr) && !except.iter().any(|e| e.contains(addr))
}

/// A packet between two addresses, for [`allows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol.
    pub protocol: Protocol,
    /// Destination port.
    pub port: u16,
}

/// The reference decision, straight from Kubernetes' definition: the new connection `flow`
/// passes when the source's egress and the destination's ingress both allow it (a side that
/// is not a known workload, or that no policy isolates, allows everything).
pub fn allows(world: &World, flow: &Flow) -> bool {
    let src = world.workloads.get(&flow.src);
    let dst = world.workloads.get(&flow.dst);
    let egress_ok = match src {
        None => true,
        Some(s) => direction_allows(world, s, flow.dst, dst, flow, false),
    };
    let ingress_ok = match dst {
        None => true,
        Some(d) => direction_allows(world, d, flow.src, src, flow, true),
    };
    egress_ok && ingress_ok
}

fn direction_allows(
    world: &World,
    subject: &WorkloadMeta,
    other_addr: Ipv4Addr,
    other: Option<&WorkloadMeta>,
    flow: &Flow,
    ingress: bool,
) -> bool {
    let mut isolated = false;
    // Named ports resolve on the destination workload.
    let dst = if ingress { Some(subject) } else { other };
    for (_, rules) in world.isolating(subject, ingress) {
        isolated = true;
        for rule in rules {
            let peer_ok = match &rule.peers {
                None => true,
                Some(peers) => peers.iter().any(|p| match (p, other) {
                    (PeerRule::Block { cidr, except }, _) => {
                        block_contains(cidr, except, other_addr)
                    }
                    (_, Some(o)) => world.peer_has_workload(p, o),
                    (_, None) => false,
                }),
            };
            let port_ok = match &rule.ports {
                None => true,
                Some(ports) => ports.iter().any(|p| {
                    p.protocol == flow.protocol
                        && match &p.port {
                            PortSpec::Any => true,
                            PortSpec::Range(a, b) => (*a..=*b).contains(&flow.port),
                            PortSpec::Named(n) => {
                                dst.and_then(|d| d.named_port(n, p.protocol)) == Some(flow.port)
                            }
                        }
                }),
            };
            if peer_ok && port_ok {
                return true;
            }
        }
    }
    !isolated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_ports_parse() {
        let p = NamedPort::parse("dns=53/UDP").unwrap();
        assert_eq!(
            (p.name.as_str(), p.port, p.protocol),
            ("dns", 53, Protocol::Udp)
        );
        assert_eq!(NamedPort::parse("http=80").unwrap().protocol, Protocol::Tcp);
        for bad in [
            "http",
            "Http=80",
            "http=0",
            "http=70000",
            "http=80/ICMP",
            "a--b=1",
        ] {
            assert!(NamedPort::parse(bad).is_err(), "{bad}");
        }
    }
}
