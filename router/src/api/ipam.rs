//! Control API routes of IPAM: allocate/claim, free, lookup, status, rmpeer, prime, and
//! `reset` (hand this peer's space to another peer, remove the local state, stop).

use std::net::Ipv4Addr;
use std::time::Duration;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use weft_ipam::{Cidr, IpamError, PeerId, Status};

use super::error::ApiError;
use super::server::{ApiState, body};
use crate::ipam::service::ServiceError;

/// Longest a client may ask an allocation or `prime` to wait.
const MAX_WAIT: Duration = Duration::from_secs(600);
/// How long `reset` waits for its hand-over to leave, unless told otherwise.
const RESET_WAIT: Duration = Duration::from_secs(5);
/// Time the answer of `reset` gets to reach the client before the daemon stops.
const STOP_AFTER_ANSWER: Duration = Duration::from_millis(100);

/// Body of `POST /ipam/allocate`: an address for `owner`, any (from `subnet` or the default
/// subnet) or exactly `addr` (a claim).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllocateRequest {
    /// Owner id (container id, workload name).
    pub owner: String,
    /// Subnet of the range to allocate from, as CIDR.
    #[serde(default)]
    pub subnet: Option<String>,
    /// Exact address to claim.
    #[serde(default)]
    pub addr: Option<Ipv4Addr>,
    /// How long to wait for a pending request, in milliseconds (default 30 000).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// Answer of `POST /ipam/allocate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllocateResponse {
    /// The address now held by the owner.
    pub addr: Ipv4Addr,
    /// Prefix length of the subnet it came from.
    pub prefix: u8,
}

/// Body of `POST /ipam/free`: every address of `owner`, or the one address `addr`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FreeRequest {
    /// Owner whose addresses are freed.
    #[serde(default)]
    pub owner: Option<String>,
    /// One address to free.
    #[serde(default)]
    pub addr: Option<Ipv4Addr>,
}

/// Answer of `POST /ipam/free` and `POST /ipam/lookup`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddressesResponse {
    /// The addresses concerned.
    pub addrs: Vec<Ipv4Addr>,
}

/// Body of `POST /ipam/lookup`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookupRequest {
    /// Owner id.
    pub owner: String,
}

/// Body of `POST /ipam/rmpeer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RmpeerRequest {
    /// Name of the peer whose space to take over.
    pub peer: String,
}

/// Answer of `POST /ipam/rmpeer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RmpeerResponse {
    /// Addresses taken over.
    pub addresses: u64,
}

/// Body of `POST /ipam/prime`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrimeRequest {
    /// How long to wait for the ring, in milliseconds (default 60 000).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// Body of `POST /reset`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResetRequest {
    /// How long to wait for the hand-over to leave, in milliseconds (default 5 000).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// Answer of `POST /reset`; the daemon stops right after sending it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResetResponse {
    /// The peer that received this peer's space; absent when it owned none.
    pub heir: Option<String>,
    /// How many addresses were handed over.
    pub addresses: u64,
    /// Files removed from the data dir.
    pub removed: Vec<String>,
}

/// One peer's share of the ring.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareInfo {
    /// Peer name.
    pub peer: String,
    /// Addresses it owns.
    pub size: u64,
    /// Of which free, as last reported.
    pub free: u64,
    /// Whether it is reachable now.
    pub reachable: bool,
    /// Its ranges, `first-last`.
    pub ranges: Vec<String>,
}

/// Answer of `GET /ipam/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IpamStatus {
    /// This peer.
    pub peer: String,
    /// The allocation range.
    pub range: String,
    /// The default subnet.
    pub default_subnet: String,
    /// The init mode.
    pub init: String,
    /// Whether the ring exists.
    pub ready: bool,
    /// What the allocator is doing.
    pub state: String,
    /// Addresses allocated here.
    pub allocated: usize,
    /// Requests waiting for space.
    pub pending: usize,
    /// Every peer's share.
    pub shares: Vec<ShareInfo>,
    /// Peers removed with rmpeer, with who removed them.
    pub removed: Vec<(String, String)>,
}

impl From<Status> for IpamStatus {
    fn from(s: Status) -> Self {
        IpamStatus {
            peer: s.peer.to_string(),
            range: s.range.to_string(),
            default_subnet: s.default_subnet.to_string(),
            init: s.init.to_string(),
            ready: s.ready,
            state: s.state,
            allocated: s.allocated,
            pending: s.pending,
            shares: s
                .shares
                .into_iter()
                .map(|sh| ShareInfo {
                    peer: sh.peer.to_string(),
                    size: sh.size,
                    free: sh.free,
                    reachable: sh.reachable,
                    ranges: sh.ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect(),
                })
                .collect(),
            removed: s
                .removed
                .into_iter()
                .map(|(p, by)| (p.to_string(), by.to_string()))
                .collect(),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Ipam(e) => e.into(),
            ServiceError::Persist(_) => ApiError::Internal(e.to_string()),
            ServiceError::Timeout(_) => ApiError::Unavailable(e.to_string()),
            ServiceError::ResetUndelivered { .. } | ServiceError::Remove { .. } => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<IpamError> for ApiError {
    fn from(e: IpamError) -> Self {
        let text = e.to_string();
        match e {
            IpamError::AddressInUse { .. }
            | IpamError::AlreadyTakenOver { .. }
            | IpamError::NoHeir
            | IpamError::BadHeir(_) => ApiError::Conflict(text),
            IpamError::NotAllocated { .. } | IpamError::NothingToTakeOver(_) => {
                ApiError::NotFound(text)
            }
            IpamError::NotReady
            | IpamError::Timeout { .. }
            | IpamError::Cancelled { .. }
            | IpamError::Left
            | IpamError::Removed { .. } => ApiError::Unavailable(text),
            _ => ApiError::BadRequest(text),
        }
    }
}

/// The IPAM routes, under `/ipam/`, and `/reset`.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/ipam/allocate", post(allocate))
        .route("/ipam/free", post(free))
        .route("/ipam/lookup", post(lookup))
        .route("/ipam/status", get(status))
        .route("/ipam/rmpeer", post(rmpeer))
        .route("/ipam/prime", post(prime))
        .route("/reset", post(reset))
}

fn wait(ms: Option<u64>, default: Duration) -> Result<Duration, ApiError> {
    let wait = ms.map(Duration::from_millis).unwrap_or(default);
    if wait > MAX_WAIT {
        return Err(ApiError::BadRequest(format!(
            "wait_ms {} is too long: at most {} ms",
            wait.as_millis(),
            MAX_WAIT.as_millis()
        )));
    }
    Ok(wait)
}

async fn allocate(
    State(state): State<ApiState>,
    req: Result<Json<AllocateRequest>, JsonRejection>,
) -> Result<Json<AllocateResponse>, ApiError> {
    let req = body(req)?;
    let subnet = req.subnet.as_deref().map(str::parse::<Cidr>).transpose()?;
    let wait = wait(req.wait_ms, Duration::from_secs(30))?;
    let addr = state
        .ipam
        .allocate(&req.owner, subnet, req.addr, wait)
        .await?;
    let prefix = subnet
        .unwrap_or(state.ipam.status().default_subnet)
        .prefix();
    Ok(Json(AllocateResponse { addr, prefix }))
}

async fn free(
    State(state): State<ApiState>,
    req: Result<Json<FreeRequest>, JsonRejection>,
) -> Result<Json<AddressesResponse>, ApiError> {
    let req = body(req)?;
    let addrs = match (req.owner, req.addr) {
        (Some(owner), None) => state.ipam.with(|a, now| a.free_owner(&owner, now))?,
        (None, Some(addr)) => {
            state.ipam.with(|a, now| a.free(addr, now))??;
            vec![addr]
        }
        _ => {
            return Err(ApiError::BadRequest(
                "give either \"owner\" or \"addr\" to free".into(),
            ));
        }
    };
    Ok(Json(AddressesResponse { addrs }))
}

async fn lookup(
    State(state): State<ApiState>,
    req: Result<Json<LookupRequest>, JsonRejection>,
) -> Result<Json<AddressesResponse>, ApiError> {
    let req = body(req)?;
    let addrs = state.ipam.with(|a, _| a.lookup(&req.owner))?;
    Ok(Json(AddressesResponse { addrs }))
}

async fn status(State(state): State<ApiState>) -> Json<IpamStatus> {
    Json(state.ipam.status().into())
}

async fn rmpeer(
    State(state): State<ApiState>,
    req: Result<Json<RmpeerRequest>, JsonRejection>,
) -> Result<Json<RmpeerResponse>, ApiError> {
    let req = body(req)?;
    let peer: PeerId = req.peer.parse()?;
    let addresses = state.ipam.with(|a, now| a.rmpeer(peer, now))??;
    Ok(Json(RmpeerResponse { addresses }))
}

async fn prime(
    State(state): State<ApiState>,
    req: Result<Json<PrimeRequest>, JsonRejection>,
) -> Result<Json<IpamStatus>, ApiError> {
    let req = body(req)?;
    let wait = wait(req.wait_ms, Duration::from_secs(60))?;
    state.ipam.prime(wait).await?;
    Ok(Json(state.ipam.status().into()))
}

/// `weft reset`: refused while workloads are attached (their addresses would be given out
/// again); otherwise hands the space over, removes `ipam.state`, `peer-name` and `docker.json`
/// (the next start is a new peer), answers, and stops the daemon.
async fn reset(
    State(state): State<ApiState>,
    req: Result<Json<ResetRequest>, JsonRejection>,
) -> Result<Json<ResetResponse>, ApiError> {
    let req = body(req)?;
    let wait = wait(req.wait_ms, RESET_WAIT)?;
    let attached = state.overlay.list().await.attachments;
    if !attached.is_empty() {
        let names: Vec<&str> = attached.iter().map(|a| a.name.as_str()).collect();
        return Err(ApiError::Conflict(format!(
            "reset refused: {} workload(s) still attached ({}); detach them first with `weft detach`, \
             or their addresses would be given out again",
            attached.len(),
            names.join(", ")
        )));
    }
    let outcome = state.ipam.reset(wait).await?;
    let mut removed = vec![state.ipam.state_path().display().to_string()];
    let policy_file = state.policy.reset().map_err(super::policy::api_error)?;
    removed.extend(policy_file.map(|p| p.display().to_string()));
    if let Some(dir) = state.ipam.state_path().parent() {
        let files = crate::daemon::forget_peer_files(dir)
            .map_err(|e| ApiError::Internal(format!("reset: {e:#}")))?;
        removed.extend(files.iter().map(|p| p.display().to_string()));
    }
    let stop = state.stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(STOP_AFTER_ANSWER).await;
        stop.notify_one();
    });
    Ok(Json(ResetResponse {
        heir: outcome.heir.map(|h| h.to_string()),
        addresses: outcome.addresses,
        removed,
    }))
}
