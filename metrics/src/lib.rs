//! weft metrics: a multi-tenant, Prometheus-compatible time-series store.
//!
//! The core is sans-IO: no sockets and no clock reads (every operation that needs the time takes
//! `now_ms`). File I/O for the write-ahead log lives behind small types in [`wal`]. The HTTP API
//! is behind the `http` cargo feature.

pub mod block;
pub mod chunk;
pub mod codec;
pub mod compact;
pub mod head;
#[cfg(feature = "http")]
pub mod http;
pub mod index;
pub mod labels;
pub mod promql;
pub mod remote_write;
pub mod storage;
pub mod tenant;
pub mod wal;
