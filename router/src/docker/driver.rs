//! The remote network and IPAM driver methods: validation, bookkeeping of pools, addresses,
//! networks and endpoints, and the calls into the [`Backend`]. The bookkeeping is saved in
//! `docker.json` (see [`super::store`]) before each answer, so a restarted router still frees
//! what dockerd releases; the containers' names and labels arrive from the Engine API watcher
//! (see [`super::watch`]) through [`Driver::name_container`].

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
use super::store::{Container, DriverState, EndpointRec, Joined, NetworkRec, StateStore};
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

/// The saved bookkeeping and the veths made in this run.
#[derive(Debug, Default)]
struct Inner {
    st: DriverState,
    /// Endpoint id → its veth's staging namespace, for endpoints joined in this run.
    live: BTreeMap<String, Prepared>,
}

/// The driver. Cheap to clone; calls are serialised.
#[derive(Clone)]
pub struct Driver {
    backend: Arc<dyn Backend>,
    store: StateStore,
    state: Arc<Mutex<Inner>>,
    /// Distinguishes the owners of this process's addresses from a previous run's.
    run_id: u32,
}

impl Driver {
    /// A driver over `backend`, with the bookkeeping `store` holds.
    pub fn load(backend: Arc<dyn Backend>, store: StateStore) -> Result<Self, DockerError> {
        let st = store.load()?;
        Ok(Driver {
            backend,
            store,
            state: Arc::new(Mutex::new(Inner {
                st,
                live: BTreeMap::new(),
            })),
            run_id: rand::random(),
        })
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
                let mut inner = self.state.lock().await;
                if inner.st.pools.remove(&r.pool_id).is_some() {
                    self.store.save(&inner.st)?;
                }
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
        let mut inner = self.state.lock().await;
        if inner.st.pools.insert(id.clone(), pool).is_none() {
            self.store.save(&inner.st)?;
        }
        Ok(json!({"PoolID": id, "Pool": pool.to_string(), "Data": {}}))
    }

    async fn request_address(&self, r: RequestAddress) -> Result<Value, DockerError> {
        let mut inner = self.state.lock().await;
        let st = &mut inner.st;
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
        st.owners.insert(ip, owner.clone());
        if let Err(e) = self.store.save(st) {
            st.owners.remove(&ip);
            self.backend.free(&owner, ip)?;
            return Err(e);
        }
        Ok(json!({"Address": format!("{ip}/{}", pool.prefix()), "Data": {}}))
    }

    async fn release_address(&self, r: ReleaseAddress) -> Result<Value, DockerError> {
        let ip = parse_ip(&r.address)?;
        let mut inner = self.state.lock().await;
        if let Some(owner) = inner.st.owners.remove(&ip) {
            self.backend.free(&owner, ip)?;
            self.store.save(&inner.st)?;
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
        let mut inner = self.state.lock().await;
        let st = &mut inner.st;
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
        self.store.save(st)?;
        info!(network = %r.network_id, %pool, ?gateway, "Docker network created");
        Ok(json!({}))
    }

    async fn delete_network(&self, r: NetworkRef) -> Result<Value, DockerError> {
        let mut inner = self.state.lock().await;
        let st = &mut inner.st;
        let Some(net) = st.networks.remove(&r.network_id) else {
            return Ok(json!({}));
        };
        self.store.save(st)?;
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
        let mut inner = self.state.lock().await;
        let st = &mut inner.st;
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
                container: None,
            },
        );
        self.store.save(st)?;
        Ok(json!({}))
    }

    async fn endpoint(&self, id: &str) -> Result<(), DockerError> {
        match self.state.lock().await.st.endpoints.contains_key(id) {
            true => Ok(()),
            false => Err(DockerError::NotFound(format!("unknown endpoint {id}"))),
        }
    }

    async fn delete_endpoint(&self, r: EndpointRef) -> Result<Value, DockerError> {
        let mut inner = self.state.lock().await;
        if !inner.st.endpoints.contains_key(&r.endpoint_id) {
            return Ok(json!({}));
        }
        self.unjoin(&mut inner, &r.endpoint_id).await?;
        inner.st.endpoints.remove(&r.endpoint_id);
        self.store.save(&inner.st)?;
        Ok(json!({}))
    }

    /// Undoes the join of endpoint `id` (its name, its veth, its address's attachment), made in
    /// this run or an earlier one; nothing when it is not joined.
    async fn unjoin(&self, inner: &mut Inner, id: &str) -> Result<(), DockerError> {
        let Some(ep) = inner.st.endpoints.get_mut(id) else {
            return Ok(());
        };
        let address = ep.address.ip();
        let named = ep.container.take().is_some();
        let joined = ep.joined.take();
        // Also when unnamed: naming may have failed half-way.
        if (named || joined.is_some())
            && let Err(e) = self.backend.unname_workload(id).await
        {
            warn!(endpoint = %id, "removing the container's name: {e}");
        }
        let Some(joined) = joined else {
            return Ok(());
        };
        let undone = match inner.live.remove(id) {
            Some(prepared) => match self.backend.release(prepared).await {
                Ok(()) | Err(DockerError::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            },
            None => self.backend.forget(&joined, address).await,
        };
        if let Err(e) = undone {
            if let Some(ep) = inner.st.endpoints.get_mut(id) {
                ep.joined = Some(joined);
            }
            return Err(e);
        }
        info!(endpoint = %id, %address, "Docker endpoint left");
        Ok(())
    }

    async fn join(&self, r: Join) -> Result<Value, DockerError> {
        let mut inner = self.state.lock().await;
        let st = &mut inner.st;
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
        let joined_owner = owner.clone();
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
        if let Some(rec) = inner.st.endpoints.get_mut(&r.endpoint_id) {
            rec.joined = Some(Joined {
                ifname: prepared.ifname.clone(),
                host_ifname: prepared.host_ifname.clone(),
                owner: joined_owner,
            });
        }
        inner.live.insert(r.endpoint_id.clone(), prepared);
        self.store.save(&inner.st)?;
        info!(endpoint = %r.endpoint_id, %address, %ifname, "Docker endpoint joined");
        Ok(json!({
            "InterfaceName": {"SrcName": ifname, "DstPrefix": DST_PREFIX},
            "Gateway": gateway.ip().to_string(),
            "StaticRoutes": [],
            "DisableGatewayService": false,
        }))
    }

    async fn leave(&self, r: EndpointRef) -> Result<Value, DockerError> {
        let mut inner = self.state.lock().await;
        if !inner.st.endpoints.contains_key(&r.endpoint_id) {
            return Err(DockerError::NotFound(format!(
                "unknown endpoint {}",
                r.endpoint_id
            )));
        }
        self.unjoin(&mut inner, &r.endpoint_id).await?;
        self.store.save(&inner.st)?;
        Ok(json!({}))
    }

    /// Records `container` as the one behind endpoint `endpoint` and registers its name and
    /// labels; `false` when the endpoint is not a joined endpoint of this driver.
    pub async fn name_container(
        &self,
        endpoint: &str,
        container: Container,
    ) -> Result<bool, DockerError> {
        let mut inner = self.state.lock().await;
        let Some(ep) = inner.st.endpoints.get_mut(endpoint) else {
            return Ok(false);
        };
        if ep.joined.is_none() {
            return Ok(false);
        }
        let address = ep.address.ip();
        // Recorded first, so that a disconnect or Leave undoes even a naming that fails below.
        if ep.container.as_ref() != Some(&container) {
            info!(%endpoint, name = %container.name, "Docker container named");
            ep.container = Some(container.clone());
            self.store.save(&inner.st)?;
        }
        self.backend
            .name_workload(endpoint, address, &container)
            .await?;
        Ok(true)
    }

    /// Removes the name of container `container` on network `network` (it was disconnected);
    /// `false` when no endpoint of this driver had it.
    pub async fn unname_container(
        &self,
        container: &str,
        network: &str,
    ) -> Result<bool, DockerError> {
        let mut inner = self.state.lock().await;
        let found = inner.st.endpoints.iter_mut().find(|(_, ep)| {
            ep.network == network && ep.container.as_ref().is_some_and(|c| c.id == container)
        });
        let Some((id, ep)) = found else {
            return Ok(false);
        };
        let id = id.clone();
        ep.container = None;
        self.backend.unname_workload(&id).await?;
        self.store.save(&inner.st)?;
        Ok(true)
    }

    /// Whether `network` is one of this driver's networks.
    pub async fn has_network(&self, network: &str) -> bool {
        self.state.lock().await.st.networks.contains_key(network)
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
