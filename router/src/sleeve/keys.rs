//! Per-peer, per-direction sleeve keys. Both ends of a mesh connection hold the same 64 bytes
//! of sleeve key material from the handshake; each direction's key is HKDF-expanded from it
//! with the sender's and receiver's peer names, so the two directions never share a key (nor a
//! nonce space). Each rekey moves a direction to the next key of a one-way chain.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::mesh::PeerName;

/// A ChaCha20-Poly1305 key.
pub type Key = Zeroizing<[u8; 32]>;

/// The first key of the direction `from` → `to`.
pub fn direction_key(material: &[u8; 64], from: PeerName, to: PeerName) -> Key {
    let hk = Hkdf::<Sha256>::new(Some(b"weft sleeve v1"), material);
    let mut info = b"weft sleeve direction ".to_vec();
    info.extend_from_slice(from.to_string().as_bytes());
    info.extend_from_slice(b" -> ");
    info.extend_from_slice(to.to_string().as_bytes());
    let mut key = Zeroizing::new([0; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
    if hk.expand(&info, &mut key[..]).is_err() {
        unreachable!("32-byte HKDF output is within limits");
    }
    key
}

/// The key after `key` in its direction's chain.
pub fn next_key(key: &Key) -> Key {
    let hk = Hkdf::<Sha256>::new(None, &key[..]);
    let mut next = Zeroizing::new([0; 32]);
    if hk.expand(b"weft sleeve rekey", &mut next[..]).is_err() {
        unreachable!("32-byte HKDF output is within limits");
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> PeerName {
        s.parse().unwrap()
    }

    #[test]
    fn directions_differ_and_both_ends_agree() {
        let m = [7u8; 64];
        let (a, b) = (name("00:00:00:00:00:01"), name("00:00:00:00:00:02"));
        assert_ne!(*direction_key(&m, a, b), *direction_key(&m, b, a));
        assert_eq!(*direction_key(&m, a, b), *direction_key(&m, a, b));
        assert_ne!(*direction_key(&m, a, b), *direction_key(&[8u8; 64], a, b));
        let k = direction_key(&m, a, b);
        assert_ne!(*next_key(&k), *k);
        assert_eq!(*next_key(&k), *next_key(&k));
    }
}
