//! The attach pipeline shared by `weft attach`, the CNI plugin and the Docker driver: an address
//! from IPAM (allocated, or claimed when the caller names one inside the range), then the
//! overlay's veth and routes, then the workload's name in DNS. A failure after the address was
//! taken gives the address back, so nothing is left half-made.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnetwork::Ipv4Network;
use tracing::warn;
use weft_ipam::IpamError;

use crate::api::ApiError;
use crate::ipam::IpamService;
use crate::overlay::{AttachSpec, Attachment, NetnsRef, Overlay};
use crate::policy::model::NamedPort;

/// How long an attach waits for IPAM to find an address (the ring may still be forming).
const ALLOCATE_WAIT: Duration = Duration::from_secs(30);

/// What to attach.
#[derive(Debug, Clone)]
pub struct AttachInput {
    /// `ADDR/PREFIX`; allocated by IPAM when absent.
    pub address: Option<String>,
    /// The workload's namespace.
    pub netns: NetnsRef,
    /// Its name.
    pub name: Option<String>,
    /// Interface inside the namespace.
    pub ifname: Option<String>,
    /// IPAM owner id (container id); the namespace path when absent.
    pub owner: Option<String>,
    /// The workload's namespace in its orchestrator (Kubernetes `K8S_POD_NAMESPACE`), recorded
    /// as part of its identity for DNS, policy and flow metrics.
    pub namespace: Option<String>,
    /// The workload's labels (Docker container labels, pod labels), for policy selectors.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Hairpin mode on the bridge port (CNI `hairpinMode`).
    pub hairpin: bool,
    /// The inner end is handed to a runtime that moves it into the container and names the
    /// workload itself (dockerd): no DNS record is made from `name`, and the attachment
    /// outlives its staging namespace.
    pub handed_off: bool,
}

/// Attaches a workload: address first, then the overlay; the address is released if the overlay
/// step fails.
pub async fn attach(
    ipam: &IpamService,
    overlay: &Overlay,
    input: AttachInput,
) -> Result<Attachment, ApiError> {
    attach_with_ports(ipam, overlay, input, &[]).await
}

/// [`attach`] for a workload that names some of its ports (`http=80/TCP`), which policies may
/// refer to by name. The policy step runs before the answer, so policies selecting the workload
/// are in force when it is reported attached; if that step fails, the attachment is undone.
pub async fn attach_with_ports(
    ipam: &IpamService,
    overlay: &Overlay,
    input: AttachInput,
    ports: &[NamedPort],
) -> Result<Attachment, ApiError> {
    let path = input.netns.path();
    if !path.exists() {
        return Err(ApiError::NotFound(format!(
            "network namespace {} does not exist: check the --netns name or path, or the --pid",
            path.display()
        )));
    }
    let owner = input
        .owner
        .unwrap_or_else(|| format!("netns:{}", path.display()));
    // Allocation is idempotent per owner: an address the owner already held belongs to an
    // earlier attachment and must survive this one failing.
    let held = ipam.with(|a, _| a.lookup(&owner))?;
    let (address, taken) = match input.address {
        None => {
            let ip = ipam.allocate(&owner, None, None, ALLOCATE_WAIT).await?;
            (format!("{ip}/{}", ipam.default_subnet().prefix()), Some(ip))
        }
        Some(text) => {
            let net: Ipv4Network = text.parse().map_err(|e| {
                ApiError::BadRequest(format!(
                    "{text:?} is not ADDR/PREFIX such as 10.32.0.5/12: {e}"
                ))
            })?;
            let taken = if ipam.range_contains(net.ip()) {
                ipam.allocate(&owner, None, Some(net.ip()), ALLOCATE_WAIT)
                    .await?;
                Some(net.ip())
            } else {
                None
            };
            (text, taken)
        }
    };
    let name = input.name.clone();
    let (namespace, labels) = (input.namespace.clone(), input.labels.clone());
    let spec = AttachSpec {
        address,
        netns: input.netns,
        name: input.name,
        ifname: input.ifname,
        hairpin: input.hairpin,
        handed_off: input.handed_off,
    };
    match overlay.attach(spec).await {
        Ok(a) => {
            if let Err(e) =
                crate::policy::hook::workload_attached(&a, namespace.as_deref(), &labels, ports)
                    .await
            {
                let netns = NetnsRef::Path(a.netns.display().to_string());
                if let Err(undo) = overlay.detach(netns, Some(a.ifname.clone())).await {
                    warn!(workload = %a.name, "undoing the attachment failed: {undo}");
                }
                if let Some(ip) = taken.filter(|ip| !held.contains(ip)) {
                    release(ipam, ip);
                }
                return Err(crate::api::policy::api_error(e));
            }
            if !a.handed_off {
                crate::dns::hook::workload_attached(&a, name.as_deref()).await;
            }
            Ok(a)
        }
        Err(e) => {
            if let Some(ip) = taken.filter(|ip| !held.contains(ip)) {
                release(ipam, ip);
            }
            Err(e.into())
        }
    }
}

/// Detaches a workload's interfaces and gives their addresses back to IPAM.
pub async fn detach(
    ipam: &IpamService,
    overlay: &Overlay,
    netns: NetnsRef,
    ifname: Option<String>,
) -> Result<Vec<Attachment>, ApiError> {
    let gone = overlay.detach(netns, ifname).await?;
    crate::dns::hook::workloads_detached(&gone).await;
    if let Err(e) = crate::policy::hook::workloads_detached(&gone).await {
        warn!("forgetting the policy records of detached workloads failed: {e}");
    }
    for a in &gone {
        release(ipam, a.address.ip());
    }
    Ok(gone)
}

/// Frees `ip` in IPAM; an address IPAM never handed out (attached with an explicit address
/// outside the range, or before IPAM knew it) is not an error.
fn release(ipam: &IpamService, ip: Ipv4Addr) {
    match ipam.with(|a, now| a.free(ip, now)) {
        Ok(Ok(_)) | Ok(Err(IpamError::NotAllocated { .. })) => {}
        Ok(Err(e)) => warn!(%ip, "releasing the address failed: {e}"),
        Err(e) => warn!(%ip, "releasing the address failed: {e}"),
    }
}
