//! Network-namespace test harness for weft.
//!
//! A [`Net`] builds, entirely inside network namespaces it creates (nothing in the root
//! namespace), an underlay namespace holding bridge `br0` and N host namespaces whose `eth0` sits
//! on that bridge with an address in `198.18.0.0/24`. Hosts run real `weft` routers
//! ([`Host::spawn_weft`]) with their own data dir, control socket and log under a scratch
//! directory. Links between hosts are cut and restored with nftables in the underlay
//! ([`Net::cut`], [`Net::restore`], [`Net::block_udp_port`]). [`Net::wait_until`] polls a condition
//! and on timeout panics with the routers' log tails. Dropping the `Net`, also during a panic,
//! kills every process it started and deletes every namespace it made.
//!
//! Namespace names are `wft<pid>x<n>-…`, unique per process and per net, so tests run in parallel;
//! namespaces left behind by a killed test process are removed by the next [`Net::new`].
//!
//! The tests need root and `ip`, `nft` and `ping`; [`Net::new`] fails with a clear message otherwise.

mod cmd;
mod error;
mod host;
mod http;
mod image;
mod links;
mod names;
mod net;
mod prereq;
mod prometheus;
mod report;
mod router;
mod traffic;
mod wait;

pub use error::{HarnessError, Result};
pub use host::{Host, Workload};
pub use http::{Answer, http, url_encode};
pub use image::busybox_image;
pub use names::list_netns;
pub use net::Net;
pub use prereq::weft_binary;
pub use prometheus::Prometheus;
pub use report::{Connection, Peer, Report};
pub use router::{Router, full_mesh, output_text};
pub use traffic::{
    arp_resolves_to, every_pair_pings, multicast_reaches, pings, tcp_transfer_arrives_intact,
};
pub use wait::poll_until;
