//! The one error type of flow accounting.

/// What can go wrong reading conntrack, writing flow metrics or serving `tap`/`top`.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// A ctnetlink message does not decode.
    #[error("undecodable conntrack message: {0}")]
    Decode(String),
    /// The netlink socket failed.
    #[error("conntrack netlink socket: {0}")]
    Netlink(#[source] std::io::Error),
    /// A kernel setting could not be made.
    #[error("setting {path}: {source}")]
    Sysctl {
        /// The file under /proc/sys.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A tap message from a peer does not decode.
    #[error("undecodable flow tap message: {0}")]
    Tap(String),
    /// A tenant name is not valid.
    #[error("invalid tenant {tenant:?}: {reason}")]
    Tenant {
        /// The name.
        tenant: String,
        /// Why it is refused.
        reason: String,
    },
    /// The metrics store refused or failed a query.
    #[error("flow query: {0}")]
    Query(String),
}
