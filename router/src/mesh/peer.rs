//! Peer identity: the 48-bit [`PeerName`] (printed like a MAC address), the
//! per-incarnation UID and the [`PeerInfo`] a peer announces about itself.

use std::fmt;
use std::str::FromStr;

use rand_core::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Mask of the 48 bits a peer name may use.
const NAME_MASK: u64 = 0xffff_ffff_ffff;
/// The "locally administered" bit of the first octet of a MAC address.
const LOCAL_BIT: u64 = 0x02 << 40;
/// The "multicast" bit of the first octet of a MAC address.
const MULTICAST_BIT: u64 = 0x01 << 40;

/// Why a string or number is not a valid peer name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerNameError {
    /// The string does not have six `:`-separated groups.
    #[error("peer name {input:?} has {groups} groups; expected 6 hex bytes like aa:bb:cc:dd:ee:ff")]
    GroupCount {
        /// The rejected input.
        input: String,
        /// How many groups it had.
        groups: usize,
    },
    /// One group is not exactly two hex digits.
    #[error(
        "peer name {input:?}: group {group:?} is not two hex digits (expected like aa:bb:cc:dd:ee:ff)"
    )]
    BadGroup {
        /// The rejected input.
        input: String,
        /// The offending group.
        group: String,
    },
    /// A numeric name uses more than 48 bits.
    #[error("peer name {0:#x} does not fit in 48 bits")]
    TooWide(u64),
}

/// A peer's permanent name: 48 bits, shown as `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerName(pub u64);

impl PeerName {
    /// A random name with the locally-administered bit set and the multicast bit
    /// cleared, so it never collides with a vendor-assigned MAC.
    pub fn random(rng: &mut impl RngCore) -> PeerName {
        PeerName((rng.next_u64() & NAME_MASK | LOCAL_BIT) & !MULTICAST_BIT)
    }

    /// Checks that a number received from elsewhere (the wire) fits in 48 bits.
    pub fn from_u64(value: u64) -> Result<PeerName, PeerNameError> {
        if value & !NAME_MASK != 0 {
            return Err(PeerNameError::TooWide(value));
        }
        Ok(PeerName(value))
    }
}

impl fmt::Display for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0.to_be_bytes();
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[2], b[3], b[4], b[5], b[6], b[7]
        )
    }
}

impl FromStr for PeerName {
    type Err = PeerNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let groups: Vec<&str> = s.split(':').collect();
        if groups.len() != 6 {
            return Err(PeerNameError::GroupCount {
                input: s.to_owned(),
                groups: groups.len(),
            });
        }
        let mut value = 0u64;
        for group in groups {
            let valid = group.len() == 2 && group.bytes().all(|c| c.is_ascii_hexdigit());
            let byte = u8::from_str_radix(group, 16).ok().filter(|_| valid);
            let Some(byte) = byte else {
                return Err(PeerNameError::BadGroup {
                    input: s.to_owned(),
                    group: group.to_owned(),
                });
            };
            value = value << 8 | u64::from(byte);
        }
        Ok(PeerName(value))
    }
}

impl Serialize for PeerName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PeerName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a peer announces about itself in the handshake and in topology gossip.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Permanent name.
    pub name: PeerName,
    /// Human-friendly name (usually the hostname).
    pub nickname: String,
    /// Identifies this incarnation: larger after every restart (see [`new_uid`]).
    pub uid: u64,
    /// TCP port the peer accepts mesh connections on.
    pub listen_port: u16,
}

/// A UID for a new incarnation: `(now_ms << 20) | 20 random bits`.
///
/// A restart happens later, so it gets a larger UID; gossip prefers the larger
/// `(uid, version)` for a name, which makes the new incarnation replace the old.
pub fn new_uid(now_ms: u64, rng: &mut impl RngCore) -> u64 {
    (now_ms << 20) | u64::from(rng.next_u32() & 0xf_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    #[test]
    fn display_and_parse_round_trip() {
        let name = PeerName(0x0a_1b_2c_3d_4e_5f);
        assert_eq!(name.to_string(), "0a:1b:2c:3d:4e:5f");
        assert_eq!("0a:1b:2c:3d:4e:5f".parse::<PeerName>(), Ok(name));
        assert_eq!("0A:1B:2C:3D:4E:5F".parse::<PeerName>(), Ok(name));
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let err = "aa:bb:cc".parse::<PeerName>().unwrap_err();
        assert!(err.to_string().contains("3 groups"), "{err}");
        let err = "aa:bb:cc:dd:ee:zz".parse::<PeerName>().unwrap_err();
        assert!(err.to_string().contains("\"zz\""), "{err}");
        let err = "aa:bb:cc:dd:ee:+f".parse::<PeerName>().unwrap_err();
        assert!(matches!(err, PeerNameError::BadGroup { .. }));
        let err = "aa:bb:cc:dd:ee:fff".parse::<PeerName>().unwrap_err();
        assert!(matches!(err, PeerNameError::BadGroup { .. }));
    }

    #[test]
    fn random_names_are_local_unicast_48_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..1000 {
            let name = PeerName::random(&mut rng);
            assert_eq!(name.0 & !NAME_MASK, 0);
            assert_ne!(name.0 & LOCAL_BIT, 0);
            assert_eq!(name.0 & MULTICAST_BIT, 0);
            assert_eq!(name.to_string().parse::<PeerName>(), Ok(name));
        }
    }

    #[test]
    fn from_u64_rejects_wide_values() {
        assert!(PeerName::from_u64(1 << 48).is_err());
        assert_eq!(PeerName::from_u64(5), Ok(PeerName(5)));
    }

    #[test]
    fn serde_uses_the_string_form() {
        let name = PeerName(0x02_00_00_00_00_01);
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, "\"02:00:00:00:00:01\"");
        assert_eq!(serde_json::from_str::<PeerName>(&json).unwrap(), name);
        assert!(serde_json::from_str::<PeerName>("\"nope\"").is_err());
    }

    #[test]
    fn later_uid_is_larger() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let first = new_uid(1_000, &mut rng);
        let second = new_uid(1_001, &mut rng);
        assert!(second > first);
        assert_eq!(first >> 20, 1_000);
    }
}
