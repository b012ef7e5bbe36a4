//! The state of the `policy` gossip channel: a versioned map (last writer wins per key, ties
//! broken by the writer's peer name, deletions kept as tombstones) holding policies,
//! namespace labels and workloads. Merging is idempotent, commutative and associative.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::labels::Labels;
use super::model::{WorkloadMeta, World};
use super::spec::NetworkPolicy;
use super::validate::validate;

/// What a key holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Value {
    /// A NetworkPolicy, as given.
    Policy(Box<NetworkPolicy>),
    /// The labels of a namespace.
    Namespace(Labels),
    /// A workload.
    Workload(WorkloadMeta),
}

/// One versioned entry; `value` `None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Version (milliseconds of a hybrid clock).
    pub version: u64,
    /// Peer that wrote it (the tie-break).
    pub origin: String,
    /// The value, or `None` when deleted.
    pub value: Option<Value>,
}

impl Entry {
    fn newer_than(&self, other: &Entry) -> bool {
        (self.version, &self.origin) > (other.version, &other.origin)
    }
}

/// Key of policy `ns/name`.
pub fn policy_key(ns_name: &str) -> String {
    format!("policy/{ns_name}")
}

/// Key of namespace `ns`.
pub fn namespace_key(ns: &str) -> String {
    format!("namespace/{ns}")
}

/// Key of the workload with address `addr`.
pub fn workload_key(addr: Ipv4Addr) -> String {
    format!("workload/{addr}")
}

/// The replicated map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Store {
    entries: BTreeMap<String, Entry>,
}

impl Store {
    /// Decodes a store (or an update: a map of entries).
    pub fn decode(bytes: &[u8]) -> Result<Store, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    /// Encodes the whole store.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The live value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.get(key).and_then(|e| e.value.as_ref())
    }

    /// Live entries whose key starts with `prefix`.
    pub fn live<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        self.entries
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .filter_map(|(k, e)| e.value.as_ref().map(|v| (k, v)))
    }

    /// Writes `value` (or a tombstone) at `key` with a version above every version seen and
    /// at least `now_ms`; returns the update to gossip.
    pub fn put(&mut self, key: String, value: Option<Value>, now_ms: u64, origin: &str) -> Store {
        let top = self.entries.values().map(|e| e.version).max().unwrap_or(0);
        let entry = Entry {
            version: now_ms.max(top + 1),
            origin: origin.to_string(),
            value,
        };
        self.entries.insert(key.clone(), entry.clone());
        Store {
            entries: BTreeMap::from([(key, entry)]),
        }
    }

    /// Merges `other`; returns the entries that were news (empty when nothing changed).
    pub fn merge(&mut self, other: Store) -> Store {
        let mut news = BTreeMap::new();
        for (k, e) in other.entries {
            let take = match self.entries.get(&k) {
                None => true,
                Some(mine) => e.newer_than(mine),
            };
            if take {
                self.entries.insert(k.clone(), e.clone());
                news.insert(k, e);
            }
        }
        Store { entries: news }
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Everything policy decisions need: valid policies (an invalid one from a peer is skipped
    /// with a warning), namespace labels and workloads.
    pub fn world(&self) -> World {
        let mut w = World::default();
        for (k, v) in self.live("") {
            match v {
                Value::Policy(np) => match validate(np, 1) {
                    Ok(p) => {
                        w.policies.insert(p.key.clone(), p);
                    }
                    Err(e) => warn!(key = %k, "ignoring an invalid policy from the mesh: {e}"),
                },
                Value::Namespace(l) => {
                    if let Some(ns) = k.strip_prefix("namespace/") {
                        w.namespaces.insert(ns.to_string(), l.clone());
                    }
                }
                Value::Workload(m) => {
                    w.workloads.insert(m.address, m.clone());
                }
            }
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(v: &str) -> Option<Value> {
        Some(Value::Namespace([("v".to_string(), v.to_string())].into()))
    }

    #[test]
    fn last_writer_wins_with_a_deterministic_tie_break() {
        let mut a = Store::default();
        let mut b = Store::default();
        let ua = a.put(namespace_key("x"), ns("a"), 100, "aa:00:00:00:00:01");
        let ub = b.put(namespace_key("x"), ns("b"), 100, "aa:00:00:00:00:02");
        let mut a2 = a.clone();
        a2.merge(ub.clone());
        let mut b2 = b.clone();
        b2.merge(ua.clone());
        assert_eq!(a2, b2, "same state whatever the order");
        assert_eq!(a2.get(&namespace_key("x")), ns("b").as_ref());
        // Idempotent: merging again is no news.
        assert!(a2.merge(ub).is_empty());
        // A later local write beats everything seen, even with a slow clock.
        let tomb = a2.put(namespace_key("x"), None, 5, "aa:00:00:00:00:01");
        assert!(!b2.merge(tomb).is_empty());
        assert_eq!(b2.get(&namespace_key("x")), None);
        assert_eq!(a2, b2);
        // The tombstone stays and refuses the old value.
        assert!(b2.merge(ua).is_empty());
        let round = Store::decode(&b2.encode()).unwrap();
        assert_eq!(round, b2);
        assert!(Store::decode(b"{").is_err());
    }
}
