//! The daemon side of CNI: the plugin binary (`cni-plugin/`) validates the runtime's request
//! and sends it here over the control socket; this module attaches through the shared pipeline
//! ([`crate::attach`]) with the container id as IPAM owner, and remembers each attachment in
//! `cni.json` so DEL, CHECK and GC work after a restart.

pub mod registry;
pub mod service;
pub mod setup;
pub mod types;

pub use registry::{CniRecord, Registry};
pub use service::CniService;
