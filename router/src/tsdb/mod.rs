//! The router's metrics store: the `weft-metrics` TSDB under `<data-dir>/tsdb`, its
//! Prometheus-compatible API on TCP 6782 (`--metrics-addr`, all interfaces by default so that
//! Prometheus servers elsewhere can `remote_write` into it), periodic maintenance, and the
//! client side of `weft query`.
//!
//! The daemon calls [`Tsdb::open`] while it binds its other listeners (so a busy port fails
//! the start), [`Tsdb::serve`] once the router runs, and [`TsdbHandle::shutdown`] on stop.

mod args;
mod cluster;
mod error;
mod export;
mod query;
mod service;

pub use args::{
    DEFAULT_METRICS_ADDR, DEFAULT_QUERY_ADDR, ExportArgs, MetricsArgs, QueryArgs, RetentionMs,
    Tenancy,
};
pub use cluster::{ClusterConfig, ClusterStore};
pub use error::TsdbError;
pub use export::{EXPORT_DIR, ExportError, Exporter, ExportingStore, HeaderPair, RemoteWriteUrl};
pub use query::run as run_query;
pub use service::{MAINTENANCE_INTERVAL, TSDB_DIR, Tsdb, TsdbHandle};
