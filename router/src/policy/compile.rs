//! From policies, namespaces and workloads to one router's [`Ruleset`]: a chain for each local
//! workload some policy isolates, address sets per peer selector (workloads of every host
//! resolve to their addresses), named ports resolved per destination.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

use super::model::{PeerRule, PortSpec, Protocol, Rule, WorkloadMeta, World};
use super::ruleset::{AddrSet, Chain, Direction, Match, Ruleset};

/// Name of the chain of the local workload at `address` in `direction` (also its log prefix).
pub fn chain_name(direction: Direction, address: Ipv4Addr) -> String {
    let prefix = match direction {
        Direction::Ingress => "ing",
        Direction::Egress => "egr",
    };
    format!("{prefix}-{}", address.to_string().replace('.', "-"))
}

/// Compiles the ruleset of the router named `local` (its workloads are those whose `host` is
/// `local`).
pub fn compile(world: &World, local: &str) -> Ruleset {
    let mut c = Compiler {
        world,
        sets: BTreeMap::new(),
    };
    let mut chains = Vec::new();
    for w in world.workloads.values().filter(|w| w.host == local) {
        for direction in [Direction::Ingress, Direction::Egress] {
            if let Some(chain) = c.chain(w, direction) {
                chains.push(chain);
            }
        }
    }
    chains.sort_by(|a, b| a.name.cmp(&b.name));
    Ruleset {
        sets: c.sets,
        chains,
    }
}

struct Compiler<'a> {
    world: &'a World,
    sets: BTreeMap<String, AddrSet>,
}

/// A stable short name for a set, from what defines it.
fn set_name(prefix: &str, what: &impl serde::Serialize) -> String {
    let bytes = serde_json::to_vec(what).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    format!("{prefix}-{}", hex::encode(&digest[..6]))
}

fn single(a: Ipv4Addr) -> (u32, u32) {
    (u32::from(a), u32::from(a))
}

fn net_range(n: &ipnetwork::Ipv4Network) -> (u32, u32) {
    (u32::from(n.network()), u32::from(n.broadcast()))
}

impl Compiler<'_> {
    fn chain(&mut self, w: &WorkloadMeta, direction: Direction) -> Option<Chain> {
        let ingress = direction == Direction::Ingress;
        let isolating: Vec<_> = self.world.isolating(w, ingress).collect();
        if isolating.is_empty() {
            return None;
        }
        let mut rules = Vec::new();
        for (_, prules) in &isolating {
            for rule in prules.iter() {
                self.rule(w, rule, ingress, &mut rules);
            }
        }
        rules.dedup();
        Some(Chain {
            name: chain_name(direction, w.address),
            direction,
            workload: w.address,
            workload_name: format!("{}/{}", w.namespace, w.name),
            policies: isolating.iter().map(|(p, _)| p.key.clone()).collect(),
            rules,
        })
    }

    fn peer_set(&mut self, peer: &PeerRule) -> String {
        let name = set_name("p", peer);
        if !self.sets.contains_key(&name) {
            let set = match peer {
                PeerRule::Block { cidr, except } => AddrSet::from_ranges(vec![net_range(cidr)])
                    .minus(&AddrSet::from_ranges(
                        except.iter().map(net_range).collect(),
                    )),
                PeerRule::Workloads { .. } => AddrSet::from_ranges(
                    self.world
                        .workloads
                        .values()
                        .filter(|o| self.world.peer_has_workload(peer, o))
                        .map(|o| single(o.address))
                        .collect(),
                ),
            };
            self.sets.insert(name.clone(), set);
        }
        name
    }

    /// Sets of destinations naming port `name` for `protocol`, one per port number.
    fn named_sets(&mut self, name: &str, protocol: Protocol) -> Vec<(u16, String)> {
        let mut by_port: BTreeMap<u16, Vec<(u32, u32)>> = BTreeMap::new();
        for o in self.world.workloads.values() {
            if let Some(p) = o.named_port(name, protocol) {
                by_port.entry(p).or_default().push(single(o.address));
            }
        }
        by_port
            .into_iter()
            .map(|(port, addrs)| {
                let set = set_name("n", &(name, protocol, port));
                self.sets.insert(set.clone(), AddrSet::from_ranges(addrs));
                (port, set)
            })
            .collect()
    }

    fn rule(&mut self, w: &WorkloadMeta, rule: &Rule, ingress: bool, out: &mut Vec<Match>) {
        let peers: Vec<Option<String>> = match &rule.peers {
            None => vec![None],
            Some(list) => list.iter().map(|p| Some(self.peer_set(p))).collect(),
        };
        // Port alternatives, as matches without a peer yet.
        let mut ports: Vec<Match> = Vec::new();
        let alt = |protocol, range, dst_set| Match {
            peer_set: None,
            protocol: Some(protocol),
            ports: range,
            dst_set,
        };
        match &rule.ports {
            None => ports.push(Match {
                peer_set: None,
                protocol: None,
                ports: None,
                dst_set: None,
            }),
            Some(list) => {
                for p in list {
                    match &p.port {
                        PortSpec::Any => ports.push(alt(p.protocol, None, None)),
                        PortSpec::Range(a, b) => ports.push(alt(p.protocol, Some((*a, *b)), None)),
                        PortSpec::Named(n) if ingress => {
                            // Resolved on the selected workload itself; without that name the
                            // entry matches nothing.
                            if let Some(port) = w.named_port(n, p.protocol) {
                                ports.push(alt(p.protocol, Some((port, port)), None));
                            }
                        }
                        PortSpec::Named(n) => {
                            for (port, set) in self.named_sets(n, p.protocol) {
                                ports.push(alt(p.protocol, Some((port, port)), Some(set)));
                            }
                        }
                    }
                }
            }
        }
        for peer in &peers {
            for m in &ports {
                out.push(Match {
                    peer_set: peer.clone(),
                    ..m.clone()
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::{Flow, allows};
    use crate::policy::validate::parse_documents;

    const PODS: [&str; 3] = ["a", "b", "c"];
    const NSS: [&str; 3] = ["x", "y", "z"];

    /// The truth-table world: x, y, z with a, b, c each, spread over hosts h0 and h1; pod b
    /// names its port 80 `serve-80` and 81 `serve-81`, UDP 53 `dns`.
    fn world(policies: &str) -> World {
        let mut w = World::default();
        let mut i = 0u8;
        for ns in NSS {
            w.namespaces
                .insert(ns.into(), [("ns".to_string(), ns.to_string())].into());
            for pod in PODS {
                i += 1;
                let address = Ipv4Addr::new(10, 32, 0, i);
                let ports = vec![
                    crate::policy::model::NamedPort::parse("serve-80=80/TCP").unwrap(),
                    crate::policy::model::NamedPort::parse("serve-81=81/TCP").unwrap(),
                    crate::policy::model::NamedPort::parse("dns=53/UDP").unwrap(),
                ];
                w.workloads.insert(
                    address,
                    WorkloadMeta {
                        address,
                        name: pod.into(),
                        namespace: ns.into(),
                        labels: [("pod".to_string(), pod.to_string())].into(),
                        ports,
                        host: format!("h{}", i % 2),
                    },
                );
            }
        }
        if !policies.is_empty() {
            for (_, p) in parse_documents(policies).unwrap() {
                w.policies.insert(p.key.clone(), p);
            }
        }
        w
    }

    /// Every flow between workloads on TCP 80/81, UDP 53 (plus a few others): the rulesets of
    /// both hosts together decide as the model does.
    fn assert_agrees(policies: &str) -> usize {
        let w = world(policies);
        let rs: BTreeMap<String, Ruleset> = ["h0", "h1"]
            .iter()
            .map(|h| (h.to_string(), compile(&w, h)))
            .collect();
        let mut denied = 0;
        for src in w.workloads.values() {
            for dst in w.workloads.values() {
                for (protocol, port) in [
                    (Protocol::Tcp, 80),
                    (Protocol::Tcp, 81),
                    (Protocol::Udp, 53),
                    (Protocol::Tcp, 53),
                    (Protocol::Sctp, 80),
                ] {
                    let flow = Flow {
                        src: src.address,
                        dst: dst.address,
                        protocol,
                        port,
                    };
                    let compiled = rs[&src.host].passes(&flow, Direction::Egress)
                        && rs[&dst.host].passes(&flow, Direction::Ingress);
                    let model = allows(&w, &flow);
                    assert_eq!(compiled, model, "{flow:?} under\n{policies}");
                    denied += usize::from(!model);
                }
            }
        }
        denied
    }

    const H: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n";

    #[test]
    fn compiled_rules_agree_with_the_model() {
        assert_eq!(assert_agrees(""), 0);
        let cases = [
            format!("{H}metadata: {{name: d, namespace: x}}\nspec: {{podSelector: {{}}}}\n"),
            format!(
                "{H}metadata: {{name: d, namespace: x}}\nspec: {{podSelector: {{}}, policyTypes: [Egress]}}\n"
            ),
            format!(
                "{H}metadata: {{name: s, namespace: x}}\nspec:\n  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress:\n  - from:\n    - namespaceSelector: {{matchLabels: {{ns: y}}}}\n      podSelector: {{matchLabels: {{pod: b}}}}\n"
            ),
            format!(
                "{H}metadata: {{name: s, namespace: x}}\nspec:\n  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress:\n  - from:\n    - namespaceSelector: {{matchLabels: {{ns: y}}}}\n    - podSelector: {{matchLabels: {{pod: b}}}}\n"
            ),
            format!(
                "{H}metadata: {{name: b, namespace: y}}\nspec:\n  podSelector: {{matchExpressions: [{{key: pod, operator: NotIn, values: [c]}}]}}\n  ingress:\n  - from:\n    - ipBlock: {{cidr: 10.32.0.0/28, except: [10.32.0.1/32, 10.32.0.8/30]}}\n    ports:\n    - {{port: 80, endPort: 81}}\n"
            ),
            format!(
                "{H}metadata: {{name: n, namespace: z}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Egress, Ingress]\n  ingress:\n  - ports: [{{port: serve-81}}]\n  egress:\n  - to: [{{namespaceSelector: {{}}}}]\n    ports: [{{protocol: UDP, port: dns}}]\n  - to: [{{podSelector: {{matchLabels: {{pod: b}}}}, namespaceSelector: {{matchExpressions: [{{key: ns, operator: In, values: [x, y]}}]}}}}]\n    ports: [{{port: serve-80}}]\n"
            ),
            format!(
                "{H}metadata: {{name: one, namespace: x}}\nspec:\n  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: b}}}}}}]}}]\n---\n{H}metadata: {{name: two, namespace: x}}\nspec:\n  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: z}}}}}}], ports: [{{protocol: UDP, port: 53}}]}}]\n"
            ),
        ];
        for c in &cases {
            let denied = assert_agrees(c);
            assert!(denied > 0, "the case denies something:\n{c}");
        }
    }

    #[test]
    fn sets_are_per_selector_and_resolve_remote_workloads() {
        let w = world(&format!(
            "{H}metadata: {{name: s, namespace: x}}\nspec:\n  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress:\n  - from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}}}]\n"
        ));
        // x/a is 10.32.0.1 on h1.
        let r1 = compile(&w, "h1");
        assert_eq!(r1.chains.len(), 1);
        assert_eq!(r1.chains[0].workload_name, "x/a");
        assert_eq!(r1.chains[0].policies, vec!["x/s".to_string()]);
        let set = &r1.sets[r1.chains[0].rules[0].peer_set.as_ref().unwrap()];
        let y: Vec<_> = (4..=6)
            .map(|i| (i, i))
            .map(|(a, b)| (0x0a20_0000 + a, 0x0a20_0000 + b))
            .collect();
        assert_eq!(set.0, AddrSet::from_ranges(y).0);
        assert!(compile(&w, "h0").chains.is_empty());
    }
}
