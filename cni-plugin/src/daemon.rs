//! Calls to the weft daemon over its control socket, with daemon errors turned into CNI codes.

use serde::Serialize;
use serde::de::DeserializeOwned;
use weft_router::api::{Client, ClientError};

use crate::error::{CniError, Result};

/// Status codes of the daemon's answers that have their own CNI code.
const BAD_REQUEST: u16 = 400;
const NOT_FOUND: u16 = 404;
const CONFLICT: u16 = 409;
const UNAVAILABLE: u16 = 503;

/// One daemon, reached over `socket`.
pub(crate) struct Daemon {
    client: Client,
    runtime: tokio::runtime::Runtime,
}

impl Daemon {
    /// A client of the daemon on `socket`.
    pub(crate) fn new(socket: &str) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CniError::Io(format!("starting the async runtime: {e}")))?;
        Ok(Daemon {
            client: Client::new(socket),
            runtime,
        })
    }

    /// `POST path` with `body`.
    pub(crate) fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.runtime
            .block_on(self.client.post(path, body))
            .map_err(to_cni)
    }

    /// `GET path`.
    pub(crate) fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.runtime.block_on(self.client.get(path)).map_err(to_cni)
    }
}

fn to_cni(err: ClientError) -> CniError {
    let text = err.to_string();
    match err {
        ClientError::NotRunning { .. } => CniError::TryAgainLater(text),
        ClientError::Api { status, .. } => match status.as_u16() {
            BAD_REQUEST => CniError::InvalidConfig(text),
            NOT_FOUND => CniError::UnknownContainer(text),
            CONFLICT => CniError::Conflict(text),
            UNAVAILABLE => CniError::TryAgainLater(text),
            _ => CniError::Daemon(text),
        },
        ClientError::Transport { .. } => CniError::Io(text),
    }
}
