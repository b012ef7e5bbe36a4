//! Who an overlay address is: the mesh-wide workload view (every workload of every router, as
//! the policy channel gossips it) turned into flow endpoints, and the rule deciding which
//! router counts a connection.
//!
//! **Who counts.** A connection is counted by exactly one router: the router of its source
//! (initiating) workload. When the source is not a workload at all (the host, the world) the
//! router of the destination workload counts it. Connections between two workloads therefore
//! appear once in the mesh, in the tenant of the source workload, however many routers'
//! conntrack tables they cross.
//!
//! An address that is no workload but has a DNS record (`weft dns-add`) is named by the
//! record (its FQDN without the final dot) in namespace [`UNKNOWN`] or [`WORLD`].

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use super::ctnetlink::Tuple;

/// Workload label of an address in the overlay range that no workload holds (a host's
/// exposed address, a router's DNS address).
pub(crate) const UNKNOWN: &str = "unknown";
/// Workload and namespace label of an address outside the overlay range.
pub(crate) const WORLD: &str = "world";

/// One end of a flow, as labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Endpoint {
    /// Workload name, or [`UNKNOWN`] / [`WORLD`].
    pub(crate) workload: String,
    /// Its namespace, or [`UNKNOWN`] / [`WORLD`].
    pub(crate) namespace: String,
}

impl Endpoint {
    fn named(workload: &str, namespace: &str) -> Endpoint {
        Endpoint {
            workload: workload.to_string(),
            namespace: namespace.to_string(),
        }
    }
}

/// A workload as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Known {
    /// Its name.
    pub(crate) name: String,
    /// Its namespace.
    pub(crate) namespace: String,
    /// The router it is attached to.
    pub(crate) host: String,
}

/// The endpoints of a connection this router counts, and the namespace of its local end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sides {
    /// The initiator.
    pub(crate) src: Endpoint,
    /// The responder.
    pub(crate) dst: Endpoint,
    /// Namespace of the local workload the connection is counted for (the tenant with
    /// `--flow-tenant-from=namespace`).
    pub(crate) local_namespace: String,
}

/// Addresses of every workload in the mesh, and which are local.
#[derive(Debug, Clone, Default)]
pub(crate) struct Directory {
    local: String,
    range: Option<Ipv4Network>,
    workloads: HashMap<Ipv4Addr, Known>,
    names: HashMap<Ipv4Addr, String>,
}

impl Directory {
    /// A directory for router `local` (its peer name, as workloads name their host) of the
    /// overlay `range`.
    pub(crate) fn new(
        local: String,
        range: Ipv4Network,
        workloads: impl IntoIterator<Item = (Ipv4Addr, Known)>,
    ) -> Directory {
        Directory {
            local,
            range: Some(range),
            workloads: workloads.into_iter().collect(),
            names: HashMap::new(),
        }
    }

    /// Adds DNS names (`name.weft.local.`) of addresses; the first name of an address wins.
    pub(crate) fn with_names(
        mut self,
        names: impl IntoIterator<Item = (Ipv4Addr, String)>,
    ) -> Self {
        for (addr, name) in names {
            let name = name.trim_end_matches('.').to_string();
            if !name.is_empty() {
                self.names.entry(addr).or_insert(name);
            }
        }
        self
    }

    fn endpoint(&self, addr: Ipv4Addr) -> Endpoint {
        if let Some(w) = self.workloads.get(&addr) {
            return Endpoint::named(&w.name, &w.namespace);
        }
        let namespace = if self.range.is_some_and(|r| r.contains(addr)) {
            UNKNOWN
        } else {
            WORLD
        };
        let name = self.names.get(&addr).map_or(namespace, String::as_str);
        Endpoint::named(name, namespace)
    }

    /// The sides of the connection `t` (original direction) when this router counts it.
    pub(crate) fn classify(&self, t: &Tuple) -> Option<Sides> {
        let local_namespace = match (self.workloads.get(&t.src), self.workloads.get(&t.dst)) {
            (Some(s), _) if s.host == self.local => s.namespace.clone(),
            (None, Some(d)) if d.host == self.local => d.namespace.clone(),
            _ => return None,
        };
        Some(Sides {
            src: self.endpoint(t.src),
            dst: self.endpoint(t.dst),
            local_namespace,
        })
    }

    /// The sides of `t` when either end is a local workload (for what only this router
    /// sees, such as its policy drops); the local namespace is the source's when both are.
    pub(crate) fn classify_local(&self, t: &Tuple) -> Option<Sides> {
        let is_local = |a: Ipv4Addr| {
            self.workloads
                .get(&a)
                .filter(|w| w.host == self.local)
                .map(|w| w.namespace.clone())
        };
        let local_namespace = is_local(t.src).or_else(|| is_local(t.dst))?;
        Some(Sides {
            src: self.endpoint(t.src),
            dst: self.endpoint(t.dst),
            local_namespace,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A directory of router `a` with workloads `web` (a, ns shop, .1), `db` (b, ns shop, .2)
    /// and `api` (b, ns other, .3).
    pub(crate) fn sample() -> Directory {
        let w = |name: &str, ns: &str, host: &str| Known {
            name: name.into(),
            namespace: ns.into(),
            host: host.into(),
        };
        Directory::new(
            "a".into(),
            "10.32.0.0/12".parse().expect("range"),
            [
                (Ipv4Addr::new(10, 32, 0, 1), w("web", "shop", "a")),
                (Ipv4Addr::new(10, 32, 0, 2), w("db", "shop", "b")),
                (Ipv4Addr::new(10, 32, 0, 3), w("api", "other", "b")),
            ],
        )
    }

    fn t(src: [u8; 4], dst: [u8; 4]) -> Tuple {
        Tuple {
            src: src.into(),
            dst: dst.into(),
            proto: 6,
            sport: 1234,
            dport: 80,
        }
    }

    #[test]
    fn the_source_workloads_router_counts() {
        let d = sample();
        let s = d
            .classify(&t([10, 32, 0, 1], [10, 32, 0, 2]))
            .expect("local source");
        assert_eq!(s.src, Endpoint::named("web", "shop"));
        assert_eq!(s.dst, Endpoint::named("db", "shop"));
        assert_eq!(s.local_namespace, "shop");
        // db's router counts db -> web, not us; nor api -> db.
        assert_eq!(d.classify(&t([10, 32, 0, 2], [10, 32, 0, 1])), None);
        assert_eq!(d.classify(&t([10, 32, 0, 3], [10, 32, 0, 2])), None);
    }

    #[test]
    fn a_source_that_is_no_workload_is_counted_at_the_destination() {
        let d = sample();
        let s = d
            .classify(&t([192, 168, 1, 5], [10, 32, 0, 1]))
            .expect("to local");
        assert_eq!(s.src, Endpoint::named(WORLD, WORLD));
        let s = d
            .classify(&t([10, 32, 9, 9], [10, 32, 0, 1]))
            .expect("to local");
        assert_eq!(s.src, Endpoint::named(UNKNOWN, UNKNOWN));
        // Underlay traffic between hosts is nobody's flow.
        assert_eq!(d.classify(&t([192, 168, 1, 5], [192, 168, 1, 6])), None);
        // A non-workload source towards a remote workload is that router's.
        assert_eq!(d.classify(&t([192, 168, 1, 5], [10, 32, 0, 2])), None);
    }

    #[test]
    fn addresses_with_a_dns_record_are_named_by_it() {
        let d = sample().with_names([
            (Ipv4Addr::new(10, 32, 9, 9), "dns.weft.local.".to_string()),
            (Ipv4Addr::new(10, 32, 9, 9), "other.weft.local.".to_string()),
            (Ipv4Addr::new(10, 32, 0, 1), "web.weft.local.".to_string()),
        ]);
        let s = d
            .classify(&t([10, 32, 0, 1], [10, 32, 9, 9]))
            .expect("local");
        assert_eq!(s.dst, Endpoint::named("dns.weft.local", UNKNOWN));
        assert_eq!(
            s.src,
            Endpoint::named("web", "shop"),
            "workloads keep their names"
        );
    }
}
