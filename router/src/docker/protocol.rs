//! The JSON bodies of the libnetwork remote driver protocols (network and IPAM), as dockerd
//! sends them. Only the fields weft uses are declared; unknown fields are ignored.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// `IpamDriver.RequestPool`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RequestPool {
    /// Address space, from `GetDefaultAddressSpaces`.
    pub address_space: String,
    /// The subnet asked for (`--subnet`); weft's default subnet when empty.
    pub pool: String,
    /// A sub-range (`--ip-range`); not supported.
    pub sub_pool: String,
    /// Whether an IPv6 pool is asked for; not supported.
    #[serde(rename = "V6")]
    pub v6: bool,
}

/// `IpamDriver.ReleasePool`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReleasePool {
    /// The pool id `RequestPool` returned.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
}

/// `IpamDriver.RequestAddress`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestAddress {
    /// The pool id `RequestPool` returned.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// A specific address (`--ip`, `--gateway`); any free one when empty.
    #[serde(default)]
    pub address: String,
    /// Options; `RequestAddressType = com.docker.network.gateway` for a gateway.
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
}

/// `IpamDriver.ReleaseAddress`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReleaseAddress {
    /// The pool id `RequestPool` returned.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The address to release.
    pub address: String,
}

/// One entry of `IPv4Data` in `CreateNetwork`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamData {
    /// The pool, `ADDR/PREFIX`.
    pub pool: String,
    /// The gateway, `ADDR/PREFIX`.
    pub gateway: String,
}

/// `NetworkDriver.CreateNetwork`.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateNetwork {
    /// Docker's network id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// The IPv4 pools, from the IPAM driver.
    #[serde(rename = "IPv4Data", default)]
    pub ipv4_data: Vec<IpamData>,
    /// The IPv6 pools; not supported.
    #[serde(rename = "IPv6Data", default)]
    pub ipv6_data: Option<Vec<IpamData>>,
}

/// `NetworkDriver.DeleteNetwork`.
#[derive(Debug, Clone, Deserialize)]
pub struct NetworkRef {
    /// Docker's network id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

/// The `Interface` of `CreateEndpoint`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointInterface {
    /// `ADDR/PREFIX` from the IPAM driver.
    pub address: String,
    /// IPv6 address; not supported.
    #[serde(rename = "AddressIPv6")]
    pub address_ipv6: String,
}

/// `NetworkDriver.CreateEndpoint`.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateEndpoint {
    /// Docker's network id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// Docker's endpoint id.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// The addresses.
    #[serde(rename = "Interface", default)]
    pub interface: Option<EndpointInterface>,
}

/// `DeleteEndpoint`, `EndpointOperInfo`, `Leave`, `ProgramExternalConnectivity`, ...
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointRef {
    /// Docker's network id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// Docker's endpoint id.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

/// `NetworkDriver.Join`.
#[derive(Debug, Clone, Deserialize)]
pub struct Join {
    /// Docker's network id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// Docker's endpoint id.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// Join options (may carry the container's name on newer dockerd).
    #[serde(rename = "Options", default)]
    pub options: Option<BTreeMap<String, Value>>,
}

/// Parses a request body into `T`, with a message naming the method on failure.
pub fn parse<T: serde::de::DeserializeOwned>(
    method: &str,
    body: &[u8],
) -> Result<T, super::DockerError> {
    serde_json::from_slice(body)
        .map_err(|e| super::DockerError::BadRequest(format!("malformed {method} request: {e}")))
}
