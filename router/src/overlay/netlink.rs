//! Every kernel call of the overlay, through `rtnetlink`: links (bridge, VXLAN, veth),
//! addresses, routes and the VXLAN device's FDB. No decisions here; the callers decide.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use ipnetwork::Ipv4Network;
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, InfoVxlan,
    LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::sched::CloneFlags;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan, RouteMessageBuilder,
};

use super::error::{OverlayError, Result};

/// `ENODEV`, as netlink reports a missing link.
const ENODEV: i32 = libc::ENODEV;
/// `EEXIST`, as netlink reports an object that is already there.
const EEXIST: i32 = libc::EEXIST;
/// The all-zero MAC of flooding FDB entries.
const ZERO_MAC: [u8; 6] = [0; 6];

/// What the overlay needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    /// Interface index.
    pub(crate) index: u32,
    /// Name.
    pub(crate) name: String,
    /// Kind (`bridge`, `vxlan`, `veth`...), `None` for a physical device.
    pub(crate) kind: Option<String>,
    /// MTU.
    pub(crate) mtu: u32,
    /// Index of the bridge it is plugged into.
    pub(crate) controller: Option<u32>,
    /// For a VXLAN device: its VNI and destination port.
    pub(crate) vxlan: Option<(Option<u32>, Option<u16>)>,
}

impl Link {
    fn from_message(msg: LinkMessage) -> Link {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            mtu: 0,
            controller: None,
            vxlan: None,
        };
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n,
                LinkAttribute::Mtu(m) => link.mtu = m,
                LinkAttribute::Controller(c) if c != 0 => link.controller = Some(c),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(k) => link.kind = Some(k.to_string()),
                            LinkInfo::Data(InfoData::Vxlan(v)) => {
                                let vni = v.iter().find_map(|i| match i {
                                    InfoVxlan::Id(id) => Some(*id),
                                    _ => None,
                                });
                                let port = v.iter().find_map(|i| match i {
                                    InfoVxlan::Port(p) => Some(*p),
                                    _ => None,
                                });
                                link.vxlan = Some((vni, port));
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

/// A netlink connection bound to one network namespace.
#[derive(Clone)]
pub(crate) struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// A connection in the daemon's own namespace. Needs a tokio runtime.
    pub(crate) fn connect() -> Result<Netlink> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(OverlayError::io("opening a netlink socket"))?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// A connection in the namespace of `ns` (an open nsfs file): the socket is made on a fresh
    /// thread that entered the namespace, and stays bound to it. Needs a tokio runtime.
    pub(crate) fn connect_in(ns: &File) -> Result<Netlink> {
        let runtime = tokio::runtime::Handle::current();
        let (conn, handle) = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    nix::sched::setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
                        OverlayError::Io {
                            action: "entering the workload's network namespace".into(),
                            source: e.into(),
                        }
                    })?;
                    let _guard = runtime.enter();
                    let (conn, handle, _) = rtnetlink::new_connection().map_err(
                        OverlayError::io("opening a netlink socket in the workload's namespace"),
                    )?;
                    Ok::<_, OverlayError>((conn, handle))
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The link called `name`, if any.
    pub(crate) async fn link(&self, name: &str) -> Result<Option<Link>> {
        let mut stream = self
            .handle
            .clone()
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match stream.try_next().await {
            Ok(msg) => Ok(msg.map(Link::from_message)),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -ENODEV => Ok(None),
            Err(e) => Err(OverlayError::netlink(format!(
                "looking up interface {name}"
            ))(e)),
        }
    }

    /// Every link.
    pub(crate) async fn links(&self) -> Result<Vec<Link>> {
        self.handle
            .clone()
            .link()
            .get()
            .execute()
            .map_ok(Link::from_message)
            .try_collect()
            .await
            .map_err(OverlayError::netlink("listing interfaces"))
    }

    /// Creates bridge `name`, up, with `mtu`.
    pub(crate) async fn create_bridge(&self, name: &str, mtu: u32) -> Result<()> {
        self.add_link(
            LinkBridge::new(name).mtu(mtu).build(),
            format!("creating bridge {name}"),
        )
        .await
    }

    /// Sends one link creation; `what` names it in the error.
    async fn add_link(&self, msg: LinkMessage, what: String) -> Result<()> {
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(OverlayError::netlink(what))
    }

    /// Creates VXLAN device `name` (learning on) with `vni` on UDP `port`, plugged into bridge
    /// `controller`, up, with `mtu`.
    pub(crate) async fn create_vxlan(
        &self,
        name: &str,
        vni: u32,
        port: u16,
        mtu: u32,
        controller: u32,
    ) -> Result<()> {
        let msg = LinkVxlan::new(name, vni)
            .port(port)
            .learning(true)
            .mtu(mtu)
            .controller(controller)
            .up()
            .build();
        self.add_link(msg, format!("creating VXLAN device {name}"))
            .await
    }

    /// Creates a veth pair: `host` here, plugged into bridge `controller` and up, and `peer`
    /// (with `peer_mac`) born inside the namespace `ns`; both ends get `mtu`.
    pub(crate) async fn create_veth(
        &self,
        host: &str,
        peer: &str,
        ns: &File,
        mtu: u32,
        peer_mac: [u8; 6],
    ) -> Result<()> {
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .mtu(mtu)
            .address(peer_mac.to_vec())
            .setns_by_fd(ns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(host, peer)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .mtu(mtu)
            .build();
        self.add_link(msg, format!("creating veth {host} / {peer}"))
            .await
    }

    /// Sets a link's MTU and bridge, and brings it up.
    pub(crate) async fn set_up(
        &self,
        index: u32,
        mtu: Option<u32>,
        controller: Option<u32>,
    ) -> Result<()> {
        let mut b = LinkUnspec::new_with_index(index).up();
        if let Some(mtu) = mtu {
            b = b.mtu(mtu);
        }
        if let Some(c) = controller {
            b = b.controller(c);
        }
        self.handle
            .link()
            .set(b.build())
            .execute()
            .await
            .map_err(OverlayError::netlink(format!(
                "configuring interface #{index}"
            )))
    }

    /// Deletes a link (for a veth, both ends go).
    pub(crate) async fn delete_link(&self, index: u32) -> Result<()> {
        self.handle
            .clone()
            .link()
            .del(index)
            .execute()
            .await
            .map_err(OverlayError::netlink(format!(
                "deleting interface #{index}"
            )))
    }

    /// Adds `net` (address and prefix) to link `index`.
    pub(crate) async fn add_address(&self, index: u32, net: Ipv4Network) -> Result<()> {
        self.handle
            .address()
            .add(index, IpAddr::V4(net.ip()), net.prefix())
            .execute()
            .await
            .map_err(OverlayError::netlink(format!("adding address {net}")))
    }

    /// Removes `net` from link `index`; absent is fine.
    pub(crate) async fn del_address(&self, index: u32, net: Ipv4Network) -> Result<()> {
        let found: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(IpAddr::V4(net.ip()))
            .execute()
            .try_collect()
            .await
            .map_err(OverlayError::netlink(format!("looking up address {net}")))?;
        for msg in found {
            self.handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(OverlayError::netlink(format!("removing address {net}")))?;
        }
        Ok(())
    }

    /// The IPv4 addresses of link `index`.
    pub(crate) async fn addresses(&self, index: u32) -> Result<Vec<Ipv4Network>> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(OverlayError::netlink("listing addresses"))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| {
                let prefix = m.header.prefix_len;
                m.attributes.into_iter().find_map(|a| match a {
                    netlink_packet_route::address::AddressAttribute::Address(IpAddr::V4(ip)) => {
                        Ipv4Network::new(ip, prefix).ok()
                    }
                    _ => None,
                })
            })
            .collect())
    }

    /// Adds a route to `dest` out of link `index` (scope link). Returns `false` when a route
    /// to `dest` already exists (e.g. through another weft interface of the same workload).
    pub(crate) async fn add_route(&self, index: u32, dest: Ipv4Network) -> Result<bool> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dest.network(), dest.prefix())
            .output_interface(index)
            .scope(netlink_packet_route::route::RouteScope::Link)
            .build();
        match self.handle.route().add(msg).execute().await {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -EEXIST => Ok(false),
            Err(e) => Err(OverlayError::netlink(format!("adding route {dest}"))(e)),
        }
    }

    /// The interface of the IPv4 default route in the main table, if there is one.
    pub(crate) async fn default_route_link(&self) -> Result<Option<u32>> {
        let routes: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(OverlayError::netlink("listing routes"))?;
        Ok(routes
            .into_iter()
            .filter(|r| r.header.destination_prefix_length == 0)
            .find_map(|r| {
                r.attributes.into_iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(i),
                    _ => None,
                })
            }))
    }

    /// Destinations of the all-zero FDB entries of VXLAN device `index`.
    pub(crate) async fn flood_entries(&self, index: u32) -> Result<BTreeSet<IpAddr>> {
        let mut req = self.handle.neighbours().get();
        req.message_mut().header.family = AddressFamily::Bridge;
        req.message_mut().header.ifindex = index;
        let entries: Vec<NeighbourMessage> = req
            .execute()
            .try_collect()
            .await
            .map_err(OverlayError::netlink("listing the VXLAN FDB"))?;
        Ok(entries
            .into_iter()
            .filter(|n| n.header.ifindex == index)
            .filter(|n| {
                n.attributes.iter().any(
                    |a| matches!(a, NeighbourAttribute::LinkLocalAddress(m) if m[..] == ZERO_MAC),
                )
            })
            .filter_map(|n| {
                n.attributes.into_iter().find_map(|a| match a {
                    NeighbourAttribute::Destination(addr) => fdb_destination(addr),
                    _ => None,
                })
            })
            .collect())
    }

    /// `bridge fdb append 00:00:00:00:00:00 dev <index> dst <ip>`.
    pub(crate) async fn flood_append(&self, index: u32, dst: IpAddr) -> Result<()> {
        let msg = flood_entry(index, dst);
        self.request(
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND,
        )
        .await
        .map_err(OverlayError::netlink(format!("adding FDB entry for {dst}")))
    }

    /// `bridge fdb del 00:00:00:00:00:00 dev <index> dst <ip>`.
    pub(crate) async fn flood_delete(&self, index: u32, dst: IpAddr) -> Result<()> {
        self.handle
            .neighbours()
            .del(flood_entry(index, dst))
            .execute()
            .await
            .map_err(OverlayError::netlink(format!(
                "removing FDB entry for {dst}"
            )))
    }

    /// Every FDB entry of VXLAN device `index` (learned or flooding) whose destination is
    /// `dst`: `bridge fdb del ... dev <index> dst <dst>` for each.
    pub(crate) async fn delete_entries_to(&self, index: u32, dst: IpAddr) -> Result<()> {
        let mut req = self.handle.neighbours().get();
        req.message_mut().header.family = AddressFamily::Bridge;
        req.message_mut().header.ifindex = index;
        let entries: Vec<NeighbourMessage> = req
            .execute()
            .try_collect()
            .await
            .map_err(OverlayError::netlink("listing the VXLAN FDB"))?;
        for entry in entries.into_iter().filter(|n| n.header.ifindex == index) {
            let to_dst = entry.attributes.iter().any(|a| {
                matches!(a, NeighbourAttribute::Destination(addr) if fdb_destination(addr.clone()) == Some(dst))
            });
            if to_dst {
                self.handle
                    .neighbours()
                    .del(entry)
                    .execute()
                    .await
                    .map_err(OverlayError::netlink(format!(
                        "removing FDB entries to {dst}"
                    )))?;
            }
        }
        Ok(())
    }

    /// Sets bridge port `index`'s options (`ip link set ... type bridge_slave ...`).
    pub(crate) async fn set_bridge_port(
        &self,
        index: u32,
        opts: Vec<InfoBridgePort>,
    ) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index)
            .set_port_kind(InfoPortKind::Bridge)
            .set_port_data(InfoPortData::BridgePort(opts))
            .build();
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_REQUEST | NLM_F_ACK)
            .await
            .map_err(OverlayError::netlink(format!(
                "setting bridge port options of interface #{index}"
            )))
    }

    async fn request(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> std::result::Result<(), rtnetlink::Error> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags;
        let mut response = self.handle.clone().request(req)?;
        while let Some(msg) = futures::StreamExt::next(&mut response).await {
            if let NetlinkPayload::Error(e) = msg.payload {
                return Err(rtnetlink::Error::NetlinkError(e));
            }
        }
        Ok(())
    }
}

/// The IP of an FDB entry's `NDA_DST`: in bridge-family dumps it arrives as raw bytes.
fn fdb_destination(addr: NeighbourAddress) -> Option<IpAddr> {
    match addr {
        NeighbourAddress::Inet(ip) => Some(IpAddr::V4(ip)),
        NeighbourAddress::Inet6(ip) => Some(IpAddr::V6(ip)),
        NeighbourAddress::Other(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(bytes.as_slice()).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(bytes.as_slice())
                .ok()
                .map(IpAddr::from),
            _ => None,
        },
        _ => None,
    }
}

fn flood_entry(index: u32, dst: IpAddr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.flags = NeighbourFlags::Own;
    msg.attributes
        .push(NeighbourAttribute::LinkLocalAddress(ZERO_MAC.to_vec()));
    msg.attributes
        .push(NeighbourAttribute::Destination(match dst {
            IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
            IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
        }));
    msg
}

/// Whether `kind` names `expected` (`InfoKind`'s text form).
pub(crate) fn is_kind(link: &Link, expected: &InfoKind) -> bool {
    link.kind.as_deref() == Some(expected.to_string().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdb_destinations_from_raw_bytes() {
        assert_eq!(
            fdb_destination(NeighbourAddress::Other(vec![198, 18, 0, 2])),
            Some(IpAddr::from([198, 18, 0, 2]))
        );
        assert_eq!(
            fdb_destination(NeighbourAddress::Other(vec![0; 16])),
            Some(IpAddr::from([0u8; 16]))
        );
        assert_eq!(
            fdb_destination(NeighbourAddress::Other(vec![1, 2, 3])),
            None
        );
        assert_eq!(
            fdb_destination(NeighbourAddress::Inet(Ipv4Addr::new(10, 0, 0, 1))),
            Some(IpAddr::from([10, 0, 0, 1]))
        );
    }
}
