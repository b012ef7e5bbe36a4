//! The control API: request/response types shared by the daemon and its clients (`weft` CLI, CNI
//! plugin), the server on the unix socket (and the read-only status listener), and the client.
//!
//! One error type, [`ApiError`], is mapped to an HTTP status in exactly one place (`error.rs`).

pub mod client;
pub mod cni;
pub mod dns;
pub mod error;
pub mod flows;
pub mod ipam;
pub mod policy;
pub mod server;
pub mod types;

pub use client::{Client, ClientError};
pub use error::ApiError;
pub use types::*;
