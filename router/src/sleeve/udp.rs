//! The sleeve's UDP side: sockets on port 6783 (one per worker, `SO_REUSEPORT`) and batched
//! `recvmmsg`/`sendmmsg`, with the kernel's UDP offloads where it has them: runs of same-size
//! datagrams to one peer leave as one GSO train (`UDP_SEGMENT`, see [`Gso`] and
//! [`super::gso::plan`]), and the kernel may hand several datagrams of one sender over in one
//! coalesced buffer (`UDP_GRO`), cut apart again in [`RecvBatch::datagrams`].

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tracing::info;

use super::error::StartError;
use super::gso;

/// The sleeve's UDP port (as Weave Net's).
pub const SLEEVE_PORT: u16 = 6783;
/// Largest datagram received.
pub const MAX_DATAGRAM: usize = 65_536;
/// Largest UDP payload over IPv4 (a 64 KiB IP packet less the IP and UDP headers). Sleeve
/// datagrams larger than the path MTU are fragmented by the kernel.
pub const MAX_PAYLOAD: usize = 65_535 - 20 - 8;
/// Socket buffer size asked for.
const SOCKET_BUFFER: usize = 4 << 20;

/// A UDP socket bound to `0.0.0.0:port`, sharing the port with the other workers' sockets.
/// Datagrams larger than the path MTU are fragmented rather than refused, so a too-large
/// `--mtu` degrades instead of silently dropping.
pub fn bind(port: u16) -> Result<UdpSocket, StartError> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(StartError::io("creating the sleeve UDP socket"))?;
    sock.set_reuse_port(true)
        .map_err(StartError::io("setting SO_REUSEPORT on the sleeve socket"))?;
    // Best effort: the forced sizes need CAP_NET_ADMIN; without it the kernel caps the asked
    // sizes at its limits.
    for (forced, capped) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if set_int(
            &sock,
            libc::SOL_SOCKET,
            forced,
            SOCKET_BUFFER as libc::c_int,
        )
        .is_err()
        {
            let _ = set_int(
                &sock,
                libc::SOL_SOCKET,
                capped,
                SOCKET_BUFFER as libc::c_int,
            );
        }
    }
    set_int(
        &sock,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DONT,
    )
    .map_err(StartError::io(
        "allowing fragmentation on the sleeve socket",
    ))?;
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    sock.bind(&addr.into()).map_err(StartError::io(format!(
        "binding UDP port {port} for the sleeve"
    )))?;
    Ok(sock.into())
}

/// Sets an integer socket option.
fn set_int(
    sock: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option reads one c_int, which `value` is.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Room for the control messages of one datagram (a `UDP_GRO` or `UDP_SEGMENT` one), aligned
/// for `cmsghdr`.
type Control = [u64; 4];

/// Asks the kernel to hand over coalesced datagrams (`UDP_GRO`, Linux 5.0) on `sock`; returns
/// whether it will. Without, every datagram arrives on its own.
pub fn enable_gro(sock: &UdpSocket) -> bool {
    setsockopt(sock, sockopt::UdpGroSegment, &true).is_ok()
}

/// The kernel's UDP segmentation offload as one sender knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    /// Largest datagram sent as a train segment; 0 when trains are not used.
    max_segment: usize,
}

impl Gso {
    /// No trains: every datagram is sent on its own.
    pub const OFF: Gso = Gso { max_segment: 0 };

    /// Probes `sock` once: trains are used when the kernel knows `UDP_SEGMENT` (Linux 4.18).
    pub fn probe(sock: &UdpSocket) -> Gso {
        let known = setsockopt(sock, sockopt::UdpGsoSegment, &1200).is_ok()
            && setsockopt(sock, sockopt::UdpGsoSegment, &0).is_ok();
        if known {
            Gso {
                max_segment: MAX_PAYLOAD,
            }
        } else {
            Gso::OFF
        }
    }

    /// Whether trains are sent.
    pub fn enabled(&self) -> bool {
        self.max_segment > 0
    }

    /// The kernel refused a train of `segment`-byte datagrams with `err`: EIO (the device cannot
    /// checksum the segments) turns trains off, EINVAL (a segment larger than the device's MTU)
    /// keeps them for smaller datagrams only.
    fn refused(&mut self, segment: usize, err: &io::Error) {
        let before = self.max_segment;
        self.max_segment = match err.raw_os_error() {
            Some(libc::EINVAL) => self.max_segment.min(segment.saturating_sub(1)),
            _ => 0,
        };
        if self.max_segment != before {
            info!(
                segment,
                max_segment = self.max_segment,
                "the kernel refused a UDP GSO train ({err}); its datagrams go one by one"
            );
        }
    }
}

/// Buffers for one `recvmmsg` call.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<libc::sockaddr_storage>,
    controls: Vec<Control>,
    lens: Vec<usize>,
    /// Size of the datagrams coalesced in each buffer; 0 when it holds one.
    segments: Vec<usize>,
    filled: usize,
}

impl RecvBatch {
    /// Room for `n` datagrams.
    pub fn new(n: usize) -> RecvBatch {
        RecvBatch {
            bufs: vec![vec![0; MAX_DATAGRAM]; n],
            // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
            addrs: vec![unsafe { std::mem::zeroed() }; n],
            controls: vec![[0; 4]; n],
            lens: vec![0; n],
            segments: vec![0; n],
            filled: 0,
        }
    }

    /// Blocks until at least one datagram arrives, then takes as many buffers as are queued (up
    /// to the batch size; with `UDP_GRO` on, a buffer may hold several datagrams). Returns how
    /// many buffers.
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        let n = self.bufs.len();
        let mut iovs: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = (0..n)
            .map(|i| {
                // SAFETY: msghdr is plain old data; all-zero is valid.
                let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
                hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                hdr.msg_iov = &mut iovs[i];
                hdr.msg_iovlen = 1;
                hdr.msg_control = self.controls[i].as_mut_ptr().cast();
                hdr.msg_controllen = size_of::<Control>() as _;
                libc::mmsghdr {
                    msg_hdr: hdr,
                    msg_len: 0,
                }
            })
            .collect();
        // SAFETY: every mmsghdr points at live buffers owned by self and `iovs`.
        let got = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            self.filled = 0;
            return Err(io::Error::last_os_error());
        }
        self.filled = got as usize;
        for (i, m) in msgs.iter().enumerate().take(self.filled) {
            self.lens[i] = m.msg_len as usize;
            self.segments[i] = gro_segment(&m.msg_hdr).unwrap_or(0);
        }
        Ok(self.filled)
    }

    /// How many buffers of the last [`RecvBatch::recv`] held more than one datagram.
    pub fn coalesced(&self) -> usize {
        self.lens
            .iter()
            .zip(&self.segments)
            .take(self.filled)
            .filter(|&(&len, &seg)| seg > 0 && len > seg)
            .count()
    }

    /// The datagrams of the last [`RecvBatch::recv`], with their senders, to be decoded in
    /// place.
    pub fn datagrams(&mut self) -> impl Iterator<Item = (Option<SocketAddr>, &mut [u8])> {
        self.bufs
            .iter_mut()
            .zip(&self.addrs)
            .zip(self.lens.iter().zip(&self.segments))
            .take(self.filled)
            .flat_map(|((buf, addr), (&len, &seg))| {
                let from = sender(addr);
                gso::segments(&mut buf[..len], seg).map(move |d| (from, d))
            })
    }
}

/// The segment size in a received message's `UDP_GRO` control message, if it has one.
fn gro_segment(hdr: &libc::msghdr) -> Option<usize> {
    // SAFETY: `hdr` is a header the kernel filled in; its control buffer is alive and the CMSG
    // macros stay within `msg_controllen`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return usize::try_from(size).ok();
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}

/// The IPv4 sender in a `recvmmsg` address (the sleeve socket is IPv4 only).
fn sender(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    if libc::c_int::from(storage.ss_family) != libc::AF_INET {
        return None;
    }
    // SAFETY: the family says the storage holds a sockaddr_in, which it is large enough for.
    let sin = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
    let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
    Some(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
}

/// What one [`send_batch`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Datagrams the kernel refused (counted by the caller, as UDP drops are).
    pub failed: usize,
    /// GSO trains (of more than one datagram) the kernel took.
    pub trains: usize,
}

/// Sends every `(destination, datagram)` with as few `sendmmsg` calls as it takes, one entry
/// per GSO train when `gso` is on. A refused train is sent again datagram by datagram, and
/// `gso` learns from the refusal.
pub fn send_batch(sock: &UdpSocket, items: &[(SocketAddr, Vec<u8>)], gso: &mut Gso) -> Sent {
    let trains = gso::plan(items, gso.max_segment, MAX_PAYLOAD);
    let addrs: Vec<SockAddr> = trains
        .iter()
        .map(|t| SockAddr::from(items[t.start].0))
        .collect();
    let mut iovs: Vec<libc::iovec> = items
        .iter()
        .map(|(_, d)| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    let mut controls: Vec<Control> = vec![[0; 4]; trains.len()];
    let iov_base = iovs.as_mut_ptr();
    let mut msgs: Vec<libc::mmsghdr> = trains
        .iter()
        .zip(&mut controls)
        .zip(&addrs)
        .map(|((t, control), addr)| {
            // SAFETY: msghdr is plain old data; all-zero is valid.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
            hdr.msg_namelen = addr.len();
            // SAFETY: the train's range lies within `iovs`.
            hdr.msg_iov = unsafe { iov_base.add(t.start) };
            hdr.msg_iovlen = t.len() as _;
            if t.len() > 1 {
                set_segment(&mut hdr, control, items[t.start].1.len());
            }
            libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            }
        })
        .collect();
    let mut sent = Sent::default();
    let mut next = 0;
    while next < msgs.len() {
        // SAFETY: the headers point at `addrs`, `iovs`, `controls` and `items`, all alive here.
        let n = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                msgs[next..].as_mut_ptr(),
                (msgs.len() - next) as libc::c_uint,
                0,
            )
        };
        if n > 0 {
            let n = n as usize;
            sent.trains += trains[next..next + n]
                .iter()
                .filter(|t| t.len() > 1)
                .count();
            next += n;
            continue;
        }
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            continue;
        }
        // The first remaining entry was refused (unreachable, too big...): skip it, or, for a
        // train the kernel cannot segment, send its datagrams one by one.
        let train = trains[next].clone();
        if train.len() > 1 && matches!(err.raw_os_error(), Some(libc::EIO | libc::EINVAL)) {
            gso.refused(items[train.start].1.len(), &err);
            let mut one_by_one = Gso::OFF;
            sent.failed += send_batch(sock, &items[train], &mut one_by_one).failed;
        } else {
            sent.failed += train.len();
        }
        next += 1;
    }
    sent
}

/// Gives `hdr` a `UDP_SEGMENT` control message in `control`: the kernel cuts the message into
/// datagrams of `segment` bytes.
fn set_segment(hdr: &mut libc::msghdr, control: &mut Control, segment: usize) {
    hdr.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes; one u16 fits in `Control` (checked by the assert).
    let space = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
    debug_assert!(space <= size_of::<Control>());
    hdr.msg_controllen = space as _;
    // The planner keeps segments below 64 KiB.
    let segment = u16::try_from(segment).unwrap_or(u16::MAX);
    // SAFETY: the control buffer is `space` bytes, aligned for cmsghdr, and holds exactly one
    // header and its u16.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(hdr);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_go_through_loopback() {
        let rx = bind(0).unwrap();
        let port = rx.local_addr().unwrap().port();
        let tx = bind(0).unwrap();
        let to = SocketAddr::from(([127, 0, 0, 1], port));
        let items: Vec<_> = (0..5u8)
            .map(|i| (to, vec![i; 100 + usize::from(i)]))
            .collect();
        assert_eq!(
            send_batch(&tx, &items, &mut Gso::probe(&tx)),
            Sent::default()
        );
        let mut batch = RecvBatch::new(8);
        let mut got = Vec::new();
        while got.len() < 5 {
            batch.recv(&rx).unwrap();
            for (from, d) in batch.datagrams() {
                assert_eq!(from.unwrap().port(), tx.local_addr().unwrap().port());
                got.push(d.to_vec());
            }
        }
        let want: Vec<_> = items.into_iter().map(|(_, d)| d).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn trains_leave_as_one_and_arrive_as_their_datagrams() {
        let rx = bind(0).unwrap();
        let gro = enable_gro(&rx);
        let to = SocketAddr::from(([127, 0, 0, 1], rx.local_addr().unwrap().port()));
        let tx = bind(0).unwrap();
        let mut gso = Gso::probe(&tx);
        // 40 full datagrams and a shorter last one: one train; then one to another port.
        let mut items: Vec<_> = (0..40u8).map(|i| (to, vec![i; 1200])).collect();
        items.push((to, vec![0xee; 500]));
        let sent = send_batch(&tx, &items, &mut gso);
        assert_eq!(sent.failed, 0);
        assert_eq!(sent.trains, usize::from(gso.enabled()), "{gso:?}");
        let mut batch = RecvBatch::new(64);
        let (mut got, mut coalesced) = (Vec::new(), 0);
        while got.len() < items.len() {
            batch.recv(&rx).unwrap();
            coalesced += batch.coalesced();
            got.extend(batch.datagrams().map(|(_, d)| d.to_vec()));
        }
        let want: Vec<_> = items.into_iter().map(|(_, d)| d).collect();
        assert_eq!(got, want);
        if gro && gso.enabled() {
            assert!(
                coalesced > 0,
                "loopback hands a train to a GRO socket whole"
            );
        }
    }
}
