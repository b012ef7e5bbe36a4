//! CNI requests carried out: ADD attaches through [`crate::attach`] with the container id as
//! IPAM owner and records the attachment; DEL detaches (when the namespace is still there) and
//! frees the owner's address, idempotently and also after a restart; CHECK compares the record
//! with the overlay and IPAM; GC removes every attachment the runtime no longer lists.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use ipnetwork::Ipv4Network;
use tokio::sync::Mutex;
use tracing::info;

use super::registry::{CniRecord, Registry};
use super::types::{
    CniAddRequest, CniAttachment, CniAttachmentKey, CniDelRequest, CniDelResponse, CniDns,
    CniGcRequest, CniGcResponse, CniStatusResponse,
};
use crate::api::ApiError;
use crate::attach::{AttachInput, attach, detach};
use crate::ipam::IpamService;
use crate::overlay::workload::multicast_route;
use crate::overlay::{NetnsRef, Overlay};

/// Length of the container id prefix used as a workload name when the pod name is unknown.
const SHORT_ID: usize = 12;

/// Handle on the CNI attachments. Cheap to clone; requests are serialised.
#[derive(Clone)]
pub struct CniService {
    registry: Arc<Mutex<Registry>>,
    ipam: IpamService,
    overlay: Overlay,
}

impl CniService {
    /// The service over the registry in `data_dir`.
    pub fn load(data_dir: &Path, ipam: IpamService, overlay: Overlay) -> anyhow::Result<Self> {
        Ok(CniService {
            registry: Arc::new(Mutex::new(Registry::load(data_dir)?)),
            ipam,
            overlay,
        })
    }

    /// ADD: attaches the container's namespace and records it; an interface already recorded
    /// (or present in the namespace) is a conflict and nothing is changed.
    pub async fn add(&self, req: CniAddRequest) -> Result<CniAttachment, ApiError> {
        for (what, value) in [
            ("container id", &req.container_id),
            ("netns", &req.netns),
            ("ifname", &req.ifname),
        ] {
            if value.is_empty() {
                return Err(ApiError::BadRequest(format!("the {what} is empty")));
            }
        }
        let mut registry = self.registry.lock().await;
        let key = CniAttachmentKey {
            container_id: req.container_id.clone(),
            ifname: req.ifname.clone(),
        };
        if registry.get(&key).is_some() {
            return Err(ApiError::Conflict(format!(
                "container {} already has interface {} on weft",
                req.container_id, req.ifname
            )));
        }
        let name = req
            .pod_name
            .clone()
            .unwrap_or_else(|| req.container_id.chars().take(SHORT_ID).collect());
        let attached = attach(
            &self.ipam,
            &self.overlay,
            AttachInput {
                address: req.address.clone(),
                netns: NetnsRef::Path(req.netns.clone()),
                name: Some(name),
                ifname: Some(req.ifname.clone()),
                owner: Some(req.container_id.clone()),
                namespace: req.pod_namespace.clone(),
                labels: Default::default(),
                hairpin: req.hairpin,
                handed_off: false,
            },
        )
        .await?;
        let record = CniRecord {
            container_id: req.container_id,
            ifname: req.ifname,
            netns: req.netns,
            address: attached.address.to_string(),
            pod_namespace: req.pod_namespace,
            pod_name: req.pod_name,
        };
        if let Err(e) = registry.insert(record.clone()) {
            // Undo: the runtime will not DEL what it never got.
            let _ = detach(
                &self.ipam,
                &self.overlay,
                NetnsRef::Path(record.netns.clone()),
                Some(record.ifname.clone()),
            )
            .await;
            self.free_owner_except(&registry, &record.container_id);
            return Err(e);
        }
        info!(container = %record.container_id, ifname = %record.ifname,
              address = %record.address, "CNI ADD");
        Ok(self.describe(&record, attached.mac.clone()))
    }

    /// DEL: removes the interface if its namespace still exists and frees the container's
    /// address; succeeds when there is nothing left to remove.
    pub async fn del(&self, req: CniDelRequest) -> Result<CniDelResponse, ApiError> {
        let mut registry = self.registry.lock().await;
        let key = CniAttachmentKey {
            container_id: req.container_id.clone(),
            ifname: req.ifname.clone(),
        };
        let record = registry.get(&key).cloned();
        let netns = req
            .netns
            .filter(|n| !n.is_empty())
            .or_else(|| record.as_ref().map(|r| r.netns.clone()));
        let mut freed = Vec::new();
        if let Some(netns) = netns {
            let target = NetnsRef::Path(netns);
            if target.path().exists() {
                match detach(&self.ipam, &self.overlay, target, Some(req.ifname.clone())).await {
                    Ok(gone) => freed.extend(gone.iter().map(|a| a.address.ip())),
                    Err(ApiError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        registry.remove(&key)?;
        match record {
            Some(r) => {
                if let Some(ip) = address_ip(&r.address) {
                    self.free_if_owned(&r.container_id, ip, &mut freed)?;
                }
            }
            None => freed.extend(self.free_owner_except(&registry, &req.container_id)),
        }
        info!(container = %req.container_id, ifname = %req.ifname, ?freed, "CNI DEL");
        Ok(CniDelResponse {
            freed: freed.iter().map(ToString::to_string).collect(),
        })
    }

    /// CHECK: the recorded interface is still attached with its address, and IPAM still gives
    /// the address to the container.
    pub async fn check(&self, req: CniDelRequest) -> Result<CniAttachment, ApiError> {
        let registry = self.registry.lock().await;
        let key = CniAttachmentKey {
            container_id: req.container_id.clone(),
            ifname: req.ifname.clone(),
        };
        let record = registry.get(&key).cloned().ok_or_else(|| {
            ApiError::NotFound(format!(
                "container {} has no interface {} on weft",
                req.container_id, req.ifname
            ))
        })?;
        let path = NetnsRef::Path(record.netns.clone()).path();
        let listing = self.overlay.list().await;
        let attached = listing
            .attachments
            .iter()
            .find(|a| a.netns == path && a.ifname == record.ifname)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "interface {} of container {} is no longer attached (namespace {})",
                    record.ifname,
                    record.container_id,
                    path.display()
                ))
            })?;
        if attached.address.to_string() != record.address {
            return Err(ApiError::Conflict(format!(
                "interface {} has address {}, expected {}",
                record.ifname, attached.address, record.address
            )));
        }
        let held = self.ipam.with(|a, _| a.lookup(&record.container_id))?;
        if !address_ip(&record.address).is_some_and(|ip| held.contains(&ip)) {
            return Err(ApiError::Conflict(format!(
                "IPAM no longer gives {} to container {}",
                record.address, record.container_id
            )));
        }
        Ok(self.describe(&record, attached.mac.clone()))
    }

    /// GC: removes every recorded attachment not in `valid`.
    pub async fn gc(&self, req: CniGcRequest) -> Result<CniGcResponse, ApiError> {
        let valid: BTreeSet<CniAttachmentKey> = req.valid.into_iter().collect();
        let stale: Vec<CniRecord> = {
            let registry = self.registry.lock().await;
            registry
                .records()
                .filter(|r| !valid.contains(&r.key()))
                .cloned()
                .collect()
        };
        let mut removed = Vec::new();
        for r in stale {
            self.del(CniDelRequest {
                container_id: r.container_id.clone(),
                ifname: r.ifname.clone(),
                netns: None,
            })
            .await?;
            removed.push(r.key());
        }
        Ok(CniGcResponse { removed })
    }

    /// STATUS: whether the address ring is ready.
    pub fn status(&self) -> CniStatusResponse {
        CniStatusResponse {
            ipam_ready: self.ipam.status().ready,
            mtu: self.overlay.mtu(),
        }
    }

    fn describe(&self, record: &CniRecord, mac: String) -> CniAttachment {
        let range = self.ipam.status().range;
        let mut routes = Vec::new();
        if let Ok(net) = record.address.parse::<Ipv4Network>()
            && (net.network() != range.network() || net.prefix() != range.prefix())
        {
            routes.push(range.to_string());
        }
        routes.push(multicast_route().to_string());
        CniAttachment {
            ifname: record.ifname.clone(),
            mac,
            sandbox: record.netns.clone(),
            address: record.address.clone(),
            routes,
            mtu: self.overlay.mtu(),
            dns: crate::dns::hook::resolver().map(|(ip, domain)| CniDns {
                nameservers: vec![ip.to_string()],
                domain,
            }),
        }
    }

    fn free_if_owned(
        &self,
        owner: &str,
        ip: Ipv4Addr,
        freed: &mut Vec<Ipv4Addr>,
    ) -> Result<(), ApiError> {
        let held = self.ipam.with(|a, _| a.lookup(owner))?;
        if held.contains(&ip) && !freed.contains(&ip) {
            self.ipam.with(|a, now| a.free(ip, now))??;
            freed.push(ip);
        }
        Ok(())
    }

    /// Frees the addresses of `owner` that no remaining record of it uses.
    fn free_owner_except(&self, registry: &Registry, owner: &str) -> Vec<Ipv4Addr> {
        let used: BTreeSet<Ipv4Addr> = registry
            .records()
            .filter(|r| r.container_id == owner)
            .filter_map(|r| address_ip(&r.address))
            .collect();
        let held = self.ipam.with(|a, _| a.lookup(owner)).unwrap_or_default();
        held.into_iter()
            .filter(|ip| !used.contains(ip))
            .filter(|ip| matches!(self.ipam.with(|a, now| a.free(*ip, now)), Ok(Ok(_))))
            .collect()
    }
}

fn address_ip(address: &str) -> Option<Ipv4Addr> {
    address.parse::<Ipv4Network>().ok().map(|n| n.ip())
}
