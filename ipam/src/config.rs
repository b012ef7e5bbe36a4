//! How a peer's allocator is set up: its name, the range, the default subnet, the init mode.

use std::fmt;
use std::str::FromStr;

use crate::cidr::Cidr;
use crate::error::IpamError;
use crate::peer::PeerId;
use crate::ring::list;

/// How the ring gets its first owners (`--ipalloc-init`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitMode {
    /// Agree over gossip on the set of peers that split the range. `Some(n)`: the mesh will
    /// have `n` peers and a quorum is `n/2+1`; `None`: the quorum is a majority of the peers
    /// seen so far (including this one).
    Consensus(Option<usize>),
    /// Split the range between exactly these peers, without any exchange. Every peer must be
    /// given the same list.
    Seed(Vec<PeerId>),
    /// Never vote and own nothing at first; ask for space once the others made the ring.
    Observer,
}

impl FromStr for InitMode {
    type Err = IpamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| IpamError::InvalidInitMode {
            input: s.to_string(),
            reason,
        };
        let (mode, arg) = match s.split_once('=') {
            Some((m, a)) => (m, Some(a)),
            None => (s, None),
        };
        match (mode, arg) {
            ("consensus", None) => Ok(InitMode::Consensus(None)),
            ("consensus", Some(n)) => match n.parse::<usize>() {
                Ok(n) if n > 0 => Ok(InitMode::Consensus(Some(n))),
                _ => Err(bad(format!("'{n}' is not a positive number of peers"))),
            },
            ("seed", Some(list)) => {
                let mut peers = Vec::new();
                for name in list.split(',') {
                    let peer: PeerId = name.parse().map_err(|e: IpamError| bad(e.to_string()))?;
                    if peers.contains(&peer) {
                        return Err(bad(format!("seed peer {peer} is listed twice")));
                    }
                    peers.push(peer);
                }
                Ok(InitMode::Seed(peers))
            }
            ("seed", None) => Err(bad("seed needs a list of peers".into())),
            ("observer", None) => Ok(InitMode::Observer),
            ("observer", Some(_)) => Err(bad("observer takes no argument".into())),
            (other, _) => Err(bad(format!("unknown mode '{other}'"))),
        }
    }
}

impl fmt::Display for InitMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitMode::Consensus(None) => write!(f, "consensus"),
            InitMode::Consensus(Some(n)) => write!(f, "consensus={n}"),
            InitMode::Seed(peers) => write!(f, "seed={}", list(peers).replace(", ", ",")),
            InitMode::Observer => write!(f, "observer"),
        }
    }
}

/// Everything an [`crate::Allocator`] is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This peer's name.
    pub peer: PeerId,
    /// The whole allocation range (`--ipalloc-range`), shared by every peer.
    pub range: Cidr,
    /// Where `allocate` takes addresses when no subnet is named (`--ipalloc-default-subnet`).
    pub default_subnet: Cidr,
    /// How the ring is first split (`--ipalloc-init`).
    pub init: InitMode,
}

impl Config {
    /// A configuration whose default subnet is the whole range.
    pub fn new(peer: PeerId, range: Cidr, init: InitMode) -> Self {
        Config {
            peer,
            range,
            default_subnet: range,
            init,
        }
    }

    /// Sets the default subnet; it must lie inside the range.
    pub fn with_default_subnet(mut self, subnet: Cidr) -> Result<Self, IpamError> {
        if !self.range.contains_cidr(&subnet) {
            return Err(IpamError::SubnetOutsideRange {
                subnet,
                range: self.range,
            });
        }
        self.default_subnet = subnet;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_init_modes() {
        assert_eq!("consensus".parse(), Ok(InitMode::Consensus(None)));
        assert_eq!("consensus=3".parse(), Ok(InitMode::Consensus(Some(3))));
        assert_eq!("observer".parse(), Ok(InitMode::Observer));
        assert_eq!(
            "seed=aa:bb:cc:dd:ee:01,aa:bb:cc:dd:ee:02".parse(),
            Ok(InitMode::Seed(vec![
                PeerId(0xaabb_ccdd_ee01),
                PeerId(0xaabb_ccdd_ee02)
            ]))
        );
        let m: InitMode = "seed=aa:bb:cc:dd:ee:01,aa:bb:cc:dd:ee:02"
            .parse()
            .expect("valid");
        assert_eq!(m.to_string(), "seed=aa:bb:cc:dd:ee:01,aa:bb:cc:dd:ee:02");
    }

    #[test]
    fn bad_init_modes_have_exact_errors() {
        let err = |s: &str| s.parse::<InitMode>().map_err(|e| e.to_string());
        assert_eq!(
            err("seed=aa:bb:cc:dd:ee:01,bogus"),
            Err("'seed=aa:bb:cc:dd:ee:01,bogus' is not an IPAM init mode: 'bogus' is not a peer name: expected 6 hex bytes such as aa:bb:cc:dd:ee:ff or up to 12 hex digits; expected consensus, consensus=N, seed=PEER,... or observer".into())
        );
        assert_eq!(
            err("consensus=0"),
            Err("'consensus=0' is not an IPAM init mode: '0' is not a positive number of peers; expected consensus, consensus=N, seed=PEER,... or observer".into())
        );
        assert_eq!(
            err("paxos"),
            Err("'paxos' is not an IPAM init mode: unknown mode 'paxos'; expected consensus, consensus=N, seed=PEER,... or observer".into())
        );
        assert!(err("seed=01,01").is_err());
        assert!(err("seed").is_err());
    }

    #[test]
    fn default_subnet_must_be_inside_range() {
        let cfg = Config::new(
            PeerId(1),
            "10.32.0.0/12".parse().expect("cidr"),
            InitMode::Observer,
        );
        assert_eq!(
            cfg.with_default_subnet("10.64.0.0/16".parse().expect("cidr"))
                .map_err(|e| e.to_string()),
            Err("subnet 10.64.0.0/16 is not inside the allocation range 10.32.0.0/12".into())
        );
    }
}
