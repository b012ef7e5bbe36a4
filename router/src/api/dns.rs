//! Control API routes of DNS: add and remove records (`weft dns-add`, `weft dns-remove`), look
//! a name up (`weft dns-lookup`) and list the records (`weft status dns`).

use std::net::IpAddr;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::server::{ApiState, body};
use crate::dns::{DnsError, EXTERN_OWNER, Entry, Fqdn};

/// Body of `POST /dns/add` and `POST /dns/remove`: records for an attached workload
/// (`container`), for a host name (`hostname`), or both (the workload's records under that name).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DnsChangeRequest {
    /// Addresses; the workload's own when absent and a workload is named.
    #[serde(default)]
    pub addrs: Vec<String>,
    /// Name of an attached workload (as `weft ps` shows it).
    #[serde(default)]
    pub container: Option<String>,
    /// A fully qualified name inside the weft domain.
    #[serde(default)]
    pub hostname: Option<String>,
}

/// One record, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    /// Fully qualified name.
    pub name: String,
    /// The address.
    pub addr: IpAddr,
    /// The workload it belongs to.
    pub owner: String,
    /// The peer that made it.
    pub peer: String,
}

impl From<&Entry> for DnsRecord {
    fn from(e: &Entry) -> Self {
        DnsRecord {
            name: e.name.clone(),
            addr: e.addr,
            owner: e.owner.clone(),
            peer: e.peer.to_string(),
        }
    }
}

/// Answer of `/dns/add`, `/dns/remove` and `/dns/status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DnsRecords {
    /// The weft domain.
    pub domain: String,
    /// Where the server listens, if anywhere yet.
    #[serde(default)]
    pub listen: Option<String>,
    /// The records concerned.
    pub records: Vec<DnsRecord>,
}

/// Body of `POST /dns/lookup`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DnsLookupRequest {
    /// A name; the weft domain is appended when it is not already there.
    pub name: String,
}

/// Answer of `POST /dns/lookup`: the addresses the server answers with now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DnsLookupResponse {
    /// The fully qualified name looked up.
    pub name: String,
    /// Its addresses.
    pub addrs: Vec<IpAddr>,
}

/// The DNS routes, merged into the control API.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/dns/add", post(add))
        .route("/dns/remove", post(remove))
        .route("/dns/lookup", post(lookup))
        .route("/dns/status", get(status))
}

impl From<DnsError> for ApiError {
    fn from(err: DnsError) -> Self {
        match err {
            DnsError::Name(_) => ApiError::BadRequest(err.to_string()),
            _ => ApiError::Internal(err.to_string()),
        }
    }
}

/// What a change request resolves to: the name, the addresses and the owner id.
struct Target {
    name: Fqdn,
    addrs: Vec<IpAddr>,
    owner: String,
}

async fn target(state: &ApiState, req: DnsChangeRequest) -> Result<Target, ApiError> {
    let domain = state.dns.domain().clone();
    let mut addrs = req
        .addrs
        .iter()
        .map(|a| {
            a.parse::<IpAddr>()
                .map_err(|_| ApiError::BadRequest(format!("{a:?} is not an IPv4 or IPv6 address")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let hostname = match &req.hostname {
        Some(h) => Some(Fqdn::parse(h).map_err(DnsError::from)?),
        None => None,
    };
    match (&req.container, hostname) {
        (Some(container), hostname) => {
            let listing = state.overlay.list().await;
            let mine: Vec<_> = listing
                .attachments
                .iter()
                .filter(|a| &a.name == container)
                .collect();
            let Some(first) = mine.first() else {
                return Err(ApiError::NotFound(format!(
                    "no attached workload is named {container:?} (see `weft ps`)"
                )));
            };
            if addrs.is_empty() {
                addrs = mine.iter().map(|a| IpAddr::V4(a.address.ip())).collect();
            }
            let name = match hostname {
                Some(h) => h,
                None => Fqdn::in_domain(container, &domain).map_err(DnsError::from)?,
            };
            Ok(Target {
                name,
                addrs,
                owner: first.netns.display().to_string(),
            })
        }
        (None, Some(name)) => {
            if addrs.is_empty() {
                return Err(ApiError::BadRequest(
                    "give the addresses of the host name, or a workload".into(),
                ));
            }
            Ok(Target {
                name,
                addrs,
                owner: EXTERN_OWNER.into(),
            })
        }
        (None, None) => Err(ApiError::BadRequest(
            "name a workload, or give a host name with -h".into(),
        )),
    }
}

fn records(state: &ApiState, entries: &[Entry]) -> DnsRecords {
    DnsRecords {
        domain: state.dns.domain().to_string(),
        listen: state.dns.listen_addr().map(|a| a.to_string()),
        records: entries.iter().map(DnsRecord::from).collect(),
    }
}

async fn add(
    State(state): State<ApiState>,
    req: Result<Json<DnsChangeRequest>, JsonRejection>,
) -> Result<Json<DnsRecords>, ApiError> {
    let t = target(&state, body(req)?).await?;
    let news = state.dns.add(&t.name, &t.addrs, &t.owner).await?;
    Ok(Json(records(&state, &news)))
}

async fn remove(
    State(state): State<ApiState>,
    req: Result<Json<DnsChangeRequest>, JsonRejection>,
) -> Result<Json<DnsRecords>, ApiError> {
    let req = body(req)?;
    let explicit_addrs = !req.addrs.is_empty();
    let named = req.hostname.is_some();
    let t = target(&state, req).await?;
    let gone = state
        .dns
        .remove(|e| {
            e.owner == t.owner
                && (!named || e.name == t.name.as_str())
                && (!explicit_addrs || t.addrs.contains(&e.addr))
        })
        .await?;
    Ok(Json(records(&state, &gone)))
}

async fn lookup(
    State(state): State<ApiState>,
    req: Result<Json<DnsLookupRequest>, JsonRejection>,
) -> Result<Json<DnsLookupResponse>, ApiError> {
    let req = body(req)?;
    let name = Fqdn::in_domain(&req.name, state.dns.domain()).map_err(DnsError::from)?;
    let addrs = state.dns.tables().addresses(name.as_str()).to_vec();
    if addrs.is_empty() {
        return Err(ApiError::NotFound(format!("{name} has no records")));
    }
    Ok(Json(DnsLookupResponse {
        name: name.to_string(),
        addrs,
    }))
}

async fn status(State(state): State<ApiState>) -> Json<DnsRecords> {
    let mut entries = state.dns.entries();
    entries.sort_by(|a, b| (&a.name, a.addr).cmp(&(&b.name, b.addr)));
    Json(records(&state, &entries))
}

/// Where `weft attach --rewrite-resolv` writes: a named namespace and weft's DNS address.
pub(crate) struct ResolvTarget {
    netns: String,
    server: IpAddr,
}

/// Checks, before attaching, that `--rewrite-resolv` can be honoured.
pub(crate) fn resolv_target(
    state: &ApiState,
    netns: Option<&str>,
) -> Result<ResolvTarget, ApiError> {
    let netns = netns
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| {
            ApiError::BadRequest(
                "--rewrite-resolv needs a named namespace (--netns NAME, as `ip netns` knows it)"
                    .into(),
            )
        })?;
    let server = state.dns.listen_addr().map(|a| a.ip()).ok_or_else(|| {
        ApiError::Conflict(
            "weft's DNS is not listening yet: give the host an overlay address with \
             `weft expose`, or launch with --dns-listen-address"
                .into(),
        )
    })?;
    Ok(ResolvTarget {
        netns: netns.to_string(),
        server,
    })
}

/// Writes the namespace's `resolv.conf` for `target`.
pub(crate) fn rewrite_resolv(state: &ApiState, target: &ResolvTarget) -> Result<(), ApiError> {
    crate::dns::resolv::write_netns_resolv(
        std::path::Path::new("/etc"),
        &target.netns,
        target.server,
        state.dns.domain(),
    )
    .map(|_| ())
    .map_err(|e| ApiError::Internal(format!("{e:#}")))
}
