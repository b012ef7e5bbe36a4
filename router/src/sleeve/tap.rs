//! The sleeve's TAP port: a multi-queue TAP device (`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`), one
//! non-blocking queue per worker thread. Every packet read or written starts with a
//! little-endian virtio-net header ([`super::vnet`]); when the checksum and TCP segmentation
//! offloads are on, TCP comes out in super-segments of up to 64 KiB (cut by [`super::tso`]). The device lives as long as
//! its queues are open.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::error::StartError;

/// Name of the sleeve's TAP port on the bridge.
pub const TAP: &str = "weft-sleeve";

/// Opens `queues` queues of the TAP device [`TAP`], creating it; with `offload`, turns its
/// checksum and TCP segmentation offloads on (else every packet comes out whole, with an
/// all-zero offload header).
pub fn open_queues(queues: usize, offload: bool) -> Result<Vec<File>, StartError> {
    let files: Vec<File> = (0..queues.max(1))
        .map(|_| open_queue())
        .collect::<Result<_, _>>()?;
    if let Some(first) = files.first().filter(|_| offload) {
        let offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        let rc = unsafe {
            libc::ioctl(
                first.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(offloads),
            )
        };
        if rc < 0 {
            return Err(StartError::last_os(format!(
                "turning on the offloads of {TAP}"
            )));
        }
    }
    Ok(files)
}

fn open_queue() -> Result<File, StartError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(StartError::io(
            "opening /dev/net/tun (is the tun module loaded?)",
        ))?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(TAP.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags =
        (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE | libc::IFF_VNET_HDR) as i16;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which `req` is.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
    if rc < 0 {
        return Err(StartError::last_os(format!(
            "creating the TAP device {TAP}"
        )));
    }
    let little_endian: libc::c_int = 1;
    // SAFETY: TUNSETVNETLE reads one c_int.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETVNETLE, &little_endian) };
    if rc < 0 {
        return Err(StartError::last_os(format!(
            "making {TAP}'s offload headers little-endian"
        )));
    }
    Ok(file)
}

/// Waits until `fd` is readable or `timeout_ms` passed; returns whether it is readable.
pub(crate) fn wait_readable(fd: &impl AsFd, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    n > 0 && pfd.revents & libc::POLLIN != 0
}
