//! The overlay's persisted state: attachments and exposed host addresses, in one JSON file in
//! the data dir, replaced atomically on every change.

use std::path::{Path, PathBuf};

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use super::error::{OverlayError, Result};
use super::workload::Attachment;
use crate::state_file;

/// File in the data dir holding [`OverlayState`].
pub const STATE_FILE: &str = "overlay.json";

/// What survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayState {
    /// Workload interfaces weft made.
    pub attachments: Vec<Attachment>,
    /// Addresses the host has on the bridge (`weft expose`).
    pub exposed: Vec<Ipv4Network>,
}

/// Where the state lives.
#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
}

impl StateStore {
    /// The store in `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        StateStore {
            path: data_dir.join(STATE_FILE),
        }
    }

    /// The stored state, empty when there is none yet.
    pub fn load(&self) -> Result<OverlayState> {
        match state_file::read_if_exists(&self.path).map_err(OverlayError::State)? {
            None => Ok(OverlayState::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                OverlayError::State(anyhow::anyhow!(
                    "{} is corrupt ({e}); fix or remove it (attached workloads are then forgotten)",
                    self.path.display()
                ))
            }),
        }
    }

    /// Replaces the stored state.
    pub fn save(&self, state: &OverlayState) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| OverlayError::State(anyhow::anyhow!("encoding the state: {e}")))?;
        state_file::write_atomic(&self.path, &bytes).map_err(OverlayError::State)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::workload::NetnsId;

    #[test]
    fn round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        assert_eq!(store.load().unwrap(), OverlayState::default());
        let state = OverlayState {
            attachments: vec![Attachment {
                name: "web".into(),
                netns: "/run/netns/web".into(),
                netns_id: NetnsId {
                    dev: 4,
                    ino: 4026532,
                },
                ifname: "ethwe".into(),
                host_ifname: "vethwe0".into(),
                mac: "02:00:00:00:00:01".into(),
                address: "10.32.0.5/12".parse().unwrap(),
                hairpin: true,
                handed_off: true,
            }],
            exposed: vec!["10.32.0.1/12".parse().unwrap()],
        };
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), state);
    }

    #[test]
    fn a_file_from_before_hairpin_and_hand_off_loads_with_both_off() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(STATE_FILE),
            br#"{"attachments":[{"name":"web","netns":"/run/netns/web","netns_id":{"dev":4,"ino":5},
            "ifname":"ethwe","host_ifname":"vethwe0","mac":"02:00:00:00:00:01",
            "address":"10.32.0.5/12"}],"exposed":[]}"#,
        )
        .unwrap();
        let state = StateStore::new(dir.path()).load().unwrap();
        let a = &state.attachments[0];
        assert!(!a.hairpin && !a.handed_off, "{a:?}");
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let e = StateStore::new(dir.path()).load().unwrap_err();
        assert!(e.to_string().contains("is corrupt"), "{e}");
    }
}
