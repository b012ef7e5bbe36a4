//! Reading NetworkPolicy documents (YAML or JSON, several per input) and validating them into
//! [`Policy`], with errors that name the field and the reason.

use ipnetwork::Ipv4Network;
use serde::Deserialize;

use super::error::PolicyError;
use super::labels::Selector;
use super::model::{
    NamespaceScope, PeerRule, Policy, PortRule, PortSpec, Protocol, Rule, check_port_name,
};
use super::spec::{API_VERSION, KIND, NetworkPolicy, Peer, PolicyPort, PortValue};

/// Parses every document of `text` (YAML, or JSON which YAML contains; `---` separates
/// documents; empty documents are skipped) and validates each. Fails on the first bad one, so
/// a caller applies all or nothing.
pub fn parse_documents(text: &str) -> Result<Vec<(NetworkPolicy, Policy)>, PolicyError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| PolicyError::Syntax {
            doc: n,
            reason: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let np: NetworkPolicy = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            PolicyError::Invalid {
                doc: n,
                name: "?".into(),
                field: if path == "." {
                    "(document)".into()
                } else {
                    path
                },
                reason: e.into_inner().to_string(),
            }
        })?;
        let policy = validate(&np, n)?;
        out.push((np, policy));
    }
    if out.is_empty() {
        return Err(PolicyError::Empty);
    }
    Ok(out)
}

/// Validates one parsed document (number `doc` of its input, for errors).
pub fn validate(np: &NetworkPolicy, doc: usize) -> Result<Policy, PolicyError> {
    check(np).map_err(|(field, reason)| PolicyError::Invalid {
        doc,
        name: np.key(),
        field,
        reason,
    })
}

type Check<T> = Result<T, (String, String)>;

fn err<T>(field: impl Into<String>, reason: impl Into<String>) -> Check<T> {
    Err((field.into(), reason.into()))
}

fn check(np: &NetworkPolicy) -> Check<Policy> {
    if np.api_version != API_VERSION {
        return err(
            "apiVersion",
            format!("must be {API_VERSION:?}, not {:?}", np.api_version),
        );
    }
    if np.kind != KIND {
        return err("kind", format!("must be {KIND:?}, not {:?}", np.kind));
    }
    check_dns_subdomain(&np.metadata.name).map_err(|r| ("metadata.name".to_string(), r))?;
    if let Some(ns) = &np.metadata.namespace {
        check_dns_label(ns).map_err(|r| ("metadata.namespace".to_string(), r))?;
    }
    let namespace = np.namespace().to_string();
    let selector = Selector::from_spec(&np.spec.pod_selector, "spec.podSelector")?;
    if let Some(types) = &np.spec.policy_types {
        for (i, t) in types.iter().enumerate() {
            if types[..i].contains(t) {
                return err(
                    format!("spec.policyTypes[{i}]"),
                    format!("{t:?} is repeated"),
                );
            }
        }
    }
    let ingress = rules(
        &namespace,
        np.spec.ingress.as_deref(),
        np.has_ingress(),
        "ingress",
        "from",
        |r| (r.from.as_deref(), r.ports.as_deref()),
    )?;
    let egress = rules(
        &namespace,
        np.spec.egress.as_deref(),
        np.has_egress(),
        "egress",
        "to",
        |r| (r.to.as_deref(), r.ports.as_deref()),
    )?;
    Ok(Policy {
        key: np.key(),
        namespace,
        selector,
        ingress,
        egress,
    })
}

/// The rules of one direction: `None` when the policy does not isolate that direction, no
/// rules (deny all) when it does and lists none; `parts` gives a rule's peers and ports.
fn rules<R>(
    namespace: &str,
    spec: Option<&[R]>,
    isolates: bool,
    direction: &str,
    peers_name: &str,
    parts: impl Fn(&R) -> (Option<&[Peer]>, Option<&[PolicyPort]>),
) -> Check<Option<Vec<Rule>>> {
    if !isolates {
        return Ok(None);
    }
    spec.unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (peers, ports) = parts(r);
            rule(
                namespace,
                peers,
                ports,
                &format!("spec.{direction}[{i}]"),
                peers_name,
            )
        })
        .collect::<Check<Vec<_>>>()
        .map(Some)
}

fn rule(
    namespace: &str,
    peers: Option<&[Peer]>,
    ports: Option<&[PolicyPort]>,
    field: &str,
    peers_name: &str,
) -> Check<Rule> {
    let peers = match peers {
        None | Some([]) => None,
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, p)| peer(namespace, p, &format!("{field}.{peers_name}[{i}]")))
                .collect::<Check<Vec<_>>>()?,
        ),
    };
    let ports = match ports {
        None | Some([]) => None,
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, p)| port(p, &format!("{field}.ports[{i}]")))
                .collect::<Check<Vec<_>>>()?,
        ),
    };
    Ok(Rule { peers, ports })
}

fn peer(namespace: &str, p: &Peer, field: &str) -> Check<PeerRule> {
    match (&p.pod_selector, &p.namespace_selector, &p.ip_block) {
        (None, None, None) => err(
            field,
            "give at least one of podSelector, namespaceSelector and ipBlock",
        ),
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => err(
            format!("{field}.ipBlock"),
            "ipBlock cannot be combined with podSelector or namespaceSelector",
        ),
        (None, None, Some(block)) => {
            let cidr = parse_cidr(&block.cidr).map_err(|r| (format!("{field}.ipBlock.cidr"), r))?;
            let mut except = Vec::new();
            for (i, e) in block.except.iter().enumerate() {
                let f = format!("{field}.ipBlock.except[{i}]");
                let net = parse_cidr(e).map_err(|r| (f.clone(), r))?;
                if !(cidr.contains(net.network()) && net.prefix() > cidr.prefix()) {
                    return err(f, format!("{e} is not strictly inside the cidr {cidr}"));
                }
                except.push(net);
            }
            Ok(PeerRule::Block { cidr, except })
        }
        (pods, namespaces, None) => {
            let pods = match pods {
                Some(s) => Selector::from_spec(s, &format!("{field}.podSelector"))?,
                None => Selector::default(),
            };
            let namespaces = match namespaces {
                Some(s) => NamespaceScope::Matching(Selector::from_spec(
                    s,
                    &format!("{field}.namespaceSelector"),
                )?),
                None => NamespaceScope::Own(namespace.to_string()),
            };
            Ok(PeerRule::Workloads { namespaces, pods })
        }
    }
}

fn port(p: &PolicyPort, field: &str) -> Check<PortRule> {
    let protocol = match &p.protocol {
        None => Protocol::Tcp,
        Some(s) => Protocol::parse(s).ok_or_else(|| {
            (
                format!("{field}.protocol"),
                format!("unsupported protocol {s:?}: use TCP, UDP or SCTP"),
            )
        })?,
    };
    let number = |n: i64, f: String| -> Check<u16> {
        u16::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| (f, format!("{n} is out of range: ports are 1 to 65535")))
    };
    let port = match (&p.port, p.end_port) {
        (None, None) => PortSpec::Any,
        (None, Some(_)) => return err(format!("{field}.endPort"), "endPort requires port"),
        (Some(PortValue::Number(n)), None) => {
            let n = number(*n, format!("{field}.port"))?;
            PortSpec::Range(n, n)
        }
        (Some(PortValue::Number(n)), Some(end)) => {
            let n = number(*n, format!("{field}.port"))?;
            let end = number(end, format!("{field}.endPort"))?;
            if end < n {
                return err(
                    format!("{field}.endPort"),
                    format!("{end} is below port {n}"),
                );
            }
            PortSpec::Range(n, end)
        }
        (Some(PortValue::Name(name)), end) => {
            if end.is_some() {
                return err(
                    format!("{field}.endPort"),
                    "endPort requires a numeric port, not a named one",
                );
            }
            check_port_name(name).map_err(|r| (format!("{field}.port"), r))?;
            PortSpec::Named(name.clone())
        }
    };
    Ok(PortRule { protocol, port })
}

fn parse_cidr(s: &str) -> Result<Ipv4Network, String> {
    if !s.contains('/') {
        return Err(format!("{s:?} is not a CIDR such as 10.0.0.0/8"));
    }
    let net: Ipv4Network = s
        .parse()
        .map_err(|e| format!("{s:?} is not an IPv4 CIDR such as 10.0.0.0/8: {e}"))?;
    if net.network() != net.ip() {
        return Err(format!(
            "{s:?} has host bits set: did you mean {}/{}?",
            net.network(),
            net.prefix()
        ));
    }
    Ok(net)
}

fn check_dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a DNS label (at most 63 lower-case letters, digits and '-')"
        ))
    }
}

fn check_dns_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 || s.split('.').any(|p| check_dns_label(p).is_err()) {
        return Err(format!(
            "{s:?} is not a DNS subdomain (lower-case letters, digits, '-' and '.')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(text: &str) -> (String, String) {
        match parse_documents(text) {
            Err(PolicyError::Invalid { field, reason, .. }) => (field, reason),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    const HEAD: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n";

    #[test]
    fn parses_yaml_and_json_documents() {
        let text = format!(
            "{HEAD}spec:\n  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress:\n  - from:\n    - namespaceSelector: {{matchLabels: {{ns: y}}}}\n      podSelector: {{matchLabels: {{pod: b}}}}\n    ports:\n    - port: 80\n      endPort: 81\n    - {{protocol: UDP, port: dns}}\n---\n{{\"apiVersion\": \"networking.k8s.io/v1\", \"kind\": \"NetworkPolicy\", \"metadata\": {{\"name\": \"q\"}}, \"spec\": {{\"podSelector\": {{}}, \"policyTypes\": [\"Egress\"]}}}}\n---\n"
        );
        let docs = parse_documents(&text).unwrap();
        assert_eq!(docs.len(), 2);
        let p = &docs[0].1;
        assert_eq!(p.key, "x/p");
        assert!(p.egress.is_none());
        let rules = p.ingress.as_ref().unwrap();
        let ports = rules[0].ports.as_ref().unwrap();
        assert_eq!(ports[0].port, PortSpec::Range(80, 81));
        assert_eq!(ports[1].protocol, Protocol::Udp);
        assert_eq!(ports[1].port, PortSpec::Named("dns".into()));
        match &rules[0].peers.as_ref().unwrap()[0] {
            PeerRule::Workloads {
                namespaces: NamespaceScope::Matching(_),
                ..
            } => {}
            other => panic!("combined selector lost: {other:?}"),
        }
        let q = &docs[1].1;
        assert_eq!(q.key, "default/q");
        assert_eq!(q.egress.as_deref(), Some(&[][..]));
        assert!(q.ingress.is_none());
    }

    #[test]
    fn bad_input_names_the_field() {
        let (f, r) = invalid(&format!("{HEAD}spec:\n  podSelector: {{}}\n  ingres: []\n"));
        assert_eq!(f, "spec.ingres");
        assert!(r.contains("unknown field `ingres`"), "{r}");
        let (f, r) = invalid(&format!(
            "{HEAD}spec:\n  podSelector: {{matchLabelz: {{}}}}\n"
        ));
        assert_eq!(f, "spec.podSelector.matchLabelz");
        assert!(r.contains("unknown field"), "{r}");
        let (f, _) = invalid(
            "apiVersion: networking.k8s.io/v1beta1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {}}\n",
        );
        assert_eq!(f, "apiVersion");
        let (f, _) = invalid(
            "apiVersion: networking.k8s.io/v1\nkind: Pod\nmetadata: {name: p}\nspec: {podSelector: {}}\n",
        );
        assert_eq!(f, "kind");
        let (f, _) = invalid(&format!(
            "{HEAD}spec:\n  podSelector: {{}}\n  ingress:\n  - from:\n    - ipBlock: {{cidr: 10.0.0.0/33}}\n"
        ));
        assert_eq!(f, "spec.ingress[0].from[0].ipBlock.cidr");
        let (f, _) = invalid(&format!(
            "{HEAD}spec:\n  podSelector: {{}}\n  ingress:\n  - from:\n    - ipBlock: {{cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}\n"
        ));
        assert_eq!(f, "spec.ingress[0].from[0].ipBlock.except[0]");
        let (f, _) = invalid(&format!(
            "{HEAD}spec:\n  podSelector: {{}}\n  egress:\n  - ports:\n    - port: 70000\n"
        ));
        assert_eq!(f, "spec.egress[0].ports[0].port");
        let (f, r) = invalid(&format!(
            "{HEAD}spec:\n  podSelector: {{}}\n  egress:\n  - ports:\n    - endPort: 90\n"
        ));
        assert_eq!(f, "spec.egress[0].ports[0].endPort");
        assert!(r.contains("requires port"), "{r}");
        let (f, _) = invalid(&format!(
            "{HEAD}spec:\n  podSelector: {{}}\n  egress:\n  - ports:\n    - {{port: 90, endPort: 80}}\n"
        ));
        assert_eq!(f, "spec.egress[0].ports[0].endPort");
        let (f, _) = invalid(&format!(
            "{HEAD}spec:\n  podSelector: {{}}\n  egress:\n  - ports:\n    - {{protocol: ICMP}}\n"
        ));
        assert_eq!(f, "spec.egress[0].ports[0].protocol");
        let (f, _) = invalid(&format!(
            "{HEAD}spec:\n  podSelector: {{}}\n  ingress:\n  - from:\n    - {{ipBlock: {{cidr: 10.0.0.0/8}}, podSelector: {{}}}}\n"
        ));
        assert_eq!(f, "spec.ingress[0].from[0].ipBlock");
        let (f, _) = invalid(&format!(
            "{HEAD}spec:\n  podSelector:\n    matchExpressions: [{{key: a, operator: Near}}]\n"
        ));
        assert_eq!(f, "spec.podSelector.matchExpressions[0].operator");
        assert!(matches!(
            parse_documents("a: [unclosed"),
            Err(PolicyError::Syntax { doc: 1, .. })
        ));
        assert!(matches!(parse_documents("---\n"), Err(PolicyError::Empty)));
    }
}
