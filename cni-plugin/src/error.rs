//! The plugin's one error type and its CNI error code (spec "Error" section).

use serde_json::{Value, json};

/// Everything a CNI call can fail with; each maps to one spec error code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CniError {
    /// Code 1: the requested `cniVersion` is not supported.
    #[error("incompatible CNI version {0:?}")]
    IncompatibleVersion(String),
    /// Code 3: the container (its namespace or attachment) does not exist.
    #[error("{0}")]
    UnknownContainer(String),
    /// Code 4: a required environment variable is missing or malformed.
    #[error("{0}")]
    InvalidEnv(String),
    /// Code 5: reading stdin or running a delegated plugin failed.
    #[error("{0}")]
    Io(String),
    /// Code 6: the network configuration is not valid JSON of the right shape.
    #[error("{0}")]
    Decode(String),
    /// Code 7: the network configuration is well-formed but invalid.
    #[error("{0}")]
    InvalidConfig(String),
    /// Code 11: the weft daemon is not reachable or not ready yet.
    #[error("{0}")]
    TryAgainLater(String),
    /// Code 50: STATUS, the daemon is not running so ADD would fail.
    #[error("{0}")]
    NotAvailable(String),
    /// A delegated IPAM plugin failed; its own code is passed on.
    #[error("{message}")]
    Delegate {
        /// The delegate's error code.
        code: u32,
        /// What it said.
        message: String,
    },
    /// Code 100 (plugin-specific): the interface or address is already in use.
    #[error("{0}")]
    Conflict(String),
    /// Code 101 (plugin-specific): the daemon failed to carry out the request.
    #[error("{0}")]
    Daemon(String),
}

impl CniError {
    /// The spec's error code.
    pub(crate) fn code(&self) -> u32 {
        match self {
            CniError::IncompatibleVersion(_) => 1,
            CniError::UnknownContainer(_) => 3,
            CniError::InvalidEnv(_) => 4,
            CniError::Io(_) => 5,
            CniError::Decode(_) => 6,
            CniError::InvalidConfig(_) => 7,
            CniError::TryAgainLater(_) => 11,
            CniError::NotAvailable(_) => 50,
            CniError::Delegate { code, .. } => *code,
            CniError::Conflict(_) => 100,
            CniError::Daemon(_) => 101,
        }
    }

    /// The error as the spec's JSON object, printed on stdout.
    pub(crate) fn to_json(&self, cni_version: &str) -> Value {
        let msg = match self {
            CniError::IncompatibleVersion(_) => "Incompatible CNI version",
            CniError::UnknownContainer(_) => "Container unknown or does not exist",
            CniError::InvalidEnv(_) => "Invalid necessary environment variables",
            CniError::Io(_) => "I/O failure",
            CniError::Decode(_) => "Failed to decode content",
            CniError::InvalidConfig(_) => "Invalid network config",
            CniError::TryAgainLater(_) => "Try again later",
            CniError::NotAvailable(_) => "The plugin is not available",
            CniError::Delegate { .. } => "IPAM plugin failed",
            CniError::Conflict(_) => "Already in use",
            CniError::Daemon(_) => "weft failed",
        };
        json!({
            "cniVersion": cni_version,
            "code": self.code(),
            "msg": msg,
            "details": self.to_string(),
        })
    }
}

/// Result of the plugin's steps.
pub(crate) type Result<T> = std::result::Result<T, CniError>;
