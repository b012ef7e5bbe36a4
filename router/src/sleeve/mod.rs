//! The sleeve: the userspace data path over UDP 6783. A sans-IO core — per-peer,
//! per-direction ChaCha20-Poly1305 keys from the mesh handshake's sleeve key material
//! ([`keys`]), the datagram header ([`frame`]), the replay window ([`replay`]), a
//! [`session::Session`] that seals and opens datagrams and rekeys before its nonces run out,
//! the datagram framing with and without a password ([`codec`]), the TAP port's offload header
//! ([`vnet`]) and the forwarding decision
//! ([`forward`]), the grouping of datagrams into UDP GSO trains and the cutting apart of GRO
//! buffers ([`gso`]) — and its IO: the TAP port ([`tap`]), batched UDP ([`udp`]), the state shared by
//! the worker threads ([`peers`]) and the threads themselves ([`service`]).

pub mod codec;
pub mod error;
pub mod forward;
pub mod frame;
pub mod gso;
pub mod keys;
pub mod peers;
pub mod replay;
pub mod service;
pub mod session;
pub mod tap;
pub mod tso;
pub mod udp;
pub mod vnet;

pub use error::{SleeveError, StartError};
pub use service::{Sleeve, SleeveConfig, SleevePeer};
pub use session::{Session, SessionConfig};
