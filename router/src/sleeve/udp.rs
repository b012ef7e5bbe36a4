//! The sleeve's UDP side: sockets on port 6783 (one per worker, `SO_REUSEPORT`) and batched
//! `recvmmsg`/`sendmmsg`.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::error::StartError;

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

/// Buffers for one `recvmmsg` call.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<usize>,
    filled: usize,
}

impl RecvBatch {
    /// Room for `n` datagrams.
    pub fn new(n: usize) -> RecvBatch {
        RecvBatch {
            bufs: vec![vec![0; MAX_DATAGRAM]; n],
            // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
            addrs: vec![unsafe { std::mem::zeroed() }; n],
            lens: vec![0; n],
            filled: 0,
        }
    }

    /// Blocks until at least one datagram arrives, then takes as many as are queued (up to
    /// the batch size). Returns how many.
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
        for (len, m) in self.lens.iter_mut().zip(&msgs).take(self.filled) {
            *len = m.msg_len as usize;
        }
        Ok(self.filled)
    }

    /// The datagrams of the last [`RecvBatch::recv`], with their senders, to be decoded in
    /// place.
    pub fn datagrams(&mut self) -> impl Iterator<Item = (Option<SocketAddr>, &mut [u8])> {
        self.bufs
            .iter_mut()
            .zip(&self.addrs)
            .zip(&self.lens)
            .take(self.filled)
            .map(|((buf, addr), &len)| (sender(addr), &mut buf[..len]))
    }
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

/// Sends every `(destination, datagram)` with as few `sendmmsg` calls as it takes. Returns how
/// many were refused by the kernel (counted by the caller, as UDP drops are).
pub fn send_batch(sock: &UdpSocket, items: &[(SocketAddr, Vec<u8>)]) -> usize {
    let addrs: Vec<SockAddr> = items.iter().map(|(a, _)| SockAddr::from(*a)).collect();
    let mut iovs: Vec<libc::iovec> = items
        .iter()
        .map(|(_, d)| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = (0..items.len())
        .map(|i| {
            // SAFETY: msghdr is plain old data; all-zero is valid.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_name = addrs[i].as_ptr() as *mut libc::c_void;
            hdr.msg_namelen = addrs[i].len();
            hdr.msg_iov = &mut iovs[i];
            hdr.msg_iovlen = 1;
            libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            }
        })
        .collect();
    let mut failed = 0;
    let mut next = 0;
    while next < msgs.len() {
        // SAFETY: the headers point at `addrs`, `iovs` and `items`, all alive here.
        let sent = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                msgs[next..].as_mut_ptr(),
                (msgs.len() - next) as libc::c_uint,
                0,
            )
        };
        if sent > 0 {
            next += sent as usize;
        } else if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        } else {
            // The first remaining datagram was refused (unreachable, too big...): skip it.
            failed += 1;
            next += 1;
        }
    }
    failed
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
        assert_eq!(send_batch(&tx, &items), 0);
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
}
