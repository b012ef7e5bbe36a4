//! The sleeve core's one error type.

/// Why a datagram could not be sealed or opened. Every variant is a reason to drop the
/// datagram and count it, never to tear the session down.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SleeveError {
    /// Shorter than a header plus a tag.
    #[error("datagram of {0} bytes is too short for a sleeve frame")]
    TooShort(usize),
    /// The datagram carried less than an Ethernet header.
    #[error("carried frame of {0} bytes is shorter than an Ethernet header")]
    ShortFrame(usize),
    /// The frame's offload header asks for something the TAP port must not be given.
    #[error("offload header with flags {0:#04x} and segmentation type {1:#04x} refused")]
    BadOffload(u8, u8),
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

/// Why the sleeve's data path could not start.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}")]
pub struct StartError {
    /// What was being done.
    pub action: String,
    /// The system's answer.
    #[source]
    pub source: std::io::Error,
}

impl StartError {
    /// Wraps the last OS error with what was being done.
    pub(crate) fn last_os(action: impl Into<String>) -> StartError {
        StartError {
            action: action.into(),
            source: std::io::Error::last_os_error(),
        }
    }

    /// A mapper from an I/O error, for `map_err`.
    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
        let action = action.into();
        move |source| StartError { action, source }
    }
}
