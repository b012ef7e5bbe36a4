//! End-to-end: two routers launched with `--kubeconfig` pointing at an API server this test
//! runs in the first host's namespace (plain HTTP, list and watch JSON of Pods, Namespaces and
//! NetworkPolicies). A NetworkPolicy created in the "cluster" is enforced on one host against a
//! pod on the other, whose labels its own router takes from the cluster and gossips; a pod's
//! label change moves it into the allowed set, deleting the policy restores access, and the CLI
//! refuses to edit what the cluster owns. Needs root, `ip`, `nft`, `ping`, and
//! `cargo build -p weft-router --bins` first.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use weft_netns_tests::{Host, Net, Router, Workload, pings};

const POLICIES: &str = "/apis/networking.k8s.io/v1/networkpolicies";
const NAMESPACES: &str = "/api/v1/namespaces";
const PODS: &str = "/api/v1/pods";

#[derive(Default)]
struct State {
    version: u64,
    /// Objects by collection path and `NAMESPACE/NAME` (or `NAME`).
    objects: BTreeMap<(String, String), Value>,
    /// Every event: (version, collection path, one watch line).
    log: Vec<(u64, String, String)>,
    /// Open watches and the collection each follows.
    watches: Vec<(String, TcpStream)>,
}

/// A minimal blocking API server: lists answer with `Content-Length`, watches stream one JSON
/// event per line until the connection closes, replaying what came after their version.
#[derive(Clone)]
struct FakeApi {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
}

impl FakeApi {
    fn start(host: &Host) -> FakeApi {
        let ip = host.addr();
        let listener = host
            .run_in(move || TcpListener::bind((ip, 0)))
            .expect("entering the host namespace")
            .expect("binding the fake API server");
        let api = FakeApi {
            state: Arc::default(),
            addr: listener.local_addr().expect("address"),
        };
        let server = api.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = server.clone();
                std::thread::spawn(move || s.handle(conn));
            }
        });
        api
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handle(&self, mut conn: TcpStream) {
        let mut reader = BufReader::new(conn.try_clone().expect("clone"));
        let mut request = String::new();
        if reader.read_line(&mut request).is_err() {
            return;
        }
        loop {
            let mut header = String::new();
            match reader.read_line(&mut header) {
                Ok(n) if n > 2 => continue,
                _ => break,
            }
        }
        let target = request.split_whitespace().nth(1).unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let params: BTreeMap<&str, &str> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let mut st = self.lock();
        if ![POLICIES, NAMESPACES, PODS].contains(&path) {
            let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            return;
        }
        if params.get("watch") == Some(&"true") {
            let from: u64 = params
                .get("resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut text = String::from(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
            );
            for (v, p, line) in &st.log {
                if *v > from && p == path {
                    text.push_str(line);
                }
            }
            if conn.write_all(text.as_bytes()).is_ok() {
                st.watches.push((path.to_string(), conn));
            }
            return;
        }
        let items: Vec<&Value> = st
            .objects
            .iter()
            .filter(|((p, _), _)| p == path)
            .map(|(_, v)| v)
            .collect();
        let (api_version, kind) = match path {
            POLICIES => ("networking.k8s.io/v1", "NetworkPolicyList"),
            NAMESPACES => ("v1", "NamespaceList"),
            _ => ("v1", "PodList"),
        };
        let body = json!({"apiVersion": api_version, "kind": kind,
                          "metadata": {"resourceVersion": st.version.to_string()},
                          "items": items})
        .to_string();
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }

    fn event(&self, path: &str, kind: &str, mut obj: Value, store: bool) {
        let mut st = self.lock();
        st.version += 1;
        obj["metadata"]["resourceVersion"] = json!(st.version.to_string());
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let key = match obj["metadata"]["namespace"].as_str() {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_string(),
        };
        let id = (path.to_string(), key);
        if store {
            st.objects.insert(id, obj.clone());
        } else {
            st.objects.remove(&id);
        }
        let line = format!("{}\n", json!({"type": kind, "object": obj}));
        let version = st.version;
        st.log.push((version, path.to_string(), line.clone()));
        st.watches
            .retain_mut(|(p, c)| p != path || c.write_all(line.as_bytes()).is_ok());
    }

    fn put(&self, path: &str, obj: Value) {
        self.event(path, "MODIFIED", obj, true);
    }

    fn delete(&self, path: &str, obj: Value) {
        self.event(path, "DELETED", obj, false);
    }

    fn kubeconfig(&self, net: &Net) -> String {
        let path = net.dir().join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: t\n\
             clusters:\n- name: c\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: t\n  context:\n    cluster: c\n    user: u\n\
             users:\n- name: u\n  user: {{}}\n",
            self.addr
        );
        std::fs::write(&path, text).expect("writing the kubeconfig");
        path.display().to_string()
    }
}

fn pod(name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "x", "labels": {"app": app}},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

fn deny_web_except_friends() -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": "web-friends", "namespace": "x"},
           "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "friend"}}}]}]}})
}

#[test]
fn cluster_network_policies_and_pod_labels_are_enforced() {
    let net = Net::new(2).expect("net");
    let api = FakeApi::start(net.host(0));
    api.put(
        NAMESPACES,
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "x", "labels": {"ns": "x"}}}),
    );
    api.put(PODS, pod("web", "web"));
    api.put(PODS, pod("client", "client"));
    let kubeconfig = api.kubeconfig(&net);
    let flags = ["--kubeconfig", &kubeconfig, "--ipalloc-init", "consensus=2"];
    let router = net.launch(0, &[], &flags);
    let other = net.launch(1, &[0], &flags);
    net.wait_until(Duration::from_secs(30), "the two routers connected", || {
        router
            .report()
            .is_ok_and(|r| r.connected_to(&net.host(1).addr().to_string()))
    });

    // Workloads attached as CNI would (namespace and pod name, no labels), web on the first
    // host and client on the second: the pods' labels come from the cluster, matched by
    // namespace and name, each written by the pod's own router.
    let attach = |r: &Router, w: &Workload, addr: &str, name: &str| {
        r.cli_ok(&[
            "attach",
            addr,
            "--netns",
            w.ns(),
            "--name",
            name,
            "--namespace",
            "x",
        ]);
    };
    let web = net.add_workload(0, "web").expect("workload");
    let client = net.add_workload(1, "client").expect("workload");
    attach(&router, &web, "10.32.0.10/12", "web");
    attach(&other, &client, "10.32.0.11/12", "client");
    let web_ip = Ipv4Addr::new(10, 32, 0, 10);
    net.wait_until(Duration::from_secs(10), "client pings web", || {
        pings(&client, web_ip)
    });

    // A NetworkPolicy created in the cluster selects web (by its pod labels) and blocks client.
    api.put(POLICIES, deny_web_except_friends());
    net.wait_until(Duration::from_secs(10), "the policy selects x/web", || {
        let list = router.cli_ok(&["policy", "list"]);
        list.contains("x/web-friends") && list.contains("x/web")
    });
    net.wait_until(
        Duration::from_secs(10),
        "the other router has the policy",
        || other.cli_ok(&["policy", "list"]).contains("x/web-friends"),
    );
    net.wait_until(Duration::from_secs(10), "client is blocked", || {
        !pings(&client, web_ip)
    });

    // The cluster owns policies and labels: the CLI refuses to edit them.
    let file = net.dir().join("cli-policy.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: cli, namespace: x}\nspec: {podSelector: {}}\n",
    )
    .expect("writing the policy");
    for args in [
        vec!["policy", "apply", "-f", file.to_str().expect("path")],
        vec!["policy", "delete", "x/web-friends"],
        vec!["label", "x/client", "app=friend"],
        vec!["namespace", "label", "x", "team=a"],
    ] {
        let err = other.cli_err(&args);
        assert!(err.contains("kubectl"), "weft {args:?}: {err}");
    }

    // Relabelling the client pod in the cluster lets it in; deleting the policy opens web again.
    api.put(PODS, pod("client", "friend"));
    net.wait_until(
        Duration::from_secs(10),
        "the relabelled client pings web",
        || pings(&client, web_ip),
    );
    api.put(PODS, pod("client", "client"));
    net.wait_until(Duration::from_secs(10), "client is blocked again", || {
        !pings(&client, web_ip)
    });
    api.delete(POLICIES, deny_web_except_friends());
    net.wait_until(Duration::from_secs(10), "the policy is gone", || {
        !router.cli_ok(&["policy", "list"]).contains("x/web-friends")
    });
    net.wait_until(Duration::from_secs(10), "client pings web again", || {
        pings(&client, web_ip)
    });
}
