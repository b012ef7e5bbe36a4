//! Network policy: Kubernetes NetworkPolicy semantics ([`spec`], [`validate`], [`model`]),
//! stored in the mesh, compiled per router ([`compile`], [`ruleset`]) and enforced with one
//! nftables table `inet weft`.

pub mod compile;
pub mod drops;
pub mod error;
pub mod hook;
pub mod labels;
pub mod model;
pub mod nflog;
pub mod nft;
pub mod ruleset;
pub mod service;
pub mod spec;
pub mod store;
pub mod validate;

pub use error::PolicyError;
pub use service::PolicyService;
