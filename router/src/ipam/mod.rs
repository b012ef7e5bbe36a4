//! The IPAM service: the daemon's thin shell around [`weft_ipam::Allocator`].
//!
//! It carries the allocator's messages over the mesh's `ipam` gossip channel, feeds it the
//! topology (which peers are reachable) and the clock, and keeps its state in the data dir.
//! Every call that may change the allocator goes through [`IpamService::with`], which writes the
//! state to disk (atomically, fsynced) *before* any message it produced leaves or any answer is
//! given, as the allocator's contract requires: a restart never forgets space it gave away or an
//! address it handed out.

pub mod service;

pub use service::{
    IPAM_CHANNEL, IPAM_STATE_FILE, IpamService, ResetOutcome, ServiceError, load_allocator,
};
