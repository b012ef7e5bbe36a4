//! The sleeve: the userspace data path over UDP 6783. This holds its sans-IO core only —
//! per-peer, per-direction ChaCha20-Poly1305 keys from the mesh handshake's sleeve key material
//! ([`keys`]), the datagram header ([`frame`]), the replay window ([`replay`]) and a
//! [`session::Session`] that seals and opens datagrams and rekeys before its nonces run out.
//! No sockets, no clock; the TAP port and the UDP shell are not built yet.

pub mod error;
pub mod frame;
pub mod keys;
pub mod replay;
pub mod session;

pub use error::SleeveError;
pub use session::{Session, SessionConfig};
