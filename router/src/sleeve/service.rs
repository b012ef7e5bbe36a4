//! The sleeve's threads: each worker owns one TAP queue and one UDP socket on port 6783. Its
//! sending thread reads packets (offload header and frame, TCP in super-segments of up to
//! 64 KiB) from the TAP queue, settles single frames' checksums ([`vnet::settle`]), cuts TCP
//! super-segments into MTU-sized frames ([`tso::segment`]), picks their peers ([`super::forward`]),
//! frames or seals them ([`super::codec`]) and sends them with `sendmmsg`, runs of same-size
//! datagrams to one peer as UDP GSO trains where the kernel has them; its receiving thread
//! takes datagrams with `recvmmsg` (coalesced by UDP GRO where the kernel does), opens them, learns the source MAC and writes the frame to the
//! TAP queue. Anything that does not open is dropped and counted, never fatal.

use std::fs::File;
use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::codec::Codec;
use super::error::StartError;
use super::forward::{Destination, src_mac};
use super::peers::{CounterSnapshot, Counters, PeerEntry, Shared};
use super::session::{Session, SessionConfig};
use super::tap;
use super::tso;
use super::udp::{self, Gso, RecvBatch};
use super::vnet::{self, Carried};
use crate::mesh::{ConnId, PeerName};

/// Most packets read from the TAP port per `sendmmsg`.
const TX_BATCH: usize = 64;
/// Datagrams after which a batch is sent even if the TAP port has more (a TCP super-segment
/// makes up to ~45).
const TX_DATAGRAMS: usize = 512;
/// Datagrams taken per `recvmmsg`.
const RX_BATCH: usize = 64;
/// Most worker threads pairs started, whatever the core count.
const MAX_WORKERS: usize = 4;
/// Largest packet read from the TAP port: offload header, Ethernet and VLAN headers and a
/// 64 KiB IP packet.
const MAX_PACKET: usize = vnet::VNET_HDR_LEN + 18 + 65_535;

/// What the sleeve is started with.
#[derive(Debug, Clone, Copy)]
pub struct SleeveConfig {
    /// This router.
    pub local: PeerName,
    /// Whether a password is set: every frame is then sealed.
    pub encrypted: bool,
    /// UDP port to listen on and send to.
    pub port: u16,
    /// Whether the TAP port hands out TCP super-segments of up to 64 KiB (cut into MTU-sized
    /// frames by the sleeve) instead of MTU-sized frames.
    pub offload: bool,
}

/// One peer as `weft status connections` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SleevePeer {
    /// Peer name.
    pub name: PeerName,
    /// Its sleeve address.
    pub address: String,
    /// Whether its traffic rides the sleeve (else the kernel fast path).
    pub via_sleeve: bool,
    /// Whether its frames are encrypted.
    pub encrypted: bool,
}

/// The running sleeve. Cheap to clone.
#[derive(Clone)]
pub struct Sleeve {
    shared: Arc<Shared>,
    config: SleeveConfig,
}

impl Sleeve {
    /// Creates the TAP device [`tap::TAP`] and the UDP sockets, and starts the worker threads
    /// (one pair per core, at most four). The caller plugs the TAP port into the bridge.
    pub fn start(config: SleeveConfig) -> Result<Sleeve, StartError> {
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_WORKERS);
        let queues = tap::open_queues(workers, config.offload)?;
        let shared = Arc::new(Shared::default());
        let (mut gso, mut gro) = (false, false);
        for (i, queue) in queues.into_iter().enumerate() {
            let sock = Arc::new(udp::bind(config.port)?);
            gro = udp::enable_gro(&sock);
            let offload = Gso::probe(&sock);
            gso = offload.enabled();
            let queue = Arc::new(queue);
            spawn(format!("sleeve-tx-{i}"), {
                let (shared, queue, sock) = (shared.clone(), queue.clone(), sock.clone());
                move || tx_loop(&shared, &queue, &sock, offload)
            })?;
            spawn(format!("sleeve-rx-{i}"), {
                let shared = shared.clone();
                move || rx_loop(&shared, &queue, &sock)
            })?;
        }
        info!(
            tap = tap::TAP,
            port = config.port,
            workers,
            encrypted = config.encrypted,
            offload = config.offload,
            udp_gso = gso,
            udp_gro = gro,
            "sleeve up"
        );
        Ok(Sleeve { shared, config })
    }

    /// A mesh connection to `peer` at underlay address `ip` was established: its frames go
    /// to `ip`'s sleeve port, sealed with keys from `material` when encrypted. With a password
    /// the sleeve carries every flooded frame; without, the path choice decides.
    pub fn peer_up(
        &self,
        conn: ConnId,
        peer: PeerName,
        ip: IpAddr,
        material: Option<&Zeroizing<[u8; 64]>>,
    ) {
        let codec = match (self.config.encrypted, material) {
            (false, _) => Codec::Plain,
            (true, Some(m)) => Codec::Sealed(Box::new(Session::new(
                m,
                self.config.local,
                peer,
                SessionConfig::default(),
            ))),
            (true, None) => {
                warn!(%peer, "encrypted connection without sleeve keys; no sleeve to this peer");
                return;
            }
        };
        let addr = SocketAddr::new(ip, self.config.port);
        // Unencrypted peers start on the fast path; the path choice moves them if it fails.
        self.shared
            .insert(peer, conn, addr, codec, self.config.encrypted);
        info!(%peer, %addr, encrypted = self.config.encrypted, "sleeve peer up");
    }

    /// Connection `conn` to `peer` went down: forget the peer unless a newer connection
    /// replaced it.
    pub fn peer_down(&self, conn: ConnId, peer: PeerName) {
        if self.shared.remove(peer, conn) {
            info!(%peer, "sleeve peer down");
        }
    }

    /// Routes `peer`'s flooded frames through the sleeve (`true`) or leaves them to VXLAN;
    /// returns whether that changed.
    pub fn set_via_sleeve(&self, peer: PeerName, on: bool) -> bool {
        self.shared.set_via_sleeve(peer, on)
    }

    /// Whether every frame is sealed.
    pub fn encrypted(&self) -> bool {
        self.config.encrypted
    }

    /// The sleeve's peers.
    pub fn peers(&self) -> Vec<SleevePeer> {
        self.shared
            .all()
            .iter()
            .map(|e| SleevePeer {
                name: e.name,
                address: e.addr.to_string(),
                via_sleeve: e.via_sleeve(),
                encrypted: e.with_codec(|c| c.encrypted()),
            })
            .collect()
    }

    /// The data path's counters.
    pub fn counters(&self) -> CounterSnapshot {
        self.shared.counters.snapshot()
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<(), StartError> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map(|_| ())
        .map_err(StartError::io(format!("starting thread {name}")))
}

/// What one packet read from the TAP port is sent as.
enum Frames<'a> {
    /// Itself.
    One(Carried<'a>),
    /// The frames a TCP super-segment was cut into.
    Cut(&'a Cut),
}

/// A TCP super-segment cut into frames (reused from packet to packet).
#[derive(Default)]
struct Cut {
    bytes: Vec<u8>,
    lens: Vec<usize>,
}

impl Cut {
    /// Cuts `carried` when it is a TCP super-segment; returns whether it did. One that cannot be
    /// cut is carried whole, as before the sleeve cut them.
    fn cut(&mut self, carried: Carried<'_>) -> bool {
        self.bytes.clear();
        self.lens.clear();
        let Carried::Offload(packet) = carried else {
            return false;
        };
        if !tso::is_tcp_super_segment(packet) {
            return false;
        }
        match tso::segment(packet, &mut self.bytes, &mut self.lens) {
            Ok(()) => true,
            Err(e) => {
                debug!("TCP super-segment not cut, carried whole: {e}");
                false
            }
        }
    }

    fn frames(&self) -> impl Iterator<Item = &[u8]> {
        self.lens.iter().scan(0, |at, &len| {
            *at += len;
            self.bytes.get(*at - len..*at)
        })
    }
}

/// Reusable outgoing datagrams of one batch.
struct Outbox {
    items: Vec<(SocketAddr, Vec<u8>)>,
    used: usize,
}

impl Outbox {
    fn push_all(&mut self, peer: &PeerEntry, frames: &Frames<'_>, counters: &Counters) {
        match frames {
            Frames::One(c) => self.push(peer, *c, counters),
            Frames::Cut(cut) => {
                for f in cut.frames() {
                    self.push(peer, Carried::Bare(f), counters);
                }
            }
        }
    }

    fn push(&mut self, peer: &PeerEntry, packet: Carried<'_>, counters: &Counters) {
        if self.used == self.items.len() {
            self.items.push((peer.addr, Vec::new()));
        }
        let (addr, buf) = &mut self.items[self.used];
        *addr = peer.addr;
        buf.clear();
        match peer.encode(packet, buf) {
            // A super-segment too large for one datagram (and not cut) is dropped; the TAP
            // port's and the workloads' GSO limits keep TCP's segments below this.
            Ok(()) if buf.len() > udp::MAX_PAYLOAD => {
                debug!(peer = %peer.name, len = buf.len(), "datagram too large, dropped");
                Counters::bump(&counters.errors);
            }
            Ok(()) => {
                self.used += 1;
                Counters::bump(&counters.tx_frames);
            }
            Err(e) => {
                debug!(peer = %peer.name, "cannot frame for peer: {e}");
                Counters::bump(&counters.errors);
            }
        }
    }
}

fn tx_loop(shared: &Shared, tap: &File, sock: &UdpSocket, mut gso: Gso) {
    let mut packet = vec![0u8; MAX_PACKET];
    let mut cut = Cut::default();
    let mut out = Outbox {
        items: Vec::new(),
        used: 0,
    };
    loop {
        if !tap::wait_readable(tap, 1000) {
            continue;
        }
        out.used = 0;
        for _ in 0..TX_BATCH {
            if out.used >= TX_DATAGRAMS {
                break;
            }
            let n = match (&*tap).read(&mut packet) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("reading the TAP port: {e}");
                    break;
                }
            };
            let carried = vnet::settle(&mut packet[..n]);
            let destination = shared.with_macs(|t| t.destination(carried.frame()));
            let frames = if cut.cut(carried) {
                Frames::Cut(&cut)
            } else {
                Frames::One(carried)
            };
            match destination {
                // A peer back on the fast path gets its frames through VXLAN; the bridge
                // relearns there once the overlay flushed its entries on this port.
                Destination::Peer(p) => {
                    if let Some(peer) = shared.peer(p).filter(|p| p.via_sleeve()) {
                        out.push_all(&peer, &frames, &shared.counters);
                    }
                }
                Destination::Flood => {
                    for peer in shared.all().iter().filter(|p| p.via_sleeve()) {
                        out.push_all(peer, &frames, &shared.counters);
                    }
                }
                Destination::Drop => {}
            }
        }
        if out.used > 0 {
            let sending = shared
                .sending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let sent = udp::send_batch(sock, &out.items[..out.used], &mut gso);
            drop(sending);
            let counters = &shared.counters;
            counters
                .errors
                .fetch_add(sent.failed as u64, Ordering::Relaxed);
            counters
                .gso_trains
                .fetch_add(sent.trains as u64, Ordering::Relaxed);
        }
    }
}

fn rx_loop(shared: &Shared, tap: &File, sock: &UdpSocket) {
    let mut batch = RecvBatch::new(RX_BATCH);
    loop {
        if let Err(e) = batch.recv(sock) {
            if e.kind() != ErrorKind::Interrupted {
                warn!("receiving on the sleeve socket: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            continue;
        }
        shared
            .counters
            .gro_batches
            .fetch_add(batch.coalesced() as u64, Ordering::Relaxed);
        for (from, datagram) in batch.datagrams() {
            let Some(peer) = from.and_then(|a| shared.peer_at(a.ip())) else {
                Counters::bump(&shared.counters.garbage);
                continue;
            };
            let carried = match peer.decode(datagram) {
                Ok(f) => f,
                Err(e) => {
                    debug!(peer = %peer.name, "dropped datagram: {e}");
                    Counters::bump(&shared.counters.garbage);
                    continue;
                }
            };
            if let Some(mac) = src_mac(carried.frame()) {
                shared.learn(mac, peer.name);
            }
            // A TAP write takes the whole packet or fails.
            let header = carried.header();
            let parts = [IoSlice::new(&header), IoSlice::new(carried.frame())];
            match (&*tap).write_vectored(&parts) {
                Ok(n) if n == header.len() + carried.frame().len() => {
                    Counters::bump(&shared.counters.rx_frames)
                }
                _ => Counters::bump(&shared.counters.errors),
            }
        }
    }
}
