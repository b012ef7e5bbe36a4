//! The record store: a pure map of DNS entries (no sockets, no clock: `now` is passed in), merged
//! from gossip, and the lookup tables the server answers from.
//!
//! Each entry is owned by the peer that made it (its `peer`); only that peer changes it, bumping
//! `version`. A removal is a tombstone (same key, higher version, `tombstone = Some(when)`) that is
//! dropped 30 minutes after it was made. Merge keeps, per key, the higher version (a tombstone wins
//! a tie), so it is idempotent, commutative and associative. Entries of peers that are not
//! reachable stay stored but are left out of the lookup tables until the peer comes back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::DnsError;
use super::name::Fqdn;
use crate::mesh::PeerName;

/// How long a tombstone is kept, in milliseconds (30 minutes, as weaveDNS).
pub const TOMBSTONE_TTL_MS: u64 = 30 * 60 * 1000;
/// Magic bytes at the start of the state file.
const FILE_MAGIC: &[u8; 8] = b"WEFTDNS\0";
/// Format version of the state file and of gossip payloads.
const FORMAT_VERSION: u32 = 1;

/// One record: `name` resolves to `addr`, made by `peer` for the workload `owner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Lower-case FQDN with the trailing dot.
    pub name: String,
    /// The address.
    pub addr: IpAddr,
    /// The peer that owns the entry.
    pub peer: PeerName,
    /// The workload it belongs to (namespace path, container id, or `weft:extern`).
    pub owner: String,
    /// Bumped by the owning peer on every change.
    pub version: u64,
    /// When the entry was removed (unix milliseconds); `None` while it is live.
    #[serde(default)]
    pub tombstone: Option<u64>,
}

type Key = (PeerName, String, String, IpAddr);

impl Entry {
    fn key(&self) -> Key {
        (self.peer, self.owner.clone(), self.name.clone(), self.addr)
    }

    /// Whether `self` wins over `other` (same key) in a merge.
    fn supersedes(&self, other: &Entry) -> bool {
        (self.version, self.tombstone.is_some(), self.tombstone)
            > (other.version, other.tombstone.is_some(), other.tombstone)
    }

    fn expired(&self, now_ms: u64) -> bool {
        self.tombstone
            .is_some_and(|t| t.saturating_add(TOMBSTONE_TTL_MS) <= now_ms)
    }
}

/// What the server answers from: live, reachable records only.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tables {
    by_name: HashMap<String, Vec<IpAddr>>,
    by_addr: HashMap<IpAddr, Vec<String>>,
}

impl Tables {
    /// Addresses of `name` (lower-case FQDN with the trailing dot), without duplicates.
    pub fn addresses(&self, name: &str) -> &[IpAddr] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    /// Names of `addr`.
    pub fn names(&self, addr: IpAddr) -> &[String] {
        self.by_addr.get(&addr).map_or(&[], Vec::as_slice)
    }

    /// Whether any record has `name`.
    pub fn has_name(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }
}

/// The record store of one peer.
#[derive(Debug, Clone)]
pub struct Store {
    local: PeerName,
    entries: BTreeMap<Key, Entry>,
    reachable: BTreeSet<PeerName>,
    tables: Arc<Tables>,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    entries: Vec<Entry>,
}

impl Store {
    /// An empty store for peer `local`.
    pub fn new(local: PeerName) -> Store {
        Store {
            local,
            entries: BTreeMap::new(),
            reachable: BTreeSet::new(),
            tables: Arc::default(),
        }
    }

    /// This peer.
    pub fn local(&self) -> PeerName {
        self.local
    }

    /// Registers `name` → `addr` for `owner`; returns the new entry to gossip, or `None` when it
    /// was already live.
    pub fn add(&mut self, name: &Fqdn, addr: IpAddr, owner: &str) -> Option<Entry> {
        let key = (self.local, owner.to_string(), name.to_string(), addr);
        let version = match self.entries.get(&key) {
            Some(e) if e.tombstone.is_none() => return None,
            Some(e) => e.version + 1,
            None => 1,
        };
        let entry = Entry {
            name: name.to_string(),
            addr,
            peer: self.local,
            owner: owner.to_string(),
            version,
            tombstone: None,
        };
        self.entries.insert(key, entry.clone());
        self.rebuild();
        Some(entry)
    }

    /// Tombstones this peer's live entries matching `pred`; returns the tombstones to gossip.
    pub fn remove(&mut self, pred: impl Fn(&Entry) -> bool, now_ms: u64) -> Vec<Entry> {
        let mut out = Vec::new();
        for e in self.entries.values_mut() {
            if e.peer == self.local && e.tombstone.is_none() && pred(e) {
                e.version += 1;
                e.tombstone = Some(now_ms);
                out.push(e.clone());
            }
        }
        if !out.is_empty() {
            self.rebuild();
        }
        out
    }

    /// Merges entries from a peer; returns those that were news (to forward). Entries with
    /// invalid names and tombstones already expired are ignored.
    pub fn merge(&mut self, incoming: Vec<Entry>, now_ms: u64) -> Vec<Entry> {
        let mut news = Vec::new();
        for e in incoming {
            if Fqdn::parse(&e.name).map(|n| n.to_string()).as_deref() != Ok(e.name.as_str()) {
                continue;
            }
            let key = e.key();
            let take = match self.entries.get(&key) {
                Some(old) => e.supersedes(old),
                None => !e.expired(now_ms),
            };
            if take {
                self.entries.insert(key, e.clone());
                news.push(e);
            }
        }
        if !news.is_empty() {
            self.rebuild();
        }
        news
    }

    /// Drops tombstones older than [`TOMBSTONE_TTL_MS`]; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| !e.expired(now_ms));
        before - self.entries.len()
    }

    /// Sets the peers whose records are answered (besides this one); returns whether the
    /// tables changed.
    pub fn set_reachable(&mut self, peers: BTreeSet<PeerName>) -> bool {
        if peers == self.reachable {
            return false;
        }
        self.reachable = peers;
        let old = self.tables.clone();
        self.rebuild();
        *old != *self.tables
    }

    /// The lookup tables, shared cheaply with the server.
    pub fn tables(&self) -> Arc<Tables> {
        self.tables.clone()
    }

    /// Every stored entry, tombstones included.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Live entries, including those of unreachable peers.
    pub fn live(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().filter(|e| e.tombstone.is_none())
    }

    /// Encodes `entries` as a gossip payload.
    pub fn encode(entries: &[Entry]) -> Vec<u8> {
        let mut out = FORMAT_VERSION.to_be_bytes().to_vec();
        let body = serde_json::to_vec(&Payload {
            entries: entries.to_vec(),
        })
        .unwrap_or_default();
        out.extend_from_slice(&body);
        out
    }

    /// Decodes a gossip payload.
    pub fn decode(bytes: &[u8]) -> Result<Vec<Entry>, DnsError> {
        let (version, body) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| DnsError::Decode(format!("{} bytes is too short", bytes.len())))?;
        let version = u32::from_be_bytes(*version);
        if version != FORMAT_VERSION {
            return Err(DnsError::Decode(format!(
                "format version {version}, this router reads {FORMAT_VERSION}"
            )));
        }
        serde_json::from_slice::<Payload>(body)
            .map(|p| p.entries)
            .map_err(|e| DnsError::Decode(e.to_string()))
    }

    /// The whole state as a gossip payload.
    pub fn full_state(&self) -> Vec<u8> {
        let all: Vec<Entry> = self.entries.values().cloned().collect();
        Store::encode(&all)
    }

    /// The state file's bytes: magic, format version, CRC-32C of the body, body.
    pub fn to_file(&self) -> Vec<u8> {
        let body = self.full_state();
        let mut out = Vec::with_capacity(body.len() + 16);
        out.extend_from_slice(FILE_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Restores a store from the state file's bytes; a wrong magic, version or checksum is an
    /// error (the reason, for the caller to report with the file's path).
    pub fn from_file(local: PeerName, bytes: &[u8], now_ms: u64) -> Result<Store, String> {
        let rest = bytes
            .strip_prefix(FILE_MAGIC.as_slice())
            .ok_or("it does not start with the weft DNS magic bytes")?;
        let (version, rest) = rest.split_first_chunk::<4>().ok_or("it is truncated")?;
        let version = u32::from_be_bytes(*version);
        if version != FORMAT_VERSION {
            return Err(format!(
                "format version {version}, this router reads {FORMAT_VERSION}"
            ));
        }
        let (crc, body) = rest.split_first_chunk::<4>().ok_or("it is truncated")?;
        if u32::from_be_bytes(*crc) != crc32c::crc32c(body) {
            return Err("its checksum does not match (torn or edited)".into());
        }
        let entries = Store::decode(body).map_err(|e| e.to_string())?;
        let mut store = Store::new(local);
        store.merge(entries, now_ms);
        Ok(store)
    }

    fn rebuild(&mut self) {
        let mut t = Tables::default();
        for e in self.entries.values() {
            if e.tombstone.is_some() || (e.peer != self.local && !self.reachable.contains(&e.peer))
            {
                continue;
            }
            let addrs = t.by_name.entry(e.name.clone()).or_default();
            if !addrs.contains(&e.addr) {
                addrs.push(e.addr);
            }
            let names = t.by_addr.entry(e.addr).or_default();
            if !names.contains(&e.name) {
                names.push(e.name.clone());
            }
        }
        self.tables = Arc::new(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: PeerName = PeerName(0xa);
    const B: PeerName = PeerName(0xb);

    fn name(s: &str) -> Fqdn {
        Fqdn::parse(s).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn add_remove_and_tombstone_expiry() {
        let mut a = Store::new(A);
        let e = a.add(&name("web.weft.local"), ip("10.32.0.1"), "w1");
        assert_eq!(e.as_ref().map(|e| e.version), Some(1));
        assert!(
            a.add(&name("web.weft.local"), ip("10.32.0.1"), "w1")
                .is_none()
        );
        assert_eq!(a.tables().addresses("web.weft.local."), &[ip("10.32.0.1")]);
        assert_eq!(a.tables().names(ip("10.32.0.1")), &["web.weft.local."]);
        let gone = a.remove(|e| e.owner == "w1", 1_000);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].version, 2);
        assert!(a.tables().addresses("web.weft.local.").is_empty());
        assert_eq!(a.expire(1_000 + TOMBSTONE_TTL_MS - 1), 0);
        assert_eq!(a.expire(1_000 + TOMBSTONE_TTL_MS), 1);
        assert_eq!(a.entries().count(), 0);
    }

    #[test]
    fn peers_records_follow_reachability() {
        let mut a = Store::new(A);
        let mut b = Store::new(B);
        let e = b.add(&name("db.weft.local"), ip("10.32.0.9"), "w").unwrap();
        assert_eq!(a.merge(vec![e.clone()], 0).len(), 1);
        assert!(a.merge(vec![e], 0).is_empty(), "merge is idempotent");
        assert!(a.tables().addresses("db.weft.local.").is_empty());
        assert!(a.set_reachable(BTreeSet::from([B])));
        assert_eq!(a.tables().addresses("db.weft.local."), &[ip("10.32.0.9")]);
        assert!(a.set_reachable(BTreeSet::new()));
        assert!(a.tables().addresses("db.weft.local.").is_empty());
        assert_eq!(
            a.live().count(),
            1,
            "records of an unreachable peer are kept"
        );
    }

    #[test]
    fn file_round_trip_and_corruption() {
        let mut a = Store::new(A);
        a.add(&name("x.weft.local"), ip("10.32.0.2"), "o");
        a.add(&name("y.weft.local"), ip("fd00::1"), "o");
        a.remove(|e| e.name == "y.weft.local.", 5);
        let bytes = a.to_file();
        let back = Store::from_file(A, &bytes, 10).unwrap();
        assert_eq!(
            back.entries().collect::<Vec<_>>(),
            a.entries().collect::<Vec<_>>()
        );
        let mut bad = bytes.clone();
        let last = bad.len() - 2;
        bad[last] ^= 1;
        assert!(
            Store::from_file(A, &bad, 10)
                .unwrap_err()
                .contains("checksum")
        );
        assert!(Store::from_file(A, b"garbage", 10).is_err());
        assert!(Store::from_file(A, &bytes[..14], 10).is_err());
    }

    #[test]
    fn merge_drops_invalid_names() {
        let mut a = Store::new(A);
        let bad = Entry {
            name: "Bad_Name.".into(),
            addr: ip("10.32.0.1"),
            peer: B,
            owner: "o".into(),
            version: 1,
            tombstone: None,
        };
        assert!(a.merge(vec![bad], 0).is_empty());
        assert!(Store::decode(b"\0\0\0\x01{").is_err());
        assert!(Store::decode(b"\0\0\0\x07{}").is_err());
    }

    fn arb_entry() -> impl Strategy<Value = Entry> {
        (
            0u64..3,
            0usize..3,
            0u8..3,
            1u64..4,
            proptest::option::of(0u64..3),
        )
            .prop_map(|(peer, n, a, version, tomb)| Entry {
                name: ["a.weft.local.", "b.weft.local.", "c.weft.local."][n].into(),
                addr: IpAddr::from([10, 32, 0, a]),
                peer: PeerName(peer),
                owner: "o".into(),
                version,
                tombstone: tomb,
            })
    }

    proptest! {
        #[test]
        fn merge_is_commutative_and_idempotent(
            xs in proptest::collection::vec(arb_entry(), 0..20),
            ys in proptest::collection::vec(arb_entry(), 0..20),
        ) {
            let mut one = Store::new(A);
            one.merge(xs.clone(), 0);
            one.merge(ys.clone(), 0);
            let mut two = Store::new(A);
            two.merge(ys.clone(), 0);
            two.merge(xs.clone(), 0);
            prop_assert_eq!(one.entries().collect::<Vec<_>>(), two.entries().collect::<Vec<_>>());
            let again: Vec<Entry> = one.entries().cloned().collect();
            prop_assert!(one.merge(again, 0).is_empty());
            prop_assert!(one.merge(xs, 0).is_empty());
        }
    }
}
