//! The I/O side of conntrack: the event subscription (a thread reading the multicast groups)
//! and table dumps, both on `NETLINK_NETFILTER` sockets of the router's network namespace,
//! and the accounting sysctl. Decoding is in `ctnetlink`.

use std::thread;

use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};
use tokio::sync::mpsc;
use tracing::warn;

use super::ctnetlink::{CtEvent, EVENT_GROUPS, Message, dump_request, parse_datagram};
use super::error::FlowError;

/// The per-namespace switch of conntrack byte and packet counters.
const ACCT_SYSCTL: &str = "/proc/sys/net/netfilter/nf_conntrack_acct";

/// Receive buffer asked for the event socket (bursts of new connections).
const EVENT_RCVBUF: usize = 4 << 20;

/// Largest datagram read.
const DATAGRAM: usize = 1 << 16;

/// What the event thread reports.
#[derive(Debug)]
pub(crate) enum Input {
    /// A conntrack event.
    Event(CtEvent),
    /// Messages lost (socket overrun) or undecodable.
    Lost(u64),
}

/// Turns on conntrack accounting in this network namespace (counters exist only for
/// connections created afterwards). Fails while conntrack is not loaded.
pub(crate) fn enable_accounting() -> Result<(), FlowError> {
    std::fs::write(ACCT_SYSCTL, "1").map_err(|source| FlowError::Sysctl {
        path: ACCT_SYSCTL.into(),
        source,
    })
}

fn socket() -> Result<Socket, FlowError> {
    let mut s = Socket::new(NETLINK_NETFILTER).map_err(FlowError::Netlink)?;
    s.bind_auto().map_err(FlowError::Netlink)?;
    Ok(s)
}

/// Starts the thread that reads conntrack events into `tx` until the receiver is dropped.
pub(crate) fn spawn_events(tx: mpsc::UnboundedSender<Input>) -> Result<(), FlowError> {
    let s = socket()?;
    for g in EVENT_GROUPS {
        s.add_membership(g).map_err(FlowError::Netlink)?;
    }
    if let Err(e) = s.set_rx_buf_sz(EVENT_RCVBUF) {
        warn!("conntrack event socket buffer: {e}");
    }
    thread::Builder::new()
        .name("weft-conntrack".into())
        .spawn(move || read_events(&s, &tx))
        .map_err(FlowError::Netlink)?;
    Ok(())
}

fn read_events(s: &Socket, tx: &mpsc::UnboundedSender<Input>) {
    let mut buf = Vec::with_capacity(DATAGRAM);
    loop {
        buf.clear();
        let sent = match s.recv(&mut buf, 0) {
            Ok(_) => parse_datagram(&buf)
                .into_iter()
                .filter_map(|m| match m {
                    Ok(Message::Conntrack(ev)) => Some(Input::Event(ev)),
                    Ok(_) => None,
                    Err(_) => Some(Input::Lost(1)),
                })
                .all(|i| tx.send(i).is_ok()),
            // ENOBUFS: the kernel dropped events; the next dump catches up.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => tx.send(Input::Lost(1)).is_ok(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => true,
            Err(e) => {
                warn!("conntrack events stopped: {e}");
                return;
            }
        };
        if !sent {
            return;
        }
    }
}

/// Reads the whole IPv4 conntrack table (blocking); the number of undecodable entries too.
pub(crate) fn dump(seq: u32) -> Result<(Vec<CtEvent>, u64), FlowError> {
    let s = socket()?;
    let req = dump_request(seq);
    s.send(&req, 0).map_err(FlowError::Netlink)?;
    let mut out = Vec::new();
    let mut bad = 0;
    let mut buf = Vec::with_capacity(DATAGRAM);
    loop {
        buf.clear();
        s.recv(&mut buf, 0).map_err(FlowError::Netlink)?;
        for m in parse_datagram(&buf) {
            match m {
                Ok(Message::Conntrack(ev)) => out.push(ev),
                Ok(Message::Done) => return Ok((out, bad)),
                Ok(Message::Error(code)) => {
                    return Err(FlowError::Netlink(std::io::Error::from_raw_os_error(-code)));
                }
                Ok(_) => {}
                Err(_) => bad += 1,
            }
        }
        if buf.is_empty() {
            return Ok((out, bad));
        }
    }
}
