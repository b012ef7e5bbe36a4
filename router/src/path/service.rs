//! The path choice's thread: sends a probe to every unencrypted sleeve peer's VXLAN port every
//! [`PROBE_EVERY`], reads probes from a packet socket on the bridge, moves peers between VXLAN
//! and the sleeve ([`super::probe::PathChoice`]) and publishes the underlay IPs of peers on the
//! sleeve for the overlay's FDB.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};

use super::probe::{self, PathChoice, Probe};
use crate::mesh::PeerName;
use crate::overlay::config::{BRIDGE, VXLAN_PORT};
use crate::sleeve::{Sleeve, StartError};

/// How often each peer is probed.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Starts probing. `sleeve_ips` receives the underlay IPs of the peers whose traffic rides
/// the sleeve.
pub fn start(
    sleeve: Sleeve,
    local: PeerName,
    vni: u32,
    sleeve_ips: watch::Sender<BTreeSet<IpAddr>>,
) -> Result<(), StartError> {
    let listen = probe_socket()?;
    let send = UdpSocket::bind(("0.0.0.0", 0))
        .map_err(StartError::io("binding the probe sending socket"))?;
    std::thread::Builder::new()
        .name("path-probe".into())
        .spawn(move || run(&sleeve, local, vni, &listen, &send, &sleeve_ips))
        .map(|_| ())
        .map_err(StartError::io("starting the path probe thread"))
}

/// A packet socket on the bridge receiving probe frames, with a short receive timeout.
fn probe_socket() -> Result<OwnedFd, StartError> {
    let proto = probe::ETHERTYPE.to_be();
    // SAFETY: plain socket call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if fd < 0 {
        return Err(StartError::last_os("opening the probe packet socket"));
    }
    // SAFETY: fd is a fresh socket we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let index = nix::net::if_::if_nametoindex(BRIDGE).map_err(|e| StartError {
        action: format!("finding the bridge {BRIDGE}"),
        source: e.into(),
    })?;
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    // SAFETY: binds to a valid sockaddr_ll of the given size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(StartError::last_os(
            "binding the probe packet socket to the bridge",
        ));
    }
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: SO_RCVTIMEO takes one timeval.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(StartError::last_os("setting the probe socket's timeout"));
    }
    Ok(fd)
}

fn run(
    sleeve: &Sleeve,
    local: PeerName,
    vni: u32,
    listen: &OwnedFd,
    send: &UdpSocket,
    sleeve_ips: &watch::Sender<BTreeSet<IpAddr>>,
) {
    let epoch = Instant::now();
    let mut choice = PathChoice::default();
    let mut next_probe = epoch;
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: reads into `buf`, of the given length.
        let n = unsafe { libc::recv(listen.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let now = epoch.elapsed().as_millis() as u64;
        if n > 0
            && let Some(p) = probe::decode(&buf[..n as usize])
        {
            choice.on_probe(p, now);
        }
        if Instant::now() < next_probe {
            continue;
        }
        next_probe += PROBE_EVERY;
        let peers = sleeve.peers();
        let names: Vec<PeerName> = peers.iter().map(|p| p.name).collect();
        choice.retain(&names, now);
        let mut on_sleeve = BTreeSet::new();
        for p in &peers {
            let Ok(addr) = p.address.parse::<SocketAddr>() else {
                continue;
            };
            let datagram = probe::encode(
                vni,
                Probe {
                    from: local,
                    heard_you: choice.hears(p.name, now),
                },
            );
            // A blocked path shows as missing probes, so send errors need no handling.
            let _ = send.send_to(&datagram, (addr.ip(), VXLAN_PORT));
            let via_sleeve = !choice.fastdp(p.name, now);
            if sleeve.set_via_sleeve(p.name, via_sleeve) {
                if via_sleeve {
                    warn!(peer = %p.name, addr = %addr.ip(), "fast path to peer failed; using the sleeve");
                } else {
                    info!(peer = %p.name, addr = %addr.ip(), "fast path to peer works; using it");
                }
            }
            if via_sleeve {
                on_sleeve.insert(addr.ip());
            }
        }
        sleeve_ips.send_if_modified(|ips| {
            let changed = *ips != on_sleeve;
            *ips = on_sleeve;
            changed
        });
    }
}
