//! weft metrics: a multi-tenant, Prometheus-compatible time-series store.
//!
//! The core is sans-IO: no sockets and no clock reads (every operation that needs the time takes
//! `now_ms`). File I/O lives behind small types: the write-ahead log in [`wal`], blocks in
//! [`block`]. The HTTP API is behind the `http` cargo feature.
//!
//! Map of the crate:
//! - data model: [`labels`]; Gorilla chunks: [`chunk`]; matchers and postings: [`index`];
//! - one tenant's memory: [`head`]; durability: [`wal`]; on-disk blocks: [`block`], planned by
//!   [`compact`]; tenants and limits: [`tenant`]; everything together: [`storage`];
//! - ingest: [`remote_write`]; queries: [`promql`]; API: `http` (feature);
//! - placement of series on peers (RF=3, consistent hashing): [`ring`].
//!
//! A daemon opens a [`storage::Storage`], serves `http::router` over it, and calls
//! [`storage::Storage::maintain`] periodically (say every minute) with the current time so that
//! the head is cut into blocks, blocks are compacted and old ones deleted:
//!
//! ```
//! use weft_metrics::labels::{Labels, Sample, Series};
//! use weft_metrics::promql::{self, EngineConfig, QueryValue};
//! use weft_metrics::storage::{Storage, StorageConfig, Store};
//! use weft_metrics::tenant::TenantId;
//!
//! let store = Storage::open(StorageConfig::default())?; // `dir: Some(..)` to persist
//! let tenant = TenantId::new("team-a")?;
//! let up = Labels::from_pairs([("__name__", "up"), ("job", "api")])?;
//! store.write(&tenant, vec![Series { labels: up, samples: vec![Sample { t: 1_000, v: 1.0 }] }], 1_000)?;
//! let result = promql::instant_query(&store, &tenant, "sum(up)", 2_000, &EngineConfig::default())?;
//! assert!(matches!(result, QueryValue::Vector(v) if v[0].v == 1.0));
//! store.maintain(2_000)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

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
pub mod ring;
pub mod storage;
pub mod tenant;
pub mod wal;
