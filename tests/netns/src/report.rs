//! Reading `weft report` JSON. Every field name the tests depend on lives here, so a change of
//! the report's layout is fixed in one place.

use serde_json::Value;

/// One router's `weft report`.
#[derive(Debug, Clone)]
pub struct Report(Value);

/// A mesh connection as the report lists it (`mesh.connections[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Remote `ip:port`.
    pub address: String,
    /// Whether this router dialled it.
    pub outbound: bool,
    /// Connection state, e.g. `established`.
    pub state: String,
    /// Whether its frames are encrypted.
    pub encrypted: bool,
    /// The remote peer's name, once the handshake told it.
    pub name: Option<String>,
}

/// A peer of the mesh as the report lists it (`mesh.peers[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Peer name.
    pub name: String,
    /// Nickname.
    pub nickname: String,
    /// Incarnation UID, as text.
    pub uid: String,
}

impl Connection {
    /// Whether the handshake finished and the connection carries gossip.
    pub fn is_established(&self) -> bool {
        self.state == "established"
    }

    /// The remote IP without the port.
    pub fn ip(&self) -> &str {
        self.address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(ip, _)| ip)
    }
}

impl Report {
    /// Wraps parsed JSON.
    pub fn new(value: Value) -> Self {
        Report(value)
    }

    /// The whole document, for fields without an accessor.
    pub fn raw(&self) -> &Value {
        &self.0
    }

    /// This router's peer name (`router.name`).
    pub fn name(&self) -> Option<&str> {
        self.0.pointer("/router/name")?.as_str()
    }

    /// This router's per-start UID (`router.uid`), as text whatever its JSON type.
    pub fn uid(&self) -> Option<String> {
        scalar_text(self.0.pointer("/router/uid")?)
    }

    /// Whether the router runs with a password (`router.encryption`).
    pub fn encryption(&self) -> Option<bool> {
        self.0.pointer("/router/encryption")?.as_bool()
    }

    /// Names of every peer the router knows, itself included (`mesh.peers[].name`), sorted.
    pub fn peer_names(&self) -> Vec<String> {
        let mut names: Vec<String> = array(&self.0, "/mesh/peers")
            .filter_map(|peer| peer.get("name")?.as_str().map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    /// Every peer the router knows, itself included (`mesh.peers[]`); entries without a name are skipped.
    pub fn peers(&self) -> Vec<Peer> {
        array(&self.0, "/mesh/peers")
            .filter_map(|p| {
                Some(Peer {
                    name: p.get("name")?.as_str()?.to_owned(),
                    nickname: p
                        .get("nickname")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    uid: p.get("uid").and_then(scalar_text).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// The router's own mesh connections (`mesh.connections[]`); entries missing a field are skipped.
    pub fn connections(&self) -> Vec<Connection> {
        array(&self.0, "/mesh/connections")
            .filter_map(|c| {
                Some(Connection {
                    address: c.get("address")?.as_str()?.to_owned(),
                    outbound: c.get("outbound")?.as_bool()?,
                    state: c.get("state")?.as_str()?.to_owned(),
                    encrypted: c.get("encrypted").and_then(Value::as_bool).unwrap_or(false),
                    name: c.get("name").and_then(Value::as_str).map(str::to_owned),
                })
            })
            .collect()
    }

    /// The established connections.
    pub fn established(&self) -> Vec<Connection> {
        self.connections()
            .into_iter()
            .filter(Connection::is_established)
            .collect()
    }

    /// Whether an established connection to (or from) `ip` exists.
    pub fn connected_to(&self, ip: &str) -> bool {
        self.established().iter().any(|c| c.ip() == ip)
    }

    /// Addresses of the dial targets (`mesh.targets[].address`).
    pub fn target_addresses(&self) -> Vec<String> {
        array(&self.0, "/mesh/targets")
            .filter_map(|t| t.get("address")?.as_str().map(str::to_owned))
            .collect()
    }
}

fn array<'a>(value: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report::new(serde_json::json!({
            "router": {"name": "aa:bb:cc:dd:ee:01", "nickname": "h0", "uid": 42, "encryption": true},
            "mesh": {
                "peers": [
                    {"name": "aa:bb:cc:dd:ee:02", "nickname": "h1", "uid": 7, "version": 3, "connections": []},
                    {"name": "aa:bb:cc:dd:ee:01", "nickname": "h0", "uid": 42, "version": 5, "connections": []}
                ],
                "connections": [
                    {"address": "198.18.0.2:6783", "outbound": true, "state": "established",
                     "encrypted": true, "name": "aa:bb:cc:dd:ee:02", "nickname": "h1"},
                    {"address": "198.18.0.3:40000", "outbound": false, "state": "connecting", "encrypted": false}
                ],
                "targets": [{"address": "198.18.0.2:6783", "state": "connected", "last_error": null, "attempts": 1}]
            }
        }))
    }

    #[test]
    fn reads_identity() {
        let r = sample();
        assert_eq!(r.name(), Some("aa:bb:cc:dd:ee:01"));
        assert_eq!(r.uid().as_deref(), Some("42"));
        assert_eq!(r.encryption(), Some(true));
    }

    #[test]
    fn reads_peers_sorted() {
        assert_eq!(
            sample().peer_names(),
            ["aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"]
        );
    }

    #[test]
    fn reads_connections() {
        let r = sample();
        let all = r.connections();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].name, None);
        assert_eq!(r.established().len(), 1);
        assert!(r.connected_to("198.18.0.2"));
        assert!(!r.connected_to("198.18.0.3"));
        assert_eq!(r.target_addresses(), ["198.18.0.2:6783"]);
    }

    #[test]
    fn missing_sections_read_as_empty() {
        let r = Report::new(serde_json::json!({}));
        assert_eq!(r.name(), None);
        assert!(r.peer_names().is_empty());
        assert!(r.connections().is_empty());
    }
}
