//! Peer names: 48-bit, MAC-like identifiers shown as `aa:bb:cc:dd:ee:ff`.

use std::fmt;
use std::str::FromStr;

use crate::error::IpamError;

/// The name of a mesh peer (48 significant bits, like a MAC address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0.to_be_bytes();
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[2], b[3], b[4], b[5], b[6], b[7]
        )
    }
}

impl FromStr for PeerId {
    type Err = IpamError;

    /// Parses `aa:bb:cc:dd:ee:ff` or up to 12 hex digits without separators.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IpamError::InvalidPeerName {
            input: s.to_string(),
        };
        let digits: String = if s.contains(':') {
            let parts: Vec<&str> = s.split(':').collect();
            if parts.len() != 6 || parts.iter().any(|p| p.is_empty() || p.len() > 2) {
                return Err(bad());
            }
            parts.iter().map(|p| format!("{p:0>2}")).collect()
        } else {
            s.to_string()
        };
        if digits.is_empty() || digits.len() > 12 || !digits.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Err(bad());
        }
        u64::from_str_radix(&digits, 16)
            .map(PeerId)
            .map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let p = PeerId(0x0a0b_0c0d_0e0f);
        assert_eq!(p.to_string(), "0a:0b:0c:0d:0e:0f");
        assert_eq!("0a:0b:0c:0d:0e:0f".parse::<PeerId>(), Ok(p));
        assert_eq!("a:b:c:d:e:f".parse::<PeerId>(), Ok(p));
        assert_eq!("0a0b0c0d0e0f".parse::<PeerId>(), Ok(p));
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "zz:zz:zz:zz:zz:zz",
            "aa:bb",
            "1234567890abc",
            "aa::bb:cc:dd:ee",
            "g",
        ] {
            assert_eq!(
                bad.parse::<PeerId>(),
                Err(IpamError::InvalidPeerName {
                    input: bad.to_string()
                }),
                "{bad}"
            );
        }
        assert_eq!(
            "zz:zz:zz:zz:zz:zz".parse::<PeerId>().map_err(|e| e.to_string()),
            Err("'zz:zz:zz:zz:zz:zz' is not a peer name: expected 6 hex bytes such as aa:bb:cc:dd:ee:ff or up to 12 hex digits".to_string())
        );
    }
}
