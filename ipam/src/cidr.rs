//! IPv4 networks (`10.32.0.0/12`) and address arithmetic.
//!
//! Inside the crate addresses are `u64` so that the exclusive end of `0.0.0.0/0` (2^32) fits.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnetwork::Ipv4Network;

use crate::error::IpamError;

/// An IPv4 network: an address with no host bits set and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    network: u32,
    prefix: u8,
}

impl Cidr {
    /// The network `addr/prefix`; refused if `prefix > 32` or `addr` has host bits set.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, IpamError> {
        let input = format!("{addr}/{prefix}");
        if prefix > 32 {
            return Err(IpamError::InvalidCidr { input });
        }
        let raw = u32::from(addr);
        let network = raw & mask(prefix);
        let cidr = Cidr { network, prefix };
        if network != raw {
            return Err(IpamError::NotANetwork {
                input,
                suggestion: cidr,
            });
        }
        Ok(cidr)
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// How many addresses the network holds.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// Whether `addr` lies in this network.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        self.contains_raw(u64::from(u32::from(addr)))
    }

    /// Whether `other` lies entirely in this network.
    pub fn contains_cidr(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains_raw(other.start())
    }

    pub(crate) fn start(&self) -> u64 {
        u64::from(self.network)
    }

    pub(crate) fn end(&self) -> u64 {
        self.start() + self.size()
    }

    pub(crate) fn contains_raw(&self, addr: u64) -> bool {
        self.start() <= addr && addr < self.end()
    }

    /// The addresses handed to workloads: all but the network and broadcast addresses,
    /// unless the network is a /31 or /32.
    pub(crate) fn usable(&self) -> (u64, u64) {
        if self.prefix <= 30 {
            (self.start() + 1, self.end() - 1)
        } else {
            (self.start(), self.end())
        }
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// Converts an in-range `u64` address back to an IPv4 address.
pub(crate) fn to_ip(addr: u64) -> Ipv4Addr {
    Ipv4Addr::from(u32::try_from(addr).unwrap_or(u32::MAX))
}

/// Converts an IPv4 address to the crate's `u64` form.
pub(crate) fn from_ip(addr: Ipv4Addr) -> u64 {
    u64::from(u32::from(addr))
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = IpamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || IpamError::InvalidCidr {
            input: s.to_string(),
        };
        if !s.contains('/') {
            return Err(invalid());
        }
        let net = Ipv4Network::from_str(s).map_err(|_| invalid())?;
        Cidr::new(net.ip(), net.prefix()).map_err(|e| match e {
            IpamError::NotANetwork { suggestion, .. } => IpamError::NotANetwork {
                input: s.to_string(),
                suggestion,
            },
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        let c: Cidr = "10.32.0.0/12".parse().expect("valid");
        assert_eq!(c.to_string(), "10.32.0.0/12");
        assert_eq!(c.size(), 1 << 20);
        assert!(c.contains(Ipv4Addr::new(10, 47, 255, 255)));
        assert!(!c.contains(Ipv4Addr::new(10, 48, 0, 0)));
        let all: Cidr = "0.0.0.0/0".parse().expect("valid");
        assert_eq!(all.end(), 1 << 32);
        assert!(all.contains_cidr(&c));
        assert!(!c.contains_cidr(&all));
    }

    #[test]
    fn bad_input_has_exact_errors() {
        let err = |s: &str| s.parse::<Cidr>().map_err(|e| e.to_string());
        assert_eq!(
            err("10.32.0.0/33"),
            Err(
                "10.32.0.0/33 is not a valid CIDR: expected an IPv4 network such as 10.32.0.0/12"
                    .into()
            )
        );
        assert_eq!(
            err("10.32.0.0"),
            Err(
                "10.32.0.0 is not a valid CIDR: expected an IPv4 network such as 10.32.0.0/12"
                    .into()
            )
        );
        assert_eq!(
            err("10.32.0.1/12"),
            Err("10.32.0.1/12 is not a network address: did you mean 10.32.0.0/12?".into())
        );
        assert!(err("fe80::/64").is_err());
    }

    #[test]
    fn usable_skips_network_and_broadcast() {
        let c: Cidr = "10.0.0.0/30".parse().expect("valid");
        assert_eq!(c.usable(), (c.start() + 1, c.start() + 3));
        let c: Cidr = "10.0.0.0/31".parse().expect("valid");
        assert_eq!(c.usable(), (c.start(), c.start() + 2));
    }
}
