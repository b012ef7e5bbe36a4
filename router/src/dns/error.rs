//! Errors of the DNS concern.

use std::path::PathBuf;

/// A name that cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing was given.
    #[error("the name is empty")]
    Empty,
    /// Longer than 253 bytes.
    #[error("the name {name:?} is {len} bytes long; DNS names are at most 253 bytes")]
    TooLong {
        /// Its length without the trailing dot.
        len: usize,
        /// The name.
        name: String,
    },
    /// A label breaks the rules.
    #[error("the label {label:?} of {name:?} is invalid: {reason}")]
    BadLabel {
        /// The label.
        label: String,
        /// The name.
        name: String,
        /// Which rule.
        reason: &'static str,
    },
    /// The name lies outside the domain weft answers for.
    #[error("{name} is not in the weft domain {domain}")]
    OutsideDomain {
        /// The name.
        name: String,
        /// The domain.
        domain: String,
    },
}

/// Everything the DNS concern can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A name was refused.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The state file cannot be used.
    #[error(
        "the DNS state file {path} cannot be used: {reason}. Move it away to start without the \
         stored records (peers will send theirs again)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Gossip or state bytes that do not decode.
    #[error("undecodable DNS records: {0}")]
    Decode(String),
    /// The state could not be saved, so nothing changed for the caller.
    #[error("{0:#}")]
    Persist(anyhow::Error),
    /// The server could not listen.
    #[error("DNS cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The resolver configuration could not be read.
    #[error("reading the upstream resolver configuration {path}: {source}")]
    ResolvConf {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No upstream server answered.
    #[error("no upstream DNS server answered: {0}")]
    Upstream(String),
}
