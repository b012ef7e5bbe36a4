//! DNS discovery: every workload is `NAME.weft.local.` on every peer, with no external store.
//!
//! [`name`] validates names; [`store`] is the pure record map merged from the `dns` gossip
//! channel; [`answer`] is the sans-IO request path (local answer, refusal or forward);
//! [`forward`] asks the upstream servers of `resolv.conf`; [`server`] runs hickory's UDP and
//! TCP server on the bridge address; [`service`] ties the store to the mesh, the data dir and the
//! control API.

pub mod answer;
pub mod error;
pub mod forward;
pub mod hook;
pub mod name;
pub mod resolv;
pub mod server;
pub mod service;
pub mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name};
use ipnetwork::Ipv4Network;
use tokio::task::JoinHandle;
use tracing::warn;

pub use error::{DnsError, NameError};
pub use name::Fqdn;
pub use service::{DNS_CHANNEL, DNS_STATE_FILE, DnsService, EXTERN_OWNER, load_store};
pub use store::{Entry, Store, Tables};

/// The DNS settings of `weft launch`.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// `--dns-domain`.
    pub domain: String,
    /// `--dns-ttl`.
    pub ttl: u32,
    /// `--dns-listen-address`; the bridge's exposed address when absent.
    pub listen: Option<SocketAddr>,
    /// `--resolv-conf`.
    pub resolv_conf: PathBuf,
    /// The overlay range: PTR answers and the clients the forwarder serves.
    pub range: Ipv4Network,
}

/// What [`prepare`] checked and loaded before anything starts.
pub struct Prepared {
    config: DnsConfig,
    domain: Fqdn,
    store: Store,
}

/// Checks the settings and loads the records from `data_dir`, before the router starts
/// anything: a bad domain or a corrupt `dns.state` stops the start.
pub fn prepare(
    config: DnsConfig,
    local: crate::mesh::PeerName,
    data_dir: &Path,
) -> Result<Prepared, DnsError> {
    let domain = Fqdn::parse(&config.domain)?;
    let store = load_store(local, data_dir)?;
    Ok(Prepared {
        config,
        domain,
        store,
    })
}

/// Starts the record service on `mesh` and the server (a fixed listen address is bound now,
/// so a busy port stops the start); installs the attach pipeline's hook.
pub async fn launch(
    prepared: Prepared,
    data_dir: &Path,
    mesh: crate::mesh::driver::MeshHandle,
    overlay: crate::overlay::Overlay,
) -> anyhow::Result<(DnsService, JoinHandle<()>)> {
    let Prepared {
        config,
        domain,
        store,
    } = prepared;
    let service = DnsService::start(store, data_dir, domain.clone(), mesh).await?;
    let forwarder = Arc::new(forward::Forwarder::new(
        &config.resolv_conf,
        forward::UPSTREAM_TIMEOUT,
    ));
    if let Err(e) = forwarder.upstreams() {
        warn!("{e}: names outside {domain} will get SERVFAIL until it can be read");
    }
    let zone = answer::Zone {
        domain: LowerName::from(Name::from_ascii(domain.as_str())?),
        ttl: config.ttl,
        clients: config.range,
    };
    let listen = match config.listen {
        Some(addr) => server::Listen::Fixed(addr),
        None => server::Listen::Bridge,
    };
    let task = server::start(listen, service.clone(), zone, forwarder, overlay).await?;
    hook::install(service.clone());
    Ok((service, task))
}
