//! Flow metrics: conntrack events with accounting become per-flow counters, written into the
//! mesh's metrics store every `--flow-interval` under each flow's tenant, with the router's
//! own health under `weft-system`; `weft tap` streams flow events of every router and
//! `weft top` ranks the busiest flows of the last minute.
//!
//! Layout: `ctnetlink` decodes the kernel's messages (sans-IO), `directory` names addresses
//! and decides which router counts a connection, `table` aggregates (sans-IO, clock passed
//! in), `export` turns counters into series, `tap` holds live events and the `flows` mesh
//! channel, `netlink` does the socket I/O and `service` runs it all.

mod args;
mod ctnetlink;
mod directory;
mod error;
mod export;
mod netlink;
mod service;
mod table;
mod tap;

pub use args::{FlowArgs, SYSTEM_TENANT, TapArgs, TenantFrom, TopArgs};
pub use error::FlowError;
pub use export::{BYTES, CONNECTIONS, DROPS, PACKETS};
pub use service::{FlowConfig, FlowService, FlowSources, TopRow, top_query};
pub use tap::{FLOWS_CHANNEL, TapEvent, TapFilter, TapLog};
