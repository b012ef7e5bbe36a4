//! The JSON handlers through the plugin's axum routes, in process, over a fake backend that
//! records what the router was asked to do.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use ipnetwork::Ipv4Network;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::server::routes;
use super::{Backend, DockerError, Driver, JoinSpec, Prepared};

/// IPAM and overlay in memory: addresses by owner, attachments, exposed gateways.
#[derive(Default)]
struct Fake {
    held: Mutex<BTreeMap<Ipv4Addr, String>>,
    attached: Mutex<Vec<JoinSpec>>,
    exposed: Mutex<Vec<Ipv4Network>>,
    next: Mutex<u32>,
}

fn net(s: &str) -> Ipv4Network {
    s.parse().expect("network")
}

#[async_trait]
impl Backend for Fake {
    fn range(&self) -> Ipv4Network {
        net("10.32.0.0/12")
    }

    fn default_subnet(&self) -> Ipv4Network {
        net("10.32.0.0/12")
    }

    async fn allocate(&self, owner: &str, addr: Option<Ipv4Addr>) -> Result<Ipv4Addr, DockerError> {
        let mut held = self.held.lock().expect("lock");
        if let Some((ip, _)) = held.iter().find(|(_, o)| *o == owner) {
            return Ok(*ip);
        }
        let ip = match addr {
            Some(ip) if held.contains_key(&ip) => {
                return Err(DockerError::Conflict(format!("{ip} in use")));
            }
            Some(ip) => ip,
            None => {
                let mut next = self.next.lock().expect("lock");
                *next += 1;
                Ipv4Addr::new(10, 32, 0, *next as u8)
            }
        };
        held.insert(ip, owner.to_string());
        Ok(ip)
    }

    fn free(&self, owner: &str, ip: Ipv4Addr) -> Result<(), DockerError> {
        let mut held = self.held.lock().expect("lock");
        if held.get(&ip).is_some_and(|o| o == owner) {
            held.remove(&ip);
        }
        Ok(())
    }

    async fn prepare(&self, spec: JoinSpec) -> Result<Prepared, DockerError> {
        let mut attached = self.attached.lock().expect("lock");
        if attached.iter().any(|a| a.ifname == spec.ifname) {
            return Err(DockerError::Conflict("interface exists".into()));
        }
        let ifname = spec.ifname.clone();
        attached.push(spec);
        Ok(Prepared {
            netns: "/staging".into(),
            ifname,
            staging: None,
        })
    }

    async fn release(&self, prepared: Prepared) -> Result<(), DockerError> {
        let mut attached = self.attached.lock().expect("lock");
        let before = attached.len();
        attached.retain(|a| a.ifname != prepared.ifname);
        if attached.len() == before {
            return Err(DockerError::NotFound("not attached".into()));
        }
        Ok(())
    }

    async fn expose(&self, gateway: Ipv4Network) -> Result<(), DockerError> {
        self.exposed.lock().expect("lock").push(gateway);
        Ok(())
    }

    async fn hide(&self, gateway: Ipv4Addr) -> Result<(), DockerError> {
        self.exposed
            .lock()
            .expect("lock")
            .retain(|g| g.ip() != gateway);
        Ok(())
    }
}

struct Plugin {
    fake: Arc<Fake>,
    app: axum::Router,
}

impl Plugin {
    fn new() -> Plugin {
        let fake = Arc::new(Fake::default());
        let app = routes(Driver::new(fake.clone()));
        Plugin { fake, app }
    }

    /// POSTs `body` (raw text) to `/<method>` as dockerd does; the status and JSON answer.
    async fn raw(&self, method: &str, body: &str) -> (StatusCode, Value) {
        let req = Request::post(format!("/{method}"))
            .header("content-type", "application/vnd.docker.plugins.v1.2+json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let resp = self.app.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("JSON answer"))
    }

    async fn ok(&self, method: &str, body: Value) -> Value {
        let (status, v) = self.raw(method, &body.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{method}: {v}");
        assert!(v.get("Err").is_none(), "{method}: {v}");
        v
    }

    async fn err(&self, method: &str, body: &str) -> (StatusCode, String) {
        let (status, v) = self.raw(method, body).await;
        assert_ne!(status, StatusCode::OK, "{method} succeeded: {v}");
        (status, v["Err"].as_str().expect("Err string").to_string())
    }

    fn held(&self) -> Vec<Ipv4Addr> {
        self.fake
            .held
            .lock()
            .expect("lock")
            .keys()
            .copied()
            .collect()
    }

    /// RequestPool (default) + gateway + CreateNetwork "n1"; the pool id.
    async fn network(&self) -> String {
        let pool = self
            .ok(
                "IpamDriver.RequestPool",
                json!({"AddressSpace": "weft", "Pool": "", "SubPool": "", "V6": false}),
            )
            .await;
        let id = pool["PoolID"].as_str().expect("PoolID").to_string();
        let gw = self
            .ok(
                "IpamDriver.RequestAddress",
                json!({"PoolID": id, "Address": "", "Options": {"RequestAddressType": "com.docker.network.gateway"}}),
            )
            .await;
        let gw = gw["Address"].as_str().expect("gateway").to_string();
        self.ok(
            "NetworkDriver.CreateNetwork",
            json!({"NetworkID": "n1", "Options": {"com.docker.network.generic": {}},
                   "IPv4Data": [{"AddressSpace": "weft", "Pool": pool["Pool"], "Gateway": gw}],
                   "IPv6Data": []}),
        )
        .await;
        id
    }
}

#[tokio::test]
async fn activate_and_capabilities() {
    let p = Plugin::new();
    let act = p.ok("Plugin.Activate", json!({})).await;
    assert_eq!(act, json!({"Implements": ["NetworkDriver", "IpamDriver"]}));
    let caps = p.ok("NetworkDriver.GetCapabilities", json!({})).await;
    assert_eq!(caps["Scope"], "local");
    let spaces = p.ok("IpamDriver.GetDefaultAddressSpaces", json!({})).await;
    assert_eq!(spaces["LocalDefaultAddressSpace"], "weft");
    assert_eq!(
        p.ok("IpamDriver.GetCapabilities", json!({})).await["RequiresMACAddress"],
        false
    );
}

#[tokio::test]
async fn a_container_lifecycle_allocates_attaches_and_releases() {
    let p = Plugin::new();
    let pool = p.network().await;
    let gateway = p.held()[0];
    assert_eq!(p.fake.exposed.lock().expect("lock")[0].ip(), gateway);

    let addr = p
        .ok(
            "IpamDriver.RequestAddress",
            json!({"PoolID": pool, "Address": "", "Options": {}}),
        )
        .await;
    let address = addr["Address"].as_str().expect("Address").to_string();
    assert!(address.ends_with("/12"), "{address}");
    let ep = json!({"NetworkID": "n1", "EndpointID": "e1234567890abcdef",
                    "Interface": {"Address": address, "AddressIPv6": "", "MacAddress": ""}});
    assert_eq!(p.ok("NetworkDriver.CreateEndpoint", ep).await, json!({}));
    let join = p
        .ok(
            "NetworkDriver.Join",
            json!({"NetworkID": "n1", "EndpointID": "e1234567890abcdef",
                   "SandboxKey": "/var/run/docker/netns/abc", "Options": {}}),
        )
        .await;
    assert_eq!(join["Gateway"], gateway.to_string());
    assert_eq!(
        join["InterfaceName"],
        json!({"SrcName": "vwe123456789", "DstPrefix": "eth"})
    );
    {
        let attached = p.fake.attached.lock().expect("lock");
        assert_eq!(attached.len(), 1);
        let a = &attached[0];
        assert_eq!(a.ifname, "vwe123456789");
        assert_eq!(a.address.to_string(), address);
        assert_eq!(a.name, "e1234567890a");
        let held = p.fake.held.lock().expect("lock");
        assert_eq!(
            held.get(&a.address.ip()),
            Some(&a.owner),
            "attached under the IPAM owner"
        );
    }
    let info = json!({"NetworkID": "n1", "EndpointID": "e1234567890abcdef"});
    assert_eq!(
        p.ok("NetworkDriver.EndpointOperInfo", info.clone()).await,
        json!({"Value": {}})
    );
    p.ok("NetworkDriver.ProgramExternalConnectivity", info.clone())
        .await;
    p.ok("NetworkDriver.RevokeExternalConnectivity", info.clone())
        .await;
    p.ok("NetworkDriver.Leave", info.clone()).await;
    assert!(p.fake.attached.lock().expect("lock").is_empty());
    p.ok("NetworkDriver.DeleteEndpoint", info).await;
    p.ok(
        "IpamDriver.ReleaseAddress",
        json!({"PoolID": pool, "Address": address}),
    )
    .await;
    assert_eq!(p.held(), vec![gateway], "only the gateway is left");

    p.ok("NetworkDriver.DeleteNetwork", json!({"NetworkID": "n1"}))
        .await;
    assert!(p.fake.exposed.lock().expect("lock").is_empty());
    p.ok(
        "IpamDriver.ReleaseAddress",
        json!({"PoolID": pool, "Address": format!("{gateway}/12")}),
    )
    .await;
    p.ok("IpamDriver.ReleasePool", json!({"PoolID": pool}))
        .await;
    assert!(p.held().is_empty());
}

#[tokio::test]
async fn two_endpoints_get_distinct_veths_and_a_double_join_is_refused() {
    let p = Plugin::new();
    let pool = p.network().await;
    let mut names = Vec::new();
    for ep in ["ea01", "eb02"] {
        let addr = p
            .ok(
                "IpamDriver.RequestAddress",
                json!({"PoolID": pool, "Address": ""}),
            )
            .await;
        p.ok(
            "NetworkDriver.CreateEndpoint",
            json!({"NetworkID": "n1", "EndpointID": ep, "Interface": {"Address": addr["Address"]}}),
        )
        .await;
        let join = json!({"NetworkID": "n1", "EndpointID": ep, "SandboxKey": "/run/sb"});
        let answer = p.ok("NetworkDriver.Join", join.clone()).await;
        names.push(answer["InterfaceName"]["SrcName"].clone());
        let (status, _) = p.err("NetworkDriver.Join", &join.to_string()).await;
        assert_eq!(status, StatusCode::CONFLICT);
    }
    assert_eq!(names, vec![json!("vwea01"), json!("vweb02")]);
    assert_eq!(p.fake.attached.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn malformed_json_and_bad_requests_get_an_err_and_allocate_nothing() {
    let p = Plugin::new();
    let pool = p.network().await;
    let before = p.held();

    let (status, msg) = p.err("IpamDriver.RequestAddress", "{\"PoolID\": ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        msg.contains("malformed IpamDriver.RequestAddress request"),
        "{msg}"
    );
    let (_, msg) = p.err("NetworkDriver.Join", "[1, 2]").await;
    assert!(msg.contains("malformed NetworkDriver.Join"), "{msg}");

    let outside = json!({"PoolID": pool, "Address": "192.168.1.5"}).to_string();
    let (status, msg) = p.err("IpamDriver.RequestAddress", &outside).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("outside the pool"), "{msg}");
    let network_addr = json!({"PoolID": pool, "Address": "10.32.0.0"}).to_string();
    assert!(
        p.err("IpamDriver.RequestAddress", &network_addr)
            .await
            .1
            .contains("outside the pool")
    );
    let unknown_pool = json!({"PoolID": "nope", "Address": ""}).to_string();
    assert_eq!(
        p.err("IpamDriver.RequestAddress", &unknown_pool).await.0,
        StatusCode::NOT_FOUND
    );

    let pool_outside = json!({"Pool": "192.168.0.0/16"}).to_string();
    assert!(
        p.err("IpamDriver.RequestPool", &pool_outside)
            .await
            .1
            .contains("outside weft's")
    );
    let v6 = json!({"V6": true}).to_string();
    assert!(
        p.err("IpamDriver.RequestPool", &v6)
            .await
            .1
            .contains("IPv6")
    );
    let foreign = json!({"NetworkID": "n2", "IPv4Data": [{"Pool": "172.17.0.0/16", "Gateway": "172.17.0.1/16"}]});
    assert!(
        p.err("NetworkDriver.CreateNetwork", &foreign.to_string())
            .await
            .1
            .contains("--ipam-driver weft")
    );
    let no_addr = json!({"NetworkID": "n1", "EndpointID": "x", "Interface": {}}).to_string();
    assert!(
        p.err("NetworkDriver.CreateEndpoint", &no_addr)
            .await
            .1
            .contains("no IPv4 address")
    );
    let no_net =
        json!({"NetworkID": "zz", "EndpointID": "x", "Interface": {"Address": "10.32.0.9/12"}});
    assert_eq!(
        p.err("NetworkDriver.CreateEndpoint", &no_net.to_string())
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let join_unknown = json!({"NetworkID": "n1", "EndpointID": "x", "SandboxKey": "/run/x"});
    assert_eq!(
        p.err("NetworkDriver.Join", &join_unknown.to_string())
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    assert_eq!(p.held(), before, "a refused request allocated something");
    assert!(p.fake.attached.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn unknown_methods_are_404_with_an_err() {
    let p = Plugin::new();
    let (status, msg) = p.err("NetworkDriver.AllocateNetwork", "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        msg.contains("unknown plugin method NetworkDriver.AllocateNetwork"),
        "{msg}"
    );
    let req = Request::get("/a/b").body(Body::empty()).expect("request");
    let resp = p.app.clone().oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}
