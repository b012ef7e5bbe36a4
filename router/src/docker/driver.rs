//! The remote network and IPAM driver methods: validation, bookkeeping of pools, addresses,
//! networks and endpoints, and the calls into the [`Backend`]. The state lives in memory: a
//! restarted router forgets dockerd's networks (see the README).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnetwork::Ipv4Network;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::protocol::{
    CreateEndpoint, CreateNetwork, EndpointRef, Join, NetworkRef, ReleaseAddress, ReleasePool,
    RequestAddress, RequestPool, parse,
};
use super::{Backend, DockerError, JoinSpec, Prepared};

/// The address space weft reports for both scopes.
pub const ADDRESS_SPACE: &str = "weft";
/// The option value dockerd sets on a gateway's RequestAddress.
const GATEWAY_REQUEST: &str = "com.docker.network.gateway";
/// Prefix of the veth names handed to dockerd (`vw` + the endpoint id's start).
const VETH_PREFIX: &str = "vw";
/// How much of the endpoint id goes into a veth name (15 bytes at most in all).
const VETH_ID: usize = 10;
/// The name dockerd gives the interface inside the container (`eth0`, `eth1`, ...).
const DST_PREFIX: &str = "eth";
/// Length of the endpoint id prefix used as the workload name.
const SHORT_ID: usize = 12;

/// A network dockerd created on this driver.
#[derive(Debug, Clone)]
struct NetworkRec {
    gateway: Option<Ipv4Network>,
}

/// An endpoint, with its veth once joined.
#[derive(Debug)]
struct EndpointRec {
    network: String,
    address: Ipv4Network,
    joined: Option<Prepared>,
}

#[derive(Debug, Default)]
struct State {
    /// Pool id → pool.
    pools: BTreeMap<String, Ipv4Network>,
    /// Address handed out by RequestAddress → its IPAM owner.
    owners: BTreeMap<Ipv4Addr, String>,
    networks: BTreeMap<String, NetworkRec>,
    endpoints: BTreeMap<String, EndpointRec>,
    /// Source of unique IPAM owners for addresses requested without a name.
    next_owner: u64,
}

/// The driver. Cheap to clone; calls are serialised.
#[derive(Clone)]
pub struct Driver {
    backend: Arc<dyn Backend>,
    state: Arc<Mutex<State>>,
    /// Distinguishes the owners of this process's addresses from a previous run's.
    run_id: u32,
}

impl Driver {
    /// A driver over `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Driver {
            backend,
            state: Arc::default(),
            run_id: rand::random(),
        }
    }

    /// Handles `method` with the JSON `body`.
    pub async fn call(&self, method: &str, body: &[u8]) -> Result<Value, DockerError> {
        match method {
            "Plugin.Activate" => Ok(json!({"Implements": ["NetworkDriver", "IpamDriver"]})),
            "NetworkDriver.GetCapabilities" => {
                Ok(json!({"Scope": "local", "ConnectivityScope": "local"}))
            }
            "NetworkDriver.CreateNetwork" => self.create_network(parse(method, body)?).await,
            "NetworkDriver.DeleteNetwork" => self.delete_network(parse(method, body)?).await,
            "NetworkDriver.CreateEndpoint" => self.create_endpoint(parse(method, body)?).await,
            "NetworkDriver.EndpointOperInfo" => {
                let r: EndpointRef = parse(method, body)?;
                self.endpoint(&r.endpoint_id).await?;
                Ok(json!({"Value": {}}))
            }
            "NetworkDriver.DeleteEndpoint" => self.delete_endpoint(parse(method, body)?).await,
            "NetworkDriver.Join" => self.join(parse(method, body)?).await,
            "NetworkDriver.Leave" => self.leave(parse(method, body)?).await,
            "NetworkDriver.DiscoverNew"
            | "NetworkDriver.DiscoverDelete"
            | "NetworkDriver.ProgramExternalConnectivity"
            | "NetworkDriver.RevokeExternalConnectivity" => {
                let _: Value = parse(method, body)?;
                Ok(json!({}))
            }
            "IpamDriver.GetCapabilities" => Ok(json!({"RequiresMACAddress": false})),
            "IpamDriver.GetDefaultAddressSpaces" => Ok(json!({
                "LocalDefaultAddressSpace": ADDRESS_SPACE,
                "GlobalDefaultAddressSpace": ADDRESS_SPACE,
            })),
            "IpamDriver.RequestPool" => self.request_pool(parse(method, body)?).await,
            "IpamDriver.ReleasePool" => {
                let r: ReleasePool = parse(method, body)?;
                self.state.lock().await.pools.remove(&r.pool_id);
                Ok(json!({}))
            }
            "IpamDriver.RequestAddress" => self.request_address(parse(method, body)?).await,
            "IpamDriver.ReleaseAddress" => self.release_address(parse(method, body)?).await,
            other => Err(DockerError::UnknownMethod(other.to_string())),
        }
    }

    async fn request_pool(&self, r: RequestPool) -> Result<Value, DockerError> {
        if r.v6 {
            return Err(DockerError::BadRequest(
                "weft has no IPv6 pools: create the network without --ipv6".into(),
            ));
        }
        if !r.sub_pool.is_empty() {
            return Err(DockerError::BadRequest(
                "weft does not support --ip-range: use --subnet inside weft's range".into(),
            ));
        }
        let range = self.backend.range();
        let pool = if r.pool.is_empty() {
            self.backend.default_subnet()
        } else {
            let pool = parse_net("pool", &r.pool)?;
            if pool.network() != pool.ip() {
                return Err(DockerError::BadRequest(format!(
                    "pool {pool} is not a subnet address (try {}/{})",
                    pool.network(),
                    pool.prefix()
                )));
            }
            pool
        };
        if !inside(range, pool) {
            return Err(DockerError::BadRequest(format!(
                "pool {pool} is outside weft's allocation range {range}"
            )));
        }
        let id = format!("{ADDRESS_SPACE}-{pool}");
        self.state.lock().await.pools.insert(id.clone(), pool);
        Ok(json!({"PoolID": id, "Pool": pool.to_string(), "Data": {}}))
    }

    async fn request_address(&self, r: RequestAddress) -> Result<Value, DockerError> {
        let mut st = self.state.lock().await;
        let pool = *st
            .pools
            .get(&r.pool_id)
            .ok_or_else(|| DockerError::NotFound(format!("unknown pool {:?}", r.pool_id)))?;
        let wanted = match r.address.as_str() {
            "" => None,
            text => {
                let ip = parse_ip(text)?;
                if !pool.contains(ip) || ip == pool.network() || ip == pool.broadcast() {
                    return Err(DockerError::BadRequest(format!(
                        "address {ip} is outside the pool {pool}"
                    )));
                }
                Some(ip)
            }
        };
        let gateway = r
            .options
            .as_ref()
            .and_then(|o| o.get("RequestAddressType"))
            .is_some_and(|t| t == GATEWAY_REQUEST);
        let owner = match (gateway, wanted) {
            (true, _) => format!("docker-gateway:{}", r.pool_id),
            (false, Some(ip)) => format!("docker:{ip}"),
            (false, None) => {
                st.next_owner += 1;
                format!("docker:{:08x}-{}", self.run_id, st.next_owner)
            }
        };
        let ip = self.backend.allocate(&owner, wanted).await?;
        if !pool.contains(ip) {
            // The ring gave an address of another subnet: not usable on this network.
            self.backend.free(&owner, ip)?;
            return Err(DockerError::Conflict(format!(
                "IPAM gave {ip}, outside the pool {pool}; use weft's default subnet"
            )));
        }
        st.owners.insert(ip, owner);
        Ok(json!({"Address": format!("{ip}/{}", pool.prefix()), "Data": {}}))
    }

    async fn release_address(&self, r: ReleaseAddress) -> Result<Value, DockerError> {
        let ip = parse_ip(&r.address)?;
        let owner = self.state.lock().await.owners.remove(&ip);
        if let Some(owner) = owner {
            self.backend.free(&owner, ip)?;
        }
        Ok(json!({}))
    }

    async fn create_network(&self, r: CreateNetwork) -> Result<Value, DockerError> {
        if r.ipv6_data.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err(DockerError::BadRequest(
                "weft networks are IPv4 only: create the network without --ipv6".into(),
            ));
        }
        let [data] = r.ipv4_data.as_slice() else {
            return Err(DockerError::BadRequest(format!(
                "a weft network needs exactly one IPv4 pool, got {}",
                r.ipv4_data.len()
            )));
        };
        let range = self.backend.range();
        let pool = parse_net("pool", &data.pool)?;
        if !inside(range, pool) {
            return Err(DockerError::BadRequest(format!(
                "pool {pool} is outside weft's range {range}: use --ipam-driver weft or a subnet inside it"
            )));
        }
        let gateway = match data.gateway.as_str() {
            "" => None,
            g => Some(parse_net("gateway", g)?),
        };
        let mut st = self.state.lock().await;
        if st.networks.contains_key(&r.network_id) {
            return Err(DockerError::Conflict(format!(
                "network {} exists",
                r.network_id
            )));
        }
        let shared = st.networks.values().any(|n| n.gateway == gateway);
        if let (Some(gw), false) = (gateway, shared) {
            self.backend.expose(gw).await?;
        }
        st.networks
            .insert(r.network_id.clone(), NetworkRec { gateway });
        info!(network = %r.network_id, %pool, ?gateway, "Docker network created");
        Ok(json!({}))
    }

    async fn delete_network(&self, r: NetworkRef) -> Result<Value, DockerError> {
        let mut st = self.state.lock().await;
        let Some(net) = st.networks.remove(&r.network_id) else {
            return Ok(json!({}));
        };
        let shared = st.networks.values().any(|n| n.gateway == net.gateway);
        if let (Some(gw), false) = (net.gateway, shared)
            && let Err(e) = self.backend.hide(gw.ip()).await
        {
            warn!(network = %r.network_id, "taking gateway {gw} off the bridge: {e}");
        }
        info!(network = %r.network_id, "Docker network deleted");
        Ok(json!({}))
    }

    async fn create_endpoint(&self, r: CreateEndpoint) -> Result<Value, DockerError> {
        let iface = r.interface.unwrap_or_default();
        if !iface.address_ipv6.is_empty() {
            return Err(DockerError::BadRequest(
                "weft endpoints are IPv4 only".into(),
            ));
        }
        if iface.address.is_empty() {
            return Err(DockerError::BadRequest(format!(
                "endpoint {} has no IPv4 address (Interface.Address)",
                r.endpoint_id
            )));
        }
        let address = parse_net("endpoint address", &iface.address)?;
        let mut st = self.state.lock().await;
        if !st.networks.contains_key(&r.network_id) {
            return Err(DockerError::NotFound(format!(
                "unknown network {}",
                r.network_id
            )));
        }
        if st.endpoints.contains_key(&r.endpoint_id) {
            return Err(DockerError::Conflict(format!(
                "endpoint {} exists",
                r.endpoint_id
            )));
        }
        st.endpoints.insert(
            r.endpoint_id,
            EndpointRec {
                network: r.network_id,
                address,
                joined: None,
            },
        );
        Ok(json!({}))
    }

    async fn endpoint(&self, id: &str) -> Result<(), DockerError> {
        match self.state.lock().await.endpoints.contains_key(id) {
            true => Ok(()),
            false => Err(DockerError::NotFound(format!("unknown endpoint {id}"))),
        }
    }

    async fn delete_endpoint(&self, r: EndpointRef) -> Result<Value, DockerError> {
        let mut st = self.state.lock().await;
        if let Some(ep) = st.endpoints.remove(&r.endpoint_id)
            && let Some(prepared) = ep.joined
        {
            self.backend.release(prepared).await?;
        }
        Ok(json!({}))
    }

    async fn join(&self, r: Join) -> Result<Value, DockerError> {
        let mut st = self.state.lock().await;
        let ep = st
            .endpoints
            .get(&r.endpoint_id)
            .ok_or_else(|| DockerError::NotFound(format!("unknown endpoint {}", r.endpoint_id)))?;
        if ep.network != r.network_id {
            return Err(DockerError::BadRequest(format!(
                "endpoint {} belongs to network {}, not {}",
                r.endpoint_id, ep.network, r.network_id
            )));
        }
        if ep.joined.is_some() {
            return Err(DockerError::Conflict(format!(
                "endpoint {} is already joined",
                r.endpoint_id
            )));
        }
        let (network, address) = (ep.network.clone(), ep.address);
        let gateway = st
            .networks
            .get(&network)
            .and_then(|n| n.gateway)
            .ok_or_else(|| {
                DockerError::BadRequest(format!(
                    "network {network} has no gateway; dockerd would add docker_gwbridge"
                ))
            })?;
        let owner = st
            .owners
            .get(&address.ip())
            .cloned()
            .unwrap_or_else(|| format!("docker:{}", r.endpoint_id));
        let id: String = r
            .endpoint_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        if id.is_empty() {
            return Err(DockerError::BadRequest("the endpoint id is empty".into()));
        }
        let name = join_name(&r).unwrap_or_else(|| id.chars().take(SHORT_ID).collect());
        let ifname = format!("{VETH_PREFIX}{}", &id[..id.len().min(VETH_ID)]);
        let prepared = self
            .backend
            .prepare(JoinSpec {
                ifname: ifname.clone(),
                address,
                owner,
                name,
            })
            .await?;
        if let Some(rec) = st.endpoints.get_mut(&r.endpoint_id) {
            rec.joined = Some(prepared);
        }
        info!(endpoint = %r.endpoint_id, %address, %ifname, "Docker endpoint joined");
        Ok(json!({
            "InterfaceName": {"SrcName": ifname, "DstPrefix": DST_PREFIX},
            "Gateway": gateway.ip().to_string(),
            "StaticRoutes": [],
            "DisableGatewayService": false,
        }))
    }

    async fn leave(&self, r: EndpointRef) -> Result<Value, DockerError> {
        let mut st = self.state.lock().await;
        let ep = st
            .endpoints
            .get_mut(&r.endpoint_id)
            .ok_or_else(|| DockerError::NotFound(format!("unknown endpoint {}", r.endpoint_id)))?;
        if let Some(prepared) = ep.joined.take() {
            match self.backend.release(prepared).await {
                Ok(()) | Err(DockerError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(json!({}))
    }
}

/// The container's name, when dockerd passes one in the Join options.
fn join_name(r: &Join) -> Option<String> {
    let options = r.options.as_ref()?;
    ["com.docker.network.endpoint.name", "ContainerName"]
        .iter()
        .find_map(|k| options.get(*k)?.as_str())
        .map(|n| n.trim_start_matches('/').to_string())
        .filter(|n| !n.is_empty())
}

fn parse_net(what: &str, text: &str) -> Result<Ipv4Network, DockerError> {
    text.parse()
        .map_err(|e| DockerError::BadRequest(format!("{what} {text:?} is not ADDR/PREFIX: {e}")))
}

fn parse_ip(text: &str) -> Result<Ipv4Addr, DockerError> {
    let ip = text.split('/').next().unwrap_or(text);
    ip.parse()
        .map_err(|e| DockerError::BadRequest(format!("address {text:?} is not IPv4: {e}")))
}

fn inside(range: Ipv4Network, net: Ipv4Network) -> bool {
    net.prefix() >= range.prefix() && range.contains(net.network())
}
