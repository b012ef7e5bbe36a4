//! The control API server: full control on the unix socket (root only, mode 0600) and a
//! read-only status listener on TCP (127.0.0.1:6784 by default).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Notify;

use super::error::ApiError;
use super::types::{
    AttachRequest, ConnectRequest, DetachRequest, ExposeRequest, ForgetRequest, OverlayChange,
    PsResponse, Report, RouterInfo, WorkloadInfo,
};
use crate::address::parse_peer;
use crate::attach::AttachInput;
use crate::cli::format;
use crate::ipam::IpamService;
use crate::mesh::driver::MeshHandle;
use crate::overlay::{NetnsRef, Overlay};

/// What the handlers reach: the running parts of the daemon.
#[derive(Clone)]
pub struct ApiState {
    /// This router's identity and settings.
    pub router: Arc<RouterInfo>,
    /// The mesh driver.
    pub mesh: MeshHandle,
    /// Notified when a client asks the daemon to stop.
    pub stop: Arc<Notify>,
    /// The overlay: bridge, VXLAN, workloads.
    pub overlay: Overlay,
    /// The address allocator.
    pub ipam: IpamService,
    /// DNS records and the server's address.
    pub dns: crate::dns::DnsService,
    /// The sleeve data path.
    pub sleeve: crate::sleeve::Sleeve,
    /// Attachments made through the CNI plugin.
    pub cni: crate::cni::CniService,
    /// Network policy.
    pub policy: crate::policy::PolicyService,
    /// Flow metrics, `tap` and `top`.
    pub flows: crate::flows::FlowService,
}

impl ApiState {
    async fn report(&self) -> Result<Report, ApiError> {
        let mesh = self
            .mesh
            .status()
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        Ok(Report {
            version: env!("CARGO_PKG_VERSION").to_string(),
            router: (*self.router).clone(),
            mesh,
            data_path: crate::path::status(&self.sleeve, self.overlay.mtu()),
        })
    }
}

/// The routes of the unix socket: everything the CLI and CNI plugin use.
pub fn control_routes(state: ApiState) -> Router {
    Router::new()
        .route("/report", get(report))
        .route("/status", get(status_text))
        .route("/connect", post(connect))
        .route("/forget", post(forget))
        .route("/stop", post(stop))
        .route("/attach", post(attach))
        .route("/detach", post(detach))
        .route("/ps", get(ps))
        .route("/expose", post(expose))
        .route("/hide", post(hide))
        .merge(super::ipam::routes())
        .merge(super::policy::routes())
        .merge(super::dns::routes())
        .merge(super::cni::routes())
        .merge(super::flows::routes())
        .with_state(state)
}

/// The read-only routes of the TCP status listener.
pub fn status_routes(state: ApiState) -> Router {
    Router::new()
        .route("/report", get(report))
        .route("/status", get(status_text))
        .route("/metrics", get(super::policy::metrics))
        .with_state(state)
}

/// Binds the control socket at `path`: refuses when another daemon answers there, replaces a
/// stale socket file, and makes the socket readable by its owner (root) only.
pub async fn bind_control_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the socket directory {}", dir.display()))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            anyhow::bail!(
                "another weft router is already running on {} (stop it with `weft stop`, or use --socket)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {} to its owner", path.display()))?;
    Ok(listener)
}

/// Serves the control API on `listener` until the task is dropped.
pub async fn serve_control(listener: UnixListener, state: ApiState) -> std::io::Result<()> {
    axum::serve(listener, control_routes(state)).await
}

/// Serves the read-only status API on `listener` until the task is dropped.
pub async fn serve_status(listener: TcpListener, state: ApiState) -> std::io::Result<()> {
    axum::serve(listener, status_routes(state)).await
}

async fn report(State(state): State<ApiState>) -> Result<Json<Report>, ApiError> {
    Ok(Json(state.report().await?))
}

async fn status_text(State(state): State<ApiState>) -> Result<String, ApiError> {
    Ok(format::status(&state.report().await?))
}

pub(crate) fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError::BadRequest(format!("invalid request body: {}", e.body_text())))
}

fn validate_peers(peers: &[String]) -> Result<Vec<String>, ApiError> {
    peers
        .iter()
        .map(|p| parse_peer(p).map_err(|e| ApiError::BadRequest(e.to_string())))
        .collect()
}

async fn connect(
    State(state): State<ApiState>,
    req: Result<Json<ConnectRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let req = body(req)?;
    let peers = validate_peers(&req.peers)?;
    state
        .mesh
        .connect(peers, req.replace)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(json!({})))
}

async fn forget(
    State(state): State<ApiState>,
    req: Result<Json<ForgetRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let req = body(req)?;
    let peers = validate_peers(&req.peers)?;
    state
        .mesh
        .forget(peers)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(json!({})))
}

async fn stop(State(state): State<ApiState>) -> Json<Value> {
    state.stop.notify_one();
    Json(json!({}))
}

async fn attach(
    State(state): State<ApiState>,
    req: Result<Json<AttachRequest>, JsonRejection>,
) -> Result<Json<OverlayChange>, ApiError> {
    let req = body(req)?;
    let resolv = if req.rewrite_resolv {
        Some(super::dns::resolv_target(&state, req.netns.as_deref())?)
    } else {
        None
    };
    let input = AttachInput {
        address: req.address,
        netns: NetnsRef::from_parts(req.netns, req.pid)?,
        name: req.name,
        ifname: req.ifname,
        owner: req.owner,
        namespace: req.namespace,
        labels: crate::policy::labels::parse_labels(&req.labels)
            .map_err(super::policy::api_error)?,
        hairpin: false,
        handed_off: false,
    };
    let ports = req
        .ports
        .iter()
        .map(|p| crate::policy::model::NamedPort::parse(p).map_err(super::policy::api_error))
        .collect::<Result<Vec<_>, _>>()?;
    let attached =
        crate::attach::attach_with_ports(&state.ipam, &state.overlay, input, &ports).await?;
    if let Some(target) = resolv {
        super::dns::rewrite_resolv(&state, &target)?;
    }
    Ok(Json(OverlayChange {
        workloads: vec![WorkloadInfo::from(&attached)],
        addresses: Vec::new(),
    }))
}

async fn detach(
    State(state): State<ApiState>,
    req: Result<Json<DetachRequest>, JsonRejection>,
) -> Result<Json<OverlayChange>, ApiError> {
    let req = body(req)?;
    let netns = NetnsRef::from_parts(req.netns, req.pid)?;
    let gone = crate::attach::detach(&state.ipam, &state.overlay, netns, req.ifname).await?;
    Ok(Json(OverlayChange {
        workloads: gone.iter().map(WorkloadInfo::from).collect(),
        addresses: Vec::new(),
    }))
}

async fn ps(State(state): State<ApiState>) -> Json<PsResponse> {
    let listing = state.overlay.list().await;
    Json(PsResponse {
        workloads: listing.attachments.iter().map(WorkloadInfo::from).collect(),
        exposed: listing.exposed.iter().map(ToString::to_string).collect(),
        mtu: listing.mtu,
    })
}

async fn expose(
    State(state): State<ApiState>,
    req: Result<Json<ExposeRequest>, JsonRejection>,
) -> Result<Json<OverlayChange>, ApiError> {
    let req = body(req)?;
    let address = req
        .address
        .ok_or_else(|| ApiError::BadRequest("give the address to expose, ADDR/PREFIX".into()))?;
    let net = state.overlay.expose(&address).await?;
    Ok(Json(OverlayChange {
        workloads: Vec::new(),
        addresses: vec![net.to_string()],
    }))
}

async fn hide(
    State(state): State<ApiState>,
    req: Result<Json<ExposeRequest>, JsonRejection>,
) -> Result<Json<OverlayChange>, ApiError> {
    let req = body(req)?;
    let gone = state.overlay.hide(req.address.as_deref()).await?;
    Ok(Json(OverlayChange {
        workloads: Vec::new(),
        addresses: gone.iter().map(ToString::to_string).collect(),
    }))
}
