//! Control API routes of the CNI plugin: `/cni/add`, `/cni/del`, `/cni/check`, `/cni/gc`,
//! `/cni/status`. The work is done by [`crate::cni::CniService`].

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::error::ApiError;
use super::server::{ApiState, body};
use crate::cni::types::{
    CniAddRequest, CniAttachment, CniDelRequest, CniDelResponse, CniGcRequest, CniGcResponse,
    CniStatusResponse,
};

/// The `/cni/*` routes.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/cni/add", post(add))
        .route("/cni/del", post(del))
        .route("/cni/check", post(check))
        .route("/cni/gc", post(gc))
        .route("/cni/status", get(status))
}

async fn add(
    State(state): State<ApiState>,
    req: Result<Json<CniAddRequest>, JsonRejection>,
) -> Result<Json<CniAttachment>, ApiError> {
    Ok(Json(state.cni.add(body(req)?).await?))
}

async fn del(
    State(state): State<ApiState>,
    req: Result<Json<CniDelRequest>, JsonRejection>,
) -> Result<Json<CniDelResponse>, ApiError> {
    Ok(Json(state.cni.del(body(req)?).await?))
}

async fn check(
    State(state): State<ApiState>,
    req: Result<Json<CniDelRequest>, JsonRejection>,
) -> Result<Json<CniAttachment>, ApiError> {
    Ok(Json(state.cni.check(body(req)?).await?))
}

async fn gc(
    State(state): State<ApiState>,
    req: Result<Json<CniGcRequest>, JsonRejection>,
) -> Result<Json<CniGcResponse>, ApiError> {
    Ok(Json(state.cni.gc(body(req)?).await?))
}

async fn status(State(state): State<ApiState>) -> Json<CniStatusResponse> {
    Json(state.cni.status())
}
