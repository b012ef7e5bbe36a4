//! Client side of the control API, over the daemon's unix socket.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use super::types::ErrorBody;

/// A failed call to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon listens on the socket.
    #[error(
        "weft is not running: nothing listens on {path} ({reason}). Start the router with `weft launch`, \
         or point --socket / WEFT_SOCKET at the socket of a running one"
    )]
    NotRunning {
        /// The socket path tried.
        path: PathBuf,
        /// Why the connection failed.
        reason: String,
    },
    /// The daemon answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status of the answer.
        status: StatusCode,
        /// The daemon's explanation.
        message: String,
    },
    /// The conversation with the daemon broke down.
    #[error("talking to the router on {path}: {reason}")]
    Transport {
        /// The socket path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// A client of one daemon's control socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// A client for the daemon listening on `socket`.
    pub fn new(socket: impl AsRef<Path>) -> Self {
        Client {
            socket: socket.as_ref().to_path_buf(),
        }
    }

    /// `GET path`, decoding the JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let bytes = self.call(Method::GET, path, Bytes::new()).await?;
        self.decode(&bytes)
    }

    /// `POST path` with a JSON body, decoding the JSON answer.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| self.transport(e))?;
        let bytes = self.call(Method::POST, path, Bytes::from(body)).await?;
        self.decode(&bytes)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(bytes).map_err(|e| self.transport(format!("invalid answer: {e}")))
    }

    fn transport(&self, reason: impl ToString) -> ClientError {
        ClientError::Transport {
            path: self.socket.clone(),
            reason: reason.to_string(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Bytes) -> Result<Bytes, ClientError> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|e| {
            let reason = match e.kind() {
                ErrorKind::NotFound => "no such socket".to_string(),
                ErrorKind::ConnectionRefused => "connection refused".to_string(),
                _ => e.to_string(),
            };
            ClientError::NotRunning {
                path: self.socket.clone(),
                reason,
            }
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.transport(e))?;
        tokio::spawn(async move {
            // The connection ends when the one request below is answered.
            let _ = conn.await;
        });
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "weft")
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(|e| self.transport(e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.transport(e))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.transport(e))?
            .to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        let message = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        Err(ClientError::Api { status, message })
    }
}
