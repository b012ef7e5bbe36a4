//! The Docker plugin's error type; every error reaches dockerd as `{"Err": "..."}`.

use axum::http::StatusCode;

use crate::api::ApiError;

/// What a plugin call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The request body is not the JSON the method takes, or names something invalid.
    #[error("{0}")]
    BadRequest(String),
    /// The request names a network, endpoint, pool or address the driver does not know.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// The method is not part of the protocols this plugin implements.
    #[error("unknown plugin method {0}")]
    UnknownMethod(String),
    /// The router failed to carry out a valid request.
    #[error("{0}")]
    Internal(String),
    /// The driver's state file could not be read or written.
    #[error("Docker driver state {path}: {reason}")]
    State {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The Docker Engine API could not be reached or answered something unexpected.
    #[error("Docker Engine API {socket}: {reason}")]
    Engine {
        /// Its socket.
        socket: String,
        /// What failed.
        reason: String,
    },
    /// The plugin socket could not be served.
    #[error("serving the Docker plugin socket {path}: {source}")]
    Socket {
        /// The socket path.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
}

impl DockerError {
    /// The HTTP status the error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            DockerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DockerError::NotFound(_) | DockerError::UnknownMethod(_) => StatusCode::NOT_FOUND,
            DockerError::Conflict(_) => StatusCode::CONFLICT,
            DockerError::Internal(_)
            | DockerError::State { .. }
            | DockerError::Engine { .. }
            | DockerError::Socket { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ApiError> for DockerError {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::BadRequest(m) => DockerError::BadRequest(m),
            ApiError::NotFound(m) => DockerError::NotFound(m),
            ApiError::Conflict(m) => DockerError::Conflict(m),
            e @ (ApiError::Unavailable(_) | ApiError::Internal(_)) => {
                DockerError::Internal(e.to_string())
            }
        }
    }
}
