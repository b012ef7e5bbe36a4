//! The sleeve datagram: a 10-byte header (type: bare frame or with its offload header, key
//! epoch, 64-bit counter, big-endian) followed
//! by the ChaCha20-Poly1305 ciphertext and its 16-byte tag. The header is the AEAD's associated
//! data; the counter is the nonce.

use super::error::SleeveError;

/// Type byte of an encrypted bare frame.
pub const DATA: u8 = 0x01;
/// Type byte of an encrypted frame with its offload header (see [`super::vnet`]).
pub const DATA_OFFLOAD: u8 = 0x03;
/// Header length.
pub const HEADER_LEN: usize = 10;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Whether the payload starts with the frame's offload header.
    pub offload: bool,
    /// Key epoch (wraps).
    pub epoch: u8,
    /// Per-epoch counter, the nonce.
    pub counter: u64,
}

impl Header {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        out[0] = if self.offload { DATA_OFFLOAD } else { DATA };
        out[1] = self.epoch;
        out[2..].copy_from_slice(&self.counter.to_be_bytes());
        out
    }

    /// Splits a datagram into header and sealed payload.
    pub fn decode(datagram: &[u8]) -> Result<(Header, &[u8]), SleeveError> {
        if datagram.len() < HEADER_LEN + TAG_LEN {
            return Err(SleeveError::TooShort(datagram.len()));
        }
        let (head, rest) = datagram.split_at(HEADER_LEN);
        let offload = match head[0] {
            DATA => false,
            DATA_OFFLOAD => true,
            other => return Err(SleeveError::UnknownType(other)),
        };
        let mut counter = [0; 8];
        counter.copy_from_slice(&head[2..]);
        Ok((
            Header {
                offload,
                epoch: head[1],
                counter: u64::from_be_bytes(counter),
            },
            rest,
        ))
    }

    /// The AEAD nonce: four zero bytes then the counter.
    pub fn nonce(&self) -> [u8; 12] {
        let mut n = [0; 12];
        n[4..].copy_from_slice(&self.counter.to_be_bytes());
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn header_round_trips(offload: bool, epoch: u8, counter: u64, body in proptest::collection::vec(any::<u8>(), TAG_LEN..64)) {
            let h = Header { offload, epoch, counter };
            let mut d = h.encode().to_vec();
            d.extend_from_slice(&body);
            let (back, rest) = Header::decode(&d).unwrap();
            prop_assert_eq!(back, h);
            prop_assert_eq!(rest, &body[..]);
        }

        #[test]
        fn decode_never_panics(d in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Header::decode(&d);
        }
    }

    #[test]
    fn short_and_foreign_datagrams_are_refused() {
        assert_eq!(Header::decode(&[DATA; 25]), Err(SleeveError::TooShort(25)));
        let mut d = [0u8; 26];
        d[0] = 0x7f;
        assert_eq!(Header::decode(&d), Err(SleeveError::UnknownType(0x7f)));
    }
}
