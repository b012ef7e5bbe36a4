//! The attach pipeline's DNS step: a workload attached with a name is registered as
//! `NAME.<domain>`, and its records go when it is detached. The pipeline is called from the
//! control API, CNI and Docker alike, and there is one router (one DNS service) per process, so
//! the daemon installs the service here once instead of threading it through every caller.

use std::net::IpAddr;
use std::sync::OnceLock;

use tracing::warn;

use super::name::Fqdn;
use super::service::DnsService;
use crate::overlay::Attachment;

static SERVICE: OnceLock<DnsService> = OnceLock::new();

/// Makes `service` the one the attach pipeline registers names with (the first call wins).
pub fn install(service: DnsService) {
    let _ = SERVICE.set(service);
}

/// The DNS server workloads should use and the domain to search, while the router's DNS
/// server listens (for the CNI result's `dns`).
pub fn resolver() -> Option<(IpAddr, String)> {
    let dns = SERVICE.get()?;
    let addr = dns.listen_addr()?;
    Some((
        addr.ip(),
        dns.domain().to_string().trim_end_matches('.').to_string(),
    ))
}

/// Registers `name` for the attached workload `a`. A name that is not a valid DNS name is
/// logged and skipped: the attachment itself stands.
pub async fn workload_attached(a: &Attachment, name: Option<&str>) {
    let (Some(dns), Some(name)) = (SERVICE.get(), name) else {
        return;
    };
    let fqdn = match Fqdn::in_domain(name, dns.domain()) {
        Ok(n) => n,
        Err(e) => {
            warn!(workload = %name, "not registered in DNS: {e}");
            return;
        }
    };
    let owner = a.netns.display().to_string();
    if let Err(e) = dns.add(&fqdn, &[IpAddr::V4(a.address.ip())], &owner).await {
        warn!(workload = %name, "registering {fqdn} in DNS failed: {e}");
    }
}

/// Removes the records of the detached interfaces `gone` (by namespace and address).
pub async fn workloads_detached(gone: &[Attachment]) {
    let Some(dns) = SERVICE.get() else {
        return;
    };
    let keys: Vec<(String, IpAddr)> = gone
        .iter()
        .map(|a| (a.netns.display().to_string(), IpAddr::V4(a.address.ip())))
        .collect();
    if let Err(e) = dns
        .remove(|e| {
            keys.iter()
                .any(|(owner, ip)| e.owner == *owner && e.addr == *ip)
        })
        .await
    {
        warn!("removing DNS records of detached workloads failed: {e}");
    }
}
