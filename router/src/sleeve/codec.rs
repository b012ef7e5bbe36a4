//! What goes into a UDP 6783 datagram: with a password, the Ethernet frame sealed by the peer's
//! [`Session`]; without, one type byte ([`PLAIN`]) then the frame as is. Sans-IO.

use super::error::SleeveError;
use super::session::Session;

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
    /// Appends the datagram carrying `frame` to `out`.
    pub fn encode(&mut self, frame: &[u8], out: &mut Vec<u8>) -> Result<(), SleeveError> {
        match self {
            Codec::Plain => {
                out.push(PLAIN);
                out.extend_from_slice(frame);
                Ok(())
            }
            Codec::Sealed(s) => s.seal(frame, out),
        }
    }

    /// The frame carried by `datagram`; anything else is an error to count.
    pub fn decode(&mut self, datagram: &[u8]) -> Result<Vec<u8>, SleeveError> {
        let frame = match self {
            Codec::Plain => match datagram.split_first() {
                Some((&PLAIN, frame)) => frame.to_vec(),
                Some((&other, _)) => return Err(SleeveError::UnknownType(other)),
                None => return Err(SleeveError::TooShort(0)),
            },
            Codec::Sealed(s) => s.open(datagram)?,
        };
        if frame.len() < MIN_FRAME {
            return Err(SleeveError::ShortFrame(frame.len()));
        }
        Ok(frame)
    }

    /// Whether frames are encrypted.
    pub fn encrypted(&self) -> bool {
        matches!(self, Codec::Sealed(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::PeerName;
    use crate::sleeve::SessionConfig;
    use proptest::prelude::*;

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
        let frame = [0xabu8; 60];
        let mut out = Vec::new();
        Codec::Plain.encode(&frame, &mut out).unwrap();
        assert_eq!(out.len(), frame.len() + PLAIN_OVERHEAD);
        assert_eq!(Codec::Plain.decode(&out).unwrap(), frame);
        assert_eq!(Codec::Plain.decode(&[]), Err(SleeveError::TooShort(0)));
        assert_eq!(
            Codec::Plain.decode(&[0x01, 1, 2]),
            Err(SleeveError::UnknownType(0x01))
        );
        assert_eq!(
            Codec::Plain.decode(&[PLAIN, 1, 2, 3]),
            Err(SleeveError::ShortFrame(3))
        );
    }

    #[test]
    fn sealed_round_trips_and_plain_datagrams_do_not_open() {
        let (mut a, mut b) = sealed_pair();
        let frame = b"\xff\xff\xff\xff\xff\xff\x02\0\0\0\0\x01\x08\x06marker";
        let mut out = Vec::new();
        a.encode(frame, &mut out).unwrap();
        assert_eq!(out.len(), frame.len() + SEALED_OVERHEAD);
        assert!(!out.windows(6).any(|w| w == b"marker"));
        assert_eq!(b.decode(&out).unwrap(), frame);
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
