//! The attachments made through CNI, keyed by container id and interface, persisted in
//! `cni.json` in the data dir (replaced atomically) so DEL, CHECK and GC survive a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::types::CniAttachmentKey;
use crate::api::ApiError;
use crate::state_file;

/// File in the data dir holding the registry.
pub const REGISTRY_FILE: &str = "cni.json";

/// One CNI attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniRecord {
    /// Container id (the IPAM owner).
    pub container_id: String,
    /// Interface inside the container.
    pub ifname: String,
    /// Namespace path as the runtime gave it.
    pub netns: String,
    /// `ADDR/PREFIX`.
    pub address: String,
    /// `K8S_POD_NAMESPACE`.
    #[serde(default)]
    pub pod_namespace: Option<String>,
    /// `K8S_POD_NAME`.
    #[serde(default)]
    pub pod_name: Option<String>,
}

impl CniRecord {
    /// Its key.
    pub fn key(&self) -> CniAttachmentKey {
        CniAttachmentKey {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }
}

/// The CNI attachments, loaded from and saved to one file.
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    records: BTreeMap<CniAttachmentKey, CniRecord>,
}

impl Registry {
    /// The registry stored in `data_dir`, empty when there is none yet.
    pub fn load(data_dir: &Path) -> anyhow::Result<Registry> {
        let path = data_dir.join(REGISTRY_FILE);
        let records = match state_file::read_if_exists(&path)? {
            None => BTreeMap::new(),
            Some(bytes) => {
                let list: Vec<CniRecord> = serde_json::from_slice(&bytes).map_err(|e| {
                    anyhow::anyhow!(
                        "{} is corrupt ({e}); fix or remove it (CNI attachments are then forgotten)",
                        path.display()
                    )
                })?;
                list.into_iter().map(|r| (r.key(), r)).collect()
            }
        };
        Ok(Registry { path, records })
    }

    /// The record of `key`.
    pub fn get(&self, key: &CniAttachmentKey) -> Option<&CniRecord> {
        self.records.get(key)
    }

    /// Every record.
    pub fn records(&self) -> impl Iterator<Item = &CniRecord> {
        self.records.values()
    }

    /// Adds (or replaces) a record and saves.
    pub fn insert(&mut self, record: CniRecord) -> Result<(), ApiError> {
        let key = record.key();
        let old = self.records.insert(key.clone(), record);
        self.save().inspect_err(|_| {
            match old {
                Some(o) => self.records.insert(key, o),
                None => self.records.remove(&key),
            };
        })
    }

    /// Removes a record and saves; the removed record, if there was one.
    pub fn remove(&mut self, key: &CniAttachmentKey) -> Result<Option<CniRecord>, ApiError> {
        let Some(old) = self.records.remove(key) else {
            return Ok(None);
        };
        match self.save() {
            Ok(()) => Ok(Some(old)),
            Err(e) => {
                self.records.insert(key.clone(), old);
                Err(e)
            }
        }
    }

    fn save(&self) -> Result<(), ApiError> {
        let list: Vec<&CniRecord> = self.records.values().collect();
        let bytes = serde_json::to_vec_pretty(&list)
            .map_err(|e| ApiError::Internal(format!("encoding the CNI registry: {e}")))?;
        state_file::write_atomic(&self.path, &bytes)
            .map_err(|e| ApiError::Internal(format!("saving the CNI registry: {e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cid: &str, ifname: &str) -> CniRecord {
        CniRecord {
            container_id: cid.into(),
            ifname: ifname.into(),
            netns: format!("/run/netns/{cid}"),
            address: "10.32.0.1/12".into(),
            pod_namespace: Some("default".into()),
            pod_name: None,
        }
    }

    #[test]
    fn records_survive_a_reload_and_removal_is_persisted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut reg = Registry::load(dir.path()).expect("empty load");
        reg.insert(record("a", "eth0")).expect("insert");
        reg.insert(record("b", "eth0")).expect("insert");
        let again = Registry::load(dir.path()).expect("reload");
        assert_eq!(again.records().count(), 2);
        assert_eq!(
            again.get(&record("a", "eth0").key()),
            Some(&record("a", "eth0"))
        );
        reg.remove(&record("a", "eth0").key()).expect("remove");
        assert_eq!(reg.remove(&record("a", "eth0").key()).expect("again"), None);
        let last = Registry::load(dir.path()).expect("reload");
        let keys: Vec<_> = last.records().map(|r| r.container_id.clone()).collect();
        assert_eq!(keys, vec!["b".to_string()]);
    }

    #[test]
    fn a_corrupt_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(REGISTRY_FILE), b"{not json").expect("write");
        let err = Registry::load(dir.path()).expect_err("corrupt");
        assert!(err.to_string().contains(REGISTRY_FILE), "{err}");
    }
}
