//! The overlay's one error type.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnetwork::Ipv4Network;

/// Everything an overlay operation can fail with. Validation errors come before any kernel
/// object is touched; [`OverlayError::Netlink`] and [`OverlayError::Io`] come from the kernel.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// The address is not `A.B.C.D/PREFIX`.
    #[error("invalid address {input:?}: {reason}; write it as ADDR/PREFIX, e.g. 10.32.0.5/12")]
    InvalidAddress {
        /// What was given.
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// The address is outside the overlay's range.
    #[error(
        "address {addr} is outside the overlay range {range}; pick one inside it (see --ipalloc-range)"
    )]
    OutsideRange {
        /// The address.
        addr: Ipv4Addr,
        /// The range.
        range: Ipv4Network,
    },
    /// The address's prefix covers more than the range.
    #[error("prefix /{prefix} of {addr} is wider than the overlay range {range}; use /{} or longer", range.prefix())]
    PrefixTooWide {
        /// The address.
        addr: Ipv4Addr,
        /// The prefix given.
        prefix: u8,
        /// The range.
        range: Ipv4Network,
    },
    /// The address is the network or broadcast address of its subnet.
    #[error("address {addr} is the network or broadcast address of {net}; pick a host address")]
    NotAHostAddress {
        /// The address.
        addr: Ipv4Addr,
        /// Its subnet.
        net: Ipv4Network,
    },
    /// Another workload (or the host) already has the address.
    #[error("address {addr} is already in use by {by}; detach it first or pick another")]
    AddressInUse {
        /// The address.
        addr: Ipv4Addr,
        /// Who holds it.
        by: String,
    },
    /// An interface name the kernel would refuse.
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidIfname {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A workload name that cannot be shown or stored.
    #[error("invalid workload name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// Neither or both of `--netns` and `--pid` were given.
    #[error("give exactly one of --netns PATH and --pid PID")]
    NamespaceChoice,
    /// The namespace file cannot be opened.
    #[error("network namespace {path} does not exist or cannot be opened ({reason})")]
    NamespaceMissing {
        /// The path tried.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The file is not a network namespace.
    #[error("{path} is not a network namespace")]
    NotANamespace {
        /// The path.
        path: PathBuf,
    },
    /// The interface name is taken inside the workload's namespace.
    #[error(
        "interface {ifname} already exists in network namespace {netns}; pick another with --ifname"
    )]
    IfnameExists {
        /// The name.
        ifname: String,
        /// The namespace.
        netns: String,
    },
    /// The workload already routes the range through something else.
    #[error(
        "a route to {route} already exists in network namespace {netns} through another interface; remove it first"
    )]
    RouteExists {
        /// The route.
        route: Ipv4Network,
        /// The namespace.
        netns: String,
    },
    /// The namespace (and interface) has no attachment to detach.
    #[error("nothing is attached to network namespace {netns}{}", ifname.as_deref().map(|i| format!(" as {i}")).unwrap_or_default())]
    NotAttached {
        /// The namespace.
        netns: String,
        /// The interface asked for.
        ifname: Option<String>,
    },
    /// `weft hide` of an address the host does not have.
    #[error("the host is not exposed with {addr}")]
    NotExposed {
        /// The address.
        addr: String,
    },
    /// The overlay MTU is below what the overlay supports.
    #[error(
        "overlay MTU {mtu} is too small: it must be at least {min} (set --mtu / WEFT_MTU higher, or fix the underlay MTU)"
    )]
    MtuTooSmall {
        /// The MTU.
        mtu: u32,
        /// The minimum.
        min: u32,
    },
    /// The overlay MTU is above what VXLAN supports.
    #[error("overlay MTU {mtu} is too large: it must be at most {max}")]
    MtuTooLarge {
        /// The MTU.
        mtu: u32,
        /// The maximum.
        max: u32,
    },
    /// An interface with the overlay's name exists but is of another kind.
    #[error("interface {name} exists but is a {found}, not a {expected}; remove or rename it")]
    WrongKind {
        /// The name.
        name: String,
        /// The kind weft needs.
        expected: &'static str,
        /// The kind found.
        found: String,
    },
    /// A netlink request failed.
    #[error("{action}: {source}")]
    Netlink {
        /// What was being done.
        action: String,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
    /// A system call failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The error.
        source: std::io::Error,
    },
    /// The persisted attachments cannot be read or written.
    #[error("overlay state: {0:#}")]
    State(anyhow::Error),
}

impl OverlayError {
    /// Wraps a netlink error with what was being done.
    pub(crate) fn netlink(action: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Self {
        let action = action.into();
        move |source| OverlayError::Netlink { action, source }
    }

    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let action = action.into();
        move |source| OverlayError::Io { action, source }
    }

    /// Whether the error is the caller's (bad input or a conflict), not the kernel's or ours.
    pub fn is_invalid_input(&self) -> bool {
        !matches!(
            self,
            OverlayError::Netlink { .. } | OverlayError::Io { .. } | OverlayError::State(_)
        )
    }
}

/// Result of overlay operations.
pub type Result<T> = std::result::Result<T, OverlayError>;
