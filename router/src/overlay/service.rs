//! The overlay's shell: brings up the bridge and the VXLAN device, keeps the FDB in step with
//! the mesh, and attaches and detaches workloads, undoing its own steps when a later one fails.
//! What to do is decided by the pure modules ([`super::fdb`], [`super::workload`]); this module
//! sequences kernel calls ([`super::netlink`]) and persists the outcome.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipnetwork::Ipv4Network;
use netlink_packet_route::link::{InfoBridgePort, InfoKind};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::config::{BRIDGE, OverlayConfig, VXLAN, VXLAN_PORT, overlay_mtu};
use super::error::{OverlayError, Result};
use super::fdb::{changes, flood_targets};
use super::netlink::{Link, Netlink, is_kind};
use super::state::{OverlayState, StateStore};
use super::workload::{
    Attachment, NetnsId, NetnsRef, check_name, format_mac, host_ifname, local_mac, multicast_route,
    plan_attach, plan_expose,
};
use crate::mesh::MeshStatus;

/// The FDB is re-read and corrected this often even without topology changes.
const FDB_RESYNC: Duration = Duration::from_secs(10);
/// Underlay MTU assumed when no interface tells.
const FALLBACK_UNDERLAY_MTU: u32 = 1500;

/// What `weft attach` asks for.
#[derive(Debug, Clone)]
pub struct AttachSpec {
    /// `ADDR/PREFIX`.
    pub address: String,
    /// The workload's namespace.
    pub netns: NetnsRef,
    /// Its name; derived from the namespace when absent.
    pub name: Option<String>,
    /// The interface inside; `ethwe` when absent.
    pub ifname: Option<String>,
    /// Hairpin mode on the host end ([`Attachment::hairpin`]).
    pub hairpin: bool,
    /// The inner end is handed to a runtime ([`Attachment::handed_off`]).
    pub handed_off: bool,
}

/// What `weft ps` shows.
#[derive(Debug, Clone)]
pub struct Listing {
    /// Attached workloads.
    pub attachments: Vec<Attachment>,
    /// The host's addresses on the bridge.
    pub exposed: Vec<Ipv4Network>,
    /// The overlay MTU.
    pub mtu: u32,
}

/// The running overlay. Cheap to clone.
#[derive(Clone)]
pub struct Overlay {
    inner: Arc<Inner>,
}

struct Inner {
    config: OverlayConfig,
    mtu: u32,
    nl: Netlink,
    bridge: u32,
    /// The VXLAN device, absent when the fast path is off.
    vxlan: Option<u32>,
    store: StateStore,
    state: Mutex<OverlayState>,
}

/// What to do with a persisted attachment found at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Adoption {
    /// Still there and on the bridge.
    Keep,
    /// Still there but off the bridge: plug it back.
    Replug,
    /// Gone (namespace or interface): forget it.
    Forget,
}

/// Decides from what the kernel shows: does the namespace still exist with the same identity,
/// and where is the host end of the veth.
pub(crate) fn adoption(ns_same: bool, host_end: Option<&Link>, bridge: u32) -> Adoption {
    match host_end {
        Some(link) if ns_same && is_kind(link, &InfoKind::Veth) => {
            if link.controller == Some(bridge) {
                Adoption::Keep
            } else {
                Adoption::Replug
            }
        }
        _ => Adoption::Forget,
    }
}

impl Overlay {
    /// Brings up (or adopts) the bridge and the VXLAN device and re-validates the persisted
    /// attachments in `data_dir`. Needs root in the namespace it runs in.
    pub async fn start(config: OverlayConfig, data_dir: &Path) -> Result<Overlay> {
        let nl = Netlink::connect()?;
        let (underlay, from) = underlay_mtu(&nl).await?;
        let mtu = overlay_mtu(underlay, config.mtu, config.overhead())?;
        info!(mtu, underlay_mtu = underlay, from = %from, "overlay MTU");
        let bridge = ensure_bridge(&nl, mtu).await?;
        let vxlan = if config.fastdp {
            Some(ensure_vxlan(&nl, config.vni, mtu, bridge).await?)
        } else {
            remove_vxlan(&nl).await?;
            None
        };
        let store = StateStore::new(data_dir);
        let mut state = store.load()?;
        if readopt(&nl, bridge, mtu, &mut state).await? {
            store.save(&state)?;
        }
        info!(
            bridge = BRIDGE,
            fastdp = config.fastdp,
            vni = config.vni,
            port = VXLAN_PORT,
            workloads = state.attachments.len(),
            "overlay up"
        );
        Ok(Overlay {
            inner: Arc::new(Inner {
                config,
                mtu,
                nl,
                bridge,
                vxlan,
                store,
                state: Mutex::new(state),
            }),
        })
    }

    /// The overlay MTU.
    pub fn mtu(&self) -> u32 {
        self.inner.mtu
    }

    /// Plugs the sleeve's TAP port `tap` into the bridge. It and the VXLAN port are isolated
    /// from each other, so a frame that came from one peer is never sent on to another.
    pub async fn plug_sleeve(&self, tap: &str) -> Result<()> {
        let inner = &self.inner;
        let index = created_index(&inner.nl, tap).await?;
        inner
            .nl
            .set_up(index, Some(inner.mtu), Some(inner.bridge))
            .await?;
        inner
            .nl
            .set_bridge_port(index, vec![InfoBridgePort::Isolated(true)])
            .await?;
        if let Some(vxlan) = inner.vxlan {
            inner
                .nl
                .set_bridge_port(vxlan, vec![InfoBridgePort::Isolated(true)])
                .await?;
        }
        info!(tap, "sleeve port on the bridge");
        Ok(())
    }

    /// Keeps one all-zero FDB entry per reachable peer, following `topology` (and re-checking
    /// every few seconds), until the mesh stops. Peers in `sleeve` (underlay IPs whose traffic
    /// the path choice moved to the sleeve) get no entry, and the frames learned towards them
    /// are forgotten, so the bridge sends their traffic to the sleeve port. With the fast path
    /// off there is nothing to follow.
    pub fn follow(
        &self,
        mut topology: watch::Receiver<MeshStatus>,
        mut sleeve: watch::Receiver<BTreeSet<IpAddr>>,
    ) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            if this.inner.vxlan.is_none() {
                return;
            }
            let mut resync = tokio::time::interval(FDB_RESYNC);
            let mut on_sleeve = BTreeSet::new();
            loop {
                let now_on_sleeve = sleeve.borrow_and_update().clone();
                if let Err(e) = this.repath(&on_sleeve, &now_on_sleeve).await {
                    warn!("moving peers between VXLAN and the sleeve: {e}");
                }
                on_sleeve = now_on_sleeve;
                let desired = flood_targets(&topology.borrow_and_update())
                    .difference(&on_sleeve)
                    .copied()
                    .collect();
                if let Err(e) = this.sync_fdb(&desired).await {
                    warn!("updating the VXLAN FDB: {e}");
                }
                tokio::select! {
                    changed = topology.changed() => if changed.is_err() { break },
                    changed = sleeve.changed() => if changed.is_err() { break },
                    _ = resync.tick() => {}
                }
            }
            debug!("mesh stopped; no longer following its topology");
        })
    }

    /// Forgets what the kernel learned about peers whose path changed: for peers moved to the
    /// sleeve, the VXLAN device's entries towards them and the bridge's entries on the VXLAN
    /// port; for peers back on VXLAN, the bridge's entries on the sleeve port. The bridge
    /// floods until it learns again, on the right port.
    async fn repath(&self, before: &BTreeSet<IpAddr>, after: &BTreeSet<IpAddr>) -> Result<()> {
        let (nl, Some(vxlan)) = (&self.inner.nl, self.inner.vxlan) else {
            return Ok(());
        };
        let moved: Vec<_> = after.difference(before).collect();
        for ip in &moved {
            nl.delete_entries_to(vxlan, **ip).await?;
            info!(peer = %ip, "peer's traffic moved to the sleeve");
        }
        if !moved.is_empty() {
            nl.set_bridge_port(vxlan, vec![InfoBridgePort::Flush])
                .await?;
        }
        let back: Vec<_> = before.difference(after).collect();
        if !back.is_empty() {
            if let Some(tap) = nl.link(crate::sleeve::tap::TAP).await? {
                nl.set_bridge_port(tap.index, vec![InfoBridgePort::Flush])
                    .await?;
            }
            for ip in back {
                info!(peer = %ip, "peer's traffic back on the VXLAN fast path");
            }
        }
        Ok(())
    }

    async fn sync_fdb(&self, desired: &BTreeSet<IpAddr>) -> Result<()> {
        let nl = &self.inner.nl;
        let Some(vxlan) = self.inner.vxlan else {
            return Ok(());
        };
        let current = nl.flood_entries(vxlan).await?;
        let todo = changes(&current, desired);
        for ip in todo.add {
            nl.flood_append(vxlan, ip).await?;
            info!(peer = %ip, "VXLAN flooding to peer");
        }
        for ip in todo.remove {
            nl.flood_delete(vxlan, ip).await?;
            info!(peer = %ip, "VXLAN no longer flooding to peer");
        }
        Ok(())
    }

    /// Attaches a workload: validates everything, then creates the veth into its namespace
    /// with address, MTU, routes; on any failure removes what it made.
    pub async fn attach(&self, spec: AttachSpec) -> Result<Attachment> {
        let inner = &self.inner;
        let path = spec.netns.path();
        let (ns, netns_id) = open_netns(&path)?;
        let name = spec.name.unwrap_or_else(|| spec.netns.default_name());
        let ifname = spec
            .ifname
            .unwrap_or_else(|| super::config::DEFAULT_IFNAME.to_string());
        let mut state = inner.state.lock().await;
        let host_links = inner.nl.links().await?;
        let host_name = host_ifname(&state.attachments, |n| {
            host_links.iter().any(|l| l.name == n)
        });
        let plan = plan_attach(
            &spec.address,
            &name,
            &ifname,
            host_name,
            inner.config.range,
            &state.attachments,
            &state.exposed,
        )?;
        let ns_nl = Netlink::connect_in(&ns)?;
        if ns_nl.link(&plan.ifname).await?.is_some() {
            return Err(OverlayError::IfnameExists {
                ifname: plan.ifname,
                netns: path.display().to_string(),
            });
        }
        let mac = local_mac(rand::random());
        inner
            .nl
            .create_veth(&plan.host_ifname, &plan.ifname, &ns, inner.mtu, mac)
            .await?;
        let attachment = Attachment {
            name: plan.name.clone(),
            netns: path.clone(),
            netns_id,
            ifname: plan.ifname.clone(),
            host_ifname: plan.host_ifname.clone(),
            mac: format_mac(&mac),
            address: plan.address,
            hairpin: spec.hairpin,
            handed_off: spec.handed_off,
        };
        let configured = async {
            let host = self.link_index(&inner.nl, &plan.host_ifname).await?;
            plug(&inner.nl, host, None, inner.bridge, attachment.hairpin).await?;
            let inside = self.link_index(&ns_nl, &plan.ifname).await?;
            ns_nl.add_address(inside, plan.address).await?;
            ns_nl.set_up(inside, None, None).await?;
            for route in &plan.routes {
                let added = ns_nl.add_route(inside, *route).await?;
                if !added && *route != multicast_route() {
                    return Err(OverlayError::RouteExists {
                        route: *route,
                        netns: path.display().to_string(),
                    });
                }
            }
            state.attachments.push(attachment.clone());
            if let Err(e) = inner.store.save(&state) {
                state.attachments.pop();
                return Err(e);
            }
            Ok(())
        }
        .await;
        if let Err(e) = configured {
            warn!(workload = %plan.name, "attach failed, undoing: {e}");
            if let Err(undo) = self.remove_host_end(&plan.host_ifname).await {
                warn!("undoing attach of {}: {undo}", plan.name);
            }
            return Err(e);
        }
        info!(
            workload = %attachment.name, netns = %path.display(), ifname = %attachment.ifname,
            address = %attachment.address, mac = %attachment.mac, "attached"
        );
        Ok(attachment)
    }

    async fn link_index(&self, nl: &Netlink, name: &str) -> Result<u32> {
        nl.link(name)
            .await?
            .map(|l| l.index)
            .ok_or_else(|| OverlayError::Io {
                action: format!("finding interface {name} just created"),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })
    }

    async fn remove_host_end(&self, host_ifname: &str) -> Result<()> {
        if let Some(link) = self.inner.nl.link(host_ifname).await? {
            self.inner.nl.delete_link(link.index).await?;
        }
        Ok(())
    }

    /// Detaches the workload in `netns` (only its `ifname` when given): deletes its veths.
    pub async fn detach(&self, netns: NetnsRef, ifname: Option<String>) -> Result<Vec<Attachment>> {
        let path = netns.path();
        let (_, id) = open_netns(&path)?;
        let mut state = self.inner.state.lock().await;
        let (gone, kept): (Vec<_>, Vec<_>) = state
            .attachments
            .iter()
            .cloned()
            .partition(|a| a.netns_id == id && ifname.as_ref().is_none_or(|i| *i == a.ifname));
        if gone.is_empty() {
            return Err(OverlayError::NotAttached {
                netns: path.display().to_string(),
                ifname,
            });
        }
        for a in &gone {
            self.remove_host_end(&a.host_ifname).await?;
            info!(workload = %a.name, ifname = %a.ifname, "detached");
        }
        state.attachments = kept;
        self.inner.store.save(&state)?;
        Ok(gone)
    }

    /// Forgets the handed-off attachment whose host end is `host_ifname` and deletes that host
    /// end (which takes the container's end with it) if it is still there. For a runtime whose
    /// staging namespace is gone, so [`Overlay::detach`] cannot name it. The record, if any.
    pub async fn forget_handed_off(&self, host_ifname: &str) -> Result<Option<Attachment>> {
        let mut state = self.inner.state.lock().await;
        self.remove_host_end(host_ifname).await?;
        let Some(at) = state
            .attachments
            .iter()
            .position(|a| a.handed_off && a.host_ifname == host_ifname)
        else {
            return Ok(None);
        };
        let gone = state.attachments.remove(at);
        self.inner.store.save(&state)?;
        info!(workload = %gone.name, host_ifname, "handed-off workload forgotten");
        Ok(Some(gone))
    }

    /// Renames the attachment holding `address` (a runtime that learns its workload's name
    /// after attaching it). False when no attachment holds it.
    pub async fn rename(&self, address: Ipv4Addr, name: &str) -> Result<bool> {
        check_name(name)?;
        let mut state = self.inner.state.lock().await;
        let Some(a) = state
            .attachments
            .iter_mut()
            .find(|a| a.address.ip() == address)
        else {
            return Ok(false);
        };
        if a.name != name {
            a.name = name.to_string();
            self.inner.store.save(&state)?;
        }
        Ok(true)
    }

    /// Attached workloads and exposed addresses.
    pub async fn list(&self) -> Listing {
        let state = self.inner.state.lock().await;
        Listing {
            attachments: state.attachments.clone(),
            exposed: state.exposed.clone(),
            mtu: self.inner.mtu,
        }
    }

    /// Gives the host `address` on the bridge.
    pub async fn expose(&self, address: &str) -> Result<Ipv4Network> {
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        let net = plan_expose(
            address,
            inner.config.range,
            &state.attachments,
            &state.exposed,
        )?;
        inner.nl.add_address(inner.bridge, net).await?;
        state.exposed.push(net);
        if let Err(e) = inner.store.save(&state) {
            state.exposed.pop();
            if let Err(undo) = inner.nl.del_address(inner.bridge, net).await {
                warn!("undoing expose of {net}: {undo}");
            }
            return Err(e);
        }
        info!(address = %net, "host exposed on the overlay");
        Ok(net)
    }

    /// Removes `address` (every exposed address when `None`) from the bridge.
    pub async fn hide(&self, address: Option<&str>) -> Result<Vec<Ipv4Network>> {
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        let gone: Vec<Ipv4Network> = match address {
            None => state.exposed.clone(),
            Some(a) => {
                let ip = a.split('/').next().unwrap_or(a).trim();
                let found: Vec<_> = state
                    .exposed
                    .iter()
                    .filter(|e| e.ip().to_string() == ip)
                    .copied()
                    .collect();
                if found.is_empty() {
                    return Err(OverlayError::NotExposed {
                        addr: a.to_string(),
                    });
                }
                found
            }
        };
        for net in &gone {
            inner.nl.del_address(inner.bridge, *net).await?;
            info!(address = %net, "host hidden from the overlay");
        }
        state.exposed.retain(|e| !gone.contains(e));
        inner.store.save(&state)?;
        Ok(gone)
    }
}

/// Opens a namespace file and checks it is a network namespace.
fn open_netns(path: &Path) -> Result<(File, NetnsId)> {
    let file = File::open(path).map_err(|e| OverlayError::NamespaceMissing {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let fs = nix::sys::statfs::fstatfs(&file).map_err(|e| OverlayError::Io {
        action: format!("inspecting {}", path.display()),
        source: e.into(),
    })?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(OverlayError::NotANamespace {
            path: path.to_path_buf(),
        });
    }
    let meta = file
        .metadata()
        .map_err(OverlayError::io(format!("inspecting {}", path.display())))?;
    Ok((
        file,
        NetnsId {
            dev: meta.dev(),
            ino: meta.ino(),
        },
    ))
}

/// The underlay MTU and where it came from: the default route's interface, else the smallest
/// MTU among the other interfaces that are not weft's own, else 1500.
async fn underlay_mtu(nl: &Netlink) -> Result<(u32, String)> {
    let links = nl.links().await?;
    if let Some(index) = nl.default_route_link().await?
        && let Some(link) = links.iter().find(|l| l.index == index)
    {
        return Ok((link.mtu, format!("default route via {}", link.name)));
    }
    let bridge = links.iter().find(|l| l.name == BRIDGE).map(|l| l.index);
    let candidate = links
        .iter()
        .filter(|l| l.name != "lo" && l.name != BRIDGE && l.name != VXLAN)
        .filter(|l| bridge.is_none() || l.controller != bridge)
        .min_by_key(|l| l.mtu);
    Ok(match candidate {
        Some(l) => (
            l.mtu,
            format!("no default route; smallest interface {}", l.name),
        ),
        None => (FALLBACK_UNDERLAY_MTU, "no interfaces; assumed".to_string()),
    })
}

/// Gets or creates the bridge; an interface of that name of another kind is an error.
async fn ensure_bridge(nl: &Netlink, mtu: u32) -> Result<u32> {
    match nl.link(BRIDGE).await? {
        Some(link) if is_kind(&link, &InfoKind::Bridge) => {
            nl.set_up(link.index, Some(mtu), None).await?;
            debug!(bridge = BRIDGE, "adopted existing bridge");
            Ok(link.index)
        }
        Some(link) => Err(OverlayError::WrongKind {
            name: BRIDGE.to_string(),
            expected: "bridge",
            found: link.kind.unwrap_or_else(|| "device".to_string()),
        }),
        None => {
            nl.create_bridge(BRIDGE, mtu).await?;
            created_index(nl, BRIDGE).await
        }
    }
}

/// Gets or creates the VXLAN device on the bridge; one with another VNI or port is recreated,
/// an interface of that name of another kind is an error.
async fn ensure_vxlan(nl: &Netlink, vni: u32, mtu: u32, bridge: u32) -> Result<u32> {
    match nl.link(VXLAN).await? {
        Some(link) if is_kind(&link, &InfoKind::Vxlan) => {
            if link.vxlan == Some((Some(vni), Some(VXLAN_PORT))) {
                nl.set_up(link.index, Some(mtu), Some(bridge)).await?;
                debug!(vxlan = VXLAN, "adopted existing VXLAN device");
                return Ok(link.index);
            }
            warn!(
                vxlan = VXLAN, found = ?link.vxlan, vni, port = VXLAN_PORT,
                "VXLAN device has other settings; recreating it"
            );
            nl.delete_link(link.index).await?;
        }
        Some(link) => {
            return Err(OverlayError::WrongKind {
                name: VXLAN.to_string(),
                expected: "vxlan",
                found: link.kind.unwrap_or_else(|| "device".to_string()),
            });
        }
        None => {}
    }
    nl.create_vxlan(VXLAN, vni, VXLAN_PORT, mtu, bridge).await?;
    created_index(nl, VXLAN).await
}

/// Deletes a VXLAN device left by an earlier start with the fast path on.
async fn remove_vxlan(nl: &Netlink) -> Result<()> {
    if let Some(link) = nl.link(VXLAN).await?
        && is_kind(&link, &InfoKind::Vxlan)
    {
        nl.delete_link(link.index).await?;
        info!(vxlan = VXLAN, "fast path off: removed the VXLAN device");
    }
    Ok(())
}

async fn created_index(nl: &Netlink, name: &str) -> Result<u32> {
    nl.link(name)
        .await?
        .map(|l| l.index)
        .ok_or_else(|| OverlayError::Io {
            action: format!("finding {name} just created"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
}

/// Re-validates persisted attachments and exposed addresses against the kernel: adopts what
/// survived, forgets what is gone, re-adds missing exposed addresses. Returns whether the state
/// changed.
/// Plugs a workload's host end `index` into the bridge and brings it up (with `mtu` when
/// given), in hairpin mode when its attachment asks for it.
async fn plug(
    nl: &Netlink,
    index: u32,
    mtu: Option<u32>,
    bridge: u32,
    hairpin: bool,
) -> Result<()> {
    nl.set_up(index, mtu, Some(bridge)).await?;
    if hairpin {
        nl.set_bridge_port(index, vec![InfoBridgePort::HairpinMode(true)])
            .await?;
    }
    Ok(())
}

async fn readopt(nl: &Netlink, bridge: u32, mtu: u32, state: &mut OverlayState) -> Result<bool> {
    let before = state.clone();
    let mut kept = Vec::new();
    for a in state.attachments.drain(..) {
        // A handed-off attachment's namespace was a staging one, gone by design: only its host
        // end tells whether it lives.
        let ns_same = a.handed_off || open_netns(&a.netns).is_ok_and(|(_, id)| id == a.netns_id);
        let host_end = nl.link(&a.host_ifname).await?;
        match adoption(ns_same, host_end.as_ref(), bridge) {
            Adoption::Keep => kept.push(a),
            Adoption::Replug => {
                if let Some(link) = host_end {
                    plug(nl, link.index, Some(mtu), bridge, a.hairpin).await?;
                }
                info!(workload = %a.name, "re-plugged workload into the bridge");
                kept.push(a);
            }
            Adoption::Forget => {
                if ns_same && let Some(link) = host_end {
                    nl.delete_link(link.index).await?;
                }
                info!(workload = %a.name, netns = %a.netns.display(), "workload gone; forgotten");
            }
        }
    }
    state.attachments = kept;
    let present = nl.addresses(bridge).await?;
    for net in &state.exposed {
        if !present.contains(net) {
            nl.add_address(bridge, *net).await?;
            info!(address = %net, "re-exposed the host");
        }
    }
    Ok(*state != before)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(kind: &str, controller: Option<u32>) -> Link {
        Link {
            index: 9,
            name: "vethwe0".into(),
            kind: Some(kind.into()),
            mtu: 1450,
            controller,
            vxlan: None,
        }
    }

    #[test]
    fn adoption_keeps_replugs_or_forgets() {
        assert_eq!(
            adoption(true, Some(&link("veth", Some(3))), 3),
            Adoption::Keep
        );
        assert_eq!(
            adoption(true, Some(&link("veth", None)), 3),
            Adoption::Replug
        );
        assert_eq!(
            adoption(true, Some(&link("veth", Some(4))), 3),
            Adoption::Replug
        );
        assert_eq!(adoption(true, None, 3), Adoption::Forget);
        assert_eq!(
            adoption(false, Some(&link("veth", Some(3))), 3),
            Adoption::Forget
        );
        assert_eq!(
            adoption(true, Some(&link("dummy", Some(3))), 3),
            Adoption::Forget
        );
    }
}
