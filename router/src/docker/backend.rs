//! What the driver needs from the router: addresses from IPAM, attachments through the shared
//! pipeline, the gateway on the bridge. A trait, so the protocol handlers are tested without a
//! kernel or a mesh.

use std::net::Ipv4Addr;
use std::time::Duration;

use async_trait::async_trait;
use ipnetwork::Ipv4Network;

use super::DockerError;
use super::staging::Staging;
use crate::api::ApiError;
use crate::attach::{AttachInput, attach, detach};
use crate::ipam::IpamService;
use crate::overlay::{NetnsRef, Overlay};

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
    /// Keeps the staging namespace alive (absent in tests).
    pub staging: Option<Staging>,
}

/// The real backend: weft's IPAM service and overlay.
#[derive(Clone)]
pub struct WeftBackend {
    ipam: IpamService,
    overlay: Overlay,
}

impl WeftBackend {
    /// The backend over the router's services.
    pub fn new(ipam: IpamService, overlay: Overlay) -> Self {
        WeftBackend { ipam, overlay }
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
        attach(
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
            },
        )
        .await?;
        let moved = staging.move_to_daemon(&spec.ifname);
        let prepared = Prepared {
            netns,
            ifname: spec.ifname,
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
