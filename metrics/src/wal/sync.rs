//! Group commit: many writers append under the tenant lock, then wait here, outside it, for
//! one `fsync` that covers all of their bytes. A writer is acknowledged only after
//! [`WalSyncer::sync_to`] returns for its position.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::WalError;

/// Makes appended WAL bytes durable, one `fsync` for all writers waiting at the time.
#[derive(Debug)]
pub struct WalSyncer {
    /// The segment being written, and its path (for errors).
    current: Mutex<(Arc<File>, PathBuf)>,
    /// Bytes fully appended so far, over all segments.
    appended: AtomicU64,
    /// Bytes known durable. Held while syncing and while cutting a segment.
    synced: Mutex<u64>,
}

impl WalSyncer {
    pub(super) fn new(file: Arc<File>, path: PathBuf) -> Self {
        Self {
            current: Mutex::new((file, path)),
            appended: AtomicU64::new(0),
            synced: Mutex::new(0),
        }
    }

    /// Records that `n` more bytes were appended; returns the new end position.
    pub(super) fn appended(&self, n: u64) -> u64 {
        self.appended.fetch_add(n, Ordering::AcqRel) + n
    }

    /// Switches to a new segment after syncing the old one completely.
    pub(super) fn cut(&self, next: Arc<File>, next_path: PathBuf) -> Result<(), WalError> {
        let mut synced = self.synced.lock().map_err(|_| WalError::Poisoned)?;
        let mut current = self.current.lock().map_err(|_| WalError::Poisoned)?;
        current.0.sync_all().map_err(|source| WalError::Io {
            path: current.1.clone(),
            source,
        })?;
        *synced = self.appended.load(Ordering::Acquire);
        *current = (next, next_path);
        Ok(())
    }

    /// Returns once every byte up to `pos` is durable, syncing if no other writer did.
    pub fn sync_to(&self, pos: u64) -> Result<(), WalError> {
        let mut synced = self.synced.lock().map_err(|_| WalError::Poisoned)?;
        if *synced >= pos {
            return Ok(());
        }
        // No cut can run while `synced` is held, so these bytes are all in this file.
        let target = self.appended.load(Ordering::Acquire);
        let (file, path) = self.current.lock().map_err(|_| WalError::Poisoned)?.clone();
        file.sync_data()
            .map_err(|source| WalError::Io { path, source })?;
        *synced = (*synced).max(target);
        Ok(())
    }
}
