//! The overlay: bridge `weft`, the kernel VXLAN device (UDP 6784) and its FDB, workload veths,
//! and the MTU. Decisions are pure functions ([`fdb`]: which flooding entries a topology calls
//! for; [`workload`]: what an attach may do and creates; [`config`]: the MTU rule); every kernel
//! call goes through one small module (`netlink`); [`service`] sequences them, undoing its own
//! steps on failure, and persists attachments ([`state`]) so a restarted router adopts them.

pub mod config;
pub mod error;
pub mod fdb;
mod netlink;
pub mod service;
pub mod state;
pub mod workload;

pub use config::OverlayConfig;
pub use error::OverlayError;
pub use service::{AttachSpec, Listing, Overlay};
pub use workload::{Attachment, NetnsRef};
