//! The one error type of the metrics store wiring and of `weft query`.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What can go wrong starting the metrics API or asking it a query.
#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    /// The store under the data dir could not be opened (WAL replay, blocks).
    #[error("opening the metrics store in {dir}: {source}")]
    Open {
        /// The store's directory.
        dir: PathBuf,
        /// What the store reported.
        source: weft_metrics::storage::StorageError,
    },
    /// The Prometheus API listener could not be bound.
    #[error(
        "binding the metrics API on {addr} (--metrics-addr; is another router running?): {source}"
    )]
    Bind {
        /// The address tried.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The export queues (`--metrics-remote-write`) could not be opened.
    #[error(transparent)]
    Export(#[from] super::export::ExportError),
    /// A background task of the store panicked or was cancelled.
    #[error("metrics store task failed: {0}")]
    Task(String),
    /// Nothing answers on the metrics API address.
    #[error(
        "no metrics API on {addr} ({reason}): is the router running? Point --metrics-addr or \
         WEFT_METRICS_ADDR at the address its `weft launch --metrics-addr` listens on"
    )]
    NotRunning {
        /// The address tried.
        addr: SocketAddr,
        /// Why the connection failed.
        reason: String,
    },
    /// The HTTP exchange with the API failed.
    #[error("talking to the metrics API on {addr}: {reason}")]
    Transport {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The API refused the query (its `errorType` and message, as Prometheus reports them).
    #[error("{error_type}: {message}")]
    Query {
        /// Prometheus `errorType`, e.g. `bad_data`.
        error_type: String,
        /// The API's explanation.
        message: String,
    },
    /// The API answered something that is not a Prometheus query response.
    #[error("invalid answer from the metrics API: {0}")]
    Answer(String),
}
