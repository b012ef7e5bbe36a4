//! weft IPAM: the address ring CRDT shared by the mesh. Sans-IO: no sockets, no clock, no
//! randomness; the router feeds inputs (with `now`) and sends what comes out.
//!
//! # The ring
//! The allocation range (default `10.32.0.0/12`) is a ring of *tokens*. A token is an address;
//! it owns every address up to the next token. Each token carries an entry `(owner, version,
//! free)`. A seeded ring always has a token at the start of the range and tokens are never
//! deleted, so in any one view every address has exactly one owner.
//!
//! Merging two views is a pure join (see `ring`): the union of tokens, and per token the entry
//! with the greater `(version, owner, free)`. Union and per-key maximum are commutative,
//! associative and idempotent, and property tests check that. The join alone would let two
//! peers claim one address if two peers could write the same entry at the same version; the
//! *single-writer rule* prevents that: only the owner of an entry changes it (free counts,
//! donation by splitting its own segment, `reset`), always bumping the version, and a peer
//! persists before anything it wrote leaves (see [`Allocator`]). A peer's view of its own
//! entries is therefore always the newest, so it never believes it owns what it gave away, and
//! a receiver only owns what it received once the donor's view (with every token the donor
//! knew) is merged into its own.
//!
//! # Getting the first owners
//! `seed=PEER,...` splits the range between the listed peers in CIDR-aligned shares; every
//! peer computes the same ring, so no exchange is needed. `consensus[=N]` runs single-decree
//! Paxos over gossip (`paxos`) to agree on the set of peers to seed with; the quorum is `N/2+1`
//! (or a majority of the peers seen so far). An `observer` never votes or owns space at first;
//! it asks for space once the ring exists. Rings seeded with different peer sets refuse to merge.
//!
//! # Allocation and donation
//! `allocate` takes the lowest free address of the requested subnet (`--ipalloc-default-subnet`
//! when none is named; network and broadcast addresses are skipped) in this peer's own
//! segments. If there is none, or the ring is not ready yet, the request is *pending*. A peer
//! that needs space asks the reachable peer reporting the most free space there; the donor
//! hands over the upper half of its largest free run (a new token, version bump), broadcasts,
//! and replies with its whole state. Unanswered or refused requests back off and another donor
//! is tried. `claim` of an address owned elsewhere asks that owner for exactly that address
//! and fails if the owner has it in use. Pending requests fail at their deadline or on cancel.
//!
//! # Leaving and removing
//! `reset` hands all of this peer's entries to a reachable heir (version bump, as their owner)
//! and leaves; the router must get that broadcast out before deleting its state. `rmpeer PEER`
//! takes over every entry of a peer that is gone for good. Both record a *tombstone*
//! `(epoch, remover-or-heir)` for the departed peer in the ring (merged by maximum).
//!
//! `rmpeer` is the one write by a non-owner, so it needs care:
//! - **Precondition:** run it on a peer that has heard the departed peer's last state (wait
//!   until `weft status ipam` shows it as unreachable with its space, after gossip settled).
//!   Entries the remover never saw (for example space the dead peer donated just before it
//!   died, known only to the recipient) are not taken over, so they stay with their owner.
//! - **Version jump:** the takeover raises versions by 2^32, not 1. Free counts are bumped on
//!   every allocation and spread only with periodic gossip, so the remover's view of the dead
//!   peer's own entries is usually a few versions behind; the jump makes the takeover win over
//!   those instead of tying with one.
//! - **Two hosts at once:** once a tombstone names a remover, `rmpeer` of the same peer on any
//!   other host is refused ("rmpeer refused: peer X's space was already taken over by A"),
//!   whether X still owns something there or not; only A (or anyone, once A itself has left or
//!   been removed) may run it again to collect space donated to X after the first run. The
//!   guard works once A's gossip has reached the second host. If both run before either hears
//!   of the other (a partition), both write X's entries at the same version; the join picks
//!   one winner everywhere (the higher peer name, for entries and tombstone alike), and the
//!   loser reports every address it handed out there as an [`Event::Conflict`]. Run `rmpeer`
//!   on one host and let it gossip.
//! - **Coming back:** a removed peer that restarts with its old state loses its entries at the
//!   first merge, sees its own tombstone, reports its allocations as conflicts and refuses
//!   every request ([`IpamError::Removed`]). Started afresh (no state) it owns nothing and can
//!   ask for space again; a peer name that has a tombstone can then only be removed again by
//!   the peer named in that tombstone, so give a rejoining host a new peer name.
//!
//! A donation can race with its recipient's departure (the request was in flight when it left);
//! that space then shows under the departed peer in `weft status ipam` and `rmpeer` recovers
//! it.
//!
//! # Persistence
//! [`Allocator::persist`] holds the ring, the consensus claims (an acceptor must not forget its
//! promises) and this peer's allocations. The caller writes it before sending anything the
//! allocator produced or answering a request; a restart from those bytes then never forgets
//! space it gave away or an address it handed out. Persisted state wins over `--ipalloc-init`.
//!
//! # Bytes
//! Gossip, unicasts and persisted state are `prost` messages in an envelope with a magic, a
//! format version and a CRC-32C (see `wire`); [`decode`] checks any such bytes and never panics.

mod allocator;
mod cidr;
mod config;
mod error;
mod paxos;
mod peer;
mod ring;
mod space;
mod status;
mod wire;

pub use allocator::{Allocation, Allocator, Event, RequestId, Transmit};
pub use cidr::Cidr;
pub use config::{Config, InitMode};
pub use error::{IpamError, Result};
pub use peer::PeerId;
pub use status::{Share, Status};
pub use wire::{MessageKind, decode};
