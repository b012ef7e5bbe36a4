//! Control API routes of flow metrics: `GET /flows/tap` (long poll of flow events of every
//! router) and `GET /flows/top` (busiest flows of the last minute).

use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::server::ApiState;
use crate::flows::{FlowError, TapEvent, TapFilter, TopRow};

/// Longest wait of one tap poll.
const MAX_WAIT_MS: u64 = 10_000;

/// Most flows `top` ranks.
const MAX_TOP: usize = 1000;

/// Query of `GET /flows/tap`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TapQuery {
    /// First event wanted (the `next` of the previous answer); from now on when absent.
    pub after: Option<u64>,
    /// How long to wait for an event, in milliseconds (at most 10 s).
    pub wait_ms: Option<u64>,
    /// Only flows from or to this namespace.
    pub namespace: Option<String>,
    /// Only flows from or to this workload.
    pub workload: Option<String>,
    /// Only flows to this workload.
    pub to: Option<String>,
}

/// Answer of `GET /flows/tap`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TapResponse {
    /// Matching events, oldest first.
    pub events: Vec<TapEvent>,
    /// What to ask `after` next.
    pub next: u64,
}

/// Query of `GET /flows/top`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TopQuery {
    /// Only this tenant.
    pub tenant: Option<String>,
    /// How many flows.
    pub limit: Option<usize>,
}

/// Answer of `GET /flows/top`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopResponse {
    /// The PromQL evaluated (per tenant).
    pub query: String,
    /// Busiest first.
    pub rows: Vec<TopRow>,
}

/// The routes.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/flows/tap", get(tap))
        .route("/flows/top", get(top))
}

fn api_error(e: FlowError) -> ApiError {
    match e {
        FlowError::Tenant { .. } => ApiError::BadRequest(e.to_string()),
        _ => ApiError::Internal(e.to_string()),
    }
}

async fn tap(
    State(state): State<ApiState>,
    Query(q): Query<TapQuery>,
) -> Result<Json<TapResponse>, ApiError> {
    let wait = q.wait_ms.unwrap_or(1_000);
    if wait > MAX_WAIT_MS {
        return Err(ApiError::BadRequest(format!(
            "wait_ms {wait} is above the limit of {MAX_WAIT_MS}"
        )));
    }
    let log = state.flows.tap_log().clone();
    state.flows.keep_tapping();
    let filter = TapFilter {
        namespace: q.namespace,
        workload: q.workload,
        to: q.to,
    };
    let after = q.after.unwrap_or_else(|| log.next_seq());
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
    loop {
        let added = log.added();
        let (events, next) = log.since(after, &filter);
        if !events.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(TapResponse { events, next }));
        }
        if tokio::time::timeout_at(deadline, added).await.is_err() {
            let (events, next) = log.since(after, &filter);
            return Ok(Json(TapResponse { events, next }));
        }
    }
}

async fn top(
    State(state): State<ApiState>,
    Query(q): Query<TopQuery>,
) -> Result<Json<TopResponse>, ApiError> {
    let limit = q.limit.unwrap_or(10);
    if limit == 0 || limit > MAX_TOP {
        return Err(ApiError::BadRequest(format!(
            "limit {limit}: expected 1 to {MAX_TOP}"
        )));
    }
    let rows = state
        .flows
        .top(q.tenant.as_deref(), limit)
        .await
        .map_err(api_error)?;
    Ok(Json(TopResponse {
        query: crate::flows::top_query(limit),
        rows,
    }))
}
