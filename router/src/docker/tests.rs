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
use super::store::{Container, Joined, StateStore};
use super::{Backend, DockerError, Driver, JoinSpec, Prepared};

/// IPAM, overlay, DNS and policy in memory: addresses by owner, attachments, exposed gateways,
/// names by endpoint, joins undone for an earlier run.
#[derive(Default)]
struct Fake {
    held: Mutex<BTreeMap<Ipv4Addr, String>>,
    attached: Mutex<Vec<JoinSpec>>,
    exposed: Mutex<Vec<Ipv4Network>>,
    named: Mutex<BTreeMap<String, (Ipv4Addr, Container)>>,
    forgotten: Mutex<Vec<Joined>>,
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
            host_ifname: format!("h{ifname}"),
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

    async fn forget(&self, joined: &Joined, address: Ipv4Addr) -> Result<(), DockerError> {
        self.attached
            .lock()
            .expect("lock")
            .retain(|a| a.ifname != joined.ifname);
        self.forgotten.lock().expect("lock").push(joined.clone());
        self.free(&joined.owner, address)
    }

    async fn name_workload(
        &self,
        endpoint: &str,
        address: Ipv4Addr,
        container: &Container,
    ) -> Result<(), DockerError> {
        self.named
            .lock()
            .expect("lock")
            .insert(endpoint.to_string(), (address, container.clone()));
        Ok(())
    }

    async fn unname_workload(&self, endpoint: &str) -> Result<(), DockerError> {
        self.named.lock().expect("lock").remove(endpoint);
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
    driver: Driver,
    app: axum::Router,
}

impl Plugin {
    fn new() -> Plugin {
        Plugin::over(Arc::new(Fake::default()), StateStore::memory())
    }

    /// A plugin over `fake` whose driver keeps its bookkeeping in `store`.
    fn over(fake: Arc<Fake>, store: StateStore) -> Plugin {
        let driver = Driver::load(fake.clone(), store).expect("driver");
        let app = routes(driver.clone());
        Plugin { fake, driver, app }
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

/// RequestAddress + CreateEndpoint + Join of endpoint `ep` on network n1; its address.
async fn joined_endpoint(p: &Plugin, pool: &str, ep: &str) -> String {
    let addr = p
        .ok(
            "IpamDriver.RequestAddress",
            json!({"PoolID": pool, "Address": ""}),
        )
        .await;
    let address = addr["Address"].as_str().expect("Address").to_string();
    p.ok(
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": "n1", "EndpointID": ep, "Interface": {"Address": address}}),
    )
    .await;
    p.ok(
        "NetworkDriver.Join",
        json!({"NetworkID": "n1", "EndpointID": ep, "SandboxKey": "/run/sb"}),
    )
    .await;
    address
}

fn web() -> Container {
    Container {
        id: "c1".into(),
        name: "web".into(),
        labels: BTreeMap::from([("app".into(), "web".into())]),
    }
}

#[tokio::test]
async fn a_named_container_loses_its_name_on_leave_or_disconnect() {
    let p = Plugin::new();
    let pool = p.network().await;
    assert!(
        !p.driver.name_container("e1", web()).await.expect("name"),
        "an unknown endpoint is not named"
    );
    let address = joined_endpoint(&p, &pool, "e1").await;
    assert!(p.driver.name_container("e1", web()).await.expect("name"));
    {
        let named = p.fake.named.lock().expect("lock");
        let (ip, c) = named.get("e1").expect("e1 named");
        assert_eq!(format!("{ip}/12"), address);
        assert_eq!(c, &web());
    }
    // A disconnect on another network, or of another container, leaves the name.
    assert!(!p.driver.unname_container("c1", "n2").await.expect("other"));
    assert!(!p.driver.unname_container("c9", "n1").await.expect("other"));
    assert!(p.driver.unname_container("c1", "n1").await.expect("unname"));
    assert!(p.fake.named.lock().expect("lock").is_empty());

    p.driver.name_container("e1", web()).await.expect("name");
    let ep = json!({"NetworkID": "n1", "EndpointID": "e1"});
    p.ok("NetworkDriver.Leave", ep.clone()).await;
    assert!(
        p.fake.named.lock().expect("lock").is_empty(),
        "Leave removes the name"
    );
    assert!(
        !p.driver.name_container("e1", web()).await.expect("name"),
        "a left endpoint is not named again"
    );
    p.ok("NetworkDriver.DeleteEndpoint", ep).await;
}

#[tokio::test]
async fn a_restarted_driver_still_releases_what_an_earlier_run_joined() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = Arc::new(Fake::default());
    let before = Plugin::over(fake.clone(), StateStore::in_dir(dir.path()));
    let pool = before.network().await;
    let gateway = before.held()[0];
    let address = joined_endpoint(&before, &pool, "e1").await;
    before
        .driver
        .name_container("e1", web())
        .await
        .expect("name");
    drop(before);

    // The same router services (IPAM, kernel) with a new driver process: only the file remains.
    let p = Plugin::over(fake.clone(), StateStore::in_dir(dir.path()));
    let ep = json!({"NetworkID": "n1", "EndpointID": "e1"});
    p.ok("NetworkDriver.EndpointOperInfo", ep.clone()).await;
    p.ok("NetworkDriver.Leave", ep.clone()).await;
    let forgotten = fake.forgotten.lock().expect("lock").clone();
    assert_eq!(forgotten.len(), 1, "the earlier run's veth was undone");
    assert_eq!(forgotten[0].ifname, "vwe1");
    assert_eq!(forgotten[0].host_ifname, "hvwe1");
    assert!(fake.attached.lock().expect("lock").is_empty());
    assert!(fake.named.lock().expect("lock").is_empty(), "name removed");
    p.ok("NetworkDriver.DeleteEndpoint", ep).await;
    p.ok(
        "IpamDriver.ReleaseAddress",
        json!({"PoolID": pool, "Address": address}),
    )
    .await;
    assert_eq!(p.held(), vec![gateway], "the address is free");
    p.ok("NetworkDriver.DeleteNetwork", json!({"NetworkID": "n1"}))
        .await;
    assert!(
        fake.exposed.lock().expect("lock").is_empty(),
        "gateway hidden"
    );
    p.ok(
        "IpamDriver.ReleaseAddress",
        json!({"PoolID": pool, "Address": format!("{gateway}/12")}),
    )
    .await;
    assert!(p.held().is_empty(), "the gateway's address is free");
    p.ok("IpamDriver.ReleasePool", json!({"PoolID": pool}))
        .await;
    let again = Plugin::over(fake, StateStore::in_dir(dir.path()));
    let (status, _) = again
        .err(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool, "Address": ""}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the released pool is gone");
}

/// A Docker Engine API on a unix socket: the running containers (inspect JSON) and, for each
/// `GET /events`, the next queued event stream (500 when none is left).
#[derive(Clone, Default)]
struct FakeEngine {
    containers: Arc<Mutex<Vec<Value>>>,
    streams: Arc<Mutex<std::collections::VecDeque<tokio::sync::mpsc::UnboundedReceiver<String>>>>,
}

impl FakeEngine {
    fn serve(&self, socket: &std::path::Path) {
        use axum::extract::{Path, State};
        use axum::routing::get;
        let app = axum::Router::new()
            .route(
                "/containers/json",
                get(|State(e): State<FakeEngine>| async move {
                    let list: Vec<Value> = e
                        .containers
                        .lock()
                        .expect("lock")
                        .iter()
                        .map(|c| json!({"Id": c["Id"]}))
                        .collect();
                    axum::Json(list)
                }),
            )
            .route(
                "/containers/{id}/json",
                get(
                    |State(e): State<FakeEngine>, Path(id): Path<String>| async move {
                        let found = e
                            .containers
                            .lock()
                            .expect("lock")
                            .iter()
                            .find(|c| c["Id"] == id.as_str())
                            .cloned();
                        match found {
                            Some(c) => (StatusCode::OK, axum::Json(c)),
                            None => (StatusCode::NOT_FOUND, axum::Json(json!({}))),
                        }
                    },
                ),
            )
            .route(
                "/events",
                get(|State(e): State<FakeEngine>| async move {
                    let Some(rx) = e.streams.lock().expect("lock").pop_front() else {
                        return (StatusCode::INTERNAL_SERVER_ERROR, Body::empty());
                    };
                    let lines = futures::stream::unfold(rx, |mut rx| async move {
                        let line = rx.recv().await?;
                        Some((Ok::<_, std::convert::Infallible>(format!("{line}\n")), rx))
                    });
                    (StatusCode::OK, Body::from_stream(lines))
                }),
            )
            .with_state(self.clone());
        let listener = tokio::net::UnixListener::bind(socket).expect("bind");
        tokio::spawn(async move { axum::serve(listener, app).await });
    }

    /// A new event stream for the watcher's next connection; its sender.
    fn stream(&self) -> tokio::sync::mpsc::UnboundedSender<String> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.streams.lock().expect("lock").push_back(rx);
        tx
    }

    /// Container `id` named `name`, on network n1 with endpoint `ep`.
    fn run(&self, id: &str, name: &str, ep: &str) {
        self.containers.lock().expect("lock").push(json!({
            "Id": id, "Name": format!("/{name}"), "Config": {"Labels": {"app": name}},
            "NetworkSettings": {"Networks": {"wnet": {"NetworkID": "n1", "EndpointID": ep}}}
        }));
    }
}

fn network_event(action: &str, container: &str) -> String {
    json!({"Type": "network", "Action": action,
           "Actor": {"ID": "n1", "Attributes": {"container": container, "name": "wnet"}}})
    .to_string()
}

/// Waits up to 5 s for the fake backend's names to satisfy `cond`.
async fn named_until(fake: &Fake, what: &str, cond: impl Fn(&BTreeMap<String, String>) -> bool) {
    for _ in 0..100 {
        let names: BTreeMap<String, String> = fake
            .named
            .lock()
            .expect("lock")
            .iter()
            .map(|(ep, (_, c))| (ep.clone(), c.name.clone()))
            .collect();
        if cond(&names) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "timed out waiting for {what}: {:?}",
        fake.named.lock().expect("lock")
    );
}

#[tokio::test]
async fn the_watcher_names_running_containers_follows_events_and_resumes() {
    let p = Plugin::new();
    let pool = p.network().await;
    for ep in ["e1", "e2", "e3"] {
        joined_endpoint(&p, &pool, ep).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("docker.sock");
    let engine = FakeEngine::default();
    engine.run("c1", "web", "e1");
    let first = engine.stream();
    engine.serve(&socket);
    let api = super::Engine::from_host(&format!("unix://{}", socket.display())).expect("host");
    let watcher = super::watch::spawn(api, p.driver.clone());

    named_until(&p.fake, "the running container named", |n| {
        n.get("e1").map(String::as_str) == Some("web")
    })
    .await;
    assert_eq!(
        p.fake.named.lock().expect("lock")["e1"].1.labels["app"],
        "web",
        "labels reach the backend"
    );
    engine.run("c2", "db", "e2");
    first.send(network_event("connect", "c2")).expect("send");
    named_until(&p.fake, "c2 named on connect", |n| {
        n.get("e2").map(String::as_str) == Some("db")
    })
    .await;
    first.send(network_event("disconnect", "c1")).expect("send");
    named_until(&p.fake, "c1 unnamed on disconnect", |n| {
        !n.contains_key("e1")
    })
    .await;

    // The stream breaks while c3 starts: the watcher reconnects and names it from the list.
    let _second = engine.stream();
    engine.run("c3", "cache", "e3");
    drop(first);
    named_until(&p.fake, "c3 named after the reconnect", |n| {
        n.get("e3").map(String::as_str) == Some("cache")
    })
    .await;
    watcher.abort();
}
