//! Docker integration: the libnetwork remote network driver and remote IPAM driver protocols,
//! served by the daemon on `<plugin-dir>/<name>.sock` when launched with `--docker-plugin`.
//!
//! `docker network create -d weft --ipam-driver weft NET` then gives containers weft addresses:
//! the IPAM driver allocates from weft's ring, and `Join` attaches the container's sandbox
//! through the shared attach pipeline ([`crate::attach`]), the same path as `weft attach` and
//! CNI (veth on bridge `weft`, address, policy), made in a staging namespace (see
//! [`staging`]) and handed to dockerd as `InterfaceName` to move into the container; `Join`
//! also returns the gateway, which the host holds on the bridge. The overlay keeps such a
//! handed-off attachment for as long as its host end exists, across router restarts.
//!
//! dockerd never tells a driver a container's name, so [`watch`] follows the Docker Engine API
//! ([`engine`]) and hands the names and labels of the containers on weft networks to the
//! driver, which registers them in DNS and policy and names the attachment (`weft ps`). The driver's bookkeeping survives a restart
//! in `docker.json` ([`store`]).

pub mod backend;
pub mod driver;
pub mod engine;
pub mod error;
pub mod protocol;
pub mod server;
pub mod staging;
pub mod store;
pub mod watch;

pub use backend::{Backend, JoinSpec, Prepared, WeftBackend, dns_owner};
pub use driver::Driver;
pub use engine::Engine;
pub use error::DockerError;
pub use server::{DockerConfig, DockerPlugin};
pub use store::StateStore;

#[cfg(test)]
mod tests;
