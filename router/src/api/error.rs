//! The control API's error type and its single mapping to HTTP status codes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::types::ErrorBody;

/// Everything a control API call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request was malformed or named something invalid.
    #[error("{0}")]
    BadRequest(String),
    /// The daemon is shutting down or one of its parts is not running.
    #[error("the router is not ready: {0}")]
    Unavailable(String),
}

impl From<&ApiError> for StatusCode {
    fn from(err: &ApiError) -> Self {
        match err {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from(&self);
        (
            status,
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response()
    }
}
