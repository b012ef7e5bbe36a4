//! The sleeve core's one error type.

/// Why a datagram could not be sealed or opened. Every variant is a reason to drop the
/// datagram and count it, never to tear the session down.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SleeveError {
    /// Shorter than a header plus a tag.
    #[error("datagram of {0} bytes is too short for a sleeve frame")]
    TooShort(usize),
    /// Not a sleeve data frame of this version.
    #[error("unknown sleeve frame type {0:#04x}")]
    UnknownType(u8),
    /// Its key epoch is neither the current, the previous nor the next one.
    #[error("key epoch {got} is not usable (current {current})")]
    StaleEpoch {
        /// The datagram's epoch.
        got: u8,
        /// Ours.
        current: u8,
    },
    /// Seen before, or too old for the replay window.
    #[error("replayed or too old datagram (counter {0})")]
    Replay(u64),
    /// Authentication failed: wrong key, or tampered with.
    #[error("datagram failed authentication")]
    Auth,
    /// The sending direction used every nonce of every epoch.
    #[error("the session's nonces are exhausted; a new handshake is needed")]
    Exhausted,
}
