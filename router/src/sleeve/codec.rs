//! What goes into a UDP 6783 datagram: a packet of the TAP port as [`Carried`] (a bare Ethernet
//! frame, or a segmented one with its offload header, see [`super::vnet`]); with a password
//! sealed by the peer's [`Session`], without, one type byte ([`PLAIN`] or [`PLAIN_OFFLOAD`])
//! then the bytes as they are. Sans-IO.

use super::error::SleeveError;
use super::session::{Opener, Sealer, Session};
use super::vnet::{self, Carried};

/// Type byte of an unencrypted bare frame.
pub const PLAIN: u8 = 0x02;
/// Type byte of an unencrypted frame with its offload header.
pub const PLAIN_OFFLOAD: u8 = 0x04;
/// Shortest Ethernet frame accepted (destination, source, ethertype).
pub const MIN_FRAME: usize = 14;
/// Bytes an unencrypted datagram adds to a bare frame.
pub const PLAIN_OVERHEAD: usize = 1;
/// Bytes an encrypted datagram adds to a bare frame.
pub const SEALED_OVERHEAD: usize = super::frame::HEADER_LEN + super::frame::TAG_LEN;

/// How one peer's frames are framed.
pub enum Codec {
    /// No password: frames travel in the clear.
    Plain,
    /// Password: frames are sealed with the peer's session.
    Sealed(Box<Session>),
}

impl Codec {
    /// Prepares the framing of one datagram (for a sealed codec: takes its nonce), so the work
    /// itself can run without holding the codec.
    pub fn encoder(&mut self) -> Result<Encoder, SleeveError> {
        Ok(match self {
            Codec::Plain => Encoder::Plain,
            Codec::Sealed(s) => Encoder::Sealed(s.sealer()?),
        })
    }

    /// Checks `datagram`'s header (for a sealed codec: epoch and replay window) and returns
    /// what decodes it without holding the codec; [`Codec::accept`] records it afterwards.
    pub fn decoder(&self, datagram: &[u8]) -> Result<Decoder, SleeveError> {
        Ok(match self {
            Codec::Plain => Decoder::Plain,
            Codec::Sealed(s) => Decoder::Sealed(s.opener(datagram)?),
        })
    }

    /// Records a datagram that `decoder` decoded (for a sealed codec: marks it seen).
    pub fn accept(&mut self, decoder: Decoder) -> Result<(), SleeveError> {
        match (self, decoder) {
            (Codec::Sealed(s), Decoder::Sealed(o)) => s.accept(o),
            _ => Ok(()),
        }
    }

    /// Appends the datagram carrying `packet` to `out`.
    pub fn encode(&mut self, packet: Carried<'_>, out: &mut Vec<u8>) -> Result<(), SleeveError> {
        self.encoder()?.encode(packet, out)
    }

    /// The TAP packet (offload header and frame) carried by `datagram`, checked
    /// ([`vnet::check`]) before it may go to the TAP port; anything else is an error to count.
    pub fn decode(&mut self, datagram: &[u8]) -> Result<Vec<u8>, SleeveError> {
        let decoder = self.decoder(datagram)?;
        let frame = decoder.decode(datagram)?;
        self.accept(decoder)?;
        Ok(frame)
    }

    /// Whether frames are encrypted.
    pub fn encrypted(&self) -> bool {
        matches!(self, Codec::Sealed(_))
    }
}

/// Frames one datagram; from [`Codec::encoder`].
pub enum Encoder {
    /// In the clear.
    Plain,
    /// Sealed under a nonce already taken.
    Sealed(Sealer),
}

impl Encoder {
    /// Appends the datagram carrying `packet` to `out`.
    pub fn encode(self, packet: Carried<'_>, out: &mut Vec<u8>) -> Result<(), SleeveError> {
        let offload = matches!(packet, Carried::Offload(_));
        match self {
            Encoder::Plain => {
                out.push(if offload { PLAIN_OFFLOAD } else { PLAIN });
                out.extend_from_slice(packet.bytes());
                Ok(())
            }
            Encoder::Sealed(s) => s.seal(packet.bytes(), offload, out),
        }
    }
}

/// Decodes one datagram; from [`Codec::decoder`].
pub enum Decoder {
    /// In the clear.
    Plain,
    /// Sealed; the header was accepted.
    Sealed(Opener),
}

impl Decoder {
    /// The checked TAP packet (offload header and frame) carried by `datagram`.
    pub fn decode(&self, datagram: &[u8]) -> Result<Vec<u8>, SleeveError> {
        let mut copy = datagram.to_vec();
        let carried = self.decode_in_place(&mut copy)?;
        let mut packet = carried.header().to_vec();
        packet.extend_from_slice(carried.frame());
        Ok(packet)
    }

    /// The checked packet carried by `datagram`, decrypted in `datagram`'s own buffer.
    pub fn decode_in_place<'d>(&self, datagram: &'d mut [u8]) -> Result<Carried<'d>, SleeveError> {
        let carried = match self {
            Decoder::Plain => {
                let datagram: &'d [u8] = datagram;
                match datagram.split_first() {
                    Some((&PLAIN, frame)) => Carried::Bare(frame),
                    Some((&PLAIN_OFFLOAD, packet)) => Carried::Offload(packet),
                    Some((&other, _)) => return Err(SleeveError::UnknownType(other)),
                    None => return Err(SleeveError::TooShort(0)),
                }
            }
            Decoder::Sealed(o) => {
                let offload = o.offload();
                let payload = o.open_in_place(datagram)?;
                if offload {
                    Carried::Offload(payload)
                } else {
                    Carried::Bare(payload)
                }
            }
        };
        vnet::check(carried)?;
        Ok(carried)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::PeerName;
    use crate::sleeve::SessionConfig;
    use crate::sleeve::vnet::{F_NEEDS_CSUM, GSO_TCPV4, VNET_HDR_LEN, VnetHeader};
    use proptest::prelude::*;

    /// A TAP packet: an all-zero offload header, then `frame`.
    fn packet(frame: &[u8]) -> Vec<u8> {
        let mut p = VnetHeader::PLAIN.encode().to_vec();
        p.extend_from_slice(frame);
        p
    }

    fn sealed_pair() -> (Codec, Codec) {
        let m = [9u8; 64];
        let a: PeerName = "00:00:00:00:00:0a".parse().unwrap();
        let b: PeerName = "00:00:00:00:00:0b".parse().unwrap();
        let cfg = SessionConfig::default();
        (
            Codec::Sealed(Box::new(Session::new(&m, a, b, cfg))),
            Codec::Sealed(Box::new(Session::new(&m, b, a, cfg))),
        )
    }

    /// A TCP super-segment's packet: its offload header, then a frame of `len` bytes.
    fn segmented(len: usize) -> Vec<u8> {
        let h = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1398,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut p = h.encode().to_vec();
        p.extend(std::iter::repeat_n(0x5a, len));
        p
    }

    #[test]
    fn plain_round_trips_and_refuses_foreign_or_short() {
        let frame = [0xabu8; 60];
        let mut out = Vec::new();
        Codec::Plain
            .encode(Carried::Bare(&frame), &mut out)
            .unwrap();
        assert_eq!(out.len(), frame.len() + PLAIN_OVERHEAD, "a bare frame");
        assert_eq!(Codec::Plain.decode(&out).unwrap(), packet(&frame));
        let big = segmented(9000);
        let mut out = Vec::new();
        Codec::Plain
            .encode(Carried::Offload(&big), &mut out)
            .unwrap();
        assert_eq!(out[0], PLAIN_OFFLOAD);
        assert_eq!(Codec::Plain.decode(&out).unwrap(), big);
        assert_eq!(Codec::Plain.decode(&[]), Err(SleeveError::TooShort(0)));
        assert_eq!(
            Codec::Plain.decode(&[0x01, 1, 2]),
            Err(SleeveError::UnknownType(0x01))
        );
        assert_eq!(
            Codec::Plain.decode(&[PLAIN, 1, 2, 3]),
            Err(SleeveError::ShortFrame(3))
        );
        let mut odd = vec![PLAIN_OFFLOAD, 0x40];
        odd.extend([0; 70]);
        assert_eq!(
            Codec::Plain.decode(&odd),
            Err(SleeveError::BadOffload(0x40, 0))
        );
    }

    #[test]
    fn sealed_round_trips_and_plain_datagrams_do_not_open() {
        let (mut a, mut b) = sealed_pair();
        let frame = b"\xff\xff\xff\xff\xff\xff\x02\0\0\0\0\x01\x08\x06marker";
        let mut out = Vec::new();
        a.encode(Carried::Bare(frame), &mut out).unwrap();
        assert_eq!(out.len(), frame.len() + SEALED_OVERHEAD);
        assert!(!out.windows(6).any(|w| w == b"marker"));
        assert_eq!(b.decode(&out).unwrap(), packet(frame));
        let big = segmented(20_000);
        let mut out = Vec::new();
        a.encode(Carried::Offload(&big), &mut out).unwrap();
        assert_eq!(out.len(), big.len() + SEALED_OVERHEAD);
        assert_eq!(b.decode(&out).unwrap(), big);
        // The type byte is authenticated: a bare frame cannot be passed off as segmented.
        let mut out = Vec::new();
        a.encode(Carried::Bare(&big[VNET_HDR_LEN..]), &mut out)
            .unwrap();
        out[0] = crate::sleeve::frame::DATA_OFFLOAD;
        assert_eq!(b.decode(&out), Err(SleeveError::Auth));
        let mut plain = Vec::new();
        Codec::Plain
            .encode(Carried::Bare(frame), &mut plain)
            .unwrap();
        assert!(b.decode(&plain).is_err());
        assert!(b.encrypted() && !Codec::Plain.encrypted());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(d in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Codec::Plain.decode(&d);
            let (_, mut b) = sealed_pair();
            prop_assert!(b.decode(&d).is_err());
        }
    }
}
