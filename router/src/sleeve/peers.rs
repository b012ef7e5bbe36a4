//! The sleeve's shared state: one entry per peer with a direct mesh connection (its underlay
//! address, its codec and whether its traffic rides the sleeve), the learned MACs, and the
//! counters. Read by every worker thread; written when the mesh or the path choice changes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use super::codec::Codec;
use super::error::SleeveError;
use super::forward::MacTable;
use super::vnet::Carried;
use crate::mesh::{ConnId, PeerName};

/// One sleeve peer.
pub struct PeerEntry {
    /// Its name.
    pub name: PeerName,
    /// The mesh connection whose handshake gave its keys.
    pub conn: ConnId,
    /// Where its sleeve listens.
    pub addr: SocketAddr,
    codec: Mutex<Codec>,
    via_sleeve: AtomicBool,
}

impl PeerEntry {
    /// Runs `f` with the peer's codec.
    pub fn with_codec<T>(&self, f: impl FnOnce(&mut Codec) -> T) -> T {
        f(&mut self.codec.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Appends the datagram carrying `packet` to `out`, holding the codec only to take a nonce,
    /// so several threads seal for one peer at once.
    pub fn encode(&self, packet: Carried<'_>, out: &mut Vec<u8>) -> Result<(), SleeveError> {
        self.with_codec(Codec::encoder)?.encode(packet, out)
    }

    /// The packet carried by `datagram`, decrypted in its own buffer, holding the codec only to
    /// check and then record the header, so opening does not hold up the peer's senders.
    pub fn decode<'d>(&self, datagram: &'d mut [u8]) -> Result<Carried<'d>, SleeveError> {
        let decoder = self.with_codec(|c| c.decoder(datagram))?;
        let frame = decoder.decode_in_place(datagram)?;
        self.with_codec(|c| c.accept(decoder))?;
        Ok(frame)
    }

    /// Whether flooded frames reach this peer through the sleeve (else through VXLAN).
    pub fn via_sleeve(&self) -> bool {
        self.via_sleeve.load(Ordering::Relaxed)
    }
}

/// Counters of the data path since start.
#[derive(Debug, Default)]
pub struct Counters {
    /// Frames sent to a peer (a TCP super-segment read from the TAP port counts once per
    /// frame it was cut into).
    pub tx_frames: AtomicU64,
    /// Frames received from peers and written to the TAP port.
    pub rx_frames: AtomicU64,
    /// Datagrams dropped as garbage: unknown sender, bad framing, failed authentication, replay.
    pub garbage: AtomicU64,
    /// Datagrams or frames the kernel refused (send or TAP write failures).
    pub errors: AtomicU64,
    /// UDP GSO trains sent: `sendmmsg` entries the kernel cut into several datagrams.
    pub gso_trains: AtomicU64,
    /// Received buffers the kernel coalesced from several datagrams (UDP GRO).
    pub gro_batches: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterSnapshot {
    /// See [`Counters::tx_frames`].
    pub tx_frames: u64,
    /// See [`Counters::rx_frames`].
    pub rx_frames: u64,
    /// See [`Counters::garbage`].
    pub garbage: u64,
    /// See [`Counters::errors`].
    pub errors: u64,
    /// See [`Counters::gso_trains`].
    #[serde(default)]
    pub gso_trains: u64,
    /// See [`Counters::gro_batches`].
    #[serde(default)]
    pub gro_batches: u64,
}

impl Counters {
    /// Adds one to `c`.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Current values.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            tx_frames: self.tx_frames.load(Ordering::Relaxed),
            rx_frames: self.rx_frames.load(Ordering::Relaxed),
            garbage: self.garbage.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            gso_trains: self.gso_trains.load(Ordering::Relaxed),
            gro_batches: self.gro_batches.load(Ordering::Relaxed),
        }
    }
}

#[derive(Default)]
struct PeerMap {
    by_name: HashMap<PeerName, Arc<PeerEntry>>,
    by_ip: HashMap<IpAddr, Arc<PeerEntry>>,
}

/// State shared by the worker threads and the control side.
#[derive(Default)]
pub struct Shared {
    peers: RwLock<PeerMap>,
    macs: RwLock<MacTable>,
    /// Held while a batch is handed to the kernel. A datagram larger than the path MTU leaves as
    /// IP fragments, and a receiver drops a datagram whose fragments arrive with too many
    /// fragments of other datagrams from the same host in between (`ipfrag_max_dist`, 64 by
    /// default): one thread sending at a time keeps each datagram's fragments together.
    pub sending: Mutex<()>,
    /// The counters.
    pub counters: Counters,
}

impl Shared {
    /// Adds or replaces `name`'s entry.
    pub fn insert(
        &self,
        name: PeerName,
        conn: ConnId,
        addr: SocketAddr,
        codec: Codec,
        via_sleeve: bool,
    ) {
        let entry = Arc::new(PeerEntry {
            name,
            conn,
            addr,
            codec: Mutex::new(codec),
            via_sleeve: AtomicBool::new(via_sleeve),
        });
        let mut map = self.peers.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = map.by_name.insert(name, entry.clone()) {
            map.by_ip.remove(&old.addr.ip());
        }
        map.by_ip.insert(addr.ip(), entry);
    }

    /// Removes `name`'s entry if it still comes from connection `conn`; returns whether it did.
    pub fn remove(&self, name: PeerName, conn: ConnId) -> bool {
        let mut map = self.peers.write().unwrap_or_else(PoisonError::into_inner);
        if map.by_name.get(&name).is_none_or(|e| e.conn != conn) {
            return false;
        }
        if let Some(old) = map.by_name.remove(&name) {
            map.by_ip.remove(&old.addr.ip());
        }
        drop(map);
        self.macs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .forget_peer(name);
        true
    }

    /// Sets whether `name`'s flooded frames ride the sleeve; returns whether that changed.
    pub fn set_via_sleeve(&self, name: PeerName, on: bool) -> bool {
        self.peer(name)
            .is_some_and(|e| e.via_sleeve.swap(on, Ordering::Relaxed) != on)
    }

    /// `name`'s entry.
    pub fn peer(&self, name: PeerName) -> Option<Arc<PeerEntry>> {
        let map = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        map.by_name.get(&name).cloned()
    }

    /// The entry of the peer at underlay address `ip`.
    pub fn peer_at(&self, ip: IpAddr) -> Option<Arc<PeerEntry>> {
        let map = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        map.by_ip.get(&ip).cloned()
    }

    /// Every entry, by name.
    pub fn all(&self) -> Vec<Arc<PeerEntry>> {
        let map = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = map.by_name.values().cloned().collect();
        all.sort_by_key(|e| e.name);
        all
    }

    /// Runs `f` on the MAC table for reading.
    pub fn with_macs<T>(&self, f: impl FnOnce(&MacTable) -> T) -> T {
        f(&self.macs.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Learns that `mac` is behind `peer` (taking the write lock only when it is news).
    pub fn learn(&self, mac: super::forward::Mac, peer: PeerName) {
        if self.with_macs(|t| t.knows(&mac, peer)) {
            return;
        }
        self.macs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .learn(mac, peer);
    }
}
