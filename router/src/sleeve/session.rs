//! One peer's sleeve session: seals our datagrams with the sending key and opens theirs with
//! the receiving key, with a replay window per key epoch. The sender moves to the next key after
//! [`SessionConfig::rekey_after`] datagrams, long before the 64-bit counter could wrap; the
//! receiver follows when it sees the next epoch authenticate, and keeps the previous epoch for
//! datagrams still in flight.

use std::borrow::Cow;
use std::sync::Arc;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};

use super::error::SleeveError;
use super::frame::{HEADER_LEN, Header, TAG_LEN};
use super::keys::{Key, direction_key, next_key};
use super::replay::ReplayWindow;
use crate::mesh::PeerName;

/// Tunables of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Datagrams sealed under one key before moving to the next.
    pub rekey_after: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        // Far below the 2^64 nonces of a key and ChaCha20-Poly1305's safe per-key volume.
        SessionConfig {
            rekey_after: 1 << 40,
        }
    }
}

/// A ChaCha20-Poly1305 key ready to use (ring's, for its vectorised assembly), shared with the
/// [`Sealer`]s and [`Opener`]s taken from it.
type Cipher = Arc<LessSafeKey>;

#[derive(Clone)]
struct Epoch {
    number: u8,
    cipher: Cipher,
    key: Key,
    window: ReplayWindow,
}

/// `key` as ring's ChaCha20-Poly1305 key.
fn cipher_key(key: &Key) -> UnboundKey {
    match UnboundKey::new(&CHACHA20_POLY1305, &key[..]) {
        Ok(k) => k,
        // ring refuses only a key of the wrong length, and a `Key` is always 32 bytes.
        Err(_) => unreachable!("a 32-byte ChaCha20-Poly1305 key is always accepted"),
    }
}

impl Epoch {
    fn new(number: u8, key: Key) -> Epoch {
        Epoch {
            number,
            cipher: Arc::new(LessSafeKey::new(cipher_key(&key))),
            key,
            window: ReplayWindow::default(),
        }
    }

    fn next(&self) -> Epoch {
        Epoch::new(self.number.wrapping_add(1), next_key(&self.key))
    }
}

/// The sleeve session with one peer.
pub struct Session {
    config: SessionConfig,
    send: Epoch,
    send_counter: u64,
    sealed_epochs: u64,
    recv: Epoch,
    recv_prev: Option<Epoch>,
}

/// How many epochs a sending direction may use: the epoch byte must not wrap onto one the
/// receiver still holds.
const MAX_EPOCHS: u64 = 250;

impl Session {
    /// A session between `local` and `remote` from the handshake's sleeve key material.
    pub fn new(
        material: &[u8; 64],
        local: PeerName,
        remote: PeerName,
        config: SessionConfig,
    ) -> Session {
        Session {
            config,
            send: Epoch::new(0, direction_key(material, local, remote)),
            send_counter: 0,
            sealed_epochs: 0,
            recv: Epoch::new(0, direction_key(material, remote, local)),
            recv_prev: None,
        }
    }

    /// Takes the next nonce of the sending direction (moving to the next key when this one is
    /// used up) and returns what seals one datagram with it, so the sealing itself can run
    /// without holding the session.
    pub fn sealer(&mut self) -> Result<Sealer, SleeveError> {
        if self.send_counter >= self.config.rekey_after {
            if self.sealed_epochs + 1 >= MAX_EPOCHS {
                return Err(SleeveError::Exhausted);
            }
            self.send = self.send.next();
            self.send_counter = 0;
            self.sealed_epochs += 1;
        }
        let header = Header {
            offload: false,
            epoch: self.send.number,
            counter: self.send_counter,
        };
        self.send_counter += 1;
        Ok(Sealer {
            header,
            cipher: self.send.cipher.clone(),
        })
    }

    /// Seals `payload` (a bare frame) into a datagram appended to `out`.
    pub fn seal(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SleeveError> {
        self.sealer()?.seal(payload, false, out)
    }

    /// Checks a datagram's header against the receiving side (usable epoch, not replayed) and
    /// returns what opens it, so the opening itself can run without holding the session; once
    /// it opened, [`Session::accept`] records it.
    pub fn opener(&self, datagram: &[u8]) -> Result<Opener, SleeveError> {
        let (header, _) = Header::decode(datagram)?;
        let current = self.recv.number;
        let epoch = if header.epoch == current {
            Cow::Borrowed(&self.recv)
        } else if let Some(prev) = self.recv_prev.as_ref().filter(|p| p.number == header.epoch) {
            Cow::Borrowed(prev)
        } else if header.epoch == current.wrapping_add(1) {
            Cow::Owned(self.recv.next())
        } else {
            return Err(SleeveError::StaleEpoch {
                got: header.epoch,
                current,
            });
        };
        if !epoch.window.check(header.counter) {
            return Err(SleeveError::Replay(header.counter));
        }
        Ok(Opener {
            header,
            cipher: epoch.cipher.clone(),
            next: match epoch {
                Cow::Owned(next) => Some(Box::new(next)),
                Cow::Borrowed(_) => None,
            },
        })
    }

    /// Records a datagram that `opener` opened: marks its counter seen, and moves to the next
    /// epoch when it was the first of it. Fails, changing nothing, when the datagram was
    /// accepted meanwhile (a replay) or its epoch is no longer held.
    pub fn accept(&mut self, opener: Opener) -> Result<(), SleeveError> {
        let Opener { header, next, .. } = opener;
        let current = self.recv.number;
        let epoch = if header.epoch == current {
            &mut self.recv
        } else if let Some(prev) = self.recv_prev.as_mut().filter(|p| p.number == header.epoch) {
            prev
        } else if let Some(next) = next.filter(|_| header.epoch == current.wrapping_add(1)) {
            let old = std::mem::replace(&mut self.recv, *next);
            self.recv_prev = Some(old);
            &mut self.recv
        } else {
            return Err(SleeveError::StaleEpoch {
                got: header.epoch,
                current,
            });
        };
        if epoch.window.mark(header.counter) {
            Ok(())
        } else {
            Err(SleeveError::Replay(header.counter))
        }
    }

    /// Opens a datagram, returning its payload. Replays, forgeries and datagrams of unusable
    /// epochs are refused without changing the session.
    pub fn open(&mut self, datagram: &[u8]) -> Result<Vec<u8>, SleeveError> {
        let opener = self.opener(datagram)?;
        let payload = opener.open(datagram)?;
        self.accept(opener)?;
        Ok(payload)
    }
}

/// Seals one datagram under a nonce taken from a [`Session`].
pub struct Sealer {
    header: Header,
    cipher: Cipher,
}

impl Sealer {
    /// Seals `payload` into a datagram appended to `out`; `offload` says whether it starts with
    /// the frame's offload header.
    pub fn seal(
        mut self,
        payload: &[u8],
        offload: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), SleeveError> {
        self.header.offload = offload;
        let head = self.header.encode();
        let start = out.len();
        out.extend_from_slice(&head);
        out.extend_from_slice(payload);
        let tag = self
            .cipher
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(self.header.nonce()),
                Aad::from(head),
                &mut out[start + HEADER_LEN..],
            )
            .map_err(|_| SleeveError::Auth)?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }
}

/// Opens one datagram whose header a [`Session`] accepted; see [`Session::opener`].
pub struct Opener {
    header: Header,
    cipher: Cipher,
    /// The receiving side's next epoch, when the datagram is its first.
    next: Option<Box<Epoch>>,
}

impl Opener {
    /// Whether the payload starts with the frame's offload header.
    pub fn offload(&self) -> bool {
        self.header.offload
    }

    /// The payload of `datagram` (the one given to [`Session::opener`]), if it authenticates.
    pub fn open(&self, datagram: &[u8]) -> Result<Vec<u8>, SleeveError> {
        let mut copy = datagram.to_vec();
        Ok(self.open_in_place(&mut copy)?.to_vec())
    }

    /// Like [`Opener::open`], decrypting in `datagram`'s own buffer: the payload is the
    /// returned part of it.
    pub fn open_in_place<'d>(&self, datagram: &'d mut [u8]) -> Result<&'d [u8], SleeveError> {
        let len = datagram.len();
        if len < HEADER_LEN + TAG_LEN {
            return Err(SleeveError::TooShort(len));
        }
        let (head, sealed) = datagram.split_at_mut(HEADER_LEN);
        let (body, tag) = sealed.split_at_mut(len - HEADER_LEN - TAG_LEN);
        let tag = Tag::try_from(&*tag).map_err(|_| SleeveError::TooShort(len))?;
        let payload = self
            .cipher
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(self.header.nonce()),
                Aad::from(&*head),
                tag,
                body,
                0..,
            )
            .map_err(|_| SleeveError::Auth)?;
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pair(rekey_after: u64) -> (Session, Session) {
        let m = [42u8; 64];
        let a: PeerName = "00:00:00:00:00:0a".parse().unwrap();
        let b: PeerName = "00:00:00:00:00:0b".parse().unwrap();
        let cfg = SessionConfig { rekey_after };
        (Session::new(&m, a, b, cfg), Session::new(&m, b, a, cfg))
    }

    fn seal(s: &mut Session, p: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        s.seal(p, &mut out).unwrap();
        out
    }

    #[test]
    fn both_directions_round_trip_and_hide_the_payload() {
        let (mut a, mut b) = pair(1 << 40);
        let d = seal(&mut a, b"secret frame payload");
        assert!(
            !d.windows(6).any(|w| w == b"secret"),
            "plaintext on the wire"
        );
        assert_eq!(b.open(&d).unwrap(), b"secret frame payload");
        let back = seal(&mut b, b"reply");
        assert_eq!(a.open(&back).unwrap(), b"reply");
        // A direction's datagram does not open in the other direction.
        let more = seal(&mut a, b"more");
        assert_eq!(a.open(&more), Err(SleeveError::Auth));
    }

    #[test]
    fn replays_and_forgeries_are_refused() {
        let (mut a, mut b) = pair(1 << 40);
        let d = seal(&mut a, b"x");
        assert!(b.open(&d).is_ok());
        assert_eq!(b.open(&d), Err(SleeveError::Replay(0)));
        let mut forged = seal(&mut a, b"y");
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(b.open(&forged), Err(SleeveError::Auth));
        // The forgery did not burn the counter: the genuine datagram still opens.
        forged[last] ^= 1;
        assert_eq!(b.open(&forged).unwrap(), b"y");
        let mut header_changed = seal(&mut a, b"z");
        header_changed[9] ^= 1;
        assert_eq!(b.open(&header_changed), Err(SleeveError::Auth));
    }

    #[test]
    fn sealing_and_opening_outside_the_session_keep_nonces_unique_and_replays_out() {
        let (mut a, mut b) = pair(2);
        // Nonces are taken in order, the sealing may happen in any order.
        let (s0, s1, s2) = (
            a.sealer().unwrap(),
            a.sealer().unwrap(),
            a.sealer().unwrap(),
        );
        let mut d2 = Vec::new();
        s2.seal(b"two", true, &mut d2).unwrap();
        let mut d0 = Vec::new();
        s0.seal(b"zero", false, &mut d0).unwrap();
        let mut d1 = Vec::new();
        s1.seal(b"one", false, &mut d1).unwrap();
        assert_eq!((d0[1], d1[1], d2[1]), (0, 0, 1), "epochs");
        // Two threads open the same datagram at once: only the first to record it wins.
        let (o1, o2) = (b.opener(&d2).unwrap(), b.opener(&d2).unwrap());
        assert!(o1.offload() && !b.opener(&d0).unwrap().offload());
        assert_eq!(o1.open(&d2).unwrap(), b"two");
        assert_eq!(o2.open(&d2).unwrap(), b"two");
        b.accept(o1).unwrap();
        assert_eq!(b.accept(o2), Err(SleeveError::Replay(0)));
        // The first datagram of epoch 1 moved the receiver on; epoch 0 is still held.
        assert_eq!(b.open(&d0).unwrap(), b"zero");
        assert_eq!(b.open(&d1).unwrap(), b"one");
        assert_eq!(b.open(&d1), Err(SleeveError::Replay(1)));
        // A forged datagram yields an opener but never opens, and records nothing.
        let mut forged = d1.clone();
        forged[12] ^= 1;
        assert_eq!(b.opener(&forged).map(|_| ()), Err(SleeveError::Replay(1)));
        let mut d3 = Vec::new();
        a.seal(b"three", &mut d3).unwrap();
        let mut bad = d3.clone();
        bad[12] ^= 1;
        assert_eq!(b.opener(&bad).unwrap().open(&bad), Err(SleeveError::Auth));
        assert_eq!(b.open(&d3).unwrap(), b"three");
    }

    #[test]
    fn rekeys_and_receiver_follows_with_reordering_across_the_boundary() {
        let (mut a, mut b) = pair(3);
        let first: Vec<_> = (0..3).map(|i| seal(&mut a, &[i])).collect();
        let second: Vec<_> = (3..6).map(|i| seal(&mut a, &[i])).collect();
        assert_eq!(first[0][1], 0);
        assert_eq!(second[0][1], 1, "epoch advanced after 3 datagrams");
        assert_eq!(b.open(&second[0]).unwrap(), [3]);
        assert_eq!(
            b.open(&first[2]).unwrap(),
            [2],
            "late datagram of the previous epoch"
        );
        assert_eq!(b.open(&first[0]).unwrap(), [0]);
        assert_eq!(b.open(&second[1]).unwrap(), [4]);
        assert_eq!(b.open(&first[0]), Err(SleeveError::Replay(0)));
        let third = seal(&mut a, &[6]);
        let fourth: Vec<_> = (7..10).map(|i| seal(&mut a, &[i])).collect();
        assert_eq!(third[1], 2);
        assert_eq!(fourth[2][1], 3);
        // Epoch 3 is two ahead of the receiver's 1: refused until epoch 2 is seen.
        assert!(matches!(
            b.open(&fourth[2]),
            Err(SleeveError::StaleEpoch { got: 3, current: 1 })
        ));
        assert_eq!(b.open(&third).unwrap(), [6]);
        assert_eq!(b.open(&fourth[2]).unwrap(), [9]);
        assert_eq!(
            b.open(&fourth[0]).unwrap(),
            [7],
            "previous epoch still held"
        );
        // Epoch 0 is no longer held.
        assert!(matches!(
            b.open(&first[1]),
            Err(SleeveError::StaleEpoch { got: 0, .. })
        ));
    }

    #[test]
    fn sender_stops_before_the_epoch_byte_wraps() {
        let (mut a, _) = pair(1);
        let mut out = Vec::new();
        let mut sealed = 0;
        while a.seal(b"p", &mut out).is_ok() {
            sealed += 1;
            assert!(sealed < 1000, "never exhausted");
        }
        assert_eq!(a.seal(b"p", &mut out), Err(SleeveError::Exhausted));
        assert_eq!(sealed, MAX_EPOCHS);
    }

    proptest! {
        #[test]
        fn any_payload_round_trips(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..20)) {
            let (mut a, mut b) = pair(4);
            for p in &payloads {
                let d = seal(&mut a, p);
                prop_assert_eq!(d.len(), p.len() + HEADER_LEN + TAG_LEN);
                prop_assert_eq!(&b.open(&d).unwrap(), p);
            }
        }

        #[test]
        fn garbage_never_opens_nor_panics(d in proptest::collection::vec(any::<u8>(), 0..120)) {
            let (_, mut b) = pair(4);
            prop_assert!(b.open(&d).is_err());
        }

        #[test]
        fn any_single_bit_flip_is_caught(p in proptest::collection::vec(any::<u8>(), 1..64), bit in 0usize..1000) {
            let (mut a, mut b) = pair(1 << 40);
            let mut d = seal(&mut a, &p);
            let i = bit % (d.len() * 8);
            d[i / 8] ^= 1 << (i % 8);
            prop_assert!(b.open(&d).is_err());
        }
    }
}
