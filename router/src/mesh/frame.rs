//! Framing of [`MeshMessage`]s on an established connection: a 4-byte
//! big-endian length, then the `prost` bytes, sealed with ChaCha20-Poly1305
//! (per-direction key, counter nonce) when the mesh has a password.
//!
//! [`FrameSender`] and [`FrameReceiver`] are independent so the driver can run
//! them in separate tasks.

use bytes::{Buf, BytesMut};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use prost::Message;

use super::wire::{MAX_FRAME_LEN, MeshMessage};

/// Bytes of the length prefix.
const LEN_PREFIX: usize = 4;
/// Bytes of the Poly1305 tag appended to every sealed frame.
const TAG_LEN: usize = 16;

/// Why a frame could not be produced or read. The connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced or produced frame exceeds [`MAX_FRAME_LEN`].
    #[error(
        "mesh frame of {len} bytes exceeds the {MAX_FRAME_LEN}-byte limit: closing the connection"
    )]
    TooLarge {
        /// The offending length.
        len: usize,
    },
    /// The frame failed authentication (tampered, replayed or wrong key).
    #[error("mesh frame failed authentication (corrupted or forged): closing the connection")]
    Authentication,
    /// The frame decrypted (or was plain) but is not a valid message.
    #[error("mesh frame does not decode as a message: {0}")]
    Decode(#[from] prost::DecodeError),
    /// 2^64 frames were sent with one key; a new connection is needed.
    #[error("frame counter exhausted: reconnect to get fresh keys")]
    CounterExhausted,
}

/// One direction's AEAD state.
struct DirectionCipher {
    aead: ChaCha20Poly1305,
    counter: u64,
}

impl DirectionCipher {
    fn new(key: &[u8; 32]) -> DirectionCipher {
        DirectionCipher {
            aead: ChaCha20Poly1305::new(Key::from_slice(key)),
            counter: 0,
        }
    }

    /// The nonce for the current counter, then advances it.
    fn next_nonce(&mut self) -> Result<Nonce, FrameError> {
        let counter = self.counter;
        self.counter = counter.checked_add(1).ok_or(FrameError::CounterExhausted)?;
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&counter.to_be_bytes());
        Ok(Nonce::from(nonce))
    }
}

/// Seals outgoing messages of one connection.
pub struct FrameSender {
    cipher: Option<DirectionCipher>,
}

impl FrameSender {
    /// A sender for an unencrypted connection.
    pub(super) fn plain() -> FrameSender {
        FrameSender { cipher: None }
    }

    /// A sender that seals with `key`.
    pub(super) fn encrypted(key: &[u8; 32]) -> FrameSender {
        FrameSender {
            cipher: Some(DirectionCipher::new(key)),
        }
    }

    /// Whether frames are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// The bytes to write to the socket for `msg`: length prefix and body
    /// (sealed when encrypted).
    pub fn seal(&mut self, msg: &MeshMessage) -> Result<Vec<u8>, FrameError> {
        self.seal_bytes(&msg.encode_to_vec())
    }

    /// Frames raw plaintext bytes (used for the handshake confirm).
    pub(super) fn seal_bytes(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, FrameError> {
        let body = match &mut self.cipher {
            None => plaintext.to_vec(),
            Some(cipher) => {
                if plaintext.len() + TAG_LEN > MAX_FRAME_LEN {
                    return Err(FrameError::TooLarge {
                        len: plaintext.len() + TAG_LEN,
                    });
                }
                let nonce = cipher.next_nonce()?;
                cipher
                    .aead
                    .encrypt(&nonce, plaintext)
                    .map_err(|_| FrameError::TooLarge {
                        len: plaintext.len(),
                    })?
            }
        };
        if body.len() > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge { len: body.len() });
        }
        let mut out = Vec::with_capacity(LEN_PREFIX + body.len());
        // Cannot truncate: body.len() <= MAX_FRAME_LEN < u32::MAX.
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }
}

/// Reassembles and opens incoming frames of one connection.
pub struct FrameReceiver {
    cipher: Option<DirectionCipher>,
    buf: BytesMut,
}

impl FrameReceiver {
    /// A receiver for an unencrypted connection.
    pub(super) fn plain() -> FrameReceiver {
        FrameReceiver {
            cipher: None,
            buf: BytesMut::new(),
        }
    }

    /// A receiver that opens frames sealed with `key`.
    pub(super) fn encrypted(key: &[u8; 32]) -> FrameReceiver {
        FrameReceiver {
            cipher: Some(DirectionCipher::new(key)),
            buf: BytesMut::new(),
        }
    }

    /// Buffers bytes read from the socket; call [`FrameReceiver::next`] after.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, `None` if more bytes are needed. An error
    /// means the connection is unusable and must be closed.
    #[allow(clippy::should_implement_trait)] // fallible, so not an Iterator
    pub fn next(&mut self) -> Result<Option<MeshMessage>, FrameError> {
        match self.next_bytes()? {
            None => Ok(None),
            Some(plain) => Ok(Some(MeshMessage::decode(plain.as_slice())?)),
        }
    }

    /// The next complete frame's plaintext bytes.
    pub(super) fn next_bytes(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.buf.len() < LEN_PREFIX {
            return Ok(None);
        }
        let mut prefix = [0u8; LEN_PREFIX];
        prefix.copy_from_slice(&self.buf[..LEN_PREFIX]);
        let len = u32::from_be_bytes(prefix) as usize;
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge { len });
        }
        if self.buf.len() < LEN_PREFIX + len {
            self.buf.reserve(LEN_PREFIX + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(LEN_PREFIX);
        let body = self.buf.split_to(len);
        match &mut self.cipher {
            None => Ok(Some(body.to_vec())),
            Some(cipher) => {
                let nonce = cipher.next_nonce()?;
                let plain = cipher
                    .aead
                    .decrypt(&nonce, body.as_ref())
                    .map_err(|_| FrameError::Authentication)?;
                Ok(Some(plain))
            }
        }
    }

    /// Removes and returns the bytes buffered but not yet consumed.
    pub(super) fn take_buffered(&mut self) -> Vec<u8> {
        self.buf.split().to_vec()
    }

    /// Bytes buffered but not yet consumed by a complete frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pair(encrypted: bool) -> (FrameSender, FrameReceiver) {
        if encrypted {
            let key = [7u8; 32];
            (FrameSender::encrypted(&key), FrameReceiver::encrypted(&key))
        } else {
            (FrameSender::plain(), FrameReceiver::plain())
        }
    }

    #[test]
    fn oversized_length_is_refused_before_the_body_arrives() {
        let (_, mut rx) = pair(false);
        rx.push(&((MAX_FRAME_LEN as u32) + 1).to_be_bytes());
        assert!(matches!(rx.next(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn oversized_message_is_not_sealed() {
        let (mut tx, _) = pair(true);
        let msg = MeshMessage::gossip("x", vec![0; MAX_FRAME_LEN]);
        assert!(matches!(tx.seal(&msg), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn replayed_frame_fails_authentication() {
        let (mut tx, mut rx) = pair(true);
        let frame = tx.seal(&MeshMessage::gossip("a", vec![1])).unwrap();
        rx.push(&frame);
        assert!(rx.next().unwrap().is_some());
        rx.push(&frame);
        assert!(matches!(rx.next(), Err(FrameError::Authentication)));
    }

    #[test]
    fn wrong_key_fails_authentication() {
        let mut tx = FrameSender::encrypted(&[1; 32]);
        let mut rx = FrameReceiver::encrypted(&[2; 32]);
        rx.push(&tx.seal(&MeshMessage::gossip("a", vec![1])).unwrap());
        assert!(matches!(rx.next(), Err(FrameError::Authentication)));
    }

    fn arb_messages() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
        prop::collection::vec(
            ("[a-z]{0,8}", prop::collection::vec(any::<u8>(), 0..300)),
            1..8,
        )
    }

    proptest! {
        #[test]
        fn round_trip_in_arbitrary_chunks(
            msgs in arb_messages(),
            encrypted in any::<bool>(),
            chunk in 1usize..64,
        ) {
            let (mut tx, mut rx) = pair(encrypted);
            let mut stream = Vec::new();
            for (channel, payload) in &msgs {
                stream.extend(tx.seal(&MeshMessage::gossip(channel, payload.clone())).unwrap());
            }
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                rx.push(piece);
                while let Some(msg) = rx.next().unwrap() {
                    got.push(msg);
                }
            }
            let want: Vec<MeshMessage> = msgs
                .iter()
                .map(|(c, p)| MeshMessage::gossip(c, p.clone()))
                .collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(rx.buffered(), 0);
        }

        #[test]
        fn any_flipped_bit_is_detected(
            payload in prop::collection::vec(any::<u8>(), 0..200),
            bit in any::<prop::sample::Index>(),
        ) {
            let (mut tx, mut rx) = pair(true);
            let mut frame = tx.seal(&MeshMessage::gossip("c", payload)).unwrap();
            // Flip a bit in the sealed body (not the length prefix).
            let body_bits = (frame.len() - LEN_PREFIX) * 8;
            let at = bit.index(body_bits);
            frame[LEN_PREFIX + at / 8] ^= 1 << (at % 8);
            rx.push(&frame);
            prop_assert!(matches!(rx.next(), Err(FrameError::Authentication)));
        }
    }
}
