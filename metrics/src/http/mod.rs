//! The Prometheus-compatible HTTP API (axum), served by the router on port 6782:
//! `POST /api/v1/push` (remote_write 1.0), `GET|POST /api/v1/query`, `/api/v1/query_range`,
//! `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/{name}/values`,
//! `/api/v1/status/buildinfo` and `/metrics`.
//!
//! Every request is scoped to the tenant in `X-Scope-OrgID` (401 without one, 400 for an
//! invalid one such as `..` or `a/b`), unless tenancy is off, where the tenant is `anonymous`.
//! Errors use Prometheus's JSON shape (`{"status":"error","errorType":...,"error":...}`) with its
//! status codes: 400 `bad_data`, 422 `execution`, 503 `unavailable`, 500 `internal`; push
//! errors are plain text as from Prometheus's receiver, 415 for a wrong Content-Type or
//! encoding, 429 with `Retry-After` when a tenant limit is hit.

mod json;
mod params;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::index::Matcher;
use crate::promql::{self, EngineConfig, QueryError, QueryValue};
use crate::remote_write::decode_write_request;
use crate::storage::{StorageError, Store, WriteError};
use crate::tenant::{ANONYMOUS, TenantId};

/// Largest accepted request body (compressed remote_write batches are far smaller).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The tenant header, as in Cortex.
pub const TENANT_HEADER: &str = "X-Scope-OrgID";

/// Produces the router's own metrics in the Prometheus exposition format.
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

/// Settings of the API.
#[derive(Clone)]
pub struct ApiConfig {
    /// With tenancy off, requests without `X-Scope-OrgID` use the tenant `anonymous`.
    pub tenancy: bool,
    /// Query engine settings.
    pub engine: EngineConfig,
    /// How far in the future a pushed sample may be.
    pub max_future_ms: i64,
    /// Version reported by `/api/v1/status/buildinfo`.
    pub version: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            tenancy: true,
            engine: EngineConfig::default(),
            max_future_ms: 10 * 60 * 1000,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

#[derive(Clone)]
struct ApiState {
    store: Arc<dyn Store>,
    config: Arc<ApiConfig>,
    metrics: MetricsSource,
}

/// Builds the API router over a store; `metrics` renders `/metrics`.
pub fn router(store: Arc<dyn Store>, config: ApiConfig, metrics: MetricsSource) -> Router {
    let state = ApiState {
        store,
        config: Arc::new(config),
        metrics,
    };
    Router::new()
        .route("/api/v1/push", post(push))
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(label_names).post(label_names))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/metrics", get(own_metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// An API error: HTTP status, Prometheus `errorType` and message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    status: StatusCode,
    error_type: &'static str,
    message: String,
    retry_after_s: Option<u64>,
    plain: bool,
}

impl ApiError {
    fn new(status: StatusCode, error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            message: message.into(),
            retry_after_s: None,
            plain: false,
        }
    }

    fn bad_data(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_data", message)
    }

    /// Push errors are plain text, as from Prometheus's remote-write receiver.
    fn plain(mut self) -> Self {
        self.plain = true;
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = if self.plain {
            (
                self.status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{}\n", self.message),
            )
                .into_response()
        } else {
            (
                self.status,
                [(header::CONTENT_TYPE, "application/json")],
                json::error(self.error_type, &self.message),
            )
                .into_response()
        };
        if let Some(s) = self.retry_after_s
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::BadData(_) | QueryError::Unsupported(_) => Self::bad_data(e.to_string()),
            QueryError::Execution(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "execution", e.to_string())
            }
            QueryError::Storage(s) => s.into(),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        let msg = e.to_string();
        match e {
            WriteError::Append(_) | WriteError::LabelLimit { .. } | WriteError::Refused(_) => {
                Self::bad_data(msg)
            }
            WriteError::RateLimited { retry_after_ms, .. } => Self {
                retry_after_s: Some(retry_after_ms.div_ceil(1000).max(1)),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "unavailable", msg)
            },
            WriteError::SeriesLimit { .. } => Self {
                retry_after_s: Some(60),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "unavailable", msg)
            },
            WriteError::Wal(_) | WriteError::Unavailable(_) | WriteError::NoQuorum(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", msg)
            }
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The tenant of a request.
fn tenant(headers: &HeaderMap, config: &ApiConfig) -> Result<TenantId, ApiError> {
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_data",
            "no org id: the X-Scope-OrgID header is required",
        )
    };
    match headers.get(TENANT_HEADER) {
        None if !config.tenancy => {
            TenantId::new(ANONYMOUS).map_err(|e| ApiError::bad_data(e.to_string()))
        }
        None => Err(unauthorized()),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| ApiError::bad_data("X-Scope-OrgID is not valid ASCII"))?;
            TenantId::new(s).map_err(|e| ApiError::bad_data(format!("invalid X-Scope-OrgID: {e}")))
        }
    }
}

/// Parameters from the query string, plus the form body of a POST.
fn request_params(
    method: &Method,
    raw_query: Option<String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Vec<(String, String)> {
    let mut p = raw_query
        .map(|q| params::form_pairs(q.as_bytes()))
        .unwrap_or_default();
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if method == Method::POST && is_form {
        p.extend(params::form_pairs(body));
    }
    p
}

fn time_param(p: &[(String, String)], name: &str, default: i64) -> Result<i64, ApiError> {
    match params::get(p, name) {
        None | Some("") => Ok(default),
        Some(s) => params::parse_time(s)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"{name}\": {e}"))),
    }
}

/// Runs blocking store work off the async executor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

fn ok_json(data: &str) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json::success(data),
    )
        .into_response()
}

async fn push(
    State(st): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let tenant = tenant(&headers, &st.config).map_err(ApiError::plain)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-protobuf");
    let base = content_type.split(';').next().unwrap_or("").trim();
    let proto = content_type
        .split(';')
        .skip(1)
        .find_map(|p| p.trim().strip_prefix("proto="));
    if base != "application/x-protobuf" || proto.is_some_and(|p| p != "prometheus.WriteRequest") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_data",
            format!("unsupported Content-Type {content_type:?}: only remote_write 1.0 (application/x-protobuf) is accepted"),
        )
        .plain());
    }
    if let Some(enc) = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        && !enc.eq_ignore_ascii_case("snappy")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_data",
            format!("unsupported Content-Encoding {enc:?}: only snappy is accepted"),
        )
        .plain());
    }
    let now = now_ms();
    let batch = decode_write_request(&body, now, st.config.max_future_ms)
        .map_err(|e| ApiError::bad_data(e.to_string()).plain())?;
    let store = st.store.clone();
    blocking(move || {
        store
            .write(&tenant, batch, now)
            .map_err(|e| ApiError::from(e).plain())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A query request's tenant, parameters and `query` expression.
struct QueryRequest {
    tenant: TenantId,
    params: Vec<(String, String)>,
    expr: String,
}

impl QueryRequest {
    fn parse(
        st: &ApiState,
        method: &Method,
        raw_query: Option<String>,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Self, ApiError> {
        let tenant = tenant(headers, &st.config)?;
        let params = request_params(method, raw_query, headers, body);
        let expr = params::get(&params, "query")
            .ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": query is required"))?
            .to_owned();
        Ok(Self {
            tenant,
            params,
            expr,
        })
    }

    /// Evaluates the expression with `run` off the async workers and renders the result.
    async fn evaluate(
        self,
        st: &ApiState,
        run: impl FnOnce(&dyn Store, &TenantId, &str, &EngineConfig) -> Result<QueryValue, QueryError>
        + Send
        + 'static,
    ) -> Result<Response, ApiError> {
        let store = st.store.clone();
        let engine = st.config.engine;
        let value =
            blocking(move || Ok(run(store.as_ref(), &self.tenant, &self.expr, &engine)?)).await?;
        Ok(ok_json(&json::query_data(&value)))
    }
}

async fn query(
    State(st): State<ApiState>,
    method: Method,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = QueryRequest::parse(&st, &method, q, &headers, &body)?;
    let t = time_param(&req.params, "time", now_ms())?;
    req.evaluate(&st, move |store, tenant, expr, engine| {
        promql::instant_query(store, tenant, expr, t, engine)
    })
    .await
}

async fn query_range(
    State(st): State<ApiState>,
    method: Method,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = QueryRequest::parse(&st, &method, q, &headers, &body)?;
    let p = &req.params;
    let missing = |n: &str| ApiError::bad_data(format!("invalid parameter \"{n}\": missing"));
    let start = params::get(p, "start").ok_or_else(|| missing("start"))?;
    let start = params::parse_time(start)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"start\": {e}")))?;
    let end = params::get(p, "end").ok_or_else(|| missing("end"))?;
    let end = params::parse_time(end)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"end\": {e}")))?;
    let step = params::get(p, "step").ok_or_else(|| missing("step"))?;
    let step = params::parse_duration(step)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"step\": {e}")))?;
    req.evaluate(&st, move |store, tenant, expr, engine| {
        promql::range_query(store, tenant, expr, start, end, step, engine)
    })
    .await
}

/// Parses `match[]` selectors into matcher sets (one per selector and `or` alternative).
fn match_params(p: &[(String, String)]) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let mut sets = Vec::new();
    for m in params::get_all(p, "match[]") {
        let expr = promql_parser::parser::parse(m)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"match[]\": {e}")))?;
        let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
            return Err(ApiError::bad_data(format!(
                "invalid parameter \"match[]\": {m:?} is not a series selector"
            )));
        };
        sets.extend(promql::selector_matchers(&vs));
    }
    Ok(sets)
}

fn range_params(p: &[(String, String)]) -> Result<(i64, i64), ApiError> {
    Ok((
        time_param(p, "start", i64::MIN)?,
        time_param(p, "end", i64::MAX)?,
    ))
}

/// What a `series`, `labels` or `label/{name}/values` request selects: tenant, `match[]`
/// matcher sets and time range.
struct Selection {
    tenant: TenantId,
    sets: Vec<Vec<Matcher>>,
    start: i64,
    end: i64,
}

impl Selection {
    /// Reads the tenant, the `match[]` sets and `start`/`end`, in that order of errors. Without
    /// a `match[]`: an error when `required`, else one empty set (every series).
    fn read(
        st: &ApiState,
        method: &Method,
        q: Option<String>,
        headers: &HeaderMap,
        body: &[u8],
        required: bool,
    ) -> Result<Self, ApiError> {
        let tenant = tenant(headers, &st.config)?;
        let p = request_params(method, q, headers, body);
        let mut sets = match_params(&p)?;
        if sets.is_empty() {
            if required {
                return Err(ApiError::bad_data("no match[] parameter provided"));
            }
            sets.push(Vec::new());
        }
        let (start, end) = range_params(&p)?;
        Ok(Self {
            tenant,
            sets,
            start,
            end,
        })
    }

    /// Runs `find` on the blocking pool for every matcher set; the union of what it finds,
    /// sorted.
    async fn union<T, F>(self, store: Arc<dyn Store>, find: F) -> Result<Vec<T>, ApiError>
    where
        T: Ord + Send + 'static,
        F: Fn(&dyn Store, &TenantId, &[Matcher], i64, i64) -> Result<Vec<T>, StorageError>
            + Send
            + 'static,
    {
        blocking(move || {
            let mut all = std::collections::BTreeSet::new();
            for m in &self.sets {
                all.extend(find(&*store, &self.tenant, m, self.start, self.end)?);
            }
            Ok(all.into_iter().collect())
        })
        .await
    }
}

async fn series(
    State(st): State<ApiState>,
    method: Method,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let labels = Selection::read(&st, &method, q, &headers, &body, true)?
        .union(st.store.clone(), |store, tenant, m, start, end| {
            store.series(tenant, m, start, end)
        })
        .await?;
    let items: Vec<String> = labels.iter().map(json::labels).collect();
    Ok(ok_json(&format!("[{}]", items.join(","))))
}

async fn label_names(
    State(st): State<ApiState>,
    method: Method,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let names = Selection::read(&st, &method, q, &headers, &body, false)?
        .union(st.store.clone(), |store, tenant, m, start, end| {
            store.label_names(tenant, m, start, end)
        })
        .await?;
    Ok(ok_json(&json::strings(names.iter().map(String::as_str))))
}

async fn label_values(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let values = Selection::read(&st, &Method::GET, q, &headers, &[], false)?
        .union(st.store.clone(), move |store, tenant, m, start, end| {
            store.label_values(tenant, &name, m, start, end)
        })
        .await?;
    Ok(ok_json(&json::strings(values.iter().map(String::as_str))))
}

async fn buildinfo(State(st): State<ApiState>) -> Response {
    let data = serde_json::json!({
        "version": st.config.version,
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    });
    ok_json(&data.to_string())
}

async fn own_metrics(State(st): State<ApiState>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        (st.metrics)(),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
