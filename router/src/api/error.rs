//! The control API's error type and its single mapping to HTTP status codes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::types::ErrorBody;
use crate::overlay::OverlayError;

/// Everything a control API call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request was malformed or named something invalid.
    #[error("{0}")]
    BadRequest(String),
    /// The daemon is shutting down or one of its parts is not running.
    #[error("the router is not ready: {0}")]
    Unavailable(String),
    /// The request conflicts with what exists (an address or name already in use).
    #[error("{0}")]
    Conflict(String),
    /// The request names something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The router failed to carry out a valid request.
    #[error("{0}")]
    Internal(String),
}

impl From<OverlayError> for ApiError {
    fn from(err: OverlayError) -> Self {
        let text = err.to_string();
        match err {
            OverlayError::AddressInUse { .. }
            | OverlayError::IfnameExists { .. }
            | OverlayError::RouteExists { .. } => ApiError::Conflict(text),
            OverlayError::NotAttached { .. }
            | OverlayError::NotExposed { .. }
            | OverlayError::NamespaceMissing { .. } => ApiError::NotFound(text),
            e if e.is_invalid_input() => ApiError::BadRequest(text),
            _ => ApiError::Internal(text),
        }
    }
}

impl From<&ApiError> for StatusCode {
    fn from(err: &ApiError) -> Self {
        match err {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
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
