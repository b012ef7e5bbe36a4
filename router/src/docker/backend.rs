//! What the driver needs from the router: addresses from IPAM, attachments through the shared
//! pipeline, the gateway on the bridge, container names in DNS and labels in policy. A trait, so
//! the protocol handlers are tested without a kernel or a mesh.

use std::net::Ipv4Addr;
use std::time::Duration;

use async_trait::async_trait;
use ipnetwork::Ipv4Network;
use tracing::warn;

use super::DockerError;
use super::staging::Staging;
use super::store::{Container, Joined};
use crate::api::ApiError;
use crate::attach::{AttachInput, attach, detach};
use crate::dns::{DnsService, Fqdn};
use crate::ipam::IpamService;
use crate::overlay::{NetnsRef, Overlay};
use crate::policy::PolicyService;
use crate::policy::model::WorkloadMeta;
use crate::policy::spec::DEFAULT_NAMESPACE;

/// How long a RequestAddress waits for IPAM (the ring may still be forming).
const ALLOCATE_WAIT: Duration = Duration::from_secs(30);

/// An endpoint to give an interface at `Join`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinSpec {
    /// The name of the interface dockerd will move into the container.
    pub ifname: String,
    /// The address, `ADDR/PREFIX`.
    pub address: Ipv4Network,
    /// The IPAM owner of the address.
    pub owner: String,
    /// The workload's name (DNS, `weft ps`).
    pub name: String,
}

/// The router services the driver uses.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The allocation range; pools and addresses must lie inside.
    fn range(&self) -> Ipv4Network;
    /// The subnet handed out when a network names none.
    fn default_subnet(&self) -> Ipv4Network;
    /// Allocates an address for `owner`, or claims `addr` for it.
    async fn allocate(&self, owner: &str, addr: Option<Ipv4Addr>) -> Result<Ipv4Addr, DockerError>;
    /// Frees `ip` if IPAM still gives it to `owner`; otherwise does nothing.
    fn free(&self, owner: &str, ip: Ipv4Addr) -> Result<(), DockerError>;
    /// Makes the endpoint's veth: attached to the overlay with its address, the inner end
    /// named `spec.ifname` in the router's namespace for dockerd to move into the container.
    async fn prepare(&self, spec: JoinSpec) -> Result<Prepared, DockerError>;
    /// Removes a prepared veth (wherever its inner end went) and frees its address.
    async fn release(&self, prepared: Prepared) -> Result<(), DockerError>;
    /// Undoes a join made by an earlier run of the router (whose [`Prepared`] is gone): forgets
    /// the attachment, removes the veth if it is still there and the policy record, and frees
    /// `address` if IPAM still gives it to the join's owner. (The container's DNS records go
    /// with [`Backend::unname_workload`].)
    async fn forget(&self, joined: &Joined, address: Ipv4Addr) -> Result<(), DockerError>;
    /// Registers the container behind `endpoint` (at `address`): its name in DNS, its name and
    /// labels in policy.
    async fn name_workload(
        &self,
        endpoint: &str,
        address: Ipv4Addr,
        container: &Container,
    ) -> Result<(), DockerError>;
    /// Removes the DNS records [`Backend::name_workload`] made for `endpoint`.
    async fn unname_workload(&self, endpoint: &str) -> Result<(), DockerError>;
    /// Gives the host `gateway` on the bridge.
    async fn expose(&self, gateway: Ipv4Network) -> Result<(), DockerError>;
    /// Takes `gateway` off the bridge.
    async fn hide(&self, gateway: Ipv4Addr) -> Result<(), DockerError>;
}

/// A veth made by [`Backend::prepare`].
#[derive(Debug)]
pub struct Prepared {
    /// The namespace the attachment was made in.
    pub netns: String,
    /// The inner end's name.
    pub ifname: String,
    /// The host end's name, on the bridge.
    pub host_ifname: String,
    /// Keeps the staging namespace alive (absent in tests).
    pub staging: Option<Staging>,
}

/// The DNS owner of the records naming the container behind `endpoint`.
pub fn dns_owner(endpoint: &str) -> String {
    format!("docker:{endpoint}")
}

/// The real backend: weft's IPAM, overlay, DNS and policy services.
#[derive(Clone)]
pub struct WeftBackend {
    ipam: IpamService,
    overlay: Overlay,
    dns: DnsService,
    policy: PolicyService,
}

impl WeftBackend {
    /// The backend over the router's services.
    pub fn new(
        ipam: IpamService,
        overlay: Overlay,
        dns: DnsService,
        policy: PolicyService,
    ) -> Self {
        WeftBackend {
            ipam,
            overlay,
            dns,
            policy,
        }
    }
}

fn network(c: weft_ipam::Cidr) -> Ipv4Network {
    Ipv4Network::new(c.network(), c.prefix())
        .unwrap_or_else(|_| unreachable!("a Cidr's prefix is at most 32"))
}

#[async_trait]
impl Backend for WeftBackend {
    fn range(&self) -> Ipv4Network {
        network(self.ipam.status().range)
    }

    fn default_subnet(&self) -> Ipv4Network {
        network(self.ipam.default_subnet())
    }

    async fn allocate(&self, owner: &str, addr: Option<Ipv4Addr>) -> Result<Ipv4Addr, DockerError> {
        self.ipam
            .allocate(owner, None, addr, ALLOCATE_WAIT)
            .await
            .map_err(|e| ApiError::from(e).into())
    }

    fn free(&self, owner: &str, ip: Ipv4Addr) -> Result<(), DockerError> {
        let held = self
            .ipam
            .with(|a, _| a.lookup(owner))
            .map_err(ApiError::from)?;
        if held.contains(&ip) {
            self.ipam
                .with(|a, now| a.free(ip, now))
                .map_err(ApiError::from)?
                .map_err(|e| DockerError::Internal(format!("freeing {ip}: {e}")))?;
        }
        Ok(())
    }

    async fn prepare(&self, spec: JoinSpec) -> Result<Prepared, DockerError> {
        let staging = Staging::new()?;
        let netns = staging.path();
        let attachment = attach(
            &self.ipam,
            &self.overlay,
            AttachInput {
                address: Some(spec.address.to_string()),
                netns: NetnsRef::Path(netns.clone()),
                name: Some(spec.name),
                ifname: Some(spec.ifname.clone()),
                owner: Some(spec.owner),
                namespace: None,
                labels: Default::default(),
                hairpin: false,
                handed_off: true,
            },
        )
        .await?;
        let moved = staging.move_to_daemon(&spec.ifname);
        let prepared = Prepared {
            netns,
            ifname: spec.ifname,
            host_ifname: attachment.host_ifname,
            staging: Some(staging),
        };
        if let Err(e) = moved {
            self.release(prepared).await?;
            return Err(e);
        }
        Ok(prepared)
    }

    async fn release(&self, prepared: Prepared) -> Result<(), DockerError> {
        detach(
            &self.ipam,
            &self.overlay,
            NetnsRef::Path(prepared.netns.clone()),
            Some(prepared.ifname.clone()),
        )
        .await?;
        drop(prepared.staging);
        Ok(())
    }

    async fn forget(&self, joined: &Joined, address: Ipv4Addr) -> Result<(), DockerError> {
        self.overlay
            .forget_handed_off(&joined.host_ifname)
            .await
            .map_err(ApiError::from)?;
        self.policy
            .workload_down(address)
            .await
            .map_err(|e| DockerError::Internal(format!("forgetting the policy record: {e}")))?;
        self.free(&joined.owner, address)
    }

    async fn name_workload(
        &self,
        endpoint: &str,
        address: Ipv4Addr,
        container: &Container,
    ) -> Result<(), DockerError> {
        // A Docker name that is not a DNS name (`proj_web_1`) gets no record; its labels still
        // reach policy.
        let fqdn = match Fqdn::in_domain(&container.name, self.dns.domain()) {
            Ok(n) => Some(n),
            Err(e) => {
                warn!(container = %container.name, "not registered in DNS: {e}");
                None
            }
        };
        let owner = dns_owner(endpoint);
        let ip = std::net::IpAddr::V4(address);
        // A renamed container: its old name goes.
        self.dns
            .remove(|e| {
                e.owner == owner
                    && (fqdn.as_ref().is_none_or(|n| e.name != n.as_str()) || e.addr != ip)
            })
            .await
            .map_err(|e| DockerError::Internal(format!("removing DNS records: {e}")))?;
        match self.overlay.rename(address, &container.name).await {
            Ok(true) => {}
            Ok(false) => warn!(container = %container.name, %address, "no attachment to name"),
            Err(e) => warn!(container = %container.name, "kept the endpoint's name: {e}"),
        }
        if let Some(fqdn) = &fqdn {
            self.dns
                .add(fqdn, &[ip], &owner)
                .await
                .map_err(|e| DockerError::Internal(format!("registering {fqdn}: {e}")))?;
        }
        self.policy
            .workload_up(WorkloadMeta {
                address,
                name: container.name.clone(),
                namespace: DEFAULT_NAMESPACE.to_string(),
                labels: container.labels.clone(),
                ports: Vec::new(),
                host: String::new(),
            })
            .await
            .map_err(|e| DockerError::Internal(format!("recording the labels in policy: {e}")))
    }

    async fn unname_workload(&self, endpoint: &str) -> Result<(), DockerError> {
        let owner = dns_owner(endpoint);
        self.dns
            .remove(|e| e.owner == owner)
            .await
            .map(|_| ())
            .map_err(|e| DockerError::Internal(format!("removing DNS records: {e}")))
    }

    async fn expose(&self, gateway: Ipv4Network) -> Result<(), DockerError> {
        self.overlay
            .expose(&gateway.to_string())
            .await
            .map_err(|e| ApiError::from(e).into())
            .map(|_| ())
    }

    async fn hide(&self, gateway: Ipv4Addr) -> Result<(), DockerError> {
        self.overlay
            .hide(Some(&gateway.to_string()))
            .await
            .map_err(|e| ApiError::from(e).into())
            .map(|_| ())
    }
}
