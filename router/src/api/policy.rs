//! Control API routes of network policy: apply/list/get/delete policies, label workloads and
//! namespaces, drop counters and recent drops, the enforcement status, and `/metrics` of the
//! status listener.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::ApiError;
use super::server::{ApiState, body};
use crate::policy::PolicyError;
use crate::policy::drops::{DropEvent, DropTotal, prometheus_text};
use crate::policy::labels::LabelEdit;
use crate::policy::model::WorkloadMeta;
use crate::policy::service::{PolicyStatus, PolicySummary};
use crate::policy::spec::NetworkPolicy;

/// Body of `POST /policy/apply`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// One or more NetworkPolicy documents, YAML or JSON.
    pub text: String,
}

/// Answer of `POST /policy/apply`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyResponse {
    /// `NAMESPACE/NAME` of each policy applied.
    pub applied: Vec<String>,
}

/// Body of `POST /policy/get` and `POST /policy/delete`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyKey {
    /// `NAMESPACE/NAME`.
    pub key: String,
}

/// Answer of `GET /policy/list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResponse {
    /// Every policy.
    pub policies: Vec<PolicySummary>,
}

/// Answer of `GET /policy/drops`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DropsResponse {
    /// Exact non-zero totals (nftables counters) per policy, workload, direction, protocol
    /// and port.
    pub totals: Vec<DropTotal>,
    /// The last drops the rate-limited NFLOG group reported (a sample), oldest first.
    pub recent: Vec<DropEvent>,
}

/// Body of `POST /label`: label edits of a workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelRequest {
    /// The workload: name, `NAMESPACE/NAME` or address.
    pub workload: String,
    /// `k=v` to set, `k-` to remove.
    pub edits: Vec<String>,
}

/// Body of `POST /namespace/label`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamespaceLabelRequest {
    /// The namespace.
    pub namespace: String,
    /// `k=v` to set, `k-` to remove.
    pub edits: Vec<String>,
}

/// Answer of `POST /namespace/label`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamespaceLabels {
    /// The namespace.
    pub namespace: String,
    /// Its labels now.
    pub labels: BTreeMap<String, String>,
}

/// The policy routes, merged into the control API.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/policy/apply", post(apply))
        .route("/policy/list", get(list))
        .route("/policy/get", post(get_policy))
        .route("/policy/delete", post(delete))
        .route("/policy/drops", get(drops))
        .route("/policy/status", get(status))
        .route("/label", post(label))
        .route("/namespace/label", post(namespace_label))
}

/// Maps the policy concern's errors to the API's.
pub fn api_error(e: PolicyError) -> ApiError {
    let text = e.to_string();
    match e {
        PolicyError::Syntax { .. }
        | PolicyError::Invalid { .. }
        | PolicyError::Empty
        | PolicyError::Label { .. }
        | PolicyError::Port { .. } => ApiError::BadRequest(text),
        PolicyError::NotFound(_) => ApiError::NotFound(text),
        PolicyError::Refused(_) => ApiError::Conflict(text),
        PolicyError::Firewall(_) | PolicyError::Persist(_) => ApiError::Internal(text),
    }
}

fn edits(args: &[String]) -> Result<Vec<LabelEdit>, ApiError> {
    if args.is_empty() {
        return Err(ApiError::BadRequest(
            "give at least one KEY=VALUE or KEY- label change".into(),
        ));
    }
    args.iter()
        .map(|a| LabelEdit::parse(a).map_err(api_error))
        .collect()
}

async fn apply(
    State(state): State<ApiState>,
    req: Result<Json<ApplyRequest>, JsonRejection>,
) -> Result<Json<ApplyResponse>, ApiError> {
    let req = body(req)?;
    let applied = state.policy.apply(&req.text).await.map_err(api_error)?;
    Ok(Json(ApplyResponse { applied }))
}

async fn list(State(state): State<ApiState>) -> Json<ListResponse> {
    Json(ListResponse {
        policies: state.policy.list(),
    })
}

async fn get_policy(
    State(state): State<ApiState>,
    req: Result<Json<PolicyKey>, JsonRejection>,
) -> Result<Json<NetworkPolicy>, ApiError> {
    let req = body(req)?;
    Ok(Json(state.policy.get(&req.key).map_err(api_error)?))
}

async fn delete(
    State(state): State<ApiState>,
    req: Result<Json<PolicyKey>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let req = body(req)?;
    state.policy.delete(&req.key).await.map_err(api_error)?;
    Ok(Json(json!({})))
}

async fn totals(state: &ApiState) -> Result<Vec<DropTotal>, ApiError> {
    let policy = state.policy.clone();
    tokio::task::spawn_blocking(move || policy.drops())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(api_error)
}

async fn drops(State(state): State<ApiState>) -> Result<Json<DropsResponse>, ApiError> {
    Ok(Json(DropsResponse {
        totals: totals(&state).await?,
        recent: state.policy.recent_drops(),
    }))
}

/// `GET /metrics` of the status listener: `weft_policy_drops_total` in the Prometheus text
/// format.
pub async fn metrics(
    State(state): State<ApiState>,
) -> Result<([(axum::http::header::HeaderName, &'static str); 1], String), ApiError> {
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prometheus_text(&totals(&state).await?),
    ))
}

async fn status(State(state): State<ApiState>) -> Json<PolicyStatus> {
    Json(state.policy.status())
}

async fn label(
    State(state): State<ApiState>,
    req: Result<Json<LabelRequest>, JsonRejection>,
) -> Result<Json<WorkloadMeta>, ApiError> {
    let req = body(req)?;
    let edits = edits(&req.edits)?;
    let meta = state
        .policy
        .label_workload(&req.workload, &edits)
        .await
        .map_err(api_error)?;
    Ok(Json(meta))
}

async fn namespace_label(
    State(state): State<ApiState>,
    req: Result<Json<NamespaceLabelRequest>, JsonRejection>,
) -> Result<Json<NamespaceLabels>, ApiError> {
    let req = body(req)?;
    let edits = edits(&req.edits)?;
    let labels = state
        .policy
        .label_namespace(&req.namespace, &edits)
        .await
        .map_err(api_error)?;
    Ok(Json(NamespaceLabels {
        namespace: req.namespace,
        labels,
    }))
}
