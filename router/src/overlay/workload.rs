//! Pure rules of attaching workloads: where a namespace is, what may be attached, what an
//! attachment creates and how it is recorded. No kernel calls here.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use super::config::HOST_VETH_PREFIX;
use super::error::{OverlayError, Result};

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;
/// Longest workload name accepted.
pub const MAX_NAME: usize = 253;

/// How a caller names a workload's network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsRef {
    /// A path, or an `ip netns` name (which maps to `/run/netns/NAME`).
    Path(String),
    /// A process whose namespace it is.
    Pid(u32),
}

impl NetnsRef {
    /// From the request's `--netns` and `--pid`: exactly one must be given.
    pub fn from_parts(netns: Option<String>, pid: Option<u32>) -> Result<NetnsRef> {
        match (netns, pid) {
            (Some(p), None) if !p.is_empty() => Ok(NetnsRef::Path(p)),
            (None, Some(pid)) if pid > 0 => Ok(NetnsRef::Pid(pid)),
            _ => Err(OverlayError::NamespaceChoice),
        }
    }

    /// The file to open: `/proc/PID/ns/net`, the path itself, or `/run/netns/NAME` for a bare name.
    pub fn path(&self) -> PathBuf {
        match self {
            NetnsRef::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
            NetnsRef::Path(p) if p.contains('/') => PathBuf::from(p),
            NetnsRef::Path(name) => PathBuf::from("/run/netns").join(name),
        }
    }

    /// A default workload name: the namespace's name, or `pid-PID`.
    pub fn default_name(&self) -> String {
        match self {
            NetnsRef::Pid(pid) => format!("pid-{pid}"),
            NetnsRef::Path(p) => p
                .rsplit('/')
                .find(|s| !s.is_empty())
                .unwrap_or(p)
                .to_string(),
        }
    }
}

/// Identity of a network namespace: device and inode of its nsfs file, the same however it
/// was reached (path or pid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NetnsId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

/// One workload interface weft made, as persisted in the data dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The workload's name.
    pub name: String,
    /// Path of its namespace as given (resolved).
    pub netns: PathBuf,
    /// Identity of the namespace.
    pub netns_id: NetnsId,
    /// Interface inside the namespace.
    pub ifname: String,
    /// Host end of the veth, on the bridge.
    pub host_ifname: String,
    /// MAC of the interface inside.
    pub mac: String,
    /// Its address.
    pub address: Ipv4Network,
    /// The host end reflects frames back out of the port they came in (CNI `hairpinMode`), so
    /// the workload reaches itself through a translated address (a port mapping, a Service).
    #[serde(default)]
    pub hairpin: bool,
    /// The inner end was handed to a runtime (dockerd) that moves it into the container:
    /// `netns` is a staging namespace that is gone after the move, so the attachment lives as
    /// long as its host end does, and the runtime names the workload itself.
    #[serde(default)]
    pub handed_off: bool,
}

/// A validated request to attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachPlan {
    /// The workload's name.
    pub name: String,
    /// Interface inside the namespace.
    pub ifname: String,
    /// Host end of the veth.
    pub host_ifname: String,
    /// The address with its prefix.
    pub address: Ipv4Network,
    /// Routes to add inside the namespace via the interface, beyond the address's own subnet:
    /// the overlay range when it differs from that subnet, and multicast.
    pub routes: Vec<Ipv4Network>,
}

/// The multicast route every workload gets, so groups work across hosts.
pub fn multicast_route() -> Ipv4Network {
    Ipv4Network::new(Ipv4Addr::new(224, 0, 0, 0), 4).unwrap_or_else(|_| unreachable!("4 <= 32"))
}

/// Parses `ADDR/PREFIX` and checks it is a host address inside `range` with a prefix no wider
/// than the range's.
pub fn parse_address(input: &str, range: Ipv4Network) -> Result<Ipv4Network> {
    let invalid = |reason: String| OverlayError::InvalidAddress {
        input: input.to_string(),
        reason,
    };
    let (addr, prefix) = input
        .trim()
        .split_once('/')
        .ok_or_else(|| invalid("the /PREFIX is missing".into()))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| invalid(format!("{addr:?} is not an IPv4 address")))?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| invalid(format!("{prefix:?} is not a prefix length")))?;
    let net = Ipv4Network::new(addr, prefix).map_err(|e| invalid(e.to_string()))?;
    if !range.contains(addr) {
        return Err(OverlayError::OutsideRange { addr, range });
    }
    if prefix < range.prefix() {
        return Err(OverlayError::PrefixTooWide {
            addr,
            prefix,
            range,
        });
    }
    if prefix < 31 && (addr == net.network() || addr == net.broadcast()) {
        return Err(OverlayError::NotAHostAddress {
            addr,
            net: Ipv4Network::new(net.network(), prefix).unwrap_or(net),
        });
    }
    Ok(net)
}

/// Checks an interface name for the kernel's rules.
pub fn check_ifname(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(OverlayError::InvalidIfname {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_IFNAME {
        return bad("it is longer than 15 characters");
    }
    if name == "." || name == ".." {
        return bad("it is . or ..");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return bad("it contains '/', ':', a space or a control character");
    }
    Ok(())
}

/// Checks a workload name.
pub fn check_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(OverlayError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME {
        return bad("it is longer than 253 characters");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it contains a space or a control character");
    }
    Ok(())
}

/// Who holds `addr` (its IP, any prefix) among the attachments and the host's exposed
/// addresses, if anyone.
pub fn holder_of(
    addr: Ipv4Addr,
    attachments: &[Attachment],
    exposed: &[Ipv4Network],
) -> Option<String> {
    if let Some(a) = attachments.iter().find(|a| a.address.ip() == addr) {
        return Some(format!("workload {} ({})", a.name, a.ifname));
    }
    exposed
        .iter()
        .any(|e| e.ip() == addr)
        .then(|| "the host (weft expose)".to_string())
}

/// The first `vethwe<N>` not used by an attachment nor in `taken` (names found on the host).
pub fn host_ifname(attachments: &[Attachment], taken: impl Fn(&str) -> bool) -> String {
    (0u64..)
        .map(|n| format!("{HOST_VETH_PREFIX}{n}"))
        .find(|cand| !attachments.iter().any(|a| &a.host_ifname == cand) && !taken(cand))
        .unwrap_or_else(|| unreachable!("the numbers do not run out"))
}

/// Validates an attach request against the overlay range and the current attachments, and
/// plans it. The kernel-side checks (namespace exists, ifname free inside it) are the shell's.
pub fn plan_attach(
    address: &str,
    name: &str,
    ifname: &str,
    host_ifname: String,
    range: Ipv4Network,
    attachments: &[Attachment],
    exposed: &[Ipv4Network],
) -> Result<AttachPlan> {
    check_name(name)?;
    check_ifname(ifname)?;
    let address = parse_address(address, range)?;
    if let Some(by) = holder_of(address.ip(), attachments, exposed) {
        return Err(OverlayError::AddressInUse {
            addr: address.ip(),
            by,
        });
    }
    let own_subnet = Ipv4Network::new(address.network(), address.prefix()).unwrap_or(address);
    let mut routes = Vec::new();
    if own_subnet != range {
        routes.push(range);
    }
    routes.push(multicast_route());
    Ok(AttachPlan {
        name: name.to_string(),
        ifname: ifname.to_string(),
        host_ifname,
        address,
        routes,
    })
}

/// Validates an address for `weft expose`.
pub fn plan_expose(
    address: &str,
    range: Ipv4Network,
    attachments: &[Attachment],
    exposed: &[Ipv4Network],
) -> Result<Ipv4Network> {
    let address = parse_address(address, range)?;
    if let Some(by) = holder_of(address.ip(), attachments, exposed) {
        return Err(OverlayError::AddressInUse {
            addr: address.ip(),
            by,
        });
    }
    Ok(address)
}

/// A locally administered unicast MAC from 6 random bytes.
pub fn local_mac(mut bytes: [u8; 6]) -> [u8; 6] {
    bytes[0] = (bytes[0] | 0x02) & 0xfe;
    bytes
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> Ipv4Network {
        "10.32.0.0/12".parse().unwrap()
    }

    fn attached(name: &str, addr: &str, host: &str) -> Attachment {
        Attachment {
            name: name.into(),
            netns: PathBuf::from(format!("/run/netns/{name}")),
            netns_id: NetnsId { dev: 4, ino: 1 },
            ifname: "ethwe".into(),
            host_ifname: host.into(),
            mac: "02:00:00:00:00:01".into(),
            address: addr.parse().unwrap(),
            hairpin: false,
            handed_off: false,
        }
    }

    #[test]
    fn netns_refs() {
        assert_eq!(
            NetnsRef::from_parts(Some("w1".into()), None)
                .unwrap()
                .path(),
            PathBuf::from("/run/netns/w1")
        );
        assert_eq!(
            NetnsRef::from_parts(Some("/proc/1/ns/net".into()), None)
                .unwrap()
                .path(),
            PathBuf::from("/proc/1/ns/net")
        );
        assert_eq!(
            NetnsRef::from_parts(None, Some(42)).unwrap().path(),
            PathBuf::from("/proc/42/ns/net")
        );
        assert_eq!(NetnsRef::Pid(42).default_name(), "pid-42");
        assert_eq!(
            NetnsRef::Path("/run/netns/web/".into()).default_name(),
            "web"
        );
        for (n, p) in [
            (None, None),
            (Some("x".into()), Some(1)),
            (Some(String::new()), None),
            (None, Some(0)),
        ] {
            assert!(matches!(
                NetnsRef::from_parts(n, p),
                Err(OverlayError::NamespaceChoice)
            ));
        }
    }

    #[test]
    fn addresses_inside_the_range_only() {
        assert_eq!(
            parse_address("10.32.1.5/12", range()).unwrap(),
            "10.32.1.5/12".parse::<Ipv4Network>().unwrap()
        );
        assert!(parse_address("10.32.1.5/24", range()).is_ok());
        assert!(matches!(
            parse_address("10.48.0.1/12", range()),
            Err(OverlayError::OutsideRange { .. })
        ));
        assert!(matches!(
            parse_address("10.32.0.1/8", range()),
            Err(OverlayError::PrefixTooWide { prefix: 8, .. })
        ));
        assert!(matches!(
            parse_address("10.32.0.0/12", range()),
            Err(OverlayError::NotAHostAddress { .. })
        ));
        assert!(matches!(
            parse_address("10.47.255.255/12", range()),
            Err(OverlayError::NotAHostAddress { .. })
        ));
        for bad in [
            "10.32.0.1",
            "10.32.0.x/12",
            "10.32.0.1/33",
            "10.32.0.1/a",
            "",
        ] {
            let e = parse_address(bad, range()).unwrap_err();
            assert!(
                matches!(e, OverlayError::InvalidAddress { .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains("ADDR/PREFIX"), "{e}");
        }
    }

    #[test]
    fn ifnames_follow_kernel_rules() {
        check_ifname("ethwe").unwrap();
        check_ifname("a23456789012345").unwrap();
        for bad in ["", "a234567890123456", "a/b", "a b", "a:b", ".", ".."] {
            assert!(check_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn plan_routes_range_and_multicast() {
        let p = plan_attach(
            "10.32.0.5/12",
            "w",
            "ethwe",
            "vethwe0".into(),
            range(),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(p.routes, vec![multicast_route()]);
        let p = plan_attach(
            "10.32.0.5/24",
            "w",
            "ethwe",
            "vethwe0".into(),
            range(),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(p.routes, vec![range(), multicast_route()]);
        assert_eq!(p.address.prefix(), 24);
    }

    #[test]
    fn plan_refuses_addresses_in_use() {
        let a = vec![attached("web", "10.32.0.5/12", "vethwe0")];
        let e = plan_attach(
            "10.32.0.5/24",
            "x",
            "ethwe",
            "vethwe1".into(),
            range(),
            &a,
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("in use by workload web"), "{e}");
        let exposed = vec!["10.32.0.9/12".parse().unwrap()];
        let e = plan_attach(
            "10.32.0.9/12",
            "x",
            "ethwe",
            "vethwe1".into(),
            range(),
            &a,
            &exposed,
        )
        .unwrap_err();
        assert!(e.to_string().contains("the host"), "{e}");
        let e = plan_expose("10.32.0.5/12", range(), &a, &exposed).unwrap_err();
        assert!(matches!(e, OverlayError::AddressInUse { .. }));
        assert!(plan_expose("10.32.0.6/12", range(), &a, &exposed).is_ok());
    }

    #[test]
    fn plan_checks_names() {
        assert!(matches!(
            plan_attach(
                "10.32.0.5/12",
                "w",
                "toolonginterface",
                "v".into(),
                range(),
                &[],
                &[]
            ),
            Err(OverlayError::InvalidIfname { .. })
        ));
        assert!(matches!(
            plan_attach(
                "10.32.0.5/12",
                "a b",
                "ethwe",
                "v".into(),
                range(),
                &[],
                &[]
            ),
            Err(OverlayError::InvalidName { .. })
        ));
    }

    #[test]
    fn host_ifnames_skip_used_ones() {
        let a = vec![
            attached("a", "10.32.0.5/12", "vethwe0"),
            attached("b", "10.32.0.6/12", "vethwe2"),
        ];
        assert_eq!(host_ifname(&a, |_| false), "vethwe1");
        assert_eq!(host_ifname(&a, |n| n == "vethwe1"), "vethwe3");
        assert!(host_ifname(&a, |_| false).len() <= MAX_IFNAME);
    }

    #[test]
    fn macs_are_local_unicast() {
        let m = local_mac([0xff; 6]);
        assert_eq!(m[0] & 0x01, 0, "unicast");
        assert_eq!(m[0] & 0x02, 0x02, "locally administered");
        assert_eq!(format_mac(&[2, 0xab, 0, 1, 2, 3]), "02:ab:00:01:02:03");
    }
}
