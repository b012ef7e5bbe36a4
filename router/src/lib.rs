//! weft router: the per-host daemon (`weft launch`) and the `weft` command line.
//!
//! One module per concern, each the only owner of its kernel objects and gossip channel
//! (see `DESIGN.md`): [`mesh`] is the peer mesh, [`api`] the control API, [`cli`] the
//! verbs, [`daemon`] the wiring.

pub mod address;
pub mod api;
pub mod attach;
pub mod cli;
pub mod cni;
pub mod daemon;
pub mod dns;
pub mod docker;
pub mod flows;
pub mod ipam;
pub mod kube;
pub mod mesh;
pub mod overlay;
pub mod path;
pub mod policy;
pub mod sleeve;
pub mod state_file;
pub mod tsdb;
