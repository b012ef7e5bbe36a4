//! What goes into a UDP 6783 datagram: a packet of the TAP port (its offload header, see
//! [`super::vnet`], then the Ethernet frame); with a password sealed by the peer's [`Session`],
//! without, one type byte ([`PLAIN`]) then the packet as is. Sans-IO.

use super::error::SleeveError;
use super::session::{Opener, Sealer, Session};
use super::vnet;

/// Type byte of an unencrypted data frame.
pub const PLAIN: u8 = 0x02;
/// Shortest Ethernet frame accepted (destination, source, ethertype).
pub const MIN_FRAME: usize = 14;
/// Bytes an unencrypted datagram adds to its frame.
pub const PLAIN_OVERHEAD: usize = 1;
/// Bytes an encrypted datagram adds to its frame.
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

    /// Appends the datagram carrying `frame` (a TAP packet: offload header and frame) to `out`.
    pub fn encode(&mut self, frame: &[u8], out: &mut Vec<u8>) -> Result<(), SleeveError> {
        self.encoder()?.encode(frame, out)
    }

    /// The TAP packet carried by `datagram`, checked ([`vnet::check`]) before it may go to the
    /// TAP port; anything else is an error to count.
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
    /// Appends the datagram carrying `frame` to `out`.
    pub fn encode(self, frame: &[u8], out: &mut Vec<u8>) -> Result<(), SleeveError> {
        match self {
            Encoder::Plain => {
                out.push(PLAIN);
                out.extend_from_slice(frame);
                Ok(())
            }
            Encoder::Sealed(s) => s.seal(frame, out),
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
    /// The checked TAP packet carried by `datagram`.
    pub fn decode(&self, datagram: &[u8]) -> Result<Vec<u8>, SleeveError> {
        let frame = match self {
            Decoder::Plain => match datagram.split_first() {
                Some((&PLAIN, frame)) => frame.to_vec(),
                Some((&other, _)) => return Err(SleeveError::UnknownType(other)),
                None => return Err(SleeveError::TooShort(0)),
            },
            Decoder::Sealed(o) => o.open(datagram)?,
        };
        vnet::check(&frame)?;
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::PeerName;
    use crate::sleeve::SessionConfig;
    use crate::sleeve::vnet::VnetHeader;
    use proptest::prelude::*;

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

    #[test]
    fn plain_round_trips_and_refuses_foreign_or_short() {
        let frame = packet(&[0xabu8; 60]);
        let mut out = Vec::new();
        Codec::Plain.encode(&frame, &mut out).unwrap();
        assert_eq!(out.len(), frame.len() + PLAIN_OVERHEAD);
        assert_eq!(Codec::Plain.decode(&out).unwrap(), frame);
        assert_eq!(Codec::Plain.decode(&[]), Err(SleeveError::TooShort(0)));
        assert_eq!(
            Codec::Plain.decode(&[0x01, 1, 2]),
            Err(SleeveError::UnknownType(0x01))
        );
        let mut short = vec![PLAIN];
        short.extend(packet(&[1, 2, 3]));
        assert_eq!(Codec::Plain.decode(&short), Err(SleeveError::ShortFrame(3)));
        let mut odd = vec![PLAIN, 0x40];
        odd.extend([0; 70]);
        assert_eq!(
            Codec::Plain.decode(&odd),
            Err(SleeveError::BadOffload(0x40, 0))
        );
    }

    #[test]
    fn sealed_round_trips_and_plain_datagrams_do_not_open() {
        let (mut a, mut b) = sealed_pair();
        let frame = &packet(b"\xff\xff\xff\xff\xff\xff\x02\0\0\0\0\x01\x08\x06marker");
        let mut out = Vec::new();
        a.encode(frame, &mut out).unwrap();
        assert_eq!(out.len(), frame.len() + SEALED_OVERHEAD);
        assert!(!out.windows(6).any(|w| w == b"marker"));
        assert_eq!(&b.decode(&out).unwrap(), frame);
        let mut plain = Vec::new();
        Codec::Plain.encode(frame, &mut plain).unwrap();
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
