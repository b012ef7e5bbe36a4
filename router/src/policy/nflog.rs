//! Reads the NFLOG group the drop chains log to, over a netfilter netlink socket (no
//! libnetfilter_log, no `nft monitor`): each logged packet comes with the log prefix (the
//! chain's name) and the first bytes of the packet, and becomes a drop event of the
//! [`PolicyService`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::{
    ConfigCmd, ConfigMode, PacketNla, Timeout, ULogMessage, config_request,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use netlink_sys::{Socket, constants::NETLINK_NETFILTER};
use tracing::{debug, info, warn};

use super::error::PolicyError;
use super::service::PolicyService;

/// NFLOG group of dropped packets unless `--policy-nflog-group` says otherwise.
pub const DEFAULT_NFLOG_GROUP: u16 = 86;
/// Bytes of each packet copied to us: IP header with options plus the ports.
const COPY_RANGE: u32 = 128;
/// How long the kernel may hold logged packets to batch them.
const FLUSH: Duration = Duration::from_millis(100);
/// Receive buffer of the socket.
const RECV_BUFFER: usize = 1 << 20;

/// One packet the NFLOG group reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedPacket {
    /// The log prefix (without the trailing NUL).
    pub prefix: String,
    /// The packet from its IP header on, cut at the copy range.
    pub payload: Vec<u8>,
}

/// A socket bound to one NFLOG group.
pub struct NflogSocket {
    socket: Socket,
    buf: Vec<u8>,
}

fn io(what: &str, e: std::io::Error) -> PolicyError {
    PolicyError::Firewall(format!("NFLOG socket: {what}: {e}"))
}

impl NflogSocket {
    /// Opens a netfilter netlink socket and binds it to `group` (of this network namespace).
    pub fn bind(group: u16) -> Result<NflogSocket, PolicyError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(|e| io("opening", e))?;
        socket.bind_auto().map_err(|e| io("binding", e))?;
        // Older kernels want the IPv4 family bound to nfnetlink_log; newer ones ignore it.
        let mut s = NflogSocket {
            socket,
            buf: vec![0; 1 << 16],
        };
        if let Err(e) = s.request(0, ConfigCmd::PfBind) {
            debug!("NFLOG PfBind: {e}");
        }
        let flush: Timeout = FLUSH.into();
        s.configure(
            group,
            vec![
                ConfigCmd::Bind.into(),
                ConfigMode::new_packet(COPY_RANGE).into(),
                flush.into(),
            ],
        )?;
        if let Err(e) = s.socket.set_rx_buf_sz(RECV_BUFFER) {
            debug!("NFLOG receive buffer: {e}");
        }
        Ok(s)
    }

    fn request(&mut self, group: u16, cmd: ConfigCmd) -> Result<(), PolicyError> {
        self.configure(group, vec![cmd.into()])
    }

    fn configure(
        &mut self,
        group: u16,
        nlas: Vec<netlink_packet_netfilter::nflog::ConfigNla>,
    ) -> Result<(), PolicyError> {
        let msg = config_request(NetfilterProtoFamily::IPv4, group, nlas);
        let mut out = vec![0; msg.buffer_len()];
        msg.serialize(&mut out);
        self.socket
            .send(&out, 0)
            .map_err(|e| io("sending a request", e))?;
        let n = self
            .socket
            .recv(&mut &mut self.buf[..], 0)
            .map_err(|e| io("reading the answer", e))?;
        match NetlinkMessage::<NetfilterMessage>::deserialize(&self.buf[..n]) {
            Ok(NetlinkMessage {
                payload: NetlinkPayload::Error(e),
                ..
            }) => match e.code {
                None => Ok(()),
                Some(code) => Err(PolicyError::Firewall(format!(
                    "NFLOG group {group}: the kernel refused binding ({})",
                    std::io::Error::from_raw_os_error(-code.get())
                ))),
            },
            Ok(_) => Ok(()),
            Err(e) => Err(PolicyError::Firewall(format!(
                "NFLOG group {group}: unreadable answer: {e}"
            ))),
        }
    }

    /// Waits for the next datagram and returns the packets it reports.
    pub fn next_packets(&mut self) -> Result<Vec<LoggedPacket>, PolicyError> {
        let n = self
            .socket
            .recv(&mut &mut self.buf[..], 0)
            .map_err(|e| io("receiving", e))?;
        Ok(parse_datagram(&self.buf[..n]))
    }
}

/// The packets of one netlink datagram (several messages, each aligned to 4 bytes); messages
/// that are not NFLOG packets, and unreadable ones, are skipped.
pub fn parse_datagram(mut bytes: &[u8]) -> Vec<LoggedPacket> {
    let mut out = Vec::new();
    while bytes.len() >= 16 {
        let len = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if len < 16 || len > bytes.len() {
            break;
        }
        if let Ok(NetlinkMessage {
            payload:
                NetlinkPayload::InnerMessage(NetfilterMessage {
                    inner: NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)),
                    ..
                }),
            ..
        }) = NetlinkMessage::<NetfilterMessage>::deserialize(&bytes[..len])
        {
            let mut packet = LoggedPacket {
                prefix: String::new(),
                payload: Vec::new(),
            };
            for nla in nlas {
                match nla {
                    PacketNla::Prefix(p) => packet.prefix = p.to_string_lossy().into_owned(),
                    PacketNla::Payload(p) => packet.payload = p,
                    _ => {}
                }
            }
            out.push(packet);
        }
        bytes = &bytes[len.next_multiple_of(4).min(bytes.len())..];
    }
    out
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Binds NFLOG group `group` and feeds what it reports to `service` from a thread of its
/// own, for the life of the process.
pub fn spawn(group: u16, service: PolicyService) -> Result<(), PolicyError> {
    let mut socket = NflogSocket::bind(group)?;
    info!(group, "reading dropped packets from NFLOG");
    std::thread::Builder::new()
        .name("weft-nflog".into())
        .spawn(move || {
            loop {
                match socket.next_packets() {
                    Ok(packets) => {
                        for p in packets {
                            if service
                                .record_drop(&p.prefix, &p.payload, now_ms())
                                .is_none()
                            {
                                debug!(prefix = %p.prefix, "NFLOG packet of no chain of ours");
                            }
                        }
                    }
                    Err(e) => {
                        // ENOBUFS: the kernel had more than we read; the counters stay exact.
                        warn!("{e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map_err(|e| io("starting the reader thread", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;

    use netlink_packet_core::NetlinkHeader;
    use netlink_packet_netfilter::NetfilterHeader;

    use super::*;

    fn message(nlas: Vec<PacketNla>) -> Vec<u8> {
        let mut msg = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, DEFAULT_NFLOG_GROUP),
                ULogMessage::Packet(nlas),
            )),
        );
        msg.finalize();
        let mut out = vec![0; msg.buffer_len()];
        msg.serialize(&mut out);
        out
    }

    #[test]
    fn reads_prefix_and_payload_of_every_message_of_a_datagram() {
        let mut datagram = message(vec![
            PacketNla::Prefix(CString::new("ing-10-32-0-1").unwrap()),
            PacketNla::Payload(vec![0x45, 1, 2]),
        ]);
        // An odd-sized payload makes the next message start after padding.
        datagram.resize(datagram.len().next_multiple_of(4), 0);
        datagram.extend(message(vec![
            PacketNla::Mark(3),
            PacketNla::Prefix(CString::new("egr-10-32-0-2").unwrap()),
            PacketNla::Payload(vec![0x45; 20]),
        ]));
        let packets = parse_datagram(&datagram);
        assert_eq!(
            packets,
            vec![
                LoggedPacket {
                    prefix: "ing-10-32-0-1".into(),
                    payload: vec![0x45, 1, 2],
                },
                LoggedPacket {
                    prefix: "egr-10-32-0-2".into(),
                    payload: vec![0x45; 20],
                },
            ]
        );
        // A truncated datagram yields what is whole.
        assert_eq!(parse_datagram(&datagram[..datagram.len() - 4]).len(), 1);
        assert!(parse_datagram(&[0; 8]).is_empty());
    }
}
