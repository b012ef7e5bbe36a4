//! The driver's bookkeeping and its file, `docker.json` in the data dir: pools, addresses and
//! their IPAM owners, networks and endpoints (with their veth and container once joined and
//! named). Written with [`crate::state_file::write_atomic`] before a call is answered, so a
//! router killed and restarted still knows what dockerd was told and can undo it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use super::DockerError;
use crate::state_file;

/// The file in the data dir.
pub const DOCKER_STATE_FILE: &str = "docker.json";

/// A network dockerd created on this driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRec {
    /// The gateway the host holds on the bridge for it.
    pub gateway: Option<Ipv4Network>,
}

/// The veth made for a joined endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    /// The name of the end handed to dockerd.
    pub ifname: String,
    /// The host end, on the bridge.
    pub host_ifname: String,
    /// The IPAM owner of the address.
    pub owner: String,
}

/// The container behind an endpoint, learnt from the Docker Engine API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Docker's container id.
    pub id: String,
    /// Its name, without Docker's leading `/`.
    pub name: String,
    /// Its labels (`docker run --label`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// An endpoint dockerd created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRec {
    /// Its network's id.
    pub network: String,
    /// Its address.
    pub address: Ipv4Network,
    /// Its veth, once joined.
    #[serde(default)]
    pub joined: Option<Joined>,
    /// Its container, once named.
    #[serde(default)]
    pub container: Option<Container>,
}

/// Everything the driver remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverState {
    /// Pool id → pool.
    pub pools: BTreeMap<String, Ipv4Network>,
    /// Address handed out by RequestAddress → its IPAM owner.
    pub owners: BTreeMap<Ipv4Addr, String>,
    /// Network id → network.
    pub networks: BTreeMap<String, NetworkRec>,
    /// Endpoint id → endpoint.
    pub endpoints: BTreeMap<String, EndpointRec>,
    /// Source of unique IPAM owners for addresses requested without a name.
    pub next_owner: u64,
}

/// Where the state is kept; `None` keeps it in memory only (tests).
#[derive(Debug, Clone)]
pub struct StateStore {
    path: Option<PathBuf>,
}

impl StateStore {
    /// The store at `<data_dir>/docker.json`.
    pub fn in_dir(data_dir: &Path) -> StateStore {
        StateStore {
            path: Some(data_dir.join(DOCKER_STATE_FILE)),
        }
    }

    /// A store that keeps nothing on disk.
    pub fn memory() -> StateStore {
        StateStore { path: None }
    }

    /// The stored state; empty when there is no file yet.
    pub fn load(&self) -> Result<DriverState, DockerError> {
        let Some(path) = &self.path else {
            return Ok(DriverState::default());
        };
        let bytes = state_file::read_if_exists(path).map_err(|e| state_error(path, e))?;
        match bytes {
            None => Ok(DriverState::default()),
            Some(b) => serde_json::from_slice(&b).map_err(|e| DockerError::State {
                path: path.display().to_string(),
                reason: format!("corrupt ({e}); fix it or remove it to forget Docker's networks"),
            }),
        }
    }

    /// Replaces the stored state with `state`.
    pub fn save(&self, state: &DriverState) -> Result<(), DockerError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| DockerError::State {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        state_file::write_atomic(path, &bytes).map_err(|e| state_error(path, e))
    }
}

fn state_error(path: &Path, e: anyhow::Error) -> DockerError {
    DockerError::State {
        path: path.display().to_string(),
        reason: format!("{e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_refuses_a_corrupt_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StateStore::in_dir(dir.path());
        assert_eq!(store.load().expect("empty"), DriverState::default());
        let mut st = DriverState::default();
        st.pools.insert(
            "weft-10.32.0.0/12".into(),
            "10.32.0.0/12".parse().expect("net"),
        );
        st.owners
            .insert(Ipv4Addr::new(10, 32, 0, 5), "docker:x-1".into());
        st.endpoints.insert(
            "e1".into(),
            EndpointRec {
                network: "n1".into(),
                address: "10.32.0.5/12".parse().expect("net"),
                joined: Some(Joined {
                    ifname: "vwe1".into(),
                    host_ifname: "vethwe1".into(),
                    owner: "docker:x-1".into(),
                }),
                container: Some(Container {
                    id: "c1".into(),
                    name: "web".into(),
                    labels: BTreeMap::from([("app".into(), "web".into())]),
                }),
            },
        );
        store.save(&st).expect("save");
        assert_eq!(store.load().expect("load"), st);
        std::fs::write(dir.path().join(DOCKER_STATE_FILE), b"{\"pools\": 3").expect("write");
        let err = store.load().expect_err("corrupt file accepted");
        assert!(err.to_string().contains("corrupt"), "{err}");
    }
}
