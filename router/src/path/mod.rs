//! Path choice per peer. Without a password, a peer's traffic takes the kernel VXLAN fast path
//! while probes show it works both ways, and the sleeve when not ([`probe`] decides,
//! [`service`] probes and applies). With a password every peer uses the encrypted sleeve.

pub mod probe;
pub mod service;

use serde::{Deserialize, Serialize};

use crate::mesh::PeerName;
use crate::sleeve::Sleeve;

/// One peer's data path, as `weft status connections` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerPath {
    /// Peer name.
    pub name: PeerName,
    /// `fastdp` or `sleeve`.
    pub path: String,
    /// Whether its frames are encrypted.
    pub encrypted: bool,
    /// The overlay MTU towards it.
    pub mtu: u32,
}

/// The data path in `weft report`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPathStatus {
    /// Each directly connected peer's path.
    pub peers: Vec<PeerPath>,
    /// The sleeve's counters.
    pub sleeve: crate::sleeve::peers::CounterSnapshot,
}

/// Every sleeve peer's path and the sleeve's counters; `mtu` is the overlay MTU.
pub fn status(sleeve: &Sleeve, mtu: u32) -> DataPathStatus {
    let peers = sleeve
        .peers()
        .into_iter()
        .map(|p| PeerPath {
            name: p.name,
            path: if p.via_sleeve { "sleeve" } else { "fastdp" }.to_string(),
            encrypted: p.encrypted,
            mtu,
        })
        .collect();
    DataPathStatus {
        peers,
        sleeve: sleeve.counters(),
    }
}

/// Environment variable turning the sleeve's TAP offloads off (`0` or `false`). On by default:
/// TCP leaves the TAP port in super-segments of up to 64 KiB, which the sleeve cuts into
/// MTU-sized frames itself ([`crate::sleeve::tso`]) and sends as UDP GSO trains.
pub const OFFLOAD_ENV: &str = "WEFT_SLEEVE_OFFLOAD";

fn offload_from_env() -> bool {
    std::env::var(OFFLOAD_ENV).map_or(true, |v| !(v == "0" || v.eq_ignore_ascii_case("false")))
}

/// The data path as started by [`start`].
pub struct DataPath {
    /// The sleeve.
    pub sleeve: Sleeve,
    /// Underlay IPs of the peers on the sleeve, for [`crate::overlay::Overlay::follow`].
    pub sleeve_ips: tokio::sync::watch::Receiver<std::collections::BTreeSet<std::net::IpAddr>>,
    /// Where the mesh reports connections ([`crate::mesh::driver::MeshDriverConfig::links`]).
    pub links: tokio::sync::mpsc::UnboundedSender<crate::mesh::driver::LinkEvent>,
}

/// Starts the sleeve (its TAP port plugged into `overlay`'s bridge), the task feeding it the
/// mesh's connections and, when `fastdp`, the path probes on VXLAN network `vni`.
pub async fn start(
    overlay: &crate::overlay::Overlay,
    local: PeerName,
    encrypted: bool,
    fastdp: bool,
    vni: u32,
) -> anyhow::Result<DataPath> {
    use anyhow::Context;

    let sleeve = Sleeve::start(crate::sleeve::SleeveConfig {
        local,
        encrypted,
        port: crate::sleeve::udp::SLEEVE_PORT,
        offload: offload_from_env(),
    })
    .context("starting the sleeve")?;
    overlay
        .plug_sleeve(crate::sleeve::tap::TAP)
        .await
        .context("plugging the sleeve into the bridge")?;
    let (links, mut events) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn({
        let sleeve = sleeve.clone();
        async move {
            use crate::mesh::driver::LinkEvent;
            while let Some(ev) = events.recv().await {
                match ev {
                    LinkEvent::Up {
                        conn,
                        peer,
                        addr,
                        sleeve_key_material,
                    } => sleeve.peer_up(conn, peer, addr.ip(), sleeve_key_material.as_ref()),
                    LinkEvent::Down { conn, peer } => sleeve.peer_down(conn, peer),
                }
            }
        }
    });
    let (ips_tx, sleeve_ips) = tokio::sync::watch::channel(Default::default());
    if fastdp {
        service::start(sleeve.clone(), local, vni, ips_tx).context("starting the path probes")?;
    } else {
        // Every peer rides the sleeve and there is no VXLAN device whose FDB would follow.
        drop(ips_tx);
    }
    Ok(DataPath {
        sleeve,
        sleeve_ips,
        links,
    })
}
