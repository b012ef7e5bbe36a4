//! The one error type of the policy concern.

/// Everything the policy concern can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A document is not YAML or JSON.
    #[error("document {doc}: not valid YAML or JSON: {reason}")]
    Syntax {
        /// 1-based position of the document in the input.
        doc: usize,
        /// The parser's explanation.
        reason: String,
    },
    /// A field of a document is wrong.
    #[error("document {doc} ({name}): {field}: {reason}")]
    Invalid {
        /// 1-based position of the document in the input.
        doc: usize,
        /// `NAMESPACE/NAME` of the policy, or `?` when it has none yet.
        name: String,
        /// Path of the field, e.g. `spec.ingress[0].from[1].ipBlock.cidr`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The input holds no document.
    #[error("no NetworkPolicy in the input")]
    Empty,
    /// A label or label change is malformed.
    #[error("{arg:?}: {reason}")]
    Label {
        /// The argument as given.
        arg: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A named port is malformed.
    #[error("port {arg:?}: {reason}")]
    Port {
        /// The argument as given.
        arg: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The named object is unknown.
    #[error("{0}")]
    NotFound(String),
    /// The change is refused because another source owns the object.
    #[error("{0}")]
    Refused(String),
    /// nftables refused or failed the ruleset.
    #[error("applying the nftables ruleset: {0}")]
    Firewall(String),
    /// The state could not be saved, so nothing changed.
    #[error("{0:#}")]
    Persist(anyhow::Error),
}
